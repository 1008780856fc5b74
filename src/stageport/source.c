/*
 * source: Icecast-style studio ingest on the stage port.
 *
 *   PUT /mount HTTP/1.1          (ffmpeg, libshout >= 2.4 after its probe)
 *   Expect: 100-continue    -->  HTTP/1.1 100 Continue, then the body runs until close
 *   SOURCE /mount HTTP/1.0  -->  HTTP/1.0 200 OK, then the same
 *
 * Checks happen in the order a client can fix them: auth (401), mount name (400), content
 * type (415), busy mount (403). The body is Ogg/Opus; the demuxer turns it into packets that
 * the space re-packs. A stream the demuxer refuses drops this source alone, with its reason
 * logged once; the space goes into grace as if the source had left.
 *
 * Pacing: a source may not run more than SOURCE_AHEAD_MS ahead of real time (its audio since
 * its first packet against the clock since then). A source faster than that (ffmpeg without
 * -re, a file pushed as fast as TCP goes) would fill the ring with minutes of audio in
 * seconds and push every listener past lag-ms; instead its socket is not read until the
 * clock catches up, so TCP backpressure slows it to real time. The reason is logged once.
 * A source that fell behind (its network stalled) may catch up: only being ahead counts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "stageport/stageport.h"

#include "http/request.h"
#include "net/net.h"
#include "ogg/demux.h"
#include "token/token.h"
#include "util/log.h"
#include "util/check.h"

#define SOURCE_READ_CHUNK 16384
/* Over TLS a read returns at most one record, and a record holds at most 16 KiB: so a chunk
 * this size ends each read at a record's end, and when the reads of a wake-up end no plaintext
 * is left inside OpenSSL, where epoll could not see it (the WebSocket's read budget needs
 * ws_read_more for that). */
_Static_assert(SOURCE_READ_CHUNK >= 16384, "a source read must take a whole TLS record");
#define SOURCE_AHEAD_MS 5000 /* above an Icecast relay's 64 KB burst at 96 kb/s */

/* A source connection's state (in its conn's priv). */
struct source_state {
    struct space_feed feed; /* the space it feeds, until it lets go */
    struct ogg_demux *demux;
    int64_t last_byte_ms;
    uint64_t bytes;
    int64_t media_start_ms; /* arrival of its first packet: pacing counts from here */
    uint64_t media_samples; /* audio it has sent since, at 48 kHz */
    uint8_t paced;          /* ahead of real time: its socket is not read for now */
    uint8_t pace_logged;
};
CONN_PRIV_FITS(struct source_state);

#define SRC(c) CONN_PRIV(c, struct source_state)

static void source_on_close(struct conn *c)
{
    if (SRC(c)->feed.space)
        space_source_detach(SRC(c)->feed.space, "closed");
}

static void source_on_free(struct conn *c)
{
    ogg_demux_free(SRC(c)->demux);
}

static const struct conn_ops source_ops = {"source", source_on_close, source_on_free};

static void source_on_io(struct loop *loop, struct io *io, uint32_t events);

static int source_cb_head(void *arg, const struct opus_head_info *head)
{
    return space_feed_head(&SRC((struct conn *)arg)->feed, head);
}

static int source_cb_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct conn *c = arg;
    struct source_state *s = SRC(c);
    if (s->media_samples == 0)
        s->media_start_ms = c->hub->loop->now_ms;
    if (samples > 0)
        s->media_samples += (uint64_t)samples;
    return space_feed_packet(&s->feed, pkt, len, samples);
}

static const struct ogg_demux_cb source_demux_cb = {source_cb_head, source_cb_packet};

/* Ends the source connection; its space (if any) enters grace. */
static void source_drop(struct conn *c, const char *why)
{
    if (SRC(c)->feed.space)
        space_source_detach(SRC(c)->feed.space, why);
    conn_close(c);
}

/* Feeds body bytes. Returns 0, or -1 if the source was dropped. */
static int source_feed(struct conn *c, const void *data, size_t len)
{
    struct source_state *s = SRC(c);
    s->bytes += len;
    s->last_byte_ms = c->hub->loop->now_ms;
    int rc = ogg_demux_feed(s->demux, data, len, &source_demux_cb, c);
    if (rc < 0) {
        char why[200];
        snprintf(why, sizeof(why), "bad stream: %s", ogg_demux_error(s->demux));
        log_warn("source", "#%llu %s: dropping source: %s", (unsigned long long)c->id, c->peer,
                 ogg_demux_error(s->demux));
        source_drop(c, why);
        return -1;
    }
    if (rc > 0 || c->dead) {
        source_drop(c, "detached");
        return -1;
    }
    return 0;
}

