/*
 * feed: the upstream side of the relay feed (relay/feedproto.h), in an audience process. A
 * relay is a listener that gets frames instead of a bare Ogg stream: it is admitted like one
 * (joins, per-address limits, capacity, the waiting room aside: relays come with a key, not a
 * ticket), counted like one (a listener connection of its slot), and reads the same shared
 * ring; only with `relay-key` set must it present the key.
 *
 * Unlike a listener, a feed never jumps: a relay that falls behind the ring's tail would have
 * a gap, so its feed is cut (feed_cuts) and the relay, reconnecting with the next sequence it
 * lacks, learns from the header's <start> that it must restart. Pages are copied into the
 * feed's own buffer (bounded: FEED_OUT_MAX plus one frame), with the ring's intact check after
 * the copy, because each page needs its frame head anyway and relays are few.
 *
 * Upward, a relay sends a REPORT twice a second: who in its subtree receives (its own
 * listeners and a row per relay below it, each by identity and feed generation), its room and
 * its public URL. Each worker keeps the last report of each of its feeds (struct feed_up, on
 * the heap: relays are few and it does not fit the connection) for the per-relay table
 * (`relays`: gauges, redirects to an edge with room), and one row per relay identity (the
 * tree store below, feedproto.h's "How an upstream counts"), which it publishes in its own
 * block of the shared mapping (one writer) every tick and at once when an identity is new;
 * status sums the rows of every worker, deduplicated (feed_tree_listeners). A row counts until
 * FEED_REPORT_AGE_MS after its relay made the report, whether its feed is still open or not:
 * a relay that moved to another upstream is superseded there by its newer generation, one
 * that died without a FIN, or stopped, drops out within that time.
 *
 * The upstream sends a keepalive when a feed went without a frame for a quarter more than its
 * page gap, at least FEED_KEEPALIVE_MS (a per feed timer, armed for when one is due), so that
 * a relay can call a link stalled after two page intervals without mistaking a quiet stream
 * for one, and a steady stream costs no keepalive at all; a keepalive says if this server is a relay whose own feed
 * of the space is down or its main process stopped (`feed_fed_until_ms`, pushed on by its
 * main process while its own feed is well).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "audience/audience.h"
#include "http/request.h"
#include "net/net.h"
#include "relay/feedproto.h"
#include "util/check.h"
#include "util/log.h"

#define FEED_OUT_MAX (64 * 1024)     /* pages are added while the buffer holds less */
#define FEED_KEEPALIVE_MS 100        /* the least wait for a keepalive (see feed_keepalive_due) */
#define FEED_KEEPALIVE_WAIT_MAX_MS 2000 /* ... and the most: well inside a relay's longest stall */
#define FEED_STUCK_MS 10000          /* a relay whose socket took nothing for this long */
#define FEED_BURST_MS 10000          /* a relay that asks for nothing gets this much audio */

_Static_assert(SHARED_RELAY_NAME > FEED_NAME_MAX && SHARED_RELAY_URL > FEED_URL_MAX,
               "the relay table holds a report's texts");

/* Upward state of a feed: the unfinished frame and the last whole report; and its keepalive
 * timer. */
struct feed_up {
    struct conn *c;
    struct loop_timer keepalive;
    int64_t page_ms;     /* the last page queued */
    int64_t gap_ms;      /* between pages queued (the longest lately, as the relay reckons) */
    uint32_t len;
    unsigned char buf[FEED_REPORT_MAX];
    int64_t reported_ms; /* 0: no report yet */
    uint32_t tree, own, connections, capacity, load_milli, flags;
    uint8_t stale;   /* counted in relay_reports_stale since its last report */
    uint8_t untabled; /* counted in relay_table_full once */
    /* the relay asked for the space's captions (captions=1): what it was sent last */
    uint8_t captions, cap_sent, cap_on;
    uint32_t cap_epoch, cap_gen;
    int64_t cap_final_ms;
    char cap_lang[36];
    char name[SHARED_RELAY_NAME], url[SHARED_RELAY_URL];
};

