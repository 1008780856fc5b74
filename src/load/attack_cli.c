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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load/attack.h"
#include "load/listen.h"
#include "load/opts.h"
#include "load/procs.h"
#include "load/url.h"
#include "util/buf.h"
#include "util/log.h"

#define PER_PROC_DEFAULT 15000
#define MODE_LIST                                                                                  \
    "flood, slowloris, slowread, garbage, joinstorm, tickets, wsping, wsnoread or stagefd"
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
        "stage modes (--url http://HOST:STAGE_PORT/SPACE; members ask for /ws/SPACE?name=atkN):\n"
        "  wsping      members that send {\"type\":\"ping\"} as fast as the socket takes it, never "
        "read\n"
        "  wsnoread    members that join and never read\n"
        "  stagefd     connections held open, sending nothing (--handshake: upgraded, reading)\n"
        "options:\n"
        "  --url URL              target; HOST must be loopback (127.0.0.0/8 or [::1])\n"
        "  --rate R               new connections (joinstorm: joins; tickets: probes) per second\n"
        "  --count N              flood, slowloris, slowread, garbage, stage modes: most open at\n"
        "                         once (closed ones are replaced at the rate while the run\n"
        "                         lasts);\n"
        "                         joinstorm, tickets: attempts in all (1..1000000)\n"
        "  --seconds S            run length; nothing runs past it (1..86400)\n"
        "  --procs P              worker processes (default ceil(N / %d))\n"
        "  --src-ips A-B          source addresses, round-robin (default 127.0.1.1-127.0.1.250)\n"
        "  --no-reopen            pressure modes: open N in all, do not replace closed ones\n"
        "  --interval-ms MS       slowloris: between header lines (default 10000)\n"
        "  --read-bytes-per-s B   slowread: bytes read per second per connection (default 32)\n"
        "  --rcvbuf BYTES         slowread, wsping, wsnoread: SO_RCVBUF (default 4096)\n"
        "  --max-bytes B          garbage: most bytes per connection (default and max 16384)\n"
        "  --timeout-ms MS        joinstorm, tickets: wait for first audio; garbage: for the\n"
        "                         answer (default 10000)\n"
        "  --ticket-expired TOKEN tickets: a ticket known to be expired, tried on every probe\n"
        "  --timeline             joinstorm: per-second outcomes in the report\n"
        "  --token TOKEN          stage modes: join with this token (default: anonymous)\n"
        "  --handshake            stagefd: complete the WebSocket upgrade, then hold\n"
        "  --seed N               garbage contents (default 1)\n"
        "  --json                 print one JSON object instead of a summary\n"
        "exit status: 0 run completed, 1 internal error, 2 bad arguments\n",
        PER_PROC_DEFAULT);
}

/* Parses the options into <o> (<argv>[0] is "attack", <argv>[1] the mode). Returns 0, 2 (bad
 * arguments, message printed) or 3 (--help). */
