/*
 * conn: accepting, request heads under a deadline, small responses, lingering close and
 * deferred freeing, for every process and port. See conn.h for the state machine.
 */
#include "conn/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "http/request.h"
#include "net/net.h"
#include "tls/tls.h"
#include "util/check.h"
#include "util/log.h"

#define ACCEPT_BATCH 64
#define HEAD_BUF_INITIAL 1024
#define LINGER_MS 2000
#define RESPONSE_SNDBUF 16384 /* the kernel doubles it */

static void head_on_io(struct loop *loop, struct io *io, uint32_t events);
static void linger_start(struct conn *c);
static void head_again(struct conn *c);
static void response_on_io(struct loop *loop, struct io *io, uint32_t events);

/* ---- closing ---------------------------------------------------------------------------- */

void conn_close(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (c->state == CONN_OWNED && c->ops && c->ops->close)
        c->ops->close(c);
    if (c->lim) {
        c->hub->limits.e[c->lim - 1].conns--;
        c->lim = 0;
    }
    loop_del(c->hub->loop, &c->io);
    tls_conn_free(c->tls);
    c->tls = NULL;
    close(c->io.fd);
    c->io.fd = -1;
    list_unlink(&c->node);
    list_insert_tail(&c->hub->zombies, &c->node);
}

static void conn_free(struct conn *c)
{
    switch (c->state) {
    case CONN_HEAD:
        free(c->head.buf);
        break;
    case CONN_RESPONSE:
    case CONN_LINGER:
        buf_free(&c->resp.out);
        break;
    default:
        if (c->ops && c->ops->free)
            c->ops->free(c);
        break;
    }
    free(c);
}

void conn_hub_free_zombies(struct conn_hub *hub)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &hub->zombies)
    {
        list_unlink(n);
        conn_free(list_entry(n, struct conn, node));
    }
}

void conn_take(struct conn *c, const struct conn_ops *ops)
{
    if (c->state == CONN_HEAD) {
        free(c->head.buf);
        list_unlink(&c->node);
    }
    memset(c->priv, 0, sizeof(c->priv));
    c->state = CONN_OWNED;
    c->ops = ops;
}

/* ---- the I/O seam ------------------------------------------------------------------------ */

ssize_t conn_recv(struct conn *c, void *buf, size_t len)
{
    if (c->tls)
        return tls_read(c->tls, buf, len);
    return recv(c->io.fd, buf, len, 0);
}

ssize_t conn_writev(struct conn *c, const struct iovec *iov, int n)
{
    if (c->tls) {
        if (n == 0)
            return tls_flush(c->tls) < 0 ? -1 : 0;
        return tls_writev(c->tls, iov, n);
    }
    return writev(c->io.fd, iov, n);
}

int conn_write_pending(const struct conn *c)
{
    return c->tls && tls_pending(c->tls);
}

int conn_discard_input(struct conn *c)
{
    char sink[512];
    for (int i = 0; i < 8; i++) {
        ssize_t r = conn_recv(c, sink, sizeof(sink));
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return -1;
        if (r < 0)
            break;
    }
    return 0;
}

int conn_read_buffered(const struct conn *c)
{
    return c->tls && tls_read_buffered(c->tls);
}

/* A handshake finished on <c>: says once per process whether the kernel encrypts (kTLS), so
 * the operator knows which listener path runs. */
static void tls_log_mode(struct conn *c)
{
    static int said;
    char d[96];
    if (said)
        return;
    said = 1;
    if (tls_ktls_send(c->tls))
        log_info("tls", "#%llu %s: kTLS send in use (%s): listener writes stay one writev()",
                 (unsigned long long)c->id, c->peer, tls_describe(c->tls, d, sizeof(d)));
    else
        log_info("tls", "#%llu %s: kTLS not available (%s): listener writes go through "
                        "SSL_write (one record at a time)",
                 (unsigned long long)c->id, c->peer, tls_describe(c->tls, d, sizeof(d)));
}

