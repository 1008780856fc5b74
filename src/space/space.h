/*
 * space: one live mount, main-process side. It owns rostrum's own Ogg stream for the mount
 * (the muxer) and writes the mount's slot in the shared table: its page ring, its preamble
 * (what every newcomer gets first) and what status shows. Listeners live in the audience
 * processes and only read the slot.
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
 *                        ended: slot freed (listeners closed by their processes)
 *
 * A new source whose OpusHead cannot continue the stream (another channel count) restarts it
 * under a new slot generation: current listeners are closed (their players reconnect and get
 * the new headers), as a chained Ogg stream is what browsers handle worst.
 */
#ifndef ROSTRUM_SPACE_SPACE_H
#define ROSTRUM_SPACE_SPACE_H

#include <stdint.h>

#include "event/loop.h"
#include "ogg/demux.h"
#include "proc/server.h"
#include "shm/shared.h"
#include "util/list.h"

struct ogg_mux;

struct space {
    struct server *srv;
    struct list_node node;              /* in srv->spaces */
    int slot;                           /* index in the shared table */
    struct shared_space *ss;            /* = &srv->sh->spaces[slot] */
    struct ring *ring;                  /* the slot's ring */
    const struct space_config *cfg;     /* may be NULL */
    struct space_meta meta;             /* as the source sent it */
    struct ogg_mux *mux;                /* NULL until the first OpusHead */
    struct opus_head_info head;
    uint32_t serial;
    struct conn *source;                /* NULL in grace */
    struct loop_timer fill;             /* 20 ms silence filler while in grace */
    int64_t gone_ms;                    /* when the source left */
    int64_t fill_from_ms;               /* silence is due from here ... */
    uint64_t fill_from_granule;         /* ... at this granule */
    int64_t last_packet_ms;             /* when the last source packet arrived */
    unsigned char silence[64];
    int silence_len;
    struct stage *stage;                /* a stage space: the mixer feeds the stream */
};

/* Finds a space by mount name (no leading '/'), or NULL. */
struct space *space_find(struct server *srv, const char *mount);
/* Creates an empty space for <mount> (no source yet) in a free slot; NULL if none is free. */
struct space *space_create(struct server *srv, const char *mount);
/* Ends <sp>: drops its source, frees its slot (listeners are closed by their processes). */
void space_end(struct space *sp, enum close_reason why);

/* Source events. */
void space_source_attach(struct space *sp, struct conn *src, const struct space_meta *meta);
void space_source_detach(struct space *sp, const char *why);
int space_on_head(struct space *sp, const struct opus_head_info *head);
void space_on_packet(struct space *sp, const unsigned char *pkt, size_t len, int samples);

/* Publishes the stage's state document to the audience processes. */
void space_set_state(struct space *sp, const char *json, size_t len);

/* Keeps the slot's listener peak from the workers' counts (once a second). */
void space_update_peak(struct space *sp);

#endif
