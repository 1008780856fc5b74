/*
 * audience: the audience port of one process (a listener worker, or the main process with
 * --workers 0): the web page, status, metrics, and listeners, all read from the shared table.
 *
 * When to write. Pages are published every page-ms; writing each to every listener costs one
 * send() per listener per page, and the kernel's cost per send() is what limits fan-out, not
 * bytes. So the delivery interval adapts to the audience: with few listeners every page goes
 * out as soon as it is published; with many, pages are batched so that all listeners together
 * cost about write-budget writes per second, up to max-batch-ms between writes:
 *
 *   interval = clamp(all listeners x 1000 / write-budget, 0, max-batch-ms)
 *
 * e.g. with the default budget of 50,000 writes/s: 10k listeners -> 200 ms, 100k -> 2 s.
 * A newcomer is written to at once (headers and burst), whatever the interval.
 */
#include <linux/sockios.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "http/request.h"
#include "token/token.h"
#include "proc/server.h"
#include "util/log.h"

#define RECEIVING_WINDOW_MS 5000
/* The worker's join bucket holds this many seconds of its rate. A worker starved of CPU for a
 * moment finds a second's worth of heads waiting at once; with a 1 s bucket, 5,000 joins/s
 * over 6 workers (1,000/s each) had 6 % refused at 100k listeners though the average was
 * under the rate. */
#define JOIN_BURST_S 3

/* Monotonic microseconds: a flush round of a few listeners takes less than a millisecond. */
static int64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void audience_flush_all(struct server *srv);

void audience_init(struct server *srv)
{
    struct audience *a = &srv->aud;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        list_init(&a->listeners[i]);
        a->gen[i] = __atomic_load_n(&srv->sh->spaces[i].gen, __ATOMIC_ACQUIRE);
    }
    a->me = &srv->sh->workers[srv->worker_index];
    memset(a->me, 0, sizeof(*a->me));
    a->me->pid = (int32_t)getpid();
    /* The kernel spreads connections over the workers by a hash, a few % unevenly: a share
     * cut exactly refused 277 of 100,000 joins at max-listeners 100,000 while other workers
     * had room. So an eighth more than the share, as far as this process's descriptors go
     * (keeping 1,000 for sources, stage, status and the spare). */
    uint32_t share = (uint32_t)(srv->cfg.max_listeners / (int)srv->sh->nworkers);
    uint64_t cap = (uint64_t)share + share / 8 + 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur > 2000 && cap > rl.rlim_cur - 1000)
        cap = rl.rlim_cur - 1000 > share + 1 ? rl.rlim_cur - 1000 : share + 1;
    a->max_here = (uint32_t)cap;
    /* The join ceiling: a share of joins-per-second unless joins-per-worker is set. The kernel
     * spreads joins evenly enough over the workers, and the bucket's 3 s of depth takes up
     * the difference. The default ceiling is well above what 2 cores can take, so on a
     * healthy box the overload pressure, not this, decides (see audience_admit). */
    if (srv->cfg.joins_per_worker <= 0) {
        int per = srv->cfg.joins_per_second / (int)srv->sh->nworkers;
        srv->cfg.joins_per_worker = per > 0 ? per : 1;
    }
    a->overload = (struct overload){0};
    a->flush_start_us = a->flush_period_us = a->flush_dur_us = 0;
}

/* Samples this process's overload pressure (every tick, 250 ms) and publishes it. */
static void audience_sample_overload(struct server *srv)
{
    struct audience *a = &srv->aud;
    int64_t lag = srv->loop.lag_peak_ms;
    srv->loop.lag_peak_ms = 0;
    /* the last round's share of its period; a period still running counts as longer, so a
     * busy figure does not outlive the rounds that made it */
    double busy = 0;
    if (a->flush_start_us > 0 && a->flush_period_us > 0) {
        int64_t period = a->flush_period_us, since = clock_us() - a->flush_start_us;
        if (since > period)
            period = since;
        busy = (double)a->flush_dur_us / (double)period;
    }
    double p = overload_sample(&a->overload, srv->loop.now_ms, lag, srv->cfg.overload_lag_ms,
                               busy);
    __atomic_store_n(&a->me->pressure_milli, (uint32_t)(p * 1000 + 0.5), __ATOMIC_RELAXED);
    uint32_t was = a->me->overloaded, now = (uint32_t)!overload_admits(&a->overload);
    __atomic_store_n(&a->me->overloaded, now, __ATOMIC_RELAXED);
    if (now != was)
        log_warn("admit", "worker %d %s joins: pressure %.2f (loop lag %lld ms, flush %.0f %%)",
                 srv->worker_index, now ? "refusing" : "admitting again", p, (long long)lag,
                 busy * 100);
}

