/*
 * load/attack_core: one attack worker, whatever the mode (see attack.h for the modes, the bounds
 * and a connection's states, attack_int.h for how a mode hooks in).
 *
 * One worker is one event loop holding its share of the connections in a fixed array of slots
 * (no allocation per connection, except a tickets probe's ticket and /join body). Three timers
 * drive it: a 10 ms pacing timer opens connections at the worker's share of the rate; a 100 ms
 * scan gives each mode its turn (slowloris lines, slow reads, waits that expire: no timer per
 * connection); in the modes that do not read, a 1 s timer asks the kernel which server ends
 * have closed.
 *
 * Opening at the rate in the pressure modes: an opening that falls due while --count are open
 * is skipped, not made up later, so a server that frees slots gets the rate, never a burst.
 *
 * Every connection's end is counted once, in atk_conn_finish(), by how it ended. Times are
 * CLOCK_MONOTONIC microseconds, shared by all processes.
 */
#include "load/attack_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <linux/netlink.h>
#include <math.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load/listen.h"
#include "util/log.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define HEAD_MAX 16384 /* a longer response head is a bad response */

/* ---- modes and names ------------------------------------------------------------------------ */

static const struct atk_mode *const modes[ATTACK_MODES] = {
    &atk_mode_flood,   &atk_mode_slowloris, &atk_mode_slowread,
    &atk_mode_garbage, &atk_mode_joinstorm, &atk_mode_tickets,
    &atk_mode_wsping,  &atk_mode_wsnoread,  &atk_mode_stagefd,
};

/* The hooks for <o>: by mode, but stagefd without --handshake sends nothing. */
static const struct atk_mode *mode_of(const struct attack_opts *o)
{
    if (o->mode == ATTACK_STAGEFD && !o->handshake)
        return &atk_mode_stagefd_tcp;
    return modes[o->mode];
}

static const char *const mode_names[ATTACK_MODES] = {"flood",   "slowloris", "slowread",
                                                     "garbage", "joinstorm", "tickets",
                                                     "wsping",  "wsnoread",  "stagefd"};
static const char *const fail_names[ATTACK_FAILS] = {"refused", "timeout", "addr_not_avail",
                                                     "socket_error", "other"};
static const char *const tk_names[ATTACK_TK_KINDS] = {"join",  "forged",  "expired",
                                                      "early", "genuine", "open"};
static const char *const garbage_names[ATTACK_G_KINDS] = {
    "random", "junk_header", "long_path", "long_header", "bad_method", "control", "no_newline"};

const char *attack_mode_name(enum attack_mode m)
{
    return (unsigned)m < ATTACK_MODES ? mode_names[m] : "?";
}

int attack_mode_parse(const char *s)
{
    for (int i = 0; i < ATTACK_MODES; i++)
        if (strcmp(s, mode_names[i]) == 0)
            return i;
    return -1;
}

const char *attack_fail_name(enum attack_fail f)
{
    return (unsigned)f < ATTACK_FAILS ? fail_names[f] : "?";
}

const char *attack_ticket_kind_name(enum attack_ticket_kind k)
{
    return (unsigned)k < ATTACK_TK_KINDS ? tk_names[k] : "?";
}

const char *attack_garbage_kind_name(enum attack_garbage_kind k)
{
    return (unsigned)k < ATTACK_G_KINDS ? garbage_names[k] : "?";
}

int attack_is_pressure(const struct attack_opts *o)
{
    return (unsigned)o->mode < ATTACK_MODES && modes[o->mode]->pressure;
}

