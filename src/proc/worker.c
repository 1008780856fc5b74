/*
 * worker: listener worker processes, forked by the main process, and their supervision.
 *
 * Each worker is an audience process: its own event loop and its own listening socket on the
 * audience port (SO_REUSEPORT, so the kernel spreads new connections over the workers). The
 * main process holds the port with a socket that is bound but never listens: the port stays
 * ours while workers come and go, and no connection is ever queued on it.
 *
 *   main: publish pages --> before sleep: write(eventfd[i]) --> worker i: flush (when due)
 *
 * A worker that dies is forked again in the same block of the shared table (its counters are
 * first added to the retired ones, so totals never go down); its listeners reconnect and the
 * others see nothing. A worker that dies within a second of starting is restarted a second
 * later, not in a tight loop. Workers die with the main process (PR_SET_PDEATHSIG).
 *
 * A restart never blocks the main loop (the mixer ticks there every 20 ms): the new worker's
 * "ready" pipe is watched by the loop, under a deadline. A worker that is not ready in time is
 * killed; it is reaped like any dead worker, and only then is the block forked again, so a
 * block never has two live workers:
 *
 *   pid 0 --fork--> STARTING --ready byte--> UP --dies--> reaped: pid 0 --> fork (now or 1 s)
 *                      \--deadline: SIGKILL--> dies --> reaped ...
 *
 * Only start-up waits for the workers synchronously, before the loop runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"
#include "proc/server.h"
#include "util/check.h"
#include "util/log.h"

#define WORKER_TICK_MS 250
#define WORKER_READY_TIMEOUT_MS 5000

/* ---- in the worker ------------------------------------------------------------------------- */

static struct server worker_srv; /* the worker's own process state */

/* Takes the configuration the main process published, if it is newer than ours (reload.c). */
static void worker_check_config(struct server *srv)
{
    if (shm_load_acquire32(&srv->sh->cfg_gen) == srv->cfg_gen)
        return;
    struct config *nc = malloc(sizeof(*nc));
    BUG_ON(!nc);
    uint32_t g = shared_config_get(srv->sh, srv->cfg_gen, nc, (uint32_t)sizeof(*nc));
    if (g != 0 && g != srv->cfg_gen) {
        srv->cfg = *nc;
        srv->cfg_gen = g;
        server_apply_config(srv);
        log_debug("worker", "worker %d: configuration generation %u", srv->worker_index, g);
    }
    free(nc);
}

static void worker_wake_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct server *srv = (struct server *)((char *)loop - offsetof(struct server, loop));
    uint64_t n;
    (void)events;
    if (read(io->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_warn("worker", "wake read: %s", strerror(errno));
    if (!srv->serves_audience)
        return; /* still taking over from the worker before */
    worker_check_config(srv);
    audience_on_wake(&srv->aud);
}

static void worker_signal_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct server *srv = (struct server *)((char *)loop - offsetof(struct server, loop));
    struct signalfd_siginfo si;
    (void)events;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (!srv->serves_audience && si.ssi_signo != SIGTERM && si.ssi_signo != SIGINT) {
            continue; /* taking over: the config and log come with the block */
        } else if (si.ssi_signo == SIGUSR1) {
            log_file_reopen();
            audience_reopen_log(&srv->aud);
        } else if (si.ssi_signo == SIGHUP) {
            worker_check_config(srv); /* the main process reads the file, not us */
        } else {
            loop_stop(loop);
            return;
        }
    }
}

static void worker_tick(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = (struct server *)((char *)t - offsetof(struct server, tick));
    conn_hub_expire(&srv->hub);
    worker_check_config(srv);
    int second = loop->now_ms - srv->last_second_ms >= 1000;
    if (second) {
        srv->last_second_ms = loop->now_ms;
        srv->aud.me->loop_lag_ms = loop->lag_report_ms;
        loop->lag_report_ms = 0;
    }
    audience_tick(&srv->aud, second);
    loop_timer_start(loop, t, WORKER_TICK_MS, worker_tick);
}

