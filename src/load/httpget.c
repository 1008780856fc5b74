/*
 * load/httpget: see httpget.h.
 */
#include "load/httpget.h"

#include <errno.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "event/loop.h"
#include "tls/tls.h"

/* Waits for <events> on <fd> until <deadline> (monotonic ms). Returns 0 or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - loop_clock_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return -errno;
        if (n == 1)
            return 0;
    }
}

/* Waits for what <t>'s last call wanted (the handshake says; after it, a read wants to read
 * and a write to write, <events> being that default). Returns 0 or -errno. */
static int wait_tls(int fd, int want, short events, int64_t deadline)
{
    if (want == TLS_WANT_READ)
        events = POLLIN;
    else if (want == TLS_WANT_WRITE)
        events = POLLOUT;
    return wait_fd(fd, events, deadline);
}

/* Sends <len> bytes of <p> on <fd>, through <t> if not NULL, before <deadline>. Returns 0 or
 * -errno. */
static int send_all(int fd, struct tls_conn *t, const char *p, size_t len, int64_t deadline)
{
    size_t off = 0;
    while (off < len || (t && tls_pending(t))) {
        ssize_t n;
        if (off == len) {
            n = tls_flush(t) == 0 ? 0 : -1;
        } else if (t) {
            struct iovec v = {.iov_base = (void *)(p + off), .iov_len = len - off};
            n = tls_writev(t, &v, 1);
        } else {
            n = send(fd, p + off, len - off, MSG_NOSIGNAL);
        }
        if (n >= 0) {
            off += (size_t)n;
        } else if (errno == EAGAIN || errno == EINTR) {
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc < 0)
                return rc;
        } else {
            return -errno;
        }
    }
    return 0;
}

int load_http_get(const struct load_url *u, struct tls_ctx *tls, int timeout_ms, int *status,
                  struct buf *body)
{
    int64_t deadline = loop_clock_ms() + timeout_ms;
    if (u->tls && !tls)
        return -EPROTONOSUPPORT;
    int fd = socket(u->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int rc = 0;
    struct buf resp = {0};
    struct tls_conn *t = NULL;
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) == -1) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto out;
        }
        if ((rc = wait_fd(fd, POLLOUT, deadline)) < 0)
            goto out;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr) {
            rc = -soerr;
            goto out;
        }
    }
    if (u->tls) {
        t = tls_client_new(tls, fd, u->tls_name);
        int hs;
        while ((hs = tls_handshake(t)) != TLS_DONE) {
            if (hs < 0) {
                rc = -ECONNABORTED;
                goto out;
            }
            if ((rc = wait_tls(fd, hs, POLLIN, deadline)) < 0)
                goto out;
        }
    }
    char req[LOAD_URL_MAX_PATH + 256];
    int rl = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rostrum-load\r\n\r\n", u->path,
                      u->host, u->port);
    if ((rc = send_all(fd, t, req, (size_t)rl, deadline)) < 0)
        goto out;
    for (;;) {
        buf_reserve(&resp, 16384);
        size_t room = resp.cap - resp.len - 1;
        ssize_t n =
            t ? tls_read(t, resp.data + resp.len, room) : recv(fd, resp.data + resp.len, room, 0);
        if (n > 0) {
            resp.len += (size_t)n;
            resp.data[resp.len] = '\0';
            if (resp.len >= LOAD_HTTP_GET_MAX)
                break;
        } else if (n == 0) {
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            if ((rc = wait_fd(fd, POLLIN, deadline)) < 0)
                goto out;
        } else {
            rc = -errno;
            goto out;
        }
    }
    int code = 0;
    if (resp.len < 12 || sscanf(resp.data, "HTTP/%*d.%*d %3d", &code) != 1 || code < 100) {
        rc = -EPROTO;
        goto out;
    }
    *status = code;
    const char *hend = strstr(resp.data, "\r\n\r\n");
    size_t off = hend ? (size_t)(hend - resp.data) + 4 : resp.len;
    buf_append(body, resp.data + off, resp.len - off);
    if (!body->data)
        buf_append(body, "", 0);
out:
    buf_free(&resp);
    tls_conn_free(t);
    close(fd);
    return rc;
}

void load_http_kept_close(struct load_http_kept *k)
{
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
}

