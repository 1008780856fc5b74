/*
 * test_ogg: the Ogg/Opus demuxer (source side) and muxer (rostrum's own stream).
 *
 * Inputs are real: a 440 Hz tone encoded with libopus in 20 ms frames, packed with libogg into
 * ~1 s pages the way ffmpeg does, written here independently of src/ogg/mux.c so that a bug in
 * the mux cannot hide one in the demux. Mux output is read back with plain libogg and checked
 * field by field. One test reads a stream ffmpeg itself wrote (the fuzz corpus seed).
 */
#include <math.h>
#include <stdbool.h>

#include <ogg/ogg.h>
#include <opus/opus.h>

#include "harness.h"
#include "ogg/demux.h"
#include "ogg/mux.h"

#define MAXP 1024
#define PKT_CAP 4000

struct pkt {
    unsigned char data[PKT_CAP];
    int len;
    int samples;
};

/* ---- helpers: randomness, buffers --------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

struct buf {
    unsigned char *p;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 1024;
        b->p = realloc(b->p, b->cap);
        ASSERT(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* A list of Ogg pages, each its own buffer, so tests can interleave, corrupt or drop them. */
struct pages {
    struct buf pg[512];
    int n;
};

static void pages_add(struct pages *ps, const ogg_page *og)
{
    ASSERT(ps->n < 512);
    struct buf *b = &ps->pg[ps->n++];
    memset(b, 0, sizeof(*b));
    buf_put(b, og->header, (size_t)og->header_len);
    buf_put(b, og->body, (size_t)og->body_len);
}

static void pages_free(struct pages *ps)
{
    for (int i = 0; i < ps->n; i++)
        buf_free(&ps->pg[i]);
    ps->n = 0;
}

static void pages_concat(struct buf *out, const struct pages *ps)
{
    for (int i = 0; i < ps->n; i++)
        buf_put(out, ps->pg[i].p, ps->pg[i].len);
}

/* Recomputes the CRC of a page edited in place. */
static void page_fix_crc(struct buf *b)
{
    ogg_page og = {.header = b->p, .header_len = 27 + b->p[26]};
    og.body = b->p + og.header_len;
    og.body_len = (long)b->len - og.header_len;
    ogg_page_checksum_set(&og);
}

/* ---- helpers: Opus/Ogg source streams ------------------------------------------------------ */

/* <n> packets of a 440 Hz tone, 20 ms each, encoded with libopus at 64 kb/s. Caller frees. */
static struct pkt *tone_packets(int channels, int n, int phase0)
{
    int err;
    OpusEncoder *enc = opus_encoder_create(48000, channels, OPUS_APPLICATION_AUDIO, &err);
    ASSERT(enc);
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(64000));
    struct pkt *p = calloc((size_t)n, sizeof(*p));
    ASSERT(p);
    opus_int16 pcm[960 * 2];
    for (int i = 0; i < n; i++) {
        for (int s = 0; s < 960; s++) {
            double t = (double)(phase0 + i * 960 + s) / 48000.0;
            opus_int16 v = (opus_int16)(8000.0 * sin(2 * M_PI * 440.0 * t));
            for (int c = 0; c < channels; c++)
                pcm[s * channels + c] = v;
        }
        p[i].len = opus_encode(enc, pcm, 960, p[i].data, PKT_CAP);
        ASSERT(p[i].len > 0);
        p[i].samples = 960;
    }
    opus_encoder_destroy(enc);
    return p;
}

struct stream_opts {
    uint32_t serial;
    int channels;
    int pre_skip;
    int family;   /* OpusHead mapping family */
    int per_page; /* audio packets per page: 50 = 1 s, like ffmpeg */
    bool eos;     /* flag the last page EOS */
    bool no_tags; /* omit the OpusTags packet */
};

/* Packs <n> packets of <p> into an Ogg/Opus stream as a source would: OpusHead page (BOS),
 * OpusTags page, audio pages of <per_page> packets with granule = pre-skip-inclusive count. */
static void source_pages(struct pages *ps, const struct stream_opts *o, const struct pkt *p, int n)
{
    ogg_stream_state os;
    ogg_stream_init(&os, (int)o->serial);
    ogg_page og;
    unsigned char head[19] = "OpusHead";
    head[8] = 1;
    head[9] = (unsigned char)o->channels;
    head[10] = (unsigned char)o->pre_skip;
    head[11] = (unsigned char)(o->pre_skip >> 8);
    head[12] = 0x80, head[13] = 0xbb, head[14] = 0, head[15] = 0; /* 48000 */
    head[16] = 0, head[17] = 0;
    head[18] = (unsigned char)o->family;
    ogg_packet op = {.packet = head, .bytes = 19, .b_o_s = 1, .packetno = 0};
    ogg_stream_packetin(&os, &op);
    while (ogg_stream_flush(&os, &og))
        pages_add(ps, &og);
    int64_t no = 1;
    if (!o->no_tags) {
        unsigned char tags[] = "OpusTags\x07\0\0\0testenc\0\0\0\0";
        op = (ogg_packet){.packet = tags, .bytes = sizeof(tags) - 1, .packetno = no++};
        ogg_stream_packetin(&os, &op);
        while (ogg_stream_flush(&os, &og))
            pages_add(ps, &og);
    }
    int64_t gp = 0;
    for (int i = 0; i < n; i++) {
        gp += p[i].samples;
        op = (ogg_packet){.packet = (unsigned char *)p[i].data,
                          .bytes = p[i].len,
                          .granulepos = gp,
                          .packetno = no++,
                          .e_o_s = o->eos && i == n - 1};
        ogg_stream_packetin(&os, &op);
        if ((i + 1) % o->per_page == 0 || i == n - 1)
            while (ogg_stream_flush_fill(&os, &og, 1 << 20))
                pages_add(ps, &og);
    }
    ogg_stream_clear(&os);
}

static void source_stream(struct buf *out, const struct stream_opts *o, const struct pkt *p, int n)
{
    struct pages ps = {.n = 0};
    source_pages(&ps, o, p, n);
    pages_concat(out, &ps);
    pages_free(&ps);
}

static const struct stream_opts stereo_src = {
    .serial = 0x1234abcd, .channels = 2, .pre_skip = 312, .per_page = 50, .eos = true};

/* ---- helpers: demux callbacks --------------------------------------------------------------- */

struct collect {
    int heads;
    struct opus_head_info head[8];
    int heads_at[8]; /* packet count when each head came */
    int n;
    struct pkt *p;
    int stop_at; /* on_packet returns stop_val when n reaches stop_at (0: never) */
    int stop_val;
};

static void collect_init(struct collect *c)
{
    memset(c, 0, sizeof(*c));
    c->p = calloc(MAXP, sizeof(*c->p));
    ASSERT(c->p);
}

