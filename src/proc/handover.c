/*
 * handover: a listener worker gives its listening sockets and its listeners, with their
 * cursors, to the worker that replaces it (an upgrade: the new binary's worker for the same
 * block), over a unix socket pair the main process made (SCM_RIGHTS).
 *
 *   main: socketpair(A, B); fork the new worker with B; send A to the old worker (its ctl)
 *   old:  stop accepting; wait (<= HANDOVER_QUIET_MS) for request heads and responses to end
 *         LISTEN    the listening sockets: their queues of new connections move with them
 *         LISTENERS up to HANDOVER_BATCH listener records, each with its socket
 *         ...
 *         DONE      then exits, without touching its shared block again
 *   new:  keeps everything until DONE, then takes the block (counters carry on), the sockets
 *         and the listeners at once, so the block never has two writers; a listener goes on
 *         at the page and byte it was at, so its Ogg stream has no gap and no repeat.
 *
 * The old worker sends with blocking writes and runs no loop meanwhile; the new one reads
 * from its loop. If the old worker dies or stalls (HANDOVER_TIMEOUT_MS), the new one takes
 * what it has and listens on its own socket. What does not move: TLS listeners (their keys
 * are in the old process's memory: they are closed and reconnect) and heads still unfinished
 * after the quiet wait (closed).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net.h"
#include "proc/server.h"
#include "util/check.h"
#include "util/log.h"

#define HANDOVER_BATCH 200 /* listeners per message (SCM_RIGHTS takes at most 253 fds) */
#define HANDOVER_QUIET_MS 1000
#define HANDOVER_POLL_MS 10
#define HANDOVER_TIMEOUT_MS 10000
#define HANDOVER_MAX_LISTENERS 400000

enum { HO_LISTEN = 1, HO_LISTENERS, HO_DONE };

struct ho_hdr {
    uint32_t type, count;
    uint32_t version; /* LISTENER_RECORD_VERSION */
    uint32_t has_tls; /* LISTEN: the second fd is the TLS listening socket */
};

/* ---- sending (the old worker) ------------------------------------------------------------- */

static int send_msg(int sock, const struct ho_hdr *h, const void *body, size_t blen,
                    const int *fds, int nfds)
{
    struct iovec iov[2] = {{(void *)h, sizeof(*h)}, {(void *)body, blen}};
    for (;;) {
        ssize_t r = net_send_fds(sock, iov, blen ? 2 : 1, fds, nfds);
        if (r >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            struct pollfd p = {.fd = sock, .events = POLLOUT};
            if (poll(&p, 1, 5000) == 1)
                continue;
        }
        return -1;
    }
}

static void handover_send(struct server *srv)
{
    struct audience *a = &srv->aud;
    int sock = srv->handover_fd;
    /* what cannot move goes first, while the block is still ours to count in */
    int tls_closed = 0, heads = 0;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &a->listeners[i])
        {
            struct conn *c = list_entry(n, struct conn, node);
            if (c->tls) {
                listener_close(c, CLOSE_ERROR);
                tls_closed++;
            }
        }
    }
    /* Relay feeds do not move (their buffered frames live in this process): closed here,
     * counted out of the block, their relays reconnect to the successor and resume by
     * sequence with no gap (issue 10). */
    feed_close_all(a);
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->hub.heads)
    {
        conn_close(list_entry(n, struct conn, node));
        heads++;
    }
    conn_hub_free_zombies(&srv->hub);
    log_info("worker", "worker %d (pid %d): handing over %u listeners to its successor%s",
             srv->worker_index, (int)getpid(), a->nlisteners - (uint32_t)tls_closed,
             tls_closed || heads ? " (TLS listeners and unfinished heads closed)" : "");
    if (tls_closed || heads)
        log_info("worker", "worker %d: closed %d TLS listeners and %d unfinished heads",
                 srv->worker_index, tls_closed, heads);
    int lfds[2] = {srv->audience.io.fd, srv->audience_tls.io.fd};
    struct ho_hdr h = {HO_LISTEN, 0, LISTENER_RECORD_VERSION, lfds[1] >= 0};
    h.count = h.has_tls ? 2 : 1;
    if (send_msg(sock, &h, NULL, 0, lfds, (int)h.count) < 0)
        goto fail;
    static struct listener_record recs[HANDOVER_BATCH];
    int fds[HANDOVER_BATCH];
    uint32_t nb = 0, total = 0;
    for (int i = 0; i <= SHARED_MAX_SPACES; i++) {
        if (i < SHARED_MAX_SPACES) {
            list_for_each_safe(n, tmp, &a->listeners[i])
            {
                struct conn *c = list_entry(n, struct conn, node);
                if (listener_save(c, &recs[nb]) < 0)
                    continue;
                fds[nb++] = c->io.fd;
                if (nb < HANDOVER_BATCH)
                    continue;
                h = (struct ho_hdr){HO_LISTENERS, nb, LISTENER_RECORD_VERSION, 0};
                if (send_msg(sock, &h, recs, sizeof(recs[0]) * nb, fds, (int)nb) < 0)
                    goto fail;
                total += nb;
                nb = 0;
            }
        } else if (nb > 0) {
            h = (struct ho_hdr){HO_LISTENERS, nb, LISTENER_RECORD_VERSION, 0};
            if (send_msg(sock, &h, recs, sizeof(recs[0]) * nb, fds, (int)nb) < 0)
                goto fail;
            total += nb;
        }
    }
    h = (struct ho_hdr){HO_DONE, total, LISTENER_RECORD_VERSION, 0};
    if (send_msg(sock, &h, NULL, 0, NULL, 0) < 0)
        goto fail;
    log_info("worker", "worker %d (pid %d): %u listeners handed over, exiting",
             srv->worker_index, (int)getpid(), total);
    /* no cleanup: the sockets are the successor's now, and closing listeners would count
     * them out of the block it has taken */
    _exit(0);