/* How far <c>'s audio is ahead of the clock since its first packet, in ms (< 0: behind). */
static int64_t source_ahead_ms(const struct conn *c)
{
    const struct source_state *s = SRC(c);
    if (s->media_samples == 0)
        return 0;
    return (int64_t)(s->media_samples / 48) - (c->hub->loop->now_ms - s->media_start_ms);
}

/* Stops reading <c> while it is too far ahead; source_tick() resumes it. Returns 1 if paced. */
static int source_pace(struct conn *c)
{
    struct source_state *s = SRC(c);
    int64_t ahead = source_ahead_ms(c);
    if (ahead <= SOURCE_AHEAD_MS)
        return 0;
    if (!s->pace_logged) {
        s->pace_logged = 1;
        log_warn("source", "#%llu %s: source is faster than real time (%lld ms ahead): "
                 "pacing it to real time", (unsigned long long)c->id, c->peer, (long long)ahead);
        if (s->feed.space)
            s->feed.space->host->sh->main.sources_paced++;
    }
    s->paced = 1;
    /* no events but the ones epoll always reports (error, hang-up): see source_on_io */
    if (loop_mod(c->hub->loop, &c->io, 0) < 0)
        source_drop(c, strerror(errno));
    return 1;
}

static void source_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    if (c->dead)
        return;
    if (SRC(c)->paced) {
        if (events & (EPOLLERR | EPOLLHUP))
            source_drop(c, "disconnected");
        return;
    }
    char buf[SOURCE_READ_CHUNK];
    /* A few reads per wake-up: enough for any real source, fair to everyone else. */
    for (int i = 0; i < 4; i++) {
        ssize_t r = conn_recv(c, buf, sizeof(buf));
        if (r == 0) {
            source_drop(c, "disconnected");
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            source_drop(c, strerror(errno));
            return;
        }
        if (source_feed(c, buf, (size_t)r) < 0 || source_pace(c))
            return;
    }
}

/* Copies header <name> of <req> into <out> (NUL-terminated, cut to fit). */
static void header_copy(const struct http_request *req, const char *name, char *out, size_t cap)
{
    const struct http_header *h = http_find_header(req, name);
    out[0] = '\0';
    if (!h)
        return;
    size_t n = h->value_len < cap - 1 ? h->value_len : cap - 1;
    memcpy(out, h->value, n);
    out[n] = '\0';
}

static int content_type_ok(const struct http_request *req)
{
    const struct http_header *h = http_find_header(req, "Content-Type");
    if (!h)
        return 1; /* legacy SOURCE clients send none; the demuxer judges the bytes */
    static const char *const ok[] = {"audio/ogg", "application/ogg", "audio/opus", "video/ogg"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        size_t n = strlen(ok[i]);
        if (h->value_len >= n && strncasecmp(h->value, ok[i], n) == 0 &&
            (h->value_len == n || h->value[n] == ';' || h->value[n] == ' '))
            return 1;
    }
    return 0;
}

/* 1 if <got> is <want>, in time independent of where they differ and of their lengths. */
static int secret_equal(const char *got, const char *want)
{
    return token_secret_equal(got, strlen(got), want, strlen(want));
}

