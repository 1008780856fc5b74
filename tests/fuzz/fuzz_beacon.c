/*
 * fuzz_beacon: libFuzzer target for the query string of an HLS player's beacon
 * (audience/beacon.c, beacon_parse): it must accept the whole input or refuse it, and a
 * session id it finds must lie inside the input, be non-empty, shorter than TOKEN_MAX and of
 * the characters of a token only. libFuzzer hands over an exact-size heap copy, so ASan
 * catches a read past the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audience/audience.h"
#include "token/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *q = (const char *)data;
    struct beacon_req r;
    int n = beacon_parse(q, size, &r);
    if (n < 0)
        return 0;
    if ((size_t)n != size)
        abort();
    if (r.sid) {
        if (r.sid < q || r.sid_len == 0 || r.sid_len >= TOKEN_MAX ||
            (size_t)(r.sid - q) + r.sid_len > size)
            abort();
        for (size_t i = 0; i < r.sid_len; i++)
            if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.",
                        r.sid[i]) ||
                r.sid[i] == 0)
                abort();
    }
    return 0;
}
