/*
 * ogg/demux: Ogg/Opus source bytes in, Opus packets out. See demux.h for the state machine.
 *
 * libogg does the page work: ogg_sync_pageseek finds pages and checks their CRC (skipping
 * garbage, which we count), ogg_stream_pagein/packetout reassemble the packets of the one
 * logical stream we follow. Two of libogg's public struct fields are read to bound what the
 * peer controls: the sync buffer's unread bytes (to tell a CRC failure from plain garbage) and
 * the stream's unreturned body bytes (the packet being reassembled, which libogg would otherwise
 * grow without limit on a page run of 255-valued lacing).
 *
 * The feed loop only copies more input into libogg when no page is left in what it holds, so
 * the sync buffer stays at one incomplete page plus one chunk.
 */
#include "ogg/demux.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ogg/ogg.h>
#include <opus/opus.h>

#include "util/check.h"
#include "util/log.h"

#define FEED_CHUNK 16384

enum demux_state {
    ST_HEAD,   /* waiting for the BOS page of an Opus stream */
    ST_TAGS,   /* following <serial>; its next packet should be OpusTags */
    ST_AUDIO,  /* following <serial>; packets are audio */
    ST_FAILED, /* refused; see err */
};

struct ogg_demux {
    ogg_sync_state sync;
    ogg_stream_state os; /* the followed stream, valid while have_os */
    bool have_os;
    uint32_t serial;
    enum demux_state state;
    bool eos_pending;     /* the followed stream's EOS page is in os; end it once drained */
    bool any_page;        /* a valid page was ever seen */
    bool any_head;        /* an Opus stream was ever started (picks the error wording) */
    bool in_bos_group;    /* the pages since the last group start were all BOS pages */
    bool group_has_opus;  /* the current group's Opus stream is chosen */
    bool group_has_other; /* the current group has a BOS page of another codec */
    uint64_t head_wait;   /* page bytes seen in ST_HEAD since entering it */
    struct ogg_demux_stats st;
    char err[160];
};

static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int opus_head_parse(const unsigned char *pkt, size_t len, struct opus_head_info *out, char *err,
                    size_t errcap)
{
    if (len < 8 || memcmp(pkt, "OpusHead", 8) != 0) {
        snprintf(err, errcap, "not an OpusHead packet");
        return -1;
    }
    if (len < 19) {
        snprintf(err, errcap, "OpusHead too short (%zu bytes)", len);
        return -1;
    }
    /* RFC 7845 5.1: the upper 4 bits are the major version; only 0 (versions 0..15) is ours */
    if (pkt[8] >> 4) {
        snprintf(err, errcap, "OpusHead version %d not supported", pkt[8]);
        return -1;
    }
    int channels = pkt[9];
    int family = pkt[18];
    if (family != 0) {
        snprintf(err, errcap, "Opus channel mapping family %d not supported", family);
        return -1;
    }
    if (channels < 1 || channels > 2) {
        snprintf(err, errcap, "OpusHead: %d channels invalid for mapping family 0", channels);
        return -1;
    }
    out->channels = channels;
    out->pre_skip = rd16(pkt + 10);
    out->input_rate = rd32(pkt + 12);
    out->output_gain = (int16_t)rd16(pkt + 16);
    return 0;
}

struct ogg_demux *ogg_demux_new(void)
{
    struct ogg_demux *d = calloc(1, sizeof(*d));
    BUG_ON(!d);
    ogg_sync_init(&d->sync);
    d->state = ST_HEAD;
    return d;
}

void ogg_demux_free(struct ogg_demux *d)
{
    if (!d)
        return;
    ogg_sync_clear(&d->sync);
    if (d->have_os)
        ogg_stream_clear(&d->os);
    free(d);
}

const char *ogg_demux_error(const struct ogg_demux *d)
{
    return d->err;
}

void ogg_demux_stats(const struct ogg_demux *d, struct ogg_demux_stats *out)
{
    *out = d->st;
}

__attribute__((format(printf, 2, 3))) static int fail(struct ogg_demux *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof(d->err), fmt, ap);
    va_end(ap);
    d->state = ST_FAILED;
    return -1;
}

static void drop_stream(struct ogg_demux *d)
{
    if (d->have_os)
        ogg_stream_clear(&d->os);
    d->have_os = false;
    d->eos_pending = false;
    d->group_has_other = false; /* other codecs of the segment just ended are not the next's */
    d->state = ST_HEAD;
    d->head_wait = 0;
}

