/*
 * load/attack_cli: "rostrum-load attack MODE" from the command line: options, the parent that
 * forks the workers (load/attack.c) and merges their records, and the report (one JSON object,
 * or the same figures as readable lines).
 *
 * The parent bounds the run whatever the workers do: it waits for their records until
 * --seconds + 4.5 s after it started, then kills any worker still running (each also has an
 * alarm at --seconds + 5 s, and dies with the parent).
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
#include <time.h>
#include <unistd.h>

#include "load/attack.h"
#include "load/listen.h"
#include "load/procs.h"
#include "load/url.h"
#include "util/buf.h"
#include "util/log.h"

#define PER_PROC_DEFAULT 15000
#define FD_SPARE 32           /* descriptors a worker needs beside its connections */
#define START_DELAY_US 200000 /* time for the forks; every worker starts at the same instant */
#define HARD_STOP_US 4500000  /* after --seconds from launch: the parent stops waiting */

/* ---- options ------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: rostrum-load attack MODE --url http://HOST:PORT/MOUNT --rate R --count N\n"
        "                            --seconds S [options]\n"
        "modes:\n"
        "  flood       open connections, send nothing, hold them until the server closes them\n"
        "  slowloris   send a valid request head one header line every --interval-ms, never\n"
        "              finish it\n"
        "  slowread    GET the stream, then read --read-bytes-per-s with SO_RCVBUF --rcvbuf\n"
        "  garbage     send up to --max-bytes of junk per connection, read the answer\n"
        "  joinstorm   N joins: response head and first audio page, then close\n"
        "  tickets     N probes: GET /join/MOUNT, then the stream with a forged ticket, an "
        "expired\n"
        "              one (--ticket-expired), the genuine one early, and on time\n"
        "options:\n"
        "  --url URL              target; HOST must be loopback (127.0.0.0/8 or [::1])\n"
        "  --rate R               new connections (joinstorm: joins; tickets: probes) per second\n"
        "  --count N              flood, slowloris, slowread, garbage: most connections open at\n"
        "                         once (closed ones are replaced at the rate while the run "
        "lasts);\n"
        "                         joinstorm, tickets: attempts in all (1..1000000)\n"
        "  --seconds S            run length; nothing runs past it (1..86400)\n"
        "  --procs P              worker processes (default ceil(N / %d))\n"
        "  --src-ips A-B          source addresses, round-robin (default 127.0.1.1-127.0.1.250)\n"
        "  --no-reopen            pressure modes: open N in all, do not replace closed ones\n"
        "  --interval-ms MS       slowloris: between header lines (default 10000)\n"
        "  --read-bytes-per-s B   slowread: bytes read per second per connection (default 32)\n"
        "  --rcvbuf BYTES         slowread: SO_RCVBUF (default 4096)\n"
        "  --max-bytes B          garbage: most bytes per connection (default and max 16384)\n"
        "  --timeout-ms MS        joinstorm, tickets: wait for first audio; garbage: for the\n"
        "                         answer (default 10000)\n"
        "  --ticket-expired TOKEN tickets: a ticket known to be expired, tried on every probe\n"
        "  --timeline             joinstorm: per-second outcomes in the report\n"
        "  --seed N               garbage contents (default 1)\n"
        "  --json                 print one JSON object instead of a summary\n"
        "exit status: 0 run completed, 1 internal error, 2 bad arguments\n",
        PER_PROC_DEFAULT);
}

static int bad_arg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a bad-argument message; returns the exit status for it, 2. */
static int bad_arg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rostrum-load attack: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see rostrum-load attack --help)\n");
    va_end(ap);
    return 2;
}

/* Parses the options into <o> (<argv>[0] is "attack", <argv>[1] the mode). Returns 0, 2 (bad
 * arguments, message printed) or 3 (--help). */
