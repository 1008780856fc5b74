/*
 * load/attack_slow: the slow modes.
 *
 *   slowloris  a valid request head, one header line every --interval-ms, never the blank line
 *              (at most SLOWLORIS_MAX_LINES, ~12 KB, whatever the interval)
 *   slowread   SO_RCVBUF --rcvbuf before connect() (so the window scale is agreed on it), a
 *              whole GET of the stream, then --read-bytes-per-s, by the scan, off the loop
 *
 * A slow reader cannot see the server close its connection: the FIN waits behind the data it
 * has not read. So once a second each worker asks the kernel (sock_diag) which of the server's
 * ends of its connections have left ESTABLISHED for FIN_WAIT1/2, CLOSING or LAST_ACK: that
 * moment is the server's close (closed_by_server.kernel). The stage modes that never read use
 * the same watch (atk_diag_tick).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "load/attack_int.h"
#include "load/listen.h"
#include "util/log.h"

#define SLOWLORIS_MAX_LINES 1000 /* ~12 KB of head at most, whatever --interval-ms */

/* ---- slowloris ------------------------------------------------------------------------------ */

static const void *slowloris_chunk(struct atk_worker *w, struct atk_conn *c, uint32_t *len)
{
    const struct load_url *u = &w->o->url;
    int n;
    if (c->lines == 0)
        n = snprintf(w->scratch, sizeof(w->scratch),
                     "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: rostrum-load attack\r\n",
                     u->path, u->host, u->port);
    else
        n = snprintf(w->scratch, sizeof(w->scratch), "X-a%u: %08x\r\n", c->lines,
                     c->seed ^ c->lines);
    *len = (uint32_t)n;
    return w->scratch;
}

static int slowloris_sent(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    if (c->lines > 0)
        w->res.lines_sent++;
    c->lines++;
    c->t_due = now + (int64_t)w->o->interval_ms * 1000;
    return 0; /* and read: the server may answer or close */
}

static void slowloris_scan(struct atk_worker *w, uint32_t slot, int64_t now)
{
    struct atk_conn *c = &w->conns[slot];
    if (c->state == C_WAITING && now >= c->t_due && c->lines <= SLOWLORIS_MAX_LINES) {
        c->state = C_SENDING;
        atk_conn_send(w, c);
    }
}

const struct atk_mode atk_mode_slowloris = {
    .pressure = 1,
    .chunk = slowloris_chunk,
    .sent = slowloris_sent,
    .scan = slowloris_scan,
};

/* ---- slowread ------------------------------------------------------------------------------- */

static void slowread_open(struct atk_worker *w, struct atk_conn *c, int fd)
{
    /* before connect(), so the window scale is agreed on the small buffer */
    int rb = (int)w->o->rcvbuf;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
}

static const void *slowread_chunk(struct atk_worker *w, struct atk_conn *c, uint32_t *len)
{
    *len = w->req_len;
    return w->req;
}

static int slowread_sent(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    /* from here on the scan reads it, slowly; the loop no longer watches it */
    loop_del(&w->loop, &c->io);
    c->flags |= CF_DETACHED;
    c->t_due = now;
    return 1;
}

/* Reads what the budget allows since the last read of <c>. */
static void slowread_scan(struct atk_worker *w, uint32_t slot, int64_t now)
{
    struct atk_conn *c = &w->conns[slot];
    if (c->state != C_WAITING)
        return;
    uint64_t allowed = (uint64_t)((double)(now - c->t_conn) / 1e6 * w->o->read_bps);
    if (allowed <= c->rx)
        return;
    uint64_t want = allowed - c->rx;
    /* about one read a second: fewer system calls, the same average rate */
    if (want < w->o->read_bps && now - c->t_due < 1000000)
        return;
    c->t_due = now;
    atk_conn_read(w, c, want < ATK_RBUF_SIZE ? (size_t)want : ATK_RBUF_SIZE - 1);
}

const struct atk_mode atk_mode_slowread = {
    .pressure = 1,
    .kernel_close = 1,
    .open = slowread_open,
    .chunk = slowread_chunk,
    .sent = slowread_sent,
    .scan = slowread_scan,
};

/* ---- the server's closes, from the kernel --------------------------------------------------- */

static int key_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Asks sock_diag for TCP sockets of the server's address and port that have left ESTABLISHED
 * for a closing state: the server closed them. Stores (peer IPv4 << 16 | peer port) keys,
 * sorted, in <*keys> (malloc'ed, caller frees). Returns how many, or -1. */
static long diag_server_closing(struct atk_worker *w, uint64_t **keys)
{
    const struct sockaddr_in *srv = (const struct sockaddr_in *)&w->o->url.addr;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req = {
        .nlh = {.nlmsg_len = sizeof(req),
                .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
        .r = {.sdiag_family = AF_INET,
              .sdiag_protocol = IPPROTO_TCP,
              .idiag_states = (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSING) |
                              (1u << TCP_LAST_ACK)},
    };
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
    if (sendto(w->diag_fd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) == -1)
        return -1;
    size_t n = 0, cap = 256;
    uint64_t *k = malloc(cap * sizeof(*k));
    if (!k)
        abort();
    static char buf[65536] __attribute__((aligned(8)));
    for (;;) {
        ssize_t got = recv(w->diag_fd, buf, sizeof(buf), 0);
        if (got == -1 && errno == EINTR)
            continue;
        if (got <= 0) {
            free(k);
            return -1;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got);
             h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                qsort(k, n, sizeof(*k), key_cmp);
                *keys = k;
                return (long)n;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                free(k);
                return -1;
            }
            const struct inet_diag_msg *m = NLMSG_DATA(h);
            if (m->id.idiag_sport != srv->sin_port || m->id.idiag_src[0] != srv->sin_addr.s_addr)
                continue;
            if (n == cap) {
                cap *= 2;
                k = realloc(k, cap * sizeof(*k));
                if (!k)
                    abort();
            }
            k[n++] = (uint64_t)ntohl(m->id.idiag_dst[0]) << 16 | ntohs(m->id.idiag_dport);
        }
    }
}

void atk_diag_tick(struct atk_worker *w)
{
    uint64_t *keys = NULL;
    long nk = diag_server_closing(w, &keys);
    if (nk > 0) {
        int64_t now = load_now_us();
        for (uint32_t i = 0; i < w->n; i++) {
            struct atk_conn *c = &w->conns[i];
            if ((c->state != C_WAITING && c->state != C_SENDING) || !(c->flags & CF_CONNECTED) ||
                (c->flags & CF_KERNEL_CLOSED))
                continue;
            uint64_t key = (uint64_t)c->laddr << 16 | c->lport;
            if (bsearch(&key, keys, (size_t)nk, sizeof(*keys), key_cmp)) {
                c->flags |= CF_KERNEL_CLOSED;
                w->res.closed_kernel++;
                hist_add(&w->res.closed_after_us, (uint64_t)(now - c->t_conn));
            }
        }
    } else if (nk < 0) {
        LOG_RATELIMITED(LOG_WARN, "attack", "sock_diag: %s", strerror(errno));
    }
    free(keys);
}
