/*
 * rostrum: command line.
 *
 *   rostrum serve [--audience HOST:PORT] [--stage HOST:PORT] [--source-password PW]
 *                 [--config FILE] [--burst-ms N] [--page-ms N] [--grace-ms N]
 *                 [--workers N] [--max-listeners N] [--write-budget N] [--max-batch-ms N]
 *                 [--log-level error|warn|info|debug]
 *
 * The config file is read first; options given on the command line override it. When both
 * ports listen, one line "ready audience=HOST:PORT stage=HOST:PORT" goes to stdout, so tests
 * and scripts that bind port 0 learn the ports.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config/config.h"
#include "proc/server.h"
#include "util/log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rostrum serve [options]\n"
            "  --audience HOST:PORT     listeners, status, metrics, web page (default 0.0.0.0:8000)\n"
            "  --stage HOST:PORT        studio sources (PUT/SOURCE) (default 0.0.0.0:8001)\n"
            "  --source-password PW     password of user 'source' (required here or in config)\n"
            "  --config FILE            config file (see docs/config.example)\n"
            "  --burst-ms N             recent audio sent to a newcomer (default 1000)\n"
            "  --page-ms N              audio per Ogg page of the output (default 200)\n"
            "  --grace-ms N             how long listeners wait for a source to return (default 10000)\n"
            "  --host-key KEY           key that creates stage spaces (API, rostrum-speak --key)\n"
            "  --workers N              listener worker processes (default: from --max-listeners\n"
            "                           and the descriptor limit; 0 = serve in the main process)\n"
            "  --max-listeners N        listeners to plan for (default 100000)\n"
            "  --write-budget N         writes/s before deliveries are batched (default 50000)\n"
            "  --max-batch-ms N         longest wait between writes to a listener (default 2000)\n"
            "  --log-level LEVEL        error, warn, info (default) or debug\n");
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "rostrum: %s: expected a number from %d to %d, got \"%s\"\n", opt, lo, hi,
                s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_level(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Raises the descriptor limit to its hard maximum and, unless <asked> >= 0, returns enough
 * workers for <max_listeners>, each keeping 2,000 descriptors for everything else. */
static int default_workers(int asked, int max_listeners)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (asked >= 0)
        return asked;
    long per = (long)rl.rlim_cur - 2000;
    if (rl.rlim_cur == RLIM_INFINITY || per > 100000)
        per = 100000;
    if (per < 1000)
        per = 1000;
    long n = (max_listeners + per - 1) / per;
    return n < 1 ? 1 : n > SHARED_MAX_WORKERS ? SHARED_MAX_WORKERS : (int)n;
}

static int wildcard_host(const char *h)
{
    return h[0] == '\0' || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0;
}

/* 1 if the audience and stage addresses would be the same port (port 0 picks two). */
static int same_port(const struct config *cfg)
{
    if (cfg->audience_port == 0 || cfg->audience_port != cfg->stage_port)
        return 0;
    return strcmp(cfg->audience_host, cfg->stage_host) == 0 ||
           wildcard_host(cfg->audience_host) || wildcard_host(cfg->stage_host);
}

static int cmd_serve(int argc, char **argv)
{
    static struct server srv;
    struct config *cfg = &srv.cfg;
    config_defaults(cfg);
    static const struct option opts[] = {
        {"audience", required_argument, 0, 'a'}, {"stage", required_argument, 0, 's'},
        {"source-password", required_argument, 0, 'p'}, {"config", required_argument, 0, 'c'},
        {"burst-ms", required_argument, 0, 'b'}, {"page-ms", required_argument, 0, 'g'},
        {"grace-ms", required_argument, 0, 'r'}, {"log-level", required_argument, 0, 'l'},
        {"host-key", required_argument, 0, 'k'}, {"workers", required_argument, 0, 'w'}, {"max-listeners", required_argument, 0, 'm'},
        {"write-budget", required_argument, 0, 'W'}, {"max-batch-ms", required_argument, 0, 'B'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    /* First pass: the config file, so that the command line can override it. */
    for (int i = 1; i < argc - 1; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            char err[512];
            if (config_load_file(cfg, argv[i + 1], err, sizeof(err)) < 0) {
                fprintf(stderr, "rostrum: %s\n", err);
                return 2;
            }
        }
    }
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            if (config_parse_hostport(optarg, cfg->audience_host, sizeof(cfg->audience_host),
                                      &cfg->audience_port) < 0) {
                fprintf(stderr, "rostrum: --audience: expected HOST:PORT, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 's':
            if (config_parse_hostport(optarg, cfg->stage_host, sizeof(cfg->stage_host),
                                      &cfg->stage_port) < 0) {
                fprintf(stderr, "rostrum: --stage: expected HOST:PORT, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'p':
            if (strlen(optarg) >= sizeof(cfg->source_password)) {
                fprintf(stderr, "rostrum: --source-password: too long\n");
                return 2;
            }
            snprintf(cfg->source_password, sizeof(cfg->source_password), "%s", optarg);
            break;
        case 'c':
            break;
        case 'b':
            if (parse_int("--burst-ms", optarg, 0, 30000, &cfg->burst_ms) < 0)
                return 2;
            break;
        case 'g':
            if (parse_int("--page-ms", optarg, 20, 2000, &cfg->page_ms) < 0)
                return 2;
            break;
        case 'r':
            if (parse_int("--grace-ms", optarg, 0, 600000, &cfg->grace_ms) < 0)
                return 2;
            break;
        case 'k':
            if (strlen(optarg) >= sizeof(cfg->host_key)) {
                fprintf(stderr, "rostrum: --host-key: too long\n");
                return 2;
            }
            snprintf(cfg->host_key, sizeof(cfg->host_key), "%s", optarg);
            break;
        case 'w':
            if (parse_int("--workers", optarg, 0, SHARED_MAX_WORKERS, &cfg->workers) < 0)
                return 2;
            break;
        case 'm':
            if (parse_int("--max-listeners", optarg, 1, 10000000, &cfg->max_listeners) < 0)
                return 2;
            break;
        case 'W':
            if (parse_int("--write-budget", optarg, 1000, 10000000, &cfg->write_budget) < 0)
                return 2;
            break;
        case 'B':
            if (parse_int("--max-batch-ms", optarg, 0, 5000, &cfg->max_batch_ms) < 0)
                return 2;
            break;
        case 'l':
            if ((cfg->log_level = parse_level(optarg)) < 0) {
                fprintf(stderr, "rostrum: --log-level: error, warn, info or debug\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rostrum: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (cfg->source_password[0] == '\0') {
        fprintf(stderr, "rostrum: no source password: give --source-password or set "
                        "source-password in the config file\n");
        return 2;
    }
    if (same_port(cfg)) {
        fprintf(stderr,
                "rostrum: the audience port (%s:%u) and the stage port (%s:%u) overlap: "
                "listeners and sources need two different ports\n",
                cfg->audience_host, cfg->audience_port, cfg->stage_host, cfg->stage_port);
        return 2;
    }
    log_level = cfg->log_level;
    cfg->workers = default_workers(cfg->workers, cfg->max_listeners);
    if (server_init(&srv) < 0)
        return 1;
    printf("ready audience=%s stage=%s\n", srv.audience_addr, srv.stage_addr);
    fflush(stdout);
    log_info("server", "rostrum listening: audience %s, stage %s", srv.audience_addr,
             srv.stage_addr);
    server_run(&srv);
    server_free(&srv);
    log_info("server", "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