void source_accept(struct spaces *host, struct conn *c, const struct http_request *req)
{
    char path[256], user[128], pass[256];
    int plen = http_decode_path(req->path, req->path_len, path, sizeof(path));
    const char *mount = plen > 0 ? path + 1 : "";
    const struct space_config *sc = mount_name_ok(mount) ? config_space(host->cfg, mount) : NULL;
    const char *want = sc && sc->source_password[0] ? sc->source_password
                                                    : host->cfg->source_password;

    /* Every refusal is logged with its reason (rate-limited per reason). A request with no
     * credentials at all is a client's first probe (libshout sends one before the request
     * that carries them), not an attack: info, not a warning. */
    char shown[80];
    log_escape(shown, sizeof(shown), req->path, req->path_len);
    unsigned long long id = (unsigned long long)c->id;
    const char *method = http_method_name(req->method);
    if (http_basic_auth(req, user, sizeof(user), pass, sizeof(pass)) < 0 ||
        !secret_equal(user, "source") || !secret_equal(pass, want)) {
        if (!http_find_header(req, "Authorization"))
            LOG_RATELIMITED(LOG_INFO, "source", "#%llu %s: %s %s: 401, no credentials yet "
                            "(a client's first probe)", id, c->peer, method, shown);
        else
            LOG_RATELIMITED(LOG_WARN, "source", "#%llu %s: %s %s refused: 401, bad credentials",
                            id, c->peer, method, shown);
        conn_error(c, 401, "WWW-Authenticate: Basic realm=\"rostrum\"", "Authentication required");
        return;
    }
    if (!mount_name_ok(mount)) {
        LOG_RATELIMITED(LOG_WARN, "source", "#%llu %s: %s %s refused: 400, bad mount name", id,
                        c->peer, method, shown);
        conn_error(c, 400, NULL, "Bad mount name: use 1-63 of A-Z a-z 0-9 . _ -");
        return;
    }
    if (rendition_mount_kind(mount, NULL)) {
        LOG_RATELIMITED(LOG_WARN, "source", "#%llu %s: %s %s refused: 400, a rendition's name",
                        id, c->peer, method, shown);
        conn_error(c, 400, NULL, "Bad mount name: .aac and .mp3 are the names of a space's "
                                 "AAC and MP3 streams");
        return;
    }
    if (!content_type_ok(req)) {
        const struct http_header *h = http_find_header(req, "Content-Type");
        char type[64];
        log_escape(type, sizeof(type), h->value, h->value_len);
        LOG_RATELIMITED(LOG_WARN, "source", "#%llu %s: %s %s refused: 415, content type '%s' "
                        "(rostrum takes Ogg/Opus)", id, c->peer, method, shown, type);
        conn_error(c, 415, NULL, "Unsupported content type: rostrum takes Ogg/Opus");
        return;
    }
    if (req->chunked) {
        LOG_RATELIMITED(LOG_WARN, "source", "#%llu %s: %s %s refused: 501, chunked body", id,
                        c->peer, method, shown);
        conn_error(c, 501, NULL, "Chunked source bodies are not supported");
        return;
    }
    struct space *sp = space_find(host, mount);
    if (sp && sp->source) {
        LOG_RATELIMITED(LOG_WARN, "source", "#%llu %s: /%s refused: 403, mount in use", id,
                        c->peer, mount);
        conn_error(c, 403, NULL, "Mountpoint in use");
        return;
    }
    int created = !sp;
    if (!sp)
        sp = space_create(host, mount);
    if (!sp) {
        LOG_RATELIMITED(LOG_WARN, "source", "#%llu %s: /%s refused: 503, all %d space slots in "
                        "use", id, c->peer, mount, SHARED_MAX_SPACES);
        conn_error(c, 503, "Retry-After: 10", "Too many spaces on this server");
        return;
    }

    const char *reply = http_header_has_token(req, "Expect", "100-continue")
                            ? "HTTP/1.1 100 Continue\r\n\r\n"
                            : "HTTP/1.0 200 OK\r\n\r\n";
    struct iovec iov = {(void *)reply, strlen(reply)};
    /* a fresh socket takes a few bytes whole; over TLS, all out (no record left pending) */
    if (conn_writev(c, &iov, 1) != (ssize_t)strlen(reply) || conn_write_pending(c)) {
        log_info("source", "#%llu %s: /%s: the reply could not be sent, closing",
                 (unsigned long long)c->id, c->peer, mount);
        if (created)
            space_end(sp, CLOSE_MOUNT_END); /* made for this source alone: give the slot back */
        conn_close(c);
        return;
    }
    struct space_meta meta;
    header_copy(req, "ice-name", meta.name, sizeof(meta.name));
    header_copy(req, "ice-description", meta.description, sizeof(meta.description));
    header_copy(req, "ice-genre", meta.genre, sizeof(meta.genre));
    header_copy(req, "ice-url", meta.url, sizeof(meta.url));
    header_copy(req, "ice-bitrate", meta.bitrate, sizeof(meta.bitrate));

    /* The head buffer may hold the first body bytes: keep them before it goes. */
    char *head = c->head.buf;
    size_t head_len = c->head.len, body_at = req->head_len;
    c->head.buf = NULL;
    conn_take(c, &source_ops);
    struct source_state *s = SRC(c);
    s->demux = ogg_demux_new();
    s->last_byte_ms = host->loop->now_ms;
    c->io.cb = source_on_io;
    space_source_attach(sp, c, &s->feed, &meta);
    char name[160];
    log_info("source", "#%llu %s: source on /%s (%s, \"%s\")", (unsigned long long)c->id,
             c->peer, mount, http_method_name(req->method),
             log_escape(name, sizeof(name), meta.name, strlen(meta.name)));
    int rc = 0;
    if (head_len > body_at)
        rc = source_feed(c, head + body_at, head_len - body_at);
    free(head);
    if (rc == 0)
        loop_mod(host->loop, &c->io, EPOLLIN | EPOLLRDHUP);
}

