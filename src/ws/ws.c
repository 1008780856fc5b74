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
#include <time.h>
#include <wslay/wslay.h>

#include "http/request.h"
#include "util/check.h"
#include "util/log.h"
#include "util/utf8.h"

#define WS_IN_BUF WS_SAVED_IN
#define WS_PING_MAX (2 + 4 + 125) /* a masked ping with a 7-bit length: all a ping may be */

struct ws {
    wslay_event_context_ptr ctx;
    int fd;
    struct ws_io io;
    const struct ws_handler *h;
    void *arg;
    int eof;
    uint8_t over_rate;    /* closed for sending too fast */
    uint8_t pong_pending; /* a ping went to wslay and its pong may still be queued */
    uint8_t ping_waiting; /* a later ping was held back: answer it when the queue drains */
    uint8_t ping_len;
    uint8_t ping[125];    /* its payload, unmasked */
    /* the frame scanner: bytes read from the socket, not yet handed to wslay */
    uint8_t in[WS_IN_BUF];
    size_t in_off, in_len;
    uint64_t frame_left; /* bytes of the current frame (header included) still to pass on */
    size_t budget;       /* bytes ws_read() may still read from the socket */
    uint8_t budget_spent; /* this ws_read() stopped because the budget ran out */
    int64_t now_ms;      /* clock of the current ws_read() */
    double frame_tokens, byte_tokens;
    int64_t tokens_ms;
    uint64_t sent;
    uint8_t hold;        /* whole frames only (ws_hold) */
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

/* Reads more from the socket into w->in (after what is there). Returns 1 if bytes came, 0 if
 * none are there now (or the budget is spent), -1 on EOF or error (w->error set). */
static int in_fill(struct ws *w)
{
    if (w->in_off > 0) {
        memmove(w->in, w->in + w->in_off, w->in_len - w->in_off);
        w->in_len -= w->in_off;
        w->in_off = 0;
    }
    size_t room = sizeof(w->in) - w->in_len;
    if (room > w->budget)
        room = w->budget;
    if (room == 0) {
        w->budget_spent = w->budget == 0;
        return 0;
    }
    long r = w->io.recv(w->io.io_arg, w->in + w->in_len, room);
    if (r > 0) {
        w->in_len += (size_t)r;
        w->budget -= (size_t)r;
        return 1;
    }
    if (r == 0) {
        w->eof = 1;
        snprintf(w->error, sizeof(w->error), "peer closed the connection");
        return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    snprintf(w->error, sizeof(w->error), "read: %s", strerror(errno));
    return -1;
}

/* Takes one frame of <bytes> from the rate buckets. Returns 0, or -1 if over the rate. */
static int rate_take(struct ws *w, uint64_t bytes)
{
    double dt = (double)(w->now_ms - w->tokens_ms) / 1000.0;
    w->tokens_ms = w->now_ms;
    if (dt > 0) {
        w->frame_tokens += dt * WS_RATE_FRAMES;
        w->byte_tokens += dt * WS_RATE_BYTES;
    }
    if (w->frame_tokens > WS_BURST_FRAMES)
        w->frame_tokens = WS_BURST_FRAMES;
    if (w->byte_tokens > WS_BURST_BYTES)
        w->byte_tokens = WS_BURST_BYTES;
    w->frame_tokens -= 1;
    w->byte_tokens -= (double)bytes;
    return w->frame_tokens < 0 || w->byte_tokens < 0 ? -1 : 0;
}

/* Looks at the frame starting at w->in + w->in_off. Returns its header length and sets
 * <payload>, or 0 if the header is not all there. */
static size_t frame_header(const struct ws *w, uint64_t *payload)
{
    const uint8_t *p = w->in + w->in_off;
    size_t avail = w->in_len - w->in_off;
    if (avail < 2)
        return 0;
    size_t hlen = 2 + ((p[1] & 0x80) ? 4 : 0);
    uint64_t n = p[1] & 0x7f;
    if (n == 126)
        hlen += 2;
    else if (n == 127)
        hlen += 8;
    if (avail < hlen)
        return 0;
    if (n == 126) {
        n = (uint64_t)p[2] << 8 | p[3];
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | p[2 + i];
    }
    *payload = n;
    return hlen;
}

/* wslay asks for bytes: hands it those of the current frame, scanning each new frame's
 * header first (rate, pings). Returns bytes given, or -1 with wslay's error set. */
static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    struct ws *w = user;
    (void)flags;
    for (;;) {
        size_t avail = w->in_len - w->in_off;
        if (w->frame_left > 0 && avail > 0) {
            size_t n = avail < len ? avail : len;
            if (n > w->frame_left)
                n = (size_t)w->frame_left;
            memcpy(buf, w->in + w->in_off, n);
            w->in_off += n;
            w->frame_left -= n;
            return (ssize_t)n;
        }
        uint64_t payload = 0;
        size_t hlen = w->frame_left == 0 ? frame_header(w, &payload) : 0;
        if (hlen > 0) {
            const uint8_t *p = w->in + w->in_off;
            if (rate_take(w, hlen + payload) < 0) {
                w->over_rate = 1;
                snprintf(w->error, sizeof(w->error), "sent faster than %.0f frames/s or %.0f KiB/s",
                         WS_RATE_FRAMES, WS_RATE_BYTES / 1024);
                wslay_event_queue_close(ctx, 1008, (const uint8_t *)"over rate", 9);
                wslay_event_shutdown_read(ctx);
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
            }
            int ping = (p[0] & 0x0f) == WSLAY_PING && (p[0] & 0xf0) == 0x80 && (p[1] & 0x80) &&
                       payload <= 125;
            if (ping && w->pong_pending) {
                /* a pong is outstanding: keep only this ping's payload, for later */
                if (avail < hlen + payload)
                    goto more; /* the whole ping first */
                for (uint64_t i = 0; i < payload; i++)
                    w->ping[i] = p[hlen + i] ^ p[hlen - 4 + (i & 3)];
                w->ping_len = (uint8_t)payload;
                w->ping_waiting = 1;
                w->in_off += hlen + (size_t)payload;
                continue;
            }
            if (w->hold && avail < hlen + payload && hlen + payload <= sizeof(w->in))
                goto more; /* an upgrade is near: wslay gets whole frames only */
            if (ping)
                w->pong_pending = 1;
            w->frame_left = hlen + payload; /* at least 2 */
            continue;
        }
    more:;
        int r = in_fill(w);
        if (r > 0)
            continue;
        wslay_event_set_error(ctx, r == 0 ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct ws *w = user;
    (void)flags;
    long r = w->io.send(w->io.io_arg, data, len);
    if (r >= 0) {
        w->sent += (uint64_t)r;
        return r;
    }
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
    BUG_ON(!w);
    w->fd = fd;
    w->h = h;
    w->arg = arg;
    if (io)
        w->io = *io;
    else
        w->io = (struct ws_io){sock_recv, sock_send, &w->fd, NULL, NULL};
    static const struct wslay_event_callbacks cbs = {cb_recv, cb_send, cb_genmask, NULL,
                                                     NULL, NULL, cb_msg};
    BUG_ON(wslay_event_context_server_init(&w->ctx, &cbs, w) != 0);
    wslay_event_config_set_max_recv_msg_length(w->ctx, WS_MAX_MESSAGE);
    w->frame_tokens = WS_BURST_FRAMES;
    w->byte_tokens = WS_BURST_BYTES;
    w->tokens_ms = -1; /* set by the first ws_read() */
    return w;
}

void ws_free(struct ws *w)
{
    if (!w)
        return;
    wslay_event_context_free(w->ctx);
    free(w);
}

static int64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ws_read(struct ws *w)
{
    w->now_ms = clock_ms();
    if (w->tokens_ms < 0)
        w->tokens_ms = w->now_ms;
    w->budget = WS_READ_BUDGET;
    w->budget_spent = 0;
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

int ws_read_more(const struct ws *w)
{
    return w->budget_spent && w->io.buffered && w->io.buffered(w->io.io_arg);
}

int ws_over_rate(const struct ws *w)
{
    return w->over_rate;
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
    if (wslay_event_get_queued_msg_length(w->ctx) + len > WS_QUEUE_MAX_BYTES ||
        wslay_event_get_queued_msg_count(w->ctx) >= WS_QUEUE_MAX_MSGS)
        return -2;
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)s, len};
    return wslay_event_queue_msg(w->ctx, &m) == 0 ? 0 : -1;
}

int ws_send_binary(struct ws *w, const void *p, size_t len, size_t max_queue)
{
    if (wslay_event_get_queued_msg_length(w->ctx) > max_queue ||
        wslay_event_get_queued_msg_count(w->ctx) >= WS_QUEUE_MAX_MSGS / 2)
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
    for (;;) {
        if (wslay_event_send(w->ctx) != 0)
            return -1;
        if (wslay_event_want_write(w->ctx))
            return 1;
        if (w->io.pending && w->io.pending(w->io.io_arg)) {
            if (w->io.send(w->io.io_arg, NULL, 0) < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
            if (w->io.pending(w->io.io_arg))
                return 1;
        }
        /* all out, the pong included: a held-back ping may be answered now */
        w->pong_pending = 0;
        if (!w->ping_waiting)
            return 0;
        w->ping_waiting = 0;
        struct wslay_event_msg m = {WSLAY_PONG, w->ping, w->ping_len};
        if (wslay_event_queue_msg(w->ctx, &m) != 0)
            return 0; /* closing */
        w->pong_pending = 1;
    }
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

int ws_want_write(const struct ws *w)
{
    return wslay_event_want_write(w->ctx);
}

size_t ws_queued(const struct ws *w)
{
    return wslay_event_get_queued_msg_length(w->ctx);
}

uint64_t ws_bytes_sent(const struct ws *w)
{
    return w->sent;
}

void ws_hold(struct ws *w)
{
    w->hold = 1;
}

int ws_save(const struct ws *w, struct ws_saved *out)
{
    if (w->frame_left > 0 || wslay_event_want_write(w->ctx) || w->ping_waiting ||
        (w->io.pending && w->io.pending(w->io.io_arg)) || wslay_event_get_close_sent(w->ctx) ||
        wslay_event_get_close_received(w->ctx))
        return -1;
    memset(out, 0, sizeof(*out));
    out->in_len = (uint32_t)(w->in_len - w->in_off);
    memcpy(out->in, w->in + w->in_off, out->in_len);
    out->frame_tokens = w->frame_tokens;
    out->byte_tokens = w->byte_tokens;
    out->tokens_ms = w->tokens_ms;
    out->sent = w->sent;
    return 0;
}

struct ws *ws_restore(int fd, const struct ws_io *io, const struct ws_handler *h, void *arg,
                      const struct ws_saved *saved)
{
    if (saved->in_len > WS_IN_BUF)
        return NULL;
    struct ws *w = ws_new(fd, io, h, arg);
    memcpy(w->in, saved->in, saved->in_len);
    w->in_len = saved->in_len;
    w->frame_tokens = saved->frame_tokens;
    w->byte_tokens = saved->byte_tokens;
    w->tokens_ms = saved->tokens_ms;
    w->sent = saved->sent;
    return w;
}