static int parse_opts(int argc, char **argv, struct attack_opts *o)
{
    enum {
        O_URL = 256,
        O_RATE,
        O_COUNT,
        O_SECONDS,
        O_PROCS,
        O_SRC,
        O_NO_REOPEN,
        O_INTERVAL,
        O_READ_BPS,
        O_RCVBUF,
        O_MAX_BYTES,
        O_TIMEOUT,
        O_EXPIRED,
        O_TIMELINE,
        O_SEED,
        O_JSON,
        O_HELP
    };
    static const struct option opts[] = {
        {"url", required_argument, NULL, O_URL},
        {"rate", required_argument, NULL, O_RATE},
        {"count", required_argument, NULL, O_COUNT},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"procs", required_argument, NULL, O_PROCS},
        {"src-ips", required_argument, NULL, O_SRC},
        {"no-reopen", no_argument, NULL, O_NO_REOPEN},
        {"interval-ms", required_argument, NULL, O_INTERVAL},
        {"read-bytes-per-s", required_argument, NULL, O_READ_BPS},
        {"rcvbuf", required_argument, NULL, O_RCVBUF},
        {"max-bytes", required_argument, NULL, O_MAX_BYTES},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"ticket-expired", required_argument, NULL, O_EXPIRED},
        {"timeline", no_argument, NULL, O_TIMELINE},
        {"seed", required_argument, NULL, O_SEED},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {0},
    };
    char err[256];
    const char *src = NULL;
    int have_n = 0, have_rate = 0, have_secs = 0;
    *o = (struct attack_opts){.interval_ms = 10000,
                              .read_bps = 32,
                              .rcvbuf = 4096,
                              .max_bytes = ATTACK_GARBAGE_MAX,
                              .timeout_ms = 10000,
                              .seed = 1,
                              .reopen = 1};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 3;
    if (argc < 2 || argv[1][0] == '-')
        return bad_arg("a MODE is required: flood, slowloris, slowread, garbage, joinstorm or "
                       "tickets");
    int m = attack_mode_parse(argv[1]);
    if (m < 0)
        return bad_arg("unknown mode \"%s\": flood, slowloris, slowread, garbage, joinstorm or "
                       "tickets",
                       argv[1]);
    o->mode = (enum attack_mode)m;
    optind = 2;
    opterr = 0;
    for (;;) {
        int ch = getopt_long(argc, argv, "", opts, NULL);
        if (ch == -1)
            break;
        switch (ch) {
        case O_URL:
            o->url_str = optarg;
            break;
        case O_RATE: {
            char *e;
            o->rate = strtod(optarg, &e);
            if (*optarg == '\0' || *e != '\0' || !(o->rate > 0) || o->rate > 1e6)
                return bad_arg("--rate: expected connections per second in (0, 1e6], got \"%s\"",
                               optarg);
            have_rate = 1;
            break;
        }
        case O_COUNT:
            if (procs_parse_u32("attack", "--count", optarg, 1, 1000000, &o->count) < 0)
                return 2;
            have_n = 1;
            break;
        case O_SECONDS:
            if (procs_parse_u32("attack", "--seconds", optarg, 1, 86400, &o->seconds) < 0)
                return 2;
            have_secs = 1;
            break;
        case O_PROCS:
            if (procs_parse_u32("attack", "--procs", optarg, 1, 256, &o->procs) < 0)
                return 2;
            break;
        case O_SRC:
            src = optarg;
            break;
        case O_NO_REOPEN:
            o->reopen = 0;
            break;
        case O_INTERVAL:
            if (procs_parse_u32("attack", "--interval-ms", optarg, 1, 3600000, &o->interval_ms) < 0)
                return 2;
            break;
        case O_READ_BPS:
            if (procs_parse_u32("attack", "--read-bytes-per-s", optarg, 1, 100000000,
                                &o->read_bps) < 0)
                return 2;
            break;
        case O_RCVBUF:
            if (procs_parse_u32("attack", "--rcvbuf", optarg, 256, 64 << 20, &o->rcvbuf) < 0)
                return 2;
            break;
        case O_MAX_BYTES:
            if (procs_parse_u32("attack", "--max-bytes", optarg, 1, ATTACK_GARBAGE_MAX,
                                &o->max_bytes) < 0)
                return 2;
            break;
        case O_TIMEOUT:
            if (procs_parse_u32("attack", "--timeout-ms", optarg, 1, 3600000, &o->timeout_ms) < 0)
                return 2;
            break;
        case O_EXPIRED:
            if (optarg[0] == '\0' || strlen(optarg) > ATTACK_TICKET_MAX)
                return bad_arg("--ticket-expired: expected a ticket of 1 to %d characters",
                               ATTACK_TICKET_MAX);
            o->ticket_expired = optarg;
            break;
        case O_TIMELINE:
            o->timeline = 1;
            break;
        case O_SEED:
            if (procs_parse_u32("attack", "--seed", optarg, 0, UINT32_MAX, &o->seed) < 0)
                return 2;
            break;
        case O_JSON:
            o->json = 1;
            break;
        default:
            return bad_arg("unknown or incomplete option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_arg("unexpected argument \"%s\"", argv[optind]);
    if (!o->url_str)
        return bad_arg("--url is required");
    if (!have_n || !have_rate || !have_secs)
        return bad_arg("--count, --rate and --seconds are required");
    if (load_url_parse(o->url_str, &o->url, err, sizeof(err)) < 0)
        return bad_arg("--url %s: %s", o->url_str, err);
    if (o->ticket_expired && o->mode != ATTACK_TICKETS)
        return bad_arg("--ticket-expired is for the tickets mode");
    if (o->timeline && o->mode != ATTACK_JOINSTORM)
        return bad_arg("--timeline is for the joinstorm mode");
    if (src) {
        if (o->url.family != AF_INET)
            return bad_arg("--src-ips: source addresses are IPv4; the URL is IPv6 (%s)",
                           o->url_str);
        if (load_ip_range_parse(src, &o->src_first, &o->src_count, err, sizeof(err)) < 0)
            return bad_arg("--src-ips: %s", err);
    } else if (o->url.family == AF_INET) {
        o->src_first = 0x7f000101; /* 127.0.1.1 .. 127.0.1.250 */
        o->src_count = 250;
    }
    if (o->procs == 0)
        o->procs = (o->count + PER_PROC_DEFAULT - 1) / PER_PROC_DEFAULT;
    if (o->procs > o->count)
        o->procs = o->count;
    return 0;
}

/* ---- report -------------------------------------------------------------------------------- */

/* {"200":n,...} of the non-zero entries of <codes>. */
static void json_codes(struct buf *b, const uint32_t *codes)
{
    const char *sep = "";
    buf_puts(b, "{");
    for (int i = 100; i < ATTACK_HTTP_CODES; i++) {
        if (codes[i]) {
            buf_printf(b, "%s\"%d\":%u", sep, i, codes[i]);
            sep = ",";
        }
    }
    buf_puts(b, "}");
}

static unsigned long long u(uint64_t v)
{
    return (unsigned long long)v;
}

static void build_json(const struct attack_opts *o, const struct attack_result *r,
                       int64_t start_real_ms, double duration_s, struct buf *b)
{
    buf_printf(b, "{\"mode\":\"%s\",\"url\":", attack_mode_name(o->mode));
    buf_json_str(b, o->url_str, strlen(o->url_str));
    buf_printf(b, ",\"rate\":%g,\"count\":%u,\"seconds\":%u,\"procs\":%u,\"reopen\":%s,", o->rate,
               o->count, o->seconds, o->procs,
               attack_is_pressure(o) ? (o->reopen ? "true" : "false") : "null");
    buf_printf(b, "\"start_unix_ms\":%lld,\"duration_s\":%.3f,", (long long)start_real_ms,
               duration_s);
    buf_printf(b, "\"attempted\":%llu,\"connected\":%llu,\"connect_failed\":{", u(r->attempted),
               u(r->connected));
    for (int i = 0; i < ATTACK_FAILS; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", attack_fail_name((enum attack_fail)i),
                   u(r->fail[i]));
    buf_printf(b,
               "},\"closed_by_server\":{\"fin\":%llu,\"rst\":%llu,\"kernel\":%llu,\"all\":%llu},"
               "\"no_response\":%llu,\"done\":%llu,\"timeouts\":%llu,\"open_at_end\":%llu,"
               "\"peak_open\":%llu,\"responses\":%llu,\"bad_responses\":%llu,"
               "\"retry_after\":%llu,\"http\":",
               u(r->closed_fin), u(r->closed_rst), u(r->closed_kernel),
               u(r->closed_fin + r->closed_rst + r->closed_kernel), u(r->no_response), u(r->done),
               u(r->timeouts), u(r->open_at_end), u(r->peak_open), u(r->responses),
               u(r->bad_responses), u(r->retry_after));
    json_codes(b, r->http);
    buf_printf(b, ",\"bytes_sent\":%llu,\"bytes_received\":%llu,", u(r->bytes_sent),
               u(r->bytes_received));
    procs_json_hist(b, "connect_ms", &r->connect_us);
    buf_puts(b, ",");
    procs_json_hist(b, "ttfb_ms", &r->ttfb_us);
    buf_puts(b, ",");
    procs_json_hist(b, "server_closed_after_ms", &r->closed_after_us);
    buf_puts(b, ",");
    procs_json_hist(b, "kept_ms", &r->kept_us);

    switch (o->mode) {
    case ATTACK_SLOWLORIS:
        buf_printf(b, ",\"interval_ms\":%u,\"lines_sent\":%llu", o->interval_ms, u(r->lines_sent));
        break;
    case ATTACK_SLOWREAD:
        buf_printf(b, ",\"read_bytes_per_s\":%u,\"rcvbuf\":%u,\"kernel_close_watch\":%s",
                   o->read_bps, o->rcvbuf, o->url.family == AF_INET ? "true" : "false");
        break;
    case ATTACK_GARBAGE:
        buf_printf(b, ",\"max_bytes\":%u,\"by_kind\":{", o->max_bytes);
        for (int k = 0; k < ATTACK_G_KINDS; k++)
            buf_printf(b,
                       "%s\"%s\":{\"sent\":%u,\"400\":%u,\"431\":%u,\"other_status\":%u,"
                       "\"no_status\":%u}",
                       k ? "," : "", attack_garbage_kind_name((enum attack_garbage_kind)k),
                       r->garbage_sent[k], r->garbage_http[k][0], r->garbage_http[k][1],
                       r->garbage_http[k][2], r->garbage_http[k][3]);
        buf_puts(b, "}");
        break;
    case ATTACK_JOINSTORM: {
        uint64_t decided = r->attempted - r->unfinished;
        double pct = decided ? 100.0 * (double)r->joined / (double)decided : 0.0;
        buf_printf(b, ",\"joined\":%llu,\"unfinished\":%llu,\"success_pct\":%.2f,", u(r->joined),
                   u(r->unfinished), pct);
        procs_json_hist(b, "first_audio_ms", &r->first_audio_us);
        if (o->timeline) {
            buf_puts(b, ",\"timeline\":[");
            for (uint32_t s = 0; s < r->timeline_len; s++) {
                const struct attack_second *t = &r->tl[s];
                buf_printf(b, "%s[%u,%u,%u,%u,%u,%u,%u]", s ? "," : "", s, t->started, t->joined,
                           t->failed, t->slow, t->max_audio_ms, t->unfinished);
            }
            buf_puts(b, "],\"timeline_columns\":[\"second\",\"started\",\"joined\",\"failed\","
                        "\"slow_over_1s\",\"max_first_audio_ms\",\"unfinished\"]");
        }
        break;
    }
    case ATTACK_TICKETS:
        buf_printf(b,
                   ",\"tickets\":{\"issued\":%llu,\"admission_open\":%llu,\"unparsable\":%llu,"
                   "\"early_skipped\":%llu,\"admit_after_end\":%llu,\"max_position\":%llu,",
                   u(r->tk_tickets), u(r->tk_open), u(r->tk_unparsable), u(r->tk_early_skipped),
                   u(r->tk_admit_after_end), u(r->tk_max_position));
        procs_json_hist(b, "wait_ms", &r->tk_wait_us);
        buf_puts(b, ",");
        procs_json_hist(b, "genuine_late_ms", &r->tk_late_us);
        for (int k = 0; k < ATTACK_TK_KINDS; k++) {
            if (k == ATTACK_TK_EXPIRED && !o->ticket_expired) {
                buf_puts(b, ",\"expired\":null");
                continue;
            }
            buf_printf(b,
                       ",\"%s\":{\"http\":", attack_ticket_kind_name((enum attack_ticket_kind)k));
            json_codes(b, r->tk_http[k]);
            buf_printf(b, ",\"no_status\":%llu,\"audio\":%llu}", u(r->tk_none[k]),
                       u(r->tk_audio[k]));
        }
        buf_puts(b, "}");
        break;
    default:
        break;
    }
    buf_puts(b, "}\n");
}

static void print_summary(const struct attack_opts *o, const struct attack_result *r,
                          double duration_s)
{
    printf("rostrum-load attack %s %s: rate %g/s, count %u, %u s, %u process%s, ran %.1f s\n",
           attack_mode_name(o->mode), o->url_str, o->rate, o->count, o->seconds, o->procs,
           o->procs == 1 ? "" : "es", duration_s);
    printf("  connections: attempted %llu, connected %llu, peak open %llu, open at the end %llu\n",
           u(r->attempted), u(r->connected), u(r->peak_open), u(r->open_at_end));
    printf("  connect failed:");
    for (int i = 0; i < ATTACK_FAILS; i++)
        printf(" %s %llu", attack_fail_name((enum attack_fail)i), u(r->fail[i]));
    printf("\n  closed by the server: %llu (EOF %llu, reset %llu, seen in the kernel %llu), "
           "%llu without a byte\n",
           u(r->closed_fin + r->closed_rst + r->closed_kernel), u(r->closed_fin), u(r->closed_rst),
           u(r->closed_kernel), u(r->no_response));
    printf("  closed after ms: p50 %.0f, p99 %.0f, max %.0f; kept ms: p50 %.0f, max %.0f\n",
           procs_ms(hist_percentile(&r->closed_after_us, 50)),
           procs_ms(hist_percentile(&r->closed_after_us, 99)), procs_ms(r->closed_after_us.max),
           procs_ms(hist_percentile(&r->kept_us, 50)), procs_ms(r->kept_us.max));
    printf("  responses %llu (Retry-After %llu, unparsable %llu):", u(r->responses),
           u(r->retry_after), u(r->bad_responses));
    for (int i = 100; i < ATTACK_HTTP_CODES; i++)
        if (r->http[i])
            printf(" %d x%u", i, r->http[i]);
    printf("\n");
    if (o->mode == ATTACK_JOINSTORM)
        printf("  joined %llu of %llu (%llu unfinished at the end); first audio ms p50 %.1f "
               "p99 %.1f max %.1f\n",
               u(r->joined), u(r->attempted), u(r->unfinished),
               procs_ms(hist_percentile(&r->first_audio_us, 50)),
               procs_ms(hist_percentile(&r->first_audio_us, 99)), procs_ms(r->first_audio_us.max));
    if (o->mode == ATTACK_TICKETS) {
        printf("  tickets issued %llu, admission open %llu, unparsable %llu\n", u(r->tk_tickets),
               u(r->tk_open), u(r->tk_unparsable));
        for (int k = 0; k < ATTACK_TK_KINDS; k++) {
            printf("  %-8s", attack_ticket_kind_name((enum attack_ticket_kind)k));
            for (int i = 100; i < ATTACK_HTTP_CODES; i++)
                if (r->tk_http[k][i])
                    printf(" %d x%u", i, r->tk_http[k][i]);
            printf(" (no status %llu, audio %llu)\n", u(r->tk_none[k]), u(r->tk_audio[k]));
        }
    }
}

/* ---- parent -------------------------------------------------------------------------------- */

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int work(void *arg, uint32_t index, uint32_t n, int64_t start_us, void *rec)
{
    return attack_worker(arg, index, n, start_us, rec);
}

int load_attack_main(int argc, char **argv)
{
    struct attack_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc == 3) {
        usage(stdout);
        return 0;
    }
    if (rc)
        return rc;

    rlim_t nofile = procs_raise_nofile();
    uint32_t per_proc = (o.count + o.procs - 1) / o.procs;
    if ((rlim_t)per_proc + FD_SPARE > nofile) {
        fprintf(stderr,
                "rostrum-load attack: %u connections per process exceed the descriptor limit "
                "(%llu); use more --procs (at least %llu)\n(see rostrum-load attack --help)\n",
                per_proc, (unsigned long long)nofile,
                (unsigned long long)((o.count + (nofile - FD_SPARE) - 1) / (nofile - FD_SPARE)));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int64_t launch_us = load_now_us();
    int64_t start_us = launch_us + START_DELAY_US;
    int64_t start_real = real_ms() + START_DELAY_US / 1000;
    struct procs p = {
        .tag = "attack",
        .nprocs = o.procs,
        .units = o.count,
        .rec_size = sizeof(struct attack_result),
        .magic = ATTACK_RESULT_MAGIC,
        .alarm_s = o.seconds + 5, /* a last bound should both the loop and the parent fail */
        .start_us = start_us,
        .deadline_us = launch_us + (int64_t)o.seconds * 1000000 + HARD_STOP_US,
        .work = work,
        .arg = &o,
    };
    int failed;
    struct attack_result *res = procs_run(&p, &failed);
    double duration_s = (double)(load_now_us() - start_us) / 1e6;

    struct attack_result *total = calloc(1, sizeof(*total));
    if (!total)
        abort();
    hist_init(&total->connect_us);
    hist_init(&total->ttfb_us);
    hist_init(&total->first_audio_us);
    hist_init(&total->closed_after_us);
    hist_init(&total->kept_us);
    hist_init(&total->tk_wait_us);
    hist_init(&total->tk_late_us);
    for (uint32_t k = 0; k < o.procs; k++)
        if (res[k].magic == ATTACK_RESULT_MAGIC)
            attack_result_merge(total, &res[k]);
    if (o.json) {
        struct buf b = {0};
        build_json(&o, total, start_real, duration_s, &b);
        fputs(b.data, stdout);
        buf_free(&b);
    } else {
        print_summary(&o, total, duration_s);
    }
    fflush(stdout);
    free(total);
    free(res);
    return failed ? 1 : 0;
}
