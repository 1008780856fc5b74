/*
 * replay: the recordings (issue 12, item 2), served by the audience processes.
 *
 *   GET /recordings.json          the recordings of record-dir (record_list_json)
 *   GET /recordings/ID.json       a recording's index: where each second starts (record_index)
 *   GET /recordings/ID.ogg        the file; Range: bytes=... gives 206 + Content-Range, an
 *                                 unsatisfiable range 416, a malformed one the whole file
 *   GET /recordings/ID.ogg?t=S    the header pages, then the file from second S: an Ogg
 *                                 stream a player starts at S (no Range with it)
 *
 * A read is a connection owned here, like a listener: it counts against the process's
 * listener room (max_here), it is sent with sendfile(2) (TLS: pread + the TLS writer) as
 * the socket takes it, and one that takes nothing for response-timeout-ms is closed. A
 * recording that grows is served as long as it was when the request came.
 */
#include "audience/audience.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "http/request.h"
#include "record/record.h"
#include "util/check.h"
#include "util/log.h"

#define REPLAY_LIST_MAX 1000        /* recordings listed by /recordings.json */
#define REPLAY_INDEX_MAX (24 * 3600) /* seconds an index or ?t= reaches */

struct replay_state {
    int fd;                 /* the recording */
    uint64_t off[2], end[2]; /* up to two byte ranges to send, in order (?t=: headers, rest) */
    uint8_t seg;            /* the range being sent */
    uint8_t blocked;        /* EPOLLOUT armed */
    char *head;             /* the response head (owned) */
    uint32_t head_len, head_off;
    int64_t progress_ms;    /* when the socket last took bytes */
};
CONN_PRIV_FITS(struct replay_state);
#define RST(c) CONN_PRIV(c, struct replay_state)

static void replay_on_close(struct conn *c)
{
    struct replay_state *r = RST(c);
    struct audience *a = audience_of(c);
    if (c->ops == NULL)
        return; /* dropped already, before a linger */
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    free(r->head);
    r->head = NULL;
    list_unlink(&c->node);
    a->nreplays--;
    a->me->c.replay_closed++;
}

static const struct conn_ops replay_ops = {"replay", replay_on_close, NULL};

/* Sends what the socket takes. Returns 0 while there is more, 1 when all is sent. */
static int replay_send(struct conn *c)
{
    struct replay_state *r = RST(c);
    struct audience *a = audience_of(c);
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n;
        if (r->head_off < r->head_len) {
            struct iovec iov = {r->head + r->head_off, r->head_len - r->head_off};
            n = conn_writev(c, &iov, 1);
            if (n > 0)
                r->head_off += (uint32_t)n;
        } else if (r->seg < 2 && r->off[r->seg] < r->end[r->seg]) {
            size_t want = (size_t)(r->end[r->seg] - r->off[r->seg]);
            if (want > 256 * 1024)
                want = 256 * 1024;
            if (c->tls) {
                static char buf[16384];
                if (want > sizeof(buf))
                    want = sizeof(buf);
                ssize_t got = pread(r->fd, buf, want, (off_t)r->off[r->seg]);
                if (got <= 0)
                    return -1;
                struct iovec iov = {buf, (size_t)got};
                n = conn_writev(c, &iov, 1);
            } else {
                off_t o = (off_t)r->off[r->seg];
                n = sendfile(c->io.fd, r->fd, &o, want);
                if (n == 0)
                    return -1; /* the file got shorter under us (deleted and cut?) */
            }
            if (n > 0) {
                r->off[r->seg] += (uint64_t)n;
                a->me->c.replay_bytes += (uint64_t)n;
                a->me->c.bytes_sent += (uint64_t)n;
            }
        } else if (r->seg < 1) {
            r->seg++;
            continue;
        } else {
            return conn_write_pending(c) ? 0 : 1;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -1;
        }
        r->progress_ms = a->loop->now_ms;
    }
    return 0;
}

