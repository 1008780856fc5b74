/* Unit tests for the relay feed's frames and the answer head a relay reads (issue 10). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "captions/captions.h"
#include "relay/feedproto.h"

static const unsigned char ogg[40] = "OggS\0\2 header page bytes follow here..";

static struct buf sample_stream(void)
{
    struct buf b = {0};
    struct space_meta m;
    memset(&m, 0, sizeof(m));
    strcpy(m.name, "Name");
    strcpy(m.bitrate, "48");
    feed_put_header(&b, 2, 0xdeadbeef, 7, 150, 1000, ogg, sizeof(ogg), &m);
    unsigned char head[FEED_HEAD_BYTES + FEED_PAGE_FIXED];
    feed_page_head(head, 1000, 48312, 9600, sizeof(ogg));
    buf_append(&b, head, sizeof(head));
    buf_append(&b, ogg, sizeof(ogg));
    feed_put_state(&b, "{}", 2);
    feed_put_keepalive(&b, 1001, FEED_KEEPALIVE_STARVED);
    feed_put_end(&b, FEED_END_RESTART);
    return b;
}

TEST(feed_frames_round_trip_10)
{
    struct buf b = sample_stream();
    const unsigned char *p = (const unsigned char *)b.data;
    size_t off = 0;
    struct feed_frame f;
    int n = feed_parse(p, b.len, &f);
    ASSERT(n > 0);
    ASSERT_EQ_INT(f.type, FEED_HEADER);
    ASSERT_EQ_UINT(f.header.serial, 0xdeadbeef);
    ASSERT_EQ_UINT(f.header.epoch, 7);
    ASSERT_EQ_UINT(f.header.start, 1000);
    ASSERT_EQ_UINT(f.header.keepalive_ms, 150);
    ASSERT_EQ_INT(f.header.channels, 2);
    ASSERT_EQ_UINT(f.header.ogg.len, sizeof(ogg));
    ASSERT_EQ_UINT(f.header.meta[0].len, 4);
    ASSERT_EQ_MEM(f.header.meta[0].p, "Name", 4);
    ASSERT_EQ_UINT(f.header.meta[4].len, 2);
    off += (size_t)n;
    n = feed_parse(p + off, b.len - off, &f);
    ASSERT_EQ_INT(f.type, FEED_PAGE);
    ASSERT_EQ_UINT(f.page.seq, 1000);
    ASSERT_EQ_UINT(f.page.granule, 48312);
    ASSERT_EQ_UINT(f.page.samples, 9600);
    ASSERT_EQ_MEM(f.page.page.p, ogg, sizeof(ogg));
    off += (size_t)n;
    n = feed_parse(p + off, b.len - off, &f);
    ASSERT_EQ_INT(f.type, FEED_STATE);
    ASSERT_EQ_UINT(f.state.len, 2);
    off += (size_t)n;
    n = feed_parse(p + off, b.len - off, &f);
    ASSERT_EQ_INT(f.type, FEED_KEEPALIVE);
    ASSERT_EQ_UINT(f.keepalive.head, 1001);
    ASSERT_EQ_UINT(f.keepalive.flags, FEED_KEEPALIVE_STARVED);
    off += (size_t)n;
    n = feed_parse(p + off, b.len - off, &f);
    ASSERT_EQ_INT(f.type, FEED_END);
    ASSERT_EQ_INT(f.end, FEED_END_RESTART);
    off += (size_t)n;
    ASSERT_EQ_UINT(off, b.len);
    buf_free(&b);
}

/* Issue 12, item 4 down the tree: a CAPTIONS frame round trip, and what it may not carry. */
TEST(feed_captions_frame_12)
{
    static const char list[] = "7 1000 1500 hello\n8 2000 2500 world\n";
    struct buf b = {0};
    feed_put_captions(&b, 2, 9, 123456789012LL, "pt-BR", list, sizeof(list) - 1);
    struct feed_frame f;
    ASSERT_EQ_INT(feed_parse((const unsigned char *)b.data, b.len, &f), (int)b.len);
    ASSERT_EQ_INT(f.type, FEED_CAPTIONS);
    ASSERT_EQ_INT(f.captions.on, 2);
    ASSERT_EQ_UINT(f.captions.epoch, 9);
    ASSERT(f.captions.final_ms == 123456789012LL);
    ASSERT_EQ_UINT(f.captions.lang.len, 5);
    ASSERT_EQ_MEM(f.captions.lang.p, "pt-BR", 5);
    ASSERT_EQ_UINT(f.captions.list.len, sizeof(list) - 1);
    ASSERT_EQ_MEM(f.captions.list.p, list, sizeof(list) - 1);
    for (size_t cut = 0; cut < b.len; cut++)
        ASSERT_EQ_INT(feed_parse((const unsigned char *)b.data, cut, &f), -2);
    unsigned char *p = (unsigned char *)b.data;
    p[FEED_HEAD_BYTES] = 3; /* no such state */
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1);
    p[FEED_HEAD_BYTES] = 2;
    p[FEED_HEAD_BYTES + 2] = 1; /* reserved */
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1);
    p[FEED_HEAD_BYTES + 2] = 0;
    p[FEED_HEAD_BYTES + 1] = 36; /* a language too long */
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1);
    p[FEED_HEAD_BYTES + 1] = (unsigned char)(b.len - FEED_HEAD_BYTES - FEED_CAPTIONS_FIXED + 1);
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1); /* past the frame */
    buf_free(&b);
    /* only the final time moved: no list, and the flag says keep the last one */
    feed_put_captions(&b, 2, 9, 123456790000LL, "pt-BR", NULL, 0);
    ASSERT_EQ_INT(feed_parse((const unsigned char *)b.data, b.len, &f), (int)b.len);
    ASSERT_EQ_INT(f.captions.same_list, 1);
    ASSERT_EQ_UINT(f.captions.list.len, 0);
    ASSERT(f.captions.final_ms == 123456790000LL);
    ASSERT_EQ_UINT(b.len, FEED_HEAD_BYTES + FEED_CAPTIONS_FIXED + 5);
    buf_free(&b);
    /* ... a SAME_LIST frame that carries a list anyway, or an unknown flag, is refused */
    feed_put_captions(&b, 2, 9, 0, "", "1 1 2 a\n", 8);
    p = (unsigned char *)b.data;
    p[FEED_HEAD_BYTES + 2] = FEED_CAPTIONS_SAME_LIST;
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1);
    p[FEED_HEAD_BYTES + 2] = 2;
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1);
    buf_free(&b);
    /* a list over the shared list's size is refused */
    struct buf big = {0};
    char *huge = calloc(1, SHARED_CAPTIONS_MAX + 1);
    ASSERT(huge != NULL);
    feed_put_captions(&big, 2, 1, 0, "", huge, SHARED_CAPTIONS_MAX + 1);
    ASSERT_EQ_INT(feed_parse((const unsigned char *)big.data, big.len, &f), -1);
    buf_free(&big);
    feed_put_captions(&big, 2, 1, 0, "", huge, SHARED_CAPTIONS_MAX);
    ASSERT(feed_parse((const unsigned char *)big.data, big.len, &f) > 0);
    buf_free(&big);
    free(huge);
}

