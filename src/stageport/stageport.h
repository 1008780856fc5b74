/*
 * stageport: what the stage port (main process) answers once a request head is parsed:
 * studio sources (PUT/SOURCE, source.c), the HTTP API and the WebSocket entry to a stage
 * (api.c). It sits above the space and the stage, and is the only layer that knows both.
 */
#ifndef ROSTRUM_STAGEPORT_STAGEPORT_H
#define ROSTRUM_STAGEPORT_STAGEPORT_H

#include <stdint.h>

#include "conn/conn.h"
#include "space/space.h"
#include "util/buf.h"

struct http_request;

/* The route of the stage port (conn_route_fn): <arg> is the process's struct spaces. */
void stageport_route(void *arg, struct conn *c, const struct http_request *req);

/* A PUT/SOURCE head has been parsed: checks it, then <c> becomes the space's source. */
void source_accept(struct spaces *host, struct conn *c, const struct http_request *req);
/* Upkeep of <sp>'s source, every tick: resumes it once pacing allows; drops it if its socket
 * has had nothing for <timeout_ms>. */
void source_tick(struct space *sp, int64_t timeout_ms);

/* GET, HEAD and POST on the stage port: the API and the WebSocket entry. */
void api_route(struct spaces *host, struct conn *c, const struct http_request *req);

/* Upgrade: a studio source as the next binary takes it over, its demuxer's place in the
 * stream and the bytes it read but did not parse with it. A TLS source cannot move (its keys
 * are in this process): it is dropped and its space goes into grace until it reconnects. */
#define SOURCE_RECORD_VERSION 1
struct source_record {
    int32_t slot, fd;
    struct ogg_demux_pos pos;
    int64_t last_byte_ms, media_start_ms;
    uint64_t bytes, media_samples;
    uint8_t paced, pace_logged;
    uint32_t pending_len; /* followed by that many bytes */
};
/* Appends the record of <sp>'s source to <out> (a record and its pending bytes); returns 0,
 * or -1 if it has none or it cannot move (then it is dropped). */
int source_save(struct space *sp, struct buf *out);
/* The source of <r> (<len> bytes with its pending ones) back on <c> (conn_adopt'ed).
 * Returns 0, or -1 (closed). */
int source_restore(struct spaces *host, struct conn *c, const void *r, size_t len);

#endif
