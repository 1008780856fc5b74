/* Unit tests for the WebSocket glue's bounds (issue 8): pongs coalesced, the inbound rate,
 * the send queue cap, and the frame scanner split at every byte. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "ws/ws.h"

struct pipe {
    uint8_t in[65536];
    size_t in_len, in_off, cut; /* recv gives bytes up to <cut>, then EAGAIN */
    uint8_t out[65536];
    size_t out_len;
    int writable;
    int ntext, nbinary;
    uint8_t last[256];
    size_t last_len;
};

static long p_recv(void *arg, uint8_t *buf, size_t len)
{
    struct pipe *p = arg;
    size_t end = p->cut < p->in_len ? p->cut : p->in_len;
    if (p->in_off >= end) {
        errno = EAGAIN;
        return -1;
    }
    size_t n = end - p->in_off < len ? end - p->in_off : len;
    memcpy(buf, p->in + p->in_off, n);
    p->in_off += n;
    return (long)n;
}

static long p_send(void *arg, const uint8_t *buf, size_t len)
{
    struct pipe *p = arg;
    if (!p->writable) {
        errno = EAGAIN;
        return -1;
    }
    if (len > sizeof(p->out) - p->out_len)
        len = sizeof(p->out) - p->out_len;
    memcpy(p->out + p->out_len, buf, len);
    p->out_len += len;
    return (long)len;
}

static struct pipe *cur;

static void on_text(void *arg, const uint8_t *msg, size_t len)
{
    (void)arg;
    cur->ntext++;
    cur->last_len = len;
    memcpy(cur->last, msg, len < sizeof(cur->last) ? len : sizeof(cur->last));
}

static void on_binary(void *arg, const uint8_t *msg, size_t len)
{
    (void)arg;
    (void)msg;
    (void)len;
    cur->nbinary++;
}

static const struct ws_handler handler = {on_text, on_binary};

