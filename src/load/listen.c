/*
 * load/listen: see listen.h for the processes and a listener's states.
 *
 * Cost per listener is what a benchmark must keep low, since the tool shares the cores with the
 * server it measures: a listener costs one recv() per wakeup into a per-process 16 KiB buffer,
 * one pass of the Ogg checker over the bytes, and one clock read. Nothing per listener is
 * allocated, and no timer exists per listener: one 500 ms scan finds stalls and connect
 * timeouts. Stalls are also noticed on the read that ends them, so the scan's granularity
 * does not hide one.
 *
 * Times are CLOCK_MONOTONIC microseconds, which all processes share: the parent picks the start
 * time and every worker derives its pacing, count time and end from it.
 */
#include "load/listen.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "event/loop.h"
#include "load/oggcheck.h"
#include "load/url.h"
#include "tls/tls.h"
#include "util/log.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PACE_MS 10
#define SCAN_MS 500
#define CONNECT_TIMEOUT_US 10000000
#define STEADY_SKIP_US 2000000 /* the steady part starts this long after the first audio */
#define RECEIVING_US 5000000   /* "receiving audio": a byte within this long */
#define HEAD_MAX 16384
#define RBUF_SIZE 16384
#define PROG_KEEP 16 /* --programme: reads kept per listener until the go-live is known */
#define WHEEL_SLOTS 8192 /* --join/--retry: 10 ms slots (82 s; later ones go round again) */
#define JOIN_PATH_MAX 480 /* "/<mount>?ticket=<token>": a token is < 384 bytes */
#define RETRY_AFTER_MAX_S 60
#define COUNT_WAIT_MAX_US 7000000 /* the longest the end waits for the parent's count */
#define KEEP_MARGIN_US 500000 /* --join: a kept connection is used only this long before the
                                 server said it would close it */

/* C_KEPT: --join, a ticket answered on a kept-alive connection, idle until its admit time */
enum { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_SENDING, C_HEAD, C_BODY, C_DONE, C_KEPT };

#define TLS_READ_ROUNDS 16 /* records read per wakeup at most (each is at most 16 KiB) */

#define CF_GOT_BYTE 1
#define CF_STALLED 2
#define CF_STEADY 4

/* One listener; owned by its worker's array, never freed before the worker exits. */
struct load_conn {
    struct io io;
    struct tls_conn *tls;  /* https:// only: owned, freed when the listener finishes */
    int64_t t_start;       /* us: connect start */
    int64_t t_last_audio;  /* us: last audio byte, or the response head before any */
    int64_t t_first_audio; /* us: first audio page whole, 0 before */
    uint64_t steady_base;  /* audio bytes at first audio + 2 s (CF_STEADY set) */
    uint32_t global_idx;   /* index over all workers: picks the source address */
    uint16_t head_bytes;
    uint16_t status;
    uint16_t sent; /* request bytes sent */
    uint16_t stalls;
    uint8_t state;
    uint8_t hstate; /* head: 0 protocol token, 1..3 status digits read, 4 rest */
    uint8_t hnl;    /* head: 1 if the last line ended and no byte but '\r' followed */
    uint8_t flags;  /* CF_* */
    struct oggcheck ogg;
};

_Static_assert(sizeof(struct load_conn) <= 200, "a load listener must stay small");

/* --programme: one listener's reads that completed audio pages, until the go-live is known
 * (then only <t_prog>). Beside struct load_conn, allocated only with --programme. */
struct load_prog {
    int64_t t[PROG_KEEP];     /* us: the read */
    uint64_t gran[PROG_KEEP]; /* the granule of the last audio page it completed */
    int64_t t_prog;           /* us: the first read past live_granule */
    uint32_t pushes;
    uint8_t done; /* 0 not yet, 1 t_prog is exact, 2 lost (older reads were dropped) */
};

/* --join/--retry: what one listener waits for. Beside struct load_conn, allocated only then. */
struct load_join {
    int64_t due_us;  /* when to connect again; 0: not waiting */
    uint32_t next;   /* the wheel's list: index + 1 of the next listener, 0: the end */
    uint8_t phase;   /* 0: asking /join, 1: the stream */
    uint8_t retries; /* used */
    uint8_t counted; /* its first stream attempt is counted in attempted */
    char path[JOIN_PATH_MAX];
};

struct load_worker {
    struct loop loop;
    const struct load_listen_opts *o;
    struct load_conn *conns;
    struct load_prog *prog; /* --programme: one per listener, else NULL */
    struct load_join *join; /* --join/--retry: one per listener, else NULL */
    uint32_t wheel[WHEEL_SLOTS]; /* index + 1 of the first listener due in each 10 ms slot */
    int64_t wheel_tick;          /* the next slot to drain (10 ms ticks of CLOCK_MONOTONIC) */
    struct loop_timer wheel_timer;
    char jreq[JOIN_PATH_MAX + 256]; /* a --join listener's request, made when it is sent */
    int64_t wall_off_us;    /* CLOCK_REALTIME - CLOCK_MONOTONIC at the start */
    uint32_t n, opened, index;
    double rate; /* this worker's joins per second */
    int64_t start_us, end_us, count_us;
    int recounted; /* counted again at the server's answer (with count_pending) */
    struct loop_timer pace, scan, count, end;
    char req[LOAD_URL_MAX_PATH + 256];
    uint16_t req_len;
    struct load_result res;
    uint8_t rbuf[RBUF_SIZE];
};

