/*
 * test_http: the HTTP request-head parser (src/http/request.c).
 *
 * Every parse goes through guarded(): the input is copied so that it ends exactly where a
 * PROT_NONE page begins, so a read of even one byte past <len> kills the test. Valid requests
 * are also fed split at every byte, both from scratch and incrementally with <scan_from>, and
 * must give -2 until the head is whole and then the same result as the whole input.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"
#include "http/request.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Returns a copy of <in>[0..<n>) that ends right before a PROT_NONE page. The mapping is
 * leaked on purpose: results point into it, and each test is its own process. */
static char *guarded(const char *in, size_t n)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = n / ps + 1;
    char *map =
        mmap(NULL, (pages + 1) * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(map != MAP_FAILED);
    ASSERT(mprotect(map + pages * ps, ps, PROT_NONE) == 0);
    char *p = map + pages * ps - n;
    if (n > 0)
        memcpy(p, in, n);
    return p;
}

static void unguard(const char *p, size_t n)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = n / ps + 1;
    char *map = (char *)((uintptr_t)(p + n) - pages * ps);
    munmap(map, (pages + 1) * ps);
}

/* Parses <n> bytes of <in> placed before a guard page; <*buf> gets the guarded copy. */
static int parse_n(const char *in, size_t n, size_t scan_from, struct http_request *req,
                   const char **buf)
{
    const char *b = guarded(in, n);
    if (buf)
        *buf = b;
    return http_parse_request(b, n, scan_from, req);
}

static int parse(const char *s, struct http_request *req)
{
    return parse_n(s, strlen(s), 0, req, NULL);
}