static void worker_before_sleep(struct loop *loop, void *arg)
{
    struct server *srv = arg;
    (void)loop;
    conn_hub_free_zombies(&srv->hub);
}

/* Closes every descriptor inherited from the main process but the <n> in <keep>. */
static void close_inherited(int *keep, int n)
{
    /* sort the few kept ones, then close the ranges between them */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && keep[j] < keep[j - 1]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    unsigned from = 3;
    for (int i = 0; i < n; i++) {
        if (keep[i] < 0)
            continue;
        if ((unsigned)keep[i] > from)
            close_range(from, (unsigned)keep[i] - 1, 0);
        if ((unsigned)keep[i] + 1 > from)
            from = (unsigned)keep[i] + 1;
    }
    close_range(from, ~0U, 0);
}

/* The main process asks for a handover: one byte and a socket (SCM_RIGHTS). */
static void worker_ctl_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct server *srv = (struct server *)((char *)loop - offsetof(struct server, loop));
    (void)events;
    char ch;
    int fd, nfds, cut;
    ssize_t r = net_recv_fds(io->fd, &ch, 1, &fd, 1, &nfds, &cut);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        loop_del(loop, io); /* the main process is going: PR_SET_PDEATHSIG stops us */
        return;
    }
    if (ch == 'H' && nfds == 1)
        handover_give(srv, fd);
    else if (nfds == 1)
        close(fd);
}

int worker_serve(struct server *srv, int listen_fd, int listen_tls_fd, int continued)
{
    if (continued)
        srv->aud.continued = 1;
    server_audience_init(srv, srv->worker_index);
    if (listen_fd >= 0 ? conn_listen_fd(&srv->hub, &srv->audience, PORT_AUDIENCE, listen_fd) < 0
                       : conn_listen(&srv->hub, &srv->audience, PORT_AUDIENCE,
                                     srv->cfg.audience_host, srv->cfg.audience_port, 1, NULL, 0) < 0)
        return -1;
    if (listen_tls_fd >= 0 && !srv->cfg.audience_tls) {
        close(listen_tls_fd); /* gone from the configuration (an upgrade): nobody accepts there */
        listen_tls_fd = -1;
    }
    if (srv->cfg.audience_tls &&
        (listen_tls_fd >= 0
             ? conn_listen_fd(&srv->hub, &srv->audience_tls, PORT_AUDIENCE, listen_tls_fd) < 0
             : conn_listen(&srv->hub, &srv->audience_tls, PORT_AUDIENCE,
                           srv->cfg.audience_tls_host, srv->cfg.audience_tls_port, 1, NULL,
                           0) < 0))
        return -1;
    loop_timer_start(&srv->loop, &srv->tick, WORKER_TICK_MS, worker_tick);
    return 0;
}

