/*
 * load/listen_cli: "rostrum-load listen" from the command line: options, the parent process that
 * forks the workers (load/listen.c), reads the server's gauge and merges the workers' records,
 * and the reports (one JSON object, or a readable summary).
 *
 * Exit status: 0 the run completed, whatever the figures; 1 internal error (a worker failed or
 * could not be started; what the others measured is still printed); 2 bad arguments.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "load/httpget.h"
#include "load/listen.h"
#include "load/opts.h"
#include "load/procs.h"
#include "load/url.h"
#include "tls/tls.h"
#include "util/buf.h"
#include "util/log.h"

#define PER_PROC_DEFAULT 15000
#define FD_SPARE 32            /* descriptors a worker needs beside its listeners */
#define COLLECT_GRACE_MS 15000 /* how long after the end the parent waits for workers */
#define PROG_POLL_MS 100       /* the parent's tick: --programme polls the state document */

/* ---- options ------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: rostrum-load listen --url http[s]://HOST:PORT/MOUNT --listeners N\n"
        "                           --rate JOINS_PER_S --seconds S [options]\n"
        "  --url URL           stream to join; HOST must be loopback (127.0.0.0/8 or [::1]);\n"
        "                      https:// joins over TLS (a handshake per listener: pace --rate)\n"
        "  --listeners N       listeners to join in all (1..1000000)\n"
        "  --rate R            joins per second in all, paced evenly (> 0)\n"
        "  --seconds S         run length; every listener leaves at the end (1..86400)\n"
        "  --procs P           worker processes (default ceil(N / %d))\n"
        "  --kbps K            bitrate a listener must hold, 90 %% of it counts (default 48)\n"
        "  --stall-ms MS       a gap this long without audio is a stall (default 3000)\n"
        "  --src-ips A-B       source addresses, round-robin (default 127.0.0.2-127.0.0.250)\n"
        "  --metrics-url URL   where to read rostrum_listeners (default http://HOST:PORT/metrics;\n"
        "                      \"none\" to skip)\n"
        "  --cacert FILE       https://: the server's certificate must lead to this CA (PEM)\n"
        "                      and name the URL's host (default: the system's CAs)\n"
        "  --insecure          https://: accept any certificate (no verification at all)\n"
        "  --join              ask /join<path> for a ticket first (the waiting room, a\n"
        "                      scheduled space's pre-queue) and connect at its admit time;\n"
        "                      as a browser does, the ticket is asked with keep-alive and the\n"
        "                      stream on the same connection if the server keeps it long\n"
        "                      enough (plain http://)\n"
        "  --no-keep-alive     --join: a new connection for the stream every time\n"
        "  --retry N           ask again after a 503 or 429's Retry-After, N times at most\n"
        "                      (0..100; default 0)\n"
        "  --programme URL     a scheduled space's state document (/state/NAME.json): report\n"
        "                      when the programme reached the listeners already in its lobby\n"
        "  --json              print one JSON object instead of a summary\n"
        "exit status: 0 run completed, 1 internal error, 2 bad arguments\n",
        PER_PROC_DEFAULT);
}

/* Parses the options into <o>. Returns 0, 2 (bad arguments, message printed) or 3 (--help). */
static int parse_opts(int argc, char **argv, struct load_listen_opts *o)
{
    const char *src = NULL;
    int have_n = 0, have_rate = 0, have_secs = 0, rc;
    *o = (struct load_listen_opts){.kbps = 48, .stall_ms = 3000};
    const struct opt tab[] = {
        {"url", OPT_STR, &o->url_str, 0, 0, 0, NULL, "a URL"},
        {"listeners", OPT_U32, &o->listeners, 1, 1000000, 0, &have_n, NULL},
        {"rate", OPT_RATE, &o->rate, 0, 1e7, 0, &have_rate, "joins per second"},
        {"seconds", OPT_U32, &o->seconds, 1, 86400, 0, &have_secs, NULL},
        {"procs", OPT_U32, &o->procs, 1, 256, 0, NULL, NULL},
        {"kbps", OPT_U32, &o->kbps, 0, 100000, 0, NULL, NULL},
        {"stall-ms", OPT_U32, &o->stall_ms, 1, 3600000, 0, NULL, NULL},
        {"src-ips", OPT_STR, &src, 0, 0, 0, NULL, "an address range"},
        {"metrics-url", OPT_STR, &o->metrics_str, 0, 0, 0, NULL, "a URL or \"none\""},
        {"cacert", OPT_STR, &o->cacert, 0, 0, 0, NULL, "a CA file"},
        {"insecure", OPT_FLAG, &o->insecure, 0, 0, 1, NULL, NULL},
        {"programme", OPT_STR, &o->programme_str, 0, 0, 0, NULL, "a URL"},
        {"join", OPT_FLAG, &o->join, 0, 0, 1, NULL, NULL},
        {"retry", OPT_U32, &o->retry, 0, 100, 0, NULL, NULL},
        {"no-keep-alive", OPT_FLAG, &o->no_keep_alive, 0, 0, 1, NULL, NULL},
        {"json", OPT_FLAG, &o->json, 0, 0, 1, NULL, NULL},
    };
    if ((rc = opts_parse("listen", argc, argv, 1, tab, sizeof(tab) / sizeof(tab[0]))) != 0)
        return rc;
    if (!o->url_str)
        return opts_bad("listen", "--url is required");
    if (!have_n || !have_rate || !have_secs)
        return opts_bad("listen", "--listeners, --rate and --seconds are required");
    if ((rc = opts_url("listen", "--url", o->url_str, &o->url)) != 0)
        return rc;

    if (o->metrics_str && strcmp(o->metrics_str, "none") == 0) {
        o->have_metrics = 0;
    } else if (o->metrics_str) {
        if ((rc = opts_url("listen", "--metrics-url", o->metrics_str, &o->metrics)) != 0)
            return rc;
        o->have_metrics = 1;
    } else {
        o->metrics = o->url;
        snprintf(o->metrics.path, sizeof(o->metrics.path), "/metrics");
        o->have_metrics = 1;
    }
    if (o->programme_str) {
        if ((rc = opts_url("listen", "--programme", o->programme_str, &o->programme)) != 0)
            return rc;
        if (o->programme.tls)
            return opts_bad("listen", "--programme: an http:// URL");
    }
    /* 127.0.0.2 .. 127.0.0.250 */
    if ((rc = opts_src_ips("listen", src, o->url.family, 0x7f000002, 249, &o->src_first,
                           &o->src_count)) != 0)
        return rc;
    opts_procs(&o->procs, o->listeners, PER_PROC_DEFAULT);
    int tls = o->url.tls || (o->have_metrics && o->metrics.tls);
    if (o->cacert && o->insecure)
        return opts_bad("listen", "--cacert and --insecure exclude each other");
    if ((o->cacert || o->insecure) && !tls)
        return opts_bad("listen", "--cacert and --insecure are for https:// URLs");
    if (tls) {
        char err[768];
        o->tls = tls_client_ctx_new(o->cacert, !o->insecure, err, sizeof(err));
        if (!o->tls)
            return opts_bad("listen", "--cacert: %s", err);
    }
    return 0;
}

