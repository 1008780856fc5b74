/*
 * load/httpresp: an incremental reader of HTTP/1.1 responses for "rostrum-load hls", which
 * keeps connections alive across requests (as a browser does, and as a cache in front of the
 * server expects): the head (status, Content-Length, Transfer-Encoding: chunked, Connection),
 * then a body framed by its length, by chunks, or by the end of the connection (RFC 9112).
 *
 * Fed bytes as they arrive, in any split; it never reads past the response it is reading, so
 * the next response on the connection starts at the byte it stops at. Bounded: a head is at
 * most HTTPRESP_HEAD_MAX bytes, a chunk-size line HTTPRESP_LINE_MAX; the body is handed to
 * the caller a piece at a time (kept by it only if it wants: a playlist, not a segment).
 */
#ifndef ROSTRUM_LOAD_HTTPRESP_H
#define ROSTRUM_LOAD_HTTPRESP_H

#include <stddef.h>
#include <stdint.h>

#define HTTPRESP_HEAD_MAX 4096
#define HTTPRESP_LINE_MAX 256

enum {
    HR_HEAD,
    HR_BODY_LEN,
    HR_BODY_CLOSE,
    HR_CHUNK_SIZE,
    HR_CHUNK_DATA,
    HR_CHUNK_CRLF,
    HR_TRAILER,
    HR_DONE
};

struct httpresp {
    int state;     /* HR_* */
    int status;    /* once the head is read */
    int keep;      /* the connection may carry another request after this response */
    int head_only; /* the request was HEAD: no body whatever the head says */
    int64_t left;  /* HR_BODY_LEN, HR_CHUNK_DATA: body bytes still to come */
    uint64_t body; /* body bytes so far */
    uint32_t head_len, line_len;
    uint8_t digits, ext; /* HR_CHUNK_SIZE: hex digits read; past the size (extensions) */
    char age[16];        /* the Age header, "" if none (a cache's answer carries one) */
    char head[HTTPRESP_HEAD_MAX];
};

/* Readies <r> for the response to a request (<head_only>: to a HEAD). */
void httpresp_init(struct httpresp *r, int head_only);

/* Feeds <n> bytes at <p>. Body bytes go to <on_body>(<arg>, bytes, len) as they come (may be
 * NULL). Returns the bytes consumed (fewer than <n> only when the response ended: the rest is
 * the next one's), or -1 if the response is malformed or passes a bound. r->state is HR_DONE
 * once the response is whole. */
long httpresp_feed(struct httpresp *r, const uint8_t *p, size_t n,
                   void (*on_body)(void *arg, const uint8_t *b, size_t len), void *arg);

/* The connection closed: completes a body framed by the close. Returns 0 if the response is
 * whole now, -1 if it was cut. */
int httpresp_eof(struct httpresp *r);

#endif