/* ---- responses ---------------------------------------------------------------------------- */

void conn_linger(struct conn *c)
{
    /* the owner gives <c> back, its own state already dropped */
    c->ops = NULL;
    c->resp.out = (struct buf){0};
    linger_start(c);
}

static void linger_start(struct conn *c)
{
    /* Half-close and drain what the client still sends, so that closing does not reset the
     * connection before it has read our response (nginx's lingering close). */
    struct conn_hub *hub = c->hub;
    buf_free(&c->resp.out);
    if (c->tls)
        tls_close_notify(c->tls);
    shutdown(c->io.fd, SHUT_WR);
    c->state = CONN_LINGER;
    c->io.cb = response_on_io;
    c->since_ms = hub->loop->now_ms;
    list_unlink(&c->node); /* off the response-deadline list */
    list_insert_tail(&hub->lingers, &c->node);
    if (loop_mod(hub->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
        conn_close(c);
}

static void response_write(struct conn *c)
{
    while (c->resp.off < c->resp.out.len) {
        struct iovec iov = {c->resp.out.data + c->resp.off, c->resp.out.len - c->resp.off};
        ssize_t w = conn_writev(c, &iov, 1);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                if (loop_mod(c->hub->loop, &c->io, EPOLLOUT) < 0)
                    conn_close(c);
                return;
            }
            conn_close(c);
            return;
        }
        c->resp.off += (size_t)w;
        conn_counters(c)->bytes_sent += (uint64_t)w;
    }
    if (conn_write_pending(c) && conn_writev(c, NULL, 0) < 0) {
        if (errno == EAGAIN && loop_mod(c->hub->loop, &c->io, EPOLLOUT) == 0)
            return;
        conn_close(c);
        return;
    }
    if (c->keep)
        head_again(c);
    else
        linger_start(c);
}

static void response_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    if (c->dead)
        return;
    if (c->state == CONN_RESPONSE) {
        response_write(c);
        return;
    }
    char sink[1024];
    for (int i = 0; i < 16; i++) {
        ssize_t r = recv(io->fd, sink, sizeof(sink), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            conn_close(c);
            return;
        }
        if (r < 0)
            return;
    }
}

static void respond(struct conn *c, struct buf *out, int keep);

void conn_respond(struct conn *c, struct buf *out)
{
    respond(c, out, 0);
}

static void respond(struct conn *c, struct buf *out, int keep)
{
    c->keep = (uint8_t)keep;
    if (c->state == CONN_HEAD) {
        free(c->head.buf);
        list_unlink(&c->node);
    }
    c->ops = NULL;
    c->state = CONN_RESPONSE;
    c->resp.out = *out;
    c->resp.off = 0;
    *out = (struct buf){0};
    if (c->head_method && c->resp.out.data) {
        const char *end = memmem(c->resp.out.data, c->resp.out.len, "\r\n\r\n", 4);
        if (end)
            c->resp.out.len = (size_t)(end + 4 - c->resp.out.data);
    }
    c->io.cb = response_on_io;
    /* Under a deadline (a FIFO: every response has the same one), and with a bounded kernel
     * buffer when large, so a client that stops reading holds neither a descriptor nor a
     * copy of the document for longer than response-timeout-ms. */
    if (c->resp.out.len > RESPONSE_SNDBUF) {
        c->keep = 0; /* the smaller buffer must not go on to a stream on this connection */
        int sndbuf = RESPONSE_SNDBUF;
        setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    c->since_ms = c->hub->loop->now_ms;
    list_unlink(&c->node);
    list_insert_tail(&c->hub->responses, &c->node);
    response_write(c);
}

/* Appends a response head for a document of <len> bytes. */
static void response_head(struct buf *out, int status, const char *type, size_t len,
                          const char *extra, int keep_s)
{
    if (keep_s > 0)
        buf_printf(out,
                   "HTTP/1.1 %d %s\r\nServer: rostrum/0.1\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\nConnection: keep-alive\r\nKeep-Alive: timeout=%d\r\n",
                   status, http_status_reason(status), type, len, keep_s);
    else
        buf_printf(out,
                   "HTTP/1.0 %d %s\r\nServer: rostrum/0.1\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n",
                   status, http_status_reason(status), type, len);
    if (extra && extra[0])
        buf_printf(out, "%s\r\n", extra);
    buf_puts(out, "\r\n");
}

void conn_error(struct conn *c, int status, const char *extra_header, const char *message)
{
    struct buf out = {0};
    char body[256];
    int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, http_status_reason(status),
                     message);
    /* CORS open, so that a web page can read why it was refused */
    char extra[512];
    snprintf(extra, sizeof(extra), "Access-Control-Allow-Origin: *%s%s",
             extra_header ? "\r\n" : "", extra_header ? extra_header : "");
    response_head(&out, status, "text/plain; charset=utf-8", (size_t)n, extra, 0);
    buf_append(&out, body, (size_t)n);
    if (status == 400)
        conn_counters(c)->bad_requests++;
    if (status == 431)
        conn_counters(c)->heads_too_large++;
    conn_respond(c, &out);
}

