/*
 * audience: the audience port of one process (a listener worker, or the main process with
 * --workers 0): admission, listeners, the web pages, status and metrics, all read from the
 * shared table (shm/shared.h). It knows nothing of the main process's spaces or stage: what
 * it serves is what the shared table says.
 *
 *   conn (head parsed) --> audience_route --> asset / status / metrics / state document
 *                                        \--> admission --> listener (a cursor in a ring)
 */
#ifndef ROSTRUM_AUDIENCE_AUDIENCE_H
#define ROSTRUM_AUDIENCE_AUDIENCE_H

#include <stdint.h>

#include "config/config.h"
#include "audience/prequeue.h"
#include "conn/conn.h"
#include "event/loop.h"
#include "limits/limits.h"
#include "shm/shared.h"
#include "util/buf.h"
#include "util/list.h"

struct http_request;

/* Per-listener state: small and fixed, whatever the listener does (in its conn's priv). */
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
    uint8_t jump_due;     /* a laggard caught mid-page: finish the page, then jump */
    uint8_t sized;        /* its send buffer was fitted to the stream's bitrate */
    int64_t stall_window_ms;
    int64_t last_byte_ms; /* last time its socket accepted a byte */
    uint64_t bytes;       /* accepted by its socket */
    uint64_t acked;       /* of which the client has acknowledged (bytes - SIOCOUTQ) */
    int64_t acked_ms;     /* when <acked> last grew: "receiving audio" is judged on this */
    int64_t joined_ms;    /* loop clock at join: the access log's duration */
    uint8_t why;          /* enum close_reason + 1 once listener_close() knows; 0 = not yet */
    uint8_t gap;          /* from= could not be honoured: X-Rostrum-Gap says so */
    uint64_t first_seq;   /* ring seq of its first audio page (X-Rostrum-Seq) */
};
CONN_PRIV_FITS(struct listener_state);
#define LST(c) CONN_PRIV(c, struct listener_state)

/* The audience side of a process: listeners by slot, and when to write to them. Owned by the
 * process (embedded in its struct); set the borrowed fields, then audience_init. */
struct audience {
    /* borrowed from the process */
    struct conn_hub *hub;
    struct loop *loop;
    struct shared *sh;
    const struct config *cfg;
    const uint8_t *secret; /* verifies tickets (32 bytes) */
    int worker_index;      /* this process's block in the shared table */
    int64_t start_wall;    /* when the server started (status) */
    const char *addr;      /* the audience address, as status shows it */
    /* its own */
    struct list_node listeners[SHARED_MAX_SPACES]; /* struct conn.node */
    struct list_node feeds;                        /* relay feeds (feed.c), struct conn.node */
    uint32_t gen[SHARED_MAX_SPACES];               /* slot generations last seen */
    uint32_t nlisteners;
    uint32_t max_here; /* listeners this process may hold: its share and a bit, fds allowing */
    int64_t last_flush_ms;
    int64_t counted_ms; /* last count of who is receiving */
    struct loop_timer flush_timer;
    struct shared_worker *me; /* this process's block in the shared memory */
    struct bucket join_bucket; /* this process's listener joins */
    int join_rate;             /* their ceiling per second: joins-per-worker, or a share of
                                * joins-per-second */
    double next_admit_ms;      /* waiting room: the next free admission time (loop clock,
                                * fractional: 3,000/s is a ticket every 1/3 ms) */
    int64_t wall_offset_us;    /* waiting room: wall clock - loop clock, for admit times */
    struct prequeue prequeue[SHARED_MAX_SPACES]; /* issue 12: scheduled spaces' places */
    uint8_t continued;         /* took over its block from the worker before (upgrade) */
    /* Admission follows this process's own load (limits.h, struct overload): */
    struct overload overload;
    /* joins refused for overload and joins taken, each over about the last 5 s (decaying
     * sums): how long the refused need to be spread over to come back (backlog_retry_s) */
    double shed5, took5;
    int64_t pace_ms;
    /* the waiting room's pace here (joins a second), measured: it backs off while this
     * worker refuses joins for overload and comes back to its share of waiting-room-rate
     * while it keeps up (waiting_room_pace()); 0 until first used */
    double wr_pace;
    int64_t wr_cut_ms;
    int64_t flush_start_us;  /* start of the last flush round (monotonic us); 0: none yet */
    int64_t flush_period_us; /* between the starts of the last two rounds */
    int64_t flush_dur_us;    /* how long the last round took, wall time */
    struct list_node hls_waiting; /* held HLS requests (hls.c), oldest first */
    uint32_t hls_nwaiting;
    int access_fd;           /* the access log (cfg->access_log), O_APPEND; -1 = none */
    char access_path[256];   /* the path it was opened at */
    /* issue 11: HLS sessions live per slot, as last counted (beacon_counts()) */
    uint32_t hls[SHARED_MAX_SPACES];
    int64_t hls_counted_s;   /* the second they were counted for; -1 = never */
    /* issue 12, item 2: recordings being read (replay.c), struct conn.node */
    struct list_node replays;
    uint32_t nreplays;
};

