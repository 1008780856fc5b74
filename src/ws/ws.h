/*
 * ws: server-side WebSocket (RFC 6455) over a non-blocking socket, framing done by wslay.
 *
 * What we add around wslay: the opening handshake check and Sec-WebSocket-Accept, the glue
 * between wslay's callbacks and our sockets (or any byte source, for the fuzz target), a
 * bound on message size and on what may queue toward a slow peer, and one clear reason for
 * every failure. Control frames (ping/pong/close) are answered by wslay.
 */
#ifndef ROSTRUM_WS_WS_H
#define ROSTRUM_WS_WS_H

#include <stddef.h>
#include <stdint.h>

struct http_request;

#define WS_MAX_MESSAGE 65536    /* a larger message closes the connection (1009) */

/* Checks that <req> is a WebSocket upgrade we take (GET, Upgrade: websocket, Connection:
 * upgrade, Sec-WebSocket-Version: 13, a 16-byte base64 key) and writes the 101 response head
 * into <out> (<cap> bytes, 256 is plenty). Returns its length, or -1 with the HTTP status to
 * refuse with in <status> (400, or 426 for another version). */
int ws_handshake(const struct http_request *req, char *out, size_t cap, int *status);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key of <len> bytes: base64(SHA-1(key + the RFC's
 * GUID)), 28 characters and a NUL in <out>. Both ends of the handshake use it. */
void ws_accept_key(const char *key, size_t len, char out[29]);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key of <len> bytes (at most 64 are used):
 * base64(SHA-1(key + the RFC's GUID)), 28 characters and a NUL in <out>. Both ends of the
 * handshake use it. */
void ws_accept_key(const char *key, size_t len, char out[29]);

struct ws;

/* What a connection receives. <arg> is the one given to ws_new. */
struct ws_handler {
    void (*on_text)(void *arg, const uint8_t *msg, size_t len);
    void (*on_binary)(void *arg, const uint8_t *msg, size_t len);
};

/* Byte transport: defaults to recv()/send() on <fd>; the fuzz target supplies its own.
 * Both return bytes moved, 0 on EOF (recv), or -1 with errno (EAGAIN: try later). */
struct ws_io {
    long (*recv)(void *io_arg, uint8_t *buf, size_t len);
    long (*send)(void *io_arg, const uint8_t *buf, size_t len);
    void *io_arg;
};

/* A WebSocket on connected socket <fd> (borrowed: the caller closes it). <io> NULL means the
 * socket itself. Aborts on OOM. */
struct ws *ws_new(int fd, const struct ws_io *io, const struct ws_handler *h, void *arg);
void ws_free(struct ws *w);

/* Reads what is available and dispatches whole messages. Returns 0 to go on, or -1 when the
 * connection is over (peer closed, protocol error, message too large): ws_error() says why,
 * and a close frame has been queued where one is due (flush it with ws_flush()). */
int ws_read(struct ws *w);
/* Queue a message. Returns 0, or -1 if the connection is closing or more than <max_queue>
 * bytes already wait for the peer (the message is dropped: audio that late is useless).
 * A text message that is not valid UTF-8 is dropped too (-1, logged once per process). */
int ws_send_text(struct ws *w, const char *s, size_t len);
int ws_send_binary(struct ws *w, const void *p, size_t len, size_t max_queue);
/* Queues a close frame with <code> and <reason>. */
void ws_close(struct ws *w, uint16_t code, const char *reason);
/* Writes what is queued. Returns 1 if bytes are still waiting (arm EPOLLOUT), 0 if all went
 * out, -1 on a socket error. */
int ws_flush(struct ws *w);
/* 1 once the exchange is over: a close was received and sent, or reading failed. */
int ws_finished(const struct ws *w);
const char *ws_error(const struct ws *w);
size_t ws_queued(const struct ws *w);

#endif
