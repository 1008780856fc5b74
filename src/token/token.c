#include "token/token.h"
#include "util/check.h"

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

static const char *const purpose_names[] = {
    [TOKEN_STAGE] = "stage", [TOKEN_ADMIT] = "admit", [TOKEN_SESSION] = "session",
    [TOKEN_LISTENER] = "listener"};

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    if (!*s)
        return -1;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

int token_mint(const uint8_t secret[TOKEN_SECRET_LEN], struct token *t, char *out, size_t cap)
{
    if (t->purpose < TOKEN_STAGE || t->purpose > TOKEN_LISTENER)
        return -1;
    while (t->id == 0)
        if (getrandom(&t->id, sizeof(t->id), 0) != sizeof(t->id))
            check_fail(__FILE__, __LINE__, "getrandom");
    char payload[224], last[33], what[32];
    if (t->purpose == TOKEN_STAGE) {
        snprintf(last, sizeof(last), "%s", t->reusable ? "many" : "once");
        snprintf(what, sizeof(what), "%s", t->role);
    } else {
        for (int i = 0; i < 16; i++)
            snprintf(last + 2 * i, 3, "%02x", t->addr[i]);
        snprintf(what, sizeof(what), "%lld", (long long)t->admit_us);
    }
    if (strchr(t->space, '|') || strchr(what, '|'))
        return -1;
    int n = snprintf(payload, sizeof(payload), "v2|%s|%s|%s|%lld|%016llx|%s",
                     purpose_names[t->purpose], t->space, what, (long long)t->expiry,
                     (unsigned long long)t->id, last);
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

int token_check(const uint8_t secret[TOKEN_SECRET_LEN], int purpose, const char *tok, size_t len,
                int64_t now, struct token *out, const char **why)
{
    const char *dot = memchr(tok, '.', len);
    uint8_t payload[240], mac[40], want[32];
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
    if (memchr(payload, '\0', (size_t)plen))
        return -1;
    /* signed by us, so well-formed unless the secret leaked; parse carefully all the same.
     * Empty fields are not skipped (strsep, not strtok): the field count is exact. */
    char *f[8], *p = (char *)payload;
    int nf = 0;
    while (p && nf < 8)
        f[nf++] = strsep(&p, "|");
    if (nf != 7 || p || strcmp(f[0], "v2") != 0)
        return -1;
    int got = 0;
    for (int i = TOKEN_STAGE; i <= TOKEN_LISTENER; i++)
        if (strcmp(f[1], purpose_names[i]) == 0)
            got = i;
    if (got != purpose) {
        *why = purpose == TOKEN_STAGE   ? "not a stage token (an admission ticket?)"
               : purpose == TOKEN_ADMIT   ? "not an admission ticket"
               : purpose == TOKEN_SESSION ? "not a session id"
                                          : "not a listener id";
        return -1;
    }
    *out = (struct token){.purpose = got};
    if (!f[2][0] || strlen(f[2]) >= sizeof(out->space) || parse_i64(f[4], &out->expiry) < 0 ||
        strlen(f[5]) != 16)
        return -1;
    char *end;
    out->id = strtoull(f[5], &end, 16);
    if (*end != '\0')
        return -1;
    if (got == TOKEN_STAGE) {
        if (!f[3][0] || strlen(f[3]) >= sizeof(out->role))
            return -1;
        if (strcmp(f[6], "many") == 0)
            out->reusable = 1;
        else if (strcmp(f[6], "once") != 0)
            return -1;
        snprintf(out->role, sizeof(out->role), "%s", f[3]);
    } else {
        if (parse_i64(f[3], &out->admit_us) < 0 || strlen(f[6]) != 32)
            return -1;
        for (int i = 0; i < 16; i++) {
            char hex[3] = {f[6][2 * i], f[6][2 * i + 1], 0};
            unsigned long v = strtoul(hex, &end, 16);
            if (*end != '\0' || hex[0] == '-' || hex[0] == '+' || hex[0] == ' ')
                return -1;
            out->addr[i] = (uint8_t)v;
        }
    }
    snprintf(out->space, sizeof(out->space), "%s", f[2]);
    if (out->expiry < now) {
        *why = "token expired";
        return -1;
    }
    return 0;
}

int token_check_bound(const uint8_t secret[TOKEN_SECRET_LEN], int purpose, const char *tok,
                      size_t len, int64_t now, const char *space, const uint8_t *addr,
                      struct token *out, const char **why)
{
    if (token_check(secret, purpose, tok, len, now, out, why) < 0)
        return -1;
    if (strcmp(out->space, space) != 0) {
        *why = "issued for another space";
        return -1;
    }
    if (!addr || memcmp(out->addr, addr, sizeof(out->addr)) != 0) {
        *why = "issued to another address";
        return -1;
    }
    return 0;
}

int token_secret_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    unsigned char da[32], db[32];
    unsigned int na = 0, nb = 0;
    if (!EVP_Digest(a, alen, da, &na, EVP_sha256(), NULL) ||
        !EVP_Digest(b, blen, db, &nb, EVP_sha256(), NULL) || na != sizeof(da) || nb != na)
        check_fail(__FILE__, __LINE__, "SHA-256");
    return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}