static int c_head(void *arg, const struct opus_head_info *h)
{
    struct collect *c = arg;
    ASSERT(c->heads < 8);
    c->heads_at[c->heads] = c->n;
    c->head[c->heads++] = *h;
    return 0;
}

static int c_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct collect *c = arg;
    ASSERT(c->n < MAXP);
    ASSERT(len > 0 && len <= PKT_CAP);
    memcpy(c->p[c->n].data, pkt, len);
    c->p[c->n].len = (int)len;
    c->p[c->n].samples = samples;
    c->n++;
    return c->stop_at && c->n == c->stop_at ? c->stop_val : 0;
}

static const struct ogg_demux_cb collect_cb = {c_head, c_packet};

static void assert_same_packets(const struct pkt *got, const struct pkt *want, int n)
{
    for (int i = 0; i < n; i++) {
        if (got[i].len != want[i].len || memcmp(got[i].data, want[i].data, (size_t)got[i].len))
            TEST_FAIL_("packet %d differs (len %d vs %d)", i, got[i].len, want[i].len);
        ASSERT_EQ_INT(got[i].samples, want[i].samples);
    }
}

/* Feeds <data> in chunks of 1..<maxchunk> bytes (random) and expects every call to return 0. */
static void feed_chunked(struct ogg_demux *d, const unsigned char *data, size_t len,
                         size_t maxchunk, struct collect *c)
{
    size_t off = 0;
    while (off < len) {
        size_t k = maxchunk == 1 ? 1 : 1 + rnd() % maxchunk;
        if (k > len - off)
            k = len - off;
        int rc = ogg_demux_feed(d, data + off, k, &collect_cb, c);
        if (rc != 0)
            TEST_FAIL_("feed at %zu returned %d (%s)", off, rc, ogg_demux_error(d));
        off += k;
    }
}

/* ---- demux ------------------------------------------------------------------------------- */

static void check_tone_demux(size_t maxchunk)
{
    enum { N = 150 }; /* 3 s: three 1 s pages */
    struct pkt *p = tone_packets(2, N, 0);
    struct buf s = {0};
    source_stream(&s, &stereo_src, p, N);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    if (maxchunk == 0)
        ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), 0);
    else
        feed_chunked(d, s.p, s.len, maxchunk, &c);
    ASSERT_EQ_INT(c.heads, 1);
    ASSERT_EQ_INT(c.head[0].channels, 2);
    ASSERT_EQ_INT(c.head[0].pre_skip, 312);
    ASSERT_EQ_UINT(c.head[0].input_rate, 48000);
    ASSERT_EQ_INT(c.n, N);
    assert_same_packets(c.p, p, N);
    struct ogg_demux_stats st;
    ogg_demux_stats(d, &st);
    ASSERT_EQ_UINT(st.pages, 2 + 3);
    ASSERT_EQ_UINT(st.packets, N);
    ASSERT_EQ_UINT(st.bad_packets, 0);
    ASSERT_EQ_UINT(st.skipped_bytes, 0);
    ASSERT_EQ_UINT(st.streams, 1);
    ASSERT_EQ_STR(ogg_demux_error(d), "");
    ogg_demux_free(d);
    buf_free(&s);
    free(c.p);
    free(p);
}

TEST(demux_whole_stream)
{
    check_tone_demux(0);
}

TEST(demux_random_chunks)
{
    check_tone_demux(300);
}

TEST(demux_byte_by_byte)
{
    check_tone_demux(1);
}

/* A stream written by ffmpeg (libopus, ogg muxer): the fuzz corpus seed. */
TEST(demux_ffmpeg_stream)
{
    FILE *f = fopen("tests/fuzz/corpus/fuzz_ogg/ffmpeg_sine_440.opus", "rb");
    if (!f)
        TEST_FAIL_("run from the repository root: ffmpeg seed file missing");
    unsigned char data[16384];
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, data, n, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.heads, 1);
    ASSERT_EQ_INT(c.head[0].channels, 1);
    ASSERT_EQ_INT(c.head[0].pre_skip, 312);
    ASSERT_EQ_INT(c.n, 26); /* 0.5 s + pre-skip in 20 ms frames */
    for (int i = 0; i < c.n; i++)
        ASSERT_EQ_INT(c.p[i].samples, 960);
    ogg_demux_free(d);
    free(c.p);
}

TEST(demux_chained_streams)
{
    struct pkt *a = tone_packets(2, 60, 0), *b = tone_packets(1, 40, 0);
    struct buf s = {0};
    source_stream(&s, &stereo_src, a, 60);
    struct stream_opts ob = {
        .serial = 0x55, .channels = 1, .pre_skip = 120, .per_page = 50, .eos = true};
    source_stream(&s, &ob, b, 40);
    for (int pass = 0; pass < 2; pass++) {
        struct collect c;
        collect_init(&c);
        struct ogg_demux *d = ogg_demux_new();
        if (pass == 0)
            ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), 0);
        else
            feed_chunked(d, s.p, s.len, 97, &c);
        ASSERT_EQ_INT(c.heads, 2);
        ASSERT_EQ_INT(c.head[0].channels, 2);
        ASSERT_EQ_INT(c.head[1].channels, 1);
        ASSERT_EQ_INT(c.head[1].pre_skip, 120);
        ASSERT_EQ_INT(c.heads_at[1], 60);
        ASSERT_EQ_INT(c.n, 100);
        assert_same_packets(c.p, a, 60);
        assert_same_packets(c.p + 60, b, 40);
        struct ogg_demux_stats st;
        ogg_demux_stats(d, &st);
        ASSERT_EQ_UINT(st.streams, 2);
        ogg_demux_free(d);
        free(c.p);
    }
    buf_free(&s);
    free(a);
    free(b);
}

/* A source that restarts without closing its stream: a new BOS (same serial even) with no EOS. */
TEST(demux_restart_without_eos)
{
    struct pkt *a = tone_packets(2, 30, 0);
    struct buf s = {0};
    struct stream_opts o = stereo_src;
    o.eos = false;
    source_stream(&s, &o, a, 30);
    source_stream(&s, &o, a, 30);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.heads, 2);
    ASSERT_EQ_INT(c.n, 60);
    assert_same_packets(c.p + 30, a, 30);
    ogg_demux_free(d);
    buf_free(&s);
    free(c.p);
    free(a);
}