static void replay_flush(struct conn *c)
{
    struct replay_state *r = RST(c);
    int rc = replay_send(c);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    if (rc == 1) {
        replay_on_close(c); /* conn_linger wants the owner's state dropped */
        conn_linger(c);
        return;
    }
    /* more to send: wait for room (and keep an eye on the peer leaving) */
    if (!r->blocked) {
        r->blocked = 1;
        loop_mod(audience_of(c)->loop, &c->io, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
    }
}

static void replay_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (conn_discard_input(c) < 0) {
            conn_close(c);
            return;
        }
    }
    if (events & EPOLLOUT)
        replay_flush(c);
}

void replay_tick(struct audience *a)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->replays)
    {
        struct conn *c = list_entry(n, struct conn, node);
        if (a->loop->now_ms - RST(c)->progress_ms > a->cfg->response_timeout_ms) {
            log_debug("replay", "#%llu %s: took nothing for %d ms: closed",
                      (unsigned long long)c->id, c->peer, a->cfg->response_timeout_ms);
            conn_close(c);
        }
    }
}

void replay_close_all(struct audience *a)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->replays)
        conn_close(list_entry(n, struct conn, node));
}

static const char cors[] = "Access-Control-Allow-Origin: *\r\n"
                           "Access-Control-Expose-Headers: Content-Range, Content-Length, "
                           "Accept-Ranges";

