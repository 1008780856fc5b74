/*
 * token: signed, expiring capabilities: "whoever holds this may join space S as role R until
 * T". HMAC-SHA256 with the server's secret; nothing is stored server-side, so checking a
 * token costs one HMAC and minting one costs nothing to remember.
 *
 *   token = base64url(payload) "." base64url(HMAC-SHA256(secret, payload))
 *   payload = "v1|<space>|<role>|<expiry unix s>|<nonce>"
 */
#ifndef ROSTRUM_STAGE_TOKEN_H
#define ROSTRUM_STAGE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_SECRET_LEN 32
#define TOKEN_MAX 256

struct token {
    char space[64];
    char role[32];
    int64_t expiry;
};

/* Writes a token for <space>, <role>, valid until <expiry> into <out> (TOKEN_MAX bytes).
 * Returns its length, or -1 if the fields do not fit. */
int token_mint(const uint8_t secret[TOKEN_SECRET_LEN], const char *space, const char *role,
               int64_t expiry, char *out, size_t cap);

/* Checks <tok> (<len> bytes, untrusted) against <secret> and <now>. Returns 0 and fills <out>,
 * or -1 with a reason in <why> (a static string): malformed, bad signature, expired. The
 * signature is checked before anything in the payload is believed. */
int token_check(const uint8_t secret[TOKEN_SECRET_LEN], const char *tok, size_t len, int64_t now,
                struct token *out, const char **why);

#endif
