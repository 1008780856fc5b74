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
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "audience/audience.h"
#include "http/request.h"
#include "net/net.h"
#include "relay/feedproto.h"
#include "token/token.h"
#include "util/log.h"
#include "web/web.h"

#define RECEIVING_WINDOW_MS 5000
#define COUNT_MS 200 /* the count at least this far apart: every worker tick (250 ms) */
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

static void audience_flush_all(struct audience *a);

/* What audience_init (and a reload) take from the config: listeners allowed here, and the
 * join ceiling. */
static void audience_derive(struct audience *a)
{
    /* The kernel spreads connections over the workers by a hash, a few % unevenly: a share
     * cut exactly refused 277 of 100,000 joins at max-listeners 100,000 while other workers
     * had room. So an eighth more than the share, as far as this process's descriptors go
     * (keeping 1,000 for sources, stage, status and the spare). */
    uint32_t share = (uint32_t)(a->cfg->max_listeners / (int)a->sh->nworkers);
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
    a->join_rate = a->cfg->joins_per_worker;
    if (a->join_rate <= 0) {
        int per = a->cfg->joins_per_second / (int)a->sh->nworkers;
        a->join_rate = per > 0 ? per : 1;
    }
}

void audience_init(struct audience *a)
{
    list_init(&a->feeds);
    list_init(&a->hls_waiting);
    a->hls_nwaiting = 0;
    list_init(&a->replays);
    a->nreplays = 0;
    a->hls_counted_s = -1;
    a->shed5 = a->took5 = 0;
    a->pace_ms = a->loop->now_ms;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        list_init(&a->listeners[i]);
        a->gen[i] = __atomic_load_n(&a->sh->spaces[i].gen, __ATOMIC_ACQUIRE);
    }
    a->me = &a->sh->workers[a->worker_index];
    if (!a->continued)
        memset(a->me, 0, sizeof(*a->me));
    a->me->pid = (int32_t)getpid();
    a->me->hls_blocked_now = 0;
    audience_derive(a);
    a->access_fd = -1;
    a->access_path[0] = '\0';
    if (a->cfg->access_log[0])
        audience_reopen_log(a);
    a->overload = (struct overload){0};
    a->flush_start_us = a->flush_period_us = a->flush_dur_us = 0;
}

void audience_init_continue(struct audience *a)
{
    a->continued = 1;
    audience_init(a);
}

void audience_reconfigure(struct audience *a)
{
    audience_derive(a);
    if (strcmp(a->access_path, a->cfg->access_log) != 0)
        audience_reopen_log(a);
}

