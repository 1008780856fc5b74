/*
 * ogg/mux: rostrum's own Ogg/Opus output stream. Opus packets in, Ogg pages out.
 *
 * Listeners must see ONE continuous logical stream whatever happens upstream (source restarts,
 * chained streams, silence filling a gap), so the mux owns everything a player checks: the
 * serial number, page sequence numbers (0 and 1 for the headers, then 2, 3, 4...) and granule
 * positions (pre_skip + audio samples added, never backwards). It never emits EOS.
 *
 * Page boundaries are ours, not libogg's: a page closes when its audio reaches page_ms, or
 * before a packet that would take it past 255 lacing values or ~8 KiB. Pages are then cut with
 * ogg_stream_flush_fill, so one call is exactly one page. The header pages are built once and
 * kept for late joiners (ogg_mux_headers).
 *
 *   page 0: BOS, granule 0, OpusHead alone        } ogg_mux_headers()
 *   page 1: granule 0, OpusTags (vendor, TITLE=)  }
 *   page 2..: audio, granule = pre_skip + samples so far
 *
 * Not thread-safe; the owner (the space's packager) serialises calls.
 */
#ifndef ROSTRUM_OGG_MUX_H
#define ROSTRUM_OGG_MUX_H

#include <stddef.h>
#include <stdint.h>

#include "ogg/demux.h"

/* A page closes before its body would pass this (a lone larger packet gets a page of its own). */
#define OGG_MUX_PAGE_BYTES 8192
/* Largest packet the mux accepts: one that fits the 255 lacing values of a single page. */
#define OGG_MUX_MAX_PACKET (255 * 255 - 1)
/* Largest page the mux produces: header with 255 lacing values + a full body. */
#define OGG_MUX_MAX_PAGE (27 + 255 + 255 * 255)
/* Vendor and title are cut (on a UTF-8 boundary) to this many bytes, so OpusTags is one page. */
#define OGG_MUX_MAX_TAG 1024

struct ogg_mux;

/* A page produced: <page>/<len> are borrowed for the call only. <granule> is the page's granule
 * position, <seqno> its page sequence number, <samples> the audio duration it carries (0 for
 * header pages, which are never passed here: see ogg_mux_headers). */
typedef void (*ogg_mux_page_cb)(void *arg, const unsigned char *page, size_t len, uint64_t granule,
                                uint32_t seqno, int samples);

/* Returns a new mux for logical stream <serial>, owned by the caller (ogg_mux_free). Its OpusHead
 * carries <head>'s channels, pre_skip, input_rate and output_gain (mapping family 0); its
 * OpusTags carries <vendor> (NULL: "rostrum") and, if <title> is not NULL, a TITLE= comment.
 * <page_ms> as in ogg_mux_set_page_ms. Strings are copied. Returns NULL if <head> has a channel
 * count other than 1 or 2 or a pre_skip outside 0..65535. Aborts on OOM. */
struct ogg_mux *ogg_mux_new(uint32_t serial, const struct opus_head_info *head, const char *vendor,
                            const char *title, int page_ms);

/* Frees <m>; buffered audio not yet flushed is lost. NULL is a no-op. */
void ogg_mux_free(struct ogg_mux *m);

/* The BOS OpusHead page and the OpusTags page, concatenated: what a late joiner gets first.
 * Stored in <*len>; the bytes are owned by <m> and stable for its whole life. */
const unsigned char *ogg_mux_headers(const struct ogg_mux *m, size_t *len);

/* Adds packet <pkt>/<len> (borrowed, copied) lasting <samples> samples at 48 kHz, and calls <cb>
 * (with <arg>) for each page this completes: first the buffered page if the packet would not
 * fit in it (255 lacing values, OGG_MUX_PAGE_BYTES) or if it already holds page_ms of audio
 * (after a page_ms decrease), then the page holding the packet if it reaches page_ms. So with 20
 * ms packets and page_ms 200, one page per 10 packets. A packet with len 0, len over
 * OGG_MUX_MAX_PACKET or samples <= 0 is ignored (logged). */
void ogg_mux_packet(struct ogg_mux *m, const unsigned char *pkt, size_t len, int samples,
                    ogg_mux_page_cb cb, void *arg);

/* Emits the buffered packets as one page through <cb>, if there are any. */
void ogg_mux_flush(struct ogg_mux *m, ogg_mux_page_cb cb, void *arg);

/* Sets the page duration: a page closes once it holds at least <page_ms> ms of audio. Clamped
 * to 1..10000. Takes effect from the next ogg_mux_packet. */
void ogg_mux_set_page_ms(struct ogg_mux *m, int page_ms);

/* Where a mux is in its stream, for a mux of the next binary (an upgrade) to carry on with
 * the same serial: no page number or granule position skipped or repeated. */
struct ogg_mux_pos {
    uint64_t granule, page_granule;
    int64_t packetno, pageno;
};
/* Saves <m>'s position; <m> must have been flushed (ogg_mux_flush). */
void ogg_mux_save(const struct ogg_mux *m, struct ogg_mux_pos *pos);
/* Makes <m> (new, same serial and head) carry on from <pos>. */
void ogg_mux_restore(struct ogg_mux *m, const struct ogg_mux_pos *pos);

/* The granule position after the last packet added (buffered or not): pre_skip + samples. */
uint64_t ogg_mux_granule(const struct ogg_mux *m);

/* Writes into <out> (<cap> bytes) one 20 ms Opus packet of digital silence for <channels> (1 or
 * 2) channels, encoded with libopus; used to keep the timeline going while a source reconnects.
 * <bytes> 0: as small as the encoder makes it (3 bytes); else exactly <bytes> (3 to
 * OPUS_SILENCE_MAX: the same packet with the codec's own padding), so that silence costs a stream as many
 * bytes per second as its audio did: players that buffer by bytes (Chromium's and Firefox's
 * <audio>) stall on a stream that suddenly sends 40 times fewer (issue 11).
 * Returns its length, or -1 (bad channels or <bytes>, <cap> too small, encoder error). Costs
 * an encoder setup: call once and keep the packet. */
#define OPUS_SILENCE_MAX 1275 /* RFC 6716 3.4 R2: a frame's most bytes */
int opus_silence_packet(int channels, int bytes, unsigned char *out, size_t cap);

#endif