static const char *const reason_names[LOAD_REASONS] = {
    "connect_refused", "connect_timeout",    "addr_not_avail",         "socket_error",
    "connect_error",   "bad_response",       "closed_before_audio",    "read_error",
    "timeout",         "closed_after_audio", "read_error_after_audio", "tls_handshake"};

const char *load_reason_name(enum load_reason r)
{
    return (unsigned)r < LOAD_REASONS ? reason_names[r] : "?";
}

int64_t load_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void load_result_merge(struct load_result *into, const struct load_result *from)
{
    into->listeners += from->listeners;
    into->attempted += from->attempted;
    into->connected += from->connected;
    into->held += from->held;
    into->held_eligible += from->held_eligible;
    into->stalls += from->stalls;
    into->listeners_with_stalls += from->listeners_with_stalls;
    into->stalls_before_audio += from->stalls_before_audio;
    into->seq_gaps += from->seq_gaps;
    into->crc_errors += from->crc_errors;
    into->serial_changes += from->serial_changes;
    into->sync_losses += from->sync_losses;
    into->bytes += from->bytes;
    into->open_at_end += from->open_at_end;
    into->tool_listeners += from->tool_listeners;
    into->tool_listeners_answered += from->tool_listeners_answered;
    if (from->duration_us > into->duration_us)
        into->duration_us = from->duration_us;
    for (int i = 0; i < LOAD_REASONS; i++)
        into->reasons[i] += from->reasons[i];
    for (int i = 0; i < LOAD_HTTP_CODES; i++)
        into->http[i] += from->http[i];
    hist_merge(&into->connect_us, &from->connect_us);
    hist_merge(&into->ttfb_us, &from->ttfb_us);
    hist_merge(&into->first_audio_us, &from->first_audio_us);
    into->prog_lobby += from->prog_lobby;
    into->prog_reached += from->prog_reached;
    into->prog_unresolved += from->prog_unresolved;
    into->prog_joined_live += from->prog_joined_live;
    into->prog_early += from->prog_early;
    hist_merge(&into->programme_us, &from->programme_us);
    into->tickets += from->tickets;
    into->join_errors += from->join_errors;
    into->retries += from->retries;
    into->kept += from->kept;
    hist_merge(&into->ticket_wait_us, &from->ticket_wait_us);
}

/* ---- worker: one listener ----------------------------------------------------------------- */

static struct load_worker *worker_of(struct loop *loop)
{
    return (struct load_worker *)((char *)loop - offsetof(struct load_worker, loop));
}

/* Closes <c>'s connection, if it has one. */
static void conn_close(struct load_worker *w, struct load_conn *c)
{
    if (c->io.fd >= 0) {
        loop_del(&w->loop, &c->io);
        tls_conn_free(c->tls);
        c->tls = NULL;
        close(c->io.fd);
        c->io.fd = -1;
    }
}

/* Stops <c> for good; <why> is LOAD_REASONS when it simply ran to the end, else a reason.
 * A status refusal passes LOAD_REASONS and is counted by the caller. */
static void conn_finish(struct load_worker *w, struct load_conn *c, int why)
{
    conn_close(w, c);
    c->state = C_DONE;
    if (why < LOAD_REASONS)
        w->res.reasons[why]++;
}

static int connect_reason(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return LOAD_R_CONNECT_REFUSED;
    case ETIMEDOUT:
        return LOAD_R_CONNECT_TIMEOUT;
    case EADDRNOTAVAIL:
    case EADDRINUSE:
        return LOAD_R_ADDR_NOT_AVAIL;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        return LOAD_R_SOCKET_ERROR;
    default:
        return LOAD_R_CONNECT_ERROR;
    }
}

/* 1 if --join asks with keep-alive (plain http:// only: a kept TLS connection is not done) */
static int keep_alive(const struct load_worker *w)
{
    return w->o->join && !w->o->no_keep_alive && !w->o->url.tls;
}

/* The request of <c>: the one of every listener, or with --join its own (made again for each
 * send: the same bytes every time, so a send resumed after EAGAIN goes on where it was). */
static const char *conn_request(struct load_worker *w, struct load_conn *c, uint16_t *len)
{
    if (!w->join || !w->o->join) {
        *len = w->req_len;
        return w->req;
    }
    const struct load_join *j = &w->join[c - w->conns];
    const struct load_url *u = &w->o->url;
    /* as a page's fetch(): HTTP/1.1, asking to keep the connection for the stream */
    const char *keep = keep_alive(w) ? "Connection: keep-alive\r\n" : "";
    int n = j->phase == 0
                ? snprintf(w->jreq, sizeof(w->jreq), "GET /join%s HTTP/1.1\r\nHost: %s:%u\r\n"
                           "User-Agent: rostrum-load\r\n%s\r\n", u->path, u->host, u->port, keep)
                : snprintf(w->jreq, sizeof(w->jreq), "GET %s HTTP/1.1\r\nHost: %s:%u\r\n"
                           "User-Agent: rostrum-load\r\n%s\r\n", j->path, u->host, u->port, keep);
    *len = (uint16_t)(n > 0 && (size_t)n < sizeof(w->jreq) ? n : 0);
    return w->jreq;
}