/* Appends a masked client frame. */
static void frame(struct pipe *p, int fin, int opcode, const void *payload, size_t n)
{
    static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t *o = p->in + p->in_len;
    size_t h = 0;
    o[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (n < 126) {
        o[h++] = (uint8_t)(0x80 | n);
    } else {
        o[h++] = 0x80 | 126;
        o[h++] = (uint8_t)(n >> 8);
        o[h++] = (uint8_t)n;
    }
    memcpy(o + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        o[h + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    p->in_len += h + n;
}

static struct ws *open_ws(struct pipe *p)
{
    memset(p, 0, sizeof(*p));
    p->cut = (size_t)-1;
    cur = p;
    struct ws_io io = {p_recv, p_send, p, NULL, NULL};
    return ws_new(-1, &io, &handler, NULL);
}

TEST(ws_ping_flood_one_pong_outstanding)
{
    static struct pipe p;
    struct ws *w = open_ws(&p);
    char pl[8];
    for (int i = 0; i < 500; i++) {
        int n = snprintf(pl, sizeof(pl), "p%03d", i);
        frame(&p, 1, 0x9, pl, (size_t)n);
    }
    ASSERT_EQ_INT(ws_read(w), 0);
    ASSERT_EQ_UINT(p.in_off, p.in_len);
    ASSERT_EQ_INT(ws_flush(w), 1);   /* the peer reads nothing */
    ASSERT_EQ_UINT(ws_queued(w), 4); /* one pong of 4 bytes, not 500 */
    p.writable = 1;
    ASSERT_EQ_INT(ws_flush(w), 0);
    /* the first ping's pong, then one for the latest ping: unmasked, 0x8A, length 4 */
    ASSERT_EQ_UINT(p.out_len, 12);
    ASSERT_EQ_MEM(p.out, "\x8a\x04p000", 6);
    ASSERT_EQ_MEM(p.out + 6, "\x8a\x04p499", 6);
    ws_free(w);
}

TEST(ws_over_rate_closes_1008)
{
    static struct pipe p;
    struct ws *w = open_ws(&p);
    for (int i = 0; i < (int)WS_BURST_FRAMES + 100; i++)
        frame(&p, 1, 0x2, "x", 1);
    p.writable = 1;
    ASSERT_EQ_INT(ws_read(w), -1);
    ASSERT(ws_over_rate(w));
    ASSERT(p.nbinary <= (int)WS_BURST_FRAMES);
    ws_flush(w);
    ASSERT(p.out_len >= 4);
    ASSERT_EQ_MEM(p.out, "\x88", 1);
    ASSERT_EQ_MEM(p.out + 2, "\x03\xf0", 2); /* 1008 */
    ws_free(w);
}

TEST(ws_speaker_rate_is_not_over)
{
    /* a second of a speaker: 50 Opus frames, a few control messages */
    static struct pipe p;
    struct ws *w = open_ws(&p);
    uint8_t opus[160] = {0};
    for (int i = 0; i < 50; i++)
        frame(&p, 1, 0x2, opus, sizeof(opus));
    frame(&p, 1, 0x1, "{\"type\":\"ping\"}", 15);
    frame(&p, 1, 0x9, "", 0);
    ASSERT_EQ_INT(ws_read(w), 0);
    ASSERT(!ws_over_rate(w));
    ASSERT_EQ_INT(p.nbinary, 50);
    ASSERT_EQ_INT(p.ntext, 1);
    ws_free(w);
}

TEST(ws_send_queue_is_capped)
{
    static struct pipe p;
    struct ws *w = open_ws(&p);
    char msg[1000];
    memset(msg, 'a', sizeof(msg));
    int n = 0, rc;
    while ((rc = ws_send_text(w, msg, sizeof(msg))) == 0)
        n++;
    ASSERT_EQ_INT(rc, -2);
    ASSERT(ws_queued(w) <= WS_QUEUE_MAX_BYTES);
    ASSERT(n <= WS_QUEUE_MAX_MSGS && n >= 60);
    /* audio stops at its own bound, well before */
    ASSERT_EQ_INT(ws_send_binary(w, msg, 100, 16384), -1);
    ws_free(w);
}

TEST(ws_scanner_split_at_every_byte)
{
    /* text, a fragmented binary message with a ping between its fragments, a 300-byte text
     * (16-bit length), two pings: cut the stream at every byte, the same messages come out */
    static struct pipe p;
    static uint8_t stream[4096];
    size_t len;
    char big[300];
    memset(big, 'b', sizeof(big));
    big[0] = '{';
    {
        struct ws *w = open_ws(&p);
        frame(&p, 1, 0x1, "{\"type\":\"request\"}", 18);
        frame(&p, 0, 0x2, "abc", 3);
        frame(&p, 1, 0x9, "hi", 2);
        frame(&p, 1, 0x0, "def", 3);
        frame(&p, 1, 0x1, big, sizeof(big));
        frame(&p, 1, 0x9, "a", 1);
        frame(&p, 1, 0x9, "b", 1);
        len = p.in_len;
        memcpy(stream, p.in, len);
        ws_free(w);
    }
    for (size_t cut = 0; cut <= len; cut++) {
        struct ws *w = open_ws(&p);
        memcpy(p.in, stream, len);
        p.in_len = len;
        p.cut = cut;
        ASSERT_EQ_INT(ws_read(w), 0);
        p.cut = len;
        ASSERT_EQ_INT(ws_read(w), 0);
        ASSERT_EQ_INT(p.ntext, 2);
        ASSERT_EQ_INT(p.nbinary, 1);
        ASSERT_EQ_UINT(p.last_len, sizeof(big));
        p.writable = 1;
        ASSERT_EQ_INT(ws_flush(w), 0);
        /* nothing was flushed while reading: the pong for "hi", then one for the latest */
        ASSERT_EQ_UINT(p.out_len, 4 + 3);
        ASSERT_EQ_MEM(p.out, "\x8a\x02hi", 4);
        ASSERT_EQ_MEM(p.out + 4, "\x8a\x01" "b", 3);
        ws_free(w);
    }
}

/* ---- the read budget over a transport that buffers (TLS, issue 10) ------------------------ */

/* A transport whose received bytes all sit in user space, as TLS plaintext inside OpenSSL:
 * buffered() is what epoll cannot see. */
struct held {
    uint8_t in[96 * 1024];
    size_t len, off;
    int say_buffered; /* buffered() answers this when set, whatever is held */
};

static long h_recv(void *arg, uint8_t *buf, size_t len)
{
    struct held *h = arg;
    if (h->off == h->len) {
        errno = EAGAIN;
        return -1;
    }
    size_t n = h->len - h->off < len ? h->len - h->off : len;
    memcpy(buf, h->in + h->off, n);
    h->off += n;
    return (long)n;
}

static long h_send(void *arg, const uint8_t *buf, size_t len)
{
    (void)arg;
    (void)buf;
    return (long)len;
}

static int h_buffered(void *arg)
{
    struct held *h = arg;
    return h->say_buffered ? 1 : h->off < h->len;
}

/* 100 text messages of 700 bytes, masked: 70,800 bytes, more than one read's budget. */
static void held_fill(struct held *h)
{
    static struct pipe scratch;
    memset(&scratch, 0, sizeof(scratch));
    char msg[700];
    memset(msg, 'x', sizeof(msg));
    for (int i = 0; i < 100; i++) {
        scratch.in_len = 0;
        frame(&scratch, 1, 0x1, msg, sizeof(msg));
        memcpy(h->in + h->len, scratch.in, scratch.in_len);
        h->len += scratch.in_len;
    }
}

TEST(ws_read_more_when_the_budget_leaves_bytes_buffered_issue10)
{
    static struct held h;
    static struct pipe counts;
    memset(&h, 0, sizeof(h));
    memset(&counts, 0, sizeof(counts));
    cur = &counts;
    held_fill(&h);
    ASSERT(h.len > WS_READ_BUDGET);
    struct ws_io io = {h_recv, h_send, &h, NULL, h_buffered};
    struct ws *w = ws_new(-1, &io, &handler, NULL);
    ASSERT_EQ_INT(ws_read(w), 0);
    ASSERT_EQ_UINT(h.off, WS_READ_BUDGET); /* the budget, no more */
    ASSERT(counts.ntext < 100);
    ASSERT_EQ_INT(ws_read_more(w), 1); /* the rest is out of epoll's sight */
    int rounds = 1;
    while (ws_read_more(w) && rounds < 10) {
        ASSERT_EQ_INT(ws_read(w), 0);
        rounds++;
    }
    ASSERT_EQ_INT(rounds, 2);
    ASSERT_EQ_INT(counts.ntext, 100);
    ASSERT_EQ_UINT(h.off, h.len);
    ASSERT_EQ_INT(ws_read_more(w), 0);
    ws_free(w);
}

TEST(ws_read_more_only_after_the_budget_and_with_bytes_buffered_issue10)
{
    static struct held h;
    static struct pipe counts;
    memset(&h, 0, sizeof(h));
    memset(&counts, 0, sizeof(counts));
    cur = &counts;
    held_fill(&h);
    /* a plain socket (no buffered()): what the budget left is in the socket, epoll says so */
    struct ws_io plain = {h_recv, h_send, &h, NULL, NULL};
    struct ws *w = ws_new(-1, &plain, &handler, NULL);
    ASSERT_EQ_INT(ws_read(w), 0);
    ASSERT_EQ_INT(ws_read_more(w), 0);
    ws_free(w);
    /* stopped by EAGAIN, not by the budget: nothing to come back for, whatever is held (a
     * partial record waits for the socket) */
    memset(&h, 0, sizeof(h));
    memset(&counts, 0, sizeof(counts));
    frame(&counts, 1, 0x1, "hi", 2);
    memcpy(h.in, counts.in, counts.in_len);
    h.len = counts.in_len;
    h.say_buffered = 1;
    struct ws_io io = {h_recv, h_send, &h, NULL, h_buffered};
    w = ws_new(-1, &io, &handler, NULL);
    ASSERT_EQ_INT(ws_read(w), 0);
    ASSERT_EQ_INT(counts.ntext, 1);
    ASSERT_EQ_INT(ws_read_more(w), 0);
    ws_free(w);
}

int main(void)
{
    return RUN_TESTS();
}

TEST(ws_save_between_frames_restore_carries_on)
{
    /* unfragmented text and binary frames cut at every byte: with ws_hold, wslay never holds
     * part of a frame, so a save always works (nothing to write) and the restored socket
     * delivers exactly the messages the first one had not */
    static struct pipe p;
    static uint8_t stream[4096];
    size_t len;
    {
        struct ws *w = open_ws(&p);
        frame(&p, 1, 0x1, "{\"type\":\"one\"}", 14);
        frame(&p, 1, 0x2, "opus-frame-bytes", 16);
        frame(&p, 1, 0x1, "{\"type\":\"two\"}", 14);
        len = p.in_len;
        memcpy(stream, p.in, len);
        ws_free(w);
    }
    for (size_t cut = 0; cut <= len; cut++) {
        struct ws *w = open_ws(&p);
        memcpy(p.in, stream, len);
        p.in_len = len;
        p.cut = cut;
        ws_hold(w);
        ASSERT_EQ_INT(ws_read(w), 0);
        int before = p.ntext + p.nbinary;
        struct ws_saved saved;
        ASSERT_EQ_INT(ws_save(w, &saved), 0);
        ws_free(w);
        struct ws_io io = {p_recv, p_send, &p, NULL, NULL};
        struct ws *w2 = ws_restore(-1, &io, &handler, NULL, &saved);
        ASSERT(w2);
        p.cut = len;
        ASSERT_EQ_INT(ws_read(w2), 0);
        ASSERT_EQ_INT(p.ntext, 2);
        ASSERT_EQ_INT(p.nbinary, 1);
        ASSERT(before <= 3);
        ASSERT_EQ_MEM(p.last, "{\"type\":\"two\"}", 14);
        ws_free(w2);
    }
}

TEST(ws_save_refused_with_output_waiting)
{
    static struct pipe p;
    struct ws *w = open_ws(&p);
    ASSERT_EQ_INT(ws_send_text(w, "{}", 2), 0);
    struct ws_saved saved;
    ASSERT_EQ_INT(ws_save(w, &saved), -1); /* queued, the socket took nothing */
    p.writable = 1;
    ASSERT_EQ_INT(ws_flush(w), 0);
    ASSERT_EQ_INT(ws_save(w, &saved), 0);
    ws_free(w);
}
