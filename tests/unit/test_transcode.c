/*
 * Unit tests for the renditions' codec (transcode/codec.c): the ADTS header, and the timing
 * contract of transcode.h that the HLS packager relies on -- whole frames, <samples> in
 * 48 kHz units, and an end granule on the Opus programme's timeline that only grows and
 * accounts for every frame.
 */
#include <math.h>
#include <stdint.h>

#include <opus/opus.h>

#include "harness.h"
#include "transcode/transcode.h"

#define PKT 960 /* 20 ms Opus packets */

/* <n> 20 ms packets of a 440 Hz sine, encoded; calls <fn> for each. */
struct tone {
    OpusEncoder *enc;
    double phase;
    int channels;
};

static int tone_packet(struct tone *t, unsigned char *out, int cap)
{
    float pcm[PKT * 2];
    for (int i = 0; i < PKT; i++) {
        float v = (float)(0.3 * sin(t->phase));
        t->phase += 2 * M_PI * 440.0 / 48000.0;
        for (int c = 0; c < t->channels; c++)
            pcm[i * t->channels + c] = v;
    }
    return opus_encode_float(t->enc, pcm, PKT, out, cap);
}

static void tone_init(struct tone *t, int channels)
{
    int err;
    t->enc = opus_encoder_create(48000, channels, OPUS_APPLICATION_AUDIO, &err);
    ASSERT(t->enc != NULL);
    t->channels = channels;
    t->phase = 0;
}

/* Length of the ADTS frame at <p> (its header checked), or -1. */
static int adts_len(const unsigned char *p, size_t avail)
{
    if (avail < 7 || p[0] != 0xFF || (p[1] & 0xF7) != 0xF1 || (p[2] >> 6) != 1 ||
        ((p[2] >> 2) & 15) != 3)
        return -1;
    return ((p[3] & 3) << 11) | (p[4] << 3) | (p[5] >> 5);
}

TEST(adts_header_fields)
{
    unsigned char h[7];
    ASSERT_EQ_INT(adts_header(h, 500, 2), 0);
    const unsigned char want[7] = {0xFF, 0xF1, 0x4C, 0x80, 0x3F, 0x7F, 0xFC};
    ASSERT_EQ_MEM(h, want, 7); /* LC, 48 kHz (3), stereo (2), length 507, fullness 0x7FF */
    ASSERT_EQ_INT(adts_len(h, 7), 507);
    ASSERT_EQ_INT(adts_header(h, 8184, 1), 0); /* 8191 in all: the 13-bit field's top */
    ASSERT_EQ_INT(adts_len(h, 7), 8191);
    ASSERT_EQ_INT(adts_header(h, 8185, 1), -1);
}

/* Feeds 3 s of tone starting at granule <g0> through an encoder of <kind>; checks the frames
 * and the granules against the contract. */
