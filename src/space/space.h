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
 *
 * A relayed space (rostrum relay, issue 10) has no source and no muxer: the relay gives it
 * the upstream's header pages and pages as they are (space_relay_begin, space_relay_page),
 * with the upstream's sequence numbers; a stream that changed upstream restarts it the same
 * way, under a new slot generation.
 */
#ifndef ROSTRUM_SPACE_SPACE_H
#define ROSTRUM_SPACE_SPACE_H

#include <stdint.h>

#include "config/config.h"
#include "conn/conn.h"
#include "event/loop.h"
#include "ogg/demux.h"
#include "ogg/mux.h"
#include "record/record.h"
#include "shm/shared.h"
#include "util/buf.h"
#include "util/list.h"

struct ogg_mux;

/* The spaces of the main process, and what a space needs of its process. Owned by the
 * process (embedded in its struct); the spaces in <list> are owned by it. */
struct spaces {
    struct loop *loop;
    struct shared *sh;
    const struct config *cfg;
    const uint8_t *secret; /* signs tokens (32 bytes) */
    struct list_node list; /* struct space.node */
    int published;         /* pages published since the audience was last woken */
    /* With no free slot: gives one back that a space's rendition holds (issue 11), so that
     * renditions never cost a space its slot. Returns 1 if it freed one. May be NULL. */
    int (*reclaim)(void *arg);
    void *reclaim_arg;
};

/* Where a space's sources go when the space does not re-pack them itself: a stage's mixer.
 * Set with space_set_sink; <free> is called when the space ends. */
struct space_sink {
    int (*add)(void *arg); /* a new source: returns its input id */
    void (*remove)(void *arg, int input);
    void (*packet)(void *arg, int input, const unsigned char *pkt, size_t len);
    void (*free)(void *arg);
};

/* A source's hold on the space it feeds; the space clears it when it lets the source go. */
struct space_feed {
    struct space *space; /* NULL once detached */
    int input;           /* the sink's input id, or -1 */
};

struct space {
    struct spaces *host;
    struct list_node node;              /* in host->list */
    int slot;                           /* index in the shared table */
    struct shared_space *ss;            /* = &srv->sh->spaces[slot] */
    struct ring *ring;                  /* the slot's ring */
    const struct space_config *cfg;     /* may be NULL */
    struct space_meta meta;             /* as the source sent it */
    struct ogg_mux *mux;                /* NULL until the first OpusHead */
    struct opus_head_info head;
    uint32_t serial;
    struct conn *source;                /* NULL in grace */
    struct space_feed *feed;            /* the source's hold on this space */
    struct loop_timer fill;             /* 20 ms silence filler while in grace */
    int64_t gone_ms;                    /* when the source left */
    int64_t fill_from_ms;               /* silence is due from here ... */
    uint64_t fill_from_granule;         /* ... at this granule */
    int64_t last_packet_ms;             /* when the last source packet arrived */
    unsigned char silence[OPUS_SILENCE_MAX];
    int silence_len;
    uint32_t bytes_per_frame16;         /* source audio: bytes per 20 ms, x16, moving average */
    const struct space_sink *sink;      /* a stage space: the mixer takes the sources */
    void *sink_arg;
    /* a relayed space (issue 10): the upstream's Ogg header pages (owned), NULL otherwise */
    unsigned char *relay_hdr;
    uint32_t relay_hdr_len;
    /* issue 12, item 2: its recording (record/record.h) */
    int record_want;      /* record its next stream (config, or space_set_record) */
    struct recording rec;
};

/* Finds a space by mount name (no leading '/'), or NULL. */
struct space *space_find(struct spaces *host, const char *mount);
/* After a reload changed <host->cfg>: each space takes its [space] section again, and one
 * with a source shows the section's name and description. (A new page-ms applies from the
 * next stream: the muxer of a running one keeps its page size.) */
void spaces_reconfigure(struct spaces *host);
/* Creates an empty space for <mount> (no source yet) in a free slot; NULL if none is free. */
struct space *space_create(struct spaces *host, const char *mount);
/* Makes <sink> (borrowed; <arg> owned by it, freed by sink->free) take this space's sources. */
void space_set_sink(struct space *sp, const struct space_sink *sink, void *arg);
/* Ends <sp>: drops its source, frees its slot (listeners are closed by their processes). */
void space_end(struct space *sp, enum close_reason why);

/* Source events. <src> (borrowed) becomes the space's source; <feed> (owned by the source) is
 * its hold on the space until space_source_detach clears it. */
void space_source_attach(struct space *sp, struct conn *src, struct space_feed *feed,
                         const struct space_meta *meta);