static void __attribute__((noreturn)) worker_main(const struct server *parent, int index,
                                                  int wake_fd, int ready_fd, int ctl_fd,
                                                  int handover_fd, int stall_ms)
{
    struct server *srv = &worker_srv;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int keep[] = {wake_fd, ready_fd, ctl_fd, handover_fd};
    close_inherited(keep, 4);
    srv->cfg = parent->cfg;
    srv->cfg_gen = parent->cfg_gen;
    srv->sh = parent->sh;
    srv->is_worker = 1;
    srv->worker_index = index;
    srv->handover_fd = -1;
    srv->start_wall = parent->start_wall;
    snprintf(srv->audience_addr, sizeof(srv->audience_addr), "%s", parent->audience_addr);
    memcpy(srv->secret, parent->secret, sizeof(srv->secret)); /* tickets verify anywhere */
    if (loop_init(&srv->loop) < 0)
        _exit(1);
    /* the parent's connections and address table are not ours: a fresh hub */
    if (server_hub_init(srv) < 0)
        _exit(1);
    srv->tls = parent->tls; /* our copy of the parent's context, made before the fork */
    srv->audience_tls.tls = parent->tls;
    srv->stage_tls.io.fd = -1; /* the stage is the main process's */
    srv->loop.before_sleep = worker_before_sleep;
    srv->loop.before_sleep_arg = srv;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    srv->signals.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    srv->signals.cb = worker_signal_on_io;
    srv->wake.fd = wake_fd;
    srv->wake.cb = worker_wake_on_io;
    srv->ctl.fd = ctl_fd;
    srv->ctl.cb = worker_ctl_on_io;
    if (stall_ms > 0) {
        /* test hook (ROSTRUM_TEST_STALL_RESPAWN_MS): a worker that fails to come up */
        struct timespec ts = {stall_ms / 1000, (long)(stall_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    if (srv->signals.fd < 0 || loop_add(&srv->loop, &srv->signals, EPOLLIN) < 0 ||
        loop_add(&srv->loop, &srv->wake, EPOLLIN) < 0 ||
        loop_add(&srv->loop, &srv->ctl, EPOLLIN) < 0)
        _exit(1);
    /* a successor waits for its predecessor's sockets and listeners (handover.c); a first
     * worker listens on its own */
    if (handover_fd >= 0 ? handover_take(srv, handover_fd) < 0 : worker_serve(srv, -1, -1, 0) < 0)
        _exit(1);
    if (write(ready_fd, "r", 1) != 1)
        _exit(1);
    close(ready_fd);
    log_debug("worker", "worker %d (pid %d) serving %s", index, (int)getpid(),
              srv->audience_addr);
    loop_run(&srv->loop);
    if (srv->serves_audience) {
        audience_close_all(&srv->aud);
        audience_free(&srv->aud);
    }
    conn_hub_free(&srv->hub);
    loop_timer_stop(&srv->loop, &srv->tick);
    if (srv->audience.io.fd >= 0)
        close(srv->audience.io.fd);
    if (srv->audience_tls.io.fd >= 0)
        close(srv->audience_tls.io.fd);
    close(srv->signals.fd);
    close(srv->wake.fd);
    close(srv->ctl.fd);
    loop_close(&srv->loop);
    exit(0);
}

/* ---- in the main process ------------------------------------------------------------------- */

static void worker_respawn_cb(struct loop *loop, struct loop_timer *t);

static struct server *server_of_loop(struct loop *loop)
{
    return (struct server *)((char *)loop - offsetof(struct server, loop));
}

/* Forks worker <i> into its block; the caller waits for its ready byte on <w->ready.fd>.
 * Returns 0 or -1 (nothing left open). */
static int worker_fork(struct server *srv, int i, int handover_fd)
{
    struct worker_proc *w = &srv->workers[i];
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int ready[2], ctl[2] = {-1, -1};
    if (efd < 0 || pipe2(ready, O_CLOEXEC | O_NONBLOCK) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, ctl) < 0) {
        log_error("worker", "cannot start worker %d: %s", i, strerror(errno));
        if (efd >= 0)
            close(efd);
        return -1;
    }
    /* test hook: stall the first restarted worker before it listens */
    const char *stall = getenv("ROSTRUM_TEST_STALL_RESPAWN_MS");
    int stall_ms = stall && srv->sh->main.worker_restarts == 1 ? atoi(stall) : 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("worker", "fork: %s", strerror(errno));
        close(efd);
        close(ready[0]);
        close(ready[1]);
        close(ctl[0]);
        close(ctl[1]);
        return -1;
    }
    if (pid == 0) {
        close(ready[0]);
        close(ctl[0]);
        worker_main(srv, i, efd, ready[1], ctl[1], handover_fd, stall_ms);
    }
    close(ready[1]);
    close(ctl[1]);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    if (w->ctl_fd >= 0)
        close(w->ctl_fd);
    w->pid = pid;
    w->wake_fd = efd;
    w->ctl_fd = ctl[0];
    w->started_ms = loop_clock_ms();
    w->ready.fd = ready[0];
    return 0;
}

/* Stops watching worker <i>'s ready pipe (it answered, died, or ran out of time). */
static void worker_ready_done(struct server *srv, struct worker_proc *w)
{
    loop_timer_stop(&srv->loop, &w->ready_timer);
    if (w->ready.fd >= 0) {
        loop_del(&srv->loop, &w->ready);
        close(w->ready.fd);
        w->ready.fd = -1;
    }
}

static void worker_ready_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct server *srv = server_of_loop(loop);
    struct worker_proc *w = (struct worker_proc *)((char *)io - offsetof(struct worker_proc, ready));
    char ch;
    (void)events;
    ssize_t r = read(io->fd, &ch, 1);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r == 1)
        log_info("worker", "worker %d (pid %d) restarted", (int)(w - srv->workers), (int)w->pid);
    /* EOF: it died before listening; SIGCHLD reaps it and schedules the next try */
    worker_ready_done(srv, w);
}

