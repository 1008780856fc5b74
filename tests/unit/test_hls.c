/* Unit tests for hls/: the _HLS_ query, playlists, Ogg page packets, and the fMP4 boxes, the
 * last checked by tools nobody here wrote: ffprobe and ffmpeg read and decode what fmp4.c
 * writes (Opus from libopus, AAC from an ADTS file ffmpeg made). */
#include <math.h>
#include <opus/opus.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "hls/fmp4.h"
#include "hls/hls.h"
#include "ogg/mux.h"

TEST(query_parse)
{
    struct hls_query q;
    const char *s = "_HLS_msn=12&_HLS_part=3&x=1";
    ASSERT_EQ_INT(hls_query_parse(s, strlen(s), &q), (int)strlen(s));
    ASSERT(q.has_msn && q.has_part && q.msn == 12 && q.part == 3 && q.skip == 0);
    s = "_HLS_skip=YES&_HLS_msn=7";
    ASSERT_EQ_INT(hls_query_parse(s, strlen(s), &q), (int)strlen(s));
    ASSERT(q.skip == 1 && q.msn == 7 && !q.has_part);
    s = "_HLS_skip=v2";
    ASSERT(hls_query_parse(s, strlen(s), &q) > 0 && q.skip == 2 && !q.has_msn);
    ASSERT_EQ_INT(hls_query_parse("", 0, &q), 0);
    const char *bad[] = {"_HLS_part=1", "_HLS_msn=", "_HLS_msn=1x", "_HLS_msn=1&_HLS_msn=2",
                         "_HLS_skip=yes", "_HLS_msn=-1", "_HLS_msn=12345678901234567890",
                         "_HLS_msn=1&_HLS_part=99999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ_INT(hls_query_parse(bad[i], strlen(bad[i]), &q), -1);
    /* the length is honoured: what follows is not read */
    ASSERT(hls_query_parse("_HLS_msn=5&_HLS_part=x", 10, &q) == 10 && q.msn == 5);
}

/* A playlist of 14 segments of 4 parts of 0.5 s, 2 parts into the 15th. */
static void sample_media(struct hls_media *m, uint32_t *d, int skip)
{
    uint64_t first = 1000 * 4;
    for (int i = 0; i < 14 * 4 + 2; i++)
        d[i] = 24000;
    *m = (struct hls_media){.epoch = "e1", .prefix = "o", .target_s = 2, .part_samples = 24000,
                            .parts_per_segment = 4, .first_part = first, .end_part = first + 58,
                            .part_dur = d, .first_pdt_ms = 1764651600000LL, .skip = skip};
}

TEST(media_playlist)
{
    uint32_t d[64];
    struct hls_media m;
    sample_media(&m, d, 0);
    struct buf b = {0};
    ASSERT_EQ_INT(hls_media_playlist(&b, &m), 0);
    ASSERT(strstr(b.data, "#EXT-X-MEDIA-SEQUENCE:1000\n"));
    ASSERT(strstr(b.data, "#EXT-X-TARGETDURATION:2\n"));
    ASSERT(strstr(b.data, "CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.0"));
    ASSERT(strstr(b.data, "#EXT-X-MAP:URI=\"e1/oinit.mp4\"\n"));
    ASSERT(strstr(b.data, "#EXT-X-PROGRAM-DATE-TIME:2025-12-02T05:00:00.000Z\n"));
    ASSERT(strstr(b.data, "#EXTINF:2.00000,\ne1/o1000.m4s\n"));
    ASSERT(strstr(b.data, "#EXTINF:2.00000,\ne1/o1013.m4s\n"));
    ASSERT(!strstr(b.data, "o1014.m4s\n")); /* in progress: parts only */
    ASSERT(strstr(b.data, "URI=\"e1/o1014.1.m4s\",INDEPENDENT=YES\n"));
    ASSERT(strstr(b.data, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"e1/o1014.2.m4s\"\n"));
    /* parts are listed for the last 3 whole segments and the one in progress only */
    ASSERT(strstr(b.data, "e1/o1011.0.m4s"));
    ASSERT(!strstr(b.data, "e1/o1010.3.m4s"));
    int nparts = 0;
    for (const char *p = b.data; (p = strstr(p, "#EXT-X-PART:")); p++)
        nparts++;
    ASSERT_EQ_INT(nparts, 3 * 4 + 2);
    buf_free(&b);
}

TEST(media_playlist_delta)
{
    uint32_t d[64];
    struct hls_media m;
    sample_media(&m, d, 1);
    struct buf b = {0};
    /* 29 s listed; a segment may go if it starts more than 12 s from the end: 8 of them */
    ASSERT_EQ_INT(hls_media_playlist(&b, &m), 8);
    ASSERT(strstr(b.data, "#EXT-X-MEDIA-SEQUENCE:1000\n#EXT-X-MAP:URI=\"e1/oinit.mp4\"\n"
                          "#EXT-X-SKIP:SKIPPED-SEGMENTS=8\n"));
    ASSERT(!strstr(b.data, "o1007.m4s"));
    ASSERT(strstr(b.data, "#EXT-X-PROGRAM-DATE-TIME:2025-12-02T05:00:16.000Z\n#EXTINF:2.00000,\n"
                          "e1/o1008.m4s\n"));
    buf_free(&b);
}

TEST(multivariant)
{
    struct hls_variant v[2] = {{"hls/x/o.m3u8", "opus", 96000}, {"hls/x/a.m3u8", "mp4a.40.2", 1}};
    struct buf b = {0};
    hls_multivariant(&b, v, 2, NULL, NULL);
    ASSERT(strstr(b.data, "#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS=\"opus\"\nhls/x/o.m3u8\n"));
    ASSERT(strstr(b.data, "CODECS=\"mp4a.40.2\"\nhls/x/a.m3u8\n"));
    buf_free(&b);
}

/* ---- real Opus through the Ogg mux, then fMP4 ------------------------------------------ */

struct pages {
    unsigned char data[1 << 16];
    size_t len[64], off[64];
    int n;
};

static void on_page(void *arg, const unsigned char *page, size_t len, uint64_t granule,
                    uint32_t seqno, int samples)
{
    struct pages *p = arg;
    size_t at = p->n ? p->off[p->n - 1] + p->len[p->n - 1] : 0;
    (void)granule, (void)seqno, (void)samples;
    if (p->n < 64 && at + len <= sizeof(p->data)) {
        memcpy(p->data + at, page, len);
        p->off[p->n] = at;
        p->len[p->n++] = len;
    }
}

/* Encodes <n> 20 ms frames of 440 Hz with libopus into rostrum's own Ogg pages. */
static struct ogg_mux *encode(struct pages *pg, int n, OpusEncoder **encp)
{
    int err;
    OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err);
    ASSERT(enc);
    opus_int32 skip = 0;
    opus_encoder_ctl(enc, OPUS_GET_LOOKAHEAD(&skip));
    struct opus_head_info head = {.channels = 1, .pre_skip = skip, .input_rate = 48000};
    struct ogg_mux *m = ogg_mux_new(1, &head, "test", NULL, 200);
    for (int f = 0; f < n; f++) {
        opus_int16 pcm[960];
        for (int i = 0; i < 960; i++)
            pcm[i] = (opus_int16)(8000 * sin(2 * M_PI * 440 * (f * 960 + i) / 48000.0));
        unsigned char pkt[1500];
        int len = opus_encode(enc, pcm, 960, pkt, sizeof(pkt));
        ASSERT(len > 0);
        ogg_mux_packet(m, pkt, (size_t)len, 960, on_page, pg);
    }
    *encp = enc;
    return m;
}