void attack_result_merge(struct attack_result *into, const struct attack_result *from)
{
    into->attempted += from->attempted;
    into->connected += from->connected;
    for (int i = 0; i < ATTACK_FAILS; i++)
        into->fail[i] += from->fail[i];
    into->closed_fin += from->closed_fin;
    into->closed_rst += from->closed_rst;
    into->closed_kernel += from->closed_kernel;
    into->done += from->done;
    into->timeouts += from->timeouts;
    into->open_at_end += from->open_at_end;
    into->peak_open += from->peak_open;
    into->responses += from->responses;
    into->bad_responses += from->bad_responses;
    into->no_response += from->no_response;
    into->retry_after += from->retry_after;
    into->bytes_sent += from->bytes_sent;
    into->bytes_received += from->bytes_received;
    into->lines_sent += from->lines_sent;
    into->joined += from->joined;
    into->unfinished += from->unfinished;
    into->ws_upgraded += from->ws_upgraded;
    into->ws_bad_accept += from->ws_bad_accept;
    into->ws_frames_sent += from->ws_frames_sent;
    for (int i = 0; i < ATTACK_HTTP_CODES; i++)
        into->http[i] += from->http[i];
    for (int k = 0; k < ATTACK_G_KINDS; k++) {
        into->garbage_sent[k] += from->garbage_sent[k];
        for (int j = 0; j < 4; j++)
            into->garbage_http[k][j] += from->garbage_http[k][j];
    }
    into->tk_tickets += from->tk_tickets;
    into->tk_open += from->tk_open;
    into->tk_unparsable += from->tk_unparsable;
    into->tk_early_skipped += from->tk_early_skipped;
    into->tk_admit_after_end += from->tk_admit_after_end;
    if (from->tk_max_position > into->tk_max_position)
        into->tk_max_position = from->tk_max_position;
    for (int k = 0; k < ATTACK_TK_KINDS; k++) {
        into->tk_audio[k] += from->tk_audio[k];
        into->tk_none[k] += from->tk_none[k];
        for (int i = 0; i < ATTACK_HTTP_CODES; i++)
            into->tk_http[k][i] += from->tk_http[k][i];
    }
    hist_merge(&into->connect_us, &from->connect_us);
    hist_merge(&into->ttfb_us, &from->ttfb_us);
    hist_merge(&into->first_audio_us, &from->first_audio_us);
    hist_merge(&into->closed_after_us, &from->closed_after_us);
    hist_merge(&into->kept_us, &from->kept_us);
    hist_merge(&into->tk_wait_us, &from->tk_wait_us);
    hist_merge(&into->tk_late_us, &from->tk_late_us);
    if (from->timeline_len > into->timeline_len)
        into->timeline_len = from->timeline_len;
    for (uint32_t s = 0; s < from->timeline_len && s < ATTACK_TIMELINE_MAX; s++) {
        struct attack_second *a = &into->tl[s];
        const struct attack_second *b = &from->tl[s];
        a->started += b->started;
        a->joined += b->joined;
        a->failed += b->failed;
        a->slow += b->slow;
        a->unfinished += b->unfinished;
        if (b->max_audio_ms > a->max_audio_ms)
            a->max_audio_ms = b->max_audio_ms;
    }
}

/* ---- bookkeeping ---------------------------------------------------------------------------- */

int atk_pct_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int keep = isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~';
        if (o + (keep ? 1 : 3) + 1 > cap)
            return -1;
        if (keep) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

struct atk_worker *atk_worker_of(struct loop *loop)
{
    return (struct atk_worker *)((char *)loop - offsetof(struct atk_worker, loop));
}