/* The audience of the process that accepted <c>. */
static inline struct audience *audience_of(const struct conn *c)
{
    return c->hub->route_arg[PORT_AUDIENCE];
}

/* Admission, routing, flush scheduling, per-second upkeep (audience.c). */
void audience_init(struct audience *a);
/* The same for a worker that takes over the listeners of the one before it (an upgrade):
 * the block's counters carry on instead of starting from zero. */
void audience_init_continue(struct audience *a);
/* After a reload changed <a->cfg>: recomputes what audience_init derived from it (join
 * ceiling, listeners allowed here) and opens the access log again if its path changed. */
void audience_reconfigure(struct audience *a);
/* Opens the access log at cfg->access_log again (SIGUSR1: logrotate moved it), or closes it
 * if the path is empty. An error is logged and leaves no access log. */
void audience_reopen_log(struct audience *a);
/* Closes the access log (after audience_close_all, whose closes it records). */
void audience_free(struct audience *a);
/* Appends the access-log line of listener <c>, closed for <why> (a reason name). */
void audience_log_session(struct audience *a, const struct conn *c, const char *why);
/* The route of the audience port (conn_route_fn): <arg> is the struct audience. */
void audience_route(void *arg, struct conn *c, const struct http_request *req);
/* The slot of the live space <mount>, or -1. */
int audience_find(struct audience *a, const char *mount);
/* Pages were published: write them now or when the delivery interval says. */
void audience_on_wake(struct audience *a);
void audience_tick(struct audience *a, int second);
void audience_close_all(struct audience *a);
/* Closes up to <n> stalled listeners (socket full, nothing taken for a while) to free
 * descriptors; never a listener that is receiving audio. (conn_hub on_fd_limit.) */
void audience_on_fd_limit(void *arg, int port);
/* Updates this process's receiving counts now (status and metrics read them). */
void audience_count_now(struct audience *a);

/* The client of <req> on <c> (the address X-Forwarded-For names last if <c> is a trusted
 * proxy): its address key in <key>, <*known> 0 if there is none, and its entry in the limits
 * table (NULL: none to charge). */
struct addr_entry *audience_client(struct conn *c, const struct http_request *req,
                                   struct addr_key *key, int *known);

/* HLS players' beacons (beacon.c, issue 11). */
#define BEACON_EVERY_S 30 /* how often a player should beacon */
struct beacon_req {
    const char *sid; /* the session id (?sid=), NULL if none: a new session */
    size_t sid_len;
};
/* Parses a beacon's query string <q> (<len> bytes, untrusted: "sid=<id>", other parameters
 * ignored). Returns <len>, or -1 if it is invalid (sid empty, twice, too long, or of characters
 * no session id has). <out> points into <q>. */
int beacon_parse(const char *q, size_t len, struct beacon_req *out);
/* GET/POST /beacon/<mount> (<slot>: its slot, -1 if not live): counts the session and answers
 * with its id. */
void beacon_route(struct conn *c, const struct http_request *req, const char *mount, int slot);
/* Sessions live per slot, counted at most once a second. */
const uint32_t *beacon_counts(struct audience *a);

/* Reactions and raised hands (react.c, issue 12). */
enum react_op { REACT_OP_HELLO = 1, REACT_OP_UP, REACT_OP_DOWN, REACT_OP_ACCEPT, REACT_OP_KEEP };
struct react_req {
    int kind;           /* r=: index in shared_reaction_names, -1 if absent */
    int op;             /* op=: enum react_op, 0 if absent */
    const char *id;     /* id=: a listener id (inside the query), NULL if absent */
    size_t id_len;
    char name[SHARED_HAND_NAME]; /* name=, decoded: UTF-8 without controls; "" if absent */
};
/* Parses the query string <q> (<len> bytes, untrusted) of a reaction or hand request. Returns
 * <len>, or -1 if a known parameter is malformed, unknown in value, or given twice. */
int react_parse(const char *q, size_t len, struct react_req *out);
/* POST /react/<mount> or /hand/<mount> (<path>, decoded; <slot>: its slot, -1 if none). */
void react_route(struct conn *c, const struct http_request *req, const char *path, int slot);
/* Appends the reaction and hand counters to /metrics (<st>: the summed counters). */
void react_metrics(const struct shared *sh, const struct shared_counters *st, struct buf *b);

/* Listeners (listener.c). */
/* How a listener asked to start (issue 11): GET /<space>?from=SEQ resumes at ring page SEQ
 * (a player that reconnects), ?burst=MS asks for another burst than the space's. */
