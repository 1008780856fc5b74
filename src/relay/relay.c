/*
 * relay: the upstream client of `rostrum relay` (see relay.h for the life of a feed).
 *
 * Each exchange is one non-blocking TCP connection in the main loop: connect, one small
 * request (it always fits an empty socket buffer, so it is written at once), then the answer
 * read into a bounded buffer. Names are resolved with getaddrinfo when a connection starts
 * (numeric addresses cost nothing; a name costs a blocking lookup, said in the docs).
 */
#include "relay/relay.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "captions/captions.h"
#include "config/config.h"
#include "net/net.h"
#include "ogg/demux.h"
#include "relay/feedproto.h"
#include "shm/ring.h"
#include "tls/tls.h"
#include "util/check.h"
#include "util/log.h"

#define RELAY_POLL_MS 1000
#define RELAY_ANSWER_MS 3000     /* connect and answer head within this */
#define RELAY_FAILOVER_ANSWER_MS 1500 /* ... in a fail-over while untried upstreams remain */
#define RELAY_WATCH_MS 100
#define RELAY_BACKOFF_MIN_MS 100
#define RELAY_BACKOFF_MAX_MS 3000
#define RELAY_STALL_MIN_MS 400   /* "2 page intervals", but never less than this */
#define RELAY_STALL_MAX_MS 10000
#define RELAY_PLAIN_STALL_MS 5000 /* a plain Ogg upstream: pages of any length */
#define RELAY_INDEX_MAX (64 * 1024)
#define RELAY_FEED_BUF (2 * FEED_MAX_FRAME)

enum { H_IDLE, H_CONNECTING, H_TLS, H_HEAD, H_BODY };

/* ---- upstream URLs ---------------------------------------------------------------------- */

static int parse_one(const char *s, size_t n, struct relay_upstream *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    snprintf(u->url, sizeof(u->url), "%.*s", (int)n, s);
    size_t scheme = n > 7 && strncmp(s, "http://", 7) == 0     ? 7
                    : n > 8 && strncmp(s, "https://", 8) == 0 ? 8
                                                               : 0;
    if (!scheme) {
        snprintf(err, errlen, "upstream '%s': not an http:// or https:// URL", u->url);
        return -1;
    }
    u->tls = scheme == 8;
    const char *p = s + scheme, *e = s + n;
    const char *slash = memchr(p, '/', (size_t)(e - p));
    const char *hend = slash ? slash : e;
    const char *colon = NULL;
    if (*p == '[') { /* [v6]:port */
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb) {
            snprintf(err, errlen, "upstream '%s': unclosed [", u->url);
            return -1;
        }
        snprintf(u->host, sizeof(u->host), "%.*s", (int)(rb - p - 1), p + 1);
        colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(hend - p));
        size_t hl = (size_t)((colon ? colon : hend) - p);
        if (hl == 0 || hl >= sizeof(u->host)) {
            snprintf(err, errlen, "upstream '%s': no host", u->url);
            return -1;
        }
        snprintf(u->host, sizeof(u->host), "%.*s", (int)hl, p);
    }
    u->port = u->tls ? 443 : 80;
    if (colon) {
        unsigned long port = 0;
        const char *q = colon + 1;
        if (q == hend)
            port = 0;
        for (; q < hend; q++) {
            if (*q < '0' || *q > '9' || port > 65535) {
                port = 0;
                break;
            }
            port = port * 10 + (unsigned long)(*q - '0');
        }
        if (port == 0 || port > 65535) {
            snprintf(err, errlen, "upstream '%s': bad port", u->url);
            return -1;
        }
        u->port = (uint16_t)port;
    }
    if (slash && slash + 1 < e) {
        snprintf(u->mount, sizeof(u->mount), "%.*s", (int)(e - slash - 1), slash + 1);
        if ((size_t)(e - slash - 1) >= sizeof(u->mount) || !mount_name_ok(u->mount)) {
            snprintf(err, errlen, "upstream '%s': '%.*s' is not a mount name", u->url,
                     (int)(e - slash - 1), slash + 1);
            return -1;
        }
    }
    return 0;
}

int relay_parse_upstreams(struct relay *r, const char *list, char *err, size_t errlen)
{
    r->nup = 0;
    const char *s = list;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        if (r->nup == RELAY_MAX_UPSTREAMS) {
            snprintf(err, errlen, "too many upstreams (max %d)", RELAY_MAX_UPSTREAMS);
            return -1;
        }
        if (parse_one(s, n, &r->up[r->nup], err, errlen) < 0)
            return -1;
        r->nup++;
        s += n + (comma ? 1 : 0);
    }
    if (r->nup == 0) {
        snprintf(err, errlen, "no upstream given (--upstream http://HOST:PORT[/MOUNT],...)");
        return -1;
    }
    r->mount_mode = r->up[0].mount[0] != '\0';
    for (int i = 1; i < r->nup; i++)
        if ((r->up[i].mount[0] != '\0') != r->mount_mode) {
            snprintf(err, errlen, "upstreams must all name a mount or none: '%s' and '%s'",
                     r->up[0].url, r->up[i].url);
            return -1;
        }
    return 0;
}

