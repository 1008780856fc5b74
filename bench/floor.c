/*
 * bench-floor: the kernel's floor for fan-out over loopback TCP.
 *
 *   bench-floor --sockets K --interval-ms I --bytes W --seconds T [--procs P] [--json]
 *
 * What a fan-out server cannot do cheaper than: K connected loopback sockets, one send() of a
 * W-byte buffer to each every I ms, non-blocking, no server logic at all. A reader on the other
 * end of each socket drains everything with large recv()s. The program prints the CPU the
 * senders and the readers spent (user + system) per send and per socket-second, measured over
 * the sending window only (connection set-up is not counted).
 *
 * Processes: the parent forks P pairs; each pair is a sender (the forked child) and its reader
 * (forked by the sender), with K/P sockets between them, so no process holds more than ~19k
 * descriptors (the hard limit here is 20,000). Pair p connects from 127.0.0.(2 + p % 249) to
 * its own reader's port, so ephemeral ports never run out. Every process starts sending or
 * reading at the same CLOCK_MONOTONIC instant, picked by the parent once all pairs are
 * connected, and sends its figures back through a pipe.
 *
 * A send that finds the socket full (EAGAIN) or takes only part of the buffer is counted; the
 * rest of that buffer is dropped (the floor is about the cost of a send, not about delivery).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PER_PROC_MAX 18000
#define RBUF 262144
#define MAGIC 0x464c4f52u /* "FLOR" */

struct opts {
    long sockets, interval_ms, bytes, seconds, procs;
    int json;
};

/* What one pair reports; the parent adds them up. */
struct pair_result {
    uint32_t magic;
    long sockets;
    double send_cpu_s, read_cpu_s; /* user + system over the window */
    double window_s;
    uint64_t sends, full, partial, bytes_sent, recvs, bytes_read;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_until(int64_t t)
{
    for (;;) {
        int64_t d = t - now_us();
        if (d <= 0)
            return;
        struct timespec ts = {d / 1000000, (d % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

/* This process's CPU time (user + system, softirq work done in its context included), from
 * the scheduler's own clock: exact, unlike tick-sampled utime/stime. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench-floor: %s: %s\n", what, strerror(errno));
    _exit(1);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k == -1 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t k = read(fd, c, n);
        if (k == -1 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reader: accepts <n> connections on <lfd>, tells <ready_fd>, waits for the start time on
 * <go_fd>, then drains every socket until the end; writes its CPU and counts to <out_fd>. */
static void reader(int lfd, long n, int ready_fd, int go_fd, int out_fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1)
        die("epoll_create1");
    for (long i = 0; i < n; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            die("accept");
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
            die("epoll_ctl");
    }
    close(lfd);
    if (write_all(ready_fd, "r", 1) < 0)
        die("ready");
    int64_t times[2];
    if (read_all(go_fd, times, sizeof(times)) < 0)
        die("go");
    struct pair_result r = {.magic = MAGIC};
    static char buf[RBUF];
    struct epoll_event evs[512];
    sleep_until(times[0]);
    double c0 = cpu_s();
    int64_t t0 = now_us();
    for (;;) {
        int64_t left = times[1] - now_us();
        if (left <= 0)
            break;
        int k = epoll_wait(ep, evs, 512, (int)((left + 999) / 1000));
        for (int i = 0; i < k; i++) {
            for (;;) {
                ssize_t m = recv(evs[i].data.fd, buf, sizeof(buf), 0);
                if (m > 0) {
                    r.recvs++;
                    r.bytes_read += (uint64_t)m;
                    if (m < (ssize_t)sizeof(buf))
                        break;
                } else {
                    break;
                }
            }
        }
    }
    r.read_cpu_s = cpu_s() - c0;
    r.window_s = (double)(now_us() - t0) / 1e6;
    if (write_all(out_fd, &r, sizeof(r)) < 0)
        die("result");
    _exit(0);
}

/* Sender of pair <p>: starts its reader, connects <n> sockets, reports ready on <ready_fd>,
 * sends from the start to the end time read from <go_fd>, and writes the pair's figures. */
static void sender(const struct opts *o, long p, long n, int ready_fd, int go_fd, int out_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    if (lfd == -1 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) == -1 || listen(lfd, 4096) == -1)
        die("listen");
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);

    int rready[2], rgo[2], rout[2];
    if (pipe2(rready, O_CLOEXEC) || pipe2(rgo, O_CLOEXEC) || pipe2(rout, O_CLOEXEC))
        die("pipe");
    pid_t rp = fork();
    if (rp == -1)
        die("fork");
    if (rp == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        reader(lfd, n, rready[1], rgo[0], rout[1]);
    }
    close(lfd);

    int *fds = calloc((size_t)n, sizeof(int));
    if (!fds)
        abort();
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(0x7f000002 + (uint32_t)(p % 249))};
    for (long i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd == -1)
            die("socket");
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1)
            die("bind");
        while (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1)
            if (errno != EINTR)
                die("connect");
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fds[i] = fd;
    }
    char ch;
    if (read_all(rready[0], &ch, 1) < 0)
        die("reader ready");
    if (write_all(ready_fd, "r", 1) < 0)
        die("ready");
    int64_t times[2];
    if (read_all(go_fd, times, sizeof(times)) < 0)
        die("go");
    if (write_all(rgo[1], times, sizeof(times)) < 0)
        die("reader go");

    char *buf = malloc((size_t)o->bytes);
    if (!buf)
        abort();
    memset(buf, 'x', (size_t)o->bytes);
    struct pair_result r = {.magic = MAGIC, .sockets = n};
    sleep_until(times[0]);
    double c0 = cpu_s();
    int64_t t0 = now_us();
    for (int64_t tick = times[0]; tick < times[1]; tick += o->interval_ms * 1000) {
        sleep_until(tick);
        for (long i = 0; i < n; i++) {
            ssize_t m = send(fds[i], buf, (size_t)o->bytes, MSG_NOSIGNAL);
            r.sends++;
            if (m == (ssize_t)o->bytes)
                r.bytes_sent += (uint64_t)m;
            else if (m > 0) {
                r.partial++;
                r.bytes_sent += (uint64_t)m;
            } else if (errno == EAGAIN)
                r.full++;
            else
                die("send");
        }
    }
    sleep_until(times[1]);
    r.send_cpu_s = cpu_s() - c0;
    r.window_s = (double)(now_us() - t0) / 1e6;

    struct pair_result rr;
    if (read_all(rout[0], &rr, sizeof(rr)) < 0 || rr.magic != MAGIC)
        die("reader result");
    r.read_cpu_s = rr.read_cpu_s;
    r.recvs = rr.recvs;
    r.bytes_read = rr.bytes_read;
    waitpid(rp, NULL, 0);
    if (write_all(out_fd, &r, sizeof(r)) < 0)
        die("result");
    _exit(0);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench-floor --sockets K --interval-ms I --bytes W --seconds T [--procs P]"
               " [--json]\n"
               "  K loopback TCP sockets; one W-byte send() to each every I ms for T s; readers\n"
               "  drain them. Prints CPU per send and per socket-second (senders and readers).\n"
               "  P sender/reader pairs (default: ceil(K / %d)).\n",
               PER_PROC_MAX);
}