/* Opens recording <id> (<len> bytes) of record-dir: the fd, or -1 with a 404 sent. */
static int replay_open(struct audience *a, struct conn *c, const char *id, size_t len,
                       struct stat *st)
{
    char path[600];
    if (!record_id_valid(id, len)) {
        conn_error(c, 404, NULL, "No such recording");
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%.*s.ogg", a->cfg->record_dir, (int)len, id);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd >= 0 && (fstat(fd, st) != 0 || !S_ISREG(st->st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        conn_error(c, 404, NULL, "No such recording");
    return fd;
}

static void replay_index(struct audience *a, struct conn *c, const char *id, size_t len,
                         int head_only)
{
    struct stat st;
    int fd = replay_open(a, c, id, len, &st);
    if (fd < 0)
        return;
    uint64_t *off = malloc(sizeof(uint64_t) * REPLAY_INDEX_MAX);
    BUG_ON(!off);
    struct record_info in;
    long n = record_index(fd, (uint64_t)st.st_size, off, REPLAY_INDEX_MAX, &in);
    close(fd);
    struct buf b = {0};
    buf_printf(&b, "{\"id\":\"%.*s\",\"url\":\"/recordings/%.*s.ogg\",\"bytes\":%llu,"
               "\"header_bytes\":%llu,\"duration_s\":%.3f,\"seconds\":[",
               (int)len, id, (int)len, id, (unsigned long long)in.scanned,
               (unsigned long long)in.hdr_end,
               in.last_granule > in.pre_skip ? (double)(in.last_granule - in.pre_skip) / 48000
                                             : 0.0);
    for (long i = 0; i < n; i++)
        buf_printf(&b, "%s%llu", i ? "," : "", (unsigned long long)off[i]);
    buf_puts(&b, "]}");
    free(off);
    conn_respond_doc(c, head_only, "application/json; charset=utf-8", b.data, b.len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: no-cache");
    buf_free(&b);
}

static void replay_file(struct audience *a, struct conn *c, const struct http_request *req,
                        const char *id, size_t len, int head_only)
{
    struct shared_counters *ctr = &a->me->c;
    uint64_t t = 0;
    int has_t = http_query_u64(req, "t", REPLAY_INDEX_MAX - 1, &t);
    if (has_t < 0) {
        conn_error(c, 400, NULL, "Bad t= (whole seconds from the start)");
        return;
    }
    /* bounded like listeners: this process's room, and max-listeners over all of them */
    if (!head_only && (a->nlisteners + a->nreplays >= a->max_here ||
                       __atomic_load_n(&a->sh->total_connections, __ATOMIC_ACQUIRE) +
                               a->nreplays >= (uint32_t)a->cfg->max_listeners)) {
        ctr->refused_replay++;
        conn_error(c, 503, "Retry-After: 5", "The server is full: come back shortly");
        return;
    }
    struct stat st;
    int fd = replay_open(a, c, id, len, &st);
    if (fd < 0)
        return;
    uint64_t size = (uint64_t)st.st_size;
    struct replay_state r = {.fd = fd};
    int status = 200;
    char extra[160] = "";
    const struct http_header *rh = http_find_header(req, "Range");
    if (has_t) {
        uint64_t *off = malloc(sizeof(uint64_t) * (t + 1));
        BUG_ON(!off);
        struct record_info in;
        long n = record_index(fd, size, off, (long)t + 1, &in);
        if (n <= (long)t) {
            free(off);
            close(fd);
            conn_error(c, 416, NULL, "t= is past the end of the recording");
            return;
        }
        r.off[0] = 0;
        r.end[0] = in.hdr_end;
        r.off[1] = off[t];
        r.end[1] = size;
        free(off);
    } else if (rh) {
        uint64_t first, last;
        long rc = record_range_parse(rh->value, rh->value_len, size, &first, &last);
        if (rc == -3) {
            ctr->replay_bad_range++;
            char cr[64];
            snprintf(cr, sizeof(cr), "Content-Range: bytes */%llu", (unsigned long long)size);
            close(fd);
            conn_error(c, 416, cr, "Range not satisfiable");
            return;
        }
        if (rc < 0) {
            ctr->replay_bad_range++; /* RFC 9110 14.2: an invalid Range is ignored */
            r.end[0] = size;
        } else {
            status = 206;
            r.off[0] = first;
            r.end[0] = last + 1;
            snprintf(extra, sizeof(extra), "Content-Range: bytes %llu-%llu/%llu\r\n",
                     (unsigned long long)first, (unsigned long long)last,
                     (unsigned long long)size);
        }
    } else {
        r.end[0] = size;
    }
    uint64_t body = (r.end[0] - r.off[0]) + (r.end[1] - r.off[1]);
    struct buf h = {0};
    buf_printf(&h, "HTTP/1.1 %d %s\r\nContent-Type: audio/ogg\r\nContent-Length: %llu\r\n"
               "Accept-Ranges: bytes\r\n%sCache-Control: no-cache\r\n%s\r\nConnection: close\r\n\r\n",
               status, status == 206 ? "Partial Content" : "OK", (unsigned long long)body,
               extra, cors);
    if (head_only) {
        close(fd);
        conn_respond(c, &h);
        return;
    }
    conn_take(c, &replay_ops);
    struct replay_state *rs = RST(c);
    *rs = r;
    rs->head = h.data; /* taken */
    rs->head_len = (uint32_t)h.len;
    rs->progress_ms = a->loop->now_ms;
    c->io.cb = replay_on_io;
    list_insert_tail(&a->replays, &c->node);
    a->nreplays++;
    ctr->replay_opened++;
    log_debug("replay", "#%llu %s: %.*s.ogg, %d, %llu bytes", (unsigned long long)c->id,
              c->peer, (int)len, id, status, (unsigned long long)body);
    if (loop_mod(a->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0) {
        conn_close(c);
        return;
    }
    replay_flush(c);
}

int replay_route(struct audience *a, struct conn *c, const struct http_request *req,
                 const char *path, int head_only)
{
    if (strcmp(path, "/recordings.json") == 0) {
        struct buf b = {0};
        buf_puts(&b, "{\"recordings\":");
        record_list_json(a->cfg->record_dir, &b, REPLAY_LIST_MAX);
        buf_puts(&b, "}");
        conn_respond_doc(c, head_only, "application/json; charset=utf-8", b.data, b.len,
                         "Access-Control-Allow-Origin: *\r\nCache-Control: no-cache");
        buf_free(&b);
        return 1;
    }
    if (strncmp(path, "/recordings/", 12) != 0)
        return 0;
    const char *id = path + 12;
    size_t len = strlen(id);
    if (vod_route(a, c, id, head_only))
        return 1;
    if (len > 4 && strcmp(id + len - 4, ".ogg") == 0)
        replay_file(a, c, req, id, len - 4, head_only);
    else if (len > 5 && strcmp(id + len - 5, ".json") == 0)
        replay_index(a, c, id, len - 5, head_only);
    else
        conn_error(c, 404, NULL, "No such recording");
    return 1;
}