/* Listener connections in all workers, now: each worker counts its own in shared memory.
 * (sh->total_connections is the same sum, refreshed once a second: at 5,000 joins/s that is
 * too late for a cap.) Two workers admitting at once may pass the cap by one each. */
static uint32_t all_listeners(const struct server *srv)
{
    uint32_t total = 0;
    for (uint32_t w = 0; w < srv->sh->nworkers; w++)
        total += __atomic_load_n(&srv->sh->workers[w].listener_connections, __ATOMIC_RELAXED);
    return total;
}

/* Milliseconds between writes to each listener, from the whole audience's size. */
static int64_t audience_interval_ms(struct server *srv)
{
    uint64_t total = srv->sh->total_connections;
    if (total < srv->aud.nlisteners)
        total = srv->aud.nlisteners;
    int64_t ms = (int64_t)(total * 1000 / (uint64_t)srv->cfg.write_budget);
    return ms > srv->cfg.max_batch_ms ? srv->cfg.max_batch_ms : ms;
}

static void flush_timer_cb(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = (struct server *)((char *)t - offsetof(struct server, aud.flush_timer));
    (void)loop;
    audience_flush_all(srv);
}

/* Closes the listeners of slots whose space ended or restarted. */
static void audience_check_slots(struct server *srv)
{
    struct audience *a = &srv->aud;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t gen = __atomic_load_n(&srv->sh->spaces[i].gen, __ATOMIC_ACQUIRE);
        if (gen == a->gen[i])
            continue;
        a->gen[i] = gen;
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &a->listeners[i])
        {
            struct conn *c = list_entry(n, struct conn, node);
            if (c->l.gen != gen)
                listener_close(c, srv->sh->spaces[i].state == SLOT_FREE ? CLOSE_MOUNT_END
                                                                        : CLOSE_RESTART);
        }
    }
}

void audience_on_wake(struct server *srv)
{
    audience_check_slots(srv);
    int64_t interval = audience_interval_ms(srv);
    int64_t since = srv->loop.now_ms - srv->aud.last_flush_ms;
    if (since >= interval) {
        loop_timer_stop(&srv->loop, &srv->aud.flush_timer);
        audience_flush_all(srv);
    } else if (srv->aud.flush_timer.due_ms == 0) {
        loop_timer_start(&srv->loop, &srv->aud.flush_timer, interval - since, flush_timer_cb);
    }
}

static void audience_flush_all(struct server *srv)
{
    struct audience *a = &srv->aud;
    int64_t t0 = clock_us();
    if (a->flush_start_us > 0)
        a->flush_period_us = t0 - a->flush_start_us;
    a->flush_start_us = t0;
    srv->aud.last_flush_ms = srv->loop.now_ms;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &srv->aud.listeners[i])
        {
            struct conn *c = list_entry(n, struct conn, node);
            if (!c->l.blocked)
                listener_flush(c);
        }
    }
    a->flush_dur_us = clock_us() - t0;
}

