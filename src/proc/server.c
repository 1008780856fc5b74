/*
 * server: accepting, reading request heads under a deadline, small responses and the
 * housekeeping tick (used by every process), and the main process: the stage port, the
 * spaces, and the workers. See server.h for the connection state machine.
 */
#include "proc/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/request.h"
#include "net/net.h"
#include "ogg/demux.h"
#include "space/space.h"
#include "util/log.h"

#define ACCEPT_BATCH 64
#define HEAD_BUF_INITIAL 1024
#define LINGER_MS 2000
#define TICK_MS 250
#define SOURCE_IDLE_MS 10000

static void head_on_io(struct loop *loop, struct io *io, uint32_t events);
static void linger_start(struct conn *c);
static void response_on_io(struct loop *loop, struct io *io, uint32_t events);

struct shared_counters *server_counters(struct server *srv, int port)
{
    if (port == PORT_AUDIENCE && srv->aud.me)
        return &srv->aud.me->c;
    return &srv->sh->main.c;
}

/* ---- closing ---------------------------------------------------------------------------- */

void conn_close(struct conn *c)
{
    if (c->dead)
        return;
    if (c->kind == CONN_SOURCE && c->src.space)
        space_source_detach(c->src.space, "closed");
    c->dead = 1;
    if (c->lim) {
        c->srv->limits.e[c->lim - 1].conns--;
        c->lim = 0;
    }
    loop_del(&c->srv->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    list_unlink(&c->node);
    list_insert_tail(&c->srv->zombies, &c->node);
}

static void conn_free(struct conn *c)
{
    switch (c->kind) {
    case CONN_HEAD:
        free(c->head.buf);
        break;
    case CONN_RESPONSE:
    case CONN_LINGER:
        buf_free(&c->resp.out);
        break;
    case CONN_SOURCE:
        ogg_demux_free(c->src.demux);
        break;
    default:
        break;
    }
    free(c);
}

void server_free_zombies(struct server *srv)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->zombies)
    {
        list_unlink(n);
        conn_free(list_entry(n, struct conn, node));
    }
}

void conn_head_done(struct conn *c)
{
    free(c->head.buf);
    c->head.buf = NULL;
    list_unlink(&c->node);
}

/* ---- responses ---------------------------------------------------------------------------- */

void conn_linger(struct conn *c)
{
    c->resp.out = (struct buf){0};
    linger_start(c);
}