TEST(demux_random_garbage_fails)
{
    enum { LEN = 70000 };
    unsigned char *g = malloc(LEN);
    for (int i = 0; i < LEN; i++)
        g[i] = (unsigned char)rnd();
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < LEN) {
        rc = ogg_demux_feed(d, g + off, 1000, &collect_cb, &c);
        off += 1000;
        if (rc == 0 && off > 65536 + 1000)
            TEST_FAIL_("still accepting after %zu bytes of garbage", off);
    }
    ASSERT_EQ_INT(rc, -1);
    ASSERT(strstr(ogg_demux_error(d), "no page in the first 65536 bytes"));
    ASSERT_EQ_INT(c.heads + c.n, 0);
    /* stays failed, even when given a valid stream */
    struct pkt *p = tone_packets(1, 5, 0);
    struct buf s = {0};
    source_stream(&s, &stereo_src, p, 5);
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), -1);
    ASSERT_EQ_INT(c.heads + c.n, 0);
    ogg_demux_free(d);
    buf_free(&s);
    free(p);
    free(c.p);
    free(g);
}

TEST(demux_garbage_between_pages)
{
    enum { N = 100 };
    struct pkt *p = tone_packets(2, N, 0);
    struct stream_opts o = stereo_src;
    o.per_page = 7;
    struct pages ps = {.n = 0};
    source_pages(&ps, &o, p, N);
    struct buf s = {0};
    size_t garbage = 0;
    for (int i = 0; i < ps.n; i++) {
        buf_put(&s, ps.pg[i].p, ps.pg[i].len);
        unsigned char g[777];
        for (size_t k = 0; k < sizeof(g); k++) {
            g[k] = (unsigned char)rnd();
            if (g[k] == 'O')
                g[k] = 'o'; /* no false capture pattern: the count below is then exact */
        }
        size_t gl = 1 + rnd() % sizeof(g);
        buf_put(&s, g, gl);
        garbage += gl;
    }
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    feed_chunked(d, s.p, s.len, 4000, &c);
    ASSERT_EQ_INT(c.heads, 1);
    ASSERT_EQ_INT(c.n, N);
    assert_same_packets(c.p, p, N);
    struct ogg_demux_stats st;
    ogg_demux_stats(d, &st);
    ASSERT_EQ_UINT(st.skipped_bytes, garbage);
    ASSERT_EQ_UINT(st.pages, (uint64_t)ps.n);
    ogg_demux_free(d);
    pages_free(&ps);
    buf_free(&s);
    free(c.p);
    free(p);
}

/* A page whose packet is Vorbis: refused as soon as the BOS group ends. */
TEST(demux_not_opus_fails)
{
    ogg_stream_state os;
    ogg_stream_init(&os, 77);
    unsigned char vorbis[30] = "\x01vorbis\0\0\0\0\x02\x44\xac\0\0";
    unsigned char data[200] = {0};
    ogg_packet op = {.packet = vorbis, .bytes = sizeof(vorbis), .b_o_s = 1};
    ogg_stream_packetin(&os, &op);
    op = (ogg_packet){.packet = data, .bytes = sizeof(data), .packetno = 1, .granulepos = 0};
    ogg_stream_packetin(&os, &op);
    struct buf s = {0};
    ogg_page og;
    while (ogg_stream_flush(&os, &og)) {
        buf_put(&s, og.header, (size_t)og.header_len);
        buf_put(&s, og.body, (size_t)og.body_len);
    }
    ogg_stream_clear(&os);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), -1);
    ASSERT_EQ_STR(ogg_demux_error(d), "first logical stream is not Opus (no OpusHead)");
    ASSERT_EQ_INT(c.heads, 0);
    ogg_demux_free(d);
    buf_free(&s);
    free(c.p);
}

TEST(demux_mapping_family_1_fails)
{
    struct pkt *p = tone_packets(2, 3, 0);
    struct stream_opts o = stereo_src;
    o.family = 1;
    struct buf s = {0};
    source_stream(&s, &o, p, 3);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), -1);
    ASSERT_EQ_STR(ogg_demux_error(d), "Opus channel mapping family 1 not supported");
    ASSERT_EQ_INT(c.heads + c.n, 0);
    ogg_demux_free(d);
    buf_free(&s);
    free(c.p);
    free(p);
}

/* Multiplexed: a Vorbis BOS first (a "primary" stream), then the Opus one, pages interleaved. */
TEST(demux_multiplexed_other_stream_ignored)
{
    enum { N = 40 };
    struct pkt *p = tone_packets(2, N, 0);
    struct stream_opts o = stereo_src;
    o.per_page = 5;
    struct pages opus = {.n = 0}, other = {.n = 0};
    source_pages(&opus, &o, p, N);
    ogg_stream_state os;
    ogg_stream_init(&os, 99);
    unsigned char vorbis[30] = "\x01vorbis";
    unsigned char junk[300];
    memset(junk, 0xaa, sizeof(junk));
    ogg_page og;
    for (int i = 0; i < 12; i++) {
        ogg_packet op = {.packet = i ? junk : vorbis,
                         .bytes = i ? (long)sizeof(junk) : (long)sizeof(vorbis),
                         .b_o_s = i == 0,
                         .packetno = i,
                         .granulepos = i};
        ogg_stream_packetin(&os, &op);
        while (ogg_stream_flush(&os, &og))
            pages_add(&other, &og);
    }
    ogg_stream_clear(&os);
    /* BOS pages first (other, then Opus), then the rest alternating */
    struct buf s = {0};
    buf_put(&s, other.pg[0].p, other.pg[0].len);
    buf_put(&s, opus.pg[0].p, opus.pg[0].len);
    for (int i = 1; i < opus.n || i < other.n; i++) {
        if (i < other.n)
            buf_put(&s, other.pg[i].p, other.pg[i].len);
        if (i < opus.n)
            buf_put(&s, opus.pg[i].p, opus.pg[i].len);
    }
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    feed_chunked(d, s.p, s.len, 500, &c);
    ASSERT_EQ_INT(c.heads, 1);
    ASSERT_EQ_INT(c.n, N);
    assert_same_packets(c.p, p, N);
    struct ogg_demux_stats st;
    ogg_demux_stats(d, &st);
    ASSERT_EQ_UINT(st.pages, (uint64_t)(opus.n + other.n));
    ASSERT_EQ_UINT(st.bad_packets, 0);
    ogg_demux_free(d);
    pages_free(&opus);
    pages_free(&other);
    buf_free(&s);
    free(c.p);
    free(p);
}