void conn_respond_doc(struct conn *c, int head_only, const char *type, const void *body,
                      size_t len, const char *extra)
{
    struct buf out = {0};
    /* the client is told a second less than the head deadline, so that it does not send
     * into a connection being closed */
    int keep_s = c->keep && c->state == CONN_HEAD ? c->hub->head_timeout_ms / 1000 - 1 : 0;
    response_head(&out, 200, type, len, extra, keep_s);
    if (!head_only)
        buf_append(&out, body, len);
    respond(c, &out, keep_s > 0);
}

/* ---- request heads --------------------------------------------------------------------------- */

/* 1 if the request just parsed (<len> bytes read in all) may keep its connection: a GET or
 * HEAD without a body or pipelined bytes, on the audience port, asking for it in so many words. */
static int keep_alive_wanted(const struct conn *c, const struct http_request *req, size_t len)
{
    return c->port == PORT_AUDIENCE && (req->method == HTTP_GET || req->method == HTTP_HEAD) &&
           req->content_length <= 0 && !req->chunked && !req->upgrade && len == req->head_len &&
           !conn_read_buffered(c) && http_header_has_token(req, "Connection", "keep-alive");
}

/* A kept-alive response is out: read the next request head, under the head deadline (so an
 * idle connection costs what a slow head does, and goes when one would). */
