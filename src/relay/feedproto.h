/*
 * feedproto: the relay feed, version 2 -- what an upstream (an origin or another relay) sends
 * a downstream relay on `GET /<space>?relay=1[&from=SEQ]` of its audience port. The answer is
 * `200`, `Content-Type: application/x-rostrum-feed`, `X-Rostrum-Feed: 2`, then frames until
 * either side closes; the relay sends REPORT frames the other way on the same connection.
 * Version 2 (issue 10, item 3) made REPORT carry the whole subtree's count, the relay's own
 * count, a draining flag, its name and its public listener URL. Version 3 made REPORT carry
 * who is counted (the relay's identity, its feed's generation and a row per relay below it),
 * so that a subtree is counted once however many feeds carry copies of it, and KEEPALIVE say
 * whether the upstream itself is fed, so that a relay tells a stalled link or a starved
 * upstream from a quiet stream. Both ends must speak the same version (a relay treats a feed
 * of another version as no feed at all).
 *
 * A frame is an 8-byte head and a payload, integers big-endian:
 *
 *   +------+-------+----------+---------------+-----------------------------+
 *   | type | flags | reserved |  payload len  |  payload (len bytes)        |
 *   |  u8  | u8 =0 |  u16 = 0 |      u32      |  <= FEED_MAX_PAYLOAD        |
 *   +------+-------+----------+---------------+-----------------------------+
 *
 *   HEADER   version u16, channels u16, serial u32, epoch u32, keepalive_ms u32, start u64,
 *            Ogg header pages (u32 length + bytes: ogg_mux_headers, <= FEED_MAX_OGG_HEADERS),
 *            then name, description, genre, url, bitrate (u16 length + bytes each).
 *            Always the first frame. <start> is the sequence of the first PAGE that follows:
 *            the asked `from` when the upstream still has it, else its burst start.
 *            <keepalive_ms> (1..FEED_KEEPALIVE_MAX_MS): the upstream sends a KEEPALIVE
 *            whenever it sent no frame for a quarter more than the gap between its pages
 *            (reckoned as a relay does), and never waits less than about <keepalive_ms> nor
 *            more than 2 s; so silence for two page intervals, and at least 2 x
 *            <keepalive_ms>, means the link, not a quiet stream, and a steady stream needs no
 *            keepalive.
 *   PAGE     seq u64, granule u64, samples u32, then the Ogg page (27..OGG_MUX_MAX_PAGE bytes,
 *            "OggS"). Pages come in sequence order, one by one, from <start>.
 *   STATE    the stage's state document (JSON, <= SHARED_STATE_MAX; empty: none).
 *   KEEPALIVE head u64: the upstream's ring head, flags u32 (FEED_KEEPALIVE_STARVED: the
 *            upstream is a relay that has no live feed of this space itself, so its quiet is
 *            not the stream's). Sent when nothing else was for a while (HEADER).
 *   END      reason u8 (FEED_END_*): the space ended or restarted upstream; the upstream
 *            closes after it.
 *   CAPTIONS on u8 (0: the space has no captions, 1: captioned, recogniser restarting, 2:
 *            running), lang_len u8 (<= 35), flags u8 (FEED_CAPTIONS_SAME_LIST: the cue list
 *            is the last one sent, and none follows), a zero byte, epoch u32 (changes when the
 *            cue list starts over), final_ms u64 (no new cue will start before this, unix
 *            ms), the language (lang_len bytes, a BCP 47 tag; empty: none), then the cue list
 *            (<= SHARED_CAPTIONS_MAX: lines "ID START END TEXT\n", as the upstream's shared
 *            list holds it). Only to a relay that asked for it (`captions=1` in its request),
 *            so an older relay never sees one; sent when any of it changed, the first time
 *            before the first PAGE; when only <final_ms> moved (with every page) without the
 *            list, so a relay costs about 30 bytes a page, not its list.
 *
 * Upward, from the relay on the same connection, once a second (the only frame that flows
 * that way; an upstream cuts a feed that sends anything else, or more than one frame's bytes
 * it cannot parse):
 *
 *   REPORT   tree u32 (listeners of this space that received audio in the last 5 s in the
 *            relay's whole subtree: its own plus what its own downstream relays reported, so
 *            an upstream adds its feeds' figures to its own and has the tree's count),
 *            connections u32 (the relay's open listener connections, all spaces), capacity
 *            u32 (its max-listeners), load u16 (its worst worker pressure, thousandths),
 *            flags u16 (FEED_REPORT_DRAINING: it refuses newcomers), own u32 (of <tree>, its
 *            own listeners), then name (u8 length, <= FEED_NAME_MAX) and public URL (u8
 *            length, <= FEED_URL_MAX, "http://" or "https://" and a host, no path; empty:
 *            never redirect listeners to it), both of printable ASCII without space, '"' or
 *            '\\', so they go into a metric label or a Location header as they are.
 *            Version 3 adds, after <own>: id u64 (the relay process's random identity, not
 *            0), gen u32 (its feed generation: one more for every feed it opens, of any space),
 *            nrows u16 (<= FEED_REPORT_ROWS), reserved u16 = 0; and after the texts <nrows>
 *            rows of 20 bytes, one per relay of the subtree below it: id u64, gen u32, own u32
 *            (that relay's own listeners), age_ms u32 (how old that relay's report is, summed
 *            over the hops, <= FEED_REPORT_AGE_MS). <tree> is at least <own> plus the rows'
 *            <own>s; what it holds beyond them is the subtree the relay could not list (past
 *            FEED_REPORT_ROWS), counted with the relay's own row.
 *
 * How an upstream counts (feed.c): by identity, not by feed. It keeps one row per relay id,
 * the highest generation it has seen (the freshest among equal ones) whichever feed carried
 * it, and counts a row until it is FEED_REPORT_AGE_MS old. A relay that fails over reports on
 * its new feed with a higher generation, which supersedes the copy its old upstream still
 * holds (a stalled link shows no close) the moment it arrives: never counted twice. A copy
 * whose feed closed stays counted until its age runs out, so a subtree is not dropped while
 * it moves to its new upstream; a relay that really died leaves the count within
 * FEED_REPORT_AGE_MS of its last report.
 *
 * The stream's identity is (serial, epoch): the Ogg serial and the origin's slot generation
 * when the stream began, carried unchanged down the tree, like the sequence numbers, so a
 * relay can resume from any upstream that carries the same stream.
 *
 * Everything a peer can make the parser hold is bounded: a payload over FEED_MAX_PAYLOAD is
 * invalid before it is read, so a reader never buffers more than FEED_MAX_FRAME bytes.
 */
