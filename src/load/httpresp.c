/*
 * load/httpresp: see httpresp.h. The head is gathered whole (it is small) and parsed once;
 * the body is a small state machine that never looks past its own framing.
 */
#include "load/httpresp.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void httpresp_init(struct httpresp *r, int head_only)
{
    r->state = HR_HEAD;
    r->status = 0;
    r->keep = 0;
    r->head_only = head_only;
    r->left = 0;
    r->body = 0;
    r->head_len = r->line_len = 0;
    r->age[0] = '\0';
}

/* Trims spaces and tabs around [*s, *e). */
static void trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

static int has_token(const char *v, size_t len, const char *tok)
{
    size_t t = strlen(tok);
    for (size_t i = 0; i + t <= len; i++)
        if (strncasecmp(v + i, tok, t) == 0 && (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + t == len || v[i + t] == ',' || v[i + t] == ' '))
            return 1;
    return 0;
}

/* Parses the gathered head. Returns 0, or -1 if malformed. */
static int parse_head(struct httpresp *r)
{
    const char *h = r->head, *end = r->head + r->head_len;
    const char *nl = memchr(h, '\n', r->head_len);
    if (!nl || nl - h < 12 || memcmp(h, "HTTP/1.", 7) != 0 || (h[7] != '0' && h[7] != '1') ||
        h[8] != ' ')
        return -1;
    int minor = h[7] - '0';
    for (int i = 9; i < 12; i++)
        if (h[i] < '0' || h[i] > '9')
            return -1;
    if (h[12] != ' ' && h[12] != '\r' && h[12] != '\n')
        return -1;
    r->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    if (r->status < 100)
        return -1;
    int64_t clen = -1;
    int chunked = 0, close = minor == 0, keepalive = 0;
    for (const char *line = nl + 1; line < end;) {
        const char *le = memchr(line, '\n', (size_t)(end - line));
        if (!le)
            return -1;
        const char *lend = le;
        if (lend > line && lend[-1] == '\r')
            lend--;
        if (lend == line)
            break; /* the blank line */
        const char *colon = memchr(line, ':', (size_t)(lend - line));
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t')
            return -1; /* no name, or an obsolete folded line */
        const char *v = colon + 1, *ve = lend;
        trim(&v, &ve);
        size_t nlen = (size_t)(colon - line), vlen = (size_t)(ve - v);
        if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
            int64_t x = 0;
            if (vlen == 0 || vlen > 15)
                return -1;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return -1;
                x = x * 10 + (v[i] - '0');
            }
            if (clen >= 0 && clen != x)
                return -1; /* two different lengths */
            clen = x;
        } else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
            /* chunked must be the final coding; any other framing is refused */
            if (!(vlen >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0))
                return -1;
            chunked = 1;
        } else if (nlen == 10 && strncasecmp(line, "Connection", 10) == 0) {
            close |= has_token(v, vlen, "close");
            keepalive |= has_token(v, vlen, "keep-alive");
        } else if (nlen == 3 && strncasecmp(line, "Age", 3) == 0) {
            snprintf(r->age, sizeof(r->age), "%.*s", (int)(vlen < 15 ? vlen : 15), v);
        }
        line = le + 1;
    }
    if (chunked && clen >= 0)
        return -1; /* both framings: refused, as a request smuggling guard would */
    if (minor == 0 && keepalive)
        close = 0;
    r->keep = !close;
    if (r->head_only || r->status == 204 || r->status == 304) {
        r->state = HR_DONE;
    } else if (chunked) {
        r->state = HR_CHUNK_SIZE;
        r->line_len = 0;
        r->left = 0;
        r->digits = r->ext = 0;
    } else if (clen >= 0) {
        r->left = clen;
        r->state = clen ? HR_BODY_LEN : HR_DONE;
    } else {
        r->state = HR_BODY_CLOSE;
        r->keep = 0;
    }
    return 0;
}

long httpresp_feed(struct httpresp *r, const uint8_t *p, size_t n,
                   void (*on_body)(void *arg, const uint8_t *b, size_t len), void *arg)
{
    size_t i = 0;
    while (i < n && r->state != HR_DONE) {
        switch (r->state) {
        case HR_HEAD: {
            if (r->head_len >= sizeof(r->head) - 1)
                return -1;
            char c = (char)p[i++];
            r->head[r->head_len++] = c;
            size_t k = r->head_len;
            if (c == '\n' && ((k >= 2 && r->head[k - 2] == '\n') ||
                              (k >= 3 && r->head[k - 2] == '\r' && r->head[k - 3] == '\n'))) {
                r->head[k] = '\0';
                if (parse_head(r) < 0)
                    return -1;
                if (r->status < 200) { /* 100 Continue and the like: the real one follows */
                    int ho = r->head_only;
                    httpresp_init(r, ho);
                }
            }
            break;
        }
        case HR_BODY_LEN:
        case HR_CHUNK_DATA: {
            size_t take = n - i;
            if ((int64_t)take > r->left)
                take = (size_t)r->left;
            if (on_body)
                on_body(arg, p + i, take);
            r->body += take;
            r->left -= (int64_t)take;
            i += take;
            if (r->left == 0)
                r->state = r->state == HR_BODY_LEN ? HR_DONE : HR_CHUNK_CRLF;
            break;
        }
        case HR_BODY_CLOSE:
            if (on_body)
                on_body(arg, p + i, n - i);
            r->body += n - i;
            i = n;
            break;
        case HR_CHUNK_SIZE: {
            /* hex digits, then optional extensions after ';' (skipped), then CRLF */
            char c = (char)p[i++];
            if (++r->line_len > HTTPRESP_LINE_MAX)
                return -1;
            int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
            if (c == '\n') {
                if (!r->digits)
                    return -1;
                r->state = r->left ? HR_CHUNK_DATA : HR_TRAILER;
                r->line_len = 0;
            } else if (r->ext) {
                /* an extension, or the CR: skipped, bounded by the line */
            } else if (hex) {
                if (r->digits++ >= 15)
                    return -1;
                r->left = r->left * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            } else if ((c == ';' || c == '\r' || c == ' ' || c == '\t') && r->digits) {
                r->ext = 1;
            } else {
                return -1;
            }
            break;
        }
        case HR_CHUNK_CRLF: {
            char c = (char)p[i++];
            if (c == '\n') {
                r->state = HR_CHUNK_SIZE;
                r->line_len = 0;
                r->left = 0;
                r->digits = r->ext = 0;
            } else if (c != '\r') {
                return -1;
            }
            break;
        }
        case HR_TRAILER: {
            /* trailer fields until a blank line; line_len counts the current line */
            char c = (char)p[i++];
            if (c == '\n') {
                if (r->line_len == 0)
                    r->state = HR_DONE;
                r->line_len = 0;
            } else if (c != '\r' && ++r->line_len > HTTPRESP_LINE_MAX) {
                return -1;
            }
            break;
        }
        default:
            return -1;
        }
    }
    return (long)i;
}

int httpresp_eof(struct httpresp *r)
{
    if (r->state == HR_BODY_CLOSE)
        r->state = HR_DONE;
    return r->state == HR_DONE ? 0 : -1;
}
