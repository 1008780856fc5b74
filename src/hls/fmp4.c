/* hls/fmp4: see fmp4.h. Boxes are opened with a placeholder size, patched when closed. */
#include "hls/fmp4.h"

#include <string.h>

static void u8(struct buf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    buf_append(b, &c, 1);
}

static void u16(struct buf *b, unsigned v)
{
    unsigned char c[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    buf_append(b, c, 2);
}

static void u24(struct buf *b, uint32_t v)
{
    unsigned char c[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    buf_append(b, c, 3);
}

static void u32(struct buf *b, uint32_t v)
{
    unsigned char c[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    buf_append(b, c, 4);
}

static void u64(struct buf *b, uint64_t v)
{
    u32(b, (uint32_t)(v >> 32));
    u32(b, (uint32_t)v);
}

static void zeros(struct buf *b, size_t n)
{
    static const unsigned char z[32];
    while (n > 0) {
        size_t k = n < sizeof(z) ? n : sizeof(z);
        buf_append(b, z, k);
        n -= k;
    }
}

static void put32_at(struct buf *b, size_t at, uint32_t v)
{
    unsigned char *p = (unsigned char *)b->data + at;
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Opens box <type>; returns where its size goes, for box_end. */
static size_t box(struct buf *b, const char *type)
{
    size_t at = b->len;
    u32(b, 0);
    buf_append(b, type, 4);
    return at;
}

/* A full box: version and flags follow the type. */
static size_t fullbox(struct buf *b, const char *type, unsigned version, uint32_t flags)
{
    size_t at = box(b, type);
    u8(b, version);
    u24(b, flags);
    return at;
}

static void box_end(struct buf *b, size_t at)
{
    put32_at(b, at, (uint32_t)(b->len - at));
}

/* The unity matrix of mvhd and tkhd. */
static void matrix(struct buf *b)
{
    static const uint32_t m[9] = {0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000};
    for (int i = 0; i < 9; i++)
        u32(b, m[i]);
}

/* An MPEG-4 descriptor header (ISO/IEC 14496-1, 8.3.3): tag and a one-byte size (every
 * descriptor here is under 128 bytes). */
static void descr(struct buf *b, unsigned tag, size_t len)
{
    u8(b, tag);
    u8(b, (unsigned)len);
}

static void sample_entry(struct buf *b, const struct fmp4_track *t)
{
    size_t e = box(b, t->aac ? "mp4a" : "Opus");
    zeros(b, 6);  /* SampleEntry reserved */
    u16(b, 1);    /* data_reference_index */
    zeros(b, 8);  /* AudioSampleEntry reserved */
    u16(b, (unsigned)t->channels);
    u16(b, 16);   /* samplesize */
    u16(b, 0);    /* pre_defined */
    u16(b, 0);    /* reserved */
    u32(b, (t->rate > 65535 ? 0 : t->rate) << 16);
    if (!t->aac) {
        size_t d = box(b, "dOps"); /* Opus-in-ISOBMFF 4.3.2 */
        u8(b, 0);                  /* Version */
        u8(b, (unsigned)t->channels);
        u16(b, (unsigned)t->pre_skip);
        u32(b, t->input_rate);
        u16(b, (uint16_t)t->output_gain);
        u8(b, 0); /* ChannelMappingFamily 0: mono or stereo, no table */
        box_end(b, d);
    } else {
        size_t d = fullbox(b, "esds", 0, 0);
        /* ES_Descriptor( DecoderConfigDescriptor( DecoderSpecificInfo ) SLConfigDescriptor ) */
        descr(b, 0x03, 3 + (2 + 13 + 2 + 2) + 3);
        u16(b, 1); /* ES_ID */
        u8(b, 0);  /* no stream dependence, URL or OCR */
        descr(b, 0x04, 13 + 2 + 2);
        u8(b, 0x40);         /* objectTypeIndication: Audio ISO/IEC 14496-3 */
        u8(b, 0x05 << 2 | 1); /* streamType audio, upStream 0, reserved 1 */
        u24(b, 0);           /* bufferSizeDB */
        u32(b, t->avg_bitrate); /* maxBitrate */
        u32(b, t->avg_bitrate); /* avgBitrate */
        descr(b, 0x05, 2);
        buf_append(b, t->asc, 2);
        descr(b, 0x06, 1);
        u8(b, 0x02); /* SLConfigDescriptor predefined: MP4 */
        box_end(b, d);
    }
    box_end(b, e);
}

void fmp4_init(struct buf *out, const struct fmp4_track *t)
{
    size_t f = box(out, "ftyp");
    buf_append(out, "iso6", 4);
    u32(out, 0);
    buf_append(out, "iso6cmfcmp41", 12);
    box_end(out, f);

    size_t moov = box(out, "moov");
    size_t mvhd = fullbox(out, "mvhd", 0, 0);
    u32(out, 0);          /* creation_time */
    u32(out, 0);          /* modification_time */
    u32(out, FMP4_TIMESCALE);
    u32(out, 0);          /* duration: unknown (fragmented, live) */
    u32(out, 0x00010000); /* rate 1.0 */
    u16(out, 0x0100);     /* volume 1.0 */
    zeros(out, 10);
    matrix(out);
    zeros(out, 24); /* pre_defined */
    u32(out, 2);    /* next_track_ID */
    box_end(out, mvhd);

    size_t trak = box(out, "trak");
    size_t tkhd = fullbox(out, "tkhd", 0, 3); /* enabled, in movie */
    u32(out, 0);
    u32(out, 0);
    u32(out, 1); /* track_ID */
    u32(out, 0);
    u32(out, 0); /* duration */
    zeros(out, 8);
    u16(out, 0);      /* layer */
    u16(out, 0);      /* alternate_group */
    u16(out, 0x0100); /* volume: an audio track */
    u16(out, 0);
    matrix(out);
    u32(out, 0); /* width */
    u32(out, 0); /* height */
    box_end(out, tkhd);

    if (t->pre_skip > 0) {
        /* The priming is decoded but not presented: presentation starts <pre_skip> samples
         * into the media; segment_duration 0 is "the rest of the media" of a fragmented
         * track whose length is not known yet. */
        size_t edts = box(out, "edts");
        size_t elst = fullbox(out, "elst", 0, 0);
        u32(out, 1);
        u32(out, 0);                      /* segment_duration */
        u32(out, (uint32_t)t->pre_skip);  /* media_time */
        u16(out, 1);                      /* media_rate_integer */
        u16(out, 0);
        box_end(out, elst);
        box_end(out, edts);
    }

    size_t mdia = box(out, "mdia");
    size_t mdhd = fullbox(out, "mdhd", 0, 0);
    u32(out, 0);
    u32(out, 0);
    u32(out, FMP4_TIMESCALE);
    u32(out, 0);
    u16(out, 0x55c4); /* language "und", packed ISO-639-2/T */
    u16(out, 0);
    box_end(out, mdhd);
    size_t hdlr = fullbox(out, "hdlr", 0, 0);
    u32(out, 0);
    buf_append(out, "soun", 4);
    zeros(out, 12);
    buf_append(out, "SoundHandler", 13); /* with its NUL */
    box_end(out, hdlr);

    size_t minf = box(out, "minf");
    size_t smhd = fullbox(out, "smhd", 0, 0);
    u16(out, 0); /* balance */
    u16(out, 0);
    box_end(out, smhd);
    size_t dinf = box(out, "dinf");
    size_t dref = fullbox(out, "dref", 0, 0);
    u32(out, 1);
    size_t url = fullbox(out, "url ", 0, 1); /* self-contained */
    box_end(out, url);
    box_end(out, dref);
    box_end(out, dinf);

    size_t stbl = box(out, "stbl");
    size_t stsd = fullbox(out, "stsd", 0, 0);
    u32(out, 1);
    sample_entry(out, t);
    box_end(out, stsd);
    static const char *const empty[] = {"stts", "stsc", "stco"};
    for (int i = 0; i < 3; i++) {
        size_t e = fullbox(out, empty[i], 0, 0);
        u32(out, 0); /* entry_count */
        box_end(out, e);
    }
    size_t stsz = fullbox(out, "stsz", 0, 0);
    u32(out, 0); /* sample_size */
    u32(out, 0); /* sample_count */
    box_end(out, stsz);
    box_end(out, stbl);
    box_end(out, minf);
    box_end(out, mdia);
    box_end(out, trak);

    size_t mvex = box(out, "mvex");
    size_t trex = fullbox(out, "trex", 0, 0);
    u32(out, 1); /* track_ID */
    u32(out, 1); /* default_sample_description_index */
    u32(out, 0);
    u32(out, 0);
    u32(out, 0); /* default_sample_flags: sync samples */
    box_end(out, trex);
    box_end(out, mvex);
    box_end(out, moov);
}

void fmp4_fragment_head(struct buf *out, uint32_t seq, uint64_t base_time, const uint32_t *sizes,
                        const uint32_t *durations, int n)
{
    size_t moof = box(out, "moof");
    size_t mfhd = fullbox(out, "mfhd", 0, 0);
    u32(out, seq);
    box_end(out, mfhd);
    size_t traf = box(out, "traf");
    size_t tfhd = fullbox(out, "tfhd", 0, 0x020000); /* default-base-is-moof */
    u32(out, 1);
    box_end(out, tfhd);
    size_t tfdt = fullbox(out, "tfdt", 1, 0);
    u64(out, base_time);
    box_end(out, tfdt);
    /* data-offset, sample-duration and sample-size present */
    size_t trun = fullbox(out, "trun", 0, 0x000001 | 0x000100 | 0x000200);
    u32(out, (uint32_t)n);
    size_t off_at = out->len;
    u32(out, 0); /* data_offset, patched below */
    uint64_t payload = 0;
    for (int i = 0; i < n; i++) {
        u32(out, durations[i]);
        u32(out, sizes[i]);
        payload += sizes[i];
    }
    box_end(out, trun);
    box_end(out, traf);
    box_end(out, moof);
    /* the first sample's offset from the start of the moof: past it and the mdat header */
    put32_at(out, off_at, (uint32_t)(out->len - moof + 8));
    u32(out, (uint32_t)(payload + 8));
    buf_append(out, "mdat", 4);
}

int adts_parse(const unsigned char *p, size_t len, struct adts_info *out)
{
    static const uint32_t rates[13] = {96000, 88200, 64000, 48000, 44100, 32000, 24000,
                                       22050, 16000, 12000, 11025, 8000,  7350};
    if (len < 7)
        return len >= 2 && (p[0] != 0xff || (p[1] & 0xf6) != 0xf0) ? -1 : -2;
    if (p[0] != 0xff || (p[1] & 0xf6) != 0xf0) /* sync, layer 0 */
        return -1;
    int crc_absent = p[1] & 1;
    int profile = p[2] >> 6; /* audio object type - 1 */
    int sfi = (p[2] >> 2) & 0xf;
    int chan = ((p[2] & 1) << 2) | (p[3] >> 6);
    int flen = ((p[3] & 3) << 11) | (p[4] << 3) | (p[5] >> 5);
    int hlen = crc_absent ? 7 : 9;
    if (sfi >= 13 || chan == 0 || flen < hlen)
        return -1;
    out->header_len = hlen;
    out->frame_len = flen;
    out->channels = chan;
    out->rate = rates[sfi];
    out->blocks = (p[6] & 3) + 1;
    int aot = profile + 1;
    /* AudioSpecificConfig: audioObjectType(5) samplingFrequencyIndex(4) channelConfiguration(4)
     * and GASpecificConfig's three zero bits (1024-sample frames, no core coder, no extension) */
    out->asc[0] = (unsigned char)(aot << 3 | sfi >> 1);
    out->asc[1] = (unsigned char)((sfi & 1) << 7 | chan << 3);
    return hlen;
}
