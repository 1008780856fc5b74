/*
 * ws: server-side WebSocket (RFC 6455) over a non-blocking socket, framing done by wslay.
 *
 * What we add around wslay: the opening handshake check and Sec-WebSocket-Accept, the glue
 * between wslay's callbacks and our sockets (or any byte source, for the fuzz target), a
 * bound on message size and on what may queue toward a slow peer, and one clear reason for
 * every failure. Control frames (ping/pong/close) are answered by wslay.
 *
 * Everything a peer can grow is bounded here (issue 8):
 *
 *   socket --recv--> [in: frame scanner] --bytes--> wslay --messages--> handler
 *                       |  rate: frames/s and bytes/s (token buckets); over it: close 1008
 *                       |  ping while a pong waits: not passed on (payload kept, see below)
 *   socket <--send-- wslay queue  <-- ws_send_*: bytes and messages capped
 *
 * wslay queues a pong for every ping it parses and cannot take one back, so a peer that
 * pings and never reads would grow the queue without end. The scanner finds frame
 * boundaries in the byte stream (a frame header is 2-14 bytes) and hands wslay at most one
 * ping while a pong is outstanding; a later ping's payload replaces the kept one and is
 * answered once the queue has drained (RFC 6455 5.5.3 allows answering only the latest).
 * Reading stops after WS_READ_BUDGET bytes per ws_read(), so one member cannot hold the loop;
 * over TLS the owner must then come back by itself if OpenSSL still holds plaintext
 * (ws_read_more), since the socket may be drained and epoll silent.
 */
#ifndef ROSTRUM_WS_WS_H
#define ROSTRUM_WS_WS_H

#include <stddef.h>
#include <stdint.h>

struct http_request;

#define WS_MAX_MESSAGE 65536    /* a larger message closes the connection (1009) */
#define WS_QUEUE_MAX_BYTES 65536 /* ws_send_text refuses past this many queued bytes... */
#define WS_QUEUE_MAX_MSGS 256    /* ...or messages (audio may use half of the messages) */
#define WS_READ_BUDGET 65536     /* bytes read per ws_read(); the loop comes back for more */
/* Inbound rate per connection, frames of any kind and bytes on the wire. A speaker sends 50
 * frames/s (Opus ~6 KB/s, PCM 96 KB/s) and a control message now and then; the burst covers
 * a browser that flushes its whole 64 KiB send buffer after a stall. */
#define WS_RATE_FRAMES 200.0
#define WS_BURST_FRAMES 1000.0
#define WS_RATE_BYTES (256.0 * 1024)
#define WS_BURST_BYTES (1024.0 * 1024)

/* Checks that <req> is a WebSocket upgrade we take (GET, Upgrade: websocket, Connection:
 * upgrade, Sec-WebSocket-Version: 13, a 16-byte base64 key) and writes the 101 response head
 * into <out> (<cap> bytes, 256 is plenty). Returns its length, or -1 with the HTTP status to
 * refuse with in <status> (400, or 426 for another version). */
int ws_handshake(const struct http_request *req, char *out, size_t cap, int *status);

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
    /* Optional (TLS): 1 if bytes send() counted still wait in user space; send(NULL, 0)
     * pushes them on. ws_flush() wants EPOLLOUT until they are gone. */
    int (*pending)(void *io_arg);
    /* Optional (TLS): 1 if bytes recv() would return wait in user space, out of epoll's
     * sight. See ws_read_more(). */
    int (*buffered)(void *io_arg);
};

/* A WebSocket on connected socket <fd> (borrowed: the caller closes it). <io> NULL means the
 * socket itself. Aborts on OOM. */
struct ws *ws_new(int fd, const struct ws_io *io, const struct ws_handler *h, void *arg);
void ws_free(struct ws *w);

/* Reads what is available (at most WS_READ_BUDGET bytes) and dispatches whole messages.
 * Returns 0 to go on, or -1 when the connection is over (peer closed, protocol error, message
 * too large, over the inbound rate): ws_error() says why, and a close frame has been queued
 * where one is due (flush it with ws_flush()). */
int ws_read(struct ws *w);
/* 1 if the last ws_read() stopped at its budget while the transport holds bytes it already
 * took off the socket (ws_io.buffered: TLS plaintext inside OpenSSL). Epoll will not report
 * those, so call ws_read() again soon, e.g. on the loop's next turn (loop_post); after a stop
 * at the budget with nothing buffered, what is left is in the socket, and epoll says so. */
int ws_read_more(const struct ws *w);
/* 1 if reading ended because the peer sent faster than WS_RATE_* (closed with 1008). */
int ws_over_rate(const struct ws *w);
/* Queue a text message. Returns 0, -1 if the connection is closing or the text is not valid
 * UTF-8 (dropped, logged once per process), or -2 if the queue is over WS_QUEUE_MAX_BYTES or
 * WS_QUEUE_MAX_MSGS (the peer does not read: close it). */
int ws_send_text(struct ws *w, const char *s, size_t len);
/* Queue a binary message. Returns 0, or -1 if the connection is closing or more than
 * <max_queue> bytes (or half the message cap) already wait for the peer: the message is
 * dropped, as audio that late is useless. */
int ws_send_binary(struct ws *w, const void *p, size_t len, size_t max_queue);
/* Queues a close frame with <code> and <reason>. */
void ws_close(struct ws *w, uint16_t code, const char *reason);
/* Writes what is queued. Returns 1 if bytes are still waiting (arm EPOLLOUT), 0 if all went
 * out, -1 on a socket error. */
int ws_flush(struct ws *w);
/* 1 once the exchange is over: a close was received and sent, or reading failed. */
int ws_finished(const struct ws *w);
const char *ws_error(const struct ws *w);
/* 1 if anything waits to be written: a message, or a pong or close wslay queued itself while
 * reading (ws_read answers pings; the owner must flush for the pong to go). */
int ws_want_write(const struct ws *w);
/* Bytes of queued messages not yet written to the socket. */
size_t ws_queued(const struct ws *w);
/* Bytes written to the socket so far (progress of a slow peer). */
uint64_t ws_bytes_sent(const struct ws *w);

/* Upgrade: a WebSocket carried on by the next binary. The bytes it read but did not parse
 * go with it; wslay's own state does not, so a save happens between frames, with nothing
 * waiting to be written. */
#define WS_SAVED_VERSION 1
#define WS_SAVED_IN 4096
struct ws_saved {
    uint32_t in_len;
    uint8_t in[WS_SAVED_IN];
    double frame_tokens, byte_tokens;
    int64_t tokens_ms;
    uint64_t sent;
};
/* From now on, hands wslay only whole frames (so that a save finds it between two). */
void ws_hold(struct ws *w);
/* Fills <out>; returns 0, or -1 if <w> is mid-frame, has output waiting or is closing. */
int ws_save(const struct ws *w, struct ws_saved *out);
/* A WebSocket as ws_new, carrying on from <saved>; NULL if <saved> is bad. */
struct ws *ws_restore(int fd, const struct ws_io *io, const struct ws_handler *h, void *arg,
                      const struct ws_saved *saved);

#endif
