/*
 * fuzz_feed: libFuzzer target for what a relay reads from its upstream (src/relay/feedproto.c):
 * the answer head (feed_parse_response_head) and the feed's frames (feed_parse).
 *
 * The first byte picks the parser. Frames are parsed one after another as the relay's read
 * loop does; every frame must be whole inside the input, within FEED_MAX_FRAME, and each of
 * its strings inside it; a prefix of a frame must say "incomplete" (-2) or the same, never
 * something else (so a frame split across reads parses as one). An upward REPORT (what an
 * upstream reads from its relays: feed.c) must carry only texts feed_text_ok() accepts, inside
 * the frame and within FEED_REPORT_MAX. A valid HEADER, PAGE, STATE, CAPTIONS or REPORT is encoded
 * again with the encoders and must parse to the same fields. libFuzzer hands over
 * an exact-size heap copy, so ASan catches a read past the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/feedproto.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static int inside(const unsigned char *p, size_t n, const unsigned char *buf, size_t len)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void reencode(const struct feed_frame *f)
{
    struct buf b = {0};
    struct feed_frame g;
    if (f->type == FEED_HEADER) {
        struct space_meta m;
        memset(&m, 0, sizeof(m));
        char *dst[5] = {m.name, m.description, m.genre, m.url, m.bitrate};
        for (int i = 0; i < 5; i++) {
            /* a NUL inside a string would end it early when encoded from a C string */
            if (memchr(f->header.meta[i].p, 0, f->header.meta[i].len))
                return;
            memcpy(dst[i], f->header.meta[i].p, f->header.meta[i].len);
        }
        feed_put_header(&b, f->header.channels, f->header.serial, f->header.epoch,
                        f->header.keepalive_ms, f->header.start, f->header.ogg.p,
                        f->header.ogg.len, &m);
        CHECK(feed_parse((const unsigned char *)b.data, b.len, &g) == (int)b.len);
        CHECK(g.header.serial == f->header.serial && g.header.epoch == f->header.epoch &&
              g.header.start == f->header.start && g.header.ogg.len == f->header.ogg.len &&
              g.header.keepalive_ms == f->header.keepalive_ms);
    } else if (f->type == FEED_PAGE) {
        unsigned char head[FEED_HEAD_BYTES + FEED_PAGE_FIXED];
        feed_page_head(head, f->page.seq, f->page.granule, f->page.samples, f->page.page.len);
        buf_append(&b, head, sizeof(head));
        buf_append(&b, f->page.page.p, f->page.page.len);
        CHECK(feed_parse((const unsigned char *)b.data, b.len, &g) == (int)b.len);
        CHECK(g.page.seq == f->page.seq && g.page.granule == f->page.granule &&
              g.page.samples == f->page.samples && g.page.page.len == f->page.page.len);
    } else if (f->type == FEED_STATE) {
        feed_put_state(&b, f->state.p, f->state.len);
        CHECK(feed_parse((const unsigned char *)b.data, b.len, &g) == (int)b.len);
    } else if (f->type == FEED_CAPTIONS) {
        char lang[36];
        if (memchr(f->captions.lang.p, 0, f->captions.lang.len))
            return; /* encoded from a C string: a NUL would end it */
        memcpy(lang, f->captions.lang.p, f->captions.lang.len);
        lang[f->captions.lang.len] = '\0';
        feed_put_captions(&b, f->captions.on, f->captions.epoch, f->captions.final_ms, lang,
                          f->captions.same_list ? NULL : f->captions.list.p,
                          (uint32_t)f->captions.list.len);
        CHECK(feed_parse((const unsigned char *)b.data, b.len, &g) == (int)b.len);
        CHECK(g.captions.same_list == f->captions.same_list);
        CHECK(g.captions.on == f->captions.on && g.captions.epoch == f->captions.epoch &&
              g.captions.final_ms == f->captions.final_ms &&
              g.captions.lang.len == f->captions.lang.len &&
              g.captions.list.len == f->captions.list.len &&
              memcmp(g.captions.list.p, f->captions.list.p, f->captions.list.len) == 0);
    } else if (f->type == FEED_REPORT) {
        char name[FEED_NAME_MAX + 1], url[FEED_URL_MAX + 1];
        memcpy(name, f->report.name.p, f->report.name.len);
        name[f->report.name.len] = '\0';
        memcpy(url, f->report.url.p, f->report.url.len);
        url[f->report.url.len] = '\0';
        struct feed_tree_row rows[FEED_REPORT_ROWS];
        for (uint32_t i = 0; i < f->report.nrows; i++)
            feed_report_row(f, i, &rows[i]);
        struct feed_report_fields r = {f->report.tree,      f->report.connections,
                                       f->report.capacity,  f->report.own,
                                       f->report.load_milli, f->report.flags, name, url,
                                       f->report.id,         f->report.gen,   f->report.nrows,
                                       rows};
        unsigned char rep[FEED_REPORT_MAX];
        size_t n = feed_report(rep, &r);
        CHECK(n <= FEED_REPORT_MAX && feed_parse(rep, n, &g) == (int)n);
        CHECK(g.report.tree == f->report.tree && g.report.own == f->report.own &&
              g.report.capacity == f->report.capacity && g.report.flags == f->report.flags &&
              g.report.name.len == f->report.name.len && g.report.url.len == f->report.url.len &&
              memcmp(g.report.url.p, url, g.report.url.len) == 0 && g.report.id == f->report.id &&
              g.report.gen == f->report.gen && g.report.nrows == f->report.nrows &&
              memcmp(g.report.rows, f->report.rows, f->report.nrows * FEED_ROW_BYTES) == 0);
    }
    buf_free(&b);
}