void audience_reopen_log(struct audience *a)
{
    if (a->access_fd >= 0)
        close(a->access_fd);
    a->access_fd = -1;
    snprintf(a->access_path, sizeof(a->access_path), "%s", a->cfg->access_log);
    if (!a->access_path[0])
        return;
    /* O_APPEND: every audience process appends its own lines, each one write() of less than
     * PIPE_BUF bytes, so lines never interleave */
    a->access_fd = open(a->access_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (a->access_fd == -1)
        log_error("access", "access-log %s: %s: no access log", a->access_path, strerror(errno));
}

void audience_free(struct audience *a)
{
    if (a->access_fd >= 0)
        close(a->access_fd);
    a->access_fd = -1;
}

void audience_log_session(struct audience *a, const struct conn *c, const char *why)
{
    if (a->access_fd < 0)
        return;
    const struct listener_state *l = LST(c);
    char when[32], line[512];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int64_t ms = a->loop->now_ms - l->joined_ms;
    char mount[72];
    log_escape(mount, sizeof(mount), a->sh->spaces[l->slot].mount,
               strnlen(a->sh->spaces[l->slot].mount, sizeof(a->sh->spaces[l->slot].mount)));
    /* time, client, space, seconds, bytes, reason: tab-separated (the reason has spaces) */
    int n = snprintf(line, sizeof(line), "%s\t%s\t/%s\t%lld.%03lld\t%llu\t%s\n", when, c->peer,
                     mount, (long long)(ms / 1000), (long long)(ms % 1000),
                     (unsigned long long)l->bytes, why);
    if (n <= 0 || (size_t)n >= sizeof(line))
        return;
    if (write(a->access_fd, line, (size_t)n) != n)
        LOG_RATELIMITED(LOG_WARN, "access", "access-log %s: %s", a->access_path,
                        strerror(errno));
}

/* Samples this process's overload pressure (every tick, 250 ms) and publishes it. */
/* The waiting room admits at the rate this worker is measured to keep up with, not only at
 * the configured one: while it refuses joins for overload its pace is cut by a fifth (at most
 * once a second, down to a twentieth of its share), and while its pressure is low it grows
 * back by a fiftieth of its share a tick (about 8 % a second) to its share of
 * waiting-room-rate. Tickets given meanwhile are spaced at the pace: the pre-queue's places
 * and the queue after T0 are laid out at what the box takes. Called every tick with the
 * worker's state; returns the pace (joins a second). */
static double waiting_room_pace(struct audience *a, int refusing, double pressure)
{
    double share = (double)a->cfg->waiting_room_rate / a->sh->nworkers;
    int64_t now = a->loop->now_ms;
    if (a->wr_pace <= 0 || a->wr_pace > share)
        a->wr_pace = share; /* first use, or a reload lowered the rate */
    if (refusing && now - a->wr_cut_ms >= 1000) {
        a->wr_pace = a->wr_pace * 0.8 > share / 20 ? a->wr_pace * 0.8 : share / 20;
        a->wr_cut_ms = now;
    } else if (!refusing && pressure < 0.5 && a->wr_pace < share) {
        a->wr_pace = a->wr_pace + share / 50 < share ? a->wr_pace + share / 50 : share;
    }
    __atomic_store_n(&a->me->waiting_room_pace, (uint32_t)(a->wr_pace + 0.5), __ATOMIC_RELAXED);
    return a->wr_pace;
}

static void audience_sample_overload(struct audience *a)
{
    int64_t lag = a->loop->lag_peak_ms;
    a->loop->lag_peak_ms = 0;
    /* the last round's share of its period; a period still running counts as longer, so a
     * busy figure does not outlive the rounds that made it */
    double busy = 0;
    if (a->flush_start_us > 0 && a->flush_period_us > 0) {
        int64_t period = a->flush_period_us, since = clock_us() - a->flush_start_us;
        if (since > period)
            period = since;
        busy = (double)a->flush_dur_us / (double)period;
    }
    double p = overload_sample(&a->overload, a->loop->now_ms, lag, a->cfg->overload_lag_ms,
                               busy);
    __atomic_store_n(&a->me->pressure_milli, (uint32_t)(p * 1000 + 0.5), __ATOMIC_RELAXED);
    uint32_t was = a->me->overloaded, now = (uint32_t)!overload_admits(&a->overload);
    __atomic_store_n(&a->me->overloaded, now, __ATOMIC_RELAXED);
    waiting_room_pace(a, now, p);
    if (now != was)
        log_warn("admit", "worker %d %s joins: pressure %.2f (loop lag %lld ms, flush %.0f %%)",
                 a->worker_index, now ? "refusing" : "admitting again", p, (long long)lag,
                 busy * 100);
}

/* Listener connections in all workers, now: each worker counts its own in shared memory.
 * (sh->total_connections is the same sum, refreshed once a second: at 5,000 joins/s that is
 * too late for a cap.) Two workers admitting at once may pass the cap by one each. */
static uint32_t all_listeners(const struct audience *a)
{
    uint32_t total = 0;
    for (uint32_t w = 0; w < a->sh->nworkers; w++)
        total += __atomic_load_n(&a->sh->workers[w].listener_connections, __ATOMIC_RELAXED);
    return total;
}

/* Milliseconds between writes to each listener, from the whole audience's size. */
static int64_t audience_interval_ms(struct audience *a)
{
    uint64_t total = a->sh->total_connections;
    if (total < a->nlisteners)
        total = a->nlisteners;
    int64_t ms = (int64_t)(total * 1000 / (uint64_t)a->cfg->write_budget);
    return ms > a->cfg->max_batch_ms ? a->cfg->max_batch_ms : ms;
}

static void flush_timer_cb(struct loop *loop, struct loop_timer *t)
{
    struct audience *a = (struct audience *)((char *)t - offsetof(struct audience, flush_timer));
    (void)loop;
    audience_flush_all(a);
}

/* Closes the listeners of slots whose space ended or restarted. */
static void audience_check_slots(struct audience *a)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t gen = __atomic_load_n(&a->sh->spaces[i].gen, __ATOMIC_ACQUIRE);
        if (gen == a->gen[i])
            continue;
        a->gen[i] = gen;
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &a->listeners[i])
        {
            struct conn *c = list_entry(n, struct conn, node);
            if (LST(c)->gen != gen)
                listener_close(c, a->sh->spaces[i].state == SLOT_FREE ? CLOSE_MOUNT_END
                                                                        : CLOSE_RESTART);
        }
    }
}

void audience_on_wake(struct audience *a)
{
    audience_check_slots(a);
    feed_flush_all(a);
    hls_on_wake(a);
    int64_t interval = audience_interval_ms(a);
    int64_t since = a->loop->now_ms - a->last_flush_ms;
    if (since >= interval) {
        loop_timer_stop(a->loop, &a->flush_timer);
        audience_flush_all(a);
    } else if (a->flush_timer.due_ms == 0) {
        loop_timer_start(a->loop, &a->flush_timer, interval - since, flush_timer_cb);
    }
}

static void audience_flush_all(struct audience *a)
{
    int64_t t0 = clock_us();
    if (a->flush_start_us > 0)
        a->flush_period_us = t0 - a->flush_start_us;
    a->flush_start_us = t0;
    a->last_flush_ms = a->loop->now_ms;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &a->listeners[i])
        {
            struct conn *c = list_entry(n, struct conn, node);
            if (!LST(c)->blocked)
                listener_flush(c);
        }
    }
    a->flush_dur_us = clock_us() - t0;
}