void atk_conn_finish(struct atk_worker *w, struct atk_conn *c, int how)
{
    if (c->state == C_FREE || c->state == C_DONE)
        return;
    struct attack_result *r = &w->res;
    int64_t now = load_now_us();
    if (c->io.fd >= 0) {
        if (!(c->flags & CF_DETACHED))
            loop_del(&w->loop, &c->io);
        close(c->io.fd);
        c->io.fd = -1;
    }
    int connected = (c->flags & CF_CONNECTED) != 0;
    if (connected)
        hist_add(&r->kept_us, (uint64_t)(now - c->t_conn));
    switch (how) {
    case END_FIN:
    case END_RST:
        if (!(c->flags & CF_KERNEL_CLOSED)) {
            if (how == END_FIN)
                r->closed_fin++;
            else
                r->closed_rst++;
            if (connected)
                hist_add(&r->closed_after_us, (uint64_t)(now - c->t_conn));
        }
        if (connected && !(c->flags & CF_GOT_BYTE))
            r->no_response++;
        break;
    case END_DONE:
        r->done++;
        break;
    case END_TIMEOUT:
        r->timeouts++;
        break;
    case END_RUN:
        if (connected)
            r->open_at_end++;
        break;
    default:
        break;
    }
    if (w->m->finish)
        w->m->finish(w, c, how);
    c->state = C_DONE;
    w->open--;
    if (w->m->pressure) {
        c->state = C_FREE;
        w->free_slots[w->nfree++] = (uint32_t)(c - w->conns);
    }
}

static int connect_fail_reason(int err)
{
    switch (err) {
    case ECONNREFUSED:
    case ECONNRESET:
        return ATTACK_F_REFUSED;
    case ETIMEDOUT:
        return ATTACK_F_TIMEOUT;
    case EADDRNOTAVAIL:
    case EADDRINUSE:
        return ATTACK_F_ADDR_NOT_AVAIL;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        return ATTACK_F_SOCKET;
    default:
        return ATTACK_F_OTHER;
    }
}

void atk_conn_fail(struct atk_worker *w, struct atk_conn *c, int err)
{
    w->res.fail[connect_fail_reason(err)]++;
    atk_conn_finish(w, c, END_FAILED);
}

int64_t atk_first_audio(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n,
                        int64_t now)
{
    oggcheck_feed(&c->ogg, p, n);
    if (!c->ogg.first_audio)
        return 0;
    int64_t audio_us = now - c->t_start;
    hist_add(&w->res.first_audio_us, (uint64_t)audio_us);
    return audio_us > 0 ? audio_us : 1;
}

/* ---- one connection ------------------------------------------------------------------------- */

static void conn_wait(struct atk_worker *w, struct atk_conn *c, int64_t now);