/* What a relay takes from its upstream as a cue list (captions_list_ok). */
TEST(captions_list_from_upstream_12)
{
#define OK(t) ASSERT_EQ_INT(captions_list_ok(t, sizeof(t) - 1), 1)
#define BAD(t) ASSERT_EQ_INT(captions_list_ok(t, sizeof(t) - 1), 0)
    OK("");
    OK("1 10 20 a\n");
    OK("1 10 20 caf\xc3\xa9\n2 30 30 b c\n");
    BAD("1 10 20 a");              /* not a whole line */
    BAD("2 10 20 a\n1 30 40 b\n");  /* ids going back */
    BAD("1 10 20 a\n1 30 40 b\n");  /* ... or repeated */
    BAD("1 20 10 a\n");            /* ends before it starts */
    BAD("1 10 20 \n");             /* no text */
    BAD("1 10 20 a\tb\n");         /* a control character */
    BAD("1 10 20 \xc2\x85\n");     /* a C1 control */
    BAD("1 10 20 \xff\n");         /* not UTF-8 */
    BAD("x 10 20 a\n");
    char long_text[CAPTIONS_TEXT_MAX + 16];
    int n = snprintf(long_text, sizeof(long_text), "1 0 1 ");
    memset(long_text + n, 'a', CAPTIONS_TEXT_MAX + 1);
    long_text[n + CAPTIONS_TEXT_MAX + 1] = '\n';
    ASSERT_EQ_INT(captions_list_ok(long_text, (size_t)n + CAPTIONS_TEXT_MAX + 2), 0);
    long_text[n + CAPTIONS_TEXT_MAX] = '\n';
    ASSERT_EQ_INT(captions_list_ok(long_text, (size_t)n + CAPTIONS_TEXT_MAX + 1), 1);
#undef OK
#undef BAD
}