/* Sends what is left of the request; moves to HEAD when done, else waits for EPOLLOUT. */
static void conn_send(struct load_worker *w, struct load_conn *c)
{
    uint16_t req_len;
    const char *req = conn_request(w, c, &req_len);
    while (c->sent < req_len) {
        ssize_t n = send(c->io.fd, req + c->sent, (size_t)(req_len - c->sent), MSG_NOSIGNAL);
        if (n > 0) {
            c->sent = (uint16_t)(c->sent + n);
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && errno == EAGAIN) {
            c->state = C_SENDING;
            if (loop_mod(&w->loop, &c->io, EPOLLOUT) < 0)
                conn_finish(w, c, LOAD_R_SOCKET_ERROR);
            return;
        } else {
            conn_finish(w, c, connect_reason(errno));
            return;
        }
    }
    c->state = C_HEAD;
    if (loop_mod(&w->loop, &c->io, EPOLLIN) < 0)
        conn_finish(w, c, LOAD_R_SOCKET_ERROR);
}

/* conn_send over TLS: the request through SSL_write, and a record OpenSSL kept (counted as
 * sent, see tls.h) flushed before the head is awaited. */
static void conn_send_tls(struct load_worker *w, struct load_conn *c)
{
    uint16_t req_len;
    const char *req = conn_request(w, c, &req_len);
    while (c->sent < req_len || tls_pending(c->tls)) {
        ssize_t n;
        if (c->sent < req_len) {
            struct iovec v = {.iov_base = (char *)req + c->sent,
                              .iov_len = (size_t)(req_len - c->sent)};
            n = tls_writev(c->tls, &v, 1);
        } else {
            n = tls_flush(c->tls) == 0 ? 0 : -1;
        }
        if (n >= 0) {
            c->sent = (uint16_t)(c->sent + n);
        } else if (errno == EAGAIN || errno == EINTR) {
            c->state = C_SENDING;
            if (loop_mod(&w->loop, &c->io, EPOLLOUT) < 0)
                conn_finish(w, c, LOAD_R_SOCKET_ERROR);
            return;
        } else {
            conn_finish(w, c, LOAD_R_CONNECT_ERROR);
            return;
        }
    }
    c->state = C_HEAD;
    if (loop_mod(&w->loop, &c->io, EPOLLIN) < 0)
        conn_finish(w, c, LOAD_R_SOCKET_ERROR);
}

/* One step of <c>'s TLS handshake; on to the request once it is done. */
static void conn_handshake(struct load_worker *w, struct load_conn *c)
{
    int rc = tls_handshake(c->tls);
    if (rc == TLS_DONE) {
        c->state = C_SENDING;
        conn_send_tls(w, c);
        return;
    }
    if (rc < 0) {
        char why[200];
        tls_handshake_error(c->tls, why, sizeof(why));
        LOG_RATELIMITED(LOG_WARN, "load", "TLS handshake with %s failed: %s", w->o->url.tls_name,
                        why);
        conn_finish(w, c, LOAD_R_TLS_HANDSHAKE);
        return;
    }
    if (loop_mod(&w->loop, &c->io, rc == TLS_WANT_READ ? EPOLLIN : EPOLLOUT) < 0)
        conn_finish(w, c, LOAD_R_SOCKET_ERROR);
}

static void conn_connected(struct load_worker *w, struct load_conn *c, int64_t now)
{
    hist_add(&w->res.connect_us, (uint64_t)(now - c->t_start));
    if (w->o->url.tls) {
        c->tls = tls_client_new(w->o->tls, c->io.fd, w->o->url.tls_name);
        c->state = C_HANDSHAKE;
        conn_handshake(w, c);
        return;
    }
    c->state = C_SENDING;
    conn_send(w, c);
}

/* Counts a stall of <c> if its audio has been missing longer than the stall time at <now>. */
static void conn_check_stall(struct load_worker *w, struct load_conn *c, int64_t now)
{
    if (c->state == C_BODY && !(c->flags & CF_STALLED) &&
        now - c->t_last_audio > (int64_t)w->o->stall_ms * 1000) {
        c->flags |= CF_STALLED;
        if (c->stalls < UINT16_MAX)
            c->stalls++;
        if (!c->ogg.first_audio) /* a late start, not a listener already listening cut off */
            w->res.stalls_before_audio++;
    }
}

/* Takes the steady-part snapshot of <c> once <now> is past its first audio + 2 s. */
static void conn_check_steady(struct load_conn *c, int64_t now)
{
    if (c->t_first_audio && !(c->flags & CF_STEADY) && now >= c->t_first_audio + STEADY_SKIP_US) {
        c->steady_base = c->ogg.audio_bytes;
        c->flags |= CF_STEADY;
    }
}

