/*
 * transcode_bench: what one space's AAC and MP3 renditions cost (issue 11, item 5), on a fixed
 * input: <seconds> of a programme-like signal (a chord that moves every half second, with a
 * little noise, so the encoders have real work) encoded to Opus in 20 ms packets first, then
 * decoded and re-encoded through the server's own codec (transcode/codec.c) exactly as a
 * rendition does. It prints, per rendition, the thread CPU time, the CPU seconds per hour of
 * audio and the share of one core, and the decode alone (libopus) for comparison.
 *
 *   bench/transcode [--seconds N]       (builds this against build/librostrum-*.a and runs it)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <opus/opus.h>

#include "transcode/transcode.h"

#define PKT 960

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct packets {
    int n, channels;
    unsigned char (*data)[1500];
    int *len;
};

/* <seconds> of signal as 20 ms Opus packets at 64 kb/s. */
static void make_input(struct packets *p, int seconds, int channels)
{
    int err;
    OpusEncoder *enc = opus_encoder_create(48000, channels, OPUS_APPLICATION_AUDIO, &err);
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(64000 * channels / 2 + 32000 * (channels == 1)));
    p->n = seconds * 50;
    p->channels = channels;
    p->data = malloc(sizeof(*p->data) * (size_t)p->n);
    p->len = malloc(sizeof(int) * (size_t)p->n);
    static const double chords[4][3] = {
        {220, 277.2, 329.6}, {246.9, 311.1, 370}, {196, 246.9, 293.7}, {261.6, 329.6, 392}};
    double ph[3] = {0};
    uint32_t rnd = 1;
    float pcm[PKT * 2];
    for (int k = 0; k < p->n; k++) {
        const double *f = chords[(k / 25) % 4];
        for (int i = 0; i < PKT; i++) {
            double v = 0;
            for (int j = 0; j < 3; j++) {
                ph[j] += 2 * M_PI * f[j] / 48000.0;
                v += 0.2 * sin(ph[j]);
            }
            rnd = rnd * 1664525u + 1013904223u;
            v += 0.02 * ((double)(rnd >> 8) / (1 << 24) - 0.5);
            for (int c = 0; c < channels; c++)
                pcm[i * channels + c] = (float)(c ? v * 0.8 : v);
        }
        p->len[k] = opus_encode_float(enc, pcm, PKT, p->data[k], 1500);
    }
    opus_encoder_destroy(enc);
}

static double decode_only(const struct packets *p)
{
    int err;
    OpusDecoder *dec = opus_decoder_create(48000, p->channels, &err);
    static float pcm[5760 * 2];
    int64_t t0 = cpu_ns();
    for (int k = 0; k < p->n; k++)
        if (opus_decode_float(dec, p->data[k], p->len[k], pcm, 5760, 0) < 0) {
            fprintf(stderr, "transcode_bench: decode error at packet %d\n", k);
            exit(1);
        }
    int64_t t1 = cpu_ns();
    opus_decoder_destroy(dec);
    return (double)(t1 - t0) / 1e9;
}

static double rendition(const struct packets *p, int kind, int kbps, uint64_t *bytes)
{
    char err[200];
    struct rcodec *c = rcodec_new(kind, p->channels, 0, kbps, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "transcode_bench: %s\n", err);
        exit(1);
    }
    struct buf out = {0};
    uint32_t samples = 0;
    int64_t end = 0;
    *bytes = 0;
    int64_t t0 = cpu_ns();
    for (int k = 0; k < p->n; k++) {
        out.len = 0;
        if (rcodec_packet(c, p->data[k], (size_t)p->len[k], (int64_t)k * PKT, &out, &samples,
                          &end) < 0) {
            fprintf(stderr, "transcode_bench: codec error at packet %d\n", k);
            exit(1);
        }
        *bytes += out.len;
    }
    int64_t t1 = cpu_ns();
    buf_free(&out);
    rcodec_free(c);
    return (double)(t1 - t0) / 1e9;
}

int main(int argc, char **argv)
{
    int seconds = 120;
    if (argc == 3 && strcmp(argv[1], "--seconds") == 0)
        seconds = atoi(argv[2]);
    if (seconds < 1 || seconds > 3600) {
        fprintf(stderr, "usage: transcode_bench [--seconds 1..3600]\n");
        return 2;
    }
    printf("Fixed input: %d s of a moving chord with noise, Opus 20 ms packets; one thread.\n\n",
           seconds);
    printf("| rendition | channels | kb/s | CPU s | CPU s per hour of audio | share of a core | "
           "bitrate out |\n|---|---|---|---|---|---|---|\n");
    for (int channels = 1; channels <= 2; channels++) {
        struct packets p;
        make_input(&p, seconds, channels);
        double dec = decode_only(&p);
        printf("| Opus decode alone | %d | - | %.3f | %.1f | %.2f %% | - |\n", channels, dec,
               dec * 3600 / seconds, 100 * dec / seconds);
        static const struct {
            int kind, kbps;
            const char *name;
        } runs[] = {{RENDITION_AAC, 96, "AAC-LC (decode + encode)"},
                    {RENDITION_MP3, 128, "MP3 (decode + encode)"}};
        for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
            uint64_t bytes;
            double s = rendition(&p, runs[r].kind, runs[r].kbps, &bytes);
            printf("| %s | %d | %d | %.3f | %.1f | %.2f %% | %.1f kb/s |\n", runs[r].name,
                   channels, runs[r].kbps, s, s * 3600 / seconds, 100 * s / seconds,
                   (double)bytes * 8 / seconds / 1000);
        }
        free(p.data);
        free(p.len);
    }
    return 0;
}
