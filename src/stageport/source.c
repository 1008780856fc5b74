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
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audience/web.h" /* the generated asset table: names a mount cannot take */
#include "http/request.h"
#include "ogg/demux.h"
#include "proc/server.h"
#include "space/space.h"
#include "stage/stage.h"
#include "util/log.h"

#define SOURCE_READ_CHUNK 16384

static int source_cb_head(void *arg, const struct opus_head_info *head)
{
    struct conn *c = arg;
    if (!c->src.space)
        return 1;
    if (c->src.space->stage)
        return 0; /* a mixer input: its own decoder follows the stream */
    return space_on_head(c->src.space, head);
}

static int source_cb_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct conn *c = arg;
    if (!c->src.space)
        return 1;
    if (c->src.space->stage)
        stage_source_packet(c->src.space->stage, c->src.input, pkt, len);
    else
        space_on_packet(c->src.space, pkt, len, samples);
    return 0;
}

static const struct ogg_demux_cb source_demux_cb = {source_cb_head, source_cb_packet};

/* Ends the source connection; its space (if any) enters grace. */
static void source_drop(struct conn *c, const char *why)
{
    if (c->src.space)
        space_source_detach(c->src.space, why);
    ogg_demux_free(c->src.demux);
    c->src.demux = NULL;
    conn_close(c);
}

/* Feeds body bytes. Returns 0, or -1 if the source was dropped. */
static int source_feed(struct conn *c, const void *data, size_t len)
{
    c->src.bytes += len;
    c->src.last_byte_ms = c->srv->loop.now_ms;
    int rc = ogg_demux_feed(c->src.demux, data, len, &source_demux_cb, c);
    if (rc < 0) {
        char why[200];
        snprintf(why, sizeof(why), "bad stream: %s", ogg_demux_error(c->src.demux));
        log_warn("source", "#%llu %s: dropping source: %s", (unsigned long long)c->id, c->peer,
                 ogg_demux_error(c->src.demux));
        source_drop(c, why);
        return -1;
    }
    if (rc > 0 || c->dead) {
        source_drop(c, "detached");
        return -1;
    }
    return 0;
}

void source_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    (void)events;
    if (c->dead)
        return;
    char buf[SOURCE_READ_CHUNK];
    /* A few reads per wake-up: enough for any real source, fair to everyone else. */
    for (int i = 0; i < 4; i++) {
        ssize_t r = recv(io->fd, buf, sizeof(buf), 0);
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
        if (source_feed(c, buf, (size_t)r) < 0)
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

/* Mount names are what config accepts for a space: [A-Za-z0-9._-]{1,63}. */

int mount_name_ok(const char *m)
{
    /* Names the ports serve themselves cannot be mounts: every file of web/ (from the asset
     * table, so a new page is reserved when it is added), the audience port's documents
     * (audience.c) and the first component of every route (audience.c, stage/api.c). */
    static const char *const reserved[] = {"metrics", "status-json.xsl", "state", "join",
                                           "api", "ws"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcmp(m, reserved[i]) == 0)
            return 0;
    for (const struct web_file *f = web_files; f->path; f++)
        if (strcmp(m, f->path + 1) == 0)
            return 0;
    size_t n = strlen(m);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = m[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return m[0] != '.';
}

void source_accept(struct conn *c, const struct http_request *req)
{
    struct server *srv = c->srv;
    char path[256], user[128], pass[256];
    int plen = http_decode_path(req->path, req->path_len, path, sizeof(path));
    const char *mount = plen > 0 ? path + 1 : "";
    const struct space_config *sc = mount_name_ok(mount) ? config_space(&srv->cfg, mount) : NULL;
    const char *want = sc && sc->source_password[0] ? sc->source_password
                                                    : srv->cfg.source_password;

    if (http_basic_auth(req, user, sizeof(user), pass, sizeof(pass)) < 0 ||
        strcmp(user, "source") != 0 || strcmp(pass, want) != 0) {
        log_warn("source", "#%llu %s: %s /%s refused: bad credentials", (unsigned long long)c->id,
                 c->peer, http_method_name(req->method), mount_name_ok(mount) ? mount : "?");
        conn_error(c, 401, "WWW-Authenticate: Basic realm=\"rostrum\"", "Authentication required");
        return;
    }
    if (!mount_name_ok(mount)) {
        conn_error(c, 400, NULL, "Bad mount name: use 1-63 of A-Z a-z 0-9 . _ -");
        return;
    }
    if (!content_type_ok(req)) {
        conn_error(c, 415, NULL, "Unsupported content type: rostrum takes Ogg/Opus");
        return;
    }
    if (req->chunked) {
        conn_error(c, 501, NULL, "Chunked source bodies are not supported");
        return;
    }
    struct space *sp = space_find(srv, mount);
    if (sp && sp->source) {
        log_warn("source", "#%llu %s: /%s refused: mount in use", (unsigned long long)c->id,
                 c->peer, mount);
        conn_error(c, 403, NULL, "Mountpoint in use");
        return;
    }
    if (!sp)
        sp = space_create(srv, mount);
    if (!sp) {
        log_warn("source", "#%llu %s: /%s refused: all %d space slots in use",
                 (unsigned long long)c->id, c->peer, mount, SHARED_MAX_SPACES);
        conn_error(c, 503, "Retry-After: 10", "Too many spaces on this server");
        return;
    }

    const char *reply = http_header_has_token(req, "Expect", "100-continue")
                            ? "HTTP/1.1 100 Continue\r\n\r\n"
                            : "HTTP/1.0 200 OK\r\n\r\n";
    if (send(c->io.fd, reply, strlen(reply), MSG_NOSIGNAL) != (ssize_t)strlen(reply)) {
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
    list_unlink(&c->node); /* off the head-deadline list */
    c->kind = CONN_SOURCE;
    c->src = (struct source_state){.space = sp, .demux = ogg_demux_new(), .input = -1,
                                   .last_byte_ms = srv->loop.now_ms};
    if (sp->stage)
        c->src.input = stage_source_add(sp->stage);
    c->io.cb = source_on_io;
    space_source_attach(sp, c, &meta);
    char name[160];
    log_info("source", "#%llu %s: source on /%s (%s, \"%s\")", (unsigned long long)c->id,
             c->peer, mount, http_method_name(req->method),
             log_escape(name, sizeof(name), meta.name, strlen(meta.name)));
    int rc = 0;
    if (head_len > body_at)
        rc = source_feed(c, head + body_at, head_len - body_at);
    free(head);
    if (rc == 0)
        loop_mod(&srv->loop, &c->io, EPOLLIN | EPOLLRDHUP);
}

/* Drops sources that have sent nothing for <timeout_ms> (a stuck encoder holds the mount). */

void source_check_idle(struct space *sp, int64_t timeout_ms)
{
    struct conn *c = sp->source;
    if (c && sp->srv->loop.now_ms - c->src.last_byte_ms > timeout_ms) {
        log_warn("source", "#%llu %s: no data for %lld ms, dropping", (unsigned long long)c->id,
                 c->peer, (long long)timeout_ms);
        source_drop(c, "timed out");
    }
}