/* Every prefix of a frame is incomplete: a frame split across reads anywhere parses as one. */
TEST(feed_frames_split_at_every_byte_10)
{
    struct buf b = sample_stream();
    const unsigned char *p = (const unsigned char *)b.data;
    struct feed_frame f;
    size_t off = 0;
    while (off < b.len) {
        int n = feed_parse(p + off, b.len - off, &f);
        ASSERT(n > 0);
        for (size_t cut = 0; cut < (size_t)n; cut++)
            ASSERT_EQ_INT(feed_parse(p + off, cut, &f), -2);
        off += (size_t)n;
    }
    buf_free(&b);
}

TEST(feed_refuses_what_it_cannot_bound_10)
{
    struct feed_frame f;
    /* a payload over the bound is refused from its head alone */
    unsigned char big[8] = {FEED_PAGE, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff};
    ASSERT_EQ_INT(feed_parse(big, sizeof(big), &f), -1);
    unsigned char flags[8] = {FEED_KEEPALIVE, 1, 0, 0, 0, 0, 0, 8};
    ASSERT_EQ_INT(feed_parse(flags, sizeof(flags), &f), -1);
    unsigned char type[9] = {99, 0, 0, 0, 0, 0, 0, 1, 0};
    ASSERT_EQ_INT(feed_parse(type, sizeof(type), &f), -1);
    /* a header of another version, or with 3 channels */
    struct buf b = sample_stream();
    unsigned char *p = (unsigned char *)b.data;
    p[FEED_HEAD_BYTES + 1] = FEED_VERSION + 1; /* another version */
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1);
    p[FEED_HEAD_BYTES + 1] = 1; /* version 1: the older frames, with the older REPORT */
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1);
    p[FEED_HEAD_BYTES + 1] = FEED_VERSION;
    p[FEED_HEAD_BYTES + 3] = 3;
    ASSERT_EQ_INT(feed_parse(p, b.len, &f), -1);
    p[FEED_HEAD_BYTES + 3] = 2;
    ASSERT(feed_parse(p, b.len, &f) > 0);
    buf_free(&b);
    /* a page that is not an Ogg page */
    unsigned char head[FEED_HEAD_BYTES + FEED_PAGE_FIXED + 40];
    feed_page_head(head, 1, 2, 3, 40);
    memset(head + FEED_HEAD_BYTES + FEED_PAGE_FIXED, 'x', 40);
    ASSERT_EQ_INT(feed_parse(head, sizeof(head), &f), -1);
}

