/*
 * buf: a growable byte buffer for building responses (status JSON, metrics, headers).
 * Owned by whoever declares it; buf_free() releases it. Allocation failure aborts.
 */
#ifndef ROSTRUM_UTIL_BUF_H
#define ROSTRUM_UTIL_BUF_H

#include <stddef.h>

struct buf {
    char *data; /* NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
};

void buf_free(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends <s> (<len> bytes) as a JSON string literal, quotes included. Bytes that are not
 * valid UTF-8 are replaced by U+FFFD so the output always parses. */
void buf_json_str(struct buf *b, const char *s, size_t len);

#endif