static void head_again(struct conn *c)
{
    struct conn_hub *hub = c->hub;
    buf_free(&c->resp.out); /* before the union becomes the head's */
    c->state = CONN_HEAD;
    c->head.buf = NULL;
    c->head.len = c->head.cap = c->head.scanned = 0;
    c->keep = 0;
    c->kept = 1;
    c->io.cb = head_on_io;
    c->since_ms = hub->loop->now_ms;
    list_unlink(&c->node);
    list_insert_tail(&hub->heads, &c->node);
    /* level-triggered: a next head already in the socket is reported by the next wait */
    if (loop_mod(hub->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
        conn_close(c);
}

static void head_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)events;
    if (c->dead)
        return;
    if (c->tls_handshake) {
        /* under the head deadline: the handshake is part of reading the head */
        int rc = tls_handshake(c->tls);
        if (rc < 0) {
            LOG_RATELIMITED(LOG_INFO, "tls", "#%llu %s: TLS handshake failed",
                            (unsigned long long)c->id, c->peer);
            conn_close(c);
            return;
        }
        if (rc != TLS_DONE) {
            if (loop_mod(loop, io, (rc == TLS_WANT_WRITE ? EPOLLOUT : EPOLLIN) | EPOLLRDHUP) < 0)
                conn_close(c);
            return;
        }
        c->tls_handshake = 0;
        tls_log_mode(c);
        if (loop_mod(loop, io, EPOLLIN | EPOLLRDHUP) < 0) {
            conn_close(c);
            return;
        }
    }
    if (!c->head.buf) {
        c->head.cap = HEAD_BUF_INITIAL;
        c->head.buf = malloc(c->head.cap);
        BUG_ON(!c->head.buf);
    }
    for (;;) {
        if (c->head.len == c->head.cap) {
            if (c->head.cap >= HTTP_MAX_HEAD) {
                conn_error(c, 431, NULL, "Request head too large");
                return;
            }
            c->head.cap *= 2;
            c->head.buf = realloc(c->head.buf, c->head.cap);
            BUG_ON(!c->head.buf);
        }
        ssize_t r = conn_recv(c, c->head.buf + c->head.len, c->head.cap - c->head.len);
        if (r == 0) {
            conn_close(c);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            conn_close(c);
            return;
        }
        c->head.len += (uint32_t)r;
        struct http_request req;
        int rc = http_parse_request(c->head.buf, c->head.len, c->head.scanned, &req);
        if (rc == HTTP_PARSE_INCOMPLETE) {
            c->head.scanned = c->head.len;
            continue;
        }
        if (rc == HTTP_PARSE_INVALID || rc == HTTP_PARSE_TOO_LARGE) {
            char esc[80];
            LOG_RATELIMITED(LOG_INFO, "http", "#%llu %s: %s request head: %s",
                            (unsigned long long)c->id, c->peer,
                            rc == HTTP_PARSE_INVALID ? "malformed" : "oversized",
                            log_escape(esc, sizeof(esc), c->head.buf,
                                       c->head.len < 60 ? c->head.len : 60));
            if (rc == HTTP_PARSE_INVALID)
                conn_error(c, 400, NULL, "Malformed request");
            else
                conn_error(c, 431, NULL, "Request head too large");
            return;
        }
        conn_counters(c)->requests++;
        if (c->kept)
            conn_counters(c)->keepalive_requests++;
        c->head_method = req.method == HTTP_HEAD;
        c->keep = (uint8_t)keep_alive_wanted(c, &req, c->head.len);
        if (log_level >= LOG_DEBUG) {
            char esc[120];
            log_debug("http", "#%llu %s: %s %s", (unsigned long long)c->id, c->peer,
                      http_method_name(req.method),
                      log_escape(esc, sizeof(esc), req.path, req.path_len));
        }
        c->hub->route[c->port](c->hub->route_arg[c->port], c, &req);
        return;
    }
}

/* ---- accepting ----------------------------------------------------------------------------- */

static struct conn *conn_new(struct conn_hub *hub, int fd, int port,
                             const struct sockaddr_storage *ss, int trusted, struct addr_entry *e,
                             struct tls_ctx *tls);

static void accept_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn_port *lp = (struct conn_port *)io;
    struct conn_hub *hub = lp->hub;
    int port = lp->port;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: use the spare to take the connection off the backlog
                 * and close it, so the listening socket does not stay readable forever. */
                hub->counters[port]->refused_fd_limit++;
                LOG_RATELIMITED(LOG_WARN, "accept", "out of file descriptors: refusing");
                /* shedding order: new joins first (this one), then stalled listeners */
                if (hub->on_fd_limit)
                    hub->on_fd_limit(hub->on_fd_limit_arg, port);
                if (hub->spare_fd >= 0) {
                    close(hub->spare_fd);
                    int x = accept(io->fd, NULL, NULL);
                    if (x >= 0)
                        close(x);
                    hub->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
                return;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                LOG_RATELIMITED(LOG_WARN, "accept", "accept: %s", strerror(errno));
            return;
        }
        struct addr_key key;
        addr_key_from_sockaddr(&ss, &key);
        struct addr_entry *e = NULL;
        int trusted = conn_hub_trusted(hub, &key);
        if (!trusted) {
            e = addr_table_get(&hub->limits, &key, loop->now_ms);
            if (!e)
                hub->counters[port]->limits_table_full++;
            if (e && e->conns >= (uint32_t)hub->max_conns_per_ip) {
                /* cheap and well-formed: no head is read, nothing is allocated. On a TLS
                 * port a plaintext 429 would be garbage to the client, and a handshake to
                 * say it through TLS is the very cost refused here: a TLS alert instead. */
                static const char refuse[] =
                    "HTTP/1.0 429 Too Many Requests\r\nRetry-After: 10\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n";
                if (lp->tls) {
                    tls_refuse(fd);
                } else if (send(fd, refuse, sizeof(refuse) - 1, MSG_NOSIGNAL) < 0) {
                    /* nothing to do: the connection is closed either way */
                }
                close(fd);
                hub->counters[port]->refused_conns_per_ip++;
                char peer[48];
                net_addr_str(&ss, peer, sizeof(peer));
                LOG_RATELIMITED(LOG_INFO, "accept", "%s: over %d connections, refused%s", peer,
                                hub->max_conns_per_ip,
                                lp->tls ? " (TLS port: a TLS access_denied alert)" : "");
                continue;
            }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_new(hub, fd, port, &ss, trusted, e, lp->tls);
    }
}

