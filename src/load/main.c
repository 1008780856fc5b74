/*
 * rostrum-load: the project's load and attack tool, built on rostrum's own event loop.
 *
 *   rostrum-load listen --url http://127.0.0.1:8000/live --listeners N --rate R --seconds S ...
 *   rostrum-load hls --url http://127.0.0.1:8000/live.m3u8 --players N --rate R --seconds S
 *   rostrum-load attack MODE --url http://127.0.0.1:8000/live --rate R --count N --seconds S ...
 *
 * One subcommand per kind of load; each parses its own options and returns the exit status:
 * 0 the run completed (whatever the figures), 1 internal error, 2 bad arguments. Only loopback
 * targets are accepted: this is a benchmark tool, not a way to load someone else's server.
 */
#include <stdio.h>
#include <string.h>

#include "load/attack.h"
#include "load/hls.h"
#include "load/listen.h"
#include "util/log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rostrum-load COMMAND [options]\n"
            "commands:\n"
            "  listen    HTTP listeners that join at a rate, check the Ogg stream they get and\n"
            "            report time to first audio, bitrate held, stalls (--help for options)\n"
            "  hls       HLS players that behave like hls.js (blocking playlist reloads, parts,\n"
            "            preload hints, delta updates, beacons) and report latency behind live\n"
            "            and stalls (rostrum-load hls --help)\n"
            "  attack    bounded hostile clients: flood, slowloris, slowread, garbage, joinstorm,\n"
            "            tickets; against the stage port: wsping, wsnoread, stagefd\n"
            "            (rostrum-load attack --help)\n");
}

int main(int argc, char **argv)
{
    log_level = LOG_WARN;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "listen") == 0)
        return load_listen_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "hls") == 0)
        return load_hls_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "attack") == 0)
        return load_attack_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "rostrum-load: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
