/*
 * load/httpget: see httpget.h.
 */
#include "load/httpget.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event/loop.h"

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

int load_http_get(const struct load_url *u, int timeout_ms, int *status, struct buf *body)
{
    int64_t deadline = loop_clock_ms() + timeout_ms;
    int fd = socket(u->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int rc = 0;
    struct buf resp = {0};
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
    char req[LOAD_URL_MAX_PATH + 256];
    int rl = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rostrum-load\r\n\r\n", u->path,
                      u->host, u->port);
    for (int off = 0; off < rl;) {
        ssize_t n = send(fd, req + off, (size_t)(rl - off), MSG_NOSIGNAL);
        if (n > 0) {
            off += (int)n;
        } else if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            if ((rc = wait_fd(fd, POLLOUT, deadline)) < 0)
                goto out;
        } else {
            rc = -errno;
            goto out;
        }
    }
    for (;;) {
        buf_reserve(&resp, 16384);
        ssize_t n = recv(fd, resp.data + resp.len, resp.cap - resp.len - 1, 0);
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