/* A connection in HEAD for <fd> from <ss>, counted in the address entry <e> (may be NULL).
 * Returns it, or NULL (fd closed) if the loop would not take it. */
static struct conn *conn_new(struct conn_hub *hub, int fd, int port,
                             const struct sockaddr_storage *ss, int trusted, struct addr_entry *e,
                             struct tls_ctx *tls)
{
    struct conn *c = calloc(1, sizeof(*c));
    BUG_ON(!c);
    c->hub = hub;
    c->id = ++hub->next_id;
    c->io.fd = fd;
    c->io.cb = head_on_io;
    c->port = (uint8_t)port;
    c->state = CONN_HEAD;
    c->trusted = (uint8_t)trusted;
    if (tls) {
        c->tls = tls_conn_new(tls, fd);
        c->tls_handshake = 1;
    }
    if (e) {
        e->conns++;
        c->lim = (uint32_t)(e - hub->limits.e) + 1;
    }
    c->since_ms = hub->loop->now_ms;
    net_addr_str(ss, c->peer, sizeof(c->peer));
    list_init(&c->node);
    list_insert_tail(&hub->heads, &c->node);
    if (loop_add(hub->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0) {
        if (e)
            e->conns--; /* it never counted */
        list_unlink(&c->node);
        tls_conn_free(c->tls);
        close(fd);
        free(c);
        return NULL;
    }
    return c;
}

struct conn *conn_adopt(struct conn_hub *hub, int fd, int port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd); /* the peer is gone already */
        return NULL;
    }
    struct addr_key key;
    addr_key_from_sockaddr(&ss, &key);
    int trusted = conn_hub_trusted(hub, &key);
    /* counted like any connection, but never refused: it is already a peer of ours */
    struct addr_entry *e = trusted ? NULL : addr_table_get(&hub->limits, &key, hub->loop->now_ms);
    return conn_new(hub, fd, port, &ss, trusted, e, NULL);
}

/* ---- housekeeping and set-up ------------------------------------------------------------ */

void conn_hub_expire(struct conn_hub *hub)
{
    int64_t now = hub->loop->now_ms;
    struct list_node *n, *tmp;
    /* Every list is in deadline order: stop at the first one still in time. */
    list_for_each_safe(n, tmp, &hub->heads)
    {
        struct conn *c = list_entry(n, struct conn, node);
        if (now - c->since_ms < hub->head_timeout_ms)
            break;
        if (c->kept && c->head.len == 0) { /* kept alive, and nothing asked since */
            conn_counters(c)->keepalive_idle_closes++;
            conn_close(c);
            continue;
        }
        conn_counters(c)->head_timeouts++;
        LOG_RATELIMITED(LOG_INFO, "http", "#%llu %s: no whole request head within %d ms, closing",
                        (unsigned long long)c->id, c->peer, hub->head_timeout_ms);
        conn_close(c);
    }
    list_for_each_safe(n, tmp, &hub->responses)
    {
        struct conn *c = list_entry(n, struct conn, node);
        if (now - c->since_ms < hub->response_timeout_ms)
            break;
        LOG_RATELIMITED(LOG_INFO, "http",
                        "#%llu %s: response not taken within %d ms (%zu of %zu bytes), closing",
                        (unsigned long long)c->id, c->peer, hub->response_timeout_ms,
                        c->resp.off, c->resp.out.len);
        /* reset, not FIN: the unsent rest would keep the kernel's copy alive for minutes */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        conn_close(c);
    }
    list_for_each_safe(n, tmp, &hub->lingers)
    {
        struct conn *c = list_entry(n, struct conn, node);
        if (now - c->since_ms < LINGER_MS)
            break;
        conn_close(c);
    }
}

