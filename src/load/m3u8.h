/*
 * load/m3u8: the HLS playlist reader of "rostrum-load hls" (issue 11), after
 * draft-pantos-hls-rfc8216bis (HTTP Live Streaming, 2nd edition): multivariant playlists
 * (EXT-X-STREAM-INF, EXT-X-MEDIA TYPE=AUDIO) and media playlists, low-latency ones included
 * (EXT-X-PART-INF, EXT-X-SERVER-CONTROL, EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SKIP).
 *
 * It reads the network, so it is bounded and strict: a document is at most M3U8_MAX bytes, a
 * line at most M3U8_LINE_MAX, a URI at most M3U8_URI_MAX; only the newest M3U8_SEGS segments
 * and M3U8_PARTS parts are kept (a player needs the live edge, not the history), and the first
 * M3U8_VARIANTS renditions. A part hint (EXT-X-PRELOAD-HINT TYPE=PART) names the part after the
 * last one listed, so nothing numbered may follow it. Tags it does
 * not use are skipped, as the spec asks of clients; a tag it uses that is malformed makes the
 * document invalid.
 *
 * Media sequence numbers: the first segment has EXT-X-MEDIA-SEQUENCE, plus SKIPPED-SEGMENTS
 * after an EXT-X-SKIP (a delta update); parts listed after the last segment belong to the
 * segment in progress, number last + 1. A segment's program date time follows from the last
 * EXT-X-PROGRAM-DATE-TIME and the EXTINF durations since; a part's from its segment's and the
 * parts before it.
 */
#ifndef ROSTRUM_LOAD_M3U8_H
#define ROSTRUM_LOAD_M3U8_H

#include <stddef.h>
#include <stdint.h>

#define M3U8_MAX (256u << 10)
#define M3U8_LINE_MAX 2048
#define M3U8_URI_MAX 256
#define M3U8_VARIANTS 8
#define M3U8_SEGS 8
/* rostrum lists 3 segments of parts (30 at 2 s / 200 ms) and the one in progress */
#define M3U8_PARTS 48

enum m3u8_kind { M3U8_MEDIA = 1, M3U8_MULTIVARIANT = 2 };

struct m3u8_variant {
    uint32_t bandwidth; /* STREAM-INF BANDWIDTH; 0 for an EXT-X-MEDIA rendition */
    char codecs[64];    /* CODECS, "" if absent */
    char uri[M3U8_URI_MAX];
};

/* A segment (part -1) or a part of segment <msn>. */
struct m3u8_item {
    int64_t msn;
    int32_t part;        /* index within its segment, -1 for a whole segment */
    uint8_t independent; /* INDEPENDENT=YES (parts) */
    double dur_s;
    int64_t pdt_ms; /* program date time of its start (unix ms), 0 if unknown */
    char uri[M3U8_URI_MAX];
};

struct m3u8 {
    int kind; /* enum m3u8_kind */
    /* multivariant */
    uint32_t nvariants;
    struct m3u8_variant variants[M3U8_VARIANTS];
    /* media */
    double target_s;      /* EXT-X-TARGETDURATION */
    double part_target_s; /* EXT-X-PART-INF PART-TARGET; 0: not low-latency */
    double hold_back_s;   /* SERVER-CONTROL HOLD-BACK; 0 if absent */
    double part_hold_back_s;
    double can_skip_until_s; /* 0: no delta updates */
    int can_block;           /* CAN-BLOCK-RELOAD=YES */
    int endlist;
    int64_t media_seq;
    int64_t skipped;            /* EXT-X-SKIP SKIPPED-SEGMENTS: this is a delta update */
    char map_uri[M3U8_URI_MAX]; /* EXT-X-MAP, "" if none */
    int64_t last_msn;           /* the last whole segment's number, media_seq - 1 if none */
    uint32_t nsegs_total;       /* segments listed (not skipped) */
    uint32_t nsegs, nparts;     /* kept, oldest first */
    struct m3u8_item segs[M3U8_SEGS];
    struct m3u8_item parts[M3U8_PARTS];
    int has_hint;          /* EXT-X-PRELOAD-HINT TYPE=PART */
    struct m3u8_item hint; /* its msn/part: the part after the last listed */
};

/* Parses the playlist <p> (<len> bytes, untrusted) into <out>. Returns <len>, or -1 if it is
 * not a playlist (no #EXTM3U first), is malformed, mixes multivariant and media tags, or passes
 * a bound. A playlist comes whole (an HTTP body), so there is no "incomplete". */
int m3u8_parse(const char *p, size_t len, struct m3u8 *out);

/* Resolves <uri> (as written in a playlist) against the path of the playlist <base> ("/a/b.m3u8",
 * query allowed) into a path for the same server in <out> (<cap> bytes): an absolute URL gives
 * its path, "/x" stays, "x" goes beside <base>. Returns its length, or -1 if it does not fit. */
int m3u8_resolve(const char *base, const char *uri, char *out, size_t cap);

#endif
