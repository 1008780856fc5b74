/*
 * codec: one rendition's decoder (libopus) and encoder (libavcodec: the native "aac", or
 * "libmp3lame"), with the PCM between them held in a small planar FIFO of whole encoder frames.
 *
 * Timestamps: each Opus packet comes with the timeline position of its first sample; the FIFO
 * keeps the position of its first sample, and each encoder frame is sent with it as pts (time
 * base 1/48000). libavcodec gives each output packet the pts of the audio it carries, its
 * encoder delay (AAC's 1024 priming samples, LAME's delay) taken out, so pts + duration is the
 * contract's granule as it is. A packet that does not follow the one before (the rendition
 * skipped ahead) drops the FIFO's partial frame and starts the FIFO at the new position.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <opus/opus.h>

#include "transcode/transcode.h"
#include "util/check.h"

#define OPUS_MAX_FRAME 5760 /* 120 ms at 48 kHz: the longest Opus packet */
#define FIFO_CAP (OPUS_MAX_FRAME + 2048)

struct rcodec {
    int kind, channels;
    OpusDecoder *dec;
    AVCodecContext *enc;
    AVFrame *frame;
    AVPacket *pkt;
    int frame_samples;
    int fifo_len;     /* samples per channel held */
    int64_t fifo_pts; /* timeline position of fifo[.][0] */
    int have_pts;
    float pcm[OPUS_MAX_FRAME * 2];       /* one decoded packet, interleaved */
    float fifo[2][FIFO_CAP];             /* planar */
};

int adts_header(unsigned char out[7], size_t payload, int channels)
{
    size_t len = payload + 7;
    if (len > 8191 || channels < 1 || channels > 7)
        return -1;
    const unsigned profile = 1; /* AAC LC: audio object type 2, minus one */
    const unsigned freq = 3;    /* 48000 Hz */
    unsigned ch = (unsigned)channels;
    out[0] = 0xFF; /* syncword 0xFFF, MPEG-4, layer 0, protection_absent 1 */
    out[1] = 0xF1;
    out[2] = (unsigned char)((profile << 6) | (freq << 2) | (ch >> 2));
    out[3] = (unsigned char)(((ch & 3) << 6) | (len >> 11));
    out[4] = (unsigned char)((len >> 3) & 0xFF);
    out[5] = (unsigned char)(((len & 7) << 5) | 0x1F); /* buffer fullness 0x7FF: VBR */
    out[6] = 0xFC;                                     /* one raw_data_block */
    return 0;
}

void rcodec_free(struct rcodec *c)
{
    if (!c)
        return;
    if (c->dec)
        opus_decoder_destroy(c->dec);
    avcodec_free_context(&c->enc);
    av_frame_free(&c->frame);
    av_packet_free(&c->pkt);
    free(c);
}