struct feed_state {
    uint16_t slot;
    uint8_t ending;  /* END queued: close once it is out */
    uint8_t blocked; /* EPOLLOUT armed */
    uint32_t gen;
    uint32_t doc_gen;
    uint32_t off; /* bytes of <out> already written */
    uint64_t cursor;
    int64_t last_frame_ms; /* the last frame queued */
    int64_t last_byte_ms;  /* the last time its socket took a byte */
    struct buf out;
    struct feed_up *up; /* upward (feedproto.h, REPORT): owned, freed on close */
};
CONN_PRIV_FITS(struct feed_state);
#define FST(c) CONN_PRIV(c, struct feed_state)

static void feed_on_close(struct conn *c)
{
    struct feed_state *f = FST(c);
    struct audience *a = audience_of(c);
    list_unlink(&c->node);
    a->nlisteners--;
    a->me->conns[f->slot]--;
    a->me->listener_connections--;
    buf_free(&f->out);
    if (f->up)
        loop_timer_stop(a->loop, &f->up->keepalive);
    free(f->up);
    f->up = NULL;
}

static const struct conn_ops feed_ops = {"feed", feed_on_close, NULL};

static void feed_cut(struct conn *c, const char *why)
{
    audience_of(c)->me->c.feed_cuts++;
    LOG_RATELIMITED(LOG_INFO, "feed", "#%llu %s: relay feed cut: %s", (unsigned long long)c->id,
                    c->peer, why);
    conn_close(c);
}

static void feed_block(struct conn *c, int blocked)
{
    FST(c)->blocked = (uint8_t)blocked;
    loop_mod(audience_of(c)->loop, &c->io, EPOLLIN | EPOLLRDHUP | (blocked ? EPOLLOUT : 0));
}

/* Queues a CAPTIONS frame on <u>'s feed if the captions of <ss> changed since the last one.
 * Returns 1 if it did, else 0. */
static int feed_put_captions_if_new(struct feed_up *u, const struct shared_space *ss)
{
    struct feed_state *f = FST(u->c);
    uint8_t on = (uint8_t)__atomic_load_n(&ss->captions_on, __ATOMIC_ACQUIRE);
    uint32_t epoch = __atomic_load_n(&ss->captions_epoch, __ATOMIC_ACQUIRE);
    int64_t final_ms = __atomic_load_n(&ss->captions_final_ms, __ATOMIC_ACQUIRE);
    uint32_t gen = shared_dbuf_gen(&ss->captions_hdr);
    char lang[36];
    snprintf(lang, sizeof(lang), "%.35s", ss->captions_lang);
    if (u->cap_sent && on == u->cap_on && epoch == u->cap_epoch && gen == u->cap_gen &&
        final_ms == u->cap_final_ms && strcmp(lang, u->cap_lang) == 0)
        return 0;
    if (u->cap_sent && on == u->cap_on && epoch == u->cap_epoch && gen == u->cap_gen &&
        strcmp(lang, u->cap_lang) == 0) { /* only the final time moved (every page) */
        feed_put_captions(&f->out, on > 2 ? 2 : on, epoch, final_ms, lang, NULL, 0);
        u->cap_final_ms = final_ms;
        return 1;
    }
    static char list[SHARED_CAPTIONS_MAX];
    int n = on ? shared_captions_copy(ss, list) : 0;
    if (n < 0)
        return 0; /* changing as it was copied: the next fill */
    feed_put_captions(&f->out, on > 2 ? 2 : on, epoch, final_ms, lang, list, (uint32_t)n);
    memcpy(u->cap_lang, lang, sizeof(lang));
    u->cap_sent = 1;
    u->cap_on = on;
    u->cap_epoch = epoch;
    u->cap_gen = gen;
    u->cap_final_ms = final_ms;
    return 1;
}

/* Queues what the relay lacks: the state document if it changed, then pages from its cursor
 * while the buffer holds less than FEED_OUT_MAX. Returns 0, or -1 if <c> was closed. */
