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

#endif
