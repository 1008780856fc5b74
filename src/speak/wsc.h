/*
 * speak/wsc: the client side of a WebSocket (RFC 6455) on the project's event loop.
 *
 * The opening handshake is ours (a random 16-byte Sec-WebSocket-Key, the answer read with
 * http_parser and Sec-WebSocket-Accept checked); framing, masking, ping/pong and the closing
 * handshake are wslay's. A refusal before the upgrade (any status but 101) is read to the end of
 * its body and handed to the owner whole, so a CLI can print why it was turned away.
 *
 *   wsc_connect ─► CONNECTING ──writable, SO_ERROR 0──► HANDSHAKE: GET sent, answer read
 *                      │    │                             ▲  │           │
 *                      │    └─ TLS: ─► TLS handshake ─────┘  │           │
 *                      │             (certificate checked)   │           │
 *                      │ refused / failed / 5 s              │ 101 +     │ other status:
 *                      ▼                                  │ Accept ok │ body read
 *                    (fail)                               ▼           ▼
 *                                                        OPEN       (refused)
 *                                            close frame in │ or EOF / error
 *                                                           ▼
 *                                                        CLOSED
 *
 * With a TLS context (wss://) every byte goes through tls/ (tls_read, tls_writev): a record
 * that blocked half-sent is counted as written and pushed on by wsc_flush, which keeps EPOLLOUT
 * armed until it is gone. The server's certificate must verify (chain and name), or the
 * connection fails with the check's reason; nothing is sent before it has.
 *
 * Bytes that arrive in the same read as the end of the 101 head (the server may send its first
 * frame at once) are kept and given to wslay before the socket is read again.
 *
 * Callbacks run from the loop (or from wsc_flush): they may send, close and stop the loop, but
 * must not free the wsc; the owner frees it (wsc_free) once loop_run has returned. After
 * on_refused, on_fail or on_close, no callback is called again.
 */
#ifndef ROSTRUM_SPEAK_WSC_H
#define ROSTRUM_SPEAK_WSC_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <wslay/wslay.h>

#include "event/loop.h"
#include "tls/tls.h"
#include "util/buf.h"

#define WSC_KEY_LEN 24         /* base64 of 16 random bytes */
#define WSC_ACCEPT_LEN 28      /* base64 of a SHA-1 */
#define WSC_HANDSHAKE_MS 5000  /* connect + upgrade must be done by then */
#define WSC_HEAD_MAX 8192      /* a larger response head fails the handshake */
#define WSC_BODY_MAX 2048      /* bytes of a refusal's body kept (the rest is read, not kept) */
#define WSC_RESPONSE_MAX 65536 /* a refusal longer than this is cut: what we have is reported */
#define WSC_MAX_MESSAGE 65536  /* a larger incoming message closes with 1009 */

/* The server's answer to the upgrade request, parsed incrementally. Owned by its wsc (or by a
 * test); no allocation. */
struct wsc_resp {
    http_parser parser;
    int status;         /* 0 until the status line is in */
    int head_done;      /* the head (status line + headers) is complete */
    int complete;       /* the whole response (head + body) is complete */
    int failed;         /* not HTTP, or the head is too large */
    int has_upgrade;    /* Upgrade: websocket */
    int has_connection; /* Connection: upgrade */
    char accept[128];   /* Sec-WebSocket-Accept, trimmed; "" if absent */
    char field[32];     /* the header being read (longer names are cut: not ours) */
    size_t field_len;
    char value[128];
    size_t value_len;
    int in_value;
    size_t head_bytes;
    size_t total_bytes;
    char body[WSC_BODY_MAX + 1]; /* NUL-terminated */
    size_t body_len;
};

void wsc_resp_init(struct wsc_resp *r);
/* Feeds <len> bytes of the answer. Returns the bytes that belong to the HTTP response: all of
 * them, except for a 101 upgrade, where it stops at the end of the head (the rest is WebSocket
 * data); or -1 if the input is not a valid HTTP response (r->failed). After r->complete, feeding
 * more returns 0. */
long wsc_resp_feed(struct wsc_resp *r, const char *data, size_t len);
/* The connection ended (EOF): completes a body delimited by the end of the connection. Returns
 * 0 if the response is complete now, -1 if it was cut short. */
int wsc_resp_eof(struct wsc_resp *r);
/* 1 if <r> accepts the upgrade asked with <key> (status 101, Upgrade: websocket, Connection:
 * upgrade, the right Sec-WebSocket-Accept); 0 with <*why> otherwise. */
int wsc_resp_upgrade_ok(const struct wsc_resp *r, const char *key, const char **why);

