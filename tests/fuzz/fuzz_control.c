/* Fuzz target: one stage control message (JSON text frame), a token string, and the same
 * bytes as a member name or title: what utf8_sanitize makes of them must be valid UTF-8
 * without controls that fits its buffer (it goes into every member's text frames); and as a
 * scheduled space's title and description (schedule_check, issue 12): what it accepts is
 * valid UTF-8 without controls, within the bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stage/control.h"
#include "stage/schedule.h"
#include "token/token.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t secret[TOKEN_SECRET_LEN] = {1, 2, 3};
    struct control c;
    control_parse((const char *)data, size, &c);
    struct token t;
    const char *why = NULL;
    /* both purposes: a token of one kind must never parse as the other */
    for (int purpose = TOKEN_STAGE; purpose <= TOKEN_ADMIT; purpose++)
        if (token_check(secret, purpose, (const char *)data, size, 0, &t, &why) < 0 && !why)
            __builtin_trap(); /* every refusal has a reason */
    char name[48];
    size_t n = utf8_sanitize(name, sizeof(name), (const char *)data, size, UTF8_NO_CONTROLS);
    if (n >= sizeof(name) || strlen(name) != n || !utf8_valid(name, n))
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            abort();
    size_t half = size / 2;
    if (!schedule_check((const char *)data, half, (const char *)data + half, size - half,
                        1000, 0, 0)) {
        if (!half || half > SCHEDULE_TITLE_MAX || size - half > SCHEDULE_DESC_MAX ||
            !utf8_valid(data, size) || memchr(data, 0, size) || memchr(data, '\n', size))
            abort();
    }
    return 0;
}
