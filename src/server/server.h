/*
 * server: the main process of `rostrum serve`: two listening ports, the connections on them,
 * the spaces (one per mount) and the counters behind /metrics.
 *
 * A connection starts reading its request head and becomes one of:
 *
 *   accept --> HEAD --(GET /mount)-----------> LISTENER  (audience port; until it or we close)
 *               |  \--(PUT|SOURCE /mount)----> SOURCE    (stage port; feeds a space)
 *               |  \--(anything else)--------> RESPONSE  (one response, then LINGER, close)
 *               \--(deadline, bad head)------> RESPONSE 400/431 or close
 *
 * Closing never frees inside a callback: a closed connection is unregistered, its fd closed,
 * and it waits on the zombie list until the loop is about to sleep (as Redis's freeClientAsync),
 * so an event for it later in the same epoll batch finds it marked dead.
 */
#ifndef ROSTRUM_SERVER_SERVER_H
#define ROSTRUM_SERVER_SERVER_H

#include <stdint.h>
#include <sys/socket.h>

#include "event/loop.h"
#include "ogg/demux.h"
#include "server/config.h"
#include "util/buf.h"
#include "util/list.h"

struct space;
struct ogg_demux;

enum conn_kind { CONN_HEAD, CONN_RESPONSE, CONN_LINGER, CONN_LISTENER, CONN_SOURCE };
enum port_kind { PORT_AUDIENCE, PORT_STAGE };

/* Outcomes of a listener join, labels of rostrum_joins_total. */
enum join_outcome { JOIN_OK, JOIN_NOT_FOUND, JOIN_BAD_REQUEST, JOIN_REFUSED, JOIN_OUTCOMES };

/* Why a listener was closed, labels of rostrum_listener_closes_total. */
enum close_reason {
    CLOSE_PEER,      /* the client went away */
    CLOSE_TOO_SLOW,  /* stalled max-stalls times */
    CLOSE_STUCK,     /* no byte accepted by its socket for a long time */
    CLOSE_MOUNT_END, /* the mount ended (grace ran out, or shutdown) */
    CLOSE_RESTART,   /* the stream had to restart (incompatible new source) */
    CLOSE_ERROR,     /* socket error */
    CLOSE_REASONS
};

/* Per-listener state: small and fixed, whatever the listener does. */
struct listener_state {
    struct space *space;
    uint64_t cursor;      /* next ring page to send */
    uint32_t page_off;    /* bytes of page <cursor> already sent */
    uint32_t pre_off;     /* bytes of the space's preamble (HTTP head + Ogg headers) sent */
    uint32_t pre_gen;     /* preamble generation it started on */
    uint8_t head_only;    /* a HEAD request: preamble's HTTP part only, then close */
    uint8_t blocked;      /* socket full: EPOLLOUT armed, wait for it */
    uint8_t stalls;       /* stalls in the current window */
    int64_t stall_window_ms;
    int64_t last_byte_ms; /* last time its socket accepted a byte */
    uint64_t bytes;
};

struct source_state {
    struct space *space;
    struct ogg_demux *demux;
    int64_t last_byte_ms;
    uint64_t bytes;
};

struct conn {
    struct io io;
    struct server *srv;
    uint64_t id;
    uint8_t kind;  /* enum conn_kind */
    uint8_t port;  /* enum port_kind */
    uint8_t dead;
    struct list_node node; /* heads FIFO / linger FIFO / space listeners / zombies */
    int64_t since_ms;      /* when it entered its current list: deadlines count from here */
    char peer[48];
    union {
        struct { /* CONN_HEAD */
            char *buf;
            uint32_t len, cap, scanned;
        } head;
        struct { /* CONN_RESPONSE */
            struct buf out;
            size_t off;
        } resp;
        struct listener_state l;
        struct source_state src;
    };
};

struct server_stats {
    uint64_t joins[JOIN_OUTCOMES];
    uint64_t listener_closes[CLOSE_REASONS];
    uint64_t stalls;
    uint64_t bytes_sent;
    uint64_t pages_published;
    uint64_t source_connects;
    uint64_t source_drops;
    uint64_t requests;
    uint64_t bad_requests;   /* 400 */
    uint64_t heads_too_large;/* 431 */
    uint64_t head_timeouts;
    uint64_t refused_fd_limit;
    uint64_t listener_connections; /* gauge */
    uint64_t sources_connected;    /* gauge */
};

struct server {
    struct loop loop;
    struct config cfg;
    struct io audience, stage, signals;
    char audience_addr[300], stage_addr[300];
    struct list_node spaces;  /* struct space.node */
    struct list_node heads;   /* connections reading a head, oldest first */
    struct list_node lingers; /* connections draining input before close, oldest first */
    struct list_node zombies; /* closed, freed before the loop sleeps */
    struct loop_timer tick;   /* housekeeping, every 250 ms */
    uint64_t next_id;
    int spare_fd;             /* kept open so EMFILE can be survived: see accept */
    int64_t start_wall;       /* time(NULL) at start */
    struct server_stats st;
};

/* Sets up the listening sockets from <srv->cfg>; prints errors to stderr. Returns 0 or -1. */
int server_init(struct server *srv);
/* Runs until SIGTERM/SIGINT, then closes everything. */
void server_run(struct server *srv);
void server_free(struct server *srv);

/* Closes <c> (any kind) and queues it for freeing before the loop sleeps. Idempotent. */
void conn_close(struct conn *c);

/* Queues <out> (taken) as the whole response of <c>, then closes gracefully. */
void conn_respond(struct conn *c, struct buf *out);

/* Sends a short error response with <status> and an optional extra header line (without
 * CRLF, or NULL), then closes. */
void conn_error(struct conn *c, int status, const char *extra_header, const char *message);

/* Listener side (listener.c). */
void listener_start(struct conn *c, struct space *sp, int head_only);
void listener_flush(struct conn *c);
void listener_close(struct conn *c, enum close_reason why);
void listener_on_io(struct loop *loop, struct io *io, uint32_t events);

/* Source side (source.c): the head of a PUT/SOURCE request has been parsed. */
struct http_request;
void source_accept(struct conn *c, const struct http_request *req);
void source_on_io(struct loop *loop, struct io *io, uint32_t events);
/* Drops the source of <sp> if it has sent nothing for <timeout_ms>. */
void source_check_idle(struct space *sp, int64_t timeout_ms);
/* 1 if <m> is a valid mount name: 1-63 of [A-Za-z0-9._-], not starting with '.'. */
int mount_name_ok(const char *m);

/* Responses that are documents (status.c, web.c). */
void status_json(struct server *srv, struct buf *out);
void status_metrics(struct server *srv, struct buf *out);
/* Finds a static web file for <path>; returns 0 and its bytes and type, or -1. */
int web_asset(const char *path, const unsigned char **data, size_t *len, const char **type);

#endif
