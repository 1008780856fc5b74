/*
 * test_load: the load tool's pieces that decide its figures: the incremental Ogg page checker
 * (load/oggcheck), the duration histogram (load/hist), the loopback-only URL rule (load/url) and
 * the metrics reader (load/httpget), and the option table both commands parse with (load/opts).
 *
 * Streams are made with libogg (ogg_stream_packetin + ogg_stream_flush), independently of the
 * checker, so a CRC or lacing bug in the checker cannot hide behind the same bug in the input.
 * Each stream is fed whole, split at every byte (near page boundaries only, for the one stream
 * over 32 KiB), byte by byte and in random chunks: the counters must not depend on where recv()
 * cuts. The last tests run the whole tool (processes, pipe, JSON) against a fake server.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <ogg/ogg.h>

#include "harness.h"
#include "load/hist.h"
#include "load/httpget.h"
#include "load/listen.h"
#include "load/oggcheck.h"
#include "load/opts.h"
#include "load/url.h"

/* ---- helpers: pages ----------------------------------------------------------------------- */

struct tbuf {
    unsigned char *p;
    size_t len, cap;
};

static void tbuf_put(struct tbuf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 1024;
        b->p = realloc(b->p, b->cap);
        ASSERT(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

#define MAXPAGES 256

struct pages {
    struct tbuf pg[MAXPAGES];
    int n;
};

static void pages_add(struct pages *ps, const ogg_page *og)
{
    ASSERT(ps->n < MAXPAGES);
    struct tbuf *b = &ps->pg[ps->n++];
    memset(b, 0, sizeof(*b));
    tbuf_put(b, og->header, (size_t)og->header_len);
    tbuf_put(b, og->body, (size_t)og->body_len);
}

static void pages_free(struct pages *ps)
{
    for (int i = 0; i < ps->n; i++)
        free(ps->pg[i].p);
    ps->n = 0;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

struct gen {
    uint32_t serial;
    int audio_pages;
    int tags_len;  /* OpusTags packet length (> 65025: spans pages) */
    int big_every; /* every Nth page holds one packet over 255 bytes (lacing runs of 255) */
};

/* An Ogg/Opus-like stream: page 0 BOS OpusHead, OpusTags page(s), then <audio_pages> pages of
 * 10 "packets" of random bytes each (the checker does not decode). Page sequence numbers are
 * libogg's: 0, 1, 2... */
static void gen_pages(struct pages *ps, const struct gen *g)
{
    ogg_stream_state os;
    ogg_stream_init(&os, (int)g->serial);
    ogg_page og;
    unsigned char head[19] = "OpusHead";
    head[8] = 1;
    head[9] = 2;
    ogg_packet op = {.packet = head, .bytes = 19, .b_o_s = 1, .packetno = 0};
    ogg_stream_packetin(&os, &op);
    while (ogg_stream_flush(&os, &og))
        pages_add(ps, &og);
    int tl = g->tags_len ? g->tags_len : 24;
    unsigned char *tags = calloc(1, (size_t)tl);
    ASSERT(tags);
    memcpy(tags, "OpusTags", 8);
    op = (ogg_packet){.packet = tags, .bytes = tl, .packetno = 1};
    ogg_stream_packetin(&os, &op);
    while (ogg_stream_flush(&os, &og))
        pages_add(ps, &og);
    free(tags);
    int64_t gp = 312, no = 2;
    unsigned char pkt[1200];
    for (int pg = 0; pg < g->audio_pages; pg++) {
        for (int k = 0; k < 10; k++) {
            int len = 60 + (int)(rnd() % 80);
            if (g->big_every && pg % g->big_every == 0 && k == 0)
                len = 255 * 3 + (int)(rnd() % 300); /* lacing 255,255,255,x */
            for (int i = 0; i < len; i++)
                pkt[i] = (unsigned char)rnd();
            gp += 960;
            op = (ogg_packet){.packet = pkt, .bytes = len, .granulepos = gp, .packetno = no++};
            ogg_stream_packetin(&os, &op);
        }
        while (ogg_stream_flush(&os, &og))
            pages_add(ps, &og);
    }
    ogg_stream_clear(&os);
}

/* Concatenates pages <idx>[0..n) of <ps> into <out>. */
static void pick(struct tbuf *out, const struct pages *ps, const int *idx, int n)
{
    for (int i = 0; i < n; i++)
        tbuf_put(out, ps->pg[idx[i]].p, ps->pg[idx[i]].len);
}

static void concat_all(struct tbuf *out, const struct pages *ps)
{
    for (int i = 0; i < ps->n; i++)
        tbuf_put(out, ps->pg[i].p, ps->pg[i].len);
}

/* Counter view of a checker, for comparing runs. */
struct counts {
    uint64_t audio_bytes;
    uint32_t pages, audio_pages, crc, gaps, serials, syncs, garbage, first_audio, last_seq;
};

static struct counts counts_of(const struct oggcheck *c)
{
    return (struct counts){c->audio_bytes, c->pages,          c->audio_pages, c->crc_errors,
                           c->seq_gaps,    c->serial_changes, c->sync_losses, c->garbage_bytes,
                           c->first_audio, c->last_seq};
}

static void assert_same(struct counts a, struct counts b)
{
    ASSERT_EQ_UINT(a.audio_bytes, b.audio_bytes);
    ASSERT_EQ_UINT(a.pages, b.pages);
    ASSERT_EQ_UINT(a.audio_pages, b.audio_pages);
    ASSERT_EQ_UINT(a.crc, b.crc);
    ASSERT_EQ_UINT(a.gaps, b.gaps);
    ASSERT_EQ_UINT(a.serials, b.serials);
    ASSERT_EQ_UINT(a.syncs, b.syncs);
    ASSERT_EQ_UINT(a.garbage, b.garbage);
    ASSERT_EQ_UINT(a.first_audio, b.first_audio);
    ASSERT_EQ_UINT(a.last_seq, b.last_seq);
}

static struct counts check_whole(const struct tbuf *s)
{
    struct oggcheck c;
    oggcheck_init(&c);
    oggcheck_feed(&c, s->p, s->len);
    return counts_of(&c);
}

/* Feeds <s> whole, then split in two at every byte, then one byte at a time, then in random
 * chunks: all must agree. Returns the counts. */
/* Whether to try a cut at <cut>: every byte of a small stream; in a large one (where every
 * byte would cost minutes under ASan) every byte within 64 of a capture pattern, where the
 * header, lacing table and first body bytes are, and every 61st byte elsewhere. */
static int want_cut(const struct tbuf *s, size_t cut)
{
    if (s->len <= 32768 || cut % 61 == 0)
        return 1;
    size_t lo = cut > 64 ? cut - 64 : 0, hi = cut + 64 < s->len ? cut + 64 : s->len;
    for (size_t i = lo; i + 4 <= hi; i++)
        if (memcmp(s->p + i, "OggS", 4) == 0)
            return 1;
    return 0;
}

static struct counts check_all_splits(const struct tbuf *s)
{
    struct counts whole = check_whole(s);
    for (size_t cut = 0; cut <= s->len; cut++) {
        if (!want_cut(s, cut))
            continue;
        struct oggcheck c;
        oggcheck_init(&c);
        oggcheck_feed(&c, s->p, cut);
        oggcheck_feed(&c, s->p + cut, s->len - cut);
        assert_same(counts_of(&c), whole);
    }
    struct oggcheck c;
    oggcheck_init(&c);
    for (size_t i = 0; i < s->len; i++)
        oggcheck_feed(&c, s->p + i, 1);
    assert_same(counts_of(&c), whole);
    oggcheck_init(&c);
    for (size_t i = 0; i < s->len;) {
        size_t n = 1 + rnd() % 3000;
        if (n > s->len - i)
            n = s->len - i;
        oggcheck_feed(&c, s->p + i, n);
        i += n;
    }
    assert_same(counts_of(&c), whole);
    return whole;
}

static uint64_t bytes_of(const struct pages *ps, int from, int to)
{
    uint64_t n = 0;
    for (int i = from; i < to; i++)
        n += ps->pg[i].len;
    return n;
}

/* ---- oggcheck: CRC -------------------------------------------------------------------------- */

TEST(crc_check_value)
{
    /* CRC-32 with polynomial 0x04c11db7, init 0, no reflection, no final xor: the "POSIX"
     * check value 0x765e7680 without its final inversion. */
    ASSERT_EQ_UINT(oggcheck_crc(0, (const uint8_t *)"123456789", 9), 0x89a1897fu);
    /* any split gives the same CRC (the slice-by-8 path and the byte path agree) */
    uint8_t data[100];
    for (int i = 0; i < 100; i++)
        data[i] = (uint8_t)rnd();
    uint32_t all = oggcheck_crc(0, data, sizeof(data));
    for (int cut = 0; cut <= 100; cut++)
        ASSERT_EQ_UINT(
            oggcheck_crc(oggcheck_crc(0, data, (size_t)cut), data + cut, (size_t)(100 - cut)), all);
}

TEST(crc_matches_libogg)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 7, .audio_pages = 5, .big_every = 2});
    for (int i = 0; i < ps.n; i++) {
        struct tbuf *b = &ps.pg[i];
        uint32_t stored = (uint32_t)b->p[22] | (uint32_t)b->p[23] << 8 | (uint32_t)b->p[24] << 16 |
                          (uint32_t)b->p[25] << 24;
        unsigned char save[4];
        memcpy(save, b->p + 22, 4);
        memset(b->p + 22, 0, 4);
        ASSERT_EQ_UINT(oggcheck_crc(0, b->p, b->len), stored);
        memcpy(b->p + 22, save, 4);
    }
    pages_free(&ps);
}

