/*
 * conn: the connection layer every process uses, whatever the port: accepting (per-address
 * connection limit, the spare descriptor), reading a request head under a deadline, small
 * responses, lingering close, and freeing closed connections before the loop sleeps.
 *
 *   accept --> HEAD --(head parsed: hub->route[port])--> owned by a module (listener, source,
 *               |                                         stage member) through its conn_ops
 *               \--(deadline, bad head)---------------> RESPONSE 400/431 or close
 *   RESPONSE --(sent)--> LINGER --(peer closes or 2 s)--> closed
 *   RESPONSE --(a document, kept alive)--> HEAD again, under the same head deadline
 *
 * Keep-alive is only for a GET or HEAD without a body whose client asked for it in so many
 * words ("Connection: keep-alive": browsers and rostrum-load do) and only for the documents of
 * conn_respond_doc: a page's ticket (/join) then its stream, or its state polls, need one
 * connection, not one each. An idle kept connection is closed at the head deadline like a slow
 * head, so it holds no more than one, and errors and refusals always close.
 *
 * A module that takes a connection sets <ops> (its close and free hooks) and keeps its own
 * state in <priv> (CONN_PRIV); this layer never looks inside. Closing never frees inside a
 * callback: a closed connection is unregistered, its fd closed, and it waits on the zombie
 * list until the loop is about to sleep (Redis's freeClientAsync), so an event for it later
 * in the same epoll batch finds it marked dead.
 *
 * Deadlines: heads, responses and lingers each sit in a FIFO in the order they entered it; the
 * housekeeping tick closes from the front until it meets one still in time.
 */
#ifndef ROSTRUM_CONN_CONN_H
#define ROSTRUM_CONN_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "event/loop.h"
#include "limits/limits.h"
#include "shm/shared.h"
#include "util/buf.h"
#include "util/list.h"

struct http_request;
struct conn;
struct tls_conn;
struct tls_ctx;
struct iovec;

enum port_kind { PORT_AUDIENCE, PORT_STAGE, PORTS };
enum conn_state { CONN_HEAD, CONN_RESPONSE, CONN_LINGER, CONN_OWNED };

/* What the module that owns a connection does when it is closed (before its fd goes) and
 * freed (before the loop sleeps). Either may be NULL. */
struct conn_ops {
    const char *name;
    void (*close)(struct conn *c);
    void (*free)(struct conn *c);
};

/* Answers a parsed request head on <c> (borrowed: valid during the call). */
typedef void (*conn_route_fn)(void *arg, struct conn *c, const struct http_request *req);

#define CONN_PRIV_BYTES 104

struct conn {
    struct io io;
    struct conn_hub *hub;
    const struct conn_ops *ops; /* the owner's, once taken; NULL before */
    uint64_t id;
    uint8_t state;         /* enum conn_state */
    uint8_t port;          /* enum port_kind */
    uint8_t dead;
    uint8_t trusted;       /* from a trusted proxy: X-Forwarded-For names the client */
    uint8_t head_method;   /* the request is a HEAD: conn_respond sends no body */
    uint8_t tls_handshake; /* TLS, handshake not finished (still in CONN_HEAD) */
    uint8_t keep;          /* this request may keep the connection (conn_respond_doc's 200) */
    uint8_t kept;          /* in CONN_HEAD again after a kept-alive response */
    uint32_t lim;          /* 1 + its entry in hub->limits, 0 if untracked */
    struct list_node node; /* a deadline FIFO, or the owner's list; zombies */
    int64_t since_ms;      /* when it entered its current list: deadlines count from here */
    char peer[48];
    struct tls_conn *tls; /* owned: a TLS connection's state, NULL for plain */
    union {
        struct { /* CONN_HEAD */
            char *buf;
            uint32_t len, cap, scanned;
        } head;
        struct { /* CONN_RESPONSE, CONN_LINGER */
            struct buf out;
            size_t off;
        } resp;
        /* CONN_OWNED: the owner's state (its struct, checked to fit where it is defined) */
        _Alignas(8) unsigned char priv[CONN_PRIV_BYTES];
    };
};

