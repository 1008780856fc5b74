/*
 * ogg/mux: Opus packets in, rostrum's own Ogg pages out. See mux.h for the stream layout.
 *
 * libogg's ogg_stream_state keeps the packets and writes the pages (lacing, CRC, sequence
 * numbers), but it never chooses where a page ends: we count lacing values, bytes and samples
 * ourselves and cut with ogg_stream_flush_fill and a fill target above any body, which emits
 * everything buffered as one page (ogg_stream_flush would split past 4 KiB, and pageout would
 * hold packets back).
 */
#include "ogg/mux.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ogg/ogg.h>
#include <opus/opus.h>

#include "util/check.h"
#include "util/log.h"

#define FLUSH_FILL (1 << 17) /* more than any page body: never cut early */

struct ogg_mux {
    ogg_stream_state os;
    int pre_skip;
    int page_samples;      /* page_ms at 48 kHz */
    uint64_t granule;      /* pre_skip + samples added */
    uint64_t page_granule; /* granule of the last page emitted */
    int64_t packetno;
    int buf_packets; /* what ogg_stream_state holds for the next page */
    int buf_lacing;
    int buf_samples;
    size_t buf_bytes;
    unsigned char *headers; /* pages 0 and 1, owned */
    size_t headers_len;
    unsigned char page[OGG_MUX_MAX_PAGE];
};

static void wr16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Length of <s> cut to at most <max> bytes without splitting a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* Appends page <og> to the header blob. */
static void headers_append(struct ogg_mux *m, const ogg_page *og)
{
    size_t n = (size_t)(og->header_len + og->body_len);
    m->headers = realloc(m->headers, m->headers_len + n);
    BUG_ON(!m->headers);
    memcpy(m->headers + m->headers_len, og->header, (size_t)og->header_len);
    memcpy(m->headers + m->headers_len + og->header_len, og->body, (size_t)og->body_len);
    m->headers_len += n;
}

static void header_packet(struct ogg_mux *m, unsigned char *p, size_t len)
{
    ogg_packet op = {
        .packet = p,
        .bytes = (long)len,
        .b_o_s = m->packetno == 0,
        .granulepos = 0,
        .packetno = m->packetno++,
    };
    ogg_stream_packetin(&m->os, &op);
    ogg_page og;
    while (ogg_stream_flush_fill(&m->os, &og, FLUSH_FILL))
        headers_append(m, &og);
}

struct ogg_mux *ogg_mux_new(uint32_t serial, const struct opus_head_info *head, const char *vendor,
                            const char *title, int page_ms)
{
    if (head->channels < 1 || head->channels > 2 || head->pre_skip < 0 || head->pre_skip > 65535)
        return NULL;
    struct ogg_mux *m = calloc(1, sizeof(*m));
    BUG_ON(!m);
    int rc = ogg_stream_init(&m->os, (int)serial);
    BUG_ON(rc != 0);
    m->pre_skip = head->pre_skip;
    m->granule = m->page_granule = (uint64_t)head->pre_skip;
    ogg_mux_set_page_ms(m, page_ms);

    /* RFC 7845 5.1: magic, version 1, channels, pre-skip, input rate, gain, mapping family 0 */
    unsigned char oh[19];
    memcpy(oh, "OpusHead", 8);
    oh[8] = 1;
    oh[9] = (unsigned char)head->channels;
    wr16(oh + 10, (uint16_t)head->pre_skip);
    wr32(oh + 12, head->input_rate);
    wr16(oh + 16, (uint16_t)head->output_gain);
    oh[18] = 0;
    header_packet(m, oh, sizeof(oh));

    /* RFC 7845 5.2: magic, vendor, comment count, comments; each string LE32-length-prefixed */
    if (!vendor)
        vendor = "rostrum";
    size_t vlen = utf8_cut(vendor, OGG_MUX_MAX_TAG);
    size_t tlen = title ? utf8_cut(title, OGG_MUX_MAX_TAG) : 0;
    unsigned char tags[8 + 4 + OGG_MUX_MAX_TAG + 4 + 4 + 6 + OGG_MUX_MAX_TAG];
    size_t n = 0;
    memcpy(tags, "OpusTags", 8);
    n += 8;
    wr32(tags + n, (uint32_t)vlen);
    n += 4;
    memcpy(tags + n, vendor, vlen);
    n += vlen;
    wr32(tags + n, title ? 1 : 0);
    n += 4;
    if (title) {
        wr32(tags + n, (uint32_t)(6 + tlen));
        n += 4;
        memcpy(tags + n, "TITLE=", 6);
        memcpy(tags + n + 6, title, tlen);
        n += 6 + tlen;
    }
    header_packet(m, tags, n);
    return m;
}

void ogg_mux_free(struct ogg_mux *m)
{
    if (!m)
        return;
    ogg_stream_clear(&m->os);
    free(m->headers);
    free(m);
}