static int feed_fill(struct conn *c)
{
    struct feed_state *f = FST(c);
    struct audience *a = audience_of(c);
    struct shared_space *ss = &a->sh->spaces[f->slot];
    const struct ring *r = shared_ring(a->sh, f->slot);
    if (f->ending)
        return 0;
    if (__atomic_load_n(&ss->gen, __ATOMIC_ACQUIRE) != f->gen) {
        int ended = __atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) == SLOT_FREE;
        feed_put_end(&f->out, ended ? FEED_END_ENDED : FEED_END_RESTART);
        f->ending = 1;
        return 0;
    }
    uint32_t dg = shared_dbuf_gen(&ss->doc_hdr);
    if (dg != f->doc_gen) {
        char doc[SHARED_STATE_MAX];
        int n = shared_doc_copy(ss, doc);
        if (n >= 0) {
            feed_put_state(&f->out, doc, (uint32_t)n);
            f->doc_gen = dg;
            f->last_frame_ms = a->loop->now_ms;
        }
    }
    if (f->up->captions && feed_put_captions_if_new(f->up, ss) == 1)
        f->last_frame_ms = a->loop->now_ms;
    while (f->out.len - f->off < FEED_OUT_MAX) {
        struct ring_page p;
        int rc = ring_page_get(r, f->cursor, &p);
        if (rc == -EAGAIN)
            break;
        if (rc == 0) {
            size_t was = f->out.len;
            unsigned char head[FEED_HEAD_BYTES + FEED_PAGE_FIXED];
            feed_page_head(head, p.seq, p.granule, p.samples, p.len);
            buf_append(&f->out, head, sizeof(head));
            buf_append(&f->out, p.data, p.len);
            if (ring_page_intact(r, p.seq)) {
                int64_t now = a->loop->now_ms, gap = now - f->last_frame_ms;
                /* the silence before a page (since the last frame of any kind: a quiet spell
                 * filled with keepalives is no long gap), as the relay's stall rule reckons it
                 * (relay.c) */
                if (f->up->page_ms)
                    f->up->gap_ms = gap > f->up->gap_ms
                                        ? gap
                                        : (f->up->gap_ms * 15 + (int64_t)p.samples / 48) / 16;
                f->up->page_ms = now;
                f->cursor++;
                f->last_frame_ms = now;
                continue;
            }
            f->out.len = was; /* overwritten while copied */
        }
        feed_cut(c, "fell behind the ring");
        return -1;
    }
    return 0;
}

/* Writes what is queued, refilling as it goes. */
static void feed_flush(struct conn *c)
{
    struct feed_state *f = FST(c);
    struct audience *a = audience_of(c);
    for (int round = 0; round < 8 && !c->dead; round++) {
        if (f->off == f->out.len) {
            f->off = 0;
            f->out.len = 0;
            if (f->ending) {
                feed_on_close(c); /* its state goes before the connection is given back */
                conn_linger(c);
                return;
            }
            if (feed_fill(c) < 0)
                return;
            if (f->out.len == 0) {
                if (f->blocked)
                    feed_block(c, 0);
                return;
            }
        }
        struct iovec iov = {f->out.data + f->off, f->out.len - f->off};
        ssize_t w = conn_writev(c, &iov, 1);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                feed_block(c, 1);
                return;
            }
            feed_cut(c, strerror(errno));
            return;
        }
        f->off += (uint32_t)w;
        a->me->c.bytes_sent += (uint64_t)w;
        f->last_byte_ms = a->loop->now_ms;
        if (f->off < f->out.len || conn_write_pending(c)) {
            feed_block(c, 1);
            return;
        }
    }
}

/* ---- the tree store: one row per (slot, relay id), this process's (one audience each) --- */

static struct shared_tree_row tree_rows[SHARED_WORKER_TREE_ROWS];
static uint32_t tree_nrows;

/* A row still counts: fresh, of the slot's current space. */
static int tree_row_live(const struct audience *a, const struct shared_tree_row *r, int64_t now)
{
    return now - r->seen_ms <= FEED_REPORT_AGE_MS &&
           __atomic_load_n(&a->sh->spaces[r->slot].gen, __ATOMIC_ACQUIRE) == r->slot_gen;
}

/* Takes row <in> into the store if it is better than what the store holds of that relay: a
 * higher generation, or the same one reported later. Returns 1 if it is an identity the store
 * did not count (a new relay or generation: worth publishing at once), else 0. */
