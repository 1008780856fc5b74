/*
 * load/oggcheck: an incremental Ogg page checker for the load tool's listeners.
 *
 * A load listener sees the stream a player would, and must say whether it was well formed
 * without keeping it: thousands of listeners share one process, so a checker holds no page
 * buffer, only the 27-byte page header, a running CRC and a few counters (~90 bytes). Bytes are
 * fed in whatever chunks recv() returns; the result does not depend on where a chunk ends.
 *
 * Per page it checks:
 *   - the CRC (Ogg's CRC-32: polynomial 0x04c11db7, not reflected, init 0, over the whole page
 *     with the CRC field zeroed), run over the body as it streams;
 *   - the page sequence number: each page must follow the previous one, except that the first
 *     audio page after the header pages may jump (a late joiner gets the headers, pages 0 and 1,
 *     then the live edge): any other jump is a sequence gap;
 *   - one serial number: a page of another logical stream is a serial change. A BOS page with a
 *     new serial after audio restarts the checker's header phase (a chained stream); its audio
 *     may then jump again.
 *
 * Header or audio: a page is a header page while the checker is in its header phase and the
 * page is BOS, or continues a header packet, or its first packet starts with a codec header
 * magic ("OpusHead", "OpusTags", "\x01vorbis", "\x03vorbis", "\x05vorbis"). The first page that
 * is none of these is the first audio page, and every page after it is audio (until a new BOS).
 * Audio bytes count whole pages (header, lacing table and body) so the figure includes the Ogg
 * overhead a player downloads.
 *
 * Damage:
 *   - CRC mismatch: counted in crc_errors; the page still takes one sequence number (the next
 *     page is expected to follow it), so one corrupt page is one error, not also a gap. Its
 *     bytes, already counted as they streamed, stay counted; it never becomes the first audio
 *     page.
 *   - Bytes that are not a page where a page must start (no "OggS", or a header with a version
 *     other than 0 or unknown flag bits): the checker counts one sync loss, skips bytes until
 *     the next "OggS" (garbage_bytes counts them) and resumes there. Pages lost in between show
 *     up as a sequence gap on the next good page.
 *
 *   state:  SYNC --"OggS"--> HEAD(27 bytes) --> LACING(nsegs bytes) --> BODY(sum) --> HEAD ...
 *             ^                 | bad version/flags
 *             +-----------------+
 */
#ifndef ROSTRUM_LOAD_OGGCHECK_H
#define ROSTRUM_LOAD_OGGCHECK_H

#include <stddef.h>
#include <stdint.h>

#define OGGCHECK_HEADER 27

struct oggcheck {
    /* results, cumulative */
    uint64_t audio_bytes;    /* bytes of audio pages, headers included */
    uint32_t pages;          /* pages seen whole (any CRC) */
    uint32_t audio_pages;    /* audio pages with a valid CRC */
    uint32_t crc_errors;     /* pages whose CRC did not match */
    uint32_t seq_gaps;       /* page sequence discontinuities, the allowed jump excepted */
    uint32_t serial_changes; /* valid pages of another serial than the stream's */
    uint32_t sync_losses;    /* times the checker had to hunt for "OggS" */
    uint32_t garbage_bytes;  /* bytes skipped while hunting (saturates) */
    uint32_t first_audio;    /* 1 once a first audio page with a valid CRC has been seen */
    uint64_t granule;        /* granule position of the last audio page with a valid CRC */

    /* parser state */
    uint32_t crc;                 /* running CRC of the current page */
    uint32_t serial;              /* the stream's serial number */
    uint32_t last_seq;            /* sequence number of the previous page */
    uint16_t body_len;            /* body length of the current page (<= 255 * 255) */
    uint16_t body_pos;            /* body bytes of the current page seen so far */
    uint8_t state;                /* enum in oggcheck.c */
    uint8_t pos;                  /* bytes of the header or lacing table seen so far */
    uint8_t nsegs;                /* lacing values of the current page */
    uint8_t phase;                /* 0: header pages, 1: audio pages */
    uint8_t page_kind;            /* current page: 0 undecided, 1 header, 2 audio */
    uint8_t flags;                /* OGGCHECK_F_* below */
    uint8_t match;                /* SYNC: bytes of "OggS" matched */
    uint8_t magic_len;            /* first body bytes kept in magic[] */
    uint8_t magic[8];             /* first bytes of the current page's body, in the header phase */
    uint8_t hdr[OGGCHECK_HEADER]; /* the current page's header */
};

#define OGGCHECK_F_HAVE_SEQ 1    /* last_seq and serial are set */
#define OGGCHECK_F_PACKET_OPEN 2 /* the previous page ended inside a packet */
#define OGGCHECK_F_HDR_PACKET 4  /* ... and that packet was a header packet */
#define OGGCHECK_F_LAST_OPEN 8   /* the current page's last lacing value is 255 */

/* Resets <c> to expect a page start. */
void oggcheck_init(struct oggcheck *c);

/* Feeds <len> bytes of the stream (borrowed) to <c>. Never fails: damage is counted. */
void oggcheck_feed(struct oggcheck *c, const uint8_t *data, size_t len);

/* Ogg's CRC-32 of <len> bytes of <data>, continuing from <crc> (0 to start). */
uint32_t oggcheck_crc(uint32_t crc, const uint8_t *data, size_t len);

#endif