/* --programme: finds <p>'s first read past the go-live among the kept ones, once it is known. */
static void prog_resolve(struct load_prog *p, uint64_t live_granule)
{
    uint32_t n = p->pushes < PROG_KEEP ? p->pushes : PROG_KEEP;
    uint32_t oldest = p->pushes - n;
    for (uint32_t k = oldest; k < p->pushes && !p->done; k++) {
        uint32_t i = k % PROG_KEEP;
        if (p->gran[i] > live_granule) {
            /* exact if a read before it is kept (or it was the very first read) */
            p->done = k == oldest && oldest > 0 ? 2 : 1;
            p->t_prog = p->t[i];
        }
    }
}

/* --programme: <c> just completed audio pages at <now>. */
static void prog_seen(struct load_worker *w, struct load_conn *c, int64_t now)
{
    struct load_prog *p = &w->prog[c - w->conns];
    if (p->done)
        return;
    const struct load_programme *g = w->o->prog;
    if (__atomic_load_n(&g->known, __ATOMIC_ACQUIRE)) {
        prog_resolve(p, g->live_granule);
        if (!p->done && c->ogg.granule > g->live_granule) {
            p->t_prog = now;
            p->done = 1;
        }
        return;
    }
    uint32_t i = p->pushes++ % PROG_KEEP;
    p->t[i] = now;
    p->gran[i] = c->ogg.granule;
}

/* --programme, at the end: files <c> as a lobby listener (first audio before the go-live) or
 * one that joined live, and the programme's arrival of a lobby listener after T0. */
static void prog_end(struct load_worker *w, struct load_conn *c)
{
    const struct load_programme *g = w->o->prog;
    if (!c->t_first_audio || !__atomic_load_n(&g->known, __ATOMIC_ACQUIRE))
        return;
    struct load_prog *p = &w->prog[c - w->conns];
    if (!p->done)
        prog_resolve(p, g->live_granule);
    struct load_result *r = &w->res;
    if (c->t_first_audio + w->wall_off_us >= g->live_at_ms * 1000) {
        r->prog_joined_live++;
        return;
    }
    r->prog_lobby++;
    if (p->done == 1) {
        int64_t after = p->t_prog + w->wall_off_us - g->t0_ms * 1000;
        r->prog_reached++;
        r->prog_early += after < 0;
        hist_add(&r->programme_us, after > 0 ? (uint64_t)after : 0);
    } else if (p->done == 2) {
        r->prog_unresolved++;
    }
}

static void conn_body(struct load_worker *w, struct load_conn *c, const uint8_t *p, size_t n,
                      int64_t now)
{
    conn_check_steady(c, now);
    uint64_t before = c->ogg.audio_bytes;
    uint32_t had_audio = c->ogg.first_audio, pages = c->ogg.audio_pages;
    oggcheck_feed(&c->ogg, p, n);
    if (w->prog && c->ogg.audio_pages != pages)
        prog_seen(w, c, now);
    if (c->ogg.audio_bytes > before) {
        /* a stall the scan has not seen yet ends here: count it now */
        conn_check_stall(w, c, now);
        c->flags &= (uint8_t)~CF_STALLED;
        c->t_last_audio = now;
    }
    if (!had_audio && c->ogg.first_audio) {
        c->t_first_audio = now;
        hist_add(&w->res.first_audio_us, (uint64_t)(now - c->t_start));
        w->res.connected++;
    }
}

/* ---- --join and --retry: listeners waiting to connect again -------------------------------- */

static void wheel_put(struct load_worker *w, struct load_conn *c, int64_t due_us)
{
    uint32_t i = (uint32_t)(c - w->conns);
    struct load_join *j = &w->join[i];
    int64_t tick = due_us / 10000;
    if (tick < w->wheel_tick)
        tick = w->wheel_tick;
    j->due_us = due_us;
    uint32_t slot = (uint32_t)(tick % WHEEL_SLOTS);
    j->next = w->wheel[slot];
    w->wheel[slot] = i + 1;
}

/* Closes <c>'s connection; it connects again at <due_us>. */
static void conn_wait(struct load_worker *w, struct load_conn *c, int64_t due_us)
{
    conn_close(w, c);
    c->state = C_IDLE;
    wheel_put(w, c, due_us);
}

static void conn_open(struct load_worker *w, struct load_conn *c);

static void on_wheel(struct loop *loop, struct loop_timer *t)
{
    struct load_worker *w = worker_of(loop);
    int64_t now = load_now_us();
    for (int64_t until = now / 10000; w->wheel_tick <= until; w->wheel_tick++) {
        uint32_t slot = (uint32_t)(w->wheel_tick % WHEEL_SLOTS);
        uint32_t k = w->wheel[slot], later = 0;
        w->wheel[slot] = 0;
        while (k) {
            struct load_join *j = &w->join[k - 1];
            uint32_t next = j->next;
            if (j->due_us / 10000 > w->wheel_tick) { /* a later turn of the wheel */
                j->next = later;
                later = k;
            } else if (now < w->end_us) {
                j->due_us = 0;
                conn_open(w, &w->conns[k - 1]);
            }
            k = next;
        }
        w->wheel[slot] = later;
    }
    loop_timer_start(loop, t, PACE_MS, on_wheel);
}