static int tree_take(struct audience *a, const struct shared_tree_row *in, int64_t now)
{
    uint32_t spare = tree_nrows;
    for (uint32_t i = 0; i < tree_nrows; i++) {
        struct shared_tree_row *r = &tree_rows[i];
        if (r->id == in->id && r->slot == in->slot) {
            int live = tree_row_live(a, r, now);
            if (live && r->slot_gen == in->slot_gen &&
                (in->gen < r->gen || (in->gen == r->gen && in->seen_ms < r->seen_ms)))
                return 0; /* an older copy (of the relay's old upstream, say) */
            int fresh = !live || in->gen != r->gen;
            *r = *in;
            return fresh;
        }
        if (spare == tree_nrows && !tree_row_live(a, r, now))
            spare = i;
    }
    if (spare == SHARED_WORKER_TREE_ROWS) {
        a->me->c.tree_rows_full++;
        LOG_RATELIMITED(LOG_WARN, "feed", "the tree's table is full (%d relays): a relay's "
                        "listeners are not counted", SHARED_WORKER_TREE_ROWS);
        return 0;
    }
    tree_rows[spare] = *in;
    if (spare == tree_nrows)
        tree_nrows++;
    return 1;
}

/* Publishes the store's live rows (and forgets the others). */
static void tree_publish(struct audience *a)
{
    int64_t now = a->loop->now_ms;
    uint32_t n = 0;
    for (uint32_t i = 0; i < tree_nrows; i++)
        if (tree_row_live(a, &tree_rows[i], now))
            tree_rows[n++] = tree_rows[i];
    tree_nrows = n;
    shared_tree_write(a->me, tree_rows, n);
}

/* The relay that sent <fr> on <c>, and every relay its report lists, into the store. */
static void tree_take_report(struct conn *c, const struct feed_frame *fr)
{
    struct audience *a = audience_of(c);
    struct feed_state *f = FST(c);
    int64_t now = a->loop->now_ms;
    struct shared_tree_row row = {.id = fr->report.id, .gen = fr->report.gen, .seen_ms = now,
                                  .slot = f->slot, .slot_gen = f->gen};
    uint64_t listed = 0;
    int fresh = 0;
    for (uint32_t i = 0; i < fr->report.nrows; i++) {
        struct feed_tree_row tr;
        feed_report_row(fr, i, &tr);
        listed += tr.own;
        struct shared_tree_row below = row;
        below.id = tr.id;
        below.gen = tr.gen;
        below.own = tr.own;
        below.seen_ms = now - tr.age_ms;
        fresh |= tree_take(a, &below, now);
    }
    /* its own listeners, and what of its subtree it could not list (feed_parse checked that
     * the rows fit in <tree>) */
    row.own = fr->report.tree - (uint32_t)listed;
    fresh |= tree_take(a, &row, now);
    if (fresh)
        tree_publish(a);
}

/* Keeps the report <fr> as <c>'s last (texts were checked by feed_parse). */
static void feed_take_report(struct conn *c, struct feed_up *u, const struct feed_frame *fr)
{
    if (fr->report.tree != u->tree || !u->reported_ms)
        log_debug("feed", "#%llu %s: relay '%.*s' reports %u listeners receiving /%s in its "
                  "subtree (%u its own; %u connections, capacity %u, load %.3f%s)",
                  (unsigned long long)c->id, c->peer, (int)fr->report.name.len,
                  (const char *)fr->report.name.p, fr->report.tree,
                  audience_of(c)->sh->spaces[FST(c)->slot].mount, fr->report.own,
                  fr->report.connections, fr->report.capacity, fr->report.load_milli / 1000.0,
                  fr->report.flags & FEED_REPORT_DRAINING ? ", draining" : "");
    u->reported_ms = audience_of(c)->loop->now_ms;
    u->stale = 0;
    u->tree = fr->report.tree;
    u->own = fr->report.own;
    u->connections = fr->report.connections;
    u->capacity = fr->report.capacity;
    u->load_milli = fr->report.load_milli;
    u->flags = fr->report.flags;
    memcpy(u->name, fr->report.name.p, fr->report.name.len);
    u->name[fr->report.name.len] = '\0';
    memcpy(u->url, fr->report.url.p, fr->report.url.len);
    u->url[fr->report.url.len] = '\0';
    tree_take_report(c, fr);
}

static void feed_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        /* Upward: REPORT frames only, read into <up> (one frame's bytes at most) */
        struct feed_up *u = FST(c)->up;
        for (int i = 0; i < 8; i++) {
            ssize_t r = conn_recv(c, u->buf + u->len, sizeof(u->buf) - u->len);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                conn_close(c);
                return;
            }
            if (r < 0)
                break;
            u->len += (uint32_t)r;
            for (;;) {
                struct feed_frame fr;
                int n = feed_parse(u->buf, u->len, &fr);
                if (n == -2 && u->len < sizeof(u->buf))
                    break;
                if (n < 0 || fr.type != FEED_REPORT) {
                    feed_cut(c, "sent something other than a report");
                    return;
                }
                feed_take_report(c, u, &fr);
                memmove(u->buf, u->buf + n, u->len - (uint32_t)n);
                u->len -= (uint32_t)n;
            }
        }
    }
    if (events & EPOLLOUT) {
        FST(c)->blocked = 0;
        feed_flush(c);
    }
}