void audience_tick(struct audience *a, int second)
{
    int64_t now = a->loop->now_ms;
    audience_sample_overload(a);
    feed_tick(a);
    hls_tick(a);
    replay_tick(a);
    /* Every tick (250 ms in a worker) the count of who received audio lately, so that during
     * a join storm the count shown is at most a tick behind the listeners who joined (once a
     * second, it was a second of joins short). Once a second also the kernel is asked again
     * for listeners not seen progressing lately, and who is stuck is closed. */
    if (!second && now - a->counted_ms < COUNT_MS)
        return;
    a->counted_ms = now;
    /* A listener whose socket took nothing for 3 x lag-ms is gone or hostile. */
    int64_t stuck = (int64_t)a->cfg->lag_ms * 3;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t receiving = 0;
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &a->listeners[i])
        {
            struct conn *c = list_entry(n, struct conn, node);
            struct listener_state *l = LST(c);
            /* a socket with room now (this process was stopped, the client was not) is
             * not stuck: its EPOLLOUT is waiting in this very loop iteration */
            if (second && l->blocked && now - l->last_byte_ms > stuck &&
                !net_writable_now(c->io.fd)) {
                listener_close(c, CLOSE_STUCK);
                continue;
            }
            /* Honest counting: a listener receives audio if the client acknowledged new
             * bytes lately, not if its socket buffer merely took them. Asked at most every
             * half window per listener: at 100k listeners a SIOCOUTQ a second each was 5 %
             * of the server's CPU, and every write interval (<= 2 s) still falls between. */
            int outq = 0;
            if (l->acked > 0 && now - l->acked_ms < RECEIVING_WINDOW_MS / 2) {
                receiving++;
                continue;
            }
            /* between seconds the kernel is asked only about a listener not counted yet (a
             * new one): one that stopped taking bytes costs one SIOCOUTQ a second, as before */
            if ((second || l->acked == 0) && ioctl(c->io.fd, SIOCOUTQ, &outq) == 0 && outq >= 0 &&
                l->bytes >= (uint64_t)outq && l->bytes - (uint64_t)outq > l->acked) {
                l->acked = l->bytes - (uint64_t)outq;
                l->acked_ms = now;
            }
            if (l->acked > 0 && now - l->acked_ms < RECEIVING_WINDOW_MS)
                receiving++;
        }
        a->me->receiving[i] = receiving;
    }
}

void audience_close_all(struct audience *a)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &a->listeners[i])
        {
            listener_close(list_entry(n, struct conn, node), CLOSE_MOUNT_END);
        }
    }
    feed_close_all(a);
    hls_close_all(a);
    replay_close_all(a);
    loop_timer_stop(a->loop, &a->flush_timer);
}