TEST(ogg_packets_of_rostrum_pages)
{
    struct pages *pg = calloc(1, sizeof(*pg));
    OpusEncoder *enc;
    struct ogg_mux *m = encode(pg, 50, &enc);
    ASSERT_EQ_INT(pg->n, 5); /* 200 ms pages */
    uint32_t off[64], len[64];
    int n = hls_ogg_packets(pg->data + pg->off[0], pg->len[0], off, len, 64);
    ASSERT_EQ_INT(n, 10);
    for (int i = 0; i < n; i++)
        ASSERT_EQ_INT(opus_packet_get_nb_samples(pg->data + pg->off[0] + off[i],
                                                 (opus_int32)len[i], 48000),
                      960);
    ASSERT_EQ_INT(hls_ogg_packets(pg->data + pg->off[0], pg->len[0] - 1, off, len, 64), -1);
    /* the header pages: OpusHead first */
    size_t hl;
    const unsigned char *h = ogg_mux_headers(m, &hl), *pkt;
    size_t plen;
    ASSERT_EQ_INT(hls_ogg_first_packet(h, hl, &pkt, &plen), 0);
    ASSERT(plen == 19 && memcmp(pkt, "OpusHead", 8) == 0);
    ogg_mux_free(m);
    opus_encoder_destroy(enc);
    free(pg);
}

