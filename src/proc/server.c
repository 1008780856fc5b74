/*
 * server: the main process (see server.h): set-up, the housekeeping tick, signals, and
 * waking the audience when pages were published.
 *
 * Signals (read from a signalfd by the loop): SIGTERM and SIGINT stop; SIGHUP re-reads the
 * configuration (reload.c); SIGUSR1 reopens the log file and the access log in every process
 * that writes them (for logrotate); SIGCHLD reaps workers.
 */
#include "proc/server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "stage/hands.h"
#include "record/record.h"
#include "stage/stage.h"
#include "stageport/stageport.h"
#include "tls/tls.h"
#include "util/log.h"

#define TICK_MS 250
#define SOURCE_IDLE_MS 10000

/* ---- housekeeping -------------------------------------------------------------------------- */

static void main_tick(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = (struct server *)((char *)t - offsetof(struct server, tick));
    conn_hub_expire(&srv->hub);
    int second = loop->now_ms - srv->last_second_ms >= 1000;
    if (second) {
        srv->last_second_ms = loop->now_ms;
        srv->sh->main.loop_lag_ms = loop->lag_report_ms; /* for /metrics, in every process */
        loop->lag_report_ms = 0;
    }
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->spaces.list)
    {
        struct space *sp = list_entry(n, struct space, node);
        source_tick(sp, SOURCE_IDLE_MS);
    }
    if (srv->serves_audience)
        audience_tick(&srv->aud, second);
    hands_pump(&srv->spaces, second); /* issue 12: raised hands, and reactions each second */
    if (second) {
        /* the figures every worker needs: all listeners, and each space's peak */
        uint32_t total = 0;
        for (uint32_t w = 0; w < srv->sh->nworkers; w++)
            total += srv->sh->workers[w].listener_connections;
        srv->sh->total_connections = total;
        list_for_each_safe(n, tmp, &srv->spaces.list)
        {
            space_update_peak(list_entry(n, struct space, node));
        }
        srv->sh->main.mixer_frame_max_us = srv->sh->main.mixer_frame_peak_us;
        srv->sh->main.mixer_frame_peak_us = 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        status_sample(srv->sh, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    }
    loop_timer_start(loop, t, TICK_MS, main_tick);
}

static void main_before_sleep(struct loop *loop, void *arg)
{
    struct server *srv = arg;
    (void)loop;
    if (srv->spaces.published) {
        transcode_pump(&srv->tc); /* the renditions of what was published, in the same wake */
        captions_pump(&srv->cap);
        srv->spaces.published = 0;
        if (srv->serves_audience)
            audience_on_wake(&srv->aud);
        else
            workers_wake(srv);
    }
    conn_hub_free_zombies(&srv->hub);
}

static void main_signal_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct server *srv = (struct server *)((char *)loop - offsetof(struct server, loop));
    struct signalfd_siginfo si;
    (void)events;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
            workers_on_child_exit(srv);
            continue;
        }
        if (si.ssi_signo == SIGHUP) {
            log_info("server", "SIGHUP: re-reading the configuration");
            server_reload(srv);
            continue;
        }
        if (si.ssi_signo == SIGUSR1) {
            /* logrotate moved the files: each audience process opens its own again */
            log_info("server", "SIGUSR1: reopening log files");
            log_file_reopen(); /* the server log, here (workers: theirs, below) */
            if (srv->serves_audience)
                audience_reopen_log(&srv->aud);
            else
                workers_signal(srv, SIGUSR1);
            continue;
        }
        if (si.ssi_signo == SIGUSR2) {
            upgrade_start(srv);
            continue;
        }
        server_drain(srv, (int)si.ssi_signo);
    }
}

/* ---- stopping ------------------------------------------------------------------------------ */

#define DRAIN_POLL_MS 100

/* Who is still here: listeners (all workers), stage members, requests and lingering closes. */
static uint64_t server_remaining(struct server *srv)
{
    uint64_t n = 0;
    for (uint32_t w = 0; w < srv->sh->nworkers; w++)
        n += __atomic_load_n(&srv->sh->workers[w].listener_connections, __ATOMIC_RELAXED);
    struct list_node *it;
    for (it = srv->spaces.list.next; it != &srv->spaces.list; it = it->next) {
        struct stage *st = stage_of(list_entry(it, struct space, node));
        if (st)
            n += stage_members(st);
    }
    n += !list_empty(&srv->hub.heads) + !list_empty(&srv->hub.responses) +
         !list_empty(&srv->hub.lingers);
    return n;
}