/* ---- parent -------------------------------------------------------------------------------- */

/* ---- reports ------------------------------------------------------------------------------- */

static void print_json(const struct load_listen_opts *o, const struct load_result *r,
                       int have_server, double server_listeners, const char *metrics_err,
                       long long count_ms)
{
    struct buf b = {0};
    buf_puts(&b, "{\"mode\":\"listen\",\"url\":");
    buf_json_str(&b, o->url_str, strlen(o->url_str));
    buf_printf(&b, ",\"tls\":%s,\"tls_verify\":%s", o->url.tls ? "true" : "false",
               !o->url.tls   ? "null"
               : o->insecure ? "false"
                             : "true");
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
               "\"stalls\":%llu,\"listeners_with_stalls\":%llu,\"stalls_before_audio\":%llu,"
               "\"seq_gaps\":%llu,"
               "\"crc_errors\":%llu,\"serial_changes\":%llu,\"sync_losses\":%llu,"
               "\"bytes\":%llu,\"open_at_end\":%llu,\"duration_s\":%.3f,",
               (unsigned long long)r->held, pct, (unsigned long long)r->held_eligible,
               (unsigned long long)r->stalls, (unsigned long long)r->listeners_with_stalls,
               (unsigned long long)r->stalls_before_audio,
               (unsigned long long)r->seq_gaps, (unsigned long long)r->crc_errors,
               (unsigned long long)r->serial_changes, (unsigned long long)r->sync_losses,
               (unsigned long long)r->bytes, (unsigned long long)r->open_at_end,
               (double)r->duration_us / 1e6);
    if (o->join || o->retry) {
        buf_printf(&b, "\"tickets\":%llu,\"join_errors\":%llu,\"retries\":%llu,\"kept\":%llu,",
                   (unsigned long long)r->tickets, (unsigned long long)r->join_errors,
                   (unsigned long long)r->retries, (unsigned long long)r->kept);
        procs_json_hist(&b, "ticket_wait_ms", &r->ticket_wait_us);
        buf_puts(&b, ",");
    }
    if (o->have_metrics) {
        buf_printf(&b, "\"server_count_ms\":%lld,", count_ms); /* how long it took to answer */
        if (have_server) {
            buf_printf(&b, "\"server_listeners\":%.0f,", server_listeners);
        } else {
            buf_puts(&b, "\"server_listeners\":null,\"metrics_error\":");
            buf_json_str(&b, metrics_err, strlen(metrics_err));
            buf_puts(&b, ",");
        }
    }
    if (o->prog) {
        const struct load_programme *g = o->prog;
        if (g->known)
            buf_printf(&b, "\"programme\":{\"t0_ms\":%lld,\"live_at_ms\":%lld,"
                           "\"live_granule\":%llu,",
                       (long long)g->t0_ms, (long long)g->live_at_ms,
                       (unsigned long long)g->live_granule);
        else
            buf_puts(&b, "\"programme\":{\"t0_ms\":null,");
        buf_printf(&b, "\"in_lobby\":%llu,\"reached\":%llu,\"before_t0\":%llu,"
                       "\"unresolved\":%llu,\"joined_live\":%llu,",
                   (unsigned long long)r->prog_lobby, (unsigned long long)r->prog_reached,
                   (unsigned long long)r->prog_early,
                   (unsigned long long)r->prog_unresolved,
                   (unsigned long long)r->prog_joined_live);
        procs_json_hist(&b, "after_t0_ms", &r->programme_us);
        buf_printf(&b, ",\"after_t0_p95_ms\":%.2f},",
                   procs_ms(hist_percentile(&r->programme_us, 95)));
    }
    buf_printf(&b, "\"tool_listeners\":%llu,\"tool_listeners_answered\":%llu}\n",
               (unsigned long long)r->tool_listeners,
               (unsigned long long)r->tool_listeners_answered);
    fputs(b.data, stdout);
    buf_free(&b);
}