/* ---- one HTTP exchange ----------------------------------------------------------------- */

static void http_close(struct relay *r, struct relay_http *h)
{
    loop_unpost(&h->again);
    tls_conn_free(h->tls); /* no close_notify: the peer learns from the FIN */
    h->tls = NULL;
    if (h->io.fd >= 0) {
        loop_del(r->loop, &h->io);
        close(h->io.fd);
    }
    h->io.fd = -1;
    h->state = H_IDLE;
    h->len = 0;
}

/* Starts connecting <h> to upstream <up>; <cb> gets its events. Returns 0 or -1. */
static int http_connect(struct relay *r, struct relay_http *h, int up, io_cb cb)
{
    const struct relay_upstream *u = &r->up[up];
    char port[8];
    snprintf(port, sizeof(port), "%u", u->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(u->host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        LOG_RATELIMITED(LOG_WARN, "relay", "upstream %s: %s", u->url, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        freeaddrinfo(ai);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1 && errno != EINPROGRESS) {
        freeaddrinfo(ai);
        close(fd);
        return -1;
    }
    freeaddrinfo(ai);
    h->io.fd = fd;
    h->io.cb = cb;
    h->up = up;
    h->state = H_CONNECTING;
    h->len = 0;
    h->status = 0;
    h->kind = 0;
    h->started_ms = r->loop->now_ms;
    h->deadline_ms = h->started_ms + RELAY_ANSWER_MS;
    if (loop_add(r->loop, &h->io, EPOLLOUT) < 0) {
        close(fd);
        h->io.fd = -1;
        h->state = H_IDLE;
        return -1;
    }
    return 0;
}

/* The connection is up (EPOLLOUT while connecting), or its TLS handshake wants to go on:
 * checks it, drives the handshake of an https:// upstream, then sends <req> (a few hundred
 * bytes into an empty socket buffer, or one TLS record: all or an error). Returns 0 (sent:
 * the answer's head is next), 1 (the handshake waits for an event) or -1 with the reason in
 * <why>. */
static int http_send(struct relay *r, struct relay_http *h, const struct buf *req, char *why,
                     size_t whylen)
{
    const struct relay_upstream *u = &r->up[h->up];
    if (h->state == H_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(h->io.fd, SOL_SOCKET, SO_ERROR, &err, &el) == -1 || err != 0) {
            snprintf(why, whylen, "%s", strerror(err ? err : errno));
            return -1;
        }
        if (u->tls) {
            h->tls = tls_client_new(r->tls, h->io.fd, u->host);
            h->state = H_TLS;
        }
    }
    if (h->state == H_TLS) {
        int rc = tls_handshake(h->tls);
        if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE) {
            if (loop_mod(r->loop, &h->io, rc == TLS_WANT_READ ? EPOLLIN : EPOLLOUT) < 0) {
                snprintf(why, whylen, "%s", strerror(errno));
                return -1;
            }
            return 1;
        }
        if (rc != TLS_DONE) {
            char reason[200];
            int kind = tls_handshake_error(h->tls, reason, sizeof(reason));
            snprintf(why, whylen, "TLS handshake failed%s: %s",
                     kind == TLS_FAIL_NAME   ? " (the certificate is not for this name)"
                     : kind == TLS_FAIL_CERT ? " (the certificate does not verify)"
                                             : "",
                     reason);
            return -1;
        }
        char tv[96];
        log_debug("relay", "%s: %s", u->url, tls_describe(h->tls, tv, sizeof(tv)));
    }
    struct iovec iov = {req->data, req->len};
    ssize_t w = h->tls ? tls_writev(h->tls, &iov, 1)
                       : send(h->io.fd, req->data, req->len, MSG_NOSIGNAL);
    if (w != (ssize_t)req->len) {
        snprintf(why, whylen, "%s", w < 0 ? strerror(errno) : "request half sent");
        return -1;
    }
    h->state = H_HEAD;
    if (loop_mod(r->loop, &h->io, EPOLLIN | EPOLLRDHUP) < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads what is there into <h->in>. Returns bytes read (> 0), 0 at the end, -1 on an error,
 * -2 if nothing more now, -3 if the buffer is full. */
static ssize_t http_read(struct relay_http *h)
{
    if (h->len == h->cap)
        return -3;
    ssize_t n = h->tls ? tls_read(h->tls, h->in + h->len, h->cap - h->len)
                       : recv(h->io.fd, h->in + h->len, h->cap - h->len, 0);
    if (n > 0) {
        h->len += (size_t)n;
        return n;
    }
    if (n == 0)
        return 0;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -2 : -1;
}

/* Once the head is in: parses it and drops it from the buffer. Returns 1 (parsed), 0 (more
 * needed), -1 (malformed). */
static int http_take_head(struct relay_http *h)
{
    struct feed_http_head hh;
    int n = feed_parse_response_head(h->in, h->len, &hh);
    if (n == -2)
        return 0;
    if (n < 0)
        return -1;
    h->status = hh.status;
    h->kind = hh.kind;
    if (hh.kind == FEED_KIND_FEED && hh.feed_version != FEED_VERSION)
        h->kind = FEED_KIND_OTHER; /* a feed of another version: not one we can read */
    memmove(h->in, h->in + n, h->len - (size_t)n);
    h->len -= (size_t)n;
    h->state = H_BODY;
    return 1;
}

static void request_head(const struct relay *r, int up, struct buf *b, const char *path)
{
    const struct relay_upstream *u = &r->up[up];
    buf_printf(b, "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rostrum-relay/0.1\r\n", path,
               u->host, u->port);
    if (r->cfg->relay_key[0])
        buf_printf(b, "X-Relay-Key: %s\r\n", r->cfg->relay_key);
    buf_puts(b, "\r\n");
}

static int64_t jitter(int64_t lo, int64_t hi)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = (uint32_t)loop_clock_ms();
    return hi > lo ? lo + (int64_t)(v % (uint32_t)(hi - lo + 1)) : lo;
}

/* ---- feeds ------------------------------------------------------------------------------- */

static void feed_connect(struct relay_feed *f);
static void feed_watch_cb(struct loop *loop, struct loop_timer *t);

static struct relay_feed *feed_find(struct relay *r, const char *mount)
{
    struct list_node *n;
    for (n = r->feeds.next; n != &r->feeds; n = n->next) {
        struct relay_feed *f = list_entry(n, struct relay_feed, node);
        if (strcmp(f->mount, mount) == 0)
            return f;
    }
    return NULL;
}

/* Says in <f>'s space until when this relay's feed of it is well (the keepalives to the
 * relays below carry it: feed.c): <until>, or 1 (long past) when it is down. */
static void feed_fed_until(struct relay_feed *f, int64_t until)
{
    if (f->sp)
        SHM_SET(f->r->spaces->sh->spaces[f->sp->slot].feed_fed_until_ms, until > 0 ? until : 1);
}

static void feed_retry_cb(struct loop *loop, struct loop_timer *t)
{
    struct relay_feed *f = (struct relay_feed *)((char *)t - offsetof(struct relay_feed, retry));
    (void)loop;
    feed_connect(f);
}

/* The connection of <f> is lost or refused (<why>): back off, then the next upstream. */
static void feed_fail(struct relay_feed *f, const char *why)
{
    struct relay *r = f->r;
    struct shared_main *m = &r->spaces->sh->main;
    const struct relay_upstream *u = &r->up[f->h.up];
    if (f->got_header) {
        m->relay_cuts++;
        m->relay_feeds_up--;
        log_warn("relay", "/%s: feed from %s cut: %s; resuming from page %llu", f->mount,
                 u->url, why, f->sp ? (unsigned long long)space_relay_next(f->sp) : 0ULL);
    } else {
        LOG_RATELIMITED(LOG_WARN, "relay", "/%s: %s: %s", f->mount, u->url, why);
    }
    http_close(r, &f->h);
    loop_timer_stop(r->loop, &f->watch);
    f->got_header = 0;
    feed_fed_until(f, 1);
    ogg_demux_free(f->dmx);
    f->dmx = NULL;
    f->attempts++;
    int64_t d = RELAY_BACKOFF_MIN_MS << (f->attempts > 6 ? 5 : f->attempts - 1);
    if (d > RELAY_BACKOFF_MAX_MS)
        d = RELAY_BACKOFF_MAX_MS;
    loop_timer_start(r->loop, &f->retry, jitter(d / 2, d), feed_retry_cb);
}

/* Frees <f>; its space ends too if <end_space>. */
static void feed_free(struct relay_feed *f, int end_space)
{
    struct relay *r = f->r;
    if (f->got_header)
        r->spaces->sh->main.relay_feeds_up--;
    http_close(r, &f->h);
    loop_timer_stop(r->loop, &f->retry);
    loop_timer_stop(r->loop, &f->watch);
    ogg_demux_free(f->dmx);
    if (end_space && f->sp)
        space_end(f->sp, CLOSE_MOUNT_END);
    list_unlink(&f->node);
    free(f->h.in);
    free(f);
}

/* The space for <f>, made when its stream first arrives. NULL if no slot is free. */
static struct space *feed_space(struct relay_feed *f)
{
    if (!f->sp) {
        f->sp = space_find(f->r->spaces, f->mount);
        if (!f->sp)
            f->sp = space_create(f->r->spaces, f->mount);
    }
    return f->sp;
}

static int feed_on_header(struct relay_feed *f, const struct feed_frame *fr)
{
    struct relay *r = f->r;
    struct shared_main *m = &r->spaces->sh->main;
    struct space *sp = feed_space(f);
    if (!sp) {
        LOG_RATELIMITED(LOG_ERROR, "relay", "/%s: no free space slot (max %d)", f->mount,
                        SHARED_MAX_SPACES);
        return -1;
    }
    uint64_t next = space_relay_next(sp);
    int resume = f->had_stream && space_relay_continues(sp, fr->header.serial, fr->header.epoch,
                                                        fr->header.start);
    if (resume) {
        m->relay_resumes++;
        log_info("relay", "/%s: resumed from %s at page %llu, no gap", f->mount,
                 r->up[f->h.up].url, (unsigned long long)next);
    } else {
        if (f->had_stream) {
            m->relay_restarts++;
            log_warn("relay", "/%s: cannot resume at page %llu from %s (stream %08x/%u, "
                     "starts at %llu): restarting the stream", f->mount,
                     (unsigned long long)next, r->up[f->h.up].url, fr->header.serial,
                     fr->header.epoch, (unsigned long long)fr->header.start);
        }
        struct space_relay_stream st = {.serial = fr->header.serial,
                                        .epoch = fr->header.epoch,
                                        .channels = fr->header.channels,
                                        .ogg = fr->header.ogg.p,
                                        .ogg_len = fr->header.ogg.len};
        char *dst[5] = {st.meta.name, st.meta.description, st.meta.genre, st.meta.url,
                        st.meta.bitrate};
        size_t cap[5] = {sizeof(st.meta.name), sizeof(st.meta.description),
                         sizeof(st.meta.genre), sizeof(st.meta.url), sizeof(st.meta.bitrate)};
        for (int i = 0; i < 5; i++) /* bounded by the parser; sanitised by the space */
            snprintf(dst[i], cap[i], "%.*s", (int)fr->header.meta[i].len,
                     (const char *)fr->header.meta[i].p);
        space_relay_begin(sp, &st, fr->header.start);
        f->had_stream = 1;
    }
    f->got_header = 1;
    f->attempts = 0;
    f->last_page_ms = f->last_alive_ms = f->last_heard_ms = r->loop->now_ms;
    f->keepalive_ms = fr->header.keepalive_ms;
    feed_fed_until(f, r->loop->now_ms + RELAY_STALL_MIN_MS / 2);
    /* a new generation, reported on the new feed at the next watch: after a fail-over the new
     * upstream counts this subtree at once, and the copy the old one may still hold (its link
     * stalled: it saw no close) is superseded there, not counted twice */
    f->gen = ++r->gen;
    f->reported_ms = 0;
    m->relay_connects++;
    m->relay_feeds_up++;
    return 0;
}

/* Handles the frames in <f>'s buffer. Returns 0, or -1 after feed_fail / feed_free. */
static int feed_frames(struct relay_feed *f)
{
    struct relay *r = f->r;
    struct shared_main *m = &r->spaces->sh->main;
    size_t off = 0;
    int rc = 0;
    while (off < f->h.len) {
        struct feed_frame fr;
        int n = feed_parse(f->h.in + off, f->h.len - off, &fr);
        if (n == -2)
            break;
        const char *bad = n < 0 ? "invalid frame" : NULL;
        if (!bad && !f->got_header && fr.type != FEED_HEADER)
            bad = "frames before the header";
        if (!bad && fr.type == FEED_HEADER && f->got_header)
            bad = "a second header";
        if (!bad && fr.type == FEED_HEADER && feed_on_header(f, &fr) < 0)
            bad = "no room for the space";
        if (!bad && fr.type == FEED_PAGE) {
            if (space_relay_page(f->sp, fr.page.seq, fr.page.page.p, fr.page.page.len,
                                 fr.page.samples, fr.page.granule) < 0) {
                bad = "page out of sequence";
            } else {
                int64_t now = r->loop->now_ms, gap = now - f->last_heard_ms;
                int64_t dur = fr.page.samples / 48;
                /* the page interval: the longest silence before a page lately, decaying to the
                 * page length. Silence since the last frame of any kind: while the upstream was
                 * starved its keepalives filled the wait, and that wait must not stretch the
                 * limit for the next stall (the upstream reckons its keepalives the same way,
                 * feed.c) */
                f->interval_ms = gap > f->interval_ms ? gap : (f->interval_ms * 15 + dur) / 16;
                f->last_page_ms = f->last_alive_ms = now;
            }
        }
        /* a keepalive is a sign of life if the upstream is fed and withholds nothing (its
         * head is no further than the page we lack: a cursor stuck upstream is a stall too) */
        if (!bad && fr.type == FEED_KEEPALIVE &&
            !(fr.keepalive.flags & FEED_KEEPALIVE_STARVED) &&
            fr.keepalive.head <= space_relay_next(f->sp))
            f->last_alive_ms = r->loop->now_ms;
        f->last_heard_ms = r->loop->now_ms;
        if (!bad && fr.type == FEED_STATE)
            space_set_state(f->sp, (const char *)fr.state.p, fr.state.len);
        if (!bad && fr.type == FEED_CAPTIONS) {
            if (!captions_list_ok((const char *)fr.captions.list.p, fr.captions.list.len) ||
                !config_language_ok((const char *)fr.captions.lang.p, fr.captions.lang.len))
                bad = "a malformed captions list or language";
            else
                space_set_captions(f->sp, fr.captions.on, fr.captions.epoch,
                                   fr.captions.final_ms, (const char *)fr.captions.lang.p,
                                   fr.captions.lang.len,
                                   fr.captions.same_list ? NULL : fr.captions.list.p,
                                   fr.captions.list.len);
        }
        if (!bad && fr.type == FEED_END) {
            log_info("relay", "/%s: %s upstream", f->mount,
                     fr.end == FEED_END_ENDED ? "ended" : "restarted");
            if (fr.end == FEED_END_ENDED) {
                feed_free(f, 1);
                return -1;
            }
            rc = 1; /* restarted: reconnect at once for the new stream */
            break;
        }
        if (bad) {
            m->relay_bad_frames++;
            feed_fail(f, bad);
            return -1;
        }
        off += (size_t)n;
    }
    memmove(f->h.in, f->h.in + off, f->h.len - off);
    f->h.len -= off;
    if (rc == 1) {
        f->attempts = 0;
        feed_fail(f, "the stream restarted upstream");
        return -1;
    }
    return 0;
}

/* A plain Ogg upstream: its packets go through the space's own muxer, as a source's do. */
static int plain_on_head(void *arg, const struct opus_head_info *head)
{
    struct relay_feed *f = arg;
    return f->sp ? space_on_head(f->sp, head) : -1;
}

static int plain_on_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct relay_feed *f = arg;
    if (f->sp) {
        space_on_packet(f->sp, pkt, len, samples);
        f->last_page_ms = f->last_alive_ms = f->r->loop->now_ms;
    }
    return 0;
}

