/*
 * listener: delivery of a space's stream to one HTTP listener, in an audience process.
 *
 * A listener is a cursor into its slot's page ring plus a few counters (struct
 * listener_state, 96 bytes; 240 with the connection). Writes are batched: every page the listener has not yet had,
 * up to LISTENER_MAX_IOV pages, goes out in one writev() straight from the shared ring;
 * nothing is copied per listener. EPOLLOUT is armed only when the socket is full, and while
 * it is armed the listener is skipped by the flushes.
 *
 * Falling behind (the laggard rule, listener_next_page()): before every write the listener's
 * position is judged by time, more than lag-ms of audio behind the newest page, and by bytes
 * and pages behind the ring's write position (ring_lag_limits(): past them its page could be
 * overwritten while it is sent). A laggard at a page boundary jumps to the newest page; one
 * caught mid-page -- a slow reader nearly always is -- gets only the rest of that page, so the
 * Ogg stream the player sees stays whole, and jumps at its end. Each jump is a stall;
 * max-stalls stalls within a minute close it. A listener whose page was evicted mid-page
 * cannot finish it and is closed (with the rule above this takes a listener that took nothing
 * for a long while: the byte limit keeps a quarter arena of margin).
 *
 * The ring and the preamble are written by another process (shm/shm.h): pages are taken with
 * ring_page_get() (a copy of the slot; the slot itself is never dereferenced later), and after
 * each writev() the pages and the preamble generation it covered are checked to be intact. If
 * not, the kernel may hold torn bytes that cannot be recalled, so the listener is closed
 * (counted in torn_closes) rather than left with a page that fails its CRC.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "audience/audience.h"
#include "shm/ring.h"
#include "util/log.h"

#define LISTENER_MAX_IOV 64
#define LISTENER_MAX_BATCH (256 * 1024)
#define STALL_WINDOW_MS 60000
#define LISTENER_SNDBUF 65536     /* at most; the kernel doubles it */
#define LISTENER_SNDBUF_MIN 8192  /* at least */
#define PRE_DONE UINT32_MAX   /* pre_off once the whole preamble went out */

static const char *const close_reason_names[CLOSE_REASONS] = {
    "peer closed", "too slow", "stuck", "mount ended", "stream restarted", "socket error"};

/* Whoever closes a listener's connection, its counts go with it. */
static void listener_on_close(struct conn *c)
{
    struct listener_state *l = LST(c);
    struct audience *a = audience_of(c);
    audience_log_session(a, c, l->why ? close_reason_names[l->why - 1] : "server closed");
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
    l->why = (uint8_t)(why + 1);
    log_debug("listen", "#%llu %s: closed (%s) after %llu bytes", (unsigned long long)c->id,
              c->peer, close_reason_names[why], (unsigned long long)l->bytes);
    conn_close(c);
}