TEST(feed_report_upward_10)
{
    unsigned char rep[FEED_REPORT_MAX];
    struct feed_report_fields r = {12345, 12400, 100000, 345, 250, FEED_REPORT_DRAINING,
                                   "edge-1", "http://edge1.example:8000", 77, 3, 0, NULL};
    size_t len = feed_report(rep, &r);
    ASSERT_EQ_UINT(len, FEED_HEAD_BYTES + FEED_REPORT_FIXED + 2 + 6 + 25);
    struct feed_frame f;
    ASSERT_EQ_INT(feed_parse(rep, len, &f), (int)len);
    ASSERT_EQ_INT(f.type, FEED_REPORT);
    ASSERT_EQ_UINT(f.report.tree, 12345);
    ASSERT_EQ_UINT(f.report.own, 345);
    ASSERT_EQ_UINT(f.report.connections, 12400);
    ASSERT_EQ_UINT(f.report.capacity, 100000);
    ASSERT_EQ_UINT(f.report.load_milli, 250);
    ASSERT_EQ_UINT(f.report.flags, FEED_REPORT_DRAINING);
    ASSERT_EQ_UINT(f.report.name.len, 6);
    ASSERT(memcmp(f.report.url.p, "http://edge1.example:8000", 25) == 0);
    ASSERT_EQ_UINT(f.report.id, 77);
    ASSERT_EQ_UINT(f.report.gen, 3);
    ASSERT_EQ_UINT(f.report.nrows, 0);
    for (size_t cut = 0; cut < len; cut++)
        ASSERT_EQ_INT(feed_parse(rep, cut, &f), -2);
    rep[FEED_HEAD_BYTES + 15] = 2; /* an unknown flag */
    ASSERT_EQ_INT(feed_parse(rep, len, &f), -1);
    /* texts the encoder will not send, and the parser will not take */
    struct feed_report_fields bad = {1, 1, 1, 1, 0, 0, "a b", "http://x/path\"q", 5, 0, 0, NULL};
    len = feed_report(rep, &bad);
    ASSERT_EQ_INT(feed_parse(rep, len, &f), (int)len);
    ASSERT_EQ_UINT(f.report.name.len, 0);
    ASSERT_EQ_UINT(f.report.url.len, 0);
    ASSERT(!feed_text_ok("ftp://x", 7, 1) && !feed_text_ok("http://", 7, 1));
    ASSERT(feed_text_ok("http://[::1]:8000", 17, 1) && !feed_text_ok("x\"", 2, 0));
    /* own above tree is a lie the parser refuses */
    struct feed_report_fields lie = {1, 1, 1, 1, 0, 0, "", "", 5, 0, 0, NULL};
    len = feed_report(rep, &lie);
    rep[FEED_HEAD_BYTES + 19] = 2;
    ASSERT_EQ_INT(feed_parse(rep, len, &f), -1);
    /* no identity: refused */
    lie.id = 0;
    len = feed_report(rep, &lie);
    ASSERT_EQ_INT(feed_parse(rep, len, &f), -1);
}

/* Version 3: a report lists the relays below with their generations and ages; the parser
 * refuses rows that do not fit in <tree>, name the reporter or are past the age limit. */