static void drain_cb(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = (struct server *)((char *)t - offsetof(struct server, drain_timer));
    uint64_t left = server_remaining(srv);
    if (left == 0 || loop->now_ms >= srv->drain_until_ms) {
        if (left)
            log_info("server", "drain: %d ms are up, closing the %llu connections left",
                     srv->cfg.drain_ms, (unsigned long long)left);
        else
            log_info("server", "drain: everyone has left");
        loop_stop(loop);
        return;
    }
    loop_timer_start(loop, t, DRAIN_POLL_MS, drain_cb);
}

void server_drain(struct server *srv, int sig)
{
    if (srv->drain_until_ms || srv->cfg.drain_ms == 0) {
        log_info("server", "signal %d: shutting down%s", sig,
                 srv->drain_until_ms ? " now (a second signal)" : "");
        loop_stop(&srv->loop);
        return;
    }
    srv->drain_until_ms = srv->loop.now_ms + srv->cfg.drain_ms;
    /* newcomers are refused (503, Retry-After: the drain and a little), on both ports */
    srv->sh->main.drain_retry_s = (uint32_t)(srv->cfg.drain_ms + 999) / 1000;
    __atomic_store_n(&srv->sh->main.draining, 1, __ATOMIC_RELEASE);
    int members = 0;
    struct list_node *it;
    for (it = srv->spaces.list.next; it != &srv->spaces.list; it = it->next) {
        struct stage *st = stage_of(list_entry(it, struct space, node));
        if (st)
            members += stage_drain(st);
    }
    sd_notify(0, "STOPPING=1");
    log_info("server", "signal %d: stopping: newcomers refused, %d stage members asked to come "
             "back, up to %d ms for the rest to leave (a second signal stops at once)", sig,
             members, srv->cfg.drain_ms);
    if (srv->serves_audience)
        audience_on_wake(&srv->aud);
    else
        workers_wake(srv);
    loop_timer_start(&srv->loop, &srv->drain_timer, 0, drain_cb);
}

/* ---- set-up -------------------------------------------------------------------------------- */

/* Becomes <srv->cfg.user> (uid, gid, supplementary groups) if one is configured: called once
 * both ports are bound and before any worker is forked or connection accepted, so nothing a
 * peer sends is ever handled as root. The shared memory is an anonymous mapping made before,
 * so it stays shared. Workers bind their own SO_REUSEPORT socket on the audience port after
 * the drop: for a port below 1024 the one capability that needs, CAP_NET_BIND_SERVICE, is
 * kept (and nothing else). The process stays non-dumpable, as setuid() leaves it, so other
 * processes of the same user cannot read its passwords and token secret (LeakSanitizer still
 * runs: it traces its own threads).
 * Returns 0, or -1 with the reason on stderr: a server asked to drop privileges that cannot
 * does not start. */
static int server_drop_privileges(struct server *srv)
{
    const char *name = srv->cfg.user;
    if (name[0] == '\0')
        return 0;
    errno = 0;
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        fprintf(stderr, "rostrum: user '%s': %s\n", name, errno ? strerror(errno) : "no such user");
        return -1;
    }
    if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid) {
        log_info("server", "already running as user %s (uid %u)", name, (unsigned)pw->pw_uid);
        return 0;
    }
    int keep_bind = srv->cfg.workers > 0 && srv->cfg.audience_port < 1024;
    if (keep_bind && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == -1) {
        fprintf(stderr, "rostrum: user '%s': prctl(PR_SET_KEEPCAPS): %s\n", name, strerror(errno));
        return -1;
    }
    if (setgid(pw->pw_gid) == -1 || initgroups(name, pw->pw_gid) == -1 ||
        setuid(pw->pw_uid) == -1) {
        fprintf(stderr,
                "rostrum: cannot become user '%s' (uid %u): %s (start rostrum as root "
                "to use 'user', or leave it unset)\n",
                name, (unsigned)pw->pw_uid, strerror(errno));
        return -1;
    }
    if (keep_bind) {
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {{0}};
        d[0].effective = d[0].permitted = 1u << CAP_NET_BIND_SERVICE;
        if (syscall(SYS_capset, &h, d) == -1) {
            fprintf(stderr, "rostrum: user '%s': keeping CAP_NET_BIND_SERVICE for port %u: %s\n",
                    name, srv->cfg.audience_port, strerror(errno));
            return -1;
        }
        prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    /* no way back: setuid(0) must fail now, with at most CAP_NET_BIND_SERVICE left */
    if (pw->pw_uid != 0 && (setuid(0) != -1 || geteuid() != pw->pw_uid)) {
        fprintf(stderr, "rostrum: user '%s': root privileges still held after setuid\n", name);
        return -1;
    }
    log_info("server", "running as user %s (uid %u, gid %u)%s", name, (unsigned)pw->pw_uid,
             (unsigned)pw->pw_gid, keep_bind ? ", keeping CAP_NET_BIND_SERVICE" : "");
    return 0;
}

