/*
 * http/request: request-head parsing. The design note is in request.h; what follows are the
 * reasons for the parts that are not obvious.
 *
 * - End of head. http_parser ends a line at LF (CR optional) and the head at an empty line, so
 *   the head ends at the first LF followed by LF or CRLF. That only matches http_parser's own
 *   view if every CR is followed by LF, which is why a bare CR is invalid here: with it, "where
 *   does the head end" could have two answers, the stuff request smuggling is made of.
 * - http_parser runs over exactly the head bytes, with on_headers_complete returning 0. It then
 *   applies all its framing rules (two Content-Lengths, Content-Length with Transfer-Encoding,
 *   Transfer-Encoding not ending in chunked) exactly as it would for a whole message, and stops
 *   at the end of the input, before any body byte.
 * - Debian builds http_parser with HTTP_PARSER_STRICT=0, which accepts a space inside a header
 *   name ("Content-Length : 5" becomes a header named "Content-Length ") and folds obs-fold
 *   continuation lines into a second value callback. We check names against the RFC 9110 token
 *   alphabet ourselves and reject a value callback that does not follow a name callback.
 */
#include "http/request.h"

#include <limits.h>
#include <string.h>

#include <http_parser.h>
#include <openssl/evp.h>

/* Which callback ran last, to tell obs-fold (value after value) from a new header line. */
enum parse_last { LAST_NONE, LAST_FIELD, LAST_VALUE };

/* Per-call state shared with the http_parser callbacks through parser->data. */
struct parse_ctx {
    struct http_request *req;
    const char *url;
    size_t url_len;
    int err; /* result to return once a callback has stopped the parser; 0 if none did */
    enum parse_last last;
    int messages;     /* on_message_begin count: more than one is a second request in the head */
    int headers_done; /* on_headers_complete ran */
};

/* RFC 9110 tchar: "!#$%&'*+-.^_`|~", DIGIT, ALPHA. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar / SP / HTAB, obs-text allowed: anything but controls (other than HTAB) and DEL. */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* 1 if the <n> bytes at <a> and <b> are equal ignoring ASCII case. Reads exactly <n> bytes of
 * each (no NUL terminator needed). */
static int mem_case_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int parse_stop(struct parse_ctx *ctx, int err)
{
    ctx->err = err;
    return 1; /* non-zero makes http_parser stop with an HPE_CB_* error */
}

