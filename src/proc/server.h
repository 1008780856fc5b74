/*
 * server: the processes of `rostrum serve`. The main process runs ingest (the stage port, the
 * spaces and their stages) and supervises W listener workers; each worker serves the audience
 * port from the shared page rings (shm/shared.h). With --workers 0 the main process serves
 * the audience port itself, through the same code.
 *
 * This is the top layer: it owns one of each of the layers below and wires them together.
 *
 *   main process:  conn_hub --route--> stageport (sources, API) --> stage --> space --> shm
 *                          \--route--> audience (only with --workers 0)
 *   worker:        conn_hub --route--> audience --> shm (read only)
 */
#ifndef ROSTRUM_PROC_SERVER_H
#define ROSTRUM_PROC_SERVER_H

#include <stdint.h>
#include <sys/types.h>

#include "audience/audience.h"
#include "config/config.h"
#include "conn/conn.h"
#include "event/loop.h"
#include "relay/relay.h"
#include "shm/shared.h"
#include "space/space.h"
#include "captions/captions.h"
#include "transcode/transcode.h"

struct worker_proc {
    pid_t pid;
    int wake_fd;       /* eventfd the main process writes when pages are published */
    int ctl_fd;        /* unix socket to it: a handover request goes there (handover.c) */
    pid_t old_pid;     /* upgrade: the worker it replaces, until that one has exited */
    int old_wake_fd, old_ctl_fd;
    int64_t started_ms;
    struct loop_timer respawn;
    struct io ready;               /* starting: its ready pipe, watched by the loop; fd -1 after */
    struct loop_timer ready_timer; /* starting: kill it if not ready by then */
};

/* What the command line asked for, kept so that a reload (SIGHUP) reads the same files and
 * lays the same options over them. The strings borrow from argv. */
#define SERVER_MAX_FILES 8
#define RELAY_BURST_MS 3000  /* a relay's default burst-ms (the origin's: 1000) */
#define RELAY_GRACE_MS 30000 /* and grace-ms (the origin's: 10000) */
#define SERVER_MAX_OPTS 64
struct server_args {
    int nfiles, nopts;
    int relay; /* `rostrum relay`: its own defaults (server_config_read) */
    const char *files[SERVER_MAX_FILES];         /* --config, in order */
    const char *key[SERVER_MAX_OPTS], *val[SERVER_MAX_OPTS]; /* --KEY VALUE, in order */
};

struct server {
    struct loop loop;
    struct config cfg;
    struct server_args args;  /* main: the command line, for reloads */
    struct config given;      /* main: cfg as read, before start-up resolved workers and
                                 ports: what a reload compares against */
    uint32_t cfg_gen;         /* generation of sh->cfg_blob that cfg is */
    struct shared *sh;
    int is_worker;            /* 1 in a listener worker */
    int serves_audience;      /* worker, or main with --workers 0 */
    int worker_index;         /* this process's shared_worker block (audience side) */
    struct conn_port audience, stage;
    struct conn_port audience_tls; /* with audience-tls: the audience side over TLS */
    struct conn_port stage_tls;    /* with stage-tls: the stage side over TLS (main only) */
    struct tls_ctx *tls;      /* the certificate and key (made before the workers fork) */
    struct io signals, wake;
    struct io ctl;            /* worker: its socket to the main process */
    int handover_fd;          /* worker: handing over to its successor (-1: not) */
    int64_t handover_since_ms;
    struct loop_timer handover_timer;
    /* main: an upgrade (upgrade.c) */
    char exe[4096];           /* the binary's path at start: what an upgrade runs */
    char **argv;              /* the command line, run again by an upgrade */
    pid_t upgrade_check_pid;  /* the new binary checking the configuration */
    int upgrade_state;        /* enum in upgrade.c */
    int64_t upgrade_since_ms;
    struct loop_timer upgrade_timer;
    int memfd;                /* the shared memory's descriptor */
    int64_t drain_until_ms;   /* main: stopping (SIGTERM) until then; 0: not */
    struct loop_timer drain_timer;
    int audience_reserve_fd;  /* main: bound, not listening: holds the port for the workers */
    int audience_tls_reserve_fd; /* the same for the TLS port */
    char audience_addr[300], stage_addr[300], audience_tls_addr[300];
    char stage_tls_addr[300];
    struct conn_hub hub;      /* this process's connections */
    struct spaces spaces;     /* main: the spaces */
    struct transcode tc;      /* main: their AAC and MP3 renditions (issue 11) */
    struct captions cap;      /* main: their live captions' recognisers (issue 12) */
    struct audience aud;      /* the audience side, if this process serves it */
    struct loop_timer tick;   /* housekeeping, every 250 ms */
    int64_t last_second_ms;
    int64_t start_wall;       /* time(NULL) at start */
    uint8_t secret[32];       /* signs tokens; random per start */
    struct worker_proc workers[SHARED_MAX_WORKERS];
    /* rostrum relay (issue 10): no stage port, no sources; the relay pulls the spaces */
    int relay_mode;
    struct relay relay;
};

