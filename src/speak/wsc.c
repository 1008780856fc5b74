/*
 * speak/wsc: WebSocket client. See wsc.h for the states and the callback rules.
 *
 * Errors found inside wslay's callbacks (EOF, a read error) only set fields; they are acted on
 * once wslay_event_recv/send has returned, so nothing is torn down under wslay's feet.
 */
#include "speak/wsc.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/check.h"
#include "ws/ws.h"

/* ---- helpers: key, accept, encoding, addresses -------------------------------------------- */

static void random_bytes(void *p, size_t len)
{
    unsigned char *b = p;
    while (len > 0) {
        ssize_t n = getrandom(b, len, 0);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            check_fail(__FILE__, __LINE__, "getrandom: no entropy source at all");
        }
        b += n;
        len -= (size_t)n;
    }
}

void wsc_key_new(char key[WSC_KEY_LEN + 1])
{
    unsigned char raw[16];
    random_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw)); /* 24 chars + NUL */
}

void wsc_accept_for(const char *key, char out[WSC_ACCEPT_LEN + 1])
{
    ws_accept_key(key, strlen(key), out); /* the server's computation, in one place */
}

void wsc_percent_encode(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            buf_append(b, s, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            buf_append(b, e, 3);
        }
    }
}

int wsc_split_hostport(const char *hp, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *h = hp, *colon;
    size_t hlen;
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (!close || close[1] != ':')
            return -1;
        h = hp + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon || strchr(hp, ':') != colon) /* a bare IPv6 address needs brackets */
            return -1;
        hlen = (size_t)(colon - hp);
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (hlen == 0 || hlen >= hcap || plen == 0 || plen >= pcap || plen > 5)
        return -1;
    for (size_t i = 0; i < plen; i++)
        if (!isdigit((unsigned char)p[i]))
            return -1;
    if (atoi(p) < 1 || atoi(p) > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, p, plen + 1);
    return 0;
}

/* ---- the answer to the upgrade request ---------------------------------------------------- */

/* 1 if the comma-separated list <v> holds <token> (case-insensitive, spaces ignored). */
static int has_token(const char *v, const char *token)
{
    size_t tlen = strlen(token);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *end = v;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > v && (last[-1] == ' ' || last[-1] == '\t'))
            last--;
        if ((size_t)(last - v) == tlen && strncasecmp(v, token, tlen) == 0)
            return 1;
        v = end;
    }
    return 0;
}

static void resp_header_done(struct wsc_resp *r)
{
    r->field[r->field_len] = '\0';
    r->value[r->value_len] = '\0';
    while (r->value_len > 0 &&
           (r->value[r->value_len - 1] == ' ' || r->value[r->value_len - 1] == '\t'))
        r->value[--r->value_len] = '\0';
    if (strcasecmp(r->field, "Upgrade") == 0 && has_token(r->value, "websocket"))
        r->has_upgrade = 1;
    else if (strcasecmp(r->field, "Connection") == 0 && has_token(r->value, "upgrade"))
        r->has_connection = 1;
    else if (strcasecmp(r->field, "Sec-WebSocket-Accept") == 0)
        snprintf(r->accept, sizeof(r->accept), "%s", r->value);
    r->field_len = r->value_len = 0;
    r->in_value = 0;
}

/* Appends to a bounded field; what does not fit is dropped (such a header is not one of ours,
 * or its value is wrong anyway). */
static void append_cut(char *dst, size_t cap, size_t *len, const char *at, size_t n)
{
    size_t room = cap - 1 - *len;
    if (n > room)
        n = room;
    memcpy(dst + *len, at, n);
    *len += n;
}

static int cb_header_field(http_parser *p, const char *at, size_t len)
{
    struct wsc_resp *r = p->data;
    if (r->in_value)
        resp_header_done(r);
    append_cut(r->field, sizeof(r->field), &r->field_len, at, len);
    return 0;
}

static int cb_header_value(http_parser *p, const char *at, size_t len)
{
    struct wsc_resp *r = p->data;
    r->in_value = 1;
    append_cut(r->value, sizeof(r->value), &r->value_len, at, len);
    return 0;
}