void atk_conn_send(struct atk_worker *w, struct atk_conn *c)
{
    uint32_t len = 0;
    const char *p = w->m->chunk ? w->m->chunk(w, c, &len) : NULL;
    if (len == 0) {
        atk_conn_finish(w, c, END_FAILED); /* a request that could not be made */
        return;
    }
    while (c->sent < len) {
        ssize_t k = send(c->io.fd, p + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (k > 0) {
            c->sent += (uint32_t)k;
            w->res.bytes_sent += (uint64_t)k;
        } else if (k == -1 && errno == EINTR) {
            continue;
        } else if (k == -1 && errno == EAGAIN) {
            c->state = C_SENDING;
            uint32_t ev =
                c->flags & CF_NOREAD ? EPOLLOUT | EPOLLRDHUP : EPOLLIN | EPOLLOUT | EPOLLRDHUP;
            if (loop_mod(&w->loop, &c->io, ev) < 0)
                atk_conn_finish(w, c, END_FAILED);
            return;
        } else {
            /* the server closed or reset while we were sending: it may have answered first */
            int err = errno;
            if (!(c->flags & CF_NOREAD))
                atk_conn_read(w, c, ATK_RBUF_SIZE);
            if (c->state != C_DONE && c->state != C_FREE)
                atk_conn_finish(w, c, err == EPIPE || err == ECONNRESET ? END_RST : END_FAILED);
            return;
        }
    }
    c->sent = 0;
    conn_wait(w, c, load_now_us());
}

/* The chunk went out whole: the mode says what <c> waits for; by default, the server. */
static void conn_wait(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    c->state = C_WAITING;
    if (w->m->sent && w->m->sent(w, c, now))
        return;
    if (loop_mod(&w->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
        atk_conn_finish(w, c, END_FAILED);
}

static void conn_connected(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    c->flags |= CF_CONNECTED;
    c->t_conn = now;
    w->res.connected++;
    hist_add(&w->res.connect_us, (uint64_t)(now - c->t_start));
    if (!w->m->chunk) {
        c->state = C_WAITING;
        if (loop_mod(&w->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
            atk_conn_finish(w, c, END_FAILED);
        return;
    }
    c->state = C_SENDING;
    atk_conn_send(w, c);
}

/* Matches head byte <b> at c->hpos of the current line against "retry-after:" and the worker's
 * <hdr_match>. */
static void head_match(struct atk_worker *w, struct atk_conn *c, uint8_t b)
{
    static const char ra[] = "retry-after:";
    if (c->hpos < sizeof(ra) - 1 && !(c->flags & CF_LINE_NOMATCH)) {
        if (tolower(b) != ra[c->hpos])
            c->flags |= CF_LINE_NOMATCH;
        else if (c->hpos == sizeof(ra) - 2)
            c->flags |= CF_RETRY_AFTER;
    }
    if (w->hdr_len && !(c->flags & CF_HDR_NOMATCH)) {
        if (c->hpos >= w->hdr_len) {
            c->flags |= CF_HDR_NOMATCH; /* longer than the line we look for */
        } else {
            uint8_t want = (uint8_t)w->hdr_match[c->hpos];
            uint8_t got = c->hpos < w->hdr_ci ? (uint8_t)tolower(b) : b;
            if (got != want)
                c->flags |= CF_HDR_NOMATCH;
        }
    }
}

/* Parses response head bytes of <c>. Returns how many of <n> belong to the head, or -1 if <c>
 * was finished (or its mode stops reading it). */
static ssize_t conn_head(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (++c->head_bytes > HEAD_MAX) {
            w->res.bad_responses++;
            atk_conn_finish(w, c, END_DONE);
            return -1;
        }
        if (c->hstate == 0) {
            if (b == ' ' && c->head_bytes > 1) {
                c->hstate = 1;
            } else if (b <= ' ' || b >= 0x7f || c->head_bytes > 16) {
                w->res.bad_responses++;
                atk_conn_finish(w, c, END_DONE);
                return -1;
            }
        } else if (c->hstate <= 3) {
            if (b < '0' || b > '9') {
                w->res.bad_responses++;
                atk_conn_finish(w, c, END_DONE);
                return -1;
            }
            c->status = (uint16_t)(c->status * 10 + (b - '0'));
            if (++c->hstate == 4) {
                c->flags |= CF_STATUS;
                w->res.responses++;
                if (c->status >= 100 && c->status < ATTACK_HTTP_CODES)
                    w->res.http[c->status]++;
                if (w->m->status)
                    w->m->status(w, c);
            }
        } else if (b == '\n') {
            if (c->hnl) {
                c->hstate = 5;
                if (c->flags & CF_RETRY_AFTER)
                    w->res.retry_after++;
                if (w->m->head_end && w->m->head_end(w, c) < 0)
                    return -1;
                return (ssize_t)(i + 1);
            }
            if (w->hdr_len && !(c->flags & CF_HDR_NOMATCH) && c->hpos == w->hdr_len)
                c->flags |= CF_HDR_MATCH;
            c->hnl = 1;
            c->hpos = 0;
            c->flags &= (uint16_t) ~(CF_LINE_NOMATCH | CF_HDR_NOMATCH);
        } else if (b != '\r') {
            c->hnl = 0;
            head_match(w, c, b);
            if (c->hpos < UINT16_MAX)
                c->hpos++;
        }
    }
    return (ssize_t)n;
}

/* Handles received bytes of <c>. Returns 0, or -1 if <c> was finished. */
static int conn_bytes(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n,
                      int64_t now)
{
    w->res.bytes_received += n;
    c->rx += n;
    if (!(c->flags & CF_GOT_BYTE)) {
        c->flags |= CF_GOT_BYTE;
        hist_add(&w->res.ttfb_us, (uint64_t)(now - c->t_start));
    }
    ssize_t off = 0;
    if (c->hstate < 5 && (off = conn_head(w, c, p, n)) < 0)
        return -1;
    if ((size_t)off < n && w->m->body)
        return w->m->body(w, c, p + off, n - (size_t)off, now);
    return 0;
}

/* The server closed <c> (EOF, <how> END_FIN) or reset it (END_RST). */
static void conn_closed(struct atk_worker *w, struct atk_conn *c, int how)
{
    if (w->m->closed && w->m->closed(w, c, how))
        return;
    atk_conn_finish(w, c, how);
}

void atk_conn_read(struct atk_worker *w, struct atk_conn *c, size_t most)
{
    int rounds = most >= ATK_RBUF_SIZE ? 4 : 1;
    for (int round = 0; round < rounds; round++) {
        size_t want = most < sizeof(w->rbuf) ? most : sizeof(w->rbuf);
        ssize_t n = recv(c->io.fd, w->rbuf, want, 0);
        if (n > 0) {
            if (conn_bytes(w, c, w->rbuf, (size_t)n, load_now_us()) < 0)
                return;
            if ((size_t)n < want)
                return;
        } else if (n == 0) {
            conn_closed(w, c, END_FIN);
            return;
        } else if (errno == EAGAIN || errno == EINTR) {
            return;
        } else {
            conn_closed(w, c, END_RST);
            return;
        }
    }
}

/* A connection that must not be read hung up (EPOLLRDHUP / HUP / ERR): reset if the socket has
 * an error, else the server's FIN. */
static void conn_hangup(struct atk_worker *w, struct atk_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    atk_conn_finish(w, c, err ? END_RST : END_FIN);
}

static void conn_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct atk_worker *w = atk_worker_of(loop);
    struct atk_conn *c = (struct atk_conn *)((char *)io - offsetof(struct atk_conn, io));
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err) {
            atk_conn_fail(w, c, err);
            return;
        }
        if (events & EPOLLOUT)
            conn_connected(w, c, load_now_us());
        return;
    }
    if (c->flags & CF_NOREAD) {
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            conn_hangup(w, c);
            return;
        }
    } else if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        atk_conn_read(w, c, ATK_RBUF_SIZE);
        if (c->state == C_DONE || c->state == C_FREE)
            return;
    }
    if ((events & EPOLLOUT) && c->state == C_SENDING)
        atk_conn_send(w, c);
}

