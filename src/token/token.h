/*
 * token: signed, expiring capabilities: "whoever holds this may join space S as role R until
 * T", or "this client may join the stream of S from time A on". HMAC-SHA256 with the server's
 * secret; checking a token costs one HMAC and no lookup.
 *
 *   token   = base64url(payload) "." base64url(HMAC-SHA256(secret, payload))
 *   payload = "v2|stage|<space>|<role>|<expiry unix s>|<id>|once" (or "|many")
 *           | "v2|admit|<space>|<admit wall us>|<expiry unix s>|<id>|<client address key>"
 *           | "v2|session|<space>|0|<expiry unix s>|<id>|<client address key>"
 *           | "v2|listener|<space>|0|<expiry unix s>|<id>|<client address key>"
 *
 * The purpose is the second field of what is signed, and token_check() is told which purpose
 * it expects: an admission ticket presented as a stage token (or the reverse) is refused with
 * a reason, never parsed as the other kind. <id> is 64 random bits, unique per token: the
 * stage remembers the ids of single-use invites in use and of revoked ones (stage.c), the
 * audience the ids of admission tickets already used (shared.h). An admission ticket also
 * names the address key of the client it was issued to (limits.h), so it is good for that
 * client only, and its joins are charged to that address.
 */
#ifndef ROSTRUM_STAGE_TOKEN_H
#define ROSTRUM_STAGE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_SECRET_LEN 32
#define TOKEN_MAX 384

/* TOKEN_SESSION (issue 11): an HLS player's session id for its beacons (audience/beacon.c),
 * shaped as an admission ticket with no admit time (admit_us 0) */
/* TOKEN_LISTENER (issue 12): a listener's id for reactions and raised hands
 * (audience/react.c), shaped as a session id */
enum token_purpose { TOKEN_STAGE = 1, TOKEN_ADMIT = 2, TOKEN_SESSION = 3, TOKEN_LISTENER = 4 };

struct token {
    int purpose;       /* enum token_purpose */
    char space[64];
    char role[32];     /* TOKEN_STAGE: listener, speaker, cohost or host */
    int64_t admit_us;  /* TOKEN_ADMIT: wall-clock microseconds from which it admits */
    int64_t expiry;    /* unix seconds */
    uint64_t id;       /* random; 0 in token_mint(): make one */
    int reusable;      /* TOKEN_STAGE: 1 seats any number of people, 0 one at a time */
    uint8_t addr[16];  /* TOKEN_ADMIT, TOKEN_SESSION, TOKEN_LISTENER: the client's address key (addr_key) */
};

/* Writes the token <t> describes into <out> (<cap> >= TOKEN_MAX bytes, NUL-terminated). A zero
 * <t->id> is replaced with a random one. Returns the token's length, or -1 if the fields do
 * not fit. */
int token_mint(const uint8_t secret[TOKEN_SECRET_LEN], struct token *t, char *out, size_t cap);

/* Checks <tok> (<len> bytes, untrusted) against <secret>, <purpose> and <now>. Returns 0 and
 * fills <out>, or -1 with a reason in <why> (a static string, never NULL): malformed, bad
 * signature, of another purpose, expired. The signature is checked before anything in the
 * payload is believed. */
int token_check(const uint8_t secret[TOKEN_SECRET_LEN], int purpose, const char *tok, size_t len,
                int64_t now, struct token *out, const char **why);

/* token_check(), then that the token is bound to what this request is for: space <space> and
 * the client whose address key is <addr> (16 bytes; NULL when the request has no client
 * address, which no bound token matches). Reasons added to token_check()'s: "issued for
 * another space", "issued to another address". For the tokens that name an address
 * (TOKEN_ADMIT, TOKEN_SESSION, TOKEN_LISTENER); one HMAC, before anything else is believed. */
int token_check_bound(const uint8_t secret[TOKEN_SECRET_LEN], int purpose, const char *tok,
                      size_t len, int64_t now, const char *space, const uint8_t *addr,
                      struct token *out, const char **why);

/* 1 if secret <a> (<alen> bytes, untrusted) is <b> (<blen> bytes), in time that depends on
 * neither where they differ nor how long the guess is: both are hashed (SHA-256) and the
 * digests compared with CRYPTO_memcmp. For passwords and keys. */
int token_secret_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