struct listener_join {
    int has_from;
    uint64_t from;
    int burst_ms; /* -1: the space's burst-ms */
};
/* Takes <c> as a listener of <slot> (<j> may be NULL: the defaults). The response head says
 * where its audio starts: X-Rostrum-Seq, the ring seq of its first audio page (its Ogg page
 * sequence number minus a constant of the stream), and X-Rostrum-Gap: 1 when from= was asked
 * but that page is gone (or too far ahead), so it starts at the burst instead. */
void listener_start(struct conn *c, int slot, int head_only, const struct listener_join *j);
void listener_flush(struct conn *c);
void listener_close(struct conn *c, enum close_reason why);

/* Upgrade: a listener as it moves from a worker to the one that replaces it, with its socket
 * (sent beside it). Only plain listeners move: a TLS session's keys live in its process. */
#define LISTENER_RECORD_VERSION 2 /* 2: first_seq and gap (issue 11) */
struct listener_record {
    struct listener_state st;
};
/* Fills <r> for listener <c>; returns 0, or -1 if <c> cannot move (not a listener, TLS). */
int listener_save(struct conn *c, struct listener_record *r);
/* Takes <fd> as the listener <r> describes, where it left off. Returns 0, or -1 (fd closed)
 * if its space is gone or restarted since. */
int listener_restore(struct audience *a, int fd, const struct listener_record *r);

/* Relay feeds (feed.c, issue 10): the upstream side of relay/feedproto.h. feed_start takes
 * <c>, admitted, as a feed of <slot> from page <from> if <has_from> and the ring still holds
 * it (else from a burst: the header says where); with <captions> the feed carries the space's
 * captions too (CAPTIONS frames). */
void feed_start(struct conn *c, int slot, int has_from, uint64_t from, int captions);
/* Writes what the feeds lack (on every wake: relays are not batched like listeners). */
void feed_flush_all(struct audience *a);
/* Every tick: keepalives, feeds whose relay stopped reading. */
void feed_tick(struct audience *a);
void feed_close_all(struct audience *a);

/* The tree's count and the relays below (issue 10, items 3-4). A relay's report older than
 * FEED_REPORT_AGE_MS (relay/feedproto.h) counts for nothing. */
/* Calls <fn> with every fresh report of every worker's relay table (rows of a live slot, of
 * the slot's current generation, younger than FEED_REPORT_AGE_MS), one copy at a time. */
void feed_relays_each(struct audience *a, void (*fn)(void *arg, const struct shared_relay *r),
                      void *arg);
/* Listeners of slot <i> receiving audio in the whole tree below this server: its own
 * (all workers) plus its relays' fresh reports. */
uint32_t feed_tree_listeners(const struct shared *sh, int i);
/* If a relay has room for a listener of slot <slot>, writes "Location: URL<path>[?query]"
 * for <req> into <hdr> and returns 1; else 0. Chosen at random weighted by room (capacity
 * minus connections), among relays not draining and not overloaded, so that newcomers spread
 * over the edges between their reports instead of all going to the emptiest one. */
int feed_pick_edge(struct audience *a, int slot, const struct http_request *req, char *hdr,
                   size_t cap);

/* HLS and LL-HLS (hls.c, issue 11): answers <req> for <path> (decoded) if it is an HLS
 * route and returns 1; else 0. Held requests are answered by hls_on_wake (pages were
 * published) or refused by hls_tick (held too long). */
int hls_route(struct audience *a, struct conn *c, const struct http_request *req, const char *path);
void hls_on_wake(struct audience *a);
void hls_tick(struct audience *a);
void hls_close_all(struct audience *a);
/* Appends the HLS metrics (counters summed in <st>). */
void hls_metrics(struct audience *a, struct buf *b, const struct shared_counters *st);

/* Replay of recordings (replay.c, issue 12 item 2): answers /recordings.json and
 * /recordings/ID.{ogg,json} and returns 1; else 0. replay_tick closes reads that took
 * nothing for response-timeout-ms. */
int replay_route(struct audience *a, struct conn *c, const struct http_request *req,
                 const char *path, int head_only);
void replay_tick(struct audience *a);
/* A recording as HLS VOD (vod.c): <rest> is what follows "/recordings/"; 1 if answered. */
int vod_route(struct audience *a, struct conn *c, const char *rest, int head_only);

/* Live captions (captions.c, issue 12): GET /<space>.captions.json[?since=ID], the cues the
 * space's recogniser made (captions/captions.h). Returns 1 if <path> was that route (answered),
 * 0 if not. */
int captions_route(struct audience *a, struct conn *c, const struct http_request *req,
                   const char *path, int head_only);
void replay_close_all(struct audience *a);

/* Documents (status.c). */
void status_json(struct audience *a, struct buf *out);
void status_metrics(struct audience *a, struct buf *out);
/* Main process, once a second: appends a sample of the shared figures, taken at <wall_ms>, to
 * the dashboard's history (struct shared_history). */
void status_sample(struct shared *sh, int64_t wall_ms);
/* /dashboard.json: the history as one series per figure, rates made of neighbouring samples. */
void status_dashboard(struct audience *a, struct buf *out);

#endif