static int cb_headers_complete(http_parser *p)
{
    struct wsc_resp *r = p->data;
    if (r->in_value || r->field_len)
        resp_header_done(r);
    r->status = (int)p->status_code;
    r->head_done = 1;
    return 0;
}

static int cb_body(http_parser *p, const char *at, size_t len)
{
    struct wsc_resp *r = p->data;
    size_t room = WSC_BODY_MAX - r->body_len;
    if (len > room)
        len = room;
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int cb_message_complete(http_parser *p)
{
    struct wsc_resp *r = p->data;
    r->complete = 1;
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
};

void wsc_resp_init(struct wsc_resp *r)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
}

long wsc_resp_feed(struct wsc_resp *r, const char *data, size_t len)
{
    if (r->failed)
        return -1;
    if (r->complete || len == 0)
        return 0;
    size_t n = http_parser_execute(&r->parser, &resp_settings, data, len);
    if (!r->head_done)
        r->head_bytes += n;
    r->total_bytes += n;
    if (r->parser.upgrade) {
        r->complete = 1; /* the rest is WebSocket data */
        return (long)n;
    }
    if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK ||
        (!r->head_done && r->head_bytes > WSC_HEAD_MAX)) {
        r->failed = 1;
        return -1;
    }
    return (long)n;
}

int wsc_resp_eof(struct wsc_resp *r)
{
    if (r->complete)
        return 0;
    if (r->failed || !r->head_done)
        return -1;
    http_parser_execute(&r->parser, &resp_settings, NULL, 0);
    return r->complete ? 0 : -1;
}

int wsc_resp_upgrade_ok(const struct wsc_resp *r, const char *key, const char **why)
{
    char want[WSC_ACCEPT_LEN + 1];
    if (!r->head_done || r->status != 101) {
        *why = "not a 101 Switching Protocols answer";
        return 0;
    }
    if (!r->has_upgrade || !r->has_connection) {
        *why = "101 without Upgrade: websocket and Connection: upgrade";
        return 0;
    }
    wsc_accept_for(key, want);
    if (strcmp(r->accept, want) != 0) {
        *why = "wrong Sec-WebSocket-Accept";
        return 0;
    }
    return 1;
}

/* ---- the connection ------------------------------------------------------------------------ */

static void wsc_on_io(struct loop *loop, struct io *io, uint32_t events);

/* Ends the connection: unregisters the socket (closed by wsc_free) and, unless a final callback
 * was already made, reports <fmt> through on_fail. */
__attribute__((format(printf, 2, 3))) static void wsc_fail(struct wsc *w, const char *fmt, ...)
{
    int report = !w->terminal;
    if (report) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->error, sizeof(w->error), fmt, ap);
        va_end(ap);
    }
    w->terminal = 1;
    w->state = WSC_CLOSED;
    loop_timer_stop(w->loop, &w->deadline);
    if (w->io.fd >= 0 && w->io.events)
        loop_del(w->loop, &w->io);
    if (report)
        w->h->on_fail(w->arg, w->error);
}

static void wsc_on_deadline(struct loop *loop, struct loop_timer *t)
{
    struct wsc *w = (struct wsc *)((char *)t - offsetof(struct wsc, deadline));
    (void)loop;
    wsc_fail(w, "no WebSocket upgrade within %d ms", WSC_HANDSHAKE_MS);
}

/* The byte transport: the socket, or TLS on it. Both return bytes moved, 0 on EOF (reads),
 * or -1 with errno (EAGAIN: try on the next event). */
static ssize_t io_recv(struct wsc *w, void *buf, size_t len)
{
    if (w->tls)
        return tls_read(w->tls, buf, len);
    return recv(w->io.fd, buf, len, 0);
}

static ssize_t io_send(struct wsc *w, const void *buf, size_t len)
{
    if (w->tls) {
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        return tls_writev(w->tls, &iov, 1);
    }
    return send(w->io.fd, buf, len, MSG_NOSIGNAL);
}

/* Pushes on a TLS record that was counted as written but blocked. Returns 1 if one still
 * waits (want EPOLLOUT), 0 if none, -1 on a write error (errno). */