#ifndef ROSTRUM_RELAY_FEEDPROTO_H
#define ROSTRUM_RELAY_FEEDPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "ogg/mux.h"
#include "shm/shared.h"
#include "util/buf.h"

#define FEED_VERSION 3
#define FEED_CONTENT_TYPE "application/x-rostrum-feed"
#define FEED_HEAD_BYTES 8
#define FEED_PAGE_FIXED 20
#define FEED_MAX_OGG_HEADERS 6144 /* leaves the preamble room for its HTTP part */
#define FEED_MAX_PAYLOAD (FEED_PAGE_FIXED + OGG_MUX_MAX_PAGE)
#define FEED_MAX_FRAME (FEED_HEAD_BYTES + FEED_MAX_PAYLOAD)

enum feed_type {
    FEED_HEADER = 1,
    FEED_PAGE,
    FEED_STATE,
    FEED_KEEPALIVE,
    FEED_END,
    FEED_REPORT,
    FEED_CAPTIONS
};
#define FEED_CAPTIONS_FIXED 16
#define FEED_CAPTIONS_SAME_LIST 1u
#define FEED_REPORT_FIXED 36
#define FEED_NAME_MAX 32
#define FEED_URL_MAX 128
#define FEED_REPORT_ROWS 64 /* relays listed below one relay; the rest are summed unlisted */
#define FEED_ROW_BYTES 20
#define FEED_REPORT_MAX                                                                        \
    (FEED_HEAD_BYTES + FEED_REPORT_FIXED + 2 + FEED_NAME_MAX + FEED_URL_MAX +                  \
     FEED_REPORT_ROWS * FEED_ROW_BYTES)
#define FEED_REPORT_DRAINING 1u
#define FEED_KEEPALIVE_STARVED 1u
#define FEED_KEEPALIVE_MAX_MS 10000
/* A relay reports this often, and at once when its subtree's identities change (a relay below
 * it moved, came or went) or on a new feed. */
#define FEED_REPORT_EVERY_MS 500
/* An upstream counts a relay's row for this long after that relay made the report, no longer:
 * a relay that stops, or whose link dies without a FIN, leaves the count after it. It is
 * longer than a fail-over (a stall is seen in two page intervals) plus a report's way up two
 * tiers, so a subtree that moves is never missing from the count. */
#define FEED_REPORT_AGE_MS 3000
enum feed_end { FEED_END_ENDED = 1, FEED_END_RESTART };

/* A byte string inside a parsed frame (borrowed from the parser's input). */
struct feed_str {
    const unsigned char *p;
    uint32_t len;
};