static const struct ogg_demux_cb plain_cb = {plain_on_head, plain_on_packet};

static void feed_on_io(struct loop *loop, struct io *io, uint32_t events);

static void feed_again_cb(struct loop *loop, struct loop_post *p)
{
    struct relay_http *h = (struct relay_http *)((char *)p - offsetof(struct relay_http, again));
    feed_on_io(loop, &h->io, EPOLLIN);
}

static void feed_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct relay_feed *f = (struct relay_feed *)((char *)io - offsetof(struct relay_feed, h));
    struct relay *r = f->r;
    (void)loop;
    if (f->h.state == H_CONNECTING || f->h.state == H_TLS) {
        char path[160];
        uint64_t next = f->had_stream && f->sp ? space_relay_next(f->sp) : 0;
        const char *m = r->mount_mode ? r->up[f->h.up].mount : f->mount;
        if (f->had_stream)
            snprintf(path, sizeof(path), "/%s?relay=1&captions=1&from=%llu", m,
                     (unsigned long long)next);
        else
            snprintf(path, sizeof(path), "/%s?relay=1&captions=1", m);
        struct buf req = {0};
        request_head(r, f->h.up, &req, path);
        char why[300];
        int rc = http_send(r, &f->h, &req, why, sizeof(why));
        buf_free(&req);
        if (rc < 0)
            feed_fail(f, why);
        return;
    }
    for (int i = 0; i < 16; i++) {
        if (i == 15 && f->h.tls && tls_read_buffered(f->h.tls)) {
            /* OpenSSL holds more than epoll will tell of: come back on the next turn */
            loop_post(r->loop, &f->h.again, feed_again_cb);
            return;
        }
        ssize_t n = http_read(&f->h);
        if (n == -2)
            return;
        if (n == 0 || n == -1) {
            feed_fail(f, n == 0 ? "upstream closed the connection" : strerror(errno));
            return;
        }
        if (n == -3 && f->h.state != H_BODY) {
            feed_fail(f, "answer head too long");
            return;
        }
        if (f->h.state == H_HEAD) {
            int hr = http_take_head(&f->h);
            if (hr < 0) {
                feed_fail(f, "malformed answer");
                return;
            }
            if (hr == 0)
                continue;
            if (f->h.status == 403) {
                log_error("relay", "/%s: %s refused the feed (403): %s relay key", f->mount,
                          r->up[f->h.up].url, r->cfg->relay_key[0] ? "wrong" : "it needs a");
                feed_fail(f, "refused (403)");
                return;
            }
            if (f->h.status != 200 ||
                (f->h.kind != FEED_KIND_FEED && !(r->mount_mode && f->h.kind == FEED_KIND_OGG))) {
                char why[64];
                snprintf(why, sizeof(why), "answered %d%s", f->h.status,
                         f->h.status == 200 ? " with neither a feed nor Ogg" : "");
                feed_fail(f, why);
                return;
            }
            if (f->h.kind == FEED_KIND_OGG) {
                if (!feed_space(f)) {
                    feed_fail(f, "no room for the space");
                    return;
                }
                f->dmx = ogg_demux_new();
                f->got_header = 1;
                f->attempts = 0;
                f->last_page_ms = f->last_alive_ms = f->last_heard_ms = r->loop->now_ms;
                feed_fed_until(f, r->loop->now_ms + RELAY_PLAIN_STALL_MS / 2);
                r->spaces->sh->main.relay_connects++;
                r->spaces->sh->main.relay_feeds_up++;
                log_info("relay", "/%s: pulling a plain Ogg stream from %s", f->mount,
                         r->up[f->h.up].url);
            }
        }
        if (f->dmx) {
            int rc = ogg_demux_feed(f->dmx, f->h.in, f->h.len, &plain_cb, f);
            f->h.len = 0;
            if (rc < 0) {
                feed_fail(f, ogg_demux_error(f->dmx));
                return;
            }
            continue;
        }
        if (feed_frames(f) < 0)
            return;
        if (f->h.len == f->h.cap) { /* two frames of room and no whole frame: a bad peer */
            r->spaces->sh->main.relay_bad_frames++;
            feed_fail(f, "frame larger than the buffer");
            return;
        }
    }
    (void)events;
}

