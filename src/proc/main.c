/*
 * rostrum: command line.
 *
 *   rostrum serve [--config FILE] [--KEY VALUE ...]
 *   rostrum --version | -h | --help
 *
 * Every global key of the config file (docs/config.example) is an option of the same name,
 * checked by the config parser against the same table of ranges: --audience HOST:PORT,
 * --stage HOST:PORT, --source-password PW, --workers N, --max-members N ... The config file
 * is read first; options given on the command line override it, also when SIGHUP re-reads
 * the file (src/proc/reload.c). When both
 * ports listen, one line "ready audience=HOST:PORT stage=HOST:PORT" goes to stdout, so tests
 * and scripts that bind port 0 learn the ports, and systemd (Type=notify) is told READY=1
 * (sd_notify does nothing without NOTIFY_SOCKET). Exit codes: 0 on a clean stop, 1 if the
 * server could not start, 2 for a bad command line or configuration.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config/config.h"
#include "proc/server.h"
#include "util/log.h"

#define CONFIG_MAX_OPTIONS 96 /* global config keys, each a --KEY option */
#define OPT_KEY 1000          /* getopt value of the first of them */

#ifndef ROSTRUM_VERSION
#define ROSTRUM_VERSION "0.9.0"
#endif

static void usage_top(FILE *f)
{
    fprintf(f, "usage: rostrum COMMAND [options]\n"
               "commands:\n"
               "  serve        run the server (rostrum serve --help lists its options)\n"
               "  relay        pull the spaces of an upstream rostrum (or one Icecast mount) and\n"
               "               serve them (rostrum relay --help)\n"
               "options:\n"
               "  -h, --help   this help\n"
               "  --version    print the version\n"
               "See rostrum(1).\n");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rostrum serve [options]\n"
            "  --audience HOST:PORT     listeners, status, metrics, web page (default 0.0.0.0:8000)\n"
            "  --stage HOST:PORT        studio sources (PUT/SOURCE) (default 0.0.0.0:8001)\n"
            "  --audience-tls HOST:PORT the audience side over TLS too (needs --tls-cert, --tls-key)\n"
            "  --stage-tls HOST:PORT    the stage side over TLS too (API, wss://, sources)\n"
            "  --tls-cert FILE          certificate, full chain (PEM)\n"
            "  --tls-key FILE           its private key (PEM)\n"
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
            "  --log-level LEVEL        error, warn, info (default) or debug\n"
            "  --user NAME              started as root: become NAME once both ports are bound\n"
            "  --KEY VALUE              any global key of the config file, with the same range\n"
            "                           (docs/config.example), e.g. --max-members 4000\n"
            "signals: TERM/INT stop; HUP re-reads the config file (the options above still\n"
            "override it); USR1 reopens the log file and access log (logrotate); USR2\n"
            "upgrades: the binary at the path this one was started from takes over every\n"
            "connection\n");
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

static void usage_relay(FILE *f)
{
    fprintf(f,
            "usage: rostrum relay --upstream URL[,URL...] [--audience HOST:PORT] [options]\n"
            "  --upstream URLS          http(s)://HOST:PORT of an origin's (or another relay's)\n"
            "                           audience port: every live space is relayed; or\n"
            "                           http://HOST:PORT/MOUNT: that one mount (a rostrum\n"
            "                           mount, or a plain Icecast/Ogg stream). Several, comma-\n"
            "                           separated: fail-over in that order\n"
            "  --audience HOST:PORT     listeners, status, metrics, web page (default 0.0.0.0:8000)\n"
            "  --relay-key KEY          presented to the upstreams (X-Relay-Key), and required\n"
            "                           of this relay's own downstream relays\n"
            "  --public-url URL         where listeners reach this relay (http://HOST:PORT):\n"
            "                           a full or draining upstream redirects them here\n"
            "  --relay-name NAME        the name this relay reports to its upstream\n"
            "  --relay-cafile FILE      CA certificates (PEM) for https:// upstreams (default:\n"
            "                           the system's trust store)\n"
            "  --config FILE            config file (see docs/config.example)\n"
            "  --KEY VALUE              any global key of the config file, as for serve\n"
            "                           (--workers, --max-listeners, --burst-ms, --log-level...);\n"
            "                           a relay's own defaults: burst-ms 3000 (its listeners ride\n"
            "                           out a fail-over), grace-ms 30000\n"
            "There is no stage port: the stream comes from upstream. See rostrum(1).\n");
}

