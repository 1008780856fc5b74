/* Fuzz target: one stage control message (JSON text frame) and a token string. */
#include <stdint.h>
#include <string.h>

#include "stage/control.h"
#include "token/token.h"

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
    return 0;
}