/* Invalid Opus packets are dropped and counted; the valid ones around them still come out. */
TEST(demux_bad_packets_dropped)
{
    enum { N = 20 };
    struct pkt *p = tone_packets(2, N, 0);
    struct pkt *mixed = calloc(N + 3, sizeof(*mixed));
    int k = 0;
    for (int i = 0; i < N; i++) {
        mixed[k++] = p[i];
        if (i == 3) { /* code 3 with a frame count of 0: invalid (RFC 6716 3.2.5) */
            mixed[k].data[0] = 0x03, mixed[k].data[1] = 0x00, mixed[k].len = 2;
            mixed[k++].samples = 960;
        }
        if (i == 9) { /* code 1 (two equal frames) with an odd payload: invalid (3.2.3) */
            mixed[k].data[0] = 0x01, mixed[k].data[1] = 1, mixed[k].data[2] = 2;
            mixed[k].data[3] = 3, mixed[k].len = 4, mixed[k++].samples = 960;
        }
        if (i == 15) { /* a stray header packet */
            memcpy(mixed[k].data, "OpusTags\0\0\0\0\0\0\0\0", 16);
            mixed[k].len = 16, mixed[k++].samples = 960;
        }
    }
    struct buf s = {0};
    source_stream(&s, &stereo_src, mixed, k);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.n, N);
    assert_same_packets(c.p, p, N);
    struct ogg_demux_stats st;
    ogg_demux_stats(d, &st);
    ASSERT_EQ_UINT(st.bad_packets, 3);
    ASSERT_EQ_UINT(st.packets, N);
    ogg_demux_free(d);
    buf_free(&s);
    free(c.p);
    free(mixed);
    free(p);
}

/* A page with a flipped byte fails its CRC: its packets are lost, counted, nothing else is. */
TEST(demux_crc_mismatch_skipped)
{
    enum { N = 50 };
    struct pkt *p = tone_packets(2, N, 0);
    struct stream_opts o = stereo_src;
    o.per_page = 10;
    struct pages ps = {.n = 0};
    source_pages(&ps, &o, p, N);
    ASSERT_EQ_INT(ps.n, 2 + 5);
    ps.pg[3].p[ps.pg[3].len - 5] ^= 0x40; /* the 2nd audio page: packets 10..19 */
    struct buf s = {0};
    pages_concat(&s, &ps);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.n, N - 10);
    assert_same_packets(c.p, p, 10);
    assert_same_packets(c.p + 10, p + 20, N - 20);
    struct ogg_demux_stats st;
    ogg_demux_stats(d, &st);
    ASSERT_EQ_UINT(st.bad_pages, 1);
    ASSERT_EQ_UINT(st.holes, 1);
    ASSERT_EQ_UINT(st.skipped_bytes, ps.pg[3].len);
    ASSERT_EQ_UINT(st.pages, 6);
    ogg_demux_free(d);
    pages_free(&ps);
    buf_free(&s);
    free(c.p);
    free(p);
}

/* A valid page of an unknown Ogg version is dropped like a corrupt one. */
TEST(demux_unknown_page_version_dropped)
{
    enum { N = 30 };
    struct pkt *p = tone_packets(2, N, 0);
    struct stream_opts o = stereo_src;
    o.per_page = 10;
    struct pages ps = {.n = 0};
    source_pages(&ps, &o, p, N);
    ps.pg[2].p[4] = 1;
    page_fix_crc(&ps.pg[2]);
    struct buf s = {0};
    pages_concat(&s, &ps);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.n, N - 10);
    assert_same_packets(c.p, p + 10, N - 10);
    struct ogg_demux_stats st;
    ogg_demux_stats(d, &st);
    ASSERT_EQ_UINT(st.bad_pages, 1);
    ASSERT_EQ_UINT(st.skipped_bytes, 0);
    ogg_demux_free(d);
    pages_free(&ps);
    buf_free(&s);
    free(c.p);
    free(p);
}

/* A packet that never ends (pages of 255-lacing continuations) is dropped once past the bound,
 * without buffering the rest of it, and the stream goes on after it. */
TEST(demux_oversized_packet_dropped)
{
    enum { N = 20 };
    struct pkt *p = tone_packets(2, N, 0);
    struct pages ps = {.n = 0};
    struct stream_opts o = stereo_src;
    o.per_page = 10;
    o.eos = false;
    source_pages(&ps, &o, p, 10);
    ogg_stream_state os;
    ogg_stream_init(&os, (int)o.serial);
    /* continue the same stream by hand: a 1 MB packet, then the 10 last tone packets */
    os.pageno = 3;
    os.packetno = 12;
    os.b_o_s = 1;
    size_t big = 1 << 20;
    unsigned char *huge = calloc(1, big);
    ogg_packet op = {.packet = huge, .bytes = (long)big, .packetno = 12, .granulepos = 9600};
    ogg_stream_packetin(&os, &op);
    ogg_page og;
    while (ogg_stream_pageout(&os, &og))
        pages_add(&ps, &og);
    for (int i = 10; i < N; i++) {
        op = (ogg_packet){.packet = p[i].data,
                          .bytes = p[i].len,
                          .packetno = 13 + i,
                          .granulepos = 9600 + 960 * (i - 9)};
        ogg_stream_packetin(&os, &op);
    }
    while (ogg_stream_flush_fill(&os, &og, 1 << 20))
        pages_add(&ps, &og);
    ogg_stream_clear(&os);
    free(huge);
    struct buf s = {0};
    pages_concat(&s, &ps);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    feed_chunked(d, s.p, s.len, 20000, &c);
    ASSERT_EQ_INT(c.n, N);
    assert_same_packets(c.p, p, N);
    struct ogg_demux_stats st;
    ogg_demux_stats(d, &st);
    ASSERT_EQ_UINT(st.bad_packets, 1);
    ASSERT_EQ_UINT(st.holes, 0);
    ogg_demux_free(d);
    pages_free(&ps);
    buf_free(&s);
    free(c.p);
    free(p);
}

/* A callback stop returns its value; the rest of the input is kept and resumes on the next call. */
TEST(demux_callback_stop_and_resume)
{
    enum { N = 100 };
    struct pkt *p = tone_packets(2, N, 0);
    struct buf s = {0};
    source_stream(&s, &stereo_src, p, N);
    struct collect c;
    collect_init(&c);
    c.stop_at = 17;
    c.stop_val = 7;
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), 7);
    ASSERT_EQ_INT(c.n, 17);
    ASSERT_EQ_INT(ogg_demux_feed(d, NULL, 0, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.n, N);
    assert_same_packets(c.p, p, N);
    ogg_demux_free(d);
    buf_free(&s);
    free(c.p);
    free(p);
}

/* A cut stream (source disconnects mid-page) gives the complete pages and waits for more. */
TEST(demux_truncated_stream)
{
    enum { N = 100 };
    struct pkt *p = tone_packets(2, N, 0);
    struct pages ps = {.n = 0};
    source_pages(&ps, &stereo_src, p, N);
    ASSERT_EQ_INT(ps.n, 4);
    struct buf s = {0};
    pages_concat(&s, &ps);
    size_t cut = s.len - ps.pg[3].len / 2; /* in the middle of the second audio page */
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, cut, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.n, 50);
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p + cut, s.len - cut, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.n, N);
    ogg_demux_free(d);
    pages_free(&ps);
    buf_free(&s);
    free(c.p);
    free(p);
}