/* The relays of <f>'s space below this one, deduplicated over the workers, as rows for a
 * REPORT: the FEED_REPORT_ROWS with the most listeners (feed_report sums the rest into the
 * report's <tree> unlisted). Returns how many rows there are in all; <*digest> identifies the
 * (id, gen) pairs listed. */
static uint32_t subtree_rows(struct relay_feed *f, struct feed_tree_row *out, uint64_t *sum,
                             uint64_t *digest, uint32_t *listed)
{
    static struct shared_tree_row rows[SHARED_MAX_WORKERS * SHARED_WORKER_TREE_ROWS];
    struct shared *sh = f->r->spaces->sh;
    int64_t now = f->r->loop->now_ms;
    int n = shared_tree_collect(sh, f->sp->slot, now, FEED_REPORT_AGE_MS, rows);
    uint32_t k = 0, all = 0;
    *sum = 0;
    *digest = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].id == f->r->id)
            continue; /* itself, through a loop of relays: never counted twice */
        all++;
        *sum += rows[i].own;
        struct feed_tree_row row = {rows[i].id, rows[i].gen, rows[i].own,
                                    (uint32_t)(now - rows[i].seen_ms < 0 ? 0
                                                                         : now - rows[i].seen_ms)};
        /* keep the FEED_REPORT_ROWS largest: replace the smallest kept when full */
        if (k < FEED_REPORT_ROWS) {
            out[k++] = row;
            continue;
        }
        uint32_t lo = 0;
        for (uint32_t j = 1; j < k; j++)
            if (out[j].own < out[lo].own)
                lo = j;
        if (row.own > out[lo].own)
            out[lo] = row;
    }
    for (uint32_t j = 0; j < k; j++)
        *digest += (out[j].id ^ ((uint64_t)out[j].gen << 17)) * 0x9e3779b97f4a7c15ULL;
    *listed = k;
    return all;
}

