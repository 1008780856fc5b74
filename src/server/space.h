/*
 * space: one live mount. It owns rostrum's own Ogg stream for the mount (the muxer), the page
 * ring listeners read, the preamble every newcomer gets first, and the list of listeners.
 *
 * Life of a space:
 *
 *   source connects --> WAITING (no OpusHead yet: 404 to listeners)
 *                          | first OpusHead
 *                          v
 *                        LIVE  <---------- source reconnects (same channel count) ----+
 *                          | source drops or fails                                     |
 *                          v                                                           |
 *                        GRACE: silence keeps the timeline going, listeners stay ------+
 *                          | grace-ms passes with no source
 *                          v
 *                        ended: listeners closed, space freed
 *
 * A new source whose OpusHead cannot continue the stream (another channel count) restarts it:
 * current listeners are closed (their players reconnect and get the new headers), as a
 * chained Ogg stream is what browsers handle worst.
 */
#ifndef ROSTRUM_SERVER_SPACE_H
#define ROSTRUM_SERVER_SPACE_H

#include <stdint.h>

#include "event/loop.h"
#include "ogg/demux.h"
#include "ring/ring.h"
#include "server/server.h"
#include "util/buf.h"
#include "util/list.h"

struct ogg_mux;

/* What the source announced in its ice-* headers; shown in icy-* headers and status. */
struct space_meta {
    char name[128], description[256], genre[64], url[256], bitrate[16];
};

struct space {
    struct server *srv;
    struct list_node node;              /* in srv->spaces */
    char mount[64];                     /* without the leading '/' */
    const struct space_config *cfg;     /* may be NULL */
    struct space_meta meta;
    struct ring *ring;
    struct ogg_mux *mux;                /* NULL until the first OpusHead */
    struct opus_head_info head;
    uint32_t serial;
    struct buf preamble;                /* HTTP response head + Ogg header pages */
    size_t preamble_http_len;
    uint32_t preamble_gen;
    struct conn *source;                /* NULL in grace */
    struct loop_timer fill;             /* 20 ms silence filler while in grace */
    int64_t gone_ms;                    /* when the source left */
    uint64_t gone_granule;
    unsigned char silence[64];
    int silence_len;
    struct list_node listeners;         /* struct conn.node of CONN_LISTENER */
    uint32_t nlisteners;
    uint32_t listener_peak;
    uint32_t receiving_cached;
    int64_t receiving_at_ms;
    int dirty;                          /* pages published since the last flush */
    int64_t stream_start_wall;
    uint64_t pages_published;
};

/* Finds a live space by mount name (no leading '/'), or NULL. */
struct space *space_find(struct server *srv, const char *mount);
/* Creates an empty space for <mount> (no source yet). Never fails (aborts on OOM). */
struct space *space_create(struct server *srv, const char *mount);
/* Ends <sp>: closes its listeners (and source), frees it. */
void space_end(struct space *sp, enum close_reason why);

/* Source events. */
void space_source_attach(struct space *sp, struct conn *src, const struct space_meta *meta);
void space_source_detach(struct space *sp, const char *why);
int space_on_head(struct space *sp, const struct opus_head_info *head);
void space_on_packet(struct space *sp, const unsigned char *pkt, size_t len, int samples);

/* 1 if listeners can join: the stream's headers are known. */
int space_listenable(const struct space *sp);
/* Listeners that received a byte in the last 5 s (computed at most once a second). */
uint32_t space_receiving(struct space *sp);
/* Writes pending pages to every listener that can take them (called before sleep). */
void space_flush(struct space *sp);
/* Housekeeping every tick: closes stuck listeners. */
void space_tick(struct space *sp);

/* The effective settings for this space. */
int space_burst_ms(const struct space *sp);
int space_grace_ms(const struct space *sp);

#endif