/* Without OpusTags the second packet is audio, and it is delivered. */
TEST(demux_missing_opustags)
{
    struct pkt *p = tone_packets(1, 10, 0);
    struct stream_opts o = stereo_src;
    o.no_tags = true;
    struct buf s = {0};
    source_stream(&s, &o, p, 10);
    struct collect c;
    collect_init(&c);
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, s.p, s.len, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.n, 10);
    assert_same_packets(c.p, p, 10);
    ogg_demux_free(d);
    buf_free(&s);
    free(c.p);
    free(p);
}

TEST(opus_head_parse_rejects)
{
    struct opus_head_info h;
    char err[96];
    unsigned char oh[19] = "OpusHead\x01\x02\x38\x01\x80\xbb\0\0\xfe\xff\0";
    ASSERT_EQ_INT(opus_head_parse(oh, 19, &h, err, sizeof(err)), 0);
    ASSERT_EQ_INT(h.channels, 2);
    ASSERT_EQ_INT(h.pre_skip, 312);
    ASSERT_EQ_UINT(h.input_rate, 48000);
    ASSERT_EQ_INT(h.output_gain, -2);
    ASSERT_EQ_INT(opus_head_parse(oh, 18, &h, err, sizeof(err)), -1);
    oh[8] = 0x10;
    ASSERT_EQ_INT(opus_head_parse(oh, 19, &h, err, sizeof(err)), -1);
    ASSERT_EQ_STR(err, "OpusHead version 16 not supported");
    oh[8] = 1, oh[9] = 3;
    ASSERT_EQ_INT(opus_head_parse(oh, 19, &h, err, sizeof(err)), -1);
    oh[9] = 0;
    ASSERT_EQ_INT(opus_head_parse(oh, 19, &h, err, sizeof(err)), -1);
}

/* ---- mux --------------------------------------------------------------------------------- */

struct out_page {
    uint64_t granule;
    uint32_t seqno;
    int samples;
    size_t len;
};

struct mux_out {
    struct buf bytes; /* headers + every page, as a listener gets them */
    struct out_page pg[512];
    int n;
};

static void on_mux_page(void *arg, const unsigned char *page, size_t len, uint64_t granule,
                        uint32_t seqno, int samples)
{
    struct mux_out *o = arg;
    ASSERT(o->n < 512);
    ASSERT(len <= OGG_MUX_MAX_PAGE);
    o->pg[o->n++] = (struct out_page){granule, seqno, samples, len};
    buf_put(&o->bytes, page, len);
}

struct parsed_page {
    uint32_t serial;
    long seqno;
    int64_t granule;
    int bos, eos, first_packet, npackets, samples;
};

struct parsed {
    struct parsed_page pg[512];
    int npages;
    struct pkt *p; /* every packet, headers included */
    int np;
};

/* Reads an Ogg stream back with plain libogg; expects one logical stream. */
static void parse_ogg(const unsigned char *data, size_t len, struct parsed *out)
{
    memset(out, 0, sizeof(*out));
    out->p = calloc(MAXP, sizeof(*out->p));
    ogg_sync_state oy;
    ogg_sync_init(&oy);
    char *dst = ogg_sync_buffer(&oy, (long)len);
    memcpy(dst, data, len);
    ogg_sync_wrote(&oy, (long)len);
    ogg_stream_state os;
    memset(&os, 0, sizeof(os));
    ogg_page og;
    int r;
    while ((r = ogg_sync_pageout(&oy, &og)) != 0) {
        ASSERT_EQ_INT(r, 1); /* no garbage, no bad CRC */
        ASSERT(out->npages < 512);
        struct parsed_page *pp = &out->pg[out->npages];
        if (out->npages == 0)
            ogg_stream_init(&os, ogg_page_serialno(&og));
        out->npages++;
        pp->serial = (uint32_t)ogg_page_serialno(&og);
        pp->seqno = ogg_page_pageno(&og);
        pp->granule = ogg_page_granulepos(&og);
        pp->bos = ogg_page_bos(&og) != 0;
        pp->eos = ogg_page_eos(&og) != 0;
        pp->first_packet = out->np;
        ASSERT_EQ_INT(ogg_page_continued(&og), 0);
        ASSERT_EQ_INT(ogg_stream_pagein(&os, &og), 0);
        ogg_packet op;
        while ((r = ogg_stream_packetout(&os, &op)) != 0) {
            ASSERT_EQ_INT(r, 1);
            ASSERT(out->np < MAXP);
            struct pkt *k = &out->p[out->np++];
            memcpy(k->data, op.packet, op.bytes < PKT_CAP ? (size_t)op.bytes : PKT_CAP);
            k->len = (int)op.bytes;
            if (out->np > 2) {
                k->samples = opus_packet_get_nb_samples(op.packet, (opus_int32)op.bytes, 48000);
                pp->samples += k->samples;
            }
            pp->npackets++;
        }
    }
    ASSERT_EQ_INT(oy.fill - oy.returned, 0); /* nothing left over: no partial page */
    if (out->npages)
        ogg_stream_clear(&os);
    ogg_sync_clear(&oy);
}

static const struct opus_head_info stereo_head = {
    .channels = 2, .pre_skip = 312, .input_rate = 44100, .output_gain = -256};

/* Checks what every rostrum stream must be: one serial, headers as pages 0 and 1, audio pages
 * 2, 3, 4... with granule = previous + exactly the samples of the packets on the page. */
static void check_stream_invariants(const struct parsed *ps, uint32_t serial, int pre_skip)
{
    ASSERT(ps->npages >= 2);
    ASSERT_EQ_INT(ps->pg[0].bos, 1);
    ASSERT_EQ_INT(ps->pg[0].npackets, 1);
    ASSERT_EQ_INT(ps->pg[0].granule, 0);
    ASSERT_EQ_INT(ps->pg[1].bos, 0);
    ASSERT_EQ_INT(ps->pg[1].granule, 0);
    ASSERT_EQ_INT(ps->pg[1].npackets, 1);
    ASSERT_EQ_MEM(ps->p[0].data, "OpusHead", 8);
    ASSERT_EQ_MEM(ps->p[1].data, "OpusTags", 8);
    int64_t g = pre_skip;
    for (int i = 0; i < ps->npages; i++) {
        const struct parsed_page *pp = &ps->pg[i];
        ASSERT_EQ_UINT(pp->serial, serial);
        ASSERT_EQ_INT(pp->seqno, i);
        ASSERT_EQ_INT(pp->eos, 0);
        if (i >= 2) {
            ASSERT_EQ_INT(pp->bos, 0);
            ASSERT(pp->npackets > 0);
            g += pp->samples;
            ASSERT_EQ_INT(pp->granule, g);
        }
    }
}