static long arg_long(const char *opt, const char *s, long lo, long hi)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (*s == '\0' || *e != '\0' || errno || v < lo || v > hi) {
        fprintf(stderr, "bench-floor: %s: expected %ld..%ld, got \"%s\"\n", opt, lo, hi, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    struct opts o = {.sockets = 1000, .interval_ms = 200, .bytes = 1250, .seconds = 10};
    static const struct option lo[] = {
        {"sockets", required_argument, 0, 'k'}, {"interval-ms", required_argument, 0, 'i'},
        {"bytes", required_argument, 0, 'w'},   {"seconds", required_argument, 0, 't'},
        {"procs", required_argument, 0, 'p'},   {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},          {0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'k': o.sockets = arg_long("--sockets", optarg, 1, 2000000); break;
        case 'i': o.interval_ms = arg_long("--interval-ms", optarg, 1, 60000); break;
        case 'w': o.bytes = arg_long("--bytes", optarg, 1, 4 << 20); break;
        case 't': o.seconds = arg_long("--seconds", optarg, 1, 3600); break;
        case 'p': o.procs = arg_long("--procs", optarg, 1, 256); break;
        case 'j': o.json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (o.procs == 0)
        o.procs = (o.sockets + PER_PROC_MAX - 1) / PER_PROC_MAX;
    if (o.procs > o.sockets)
        o.procs = o.sockets;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        long per = (o.sockets + o.procs - 1) / o.procs;
        if ((rlim_t)per + 64 > rl.rlim_cur) {
            fprintf(stderr, "bench-floor: %ld sockets per process exceed the descriptor limit"
                            " %llu: use more --procs\n", per, (unsigned long long)rl.rlim_cur);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    long P = o.procs;
    int (*ready)[2] = calloc((size_t)P, sizeof(*ready));
    int (*go)[2] = calloc((size_t)P, sizeof(*go));
    int (*out)[2] = calloc((size_t)P, sizeof(*out));
    pid_t *pids = calloc((size_t)P, sizeof(pid_t));
    if (!ready || !go || !out || !pids)
        abort();
    for (long p = 0; p < P; p++) {
        if (pipe2(ready[p], O_CLOEXEC) || pipe2(go[p], O_CLOEXEC) || pipe2(out[p], O_CLOEXEC))
            die("pipe");
        long n = o.sockets / P + (p < o.sockets % P);
        fflush(NULL);
        pids[p] = fork();
        if (pids[p] == -1)
            die("fork");
        if (pids[p] == 0)
            sender(&o, p, n, ready[p][1], go[p][0], out[p][1]);
        close(ready[p][1]);
        close(go[p][0]);
        close(out[p][1]);
    }
    for (long p = 0; p < P; p++) {
        char c;
        if (read_all(ready[p][0], &c, 1) < 0) {
            fprintf(stderr, "bench-floor: pair %ld failed to connect\n", p);
            for (long q = 0; q < P; q++)
                kill(pids[q], SIGKILL);
            return 1;
        }
    }
    int64_t times[2];
    times[0] = now_us() + 500000;
    times[1] = times[0] + o.seconds * 1000000;
    for (long p = 0; p < P; p++)
        if (write_all(go[p][1], times, sizeof(times)) < 0)
            die("go");
    struct pair_result t = {0};
    int failed = 0;
    for (long p = 0; p < P; p++) {
        struct pair_result r;
        if (read_all(out[p][0], &r, sizeof(r)) < 0 || r.magic != MAGIC) {
            fprintf(stderr, "bench-floor: pair %ld gave no result\n", p);
            failed = 1;
            continue;
        }
        t.sockets += r.sockets;
        t.send_cpu_s += r.send_cpu_s;
        t.read_cpu_s += r.read_cpu_s;
        if (r.window_s > t.window_s)
            t.window_s = r.window_s;
        t.sends += r.sends;
        t.full += r.full;
        t.partial += r.partial;
        t.bytes_sent += r.bytes_sent;
        t.recvs += r.recvs;
        t.bytes_read += r.bytes_read;
    }
    for (long p = 0; p < P; p++)
        waitpid(pids[p], NULL, 0);
    if (failed)
        return 1;
    double sends = (double)t.sends, sock_s = (double)t.sockets * t.window_s;
    double send_us = sends ? t.send_cpu_s * 1e6 / sends : 0;
    double recv_us = t.recvs ? t.read_cpu_s * 1e6 / (double)t.recvs : 0;
    if (o.json) {
        printf("{\"sockets\":%ld,\"interval_ms\":%ld,\"bytes\":%ld,\"seconds\":%ld,\"procs\":%ld,"
               "\"window_s\":%.3f,\"sends\":%llu,\"sends_per_s\":%.0f,\"full\":%llu,"
               "\"partial\":%llu,\"bytes_sent\":%llu,\"recvs\":%llu,\"bytes_read\":%llu,"
               "\"send_cpu_s\":%.3f,\"read_cpu_s\":%.3f,\"send_us_per_send\":%.2f,"
               "\"read_us_per_recv\":%.2f,\"read_us_per_send\":%.2f,"
               "\"send_us_per_socket_s\":%.3f,\"read_us_per_socket_s\":%.3f}\n",
               o.sockets, o.interval_ms, o.bytes, o.seconds, P, t.window_s,
               (unsigned long long)t.sends, sends / t.window_s, (unsigned long long)t.full,
               (unsigned long long)t.partial, (unsigned long long)t.bytes_sent,
               (unsigned long long)t.recvs, (unsigned long long)t.bytes_read, t.send_cpu_s,
               t.read_cpu_s, send_us, recv_us, sends ? t.read_cpu_s * 1e6 / sends : 0,
               t.send_cpu_s * 1e6 / sock_s, t.read_cpu_s * 1e6 / sock_s);
    } else {
        printf("bench-floor: %ld sockets, %ld B every %ld ms, %.1f s, %ld pair%s\n", o.sockets,
               o.bytes, o.interval_ms, t.window_s, P, P == 1 ? "" : "s");
        printf("  sends %llu (%.0f/s), socket full %llu, partial %llu\n",
               (unsigned long long)t.sends, sends / t.window_s, (unsigned long long)t.full,
               (unsigned long long)t.partial);
        printf("  sender CPU %.2f s: %.2f us per send, %.2f us per socket-second\n",
               t.send_cpu_s, send_us, t.send_cpu_s * 1e6 / sock_s);
        printf("  reader CPU %.2f s: %.2f us per recv (%llu recvs), %.2f us per socket-second\n",
               t.read_cpu_s, recv_us, (unsigned long long)t.recvs, t.read_cpu_s * 1e6 / sock_s);
    }
    return 0;
}