static int on_message_begin(http_parser *p)
{
    struct parse_ctx *ctx = p->data;
    if (++ctx->messages > 1)
        return parse_stop(ctx, HTTP_PARSE_INVALID);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct parse_ctx *ctx = p->data;
    /* Over one buffer http_parser reports the URL in one piece; a second piece is not ours. */
    if (ctx->url)
        return parse_stop(ctx, HTTP_PARSE_INVALID);
    ctx->url = at;
    ctx->url_len = n;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct parse_ctx *ctx = p->data;
    struct http_request *req = ctx->req;
    if (ctx->headers_done || ctx->last == LAST_FIELD)
        return parse_stop(ctx, HTTP_PARSE_INVALID);
    if (req->num_headers == HTTP_MAX_HEADERS)
        return parse_stop(ctx, HTTP_PARSE_TOO_LARGE);
    if (n == 0)
        return parse_stop(ctx, HTTP_PARSE_INVALID);
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)at[i]))
            return parse_stop(ctx, HTTP_PARSE_INVALID);
    req->headers[req->num_headers].name = at;
    req->headers[req->num_headers].name_len = n;
    ctx->last = LAST_FIELD;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct parse_ctx *ctx = p->data;
    struct http_request *req = ctx->req;
    /* A value that does not follow a name is a continuation line (obs-fold): RFC 9112 5.2 lets
     * a server reject it, and zero-copy we could not join the pieces anyway. */
    if (ctx->last != LAST_FIELD)
        return parse_stop(ctx, HTTP_PARSE_INVALID);
    for (size_t i = 0; i < n; i++)
        if (!is_value_char((unsigned char)at[i]))
            return parse_stop(ctx, HTTP_PARSE_INVALID);
    while (n > 0 && (at[n - 1] == ' ' || at[n - 1] == '\t'))
        n--; /* http_parser strips leading OWS only */
    req->headers[req->num_headers].value = at;
    req->headers[req->num_headers].value_len = n;
    req->num_headers++;
    ctx->last = LAST_VALUE;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct parse_ctx *ctx = p->data;
    struct http_request *req = ctx->req;
    if (ctx->headers_done || ctx->last == LAST_FIELD)
        return parse_stop(ctx, HTTP_PARSE_INVALID);
    ctx->headers_done = 1;
    /* Taken here: once the message completes, http_parser may reset its flags. */
    req->method = (int)p->method;
    req->version_major = p->http_major;
    req->version_minor = p->http_minor;
    if (p->flags & F_CONTENTLENGTH) {
        if (p->content_length > INT64_MAX)
            return parse_stop(ctx, HTTP_PARSE_INVALID);
        req->content_length = (int64_t)p->content_length;
    } else {
        req->content_length = -1;
    }
    req->chunked = (p->flags & F_CHUNKED) != 0;
    /* RFC 9112 6.3: a request's Transfer-Encoding must end in chunked. http_parser says so too,
     * but only once it gets to the body; say it here, where the rule is read. */
    if (p->uses_transfer_encoding && !req->chunked)
        return parse_stop(ctx, HTTP_PARSE_INVALID);
    req->upgrade = p->upgrade;
    req->keep_alive = http_should_keep_alive(p);
    /* 0, not 1: let http_parser judge the framing as for any request; it stops at the end of
     * our input, which is the end of the head, so no body byte is ever parsed. */
    return 0;
}

static const http_parser_settings parse_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

/* Splits the request target into path and query. Returns 0 or HTTP_PARSE_INVALID. */
static int split_target(struct http_request *req, const char *url, size_t url_len)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    int connect = req->method == HTTP_CONNECT;
    if (http_parser_parse_url(url, url_len, connect, &u) != 0)
        return HTTP_PARSE_INVALID;
    req->query = "";
    req->query_len = 0;
    if (connect) { /* authority-form: keep it whole for the logs; the caller answers 405 */
        req->path = url;
        req->path_len = url_len;
        return 0;
    }
    if (url[0] == '*') { /* asterisk-form is exactly "*" and only for OPTIONS (RFC 9112 3.2.4) */
        if (url_len != 1 || req->method != HTTP_OPTIONS)
            return HTTP_PARSE_INVALID;
    }
    if (u.field_set & (1 << UF_PATH)) {
        req->path = url + u.field_data[UF_PATH].off;
        req->path_len = u.field_data[UF_PATH].len;
    } else { /* absolute-form with an empty path: "http://host" means "/" */
        req->path = "/";
        req->path_len = 1;
    }
    if (u.field_set & (1 << UF_QUERY)) {
        req->query = url + u.field_data[UF_QUERY].off;
        req->query_len = u.field_data[UF_QUERY].len;
    }
    return 0;
}

/* Checks <buf>[<from>..<to>) for bytes that make a head invalid: NUL, or CR not followed by LF
 * (the byte after <to> - 1 is looked at only if it is below <len>). Returns 0 or -1. */
static int check_bytes(const char *buf, size_t from, size_t to, size_t len)
{
    for (size_t i = from; i < to; i++) {
        if (buf[i] == '\0')
            return -1;
        if (buf[i] == '\r' && i + 1 < len && buf[i + 1] != '\n')
            return -1;
    }
    return 0;
}

