/*
 * load/listen_cli: "rostrum-load listen" from the command line: options, the parent process that
 * forks the workers (load/listen.c), reads the server's gauge and merges the workers' records,
 * and the reports (one JSON object, or a readable summary).
 *
 * Exit status: 0 the run completed, whatever the figures; 1 internal error (a worker failed or
 * could not be started; what the others measured is still printed); 2 bad arguments.
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "load/httpget.h"
#include "load/listen.h"
#include "load/procs.h"
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
            if (procs_parse_u32("listen", "--listeners", optarg, 1, 1000000, &o->listeners) < 0)
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
            if (procs_parse_u32("listen", "--seconds", optarg, 1, 86400, &o->seconds) < 0)
                return 2;
            have_secs = 1;
            break;
        case O_PROCS:
            if (procs_parse_u32("listen", "--procs", optarg, 1, 256, &o->procs) < 0)
                return 2;
            break;
        case O_KBPS:
            if (procs_parse_u32("listen", "--kbps", optarg, 0, 100000, &o->kbps) < 0)
                return 2;
            break;
        case O_STALL:
            if (procs_parse_u32("listen", "--stall-ms", optarg, 1, 3600000, &o->stall_ms) < 0)
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

/* ---- reports ------------------------------------------------------------------------------- */

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
    procs_json_hist(&b, "connect_ms", &r->connect_us);
    buf_printf(&b, ",");
    procs_json_hist(&b, "ttfb_ms", &r->ttfb_us);
    buf_printf(&b, ",");
    procs_json_hist(&b, "first_audio_ms", &r->first_audio_us);
    buf_printf(&b, ",");
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
               procs_ms(hist_percentile(hs[i].h, 50)), procs_ms(hist_percentile(hs[i].h, 99)),
               procs_ms(hs[i].h->max), (unsigned long long)hs[i].h->count);
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

/* The server's count, taken once while the run is on (procs' at()). */
struct count {
    const struct load_listen_opts *o;
    int have;
    double listeners;
    char err[256];
};

static void count_now(void *arg)
{
    struct count *c = arg;
    c->have = fetch_server_listeners(c->o, &c->listeners, c->err, sizeof(c->err));
}

static int work(void *arg, uint32_t index, uint32_t n, int64_t start_us, void *rec)
{
    const struct count *c = arg;
    return load_listen_worker(c->o, index, n, start_us, rec);
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

    rlim_t nofile = procs_raise_nofile();
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

    /* time for the forks; every worker starts pacing at the same instant */
    int64_t start_us = load_now_us() + 200000 + (int64_t)o.procs * 5000;
    int64_t end_us = start_us + (int64_t)o.seconds * 1000000;
    struct count cnt = {.o = &o};
    snprintf(cnt.err, sizeof(cnt.err), "not fetched");
    struct procs p = {
        .tag = "load",
        .nprocs = o.procs,
        .units = o.listeners,
        .rec_size = sizeof(struct load_result),
        .magic = LOAD_RESULT_MAGIC,
        .start_us = start_us,
        .deadline_us = end_us + (int64_t)COLLECT_GRACE_MS * 1000,
        .work = work,
        .arg = &cnt,
        .at_us = end_us - LOAD_COUNT_BEFORE_END_US < start_us ? start_us
                                                              : end_us - LOAD_COUNT_BEFORE_END_US,
        .at = o.have_metrics ? count_now : NULL,
    };
    int failed;
    struct load_result *res = procs_run(&p, &failed);

    struct load_result *total = calloc(1, sizeof(*total));
    if (!total)
        abort();
    for (uint32_t k = 0; k < o.procs; k++)
        if (res[k].magic == LOAD_RESULT_MAGIC)
            load_result_merge(total, &res[k]);
    if (o.json)
        print_json(&o, total, cnt.have, cnt.listeners, cnt.err);
    else
        print_summary(&o, total, cnt.have, cnt.listeners, cnt.err);
    fflush(stdout);
    free(total);
    free(res);
    return failed ? 1 : 0;
}