void atk_conn_open(struct atk_worker *w, struct atk_conn *c, int kind)
{
    const struct attack_opts *o = w->o;
    *c = (struct atk_conn){.io = {.fd = -1, .cb = conn_on_io}, .state = C_CONNECTING};
    oggcheck_init(&c->ogg);
    uint64_t g = w->seq++ * o->procs + w->index; /* over all workers */
    c->kind = (uint8_t)kind;
    c->seed = (uint32_t)(o->seed * 7919u + g * 2654435761u);
    c->len = (uint32_t)g; /* the connection's number: a mode may use it (garbage redraws it) */
    c->t_start = load_now_us();
    w->res.attempted++;
    w->open++;
    if (w->open > w->res.peak_open)
        w->res.peak_open = w->open;
    int fd = socket(o->url.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        LOG_RATELIMITED(LOG_WARN, "attack", "socket: %s", strerror(errno));
        atk_conn_fail(w, c, errno);
        return;
    }
    c->io.fd = fd;
    if (w->m->open)
        w->m->open(w, c, fd);
    if (o->src_count) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(o->src_first + (uint32_t)(g % o->src_count));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
            LOG_RATELIMITED(LOG_WARN, "attack", "bind: %s", strerror(errno));
            atk_conn_fail(w, c, errno);
            return;
        }
    }
    int rc = connect(fd, (const struct sockaddr *)&o->url.addr, o->url.addrlen);
    if (rc == -1 && errno != EINPROGRESS) {
        atk_conn_fail(w, c, errno);
        return;
    }
    if (w->m->kernel_close && o->url.family == AF_INET) {
        struct sockaddr_in me;
        socklen_t ml = sizeof(me);
        if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0) {
            c->laddr = ntohl(me.sin_addr.s_addr);
            c->lport = ntohs(me.sin_port);
        }
    }
    if (loop_add(&w->loop, &c->io, EPOLLOUT) < 0) {
        atk_conn_fail(w, c, ENOMEM);
        return;
    }
    if (rc == 0)
        conn_connected(w, c, load_now_us());
}

