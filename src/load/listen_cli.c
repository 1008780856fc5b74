/*
 * load/listen_cli: "rostrum-load listen" from the command line: options, the parent process that
 * forks the workers (load/listen.c), reads the server's gauge and merges the workers' records,
 * and the reports (one JSON object, or a readable summary).
 *
 * Exit status: 0 the run completed, whatever the figures; 1 internal error (a worker failed or
 * could not be started; what the others measured is still printed); 2 bad arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "load/httpget.h"
#include "load/listen.h"
#include "load/url.h"
#include "util/buf.h"
#include "util/log.h"

#define PER_PROC_DEFAULT 15000
#define FD_SPARE 32            /* descriptors a worker needs beside its listeners */
#define COLLECT_GRACE_MS 15000 /* how long after the end the parent waits for workers */

/* ---- options ------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: rostrum-load listen --url http://HOST:PORT/MOUNT --listeners N\n"
        "                           --rate JOINS_PER_S --seconds S [options]\n"
        "  --url URL           stream to join; HOST must be loopback (127.0.0.0/8 or [::1])\n"
        "  --listeners N       listeners to join in all (1..1000000)\n"
        "  --rate R            joins per second in all, paced evenly (> 0)\n"
        "  --seconds S         run length; every listener leaves at the end (1..86400)\n"
        "  --procs P           worker processes (default ceil(N / %d))\n"
        "  --kbps K            bitrate a listener must hold, 90 %% of it counts (default 48)\n"
        "  --stall-ms MS       a gap this long without audio is a stall (default 3000)\n"
        "  --src-ips A-B       source addresses, round-robin (default 127.0.0.2-127.0.0.250)\n"
        "  --metrics-url URL   where to read rostrum_listeners (default http://HOST:PORT/metrics;\n"
        "                      \"none\" to skip)\n"
        "  --json              print one JSON object instead of a summary\n"
        "exit status: 0 run completed, 1 internal error, 2 bad arguments\n",
        PER_PROC_DEFAULT);
}

static int bad_arg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a bad-argument message; returns the exit status for it, 2. */
static int bad_arg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rostrum-load listen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see rostrum-load listen --help)\n");
    va_end(ap);
    return 2;
}

