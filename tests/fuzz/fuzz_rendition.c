/*
 * fuzz_rendition: a rendition's codec (transcode/codec.c) on whatever Opus a stream carries.
 * On a relay the programme's packets come from the upstream as they are, so any Ogg/Opus a peer
 * could send goes through ogg_demux_feed and, packet by packet, through rcodec_packet, as the
 * server's rendition does; the first byte picks AAC or MP3 and a timeline jump. What comes out
 * is checked against the contract of transcode.h: whole ADTS frames, <samples> of whole frames,
 * an end that grows by exactly the samples. A decoder error is an answer (-1), never a crash; a
 * broken invariant traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ogg/demux.h"
#include "transcode/transcode.h"

struct fuzz_ctx {
    int kind, channels, packets;
    struct rcodec *c;
    int64_t pts, end, jump_at;
    int jumped;
    struct buf out;
};

static int on_head(void *arg, const struct opus_head_info *head)
{
    struct fuzz_ctx *f = arg;
    if (f->c)
        return 0;
    char err[200];
    f->c = rcodec_new(f->kind, head->channels, head->output_gain, 64, err, sizeof(err));
    if (!f->c)
        __builtin_trap(); /* the demuxer gives mono or stereo only */
    f->channels = head->channels;
    return 0;
}

static int on_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct fuzz_ctx *f = arg;
    if (!f->c || f->packets++ > 400)
        return 0;
    if (f->packets == f->jump_at) {
        f->pts += 48000 * 3;
        f->jumped = 1; /* from here the encoder's queue may still hold pre-jump frames */
    }
    uint32_t got = 0;
    int64_t end = f->end;
    f->out.len = 0;
    int n = rcodec_packet(f->c, pkt, len, f->pts, &f->out, &got, &end);
    f->pts += samples;
    if (n < 0)
        return 0;
    if (got != (uint32_t)n * (uint32_t)rcodec_frame_samples(f->c) || (n == 0) != (f->out.len == 0))
        __builtin_trap();
    /* frames never overlap: the end grows by their samples, or more across a jump */
    if (n > 0 && f->end != INT64_MIN &&
        (f->jumped ? end - f->end < (int64_t)got : end - f->end != (int64_t)got))
        __builtin_trap();
    if (f->kind == RENDITION_AAC) {
        size_t off = 0;
        const unsigned char *d = (const unsigned char *)f->out.data;
        for (int i = 0; i < n; i++) {
            if (f->out.len - off < 7 || d[off] != 0xFF || d[off + 1] != 0xF1)
                __builtin_trap();
            off += (size_t)(((d[off + 3] & 3) << 11) | (d[off + 4] << 3) | (d[off + 5] >> 5));
        }
        if (off != f->out.len)
            __builtin_trap();
    }
    if (n > 0)
        f->end = end;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct fuzz_ctx f = {.kind = (data[0] & 1) ? RENDITION_MP3 : RENDITION_AAC,
                         .end = INT64_MIN, .jump_at = data[0] >> 1};
    struct ogg_demux *d = ogg_demux_new();
    static const struct ogg_demux_cb cb = {on_head, on_packet};
    ogg_demux_feed(d, data + 1, size - 1, &cb, &f);
    ogg_demux_free(d);
    rcodec_free(f.c);
    buf_free(&f.out);
    return 0;
}