/* Every tick of the main process: resumes a paced source that is back within its bound, and
 * drops a source that has sent nothing for <timeout_ms> (a stuck encoder holds the mount).
 * Idleness is judged from the socket, not the clock alone: after this process was stopped or
 * starved, bytes may be waiting that the loop has not read yet, and that is not idleness. */
void source_tick(struct space *sp, int64_t timeout_ms)
{
    struct conn *c = sp->source;
    if (!c || c->dead)
        return;
    struct source_state *s = SRC(c);
    int64_t now = sp->host->loop->now_ms;
    if (s->paced) {
        s->last_byte_ms = now; /* we are the ones not reading */
        if (source_ahead_ms(c) > SOURCE_AHEAD_MS / 2)
            return;
        s->paced = 0;
        if (loop_mod(sp->host->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
            source_drop(c, strerror(errno));
        return;
    }
    if (now - s->last_byte_ms <= timeout_ms)
        return;
    if (net_readable_bytes(c->io.fd) > 0) {
        s->last_byte_ms = now; /* it did send: the loop has not read it yet */
        return;
    }
    log_warn("source", "#%llu %s: no data for %lld ms, dropping", (unsigned long long)c->id,
             c->peer, (long long)timeout_ms);
    source_drop(c, "timed out");
}

/* ---- upgrade ---------------------------------------------------------------------------- */

int source_save(struct space *sp, struct buf *out)
{
    struct conn *c = sp->source;
    if (!c)
        return -1;
    struct source_state *s = SRC(c);
    struct source_record r;
    memset(&r, 0, sizeof(r));
    const unsigned char *pending = NULL;
    size_t plen = 0;
    if (c->tls || ogg_demux_save(s->demux, &r.pos, &pending, &plen) < 0) {
        log_info("source", "#%llu %s: cannot move to the new binary (%s): dropped",
                 (unsigned long long)c->id, c->peer, c->tls ? "TLS" : "failed stream");
        source_drop(c, "upgrade");
        return -1;
    }
    r.slot = sp->slot;
    r.fd = c->io.fd;
    r.last_byte_ms = s->last_byte_ms;
    r.media_start_ms = s->media_start_ms;
    r.bytes = s->bytes;
    r.media_samples = s->media_samples;
    r.paced = s->paced;
    r.pace_logged = s->pace_logged;
    r.pending_len = (uint32_t)plen;
    buf_append(out, &r, sizeof(r));
    if (plen > 0)
        buf_append(out, pending, plen);
    return 0;
}

int source_restore(struct spaces *host, struct conn *c, const void *p, size_t len)
{
    struct source_record r;
    if (len < sizeof(r)) {
        conn_close(c);
        return -1;
    }
    memcpy(&r, p, sizeof(r));
    struct space *sp = NULL;
    struct list_node *n;
    for (n = host->list.next; n != &host->list; n = n->next)
        if (list_entry(n, struct space, node)->slot == r.slot)
            sp = list_entry(n, struct space, node);
    struct ogg_demux *d = len - sizeof(r) == r.pending_len && sp && !sp->source
                              ? ogg_demux_restore(&r.pos, (const char *)p + sizeof(r), r.pending_len)
                              : NULL;
    if (!d) {
        conn_close(c);
        return -1;
    }
    conn_take(c, &source_ops);
    struct source_state *s = SRC(c);
    s->demux = d;
    s->last_byte_ms = r.last_byte_ms;
    s->media_start_ms = r.media_start_ms;
    s->bytes = r.bytes;
    s->media_samples = r.media_samples;
    s->paced = r.paced;
    s->pace_logged = r.pace_logged;
    c->io.cb = source_on_io;
    space_source_reattach(sp, c, &s->feed);
    if (loop_mod(host->loop, &c->io, s->paced ? 0 : EPOLLIN | EPOLLRDHUP) < 0) {
        source_drop(c, strerror(errno));
        return -1;
    }
    /* what the old demuxer held but had not parsed: parse it now */
    if (r.pending_len > 0 && source_feed(c, NULL, 0) < 0)
        return -1;
    return 0;
}