/* Sets up the main process from <srv->cfg>: listening sockets, shared memory, workers.
 * Prints errors to stderr. Returns 0 or -1. */
int server_init(struct server *srv);
/* The part of set-up a fresh start and an upgrade share: the loop, the hub, the spaces, the
 * signals, the TLS context, the tick. Returns 0 or -1 (said on stderr). */
int server_init_common(struct server *srv);
/* Runs until SIGTERM/SIGINT, then closes everything (and stops the workers). */
void server_run(struct server *srv);
void server_free(struct server *srv);
/* Main process, on SIGTERM/SIGINT <sig>: refuses newcomers, lets the stage's members go (told
 * to come back) and stops once everyone has left or drain-ms has passed; a second signal, or
 * drain-ms 0, stops at once. */
void server_drain(struct server *srv, int sig);

/* Sets up the connection hub of <srv> (either process) from its config. Returns 0 or -1
 * (bad trusted-proxies list, said on stderr). */
int server_hub_init(struct server *srv);
/* Makes <srv> serve the audience port: its audience, routed from its hub. */
void server_audience_init(struct server *srv, int worker_index);

/* Reload (reload.c). Reads the configuration <args> names into <out>: defaults, then each
 * file, then each option. Returns 0, or -1 with "FILE:LINE: message" or "--KEY: message" in
 * <err>. */
int server_config_read(const struct server_args *args, struct config *out, char *err,
                       size_t errlen);
/* Main process, on SIGHUP: re-reads the configuration and applies what may change live, here
 * and (through the shared memory) in the workers; names each key that needs a restart; a
 * file with an error is refused whole, with its FILE:LINE in the log. */
void server_reload(struct server *srv);
/* Either process: makes the derived copies of <srv->cfg> (hub, audience, spaces) follow it. */
void server_apply_config(struct server *srv);
/* Main process: publishes <srv->cfg> to the workers (they pick it up when woken). */
void server_publish_config(struct server *srv);

/* Workers (worker.c): hold the audience port (bound, not listening; learns port 0), then
 * start them; supervise, stop; the worker's own main loop. Each returns 0 or -1 (said on
 * stderr). */
int workers_reserve_port(struct server *srv);
int workers_start(struct server *srv);
void workers_on_child_exit(struct server *srv);
void workers_wake(struct server *srv);
void workers_stop(struct server *srv);
/* Sends <sig> to every live worker. */
void workers_signal(struct server *srv, int sig);
/* Upgrade, new main process: replaces each worker of the old binary by one of this binary
 * that takes over its listeners (handover.c). */
void workers_roll(struct server *srv);
/* The callback that watches a starting worker's ready pipe. */
io_cb workers_ready_cb(void);

/* Worker: starts serving the audience port, on the listening sockets given (-1: its own);
 * <continued>: the block's counters carry on from the worker before. Returns 0 or -1. */
int worker_serve(struct server *srv, int listen_fd, int listen_tls_fd, int continued);
/* Handover (handover.c). Old worker: hands everything to the successor at <sock>, then
 * exits. New worker: takes over from the predecessor at <sock>. */
void handover_give(struct server *srv, int sock);
int handover_take(struct server *srv, int sock);

/* Upgrade (upgrade.c). Main process, on SIGUSR2: checks the binary at srv->exe, then hands
 * this process's state to it (exec) without dropping a connection. */
void upgrade_start(struct server *srv);
/* A child exited: 1 if it was the upgrade's check (and it was dealt with). */
int upgrade_on_child_exit(struct server *srv, pid_t pid, int status);
/* New main process: 1 if it was started by an upgrade (ROSTRUM_UPGRADE_STATE). */
int upgrade_resuming(void);
/* New main process: takes over from the state the old one left. Returns 0 or -1 (said on
 * stderr). */
int upgrade_resume(struct server *srv);
/* Under ROSTRUM_UPGRADE_CHECK (the old binary asks): 0 if this binary can take over from
 * it with configuration <cfg> (state readable, certificate and key readable), 3 if not (said
 * on stderr); -1 if not asked. */
int upgrade_check_mode(const struct config *cfg);

#endif