TEST(mux_pages_parse_back)
{
    enum { N = 100 };
    struct pkt *p = tone_packets(2, N, 0);
    struct ogg_mux *m = ogg_mux_new(0xfeedbeef, &stereo_head, "rostrum test", "Morning show", 200);
    ASSERT(m);
    struct mux_out o = {.n = 0};
    size_t hlen;
    const unsigned char *h = ogg_mux_headers(m, &hlen);
    buf_put(&o.bytes, h, hlen);
    for (int i = 0; i < N; i++)
        ogg_mux_packet(m, p[i].data, (size_t)p[i].len, 960, on_mux_page, &o);
    ASSERT_EQ_UINT(ogg_mux_granule(m), 312 + N * 960);
    ASSERT_EQ_INT(o.n, N / 10); /* 200 ms pages of 20 ms packets */
    ogg_mux_flush(m, on_mux_page, &o);
    ASSERT_EQ_INT(o.n, N / 10); /* nothing was left */

    struct parsed ps;
    parse_ogg(o.bytes.p, o.bytes.len, &ps);
    check_stream_invariants(&ps, 0xfeedbeef, 312);
    ASSERT_EQ_INT(ps.npages, 2 + N / 10);
    /* the callback's view matches the page headers */
    for (int i = 0; i < o.n; i++) {
        ASSERT_EQ_UINT(o.pg[i].seqno, 2 + i);
        ASSERT_EQ_INT(o.pg[i].granule, ps.pg[2 + i].granule);
        ASSERT_EQ_INT(o.pg[i].samples, 9600);
        ASSERT_EQ_INT(ps.pg[2 + i].npackets, 10);
    }
    ASSERT_EQ_INT(o.pg[0].granule, 312 + 9600);
    /* headers decode back */
    struct opus_head_info hi;
    char err[96];
    ASSERT_EQ_INT(ps.p[0].len, 19);
    ASSERT_EQ_INT(opus_head_parse(ps.p[0].data, 19, &hi, err, sizeof(err)), 0);
    ASSERT_EQ_INT(ps.p[0].data[8], 1);
    ASSERT_EQ_INT(hi.channels, 2);
    ASSERT_EQ_INT(hi.pre_skip, 312);
    ASSERT_EQ_UINT(hi.input_rate, 44100);
    ASSERT_EQ_INT(hi.output_gain, -256);
    static const unsigned char tags[] = "OpusTags\x0c\0\0\0rostrum test\x01\0\0\0\x12\0\0\0"
                                        "TITLE=Morning show";
    ASSERT_EQ_INT(ps.p[1].len, sizeof(tags) - 1);
    ASSERT_EQ_MEM(ps.p[1].data, tags, sizeof(tags) - 1);
    /* packets come back byte-identical */
    ASSERT_EQ_INT(ps.np, 2 + N);
    assert_same_packets(ps.p + 2, p, N);
    free(ps.p);
    buf_free(&o.bytes);
    ogg_mux_free(m);
    free(p);
}

TEST(mux_headers_stable_and_no_title)
{
    struct ogg_mux *m = ogg_mux_new(1, &stereo_head, NULL, NULL, 100);
    size_t len1, len2;
    const unsigned char *h1 = ogg_mux_headers(m, &len1);
    unsigned char copy[512];
    ASSERT(len1 <= sizeof(copy));
    memcpy(copy, h1, len1);
    struct pkt *p = tone_packets(2, 30, 0);
    struct mux_out o = {.n = 0};
    for (int i = 0; i < 30; i++)
        ogg_mux_packet(m, p[i].data, (size_t)p[i].len, 960, on_mux_page, &o);
    const unsigned char *h2 = ogg_mux_headers(m, &len2);
    ASSERT(h1 == h2);
    ASSERT_EQ_INT(len1, len2);
    ASSERT_EQ_MEM(h2, copy, len1);
    struct parsed ps;
    parse_ogg(h2, len2, &ps);
    ASSERT_EQ_INT(ps.npages, 2);
    static const unsigned char tags[] = "OpusTags\x07\0\0\0rostrum\0\0\0\0";
    ASSERT_EQ_INT(ps.p[1].len, sizeof(tags) - 1);
    ASSERT_EQ_MEM(ps.p[1].data, tags, sizeof(tags) - 1);
    ASSERT(ogg_mux_new(1, &(struct opus_head_info){.channels = 3}, NULL, NULL, 100) == NULL);
    free(ps.p);
    buf_free(&o.bytes);
    ogg_mux_free(m);
    free(p);
}

TEST(mux_change_page_ms)
{
    struct pkt *p = tone_packets(2, 60, 0);
    struct ogg_mux *m = ogg_mux_new(42, &stereo_head, NULL, NULL, 200);
    struct mux_out o = {.n = 0};
    size_t hlen;
    const unsigned char *h = ogg_mux_headers(m, &hlen);
    buf_put(&o.bytes, h, hlen);
    for (int i = 0; i < 25; i++) /* 2 pages of 200 ms, 5 packets buffered */
        ogg_mux_packet(m, p[i].data, (size_t)p[i].len, 960, on_mux_page, &o);
    ASSERT_EQ_INT(o.n, 2);
    ogg_mux_set_page_ms(m, 60); /* the 100 ms buffered close at once, then 60 ms pages */
    for (int i = 25; i < 60; i++)
        ogg_mux_packet(m, p[i].data, (size_t)p[i].len, 960, on_mux_page, &o);
    ogg_mux_flush(m, on_mux_page, &o);
    int want[15] = {9600, 9600, 4800};
    for (int i = 3; i < 14; i++)
        want[i] = 2880;
    want[14] = 1920;
    ASSERT_EQ_INT(o.n, (int)(sizeof(want) / sizeof(want[0])));
    for (int i = 0; i < o.n; i++)
        ASSERT_EQ_INT(o.pg[i].samples, want[i]);
    struct parsed ps;
    parse_ogg(o.bytes.p, o.bytes.len, &ps);
    check_stream_invariants(&ps, 42, 312);
    assert_same_packets(ps.p + 2, p, 60);
    free(ps.p);
    buf_free(&o.bytes);
    ogg_mux_free(m);
    free(p);
}

