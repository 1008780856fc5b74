/*
 * http/request: HTTP/1.x request-head parsing on top of libhttp_parser.
 *
 * The parser is stateless and zero-copy, in the picohttpparser mould: the caller keeps the bytes
 * of a connection in its own buffer and calls http_parse_request() again whenever more arrive;
 * the result points into that buffer. Nothing is allocated and nothing is kept between calls.
 *
 * The work is split so that a head trickled a byte at a time costs O(n) overall:
 *   1. a cheap scan of the bytes not seen before (from <scan_from>) for the end of the head
 *      (an empty line: "\r\n\r\n", "\n\n" and the mixed forms http_parser also accepts), and for
 *      bytes that make the head invalid whatever follows (NUL, CR not followed by LF);
 *   2. once the end is there, one http_parser run over exactly the head bytes, so a PUT/SOURCE
 *      body that follows is never looked at, then our own checks where http_parser (built
 *      non-strict in Debian) is laxer than RFC 9112: token-only header names, no obs-fold,
 *      HTTP/1.0 or 1.1 only, Transfer-Encoding must end in chunked.
 *
 *   caller buffer:  | request line | header lines ... | \r\n | body (not parsed) ...
 *                   ^buf                                     ^buf + head_len
 *
 * Limits: a head is at most HTTP_MAX_HEAD bytes and HTTP_MAX_HEADERS header lines; past either
 * the result is -3 and the server answers 431 and closes.
 */
#ifndef ROSTRUM_HTTP_REQUEST_H
#define ROSTRUM_HTTP_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define HTTP_MAX_HEAD 8192 /* bytes, request line + headers + final blank line */
#define HTTP_MAX_HEADERS 48

/* Results of http_parse_request() besides a head length. */
#define HTTP_PARSE_INVALID (-1)    /* answer 400 and close */
#define HTTP_PARSE_INCOMPLETE (-2) /* read more, call again */
#define HTTP_PARSE_TOO_LARGE (-3)  /* answer 431 and close */

/* One header line. Name as sent (case kept); value without leading and trailing SP/HTAB. Both
 * point into the caller's buffer and are not NUL-terminated. */
struct http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* A parsed request head. Filled by http_parse_request(); every pointer borrows the caller's
 * buffer (or, for path, a static string — see below), so the struct is valid only while that
 * buffer is unchanged. The caller owns the struct itself (it is ~1.6 KiB; keep one per
 * connection or on the stack). */
struct http_request {
    int method; /* enum http_method: HTTP_GET, HTTP_HEAD, HTTP_PUT, HTTP_SOURCE, HTTP_OPTIONS... */
    /* The URL path as sent (not decoded), without query or fragment. For an absolute-form
     * target ("http://host/p") the path part; if that is empty, the static string "/". For
     * OPTIONS the asterisk-form "*". For CONNECT the authority-form target ("host:port"). */
    const char *path;
    size_t path_len;
    const char *query; /* after '?', without it; "" (static) and len 0 if none; never NULL */
    size_t query_len;
    int version_major, version_minor; /* 1.0 or 1.1: anything else is rejected */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t num_headers;
    size_t head_len; /* bytes of the head, including the blank line; the body starts here */
    /* Framing, as http_parser judged it. A request with both Content-Length and
     * Transfer-Encoding, with two Content-Lengths, or with a Transfer-Encoding that does not end
     * in "chunked" is rejected, so at most one of these describes a body. */
    int64_t content_length; /* -1 if no Content-Length header */
    int chunked;            /* Transfer-Encoding: ..., chunked */
    int upgrade;            /* an Upgrade header (e.g. WebSocket) or CONNECT */
    int keep_alive;         /* http_should_keep_alive(): 1.1 without "close", 1.0 with keep-alive */
};