/* Walks the boxes of <p>/<len> (recursing into containers): 1 if every size nests exactly. */
static int boxes_nest(const unsigned char *p, size_t len, int depth)
{
    static const char *const containers[] = {"moov", "trak", "mdia", "minf", "stbl", "mvex",
                                             "moof", "traf", "edts", "dinf"};
    size_t at = 0;
    while (at < len) {
        if (len - at < 8)
            return 0;
        uint32_t sz = (uint32_t)p[at] << 24 | p[at + 1] << 16 | p[at + 2] << 8 | p[at + 3];
        if (sz < 8 || sz > len - at)
            return 0;
        for (size_t i = 0; i < sizeof(containers) / sizeof(containers[0]); i++)
            if (depth < 8 && memcmp(p + at + 4, containers[i], 4) == 0 &&
                !boxes_nest(p + at + 8, sz - 8, depth + 1))
                return 0;
        at += sz;
    }
    return at == len;
}

static void write_file(const char *path, const void *a, size_t alen)
{
    FILE *f = fopen(path, "wb");
    ASSERT(f);
    ASSERT(fwrite(a, 1, alen, f) == alen);
    fclose(f);
}

/* Runs <cmd> and returns its first output line (static). */
static const char *run(const char *cmd)
{
    static char line[4096];
    FILE *p = popen(cmd, "r");
    ASSERT(p);
    line[0] = '\0';
    size_t n = fread(line, 1, sizeof(line) - 1, p);
    line[n] = '\0';
    pclose(p);
    return line;
}

TEST(opus_fmp4_decodes_with_ffmpeg)
{
    struct pages *pg = calloc(1, sizeof(*pg));
    OpusEncoder *enc;
    struct ogg_mux *m = encode(pg, 100, &enc);
    opus_int32 skip = 0;
    opus_encoder_ctl(enc, OPUS_GET_LOOKAHEAD(&skip));
    struct fmp4_track t = {.channels = 1, .rate = 48000, .pre_skip = skip, .input_rate = 48000};
    struct buf b = {0};
    fmp4_init(&b, &t);
    ASSERT(boxes_nest((unsigned char *)b.data, b.len, 0));
    size_t init_len = b.len;
    /* one fragment per Ogg page, as parts */
    uint64_t time = 0;
    for (int i = 0; i < pg->n; i++) {
        uint32_t off[64], len[64], dur[64];
        const unsigned char *page = pg->data + pg->off[i];
        int n = hls_ogg_packets(page, pg->len[i], off, len, 64);
        ASSERT(n > 0);
        for (int k = 0; k < n; k++)
            dur[k] = 960;
        size_t at = b.len;
        fmp4_fragment_head(&b, (uint32_t)i + 1, time, len, dur, n);
        for (int k = 0; k < n; k++)
            buf_append(&b, page + off[k], len[k]);
        ASSERT(boxes_nest((unsigned char *)b.data + at, b.len - at, 0));
        time += (uint64_t)n * 960;
    }
    ASSERT(b.len > init_len);
    char dir[] = "/tmp/test_hls_XXXXXX";
    ASSERT(mkdtemp(dir));
    char path[128], cmd[512];
    snprintf(path, sizeof(path), "%s/o.mp4", dir);
    write_file(path, b.data, b.len);
    snprintf(cmd, sizeof(cmd),
             "ffprobe -v error -select_streams a:0 -show_entries stream=codec_name,sample_rate,"
             "channels -of csv=p=0 %s 2>&1", path);
    ASSERT_EQ_STR(run(cmd), "opus,48000,1\n");
    /* decoded: 2 s less the priming the edit list trims, and no error on the way */
    snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -v error -i %s -f s16le - 2>&1 >/dev/null | head -c 300; "
             "ffmpeg -nostdin -v error -i %s -f s16le - 2>/dev/null | wc -c", path, path);
    char want[32];
    snprintf(want, sizeof(want), "%d\n", (96000 - skip) * 2);
    ASSERT_EQ_STR(run(cmd), want);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT(system(cmd) == 0);
    buf_free(&b);
    ogg_mux_free(m);
    opus_encoder_destroy(enc);
    free(pg);
}

