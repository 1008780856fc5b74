/*
 * The HLS playlist reader of rostrum-load hls (load/m3u8.c, issue 11): playlists written from
 * draft-pantos-hls-rfc8216bis (multivariant, plain live, low-latency with parts, preload hint
 * and a delta update), the bounds, what makes one invalid, and URI resolution.
 */
#include <string.h>

#include "harness.h"
#include "load/m3u8.h"

static int parse(const char *s, struct m3u8 *m)
{
    return m3u8_parse(s, strlen(s), m);
}

TEST(issue11_multivariant_audio_renditions)
{
    const char *p = "#EXTM3U\n"
                    "#EXT-X-VERSION:9\n"
                    "#EXT-X-INDEPENDENT-SEGMENTS\n"
                    "#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"opus\"\n"
                    "live/e3/opus.m3u8\n"
                    "#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS=\"mp4a.40.2\",NAME=\"a,b\"\r\n"
                    "live/e3/aac.m3u8\r\n";
    struct m3u8 m;
    ASSERT_EQ_INT(parse(p, &m), (int)strlen(p));
    ASSERT_EQ_INT(m.kind, M3U8_MULTIVARIANT);
    ASSERT_EQ_UINT(m.nvariants, 2);
    ASSERT_EQ_UINT(m.variants[0].bandwidth, 64000);
    ASSERT_EQ_STR(m.variants[0].codecs, "opus");
    ASSERT_EQ_STR(m.variants[1].uri, "live/e3/aac.m3u8");
    ASSERT_EQ_STR(m.variants[1].codecs, "mp4a.40.2");
    const char *q = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"a.m3u8\"\n";
    ASSERT_EQ_INT(parse(q, &m), (int)strlen(q));
    ASSERT_EQ_UINT(m.nvariants, 1);
    ASSERT_EQ_STR(m.variants[0].uri, "a.m3u8");
}

TEST(issue11_plain_live_playlist)
{
    /* what ffmpeg's hls muxer writes for a live playlist */
    struct m3u8 m;
    const char *p = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n"
                    "#EXT-X-PROGRAM-DATE-TIME:2026-12-02T06:00:00.000+0100\n"
                    "#EXTINF:2.000000,\nlive41.ts\n#EXTINF:2.000000,\nlive42.ts\n"
                    "#EXTINF:1.960000,\nlive43.ts\n";
    ASSERT_EQ_INT(parse(p, &m), (int)strlen(p));
    ASSERT_EQ_INT(m.kind, M3U8_MEDIA);
    ASSERT(m.target_s == 2.0 && m.part_target_s == 0 && !m.can_block && !m.endlist);
    ASSERT_EQ_INT((int)m.media_seq, 41);
    ASSERT_EQ_INT((int)m.last_msn, 43);
    ASSERT_EQ_UINT(m.nsegs, 3);
    ASSERT_EQ_UINT(m.nparts, 0);
    ASSERT_EQ_STR(m.segs[2].uri, "live43.ts");
    ASSERT_EQ_INT((int)m.segs[2].msn, 43);
    /* 2026-12-02T05:00:00Z is 1796187600 s */
    ASSERT(m.segs[0].pdt_ms == 1796187600000LL);
    ASSERT(m.segs[2].pdt_ms == 1796187604000LL);
    ASSERT(!m.has_hint);
}

static const char *ll =
    "#EXTM3U\n"
    "#EXT-X-VERSION:9\n"
    "#EXT-X-TARGETDURATION:2\n"
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5,CAN-SKIP-UNTIL=12.0,"
    "HOLD-BACK=6\n"
    "#EXT-X-PART-INF:PART-TARGET=0.5\n"
    "#EXT-X-MEDIA-SEQUENCE:100\n"
    "#EXT-X-MAP:URI=\"init-e7.mp4\"\n"
    "#EXT-X-PROGRAM-DATE-TIME:2026-12-02T05:00:00.000Z\n"
    "#EXTINF:2.0,\n"
    "seg-e7-100.m4s\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part-e7-101-0.m4s\",INDEPENDENT=YES\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part-e7-101-1.m4s\",INDEPENDENT=YES\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part-e7-101-2.m4s\",INDEPENDENT=YES\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part-e7-101-3.m4s\",INDEPENDENT=YES\n"
    "#EXTINF:2.0,\n"
    "seg-e7-101.m4s\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part-e7-102-0.m4s\",INDEPENDENT=YES\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part-e7-102-1.m4s\"\n"
    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-e7-102-2.m4s\"\n"
    "#EXT-X-RENDITION-REPORT:URI=\"aac.m3u8\",LAST-MSN=101,LAST-PART=1\n";