/* The BOS page <pg> whose body starts with "OpusHead": follow its stream. */
static int start_stream(struct ogg_demux *d, ogg_page *pg, const struct ogg_demux_cb *cb, void *arg)
{
    drop_stream(d);
    d->serial = (uint32_t)ogg_page_serialno(pg);
    ogg_stream_init(&d->os, (int)d->serial);
    d->have_os = true;
    ogg_packet op;
    if (ogg_stream_pagein(&d->os, pg) != 0 || ogg_stream_packetout(&d->os, &op) != 1)
        return fail(d, "OpusHead packet is not complete on its BOS page");
    struct opus_head_info head;
    char why[96];
    if (opus_head_parse(op.packet, (size_t)op.bytes, &head, why, sizeof(why)) != 0)
        return fail(d, "%s", why);
    d->state = ST_TAGS;
    d->eos_pending = ogg_page_eos(pg) != 0;
    d->group_has_opus = true;
    d->any_head = true;
    d->st.streams++;
    log_debug("ogg", "opus stream %08x: %d ch, pre-skip %d, input rate %u", (unsigned)d->serial,
              head.channels, head.pre_skip, (unsigned)head.input_rate);
    return cb->on_head ? cb->on_head(arg, &head) : 0;
}

static bool page_is_opus_bos(const ogg_page *pg)
{
    return pg->body_len >= 8 && memcmp(pg->body, "OpusHead", 8) == 0;
}

static int on_page(struct ogg_demux *d, ogg_page *pg, const struct ogg_demux_cb *cb, void *arg)
{
    d->st.pages++;
    d->any_page = true;
    if (ogg_page_version(pg) != 0) {
        d->st.bad_pages++;
        return 0;
    }
    if (ogg_page_bos(pg)) {
        if (!d->in_bos_group) {
            d->in_bos_group = true;
            d->group_has_opus = false;
            d->group_has_other = false;
        }
        if (d->group_has_opus)
            return 0; /* a second Opus track in the same segment: not followed */
        if (!page_is_opus_bos(pg)) {
            d->group_has_other = true;
            return 0;
        }
        return start_stream(d, pg, cb, arg);
    }
    d->in_bos_group = false;

    if (d->state == ST_HEAD) {
        if (d->group_has_other)
            return fail(d, "%s logical stream is not Opus (no OpusHead)",
                        d->any_head ? "chained" : "first");
        d->head_wait += (uint64_t)(pg->header_len + pg->body_len);
        if (d->head_wait > OGG_DEMUX_MAX_HEAD_WAIT)
            return fail(d, "no Opus stream start (BOS page with OpusHead) in %d bytes of pages",
                        OGG_DEMUX_MAX_HEAD_WAIT);
        return 0;
    }
    if ((uint32_t)ogg_page_serialno(pg) != d->serial)
        return 0; /* another stream of the multiplex */
    if (ogg_stream_pagein(&d->os, pg) != 0) {
        d->st.bad_pages++;
        return 0;
    }
    if (ogg_page_eos(pg))
        d->eos_pending = true;
    return 0;
}

static int on_packet(struct ogg_demux *d, const unsigned char *p, size_t len,
                     const struct ogg_demux_cb *cb, void *arg)
{
    if (d->state == ST_TAGS) {
        d->state = ST_AUDIO;
        if (len >= 8 && memcmp(p, "OpusTags", 8) == 0)
            return 0;
        /* RFC 7845 requires OpusTags here; a sloppy muxer may omit it, so try it as audio */
        LOG_RATELIMITED(LOG_WARN, "ogg", "stream %08x: second packet is not OpusTags",
                        (unsigned)d->serial);
    }
    if (len == 0 || len > OGG_DEMUX_MAX_PACKET ||
        (len >= 8 && (memcmp(p, "OpusHead", 8) == 0 || memcmp(p, "OpusTags", 8) == 0)))
        goto bad;
    /* Full structural check (frame count and sizes consistent with the length), not just the
     * TOC that opus_packet_get_nb_samples looks at: these bytes go to every listener. */
    unsigned char toc;
    const unsigned char *frames[48];
    opus_int16 sizes[48];
    int payload_offset;
    if (opus_packet_parse(p, (opus_int32)len, &toc, frames, sizes, &payload_offset) <= 0)
        goto bad;
    int samples = opus_packet_get_nb_samples(p, (opus_int32)len, 48000);
    if (samples <= 0)
        goto bad;
    d->st.packets++;
    return cb->on_packet ? cb->on_packet(arg, p, len, samples) : 0;
bad:
    d->st.bad_packets++;
    LOG_RATELIMITED(LOG_WARN, "ogg", "stream %08x: dropped an invalid Opus packet (%zu bytes)",
                    (unsigned)d->serial, len);
    return 0;
}

/* Hands out the complete packets the followed stream holds, then applies the bounds and the
 * EOS. Returns 0 or what stopped it. */
