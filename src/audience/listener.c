/*
 * listener: delivery of a space's stream to one HTTP listener, in an audience process.
 *
 * A listener is a cursor into its slot's page ring plus a few counters (struct
 * listener_state, 56 bytes; 168 with the connection). Writes are batched: every page the listener has not yet had,
 * up to LISTENER_MAX_IOV pages, goes out in one writev() straight from the shared ring;
 * nothing is copied per listener. EPOLLOUT is armed only when the socket is full, and while
 * it is armed the listener is skipped by the flushes.
 *
 * Falling behind: a listener more than lag-ms of audio behind the live edge, or whose next
 * page has been evicted from the ring, jumps to the newest page (a page boundary, so the
 * Ogg stream stays well-formed) and that counts as a stall; max-stalls stalls within a minute
 * close it. A listener caught mid-page by eviction cannot finish that page and is closed.
 *
 * The ring is written by another process: after a writev() the pages it covered are checked
 * to be still in the ring (ring_tail()); if the writer had lapped them, bytes may have been
 * torn and the listener is closed. With lag-ms far below the ring's span this never happens
 * in practice; the check makes it safe rather than unlikely.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "audience/audience.h"
#include "shm/ring.h"
#include "util/log.h"

#define LISTENER_MAX_IOV 64
#define LISTENER_MAX_BATCH (256 * 1024)
#define STALL_WINDOW_MS 60000
#define LISTENER_SNDBUF 65536 /* the kernel doubles it */
#define PRE_DONE UINT32_MAX   /* pre_off once the whole preamble went out */

static const char *const close_reason_names[CLOSE_REASONS] = {
    "peer closed", "too slow", "stuck", "mount ended", "stream restarted", "socket error"};

/* Whoever closes a listener's connection, its counts go with it. */
static void listener_on_close(struct conn *c)
{
    struct listener_state *l = LST(c);
    struct audience *a = audience_of(c);
    list_unlink(&c->node);
    a->nlisteners--;
    a->me->conns[l->slot]--;
    a->me->listener_connections--;
}

static const struct conn_ops listener_ops = {"listener", listener_on_close, NULL};

static void listener_on_io(struct loop *loop, struct io *io, uint32_t events);

void listener_close(struct conn *c, enum close_reason why)
{
    struct listener_state *l = LST(c);
    if (c->dead || c->ops != &listener_ops)
        return;
    audience_of(c)->me->c.listener_closes[why]++;
    log_debug("listen", "#%llu %s: closed (%s) after %llu bytes", (unsigned long long)c->id,
              c->peer, close_reason_names[why], (unsigned long long)l->bytes);
    conn_close(c);
}

