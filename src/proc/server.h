/*
 * server: one process of `rostrum serve`. The main process runs ingest (the stage port, the
 * spaces, their muxers) and supervises W listener workers; each worker serves the audience
 * port (listeners, web page, status, metrics) from the shared page rings (shared.h). With
 * --workers 0 the main process serves the audience port itself, through the same code.
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
#ifndef ROSTRUM_PROC_SERVER_H
#define ROSTRUM_PROC_SERVER_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "event/loop.h"
#include "limits/limits.h"
#include "config/config.h"
#include "shm/shared.h"
#include "util/buf.h"
#include "util/list.h"

struct space;
struct member;
struct ogg_demux;
struct http_request;

enum conn_kind { CONN_HEAD, CONN_RESPONSE, CONN_LINGER, CONN_LISTENER, CONN_SOURCE, CONN_WS };
enum port_kind { PORT_AUDIENCE, PORT_STAGE };

/* Per-listener state: small and fixed, whatever the listener does. */
struct listener_state {
    uint16_t slot;        /* its space's slot in the shared table */
    uint8_t head_only;    /* a HEAD request: preamble's HTTP part only, then close */
    uint8_t blocked;      /* socket full: EPOLLOUT armed, wait for it */
    uint32_t gen;         /* the slot's generation when it joined */
    uint64_t cursor;      /* next ring page to send */
    uint32_t page_off;    /* bytes of page <cursor> already sent */
    uint32_t pre_off;     /* bytes of the preamble (HTTP head + Ogg headers) sent */
    uint32_t pre_gen;     /* preamble generation it is sending */
    uint8_t stalls;       /* stalls in the current window */
    int64_t stall_window_ms;
    int64_t last_byte_ms; /* last time its socket accepted a byte */
    uint64_t bytes;       /* accepted by its socket */
    uint64_t acked;       /* of which the client has acknowledged (bytes - SIOCOUTQ) */
    int64_t acked_ms;     /* when <acked> last grew: "receiving audio" is judged on this */
};

struct source_state {
    struct space *space;
    struct ogg_demux *demux;
    int input; /* mixer input when the space is a stage, else -1 */
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
    uint8_t trusted;       /* from a trusted proxy: X-Forwarded-For names the client */
    uint32_t lim;          /* 1 + its entry in srv->limits, 0 if untracked */
    struct list_node node; /* heads FIFO / linger FIFO / slot listeners / zombies */
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
        struct member *ws_member; /* CONN_WS: a stage member (stage.c) */
    };
};

/* The audience side of a process: listeners by slot, and when to write to them. */
struct audience {
    struct list_node listeners[SHARED_MAX_SPACES]; /* struct conn.node */
    uint32_t gen[SHARED_MAX_SPACES];               /* slot generations last seen */
    uint32_t nlisteners;
    uint32_t max_here; /* listeners this process may hold: its share and a bit, fds allowing */
    int64_t last_flush_ms;
    int64_t counted_ms; /* last count of who is receiving */
    struct loop_timer flush_timer;
    struct shared_worker *me; /* this process's block in the shared memory */
    /* Admission follows this process's own load (limits.h, struct overload): */
    struct overload overload;
    int64_t flush_start_us;  /* start of the last flush round (monotonic us); 0: none yet */
    int64_t flush_period_us; /* between the starts of the last two rounds */
    int64_t flush_dur_us;    /* how long the last round took, wall time */
};

struct worker_proc {
    pid_t pid;
    int wake_fd;       /* eventfd the main process writes when pages are published */
    int64_t started_ms;
    struct loop_timer respawn;
};

struct server {
    struct loop loop;
    struct config cfg;
    struct shared *sh;
    int is_worker;            /* 1 in a listener worker */
    int serves_audience;      /* worker, or main with --workers 0 */
    int worker_index;         /* this process's shared_worker block (audience side) */
    struct io audience, stage, signals, wake;
    int audience_reserve_fd;  /* main: bound, not listening: holds the port for the workers */
    char audience_addr[300], stage_addr[300];
    struct list_node spaces;  /* main: struct space.node */
    struct list_node heads;   /* connections reading a head, oldest first */
    struct list_node lingers; /* connections draining input before close, oldest first */
    struct list_node zombies; /* closed, freed before the loop sleeps */
    struct loop_timer tick;   /* housekeeping, every 250 ms */
    int64_t last_second_ms;
    uint64_t next_id;
    int spare_fd;             /* kept open so EMFILE can be survived: see accept */
    int64_t start_wall;       /* time(NULL) at start */
    uint8_t secret[32];       /* signs tokens; random per start */
    int published;            /* main: pages published since workers were last woken */
    struct audience aud;
    struct addr_table limits;     /* per client address: connections, joins */
    struct addr_key trusted[16];  /* proxies whose X-Forwarded-For is believed */
    int ntrusted;
    struct bucket join_bucket;    /* this process's listener joins */
    int64_t next_admit_ms;        /* waiting room: the next free admission time */
    struct worker_proc workers[SHARED_MAX_WORKERS];
};