#define ASSERT_SPAN(ptr, len, str)                                                                 \
    do {                                                                                           \
        const char *s_ = (str);                                                                    \
        size_t l_ = strlen(s_);                                                                    \
        if ((size_t)(len) != l_ || memcmp((ptr), s_, l_) != 0)                                     \
            TEST_FAIL_("%s == \"%s\": got \"%.*s\"", #ptr, s_, (int)(len), (const char *)(ptr));   \
    } while (0)

#define ASSERT_HEADER(req, i, n, v)                                                                \
    do {                                                                                           \
        ASSERT((i) < (req).num_headers);                                                           \
        ASSERT_SPAN((req).headers[i].name, (req).headers[i].name_len, n);                          \
        ASSERT_SPAN((req).headers[i].value, (req).headers[i].value_len, v);                        \
    } while (0)

/* Checks that two parses of the same bytes (in different buffers) agree field by field. */
static void assert_same_parse(const struct http_request *a, const char *abuf,
                              const struct http_request *b, const char *bbuf)
{
    ASSERT_EQ_INT(a->method, b->method);
    ASSERT_EQ_UINT(a->head_len, b->head_len);
    ASSERT_EQ_INT(a->version_major, b->version_major);
    ASSERT_EQ_INT(a->version_minor, b->version_minor);
    ASSERT_EQ_UINT(a->path_len, b->path_len);
    ASSERT_EQ_MEM(a->path, b->path, a->path_len);
    ASSERT_EQ_UINT(a->query_len, b->query_len);
    ASSERT_EQ_MEM(a->query, b->query, a->query_len);
    ASSERT_EQ_UINT(a->num_headers, b->num_headers);
    for (size_t i = 0; i < a->num_headers; i++) {
        ASSERT_EQ_INT(a->headers[i].name - abuf, b->headers[i].name - bbuf);
        ASSERT_EQ_UINT(a->headers[i].name_len, b->headers[i].name_len);
        ASSERT_EQ_INT(a->headers[i].value - abuf, b->headers[i].value - bbuf);
        ASSERT_EQ_UINT(a->headers[i].value_len, b->headers[i].value_len);
    }
    ASSERT_EQ_INT(a->content_length, b->content_length);
    ASSERT_EQ_INT(a->chunked, b->chunked);
    ASSERT_EQ_INT(a->upgrade, b->upgrade);
    ASSERT_EQ_INT(a->keep_alive, b->keep_alive);
}

/* ---- valid requests ------------------------------------------------------------------------- */

TEST(parse_get)
{
    struct http_request r;
    const char *s = "GET /live.ogg?x=1&y HTTP/1.1\r\n"
                    "Host: example.com:8000\r\n"
                    "User-Agent: mpv 0.35\r\n"
                    "Icy-MetaData: 1\r\n"
                    "\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_EQ_INT(r.method, HTTP_GET);
    ASSERT_SPAN(r.path, r.path_len, "/live.ogg");
    ASSERT_SPAN(r.query, r.query_len, "x=1&y");
    ASSERT_EQ_INT(r.version_major, 1);
    ASSERT_EQ_INT(r.version_minor, 1);
    ASSERT_EQ_UINT(r.num_headers, 3);
    ASSERT_HEADER(r, 0, "Host", "example.com:8000");
    ASSERT_HEADER(r, 1, "User-Agent", "mpv 0.35");
    ASSERT_HEADER(r, 2, "Icy-MetaData", "1");
    ASSERT_EQ_UINT(r.head_len, strlen(s));
    ASSERT_EQ_INT(r.content_length, -1);
    ASSERT_EQ_INT(r.chunked, 0);
    ASSERT_EQ_INT(r.upgrade, 0);
    ASSERT_EQ_INT(r.keep_alive, 1);
}

TEST(parse_head_http10)
{
    struct http_request r;
    const char *s = "HEAD /status-json.xsl HTTP/1.0\r\n\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_EQ_INT(r.method, HTTP_HEAD);
    ASSERT_SPAN(r.path, r.path_len, "/status-json.xsl");
    ASSERT_EQ_UINT(r.query_len, 0);
    ASSERT(r.query != NULL);
    ASSERT_EQ_INT(r.version_minor, 0);
    ASSERT_EQ_UINT(r.num_headers, 0);
    ASSERT_EQ_INT(r.keep_alive, 0);
}

TEST(parse_put_expect_with_body)
{
    /* what ffmpeg -f ogg icecast://... sends, then Ogg bytes (with NULs) right behind the head */
    static const char s[] = "PUT /studio.ogg HTTP/1.1\r\n"
                            "Host: localhost:8000\r\n"
                            "Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n"
                            "Content-Type: audio/ogg\r\n"
                            "Ice-Public: 0\r\n"
                            "Ice-Name: Studio A\r\n"
                            "Content-Length: 1000\r\n"
                            "Expect: 100-continue\r\n"
                            "\r\n"
                            "OggS\0\x02\0\0\0\0\0\0\0\0GET / HTTP/1.1\r\n\r\n";
    size_t head = (size_t)(strstr(s, "\r\n\r\n") - s) + 4;
    struct http_request r;
    const char *buf;
    ASSERT_EQ_INT(parse_n(s, sizeof(s) - 1, 0, &r, &buf), head);
    ASSERT_EQ_INT(r.method, HTTP_PUT);
    ASSERT_SPAN(r.path, r.path_len, "/studio.ogg");
    ASSERT_EQ_UINT(r.num_headers, 7);
    ASSERT_HEADER(r, 3, "Ice-Public", "0");
    ASSERT_HEADER(r, 4, "Ice-Name", "Studio A");
    ASSERT_EQ_INT(r.content_length, 1000);
    ASSERT_EQ_UINT(r.head_len, head);
    ASSERT_EQ_MEM(buf + r.head_len, "OggS", 4);
    ASSERT_EQ_INT(http_header_has_token(&r, "expect", "100-continue"), 1);
    ASSERT_SPAN(http_find_header(&r, "content-type")->value,
                http_find_header(&r, "content-type")->value_len, "audio/ogg");
}

TEST(parse_source_http10)
{
    static const char s[] = "SOURCE /mount HTTP/1.0\r\n"
                            "Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n"
                            "Content-Type: audio/ogg\r\n"
                            "ice-name: Test stream\r\n"
                            "ice-description: a test\r\n"
                            "\r\n"
                            "OggS\0\x02";
    struct http_request r;
    ASSERT_EQ_INT(parse_n(s, sizeof(s) - 1, 0, &r, NULL), sizeof(s) - 1 - 6);
    ASSERT_EQ_INT(r.method, HTTP_SOURCE);
    ASSERT_EQ_STR(http_method_name(r.method), "SOURCE");
    ASSERT_SPAN(r.path, r.path_len, "/mount");
    ASSERT_EQ_INT(r.version_major, 1);
    ASSERT_EQ_INT(r.version_minor, 0);
    ASSERT_HEADER(r, 2, "ice-name", "Test stream");
    char user[32], pass[32];
    ASSERT_EQ_INT(http_basic_auth(&r, user, sizeof(user), pass, sizeof(pass)), 0);
    ASSERT_EQ_STR(user, "source");
    ASSERT_EQ_STR(pass, "hackme");
}

TEST(parse_options_star)
{
    struct http_request r;
    const char *s = "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_EQ_INT(r.method, HTTP_OPTIONS);
    ASSERT_SPAN(r.path, r.path_len, "*");
    ASSERT_EQ_UINT(r.query_len, 0);
    /* asterisk-form is only "*", and only for OPTIONS */
    ASSERT_EQ_INT(parse("GET * HTTP/1.1\r\n\r\n", &r), -1);
    ASSERT_EQ_INT(parse("OPTIONS *x HTTP/1.1\r\n\r\n", &r), -1);
}

TEST(parse_absolute_form)
{
    struct http_request r;
    const char *s = "GET http://example.com:8000/live.ogg?a=b#frag HTTP/1.1\r\n\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_SPAN(r.path, r.path_len, "/live.ogg");
    ASSERT_SPAN(r.query, r.query_len, "a=b");
    s = "GET http://example.com HTTP/1.1\r\n\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_SPAN(r.path, r.path_len, "/");
    s = "GET http://[::1]:80/x HTTP/1.1\r\n\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_SPAN(r.path, r.path_len, "/x");
    ASSERT_EQ_INT(parse("GET http://[::1/x HTTP/1.1\r\n\r\n", &r), -1);
    ASSERT_EQ_INT(parse("GET http://:80/x HTTP/1.1\r\n\r\n", &r), -1);
}

TEST(parse_fragment_and_empty_query)
{
    struct http_request r;
    ASSERT(parse("GET /a?#f HTTP/1.1\r\n\r\n", &r) > 0);
    ASSERT_SPAN(r.path, r.path_len, "/a");
    ASSERT_EQ_UINT(r.query_len, 0);
    ASSERT(parse("GET /a?b?c HTTP/1.1\r\n\r\n", &r) > 0);
    ASSERT_SPAN(r.query, r.query_len, "b?c");
}

TEST(parse_lf_only_and_mixed_line_ends)
{
    struct http_request r;
    const char *s = "GET /x HTTP/1.1\nHost: a\n\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_HEADER(r, 0, "Host", "a");
    s = "GET /x HTTP/1.1\r\nHost: a\n\r\nBODY";
    ASSERT_EQ_INT(parse(s, &r), strlen(s) - 4);
    s = "GET /x HTTP/1.1\r\nHost: a\r\n\nBODY";
    ASSERT_EQ_INT(parse(s, &r), strlen(s) - 4);
    ASSERT_HEADER(r, 0, "Host", "a");
}

TEST(parse_one_leading_empty_line)
{
    /* RFC 9112 2.2: a server should ignore at least one empty line before the request line */
    struct http_request r;
    const char *s = "\r\nGET / HTTP/1.1\r\n\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_EQ_INT(r.method, HTTP_GET);
    ASSERT_EQ_INT(parse("\r\n\r\nGET / HTTP/1.1\r\n\r\n", &r), -1);
    ASSERT_EQ_INT(parse("\n\nGET / HTTP/1.1\r\n\r\n", &r), -1);
}

TEST(parse_header_values_trimmed)
{
    struct http_request r;
    const char *s = "GET / HTTP/1.1\r\nA:  x y \t\r\nB:\r\nC: \t \r\nD:\tz\r\n\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_EQ_UINT(r.num_headers, 4);
    ASSERT_HEADER(r, 0, "A", "x y");
    ASSERT_HEADER(r, 1, "B", "");
    ASSERT_HEADER(r, 2, "C", "");
    ASSERT_HEADER(r, 3, "D", "z");
    /* obs-text (UTF-8) in a value is kept as is */
    s = "GET / HTTP/1.1\r\nIce-Name: Caf\xc3\xa9\r\n\r\n";
    ASSERT_EQ_INT(parse(s, &r), strlen(s));
    ASSERT_HEADER(r, 0, "Ice-Name", "Caf\xc3\xa9");
}

TEST(parse_websocket_upgrade)
{
    struct http_request r;
    const char *s = "GET /ws HTTP/1.1\r\n"
                    "Host: x\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: keep-alive, Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n"
                    "\r\n"
                    "\x81\x85";
    ASSERT_EQ_INT(parse(s, &r), strlen(s) - 2);
    ASSERT_EQ_INT(r.upgrade, 1);
    ASSERT_EQ_INT(http_header_has_token(&r, "Connection", "upgrade"), 1);
    ASSERT_EQ_INT(http_header_has_token(&r, "Upgrade", "websocket"), 1);
}

TEST(parse_framing)
{
    struct http_request r;
    ASSERT(parse("PUT /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", &r) > 0);
    ASSERT_EQ_INT(r.chunked, 1);
    ASSERT_EQ_INT(r.content_length, -1);
    ASSERT(parse("PUT /m HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r) > 0);
    ASSERT_EQ_INT(r.content_length, 0);
    ASSERT(parse("PUT /m HTTP/1.1\r\nContent-Length: 18446744073709551614\r\n\r\n", &r) == -1);
    /* the classic smuggling shapes */
    ASSERT_EQ_INT(
        parse("PUT /m HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &r),
        -1);
    ASSERT_EQ_INT(parse("PUT /m HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &r),
                  -1);
    ASSERT_EQ_INT(parse("PUT /m HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n", &r), -1);
    ASSERT_EQ_INT(parse("PUT /m HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &r), -1);
    ASSERT_EQ_INT(parse("PUT /m HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", &r), -1);
    ASSERT_EQ_INT(parse("PUT /m HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &r), -1);
    ASSERT_EQ_INT(parse("PUT /m HTTP/1.1\r\nContent-Length : 5\r\n\r\n", &r), -1);
}

/* ---- split at every byte, guard page -------------------------------------------------------- */

static const char *const valid_requests[] = {
    "GET /live.ogg?x=1 HTTP/1.1\r\nHost: a\r\nIcy-MetaData: 1\r\n\r\n",
    ("SOURCE /mount HTTP/1.0\r\nAuthorization: Basic c291cmNlOmhhY2ttZQ==\r\n"
     "Content-Type: audio/ogg\r\nice-name: x\r\n\r\nOggS-body-bytes"),
    "PUT /m HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd",
    "OPTIONS * HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\nA: b\n\nGET / HTTP/1.1\n\n",
    "\r\nHEAD http://h/x HTTP/1.0\r\nX:\r\n\r\n",
};

TEST(split_at_every_byte)
{
    for (size_t k = 0; k < sizeof(valid_requests) / sizeof(valid_requests[0]); k++) {
        const char *s = valid_requests[k];
        size_t total = strlen(s);
        struct http_request whole, part;
        const char *wbuf, *pbuf;
        int head = parse_n(s, total, 0, &whole, &wbuf);
        if (head <= 0)
            TEST_FAIL_("request %zu: %d", k, head);
        for (size_t n = 0; n <= total; n++) {
            int r = parse_n(s, n, 0, &part, &pbuf);
            if (n < (size_t)head) {
                if (r != -2)
                    TEST_FAIL_("request %zu prefix %zu: %d, want -2", k, n, r);
            } else {
                ASSERT_EQ_INT(r, head);
                assert_same_parse(&whole, wbuf, &part, pbuf);
            }
            unguard(pbuf, n);
        }
    }
}

TEST(split_at_every_byte_incremental)
{
    /* the way a connection feeds it: same buffer growing, scan_from = the last -2 length */
    for (size_t k = 0; k < sizeof(valid_requests) / sizeof(valid_requests[0]); k++) {
        const char *s = valid_requests[k];
        size_t total = strlen(s);
        struct http_request whole, part;
        const char *wbuf, *pbuf;
        int head = parse_n(s, total, 0, &whole, &wbuf);
        ASSERT(head > 0);
        size_t scan_from = 0;
        for (size_t n = 0; n <= total; n++) {
            int r = parse_n(s, n, scan_from, &part, &pbuf);
            if (n < (size_t)head) {
                if (r != -2)
                    TEST_FAIL_("request %zu prefix %zu: %d, want -2", k, n, r);
                scan_from = n;
            } else {
                ASSERT_EQ_INT(r, head);
                assert_same_parse(&whole, wbuf, &part, pbuf);
            }
            unguard(pbuf, n);
        }
    }
}

TEST(scan_from_skips_old_bytes)
{
    /* White box for the O(n) promise: bytes before scan_from - 3 are not searched again, so a
     * (dishonest) scan_from past the end of the head does not find it. */
    struct http_request r;
    const char *s = "GET / HTTP/1.1\r\n\r\nXYZW";
    size_t len = strlen(s);
    ASSERT_EQ_INT(parse_n(s, len, len, &r, NULL), -2);
    ASSERT_EQ_INT(parse_n(s, len, len - 4, &r, NULL), len - 4);
    ASSERT_EQ_INT(parse_n(s, len, 1000, &r, NULL), -2); /* clamped to len */
}

static const struct {
    const char *s;
    size_t len; /* 0: strlen */
    int want;
} bad_requests[] = {
    {"GET/ HTTP/1.1\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1 extra\r\n\r\n", 0, -1},
    {"GET /a b HTTP/1.1\r\n\r\n", 0, -1},
    {"get / HTTP/1.1\r\n\r\n", 0, -1},
    {"FOO / HTTP/1.1\r\n\r\n", 0, -1},
    {"GET\t/ HTTP/1.1\r\n\r\n", 0, -1},
    {"GET / FTP/1.1\r\n\r\n", 0, -1},
    {"GET / HTTP/2.0\r\n\r\n", 0, -1},
    {"GET / HTTP/0.9\r\n\r\n", 0, -1},
    {"GET / HTTP/1.2\r\n\r\n", 0, -1},
    {"GET / HTTP/1.10\r\n\r\n", 0, -1},
    {"GET /\r\n\r\n", 0, -1}, /* HTTP/0.9 */
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\n Leading: x\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\nX : y\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\nX(y): z\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\nX\x01: y\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\n\xc3\xa9: y\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\n: y\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0, -1},  /* obs-fold */
    {"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 0, -1}, /* obs-fold */
    {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 0, -1},     /* bare CR */
    {"GET / HTTP/1.1\rX: a\r\n\r\n", 0, -1},
    {"GET / HTTP/1.1\r\n\r\r\n", 0, -1},
    {"GET /\0 HTTP/1.1\r\n\r\n", 20, -1},
    {"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 25, -1},
    {"GET / HTTP/1.1\r\nX\0: a\r\n\r\n", 24, -1},
    {"\0GET / HTTP/1.1\r\n\r\n", 19, -1},
    {"\r\n\r\n", 0, -1},
    {"\n\n", 0, -1},
    {"GET * HTTP/1.1\r\n\r\n", 0, -1},
};

TEST(invalid_requests)
{
    for (size_t k = 0; k < sizeof(bad_requests) / sizeof(bad_requests[0]); k++) {
        const char *s = bad_requests[k].s;
        size_t len = bad_requests[k].len ? bad_requests[k].len : strlen(s);
        struct http_request r;
        int got = parse_n(s, len, 0, &r, NULL);
        if (got != bad_requests[k].want)
            TEST_FAIL_("bad request %zu: %d, want %d", k, got, bad_requests[k].want);
    }
}

TEST(invalid_requests_every_prefix_guarded)
{
    /* a truncated invalid head is either still -2 or already -1, never a crash or a head */
    for (size_t k = 0; k < sizeof(bad_requests) / sizeof(bad_requests[0]); k++) {
        const char *s = bad_requests[k].s;
        size_t len = bad_requests[k].len ? bad_requests[k].len : strlen(s);
        size_t scan_from = 0;
        for (size_t n = 0; n <= len; n++) {
            struct http_request r;
            const char *b;
            int got = parse_n(s, n, 0, &r, &b);
            int inc = http_parse_request(b, n, scan_from, &r);
            if (got != -2 && got != -1)
                TEST_FAIL_("bad request %zu prefix %zu: %d", k, n, got);
            if (inc != got)
                TEST_FAIL_("bad request %zu prefix %zu: incremental %d != %d", k, n, inc, got);
            if (got == -2)
                scan_from = n;
            unguard(b, n);
        }
    }
}

TEST(nul_rejected_before_end_of_head)
{
    struct http_request r;
    ASSERT_EQ_INT(parse_n("GET /\0", 6, 0, &r, NULL), -1);
    ASSERT_EQ_INT(parse_n("GET / HTTP/1.1\r\nX: \0", 20, 19, &r, NULL), -1);
    ASSERT_EQ_INT(parse_n("GET / HTTP/1.1\r\nX: a\rb", 23, 0, &r, NULL), -1);
    /* a CR as the last byte may still be followed by LF */
    ASSERT_EQ_INT(parse_n("GET / HTTP/1.1\r", 15, 0, &r, NULL), -2);
}

/* ---- limits --------------------------------------------------------------------------------- */

/* Builds "GET / HTTP/1.1\r\n" + padding header lines so that the head, with its final "\r\n",
 * is exactly <head> bytes; with <end> 0 the final empty line is left out. Returns the length. */
static size_t build_head(char *out, size_t head, int end)
{
    size_t n = (size_t)sprintf(out, "GET / HTTP/1.1\r\n");
    size_t body = head - n - 2;
    while (body > 0) {
        size_t line = body > 1000 ? 1000 : body; /* few lines: the byte limit, not the count */
        if (body - line > 0 && body - line < 8)
            line = body - 8; /* leave room for a last line of at least "X-P: \r\n" plus one */
        ASSERT(line >= 8);
        memcpy(out + n, "X-P: ", 5);
        memset(out + n + 5, 'a', line - 7);
        memcpy(out + n + line - 2, "\r\n", 2);
        n += line;
        body -= line;
    }
    if (end) {
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    return n;
}

TEST(head_size_limit)
{
    static char buf[3 * HTTP_MAX_HEAD];
    struct http_request r;
    size_t n = build_head(buf, HTTP_MAX_HEAD, 1);
    ASSERT_EQ_UINT(n, HTTP_MAX_HEAD);
    ASSERT_EQ_INT(parse_n(buf, n, 0, &r, NULL), HTTP_MAX_HEAD); /* exactly the limit: fine */
    ASSERT_EQ_INT(parse_n(buf, n - 1, 0, &r, NULL), -2);
    n = build_head(buf, HTTP_MAX_HEAD + 1, 1);
    ASSERT_EQ_INT(parse_n(buf, n, 0, &r, NULL), -3); /* one byte over */

    /* 8 KiB of headers and no end: -2 below the limit, -3 at it, also fed a byte at a time */
    n = build_head(buf, 2 * HTTP_MAX_HEAD, 0);
    ASSERT_EQ_INT(parse_n(buf, HTTP_MAX_HEAD - 1, 0, &r, NULL), -2);
    ASSERT_EQ_INT(parse_n(buf, HTTP_MAX_HEAD, 0, &r, NULL), -3);
    ASSERT_EQ_INT(parse_n(buf, n, 0, &r, NULL), -3);
    const char *b = guarded(buf, n);
    size_t scan_from = 0;
    for (size_t k = 1; k <= n; k++) {
        int got = http_parse_request(b, k, scan_from, &r);
        if (k < HTTP_MAX_HEAD) {
            if (got != -2)
                TEST_FAIL_("len %zu: %d", k, got);
            scan_from = k;
        } else if (got != -3) {
            TEST_FAIL_("len %zu: %d, want -3", k, got);
        }
    }
}

/* A CR as the last byte the limit allows, followed by a non-LF byte: the head is too large
 * whether the bytes come at once or in pieces (found by fuzz_http: the two used to differ). */
TEST(cr_at_head_limit)
{
    static char buf[HTTP_MAX_HEAD + 2];
    struct http_request r;
    int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
    memset(buf + n, 'a', HTTP_MAX_HEAD - 1 - (size_t)n);
    buf[HTTP_MAX_HEAD - 1] = '\r';
    buf[HTTP_MAX_HEAD] = 'Y';
    ASSERT_EQ_INT(parse_n(buf, HTTP_MAX_HEAD + 1, 0, &r, NULL), -3);
    ASSERT_EQ_INT(parse_n(buf, HTTP_MAX_HEAD, 0, &r, NULL), -3);
    ASSERT_EQ_INT(http_parse_request(buf, HTTP_MAX_HEAD + 1, HTTP_MAX_HEAD, &r), -3);
    /* one byte earlier the CR is judged: invalid */
    buf[HTTP_MAX_HEAD - 2] = '\r';
    buf[HTTP_MAX_HEAD - 1] = 'Y';
    ASSERT_EQ_INT(parse_n(buf, HTTP_MAX_HEAD, 0, &r, NULL), -1);
}

static size_t build_headers(char *out, int count)
{
    size_t n = (size_t)sprintf(out, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < count; i++)
        n += (size_t)sprintf(out + n, "X-H%d: %d\r\n", i, i);
    n += (size_t)sprintf(out + n, "\r\n");
    return n;
}

TEST(header_count_limit)
{
    static char buf[4096];
    struct http_request r;
    size_t n = build_headers(buf, HTTP_MAX_HEADERS);
    ASSERT_EQ_INT(parse_n(buf, n, 0, &r, NULL), n);
    ASSERT_EQ_UINT(r.num_headers, HTTP_MAX_HEADERS);
    ASSERT_HEADER(r, HTTP_MAX_HEADERS - 1, "X-H47", "47");
    n = build_headers(buf, HTTP_MAX_HEADERS + 1);
    ASSERT_EQ_INT(parse_n(buf, n, 0, &r, NULL), -3);
}

/* ---- header helpers ------------------------------------------------------------------------- */

TEST(find_header)
{
    struct http_request r;
    ASSERT(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Y: 1\r\nx-y: 2\r\n\r\n", &r) > 0);
    const struct http_header *h = http_find_header(&r, "x-Y");
    ASSERT(h != NULL);
    ASSERT_SPAN(h->value, h->value_len, "1");
    ASSERT(http_find_header(&r, "HOST") == &r.headers[0]);
    ASSERT(http_find_header(&r, "X") == NULL);
    ASSERT(http_find_header(&r, "X-Y-Z") == NULL);
    ASSERT(http_find_header(&r, "") == NULL);
}

TEST(header_tokens)
{
    struct http_request r;
    ASSERT(parse("GET / HTTP/1.1\r\n"
                 "Expect: 100-Continue\r\n"
                 "Connection: keep-alive ,\tUpgrade\r\n"
                 "Connection: close\r\n"
                 "Accept: , ,text/html,,\r\n"
                 "X: 100-continued\r\n"
                 "\r\n",
                 &r) > 0);
    ASSERT_EQ_INT(http_header_has_token(&r, "expect", "100-continue"), 1);
    ASSERT_EQ_INT(http_header_has_token(&r, "Connection", "keep-alive"), 1);
    ASSERT_EQ_INT(http_header_has_token(&r, "Connection", "upgrade"), 1);
    ASSERT_EQ_INT(http_header_has_token(&r, "Connection", "close"), 1); /* second line */
    ASSERT_EQ_INT(http_header_has_token(&r, "Connection", "keep"), 0);
    ASSERT_EQ_INT(http_header_has_token(&r, "Accept", "text/html"), 1);
    ASSERT_EQ_INT(http_header_has_token(&r, "X", "100-continue"), 0);
    ASSERT_EQ_INT(http_header_has_token(&r, "Upgrade", "websocket"), 0);
}

/* Parses a request with the given Authorization header lines and runs http_basic_auth. */
static int auth(const char *lines, char *user, size_t ucap, char *pass, size_t pcap)
{
    static char buf[4096];
    struct http_request r;
    int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n%s\r\n", lines);
    int got = parse_n(buf, (size_t)n, 0, &r, NULL);
    ASSERT_EQ_INT(got, n);
    return http_basic_auth(&r, user, ucap, pass, pcap);
}

TEST(basic_auth)
{
    char u[16], p[16];
    ASSERT_EQ_INT(auth("Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n", u, 16, p, 16), 0);
    ASSERT_EQ_STR(u, "source");
    ASSERT_EQ_STR(p, "hackme");
    ASSERT_EQ_INT(auth("authorization: basic   c291cmNlOmhhY2ttZQ==  \r\n", u, 16, p, 16), 0);
    ASSERT_EQ_STR(u, "source");
    ASSERT_EQ_INT(auth("Authorization: Basic dXNlcjo=\r\n", u, 16, p, 16), 0); /* "user:" */
    ASSERT_EQ_STR(u, "user");
    ASSERT_EQ_STR(p, "");
    ASSERT_EQ_INT(auth("Authorization: Basic OnB3\r\n", u, 16, p, 16), 0); /* ":pw" */
    ASSERT_EQ_STR(u, "");
    ASSERT_EQ_STR(p, "pw");
    ASSERT_EQ_INT(auth("Authorization: Basic dTpwOnE=\r\n", u, 16, p, 16), 0); /* "u:p:q" */
    ASSERT_EQ_STR(u, "u");
    ASSERT_EQ_STR(p, "p:q");
    /* exact fit: "source" needs 7 bytes, "hackme" 7 */
    ASSERT_EQ_INT(auth("Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n", u, 7, p, 7), 0);
}

TEST(basic_auth_rejects)
{
    char u[16], p[16];
    ASSERT_EQ_INT(auth("", u, 16, p, 16), -1);                                   /* absent */
    ASSERT_EQ_INT(auth("Authorization: Basic dXNlcg==\r\n", u, 16, p, 16), -1);  /* no colon */
    ASSERT_EQ_INT(auth("Authorization: Basic c291!2Nl\r\n", u, 16, p, 16), -1);  /* bad char */
    ASSERT_EQ_INT(auth("Authorization: Basic c291cmNlO\r\n", u, 16, p, 16), -1); /* length */
    ASSERT_EQ_INT(auth("Authorization: Basic c2==cmNl\r\n", u, 16, p, 16), -1);  /* '=' inside */
    ASSERT_EQ_INT(auth("Authorization: Basic c29=\r\nX: 1\r\n", u, 16, p, 16), -1);
    ASSERT_EQ_INT(auth("Authorization: Basic ====\r\n", u, 16, p, 16), -1);
    ASSERT_EQ_INT(auth("Authorization: Basic YQE6Yg==\r\n", u, 16, p, 16), -1); /* "a\1:b" */
    ASSERT_EQ_INT(auth("Authorization: Basic\r\n", u, 16, p, 16), -1);
    ASSERT_EQ_INT(auth("Authorization: Basic \r\n", u, 16, p, 16), -1);
    ASSERT_EQ_INT(auth("Authorization: Basicc291cmNlOmhhY2ttZQ==\r\n", u, 16, p, 16), -1);
    ASSERT_EQ_INT(auth("Authorization: Bearer c291cmNlOmhhY2ttZQ==\r\n", u, 16, p, 16), -1);
    ASSERT_EQ_INT(auth("Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n"
                       "Authorization: Basic dXNlcjo=\r\n",
                       u, 16, p, 16),
                  -1); /* two */
    /* too long for the caller's buffers: refused, not truncated, and outputs left empty */
    ASSERT_EQ_INT(auth("Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n", u, 6, p, 16), -1);
    ASSERT_EQ_STR(u, "");
    ASSERT_EQ_STR(p, "");
    ASSERT_EQ_INT(auth("Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n", u, 16, p, 6), -1);
    /* "admin:" + 100 'x': decodes with big enough buffers, refused with small ones */
    unsigned char cred[128], b64[256];
    memcpy(cred, "admin:", 6);
    memset(cred + 6, 'x', 100);
    EVP_EncodeBlock(b64, cred, 106);
    char line[300];
    snprintf(line, sizeof(line), "Authorization: Basic %s\r\n", (const char *)b64);
    char bu[128], bp[128];
    ASSERT_EQ_INT(auth(line, bu, sizeof(bu), bp, sizeof(bp)), 0);
    ASSERT_EQ_UINT(strlen(bp), 100);
    ASSERT_EQ_INT(auth(line, bu, sizeof(bu), bp, 100), -1);
    ASSERT_EQ_INT(auth(line, u, 16, p, 16), -1);
    /* and longer than anything we decode at all */
    static char big[2100];
    int n = sprintf(big, "Authorization: Basic ");
    memset(big + n, 'Q', 1028);
    strcpy(big + n + 1028, "\r\n");
    static char hu[2048], hp[2048];
    ASSERT_EQ_INT(auth(big, hu, sizeof(hu), hp, sizeof(hp)), -1);
}

/* ---- path decoding -------------------------------------------------------------------------- */

static int decode(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    return http_decode_path(guarded(in, n), n, out, cap);
}

TEST(decode_path)
{
    char out[64];
    ASSERT_EQ_INT(decode("/live.ogg", out, sizeof(out)), 9);
    ASSERT_EQ_STR(out, "/live.ogg");
    ASSERT_EQ_INT(decode("/a%2Fb", out, sizeof(out)), 4);
    ASSERT_EQ_STR(out, "/a/b");
    ASSERT_EQ_INT(decode("/%41%6a%6A%20x", out, sizeof(out)), 6);
    ASSERT_EQ_STR(out, "/Ajj x");
    ASSERT_EQ_INT(decode("/caf%C3%A9", out, sizeof(out)), 6);
    ASSERT_EQ_STR(out, "/caf\xc3\xa9");
    ASSERT_EQ_INT(decode("/...", out, sizeof(out)), 4);
    ASSERT_EQ_INT(decode("/.hidden/..x/x..", out, sizeof(out)), 16);
    ASSERT_EQ_INT(decode("/", out, sizeof(out)), 1);
    ASSERT_EQ_STR(out, "/");
    ASSERT_EQ_INT(decode("/a+b", out, sizeof(out)), 4); /* '+' is not a space in a path */
    ASSERT_EQ_STR(out, "/a+b");
    /* exact fit */
    ASSERT_EQ_INT(decode("/abc", out, 5), 4);
    ASSERT_EQ_INT(decode("/a%62c", out, 5), 4);
}

TEST(decode_path_rejects)
{
    char out[64];
    const char *bad[] = {
        "/%zz",           "/%4",      "/%",      "/a%g0",     "/%00",
        "/a%00b",         "",         "a/b",     "*",         "%2Fa",
        "/../etc/passwd", "/a/../b",  "/a/..",   "/..",       "/a/./b",
        "/a/.",           "/.",       "/./",     "/%2e%2e/x", "/%2E%2e",
        "/a%2F..%2Fb",    "/a/%2e/b", "/a/.%2E",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(out, "junk");
        int got = decode(bad[i], out, sizeof(out));
        if (got != -1)
            TEST_FAIL_("decode \"%s\": %d, want -1", bad[i], got);
        ASSERT_EQ_STR(out, "");
    }
    ASSERT_EQ_INT(decode("/abcd", out, 5), -1); /* no room for the NUL */
    ASSERT_EQ_INT(decode("/abcd", out, 0), -1);
    ASSERT_EQ_INT(http_decode_path("/a\0b", 4, out, sizeof(out)), -1);
}

/* ---- query values (issue 10) ---------------------------------------------------------------- */

static int unescape(const char *in, int plus, char *out, size_t cap)
{
    size_t n = strlen(in);
    return http_unescape(guarded(in, n), n, plus, out, cap);
}

TEST(query_value_issue10)
{
    struct http_request req;
    ASSERT(parse("GET /dashboard?x=1&key=a%2Bb&keys=no&key=second HTTP/1.1\r\n\r\n", &req) > 0);
    const char *v = NULL;
    size_t len = 0;
    ASSERT_EQ_INT(http_query_value(&req, "key", &v, &len), 0);
    ASSERT_EQ_INT(len, 5);
    ASSERT(memcmp(v, "a%2Bb", 5) == 0); /* the first, still encoded */
    ASSERT_EQ_INT(http_query_value(&req, "x", &v, &len), 0);
    ASSERT_EQ_INT(len, 1);
    ASSERT_EQ_INT(http_query_value(&req, "ke", &v, &len), -1);
    ASSERT_EQ_INT(http_query_value(&req, "y", &v, &len), -1);
    ASSERT(parse("GET /dashboard?key= HTTP/1.1\r\n\r\n", &req) > 0);
    ASSERT_EQ_INT(http_query_value(&req, "key", &v, &len), 0);
    ASSERT_EQ_INT(len, 0);
    ASSERT(parse("GET /dashboard HTTP/1.1\r\n\r\n", &req) > 0);
    ASSERT_EQ_INT(http_query_value(&req, "key", &v, &len), -1);
}

TEST(query_u64_issue11)
{
    /* from= and burst= on the listener stream: digits only, bounded, everything else refused */
    static const struct {
        const char *q;
        int rc;
        uint64_t v;
    } cases[] = {
        {"from=0", 1, 0},
        {"from=42&x=1", 1, 42},
        {"x=1&from=007", 1, 7},
        {"from=18446744073709551615", 1, UINT64_MAX},
        {"from=18446744073709551616", -1, 0}, /* overflows */
        {"from=99999999999999999999", -1, 0},
        {"from=000000000000000000001", -1, 0}, /* 21 digits */
        {"from=", -1, 0},
        {"from=-1", -1, 0},
        {"from=+1", -1, 0},
        {"from=1e3", -1, 0},
        {"from=0x10", -1, 0},
        {"from=%31", -1, 0},
        {"from=1%20", -1, 0},
        {"from=12a", -1, 0},
        {"frm=1", 0, 0},
        {"fromx=1", 0, 0},
        {"", 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char head[128];
        snprintf(head, sizeof(head), "GET /live?%s HTTP/1.1\r\n\r\n", cases[i].q);
        struct http_request req;
        ASSERT(parse(head, &req) > 0);
        uint64_t v = 12345;
        ASSERT_EQ_INT(http_query_u64(&req, "from", UINT64_MAX, &v), cases[i].rc);
        ASSERT_EQ_UINT(v, cases[i].rc == 1 ? cases[i].v : 12345);
    }
    struct http_request req;
    uint64_t v = 0;
    ASSERT(parse("GET /live?burst=30000 HTTP/1.1\r\n\r\n", &req) > 0);
    ASSERT_EQ_INT(http_query_u64(&req, "burst", 30000, &v), 1);
    ASSERT_EQ_UINT(v, 30000);
    ASSERT(parse("GET /live?burst=30001 HTTP/1.1\r\n\r\n", &req) > 0);
    ASSERT_EQ_INT(http_query_u64(&req, "burst", 30000, &v), -1); /* past the maximum */
}

TEST(unescape_issue10)
{
    char out[64];
    /* what a browser sends for a key with + / = % and a space */
    ASSERT_EQ_INT(unescape("p%2Ba%2Fs%3Ds%25w%20o", 0, out, sizeof(out)), 11);
    ASSERT_EQ_STR(out, "p+a/s=s%w o");
    ASSERT_EQ_INT(unescape("Zm9v+YmFy/eg==", 0, out, sizeof(out)), 14); /* pasted as it is */
    ASSERT_EQ_STR(out, "Zm9v+YmFy/eg==");
    ASSERT_EQ_INT(unescape("a+b%2b", 1, out, sizeof(out)), 4); /* a form value */
    ASSERT_EQ_STR(out, "a b+");
    ASSERT_EQ_INT(unescape("caf%c3%A9", 0, out, sizeof(out)), 5);
    ASSERT_EQ_STR(out, "caf\xc3\xa9");
    ASSERT_EQ_INT(unescape("", 0, out, sizeof(out)), 0);
    ASSERT_EQ_STR(out, "");
    ASSERT_EQ_INT(unescape("abcd", 0, out, 5), 4); /* exact fit */
    const char *bad[] = {"%", "%4", "a%zz", "%g0", "%00", "a%0Ab", "%1f", "x%", "%%41"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(out, "junk");
        int got = unescape(bad[i], 0, out, sizeof(out));
        if (got != -1)
            TEST_FAIL_("unescape \"%s\": %d, want -1", bad[i], got);
        ASSERT_EQ_STR(out, "");
    }
    ASSERT_EQ_INT(unescape("abcde", 0, out, 5), -1); /* no room for the NUL */
    ASSERT_EQ_INT(unescape("a", 0, out, 0), -1);
}

/* ---- names ---------------------------------------------------------------------------------- */

TEST(method_and_status_names)
{
    ASSERT_EQ_STR(http_method_name(HTTP_GET), "GET");
    ASSERT_EQ_STR(http_method_name(HTTP_PUT), "PUT");
    ASSERT_EQ_STR(http_method_name(HTTP_SOURCE), "SOURCE");
    ASSERT_EQ_STR(http_method_name(HTTP_OPTIONS), "OPTIONS");
    ASSERT_EQ_STR(http_method_name(-1), "<unknown>");
    ASSERT_EQ_STR(http_method_name(1000), "<unknown>");
    static const int codes[] = {100, 200, 204, 400, 401, 403, 404, 405, 409, 415, 431, 500, 503};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        ASSERT(strcmp(http_status_reason(codes[i]), "Unknown") != 0);
    ASSERT_EQ_STR(http_status_reason(200), "OK");
    ASSERT_EQ_STR(http_status_reason(431), "Request Header Fields Too Large");
    ASSERT_EQ_STR(http_status_reason(503), "Service Unavailable");
    ASSERT_EQ_STR(http_status_reason(599), "Unknown");
}

int main(void)
{
    return RUN_TESTS();
}