static int io_push_pending(struct wsc *w)
{
    if (!w->tls || !tls_pending(w->tls))
        return 0;
    if (tls_flush(w->tls) == 0)
        return 0;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
}

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct wsc *w = user;
    (void)flags;
    if (w->early_off < w->early_len) {
        size_t n = w->early_len - w->early_off;
        if (n > len)
            n = len;
        memcpy(buf, w->early + w->early_off, n);
        w->early_off += n;
        return (ssize_t)n;
    }
    for (;;) {
        ssize_t n = io_recv(w, buf, len);
        if (n > 0)
            return n;
        if (n == 0) {
            w->eof = 1;
            snprintf(w->error, sizeof(w->error), "the server closed the connection");
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        } else {
            snprintf(w->error, sizeof(w->error), "read: %s", strerror(errno));
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        }
        return -1;
    }
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct wsc *w = user;
    (void)flags;
    for (;;) {
        ssize_t n = io_send(w, data, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        } else {
            snprintf(w->error, sizeof(w->error), "write: %s", strerror(errno));
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        }
        return -1;
    }
}

static int cb_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    random_bytes(buf, len);
    return 0;
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *user)
{
    struct wsc *w = user;
    (void)ctx;
    if (w->terminal)
        return;
    if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME) {
        w->h->on_message(w->arg, a->opcode == WSLAY_BINARY_FRAME, a->msg, a->msg_length);
    } else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        const char *reason = a->msg_length > 2 ? (const char *)a->msg + 2 : "";
        size_t rlen = a->msg_length > 2 ? a->msg_length - 2 : 0;
        w->terminal = 1;
        w->h->on_close(w->arg, a->status_code, reason, rlen);
    }
}

static const struct wslay_event_callbacks wsc_callbacks = {
    .recv_callback = cb_recv,
    .send_callback = cb_send,
    .genmask_callback = cb_genmask,
    .on_msg_recv_callback = cb_msg,
};

static void wsc_set_events(struct wsc *w, uint32_t events)
{
    int rc = loop_mod(w->loop, &w->io, events);
    if (rc < 0)
        wsc_fail(w, "epoll: %s", strerror(-rc));
}

void wsc_flush(struct wsc *w)
{
    if (w->state != WSC_OPEN)
        return;
    if (wslay_event_send(w->ctx) != 0) {
        wsc_fail(w, "%s", w->error[0] ? w->error : "WebSocket write failed");
        return;
    }
    int pending = io_push_pending(w);
    if (pending < 0) {
        wsc_fail(w, "write: %s", strerror(errno));
        return;
    }
    uint32_t ev = wslay_event_want_read(w->ctx) && !w->terminal ? EPOLLIN | EPOLLRDHUP : 0;
    if (wslay_event_want_write(w->ctx) || pending)
        ev |= EPOLLOUT;
    if (ev == 0) {
        /* nothing more to read or write: the exchange is over */
        w->state = WSC_CLOSED;
        if (w->io.events)
            loop_del(w->loop, &w->io);
        return;
    }
    wsc_set_events(w, ev);
}

/* The 101 was accepted: hand over to wslay, with any bytes read past the head. */
static void wsc_open(struct wsc *w, const char *rest, size_t len)
{
    loop_timer_stop(w->loop, &w->deadline);
    BUG_ON(wslay_event_context_client_init(&w->ctx, &wsc_callbacks, w) != 0);
    wslay_event_config_set_max_recv_msg_length(w->ctx, WSC_MAX_MESSAGE);
    memcpy(w->early, rest, len);
    w->early_len = len;
    w->early_off = 0;
    w->state = WSC_OPEN;
    w->h->on_open(w->arg);
}

static void wsc_read_open(struct wsc *w)
{
    int rc = wslay_event_recv(w->ctx);
    if (w->terminal)
        return; /* a close frame came in: on_close was called */
    if (rc != 0) {
        if (w->eof)
            wsc_fail(w, "the server closed the connection without a close frame");
        else
            wsc_fail(w, "%s", w->error[0] ? w->error : "WebSocket read failed");
        return;
    }
    if (!wslay_event_get_read_enabled(w->ctx)) {
        /* wslay found a protocol error (or a message over WSC_MAX_MESSAGE) and queued a close */
        wslay_event_send(w->ctx);
        wsc_fail(w, "WebSocket protocol error from the server (closing with %u)",
                 (unsigned)wslay_event_get_status_code_sent(w->ctx));
    }
}