/* Counters for connections on <port> of this process. */
struct shared_counters *server_counters(struct server *srv, int port);

/* Sets up the main process from <srv->cfg>: listening sockets, shared memory, workers.
 * Prints errors to stderr. Returns 0 or -1. */
int server_init(struct server *srv);
/* Runs until SIGTERM/SIGINT, then closes everything (and stops the workers). */
void server_run(struct server *srv);
void server_free(struct server *srv);

/* Closes <c> (any kind) and queues it for freeing before the loop sleeps. Idempotent. */
void conn_close(struct conn *c);
/* Queues <out> (taken) as the whole response of <c>, then closes gracefully. */
void conn_respond(struct conn *c, struct buf *out);
/* Sends a short error response with <status> and an optional extra header line (without
 * CRLF, or NULL), then closes. */
void conn_error(struct conn *c, int status, const char *extra_header, const char *message);
/* A document: full body for GET, head only for HEAD. */
void conn_respond_doc(struct conn *c, int head_only, const char *type, const void *body,
                      size_t len, const char *extra);
/* Half-closes <c> and drains what the peer still sends for a moment before closing, so it
 * reads everything we sent (a WebSocket close frame, say) instead of a reset. */
void conn_linger(struct conn *c);
/* Leaves the HEAD state: frees the head buffer, off the deadline list. */
void conn_head_done(struct conn *c);

/* 1 if <k> is a trusted proxy: exempt from per-address limits, its X-Forwarded-For believed. */
int server_trusted(const struct server *srv, const struct addr_key *k);

/* Common connection plumbing used by every process (server.c). */
void server_common_init(struct server *srv);
int server_listen(struct server *srv, struct io *io, const char *host, uint16_t port,
                  int reuseport, char *addr, size_t addr_cap);
void server_close_conns(struct server *srv);
void server_free_zombies(struct server *srv);
void server_expire(struct server *srv);

/* Audience side (audience.c): routing, flush scheduling, per-second upkeep. */
void audience_init(struct server *srv);
void audience_route(struct conn *c, const struct http_request *req);
void audience_on_wake(struct server *srv);
void audience_tick(struct server *srv, int second);
void audience_close_all(struct server *srv);
/* Closes up to <n> stalled listeners (socket full, nothing taken for a while) to free
 * descriptors; never a listener that is receiving audio. */
void audience_shed_stalled(struct server *srv, int n);
/* Updates this process's receiving counts now (status and metrics read them). */
void audience_count_now(struct server *srv);

/* Listener side (listener.c). */
void listener_start(struct conn *c, int slot, int head_only);
void listener_flush(struct conn *c);
void listener_close(struct conn *c, enum close_reason why);
void listener_on_io(struct loop *loop, struct io *io, uint32_t events);

/* Source side (source.c): the head of a PUT/SOURCE request has been parsed. */
void source_accept(struct conn *c, const struct http_request *req);
void source_on_io(struct loop *loop, struct io *io, uint32_t events);
/* Drops the source of <sp> if it has sent nothing for <timeout_ms>. */
void source_check_idle(struct space *sp, int64_t timeout_ms);
/* 1 if <m> is a valid mount name: 1-63 of [A-Za-z0-9._-], not starting with '.'. */
int mount_name_ok(const char *m);

/* The stage port's API and WebSocket entry (stage/api.c). */
void api_route(struct conn *c, const struct http_request *req);

/* Workers (worker.c): start, supervise, stop; the worker's own main loop. */
int workers_start(struct server *srv);
void workers_on_child_exit(struct server *srv);
void workers_wake(struct server *srv);
void workers_stop(struct server *srv);

/* Documents (status.c, web.c). */
void status_json(struct server *srv, struct buf *out);
void status_metrics(struct server *srv, struct buf *out);
int web_asset(const char *path, const unsigned char **data, size_t *len, const char **type);

#endif