static int cmd_serve(int argc, char **argv, char **full_argv, int relay_mode)
{
    static struct server srv;
    srv.relay_mode = relay_mode;
    srv.args.relay = relay_mode;
    const char *upstream = NULL;
    srv.argv = full_argv;
    /* what an upgrade runs: this path, whatever binary is there by then */
    ssize_t n = readlink("/proc/self/exe", srv.exe, sizeof(srv.exe) - 1);
    srv.exe[n > 0 ? n : 0] = '\0';
    const char *del = " (deleted)";
    size_t el = strlen(srv.exe), dl = strlen(del);
    if (el > dl && strcmp(srv.exe + el - dl, del) == 0)
        srv.exe[el - dl] = '\0'; /* replaced on disk since: the new file has the path now */
    struct config *cfg = &srv.cfg;
    /* Every global key of the config file is an option of the same name, checked by the
     * config parser (one table of names and ranges), plus --config and --help. */
    struct option opts[CONFIG_MAX_OPTIONS + 4];
    int nopts = 0;
    for (const char *k; nopts < CONFIG_MAX_OPTIONS && (k = config_global_key(nopts)); nopts++)
        opts[nopts] = (struct option){k, required_argument, 0, OPT_KEY + nopts};
    opts[nopts++] = (struct option){"config", required_argument, 0, 'c'};
    opts[nopts++] = (struct option){"help", no_argument, 0, 'h'};
    if (relay_mode)
        opts[nopts++] = (struct option){"upstream", required_argument, 0, 'u'};
    opts[nopts] = (struct option){0, 0, 0, 0};
    /* The options are kept (server_args) and applied over the files, now and on each
     * reload (SIGHUP), so the command line always overrides the file. */
    struct server_args *args = &srv.args;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o >= OPT_KEY && o < OPT_KEY + CONFIG_MAX_OPTIONS) {
            if (args->nopts == SERVER_MAX_OPTS) {
                fprintf(stderr, "rostrum: too many options (max %d)\n", SERVER_MAX_OPTS);
                return 2;
            }
            args->key[args->nopts] = opts[o - OPT_KEY].name;
            args->val[args->nopts++] = optarg;
            continue;
        }
        switch (o) {
        case 'c':
            if (args->nfiles == SERVER_MAX_FILES) {
                fprintf(stderr, "rostrum: too many --config files (max %d)\n",
                        SERVER_MAX_FILES);
                return 2;
            }
            args->files[args->nfiles++] = optarg;
            break;
        case 'u':
            upstream = optarg;
            break;
        case 'h':
            relay_mode ? usage_relay(stdout) : usage(stdout);
            return 0;
        default:
            relay_mode ? usage_relay(stderr) : usage(stderr);
            return 2;
        }
    }
    char err[600];
    if (server_config_read(args, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "rostrum: %s\n", err);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "rostrum: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (relay_mode) {
        if (!upstream) {
            fprintf(stderr, "rostrum relay: no --upstream given (http://HOST:PORT[/MOUNT])\n");
            return 2;
        }
        if (relay_parse_upstreams(&srv.relay, upstream, err, sizeof(err)) < 0) {
            fprintf(stderr, "rostrum relay: %s\n", err);
            return 2;
        }
    } else if (cfg->source_password[0] == '\0') {
        fprintf(stderr, "rostrum: no source password: give --source-password or set "
                        "source-password in the config file\n");
        return 2;
    }
    if (!relay_mode && same_port(cfg)) {
        fprintf(stderr,
                "rostrum: the audience port (%s:%u) and the stage port (%s:%u) overlap: "
                "listeners and sources need two different ports\n",
                cfg->audience_host, cfg->audience_port, cfg->stage_host, cfg->stage_port);
        return 2;
    }
    log_level = cfg->log_level;
    int lf = cfg->log_file[0] ? log_file_open(cfg->log_file) : 0;
    if (lf < 0) {
        fprintf(stderr, "rostrum: log-file %s: %s: not starting\n", cfg->log_file, strerror(-lf));
        return 1;
    }
    int check = upgrade_check_mode(cfg);
    if (check >= 0)
        return check; /* an upgrade's check: the configuration is good, the state readable */
    srv.given = *cfg;
    cfg->workers = default_workers(cfg->workers, cfg->max_listeners);
    if (upgrade_resuming() ? upgrade_resume(&srv) < 0 : server_init(&srv) < 0)
        return 1;
    if (relay_mode)
        printf("ready audience=%s relay=%d", srv.audience_addr, srv.relay.nup);
    else
        printf("ready audience=%s stage=%s", srv.audience_addr, srv.stage_addr);
    if (srv.cfg.audience_tls)
        printf(" audience-tls=%s", srv.audience_tls_addr);
    if (srv.cfg.stage_tls)
        printf(" stage-tls=%s", srv.stage_tls_addr);
    printf("\n");
    fflush(stdout);
    sd_notifyf(0, "READY=1\nSTATUS=audience %s, stage %s\nMAINPID=%d", srv.audience_addr,
               srv.stage_addr, (int)getpid());
    log_info("server", "rostrum listening: audience %s, stage %s%s%s%s%s", srv.audience_addr,
             srv.stage_addr, srv.cfg.audience_tls ? ", audience over TLS " : "",
             srv.cfg.audience_tls ? srv.audience_tls_addr : "",
             srv.cfg.stage_tls ? ", stage over TLS " : "",
             srv.cfg.stage_tls ? srv.stage_tls_addr : "");
    server_run(&srv);
    sd_notify(0, "STOPPING=1");
    server_free(&srv);
    log_info("server", "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_top(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1, argv, 0);
    if (strcmp(cmd, "relay") == 0)
        return cmd_serve(argc - 1, argv + 1, argv, 1);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage_top(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("rostrum %s\n", ROSTRUM_VERSION);
        return 0;
    }
    if (cmd[0] == '-')
        fprintf(stderr, "rostrum: unknown option '%s'\n", cmd);
    else
        fprintf(stderr, "rostrum: unknown command '%s'\n", cmd);
    usage_top(stderr);
    return 2;
}