/* On a feed, twice a second and whenever the identities below change: what this relay's
 * subtree receives of the space, upward, by identity (feedproto.h, REPORT): its own listeners
 * (the workers' honest count) and a row per relay below it, its room, and where listeners may
 * be sent. A relay has one feed per space at a time; a copy of its report that an old upstream
 * still holds carries an older generation and loses to this one wherever the two meet. A
 * report the socket cannot take now is skipped (the next one says it again). <due>: report
 * even if nothing changed. Returns 0, or -1 after feed_fail. */
static int feed_report_up(struct relay_feed *f, int due)
{
    struct shared *sh = f->r->spaces->sh;
    const struct config *cfg = f->r->cfg;
    struct feed_tree_row rows[FEED_REPORT_ROWS];
    uint64_t below = 0, digest = 0;
    uint32_t listed = 0;
    uint32_t all = subtree_rows(f, rows, &below, &digest, &listed);
    if (!due && digest == f->reported_ids)
        return 0;
    uint32_t own = 0, conns = 0, load = 0;
    int slot = f->sp->slot;
    for (uint32_t w = 0; w < sh->nworkers; w++) {
        own += SHM_GET(sh->workers[w].receiving[slot]);
        conns += SHM_GET(sh->workers[w].listener_connections);
        uint32_t p = SHM_GET(sh->workers[w].pressure_milli);
        load = p > load ? p : load;
    }
    if (all > listed)
        sh->main.relay_rows_unlisted += all - listed;
    char name[FEED_NAME_MAX + 1];
    if (cfg->relay_name[0])
        snprintf(name, sizeof(name), "%s", cfg->relay_name);
    else
        snprintf(name, sizeof(name), "%.20s:%u", cfg->audience_host, (unsigned)cfg->audience_port);
    uint64_t tree = own + below;
    struct feed_report_fields rf = {
        .tree = tree > UINT32_MAX ? UINT32_MAX : (uint32_t)tree,
        .own = own,
        .connections = conns,
        .capacity = (uint32_t)cfg->max_listeners,
        .load_milli = (uint16_t)(load > 1000 ? 1000 : load),
        .flags = __atomic_load_n(&sh->main.draining, __ATOMIC_ACQUIRE) ? FEED_REPORT_DRAINING : 0,
        .name = name,
        .url = cfg->public_url,
        .id = f->r->id,
        .gen = f->gen,
        .nrows = listed,
        .rows = rows};
    unsigned char rep[FEED_REPORT_MAX];
    size_t len = feed_report(rep, &rf);
    f->reported_ms = f->r->loop->now_ms;
    f->reported_ids = digest;
    ssize_t w;
    if (f->h.tls) {
        /* a record that did not go out whole waits inside OpenSSL: it goes first, and this
         * report is skipped unless it could */
        struct iovec iov = {rep, len};
        if (tls_pending(f->h.tls) && tls_flush(f->h.tls) < 0)
            w = -1;
        else
            w = tls_writev(f->h.tls, &iov, 1);
    } else {
        w = send(f->h.io.fd, rep, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (w == (ssize_t)len || (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
        return 0;
    feed_fail(f, w < 0 ? strerror(errno) : "report half sent");
    return -1;
}

static void feed_watch_cb(struct loop *loop, struct loop_timer *t)
{
    struct relay_feed *f = (struct relay_feed *)((char *)t - offsetof(struct relay_feed, watch));
    int64_t now = loop->now_ms;
    if (f->got_header && !f->dmx && f->sp &&
        feed_report_up(f, !f->reported_ms || now - f->reported_ms >= FEED_REPORT_EVERY_MS) < 0)
        return;
    if (!f->got_header) {
        if (now > f->h.deadline_ms) {
            char why[48];
            snprintf(why, sizeof(why), "no answer in %lld ms",
                     (long long)(now - f->h.started_ms));
            feed_fail(f, why);
            return;
        }
    } else {
        int64_t stall = f->dmx ? RELAY_PLAIN_STALL_MS : 2 * f->interval_ms;
        if (!f->dmx && stall < 2 * f->keepalive_ms)
            stall = 2 * f->keepalive_ms;
        if (stall < RELAY_STALL_MIN_MS)
            stall = RELAY_STALL_MIN_MS;
        if (stall > RELAY_STALL_MAX_MS)
            stall = RELAY_STALL_MAX_MS;
        /* silence (no page, no keepalive) is the link; a starved upstream's keepalives are
         * worth leaving only for another upstream, which may be fed */
        int64_t quiet = now - (f->dmx       ? f->last_page_ms
                               : f->r->nup > 1 ? f->last_alive_ms
                                               : f->last_heard_ms);
        /* the relays below hear that this one is starved once it went half its own stall
         * time (a page interval) without audio or a fed keepalive, or once this process
         * stops pushing the time on (it froze) */
        feed_fed_until(f, f->last_alive_ms + stall / 2);
        if (quiet > stall) {
            char why[96];
            snprintf(why, sizeof(why), "stalled: nothing for %lld ms (limit %lld)",
                     (long long)quiet, (long long)stall);
            f->r->spaces->sh->main.relay_stalls++;
            feed_fail(f, why);
            return;
        }
    }
    loop_timer_start(loop, t, RELAY_WATCH_MS, feed_watch_cb);
}

/* Connects <f> to its next upstream: the one it had after a good connection, the next of the
 * list after a failure (fail-over). */
static void feed_connect(struct relay_feed *f)
{
    struct relay *r = f->r;
    int up = f->h.up;
    if (f->attempts > 0 && r->nup > 1) {
        up = (up + 1) % r->nup;
        r->spaces->sh->main.relay_failovers++;
        log_info("relay", "/%s: trying %s", f->mount, r->up[up].url);
    }
    /* a space with no stream for grace-ms ends here too (its listeners are let go) */
    int grace = config_grace_ms(r->cfg, NULL);
    if (f->sp && f->sp->last_packet_ms && r->loop->now_ms - f->sp->last_packet_ms > grace) {
        log_warn("relay", "/%s: no upstream for %d ms: ending it here", f->mount, grace);
        space_end(f->sp, CLOSE_MOUNT_END);
        f->sp = NULL;
        f->had_stream = 0;
    }
    if (http_connect(r, &f->h, up, feed_on_io) < 0) {
        f->h.up = up;
        feed_fail(f, "cannot connect");
        return;
    }
    /* in a fail-over, an upstream that does not answer soon is passed over for the next one
     * (a well one answers within a few round trips, TLS included): the listeners have only
     * their burst meanwhile, and a black-holed upstream would take all of RELAY_ANSWER_MS.
     * Once every upstream had its turn, each gets the whole wait again. */
    if (f->attempts > 0 && f->attempts < r->nup)
        f->h.deadline_ms = r->loop->now_ms + RELAY_FAILOVER_ANSWER_MS;
    loop_timer_start(r->loop, &f->watch, RELAY_WATCH_MS, feed_watch_cb);
}

static struct relay_feed *feed_new(struct relay *r, const char *mount, int up)
{
    struct relay_feed *f = calloc(1, sizeof(*f));
    BUG_ON(!f);
    f->r = r;
    snprintf(f->mount, sizeof(f->mount), "%s", mount);
    f->h.io.fd = -1;
    f->h.cap = RELAY_FEED_BUF;
    f->h.in = malloc(f->h.cap);
    BUG_ON(!f->h.in);
    f->h.up = up;
    f->interval_ms = 1000;
    list_insert_tail(&r->feeds, &f->node);
    log_info("relay", "/%s: pulling from %s", mount, r->up[up].url);
    feed_connect(f);
    return f;
}

/* ---- the index ------------------------------------------------------------------------- */

static void index_done(struct relay *r, int ok)
{
    struct relay_http *h = &r->index;
    if (!ok) {
        http_close(r, h);
        r->index_up = (r->index_up + 1) % r->nup;
        return;
    }
    cJSON *doc = cJSON_ParseWithLength((const char *)h->in, h->len);
    cJSON *spaces = doc ? cJSON_GetObjectItemCaseSensitive(doc, "spaces") : NULL;
    int up = h->up;
    http_close(r, h);
    if (!cJSON_IsArray(spaces)) {
        LOG_RATELIMITED(LOG_WARN, "relay", "%s/relay.json: not an index", r->up[up].url);
        cJSON_Delete(doc);
        r->index_up = (r->index_up + 1) % r->nup;
        return;
    }
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &r->feeds)
    {
        list_entry(n, struct relay_feed, node)->listed = 0;
    }
    int count = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, spaces)
    {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(it, "mount");
        if (!cJSON_IsString(m) || strlen(m->valuestring) >= 64 || !mount_name_ok(m->valuestring))
            continue;
        if (++count > SHARED_MAX_SPACES)
            break;
        struct relay_feed *f = feed_find(r, m->valuestring);
        if (!f)
            f = feed_new(r, m->valuestring, up);
        f->listed = 1;
        f->missing = 0;
    }
    cJSON_Delete(doc);
    /* A space the upstream no longer lists has ended there: it ends here. Twice in a row (a
     * second apart), because a relay upstream that just restarted lists a space only once its
     * own feed has its header; a space that really ends says so sooner through its feed. */
    list_for_each_safe(n, tmp, &r->feeds)
    {
        struct relay_feed *f = list_entry(n, struct relay_feed, node);
        if (!f->listed && ++f->missing >= 2) {
            log_info("relay", "/%s: no longer live upstream (%s): ending it", f->mount,
                     r->up[up].url);
            feed_free(f, 1);
        }
    }
}

static void index_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct relay *r = (struct relay *)((char *)io - offsetof(struct relay, index));
    struct relay_http *h = &r->index;
    (void)loop;
    (void)events;
    if (h->state == H_CONNECTING || h->state == H_TLS) {
        struct buf req = {0};
        request_head(r, h->up, &req, "/relay.json");
        char why[300];
        int rc = http_send(r, h, &req, why, sizeof(why));
        buf_free(&req);
        if (rc < 0) {
            LOG_RATELIMITED(LOG_WARN, "relay", "%s/relay.json: %s", r->up[h->up].url, why);
            index_done(r, 0);
        }
        return;
    }
    for (;;) {
        ssize_t n = http_read(h);
        if (n == -2)
            return;
        if (n == -1 || n == -3) {
            LOG_RATELIMITED(LOG_WARN, "relay", "%s/relay.json: %s", r->up[h->up].url,
                            n == -3 ? "index too large" : strerror(errno));
            index_done(r, 0);
            return;
        }
        if (h->state == H_HEAD) {
            int hr = http_take_head(h);
            if (hr < 0 || (hr == 1 && h->status != 200)) {
                LOG_RATELIMITED(LOG_WARN, "relay", "%s/relay.json: answered %d",
                                r->up[h->up].url, h->status);
                index_done(r, 0);
                return;
            }
        }
        if (n == 0) {
            index_done(r, h->state == H_BODY);
            return;
        }
    }
}

static void poll_cb(struct loop *loop, struct loop_timer *t)
{
    struct relay *r = (struct relay *)((char *)t - offsetof(struct relay, poll));
    if (r->index.state != H_IDLE && loop->now_ms > r->index.deadline_ms) {
        LOG_RATELIMITED(LOG_WARN, "relay", "%s/relay.json: no answer", r->up[r->index.up].url);
        index_done(r, 0);
    }
    if (r->index.state == H_IDLE && http_connect(r, &r->index, r->index_up, index_on_io) < 0)
        index_done(r, 0);
    loop_timer_start(loop, t, RELAY_POLL_MS, poll_cb);
}

int relay_start(struct relay *r)
{
    list_init(&r->feeds);
    for (int i = 0; i < r->nup && !r->tls; i++) {
        if (!r->up[i].tls)
            continue;
        char err[300];
        const char *ca = r->cfg->relay_cafile[0] ? r->cfg->relay_cafile : NULL;
        r->tls = tls_client_ctx_new(ca, 1, err, sizeof(err));
        if (!r->tls) {
            log_error("relay", "https:// upstreams: %s", err);
            return -1;
        }
        log_info("relay", "https:// upstreams: certificates checked against %s",
                 ca ? ca : "the system's trust store");
    }
    if (getrandom(&r->id, sizeof(r->id), 0) != sizeof(r->id))
        r->id = (uint64_t)loop_clock_ms() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    if (r->id == 0)
        r->id = 1;
    r->index.io.fd = -1;
    r->index.cap = RELAY_INDEX_MAX;
    r->index.in = malloc(r->index.cap);
    BUG_ON(!r->index.in);
    if (r->mount_mode) {
        /* one mount, named by the first URL; the others are its alternates */
        feed_new(r, r->up[0].mount, 0);
        return 0;
    }
    loop_timer_start(r->loop, &r->poll, 0, poll_cb);
    return 0;
}

void relay_stop(struct relay *r)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &r->feeds)
    {
        feed_free(list_entry(n, struct relay_feed, node), 1);
    }
    http_close(r, &r->index);
    loop_timer_stop(r->loop, &r->poll);
    free(r->index.in);
    r->index.in = NULL;
    tls_ctx_free(r->tls);
    r->tls = NULL;
}