/* Writes a new random Sec-WebSocket-Key (24 base64 characters and a NUL) into <key>. */
void wsc_key_new(char key[WSC_KEY_LEN + 1]);
/* Writes base64(SHA-1(<key> + the RFC 6455 GUID)) and a NUL into <out>. */
void wsc_accept_for(const char *key, char out[WSC_ACCEPT_LEN + 1]);
/* Appends <s> percent-encoded (RFC 3986: unreserved characters kept) to <b>. */
void wsc_percent_encode(struct buf *b, const char *s);
/* Splits "host:port", "[v6]:port" into <host> and <port>. Returns 0, or -1 if malformed or
 * too long for the buffers. */
int wsc_split_hostport(const char *hp, char *host, size_t hcap, char *port, size_t pcap);

enum wsc_state { WSC_IDLE, WSC_CONNECTING, WSC_TLS, WSC_HANDSHAKE, WSC_OPEN, WSC_CLOSED };

struct wsc_handler {
    /* The upgrade was accepted: messages may be sent from now on. */
    void (*on_open)(void *arg);
    /* The server answered with <status> instead of 101; <body> (NUL-terminated, at most
     * WSC_BODY_MAX bytes) is its body. */
    void (*on_refused)(void *arg, int status, const char *body, size_t len);
    /* One whole text or binary message, borrowed for the call. */
    void (*on_message)(void *arg, int binary, const uint8_t *msg, size_t len);
    /* The server's close frame: <code> (0 if none) and <reason> (not NUL-terminated). wslay
     * has queued the answering close unless ours went first; flush it. */
    void (*on_close)(void *arg, int code, const char *reason, size_t len);
    /* The connection could not be made, or ended without a close frame, or broke the
     * protocol; <why> says which. */
    void (*on_fail)(void *arg, const char *why);
};

/* One client connection. Declared by its owner (embedded), set up by wsc_connect, released
 * by wsc_free. */
struct wsc {
    struct io io; /* first: the loop hands us &io */
    struct loop *loop;
    int state;
    int terminal; /* a final callback was made */
    const struct wsc_handler *h;
    void *arg;
    wslay_event_context_ptr ctx;
    struct loop_timer deadline;
    char key[WSC_KEY_LEN + 1];
    struct buf req; /* the upgrade request */
    size_t req_off; /* bytes of it written */
    struct wsc_resp resp;
    unsigned char early[WSC_HEAD_MAX]; /* bytes read past the 101 head, for wslay */
    size_t early_len, early_off;
    int eof;
    struct tls_conn *tls; /* owned; NULL for plain ws:// */
    int cert_failed;      /* TLS_FAIL_CERT or _NAME: the server's certificate was refused */
    char host[256];       /* the server's name or address, for messages */
    char error[320];
};

/* Starts connecting to <hostport> and asks for <target> (path and query, already encoded) with
 * <host_header> as Host. <h> and <arg> are borrowed for the life of <w>. Returns 0 (the outcome
 * comes through <h>), or -errno with a reason in <err> if it fails at once (bad address, no
 * such host, no socket); then no callback is called, and wsc_free is still safe. */
int wsc_connect(struct wsc *w, struct loop *loop, const char *hostport, const char *target,
                const struct wsc_handler *h, void *arg, char *err, size_t errlen);
/* The same over TLS (wss://) when <tls> (a client context, borrowed for the life of <w>) is
 * not NULL: the server's certificate is checked against it and against the host of
 * <hostport> before the upgrade is asked. */
int wsc_connect_tls(struct wsc *w, struct loop *loop, const char *hostport, struct tls_ctx *tls,
                    const char *target, const struct wsc_handler *h, void *arg, char *err,
                    size_t errlen);

/* Queues a message (copied). Returns 0; -EAGAIN if more than <max_queue> bytes already wait for
 * the peer (dropped: late audio is useless); -EPIPE if not open or a close was queued. */
int wsc_send(struct wsc *w, int binary, const void *p, size_t len, size_t max_queue);
/* Queues our close frame (<reason> cut to 123 bytes). A no-op unless open. */
void wsc_close(struct wsc *w, uint16_t code, const char *reason);
/* Writes what wslay has queued; arms EPOLLOUT while the socket is full. Call before sleeping. */
void wsc_flush(struct wsc *w);
/* 1 once our close frame has gone out. */
int wsc_close_sent(const struct wsc *w);
/* Releases the socket, wslay's context and the timer. Safe on a zeroed or failed wsc. */
void wsc_free(struct wsc *w);

#endif
