#include "limits/limits.h"
#include "util/check.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define PROBE 16 /* slots looked at per key: bounds the cost of a lookup */

void addr_key_from_sockaddr(const struct sockaddr_storage *ss, struct addr_key *out)
{
    memset(out, 0, sizeof(*out));
    if (ss->ss_family == AF_INET) {
        out->b[10] = out->b[11] = 0xff;
        memcpy(out->b + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, v4mapped, 12) == 0)
            memcpy(out->b, a, 16); /* an IPv4 client on a dual-stack socket */
        else
            memcpy(out->b, a, 8);
    }
}

int addr_key_parse(const char *s, size_t len, struct addr_key *out)
{
    char tmp[64];
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    struct sockaddr_storage ss = {0};
    if (inet_pton(AF_INET, tmp, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, tmp, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        return -1;
    addr_key_from_sockaddr(&ss, out);
    return 0;
}

int bucket_take(struct bucket *b, double rate, double burst, int64_t now_ms, int64_t *wait_ms)
{
    if (b->last_ms == 0) {
        b->tokens = burst;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 1;
    }
    if (wait_ms)
        *wait_ms = rate > 0 ? (int64_t)((1.0 - b->tokens) * 1000.0 / rate) + 1 : 60000;
    return 0;
}

void addr_table_init(struct addr_table *t, uint32_t slots)
{
    uint32_t n = PROBE;
    while (n < slots)
        n <<= 1;
    t->mask = n - 1;
    t->table_full = 0;
    t->e = calloc(n, sizeof(*t->e));
    BUG_ON(!t->e);
}

void addr_table_free(struct addr_table *t)
{
    free(t->e);
    t->e = NULL;
}

static uint32_t key_hash(const struct addr_key *k)
{
    /* FNV-1a: addresses are not secret and the probe window bounds the worst case */
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ k->b[i]) * 16777619u;
    return h;
}

struct addr_entry *addr_table_get(struct addr_table *t, const struct addr_key *k, int64_t now)
{
    uint32_t h = key_hash(k);
    struct addr_entry *victim = NULL;
    for (uint32_t i = 0; i < PROBE; i++) {
        struct addr_entry *e = &t->e[(h + i) & t->mask];
        if (e->used && memcmp(&e->key, k, sizeof(*k)) == 0) {
            e->last_ms = now;
            return e;
        }
        if (!e->used) {
            if (!victim || victim->used)
                victim = e;
        } else if (e->conns == 0 && (!victim || (victim->used && e->last_ms < victim->last_ms))) {
            victim = e;
        }
    }
    if (!victim) {
        t->table_full++;
        return NULL;
    }
    *victim = (struct addr_entry){.key = *k, .used = 1, .last_ms = now};
    return victim;
}

static double clamp01(double x)
{
    return x < 0 ? 0 : x > 1 ? 1 : x;
}

double overload_sample(struct overload *o, int64_t now_ms, int64_t lag_ms, int lag_limit_ms,
                       double flush_busy)
{
    double raw = (double)lag_ms / (double)(lag_limit_ms > 0 ? lag_limit_ms : 1);
    if (flush_busy > raw)
        raw = flush_busy;
    raw = clamp01(raw);
    double kept = 0;
    if (o->at_ms != 0)
        kept = o->pressure *
               exp2(-(double)(now_ms > o->at_ms ? now_ms - o->at_ms : 0) / OVERLOAD_HALF_LIFE_MS);
    o->pressure = raw > kept ? raw : kept;
    o->at_ms = now_ms;
    if (!o->refusing && o->pressure >= OVERLOAD_ON)
        o->refusing = 1;
    else if (o->refusing && o->pressure < OVERLOAD_OFF)
        o->refusing = 0;
    return o->pressure;
}