/* ---- timers and the end --------------------------------------------------------------------- */

static void on_pace(struct loop *loop, struct loop_timer *t)
{
    struct atk_worker *w = atk_worker_of(loop);
    const struct attack_opts *o = w->o;
    int64_t now = load_now_us();
    double elapsed = (double)(now - w->start_us) / 1e6;
    double due_d = floor(w->rate * elapsed) + 1;
    uint64_t due = due_d > 1e15 ? (uint64_t)1e15 : (uint64_t)due_d;
    if (w->m->pressure) {
        while (w->started + w->skipped < due && now < w->end_us && !w->ending) {
            if (!o->reopen && w->started >= w->n)
                break;
            if (w->nfree == 0) {
                w->skipped++;
                continue;
            }
            uint32_t slot = w->free_slots[--w->nfree];
            w->started++;
            atk_conn_open(w, &w->conns[slot], 0);
        }
        if (o->reopen || w->started < w->n)
            loop_timer_start(loop, t, ATK_PACE_MS, on_pace);
        return;
    }
    while (w->started < due && w->started < w->n && now < w->end_us && !w->ending) {
        uint32_t slot = (uint32_t)w->started++;
        if (w->m->start)
            w->m->start(w, slot);
        else
            atk_conn_open(w, &w->conns[slot], 0);
    }
    if (w->started < w->n && !w->ending)
        loop_timer_start(loop, t, ATK_PACE_MS, on_pace);
}

static void on_scan(struct loop *loop, struct loop_timer *t)
{
    struct atk_worker *w = atk_worker_of(loop);
    const struct attack_opts *o = w->o;
    int64_t now = load_now_us();
    uint32_t slots = w->m->pressure ? w->n : (uint32_t)w->started;
    /* a join's --timeout-ms runs from connect(): a backlog that drops SYNs must not stretch it */
    int64_t connect_timeout_us = ATTACK_CONNECT_TIMEOUT_US;
    if (w->m->timeout_start && (int64_t)o->timeout_ms * 1000 < connect_timeout_us)
        connect_timeout_us = (int64_t)o->timeout_ms * 1000;
    for (uint32_t i = 0; i < slots && !w->ending; i++) {
        struct atk_conn *c = &w->conns[i];
        if (c->state == C_CONNECTING) {
            if (now - c->t_start > connect_timeout_us)
                atk_conn_fail(w, c, ETIMEDOUT);
            continue;
        }
        if (w->m->timeout_start && (c->state == C_SENDING || c->state == C_WAITING) &&
            now - c->t_start > (int64_t)o->timeout_ms * 1000) {
            atk_conn_finish(w, c, END_TIMEOUT);
            continue;
        }
        if (w->m->scan)
            w->m->scan(w, i, now);
    }
    if (!w->ending)
        loop_timer_start(loop, t, ATK_SCAN_MS, on_scan);
}

static void on_diag(struct loop *loop, struct loop_timer *t)
{
    struct atk_worker *w = atk_worker_of(loop);
    atk_diag_tick(w);
    if (!w->ending)
        loop_timer_start(loop, t, ATK_DIAG_MS, on_diag);
}

/* Closes everything still open (counted as open at the end) and stops the loop. */
static void worker_finish_run(struct atk_worker *w)
{
    if (w->ending)
        return;
    w->ending = 1;
    if (w->m->end)
        w->m->end(w);
    uint32_t slots = w->m->pressure ? w->n : (uint32_t)w->started;
    for (uint32_t i = 0; i < slots; i++)
        atk_conn_finish(w, &w->conns[i], END_RUN);
    w->waiting = 0;
    loop_timer_stop(&w->loop, &w->pace);
    loop_timer_stop(&w->loop, &w->scan);
    loop_timer_stop(&w->loop, &w->diag);
    loop_timer_stop(&w->loop, &w->end);
    loop_stop(&w->loop);
}