/* Retry-After's seconds in a refusal's head bytes <p>/<n> (the rest of the read that held its
 * status), 1 if it has none; at most RETRY_AFTER_MAX_S. */
static int retry_after_s(const uint8_t *p, size_t n)
{
    static const char name[] = "\nretry-after:";
    size_t k = sizeof(name) - 1;
    for (size_t i = 0; i + k <= n; i++) {
        size_t m = 0;
        while (m < k && (p[i + m] | (p[i + m] >= 'A' && p[i + m] <= 'Z' ? 0x20 : 0)) == name[m])
            m++;
        if (m < k)
            continue;
        size_t d = i + k;
        while (d < n && p[d] == ' ')
            d++;
        int v = 0, any = 0;
        while (d < n && p[d] >= '0' && p[d] <= '9' && v <= RETRY_AFTER_MAX_S) {
            v = v * 10 + (p[d++] - '0');
            any = 1;
        }
        return !any ? 1 : v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : v;
    }
    return 1;
}

/* Where the (lower-cased) header line <line> ends in the head bytes <p>/<n>, if a line there
 * starts with it; NULL if none does. */
static const uint8_t *head_line(const uint8_t *p, size_t n, const char *line)
{
    size_t k = strlen(line);
    for (size_t i = 0; i + k <= n; i++) {
        if (i > 0 && p[i - 1] != '\n')
            continue;
        size_t m = 0;
        while (m < k && (p[i + m] | (p[i + m] >= 'A' && p[i + m] <= 'Z' ? 0x20 : 0)) == line[m])
            m++;
        if (m == k)
            return p + i + k;
    }
    return NULL;
}

/* The seconds a server keeps the connection of the response head <p>/<n> (all in this read:
 * else 0, and the stream takes a new connection): "Connection: keep-alive" and "Keep-Alive:
 * timeout=N". 0 if it does not say both. */
static int kept_alive_s(const uint8_t *p, size_t n)
{
    if (!head_line(p, n, "connection: keep-alive\r"))
        return 0;
    const uint8_t *t = head_line(p, n, "keep-alive: timeout=");
    int v = 0;
    while (t && t < p + n && *t >= '0' && *t <= '9' && v < 3600)
        v = v * 10 + (*t++ - '0');
    return v;
}

/* <c>'s /join was answered on a kept-alive connection: it idles there (a server's close is
 * noticed, and it connects anew) until <due_us>, then asks for the stream on it. */
static void conn_keep(struct load_worker *w, struct load_conn *c, int64_t due_us)
{
    c->state = C_KEPT;
    if (loop_mod(&w->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0) {
        conn_wait(w, c, due_us);
        return;
    }
    wheel_put(w, c, due_us);
}

/* The /join answer's body <b>/<n> (after the head that starts at <head>, in the same read):
 * takes its stream path and admit time, and makes <c> wait for that time, on the same
 * connection if the server keeps it that long. Returns 0, or -1 if it holds no stream path. */
static int join_answer(struct load_worker *w, struct load_conn *c, const uint8_t *head,
                       const uint8_t *b, size_t n, int64_t now)
{
    char body[2048];
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' '))
        n--;
    if (n == 0 || n >= sizeof(body) || b[n - 1] != '}')
        return -1; /* cut, or not the whole answer in this read */
    memcpy(body, b, n);
    body[n] = '\0';
    struct load_join *j = &w->join[c - w->conns];
    const char *st = strstr(body, "\"stream\":\"");
    if (!st)
        return -1;
    st += 10;
    size_t len = 0;
    while (st[len] && st[len] != '"' && st[len] > ' ' && st[len] < 0x7f && st[len] != '\\')
        len++;
    if (st[len] != '"' || len == 0 || len >= sizeof(j->path) || st[0] != '/')
        return -1;
    memcpy(j->path, st, len);
    j->path[len] = '\0';
    int64_t due = now;
    const char *at = strstr(body, "\"admit_at_ms\":");
    if (at) {
        double admit_ms = strtod(at + 14, NULL);
        int64_t admit = (int64_t)(admit_ms * 1000.0) - w->wall_off_us;
        hist_add(&w->res.ticket_wait_us, admit > now ? (uint64_t)(admit - now) : 0);
        if (admit > due)
            due = admit;
    }
    j->phase = 1;
    w->res.tickets++;
    int keep_s = kept_alive_s(head, (size_t)(b - head));
    if (keep_s > 0 && due - now < (int64_t)keep_s * 1000000 - KEEP_MARGIN_US) {
        conn_keep(w, c, due); /* the stream goes on this connection */
        return 0;
    }
    conn_wait(w, c, due);
    return 0;
}

/* Parses response head bytes. Returns how many of <n> belong to the head (the rest is body),
 * or -1 if <c> was finished (refused or malformed). */