static void frames(const unsigned char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        struct feed_frame f;
        int n = feed_parse(buf + off, len - off, &f);
        if (n == -2)
            CHECK(len - off < FEED_MAX_FRAME);
        if (n < 0)
            return;
        CHECK((size_t)n <= len - off && n <= FEED_MAX_FRAME && n >= FEED_HEAD_BYTES);
        const unsigned char *fb = buf + off;
        if (f.type == FEED_HEADER) {
            CHECK(inside(f.header.ogg.p, f.header.ogg.len, fb, (size_t)n));
            CHECK(f.header.ogg.len <= FEED_MAX_OGG_HEADERS);
            for (int i = 0; i < 5; i++)
                CHECK(inside(f.header.meta[i].p, f.header.meta[i].len, fb, (size_t)n));
        } else if (f.type == FEED_PAGE) {
            CHECK(inside(f.page.page.p, f.page.page.len, fb, (size_t)n));
            CHECK(f.page.page.len <= OGG_MUX_MAX_PAGE);
        } else if (f.type == FEED_STATE) {
            CHECK(inside(f.state.p, f.state.len, fb, (size_t)n) && f.state.len <= SHARED_STATE_MAX);
        } else if (f.type == FEED_CAPTIONS) {
            CHECK(inside(f.captions.lang.p, f.captions.lang.len, fb, (size_t)n) &&
                  f.captions.lang.len <= 35 && f.captions.on <= 2);
            CHECK(inside(f.captions.list.p, f.captions.list.len, fb, (size_t)n) &&
                  f.captions.list.len <= SHARED_CAPTIONS_MAX);
            CHECK(!f.captions.same_list || f.captions.list.len == 0);
        } else if (f.type == FEED_REPORT) {
            CHECK(n <= FEED_REPORT_MAX && f.report.own <= f.report.tree);
            CHECK(inside(f.report.name.p, f.report.name.len, fb, (size_t)n));
            CHECK(inside(f.report.url.p, f.report.url.len, fb, (size_t)n));
            CHECK(feed_text_ok((const char *)f.report.name.p, f.report.name.len, 0));
            CHECK(feed_text_ok((const char *)f.report.url.p, f.report.url.len, 1));
            CHECK(inside(f.report.rows, f.report.nrows * FEED_ROW_BYTES, fb, (size_t)n));
            CHECK(f.report.nrows <= FEED_REPORT_ROWS && f.report.id != 0);
            uint64_t sum = f.report.own;
            for (uint32_t i = 0; i < f.report.nrows; i++) {
                struct feed_tree_row r;
                feed_report_row(&f, i, &r);
                CHECK(r.id != 0 && r.id != f.report.id && r.age_ms <= FEED_REPORT_AGE_MS);
                sum += r.own;
            }
            CHECK(sum <= f.report.tree);
        }
        /* a prefix is incomplete, never a different answer */
        for (size_t cut = 0; cut < (size_t)n; cut += 1 + (size_t)n / 16) {
            struct feed_frame p;
            CHECK(feed_parse(fb, cut, &p) == -2);
        }
        reencode(&f);
        off += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const unsigned char *buf = data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        struct feed_http_head h;
        int n = feed_parse_response_head(buf, len, &h);
        CHECK(n == -1 || n == -2 || (n >= 4 && (size_t)n <= len && n <= FEED_MAX_HEAD + 3));
        if (n == -2)
            CHECK(len < FEED_MAX_HEAD);
        if (n > 0) {
            CHECK(h.status >= 100 && h.status <= 999);
            struct feed_http_head g;
            for (size_t cut = 0; cut < (size_t)n; cut += 1 + (size_t)n / 16)
                CHECK(feed_parse_response_head(buf, cut, &g) == -2);
            frames(buf + n, len - (size_t)n); /* what follows a head is a feed */
        }
        return 0;
    }
    frames(buf, len);
    return 0;
}