static int parse_u32(const char *opt, const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *e;
    errno = 0;
    unsigned long long v = strtoull(s, &e, 10);
    if (*s == '\0' || *s == '-' || *e != '\0' || errno || v < lo || v > hi) {
        fprintf(stderr,
                "rostrum-load listen: %s: expected a whole number from %u to %u, got \"%s\"\n", opt,
                lo, hi, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Parses the options into <o>. Returns 0, 2 (bad arguments, message printed) or 3 (--help). */
static int parse_opts(int argc, char **argv, struct load_listen_opts *o)
{
    enum {
        O_URL = 256,
        O_LISTENERS,
        O_RATE,
        O_SECONDS,
        O_PROCS,
        O_KBPS,
        O_STALL,
        O_SRC,
        O_METRICS,
        O_JSON,
        O_HELP
    };
    static const struct option opts[] = {
        {"url", required_argument, NULL, O_URL},
        {"listeners", required_argument, NULL, O_LISTENERS},
        {"rate", required_argument, NULL, O_RATE},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"procs", required_argument, NULL, O_PROCS},
        {"kbps", required_argument, NULL, O_KBPS},
        {"stall-ms", required_argument, NULL, O_STALL},
        {"src-ips", required_argument, NULL, O_SRC},
        {"metrics-url", required_argument, NULL, O_METRICS},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {0},
    };
    char err[256];
    const char *src = NULL;
    int have_n = 0, have_rate = 0, have_secs = 0;
    *o = (struct load_listen_opts){.kbps = 48, .stall_ms = 3000};
    optind = 1;
    opterr = 0;
    for (;;) {
        int ch = getopt_long(argc, argv, "", opts, NULL);
        if (ch == -1)
            break;
        switch (ch) {
        case O_URL:
            o->url_str = optarg;
            break;
        case O_LISTENERS:
            if (parse_u32("--listeners", optarg, 1, 1000000, &o->listeners) < 0)
                return 2;
            have_n = 1;
            break;
        case O_RATE: {
            char *e;
            o->rate = strtod(optarg, &e);
            if (*optarg == '\0' || *e != '\0' || !(o->rate > 0) || o->rate > 1e7)
                return bad_arg("--rate: expected joins per second > 0, got \"%s\"", optarg);
            have_rate = 1;
            break;
        }
        case O_SECONDS:
            if (parse_u32("--seconds", optarg, 1, 86400, &o->seconds) < 0)
                return 2;
            have_secs = 1;
            break;
        case O_PROCS:
            if (parse_u32("--procs", optarg, 1, 256, &o->procs) < 0)
                return 2;
            break;
        case O_KBPS:
            if (parse_u32("--kbps", optarg, 0, 100000, &o->kbps) < 0)
                return 2;
            break;
        case O_STALL:
            if (parse_u32("--stall-ms", optarg, 1, 3600000, &o->stall_ms) < 0)
                return 2;
            break;
        case O_SRC:
            src = optarg;
            break;
        case O_METRICS:
            o->metrics_str = optarg;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_HELP:
            return 3;
        default:
            return bad_arg("unknown or incomplete option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_arg("unexpected argument \"%s\"", argv[optind]);
    if (!o->url_str)
        return bad_arg("--url is required");
    if (!have_n || !have_rate || !have_secs)
        return bad_arg("--listeners, --rate and --seconds are required");
    if (load_url_parse(o->url_str, &o->url, err, sizeof(err)) < 0)
        return bad_arg("--url %s: %s", o->url_str, err);

    if (o->metrics_str && strcmp(o->metrics_str, "none") == 0) {
        o->have_metrics = 0;
    } else if (o->metrics_str) {
        if (load_url_parse(o->metrics_str, &o->metrics, err, sizeof(err)) < 0)
            return bad_arg("--metrics-url %s: %s", o->metrics_str, err);
        o->have_metrics = 1;
    } else {
        o->metrics = o->url;
        snprintf(o->metrics.path, sizeof(o->metrics.path), "/metrics");
        o->have_metrics = 1;
    }

    if (src) {
        if (o->url.family != AF_INET)
            return bad_arg("--src-ips: source addresses are IPv4; the URL is IPv6 (%s)",
                           o->url_str);
        if (load_ip_range_parse(src, &o->src_first, &o->src_count, err, sizeof(err)) < 0)
            return bad_arg("--src-ips: %s", err);
    } else if (o->url.family == AF_INET) {
        o->src_first = 0x7f000002; /* 127.0.0.2 .. 127.0.0.250 */
        o->src_count = 249;
    }

    if (o->procs == 0)
        o->procs = (o->listeners + PER_PROC_DEFAULT - 1) / PER_PROC_DEFAULT;
    if (o->procs > o->listeners)
        o->procs = o->listeners;
    return 0;
}

/* ---- parent -------------------------------------------------------------------------------- */

/* Raises RLIMIT_NOFILE soft to hard; returns the resulting soft limit. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
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

struct child {
    pid_t pid;
    int fd;     /* read end of its pipe, -1 once at EOF */
    size_t got; /* bytes of <res> read */
    struct load_result res;
};

/* ---- reports ------------------------------------------------------------------------------- */

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void json_hist(struct buf *b, const char *name, const struct hist *h)
{
    buf_printf(b, "\"%s\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"count\":%llu},", name,
               ms(hist_percentile(h, 50)), ms(hist_percentile(h, 99)), ms(h->max),
               (unsigned long long)h->count);
}

static void print_json(const struct load_listen_opts *o, const struct load_result *r,
                       int have_server, double server_listeners, const char *metrics_err)
{
    struct buf b = {0};
    buf_puts(&b, "{\"mode\":\"listen\",\"url\":");
    buf_json_str(&b, o->url_str, strlen(o->url_str));
    buf_printf(&b,
               ",\"listeners\":%u,\"rate\":%g,\"seconds\":%u,\"procs\":%u,\"kbps\":%u,"
               "\"stall_ms\":%u,",
               o->listeners, o->rate, o->seconds, o->procs, o->kbps, o->stall_ms);
    buf_printf(&b, "\"attempted\":%llu,\"connected\":%llu,\"refused\":{",
               (unsigned long long)r->attempted, (unsigned long long)r->connected);
    const char *sep = "";
    for (int i = 0; i < LOAD_REASONS; i++) {
        buf_printf(&b, "%s\"%s\":%llu", sep, load_reason_name((enum load_reason)i),
                   (unsigned long long)r->reasons[i]);
        sep = ",";
    }
    for (int i = 100; i < LOAD_HTTP_CODES; i++)
        if (r->http[i])
            buf_printf(&b, ",\"%d\":%u", i, r->http[i]);
    buf_puts(&b, "},");
    json_hist(&b, "connect_ms", &r->connect_us);
    json_hist(&b, "ttfb_ms", &r->ttfb_us);
    json_hist(&b, "first_audio_ms", &r->first_audio_us);
    double pct = r->connected ? 100.0 * (double)r->held / (double)r->connected : 0.0;
    buf_printf(&b,
               "\"held_bitrate\":%llu,\"held_bitrate_pct\":%.1f,\"held_bitrate_eligible\":%llu,"
               "\"stalls\":%llu,\"listeners_with_stalls\":%llu,\"seq_gaps\":%llu,"
               "\"crc_errors\":%llu,\"serial_changes\":%llu,\"sync_losses\":%llu,"
               "\"bytes\":%llu,\"open_at_end\":%llu,\"duration_s\":%.3f,",
               (unsigned long long)r->held, pct, (unsigned long long)r->held_eligible,
               (unsigned long long)r->stalls, (unsigned long long)r->listeners_with_stalls,
               (unsigned long long)r->seq_gaps, (unsigned long long)r->crc_errors,
               (unsigned long long)r->serial_changes, (unsigned long long)r->sync_losses,
               (unsigned long long)r->bytes, (unsigned long long)r->open_at_end,
               (double)r->duration_us / 1e6);
    if (o->have_metrics) {
        if (have_server) {
            buf_printf(&b, "\"server_listeners\":%.0f,", server_listeners);
        } else {
            buf_puts(&b, "\"server_listeners\":null,\"metrics_error\":");
            buf_json_str(&b, metrics_err, strlen(metrics_err));
            buf_puts(&b, ",");
        }
    }
    buf_printf(&b, "\"tool_listeners\":%llu}\n", (unsigned long long)r->tool_listeners);
    fputs(b.data, stdout);
    buf_free(&b);
}

static void print_summary(const struct load_listen_opts *o, const struct load_result *r,
                          int have_server, double server_listeners, const char *metrics_err)
{
    printf("rostrum-load listen %s: %u listeners at %g/s for %u s over %u process%s\n", o->url_str,
           o->listeners, o->rate, o->seconds, o->procs, o->procs == 1 ? "" : "es");
    printf("  attempted %llu, connected (got audio) %llu, still receiving at the end %llu\n",
           (unsigned long long)r->attempted, (unsigned long long)r->connected,
           (unsigned long long)r->open_at_end);
    int any = 0;
    for (int i = 0; i < LOAD_REASONS; i++) {
        if (r->reasons[i]) {
            printf("%s%s %llu",
                   any ? ", " : "  not joined / dropped: ", load_reason_name((enum load_reason)i),
                   (unsigned long long)r->reasons[i]);
            any = 1;
        }
    }
    for (int i = 100; i < LOAD_HTTP_CODES; i++) {
        if (r->http[i]) {
            printf("%sHTTP %d %u", any ? ", " : "  not joined / dropped: ", i, r->http[i]);
            any = 1;
        }
    }
    if (any)
        printf("\n");
    const struct {
        const char *name;
        const struct hist *h;
    } hs[] = {{"connect", &r->connect_us},
              {"first byte", &r->ttfb_us},
              {"first audio", &r->first_audio_us}};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        printf("  %-12s ms: p50 %8.2f  p99 %8.2f  max %8.2f  (%llu)\n", hs[i].name,
               ms(hist_percentile(hs[i].h, 50)), ms(hist_percentile(hs[i].h, 99)), ms(hs[i].h->max),
               (unsigned long long)hs[i].h->count);
    printf("  held %u kbps: %llu of %llu connected (%.1f %%; %llu had a steady part)\n", o->kbps,
           (unsigned long long)r->held, (unsigned long long)r->connected,
           r->connected ? 100.0 * (double)r->held / (double)r->connected : 0.0,
           (unsigned long long)r->held_eligible);
    printf("  stalls %llu (%llu listeners), sequence gaps %llu, CRC errors %llu, serial changes "
           "%llu, sync losses %llu\n",
           (unsigned long long)r->stalls, (unsigned long long)r->listeners_with_stalls,
           (unsigned long long)r->seq_gaps, (unsigned long long)r->crc_errors,
           (unsigned long long)r->serial_changes, (unsigned long long)r->sync_losses);
    printf("  audio bytes %llu in %.1f s\n", (unsigned long long)r->bytes,
           (double)r->duration_us / 1e6);
    if (o->have_metrics && have_server)
        printf("  listeners 1 s before the end: server says %.0f, tool counts %llu\n",
               server_listeners, (unsigned long long)r->tool_listeners);
    else if (o->have_metrics)
        printf("  listeners 1 s before the end: server unknown (%s), tool counts %llu\n",
               metrics_err, (unsigned long long)r->tool_listeners);
    else
        printf("  listeners 1 s before the end: tool counts %llu\n",
               (unsigned long long)r->tool_listeners);
}

/* ---- the run ------------------------------------------------------------------------------- */

/* Fetches rostrum_listeners from the metrics URL. Returns 1 with <*v> set, or 0 with a reason
 * in <err>. */
static int fetch_server_listeners(const struct load_listen_opts *o, double *v, char *err,
                                  size_t errlen)
{
    struct buf body = {0};
    int status = 0;
    int rc = load_http_get(&o->metrics, 2000, &status, &body);
    int ok = 0;
    if (rc < 0)
        snprintf(err, errlen, "GET %.200s: %s", o->metrics.path, strerror(-rc));
    else if (status != 200)
        snprintf(err, errlen, "GET %.200s: HTTP %d", o->metrics.path, status);
    else if (load_metric_value(body.data, body.len, "rostrum_listeners", v) < 0)
        snprintf(err, errlen, "no rostrum_listeners in %.200s", o->metrics.path);
    else
        ok = 1;
    buf_free(&body);
    return ok;
}

static void worker_child(const struct load_listen_opts *o, uint32_t index, uint32_t n,
                         int64_t start_us, int fd, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    struct load_result *res = calloc(1, sizeof(*res));
    if (!res)
        abort();
    int rc = load_listen_worker(o, index, n, start_us, res);
    if (rc < 0) {
        log_error("load", "worker %u: %s", index, strerror(-rc));
        _exit(1);
    }
    if (write_all(fd, res, sizeof(*res)) < 0)
        _exit(1);
    close(fd);
    free(res);
    _exit(0);
}

int load_listen_main(int argc, char **argv)
{
    struct load_listen_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc == 3) {
        usage(stdout);
        return 0;
    }
    if (rc)
        return rc;

    rlim_t nofile = raise_nofile();
    uint32_t per_proc = (o.listeners + o.procs - 1) / o.procs;
    if ((rlim_t)per_proc + FD_SPARE > nofile) {
        fprintf(
            stderr,
            "rostrum-load listen: %u listeners per process exceed the descriptor limit (%llu);"
            " use more --procs (at least %llu)\n(see rostrum-load listen --help)\n",
            per_proc, (unsigned long long)nofile,
            (unsigned long long)((o.listeners + (nofile - FD_SPARE) - 1) / (nofile - FD_SPARE)));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    fflush(stdout);
    fflush(stderr);

    struct child *ch = calloc(o.procs, sizeof(*ch));
    if (!ch)
        abort();
    pid_t self = getpid();
    /* time for the forks; every worker starts pacing at the same instant */
    int64_t start_us = load_now_us() + 200000 + (int64_t)o.procs * 5000;
    int64_t end_us = start_us + (int64_t)o.seconds * 1000000;
    int64_t count_us =
        end_us - LOAD_COUNT_BEFORE_END_US < start_us ? start_us : end_us - LOAD_COUNT_BEFORE_END_US;
    int spawn_failed = 0;
    for (uint32_t k = 0; k < o.procs; k++) {
        ch[k].fd = -1;
        ch[k].pid = -1;
        int p[2];
        if (pipe2(p, O_CLOEXEC) == -1) {
            log_error("load", "pipe: %s", strerror(errno));
            spawn_failed = 1;
            break;
        }
        uint32_t n = o.listeners / o.procs + (k < o.listeners % o.procs);
        pid_t pid = fork();
        if (pid == -1) {
            log_error("load", "fork: %s", strerror(errno));
            close(p[0]);
            close(p[1]);
            spawn_failed = 1;
            break;
        }
        if (pid == 0) {
            close(p[0]);
            for (uint32_t j = 0; j < k; j++)
                close(ch[j].fd);
            worker_child(&o, k, n, start_us, p[1], self);
        }
        close(p[1]);
        ch[k].pid = pid;
        ch[k].fd = p[0];
    }

    int have_server = 0, fetched = !o.have_metrics || spawn_failed;
    double server_listeners = 0;
    char metrics_err[256] = "not fetched";
    int64_t deadline = end_us + (int64_t)COLLECT_GRACE_MS * 1000;
    struct pollfd *pfd = calloc(o.procs, sizeof(*pfd));
    if (!pfd)
        abort();
    for (;;) {
        int64_t now = load_now_us();
        if (!fetched && now >= count_us) {
            have_server =
                fetch_server_listeners(&o, &server_listeners, metrics_err, sizeof(metrics_err));
            fetched = 1;
            continue;
        }
        nfds_t np = 0;
        for (uint32_t k = 0; k < o.procs; k++)
            if (ch[k].fd >= 0)
                pfd[np++] = (struct pollfd){.fd = ch[k].fd, .events = POLLIN};
        if (np == 0 && fetched)
            break;
        if (now >= deadline || spawn_failed)
            break;
        int64_t wake = fetched ? deadline : count_us;
        int timeout = (int)((wake - now + 999) / 1000);
        int n = poll(pfd, np, timeout < 0 ? 0 : timeout);
        if (n == -1 && errno != EINTR) {
            log_error("load", "poll: %s", strerror(errno));
            break;
        }
        for (uint32_t k = 0; k < o.procs && n > 0; k++) {
            if (ch[k].fd < 0)
                continue;
            struct pollfd *pf = NULL;
            for (nfds_t i = 0; i < np; i++)
                if (pfd[i].fd == ch[k].fd)
                    pf = &pfd[i];
            if (!pf || !pf->revents)
                continue;
            ssize_t r = 0;
            if (ch[k].got < sizeof(ch[k].res))
                r = read(ch[k].fd, (char *)&ch[k].res + ch[k].got, sizeof(ch[k].res) - ch[k].got);
            else {
                char junk[256];
                r = read(ch[k].fd, junk, sizeof(junk));
            }
            if (r > 0 && ch[k].got < sizeof(ch[k].res))
                ch[k].got += (size_t)r;
            else if (r == 0 || (r == -1 && errno != EINTR && errno != EAGAIN)) {
                close(ch[k].fd);
                ch[k].fd = -1;
            }
        }
    }
    free(pfd);

    /* workers stop by themselves; one that has not by now is stuck: kill it */
    int failed = spawn_failed;
    for (uint32_t k = 0; k < o.procs; k++) {
        if (ch[k].pid <= 0)
            continue;
        if (ch[k].fd >= 0) {
            log_error("load", "worker %u (pid %d) did not finish in time; killing it", k,
                      (int)ch[k].pid);
            kill(ch[k].pid, SIGKILL);
            close(ch[k].fd);
            ch[k].fd = -1;
        }
        int st = 0;
        while (waitpid(ch[k].pid, &st, 0) == -1 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || ch[k].got != sizeof(ch[k].res) ||
            ch[k].res.magic != LOAD_RESULT_MAGIC) {
            log_error("load", "worker %u (pid %d) failed (%s %d)", k, (int)ch[k].pid,
                      WIFSIGNALED(st) ? "signal" : "exit",
                      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            failed = 1;
        }
    }

    struct load_result *total = calloc(1, sizeof(*total));
    if (!total)
        abort();
    for (uint32_t k = 0; k < o.procs; k++)
        if (ch[k].got == sizeof(ch[k].res) && ch[k].res.magic == LOAD_RESULT_MAGIC)
            load_result_merge(total, &ch[k].res);
    if (o.json)
        print_json(&o, total, have_server, server_listeners, metrics_err);
    else
        print_summary(&o, total, have_server, server_listeners, metrics_err);
    fflush(stdout);
    free(total);
    free(ch);
    return failed ? 1 : 0;
}