/* Reads the answer to the upgrade request. */
static void wsc_read_head(struct wsc *w)
{
    char in[4096];
    for (;;) {
        ssize_t n = io_recv(w, in, sizeof(in));
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n == -1)
            return wsc_fail(w, "read: %s", strerror(errno));
        if (n == 0) {
            if (wsc_resp_eof(&w->resp) == 0 && w->resp.status != 101)
                break;
            return wsc_fail(w, "the server closed the connection %s",
                            w->resp.head_done ? "in the middle of its answer"
                                              : "before answering the upgrade");
        }
        long used = wsc_resp_feed(&w->resp, in, (size_t)n);
        if (used < 0)
            return wsc_fail(w, "the server's answer is not HTTP");
        if (w->resp.head_done && w->resp.status == 101) {
            const char *why;
            if (!w->resp.parser.upgrade || !wsc_resp_upgrade_ok(&w->resp, w->key, &why))
                return wsc_fail(w, "bad WebSocket upgrade: %s",
                                w->resp.parser.upgrade ? why : "101 without Upgrade/Connection");
            if ((size_t)n - (size_t)used > sizeof(w->early))
                return wsc_fail(w, "too much data right after the upgrade");
            wsc_open(w, in + used, (size_t)n - (size_t)used);
            if (!w->terminal)
                wsc_read_open(w); /* the early bytes, then the socket */
            if (w->state == WSC_OPEN)
                wsc_flush(w);
            return;
        }
        if (w->resp.complete || w->resp.total_bytes >= WSC_RESPONSE_MAX)
            break;
    }
    /* refused: the whole answer (or as much as we keep) is in */
    w->terminal = 1;
    w->state = WSC_CLOSED;
    loop_timer_stop(w->loop, &w->deadline);
    loop_del(w->loop, &w->io);
    w->h->on_refused(w->arg, w->resp.status, w->resp.body, w->resp.body_len);
}

static void wsc_write_request(struct wsc *w)
{
    while (w->req_off < w->req.len) {
        ssize_t n = io_send(w, w->req.data + w->req_off, w->req.len - w->req_off);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return wsc_set_events(w, EPOLLIN | EPOLLOUT);
        if (n == -1)
            return wsc_fail(w, "write: %s", strerror(errno));
        w->req_off += (size_t)n;
    }
    int pending = io_push_pending(w);
    if (pending < 0)
        return wsc_fail(w, "write: %s", strerror(errno));
    wsc_set_events(w, pending ? EPOLLIN | EPOLLOUT : EPOLLIN | EPOLLRDHUP);
}

/* Drives the TLS handshake; once done (the certificate verified), asks for the upgrade. */
static void wsc_tls_step(struct wsc *w)
{
    int rc = tls_handshake(w->tls);
    if (rc == TLS_WANT_READ)
        return wsc_set_events(w, EPOLLIN);
    if (rc == TLS_WANT_WRITE)
        return wsc_set_events(w, EPOLLOUT);
    if (rc < 0) {
        char why[256];
        if ((w->cert_failed = tls_handshake_error(w->tls, why, sizeof(why))))
            return wsc_fail(w, "TLS: the server's certificate for \"%s\" did not verify: %s",
                            w->host, why);
        return wsc_fail(w, "TLS handshake with %s failed: %s", w->host, why);
    }
    w->state = WSC_HANDSHAKE;
    wsc_write_request(w);
}