/* Pages close before 255 lacing values or ~8 KiB, whatever page_ms says. */
TEST(mux_page_size_limits)
{
    struct ogg_mux *m = ogg_mux_new(7, &stereo_head, NULL, NULL, 10000);
    struct mux_out o = {.n = 0};
    /* TOC 0x84: CELT NB 2.5 ms stereo, one frame; 0xfc: CELT FB 20 ms */
    unsigned char small[3] = {0x84, 0xff, 0xfe}, large[1000];
    memset(large, 0x5a, sizeof(large));
    large[0] = 0xfc;
    for (int i = 0; i < 600; i++) /* 1 lacing value each */
        ogg_mux_packet(m, small, sizeof(small), 120, on_mux_page, &o);
    ASSERT_EQ_INT(o.n, 2);
    ASSERT_EQ_INT(o.pg[0].samples, 255 * 120);
    ASSERT_EQ_INT(o.pg[1].samples, 255 * 120);
    ogg_mux_flush(m, on_mux_page, &o);
    ASSERT_EQ_INT(o.n, 3);
    ASSERT_EQ_INT(o.pg[2].samples, 90 * 120);
    for (int i = 0; i < 20; i++) /* 4 lacing values each; 8 fit in 8192 bytes */
        ogg_mux_packet(m, large, sizeof(large), 960, on_mux_page, &o);
    ASSERT_EQ_INT(o.n, 5);
    ASSERT_EQ_INT(o.pg[3].samples, 8 * 960);
    ASSERT(o.pg[3].len <= 27 + 255 + OGG_MUX_PAGE_BYTES);
    /* a packet larger than the page target gets a page of its own */
    unsigned char *jumbo = calloc(1, 20000);
    jumbo[0] = 0xfc;
    ogg_mux_packet(m, jumbo, 20000, 960, on_mux_page, &o);
    ASSERT_EQ_INT(o.n, 6); /* the 4 buffered large packets */
    ASSERT_EQ_INT(o.pg[5].samples, 4 * 960);
    ogg_mux_packet(m, small, sizeof(small), 120, on_mux_page, &o);
    ASSERT_EQ_INT(o.n, 7);
    ASSERT_EQ_INT(o.pg[6].samples, 960);
    /* ignored: empty, too large for one page, no duration */
    uint64_t g = ogg_mux_granule(m);
    ogg_mux_packet(m, small, 0, 960, on_mux_page, &o);
    ogg_mux_packet(m, jumbo, OGG_MUX_MAX_PACKET + 1, 960, on_mux_page, &o);
    ogg_mux_packet(m, small, sizeof(small), 0, on_mux_page, &o);
    ASSERT_EQ_UINT(ogg_mux_granule(m), g);
    ogg_mux_flush(m, on_mux_page, &o);
    ASSERT_EQ_INT(o.n, 8);
    ogg_mux_flush(m, on_mux_page, &o); /* nothing buffered: no page */
    ASSERT_EQ_INT(o.n, 8);
    struct buf all = {0};
    size_t hlen;
    const unsigned char *h = ogg_mux_headers(m, &hlen);
    buf_put(&all, h, hlen);
    buf_put(&all, o.bytes.p, o.bytes.len);
    struct parsed ps;
    parse_ogg(all.p, all.len, &ps);
    check_stream_invariants(&ps, 7, 312);
    ASSERT_EQ_INT(ps.npages, 10);
    free(ps.p);
    free(jumbo);
    buf_free(&all);
    buf_free(&o.bytes);
    ogg_mux_free(m);
}

/* demux -> mux -> demux: what a listener's player gets is the source's audio. */
static int pass_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    void **a = arg;
    ogg_mux_packet(a[0], pkt, len, samples, on_mux_page, a[1]);
    return 0;
}

/* A source restarts (new connection, new demuxer, new serial and pre-skip); the mux goes on. */
TEST(mux_two_sources_one_stream)
{
    struct pkt *a = tone_packets(2, 73, 0), *b = tone_packets(2, 58, 73 * 960);
    struct buf sa = {0}, sb = {0};
    source_stream(&sa, &stereo_src, a, 73);
    struct stream_opts ob = {
        .serial = 0xabc, .channels = 2, .pre_skip = 3840, .per_page = 50, .eos = true};
    source_stream(&sb, &ob, b, 58);

    struct ogg_mux *m = ogg_mux_new(0x600d, &stereo_head, NULL, "live", 200);
    struct mux_out o = {.n = 0};
    void *arg[2] = {m, &o};
    const struct ogg_demux_cb cb = {NULL, pass_packet};
    struct ogg_demux *d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, sa.p, sa.len, &cb, arg), 0);
    ogg_demux_free(d); /* source gone: 3 packets stay buffered in the mux */
    ASSERT_EQ_INT(o.n, 7);
    unsigned char silence[256];
    int sl = opus_silence_packet(2, 0, silence, sizeof(silence));
    ASSERT(sl > 0);
    for (int i = 0; i < 5; i++) /* the gap is filled with silence */
        ogg_mux_packet(m, silence, (size_t)sl, 960, on_mux_page, &o);
    d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, sb.p, sb.len, &cb, arg), 0);
    ogg_demux_free(d);
    ogg_mux_flush(m, on_mux_page, &o);

    struct buf all = {0};
    size_t hlen;
    const unsigned char *h = ogg_mux_headers(m, &hlen);
    buf_put(&all, h, hlen);
    buf_put(&all, o.bytes.p, o.bytes.len);
    struct parsed ps;
    parse_ogg(all.p, all.len, &ps);
    check_stream_invariants(&ps, 0x600d, 312);
    ASSERT_EQ_INT(ps.np, 2 + 73 + 5 + 58);
    assert_same_packets(ps.p + 2, a, 73);
    assert_same_packets(ps.p + 2 + 73 + 5, b, 58);
    ASSERT_EQ_INT(ps.pg[ps.npages - 1].granule, 312 + (73 + 5 + 58) * 960);
    /* and a player reading it sees one stream with every packet */
    struct collect c;
    collect_init(&c);
    d = ogg_demux_new();
    ASSERT_EQ_INT(ogg_demux_feed(d, all.p, all.len, &collect_cb, &c), 0);
    ASSERT_EQ_INT(c.heads, 1);
    ASSERT_EQ_INT(c.n, 73 + 5 + 58);
    ogg_demux_free(d);
    free(c.p);
    free(ps.p);
    buf_free(&all);
    buf_free(&o.bytes);
    buf_free(&sa);
    buf_free(&sb);
    ogg_mux_free(m);
    free(a);
    free(b);
}