/* One parsed frame; pointers borrow the input given to feed_parse. */
struct feed_frame {
    uint8_t type;
    union {
        struct {
            uint16_t version, channels;
            uint32_t serial, epoch, keepalive_ms;
            uint64_t start;
            struct feed_str ogg;
            struct feed_str meta[5]; /* name, description, genre, url, bitrate */
        } header;
        struct {
            uint64_t seq, granule;
            uint32_t samples;
            struct feed_str page;
        } page;
        struct feed_str state;
        struct {
            uint64_t head;
            uint32_t flags;
        } keepalive;
        uint8_t end;   /* END */
        struct {
            uint8_t on, same_list;
            uint32_t epoch;
            int64_t final_ms;
            struct feed_str lang, list;
        } captions;
        struct {
            uint32_t tree, connections, capacity, own;
            uint16_t load_milli, flags;
            struct feed_str name, url;
            uint64_t id;
            uint32_t gen, nrows;
            const unsigned char *rows; /* nrows x FEED_ROW_BYTES: feed_report_row() */
        } report; /* REPORT (upward) */
    };
};

/* One relay of a REPORT's subtree. */
struct feed_tree_row {
    uint64_t id;
    uint32_t gen, own, age_ms;
};

/* Parses one frame at the start of <buf>/<len>. Returns the bytes it took (> 0), -2 if more
 * bytes are needed (never more than FEED_MAX_FRAME in all), -1 if the bytes are not a valid
 * frame of this version (the reader closes). Stateless: frame order is the caller's check. */
int feed_parse(const unsigned char *buf, size_t len, struct feed_frame *f);

/* What a relay needs of its upstream's answer head. */
#define FEED_MAX_HEAD 8192
enum feed_kind { FEED_KIND_OTHER, FEED_KIND_FEED, FEED_KIND_OGG, FEED_KIND_JSON };
struct feed_http_head {
    int status;       /* 100..999 */
    int kind;         /* from Content-Type (and X-Rostrum-Feed for a feed) */
    int feed_version; /* X-Rostrum-Feed, 0 if absent */
};
/* Parses the HTTP (or ICY) response head at the start of <buf>/<len>, which ends at the first
 * blank line (CRLF CRLF). Returns the head's length, -2 if incomplete (and under
 * FEED_MAX_HEAD), -1 if malformed or longer. */
int feed_parse_response_head(const unsigned char *buf, size_t len, struct feed_http_head *h);

/* Encoders: append one frame to <b>. */
void feed_put_header(struct buf *b, uint16_t channels, uint32_t serial, uint32_t epoch,
                     uint32_t keepalive_ms, uint64_t start, const void *ogg, uint32_t ogg_len,
                     const struct space_meta *meta);
/* The head of a PAGE frame for a page of <page_len> bytes (the page bytes follow it: a
 * writer may send them from elsewhere). Writes FEED_HEAD_BYTES + FEED_PAGE_FIXED bytes. */
void feed_page_head(unsigned char out[FEED_HEAD_BYTES + FEED_PAGE_FIXED], uint64_t seq,
                    uint64_t granule, uint32_t samples, uint32_t page_len);
void feed_put_state(struct buf *b, const void *json, uint32_t len);
void feed_put_keepalive(struct buf *b, uint64_t head, uint32_t flags);
/* A CAPTIONS frame: the state of a space's captions, its language <lang> (a C string, cut at
 * 35 bytes) and its cue list <list>/<len>; <list> NULL: the last one sent (SAME_LIST). */
void feed_put_captions(struct buf *b, uint8_t on, uint32_t epoch, int64_t final_ms,
                       const char *lang, const void *list, uint32_t len);
void feed_put_end(struct buf *b, uint8_t reason);
/* What a relay says upward about one space (REPORT). <name> and <url> are C strings that
 * feed_text_ok() accepts (the encoder sends an empty string for one it does not). */
struct feed_report_fields {
    uint32_t tree, connections, capacity, own;
    uint16_t load_milli, flags;
    const char *name, *url;
    uint64_t id;
    uint32_t gen, nrows; /* <nrows> <= FEED_REPORT_ROWS rows at <rows> (borrowed) */
    const struct feed_tree_row *rows;
};
/* An upward REPORT, written into <out> (FEED_REPORT_MAX bytes at least). Returns its length.
 * <tree> is raised to <own> plus the rows if it is less; ages are capped at the limit. */
size_t feed_report(unsigned char out[FEED_REPORT_MAX], const struct feed_report_fields *r);
/* Row <i> (< nrows) of a parsed REPORT. */
void feed_report_row(const struct feed_frame *f, uint32_t i, struct feed_tree_row *row);
/* 1 if <s>/<n> may be a REPORT's name (<= FEED_NAME_MAX, [A-Za-z0-9._:-]) if !<is_url>, or
 * its URL if <is_url> (<= FEED_URL_MAX, "http://" or "https://", a host[:port], no path nor
 * anything a Location header or a metric label would need escaped). Empty is accepted. */
int feed_text_ok(const char *s, size_t n, int is_url);

#endif