struct rcodec *rcodec_new(int kind, int channels, int output_gain, int kbps, char *err,
                          size_t errlen)
{
    if (channels < 1 || channels > 2 || kbps <= 0) {
        snprintf(err, errlen, "%d channel(s) at %d kb/s: renditions take mono or stereo",
                 channels, kbps);
        return NULL;
    }
    const char *name = kind == RENDITION_AAC ? "aac" : kind == RENDITION_MP3 ? "libmp3lame" : NULL;
    const AVCodec *codec = name ? avcodec_find_encoder_by_name(name) : NULL;
    if (!codec) {
        snprintf(err, errlen, "libavcodec has no %s encoder", name ? name : "such");
        return NULL;
    }
    /* libavcodec's own notes (its encoders' statistics on close) are not the server's log */
    av_log_set_level(AV_LOG_ERROR);
    struct rcodec *c = calloc(1, sizeof(*c));
    BUG_ON(!c);
    c->kind = kind;
    c->channels = channels;
    int oerr = 0;
    c->dec = opus_decoder_create(48000, channels, &oerr);
    if (!c->dec) {
        snprintf(err, errlen, "opus_decoder_create: %s", opus_strerror(oerr));
        goto fail;
    }
    opus_decoder_ctl(c->dec, OPUS_SET_GAIN(output_gain));
    c->enc = avcodec_alloc_context3(codec);
    BUG_ON(!c->enc);
    c->enc->sample_rate = 48000;
    c->enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
    c->enc->bit_rate = (int64_t)kbps * 1000;
    c->enc->time_base = (AVRational){1, 48000};
    c->enc->thread_count = 1;
    if (kind == RENDITION_AAC)
        c->enc->profile = FF_PROFILE_AAC_LOW;
    av_channel_layout_default(&c->enc->ch_layout, channels);
    int rc = avcodec_open2(c->enc, codec, NULL);
    if (rc < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(rc, e, sizeof(e));
        snprintf(err, errlen, "%s encoder at %d kb/s: %s", name, kbps, e);
        goto fail;
    }
    c->frame_samples = c->enc->frame_size;
    if (c->frame_samples <= 0 || c->frame_samples > 2048) {
        snprintf(err, errlen, "%s encoder: frame size %d", name, c->frame_samples);
        goto fail;
    }
    c->frame = av_frame_alloc();
    c->pkt = av_packet_alloc();
    BUG_ON(!c->frame || !c->pkt);
    c->frame->nb_samples = c->frame_samples;
    c->frame->format = AV_SAMPLE_FMT_FLTP;
    c->frame->sample_rate = 48000;
    if (av_channel_layout_copy(&c->frame->ch_layout, &c->enc->ch_layout) < 0 ||
        av_frame_get_buffer(c->frame, 0) < 0) {
        snprintf(err, errlen, "%s encoder: no frame buffer", name);
        goto fail;
    }
    return c;
fail:
    rcodec_free(c);
    return NULL;
}

int rcodec_frame_samples(const struct rcodec *c)
{
    return c->frame_samples;
}

/* Takes every packet the encoder has ready. Returns the frames appended, or -1. */
static int rcodec_drain(struct rcodec *c, struct buf *out, uint32_t *samples, int64_t *end)
{
    int n = 0;
    for (;;) {
        int rc = avcodec_receive_packet(c->enc, c->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return n;
        if (rc < 0)
            return -1;
        int64_t dur = c->pkt->duration > 0 ? c->pkt->duration : c->frame_samples;
        if (c->kind == RENDITION_AAC) {
            unsigned char h[7];
            if (adts_header(h, (size_t)c->pkt->size, c->channels) < 0) {
                av_packet_unref(c->pkt);
                return -1;
            }
            buf_append(out, h, sizeof(h));
        }
        buf_append(out, c->pkt->data, (size_t)c->pkt->size);
        *samples += (uint32_t)dur;
        *end = c->pkt->pts + dur;
        av_packet_unref(c->pkt);
        n++;
    }
}

int rcodec_packet(struct rcodec *c, const unsigned char *pkt, size_t len, int64_t pts,
                  struct buf *out, uint32_t *samples, int64_t *end)
{
    int got = opus_decode_float(c->dec, pkt, (opus_int32)len, c->pcm, OPUS_MAX_FRAME, 0);
    if (got < 0)
        return -1;
    if (!c->have_pts || pts != c->fifo_pts + c->fifo_len) {
        /* the first packet, or a jump: the FIFO starts over at <pts> */
        c->fifo_len = 0;
        c->fifo_pts = pts;
        c->have_pts = 1;
    }
    int n = 0;
    for (int i = 0; i < got; i++) {
        for (int ch = 0; ch < c->channels; ch++)
            c->fifo[ch][c->fifo_len] = c->pcm[i * c->channels + ch];
        if (++c->fifo_len < c->frame_samples)
            continue;
        if (av_frame_make_writable(c->frame) < 0)
            return -1;
        for (int ch = 0; ch < c->channels; ch++)
            memcpy(c->frame->data[ch], c->fifo[ch], sizeof(float) * (size_t)c->frame_samples);
        c->frame->pts = c->fifo_pts;
        c->fifo_pts += c->frame_samples;
        c->fifo_len = 0;
        if (avcodec_send_frame(c->enc, c->frame) < 0)
            return -1;
        int k = rcodec_drain(c, out, samples, end);
        if (k < 0)
            return -1;
        n += k;
    }
    return n;
}