/* Parses the request head at the start of <buf>[0..<len>). Zero-copy: pointers in <req> point
 * into <buf>. <scan_from> is the <len> of the previous call on this buffer that returned -2 (0 on
 * the first call); only bytes from <scan_from> - 3 on are searched for the end of the head, so
 * feeding a head a byte at a time costs O(n) in total. A larger <scan_from> than <len> is
 * clamped. The result does not depend on <scan_from> as long as it is honest.
 * Returns:
 *   > 0  the head length (== req->head_len); a body, if any, starts at buf + result;
 *   -2   incomplete: no blank line yet and <len> < HTTP_MAX_HEAD (req is not filled);
 *   -1   invalid: malformed request line or header, unknown method, version other than 1.0 and
 *        1.1, obs-fold, NUL or bare CR in the head, bad framing headers (see above);
 *   -3   too large: <len> >= HTTP_MAX_HEAD with no end of head in the first HTTP_MAX_HEAD bytes,
 *        or more than HTTP_MAX_HEADERS headers.
 * Whatever the result, no byte at or past buf + len is read, and no byte past the head is
 * parsed. <req> is scratch on every result but > 0. */
int http_parse_request(const char *buf, size_t len, size_t scan_from, struct http_request *req);

/* Case-insensitive lookup of header <name> (a NUL-terminated string) in <req>. Returns the first
 * match or NULL. */
const struct http_header *http_find_header(const struct http_request *req, const char *name);

/* Returns 1 if a header <name> of <req> lists <token> as one of its comma-separated elements
 * (compared case-insensitively, OWS around elements ignored; every header line of that name is
 * searched, as repeated lines form one list), else 0. E.g. ("Expect", "100-continue"),
 * ("Connection", "upgrade"). */
int http_header_has_token(const struct http_request *req, const char *name, const char *token);

/* Decodes "Authorization: Basic base64(user:pass)" of <req> (scheme case-insensitive) into
 * <user> (<user_cap> bytes) and <pass> (<pass_cap> bytes), both NUL-terminated; the user is
 * what precedes the first ':', the password may be empty. Returns 0, or -1 if the header is
 * absent or repeated, the scheme is not Basic, the base64 is malformed (strict alphabet, length a
 * multiple of 4, '=' only as final padding), there is no ':', the decoded text has a control
 * character, or a part does not fit. On -1 <user> and <pass> are set to "" (if they have room).
 * The decoded copy on the stack is wiped before returning. */
int http_basic_auth(const struct http_request *req, char *user, size_t user_cap, char *pass,
                    size_t pass_cap);

/* Percent-decodes the <len> bytes at <path> into <out> (<cap> bytes) and NUL-terminates it.
 * Returns the decoded length, or -1 if the path does not start with '/', has a malformed escape
 * ("%zz", "%4"), decodes to a NUL byte, has a "." or ".." segment once decoded ("/./",
 * "/../", or at the end: "/.", "/.."; checked after decoding so "%2e%2e" and "%2F" cannot
 * smuggle one), or does not fit in <cap> with its NUL. Other bytes are copied as they are. */
int http_decode_path(const char *path, size_t len, char *out, size_t cap);

/* Finds the first parameter <name> ("name=value", '&'-separated) of <req>'s query string and
 * points <val>, <len> at its value, still encoded. Returns 0, or -1 if there is none. */
int http_query_value(const struct http_request *req, const char *name, const char **val,
                     size_t *len);

/* Reads the first parameter <name> of <req>'s query as a decimal number of at most <max>:
 * ASCII digits only (no sign, space, escape or exponent), 1 to 20 of them, no overflow.
 * Returns 1 with <*out> set, 0 if there is no such parameter (<*out> untouched), or -1 if its
 * value is not such a number. */
int http_query_u64(const struct http_request *req, const char *name, uint64_t max,
                   uint64_t *out);

/* Percent-decodes the <len> bytes at <in> (a query value) into <out> (<cap> bytes) and
 * NUL-terminates it; with <plus_is_space>, '+' decodes to ' ' (HTML forms, URLSearchParams),
 * else it stays '+' (decodeURIComponent: a base64 secret pasted into the address bar keeps its
 * '+'). Returns the decoded length, or -1 for a malformed escape ("%zz", "%4"), a decoded
 * control character (NUL included), or a result that does not fit with its NUL. */
int http_unescape(const char *in, size_t len, int plus_is_space, char *out, size_t cap);

/* Name of <method> (an enum http_method) for logs, e.g. "GET"; "<unknown>" if out of range. */
const char *http_method_name(int method);

/* Standard reason phrase for <status>: at least 100 101 200 204 206 301 302 304 400 401 403 404
 * 405 408 409 411 413 414 415 429 431 500 501 503 505; "Unknown" for others. Never NULL. */
const char *http_status_reason(int status);

#endif
