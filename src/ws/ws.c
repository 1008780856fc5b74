#include "ws/ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#include "http/request.h"
#include "util/log.h"
#include "util/utf8.h"

struct ws {
    wslay_event_context_ptr ctx;
    int fd;
    struct ws_io io;
    const struct ws_handler *h;
    void *arg;
    int eof;
    char error[96];
};

void ws_accept_key(const char *key, size_t len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char buf[64 + sizeof(guid)], sha[SHA_DIGEST_LENGTH];
    if (len > 64)
        len = 64; /* a key is 24 characters; never overflow for a longer one */
    memcpy(buf, key, len);
    memcpy(buf + len, guid, sizeof(guid) - 1);
    SHA1(buf, len + sizeof(guid) - 1, sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

int ws_handshake(const struct http_request *req, char *out, size_t cap, int *status)
{
    *status = 400;
    if (req->method != HTTP_GET || !http_header_has_token(req, "Upgrade", "websocket") ||
        !http_header_has_token(req, "Connection", "upgrade"))
        return -1;
    const struct http_header *v = http_find_header(req, "Sec-WebSocket-Version");
    if (!v || v->value_len != 2 || memcmp(v->value, "13", 2) != 0) {
        *status = 426;
        return -1;
    }
    const struct http_header *k = http_find_header(req, "Sec-WebSocket-Key");
    unsigned char raw[32];
    if (!k || k->value_len != 24 ||
        EVP_DecodeBlock(raw, (const unsigned char *)k->value, 24) != 18) /* 16 + 2 padding */
        return -1;
    char accept[32];
    ws_accept_key(k->value, 24, accept);
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (n <= 0 || (size_t)n >= cap)
        return -1;
    *status = 101;
    return n;
}

static long sock_recv(void *io_arg, uint8_t *buf, size_t len)
{
    return recv(*(int *)io_arg, buf, len, 0);
}

static long sock_send(void *io_arg, const uint8_t *buf, size_t len)
{
    return send(*(int *)io_arg, buf, len, MSG_NOSIGNAL);
}

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    struct ws *w = user;
    (void)flags;
    long r = w->io.recv(w->io.io_arg, buf, len);
    if (r > 0)
        return r;
    if (r == 0) {
        w->eof = 1;
        snprintf(w->error, sizeof(w->error), "peer closed the connection");
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        snprintf(w->error, sizeof(w->error), "read: %s", strerror(errno));
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct ws *w = user;
    (void)flags;
    long r = w->io.send(w->io.io_arg, data, len);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static int cb_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    /* only clients mask; a server never needs this, but wslay wants it set */
    return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *user)
{
    struct ws *w = user;
    (void)ctx;
    if (a->opcode == WSLAY_TEXT_FRAME && w->h->on_text)
        w->h->on_text(w->arg, a->msg, a->msg_length);
    else if (a->opcode == WSLAY_BINARY_FRAME && w->h->on_binary)
        w->h->on_binary(w->arg, a->msg, a->msg_length);
    else if (a->opcode == WSLAY_CONNECTION_CLOSE && !w->error[0])
        snprintf(w->error, sizeof(w->error), "peer sent close (%u)", a->status_code);
}

struct ws *ws_new(int fd, const struct ws_io *io, const struct ws_handler *h, void *arg)
{
    struct ws *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->fd = fd;
    w->h = h;
    w->arg = arg;
    if (io)
        w->io = *io;
    else
        w->io = (struct ws_io){sock_recv, sock_send, &w->fd};
    static const struct wslay_event_callbacks cbs = {cb_recv, cb_send, cb_genmask, NULL,
                                                     NULL, NULL, cb_msg};
    if (wslay_event_context_server_init(&w->ctx, &cbs, w) != 0)
        abort();
    wslay_event_config_set_max_recv_msg_length(w->ctx, WS_MAX_MESSAGE);
    return w;
}

void ws_free(struct ws *w)
{
    if (!w)
        return;
    wslay_event_context_free(w->ctx);
    free(w);
}

int ws_read(struct ws *w)
{
    int rc = wslay_event_recv(w->ctx);
    if (rc != 0) {
        if (!w->error[0])
            snprintf(w->error, sizeof(w->error), "%s",
                     rc == WSLAY_ERR_NOMEM ? "out of memory" : "WebSocket protocol error");
        return -1;
    }
    if (!wslay_event_get_read_enabled(w->ctx)) {
        /* wslay stops reading after a close frame, or after a protocol error or an oversized
         * message, for which it has queued a close frame with the status */
        if (!w->error[0])
            snprintf(w->error, sizeof(w->error), "protocol error or message over %d bytes",
                     WS_MAX_MESSAGE);
        return -1;
    }
    return 0;
}

int ws_send_text(struct ws *w, const char *s, size_t len)
{
    /* Defence in depth (strings are made valid where they enter): a browser drops the whole
     * connection on a text frame that is not UTF-8, and would get the same frame again on
     * every reconnect. */
    if (!utf8_valid(s, len)) {
        static int warned;
        if (!warned++)
            log_error("ws", "dropping a text frame that is not valid UTF-8 (logged once)");
        return -1;
    }
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)s, len};
    return wslay_event_queue_msg(w->ctx, &m) == 0 ? 0 : -1;
}

int ws_send_binary(struct ws *w, const void *p, size_t len, size_t max_queue)
{
    if (wslay_event_get_queued_msg_length(w->ctx) > max_queue)
        return -1;
    struct wslay_event_msg m = {WSLAY_BINARY_FRAME, p, len};
    return wslay_event_queue_msg(w->ctx, &m) == 0 ? 0 : -1;
}

void ws_close(struct ws *w, uint16_t code, const char *reason)
{
    wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
}

int ws_flush(struct ws *w)
{
    if (wslay_event_send(w->ctx) != 0)
        return -1;
    return wslay_event_want_write(w->ctx) ? 1 : 0;
}

int ws_finished(const struct ws *w)
{
    return w->eof || (wslay_event_get_close_received(w->ctx) &&
                      wslay_event_get_close_sent(w->ctx) && !wslay_event_want_write(w->ctx));
}

const char *ws_error(const struct ws *w)
{
    return w->error[0] ? w->error : "closed";
}

size_t ws_queued(const struct ws *w)
{
    return wslay_event_get_queued_msg_length(w->ctx);
}