static void wsc_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct wsc *w = (struct wsc *)io;
    (void)loop;
    if (w->terminal && w->state != WSC_OPEN)
        return;
    if (w->state == WSC_CONNECTING) {
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(w->io.fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1)
            err = errno;
        if (err)
            return wsc_fail(w, "connect: %s", strerror(err));
        if (w->tls) {
            w->state = WSC_TLS;
            return wsc_tls_step(w);
        }
        w->state = WSC_HANDSHAKE;
        return wsc_write_request(w);
    }
    if (w->state == WSC_TLS)
        return wsc_tls_step(w);
    if (w->state == WSC_HANDSHAKE) {
        if (events & EPOLLOUT)
            wsc_write_request(w);
        if (!w->terminal && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            wsc_read_head(w);
        return;
    }
    if (w->state == WSC_OPEN) {
        if (!w->terminal && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            wsc_read_open(w);
        if (w->state == WSC_OPEN)
            wsc_flush(w); /* after a close came in, this sends the answering close */
    }
}

int wsc_connect(struct wsc *w, struct loop *loop, const char *hostport, const char *target,
                const struct wsc_handler *h, void *arg, char *err, size_t errlen)
{
    return wsc_connect_tls(w, loop, hostport, NULL, target, h, arg, err, errlen);
}

int wsc_connect_tls(struct wsc *w, struct loop *loop, const char *hostport, struct tls_ctx *tls,
                    const char *target, const struct wsc_handler *h, void *arg, char *err,
                    size_t errlen)
{
    *w = (struct wsc){.io = {.fd = -1, .cb = wsc_on_io}, .loop = loop, .h = h, .arg = arg};
    wsc_resp_init(&w->resp);
    char host[256], port[8];
    if (wsc_split_hostport(hostport, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(err, errlen, "bad address \"%s\": use HOST:PORT or [IPv6]:PORT", hostport);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(gai));
        return -EHOSTUNREACH;
    }
    int fd = -1, rc = -ECONNREFUSED;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd == -1) {
            rc = -errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == -1 && errno != EINPROGRESS) {
            rc = -errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, errlen, "connect to %s: %s", hostport, strerror(-rc));
        return rc;
    }
    int one = 1; /* one small frame every 20 ms: never wait to coalesce */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    w->io.fd = fd;
    snprintf(w->host, sizeof(w->host), "%s", host);
    if (tls)
        w->tls = tls_client_new(tls, fd, host);
    if ((rc = loop_add(loop, &w->io, EPOLLOUT)) < 0) {
        snprintf(err, errlen, "epoll: %s", strerror(-rc));
        return rc;
    }
    wsc_key_new(w->key);
    buf_printf(&w->req,
               "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "User-Agent: rostrum-speak/0.1\r\n\r\n",
               target, hostport, w->key);
    w->state = WSC_CONNECTING;
    loop_timer_start(loop, &w->deadline, WSC_HANDSHAKE_MS, wsc_on_deadline);
    return 0;
}

int wsc_send(struct wsc *w, int binary, const void *p, size_t len, size_t max_queue)
{
    if (w->state != WSC_OPEN || w->terminal || wslay_event_get_close_sent(w->ctx))
        return -EPIPE;
    if (wslay_event_get_queued_msg_length(w->ctx) > max_queue)
        return -EAGAIN;
    struct wslay_event_msg m = {
        .opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME,
        .msg = p,
        .msg_length = len,
    };
    int rc = wslay_event_queue_msg(w->ctx, &m);
    BUG_ON(rc == WSLAY_ERR_NOMEM);
    return rc == 0 ? 0 : -EPIPE;
}

void wsc_close(struct wsc *w, uint16_t code, const char *reason)
{
    if (w->state != WSC_OPEN)
        return;
    size_t rlen = strlen(reason);
    if (rlen > 123)
        rlen = 123;
    wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, rlen);
}

int wsc_close_sent(const struct wsc *w)
{
    return w->ctx && wslay_event_get_close_sent(w->ctx);
}

void wsc_free(struct wsc *w)
{
    if (w->loop)
        loop_timer_stop(w->loop, &w->deadline);
    if (w->tls) {
        if (w->state == WSC_OPEN || wsc_close_sent(w))
            tls_close_notify(w->tls); /* never waits: best effort */
        tls_conn_free(w->tls);
        w->tls = NULL;
    }
    if (w->io.fd >= 0) {
        if (w->loop && w->io.events)
            loop_del(w->loop, &w->io);
        close(w->io.fd);
        w->io.fd = -1;
    }
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    w->ctx = NULL;
    buf_free(&w->req);
    w->state = WSC_CLOSED;
}