static void worker_ready_timeout_cb(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = server_of_loop(loop);
    struct worker_proc *w =
        (struct worker_proc *)((char *)t - offsetof(struct worker_proc, ready_timer));
    log_error("worker", "worker %d (pid %d) not ready within %d ms: killing it",
              (int)(w - srv->workers), (int)w->pid, WORKER_READY_TIMEOUT_MS);
    worker_ready_done(srv, w);
    if (w->pid > 0)
        kill(w->pid, SIGKILL); /* reaped in workers_on_child_exit, then forked again */
}

/* Binds <host>:<*port> without listening, for workers_reserve_port; the port it got goes
 * back to <*port>, the socket to <*fd>, "HOST:PORT" to <addr>. Returns 0 or -1 (said why). */
static int reserve_port(const char *host, uint16_t *port, const char *what, int *fd_out,
                        char *addr, size_t addr_cap)
{
    char err[256];
    int fd = net_listen(host, *port, -1, 0, err, sizeof(err));
    if (fd < 0) {
        if (fd == -EADDRINUSE)
            fprintf(stderr,
                    "rostrum: %s port %s:%u is already in use (another rostrum serve, or "
                    "another program, listens there): not starting\n",
                    what, host[0] ? host : "0.0.0.0", *port);
        else
            fprintf(stderr, "rostrum: %s\n", err);
        return -1;
    }
    *fd_out = fd;
    *port = net_local_port(fd);
    const char *shown = host[0] ? host : "0.0.0.0";
    if (strchr(shown, ':'))
        snprintf(addr, addr_cap, "[%s]:%u", shown, *port);
    else
        snprintf(addr, addr_cap, "%s:%u", shown, *port);
    return 0;
}

int workers_reserve_port(struct server *srv)
{
    /* Hold the port, and learn it if 0 was asked for: bound, never listening (so no
     * connection waits in a queue nobody accepts), and without SO_REUSEPORT, so binding it
     * fails if anything listens there already: a second server on a busy port must not
     * join our workers' group and take a share of the connections. Our workers' sockets
     * (SO_REUSEADDR + SO_REUSEPORT) may share the port with this one because it does not
     * listen; a stranger's probe cannot, because our workers do. */
    for (int i = 0; i < srv->cfg.workers; i++) {
        struct worker_proc *w = &srv->workers[i];
        w->wake_fd = w->ready.fd = w->ctl_fd = w->old_wake_fd = w->old_ctl_fd = -1;
        w->ready.cb = worker_ready_on_io;
    }
    if (reserve_port(srv->cfg.audience_host, &srv->cfg.audience_port, "audience",
                     &srv->audience_reserve_fd, srv->audience_addr,
                     sizeof(srv->audience_addr)) < 0)
        return -1;
    if (srv->cfg.audience_tls &&
        reserve_port(srv->cfg.audience_tls_host, &srv->cfg.audience_tls_port, "audience-tls",
                     &srv->audience_tls_reserve_fd, srv->audience_tls_addr,
                     sizeof(srv->audience_tls_addr)) < 0)
        return -1;
    return 0;
}