static int parse_opts(int argc, char **argv, struct attack_opts *o)
{
    const char *src = NULL;
    int have_n = 0, have_rate = 0, have_secs = 0, rc;
    *o = (struct attack_opts){.interval_ms = 10000,
                              .read_bps = 32,
                              .rcvbuf = 4096,
                              .max_bytes = ATTACK_GARBAGE_MAX,
                              .timeout_ms = 10000,
                              .seed = 1,
                              .reopen = 1};
    const struct opt tab[] = {
        {"url", OPT_STR, &o->url_str, 0, 0, 0, NULL, "a URL"},
        {"rate", OPT_RATE, &o->rate, 0, 1e6, 0, &have_rate, "connections per second"},
        {"count", OPT_U32, &o->count, 1, 1000000, 0, &have_n, NULL},
        {"seconds", OPT_U32, &o->seconds, 1, 86400, 0, &have_secs, NULL},
        {"procs", OPT_U32, &o->procs, 1, 256, 0, NULL, NULL},
        {"src-ips", OPT_STR, &src, 0, 0, 0, NULL, "an address range"},
        {"no-reopen", OPT_FLAG, &o->reopen, 0, 0, 0, NULL, NULL},
        {"interval-ms", OPT_U32, &o->interval_ms, 1, 3600000, 0, NULL, NULL},
        {"read-bytes-per-s", OPT_U32, &o->read_bps, 1, 100000000, 0, NULL, NULL},
        {"rcvbuf", OPT_U32, &o->rcvbuf, 256, 64 << 20, 0, NULL, NULL},
        {"max-bytes", OPT_U32, &o->max_bytes, 1, ATTACK_GARBAGE_MAX, 0, NULL, NULL},
        {"timeout-ms", OPT_U32, &o->timeout_ms, 1, 3600000, 0, NULL, NULL},
        {"ticket-expired", OPT_STR, &o->ticket_expired, 0, ATTACK_TICKET_MAX, 0, NULL, "a ticket"},
        {"timeline", OPT_FLAG, &o->timeline, 0, 0, 1, NULL, NULL},
        {"token", OPT_STR, &o->token, 0, ATTACK_TICKET_MAX, 0, NULL, "a token"},
        {"handshake", OPT_FLAG, &o->handshake, 0, 0, 1, NULL, NULL},
        {"seed", OPT_U32, &o->seed, 0, UINT32_MAX, 0, NULL, NULL},
        {"json", OPT_FLAG, &o->json, 0, 0, 1, NULL, NULL},
    };
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 3;
    if (argc < 2 || argv[1][0] == '-')
        return opts_bad("attack", "a MODE is required: %s", MODE_LIST);
    int m = attack_mode_parse(argv[1]);
    if (m < 0)
        return opts_bad("attack", "unknown mode \"%s\": %s", argv[1], MODE_LIST);
    o->mode = (enum attack_mode)m;
    if ((rc = opts_parse("attack", argc, argv, 2, tab, sizeof(tab) / sizeof(tab[0]))) != 0)
        return rc;
    if (!o->url_str)
        return opts_bad("attack", "--url is required");
    if (!have_n || !have_rate || !have_secs)
        return opts_bad("attack", "--count, --rate and --seconds are required");
    if ((rc = opts_url("attack", "--url", o->url_str, &o->url)) != 0)
        return rc;
    if (o->url.tls)
        return opts_bad("attack", "--url: the attacks speak plain HTTP (no https://)");
    if (o->ticket_expired && o->mode != ATTACK_TICKETS)
        return opts_bad("attack", "--ticket-expired is for the tickets mode");
    if (o->timeline && o->mode != ATTACK_JOINSTORM)
        return opts_bad("attack", "--timeline is for the joinstorm mode");
    int stage = o->mode == ATTACK_WSPING || o->mode == ATTACK_WSNOREAD || o->mode == ATTACK_STAGEFD;
    if (o->token && !stage)
        return opts_bad("attack", "--token is for the stage modes (wsping, wsnoread, stagefd)");
    if (o->handshake && o->mode != ATTACK_STAGEFD)
        return opts_bad("attack", "--handshake is for the stagefd mode");
    if (o->token && o->mode == ATTACK_STAGEFD && !o->handshake)
        return opts_bad("attack", "--token needs --handshake in the stagefd mode");
    char ws_path[LOAD_URL_MAX_PATH + 8];
    if (stage && attack_ws_path(o->url.path, ws_path, sizeof(ws_path)) < 0)
        return opts_bad("attack",
                        "--url %s: the stage modes want the space as the path (/SPACE or "
                        "/ws/SPACE)",
                        o->url_str);
    /* 127.0.1.1 .. 127.0.1.250 */
    if ((rc = opts_src_ips("attack", src, o->url.family, 0x7f000101, 250, &o->src_first,
                           &o->src_count)) != 0)
        return rc;
    opts_procs(&o->procs, o->count, PER_PROC_DEFAULT);
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
    case ATTACK_WSPING:
    case ATTACK_WSNOREAD:
    case ATTACK_STAGEFD: {
        char path[LOAD_URL_MAX_PATH + 8] = "";
        attack_ws_path(o->url.path, path, sizeof(path));
        int ws = o->mode != ATTACK_STAGEFD || o->handshake;
        buf_puts(b, ",\"stage\":{\"ws_path\":");
        buf_json_str(b, path, strlen(path));
        buf_printf(b, ",\"handshake\":%s,\"token\":%s,\"rcvbuf\":", ws ? "true" : "false",
                   o->token ? "true" : "false");
        if (o->mode == ATTACK_STAGEFD)
            buf_puts(b, "null");
        else
            buf_printf(b, "%u", o->rcvbuf);
        buf_printf(b,
                   ",\"upgraded\":%llu,\"bad_accept\":%llu,\"frames_sent\":%llu,"
                   "\"held_at_end\":%llu}",
                   u(r->ws_upgraded), u(r->ws_bad_accept), u(r->ws_frames_sent), u(r->open_at_end));
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
    if (o->mode == ATTACK_WSPING || o->mode == ATTACK_WSNOREAD || o->mode == ATTACK_STAGEFD)
        printf("  WebSocket: upgraded %llu, wrong Accept %llu, ping frames sent %llu, held at the "
               "end %llu\n",
               u(r->ws_upgraded), u(r->ws_bad_accept), u(r->ws_frames_sent), u(r->open_at_end));
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

    if (opts_check_fds("attack", "connections", o.count, o.procs, FD_SPARE) != 0)
        return 2;
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