static void print_summary(const struct load_listen_opts *o, const struct load_result *r,
                          int have_server, double server_listeners, const char *metrics_err)
{
    printf("rostrum-load listen %s: %u listeners at %g/s for %u s over %u process%s%s\n",
           o->url_str, o->listeners, o->rate, o->seconds, o->procs, o->procs == 1 ? "" : "es",
           !o->url.tls   ? ""
           : o->insecure ? " (TLS, certificate not verified)"
                         : " (TLS)");
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
    printf("  stalls %llu (%llu listeners; %llu before any audio), sequence gaps %llu, CRC errors "
           "%llu, serial changes %llu, sync losses %llu\n",
           (unsigned long long)r->stalls, (unsigned long long)r->listeners_with_stalls,
           (unsigned long long)r->stalls_before_audio,
           (unsigned long long)r->seq_gaps, (unsigned long long)r->crc_errors,
           (unsigned long long)r->serial_changes, (unsigned long long)r->sync_losses);
    printf("  audio bytes %llu in %.1f s\n", (unsigned long long)r->bytes,
           (double)r->duration_us / 1e6);
    if (o->join || o->retry)
        printf("  tickets %llu (wait p50 %.0f max %.0f ms), join errors %llu, retries %llu, "
               "streams on the ticket's connection %llu\n",
               (unsigned long long)r->tickets, procs_ms(hist_percentile(&r->ticket_wait_us, 50)),
               procs_ms(r->ticket_wait_us.max), (unsigned long long)r->join_errors,
               (unsigned long long)r->retries, (unsigned long long)r->kept);
    if (o->prog && o->prog->known)
        printf("  programme (go-live %+lld ms from T0): %llu of %llu lobby listeners reached, "
               "%llu lost, after T0 p50 %.1f p95 %.1f max %.1f ms; %llu joined live\n",
               (long long)(o->prog->live_at_ms - o->prog->t0_ms),
               (unsigned long long)r->prog_reached, (unsigned long long)r->prog_lobby,
               (unsigned long long)r->prog_unresolved,
               procs_ms(hist_percentile(&r->programme_us, 50)),
               procs_ms(hist_percentile(&r->programme_us, 95)), procs_ms(r->programme_us.max),
               (unsigned long long)r->prog_joined_live);
    else if (o->prog)
        printf("  programme: the space did not go live during the run\n");
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

/* The parent's side requests on kept-alive connections: a new connection per request waits in
 * the listen queue a storm overflows (SYNs dropped: 1-7 s), and then nothing gets through. */
struct count {
    const struct load_listen_opts *o;
    int have;
    double listeners;
    char err[256];
    struct load_http_kept metrics_conn, programme_conn;
    int64_t metrics_warm_us; /* the last GET on metrics_conn */
    int64_t count_at_us;     /* when count_now() is due: no warm-up GET may hold it up */
    int64_t took_ms;         /* how long the server took to answer the count */
};

/* GET <u> for the parent: on <k> for http://, a new connection for https://. */
static int side_get(const struct count *c, struct load_http_kept *k, const struct load_url *u,
                    int timeout_ms, int *status, struct buf *body)
{
    if (u->tls)
        return load_http_get(u, c->o->tls, timeout_ms, status, body);
    return load_http_get_kept(k, u, timeout_ms, status, body);
}

/* Fetches rostrum_listeners from the metrics URL. Returns 1 with <*v> set, or 0 with a reason
 * in <err>. */
static int fetch_server_listeners(struct count *c)
{
    const struct load_listen_opts *o = c->o;
    struct buf body = {0};
    int status = 0;
    int rc = side_get(c, &c->metrics_conn, &o->metrics, 5000, &status, &body);
    int ok = 0;
    if (rc == -ECONNABORTED && o->metrics.tls)
        snprintf(c->err, sizeof(c->err), "GET %.200s: TLS handshake failed", o->metrics.path);
    else if (rc < 0)
        snprintf(c->err, sizeof(c->err), "GET %.200s: %s", o->metrics.path, strerror(-rc));
    else if (status != 200)
        snprintf(c->err, sizeof(c->err), "GET %.200s: HTTP %d", o->metrics.path, status);
    else if (load_metric_value(body.data, body.len, "rostrum_listeners", &c->listeners) < 0)
        snprintf(c->err, sizeof(c->err), "no rostrum_listeners in %.200s", o->metrics.path);
    else
        ok = 1;
    buf_free(&body);
    return ok;
}

/* The server's count, taken once while the run is on (procs' at()). */
static void count_now(void *arg)
{
    struct count *c = arg;
    int64_t t0 = load_now_us();
    c->have = fetch_server_listeners(c);
    c->took_ms = (load_now_us() - t0) / 1000;
    if (c->o->count_pending)
        __atomic_store_n(c->o->count_pending, 0, __ATOMIC_RELEASE);
}

/* --programme: reads the state document; once it has the go-live, shares it with the workers
 * (they read <known> last). A failed poll is simply retried at the next tick. */
static void programme_poll(struct count *c)
{
    struct load_programme *g = c->o->prog;
    if (!g || g->known)
        return;
    struct buf body = {0};
    int status = 0;
    if (side_get(c, &c->programme_conn, &c->o->programme, 5000, &status, &body) == 0 &&
        status == 200) {
        cJSON *j = cJSON_ParseWithLength(body.data, body.len);
        const cJSON *gr = cJSON_GetObjectItemCaseSensitive(j, "live_granule");
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "live_at_ms");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "starts_at");
        if (cJSON_IsNumber(gr) && cJSON_IsNumber(at)) {
            g->live_granule = (uint64_t)gr->valuedouble;
            g->live_at_ms = (int64_t)at->valuedouble;
            int64_t t0 = cJSON_IsNumber(st) ? (int64_t)st->valuedouble * 1000 : g->live_at_ms;
            g->t0_ms = t0 < g->live_at_ms ? t0 : g->live_at_ms;
            __atomic_store_n(&g->known, 1, __ATOMIC_RELEASE);
        }
        cJSON_Delete(j);
    }
    buf_free(&body);
}