int workers_start(struct server *srv)
{
    for (int i = 0; i < srv->cfg.workers; i++)
        if (worker_fork(srv, i, -1) < 0)
            return -1;
    /* Start-up only (the loop is not running yet): wait for every worker to listen. */
    int64_t deadline = loop_clock_ms() + WORKER_READY_TIMEOUT_MS;
    for (int i = 0; i < srv->cfg.workers; i++) {
        struct worker_proc *w = &srv->workers[i];
        int ok = 0;
        while (!ok) {
            int64_t left = deadline - loop_clock_ms();
            struct pollfd p = {.fd = w->ready.fd, .events = POLLIN};
            int n = left > 0 ? poll(&p, 1, (int)left) : 0;
            if (n < 0 && errno == EINTR)
                continue;
            char ch;
            ok = n == 1 && read(w->ready.fd, &ch, 1) == 1;
            if (!ok)
                break;
        }
        close(w->ready.fd);
        w->ready.fd = -1;
        if (!ok) {
            log_error("worker", "worker %d (pid %d) did not start", i, (int)w->pid);
            return -1;
        }
    }
    log_info("worker", "%d listener workers on %s", srv->cfg.workers, srv->audience_addr);
    return 0;
}

/* Forks block <i> again, without waiting for it: the loop watches its ready pipe. Only for a
 * block whose previous worker has been reaped. */
static void worker_respawn(struct server *srv, int i)
{
    struct shared *sh = srv->sh;
    struct worker_proc *w = &srv->workers[i];
    if (w->pid > 0)
        return; /* still alive (or not reaped yet): never two workers for one block */
    /* keep its counters in the totals, then give the new worker a clean block */
    const uint64_t *from = (const uint64_t *)&sh->workers[i].c;
    uint64_t *to = (uint64_t *)&sh->retired;
    for (size_t k = 0; k < sizeof(struct shared_counters) / sizeof(uint64_t); k++)
        to[k] += from[k];
    memset(&sh->workers[i], 0, sizeof(sh->workers[i]));
    sh->main.worker_restarts++;
    if (worker_fork(srv, i, -1) < 0 || loop_add(&srv->loop, &w->ready, EPOLLIN) < 0) {
        if (w->ready.fd >= 0) {
            close(w->ready.fd);
            w->ready.fd = -1;
            if (w->pid > 0)
                kill(w->pid, SIGKILL); /* unwatched: reaped, then retried */
            return;
        }
        loop_timer_start(&srv->loop, &w->respawn, 1000, worker_respawn_cb);
        return;
    }
    loop_timer_start(&srv->loop, &w->ready_timer, WORKER_READY_TIMEOUT_MS,
                     worker_ready_timeout_cb);
}

static void worker_respawn_cb(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = server_of_loop(loop);
    for (int i = 0; i < srv->cfg.workers; i++)
        if (&srv->workers[i].respawn == t)
            worker_respawn(srv, i);
}

void workers_on_child_exit(struct server *srv)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (upgrade_on_child_exit(srv, pid, st) || captions_on_child_exit(&srv->cap, pid, st))
            continue;
        for (int i = 0; i < srv->cfg.workers; i++) {
            struct worker_proc *w = &srv->workers[i];
            if (w->old_pid == pid) {
                /* the old binary's worker, replaced (upgrade) */
                if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                    log_info("worker", "worker %d of the old binary (pid %d) handed over and exited",
                             i, (int)pid);
                else
                    log_warn("worker", "worker %d of the old binary (pid %d) ended badly (status %d)",
                             i, (int)pid, st);
                w->old_pid = 0;
                if (w->old_wake_fd >= 0)
                    close(w->old_wake_fd);
                if (w->old_ctl_fd >= 0)
                    close(w->old_ctl_fd);
                w->old_wake_fd = w->old_ctl_fd = -1;
                continue;
            }
            if (w->pid != pid)
                continue;
            w->pid = 0;
            worker_ready_done(srv, w); /* it may have died while starting */
            if (WIFSIGNALED(st))
                log_warn("worker", "worker %d (pid %d) killed by signal %d: restarting", i,
                         (int)pid, WTERMSIG(st));
            else
                log_warn("worker", "worker %d (pid %d) exited with %d: restarting", i,
                         (int)pid, WEXITSTATUS(st));
            if (loop_clock_ms() - w->started_ms < 1000)
                loop_timer_start(&srv->loop, &w->respawn, 1000, worker_respawn_cb);
            else
                worker_respawn(srv, i);
        }
    }
}