static ssize_t conn_head(struct load_worker *w, struct load_conn *c, const uint8_t *p, size_t n,
                         int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (++c->head_bytes > HEAD_MAX) {
            conn_finish(w, c, LOAD_R_BAD_RESPONSE);
            return -1;
        }
        if (c->hstate == 0) {
            /* "HTTP/1.0" or Icecast's old "ICY" */
            if (b == ' ' && c->head_bytes > 1) {
                c->hstate = 1;
            } else if (b <= ' ' || b >= 0x7f || c->head_bytes > 16) {
                conn_finish(w, c, LOAD_R_BAD_RESPONSE);
                return -1;
            }
        } else if (c->hstate <= 3) {
            if (b < '0' || b > '9') {
                conn_finish(w, c, LOAD_R_BAD_RESPONSE);
                return -1;
            }
            c->status = (uint16_t)(c->status * 10 + (b - '0'));
            struct load_join *j = w->join ? &w->join[c - w->conns] : NULL;
            if (++c->hstate == 4 && c->status != 200 && j &&
                (c->status == 503 || c->status == 429) && j->retries < w->o->retry) {
                /* as a page would: again after Retry-After, with a little jitter */
                j->retries++;
                w->res.retries++;
                int64_t wait = (int64_t)retry_after_s(p + i, n - i) * 1000000 + random() % 500000;
                conn_wait(w, c, now + wait);
                return -1;
            }
            if (c->hstate == 4 && c->status != 200) {
                if (c->status >= 100 && c->status < LOAD_HTTP_CODES)
                    w->res.http[c->status]++;
                else
                    w->res.reasons[LOAD_R_BAD_RESPONSE]++;
                conn_finish(w, c, LOAD_REASONS);
                return -1;
            }
        } else if (b == '\n') {
            if (c->hnl && w->join && w->o->join && w->join[c - w->conns].phase == 0) {
                if (join_answer(w, c, p, p + i + 1, n - i - 1, now) < 0) {
                    w->res.join_errors++;
                    conn_finish(w, c, LOAD_R_BAD_RESPONSE);
                }
                return -1;
            }
            if (c->hnl) {
                c->state = C_BODY;
                c->t_last_audio = now; /* the stall clock starts with the stream */
                return (ssize_t)(i + 1);
            }
            c->hnl = 1;
        } else if (b != '\r') {
            c->hnl = 0;
        }
    }
    return (ssize_t)n;
}

/* A read that returned <n> <= 0: the end of <c> (closed, or an error), or nothing for now. */
static void conn_read_end(struct load_worker *w, struct load_conn *c, ssize_t n)
{
    if (n == 0)
        conn_finish(w, c,
                    c->ogg.first_audio ? LOAD_R_CLOSED_AFTER_AUDIO : LOAD_R_CLOSED_BEFORE_AUDIO);
    else if (errno != EAGAIN && errno != EINTR)
        conn_finish(w, c,
                    c->ogg.first_audio ? LOAD_R_READ_ERROR_AFTER_AUDIO : LOAD_R_READ_ERROR);
}

/* Takes the <n> bytes just read into <w>->rbuf: the head, then the stream. Returns 0, or -1
 * if <c> was finished. */
static inline int conn_got(struct load_worker *w, struct load_conn *c, ssize_t n)
{
    int64_t now = load_now_us();
    if (!(c->flags & CF_GOT_BYTE)) {
        c->flags |= CF_GOT_BYTE;
        hist_add(&w->res.ttfb_us, (uint64_t)(now - c->t_start));
    }
    ssize_t off = 0;
    if (c->state == C_HEAD && (off = conn_head(w, c, w->rbuf, (size_t)n, now)) < 0)
        return -1;
    if (off < n)
        conn_body(w, c, w->rbuf + off, (size_t)(n - off), now);
    return 0;
}

static void conn_read(struct load_worker *w, struct load_conn *c)
{
    /* A full buffer may mean more is queued (a burst): read again, a few times at most so
     * one listener cannot hold the loop. */
    for (int round = 0; round < 4; round++) {
        ssize_t n = recv(c->io.fd, w->rbuf, sizeof(w->rbuf), 0);
        if (n > 0) {
            if (conn_got(w, c, n) < 0)
                return;
            if (n < (ssize_t)sizeof(w->rbuf))
                return;
        } else {
            conn_read_end(w, c, n);
            return;
        }
    }
}

/* conn_read over TLS. SSL_read gives one record at a time, so a short read does not mean the
 * socket is drained: read until OpenSSL wants more bytes, a bounded number of records (the
 * loop is level-triggered: what is left on the socket wakes it again). With a 16 KiB buffer a
 * record is always taken whole, so nothing decrypted waits inside OpenSSL unseen. */
static void conn_read_tls(struct load_worker *w, struct load_conn *c)
{
    for (int round = 0; round < TLS_READ_ROUNDS; round++) {
        ssize_t n = tls_read(c->tls, w->rbuf, sizeof(w->rbuf));
        if (n > 0) {
            if (conn_got(w, c, n) < 0)
                return;
        } else {
            conn_read_end(w, c, n);
            return;
        }
    }
}