/* ---- oggcheck: valid streams ---------------------------------------------------------------- */

TEST(valid_stream_any_split)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 0x1234abcd, .audio_pages = 12, .big_every = 3});
    ASSERT_EQ_INT(ps.n, 14);
    struct tbuf s = {0};
    concat_all(&s, &ps);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.pages, 14);
    ASSERT_EQ_UINT(k.audio_pages, 12);
    ASSERT_EQ_UINT(k.first_audio, 1);
    ASSERT_EQ_UINT(k.crc, 0);
    ASSERT_EQ_UINT(k.gaps, 0);
    ASSERT_EQ_UINT(k.serials, 0);
    ASSERT_EQ_UINT(k.syncs, 0);
    ASSERT_EQ_UINT(k.garbage, 0);
    ASSERT_EQ_UINT(k.last_seq, 13);
    /* audio bytes: whole audio pages, headers included; header pages excluded */
    ASSERT_EQ_UINT(k.audio_bytes, bytes_of(&ps, 2, 14));
    free(s.p);
    pages_free(&ps);
}

/* issue 12: the granule of the last good audio page (rostrum-load --programme reads it) */
TEST(granule_of_the_last_audio_page)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 21, .audio_pages = 6});
    struct tbuf s = {0};
    int idx[] = {0, 1, 2, 3};
    pick(&s, &ps, idx, 4);
    struct oggcheck c;
    oggcheck_init(&c);
    oggcheck_feed(&c, s.p, s.len);
    ASSERT_EQ_UINT(c.granule, 312 + 2 * 9600);
    /* a corrupt page does not move it */
    struct tbuf bad = {0};
    tbuf_put(&bad, ps.pg[4].p, ps.pg[4].len);
    bad.p[bad.len - 1] ^= 0x55;
    oggcheck_feed(&c, bad.p, bad.len);
    ASSERT_EQ_UINT(c.granule, 312 + 2 * 9600);
    oggcheck_feed(&c, ps.pg[5].p, ps.pg[5].len);
    ASSERT_EQ_UINT(c.granule, 312 + 4 * 9600);
    free(bad.p);
    free(s.p);
    pages_free(&ps);
}

TEST(late_joiner_jump_is_not_a_gap)
{
    /* what a server sends a late joiner: header pages 0 and 1, then the live edge (page 9...) */
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 99, .audio_pages = 14});
    int idx[] = {0, 1, 9, 10, 11, 12, 13, 14, 15};
    struct tbuf s = {0};
    pick(&s, &ps, idx, 9);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.pages, 9);
    ASSERT_EQ_UINT(k.audio_pages, 7);
    ASSERT_EQ_UINT(k.gaps, 0);
    ASSERT_EQ_UINT(k.crc, 0);
    ASSERT_EQ_UINT(k.last_seq, 15);
    ASSERT_EQ_UINT(k.audio_bytes, bytes_of(&ps, 9, 16));
    free(s.p);
    pages_free(&ps);
}