TEST(adts_parse_rejects)
{
    struct adts_info ai;
    unsigned char good[7] = {0xff, 0xf1, 0x4c, 0x80, 0x2e, 0x7f, 0xfc};
    ASSERT_EQ_INT(adts_parse(good, 7, &ai), 7);
    ASSERT(ai.rate == 48000 && ai.channels == 2 && ai.frame_len == 371);
    ASSERT(ai.asc[0] == 0x11 && ai.asc[1] == 0x90); /* AAC-LC, 48 kHz, stereo */
    ASSERT_EQ_INT(adts_parse(good, 3, &ai), -2);
    unsigned char nosync[7] = {0xfe, 0xf1, 0x4c, 0x80, 0x2e, 0x7f, 0xfc};
    ASSERT_EQ_INT(adts_parse(nosync, 7, &ai), -1);
    unsigned char badrate[7] = {0xff, 0xf1, 0x7c, 0x80, 0x2e, 0x7f, 0xfc};
    ASSERT_EQ_INT(adts_parse(badrate, 7, &ai), -1);
    unsigned char nochan[7] = {0xff, 0xf1, 0x4c, 0x00, 0x2e, 0x7f, 0xfc};
    ASSERT_EQ_INT(adts_parse(nochan, 7, &ai), -1);
}

TEST(aac_fmp4_from_ffmpeg_adts)
{
    char dir[] = "/tmp/test_hls_XXXXXX";
    ASSERT(mkdtemp(dir));
    char cmd[768], path[128];
    snprintf(cmd, sizeof(cmd),
             "ffmpeg -nostdin -v error -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 "
             "-ac 2 -c:a aac -b:a 128k -f adts %s/in.aac", dir);
    ASSERT(system(cmd) == 0);
    snprintf(path, sizeof(path), "%s/in.aac", dir);
    FILE *f = fopen(path, "rb");
    ASSERT(f);
    static unsigned char adts[1 << 17];
    size_t alen = fread(adts, 1, sizeof(adts), f);
    fclose(f);
    ASSERT(alen > 1000 && alen < sizeof(adts));
    static uint32_t sizes[512], durs[512];
    static unsigned char payload[1 << 17];
    size_t plen = 0;
    int n = 0;
    struct adts_info first = {0}, ai;
    for (size_t at = 0; at < alen && n < 512;) {
        ASSERT(adts_parse(adts + at, alen - at, &ai) > 0);
        if (n == 0)
            first = ai;
        ASSERT(at + (size_t)ai.frame_len <= alen);
        sizes[n] = (uint32_t)(ai.frame_len - ai.header_len);
        durs[n] = 1024;
        memcpy(payload + plen, adts + at + ai.header_len, sizes[n]);
        plen += sizes[n];
        n++;
        at += (size_t)ai.frame_len;
    }
    ASSERT(first.rate == 48000 && first.channels == 2 && n > 90);
    struct fmp4_track t = {.aac = 1, .channels = first.channels, .rate = first.rate,
                           .asc = {first.asc[0], first.asc[1]}, .avg_bitrate = 128000};
    struct buf b = {0};
    fmp4_init(&b, &t);
    ASSERT(boxes_nest((unsigned char *)b.data, b.len, 0));
    fmp4_fragment_head(&b, 1, 0, sizes, durs, n);
    buf_append(&b, payload, plen);
    snprintf(path, sizeof(path), "%s/a.mp4", dir);
    write_file(path, b.data, b.len);
    snprintf(cmd, sizeof(cmd),
             "ffprobe -v error -select_streams a:0 -show_entries stream=codec_name,profile,"
             "sample_rate,channels -of csv=p=0 %s 2>&1", path);
    ASSERT_EQ_STR(run(cmd), "aac,LC,48000,2\n");
    snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -v error -i %s -f s16le - 2>&1 >/dev/null | head -c 300; "
             "ffmpeg -nostdin -v error -i %s -f s16le -ac 1 - 2>/dev/null | wc -c", path, path);
    char want[32];
    snprintf(want, sizeof(want), "%d\n", n * 1024 * 2);
    ASSERT_EQ_STR(run(cmd), want);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT(system(cmd) == 0);
    buf_free(&b);
}

int main(void)
{
    return RUN_TESTS();
}