TEST(issue11_low_latency_playlist)
{
    struct m3u8 m;
    ASSERT_EQ_INT(parse(ll, &m), (int)strlen(ll));
    ASSERT_EQ_INT(m.kind, M3U8_MEDIA);
    ASSERT(m.can_block && m.part_target_s == 0.5 && m.part_hold_back_s == 1.5);
    ASSERT(m.can_skip_until_s == 12.0 && m.hold_back_s == 6.0);
    ASSERT_EQ_STR(m.map_uri, "init-e7.mp4");
    ASSERT_EQ_INT((int)m.last_msn, 101);
    ASSERT_EQ_UINT(m.nsegs, 2);
    ASSERT_EQ_UINT(m.nparts, 6);
    ASSERT_EQ_INT((int)m.parts[0].msn, 101);
    ASSERT_EQ_INT(m.parts[0].part, 0);
    ASSERT_EQ_INT((int)m.parts[5].msn, 102);
    ASSERT_EQ_INT(m.parts[5].part, 1);
    ASSERT(m.parts[4].independent && !m.parts[5].independent);
    ASSERT_EQ_STR(m.parts[5].uri, "part-e7-102-1.m4s");
    /* program date time: segment 101 starts 2 s after 100, its parts 0.5 s apart */
    ASSERT(m.parts[0].pdt_ms == 1796187602000LL);
    ASSERT(m.parts[3].pdt_ms == 1796187603500LL);
    ASSERT(m.parts[5].pdt_ms == 1796187604500LL);
    ASSERT(m.has_hint);
    ASSERT_EQ_INT((int)m.hint.msn, 102);
    ASSERT_EQ_INT(m.hint.part, 2);
    ASSERT_EQ_STR(m.hint.uri, "part-e7-102-2.m4s");
    ASSERT(m.hint.pdt_ms == 1796187605000LL);
}

TEST(issue11_delta_update)
{
    /* _HLS_skip=YES: the segments older than CAN-SKIP-UNTIL are replaced by EXT-X-SKIP */
    const char *p = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n"
                    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12\n"
                    "#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:100\n"
                    "#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n"
                    "#EXTINF:2.0,\nseg106.m4s\n"
                    "#EXT-X-PART:DURATION=0.5,URI=\"p107.0.m4s\"\n";
    struct m3u8 m;
    ASSERT_EQ_INT(parse(p, &m), (int)strlen(p));
    ASSERT_EQ_INT((int)m.skipped, 6);
    ASSERT_EQ_INT((int)m.segs[0].msn, 106);
    ASSERT_EQ_INT((int)m.last_msn, 106);
    ASSERT_EQ_INT((int)m.parts[0].msn, 107);
    ASSERT(m.segs[0].pdt_ms == 0); /* no date given: unknown, not invented */
}

TEST(issue11_keeps_the_newest_in_order)
{
    char p[8192] = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n";
    for (int i = 0; i < 30; i++) {
        size_t n = strlen(p);
        snprintf(
            p + n, sizeof(p) - n,
            "#EXT-X-PART:DURATION=1,URI=\"p%da.m4s\"\n#EXT-X-PART:DURATION=1,URI=\"p%db.m4s\"\n"
            "#EXTINF:2,\ns%d.m4s\n",
            i, i, i);
    }
    struct m3u8 m;
    ASSERT_EQ_INT(parse(p, &m), (int)strlen(p));
    ASSERT_EQ_UINT(m.nsegs, M3U8_SEGS);
    ASSERT_EQ_UINT(m.nparts, M3U8_PARTS);
    ASSERT_EQ_UINT(m.nsegs_total, 30);
    for (unsigned i = 0; i < M3U8_SEGS; i++)
        ASSERT_EQ_INT((int)m.segs[i].msn, 7 + 30 - M3U8_SEGS + (int)i);
    ASSERT_EQ_STR(m.segs[M3U8_SEGS - 1].uri, "s29.m4s");
    ASSERT_EQ_STR(m.parts[M3U8_PARTS - 1].uri, "p29b.m4s");
    ASSERT_EQ_INT((int)m.parts[0].msn, 7 + 30 - M3U8_PARTS / 2);
}

