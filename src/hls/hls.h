/*
 * hls: the pure half of rostrum's HLS and LL-HLS output (draft-pantos-hls-rfc8216bis): the
 * timeline that cuts a space's Opus programme into parts and segments, the playlist text,
 * the _HLS_* query of a blocking reload, and the packets of an Ogg page. The server half
 * (audience/hls.c) reads the page ring and answers requests with these.
 *
 * The timeline. Every packet of a space's stream has a place on one absolute clock, in
 * 48 kHz samples:
 *
 *   abs = stream_start_ms (unix ms) x 48 + decoded position (granule - pre_skip - ...)
 *
 * Part k holds the packets whose first sample falls in [k P, (k + 1) P), P = part-ms x 48;
 * segment (media sequence number) m holds parts [m S, (m + 1) S), S = segment-ms / part-ms.
 * So boundaries depend only on what is in the ring, and every worker (and every run over the
 * same ring) builds byte-identical parts and playlists; media sequence numbers follow the
 * wall clock, so a restarted space (a later start) never goes back to a number it used.
 * A part is complete once a packet at or past its end is published.
 */
#ifndef ROSTRUM_HLS_HLS_H
#define ROSTRUM_HLS_HLS_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Segments a playlist lists (the window), and parts per segment at most (10 s / 100 ms). */
#define HLS_WINDOW_SEGMENTS 12
#define HLS_MAX_PARTS_PER_SEGMENT 100
#define HLS_WINDOW_PARTS ((HLS_WINDOW_SEGMENTS + 1) * HLS_MAX_PARTS_PER_SEGMENT)
/* Segments at the end of a playlist that also list their parts (3 target durations). */
#define HLS_PART_SEGMENTS 3
/* PART-HOLD-BACK is three part targets (the spec's SHOULD), and at least this: behind an
 * nginx tier a player may wait for two of its 500 ms lock polls in a row (the blocking reload,
 * then the part), which must not empty its buffer (docs/caches.md). */
#define HLS_MIN_PART_HOLD_BACK_MS 1000
/* How far a blocking request may look past the last part before it is a 400. */
#define HLS_ADVANCE_PARTS 3
#define HLS_ADVANCE_SEGMENTS 2

/* The query of a playlist request (only the _HLS_ directives; other keys are ignored). */
struct hls_query {
    int has_msn, has_part;
    uint64_t msn;
    uint32_t part;
    int skip; /* _HLS_skip=YES (1) or v2 (2: date ranges too; rostrum has none) */
};

/* Parses the query string <q> (<len> bytes, without '?'). Returns <len>, or -1 if a _HLS_
 * directive is malformed: not a decimal number (or YES/v2), given twice, or _HLS_part without
 * _HLS_msn (the spec's 400). */
int hls_query_parse(const char *q, size_t len, struct hls_query *out);

/* A media playlist as the server sees it: parts [first_part, end_part) complete, with their
 * durations (samples at 48 kHz). <first_part> starts a segment. */
struct hls_media {
    const char *epoch;    /* in every URI below the playlist: <epoch>/... */
    const char *prefix;   /* file names' rendition prefix ("o" Opus, "a" AAC) */
    int target_s;         /* EXT-X-TARGETDURATION */
    uint32_t part_samples;
    uint32_t part_target; /* PART-TARGET, samples: the longest a part may be (0: part_samples).
                           * A part holds the packets that start in its span, so with frames
                           * that do not divide it (AAC's 1024) it may be one frame longer. */
    int parts_per_segment;
    uint64_t first_part, end_part;
    const uint32_t *part_dur; /* end_part - first_part entries */
    int64_t first_pdt_ms;     /* wall time of the first part's first sample */
    int skip;                 /* a delta update was asked for (_HLS_skip) */
    /* EXT-X-RENDITION-REPORT for the other rendition; report_uri NULL: none */
    const char *report_uri;
    uint64_t report_msn;
    uint32_t report_part;
};

/* Appends the media playlist <m> to <out>. Returns the number of segments skipped (0 for a
 * full playlist). */
int hls_media_playlist(struct buf *out, const struct hls_media *m);

/* A rendition of the multivariant playlist. */
struct hls_variant {
    const char *uri;
    const char *codecs;
    uint32_t bandwidth;
};

/* Appends the multivariant playlist of <n> variants; <subtitles> (NULL: none) is the URI of a
 * WebVTT subtitles rendition every variant names (issue 12: live captions). */
void hls_multivariant(struct buf *out, const struct hls_variant *v, int n, const char *subtitles,
                      const char *lang);

/*
 * The live captions as a WebVTT subtitles rendition (issue 12, item 4). Its segments have the
 * audio's media sequence numbers and boundaries (segment m is [m S P, (m + 1) S P) on the
 * absolute clock), and cue times are on the audio's media timeline (the fMP4 tfdt, 0 at the
 * stream's start), so every segment carries X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000.
 */
struct hls_vtt_cue {
    int64_t start_ms, end_ms; /* on the media timeline */
    const char *text;         /* one line, valid UTF-8 */
    size_t len;
};
/* Appends the subtitles playlist: segments [msn_first, msn_end) of <seg_ms> each, the first
 * starting at wall time <first_pdt_ms>, under <epoch>/c<msn>.vtt. */
void hls_vtt_playlist(struct buf *out, const char *epoch, int target_s, uint32_t seg_ms,
                      uint64_t msn_first, uint64_t msn_end, int64_t first_pdt_ms);
/* Appends a WebVTT segment of the <n> cues <c>. */
void hls_vtt_segment(struct buf *out, const struct hls_vtt_cue *c, int n);

/* The packets of the Ogg page <page>/<len>: up to <max> offsets into the page and lengths.
 * A packet continued from the page before, or one that goes on in the next, is left out
 * (rostrum's own pages never have them). Returns the count, or -1 if <page> is not a whole
 * Ogg page. */
int hls_ogg_packets(const unsigned char *page, size_t len, uint32_t *off, uint32_t *plen, int max);

/* The body of the first packet of the Ogg page at <page> (the OpusHead of a stream's first
 * page): sets <*pkt>/<*plen> and returns 0, or -1. */
int hls_ogg_first_packet(const unsigned char *page, size_t len, const unsigned char **pkt,
                         size_t *plen);

/* "2026-12-02T05:00:00.000Z" for <ms> since the epoch, into <out> (32 bytes). */
void hls_iso_time(int64_t ms, char *out, size_t cap);

#endif