int server_hub_init(struct server *srv)
{
    struct conn_hub *hub = &srv->hub;
    conn_hub_init(hub, &srv->loop);
    srv->audience.io.fd = srv->stage.io.fd = srv->signals.fd = srv->wake.fd = -1;
    srv->audience_reserve_fd = srv->audience_tls_reserve_fd = -1;
    srv->audience_tls.io.fd = srv->stage_tls.io.fd = -1;
    srv->ctl.fd = srv->handover_fd = -1;
    hub->head_timeout_ms = srv->cfg.head_timeout_ms;
    hub->response_timeout_ms = srv->cfg.response_timeout_ms;
    hub->max_conns_per_ip = srv->cfg.max_conns_per_ip;
    hub->counters[PORT_AUDIENCE] = hub->counters[PORT_STAGE] = &srv->sh->main.c;
    hub->route[PORT_STAGE] = stageport_route;
    hub->route_arg[PORT_STAGE] = &srv->spaces;
    if (conn_hub_set_trusted(hub, srv->cfg.trusted_proxies) < 0) {
        fprintf(stderr, "rostrum: trusted-proxies: bad or too many addresses (max 16): %s\n",
                srv->cfg.trusted_proxies);
        return -1;
    }
    return 0;
}

void server_audience_init(struct server *srv, int worker_index)
{
    struct audience *a = &srv->aud;
    srv->serves_audience = 1;
    srv->worker_index = worker_index;
    a->hub = &srv->hub;
    a->loop = &srv->loop;
    a->sh = srv->sh;
    a->cfg = &srv->cfg;
    a->secret = srv->secret;
    a->worker_index = worker_index;
    a->start_wall = srv->start_wall;
    a->addr = srv->audience_addr;
    audience_init(a);
    srv->hub.counters[PORT_AUDIENCE] = &a->me->c;
    srv->hub.route[PORT_AUDIENCE] = audience_route;
    srv->hub.route_arg[PORT_AUDIENCE] = a;
    srv->hub.on_fd_limit = audience_on_fd_limit;
    srv->hub.on_fd_limit_arg = a;
}

int server_init_common(struct server *srv)
{
    if (loop_init(&srv->loop) < 0) {
        fprintf(stderr, "rostrum: epoll: %s\n", strerror(errno));
        return -1;
    }
    srv->loop.before_sleep = main_before_sleep;
    srv->loop.before_sleep_arg = srv;
    if (server_hub_init(srv) < 0)
        return -1;
    srv->spaces = (struct spaces){.loop = &srv->loop, .sh = srv->sh, .cfg = &srv->cfg,
                                  .secret = srv->secret};
    list_init(&srv->spaces.list);
    srv->tc = (struct transcode){.loop = &srv->loop, .sh = srv->sh, .cfg = &srv->cfg,
                                 .published = &srv->spaces.published};
    srv->spaces.reclaim = transcode_reclaim;
    srv->spaces.reclaim_arg = &srv->tc;
    transcode_init(&srv->tc);
    srv->cap = (struct captions){.loop = &srv->loop, .sh = srv->sh, .cfg = &srv->cfg,
                                 .relay = srv->relay_mode};
    captions_init(&srv->cap);
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    srv->signals.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    srv->signals.cb = main_signal_on_io;
    if (srv->signals.fd < 0 || loop_add(&srv->loop, &srv->signals, EPOLLIN) < 0) {
        fprintf(stderr, "rostrum: signalfd: %s\n", strerror(errno));
        return -1;
    }
    if (srv->cfg.audience_tls || srv->cfg.stage_tls) {
        char err[800];
        srv->tls = tls_ctx_new(srv->cfg.tls_cert, srv->cfg.tls_key, err, sizeof(err));
        if (!srv->tls) {
            fprintf(stderr, "rostrum: %s: %s: not starting\n",
                    srv->cfg.audience_tls ? "audience-tls" : "stage-tls", err);
            return -1;
        }
        srv->audience_tls.tls = srv->stage_tls.tls = srv->tls;
    }
    loop_timer_start(&srv->loop, &srv->tick, TICK_MS, main_tick);
    return 0;
}

