/*
 * listener: delivery of a space's stream to one HTTP listener.
 *
 * A listener is a cursor into its space's page ring plus a few counters (struct
 * listener_state, ~80 bytes). Writes are batched: every page the listener has not yet had,
 * up to LISTENER_MAX_IOV pages, goes out in one writev() straight from the ring; nothing is
 * copied per listener. EPOLLOUT is armed only when the socket is full, and while it is armed
 * the listener is skipped by space_flush().
 *
 * Falling behind: a listener more than lag-ms of audio behind the live edge, or whose next
 * page has been evicted from the ring, jumps to the newest page (a page boundary, so the
 * Ogg stream stays well-formed) and that counts as a stall; max-stalls stalls within a minute
 * close it. A listener caught mid-page by eviction cannot finish that page and is closed.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ring/ring.h"
#include "server/server.h"
#include "server/space.h"
#include "util/log.h"

#define LISTENER_MAX_IOV 64
#define LISTENER_MAX_BATCH (256 * 1024)
#define STALL_WINDOW_MS 60000

static const char *const close_reason_names[CLOSE_REASONS] = {
    "peer closed", "too slow", "stuck", "mount ended", "stream restarted", "socket error"};

void listener_close(struct conn *c, enum close_reason why)
{
    if (c->dead || c->kind != CONN_LISTENER)
        return;
    struct server *srv = c->srv;
    struct space *sp = c->l.space;
    if (sp) {
        list_unlink(&c->node);
        sp->nlisteners--;
        c->l.space = NULL;
    }
    srv->st.listener_connections--;
    srv->st.listener_closes[why]++;
    log_debug("listen", "#%llu %s: closed (%s) after %llu bytes", (unsigned long long)c->id,
              c->peer, close_reason_names[why], (unsigned long long)c->l.bytes);
    conn_close(c);
}

void listener_start(struct conn *c, struct space *sp, int head_only)
{
    struct server *srv = c->srv;
    c->kind = CONN_LISTENER;
    c->l = (struct listener_state){0};
    c->l.space = sp;
    c->l.head_only = (uint8_t)head_only;
    c->l.pre_gen = sp->preamble_gen;
    c->l.cursor = ring_burst_start(sp->ring, (uint64_t)space_burst_ms(sp) * 48);
    c->l.last_byte_ms = srv->loop.now_ms;
    c->l.stall_window_ms = srv->loop.now_ms;
    c->io.cb = listener_on_io;
    list_insert_tail(&sp->listeners, &c->node);
    sp->nlisteners++;
    if (sp->nlisteners > sp->listener_peak)
        sp->listener_peak = sp->nlisteners;
    srv->st.listener_connections++;
    srv->st.joins[JOIN_OK]++;
    log_debug("listen", "#%llu %s: joined /%s at page %llu (live edge %llu)",
              (unsigned long long)c->id, c->peer, sp->mount, (unsigned long long)c->l.cursor,
              (unsigned long long)sp->ring->head);
    if (loop_mod(&srv->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0) {
        listener_close(c, CLOSE_ERROR);
        return;
    }
    listener_flush(c);
}

/* Moves a lagging listener to the newest page. Returns 0, or -1 if it was closed. */
static int listener_jump(struct conn *c, struct space *sp)
{
    struct server *srv = c->srv;
    int64_t now = srv->loop.now_ms;
    if (now - c->l.stall_window_ms > STALL_WINDOW_MS) {
        c->l.stall_window_ms = now;
        c->l.stalls = 0;
    }
    c->l.stalls++;
    srv->st.stalls++;
    if (c->l.stalls >= srv->cfg.max_stalls) {
        listener_close(c, CLOSE_TOO_SLOW);
        return -1;
    }
    uint64_t head = sp->ring->head;
    c->l.cursor = head > sp->ring->tail ? head - 1 : head;
    c->l.page_off = 0;
    LOG_RATELIMITED(LOG_INFO, "listen", "#%llu %s: fell behind on /%s, jumped to the live edge",
                    (unsigned long long)c->id, c->peer, sp->mount);
    return 0;
}