static void linger_start(struct conn *c)
{
    /* Half-close and drain what the client still sends, so that closing does not reset the
     * connection before it has read our response (nginx's lingering close). */
    struct server *srv = c->srv;
    buf_free(&c->resp.out);
    shutdown(c->io.fd, SHUT_WR);
    c->kind = CONN_LINGER;
    c->io.cb = response_on_io;
    c->since_ms = srv->loop.now_ms;
    list_insert_tail(&srv->lingers, &c->node);
    if (loop_mod(&srv->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
        conn_close(c);
}

static void response_write(struct conn *c)
{
    while (c->resp.off < c->resp.out.len) {
        ssize_t w = send(c->io.fd, c->resp.out.data + c->resp.off, c->resp.out.len - c->resp.off,
                         MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                if (loop_mod(&c->srv->loop, &c->io, EPOLLOUT) < 0)
                    conn_close(c);
                return;
            }
            conn_close(c);
            return;
        }
        c->resp.off += (size_t)w;
        server_counters(c->srv, c->port)->bytes_sent += (uint64_t)w;
    }
    linger_start(c);
}

static void response_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    if (c->dead)
        return;
    if (c->kind == CONN_RESPONSE) {
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

void conn_respond(struct conn *c, struct buf *out)
{
    if (c->kind == CONN_HEAD)
        conn_head_done(c);
    c->kind = CONN_RESPONSE;
    c->resp.out = *out;
    c->resp.off = 0;
    *out = (struct buf){0};
    if (c->head_method && c->resp.out.data) {
        const char *end = memmem(c->resp.out.data, c->resp.out.len, "\r\n\r\n", 4);
        if (end)
            c->resp.out.len = (size_t)(end + 4 - c->resp.out.data);
    }
    c->io.cb = response_on_io;
    response_write(c);
}

/* Appends a response head for a document of <len> bytes. */
static void response_head(struct buf *out, int status, const char *type, size_t len,
                          const char *extra)
{
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
    response_head(&out, status, "text/plain; charset=utf-8", (size_t)n, extra);
    buf_append(&out, body, (size_t)n);
    if (status == 400)
        server_counters(c->srv, c->port)->bad_requests++;
    if (status == 431)
        server_counters(c->srv, c->port)->heads_too_large++;
    conn_respond(c, &out);
}

void conn_respond_doc(struct conn *c, int head_only, const char *type, const void *body,
                      size_t len, const char *extra)
{
    struct buf out = {0};
    response_head(&out, 200, type, len, extra);
    if (!head_only)
        buf_append(&out, body, len);
    conn_respond(c, &out);
}

/* ---- the stage port (main process) ---------------------------------------------------------- */

static void route_stage(struct conn *c, const struct http_request *req)
{
    switch (req->method) {
    case HTTP_PUT:
    case HTTP_SOURCE:
        source_accept(c, req);
        return;
    case HTTP_OPTIONS:
        /* libshout's capability probe: it picks PUT when Allow lists it. */
        conn_respond_doc(c, 1, "text/plain", "", 0,
                         "Allow: GET, HEAD, OPTIONS, POST, PUT, SOURCE\r\n"
                         "Access-Control-Allow-Origin: *\r\n"
                         "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                         "Access-Control-Allow-Headers: Authorization, Content-Type");
        return;
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_POST:
        api_route(c, req);
        return;
    default:
        conn_error(c, 405, "Allow: GET, HEAD, OPTIONS, PUT, SOURCE", "Method not allowed");
        return;
    }
}

/* ---- request heads --------------------------------------------------------------------------- */

static void head_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    struct server *srv = c->srv;
    (void)loop;
    (void)events;
    if (c->dead)
        return;
    if (!c->head.buf) {
        c->head.cap = HEAD_BUF_INITIAL;
        c->head.buf = malloc(c->head.cap);
        if (!c->head.buf)
            abort();
    }
    for (;;) {
        if (c->head.len == c->head.cap) {
            if (c->head.cap >= HTTP_MAX_HEAD) {
                conn_error(c, 431, NULL, "Request head too large");
                return;
            }
            c->head.cap *= 2;
            c->head.buf = realloc(c->head.buf, c->head.cap);
            if (!c->head.buf)
                abort();
        }
        ssize_t r = recv(io->fd, c->head.buf + c->head.len, c->head.cap - c->head.len, 0);
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
        server_counters(srv, c->port)->requests++;
        c->head_method = req.method == HTTP_HEAD;
        if (log_level >= LOG_DEBUG) {
            char esc[120];
            log_debug("http", "#%llu %s: %s %s", (unsigned long long)c->id, c->peer,
                      http_method_name(req.method),
                      log_escape(esc, sizeof(esc), req.path, req.path_len));
        }
        if (c->port == PORT_AUDIENCE)
            audience_route(c, &req);
        else
            route_stage(c, &req);
        return;
    }
}

/* ---- accepting ----------------------------------------------------------------------------- */

static void accept_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct server *srv = (struct server *)((char *)loop - offsetof(struct server, loop));
    int port = io == &srv->audience ? PORT_AUDIENCE : PORT_STAGE;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: use the spare to take the connection off the backlog
                 * and close it, so the listening socket does not stay readable forever. */
                server_counters(srv, port)->refused_fd_limit++;
                LOG_RATELIMITED(LOG_WARN, "accept", "out of file descriptors: refusing");
                /* shedding order: new joins first (this one), then stalled listeners */
                if (srv->serves_audience)
                    audience_shed_stalled(srv, 16);
                if (srv->spare_fd >= 0) {
                    close(srv->spare_fd);
                    int x = accept(io->fd, NULL, NULL);
                    if (x >= 0)
                        close(x);
                    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
        int trusted = server_trusted(srv, &key);
        if (!trusted) {
            e = addr_table_get(&srv->limits, &key, loop->now_ms);
            if (!e)
                server_counters(srv, port)->limits_table_full++;
            if (e && e->conns >= (uint32_t)srv->cfg.max_conns_per_ip) {
                /* cheap and well-formed: no head is read, nothing is allocated */
                static const char refuse[] =
                    "HTTP/1.0 429 Too Many Requests\r\nRetry-After: 10\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n";
                if (send(fd, refuse, sizeof(refuse) - 1, MSG_NOSIGNAL) < 0) {
                    /* nothing to do: the connection is closed either way */
                }
                close(fd);
                server_counters(srv, port)->refused_conns_per_ip++;
                char peer[48];
                net_addr_str(&ss, peer, sizeof(peer));
                LOG_RATELIMITED(LOG_INFO, "accept", "%s: over %d connections, refused", peer,
                                srv->cfg.max_conns_per_ip);
                continue;
            }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c)
            abort();
        c->srv = srv;
        c->id = ++srv->next_id;
        c->io.fd = fd;
        c->io.cb = head_on_io;
        c->port = (uint8_t)port;
        c->kind = CONN_HEAD;
        c->trusted = (uint8_t)trusted;
        if (e) {
            e->conns++;
            c->lim = (uint32_t)(e - srv->limits.e) + 1;
        }
        c->since_ms = loop->now_ms;
        net_addr_str(&ss, c->peer, sizeof(c->peer));
        list_init(&c->node);
        list_insert_tail(&srv->heads, &c->node);
        if (loop_add(loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0) {
            list_unlink(&c->node);
            close(fd);
            free(c);
        }
    }
}

/* ---- housekeeping -------------------------------------------------------------------------- */

void server_expire(struct server *srv)
{
    int64_t now = srv->loop.now_ms;
    struct list_node *n, *tmp;
    /* Both lists are in deadline order: stop at the first one still in time. */
    list_for_each_safe(n, tmp, &srv->heads)
    {
        struct conn *c = list_entry(n, struct conn, node);
        if (now - c->since_ms < srv->cfg.head_timeout_ms)
            break;
        server_counters(srv, c->port)->head_timeouts++;
        LOG_RATELIMITED(LOG_INFO, "http", "#%llu %s: no whole request head within %d ms, closing",
                        (unsigned long long)c->id, c->peer, srv->cfg.head_timeout_ms);
        conn_close(c);
    }
    list_for_each_safe(n, tmp, &srv->lingers)
    {
        struct conn *c = list_entry(n, struct conn, node);
        if (now - c->since_ms < LINGER_MS)
            break;
        conn_close(c);
    }
}

static void main_tick(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = (struct server *)((char *)t - offsetof(struct server, tick));
    server_expire(srv);
    int second = loop->now_ms - srv->last_second_ms >= 1000;
    if (second)
        srv->last_second_ms = loop->now_ms;
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->spaces)
    {
        struct space *sp = list_entry(n, struct space, node);
        source_check_idle(sp, SOURCE_IDLE_MS);
    }
    if (srv->serves_audience)
        audience_tick(srv, second);
    if (second) {
        /* the figures every worker needs: all listeners, and each space's peak */
        uint32_t total = 0;
        for (uint32_t w = 0; w < srv->sh->nworkers; w++)
            total += srv->sh->workers[w].listener_connections;
        srv->sh->total_connections = total;
        list_for_each_safe(n, tmp, &srv->spaces)
        {
            space_update_peak(list_entry(n, struct space, node));
        }
    }
    loop_timer_start(loop, t, TICK_MS, main_tick);
}

static void main_before_sleep(struct loop *loop, void *arg)
{
    struct server *srv = arg;
    (void)loop;
    if (srv->published) {
        srv->published = 0;
        if (srv->serves_audience)
            audience_on_wake(srv);
        else
            workers_wake(srv);
    }
    server_free_zombies(srv);
}

static void main_signal_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct server *srv = (struct server *)((char *)loop - offsetof(struct server, loop));
    struct signalfd_siginfo si;
    (void)events;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
            workers_on_child_exit(srv);
            continue;
        }
        log_info("server", "signal %u: shutting down", si.ssi_signo);
        loop_stop(loop);
    }
}