TEST(long_tags_spanning_pages_are_headers)
{
    /* an OpusTags packet of 100 000 bytes takes two pages; the second continues it */
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 5, .audio_pages = 4, .tags_len = 100000});
    ASSERT_EQ_INT(ps.n, 7);
    ASSERT(ps.pg[2].p[5] & 1); /* page 2 is a continuation */
    int idx[] = {0, 1, 2, 5, 6};
    struct tbuf s = {0};
    pick(&s, &ps, idx, 5);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.pages, 5);
    ASSERT_EQ_UINT(k.audio_pages, 2);
    ASSERT_EQ_UINT(k.gaps, 0);
    ASSERT_EQ_UINT(k.audio_bytes, bytes_of(&ps, 5, 7));
    free(s.p);
    pages_free(&ps);
}

TEST(no_headers_first_page_is_audio)
{
    /* a stream joined at an audio page (no header pages): audio at once, no gap */
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 3, .audio_pages = 6});
    int idx[] = {4, 5, 6, 7};
    struct tbuf s = {0};
    pick(&s, &ps, idx, 4);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.first_audio, 1);
    ASSERT_EQ_UINT(k.audio_pages, 4);
    ASSERT_EQ_UINT(k.gaps, 0);
    free(s.p);
    pages_free(&ps);
}

TEST(empty_page_is_fine)
{
    /* a page with no lacing values and no body (legal Ogg) between two audio pages */
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 3, .audio_pages = 3});
    unsigned char hdr[27] = "OggS";
    memcpy(hdr, ps.pg[3].p, 27);
    hdr[5] = 0;
    hdr[26] = 0;
    /* it takes sequence number 3; renumber page 4 as 4 (already) and fix CRCs */
    hdr[18] = 3, hdr[19] = hdr[20] = hdr[21] = 0;
    ogg_page og = {.header = hdr, .header_len = 27, .body = NULL, .body_len = 0};
    ogg_page_checksum_set(&og);
    struct tbuf s = {0};
    int first[] = {0, 1, 2};
    pick(&s, &ps, first, 3);
    tbuf_put(&s, hdr, 27);
    int rest[] = {4};
    pick(&s, &ps, rest, 1);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.pages, 5);
    ASSERT_EQ_UINT(k.crc, 0);
    ASSERT_EQ_UINT(k.gaps, 0);
    free(s.p);
    pages_free(&ps);
}

/* ---- oggcheck: damage ----------------------------------------------------------------------- */

TEST(flipped_byte_is_one_crc_error)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 11, .audio_pages = 8, .big_every = 4});
    struct tbuf s = {0};
    concat_all(&s, &ps);
    size_t p5 = bytes_of(&ps, 0, 5);
    /* each byte of page 5 past the fields that frame the page (capture, version, flags,
     * lacing count, lacing values: flipping those breaks the framing, tested below) */
    size_t hl = 27 + ps.pg[5].p[26];
    for (size_t off = 6; off < ps.pg[5].len; off++) {
        if (off == 26 || (off >= 27 && off < hl))
            continue;
        s.p[p5 + off] ^= 0x10;
        struct counts k = check_whole(&s);
        if (k.crc != 1 || k.gaps != 0 || k.syncs != 0)
            TEST_FAIL_("flip at page offset %zu: crc %u gaps %u syncs %u", off, k.crc, k.gaps,
                       k.syncs);
        ASSERT_EQ_UINT(k.pages, 10);
        s.p[p5 + off] ^= 0x10;
    }
    /* one flip in the body, all splits */
    s.p[p5 + hl + 3] ^= 0xff;
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.crc, 1);
    ASSERT_EQ_UINT(k.gaps, 0);
    ASSERT_EQ_UINT(k.audio_pages, 7); /* the corrupt page is not counted as a good audio page */
    free(s.p);
    pages_free(&ps);
}

TEST(corrupt_first_audio_page_still_allows_jump)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 11, .audio_pages = 10});
    int idx[] = {0, 1, 6, 7, 8, 9};
    struct tbuf s = {0};
    pick(&s, &ps, idx, 6);
    size_t off = bytes_of(&ps, 0, 2) + 27 + ps.pg[6].p[26] + 5;
    s.p[off] ^= 1;
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.crc, 1);
    /* page 6 took one number (2, the expected one); page 7 is the first good audio page and
     * may jump */
    ASSERT_EQ_UINT(k.gaps, 0);
    ASSERT_EQ_UINT(k.audio_pages, 3);
    free(s.p);
    pages_free(&ps);
}

TEST(dropped_page_is_a_gap)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 12, .audio_pages = 10});
    int idx[] = {0, 1, 2, 3, 4, 6, 7, 9, 10, 11};
    struct tbuf s = {0};
    pick(&s, &ps, idx, 10);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.gaps, 2);
    ASSERT_EQ_UINT(k.crc, 0);
    ASSERT_EQ_UINT(k.syncs, 0);
    free(s.p);
    pages_free(&ps);
}

TEST(later_jump_repeat_and_header_gap_are_gaps)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 12, .audio_pages = 10});
    /* the jump to the live edge is allowed once; the second jump (5 -> 9) is a gap */
    int a[] = {0, 1, 4, 5, 9, 10};
    struct tbuf s = {0};
    pick(&s, &ps, a, 6);
    ASSERT_EQ_UINT(check_all_splits(&s).gaps, 1);
    free(s.p);
    /* a repeated page (sequence going back) is one gap: the page after it follows it */
    int b[] = {0, 1, 2, 3, 3, 4};
    s = (struct tbuf){0};
    pick(&s, &ps, b, 6);
    ASSERT_EQ_UINT(check_all_splits(&s).gaps, 1);
    free(s.p);
    /* a repeated header page is a gap too: only the first audio page may jump */
    int c[] = {0, 0, 2, 3};
    s = (struct tbuf){0};
    pick(&s, &ps, c, 4);
    ASSERT_EQ_UINT(check_all_splits(&s).gaps, 1);
    free(s.p);
    pages_free(&ps);
}