int http_parse_request(const char *buf, size_t len, size_t scan_from, struct http_request *req)
{
    size_t lim = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
    size_t head_len = 0;
    if (scan_from > len)
        scan_from = len;
    /* An end "\n\r\n" is 3 bytes: one that ends in new bytes starts at scan_from - 2 or later. */
    for (size_t i = scan_from > 3 ? scan_from - 3 : 0; i < lim; i++) {
        char c = buf[i];
        if (c == '\n') {
            if (i + 1 < len && buf[i + 1] == '\n') {
                head_len = i + 2;
                break;
            }
            if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
                head_len = i + 3;
                break;
            }
        } else if (c == '\0' || (c == '\r' && i + 1 < lim && buf[i + 1] != '\n')) {
            /* invalid whatever follows: say so now. A CR at the last byte of the limit is not
             * judged: whatever follows it, the head is too large, and a peer sending the same
             * bytes in pieces must get the same answer as one sending them at once. */
            return HTTP_PARSE_INVALID;
        }
    }
    if (head_len == 0)
        return len >= HTTP_MAX_HEAD ? HTTP_PARSE_TOO_LARGE : HTTP_PARSE_INCOMPLETE;
    if (head_len > HTTP_MAX_HEAD)
        return HTTP_PARSE_TOO_LARGE;
    /* Once per head, and not trusting <scan_from>: the bytes before it too. */
    if (check_bytes(buf, 0, head_len, head_len) != 0)
        return HTTP_PARSE_INVALID;

    memset(req, 0, sizeof(*req));
    struct parse_ctx ctx = {.req = req, .last = LAST_NONE};
    http_parser parser;
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &ctx;
    size_t n = http_parser_execute(&parser, &parse_settings, buf, head_len);
    if (ctx.err != 0)
        return ctx.err;
    if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || n != head_len || !ctx.headers_done || !ctx.url)
        return HTTP_PARSE_INVALID;
    if (req->version_major != 1 || (req->version_minor != 0 && req->version_minor != 1))
        return HTTP_PARSE_INVALID;
    if (split_target(req, ctx.url, ctx.url_len) != 0)
        return HTTP_PARSE_INVALID;
    req->head_len = head_len;
    return (int)head_len;
}

const struct http_header *http_find_header(const struct http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && mem_case_eq(h->name, name, n))
            return h;
    }
    return NULL;
}

int http_header_has_token(const struct http_request *req, const char *name, const char *token)
{
    size_t name_len = strlen(name), token_len = strlen(token);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len != name_len || !mem_case_eq(h->name, name, name_len))
            continue;
        const char *v = h->value, *end = h->value + h->value_len;
        while (v < end) {
            const char *comma = memchr(v, ',', (size_t)(end - v));
            const char *e = comma ? comma : end;
            const char *s = v;
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            const char *t = e;
            while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t)(t - s) == token_len && mem_case_eq(s, token, token_len))
                return 1;
            v = comma ? comma + 1 : end;
        }
    }
    return 0;
}

/* Longest base64 credential we decode; anything longer is refused, not truncated. */
#define BASIC_B64_MAX 1024

static int is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int http_basic_auth(const struct http_request *req, char *user, size_t user_cap, char *pass,
                    size_t pass_cap)
{
    if (user_cap > 0)
        user[0] = '\0';
    if (pass_cap > 0)
        pass[0] = '\0';

    const struct http_header *h = NULL;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *x = &req->headers[i];
        if (x->name_len == 13 && mem_case_eq(x->name, "authorization", 13)) {
            if (h)
                return -1; /* two sets of credentials: which one is meant is anyone's guess */
            h = x;
        }
    }
    if (!h || h->value_len < 6 || !mem_case_eq(h->value, "basic", 5) ||
        (h->value[5] != ' ' && h->value[5] != '\t'))
        return -1;
    const char *b64 = h->value + 5;
    size_t b64_len = h->value_len - 5;
    while (b64_len > 0 && (*b64 == ' ' || *b64 == '\t')) {
        b64++;
        b64_len--;
    }
    if (b64_len == 0 || b64_len % 4 != 0 || b64_len > BASIC_B64_MAX)
        return -1;
    size_t pad = 0;
    for (size_t i = 0; i < b64_len; i++) {
        unsigned char c = (unsigned char)b64[i];
        if (c == '=' && i >= b64_len - 2 && (i == b64_len - 1 || b64[i + 1] == '='))
            pad++;
        else if (!is_b64_char(c))
            return -1;
    }

    unsigned char dec[BASIC_B64_MAX / 4 * 3];
    int rc = -1;
    int got = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)b64_len);
    if (got < 0 || (size_t)got < pad)
        goto out;
    size_t dec_len = (size_t)got - pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    const unsigned char *colon = memchr(dec, ':', dec_len);
    if (!colon)
        goto out;
    for (size_t i = 0; i < dec_len; i++)
        if (dec[i] < 0x20 || dec[i] == 0x7f) /* RFC 7617: no control characters */
            goto out;
    size_t user_len = (size_t)(colon - dec), pass_len = dec_len - user_len - 1;
    if (user_len >= user_cap || pass_len >= pass_cap)
        goto out;
    memcpy(user, dec, user_len);
    user[user_len] = '\0';
    memcpy(pass, colon + 1, pass_len);
    pass[pass_len] = '\0';
    rc = 0;