static int drain(struct ogg_demux *d, const struct ogg_demux_cb *cb, void *arg)
{
    if (!d->have_os || d->state == ST_HEAD || d->state == ST_FAILED)
        return 0;
    for (;;) {
        ogg_packet op;
        int r = ogg_stream_packetout(&d->os, &op);
        if (r == 0)
            break;
        if (r < 0) {
            d->st.holes++;
            continue;
        }
        int rc = on_packet(d, op.packet, (size_t)op.bytes, cb, arg);
        if (rc)
            return rc;
    }
    /* What is left is one packet being reassembled across pages. */
    if (d->os.body_fill - d->os.body_returned > OGG_DEMUX_MAX_PACKET) {
        d->st.bad_packets++;
        LOG_RATELIMITED(LOG_WARN, "ogg", "stream %08x: dropped a packet over %d bytes",
                        (unsigned)d->serial, OGG_DEMUX_MAX_PACKET);
        /* Forgets the partial packet; libogg then skips its continuation segments on the
         * following pages without buffering them (no hole is reported: pageno is reset). */
        ogg_stream_reset(&d->os);
    }
    if (d->eos_pending)
        drop_stream(d);
    return 0;
}

/* Copies <len> bytes into libogg's buffer. */
static void sync_write(struct ogg_demux *d, const unsigned char *p, size_t len)
{
    char *dst = ogg_sync_buffer(&d->sync, (long)len);
    BUG_ON(!dst);
    memcpy(dst, p, len);
    ogg_sync_wrote(&d->sync, (long)len);
}

int ogg_demux_feed(struct ogg_demux *d, const void *buf, size_t len, const struct ogg_demux_cb *cb,
                   void *arg)
{
    const unsigned char *in = buf;
    int rc = 0;
    if (d->state == ST_FAILED)
        return -1;
    for (;;) {
        rc = drain(d, cb, arg);
        if (rc)
            break;
        /* a capture pattern that then fails to verify is a corrupt page (usually its CRC) */
        bool at_capture = d->sync.fill - d->sync.returned >= 4 &&
                          memcmp(d->sync.data + d->sync.returned, "OggS", 4) == 0;
        ogg_page pg;
        long n = ogg_sync_pageseek(&d->sync, &pg);
        if (n > 0) {
            rc = on_page(d, &pg, cb, arg);
            if (rc)
                break;
            continue;
        }
        if (n < 0) {
            if (at_capture)
                d->st.bad_pages++;
            d->st.skipped_bytes += (uint64_t)-n;
            if (!d->any_page && d->st.skipped_bytes >= OGG_DEMUX_MAX_SYNC_BYTES) {
                rc = fail(d, "not an Ogg stream: no page in the first %d bytes",
                          OGG_DEMUX_MAX_SYNC_BYTES);
                break;
            }
            continue;
        }
        if (len == 0)
            return 0;
        size_t chunk = len < FEED_CHUNK ? len : FEED_CHUNK;
        sync_write(d, in, chunk);
        in += chunk;
        len -= chunk;
    }
    if (rc < 0 && d->state == ST_FAILED)
        return -1;
    if (len)
        sync_write(d, in, len); /* stopped by a callback: keep the rest for the next call */
    return rc;
}

/* ---- upgrade: the same stream, carried on by another demuxer ------------------------------ */

int ogg_demux_save(const struct ogg_demux *d, struct ogg_demux_pos *pos, const unsigned char **pending,
                   size_t *len)
{
    if (d->state == ST_FAILED)
        return -1;
    memset(pos, 0, sizeof(*pos));
    pos->state = (uint8_t)d->state;
    pos->have_os = d->have_os;
    pos->serial = d->serial;
    pos->pageno = d->have_os ? (int64_t)d->os.pageno : 0;
    pos->any_page = d->any_page;
    pos->any_head = d->any_head;
    *pending = d->sync.data ? d->sync.data + d->sync.returned : NULL;
    *len = d->sync.data ? (size_t)(d->sync.fill - d->sync.returned) : 0;
    return 0;
}

struct ogg_demux *ogg_demux_restore(const struct ogg_demux_pos *pos, const void *pending,
                                    size_t len)
{
    if (pos->state > ST_AUDIO || len > OGG_MUX_RESTORE_MAX)
        return NULL;
    struct ogg_demux *d = ogg_demux_new();
    d->state = (enum demux_state)pos->state;
    d->serial = pos->serial;
    d->any_page = pos->any_page;
    d->any_head = pos->any_head;
    if (pos->have_os) {
        BUG_ON(ogg_stream_init(&d->os, (int)pos->serial) != 0);
        d->os.pageno = (long)pos->pageno; /* the next page continues, no hole */
        d->have_os = true;
    }
    if (len > 0) {
        char *p = ogg_sync_buffer(&d->sync, (long)len);
        BUG_ON(!p);
        memcpy(p, pending, len);
        ogg_sync_wrote(&d->sync, (long)len);
    }
    return d;
}