/* How long a feed may go without a frame before it gets a keepalive: a quarter more than the
 * gap between its pages (a relay calls two gaps of silence a stall, so a steady stream needs
 * none, and a quiet one gets a frame well inside the relay's limit), at least
 * FEED_KEEPALIVE_MS and at most FEED_KEEPALIVE_WAIT_MAX_MS (after a long quiet the gap is long,
 * and so is the relay's reckoning, up to its 10 s cap). The HEADER promises 3/2 of the floor. */
static int64_t feed_keepalive_due(const struct feed_state *f)
{
    int64_t wait = f->up->gap_ms + f->up->gap_ms / 4;
    wait = wait < FEED_KEEPALIVE_MS ? FEED_KEEPALIVE_MS : wait;
    return f->last_frame_ms + (wait > FEED_KEEPALIVE_WAIT_MAX_MS ? FEED_KEEPALIVE_WAIT_MAX_MS : wait);
}

/* The keepalive timer: fires when a keepalive is due (re-armed for the new due time if a frame
 * went out meanwhile), and sends one if nothing else went and the socket takes it (a feed
 * blocked on its socket has its link's answer already). One wake-up a page at most while the
 * stream flows. */
static void feed_keepalive_cb(struct loop *loop, struct loop_timer *t)
{
    struct feed_up *u = (struct feed_up *)((char *)t - offsetof(struct feed_up, keepalive));
    struct conn *c = u->c;
    struct feed_state *f = FST(c);
    struct audience *a = audience_of(c);
    int64_t now = loop->now_ms, due = feed_keepalive_due(f);
    if (now < due || f->blocked || f->ending || f->off != f->out.len) {
        /* not yet; or the socket is full or has bytes to take: look again a little later */
        loop_timer_start(loop, t, now < due ? due - now : FEED_KEEPALIVE_MS / 2,
                         feed_keepalive_cb);
        return;
    }
    const struct shared_space *ss = &a->sh->spaces[f->slot];
    f->off = 0;
    f->out.len = 0;
    int64_t fed_until = SHM_GET(ss->feed_fed_until_ms);
    feed_put_keepalive(&f->out, ring_head(shared_ring(a->sh, f->slot)),
                       fed_until != 0 && now > fed_until ? FEED_KEEPALIVE_STARVED : 0);
    f->last_frame_ms = now;
    /* first: a flush may close <c>, and <u> with it */
    loop_timer_start(loop, t, feed_keepalive_due(f) - now, feed_keepalive_cb);
    feed_flush(c);
}