TEST(feed_report_rows_by_identity_10)
{
    struct feed_tree_row rows[FEED_REPORT_ROWS + 3];
    for (uint32_t i = 0; i < FEED_REPORT_ROWS + 3; i++)
        rows[i] = (struct feed_tree_row){100 + i, i, 10, i * 10};
    struct feed_report_fields r = {0, 0, 10, 7, 0, 0, "r", "", 42, 9, 2, rows};
    unsigned char rep[FEED_REPORT_MAX];
    size_t len = feed_report(rep, &r);
    ASSERT_EQ_UINT(len, FEED_HEAD_BYTES + FEED_REPORT_FIXED + 2 + 1 + 2 * FEED_ROW_BYTES);
    struct feed_frame f;
    ASSERT_EQ_INT(feed_parse(rep, len, &f), (int)len);
    ASSERT_EQ_UINT(f.report.tree, 27); /* raised to own + rows */
    ASSERT_EQ_UINT(f.report.nrows, 2);
    struct feed_tree_row got;
    feed_report_row(&f, 1, &got);
    ASSERT_EQ_UINT(got.id, 101);
    ASSERT_EQ_UINT(got.gen, 1);
    ASSERT_EQ_UINT(got.own, 10);
    ASSERT_EQ_UINT(got.age_ms, 10);
    for (size_t cut = 0; cut < len; cut++)
        ASSERT_EQ_INT(feed_parse(rep, cut, &f), -2);
    /* the most a report holds, and what lies past the rows is unlisted in <tree> */
    r.nrows = FEED_REPORT_ROWS + 3;
    r.tree = 10000;
    len = feed_report(rep, &r);
    ASSERT_EQ_UINT(len, FEED_HEAD_BYTES + FEED_REPORT_FIXED + 2 + 1 +
                            FEED_REPORT_ROWS * FEED_ROW_BYTES);
    ASSERT(len <= FEED_REPORT_MAX);
    ASSERT_EQ_INT(feed_parse(rep, len, &f), (int)len);
    ASSERT_EQ_UINT(f.report.nrows, FEED_REPORT_ROWS);
    ASSERT_EQ_UINT(f.report.tree, 10000);
    /* rows past <tree>, a row naming the reporter, a row too old, a row of no one */
    r.nrows = 2;
    r.tree = 27;
    len = feed_report(rep, &r);
    unsigned char *row1 = rep + len - FEED_ROW_BYTES;
    rep[FEED_HEAD_BYTES + 3] = 26; /* tree 26 < 7 + 10 + 10 */
    ASSERT_EQ_INT(feed_parse(rep, len, &f), -1);
    rep[FEED_HEAD_BYTES + 3] = 27;
    ASSERT_EQ_INT(feed_parse(rep, len, &f), (int)len);
    row1[7] = 42; /* id 42: the reporter itself */
    ASSERT_EQ_INT(feed_parse(rep, len, &f), -1);
    row1[7] = 0; /* id 0 */
    ASSERT_EQ_INT(feed_parse(rep, len, &f), -1);
    row1[7] = 101;
    row1[18] = 0xff; /* an age of 65,290 ms */
    ASSERT_EQ_INT(feed_parse(rep, len, &f), -1);
    row1[18] = 0;
    ASSERT_EQ_INT(feed_parse(rep, len, &f), (int)len);
    /* a row cut short */
    rep[FEED_HEAD_BYTES - 1] -= 1;
    ASSERT_EQ_INT(feed_parse(rep, len - 1, &f), -1);
}

TEST(feed_answer_heads_10)
{
    struct feed_http_head h;
    const char *feed = "HTTP/1.0 200 OK\r\nContent-Type: application/x-rostrum-feed\r\n"
                       "X-Rostrum-Feed: 2\r\n\r\nFRAMES";
    ASSERT_EQ_INT(feed_parse_response_head((const unsigned char *)feed, strlen(feed), &h),
                  (int)strlen(feed) - 6);
    ASSERT_EQ_INT(h.status, 200);
    ASSERT_EQ_INT(h.kind, FEED_KIND_FEED);
    ASSERT_EQ_INT(h.feed_version, 2);
    const char *ice = "HTTP/1.0 200 OK\r\ncontent-type: application/ogg\r\nicy-br: 48\r\n\r\n";
    ASSERT(feed_parse_response_head((const unsigned char *)ice, strlen(ice), &h) > 0);
    ASSERT_EQ_INT(h.kind, FEED_KIND_OGG);
    const char *icy = "ICY 403 Forbidden\r\n\r\n";
    ASSERT(feed_parse_response_head((const unsigned char *)icy, strlen(icy), &h) > 0);
    ASSERT_EQ_INT(h.status, 403);
    ASSERT_EQ_INT(feed_parse_response_head((const unsigned char *)"HTTP/1.0 200 OK\r\n", 17, &h),
                  -2);
    ASSERT_EQ_INT(feed_parse_response_head((const unsigned char *)"SMTP 200\r\n\r\n", 12, &h), -1);
    const char *ctl = "HTTP/1.1 200 OK\r\nX: a\001b\r\n\r\n";
    ASSERT_EQ_INT(feed_parse_response_head((const unsigned char *)ctl, strlen(ctl), &h), -1);
    /* a head that never ends is refused at its bound, not buffered */
    static unsigned char longhead[FEED_MAX_HEAD + 10];
    memset(longhead, 'a', sizeof(longhead));
    memcpy(longhead, "HTTP/1.0 200 OK\r\n", 17);
    ASSERT_EQ_INT(feed_parse_response_head(longhead, sizeof(longhead), &h), -1);
}

int main(void)
{
    return RUN_TESTS();
}
