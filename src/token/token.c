#include "token/token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* base64url without padding. Returns output length. */
static size_t b64url_encode(const uint8_t *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = a[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = a[v & 63];
    }
    return o;
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Returns decoded length, or -1. */
static long b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* canonical only: the bits the last character carries beyond the bytes must be zero,
     * so that one token has exactly one spelling */
    if (acc & ((1u << bits) - 1))
        return -1;
    return (long)o;
}

static void sign(const uint8_t secret[TOKEN_SECRET_LEN], const char *payload, size_t len,
                 uint8_t mac[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), secret, TOKEN_SECRET_LEN, (const unsigned char *)payload, len, mac, &n);
}

int token_mint(const uint8_t secret[TOKEN_SECRET_LEN], const char *space, const char *role,
               int64_t expiry, char *out, size_t cap)
{
    uint8_t nonce[6];
    if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce))
        memset(nonce, 0, sizeof(nonce));
    char payload[128];
    int n = snprintf(payload, sizeof(payload), "v1|%s|%s|%lld|%02x%02x%02x%02x%02x%02x", space,
                     role, (long long)expiry, nonce[0], nonce[1], nonce[2], nonce[3], nonce[4],
                     nonce[5]);
    if (n < 0 || (size_t)n >= sizeof(payload) || cap < TOKEN_MAX)
        return -1;
    uint8_t mac[32];
    sign(secret, payload, (size_t)n, mac);
    size_t o = b64url_encode((const uint8_t *)payload, (size_t)n, out);
    out[o++] = '.';
    o += b64url_encode(mac, sizeof(mac), out + o);
    out[o] = '\0';
    return (int)o;
}

int token_check(const uint8_t secret[TOKEN_SECRET_LEN], const char *tok, size_t len, int64_t now,
                struct token *out, const char **why)
{
    const char *dot = memchr(tok, '.', len);
    uint8_t payload[160], mac[40], want[32];
    *why = "malformed token";
    if (!dot || len >= TOKEN_MAX)
        return -1;
    long plen = b64url_decode(tok, (size_t)(dot - tok), payload, sizeof(payload) - 1);
    long mlen = b64url_decode(dot + 1, len - (size_t)(dot - tok) - 1, mac, sizeof(mac));
    if (plen <= 0 || mlen != 32)
        return -1;
    sign(secret, (const char *)payload, (size_t)plen, want);
    if (CRYPTO_memcmp(want, mac, 32) != 0) {
        *why = "bad token signature";
        return -1;
    }
    payload[plen] = '\0';
    /* signed by us, so well-formed unless the secret leaked; parse carefully all the same */
    char *f[5], *save = NULL, *p = (char *)payload;
    for (int i = 0; i < 5; i++) {
        f[i] = strtok_r(i ? NULL : p, "|", &save);
        if (!f[i])
            return -1;
    }
    if (strcmp(f[0], "v1") != 0 || strlen(f[1]) >= sizeof(out->space) ||
        strlen(f[2]) >= sizeof(out->role))
        return -1;
    char *end;
    long long exp = strtoll(f[3], &end, 10);
    if (*end != '\0')
        return -1;
    if (exp < now) {
        *why = "token expired";
        return -1;
    }
    snprintf(out->space, sizeof(out->space), "%s", f[1]);
    snprintf(out->role, sizeof(out->role), "%s", f[2]);
    out->expiry = exp;
    return 0;
}