void workers_wake(struct server *srv)
{
    uint64_t one = 1;
    for (int i = 0; i < srv->cfg.workers; i++) {
        struct worker_proc *w = &srv->workers[i];
        if (w->pid > 0 && write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            LOG_RATELIMITED(LOG_WARN, "worker", "wake worker %d: %s", i, strerror(errno));
        /* an old worker serves its listeners until it hands them over */
        if (w->old_pid > 0 && w->old_wake_fd >= 0 &&
            write(w->old_wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            LOG_RATELIMITED(LOG_WARN, "worker", "wake old worker %d: %s", i, strerror(errno));
    }
}

io_cb workers_ready_cb(void)
{
    return worker_ready_on_io;
}

void workers_roll(struct server *srv)
{
    for (int i = 0; i < srv->cfg.workers; i++) {
        struct worker_proc *w = &srv->workers[i];
        int sp[2];
        if (w->pid <= 0 || w->ctl_fd < 0) {
            worker_respawn(srv, i); /* nothing to take over: a fresh one */
            continue;
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
            log_error("worker", "upgrade: worker %d: socketpair: %s: it keeps the old binary", i,
                      strerror(errno));
            continue;
        }
        w->old_pid = w->pid;
        w->old_wake_fd = w->wake_fd;
        w->old_ctl_fd = w->ctl_fd;
        w->pid = 0;
        w->wake_fd = w->ctl_fd = -1;
        if (worker_fork(srv, i, sp[1]) < 0) {
            /* keep the old one: it still serves */
            w->pid = w->old_pid;
            w->wake_fd = w->old_wake_fd;
            w->ctl_fd = w->old_ctl_fd;
            w->old_pid = 0;
            w->old_wake_fd = w->old_ctl_fd = -1;
            close(sp[0]);
            close(sp[1]);
            continue;
        }
        close(sp[1]);
        /* ask the old one to hand over to the new one's end */
        char ch = 'H';
        struct iovec iov = {&ch, 1};
        if (net_send_fds(w->old_ctl_fd, &iov, 1, &sp[0], 1) != 1)
            log_error("worker", "upgrade: worker %d: asking pid %d to hand over: %s", i,
                      (int)w->old_pid, strerror(errno)); /* the new one times out, listens */
        close(sp[0]);
        if (loop_add(&srv->loop, &w->ready, EPOLLIN) < 0) {
            close(w->ready.fd);
            w->ready.fd = -1;
        } else {
            loop_timer_start(&srv->loop, &w->ready_timer, WORKER_READY_TIMEOUT_MS,
                             worker_ready_timeout_cb);
        }
        log_info("worker", "upgrade: worker %d: pid %d takes over from pid %d", i, (int)w->pid,
                 (int)w->old_pid);
    }
}

void workers_signal(struct server *srv, int sig)
{
    for (int i = 0; i < srv->cfg.workers; i++)
        if (srv->workers[i].pid > 0)
            kill(srv->workers[i].pid, sig);
}

void workers_stop(struct server *srv)
{
    int n = srv->cfg.workers > 0 ? srv->cfg.workers : 0;
    for (int i = 0; i < n; i++) {
        loop_timer_stop(&srv->loop, &srv->workers[i].respawn);
        worker_ready_done(srv, &srv->workers[i]);
        if (srv->workers[i].pid > 0)
            kill(srv->workers[i].pid, SIGTERM);
        if (srv->workers[i].old_pid > 0)
            kill(srv->workers[i].old_pid, SIGTERM);
    }
    int64_t deadline = loop_clock_ms() + 5000;
    for (int i = 0; i < n; i++) {
        struct worker_proc *w = &srv->workers[i];
        while (w->pid > 0) {
            int st;
            pid_t r = waitpid(w->pid, &st, WNOHANG);
            if (r == w->pid || (r < 0 && errno == ECHILD)) {
                w->pid = 0;
                break;
            }
            if (loop_clock_ms() > deadline)
                kill(w->pid, SIGKILL);
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        w->wake_fd = -1;
    }
}