static void on_end(struct loop *loop, struct loop_timer *t)
{
    worker_finish_run(atk_worker_of(loop));
}

/* After each loop iteration: the mode's turn (tickets probes move on), and the end of the run
 * of a worker whose attempts are all over. */
static void on_before_sleep(struct loop *loop, void *arg)
{
    struct atk_worker *w = arg;
    if (!w->ending && w->m->before_sleep)
        w->m->before_sleep(w);
    if (!w->ending && !w->m->pressure && w->started >= w->n && w->open == 0 && w->waiting == 0 &&
        w->npending == 0)
        worker_finish_run(w);
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

int attack_worker(const struct attack_opts *o, uint32_t index, uint32_t n, int64_t start_us,
                  struct attack_result *res)
{
    if ((unsigned)o->mode >= ATTACK_MODES)
        return -EINVAL;
    struct atk_worker *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->o = o;
    w->m = mode_of(o);
    w->index = index;
    w->n = n;
    w->rate = o->rate * (double)n / (double)o->count;
    w->start_us = start_us;
    w->end_us = start_us + (int64_t)o->seconds * 1000000;
    w->diag_fd = -1;
    w->res.magic = ATTACK_RESULT_MAGIC;
    struct hist *hs[] = {&w->res.connect_us,      &w->res.ttfb_us, &w->res.first_audio_us,
                         &w->res.closed_after_us, &w->res.kept_us, &w->res.tk_wait_us,
                         &w->res.tk_late_us};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        hist_init(hs[i]);
    int rl = snprintf(w->req, sizeof(w->req),
                      "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rostrum-load attack\r\n\r\n",
                      o->url.path, o->url.host, o->url.port);
    w->req_len = (uint16_t)rl;
    w->conns = calloc(n ? n : 1, sizeof(*w->conns));
    if (!w->conns)
        abort();
    for (uint32_t i = 0; i < n; i++)
        w->conns[i].io.fd = -1;
    if (w->m->pressure) {
        w->free_slots = malloc((n ? n : 1) * sizeof(*w->free_slots));
        if (!w->free_slots)
            abort();
        for (uint32_t i = 0; i < n; i++)
            w->free_slots[w->nfree++] = n - 1 - i;
    }
    if (w->m->setup)
        w->m->setup(w);
    int rc = loop_init(&w->loop);
    if (rc == 0 && w->m->kernel_close && o->url.family == AF_INET) {
        w->diag_fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (w->diag_fd == -1)
            log_warn("attack",
                     "sock_diag unavailable (%s): server closes of connections that do not "
                     "read will only be seen at EOF",
                     strerror(errno));
    }
    if (rc == 0) {
        sleep_until_us(start_us);
        int64_t now = load_now_us();
        loop_timer_start(&w->loop, &w->pace, 0, on_pace);
        loop_timer_start(&w->loop, &w->scan, ATK_SCAN_MS, on_scan);
        if (w->diag_fd >= 0)
            loop_timer_start(&w->loop, &w->diag, ATK_DIAG_MS, on_diag);
        loop_timer_start(&w->loop, &w->end, (w->end_us - now + 999) / 1000, on_end);
        w->loop.before_sleep = on_before_sleep;
        w->loop.before_sleep_arg = w;
        if (n == 0)
            worker_finish_run(w);
        loop_run(&w->loop);
        loop_close(&w->loop);
        *res = w->res;
    }
    if (w->diag_fd >= 0)
        close(w->diag_fd);
    if (w->m->cleanup)
        w->m->cleanup(w);
    free(w->free_slots);
    free(w->conns);
    free(w);
    return rc;
}