void listener_start(struct conn *c, int slot, int head_only)
{
    struct listener_state *l = LST(c);
    struct audience *a = audience_of(c);
    struct shared_space *ss = &a->sh->spaces[slot];
    struct ring *r = shared_ring(a->sh, slot);
    struct shared_worker *me = a->me;
    int burst_ms = config_burst_ms(a->cfg, config_space(a->cfg, ss->mount));
    conn_take(c, &listener_ops);
    l->slot = (uint16_t)slot;
    l->gen = a->gen[slot];
    l->head_only = (uint8_t)head_only;
    l->pre_gen = __atomic_load_n(&ss->preamble_gen, __ATOMIC_ACQUIRE);
    l->cursor = ring_burst_start(r, (uint64_t)burst_ms * 48);
    l->last_byte_ms = a->loop->now_ms;
    l->stall_window_ms = a->loop->now_ms;
    /* A bounded kernel buffer: about 20 s of audio at 48 kb/s. Without it the kernel would
     * autotune up to megabytes for a client that never reads, holding memory and hiding
     * the stall from us for minutes. */
    int sndbuf = LISTENER_SNDBUF;
    setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    c->io.cb = listener_on_io;
    list_insert_tail(&a->listeners[slot], &c->node);
    a->nlisteners++;
    me->conns[slot]++;
    me->listener_connections++;
    me->c.joins[JOIN_OK]++;
    log_debug("listen", "#%llu %s: joined /%s at page %llu (live edge %llu)",
              (unsigned long long)c->id, c->peer, ss->mount, (unsigned long long)l->cursor,
              (unsigned long long)ring_head(r));
    if (loop_mod(a->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0) {
        listener_close(c, CLOSE_ERROR);
        return;
    }
    listener_flush(c);
}

/* Moves a lagging listener to the newest page. Returns 0, or -1 if it was closed. */
static int listener_jump(struct conn *c, const struct ring *r)
{
    struct listener_state *l = LST(c);
    struct audience *a = audience_of(c);
    int64_t now = a->loop->now_ms;
    if (now - l->stall_window_ms > STALL_WINDOW_MS) {
        l->stall_window_ms = now;
        l->stalls = 0;
    }
    l->stalls++;
    a->me->c.stalls++;
    if (l->stalls >= a->cfg->max_stalls) {
        listener_close(c, CLOSE_TOO_SLOW);
        return -1;
    }
    uint64_t head = ring_head(r);
    l->cursor = head > ring_tail(r) ? head - 1 : head;
    l->page_off = 0;
    LOG_RATELIMITED(LOG_INFO, "listen", "#%llu %s: fell behind, jumped to the live edge",
                    (unsigned long long)c->id, c->peer);
    return 0;
}

/* Checks the cursor against the ring before a write. Returns 0, or -1 if <c> was closed. */
static int listener_check_lag(struct conn *c, const struct ring *r)
{
    struct listener_state *l = LST(c);
    uint64_t head = ring_head(r);
    if (l->cursor >= head)
        return 0;
    const struct ring_slot *s = ring_slot_get(r, l->cursor);
    if (!s) {
        if (l->page_off > 0) {
            audience_of(c)->me->c.stalls++;
            listener_close(c, CLOSE_TOO_SLOW);
            return -1;
        }
        return listener_jump(c, r);
    }
    if (l->page_off > 0)
        return 0;
    const struct ring_slot *last = ring_slot_get(r, head - 1);
    uint64_t lag = last && last->granule > s->granule ? last->granule - s->granule : 0;
    if (lag > (uint64_t)audience_of(c)->cfg->lag_ms * 48)
        return listener_jump(c, r);
    return 0;
}

static void listener_block(struct conn *c, int blocked)
{
    struct listener_state *l = LST(c);
    l->blocked = (uint8_t)blocked;
    loop_mod(audience_of(c)->loop, &c->io, EPOLLIN | EPOLLRDHUP | (blocked ? EPOLLOUT : 0));
}

void listener_flush(struct conn *c)
{
    struct audience *a = audience_of(c);
    struct listener_state *l = LST(c);
    struct shared_space *ss = &a->sh->spaces[l->slot];
    const struct ring *r = shared_ring(a->sh, l->slot);
    for (int round = 0; round < 4 && !c->dead; round++) {
        if (__atomic_load_n(&ss->gen, __ATOMIC_ACQUIRE) != l->gen) {
            listener_close(c, CLOSE_RESTART);
            return;
        }
        uint32_t pre_gen = __atomic_load_n(&ss->preamble_gen, __ATOMIC_ACQUIRE);
        uint32_t pre_len, http_len;
        const unsigned char *pre = shared_preamble(ss, pre_gen, &pre_len, &http_len);
        if (pre_gen != l->pre_gen) {
            /* The preamble changed (new source metadata). Not started, or done: nothing to
             * do. Half sent: finish the old one from its half of the double buffer, unless
             * a second change has overwritten that half. */
            if (l->pre_off == 0 || l->pre_off == PRE_DONE) {
                l->pre_gen = pre_gen;
            } else if (pre_gen - l->pre_gen > 1) {
                listener_close(c, CLOSE_RESTART);
                return;
            } else {
                pre = shared_preamble(ss, l->pre_gen, &pre_len, &http_len);
            }
        }
        if (l->head_only)
            pre_len = http_len;
        if (l->pre_off >= pre_len && l->head_only) {
            listener_close(c, CLOSE_PEER);
            return;
        }
        if (l->pre_off >= pre_len && listener_check_lag(c, r) < 0)
            return;

        struct iovec iov[LISTENER_MAX_IOV];
        int n = 0;
        size_t total = 0;
        if (l->pre_off < pre_len) {
            iov[n].iov_base = (void *)(pre + l->pre_off);
            iov[n].iov_len = pre_len - l->pre_off;
            total += iov[n++].iov_len;
        }
        uint64_t head = ring_head(r);
        if (!l->head_only) {
            uint32_t off = l->page_off;
            for (uint64_t seq = l->cursor;
                 seq < head && n < LISTENER_MAX_IOV && total < LISTENER_MAX_BATCH; seq++) {
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
            listener_block(c, 0);
            return;
        }
        ssize_t w = writev(c->io.fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                listener_block(c, 1);
                return;
            }
            listener_close(c, errno == EPIPE || errno == ECONNRESET ? CLOSE_PEER : CLOSE_ERROR);
            return;
        }
        size_t pre_part = l->pre_off < pre_len ? pre_len - l->pre_off : 0;
        if (l->cursor < ring_tail(r) && (size_t)w > pre_part) {
            /* the writer lapped us during the copy: what went out may be torn */
            a->me->c.stalls++;
            listener_close(c, CLOSE_TOO_SLOW);
            return;
        }
        size_t left = (size_t)w;
        a->me->c.bytes_sent += left;
        l->bytes += left;
        l->last_byte_ms = a->loop->now_ms;
        if (l->pre_off < pre_len) {
            size_t take = pre_len - l->pre_off < left ? pre_len - l->pre_off : left;
            l->pre_off += (uint32_t)take;
            left -= take;
            if (l->pre_off >= pre_len)
                l->pre_off = PRE_DONE;
        }
        while (left > 0) {
            const struct ring_slot *s = ring_slot_get(r, l->cursor);
            size_t rest = s->len - l->page_off;
            if (left >= rest) {
                left -= rest;
                l->cursor++;
                l->page_off = 0;
            } else {
                l->page_off += (uint32_t)left;
                left = 0;
            }
        }
        if ((size_t)w < total) {
            listener_block(c, 1);
            return;
        }
        if (l->head_only) {
            listener_close(c, CLOSE_PEER);
            return;
        }
        if (l->cursor >= head) {
            listener_block(c, 0);
            return;
        }
        /* more pages than one batch: go round again */
    }
}

static void listener_on_io(struct loop *loop, struct io *io, uint32_t events)
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
        LST(c)->blocked = 0;
        listener_flush(c);
    }
}