const unsigned char *ogg_mux_headers(const struct ogg_mux *m, size_t *len)
{
    *len = m->headers_len;
    return m->headers;
}

void ogg_mux_set_page_ms(struct ogg_mux *m, int page_ms)
{
    if (page_ms < 1)
        page_ms = 1;
    if (page_ms > 10000)
        page_ms = 10000;
    m->page_samples = page_ms * 48;
}

uint64_t ogg_mux_granule(const struct ogg_mux *m)
{
    return m->granule;
}

void ogg_mux_flush(struct ogg_mux *m, ogg_mux_page_cb cb, void *arg)
{
    if (m->buf_packets == 0)
        return;
    ogg_page og;
    /* our bounds make this exactly one page; the loop only guards against a miscount */
    while (ogg_stream_flush_fill(&m->os, &og, FLUSH_FILL)) {
        size_t len = (size_t)(og.header_len + og.body_len);
        memcpy(m->page, og.header, (size_t)og.header_len);
        memcpy(m->page + og.header_len, og.body, (size_t)og.body_len);
        int64_t gp = ogg_page_granulepos(&og);
        uint64_t granule = gp < 0 ? m->page_granule : (uint64_t)gp;
        int samples = (int)(granule - m->page_granule);
        m->page_granule = granule;
        cb(arg, m->page, len, granule, (uint32_t)ogg_page_pageno(&og), samples);
    }
    m->buf_packets = 0;
    m->buf_lacing = 0;
    m->buf_samples = 0;
    m->buf_bytes = 0;
}

void ogg_mux_packet(struct ogg_mux *m, const unsigned char *pkt, size_t len, int samples,
                    ogg_mux_page_cb cb, void *arg)
{
    if (len == 0 || len > OGG_MUX_MAX_PACKET || samples <= 0) {
        LOG_RATELIMITED(LOG_WARN, "ogg", "mux: ignored a packet of %zu bytes, %d samples", len,
                        samples);
        return;
    }
    int lacing = (int)(len / 255) + 1;
    if (m->buf_packets &&
        (m->buf_lacing + lacing > 255 || m->buf_bytes + len > OGG_MUX_PAGE_BYTES ||
         m->buf_samples >= m->page_samples))
        ogg_mux_flush(m, cb, arg);

    m->granule += (uint64_t)samples;
    ogg_packet op = {
        .packet = (unsigned char *)pkt, /* libogg copies it; its API is not const-correct */
        .bytes = (long)len,
        .granulepos = (ogg_int64_t)m->granule,
        .packetno = m->packetno++,
    };
    ogg_stream_packetin(&m->os, &op);
    m->buf_packets++;
    m->buf_lacing += lacing;
    m->buf_samples += samples;
    m->buf_bytes += len;
    if (m->buf_samples >= m->page_samples)
        ogg_mux_flush(m, cb, arg);
}

int opus_silence_packet(int channels, int bytes, unsigned char *out, size_t cap)
{
    if (channels < 1 || channels > 2 || cap == 0 || bytes < 0 || bytes > OPUS_SILENCE_MAX ||
        (bytes > 0 && (bytes < 3 || (size_t)bytes > cap)))
        return -1;
    int err;
    OpusEncoder *enc = opus_encoder_create(48000, channels, OPUS_APPLICATION_AUDIO, &err);
    if (!enc)
        return -1;
    opus_int16 pcm[960 * 2] = {0};
    opus_int32 n = opus_encode(enc, pcm, 960, out, cap > 4000 ? 4000 : (opus_int32)cap);
    opus_encoder_destroy(enc);
    /* the same packet, padded (RFC 6716 3.2.5: a code 3 packet's padding bytes): it decodes
     * to the same digital silence */
    if (n > 0 && bytes > 0 && n != bytes && (n > bytes || opus_packet_pad(out, n, bytes) != OPUS_OK))
        return -1;
    if (n > 0 && bytes > 0)
        n = bytes;
    return n > 0 ? (int)n : -1;
}

void ogg_mux_save(const struct ogg_mux *m, struct ogg_mux_pos *pos)
{
    BUG_ON(m->buf_packets != 0); /* flushed first: a page is never split between binaries */
    memset(pos, 0, sizeof(*pos));
    pos->granule = m->granule;
    pos->page_granule = m->page_granule;
    pos->packetno = m->packetno;
    pos->pageno = (int64_t)m->os.pageno;
}

void ogg_mux_restore(struct ogg_mux *m, const struct ogg_mux_pos *pos)
{
    m->granule = pos->granule;
    m->page_granule = pos->page_granule;
    m->packetno = pos->packetno;
    m->os.packetno = pos->packetno;
    m->os.pageno = (long)pos->pageno;
    m->os.granulepos = (ogg_int64_t)pos->page_granule;
}