out:
    explicit_bzero(dec, sizeof(dec));
    return rc;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)ascii_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* 1 if the decoded path <p>[0..<n>) has a "." or ".." segment. <p>[0] is '/'. */
static int has_dot_segment(const char *p, size_t n)
{
    size_t seg = 1; /* start of the current segment, just after a '/' */
    for (size_t i = 1; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        size_t sl = i - seg;
        if ((sl == 1 && p[seg] == '.') || (sl == 2 && p[seg] == '.' && p[seg + 1] == '.'))
            return 1;
        seg = i + 1;
    }
    return 0;
}

int http_decode_path(const char *path, size_t len, char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    out[0] = '\0';
    if (len == 0 || path[0] != '/')
        return -1;
    if (cap > (size_t)INT_MAX)
        cap = (size_t)INT_MAX; /* the result must fit an int */
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%') {
            if (len - i < 3)
                goto bad;
            int hi = hex_value((unsigned char)path[i + 1]);
            int lo = hex_value((unsigned char)path[i + 2]);
            if (hi < 0 || lo < 0)
                goto bad;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap)
            goto bad;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    if (has_dot_segment(out, o))
        goto bad;
    return (int)o;
bad:
    out[0] = '\0';
    return -1;
}

int http_query_value(const struct http_request *req, const char *name, const char **val,
                     size_t *len)
{
    size_t nlen = strlen(name);
    const char *q = req->query, *end = req->query + req->query_len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - q) > nlen && memcmp(q, name, nlen) == 0 && q[nlen] == '=') {
            *val = q + nlen + 1;
            *len = (size_t)(stop - *val);
            return 0;
        }
        q = stop + 1;
    }
    return -1;
}

int http_query_u64(const struct http_request *req, const char *name, uint64_t max,
                   uint64_t *out)
{
    const char *v;
    size_t len;
    if (http_query_value(req, name, &v, &len) < 0)
        return 0;
    if (len == 0 || len > 20)
        return -1;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    if (n > max)
        return -1;
    *out = n;
    return 1;
}

int http_unescape(const char *in, size_t len, int plus_is_space, char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    if (cap > (size_t)INT_MAX)
        cap = (size_t)INT_MAX; /* the result must fit an int */
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '+' && plus_is_space) {
            c = ' ';
        } else if (c == '%') {
            int hi = len - i >= 3 ? hex_value((unsigned char)in[i + 1]) : -1;
            int lo = len - i >= 3 ? hex_value((unsigned char)in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                goto bad;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c < 0x20 || o + 1 >= cap)
            goto bad;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (int)o;
bad:
    out[0] = '\0';
    return -1;
}

const char *http_method_name(int method)
{
    if (method < 0)
        return "<unknown>";
    return http_method_str((enum http_method)method);
}

const char *http_status_reason(int status)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Unknown";
}