TEST(opus_silence_decodes_to_zero)
{
    for (int ch = 1; ch <= 2; ch++) {
        unsigned char pkt[1500];
        int n = opus_silence_packet(ch, 0, pkt, sizeof(pkt));
        ASSERT(n > 0 && n < 16);
        ASSERT_EQ_INT(opus_packet_get_nb_samples(pkt, n, 48000), 960);
        ASSERT_EQ_INT(opus_packet_get_nb_channels(pkt), ch);
        int err;
        OpusDecoder *dec = opus_decoder_create(48000, ch, &err);
        ASSERT(dec);
        opus_int16 pcm[5760 * 2];
        ASSERT_EQ_INT(opus_decode(dec, pkt, n, pcm, 5760, 0), 960);
        for (int i = 0; i < 960 * ch; i++)
            ASSERT_EQ_INT(pcm[i], 0);
        /* after a tone, silence brings the output down to (near) zero within a few frames */
        struct pkt *t = tone_packets(ch, 10, 0);
        for (int i = 0; i < 10; i++)
            ASSERT_EQ_INT(opus_decode(dec, t[i].data, t[i].len, pcm, 5760, 0), 960);
        int peak = 0;
        for (int k = 0; k < 5; k++) {
            ASSERT_EQ_INT(opus_decode(dec, pkt, n, pcm, 5760, 0), 960);
            peak = 0;
            for (int i = 0; i < 960 * ch; i++)
                peak = abs(pcm[i]) > peak ? abs(pcm[i]) : peak;
        }
        ASSERT(peak <= 2);
        opus_decoder_destroy(dec);
        free(t);
    }
    unsigned char tiny[1];
    ASSERT_EQ_INT(opus_silence_packet(3, 0, tiny, sizeof(tiny)), -1);
}

TEST(opus_silence_keeps_the_byte_rate_issue11)
{
    /* padded silence: exactly the bytes asked, still 20 ms of digital silence */
    static const int sizes[] = {3, 40, 120, 321, OPUS_SILENCE_MAX};
    for (int ch = 1; ch <= 2; ch++) {
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            unsigned char pkt[OPUS_SILENCE_MAX];
            int n = opus_silence_packet(ch, sizes[k], pkt, sizeof(pkt));
            ASSERT_EQ_INT(n, sizes[k]);
            ASSERT_EQ_INT(opus_packet_get_nb_samples(pkt, n, 48000), 960);
            int err;
            OpusDecoder *dec = opus_decoder_create(48000, ch, &err);
            ASSERT(dec);
            opus_int16 pcm[5760 * 2];
            ASSERT_EQ_INT(opus_decode(dec, pkt, n, pcm, 5760, 0), 960);
            for (int i = 0; i < 960 * ch; i++)
                ASSERT_EQ_INT(pcm[i], 0);
            opus_decoder_destroy(dec);
        }
    }
    unsigned char small[100];
    ASSERT_EQ_INT(opus_silence_packet(1, 120, small, sizeof(small)), -1); /* does not fit */
    ASSERT_EQ_INT(opus_silence_packet(1, 2, small, sizeof(small)), -1);
    ASSERT_EQ_INT(opus_silence_packet(1, OPUS_SILENCE_MAX + 1, small, sizeof(small)), -1);
}

/* ---- upgrade: a stream carried on by the next binary's mux and demuxer -------------------- */

TEST(mux_save_restore_continues_the_stream)
{
    /* the first 37 packets in one mux, the rest in a new one restored from its position: the
     * listener's bytes (old headers + old pages + new pages) are one stream */
    enum { N = 100, CUT = 37 };
    struct pkt *p = tone_packets(2, N, 0);
    struct ogg_mux *m = ogg_mux_new(0xabad1dea, &stereo_head, "rostrum test", "Show", 200);
    struct mux_out o = {.n = 0};
    size_t hlen;
    const unsigned char *h = ogg_mux_headers(m, &hlen);
    buf_put(&o.bytes, h, hlen);
    for (int i = 0; i < CUT; i++)
        ogg_mux_packet(m, p[i].data, (size_t)p[i].len, 960, on_mux_page, &o);
    ogg_mux_flush(m, on_mux_page, &o); /* the short page the upgrade publishes */
    struct ogg_mux_pos pos;
    ogg_mux_save(m, &pos);
    ogg_mux_free(m);
    struct ogg_mux *m2 = ogg_mux_new(0xabad1dea, &stereo_head, "rostrum test", "Show", 200);
    size_t hlen2;
    const unsigned char *h2 = ogg_mux_headers(m2, &hlen2);
    ASSERT_EQ_INT(hlen2, hlen); /* a newcomer after the upgrade gets the same headers */
    ASSERT_EQ_MEM(h2, o.bytes.p, hlen);
    ogg_mux_restore(m2, &pos);
    ASSERT_EQ_UINT(ogg_mux_granule(m2), 312 + CUT * 960);
    for (int i = CUT; i < N; i++)
        ogg_mux_packet(m2, p[i].data, (size_t)p[i].len, 960, on_mux_page, &o);
    ogg_mux_flush(m2, on_mux_page, &o);
    ogg_mux_free(m2);
    struct parsed ps;
    parse_ogg(o.bytes.p, o.bytes.len, &ps);
    check_stream_invariants(&ps, 0xabad1dea, 312); /* pages by one, granules by the audio */
    ASSERT_EQ_INT(ps.np, N + 2);
    assert_same_packets(ps.p + 2, p, N);
    free(ps.p);
    buf_free(&o.bytes);
    free(p);
}

TEST(demux_save_restore_loses_no_packet)
{
    /* a source's stream cut anywhere (mid-page too): the restored demuxer, given the bytes
     * the first one held, delivers exactly the packets that remained, with no new head */
    enum { N = 300 };
    struct pkt *p = tone_packets(2, N, 0);
    struct buf in = {0};
    struct stream_opts o = stereo_src;
    o.eos = false;
    o.per_page = 7;
    source_stream(&in, &o, p, N);
    for (int k = 0; k < 20; k++) {
        size_t cut = 200 + rnd() % (in.len - 400);
        struct collect c;
        collect_init(&c);
        struct ogg_demux *d = ogg_demux_new();
        feed_chunked(d, in.p, cut, 3000, &c);
        int before = c.n;
        struct ogg_demux_pos pos;
        const unsigned char *pending;
        size_t plen;
        ASSERT_EQ_INT(ogg_demux_save(d, &pos, &pending, &plen), 0);
        struct ogg_demux *d2 = ogg_demux_restore(&pos, pending, plen);
        ASSERT(d2);
        ogg_demux_free(d);
        ASSERT_EQ_INT(ogg_demux_feed(d2, NULL, 0, &collect_cb, &c), 0);
        feed_chunked(d2, in.p + cut, in.len - cut, 3000, &c);
        ASSERT_EQ_INT(c.heads, 1); /* only the first demuxer saw a head */
        ASSERT_EQ_INT(c.n, N);
        assert_same_packets(c.p, p, N);
        struct ogg_demux_stats st;
        ogg_demux_stats(d2, &st);
        ASSERT_EQ_UINT(st.holes, 0);
        ASSERT(before <= N);
        ogg_demux_free(d2);
        free(c.p);
    }
    buf_free(&in);
    free(p);
}

int main(void)
{
    return RUN_TESTS();
}
