/*
 * ogg/demux: the source side of Ogg/Opus. Bytes from a studio source (ffmpeg, ezstream,
 * liquidsoap, butt...) go in, validated Opus packets come out through callbacks.
 *
 * The demuxer follows ONE Opus logical stream at a time, as a player does:
 *
 *            BOS page with OpusHead              OpusTags (or anything: then audio)
 *   [HEAD] ----------------------------> [TAGS] -----------------------------------> [AUDIO]
 *     ^   on_head()                                                                     |
 *     +------ EOS page of the followed stream (chain: the next BOS group starts over) ---+
 *     +------ an Opus BOS page that opens a new group without EOS (source restarted) ----+
 *
 * A "group" is the run of BOS pages that opens a (chained) Ogg segment; a multiplexed file puts
 * all its BOS pages first, so the first Opus BOS of a group is followed and any other stream is
 * ignored (Ogg Skeleton, video, a second Opus track). The stream is refused when a group ends
 * (first non-BOS page) without any Opus BOS in it.
 *
 * What the peer controls is bounded: the sync buffer holds at most one incomplete page
 * (<= 65307 bytes) plus one 16 KiB input chunk, and a packet being reassembled is dropped once it
 * passes 64 KiB. Broken data is skipped and counted, not fatal, unless the source never sends
 * anything usable (see ogg_demux_feed). Not thread-safe; one demuxer per source connection.
 */
#ifndef ROSTRUM_OGG_DEMUX_H
#define ROSTRUM_OGG_DEMUX_H

#include <stddef.h>
#include <stdint.h>

/* Largest Opus packet accepted (a valid one is at most 48 frames of 1275 bytes, < 62 KiB). */
#define OGG_DEMUX_MAX_PACKET 65536
/* Input skipped before the first valid page, past which the stream is refused. */
#define OGG_DEMUX_MAX_SYNC_BYTES 65536
/* Bytes of pages of other streams accepted while waiting for an Opus BOS page. */
#define OGG_DEMUX_MAX_HEAD_WAIT (256 * 1024)

/* The OpusHead fields rostrum needs (RFC 7845 section 5.1). Only mapping family 0 (mono or
 * stereo) is accepted. */
struct opus_head_info {
    int channels;        /* 1 or 2 */
    int pre_skip;        /* samples at 48 kHz to drop at the start of decoding */
    uint32_t input_rate; /* informational: the rate the source was encoded from */
    int16_t output_gain; /* Q7.8 dB, to apply when decoding */
};

struct ogg_demux;

/* Callbacks: each returns 0 to go on, or a positive value to stop ogg_demux_feed, which then
 * returns that value (a negative one is returned as is, and would read as a failure: don't). */
struct ogg_demux_cb {
    /* A (new) Opus logical stream started: the first one, a chained one after EOS, or a new BOS
     * group. <head> is borrowed for the call. May be NULL. */
    int (*on_head)(void *arg, const struct opus_head_info *head);
    /* One audio packet of <len> bytes (borrowed for the call), valid per RFC 6716 section 3,
     * lasting <samples> > 0 samples at 48 kHz (960 for 20 ms). May be NULL. */
    int (*on_packet)(void *arg, const unsigned char *pkt, size_t len, int samples);
};

struct ogg_demux_stats {
    uint64_t pages;         /* valid pages (CRC checked), of any logical stream */
    uint64_t packets;       /* audio packets delivered through on_packet */
    uint64_t bad_packets;   /* packets of the followed stream dropped: invalid Opus, empty, too
                               large, or a header where audio was expected */
    uint64_t skipped_bytes; /* input bytes that were not part of a valid page */
    uint64_t streams;       /* Opus logical streams started (on_head calls) */
    uint64_t bad_pages;     /* pages dropped for a CRC mismatch or an unknown version */
    uint64_t holes;         /* gaps in the followed stream's page sequence (data lost) */
};

/* Returns a new demuxer, owned by the caller (free with ogg_demux_free). Aborts on OOM. */
struct ogg_demux *ogg_demux_new(void);

/* Frees <d> and everything it holds. NULL is a no-op. */
void ogg_demux_free(struct ogg_demux *d);

/* Feeds <len> bytes of <buf> (borrowed) read from the source and runs the callbacks of <cb> (with
 * <arg>) for what they complete. All of <buf> is taken, even when a callback stops the feed: the
 * rest is kept and parsed by the next call (which may pass len 0 to just resume).
 *
 * Returns 0 when everything was parsed; the callback's value if one stopped it; -1 if the stream
 * is not acceptable, with a short reason in ogg_demux_error(): no valid page in the first
 * OGG_DEMUX_MAX_SYNC_BYTES, a BOS group without Opus, a malformed OpusHead, a channel mapping
 * other than family 0, no Opus start within OGG_DEMUX_MAX_HEAD_WAIT bytes of pages. After -1 the
 * demuxer stays failed and every later call returns -1 without calling anything. */
int ogg_demux_feed(struct ogg_demux *d, const void *buf, size_t len, const struct ogg_demux_cb *cb,
                   void *arg);

/* Why the demuxer failed ("" while it has not). Borrowed; valid until ogg_demux_free. */
const char *ogg_demux_error(const struct ogg_demux *d);

/* Copies <d>'s counters into <out>. */
void ogg_demux_stats(const struct ogg_demux *d, struct ogg_demux_stats *out);

/* Where a demuxer is in its stream, for another demuxer (the next binary, an upgrade) to
 * carry on: the followed stream and its next page number. A packet split across pages at
 * that moment is lost; nothing else is. */
struct ogg_demux_pos {
    uint8_t state, have_os, any_page, any_head;
    uint32_t serial;
    int64_t pageno;
};
/* Most input bytes a saved demuxer may still hold (an incomplete page and a read chunk). */
#define OGG_MUX_RESTORE_MAX (65307 + 16384)
/* Saves <d>'s position; <*pending>/<*len> (borrowed from <d>) are the input bytes it holds
 * but has not parsed yet. Returns 0, or -1 for a failed demuxer. */
int ogg_demux_save(const struct ogg_demux *d, struct ogg_demux_pos *pos,
                   const unsigned char **pending, size_t *len);
/* A demuxer that carries on from <pos> with <pending> bytes first; NULL if <pos> is bad. */
struct ogg_demux *ogg_demux_restore(const struct ogg_demux_pos *pos, const void *pending,
                                    size_t len);

/* Parses the OpusHead packet <pkt>/<len> into <out>. Returns 0, or -1 with a reason written to
 * <err> (of <errcap> bytes). Exposed for tests and for tools that read Ogg/Opus files. */
int opus_head_parse(const unsigned char *pkt, size_t len, struct opus_head_info *out, char *err,
                    size_t errcap);

#endif
