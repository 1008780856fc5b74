/*
 * The HTTP/1.1 response reader of rostrum-load hls (load/httpresp.c, issue 11): framing by
 * length, chunks and close, keep-alive, a second response right behind the first, every split
 * of the input, and what it refuses.
 */
#include <string.h>

#include "harness.h"
#include "load/httpresp.h"

static char got[4096];
static size_t ngot;

static void sink(void *arg, const uint8_t *b, size_t len)
{
    if (ngot + len < sizeof(got))
        memcpy(got + ngot, b, len);
    ngot += len;
}

/* Feeds <s> in pieces of <step>; returns bytes used (the response's), or -1. */
static long feed(struct httpresp *r, const char *s, size_t step)
{
    size_t n = strlen(s), used = 0;
    httpresp_init(r, 0);
    ngot = 0;
    while (used < n && r->state != HR_DONE) {
        size_t k = n - used < step ? n - used : step;
        long c = httpresp_feed(r, (const uint8_t *)s + used, k, sink, NULL);
        if (c < 0)
            return -1;
        used += (size_t)c;
    }
    return (long)used;
}

TEST(issue11_every_split_gives_the_same_response)
{
    const char *cases[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nAge: 2\r\n\r\nhelloHTTP/1.1 404",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nhe\r\n3\r\nllo\r\n"
        "0\r\nX-Trailer: y\r\n\r\nHTTP/1.1",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length:5\r\n\r\nhello",
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *end = strstr(cases[c], "hello") ? strstr(cases[c], "hello") + 5 : NULL;
        for (size_t step = 1; step <= strlen(cases[c]); step++) {
            struct httpresp r;
            long used = feed(&r, cases[c], step);
            ASSERT_EQ_INT(r.state, HR_DONE);
            ASSERT_EQ_INT(r.status, 200);
            ASSERT(r.keep);
            ASSERT_EQ_INT((int)ngot, 5);
            ASSERT(memcmp(got, "hello", 5) == 0);
            if (end)
                ASSERT_EQ_INT((int)used, (int)(end - cases[c]));
        }
    }
    struct httpresp r;
    feed(&r, cases[0], 1000);
    ASSERT_EQ_STR(r.age, "2");
    /* chunked: stops after the trailer's blank line, before the next response */
    ASSERT_EQ_INT((int)feed(&r, cases[1], 7),
                  (int)(strstr(cases[1], "\r\n\r\nHTTP") + 4 - cases[1]));
}

TEST(issue11_close_framing_and_keep_alive)
{
    struct httpresp r;
    ASSERT(feed(&r, "HTTP/1.0 200 OK\r\n\r\nall of it", 4) > 0);
    ASSERT_EQ_INT(r.state, HR_BODY_CLOSE);
    ASSERT(!r.keep);
    ASSERT_EQ_INT(httpresp_eof(&r), 0);
    ASSERT_EQ_INT((int)r.body, 9);
    ASSERT(feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncut", 4) > 0);
    ASSERT_EQ_INT(httpresp_eof(&r), -1); /* cut short */
    ASSERT(feed(&r, "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
                9) > 0);
    ASSERT(r.state == HR_DONE && !r.keep);
    ASSERT(feed(&r, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 9) >
           0);
    ASSERT(r.state == HR_DONE && r.keep);
    ASSERT(feed(&r, "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 9) > 0);
    ASSERT(r.state == HR_DONE && r.body == 0); /* no body whatever the head says */
    httpresp_init(&r, 1);
    const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
    ASSERT_EQ_INT((int)httpresp_feed(&r, (const uint8_t *)h, strlen(h), sink, NULL),
                  (int)strlen(h));
    ASSERT_EQ_INT(r.state, HR_DONE); /* a HEAD */
}

TEST(issue11_refused_responses)
{
    const char *bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: no\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct httpresp r;
        if (feed(&r, bad[i], 3) != -1)
            TEST_FAIL_("response %zu accepted: %s", i, bad[i]);
    }
    /* a head past the bound */
    static char big[HTTPRESP_HEAD_MAX + 64];
    strcpy(big, "HTTP/1.1 200 OK\r\nX: ");
    memset(big + strlen(big), 'a', HTTPRESP_HEAD_MAX);
    struct httpresp r;
    ASSERT_EQ_INT((int)feed(&r, big, 100), -1);
}

int main(void)
{
    return RUN_TESTS();
}