void space_source_detach(struct space *sp, const char *why);
/* The source's stream, through its feed: the sink's input, or the space's own stream.
 * Return 0, or 1 if the feed is detached (the source should stop). */
int space_feed_head(struct space_feed *f, const struct opus_head_info *head);
int space_feed_packet(struct space_feed *f, const unsigned char *pkt, size_t len, int samples);

/* The space's own stream: a new Opus head (returns 0), and packets. */
int space_on_head(struct space *sp, const struct opus_head_info *head);
void space_on_packet(struct space *sp, const unsigned char *pkt, size_t len, int samples);

/* Relay (issue 10): the space carries an upstream's stream as it is, page for page, with the
 * upstream's sequence numbers, serial and epoch; no muxer of its own. */
struct space_relay_stream {
    uint32_t serial, epoch;
    int channels;
    const unsigned char *ogg; /* the Ogg header pages (borrowed) */
    uint32_t ogg_len;
    struct space_meta meta;
};
/* Makes <st> the stream of <sp>, whose next page is sequence <start>. A space that had a
 * stream already restarts under a new slot generation (its listeners are closed, as
 * space_on_head does for an incompatible source). */
void space_relay_begin(struct space *sp, const struct space_relay_stream *st, uint64_t start);
/* 1 if <sp> carries the stream <serial>/<epoch> and its next page is <seq>. */
int space_relay_continues(const struct space *sp, uint32_t serial, uint32_t epoch, uint64_t seq);
/* The next sequence <sp>'s ring lacks. */
uint64_t space_relay_next(const struct space *sp);
/* Publishes page <seq>, which must be the next (space_relay_next). Returns 0 or -EINVAL. */
int space_relay_page(struct space *sp, uint64_t seq, const unsigned char *page, uint32_t len,
                     uint32_t samples, uint64_t granule);

/* Appends to <b> the HTTP response head every listener of a stream gets (Icecast's: icy-*
 * from <m>, no caching, CORS) with <content_type>, and icy-br <bitrate> (NULL: <m>'s). */
void space_http_head(struct buf *b, const struct space_meta *m, const char *content_type,
                     const char *bitrate);

/* Recording (issue 12, item 2): <on> 1 records <sp> from now (its current stream, if any,
 * from its header pages and the next page on; a scheduled space calls it at creation so
 * that the recording starts with its first page), 0 ends its recording whole. */
void space_set_record(struct space *sp, int on);
/* The space's own calls (recording.c): a stream began (its header pages are known), a page
 * was published, the stream or the space ended. */
void space_record_begin(struct space *sp);
void space_record_page(struct space *sp, const unsigned char *page, size_t len);
void space_record_end(struct space *sp);
/* A space carried over by an upgrade (space_restore): its recording, if it had one, goes on
 * in the same file. */
void space_record_resume(struct space *sp);

/* Publishes the stage's state document to the audience processes. */
void space_set_state(struct space *sp, const char *json, size_t len);
/* A relay: publishes its upstream's captions of the space (a CAPTIONS frame, checked by the
 * caller): <on> (0 none, 1 restarting, 2 running), <epoch>, <final_ms>, the language
 * <lang>/<lang_len> and the cue list (NULL: the one it has). */
void space_set_captions(struct space *sp, uint8_t on, uint32_t epoch, int64_t final_ms,
                        const char *lang, size_t lang_len, const void *list, size_t len);

/* Keeps the slot's listener peak from the workers' counts (once a second). */
void space_update_peak(struct space *sp);

/* Upgrade: a space as the next binary takes it over, its slot in the shared memory (ring,
 * preamble, state document) untouched. The stream goes on with the same serial, page
 * numbers and granule positions. */
#define SPACE_RECORD_VERSION 1
struct space_record {
    int32_t slot;
    uint32_t serial;
    int32_t channels, pre_skip;
    uint32_t input_rate;
    int16_t output_gain;
    uint8_t has_mux, fill_on;
    struct ogg_mux_pos pos;
    int64_t gone_ms, fill_from_ms, last_packet_ms;
    uint64_t fill_from_granule;
    struct space_meta meta;
};
/* Publishes what <sp>'s mux holds (a short page) and fills <r>. */
void space_save(struct space *sp, struct space_record *r);
/* The space of <r>, carried on in this process; NULL if <r> is bad. */
struct space *space_restore(struct spaces *host, const struct space_record *r);
/* <src> becomes <sp>'s source again after an upgrade (counted once already). */
void space_source_reattach(struct space *sp, struct conn *src, struct space_feed *feed);

#endif