TEST(garbage_between_pages_resyncs)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 13, .audio_pages = 6});
    struct tbuf s = {0};
    int a[] = {0, 1, 2, 3};
    pick(&s, &ps, a, 4);
    /* garbage with near-misses of the capture pattern and a bogus "OggS" of version 1 */
    static const char junk[] = "xxOgOggOggXOggS\x01zzzzOOgg";
    tbuf_put(&s, junk, sizeof(junk) - 1);
    int b[] = {4, 5, 6, 7};
    pick(&s, &ps, b, 4);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.pages, 8);
    ASSERT_EQ_UINT(k.crc, 0);
    ASSERT_EQ_UINT(k.gaps, 0);
    /* one hunt: started at the first junk byte; the bogus version is a second loss */
    ASSERT_EQ_UINT(k.syncs, 2);
    ASSERT_EQ_UINT(k.garbage, sizeof(junk) - 1);
    ASSERT_EQ_UINT(k.audio_bytes, bytes_of(&ps, 2, 8));
    free(s.p);
    pages_free(&ps);
}

TEST(start_mid_page_resyncs)
{
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 14, .audio_pages = 6});
    struct tbuf s = {0};
    tbuf_put(&s, ps.pg[3].p + 100, ps.pg[3].len - 100);
    int a[] = {4, 5, 6, 7};
    pick(&s, &ps, a, 4);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.syncs, 1);
    ASSERT_EQ_UINT(k.garbage, ps.pg[3].len - 100);
    ASSERT_EQ_UINT(k.pages, 4);
    ASSERT_EQ_UINT(k.gaps, 0);
    ASSERT_EQ_UINT(k.first_audio, 1);
    free(s.p);
    pages_free(&ps);
}

TEST(truncated_page_is_crc_error_sync_loss_and_gap)
{
    /* page 4 cut in half, then pages 5, 6, 7: the checker reads page 4's length and takes half
     * of page 5 as its body (CRC error), hunts for "OggS" in the rest of page 5 (sync loss),
     * and finds page 6: page 5 was lost (gap). */
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 15, .audio_pages = 8});
    struct tbuf s = {0};
    int a[] = {0, 1, 2, 3};
    pick(&s, &ps, a, 4);
    size_t half = ps.pg[4].len / 2;
    tbuf_put(&s, ps.pg[4].p, half);
    int b[] = {5, 6, 7};
    pick(&s, &ps, b, 3);
    ASSERT(ps.pg[5].len > ps.pg[4].len - half + 27); /* page 4's body ends inside page 5 */
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.crc, 1);
    ASSERT_EQ_UINT(k.syncs, 1);
    ASSERT_EQ_UINT(k.gaps, 1);
    ASSERT_EQ_UINT(k.last_seq, 7);
    free(s.p);
    pages_free(&ps);
}

TEST(foreign_serial_and_chained_stream)
{
    struct pages a = {.n = 0}, b = {.n = 0};
    gen_pages(&a, &(struct gen){.serial = 100, .audio_pages = 6});
    gen_pages(&b, &(struct gen){.serial = 200, .audio_pages = 6});
    /* a page of another stream in the middle: counted, our sequence unaffected */
    struct tbuf s = {0};
    int x[] = {0, 1, 2, 3};
    pick(&s, &a, x, 4);
    tbuf_put(&s, b.pg[4].p, b.pg[4].len);
    int y[] = {4, 5};
    pick(&s, &a, y, 2);
    struct counts k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.serials, 1);
    ASSERT_EQ_UINT(k.gaps, 0);
    ASSERT_EQ_UINT(k.audio_pages, 4);
    free(s.p);
    /* a chained stream: a new BOS after audio restarts the headers; its live-edge jump is
     * allowed again */
    s = (struct tbuf){0};
    int p1[] = {0, 1, 2, 3, 4};
    pick(&s, &a, p1, 5);
    int p2[] = {0, 1, 5, 6, 7};
    pick(&s, &b, p2, 5);
    k = check_all_splits(&s);
    ASSERT_EQ_UINT(k.serials, 1);
    ASSERT_EQ_UINT(k.gaps, 0);
    ASSERT_EQ_UINT(k.audio_pages, 6);
    ASSERT_EQ_UINT(k.audio_bytes, bytes_of(&a, 2, 5) + bytes_of(&b, 5, 8));
    free(s.p);
    pages_free(&a);
    pages_free(&b);
}

TEST(random_bytes_do_no_harm)
{
    /* pure noise, and noise sprinkled with capture patterns: never crashes, never counts a
     * page that is not one */
    uint8_t *noise = malloc(1 << 20);
    ASSERT(noise);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < (1 << 20); i++)
            noise[i] = (uint8_t)rnd();
        if (round == 1)
            for (int i = 0; i < 2000; i++) {
                size_t at = rnd() % ((1 << 20) - 32);
                memcpy(noise + at, "OggS\0", 5);
                noise[at + 5] = (uint8_t)(rnd() & 7);
            }
        struct oggcheck c;
        oggcheck_init(&c);
        for (size_t i = 0; i < (1 << 20);) {
            size_t n = 1 + rnd() % 20000;
            if (n > (1u << 20) - i)
                n = (1u << 20) - i;
            oggcheck_feed(&c, noise + i, n);
            i += n;
        }
        ASSERT_EQ_UINT(c.audio_pages, 0);
        ASSERT(c.sync_losses >= 1);
        ASSERT(c.crc_errors == c.pages);
    }
    free(noise);
}

/* ---- hist ----------------------------------------------------------------------------------- */

