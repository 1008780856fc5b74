/*
 * relay: the upstream client of `rostrum relay` (issue 10). It runs in the main process's
 * event loop in place of the stage port and the sources: it finds the upstream's live spaces,
 * pulls each one's feed (relay/feedproto.h) and writes its pages, with the upstream's own
 * sequence numbers, into the local space's ring, so that the listener workers serve them
 * exactly as an origin's.
 *
 *   every 1 s: GET /relay.json --(a space appears)--> relay_feed: GET /<space>?relay=1&from=N
 *              (a space is gone) --> space_end        |  HEADER: same (serial, epoch) and
 *                                                     |  start == N? resume : restart stream
 *                                                     |  PAGE seq == N --> ring, N++
 *                                                     v
 *   cut (EOF, reset, bad frame, stalled, no answer in 3 s; 1.5 s in a fail-over while an untried upstream remains)
 *     --> back-off (jittered, 50 ms doubling to 3 s) --> the next upstream of the list
 *         (fail-over; with one upstream, the same) --> GET ...&from=N again
 *
 * Stalled: no page nor keepalive for 2 page intervals (at least RELAY_STALL_MIN_MS). The
 * upstream sends a keepalive whenever it sent nothing for its keepalive interval, so silence
 * means the link; a keepalive that says the upstream is starved (a relay without a feed of the
 * space itself) counts as silence when there is another upstream to try.
 *
 * An upstream URL with a path (http://host:port/mount) names one mount: no index is polled;
 * if it answers with a feed it is a rostrum mount, if with an Ogg stream (a plain Icecast
 * server, or any HTTP Ogg/Opus stream) the relay demuxes it and muxes its own stream, as a
 * studio source would be (the stream restarts only if its channel count changes).
 *
 * An https:// upstream is the same exchange inside TLS (tls/tls.h's client: the chain checked
 * against relay-cafile or the system's store, the host name or address against the
 * certificate); a failed check is logged with its reason, and the relay tries again as after
 * any failed connection.
 *
 * Everything an upstream can make the relay hold is bounded: a response head of 8 KiB, an
 * index of 64 KiB, two feed frames of read buffer per feed.
 */
#ifndef ROSTRUM_RELAY_RELAY_H
#define ROSTRUM_RELAY_RELAY_H

#include <stdint.h>

#include "config/config.h"
#include "event/loop.h"
#include "space/space.h"
#include "util/buf.h"
#include "util/list.h"

#define RELAY_MAX_UPSTREAMS 8

struct relay_upstream {
    char host[256];
    uint16_t port;
    int tls;        /* https:// (the certificate is checked against relay-cafile) */
    char mount[64]; /* "" for a whole server; else the one mount it names */
    char url[600];  /* as given, for the log */
};

/* An HTTP exchange in progress (the index poll, or a feed's connection). */
struct relay_http {
    struct io io;
    struct tls_conn *tls; /* an https:// upstream's TLS connection (owned), NULL for http */
    struct loop_post again; /* TLS: read again, OpenSSL holds bytes epoll will not report */
    int state;            /* enum in relay.c */
    int up;               /* the upstream it talks to */
    int64_t started_ms;   /* connect() called */
    int64_t deadline_ms;  /* connect + answer by then */
    unsigned char *in;    /* read buffer, <cap> bytes (owned) */
    size_t len, cap;
    int status;           /* the answer's status, once its head is in */
    int kind;             /* enum in relay.c: feed, Ogg, other */
};

struct relay;

/* One space pulled from upstream. */
struct relay_feed {
    struct relay *r;
    struct list_node node; /* in relay->feeds */
    char mount[64];
    struct space *sp;      /* the local space, once the first header came; NULL before */
    struct relay_http h;
    int attempts;          /* failed tries since the last good connection */
    int got_header;        /* on this connection */
    int had_stream;        /* the space carries a relayed stream already */
    int listed;            /* seen in the last good index */
    int missing;           /* good indexes in a row that did not list it */
    int64_t last_page_ms;  /* the last page, or the start of this connection */
    int64_t last_alive_ms; /* the last page or fed keepalive, or the start of this connection */
    int64_t last_heard_ms; /* the last frame of any kind, or the start of this connection */
    int64_t interval_ms;   /* between pages, as they arrive (the longest lately) */
    int64_t keepalive_ms;  /* the upstream's promise (HEADER) */
    struct loop_timer retry; /* the back-off */
    struct loop_timer watch; /* stalls and deadlines, every 100 ms while connected */
    struct ogg_demux *dmx; /* a plain Ogg upstream: its demuxer */
    int64_t reported_ms;   /* the last REPORT sent upward; 0: report at once */
    uint64_t reported_ids; /* a digest of the (id, gen) pairs it listed */
    uint32_t gen;          /* this connection's feed generation (relay->gen when it began) */
};

struct tls_ctx;
struct tls_conn;

struct relay {
    struct loop *loop;
    struct tls_ctx *tls;      /* for https:// upstreams (owned), NULL if there is none */
    struct spaces *spaces;
    const struct config *cfg; /* relay-key, grace-ms */
    struct relay_upstream up[RELAY_MAX_UPSTREAMS];
    int nup;
    int mount_mode;           /* the URLs name one mount each: no index */
    struct relay_http index;  /* the index poll */
    int index_up;             /* the upstream it asks next */
    struct loop_timer poll;
    struct list_node feeds;   /* struct relay_feed.node */
    uint64_t id;              /* this process's identity in the tree's count (random, not 0) */
    uint32_t gen;             /* feed generations handed out (feedproto.h, REPORT) */
};

/* Parses a comma-separated list of http(s)://HOST:PORT[/MOUNT] into <r>'s upstreams. Returns 0,
 * or -1 with the reason in <err>. All must name a mount, or none. */
int relay_parse_upstreams(struct relay *r, const char *list, char *err, size_t errlen);
/* Starts pulling (set loop, spaces and cfg first). Returns 0, or -1 if https:// upstreams
 * were given and relay-cafile cannot be read (logged). */
int relay_start(struct relay *r);
/* Stops: every feed is closed, every relayed space ended. */
void relay_stop(struct relay *r);

#endif