void audience_tick(struct server *srv, int second)
{
    struct audience *a = &srv->aud;
    int64_t now = srv->loop.now_ms;
    audience_sample_overload(srv);
    if (!second)
        return;
    a->counted_ms = now;
    /* Once a second: count who received audio lately, close who is stuck. A listener whose
     * socket took nothing for 3 x lag-ms is gone or hostile. */
    int64_t stuck = (int64_t)srv->cfg.lag_ms * 3;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t receiving = 0;
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &a->listeners[i])
        {
            struct conn *c = list_entry(n, struct conn, node);
            if (c->l.blocked && now - c->l.last_byte_ms > stuck) {
                listener_close(c, CLOSE_STUCK);
                continue;
            }
            /* Honest counting: a listener receives audio if the client acknowledged new
             * bytes lately, not if its socket buffer merely took them. Asked at most every
             * half window per listener: at 100k listeners a SIOCOUTQ a second each was 5 %
             * of the server's CPU, and every write interval (<= 2 s) still falls between. */
            int outq = 0;
            if (c->l.acked > 0 && now - c->l.acked_ms < RECEIVING_WINDOW_MS / 2) {
                receiving++;
                continue;
            }
            if (ioctl(c->io.fd, SIOCOUTQ, &outq) == 0 && outq >= 0 &&
                c->l.bytes >= (uint64_t)outq && c->l.bytes - (uint64_t)outq > c->l.acked) {
                c->l.acked = c->l.bytes - (uint64_t)outq;
                c->l.acked_ms = now;
            }
            if (c->l.acked > 0 && now - c->l.acked_ms < RECEIVING_WINDOW_MS)
                receiving++;
        }
        a->me->receiving[i] = receiving;
    }
}

void audience_close_all(struct server *srv)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &srv->aud.listeners[i])
        {
            listener_close(list_entry(n, struct conn, node), CLOSE_MOUNT_END);
        }
    }
    loop_timer_stop(&srv->loop, &srv->aud.flush_timer);
}

void audience_shed_stalled(struct server *srv, int n)
{
    int64_t now = srv->loop.now_ms;
    for (int i = 0; i < SHARED_MAX_SPACES && n > 0; i++) {
        struct list_node *it, *tmp;
        list_for_each_safe(it, tmp, &srv->aud.listeners[i])
        {
            struct conn *c = list_entry(it, struct conn, node);
            if (c->l.blocked && now - c->l.acked_ms > RECEIVING_WINDOW_MS) {
                srv->aud.me->c.shed_stalled++;
                listener_close(c, CLOSE_STUCK);
                if (--n == 0)
                    break;
            }
        }
    }
}

/* A Retry-After of 1-5 s, spread so that refused clients do not come back in lockstep. */
static int retry_after_s(void)
{
    unsigned r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (unsigned)time(NULL);
    return 1 + (int)(r % 5);
}

static void refuse(struct conn *c, int status, int retry_s, const char *why)
{
    char extra[64];
    snprintf(extra, sizeof(extra), "Retry-After: %d", retry_s);
    conn_error(c, status, extra, why);
}

/* The address joins are charged to: the peer, or the client a trusted proxy names last in
 * X-Forwarded-For. NULL entry: untracked (table full). */
static struct addr_entry *join_entry(struct conn *c, const struct http_request *req)
{
    struct server *srv = c->srv;
    if (c->trusted) {
        /* a trusted proxy: charge the client it names last in X-Forwarded-For */
        const struct http_header *xff = http_find_header(req, "X-Forwarded-For");
        struct addr_key k;
        if (!xff)
            return NULL;
        const char *v = xff->value, *last = v;
        for (size_t i = 0; i < xff->value_len; i++)
            if (v[i] == ',')
                last = v + i + 1;
        if (addr_key_parse(last, xff->value_len - (size_t)(last - v), &k) < 0)
            return NULL;
        return addr_table_get(&srv->limits, &k, srv->loop.now_ms);
    }
    return c->lim ? &srv->limits.e[c->lim - 1] : NULL;
}