int server_init(struct server *srv)
{
    srv->start_wall = time(NULL);
    srv->sh = shared_create(srv->cfg.workers > 0 ? (uint32_t)srv->cfg.workers : 1, &srv->memfd);
    srv->sh->main.c = (struct shared_counters){0};
    if (getrandom(srv->secret, sizeof(srv->secret), 0) != (ssize_t)sizeof(srv->secret)) {
        fprintf(stderr, "rostrum: getrandom: %s\n", strerror(errno));
        return -1;
    }
    if (server_init_common(srv) < 0)
        return -1;
    /* recordings (issue 12, item 2): a file over RLIMIT_FSIZE is a write error (EFBIG), not
     * the end of the process; those the last run left growing are cut to their whole pages */
    signal(SIGXFSZ, SIG_IGN);
    recording_repair_dir(srv->cfg.record_dir);
    if (srv->relay_mode)
        snprintf(srv->stage_addr, sizeof(srv->stage_addr), "none");
    else if (conn_listen(&srv->hub, &srv->stage, PORT_STAGE, srv->cfg.stage_host,
                         srv->cfg.stage_port, 0, srv->stage_addr, sizeof(srv->stage_addr)) < 0)
        return -1;
    if (!srv->relay_mode && srv->cfg.stage_tls &&
        conn_listen(&srv->hub, &srv->stage_tls, PORT_STAGE, srv->cfg.stage_tls_host,
                    srv->cfg.stage_tls_port, 0, srv->stage_tls_addr,
                    sizeof(srv->stage_tls_addr)) < 0)
        return -1;
    if (srv->cfg.workers == 0) {
        /* one process: the main loop serves the audience port too */
        server_audience_init(srv, 0);
        if (conn_listen(&srv->hub, &srv->audience, PORT_AUDIENCE, srv->cfg.audience_host,
                        srv->cfg.audience_port, 0, srv->audience_addr,
                        sizeof(srv->audience_addr)) < 0)
            return -1;
        if (srv->cfg.audience_tls &&
            conn_listen(&srv->hub, &srv->audience_tls, PORT_AUDIENCE, srv->cfg.audience_tls_host,
                        srv->cfg.audience_tls_port, 0, srv->audience_tls_addr,
                        sizeof(srv->audience_tls_addr)) < 0)
            return -1;
        if (server_drop_privileges(srv) < 0)
            return -1;
    } else if (workers_reserve_port(srv) < 0 || server_drop_privileges(srv) < 0 ||
               workers_start(srv) < 0) {
        return -1;
    }
    if (srv->relay_mode) {
        srv->relay.loop = &srv->loop;
        srv->relay.spaces = &srv->spaces;
        srv->relay.cfg = &srv->cfg;
        if (relay_start(&srv->relay) < 0)
            return -1;
    }
    return 0;
}

void server_run(struct server *srv)
{
    loop_run(&srv->loop);
}

void server_free(struct server *srv)
{
    struct list_node *n, *tmp;
    if (srv->relay_mode)
        relay_stop(&srv->relay);
    workers_stop(srv);
    transcode_free(&srv->tc);
    captions_free(&srv->cap);
    list_for_each_safe(n, tmp, &srv->spaces.list)
    {
        space_end(list_entry(n, struct space, node), CLOSE_MOUNT_END);
    }
    if (srv->serves_audience) {
        audience_close_all(&srv->aud);
        audience_free(&srv->aud);
    }
    conn_hub_free(&srv->hub);
    loop_timer_stop(&srv->loop, &srv->tick);
    int fds[] = {srv->audience.io.fd, srv->stage.io.fd, srv->signals.fd,
                 srv->audience_reserve_fd, srv->audience_tls.io.fd, srv->audience_tls_reserve_fd,
                 srv->stage_tls.io.fd, srv->memfd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    loop_close(&srv->loop);
    tls_ctx_free(srv->tls);
    shared_destroy(srv->sh);
}