static void conn_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct load_worker *w = worker_of(loop);
    struct load_conn *c = (struct load_conn *)((char *)io - offsetof(struct load_conn, io));
    switch (c->state) {
    case C_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err) {
            conn_finish(w, c, connect_reason(err));
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        conn_connected(w, c, load_now_us());
        return;
    }
    case C_HANDSHAKE:
        conn_handshake(w, c);
        return;
    case C_SENDING:
        if (c->tls)
            conn_send_tls(w, c);
        else
            conn_send(w, c);
        return;
    case C_KEPT: /* the server closed the kept connection (or sent what it should not): the
                  * stream will take a new one at its time, still on the wheel */
        conn_close(w, c);
        c->state = C_IDLE;
        return;
    case C_HEAD:
    case C_BODY:
        if (c->tls)
            conn_read_tls(w, c);
        else
            conn_read(w, c);
        return;
    default:
        return;
    }
}

static void conn_open(struct load_worker *w, struct load_conn *c)
{
    const struct load_listen_opts *o = w->o;
    if (c->state != C_KEPT)
        c->io.fd = -1;
    c->io.cb = conn_on_io;
    oggcheck_init(&c->ogg);
    c->t_start = load_now_us();
    /* again after a ticket or a refusal (--join, --retry): a fresh response, one listener */
    c->status = c->head_bytes = c->sent = 0;
    c->hstate = c->hnl = 0;
    c->flags = 0;
    c->t_first_audio = 0;
    struct load_join *j = w->join ? &w->join[c - w->conns] : NULL;
    if (!j || !j->counted)
        w->res.attempted++;
    if (j)
        j->counted = 1;
    if (c->state == C_KEPT) { /* the stream on the ticket's connection */
        w->res.kept++;
        c->state = C_SENDING;
        conn_send(w, c);
        return;
    }
    int fd = socket(o->url.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        LOG_RATELIMITED(LOG_WARN, "load", "socket: %s", strerror(errno));
        conn_finish(w, c, LOAD_R_SOCKET_ERROR);
        return;
    }
    c->io.fd = fd;
    if (o->src_count) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(o->src_first + c->global_idx % o->src_count);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
            LOG_RATELIMITED(LOG_WARN, "load", "bind: %s", strerror(errno));
            conn_finish(w, c, connect_reason(errno));
            return;
        }
    }
    int rc = connect(fd, (const struct sockaddr *)&o->url.addr, o->url.addrlen);
    if (rc == -1 && errno != EINPROGRESS) {
        conn_finish(w, c, connect_reason(errno));
        return;
    }
    c->state = C_CONNECTING;
    if (loop_add(&w->loop, &c->io, EPOLLOUT) < 0) {
        conn_finish(w, c, LOAD_R_SOCKET_ERROR);
        return;
    }
    if (rc == 0)
        conn_connected(w, c, load_now_us());
}

/* ---- worker: timers and the end ----------------------------------------------------------- */

static void on_pace(struct loop *loop, struct loop_timer *t)
{
    struct load_worker *w = worker_of(loop);
    double elapsed = (double)(load_now_us() - w->start_us) / 1e6;
    double due_d = floor(w->rate * elapsed) + 1;
    uint32_t due = due_d >= (double)w->n ? w->n : (uint32_t)due_d;
    while (w->opened < due && load_now_us() < w->end_us)
        conn_open(w, &w->conns[w->opened++]);
    if (w->opened < w->n)
        loop_timer_start(loop, t, PACE_MS, on_pace);
}

static void on_scan(struct loop *loop, struct loop_timer *t)
{
    struct load_worker *w = worker_of(loop);
    int64_t now = load_now_us();
    for (uint32_t i = 0; i < w->opened; i++) {
        struct load_conn *c = &w->conns[i];
        if ((c->state == C_CONNECTING || c->state == C_HANDSHAKE || c->state == C_SENDING) &&
            now - c->t_start > CONNECT_TIMEOUT_US) {
            conn_finish(w, c, LOAD_R_CONNECT_TIMEOUT);
        } else if (c->state == C_BODY) {
            conn_check_stall(w, c, now);
            conn_check_steady(c, now);
        }
    }
    loop_timer_start(loop, t, SCAN_MS, on_scan);
}

/* The listeners of <w> receiving audio at <now>. */
static uint64_t receiving_now(const struct load_worker *w, int64_t now)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < w->opened; i++) {
        const struct load_conn *c = &w->conns[i];
        if (c->state == C_BODY && c->ogg.audio_bytes > 0 && now - c->t_last_audio <= RECEIVING_US)
            n++;
    }
    return n;
}

/* Again when the parent has the server's answer: a loaded server answers seconds late, and
 * its count is then of a later moment than the one above (joins going on meanwhile). */
static void on_count_answered(struct loop *loop, struct loop_timer *t)
{
    struct load_worker *w = worker_of(loop);
    if (__atomic_load_n(w->o->count_pending, __ATOMIC_ACQUIRE)) {
        loop_timer_start(loop, t, 20, on_count_answered);
        return;
    }
    w->res.tool_listeners_answered = receiving_now(w, load_now_us());
    w->recounted = 1;
}

static void on_count(struct loop *loop, struct loop_timer *t)
{
    struct load_worker *w = worker_of(loop);
    w->res.tool_listeners = receiving_now(w, load_now_us());
    if (w->o->count_pending)
        loop_timer_start(loop, t, 20, on_count_answered);
}

