/*
 * fuzz_http: libFuzzer target for the HTTP request-head parser (src/http/request.c).
 *
 * Each input is parsed whole, then fed again a byte at a time the way a connection would (same
 * buffer, growing, scan_from = the last incomplete length); both must agree, which checks that
 * the incremental scan never misses or invents an end of head. A parsed head is checked for its
 * invariants (every pointer inside the head, limits held) and then run through the helpers a
 * handler would use: header lookup, token lists, Basic auth, numeric query values and path
 * decoding.
 * libFuzzer hands over an exact-size heap copy, so ASan catches a read past the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/request.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

/* 1 if [p, p + n) lies inside [buf, buf + len). */
static int inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void check_parsed(const char *buf, size_t size, const struct http_request *req, int r)
{
    size_t head = (size_t)r;
    CHECK(req->head_len == head && head <= size && head <= HTTP_MAX_HEAD);
    CHECK(req->num_headers <= HTTP_MAX_HEADERS);
    CHECK(req->version_major == 1 && (req->version_minor == 0 || req->version_minor == 1));
    CHECK(req->path != NULL && req->query != NULL);
    CHECK(inside(req->path, req->path_len, buf, head) ||
          (req->path_len == 1 && req->path[0] == '/'));
    CHECK(req->query_len == 0 || inside(req->query, req->query_len, buf, head));
    CHECK(req->content_length >= -1);
    CHECK(!(req->chunked && req->content_length >= 0));
    CHECK(http_method_name(req->method) != NULL);

    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        CHECK(h->name_len > 0 && inside(h->name, h->name_len, buf, head));
        CHECK(h->value_len == 0 || inside(h->value, h->value_len, buf, head));
        char name[HTTP_MAX_HEAD];
        memcpy(name, h->name, h->name_len);
        name[h->name_len] = '\0';
        const struct http_header *f = http_find_header(req, name);
        CHECK(f != NULL && f <= h && f->name_len == h->name_len);
        /* the first element of a list value (values come without leading OWS) is a token */
        size_t t = 0;
        while (t < h->value_len && h->value[t] != ',')
            t++;
        while (t > 0 && (h->value[t - 1] == ' ' || h->value[t - 1] == '\t'))
            t--;
        if (t > 0) {
            char tok[HTTP_MAX_HEAD];
            memcpy(tok, h->value, t);
            tok[t] = '\0';
            if (strlen(tok) == t) /* no NUL can be there, but say so */
                CHECK(http_header_has_token(req, name, tok) == 1);
        }
    }
    (void)http_header_has_token(req, "Connection", "keep-alive");
    (void)http_header_has_token(req, "Expect", "100-continue");

    char user[64], pass[64];
    if (http_basic_auth(req, user, sizeof(user), pass, sizeof(pass)) == 0)
        CHECK(strlen(user) < sizeof(user) && strlen(pass) < sizeof(pass));
    char tiny_user[4], tiny_pass[4];
    if (http_basic_auth(req, tiny_user, sizeof(tiny_user), tiny_pass, sizeof(tiny_pass)) == 0)
        CHECK(strlen(tiny_user) < 4 && strlen(tiny_pass) < 4);

    char out[HTTP_MAX_HEAD];
    int n = http_decode_path(req->path, req->path_len, out, sizeof(out));
    if (n >= 0) {
        CHECK((size_t)n == strlen(out) && out[0] == '/');
        CHECK(!strstr(out, "/../") && !strstr(out, "/./"));
        CHECK(!(n >= 3 && strcmp(out + n - 3, "/..") == 0));
        CHECK(!(n >= 2 && strcmp(out + n - 2, "/.") == 0));
    }
    /* the listener stream's from= and burst= (issue 11) */
    uint64_t v = 7;
    int q = http_query_u64(req, "from", UINT64_MAX, &v);
    CHECK(q == 1 || (q <= 0 && q >= -1 && v == 7));
    q = http_query_u64(req, "burst", 30000, &v);
    CHECK(q != 1 || v <= 30000);
    char small[8];
    n = http_decode_path(req->path, req->path_len, small, sizeof(small));
    CHECK(n < (int)sizeof(small));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct http_request req;
    int r = http_parse_request(buf, size, 0, &req);
    CHECK(r > 0 || r == -1 || r == -2 || r == -3);
    CHECK(r != -2 || size < HTTP_MAX_HEAD);
    if (r > 0)
        check_parsed(buf, size, &req, r);

    /* a byte at a time, as a trickling peer would send it */
    static struct http_request inc;
    size_t scan_from = 0;
    int r2 = -2;
    for (size_t n = 1; n <= size && r2 == -2; n++) {
        r2 = http_parse_request(buf, n, scan_from, &inc);
        if (r2 == -2)
            scan_from = n;
    }
    if (size == 0)
        r2 = http_parse_request(buf, 0, 0, &inc);
    CHECK(r2 == r);
    if (r > 0) {
        CHECK(inc.num_headers == req.num_headers && inc.method == req.method);
        CHECK(inc.path_len == req.path_len && inc.query_len == req.query_len);
    }
    return 0;
}