TEST(hist_buckets_cover_values)
{
    for (uint64_t v = 0; v < 5000000; v += 1 + v / 50) {
        unsigned b = hist_bucket_of(v);
        ASSERT(b < HIST_BUCKETS);
        ASSERT(hist_bucket_low(b) <= v);
        if (b + 1 < HIST_BUCKETS)
            ASSERT(v < hist_bucket_low(b + 1));
    }
    ASSERT_EQ_UINT(hist_bucket_of(UINT32_MAX), HIST_BUCKETS - 1);
    ASSERT_EQ_UINT(hist_bucket_of(UINT64_MAX), HIST_BUCKETS - 1);
    for (unsigned b = 1; b < HIST_BUCKETS; b++)
        ASSERT(hist_bucket_low(b) > hist_bucket_low(b - 1));
}

TEST(hist_percentiles_exact_when_small)
{
    struct hist h;
    hist_init(&h);
    ASSERT_EQ_UINT(hist_percentile(&h, 50), 0);
    for (int v = 60; v >= 1; v--) /* order does not matter */
        hist_add(&h, (uint64_t)v);
    ASSERT_EQ_UINT(h.count, 60);
    ASSERT_EQ_UINT(h.min, 1);
    ASSERT_EQ_UINT(h.max, 60);
    ASSERT_EQ_UINT(hist_percentile(&h, 50), 30);
    ASSERT_EQ_UINT(hist_percentile(&h, 99), 60); /* rank ceil(59.4) = 60 */
    ASSERT_EQ_UINT(hist_percentile(&h, 100), 60);
    ASSERT_EQ_UINT(hist_percentile(&h, 1), 1);
    struct hist one;
    hist_init(&one);
    hist_add(&one, 123456);
    ASSERT_EQ_UINT(hist_percentile(&one, 50), 123456);
    ASSERT_EQ_UINT(hist_percentile(&one, 99), 123456);
}

TEST(hist_percentiles_within_bucket_error)
{
    /* 300 values like a run's TTFBs in us: p99 of 300 is the 297th */
    struct hist h;
    hist_init(&h);
    for (int i = 1; i <= 300; i++)
        hist_add(&h, (uint64_t)i * 1000);
    uint64_t p50 = hist_percentile(&h, 50), p99 = hist_percentile(&h, 99);
    ASSERT(p50 >= 150000 * 97 / 100 && p50 <= 150000 * 103 / 100);
    ASSERT(p99 >= 297000 * 97 / 100 && p99 <= 297000 * 103 / 100);
    ASSERT_EQ_UINT(hist_percentile(&h, 100), 300000);
    /* a long tail: p50 stays low, max exact */
    struct hist t;
    hist_init(&t);
    for (int i = 0; i < 990; i++)
        hist_add(&t, 2000);
    for (int i = 0; i < 10; i++)
        hist_add(&t, 9000000 + (uint64_t)i);
    ASSERT(hist_percentile(&t, 50) >= 1940 && hist_percentile(&t, 50) <= 2060);
    ASSERT(hist_percentile(&t, 99) >= 1940 && hist_percentile(&t, 99) <= 2060);
    ASSERT(hist_percentile(&t, 99.9) >= 9000000 * 0.97);
    ASSERT_EQ_UINT(t.max, 9000009);
}

TEST(hist_merge_equals_one_histogram)
{
    struct hist a, b, all;
    hist_init(&a);
    hist_init(&b);
    hist_init(&all);
    struct hist empty;
    hist_init(&empty);
    for (int i = 0; i < 5000; i++) {
        uint64_t v = rnd() % 10000000;
        hist_add(i % 3 ? &a : &b, v);
        hist_add(&all, v);
    }
    hist_merge(&a, &b);
    hist_merge(&a, &empty);
    ASSERT_EQ_UINT(a.count, all.count);
    ASSERT_EQ_UINT(a.sum, all.sum);
    ASSERT_EQ_UINT(a.min, all.min);
    ASSERT_EQ_UINT(a.max, all.max);
    ASSERT_EQ_MEM(a.bucket, all.bucket, sizeof(a.bucket));
    ASSERT_EQ_UINT(hist_percentile(&a, 50), hist_percentile(&all, 50));
    hist_merge(&empty, &all);
    ASSERT_EQ_UINT(empty.min, all.min);
}

/* ---- url and metrics ------------------------------------------------------------------------ */