/* ---- set-up -------------------------------------------------------------------------------- */

int server_trusted(const struct server *srv, const struct addr_key *k)
{
    for (int i = 0; i < srv->ntrusted; i++)
        if (memcmp(&srv->trusted[i], k, sizeof(*k)) == 0)
            return 1;
    return 0;
}

/* Parses the trusted-proxies list. Returns 0, or -1 with a message on stderr. */
static int parse_trusted(struct server *srv)
{
    const char *s = srv->cfg.trusted_proxies;
    srv->ntrusted = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (srv->ntrusted == 16 || addr_key_parse(s, len, &srv->trusted[srv->ntrusted]) < 0) {
            fprintf(stderr, "rostrum: trusted-proxies: bad or too many addresses (max 16): %s\n",
                    srv->cfg.trusted_proxies);
            return -1;
        }
        srv->ntrusted++;
        s = comma ? comma + 1 : s + len;
    }
    return 0;
}

void server_common_init(struct server *srv)
{
    addr_table_init(&srv->limits, 65536);
    list_init(&srv->spaces);
    list_init(&srv->heads);
    list_init(&srv->lingers);
    list_init(&srv->zombies);
    srv->audience.fd = srv->stage.fd = srv->signals.fd = srv->wake.fd = -1;
    srv->audience_reserve_fd = -1;
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int server_listen(struct server *srv, struct io *io, const char *host, uint16_t port,
                  int reuseport, char *addr, size_t addr_cap)
{
    char err[256];
    int fd = net_listen(host, port, 4096, reuseport, err, sizeof(err));
    if (fd < 0) {
        log_error("server", "%s", err);
        return -1;
    }
    io->fd = fd;
    io->cb = accept_on_io;
    if (loop_add(&srv->loop, io, EPOLLIN) < 0)
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

int server_init(struct server *srv)
{
    server_common_init(srv);
    if (parse_trusted(srv) < 0)
        return -1;
    srv->start_wall = time(NULL);
    if (loop_init(&srv->loop) < 0) {
        fprintf(stderr, "rostrum: epoll: %s\n", strerror(errno));
        return -1;
    }
    srv->loop.before_sleep = main_before_sleep;
    srv->loop.before_sleep_arg = srv;
    srv->sh = shared_create(srv->cfg.workers > 0 ? (uint32_t)srv->cfg.workers : 1);
    srv->sh->main.c = (struct shared_counters){0};
    if (getrandom(srv->secret, sizeof(srv->secret), 0) != (ssize_t)sizeof(srv->secret)) {
        fprintf(stderr, "rostrum: getrandom: %s\n", strerror(errno));
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    srv->signals.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    srv->signals.cb = main_signal_on_io;
    if (srv->signals.fd < 0 || loop_add(&srv->loop, &srv->signals, EPOLLIN) < 0) {
        fprintf(stderr, "rostrum: signalfd: %s\n", strerror(errno));
        return -1;
    }
    if (server_listen(srv, &srv->stage, srv->cfg.stage_host, srv->cfg.stage_port, 0,
                      srv->stage_addr, sizeof(srv->stage_addr)) < 0)
        return -1;
    if (srv->cfg.workers == 0) {
        /* one process: the main loop serves the audience port too */
        srv->serves_audience = 1;
        srv->worker_index = 0;
        audience_init(srv);
        if (server_listen(srv, &srv->audience, srv->cfg.audience_host, srv->cfg.audience_port,
                          0, srv->audience_addr, sizeof(srv->audience_addr)) < 0)
            return -1;
    } else if (workers_start(srv) < 0) {
        return -1;
    }
    loop_timer_start(&srv->loop, &srv->tick, TICK_MS, main_tick);
    return 0;
}

void server_run(struct server *srv)
{
    loop_run(&srv->loop);
}

void server_close_conns(struct server *srv)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->heads)
    {
        conn_close(list_entry(n, struct conn, node));
    }
    list_for_each_safe(n, tmp, &srv->lingers)
    {
        conn_close(list_entry(n, struct conn, node));
    }
    server_free_zombies(srv);
}

void server_free(struct server *srv)
{
    struct list_node *n, *tmp;
    workers_stop(srv);
    list_for_each_safe(n, tmp, &srv->spaces)
    {
        space_end(list_entry(n, struct space, node), CLOSE_MOUNT_END);
    }
    if (srv->serves_audience)
        audience_close_all(srv);
    server_close_conns(srv);
    loop_timer_stop(&srv->loop, &srv->tick);
    int fds[] = {srv->audience.fd, srv->stage.fd, srv->signals.fd, srv->spare_fd,
                 srv->audience_reserve_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    loop_close(&srv->loop);
    shared_destroy(srv->sh);
    addr_table_free(&srv->limits);
}