/* Admission of a listener join to <slot>. Returns 1 if admitted, else 0 after answering. */
static int audience_admit(struct conn *c, const struct http_request *req, const char *mount)
{
    struct server *srv = c->srv;
    struct shared_counters *ctr = &srv->aud.me->c;
    int64_t now = srv->loop.now_ms;
    char tok[TOKEN_MAX];
    int ticketed = 0;
    /* A ticket is checked before anything else costs work: one HMAC. */
    const char *q = req->query;
    if (req->query_len > 7 && strncmp(q, "ticket=", 7) == 0) {
        size_t len = req->query_len - 7;
        const char *amp = memchr(q + 7, '&', len);
        if (amp)
            len = (size_t)(amp - (q + 7));
        struct token t;
        const char *why;
        if (len >= sizeof(tok) ||
            token_check(srv->secret, q + 7, len, time(NULL), &t, &why) < 0 ||
            strcmp(t.space, mount) != 0 || strncmp(t.role, "admit@", 6) != 0) {
            ctr->refused_ticket++;
            LOG_RATELIMITED(LOG_INFO, "admit", "#%llu %s: bad ticket for /%s",
                            (unsigned long long)c->id, c->peer, mount);
            conn_error(c, 403, NULL, "Bad or expired ticket");
            return 0;
        }
        int64_t admit_ms = strtoll(t.role + 6, NULL, 10);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (wall_ms + 250 < admit_ms) {
            ctr->refused_early++;
            refuse(c, 425, (int)((admit_ms - wall_ms + 999) / 1000), "Too early for this ticket");
            return 0;
        }
        ticketed = 1;
    }
    /* capacity: this worker's, and the whole server's */
    if (srv->aud.nlisteners >= srv->aud.max_here ||
        all_listeners(srv) >= (uint32_t)srv->cfg.max_listeners) {
        ctr->refused_capacity++;
        refuse(c, 503, retry_after_s(), "Server full, retry later");
        return 0;
    }
    /* Overload: this worker's listeners are about to be served late. Before the per-address
     * bucket, so a client is not charged for a join we could not take; tickets too, since
     * the listeners already in come first. */
    if (!overload_admits(&srv->aud.overload)) {
        ctr->refused_overload++;
        LOG_RATELIMITED(LOG_INFO, "admit", "#%llu %s: overloaded (pressure %.2f), refused",
                        (unsigned long long)c->id, c->peer, srv->aud.overload.pressure);
        refuse(c, 503, retry_after_s(), "Server busy, retry shortly");
        return 0;
    }
    if (ticketed)
        return 1; /* paced already by the waiting room */
    struct addr_entry *e = join_entry(c, req);
    int64_t wait;
    if (e && !bucket_take(&e->joins, srv->cfg.joins_per_ip, 2.0 * srv->cfg.joins_per_ip, now,
                          &wait)) {
        ctr->refused_joins_per_ip++;
        refuse(c, 429, (int)(wait / 1000) + 1, "Too many joins from your address");
        return 0;
    }
    if (!bucket_take(&srv->join_bucket, srv->cfg.joins_per_worker,
                     JOIN_BURST_S * srv->cfg.joins_per_worker, now, &wait)) {
        ctr->refused_join_rate++;
        refuse(c, 503, retry_after_s(), "Too many joins right now, retry shortly");
        return 0;
    }
    return 1;
}

/* GET /join/<space>: the waiting room. With it off, or room to admit now, no ticket is
 * needed; otherwise a signed ticket names the admit time, spread at this worker's join
 * rate, and the queue position that implies. */
static void audience_join_ticket(struct conn *c, const char *mount)
{
    struct server *srv = c->srv;
    int64_t now = srv->loop.now_ms;
    struct buf b = {0};
    if (!srv->cfg.waiting_room) {
        buf_printf(&b, "{\"ticket\":null,\"stream\":\"/%s\"}", mount);
    } else {
        double per_ms = srv->cfg.joins_per_worker / 1000.0;
        if (srv->next_admit_ms < now)
            srv->next_admit_ms = now;
        int64_t admit = srv->next_admit_ms;
        srv->next_admit_ms += (int64_t)(1.0 / per_ms) > 0 ? (int64_t)(1.0 / per_ms) : 1;
        long position = (long)((double)(admit - now) * per_ms + 0.999); /* tickets ahead */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t admit_wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + (admit - now);
        char role[32], tok[TOKEN_MAX];
        snprintf(role, sizeof(role), "admit@%lld", (long long)admit_wall);
        token_mint(srv->secret, mount, role, admit_wall / 1000 + 120, tok, sizeof(tok));
        srv->aud.me->c.tickets_issued++;
        buf_printf(&b,
                   "{\"ticket\":\"%s\",\"admit_at_ms\":%lld,\"position\":%ld,"
                   "\"stream\":\"/%s?ticket=%s\"}",
                   tok, (long long)admit_wall, position, mount, tok);
    }
    conn_respond_doc(c, 0, "application/json", b.data, b.len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: no-store");
    buf_free(&b);
}

/* The slot of the live space <mount>, or -1. */
static int audience_find(struct server *srv, const char *mount)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        const struct shared_space *ss = &srv->sh->spaces[i];
        if (__atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) == SLOT_LIVE &&
            strcmp(ss->mount, mount) == 0)
            return i;
    }
    return -1;
}