TEST(issue11_invalid_playlists)
{
    struct m3u8 m;
    const char *bad[] = {
        "",
        "#EXTM3U8\n#EXT-X-TARGETDURATION:2\n", /* not the first line */
        "\n#EXTM3U\n#EXT-X-TARGETDURATION:2\n",
        "#EXTM3U\n#EXTINF:2,\n",                                   /* EXTINF with no URI */
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\nseg.ts\n",              /* URI with no EXTINF */
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",                /* variant with no URI */
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-FOO\na\n", /* tag before its URI */
        "#EXTM3U\n#EXT-X-STREAM-INF:CODECS=\"opus\"\na.m3u8\n",    /* no BANDWIDTH */
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na\n#EXT-X-TARGETDURATION:2\n", /* both kinds */
        "#EXTM3U\n#EXTINF:2,\nseg.ts\n", /* no TARGETDURATION */
        "#EXTM3U\n#EXT-X-TARGETDURATION:x\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\na\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:nan,\na\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.5\n",         /* no URI */
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.5,URI=\"a\n", /* quote */
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.5,URI=\"a\"x\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.5,URI=\"a\",\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:URI=\"a\",DURATION=\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.5,URI=\"a b\"\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:2026-13-02T05:00:00Z\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:2026-12-02T05:00:00\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:2026-12-02T05:00:00+01\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na\n#EXT-X-MEDIA-SEQUENCE:3\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PRELOAD-HINT:TYPE=PART\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n#EXTINF:2,\na\n",
        /* a part hint names the part after the last listed: nothing may follow it */
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"h\"\n"
        "#EXT-X-PART:DURATION=0.5,URI=\"p\"\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"h\"\n"
        "#EXTINF:2,\na\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"h\"\n"
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"i\"\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"h\"\n"
        "#EXT-X-MEDIA-SEQUENCE:100\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], &m) != -1)
            TEST_FAIL_("playlist %zu parsed: %s", i, bad[i]);
    /* a NUL inside, a URI past the bound, a line past the bound */
    const char nul[] = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na\0b\n";
    ASSERT_EQ_INT(m3u8_parse(nul, sizeof(nul) - 1, &m), -1);
    char big[4096] = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n";
    size_t n = strlen(big);
    memset(big + n, 'a', M3U8_URI_MAX);
    big[n + M3U8_URI_MAX] = '\n';
    ASSERT_EQ_INT(m3u8_parse(big, n + M3U8_URI_MAX + 1, &m), -1);
    ASSERT_EQ_INT(m3u8_parse(big, n + M3U8_URI_MAX - 1, &m), (int)(n + M3U8_URI_MAX - 1));
    /* unknown tags and comments are skipped */
    const char *ok = "#EXTM3U\n# a comment\n#EXT-X-FUTURE-TAG:X=1\n#EXT-X-TARGETDURATION:2\n"
                     "#EXT-X-ENDLIST\n";
    ASSERT_EQ_INT(parse(ok, &m), (int)strlen(ok));
    ASSERT(m.endlist && m.nsegs == 0 && m.last_msn == -1);
}

TEST(issue11_resolve)
{
    char out[64];
    ASSERT_EQ_INT(m3u8_resolve("/live.m3u8", "live/e3/opus.m3u8", out, sizeof(out)), 17 + 1);
    ASSERT_EQ_STR(out, "/live/e3/opus.m3u8");
    ASSERT(m3u8_resolve("/live/e3/opus.m3u8?_HLS_msn=3", "p-1.m4s", out, sizeof(out)) > 0);
    ASSERT_EQ_STR(out, "/live/e3/p-1.m4s");
    ASSERT(m3u8_resolve("/a/b.m3u8", "/c/d.ts", out, sizeof(out)) > 0);
    ASSERT_EQ_STR(out, "/c/d.ts");
    ASSERT(m3u8_resolve("/a/b.m3u8", "http://127.0.0.1:8000/x/y.ts?z=1", out, sizeof(out)) > 0);
    ASSERT_EQ_STR(out, "/x/y.ts?z=1");
    ASSERT(m3u8_resolve("/a/b.m3u8", "http://h", out, sizeof(out)) > 0);
    ASSERT_EQ_STR(out, "/");
    ASSERT_EQ_INT(m3u8_resolve("/a/b.m3u8",
                               "0123456789012345678901234567890123456789"
                               "0123456789012345678901234567890123456789",
                               out, sizeof(out)),
                  -1);
}

int main(void)
{
    return RUN_TESTS();
}