static void check_contract(int kind, int channels, int kbps)
{
    char err[200];
    struct rcodec *c = rcodec_new(kind, channels, 0, kbps, err, sizeof(err));
    if (!c)
        fprintf(stderr, "rcodec_new: %s\n", err);
    ASSERT(c != NULL);
    int fs = rcodec_frame_samples(c);
    ASSERT_EQ_INT(fs, kind == RENDITION_AAC ? 1024 : 1152);
    struct tone t;
    tone_init(&t, channels);
    const int64_t g0 = 312 + 48000 * 7; /* somewhere in a stream, pre-skip included */
    int64_t pts = g0, last_end = INT64_MIN;
    uint64_t total = 0;
    int frames = 0;
    struct buf out = {0};
    for (int p = 0; p < 150; p++) {
        unsigned char pkt[1500];
        int n = tone_packet(&t, pkt, sizeof(pkt));
        ASSERT(n > 0);
        uint32_t samples = 0;
        int64_t end = last_end;
        out.len = 0;
        int k = rcodec_packet(c, pkt, (size_t)n, pts, &out, &samples, &end);
        ASSERT(k >= 0);
        pts += PKT;
        if (k == 0) {
            ASSERT_EQ_UINT(out.len, 0);
            continue;
        }
        /* whole frames, each lasting one frame's samples */
        ASSERT_EQ_UINT(samples, (uint64_t)k * (uint64_t)fs);
        if (kind == RENDITION_AAC) {
            size_t off = 0;
            for (int i = 0; i < k; i++) {
                int len = adts_len((const unsigned char *)out.data + off, out.len - off);
                ASSERT(len > 7);
                off += (size_t)len;
            }
            ASSERT_EQ_UINT(off, out.len);
        } else {
            const unsigned char *d = (const unsigned char *)out.data;
            ASSERT(out.len >= 4 && d[0] == 0xFF && (d[1] & 0xFE) == 0xFA);
        }
        /* the end only grows, by exactly the frames' duration */
        if (last_end != INT64_MIN)
            ASSERT_EQ_INT(end - last_end, (int64_t)samples);
        ASSERT(end <= pts); /* no frame ends past the audio given */
        last_end = end;
        total += samples;
        frames += k;
    }
    /* the first frame starts where the programme's audio began, less the encoder's delay
     * (its priming): what was given, the FIFO's partial frame and the encoder's lookahead
     * not out yet, is under a few frames */
    int64_t first_start = last_end - (int64_t)total;
    ASSERT(first_start <= g0 && first_start >= g0 - 2 * fs);
    ASSERT(pts - last_end < 4 * fs);
    ASSERT(frames > 120 * PKT / fs);
    /* a jump (the rendition skipped ahead): frames go on from the new position */
    int64_t jump = pts + 48000 * 5;
    int64_t end = last_end;
    for (int p = 0; p < 20; p++) {
        unsigned char pkt[1500];
        int n = tone_packet(&t, pkt, sizeof(pkt));
        uint32_t samples = 0;
        out.len = 0;
        ASSERT(rcodec_packet(c, pkt, (size_t)n, jump + p * PKT, &out, &samples, &end) >= 0);
    }
    ASSERT(end > jump && end <= jump + 20 * PKT);
    buf_free(&out);
    opus_encoder_destroy(t.enc);
    rcodec_free(c);
}

TEST(aac_contract_mono)
{
    check_contract(RENDITION_AAC, 1, 96);
}

TEST(aac_contract_stereo)
{
    check_contract(RENDITION_AAC, 2, 128);
}

TEST(mp3_contract_stereo)
{
    check_contract(RENDITION_MP3, 2, 128);
}

TEST(codec_refuses_what_it_cannot_do)
{
    char err[200];
    ASSERT(rcodec_new(RENDITION_AAC, 3, 0, 96, err, sizeof(err)) == NULL);
    ASSERT(strstr(err, "mono or stereo") != NULL);
    ASSERT(rcodec_new(RENDITION_NONE, 2, 0, 96, err, sizeof(err)) == NULL);
    struct rcodec *c = rcodec_new(RENDITION_MP3, 1, 0, 64, err, sizeof(err));
    ASSERT(c != NULL);
    /* a packet libopus refuses (a code 3 TOC with no frame count) is an error, not a crash */
    const unsigned char bad[] = {0x03};
    struct buf out = {0};
    uint32_t samples = 0;
    int64_t end = 0;
    ASSERT_EQ_INT(rcodec_packet(c, bad, sizeof(bad), 0, &out, &samples, &end), -1);
    ASSERT_EQ_UINT(out.len, 0);
    buf_free(&out);
    rcodec_free(c);
}

TEST(rendition_names)
{
    size_t n = 0;
    ASSERT_EQ_INT(rendition_mount_kind("live.aac", &n), RENDITION_AAC);
    ASSERT_EQ_UINT(n, 4);
    ASSERT_EQ_INT(rendition_mount_kind("a.b.mp3", &n), RENDITION_MP3);
    ASSERT_EQ_UINT(n, 3);
    ASSERT_EQ_INT(rendition_mount_kind(".aac", &n), RENDITION_NONE);
    ASSERT_EQ_INT(rendition_mount_kind("live", &n), RENDITION_NONE);
    ASSERT_EQ_INT(rendition_mount_kind("live.ogg", &n), RENDITION_NONE);
    ASSERT_EQ_STR(rendition_content_type(RENDITION_MP3), "audio/mpeg");
    ASSERT_EQ_STR(rendition_content_type(RENDITION_NONE), "audio/ogg");
}

int main(void)
{
    return RUN_TESTS();
}
