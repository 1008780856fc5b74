/*
 * load/httpget: see httpget.h.
 */
#include "load/httpget.h"

#include <errno.h>
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
