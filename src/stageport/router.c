/* router: the stage port's requests, by method (see stageport.h). */
#include "stageport/stageport.h"

#include <stdio.h>
#include <string.h>

#include "http/request.h"
#include "util/log.h"

void stageport_route(void *arg, struct conn *c, const struct http_request *req)
{
    struct spaces *host = arg;
    if (host->sh->main.draining && req->method != HTTP_OPTIONS) {
        /* stopping: sources, speakers and API callers are told when to come back */
        char extra[40];
        snprintf(extra, sizeof(extra), "Retry-After: %u", host->sh->main.drain_retry_s + 1);
        host->sh->main.c.refused_draining++;
        conn_error(c, 503, extra, "The server is stopping: come back in a moment");
        return;
    }
    /* DELETE is for recordings only (issue 12); on anything else it stays a 405 */
    if (req->method == HTTP_DELETE && req->path_len > 16 &&
        memcmp(req->path, "/api/recordings/", 16) == 0) {
        api_route(host, c, req);
        return;
    }
    switch (req->method) {
    case HTTP_PUT:
    case HTTP_SOURCE:
        source_accept(host, c, req);
        return;
    case HTTP_OPTIONS:
        /* libshout's capability probe: it picks PUT when Allow lists it. */
        log_debug("source", "#%llu %s: OPTIONS (a client's capability probe)",
                  (unsigned long long)c->id, c->peer);
        conn_respond_doc(c, 1, "text/plain", "", 0,
                         "Allow: GET, HEAD, OPTIONS, POST, PUT, SOURCE, DELETE\r\n"
                         "Access-Control-Allow-Origin: *\r\n"
                         "Access-Control-Allow-Methods: GET, POST, DELETE, OPTIONS\r\n"
                         "Access-Control-Allow-Headers: Authorization, Content-Type");
        return;
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_POST:
        api_route(host, c, req);
        return;
    default: {
        char shown[80];
        LOG_RATELIMITED(LOG_WARN, "source", "#%llu %s: %s %s refused: 405, method not allowed",
                        (unsigned long long)c->id, c->peer, http_method_name(req->method),
                        log_escape(shown, sizeof(shown), req->path, req->path_len));
        conn_error(c, 405, "Allow: GET, HEAD, OPTIONS, PUT, SOURCE", "Method not allowed");
        return;
    }
    }
}