void listener_start(struct conn *c, int slot, int head_only, const struct listener_join *j)
{
    struct listener_state *l = LST(c);
    struct audience *a = audience_of(c);
    struct shared_space *ss = &a->sh->spaces[slot];
    struct ring *r = shared_ring(a->sh, slot);
    struct shared_worker *me = a->me;
    int burst_ms = j && j->burst_ms >= 0 ? j->burst_ms
                                         : config_burst_ms(a->cfg, config_space(a->cfg, ss->mount));
    conn_take(c, &listener_ops);
    l->slot = (uint16_t)slot;
    l->gen = a->gen[slot];
    l->head_only = (uint8_t)head_only;
    l->pre_gen = shared_preamble_gen(ss);
    l->cursor = ring_burst_start(r, (uint64_t)burst_ms * 48);
    l->gap = 0;
    if (j && j->has_from) {
        /* a resume: the page it lacks, if the ring still has it; a little ahead (another
         * server of the tree that is further on) waits there, as a relay feed does */
        uint64_t max_bytes, max_pages;
        ring_lag_limits(r, &max_bytes, &max_pages);
        if (j->from >= ring_tail(r) && j->from <= ring_head(r) + max_pages) {
            l->cursor = j->from;
            me->c.listener_resumes++;
        } else {
            l->gap = 1;
            me->c.listener_resume_gaps++;
            LOG_RATELIMITED(LOG_INFO, "listen", "#%llu %s: cannot resume at page %llu (ring %llu..%llu)",
                            (unsigned long long)c->id, c->peer, (unsigned long long)j->from,
                            (unsigned long long)ring_tail(r), (unsigned long long)ring_head(r));
        }
    }
    l->first_seq = l->cursor;
    l->last_byte_ms = a->loop->now_ms;
    l->joined_ms = a->loop->now_ms;
    l->why = 0;
    l->stall_window_ms = a->loop->now_ms;
    /* A bounded kernel buffer; listener_size_sndbuf() bounds it further once the stream's
     * bitrate is known. Without it the kernel would autotune up to megabytes for a client
     * that never reads, holding memory and hiding the stall from us for minutes. */
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

int listener_save(struct conn *c, struct listener_record *r)
{
    if (c->dead || c->ops != &listener_ops || c->tls)
        return -1;
    memset(r, 0, sizeof(*r));
    r->st = *LST(c);
    return 0;
}

int listener_restore(struct audience *a, int fd, const struct listener_record *r)
{
    const struct listener_state *st = &r->st;
    if (st->slot >= SHARED_MAX_SPACES || st->gen != a->gen[st->slot] ||
        __atomic_load_n(&a->sh->spaces[st->slot].state, __ATOMIC_ACQUIRE) == SLOT_FREE) {
        close(fd); /* its space ended or restarted while it moved: it reconnects */
        return -1;
    }
    struct conn *c = conn_adopt(a->hub, fd, PORT_AUDIENCE);
    if (!c)
        return -1;
    conn_take(c, &listener_ops);
    *LST(c) = *st;
    c->io.cb = listener_on_io;
    /* the block's gauges already count it: the worker before us never let it go */
    list_insert_tail(&a->listeners[st->slot], &c->node);
    a->nlisteners++;
    if (loop_mod(a->loop, &c->io, EPOLLIN | EPOLLRDHUP | (st->blocked ? EPOLLOUT : 0)) < 0) {
        listener_close(c, CLOSE_ERROR);
        return -1;
    }
    return 0;
}

/* Moves a lagging listener to the newest page, a page boundary: <c> must not be mid-page.
 * Counts a stall. Returns 0, or -1 if it was closed (max-stalls). */
static int listener_jump(struct conn *c, const struct ring *r)
{
    struct listener_state *l = LST(c);
    struct audience *a = audience_of(c);
    int64_t now = a->loop->now_ms;
    if (l->pre_off != 0 && l->pre_off != PRE_DONE) {
        /* its head, half sent, names its first page (X-Rostrum-Seq): that cannot change */
        a->me->c.stalls++;
        listener_close(c, CLOSE_TOO_SLOW);
        return -1;
    }
    if (now - l->stall_window_ms > STALL_WINDOW_MS) {
        l->stall_window_ms = now;
        l->stalls = 0;
    }
    l->stalls++;
    a->me->c.stalls++;
    if (l->jump_due)
        a->me->c.lag_jumps_mid_page++;
    if (l->stalls >= a->cfg->max_stalls) {
        listener_close(c, CLOSE_TOO_SLOW);
        return -1;
    }
    uint64_t from = l->cursor, head = ring_head(r);
    l->cursor = head > ring_tail(r) ? head - 1 : head;
    l->page_off = 0;
    l->jump_due = 0;
    LOG_RATELIMITED(LOG_INFO, "listen", "#%llu %s: fell behind, jumped %llu pages to the live edge",
                    (unsigned long long)c->id, c->peer, (unsigned long long)(l->cursor - from));
    return 0;
}

/* The laggard rule: 1 if the listener, whose next bytes are at <page_off> in page <cur>, is
 * more than lag-ms of audio behind the newest page, or so far behind in bytes or pages that its
 * page could be overwritten while it is being sent (ring_lag_limits()). */
static int listener_lagging(const struct conn *c, const struct ring *r,
                            const struct ring_page *cur, uint32_t queued)
{
    const struct listener_state *l = CONN_PRIV(c, const struct listener_state);
    uint64_t head = ring_head(r), max_bytes, max_pages;
    ring_lag_limits(r, &max_bytes, &max_pages);
    if (head - cur->seq > max_pages || ring_write_pos(r) - (cur->pos + l->page_off) > max_bytes)
        return 1;
    struct ring_page last;
    if (ring_page_get(r, head - 1, &last) < 0)
        return 0; /* the writer is lapping the ring: the byte rule judges next time */
    /* audio still in the kernel for it, at this page's bytes per sample */
    uint64_t behind = cur->len ? (uint64_t)queued * cur->samples / cur->len : 0;
    if (last.granule > cur->granule)
        behind += last.granule - cur->granule;
    return behind > (uint64_t)audience_of(c)->cfg->lag_ms * 48;
}

/* Applies the laggard rule before a write and leaves the page to send next in <cur>.
 * Returns 1 with <cur> filled, 0 if there is no page to send, -1 if <c> was closed.
 *
 *   cursor page evicted ----------------------------> at a page boundary: jump (a stall)
 *                                                     mid-page: close (the page is lost, and
 *                                                     half an Ogg page would break the stream)
 *   lagging (time, bytes or pages), at a boundary --> jump (a stall)
 *   lagging mid-page -------------------------------> jump_due: only the rest of this page
 *                                                     goes out; at its end, jump (a stall)
 */
static int listener_next_page(struct conn *c, const struct ring *r, struct ring_page *cur,
                              uint32_t queued)
{
    struct listener_state *l = LST(c);
    for (int tries = 0; tries < 3; tries++) {
        int rc = ring_page_get(r, l->cursor, cur);
        if (rc == -EAGAIN)
            return 0; /* at the live edge */
        if (rc == -ENOENT) {
            if (l->page_off > 0) {
                audience_of(c)->me->c.stalls++;
                listener_close(c, CLOSE_TOO_SLOW);
                return -1;
            }
            if (listener_jump(c, r) < 0)
                return -1;
            continue;
        }
        if (!l->jump_due && !listener_lagging(c, r, cur, queued))
            return 1;
        if (l->page_off > 0) {
            l->jump_due = 1;
            return 1;
        }
        if (listener_jump(c, r) < 0)
            return -1;
        /* the newest page, a boundary: send it (not lagging by any rule) */
        rc = ring_page_get(r, l->cursor, cur);
        if (rc == 0)
            return 1;
        if (rc == -EAGAIN)
            return 0;
    }
    return 0; /* the writer lapped the ring under us each time: try at the next flush */
}

/* Bounds the kernel's send buffer of <c> to about lag-ms of audio at the bitrate of page <p>
 * (between LISTENER_SNDBUF_MIN and LISTENER_SNDBUF: 64 KiB is 10 s at 48 kb/s). What the
 * kernel holds is judged by the laggard rule only when the socket fills (listener_on_io), so
 * it must not hold more than the rule allows. Once per listener. */
static void listener_size_sndbuf(struct conn *c, const struct ring_page *p)
{
    struct listener_state *l = LST(c);
    l->sized = 1;
    if (p->samples == 0)
        return;
    uint64_t bytes = (uint64_t)p->len * 48 * (uint64_t)audience_of(c)->cfg->lag_ms / p->samples;
    if (bytes >= LISTENER_SNDBUF)
        return;
    int sndbuf = bytes > LISTENER_SNDBUF_MIN ? (int)bytes : LISTENER_SNDBUF_MIN;
    setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
}

static void listener_block(struct conn *c, int blocked)
{
    LST(c)->blocked = (uint8_t)blocked;
    loop_mod(audience_of(c)->loop, &c->io, EPOLLIN | EPOLLRDHUP | (blocked ? EPOLLOUT : 0));
}

/* Closes <c> because bytes it was sent may have been overwritten during the writev() (shm.h):
 * the kernel has them, so the listener cannot be given a whole page instead. */
static void listener_torn(struct conn *c, enum close_reason why)
{
    audience_of(c)->me->c.torn_closes++;
    if (why == CLOSE_TOO_SLOW)
        audience_of(c)->me->c.stalls++;
    LOG_RATELIMITED(LOG_WARN, "listen", "#%llu %s: shared bytes overwritten during a write",
                    (unsigned long long)c->id, c->peer);
    listener_close(c, why);
}

/* The preamble a listener is sent is the slot's (HTTP head, Ogg header pages) with its own
 * header lines put in before the blank line that ends the HTTP head: [0, split) of the slot's
 * preamble, then the lines, then [split, end). Both are rebuilt from the listener's state on
 * each write, so they are the same bytes every time. */
#define LISTENER_EXTRA_HEAD 64

/* Writes the listener's own header lines into <out> (if not NULL; LISTENER_EXTRA_HEAD bytes)
 * and returns their length: none if the slot's head does not end in a blank line. */
static uint32_t listener_extra_head(const struct listener_state *l, const struct shared_view *pv,
                                    char *out)
{
    char tmp[LISTENER_EXTRA_HEAD];
    if (pv->aux < 4 || pv->aux > pv->len)
        return 0;
    int n = snprintf(out ? out : tmp, LISTENER_EXTRA_HEAD, "X-Rostrum-Seq: %llu\r\n%s",
                     (unsigned long long)l->first_seq, l->gap ? "X-Rostrum-Gap: 1\r\n" : "");
    return n > 0 && n < LISTENER_EXTRA_HEAD ? (uint32_t)n : 0;
}

/* Fills <iov> (3 entries at most) with what is left of the listener's preamble from its
 * pre_off; <xh> receives its own lines. Returns the number of entries. */
static int listener_preamble_iov(const struct listener_state *l, const struct shared_view *pv,
                                 uint32_t pre_len, char *xh, struct iovec *iov)
{
    uint32_t xlen = listener_extra_head(l, pv, xh);
    uint32_t split = xlen ? pv->aux - 2 : pre_len;
    const char *seg[3] = {(const char *)pv->data, xh, (const char *)pv->data + split};
    uint32_t seglen[3] = {split, xlen, pre_len - xlen - split};
    uint32_t off = l->pre_off;
    int n = 0;
    for (int i = 0; i < 3; i++) {
        if (off >= seglen[i]) {
            off -= seglen[i];
            continue;
        }
        iov[n].iov_base = (void *)(seg[i] + off);
        iov[n++].iov_len = seglen[i] - off;
        off = 0;
    }
    return n;
}

/* Writes what <c> has not had yet. <queued>: bytes its socket still holds, if known (else 0). */
static void listener_flush_(struct conn *c, uint32_t queued)
{
    struct listener_state *l = LST(c);
    struct audience *a = audience_of(c);
    struct shared_space *ss = &a->sh->spaces[l->slot];
    const struct ring *r = shared_ring(a->sh, l->slot);
    if (conn_write_pending(c) && conn_writev(c, NULL, 0) < 0) {
        /* TLS without kTLS: a record counted as sent goes out first */
        if (errno == EAGAIN)
            listener_block(c, 1);
        else
            listener_close(c, CLOSE_ERROR);
        return;
    }
    for (int round = 0; round < 4 && !c->dead; round++) {
        if (__atomic_load_n(&ss->gen, __ATOMIC_ACQUIRE) != l->gen) {
            listener_close(c, CLOSE_RESTART);
            return;
        }
        /* The preamble, unless done. Not started: the newest generation. Half sent: finish
         * that generation from its half of the double buffer, unless a second change has
         * given the half to another generation (then the listener cannot be finished). */
        struct shared_view pv = {0};
        uint32_t pre_len = 0;
        if (l->pre_off != PRE_DONE) {
            if (l->pre_off == 0)
                l->pre_gen = shared_preamble_gen(ss);
            if (shared_preamble_view(ss, l->pre_gen, &pv) < 0) {
                if (l->pre_off == 0)
                    continue; /* changed twice since we looked: look again */
                listener_close(c, CLOSE_RESTART);
                return;
            }
            pre_len = l->head_only ? pv.aux : pv.len;
        }
        struct ring_page pg;
        int more = 0;
        if (!l->head_only) {
            more = listener_next_page(c, r, &pg, queued);
            if (more < 0)
                return;
        }
        if (l->pre_off == 0)
            l->first_seq = l->cursor; /* where its audio starts, now that it is known */
        if (l->pre_off != PRE_DONE)
            pre_len += listener_extra_head(l, &pv, NULL);
        if (l->head_only && l->pre_off >= pre_len) {
            listener_close(c, CLOSE_PEER);
            return;
        }
        struct iovec iov[LISTENER_MAX_IOV];
        uint32_t page_len[LISTENER_MAX_IOV]; /* whole lengths of the pages in iov */
        int n = 0, npages = 0;
        size_t total = 0, pre_part = 0;
        char xh[LISTENER_EXTRA_HEAD];
        if (l->pre_off < pre_len) {
            n = listener_preamble_iov(l, &pv, pre_len, xh, iov);
            pre_part = pre_len - l->pre_off;
            total = pre_part;
        }
        if (more == 1 && !l->sized)
            listener_size_sndbuf(c, &pg);
        uint64_t seq = l->cursor;
        uint32_t off = l->page_off;
        while (more == 1) {
            page_len[npages++] = pg.len;
            iov[n].iov_base = (void *)(pg.data + off);
            iov[n].iov_len = pg.len - off;
            total += iov[n++].iov_len;
            off = 0;
            seq++;
            if (l->jump_due || n == LISTENER_MAX_IOV || total >= LISTENER_MAX_BATCH)
                break;
            more = ring_page_get(r, seq, &pg) == 0;
        }
        if (n == 0) {
            listener_block(c, 0);
            return;
        }
        ssize_t w = conn_writev(c, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                listener_block(c, 1);
                return;
            }
            listener_close(c, errno == EPIPE || errno == ECONNRESET ? CLOSE_PEER : CLOSE_ERROR);
            return;
        }
        /* The re-check of shm.h: were the bytes the kernel took still the ones we meant? */
        if (pre_part > 0 && !shared_preamble_intact(ss, l->pre_gen)) {
            listener_torn(c, CLOSE_RESTART);
            return;
        }
        if ((size_t)w > pre_part && !ring_page_intact(r, l->cursor)) {
            listener_torn(c, CLOSE_TOO_SLOW);
            return;
        }
        size_t left = (size_t)w;
        a->me->c.bytes_sent += left;
        l->bytes += left;
        l->last_byte_ms = a->loop->now_ms;
        if (pre_part > 0) {
            size_t take = pre_part < left ? pre_part : left;
            l->pre_off += (uint32_t)take;
            left -= take;
            if (l->pre_off >= pre_len)
                l->pre_off = PRE_DONE;
        }
        for (int i = 0; left > 0 && i < npages; i++) {
            size_t rest = page_len[i] - l->page_off;
            if (left >= rest) {
                left -= rest;
                l->cursor++;
                l->page_off = 0;
            } else {
                l->page_off += (uint32_t)left;
                left = 0;
            }
        }
        if ((size_t)w < total || conn_write_pending(c)) {
            listener_block(c, 1);
            return;
        }
        if (l->head_only) {
            listener_close(c, CLOSE_PEER);
            return;
        }
        if (l->jump_due)
            continue; /* the partial page is finished: jump at this boundary */
        if (l->cursor >= ring_head(r)) {
            listener_block(c, 0);
            return;
        }
        /* more pages than one batch: go round again */
    }
}

void listener_flush(struct conn *c)
{
    listener_flush_(c, 0);
}

static void listener_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        /* A listener has nothing to say; read to learn that it left, discard the rest. */
        if (conn_discard_input(c) < 0) {
            listener_close(c, CLOSE_PEER);
            return;
        }
    }
    if (events & EPOLLOUT) {
        /* It filled its socket: the one moment a listener may be further behind than its
         * cursor says, by what the kernel still holds for it. Ask (only slow readers block,
         * so this costs fast ones nothing). */
        int outq = 0;
        if (ioctl(io->fd, SIOCOUTQ, &outq) == -1 || outq < 0)
            outq = 0;
        LST(c)->blocked = 0;
        listener_flush_(c, (uint32_t)outq);
    }
}