TEST(url_loopback_only)
{
    struct load_url u;
    char err[256];
    ASSERT_EQ_INT(load_url_parse("http://127.0.0.1:8000/live", &u, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(u.port, 8000);
    ASSERT_EQ_STR(u.path, "/live");
    ASSERT_EQ_STR(u.host, "127.0.0.1");
    ASSERT_EQ_INT(u.family, AF_INET);
    ASSERT_EQ_INT(load_url_parse("http://127.9.8.7", &u, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(u.port, 80);
    ASSERT_EQ_STR(u.path, "/");
    ASSERT_EQ_INT(load_url_parse("http://localhost:1/a", &u, err, sizeof(err)), 0);
    ASSERT_EQ_STR(u.host, "127.0.0.1");
    ASSERT_EQ_INT(load_url_parse("http://[::1]:9/x", &u, err, sizeof(err)), 0);
    ASSERT_EQ_INT(u.family, AF_INET6);
    ASSERT_EQ_STR(u.host, "[::1]");
    ASSERT_EQ_INT(u.tls, 0);
    ASSERT_EQ_INT(load_url_parse("https://127.0.0.1/x", &u, err, sizeof(err)), 0);
    ASSERT_EQ_INT(u.tls, 1);
    ASSERT_EQ_UINT(u.port, 443);
    ASSERT_EQ_STR(u.tls_name, "127.0.0.1");
    ASSERT_EQ_INT(load_url_parse("https://localhost:8443/live", &u, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(u.port, 8443);
    ASSERT_EQ_STR(u.host, "127.0.0.1");
    ASSERT_EQ_STR(u.tls_name, "localhost");
    ASSERT_EQ_INT(load_url_parse("https://[::1]:9/x", &u, err, sizeof(err)), 0);
    ASSERT_EQ_STR(u.tls_name, "::1");

    static const char *const bad[] = {"http://10.0.0.1:8000/live",
                                      "http://8.8.8.8/",
                                      "http://example.com/live",
                                      "http://[::2]/x",
                                      "https://10.0.0.1/x",
                                      "ftp://127.0.0.1/x",
                                      "127.0.0.1:8000/live",
                                      "http://127.0.0.1:0/x",
                                      "http://127.0.0.1:70000/x",
                                      "http://127.0.0.1:80x/",
                                      "http://127.0.0.1/a b",
                                      "http://[::1/x",
                                      "http:///x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (load_url_parse(bad[i], &u, err, sizeof(err)) != -1)
            TEST_FAIL_("accepted %s", bad[i]);
        ASSERT(err[0] != '\0');
    }
    ASSERT_EQ_INT(load_url_parse("http://192.168.1.1/live", &u, err, sizeof(err)), -1);
    ASSERT(strstr(err, "loopback") != NULL);
}

TEST(ip_ranges)
{
    uint32_t first, count;
    char err[128];
    ASSERT_EQ_INT(load_ip_range_parse("127.0.0.2-127.0.0.250", &first, &count, err, sizeof(err)),
                  0);
    ASSERT_EQ_UINT(first, 0x7f000002);
    ASSERT_EQ_UINT(count, 249);
    ASSERT_EQ_INT(load_ip_range_parse("127.1.0.0-127.1.1.255", &first, &count, err, sizeof(err)),
                  0);
    ASSERT_EQ_UINT(count, 512);
    ASSERT_EQ_INT(load_ip_range_parse("127.0.0.9", &first, &count, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(count, 1);
    ASSERT_EQ_INT(load_ip_range_parse("127.0.0.9-127.0.0.2", &first, &count, err, sizeof(err)), -1);
    ASSERT_EQ_INT(load_ip_range_parse("10.0.0.1-10.0.0.5", &first, &count, err, sizeof(err)), -1);
    ASSERT_EQ_INT(load_ip_range_parse("127.0.0.1-", &first, &count, err, sizeof(err)), -1);
    ASSERT_EQ_INT(load_ip_range_parse("nonsense", &first, &count, err, sizeof(err)), -1);
}

TEST(metric_value)
{
    static const char text[] = "# HELP rostrum_listeners Listeners.\n"
                               "# TYPE rostrum_listeners gauge\n"
                               "rostrum_listeners_total 99\n"
                               "rostrum_listener_connections 7\n"
                               "rostrum_listeners 300\n"
                               "rostrum_space_listeners{space=\"live\"} 300\n";
    double v = -1;
    ASSERT_EQ_INT(load_metric_value(text, sizeof(text) - 1, "rostrum_listeners", &v), 0);
    ASSERT(v == 300);
    ASSERT_EQ_INT(load_metric_value(text, sizeof(text) - 1, "rostrum_listener_connections", &v), 0);
    ASSERT(v == 7);
    ASSERT_EQ_INT(load_metric_value(text, sizeof(text) - 1, "rostrum_missing", &v), -1);
    static const char nonum[] = "rostrum_listeners abc\n";
    ASSERT_EQ_INT(load_metric_value(nonum, sizeof(nonum) - 1, "rostrum_listeners", &v), -1);
    static const char last[] = "rostrum_listeners 5"; /* no final newline */
    ASSERT_EQ_INT(load_metric_value(last, sizeof(last) - 1, "rostrum_listeners", &v), 0);
    ASSERT(v == 5);
}

/* ---- the whole tool against a fake server -------------------------------------------------- */

/* A one-process stand-in for a stream server, on 127.0.0.1:<*port>. Each listener gets the two
 * header pages, then the live page and one more every 200 ms. The k-th stream request (in
 * accept order) is served by k % 4: 0 clean, 1 one page skipped (a gap), 2 one page with a
 * flipped byte (a CRC error), 3 a 503. GET /metrics answers "rostrum_listeners 6". Runs until
 * killed. Returns its pid. */
static pid_t fake_server(uint16_t *port)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    ASSERT(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
    ASSERT(listen(lfd, 64) == 0);
    socklen_t al = sizeof(a);
    ASSERT(getsockname(lfd, (struct sockaddr *)&a, &al) == 0);
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid > 0) {
        close(lfd);
        return pid;
    }
    struct pages ps = {.n = 0};
    gen_pages(&ps, &(struct gen){.serial = 42, .audio_pages = 200});
    struct client {
        int fd, kind, next, sent;
    } cl[64];
    int ncl = 0, nstream = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct pollfd pf = {.fd = lfd, .events = POLLIN};
        poll(&pf, 1, 20);
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        int now_live = 2 + (int)(ms / 200);
        if (now_live >= ps.n)
            _exit(0);
        if (pf.revents & POLLIN) {
            int fd = accept(lfd, NULL, NULL);
            char req[1024];
            size_t got = 0;
            while (fd >= 0 && got < sizeof(req) - 1) {
                ssize_t n = recv(fd, req + got, sizeof(req) - 1 - got, 0);
                if (n <= 0)
                    break;
                got += (size_t)n;
                req[got] = 0;
                if (strstr(req, "\r\n\r\n"))
                    break;
            }
            req[got] = 0;
            if (fd < 0) {
            } else if (strncmp(req, "GET /metrics ", 13) == 0) {
                const char *r = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                                "rostrum_listeners 6\n";
                send(fd, r, strlen(r), MSG_NOSIGNAL);
                close(fd);
            } else if (strncmp(req, "GET /live HTTP/1.0\r\n", 20) != 0 ||
                       !strstr(req, "\r\nUser-Agent: rostrum-load\r\n") ||
                       !strstr(req, "\r\nHost: 127.0.0.1:") || ncl == 64) {
                const char *r = "HTTP/1.0 400 Bad Request\r\n\r\n";
                send(fd, r, strlen(r), MSG_NOSIGNAL);
                close(fd);
            } else if (nstream++ % 4 == 3) {
                const char *r = "HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n";
                send(fd, r, strlen(r), MSG_NOSIGNAL);
                close(fd);
            } else {
                const char *r = "HTTP/1.0 200 OK\r\nContent-Type: audio/ogg\r\n\r\n";
                send(fd, r, strlen(r), MSG_NOSIGNAL);
                send(fd, ps.pg[0].p, ps.pg[0].len, MSG_NOSIGNAL);
                send(fd, ps.pg[1].p, ps.pg[1].len, MSG_NOSIGNAL);
                cl[ncl++] = (struct client){fd, (nstream - 1) % 4, now_live, 0};
            }
        }
        for (int i = 0; i < ncl; i++) {
            struct client *c = &cl[i];
            while (c->fd >= 0 && c->next <= now_live) {
                struct tbuf *pg = &ps.pg[c->next++];
                if (c->kind == 1 && c->sent == 3) {
                    c->sent++;
                    continue; /* dropped: a gap */
                }
                unsigned char copy[70000];
                memcpy(copy, pg->p, pg->len);
                if (c->kind == 2 && c->sent == 3)
                    copy[pg->len - 1] ^= 0x40; /* a CRC error */
                c->sent++;
                if (send(c->fd, copy, pg->len, MSG_NOSIGNAL) != (ssize_t)pg->len) {
                    close(c->fd);
                    c->fd = -1;
                }
            }
        }
    }
}

/* Runs the tool with <args> (NULL-terminated), its stdout and stderr into <out> (<cap> bytes).
 * Returns its exit status. */
static int run_tool(const char *const *args, char *out, size_t cap)
{
    char path[] = "/tmp/test_load_XXXXXX";
    int tmp = mkstemp(path);
    ASSERT(tmp >= 0);
    unlink(path);
    fflush(stdout);
    fflush(stderr);
    int saved = dup(1), saved_err = dup(2);
    dup2(tmp, 1);
    dup2(tmp, 2);
    int argc = 0;
    while (args[argc])
        argc++;
    int rc = load_listen_main(argc, (char **)args);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, 1);
    dup2(saved_err, 2);
    close(saved);
    close(saved_err);
    ssize_t n = pread(tmp, out, cap - 1, 0);
    close(tmp);
    out[n > 0 ? n : 0] = 0;
    return rc;
}

/* The number after "<key>": in the JSON <j>, or -1. */
static long long json_num(const char *j, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(j, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

TEST(tool_against_fake_server)
{
    uint16_t port;
    pid_t srv = fake_server(&port);
    char url[64], out[8192];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/live", port);
    const char *args[] = {"listen", "--url",  url,         "--listeners", "8",
                          "--rate", "40",     "--seconds", "5",           "--procs",
                          "2",      "--kbps", "24",        "--json",      NULL};
    int rc = run_tool(args, out, sizeof(out));
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    if (rc != 0 || json_num(out, "connected") != 6 || json_num(out, "held_bitrate") != 6)
        fprintf(stderr, "    %s", out); /* the whole picture, before the first assert fails */
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(json_num(out, "attempted"), 8);
    ASSERT_EQ_INT(json_num(out, "connected"), 6);
    ASSERT_EQ_INT(json_num(out, "503"), 2);
    ASSERT_EQ_INT(json_num(out, "crc_errors"), 2);
    ASSERT_EQ_INT(json_num(out, "seq_gaps"), 2);
    ASSERT_EQ_INT(json_num(out, "stalls"), 0);
    ASSERT_EQ_INT(json_num(out, "sync_losses"), 0);
    ASSERT_EQ_INT(json_num(out, "held_bitrate"), 6);
    ASSERT_EQ_INT(json_num(out, "open_at_end"), 6);
    ASSERT_EQ_INT(json_num(out, "server_listeners"), 6);
    ASSERT_EQ_INT(json_num(out, "tool_listeners"), 6);
    ASSERT_EQ_INT(json_num(out, "timeout"), 0);
    ASSERT(strstr(out, "\"ttfb_ms\":{\"p50\":"));
}

TEST(tool_refuses_bad_arguments)
{
    char out[1024];
    const char *remote[] = {"listen",      "--url",     "http://192.0.2.1:8000/live",
                            "--listeners", "1",         "--rate",
                            "1",           "--seconds", "1",
                            NULL};
    ASSERT_EQ_INT(run_tool(remote, out, sizeof(out)), 2);
    ASSERT(strstr(out, "loopback") != NULL);
    const char *missing[] = {"listen", "--url", "http://127.0.0.1:8000/live", NULL};
    ASSERT_EQ_INT(run_tool(missing, out, sizeof(out)), 2);
    const char *too_many[] = {"listen",      "--url",     "http://127.0.0.1:8000/live",
                              "--listeners", "60000",     "--rate",
                              "1",           "--seconds", "1",
                              "--procs",     "2",         NULL};
    ASSERT_EQ_INT(run_tool(too_many, out, sizeof(out)), 2);
    const char *bad_src[] = {"listen",      "--url",     "http://127.0.0.1:8000/live",
                             "--listeners", "1",         "--rate",
                             "1",           "--seconds", "1",
                             "--src-ips",   "10.0.0.1",  NULL};
    ASSERT_EQ_INT(run_tool(bad_src, out, sizeof(out)), 2);
    ASSERT(strstr(out, "not in 127.0.0.0/8") != NULL);
    ASSERT(strstr(out, "{") == NULL); /* no report on bad arguments */
}

TEST(tool_counts_connect_refused)
{
    /* a port nobody listens on: every join is refused at connect, the run still completes */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd); /* bound, never listened: the port is free again and closed */
    char url[64], out[8192];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/live", ntohs(a.sin_port));
    const char *args[] = {"listen", "--url",  url,         "--listeners", "5",
                          "--rate", "50",     "--seconds", "1",           "--metrics-url",
                          "none",   "--json", NULL};
    ASSERT_EQ_INT(run_tool(args, out, sizeof(out)), 0);
    ASSERT_EQ_INT(json_num(out, "attempted"), 5);
    ASSERT_EQ_INT(json_num(out, "connected"), 0);
    ASSERT_EQ_INT(json_num(out, "connect_refused"), 5);
    ASSERT(strstr(out, "server_listeners") == NULL);
}

/* ---- the shared option parser (load/opts) ------------------------------------------------- */

struct popts {
    uint32_t n;
    double rate;
    const char *name;
    int flag, on;
    int seen_n;
};

/* Parses <args> (NULL-terminated, args[0] the command) into <p> (defaults: n 7, on 1); stderr
 * into <err>. Returns opts_parse's result. */
static int parse_with(const char *const *args, struct popts *p, char *err, size_t cap)
{
    *p = (struct popts){.n = 7, .on = 1};
    const struct opt tab[] = {
        {"count", OPT_U32, &p->n, 1, 1000, 0, &p->seen_n, NULL},
        {"rate", OPT_RATE, &p->rate, 0, 100, 0, NULL, "things per second"},
        {"name", OPT_STR, &p->name, 0, 8, 0, NULL, "a name"},
        {"json", OPT_FLAG, &p->flag, 0, 0, 1, NULL, NULL},
        {"no-reopen", OPT_FLAG, &p->on, 0, 0, 0, NULL, NULL},
    };
    char path[] = "/tmp/test_opts_XXXXXX";
    int tmp = mkstemp(path);
    ASSERT(tmp >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(tmp, 2);
    int argc = 0;
    while (args[argc])
        argc++;
    int rc = opts_parse("test", argc, (char **)args, 1, tab, sizeof(tab) / sizeof(tab[0]));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(tmp, err, cap - 1, 0);
    close(tmp);
    err[n > 0 ? n : 0] = 0;
    return rc;
}

TEST(opts_parses_values_flags_and_defaults)
{
    struct popts p;
    char err[512];
    const char *a[] = {"test", "--count", "12",          "--rate=2.5", "--name",
                       "ana",  "--json",  "--no-reopen", NULL};
    ASSERT_EQ_INT(parse_with(a, &p, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(p.n, 12);
    ASSERT(p.rate == 2.5);
    ASSERT_EQ_STR(p.name, "ana");
    ASSERT_EQ_INT(p.flag, 1);
    ASSERT_EQ_INT(p.on, 0);
    ASSERT_EQ_INT(p.seen_n, 1);
    ASSERT_EQ_STR(err, "");
    const char *none[] = {"test", NULL};
    ASSERT_EQ_INT(parse_with(none, &p, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(p.n, 7); /* the default stays */
    ASSERT_EQ_INT(p.seen_n, 0);
    const char *help[] = {"test", "--count", "x", "-h", NULL};
    ASSERT_EQ_INT(parse_with(help, &p, err, sizeof(err)), 3); /* --help wins */
}

TEST(opts_refuses_unknown_options)
{
    struct popts p;
    char err[512];
    const char *a[] = {"test", "--count", "3", "--bogus", "1", NULL};
    ASSERT_EQ_INT(parse_with(a, &p, err, sizeof(err)), 2);
    ASSERT(strstr(err, "rostrum-load test: unknown option \"--bogus\"") != NULL);
    ASSERT(strstr(err, "--help") != NULL);
    const char *abbrev[] = {"test", "--cou", "3", NULL}; /* no abbreviations */
    ASSERT_EQ_INT(parse_with(abbrev, &p, err, sizeof(err)), 2);
    const char *eq[] = {"test", "--bogus=3", NULL};
    ASSERT_EQ_INT(parse_with(eq, &p, err, sizeof(err)), 2);
    ASSERT(strstr(err, "unknown option \"--bogus\"") != NULL);
    const char *stray[] = {"test", "3", NULL};
    ASSERT_EQ_INT(parse_with(stray, &p, err, sizeof(err)), 2);
    ASSERT(strstr(err, "unexpected argument \"3\"") != NULL);
    const char *missing[] = {"test", "--count", NULL};
    ASSERT_EQ_INT(parse_with(missing, &p, err, sizeof(err)), 2);
    ASSERT(strstr(err, "--count needs a value") != NULL);
    const char *flagval[] = {"test", "--json=1", NULL};
    ASSERT_EQ_INT(parse_with(flagval, &p, err, sizeof(err)), 2);
}

TEST(opts_refuses_bad_numbers)
{
    struct popts p;
    char err[512];
    const char *bad[][4] = {{"test", "--count", "12x", NULL}, {"test", "--count", "", NULL},
                            {"test", "--count", "-1", NULL},  {"test", "--count", "+5", NULL},
                            {"test", "--count", "1.5", NULL}, {"test", "--rate", "fast", NULL},
                            {"test", "--rate", "nan", NULL},  {"test", "--rate", "", NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_EQ_INT(parse_with(bad[i], &p, err, sizeof(err)), 2);
        ASSERT(strstr(err, "expected") != NULL);
        ASSERT_EQ_UINT(p.n, 7); /* untouched */
    }
    ASSERT(strstr(err, "--rate: expected things per second in (0, 100]") != NULL);
}

TEST(opts_checks_ranges)
{
    struct popts p;
    char err[512];
    const char *lo[] = {"test", "--count", "0", NULL};
    ASSERT_EQ_INT(parse_with(lo, &p, err, sizeof(err)), 2);
    ASSERT(strstr(err, "--count: expected a whole number from 1 to 1000, got \"0\"") != NULL);
    const char *hi[] = {"test", "--count", "1001", NULL};
    ASSERT_EQ_INT(parse_with(hi, &p, err, sizeof(err)), 2);
    const char *huge[] = {"test", "--count", "99999999999999999999999", NULL};
    ASSERT_EQ_INT(parse_with(huge, &p, err, sizeof(err)), 2);
    const char *edge[] = {"test", "--count", "1000", "--rate", "100", NULL};
    ASSERT_EQ_INT(parse_with(edge, &p, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(p.n, 1000);
    const char *rate0[] = {"test", "--rate", "0", NULL};
    ASSERT_EQ_INT(parse_with(rate0, &p, err, sizeof(err)), 2);
    const char *rate_hi[] = {"test", "--rate", "100.5", NULL};
    ASSERT_EQ_INT(parse_with(rate_hi, &p, err, sizeof(err)), 2);
    const char *name_long[] = {"test", "--name", "ninechars", NULL};
    ASSERT_EQ_INT(parse_with(name_long, &p, err, sizeof(err)), 2);
    ASSERT(strstr(err, "--name: expected a name of 1 to 8 characters") != NULL);
    uint32_t procs = 0;
    opts_procs(&procs, 40000, 15000);
    ASSERT_EQ_UINT(procs, 3);
    procs = 9;
    opts_procs(&procs, 4, 15000);
    ASSERT_EQ_UINT(procs, 4); /* never more processes than units */
}

int main(void)
{
    return RUN_TESTS();
}