int conn_hub_trusted(const struct conn_hub *hub, const struct addr_key *k)
{
    for (int i = 0; i < hub->ntrusted; i++)
        if (memcmp(&hub->trusted[i], k, sizeof(*k)) == 0)
            return 1;
    return 0;
}

int conn_hub_set_trusted(struct conn_hub *hub, const char *list)
{
    const char *s = list;
    hub->ntrusted = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (hub->ntrusted == 16 || addr_key_parse(s, len, &hub->trusted[hub->ntrusted]) < 0)
            return -EINVAL;
        hub->ntrusted++;
        s = comma ? comma + 1 : s + len;
    }
    return 0;
}

int conn_listen(struct conn_hub *hub, struct conn_port *lp, int port, const char *host,
                uint16_t tcp_port, int reuseport, char *addr, size_t addr_cap)
{
    char err[256];
    int fd = net_listen(host, tcp_port, 4096, reuseport, err, sizeof(err));
    if (fd < 0) {
        log_error("server", "%s", err);
        return -1;
    }
    lp->io.fd = fd;
    lp->io.cb = accept_on_io;
    lp->hub = hub;
    lp->port = port;
    if (loop_add(hub->loop, &lp->io, EPOLLIN) < 0)
        return -1;
    if (addr) {
        const char *shown = host[0] ? host : "0.0.0.0";
        if (strchr(shown, ':'))
            snprintf(addr, addr_cap, "[%s]:%u", shown, net_local_port(fd));
        else
            snprintf(addr, addr_cap, "%s:%u", shown, net_local_port(fd));
    }
    return 0;
}

int conn_listen_fd(struct conn_hub *hub, struct conn_port *lp, int port, int fd)
{
    lp->io.fd = fd;
    lp->io.cb = accept_on_io;
    lp->hub = hub;
    lp->port = port;
    return loop_add(hub->loop, &lp->io, EPOLLIN);
}

void conn_port_pause(struct conn_port *lp, int paused)
{
    if (lp->io.fd < 0 || !lp->hub)
        return;
    if (paused)
        loop_del(lp->hub->loop, &lp->io);
    else if (loop_add(lp->hub->loop, &lp->io, EPOLLIN) < 0)
        log_error("server", "cannot accept again on a listening socket");
}

void conn_hub_init(struct conn_hub *hub, struct loop *loop)
{
    hub->loop = loop;
    addr_table_init(&hub->limits, 65536);
    list_init(&hub->heads);
    list_init(&hub->lingers);
    list_init(&hub->responses);
    list_init(&hub->zombies);
    hub->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void conn_hub_close_all(struct conn_hub *hub)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &hub->heads)
    {
        conn_close(list_entry(n, struct conn, node));
    }
    list_for_each_safe(n, tmp, &hub->responses)
    {
        conn_close(list_entry(n, struct conn, node));
    }
    list_for_each_safe(n, tmp, &hub->lingers)
    {
        conn_close(list_entry(n, struct conn, node));
    }
    conn_hub_free_zombies(hub);
}

void conn_hub_free(struct conn_hub *hub)
{
    conn_hub_close_all(hub);
    if (hub->spare_fd >= 0)
        close(hub->spare_fd);
    hub->spare_fd = -1;
    addr_table_free(&hub->limits);
}