static void on_end(struct loop *loop, struct loop_timer *t)
{
    struct load_worker *w = worker_of(loop);
    struct load_result *r = &w->res;
    int64_t now = load_now_us();
    /* the server's count is still being read (a loaded server answers late): its listeners
     * stay until it is, and are counted again then, or the count would see them leaving */
    if (w->o->count_pending && !w->recounted && now < w->end_us + COUNT_WAIT_MAX_US) {
        loop_timer_start(loop, t, 20, on_end);
        return;
    }
    double need_per_s = (double)w->o->kbps * 1000.0 / 8.0 * 0.9;
    for (uint32_t i = 0; i < w->opened; i++) {
        struct load_conn *c = &w->conns[i];
        if (c->state == C_BODY) {
            conn_check_stall(w, c, now);
            conn_check_steady(c, now);
        }
        if (w->prog)
            prog_end(w, c);
        if (c->state != C_DONE) {
            if (c->state == C_BODY && c->ogg.first_audio)
                r->open_at_end++;
            conn_finish(w, c, c->ogg.first_audio ? LOAD_REASONS : LOAD_R_TIMEOUT);
        }
        if (c->t_first_audio && now > c->t_first_audio + STEADY_SKIP_US) {
            double secs = (double)(now - c->t_first_audio - STEADY_SKIP_US) / 1e6;
            uint64_t got = (c->flags & CF_STEADY) ? c->ogg.audio_bytes - c->steady_base : 0;
            r->held_eligible++;
            if ((double)got >= need_per_s * secs)
                r->held++;
        }
        r->stalls += c->stalls;
        r->listeners_with_stalls += c->stalls > 0;
        r->seq_gaps += c->ogg.seq_gaps;
        r->crc_errors += c->ogg.crc_errors;
        r->serial_changes += c->ogg.serial_changes;
        r->sync_losses += c->ogg.sync_losses;
        r->bytes += c->ogg.audio_bytes;
    }
    r->duration_us = (uint64_t)(now - w->start_us);
    loop_stop(loop);
}

static void sleep_until_us(int64_t t)
{
    for (;;) {
        int64_t d = t - load_now_us();
        if (d <= 0)
            return;
        struct timespec ts = {.tv_sec = d / 1000000, .tv_nsec = (d % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

int load_listen_worker(const struct load_listen_opts *o, uint32_t index, uint32_t n,
                       int64_t start_us, struct load_result *res)
{
    struct load_worker *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->o = o;
    w->index = index;
    w->n = n;
    w->rate = o->rate * (double)n / (double)o->listeners;
    w->start_us = start_us;
    w->end_us = start_us + (int64_t)o->seconds * 1000000;
    w->count_us = w->end_us - LOAD_COUNT_BEFORE_END_US;
    if (w->count_us < start_us)
        w->count_us = start_us;
    w->res.magic = LOAD_RESULT_MAGIC;
    w->res.listeners = n;
    hist_init(&w->res.connect_us);
    hist_init(&w->res.ttfb_us);
    hist_init(&w->res.first_audio_us);
    hist_init(&w->res.programme_us);
    hist_init(&w->res.ticket_wait_us);
    int rl = snprintf(w->req, sizeof(w->req),
                      "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rostrum-load\r\n\r\n",
                      o->url.path, o->url.host, o->url.port);
    w->req_len = (uint16_t)rl;
    w->conns = calloc(n ? n : 1, sizeof(*w->conns));
    if (!w->conns)
        abort();
    if (o->prog) {
        w->prog = calloc(n ? n : 1, sizeof(*w->prog));
        if (!w->prog)
            abort();
    }
    if (o->join || o->retry) {
        w->join = calloc(n ? n : 1, sizeof(*w->join));
        if (!w->join)
            abort();
        srandom((unsigned)(getpid() ^ (pid_t)index));
    }
    for (uint32_t i = 0; i < n; i++) {
        w->conns[i].io.fd = -1;
        w->conns[i].global_idx = index + i * o->procs;
    }
    int rc = loop_init(&w->loop);
    if (rc < 0) {
        free(w->join);
        free(w->prog);
        free(w->conns);
        free(w);
        return rc;
    }
    sleep_until_us(start_us);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    w->wall_off_us = (int64_t)wall.tv_sec * 1000000 + wall.tv_nsec / 1000 - load_now_us();
    int64_t now = load_now_us();
    loop_timer_start(&w->loop, &w->pace, 0, on_pace);
    loop_timer_start(&w->loop, &w->scan, SCAN_MS, on_scan);
    if (w->join) {
        w->wheel_tick = now / 10000;
        loop_timer_start(&w->loop, &w->wheel_timer, PACE_MS, on_wheel);
    }
    loop_timer_start(&w->loop, &w->count, (w->count_us - now) / 1000, on_count);
    loop_timer_start(&w->loop, &w->end, (w->end_us - now + 999) / 1000, on_end);
    loop_run(&w->loop);
    loop_close(&w->loop);
    *res = w->res;
    free(w->join);
    free(w->prog);
    free(w->conns);
    free(w);
    return 0;
}