/* The owner's state of <c>, as <type> (which must fit CONN_PRIV_BYTES: see CONN_PRIV_FITS). */
#define CONN_PRIV(c, type) ((type *)(void *)(c)->priv)
#define CONN_PRIV_FITS(type) \
    _Static_assert(sizeof(type) <= CONN_PRIV_BYTES, #type " does not fit struct conn")

/* The connections of one process and what they may hold. Owned by the process (embedded in
 * its struct); the limits table and the spare descriptor are its own. */
struct conn_hub {
    struct loop *loop;
    struct list_node heads;     /* reading a head, oldest first */
    struct list_node lingers;   /* draining input before close, oldest first */
    struct list_node responses; /* writing a response, oldest first */
    struct list_node zombies;   /* closed, freed before the loop sleeps */
    struct addr_table limits;   /* per client address: connections, joins */
    struct addr_key trusted[16]; /* proxies whose X-Forwarded-For is believed */
    int ntrusted;
    uint64_t next_id;
    int spare_fd; /* kept open so EMFILE can be survived: see accept */
    int head_timeout_ms;
    int response_timeout_ms;
    int max_conns_per_ip;
    struct shared_counters *counters[PORTS];
    conn_route_fn route[PORTS];
    void *route_arg[PORTS];
    /* Out of descriptors on <port>: free some if the process can (shed stalled listeners). */
    void (*on_fd_limit)(void *arg, int port);
    void *on_fd_limit_arg;
};

/* Sets up <hub> for <loop>: empty lists, the limits table, the spare descriptor. */
void conn_hub_init(struct conn_hub *hub, struct loop *loop);
/* Closes every connection still in a head, response or linger, and frees the zombies. */
void conn_hub_close_all(struct conn_hub *hub);
void conn_hub_free(struct conn_hub *hub);
/* Parses a comma-separated list of proxy addresses into hub->trusted. Returns 0 or -EINVAL. */
int conn_hub_set_trusted(struct conn_hub *hub, const char *list);
/* 1 if <k> is a trusted proxy: exempt from per-address limits, its X-Forwarded-For believed. */
int conn_hub_trusted(const struct conn_hub *hub, const struct addr_key *k);
/* A listening socket of a hub. */
struct conn_port {
    struct io io;
    struct conn_hub *hub;
    int port; /* enum port_kind */
    struct tls_ctx *tls; /* borrowed: accept TLS on this socket; NULL = plain */
};

/* Listens on <host>:<tcp_port> for <port> connections, accepting into <hub>; the address
 * it got (port 0 picks one) goes to <addr>. Returns 0, or -1 after logging why. */
int conn_listen(struct conn_hub *hub, struct conn_port *lp, int port, const char *host,
                uint16_t tcp_port, int reuseport, char *addr, size_t addr_cap);
/* The same for a listening socket <fd> handed over by another process. Returns 0 or -1. */
int conn_listen_fd(struct conn_hub *hub, struct conn_port *lp, int port, int fd);
/* Takes <fd>, a plain connection handed over by another process (an upgrade), as if just
 * accepted on <port>: in HEAD, counted for its address (never refused), for an owner to
 * conn_take at once. Returns NULL (fd closed) if the peer is gone or the loop refuses it. */
struct conn *conn_adopt(struct conn_hub *hub, int fd, int port);
/* Stops accepting on <lp> (its socket stays open, queuing connections for whoever takes it
 * next), or starts again. */
void conn_port_pause(struct conn_port *lp, int paused);
/* Closes connections past their deadline (the tick calls it). */
void conn_hub_expire(struct conn_hub *hub);
/* Frees closed connections: call before the loop sleeps. */
void conn_hub_free_zombies(struct conn_hub *hub);

/* The I/O seam: every read and write of a connection's bytes goes through these, plain or
 * TLS, with the socket calls' contract (-1 and errno, EAGAIN when it would block).
 * conn_recv: >0, 0 at the end of the stream, -1. conn_writev: bytes taken, or -1. After a
 * write, conn_write_pending(c) is 1 if bytes counted as taken still wait in user space (TLS
 * without kTLS): wait for EPOLLOUT and write again (an empty conn_writev flushes them). */
ssize_t conn_recv(struct conn *c, void *buf, size_t len);
ssize_t conn_writev(struct conn *c, const struct iovec *iov, int n);
int conn_write_pending(const struct conn *c);
/* For a peer that has nothing to say (a listener, a replay reader): reads what it sent and
 * throws it away, a few KiB a call at most. Returns -1 if it left (end of stream or an
 * error), else 0. */
int conn_discard_input(struct conn *c);
/* 1 if bytes already received for <c> wait in user space (TLS: inside OpenSSL), where epoll
 * does not see them: a reader that stopped before conn_recv said EAGAIN (a read budget) must
 * come back by itself (loop_post). Plain sockets: 0, epoll reports what is left. */
int conn_read_buffered(const struct conn *c);

/* Counters for connections on the port of <c>. */
static inline struct shared_counters *conn_counters(const struct conn *c)
{
    return c->hub->counters[c->port];
}

/* Closes <c> (any state) and queues it for freeing before the loop sleeps. Idempotent. */
void conn_close(struct conn *c);
/* Queues <out> (taken) as the whole response of <c>, then closes gracefully. For a HEAD
 * request, only the head of <out> is sent (RFC 9110 9.3.2), whoever built it. */
void conn_respond(struct conn *c, struct buf *out);
/* Sends a short error response with <status>, an optional extra header line (without CRLF, or
 * NULL) and <message> (never NULL), then closes. */
void conn_error(struct conn *c, int status, const char *extra_header, const char *message);
/* A document: full body for GET, head only for HEAD. Kept alive if the request may be (see
 * above): the connection then reads the next request head. */
void conn_respond_doc(struct conn *c, int head_only, const char *type, const void *body,
                      size_t len, const char *extra);
/* Half-closes <c> and drains what the peer still sends for a moment before closing, so it
 * reads everything we sent (a WebSocket close frame, say) instead of a reset. */
void conn_linger(struct conn *c);
/* Hands <c>, in HEAD, to an owner: frees the head buffer, takes it off the deadline list and
 * sets its ops. The owner's state in <priv> is zeroed. */
void conn_take(struct conn *c, const struct conn_ops *ops);

#endif
