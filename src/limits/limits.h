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
 * - struct overload: a process's pressure in [0, 1] from its own loop's lag and the share of
 *   its time spent in flush rounds, and whether it admits joins (an overload manager in the
 *   manner of Envoy's: a pressure per resource, an action past a threshold, with hysteresis).
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

/*
 * Overload: is this process keeping up with the listeners it has?
 *
 * Two measures, each turned into a pressure in [0, 1]:
 *   lag   = how late the loop ran its timers since the last sample / <lag_limit_ms>: the
 *           time every event waited, whether the loop was busy or the process had no CPU
 *           (on a full machine the run queue shows up here, not in CPU time);
 *   flush = wall time of the last flush round / time between the starts of the last two
 *           rounds: 1 when rounds run back to back, i.e. writes to listeners fall behind.
 * The pressure is the larger of the two, rising at once with a sample and decaying with a
 * half-life of OVERLOAD_HALF_LIFE_MS, so one bad second is remembered for a moment:
 *
 *                 pressure >= OVERLOAD_ON
 *    ADMITTING  ----------------------------->  REFUSING (joins: 503 + Retry-After)
 *               <-----------------------------
 *                 pressure <  OVERLOAD_OFF
 *
 * Joins are refused only while listeners already in are about to be served late (a timer
 * OVERLOAD_ON x lag-limit late, or 80 % of the time in flush rounds); a healthy box admits
 * as fast as joins come, up to the configured ceiling.
 */
#define OVERLOAD_ON 0.8
#define OVERLOAD_OFF 0.5
#define OVERLOAD_HALF_LIFE_MS 500

struct overload {
    double pressure; /* [0, 1] */
    int64_t at_ms;   /* time of the last sample; 0 before the first */
    int refusing;    /* 1 from pressure >= OVERLOAD_ON until it falls under OVERLOAD_OFF */
};

/* Feeds one sample taken at <now_ms>: <lag_ms>, the worst lateness of the loop's timers since
 * the previous sample, against <lag_limit_ms> (> 0); <flush_busy>, the share [0, 1] of the
 * recent flush period spent writing. Returns the new pressure. */
double overload_sample(struct overload *o, int64_t now_ms, int64_t lag_ms, int lag_limit_ms,
                       double flush_busy);

/* 1 if a process in state <o> admits new joins. */
static inline int overload_admits(const struct overload *o)
{
    return !o->refusing;
}

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
