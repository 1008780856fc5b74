/*
 * load/httpget: one small blocking HTTP/1.0 GET, for the load tool's side requests (the
 * server's /metrics, a state document), the same on a kept-alive connection, and a reader of one value of the Prometheus text format.
 *
 * Blocking is fine here: only the load tool's parent process, which holds no listener, uses it.
 */
#ifndef ROSTRUM_LOAD_HTTPGET_H
#define ROSTRUM_LOAD_HTTPGET_H

#include <stddef.h>

#include "load/url.h"
#include "util/buf.h"

/* Largest response read; the rest is cut. */
#define LOAD_HTTP_GET_MAX (4u << 20)

struct tls_ctx;

/* GETs <u> within <timeout_ms> in all; an https:// <u> goes through <tls> (a client context,
 * borrowed; NULL for http://). On success stores the status code in <*status> and the
 * body (after the head, NUL-terminated) in <body>, which the caller owns and frees. Returns 0,
 * -ETIMEDOUT, -EPROTO (no parsable status line), -ECONNABORTED (the TLS
 * handshake failed) or another -errno. */
int load_http_get(const struct load_url *u, struct tls_ctx *tls, int timeout_ms, int *status,
                  struct buf *body);

/* A connection kept between GETs of the same plain http:// server. <fd> -1: none yet. */
struct load_http_kept {
    int fd;
};

/* load_http_get on the connection <k> keeps ("Connection: keep-alive"), made when it has none
 * or the server closed it: a poll every 100 ms then costs no connection each, and keeps
 * working while a storm overflows the server's listen queue (a new connection's SYN waits
 * 1-7 s there). A response without a Content-Length ends where the server closes; the
 * connection is closed on any error and when the server does not keep it. http:// only (-EPROTONOSUPPORT otherwise). */
int load_http_get_kept(struct load_http_kept *k, const struct load_url *u, int timeout_ms,
                       int *status, struct buf *body);
/* Closes <k>'s connection, if any. */
void load_http_kept_close(struct load_http_kept *k);

/* Finds the sample of metric <name> without labels (a line "<name> <value>") in the Prometheus
 * text <text> of <len> bytes and stores its value in <*out>. Returns 0, or -1 if absent or not a
 * number. */
int load_metric_value(const char *text, size_t len, const char *name, double *out);

#endif