void feed_start(struct conn *c, int slot, int has_from, uint64_t from, int captions)
{
    struct audience *a = audience_of(c);
    struct shared_space *ss = &a->sh->spaces[slot];
    const struct ring *r = shared_ring(a->sh, slot);
    /* the stream's header pages: the preamble past its HTTP part */
    unsigned char pre[SHARED_PREAMBLE_MAX];
    uint32_t http_len = 0;
    int n = shared_dbuf_copy(&ss->preamble_hdr, &ss->preamble[0][0], SHARED_PREAMBLE_MAX, pre,
                             &http_len);
    if (n <= 0 || (uint32_t)n <= http_len || (uint32_t)n - http_len > FEED_MAX_OGG_HEADERS ||
        (ss->channels != 1 && ss->channels != 2)) {
        conn_error(c, 503, "Retry-After: 1", "This stream is starting: retry in a moment");
        return;
    }
    uint64_t head = ring_head(r), tail = ring_tail(r), max_bytes, max_pages;
    ring_lag_limits(r, &max_bytes, &max_pages);
    uint64_t start;
    if (has_from && from >= tail && from <= head + max_pages)
        start = from; /* a resume; a relay a little ahead (its other upstream) waits here */
    else
        start = ring_burst_start(r, (uint64_t)FEED_BURST_MS * 48);
    conn_take(c, &feed_ops);
    struct feed_state *f = FST(c);
    f->slot = (uint16_t)slot;
    f->gen = a->gen[slot];
    f->cursor = start;
    f->last_frame_ms = f->last_byte_ms = a->loop->now_ms;
    f->doc_gen = shared_dbuf_gen(&ss->doc_hdr) - 1; /* differs: the document goes first */
    f->up = calloc(1, sizeof(*f->up));
    BUG_ON(!f->up);
    f->up->c = c;
    f->up->captions = (uint8_t)captions;
    loop_timer_start(a->loop, &f->up->keepalive, FEED_KEEPALIVE_MS, feed_keepalive_cb);
    c->io.cb = feed_on_io;
    list_insert_tail(&a->feeds, &c->node);
    a->nlisteners++;
    a->me->conns[slot]++;
    a->me->listener_connections++;
    a->me->c.joins[JOIN_OK]++;
    a->me->c.feeds_joined++;
    buf_printf(&f->out, "HTTP/1.0 200 OK\r\nServer: rostrum/0.1\r\nContent-Type: %s\r\n"
                        "X-Rostrum-Feed: %d\r\nCache-Control: no-cache, no-store\r\n"
                        "Connection: close\r\n\r\n",
               FEED_CONTENT_TYPE, FEED_VERSION);
    feed_put_header(&f->out, (uint16_t)ss->channels, ss->feed_serial, ss->feed_epoch,
                    FEED_KEEPALIVE_MS + FEED_KEEPALIVE_MS / 2, start,
                    pre + http_len, (uint32_t)n - http_len, &ss->meta);
    log_info("feed", "#%llu %s: relay feed /%s from page %llu (%s; ring %llu..%llu)",
             (unsigned long long)c->id, c->peer, ss->mount, (unsigned long long)start,
             has_from ? (start == from ? "resumed" : "cannot resume there") : "new",
             (unsigned long long)tail, (unsigned long long)head);
    if (loop_mod(a->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0) {
        conn_close(c);
        return;
    }
    feed_flush(c);
}

void feed_flush_all(struct audience *a)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->feeds)
    {
        struct conn *c = list_entry(n, struct conn, node);
        if (!FST(c)->blocked)
            feed_flush(c);
    }
}

/* Publishes in this worker's block what its feeds' fresh reports say: the tree store and the
 * per-feed table (shm.h, rule 4 for the rows). A row changes owner as feeds come and go: a
 * reader takes each row whole or not at all, and the rows in use are the first <nrelays>. */
static void feed_publish_reports(struct audience *a)
{
    int64_t now = a->loop->now_ms;
    uint32_t rows = 0;
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->feeds)
    {
        struct conn *c = list_entry(n, struct conn, node);
        struct feed_state *f = FST(c);
        struct feed_up *u = f->up;
        if (!u || !u->reported_ms)
            continue;
        if (now - u->reported_ms > FEED_REPORT_AGE_MS) {
            if (!u->stale) {
                u->stale = 1;
                a->me->c.relay_reports_stale++;
                LOG_RATELIMITED(LOG_INFO, "feed", "#%llu %s: relay '%s' sent no report for "
                                "%d ms: out of the tree's count", (unsigned long long)c->id,
                                c->peer, u->name, FEED_REPORT_AGE_MS);
            }
            continue;
        }
        if (rows == SHARED_WORKER_RELAYS) {
            if (!u->untabled) {
                u->untabled = 1;
                a->me->c.relay_table_full++;
            }
            continue;
        }
        struct shared_relay row = {.slot = f->slot, .flags = (uint16_t)u->flags,
                                   .slot_gen = f->gen, .tree = u->tree, .own = u->own,
                                   .connections = u->connections, .capacity = u->capacity,
                                   .load_milli = u->load_milli, .reported_ms = u->reported_ms};
        snprintf(row.addr, sizeof(row.addr), "%s", c->peer);
        memcpy(row.name, u->name, sizeof(row.name));
        memcpy(row.url, u->url, sizeof(row.url));
        shared_relay_write(a->me, rows++, &row);
    }
    shm_publish32(&a->me->nrelays, rows);
    tree_publish(a);
}

