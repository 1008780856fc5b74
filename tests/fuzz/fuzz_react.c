/*
 * fuzz_react: libFuzzer target for the query string of a reaction or hand request
 * (audience/react.c, react_parse): it must accept the whole input or refuse it; what it finds
 * must be in range (a known reaction and op), an id inside the input of token characters, and
 * a name NUL-terminated valid UTF-8 without C0 controls.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audience/audience.h"
#include "token/token.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *q = (const char *)data;
    struct react_req r;
    int n = react_parse(q, size, &r);
    if (n < 0)
        return 0;
    if ((size_t)n != size || r.kind < -1 || r.kind >= SHARED_REACTIONS || r.op < 0 ||
        r.op > REACT_OP_KEEP)
        abort();
    if (r.id && (r.id < q || r.id_len == 0 || r.id_len >= TOKEN_MAX ||
                 (size_t)(r.id - q) + r.id_len > size))
        abort();
    size_t nl = strnlen(r.name, sizeof(r.name));
    if (nl >= sizeof(r.name) || !utf8_valid(r.name, nl))
        abort();
    for (size_t i = 0; i < nl; i++)
        if ((unsigned char)r.name[i] < 0x20)
            abort();
    return 0;
}