/* Checks the cursor against the ring before a write. Returns 0, or -1 if <c> was closed. */
static int listener_check_lag(struct conn *c, struct space *sp)
{
    const struct ring *r = sp->ring;
    if (c->l.cursor >= r->head)
        return 0;
    const struct ring_slot *s = ring_slot_get(r, c->l.cursor);
    if (!s) {
        if (c->l.page_off > 0) {
            c->srv->st.stalls++;
            listener_close(c, CLOSE_TOO_SLOW);
            return -1;
        }
        return listener_jump(c, sp);
    }
    if (c->l.page_off > 0)
        return 0;
    const struct ring_slot *last = ring_slot_get(r, r->head - 1);
    uint64_t lag = last->granule > s->granule ? last->granule - s->granule : 0;
    if (lag > (uint64_t)c->srv->cfg.lag_ms * 48)
        return listener_jump(c, sp);
    return 0;
}

void listener_flush(struct conn *c)
{
    struct server *srv = c->srv;
    for (int round = 0; round < 4 && !c->dead; round++) {
        struct space *sp = c->l.space;
        if (!sp)
            return;
        if (c->l.pre_gen != sp->preamble_gen) {
            /* the preamble changed (new source metadata) */
            if (c->l.pre_off > 0 && c->l.pre_off < sp->preamble.len) {
                listener_close(c, CLOSE_RESTART);
                return;
            }
            c->l.pre_gen = sp->preamble_gen;
        }
        uint32_t pre_len =
            (uint32_t)(c->l.head_only ? sp->preamble_http_len : sp->preamble.len);
        if (c->l.pre_off >= pre_len && c->l.head_only) {
            listener_close(c, CLOSE_PEER);
            return;
        }
        if (c->l.pre_off >= pre_len && listener_check_lag(c, sp) < 0)
            return;

        struct iovec iov[LISTENER_MAX_IOV];
        int n = 0;
        size_t total = 0;
        if (c->l.pre_off < pre_len) {
            iov[n].iov_base = sp->preamble.data + c->l.pre_off;
            iov[n].iov_len = pre_len - c->l.pre_off;
            total += iov[n++].iov_len;
        }
        if (!c->l.head_only) {
            const struct ring *r = sp->ring;
            uint32_t off = c->l.page_off;
            for (uint64_t seq = c->l.cursor;
                 seq < r->head && n < LISTENER_MAX_IOV && total < LISTENER_MAX_BATCH; seq++) {
                const struct ring_slot *s = ring_slot_get(r, seq);
                if (!s)
                    break;
                iov[n].iov_base = (void *)(ring_slot_data(r, s) + off);
                iov[n].iov_len = s->len - off;
                total += iov[n++].iov_len;
                off = 0;
            }
        }
        if (n == 0) {
            c->l.blocked = 0;
            loop_mod(&srv->loop, &c->io, EPOLLIN | EPOLLRDHUP);
            return;
        }
        ssize_t w = writev(c->io.fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                c->l.blocked = 1;
                loop_mod(&srv->loop, &c->io, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
                return;
            }
            listener_close(c, errno == EPIPE || errno == ECONNRESET ? CLOSE_PEER : CLOSE_ERROR);
            return;
        }
        size_t left = (size_t)w;
        srv->st.bytes_sent += left;
        c->l.bytes += left;
        c->l.last_byte_ms = srv->loop.now_ms;
        if (c->l.pre_off < pre_len) {
            size_t take = pre_len - c->l.pre_off < left ? pre_len - c->l.pre_off : left;
            c->l.pre_off += (uint32_t)take;
            left -= take;
        }
        while (left > 0) {
            const struct ring_slot *s = ring_slot_get(sp->ring, c->l.cursor);
            size_t rest = s->len - c->l.page_off;
            if (left >= rest) {
                left -= rest;
                c->l.cursor++;
                c->l.page_off = 0;
            } else {
                c->l.page_off += (uint32_t)left;
                left = 0;
            }
        }
        if ((size_t)w < total) {
            c->l.blocked = 1;
            loop_mod(&srv->loop, &c->io, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
            return;
        }
        c->l.blocked = 0;
        if (c->l.head_only && c->l.pre_off >= pre_len) {
            listener_close(c, CLOSE_PEER);
            return;
        }
        if (c->l.cursor >= sp->ring->head) {
            loop_mod(&srv->loop, &c->io, EPOLLIN | EPOLLRDHUP);
            return;
        }
        /* more pages than one batch: go round again */
    }
}

void listener_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        /* A listener has nothing to say; read to learn that it left, discard the rest. */
        char sink[512];
        for (int i = 0; i < 8; i++) {
            ssize_t r = recv(io->fd, sink, sizeof(sink), 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                listener_close(c, CLOSE_PEER);
                return;
            }
            if (r < 0)
                break;
        }
    }
    if (events & EPOLLOUT) {
        c->l.blocked = 0;
        listener_flush(c);
    }
}