void feed_tick(struct audience *a)
{
    int64_t now = a->loop->now_ms;
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->feeds)
    {
        struct conn *c = list_entry(n, struct conn, node);
        struct feed_state *f = FST(c);
        if (f->blocked) {
            if (now - f->last_byte_ms > FEED_STUCK_MS && !net_writable_now(c->io.fd))
                feed_cut(c, "took nothing for 10 s");
            continue;
        }
        feed_flush(c);
    }
    feed_publish_reports(a);
}

void feed_close_all(struct audience *a)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->feeds)
    {
        conn_close(list_entry(n, struct conn, node));
    }
}

void feed_relays_each(struct audience *a, void (*fn)(void *arg, const struct shared_relay *r),
                      void *arg)
{
    int64_t now = a->loop->now_ms;
    for (uint32_t w = 0; w < a->sh->nworkers; w++) {
        const struct shared_worker *sw = &a->sh->workers[w];
        uint32_t rows = shm_load_acquire32(&sw->nrelays);
        for (uint32_t i = 0; i < rows && i < SHARED_WORKER_RELAYS; i++) {
            struct shared_relay r;
            if (shared_relay_read(sw, i, &r) < 0 || r.slot >= SHARED_MAX_SPACES ||
                now - r.reported_ms > FEED_REPORT_AGE_MS)
                continue;
            const struct shared_space *ss = &a->sh->spaces[r.slot];
            if (__atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) != SLOT_LIVE ||
                __atomic_load_n(&ss->gen, __ATOMIC_ACQUIRE) != r.slot_gen)
                continue;
            fn(arg, &r);
        }
    }
}

uint32_t feed_tree_listeners(const struct shared *sh, int i)
{
    static struct shared_tree_row rows[SHARED_MAX_WORKERS * SHARED_WORKER_TREE_ROWS];
    uint64_t n = 0;
    for (uint32_t w = 0; w < sh->nworkers; w++)
        n += SHM_GET(sh->workers[w].receiving[i]);
    int k = shared_tree_collect(sh, i, loop_clock_ms(), FEED_REPORT_AGE_MS, rows);
    for (int j = 0; j < k; j++)
        n += rows[j].own;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

#define EDGE_MAX_LOAD_MILLI 800 /* a relay under more pressure than this gets no newcomers */

struct edge_pick {
    int slot;
    uint64_t total, rng; /* room seen so far; a xorshift64 state */
    char url[SHARED_RELAY_URL];
};

/* Reservoir sampling weighted by room: row r is kept with probability room / total so far. */
static void edge_consider(void *arg, const struct shared_relay *r)
{
    struct edge_pick *p = arg;
    if (r->slot != p->slot || !r->url[0] || (r->flags & FEED_REPORT_DRAINING) ||
        r->load_milli > EDGE_MAX_LOAD_MILLI || r->connections >= r->capacity)
        return;
    uint64_t room = r->capacity - r->connections;
    p->total += room;
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    if (p->rng % p->total < room)
        snprintf(p->url, sizeof(p->url), "%s", r->url);
}

int feed_pick_edge(struct audience *a, int slot, const struct http_request *req, char *hdr,
                   size_t cap)
{
    struct edge_pick p = {.slot = slot};
    if (getrandom(&p.rng, sizeof(p.rng), 0) != sizeof(p.rng) || p.rng == 0)
        p.rng = (uint64_t)a->loop->now_ms * 2654435761u | 1;
    feed_relays_each(a, edge_consider, &p);
    if (!p.url[0])
        return 0;
    /* the same path and query, less any ticket: ours means nothing to the relay (each server
     * signs its own), which admits the listener by its own rules */
    char query[256];
    size_t qn = 0;
    const char *q = req->query, *qe = req->query + req->query_len;
    while (q < qe) {
        const char *amp = memchr(q, '&', (size_t)(qe - q));
        size_t len = (size_t)((amp ? amp : qe) - q);
        if (len && !(len >= 7 && memcmp(q, "ticket=", 7) == 0)) {
            if (qn + len + 1 >= sizeof(query))
                return 0; /* too long to pass on: refuse as before */
            query[qn] = qn ? '&' : '?';
            qn++;
            memcpy(query + qn, q, len);
            qn += len;
        }
        q += len + 1;
    }
    query[qn] = '\0';
    int n = snprintf(hdr, cap, "Location: %s%.*s%s", p.url, (int)req->path_len, req->path, query);
    return n > 0 && (size_t)n < cap;
}