/* Every PROG_POLL_MS: the programme poll, and a GET of the metrics every 2 s to keep that
 * connection for the count at the end (the server closes an idle one after its head
 * deadline). */
static void side_tick(void *arg)
{
    struct count *c = arg;
    programme_poll(c);
    int64_t now = load_now_us();
    if (c->o->have_metrics && !c->o->metrics.tls && now - c->metrics_warm_us >= 2000000 &&
        (now < c->count_at_us - 3000000 || now > c->count_at_us)) {
        struct buf body = {0};
        int status;
        c->metrics_warm_us = now;
        side_get(c, &c->metrics_conn, &c->o->metrics, 2000, &status, &body);
        buf_free(&body);
    }
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

    if (opts_check_fds("listen", "listeners", o.listeners, o.procs, FD_SPARE) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (o.have_metrics) { /* the workers hold their listeners until the count is read */
        o.count_pending = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (o.count_pending == MAP_FAILED) {
            log_error("load", "mmap: %s", strerror(errno));
            return 1;
        }
        *o.count_pending = 1;
    }
    if (o.programme_str) {
        o.prog = mmap(NULL, sizeof(*o.prog), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                      -1, 0);
        if (o.prog == MAP_FAILED) {
            log_error("load", "mmap: %s", strerror(errno));
            return 1;
        }
    }

    /* time for the forks; every worker starts pacing at the same instant */
    int64_t start_us = load_now_us() + 200000 + (int64_t)o.procs * 5000;
    int64_t end_us = start_us + (int64_t)o.seconds * 1000000;
    struct count cnt = {.o = &o, .metrics_conn = {.fd = -1}, .programme_conn = {.fd = -1}};
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
        .tick_ms = PROG_POLL_MS,
        .tick = o.prog || (o.have_metrics && !o.metrics.tls) ? side_tick : NULL,
    };
    cnt.count_at_us = p.at_us;
    int failed;
    struct load_result *res = procs_run(&p, &failed);

    struct load_result *total = calloc(1, sizeof(*total));
    if (!total)
        abort();
    for (uint32_t k = 0; k < o.procs; k++)
        if (res[k].magic == LOAD_RESULT_MAGIC)
            load_result_merge(total, &res[k]);
    if (o.json)
        print_json(&o, total, cnt.have, cnt.listeners, cnt.err, (long long)cnt.took_ms);
    else
        print_summary(&o, total, cnt.have, cnt.listeners, cnt.err);
    fflush(stdout);
    load_http_kept_close(&cnt.metrics_conn);
    load_http_kept_close(&cnt.programme_conn);
    tls_ctx_free(o.tls);
    if (o.prog)
        munmap(o.prog, sizeof(*o.prog));
    if (o.count_pending)
        munmap(o.count_pending, sizeof(int));
    free(total);
    free(res);
    return failed ? 1 : 0;
}