/* Connects <k> to <u> before <deadline>. Returns 0 or -errno. */
static int kept_connect(struct load_http_kept *k, const struct load_url *u, int64_t deadline)
{
    int fd = socket(u->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    k->fd = fd;
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    int rc = wait_fd(fd, POLLOUT, deadline);
    if (rc < 0)
        return rc;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    return soerr ? -soerr : 0;
}

/* One GET on <k>'s connection. Returns 0 (<*keep> 1 if the server keeps it) or -errno. */
static int kept_get(struct load_http_kept *k, const struct load_url *u, int64_t deadline,
                    int *status, struct buf *body, int *keep)
{
    char req[LOAD_URL_MAX_PATH + 256];
    int rl = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: rostrum-load\r\n"
                      "Connection: keep-alive\r\n\r\n", u->path, u->host, u->port);
    int rc = send_all(k->fd, NULL, req, (size_t)rl, deadline);
    if (rc < 0)
        return rc;
    struct buf resp = {0};
    size_t want = SIZE_MAX; /* head + Content-Length, once the head is in */
    int to_close = 0;       /* no Content-Length: the body ends where the server closes */
    while (resp.len < want) {
        buf_reserve(&resp, 16384);
        ssize_t n = recv(k->fd, resp.data + resp.len, resp.cap - resp.len - 1, 0);
        if (n > 0) {
            resp.len += (size_t)n;
            resp.data[resp.len] = '\0';
            const char *hend = want == SIZE_MAX ? strstr(resp.data, "\r\n\r\n") : NULL;
            if (hend) {
                const char *cl = strcasestr(resp.data, "\r\ncontent-length:");
                const char *ka = strcasestr(resp.data, "\r\nconnection: keep-alive");
                if (cl && cl < hend) {
                    want = (size_t)(hend + 4 - resp.data) + strtoul(cl + 17, NULL, 10);
                    *keep = ka && ka < hend;
                } else {
                    to_close = 1;
                    want = SIZE_MAX - 1; /* the head is in: not looked for again */
                    *keep = 0;
                }
            }
            if (resp.len >= LOAD_HTTP_GET_MAX) {
                rc = -EMSGSIZE;
                break;
            }
        } else if (n == 0) {
            if (to_close) {
                want = resp.len; /* the whole of it */
                break;
            }
            rc = -ECONNRESET; /* closed before the whole response */
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            if ((rc = wait_fd(k->fd, POLLIN, deadline)) < 0)
                break;
        } else {
            rc = -errno;
            break;
        }
    }
    int code = 0;
    if (rc == 0 && (sscanf(resp.data, "HTTP/%*d.%*d %3d", &code) != 1 || code < 100))
        rc = -EPROTO;
    if (rc == 0) {
        *status = code;
        size_t off = (size_t)(strstr(resp.data, "\r\n\r\n") + 4 - resp.data);
        buf_append(body, resp.data + off, want - off);
        if (!body->data)
            buf_append(body, "", 0);
    }
    buf_free(&resp);
    return rc;
}

int load_http_get_kept(struct load_http_kept *k, const struct load_url *u, int timeout_ms,
                       int *status, struct buf *body)
{
    if (u->tls)
        return -EPROTONOSUPPORT;
    int64_t deadline = loop_clock_ms() + timeout_ms;
    int rc = 0, keep = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = k->fd < 0;
        if (fresh && (rc = kept_connect(k, u, deadline)) < 0)
            break;
        rc = kept_get(k, u, deadline, status, body, &keep);
        if (rc == 0 || fresh || rc == -ETIMEDOUT)
            break;
        load_http_kept_close(k); /* the server closed its end while we idled: once more */
        body->len = 0;
    }
    if (rc < 0 || !keep)
        load_http_kept_close(k);
    return rc;
}

int load_metric_value(const char *text, size_t len, const char *name, double *out)
{
    size_t nl = strlen(name);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && memcmp(p, name, nl) == 0 && (p[nl] == ' ' || p[nl] == '\t')) {
            char num[64];
            size_t vl = (size_t)(eol - (p + nl));
            if (vl >= sizeof(num))
                return -1;
            memcpy(num, p + nl, vl);
            num[vl] = '\0';
            char *e;
            double v = strtod(num, &e);
            if (e == num)
                return -1;
            *out = v;
            return 0;
        }
        p = eol + 1;
    }
    return -1;
}