static const char *const cors_doc = "Access-Control-Allow-Origin: *\r\n"
                                    "Cache-Control: no-cache, no-store";

void audience_route(struct conn *c, const struct http_request *req)
{
    struct server *srv = c->srv;
    struct shared_counters *ctr = server_counters(srv, PORT_AUDIENCE);
    int head_only = req->method == HTTP_HEAD;
    if (req->method == HTTP_OPTIONS) {
        conn_respond_doc(c, 1, "text/plain", "", 0,
                         "Allow: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Origin: *\r\n"
                         "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
                         "Access-Control-Allow-Headers: Origin, Accept, Content-Type, "
                         "Icy-MetaData");
        return;
    }
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        conn_error(c, 405, "Allow: GET, HEAD, OPTIONS",
                   "The audience port serves listeners; sources go to the stage port");
        return;
    }
    char path[256];
    if (http_decode_path(req->path, req->path_len, path, sizeof(path)) < 0) {
        ctr->joins[JOIN_BAD_REQUEST]++;
        conn_error(c, 400, NULL, "Bad path");
        return;
    }
    const unsigned char *data;
    size_t len;
    const char *type;
    if (web_asset(path, &data, &len, &type) == 0) {
        conn_respond_doc(c, head_only, type, data, len, "Cache-Control: no-cache");
        return;
    }
    if (strcmp(path, "/status-json.xsl") == 0 || strcmp(path, "/metrics") == 0) {
        struct buf body = {0};
        int json = path[1] == 's';
        if (json)
            status_json(srv, &body);
        else
            status_metrics(srv, &body);
        conn_respond_doc(c, head_only,
                         json ? "application/json; charset=utf-8"
                              : "text/plain; version=0.0.4; charset=utf-8",
                         body.data, body.len, cors_doc);
        buf_free(&body);
        return;
    }
    size_t plen = strlen(path);
    if (strncmp(path, "/state/", 7) == 0 && plen > 12 && strcmp(path + plen - 5, ".json") == 0) {
        /* the stage's state: one small document per space, cacheable for a second, so
         * that listener pages polling it cost the origin nothing per listener behind a cache */
        path[plen - 5] = '\0';
        int slot = mount_name_ok(path + 7) ? audience_find(srv, path + 7) : -1;
        const struct shared_space *ss = slot >= 0 ? &srv->sh->spaces[slot] : NULL;
        uint32_t gen = ss ? __atomic_load_n(&ss->doc_gen, __ATOMIC_ACQUIRE) : 0;
        if (!ss || ss->doc_len[gen & 1] == 0) {
            conn_error(c, 404, NULL, "No stage state for this space");
            return;
        }
        conn_respond_doc(c, head_only, "application/json; charset=utf-8", ss->doc[gen & 1],
                         ss->doc_len[gen & 1],
                         "Access-Control-Allow-Origin: *\r\nCache-Control: public, max-age=1");
        return;
    }
    audience_check_slots(srv); /* this process may not have been woken since a change */
    if (strncmp(path, "/join/", 6) == 0) {
        if (!mount_name_ok(path + 6) || audience_find(srv, path + 6) < 0) {
            ctr->joins[JOIN_NOT_FOUND]++;
            conn_error(c, 404, NULL, "No such mount");
            return;
        }
        audience_join_ticket(c, path + 6);
        return;
    }
    const char *mount = path + 1;
    int slot = mount_name_ok(mount) ? audience_find(srv, mount) : -1;
    if (slot < 0) {
        ctr->joins[JOIN_NOT_FOUND]++;
        conn_error(c, 404, NULL, "No such mount");
        return;
    }
    if (!head_only && !audience_admit(c, req, mount)) {
        ctr->joins[JOIN_REFUSED]++;
        return;
    }
    conn_head_done(c);
    listener_start(c, slot, head_only);
}

void audience_count_now(struct server *srv)
{
    /* at most once a second, whoever asks: status may be polled by every listener page */
    if (srv->loop.now_ms - srv->aud.counted_ms >= 1000)
        audience_tick(srv, 1);
}