fail:
    log_error("worker", "worker %d: handover failed after part of it (%s): exiting",
              srv->worker_index, strerror(errno));
    _exit(1);
}

static void handover_poll_cb(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = (struct server *)((char *)t - offsetof(struct server, handover_timer));
    int quiet = list_empty(&srv->hub.heads) && list_empty(&srv->hub.responses);
    if (quiet || loop->now_ms - srv->handover_since_ms >= HANDOVER_QUIET_MS)
        handover_send(srv); /* does not return */
    loop_timer_start(loop, t, HANDOVER_POLL_MS, handover_poll_cb);
}

void handover_give(struct server *srv, int sock)
{
    if (srv->handover_fd >= 0) {
        close(sock);
        return;
    }
    srv->handover_fd = sock;
    srv->handover_since_ms = srv->loop.now_ms;
    /* new connections wait in the listening sockets' queues for the successor */
    conn_port_pause(&srv->audience, 1);
    conn_port_pause(&srv->audience_tls, 1);
    loop_timer_start(&srv->loop, &srv->handover_timer, 0, handover_poll_cb);
}

/* ---- receiving (the new worker) ----------------------------------------------------------- */

struct handover_in {
    struct io io;
    struct loop_timer deadline;
    int listen_fd, listen_tls_fd;
    struct listener_record *recs;
    int *fds;
    uint32_t n, cap;
    int done;
};

static struct handover_in hin;

static void handover_finish(struct server *srv, const char *why)
{
    struct handover_in *h = &hin;
    loop_timer_stop(&srv->loop, &h->deadline);
    if (h->io.fd >= 0) {
        loop_del(&srv->loop, &h->io);
        close(h->io.fd);
        h->io.fd = -1;
    }
    if (why)
        log_warn("worker", "worker %d: handover incomplete (%s): taking %u listeners", srv->worker_index,
                 why, h->n);
    int ok = worker_serve(srv, h->listen_fd, h->listen_tls_fd, 1);
    if (ok < 0)
        _exit(1);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < h->n; i++)
        kept += listener_restore(&srv->aud, h->fds[i], &h->recs[i]) == 0;
    log_info("worker", "worker %d (pid %d): took over %u of %u listeners", srv->worker_index,
             (int)getpid(), kept, h->n);
    free(h->recs);
    free(h->fds);
    h->recs = NULL;
    h->fds = NULL;
    audience_on_wake(&srv->aud); /* write to them now: they waited through the handover */
}

static void handover_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct server *srv = (struct server *)((char *)loop - offsetof(struct server, loop));
    struct handover_in *h = &hin;
    (void)events;
    static struct {
        struct ho_hdr h;
        struct listener_record recs[HANDOVER_BATCH];
    } msg;
    for (;;) {
        int fds[HANDOVER_BATCH + 8], nfds, cut;
        ssize_t r = net_recv_fds(io->fd, &msg, sizeof(msg), fds, HANDOVER_BATCH + 8, &nfds, &cut);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (r <= 0) {
            handover_finish(srv, r == 0 ? "the old worker went away" : strerror(errno));
            return;
        }
        size_t body = (size_t)r - sizeof(msg.h);
        if ((size_t)r < sizeof(msg.h) || msg.h.version != LISTENER_RECORD_VERSION || cut) {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            handover_finish(srv, "a message this build does not understand");
            return;
        }
        if (msg.h.type == HO_LISTEN) {
            if (nfds >= 1 && h->listen_fd < 0)
                h->listen_fd = fds[0];
            if (nfds >= 2 && msg.h.has_tls && h->listen_tls_fd < 0)
                h->listen_tls_fd = fds[1];
        } else if (msg.h.type == HO_LISTENERS) {
            uint32_t k = msg.h.count;
            if (k != (uint32_t)nfds || body != k * sizeof(msg.recs[0]) ||
                h->n + k > HANDOVER_MAX_LISTENERS) {
                for (int i = 0; i < nfds; i++)
                    close(fds[i]);
                handover_finish(srv, "a batch that does not add up");
                return;
            }
            if (h->n + k > h->cap) {
                h->cap = h->cap ? h->cap * 2 : 4096;
                h->recs = realloc(h->recs, sizeof(*h->recs) * h->cap);
                h->fds = realloc(h->fds, sizeof(*h->fds) * h->cap);
                BUG_ON(!h->recs || !h->fds);
            }
            memcpy(h->recs + h->n, msg.recs, sizeof(msg.recs[0]) * k);
            memcpy(h->fds + h->n, fds, sizeof(int) * k);
            h->n += k;
        } else if (msg.h.type == HO_DONE) {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            handover_finish(srv, NULL);
            return;
        } else {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
        }
    }
}

static void handover_deadline_cb(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = (struct server *)((char *)loop - offsetof(struct server, loop));
    (void)t;
    handover_finish(srv, "timed out");
}

int handover_take(struct server *srv, int sock)
{
    struct handover_in *h = &hin;
    memset(h, 0, sizeof(*h));
    h->listen_fd = h->listen_tls_fd = -1;
    h->io.fd = sock;
    h->io.cb = handover_on_io;
    if (loop_add(&srv->loop, &h->io, EPOLLIN) < 0)
        return -1;
    loop_timer_start(&srv->loop, &h->deadline, HANDOVER_TIMEOUT_MS, handover_deadline_cb);
    return 0;
}
