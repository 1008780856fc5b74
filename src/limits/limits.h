/*
 * limits: the bounded bookkeeping behind admission control, in the manner of HAProxy's stick
 * tables and freq_ctr.
 *
 * - struct bucket: a token bucket (rate per second, burst), for joins per address and per
 *   process.
 * - struct addr_table: a fixed-size open-addressed table keyed by client address prefix (an
 *   IPv4 address, or an IPv6 /64), holding open connections and a join bucket per key. Its
 *   memory is set at creation and never grows, however many addresses attack: an idle entry
 *   is evicted to make room; when a probe window holds only entries with open connections,
 *   the newcomer is not tracked (counted as table_full) rather than the table growing.
 */
#ifndef ROSTRUM_LIMITS_LIMITS_H
#define ROSTRUM_LIMITS_LIMITS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct addr_key {
    uint8_t b[16];
};

/* IPv4 as ::ffff:a.b.c.d; IPv6 cut to its /64. */
void addr_key_from_sockaddr(const struct sockaddr_storage *ss, struct addr_key *out);
/* Parses a textual IPv4/IPv6 address (as in X-Forwarded-For). Returns 0 or -1. */
int addr_key_parse(const char *s, size_t len, struct addr_key *out);

struct bucket {
    double tokens;
    int64_t last_ms;
};

/* Takes one token if there is one (refilling at <rate>/s up to <burst>). Returns 1 if taken,
 * else 0 and, in <wait_ms> (may be NULL), how long until one will be there. */
int bucket_take(struct bucket *b, double rate, double burst, int64_t now_ms, int64_t *wait_ms);

struct addr_entry {
    struct addr_key key;
    uint32_t conns;      /* open connections from this key */
    uint8_t used;
    struct bucket joins; /* joins from this key */
    int64_t last_ms;     /* last use: eviction picks the oldest idle entry */
    struct bucket tickets;  /* waiting-room tickets (GET /join) asked for from this key */
    double ticket_admit_ms; /* the admit time (loop clock) of its latest ticket: asking again
                             * before then gets the same place, not one at the back */
};

struct addr_table {
    uint32_t mask; /* slots - 1 */
    uint64_t table_full;
    struct addr_entry *e;
};

/* A table of <slots> entries (rounded up to a power of two). Aborts on OOM. */
void addr_table_init(struct addr_table *t, uint32_t slots);
void addr_table_free(struct addr_table *t);
/* The entry of <k>, inserted if needed; NULL when no slot could be had (see above). */
struct addr_entry *addr_table_get(struct addr_table *t, const struct addr_key *k, int64_t now);

#endif