void audience_on_fd_limit(void *arg, int port)
{
    struct audience *a = arg;
    int n = 16;
    (void)port;
    int64_t now = a->loop->now_ms;
    for (int i = 0; i < SHARED_MAX_SPACES && n > 0; i++) {
        struct list_node *it, *tmp;
        list_for_each_safe(it, tmp, &a->listeners[i])
        {
            struct conn *c = list_entry(it, struct conn, node);
            if (LST(c)->blocked && now - LST(c)->acked_ms > RECEIVING_WINDOW_MS) {
                a->me->c.shed_stalled++;
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

/* Notes a join refused for want of room now (overload or the join ceiling: <shed> 1) or
 * taken (0) in the ~5 s decaying sums. */
static void pace_note(struct audience *a, int shed)
{
    int64_t now = a->loop->now_ms;
    double k = now > a->pace_ms ? exp(-(double)(now - a->pace_ms) / 5000.0) : 1.0;
    a->shed5 = a->shed5 * k + (shed ? 1.0 : 0.0);
    a->took5 = a->took5 * k + (shed ? 0.0 : 1.0);
    a->pace_ms = now;
}

/* Retry-After for a join refused for overload or by the join ceiling: spread over the time
 * this worker needs to take the ones it refused lately (~5 s decaying sums) at <per_s> joins
 * a second, 1..W s with W = refused / per_s between 5 and 60 s. The ceiling knows its rate;
 * overload takes the pace it has been taking joins (taken / 5 s, at least 2/s). A fixed
 * 1-5 s brought a refused storm straight back: at 100,000 listeners through the waiting
 * room, retries after 1-5 s made 2.6 connections per listener and the workers refused
 * 103,000 joins. */
static int backlog_retry_s(struct audience *a, double per_s)
{
    double w = a->shed5 / (per_s > 2.0 ? per_s : 2.0);
    int window = w < 5.0 ? 5 : w > 60.0 ? 60 : (int)w;
    unsigned r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (unsigned)time(NULL);
    return 1 + (int)(r % (unsigned)window);
}

static void refuse(struct conn *c, int status, int retry_s, const char *why)
{
    char extra[64];
    snprintf(extra, sizeof(extra), "Retry-After: %d", retry_s);
    conn_error(c, status, extra, why);
}

/* The address joins are charged to: the peer, or the client a trusted proxy names last in
 * X-Forwarded-For, into <key>. Returns its entry (NULL: untracked, the table being full), and
 * in <*known> whether <key> could be had at all. */
struct addr_entry *audience_client(struct conn *c, const struct http_request *req,
                                   struct addr_key *key, int *known)
{
    struct audience *a = audience_of(c);
    *known = 0;
    if (c->trusted) {
        /* a trusted proxy: charge the client it names last in X-Forwarded-For */
        const struct http_header *xff = http_find_header(req, "X-Forwarded-For");
        if (!xff)
            return NULL;
        const char *v = xff->value, *last = v;
        for (size_t i = 0; i < xff->value_len; i++)
            if (v[i] == ',')
                last = v + i + 1;
        if (addr_key_parse(last, xff->value_len - (size_t)(last - v), key) < 0)
            return NULL;
        *known = 1;
        return addr_table_get(&a->hub->limits, key, a->loop->now_ms);
    }
    if (c->lim) {
        *key = a->hub->limits.e[c->lim - 1].key;
        *known = 1;
        return &a->hub->limits.e[c->lim - 1];
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(c->io.fd, (struct sockaddr *)&ss, &sl) == 0) {
        addr_key_from_sockaddr(&ss, key);
        *known = 1;
    }
    return NULL;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The wall-clock time of loop-clock time <ms>. The queue is kept on the loop clock, and read
 * back through one offset, so that tickets queued 1/3 ms apart name times 1/3 ms apart (the
 * time spent answering each does not creep in) and one place handed out twice names the same
 * time. The offset follows a step of the wall clock of over a millisecond. */
static int64_t admit_wall_us(struct audience *a, double ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t off = wall_us() - ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    if (llabs(off - a->wall_offset_us) > 1000)
        a->wall_offset_us = off;
    return a->wall_offset_us + (int64_t)(ms * 1000.0);
}

/* Checks the ticket in <q> (<len> bytes) for <mount> and the client <key>. Returns 1 if it
 * admits now, 0 after answering. Nothing is marked used here: see audience_admit(). */
static int ticket_ok(struct conn *c, const char *q, size_t len, const char *mount,
                     const struct addr_key *key, int known, struct token *t)
{
    struct audience *a = audience_of(c);
    struct shared_counters *ctr = &a->me->c;
    const char *why;
    if (token_check_bound(a->secret, TOKEN_ADMIT, q, len, time(NULL), mount,
                          known ? key->b : NULL, t, &why) < 0) {
        ctr->refused_ticket++;
        LOG_RATELIMITED(LOG_INFO, "admit", "#%llu %s: bad ticket for /%s: %s",
                        (unsigned long long)c->id, c->peer, mount, why);
        char msg[192];
        snprintf(msg, sizeof(msg), "Bad or expired ticket (%s): get a new one at /join/%.63s",
                 why, mount);
        conn_error(c, 403, NULL, msg);
        return 0;
    }
    int64_t now_us = wall_us();
    if (now_us + 250000 < t->admit_us) {
        ctr->refused_early++;
        refuse(c, 425, (int)((t->admit_us - now_us + 999999) / 1000000),
               "Too early for this ticket");
        return 0;
    }
    return 1;
}

/* Admission of a listener join to <slot>. Returns 1 if admitted, else 0 after answering.
 *
 * With the waiting room on, a join needs a ticket (GET /join/<space>); a ticket is good once,
 * from the address it was issued to, and its join is still charged to that address's bucket
 * (only the worker's join rate is skipped: the waiting room paced it already). */

/* Issue 10, item 4: a listener this server does not take now (full, or stopping) is sent with
 * a 307 to the same path on a relay with room, if its relays' reports name one. Relay feeds
 * are not redirected: a relay picks its upstreams itself. Returns 1 if <c> was answered. */
static int redirect_to_edge(struct conn *c, const struct http_request *req, int slot,
                            int draining)
{
    struct audience *a = audience_of(c);
    const char *rv;
    size_t rvlen;
    char hdr[480];
    if (slot < 0 || (http_query_value(req, "relay", &rv, &rvlen) == 0) ||
        !feed_pick_edge(a, slot, req, hdr, sizeof(hdr)))
        return 0;
    if (draining)
        a->me->c.redirects_draining++;
    else
        a->me->c.redirects_full++;
    LOG_RATELIMITED(LOG_INFO, "admit", "#%llu %s: %s, sent to a relay (%s)",
                    (unsigned long long)c->id, c->peer, draining ? "stopping" : "full", hdr + 10);
    conn_error(c, 307, hdr, draining ? "This server is stopping: listen on this relay"
                                     : "This server is full: listen on this relay");
    return 1;
}

/* Admission of a listener (or a relay's feed) of <mount>: 1 if it may join, 0 after a
 * refusal, -1 after a redirect to a relay (a join elsewhere, not a refused one). */
static int audience_admit(struct conn *c, const struct http_request *req, const char *mount)
{
    struct audience *a = audience_of(c);
    struct shared_counters *ctr = &a->me->c;
    int64_t now = a->loop->now_ms;
    struct addr_key key;
    int known;
    struct addr_entry *e = audience_client(c, req, &key, &known);
    struct token t;
    int ticketed = 0;
    /* A ticket is checked before anything else costs work: one HMAC. */
    const char *q = req->query;
    if (req->query_len > 7 && strncmp(q, "ticket=", 7) == 0) {
        size_t len = req->query_len - 7;
        const char *amp = memchr(q + 7, '&', len);
        if (amp)
            len = (size_t)(amp - (q + 7));
        if (!ticket_ok(c, q + 7, len, mount, &key, known, &t))
            return 0;
        ticketed = 1;
    } else if (a->cfg->waiting_room) {
        char hdr[300], msg[200];
        ctr->refused_no_ticket++;
        snprintf(hdr, sizeof(hdr),
                 "Location: /join/%.63s\r\nLink: </join/%.63s>; rel=\"waiting-room\"", mount,
                 mount);
        snprintf(msg, sizeof(msg),
                 "This stream has a waiting room: GET /join/%.63s for a ticket, then join with "
                 "the stream URL it names", mount);
        conn_error(c, 403, hdr, msg);
        return 0;
    }
    /* capacity: this worker's, and the whole server's */
    if (a->nlisteners >= a->max_here ||
        all_listeners(a) >= (uint32_t)a->cfg->max_listeners) {
        if (redirect_to_edge(c, req, audience_find(a, mount), 0))
            return -1;
        ctr->refused_capacity++;
        refuse(c, 503, retry_after_s(), "Server full, retry later");
        return 0;
    }
    /* Overload: this worker's listeners are about to be served late. Before the per-address
     * bucket, so a client is not charged for a join we could not take; tickets too, since
     * the listeners already in come first. */
    if (!overload_admits(&a->overload)) {
        ctr->refused_overload++;
        pace_note(a, 1);
        int retry = backlog_retry_s(a, a->took5 / 5.0);
        LOG_RATELIMITED(LOG_INFO, "admit", "#%llu %s: overloaded (pressure %.2f), refused, "
                        "Retry-After %d s", (unsigned long long)c->id, c->peer,
                        a->overload.pressure, retry);
        refuse(c, 503, retry, "Server busy, retry shortly");
        return 0;
    }
    int64_t wait;
    if (e && !bucket_take(&e->joins, a->cfg->joins_per_ip, 2.0 * a->cfg->joins_per_ip, now,
                          &wait)) {
        ctr->refused_joins_per_ip++;
        refuse(c, 429, (int)(wait / 1000) + 1, "Too many joins from your address");
        return 0;
    }
    if (ticketed) {
        /* last, so that a refusal above leaves the ticket good for a retry */
        int rc = shared_ticket_use(a->sh, t.id, t.expiry, time(NULL));
        if (rc == -ENOSPC) {
            ctr->refused_capacity++;
            refuse(c, 503, retry_after_s(), "Too many tickets in use, retry shortly");
            return 0;
        }
        if (rc < 0) {
            ctr->refused_ticket_used++;
            LOG_RATELIMITED(LOG_INFO, "admit", "#%llu %s: ticket for /%s used again",
                            (unsigned long long)c->id, c->peer, mount);
            char msg[128];
            snprintf(msg, sizeof(msg), "This ticket was used already: get a new one at /join/%.63s",
                     mount);
            conn_error(c, 403, NULL, msg);
            return 0;
        }
        pace_note(a, 0);
        return 1; /* paced already by the waiting room */
    }
    if (!bucket_take(&a->join_bucket, a->join_rate,
                     JOIN_BURST_S * a->join_rate, now, &wait)) {
        ctr->refused_join_rate++;
        pace_note(a, 1);
        refuse(c, 503, backlog_retry_s(a, a->join_rate), "Too many joins right now, retry shortly");
        return 0;
    }
    pace_note(a, 0);
    return 1;
}

/* GET /join/<space>: the waiting room. With it off, no ticket is needed; otherwise a signed
 * ticket names the admit time, spread at this worker's join rate, and the queue position that
 * implies. Asking is limited per address (the address's ticket bucket, joins-per-ip), and an
 * address that asks again while its place is still ahead gets a new ticket for the same place:
 * one client's retries do not push the queue back for everyone (a new place per worker at
 * most, as each worker keeps its own queue and table). */
static void audience_join_ticket(struct conn *c, const struct http_request *req,
                                 const char *mount)
{
    struct audience *a = audience_of(c);
    int64_t now = a->loop->now_ms;
    struct addr_key key;
    int known;
    struct addr_entry *e = audience_client(c, req, &key, &known);
    int64_t wait;
    if (e && !bucket_take(&e->tickets, a->cfg->joins_per_ip, 2.0 * a->cfg->joins_per_ip, now,
                          &wait)) {
        a->me->c.refused_tickets_per_ip++;
        refuse(c, 429, (int)(wait / 1000) + 1, "Too many waiting-room requests from your address");
        return;
    }
    struct buf b = {0};
    if (!a->cfg->waiting_room) {
        buf_printf(&b, "{\"ticket\":null,\"stream\":\"/%s\"}", mount);
    } else if (!known) {
        conn_error(c, 400, NULL, "No client address to issue a ticket to");
        return;
    } else {
        /* the waiting room's pace, not the join ceiling: the ceiling is set high so that the
         * machine's pressure decides, but tickets must be spread at a rate it can take */
        double per_ms = waiting_room_pace(a, 0, 1.0) / 1000.0; /* as measured (no step) */
        double admit;
        int slot = audience_find(a, mount);
        int64_t t0_s = slot >= 0 ? __atomic_load_n(&a->sh->spaces[slot].starts_at_s,
                                                   __ATOMIC_RELAXED) : 0;
        if (e && e->ticket_admit_ms > (double)now) {
            admit = e->ticket_admit_ms; /* its place, again */
        } else if (t0_s > time(NULL)) { /* a scheduled space: a place in its pre-queue */
            uint64_t rnd = 0;
            if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
                rnd = (uint64_t)now;
            admit_wall_us(a, 0); /* the wall clock's offset, fresh */
            int64_t t0_ms = (t0_s * 1000000 - a->wall_offset_us + 999) / 1000; /* not before */
            admit = prequeue_place(&a->prequeue[slot], t0_ms, (double)now, per_ms, rnd);
            if (admit < (double)t0_ms)
                a->me->c.prequeue_early++;
            else
                a->me->c.prequeue_late++;
            if (e)
                e->ticket_admit_ms = admit;
        } else {
            if (a->next_admit_ms < (double)now)
                a->next_admit_ms = (double)now;
            admit = a->next_admit_ms;
            a->next_admit_ms += 1.0 / per_ms;
            if (e)
                e->ticket_admit_ms = admit;
        }
        long position = (long)((admit - (double)now) * per_ms + 0.999); /* tickets ahead */
        struct token t = {.purpose = TOKEN_ADMIT};
        snprintf(t.space, sizeof(t.space), "%.63s", mount);
        t.admit_us = admit_wall_us(a, admit);
        t.expiry = t.admit_us / 1000000 + 60;
        memcpy(t.addr, key.b, sizeof(t.addr));
        char tok[TOKEN_MAX];
        if (token_mint(a->secret, &t, tok, sizeof(tok)) < 0) {
            conn_error(c, 500, NULL, "Could not make a ticket");
            return;
        }
        a->me->c.tickets_issued++;
        buf_printf(&b,
                   "{\"ticket\":\"%s\",\"admit_at_ms\":%lld.%03lld,\"position\":%ld,"
                   "\"stream\":\"/%s?ticket=%s\"",
                   tok, (long long)(t.admit_us / 1000), (long long)(t.admit_us % 1000), position,
                   mount, tok);
        if (t0_s > time(NULL)) /* the lobby's pre-queue: a place before (or from) the start */
            buf_printf(&b, ",\"prequeue\":true,\"starts_at\":%lld", (long long)t0_s);
        buf_puts(&b, "}");
    }
    conn_respond_doc(c, 0, "application/json", b.data, b.len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: no-store");
    buf_free(&b);
}

int audience_find(struct audience *a, const char *mount)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        const struct shared_space *ss = &a->sh->spaces[i];
        if (__atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) == SLOT_LIVE &&
            strcmp(ss->mount, mount) == 0)
            return i;
    }
    return -1;
}

/* 1 if <mount> names a rendition (issue 11) the configuration turns on, of a live space. */
static int rendition_wanted(struct audience *a, const char *mount)
{
    size_t n;
    int kind = rendition_mount_kind(mount, &n);
    int kbps = kind == RENDITION_AAC ? a->cfg->aac_kbps : kind == RENDITION_MP3 ? a->cfg->mp3_kbps : 0;
    char base[64];
    if (kbps <= 0 || n >= sizeof(base))
        return 0;
    memcpy(base, mount, n);
    base[n] = '\0';
    int src = audience_find(a, base);
    return src >= 0 && !shared_is_rendition(&a->sh->spaces[src]);
}

/* 1 if <slot> is a rendition whose encoder is off while rendition-max-encoders run: a
 * listener would start one more (issue 11: the main process's CPU is bounded). */
static int rendition_busy(struct audience *a, int slot)
{
    const struct shared_space *ss = &a->sh->spaces[slot];
    return shared_is_rendition(ss) && !__atomic_load_n(&ss->rendition_on, __ATOMIC_ACQUIRE) &&
           __atomic_load_n(&a->sh->main.rendition_encoders, __ATOMIC_RELAXED) >=
               (uint64_t)a->cfg->rendition_max_encoders;
}

static const char *const cors_doc = "Access-Control-Allow-Origin: *\r\n"
                                    "Cache-Control: no-cache, no-store";

/* The dashboard's gate (issue 9): 1 if no admin-key is set or <req> carries it (?key= or
 * Authorization: Bearer); else answers 401 (no key given) or 403 (a wrong one) and returns 0.
 * The ?key= value is percent-decoded as a browser encodes it (issue 10), '+' kept: a key with
 * + / = % works whether the address bar sent it as typed or encoded (%2B %2F %3D %25); a bearer
 * is taken as it comes. Compared in constant time (hashed first: the length does not show). */
static int admin_ok(struct conn *c, const struct audience *a, const struct http_request *req)
{
    const char *want = a->cfg->admin_key;
    size_t wlen = strlen(want);
    if (wlen == 0)
        return 1;
    const char *got = NULL;
    size_t glen = 0;
    char decoded[sizeof(a->cfg->admin_key) + 1]; /* one more: a longer guess is wrong, not cut */
    const struct http_header *h = http_find_header(req, "Authorization");
    if (h && h->value_len > 7 && strncasecmp(h->value, "Bearer ", 7) == 0) {
        got = h->value + 7;
        glen = h->value_len - 7;
    } else if (http_query_value(req, "key", &got, &glen) == 0) {
        int n = http_unescape(got, glen, 0, decoded, sizeof(decoded));
        got = decoded;
        glen = n < 0 ? 0 : (size_t)n; /* malformed or too long: given, and wrong (the key
                                          is never empty) */
    }
    if (!got) {
        conn_error(c, 401, "WWW-Authenticate: Bearer realm=\"rostrum dashboard\"",
                   "The dashboard needs the admin key: ?key=... or Authorization: Bearer");
        return 0;
    }
    if (!token_secret_equal(got, glen, want, wlen)) {
        conn_error(c, 403, NULL, "Wrong admin key");
        return 0;
    }
    return 1;
}

/* The relay feed's gate (issue 10): 1 if no relay-key is set or <req> carries it
 * (X-Relay-Key, or ?key= percent-decoded as for the dashboard); else answers 403 and returns 0.
 * Compared in constant time. */
static int relay_key_ok(struct conn *c, const struct audience *a, const struct http_request *req)
{
    const char *want = a->cfg->relay_key;
    size_t wlen = strlen(want);
    if (wlen == 0)
        return 1;
    const char *got = NULL;
    size_t glen = 0;
    char decoded[sizeof(a->cfg->relay_key) + 1];
    const struct http_header *h = http_find_header(req, "X-Relay-Key");
    if (h) {
        got = h->value;
        glen = h->value_len;
    } else if (http_query_value(req, "key", &got, &glen) == 0) {
        int n = http_unescape(got, glen, 0, decoded, sizeof(decoded));
        got = decoded;
        glen = n < 0 ? 0 : (size_t)n;
    }
    if (!got || !token_secret_equal(got, glen, want, wlen)) {
        audience_of(c)->me->c.refused_relay_key++;
        LOG_RATELIMITED(LOG_INFO, "feed", "#%llu %s: relay feed refused: %s relay key",
                        (unsigned long long)c->id, c->peer, got ? "wrong" : "no");
        conn_error(c, 403, NULL, got ? "Wrong relay key" : "This server needs a relay key "
                                                           "(X-Relay-Key) for relay feeds");
        return 0;
    }
    return 1;
}

/* GET /relay.json: the live spaces a relay should pull, and each stream's identity. Small and
 * cheap: relays poll it every second. */
static void relay_index(struct conn *c, struct audience *a, int head_only)
{
    struct buf b = {0};
    buf_printf(&b, "{\"feed\":%d,\"spaces\":[", FEED_VERSION);
    int first = 1;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        const struct shared_space *ss = &a->sh->spaces[i];
        if (__atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) != SLOT_LIVE || shared_is_rendition(ss))
            continue; /* a relay makes its renditions itself, from the Ogg stream */
        buf_printf(&b, "%s{\"mount\":", first ? "" : ",");
        buf_json_str(&b, ss->mount, strnlen(ss->mount, sizeof(ss->mount)));
        buf_printf(&b, ",\"serial\":%u,\"epoch\":%u,\"head\":%llu}", ss->feed_serial,
                   ss->feed_epoch, (unsigned long long)ring_head(shared_ring(a->sh, i)));
        first = 0;
    }
    buf_puts(&b, "]}");
    conn_respond_doc(c, head_only, "application/json", b.data, b.len, cors_doc);
    buf_free(&b);
}

void audience_route(void *arg, struct conn *c, const struct http_request *req)
{
    struct audience *a = arg;
    struct shared_counters *ctr = conn_counters(c);
    int head_only = req->method == HTTP_HEAD;
    if (req->method == HTTP_OPTIONS) {
        conn_respond_doc(c, 1, "text/plain", "", 0,
                         "Allow: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Origin: *\r\n"
                         "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
                         "Access-Control-Allow-Headers: Origin, Accept, Content-Type, "
                         "Icy-MetaData");
        return;
    }
    int beacon = req->path_len > 8 && memcmp(req->path, "/beacon/", 8) == 0; /* issue 11 */
    int react = (req->path_len > 7 && memcmp(req->path, "/react/", 7) == 0) ||
                (req->path_len > 6 && memcmp(req->path, "/hand/", 6) == 0); /* issue 12 */
    if (req->method != HTTP_GET && req->method != HTTP_HEAD &&
        !((beacon || react) && req->method == HTTP_POST)) {
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
    if (strncmp(path, "/dashboard", 10) == 0 &&
        (!path[10] || strcmp(path + 10, ".html") == 0 || strcmp(path + 10, ".json") == 0)) {
        if (!admin_ok(c, a, req))
            return;
        if (strcmp(path + 10, ".json") == 0) {
            struct buf body = {0};
            status_dashboard(a, &body);
            conn_respond_doc(c, head_only, "application/json; charset=utf-8", body.data, body.len,
                             "Cache-Control: no-cache, no-store");
            buf_free(&body);
            return;
        }
        snprintf(path, sizeof(path), "/dashboard.html");
    }
    if (web_asset(path, &data, &len, &type) == 0) {
        conn_respond_doc(c, head_only, type, data, len, "Cache-Control: no-cache");
        return;
    }
    if (strcmp(path, "/relay.json") == 0) {
        relay_index(c, a, head_only);
        return;
    }
    if (strcmp(path, "/status-json.xsl") == 0 || strcmp(path, "/metrics") == 0) {
        struct buf body = {0};
        int json = path[1] == 's';
        if (json)
            status_json(a, &body);
        else
            status_metrics(a, &body);
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
        int slot = mount_name_ok(path + 7) ? audience_find(a, path + 7) : -1;
        char doc[SHARED_STATE_MAX];
        int dlen = slot >= 0 ? shared_doc_copy(&a->sh->spaces[slot], doc) : 0;
        if (dlen <= 0) { /* none, or changing too fast to copy whole (never, in practice) */
            conn_error(c, 404, NULL, "No stage state for this space");
            return;
        }
        conn_respond_doc(c, head_only, "application/json; charset=utf-8", doc, (size_t)dlen,
                         "Access-Control-Allow-Origin: *\r\nCache-Control: public, max-age=1");
        return;
    }
    if (hls_route(a, c, req, path) || replay_route(a, c, req, path, head_only) ||
        captions_route(a, c, req, path, head_only))
        return;
    audience_check_slots(a); /* this process may not have been woken since a change */
    if (beacon && strncmp(path, "/beacon/", 8) == 0) { /* counted even while draining */
        if (head_only) {
            conn_error(c, 405, "Allow: GET, POST", "A beacon is a GET or a POST");
            return;
        }
        beacon_route(c, req, path + 8, mount_name_ok(path + 8) ? audience_find(a, path + 8) : -1);
        return;
    }
    if (react && (strncmp(path, "/react/", 7) == 0 || strncmp(path, "/hand/", 6) == 0)) {
        const char *m = path + (path[1] == 'h' ? 6 : 7);
        if (req->method != HTTP_POST) {
            conn_error(c, 405, "Allow: POST", "Reactions and hands are a POST");
            return;
        }
        react_route(c, req, path, mount_name_ok(m) ? audience_find(a, m) : -1);
        return;
    }
    if (__atomic_load_n(&a->sh->main.draining, __ATOMIC_ACQUIRE)) {
        /* a listener (a stream, or a ticket) may go to a relay; the rest waits for us */
        const char *m = strncmp(path, "/join/", 6) == 0 ? path + 6 : path + 1;
        if (mount_name_ok(m) && redirect_to_edge(c, req, audience_find(a, m), 1))
            return;
        /* stopping: a newcomer is told when to come back (another server behind the same
         * name, or this one restarted); pages and status above are still served */
        ctr->refused_draining++;
        ctr->joins[JOIN_REFUSED]++;
        refuse(c, 503, (int)a->sh->main.drain_retry_s + retry_after_s(),
               "The server is stopping: come back in a moment");
        return;
    }
    if (strncmp(path, "/join/", 6) == 0) {
        if (!mount_name_ok(path + 6) || audience_find(a, path + 6) < 0) {
            ctr->joins[JOIN_NOT_FOUND]++;
            conn_error(c, 404, NULL, "No such mount");
            return;
        }
        /* full: the ticket should be a relay's (ours would not be good there, each server
         * signing its own), so /join itself goes to the relay */
        if ((a->nlisteners >= a->max_here ||
             all_listeners(a) >= (uint32_t)a->cfg->max_listeners) &&
            redirect_to_edge(c, req, audience_find(a, path + 6), 0))
            return;
        audience_join_ticket(c, req, path + 6);
        return;
    }
    const char *mount = path + 1;
    int slot = mount_name_ok(mount) ? audience_find(a, mount) : -1;
    const char *rv;
    size_t rvlen;
    int feed = http_query_value(req, "relay", &rv, &rvlen) == 0 && rvlen == 1 && rv[0] == '1';
    if (feed && !relay_key_ok(c, a, req))
        return;
    if (slot >= 0 && feed && shared_is_rendition(&a->sh->spaces[slot]))
        slot = -1; /* relay feeds carry the Ogg stream only */
    if (slot < 0 && !feed && rendition_wanted(a, mount)) {
        /* issue 11: the space is live, its rendition found no slot (the reserve is for
         * spaces), or is being made: come back */
        ctr->refused_rendition++;
        ctr->joins[JOIN_REFUSED]++;
        LOG_RATELIMITED(LOG_INFO, "listen", "#%llu %s: /%s refused: 503, no slot for the "
                        "rendition", (unsigned long long)c->id, c->peer, mount);
        refuse(c, 503, retry_after_s() + 4, "This stream has no room now: come back shortly");
        return;
    }
    if (slot < 0) {
        ctr->joins[JOIN_NOT_FOUND]++;
        conn_error(c, 404, NULL, "No such mount");
        return;
    }
    if (!head_only && rendition_busy(a, slot)) {
        ctr->refused_rendition_encoders++;
        ctr->joins[JOIN_REFUSED]++;
        LOG_RATELIMITED(LOG_INFO, "listen", "#%llu %s: /%s refused: 503, %d rendition encoders "
                        "running", (unsigned long long)c->id, c->peer, mount,
                        a->cfg->rendition_max_encoders);
        refuse(c, 503, retry_after_s() + 9, "This stream is not running and the server runs "
                                            "as many as it may: come back shortly");
        return;
    }
    /* from= (a ring seq: a relay's or a web player's resume) and burst= (ms, up to lag-ms: a
     * longer burst would make a laggard of it at once), strictly: digits, in range */
    struct listener_join j = {.burst_ms = -1};
    uint64_t burst = 0;
    int has_from = http_query_u64(req, "from", UINT64_MAX, &j.from);
    int has_burst = feed ? 0 : http_query_u64(req, "burst", (uint64_t)a->cfg->lag_ms, &burst);
    if (has_from < 0 || has_burst < 0) {
        ctr->joins[JOIN_BAD_REQUEST]++;
        LOG_RATELIMITED(LOG_INFO, "listen", "#%llu %s: bad %s= in a join", (unsigned long long)c->id,
                        c->peer, has_from < 0 ? "from" : "burst");
        if (has_from < 0)
            conn_error(c, 400, NULL, "Bad from= (a page sequence number: decimal digits)");
        else
            conn_error(c, 400, NULL, "Bad burst= (milliseconds of audio, at most lag-ms)");
        return;
    }
    int admit = head_only ? 1 : audience_admit(c, req, mount);
    if (admit <= 0) {
        if (admit == 0)
            ctr->joins[JOIN_REFUSED]++;
        return;
    }
    j.has_from = has_from;
    if (has_burst)
        j.burst_ms = (int)burst;
    if (feed && !head_only) {
        /* a relay that carries captions asks for them (older ones do not, and get none) */
        int captions = http_query_value(req, "captions", &rv, &rvlen) == 0 && rvlen == 1 &&
                       rv[0] == '1';
        feed_start(c, slot, j.has_from, j.from, captions);
        return;
    }
    listener_start(c, slot, head_only, &j);
}

void audience_count_now(struct audience *a)
{
    /* at most every COUNT_MS, whoever asks: status may be polled by every listener page */
    if (a->loop->now_ms - a->counted_ms >= COUNT_MS)
        audience_tick(a, 0);
}
