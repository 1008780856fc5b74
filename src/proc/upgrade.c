/*
 * upgrade: replacing the binary during a live event without dropping anyone (SIGUSR2).
 *
 * The main process runs the new binary in its own place (execve keeps the pid, so systemd,
 * the workers' parent and everyone's signals stay right), handing it everything it holds:
 *
 *   SIGUSR2 --> CHECKING: the new binary checks the configuration and that it reads this
 *               binary's state (ROSTRUM_UPGRADE_CHECK); a refusal is logged, nothing changes
 *           --> QUIESCING (<= UPGRADE_QUIET_MS): the stage ports stop accepting (new
 *               connections wait in their queues), running requests finish, members get
 *               nothing new and wslay whole frames only, so each one is between two frames
 *           --> exec: the state goes into a memfd: the shared memory (rings, preambles,
 *               counters) as it is, the listening sockets, the workers, each space (its mux
 *               flushed: serial, page number and granule position), each stage (title,
 *               revocations, clock), members (socket, role, name, token, unparsed bytes) and
 *               studio sources (socket, demuxer position, unparsed bytes); every descriptor
 *               named there is kept open across the exec
 *   new binary: takes it all back (upgrade_resume), then replaces each worker with one of its
 *               own that takes over its listeners and their cursors (handover.c)
 *
 * Listeners never notice: their workers keep serving from the shared rings while the main
 * process is replaced, and the stream goes on with the next page number and granule. What is
 * not carried: the mixer's jitter buffers and codec states (a few frames of a speaker's audio
 * may be lost at the switch), TLS connections (their keys are in the old process: members are
 * asked to reconnect with 1012, sources dropped into grace, TLS listeners closed), requests
 * still unfinished after the quiet wait.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "proc/server.h"
#include "stage/stage.h"
#include "stageport/stageport.h"
#include "tls/tls.h"
#include "util/log.h"
#include "util/state.h"

extern char **environ;

#define UPGRADE_VERSION 1
#define UPGRADE_QUIET_MS 500
#define UPGRADE_POLL_MS 5
#define UPGRADE_MAX_STATE (256u << 20)

enum { UP_IDLE, UP_CHECKING, UP_QUIESCING };
enum { REC_MAIN = 1, REC_WORKER, REC_SPACE, REC_STAGE, REC_MEMBER, REC_SOURCE };

struct main_record {
    int32_t memfd, stage_fd, stage_tls_fd, reserve_fd, reserve_tls_fd;
    uint32_t nworkers, cfg_gen;
    int64_t start_wall;
    uint8_t secret[32];
    uint16_t audience_port, audience_tls_port;
    char audience_addr[300], stage_addr[300], audience_tls_addr[300], stage_tls_addr[300];
};

struct worker_record {
    int32_t index, pid, wake_fd, ctl_fd;
    int64_t started_ms;
};

/* What both binaries must agree on, as one string: checked before anything is handed over. */
static void upgrade_signature(char *out, size_t cap)
{
    snprintf(out, cap, "u%d-sp%d-st%d-src%d-ws%d-l%d-shm%016llx", UPGRADE_VERSION,
             SPACE_RECORD_VERSION, STAGE_RECORD_VERSION, SOURCE_RECORD_VERSION, WS_SAVED_VERSION,
             LISTENER_RECORD_VERSION, (unsigned long long)shared_layout());
}

int upgrade_check_mode(const struct config *cfg)
{
    const char *want = getenv("ROSTRUM_UPGRADE_CHECK");
    if (!want)
        return -1;
    char mine[128];
    upgrade_signature(mine, sizeof(mine));
    if (strcmp(want, mine) != 0) {
        fprintf(stderr, "rostrum: cannot take over from the running binary: its state is %s, "
                        "this binary reads %s (restart instead)\n", want, mine);
        return 3;
    }
    if (cfg->audience_tls || cfg->stage_tls) {
        /* the new binary reads them again, perhaps as a user that cannot (user = ...) */
        char err[800];
        struct tls_ctx *t = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
        if (!t) {
            fprintf(stderr, "rostrum: cannot take over: %s\n", err);
            return 3;
        }
        tls_ctx_free(t);
    }
    return 0;
}

/* ---- the old binary ----------------------------------------------------------------------- */

#define UPGRADE_ENV_MAX 512

/* The environment for the new binary: <first> (ROSTRUM_UPGRADE_...=...), then ours without
 * any ROSTRUM_UPGRADE_ variable of an earlier upgrade. */
static void upgrade_env(char **envp, char *first)
{
    int n = 0;
    envp[n++] = first;
    for (char **e = environ; *e && n < UPGRADE_ENV_MAX - 1; e++)
        if (strncmp(*e, "ROSTRUM_UPGRADE_", 16) != 0)
            envp[n++] = *e;
    envp[n] = NULL;
}

static void upgrade_timer_cb(struct loop *loop, struct loop_timer *t);

void upgrade_start(struct server *srv)
{
    if (srv->upgrade_state != UP_IDLE) {
        log_warn("upgrade", "SIGUSR2: an upgrade is already under way");
        return;
    }
    if (srv->drain_until_ms) {
        log_warn("upgrade", "SIGUSR2: stopping (SIGTERM): not upgrading");
        return;
    }
    if (srv->relay_mode) {
        log_error("upgrade", "SIGUSR2: a relay does not upgrade in place yet (its feeds' state "
                             "does not move); restart it: its downstream relays resume");
        return;
    }
    if (srv->cfg.workers == 0) {
        log_error("upgrade", "SIGUSR2: upgrading needs listener workers (workers >= 1): the "
                             "listeners of the main process cannot move; not upgrading");
        return;
    }
    for (int i = 0; i < srv->cfg.workers; i++)
        if (srv->workers[i].old_pid > 0 || srv->workers[i].pid <= 0) {
            log_warn("upgrade", "SIGUSR2: worker %d is not settled (starting, or taking over): "
                                "try again in a moment", i);
            return;
        }
    char sig[160], *envp[UPGRADE_ENV_MAX];
    upgrade_signature(sig, sizeof(sig));
    static char check[200];
    snprintf(check, sizeof(check), "ROSTRUM_UPGRADE_CHECK=%s", sig);
    upgrade_env(envp, check);
    pid_t pid;
    int rc = posix_spawn(&pid, srv->exe, NULL, NULL, srv->argv, envp);
    if (rc != 0) {
        log_error("upgrade", "SIGUSR2: cannot run %s: %s; not upgrading", srv->exe, strerror(rc));
        return;
    }
    log_info("upgrade", "SIGUSR2: checking the new binary %s (pid %d)", srv->exe, (int)pid);
    srv->upgrade_check_pid = pid;
    srv->upgrade_state = UP_CHECKING;
}

static void upgrade_quiesce(struct server *srv)
{
    srv->upgrade_state = UP_QUIESCING;
    srv->upgrade_since_ms = srv->loop.now_ms;
    conn_port_pause(&srv->stage, 1);
    conn_port_pause(&srv->stage_tls, 1);
    struct list_node *n;
    for (n = srv->spaces.list.next; n != &srv->spaces.list; n = n->next) {
        struct stage *st = stage_of(list_entry(n, struct space, node));
        if (st)
            stage_quiesce(st);
    }
    loop_timer_start(&srv->loop, &srv->upgrade_timer, 0, upgrade_timer_cb);
}

int upgrade_on_child_exit(struct server *srv, pid_t pid, int status)
{
    if (pid != srv->upgrade_check_pid || pid <= 0)
        return 0;
    srv->upgrade_check_pid = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        log_info("upgrade", "the new binary accepts the configuration and the state: handing over");
        upgrade_quiesce(srv);
    } else {
        log_error("upgrade", "the new binary refused (%s %d; its reason is above): not upgrading",
                  WIFEXITED(status) ? "exit status" : "signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        srv->upgrade_state = UP_IDLE;
    }
    return 1;
}

static int quiet(struct server *srv)
{
    if (!list_empty(&srv->hub.heads) || !list_empty(&srv->hub.responses))
        return 0;
    struct list_node *n;
    for (n = srv->spaces.list.next; n != &srv->spaces.list; n = n->next) {
        struct stage *st = stage_of(list_entry(n, struct space, node));
        if (st && !stage_quiet(st))
            return 0;
    }
    return 1;
}

static void keep_fd(int fd)
{
    if (fd >= 0)
        fcntl(fd, F_SETFD, 0);
}

struct member_put {
    struct buf *b;
};

static void put_member(void *arg, const struct member_record *r)
{
    struct member_put *p = arg;
    state_put(p->b, REC_MEMBER, STAGE_RECORD_VERSION, r, sizeof(*r));
    keep_fd(r->fd);
}

static void upgrade_exec(struct server *srv)
{
    struct buf b = {0};
    struct main_record m;
    memset(&m, 0, sizeof(m));
    m.memfd = srv->memfd;
    m.stage_fd = srv->stage.io.fd;
    m.stage_tls_fd = srv->stage_tls.io.fd;
    m.reserve_fd = srv->audience_reserve_fd;
    m.reserve_tls_fd = srv->audience_tls_reserve_fd;
    m.nworkers = (uint32_t)srv->cfg.workers;
    m.cfg_gen = srv->cfg_gen;
    m.start_wall = srv->start_wall;
    memcpy(m.secret, srv->secret, sizeof(m.secret));
    m.audience_port = srv->cfg.audience_port;
    m.audience_tls_port = srv->cfg.audience_tls_port;
    memcpy(m.audience_addr, srv->audience_addr, sizeof(m.audience_addr));
    memcpy(m.stage_addr, srv->stage_addr, sizeof(m.stage_addr));
    memcpy(m.audience_tls_addr, srv->audience_tls_addr, sizeof(m.audience_tls_addr));
    memcpy(m.stage_tls_addr, srv->stage_tls_addr, sizeof(m.stage_tls_addr));
    state_put(&b, REC_MAIN, UPGRADE_VERSION, &m, sizeof(m));
    int fds[] = {m.memfd, m.stage_fd, m.stage_tls_fd, m.reserve_fd, m.reserve_tls_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        keep_fd(fds[i]);
    for (int i = 0; i < srv->cfg.workers; i++) {
        struct worker_proc *w = &srv->workers[i];
        struct worker_record wr = {i, w->pid, w->wake_fd, w->ctl_fd, w->started_ms};
        state_put(&b, REC_WORKER, UPGRADE_VERSION, &wr, sizeof(wr));
        keep_fd(w->wake_fd);
        keep_fd(w->ctl_fd);
    }
    uint32_t nspaces = 0, nmembers = 0, nsources = 0;
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->spaces.list)
    {
        struct space *sp = list_entry(n, struct space, node);
        struct stage *st = stage_of(sp);
        static struct space_record sr;
        space_save(sp, &sr);
        state_put(&b, REC_SPACE, SPACE_RECORD_VERSION, &sr, sizeof(sr));
        nspaces++;
        if (st) {
            static struct stage_record tr;
            stage_save(st, &tr);
            state_put(&b, REC_STAGE, STAGE_RECORD_VERSION, &tr, sizeof(tr));
            struct member_put mp = {&b};
            stage_save_members(st, put_member, &mp);
        }
        struct buf src = {0};
        if (source_save(sp, &src) == 0) {
            struct source_record r;
            memcpy(&r, src.data, sizeof(r));
            state_put(&b, REC_SOURCE, SOURCE_RECORD_VERSION, src.data, (uint32_t)src.len);
            keep_fd(r.fd);
            nsources++;
        }
        buf_free(&src);
    }
    /* count what went in: members were written by the callback */
    struct state_reader rd = {(const uint8_t *)b.data, (const uint8_t *)b.data + b.len};
    uint16_t type, ver;
    const void *p;
    uint32_t len;
    while (state_next(&rd, &type, &ver, &p, &len) == 1)
        nmembers += type == REC_MEMBER;
    /* the pages the muxes just flushed reach the listeners before we go */
    workers_wake(srv);
    int sfd = memfd_create("rostrum-upgrade-state", 0);
    if (sfd < 0 || write(sfd, b.data, b.len) != (ssize_t)b.len || lseek(sfd, 0, SEEK_SET) != 0) {
        log_error("upgrade", "cannot write the state: %s; not upgrading", strerror(errno));
        goto fail;
    }
    log_info("upgrade", "handing over to %s: %u spaces, %u members, %u sources, %d workers "
             "(%zu bytes of state)", srv->exe, nspaces, nmembers, nsources, srv->cfg.workers, b.len);
    char envfd[64], *envp[UPGRADE_ENV_MAX];
    snprintf(envfd, sizeof(envfd), "ROSTRUM_UPGRADE_STATE=%d", sfd);
    upgrade_env(envp, envfd);
    sd_notify(0, "RELOADING=1");
    fflush(NULL);
    execve(srv->exe, srv->argv, envp);
    log_error("upgrade", "exec %s: %s; not upgrading (the members and sources that could not "
              "move were dropped)", srv->exe, strerror(errno));
fail:
    if (sfd >= 0)
        close(sfd);
    buf_free(&b);
    srv->upgrade_state = UP_IDLE;
    conn_port_pause(&srv->stage, 0);
    conn_port_pause(&srv->stage_tls, 0);
}

static void upgrade_timer_cb(struct loop *loop, struct loop_timer *t)
{
    struct server *srv = (struct server *)((char *)t - offsetof(struct server, upgrade_timer));
    if (srv->drain_until_ms) {
        /* SIGTERM came during the handover: stopping wins */
        log_warn("upgrade", "stopping (SIGTERM): upgrade abandoned");
        srv->upgrade_state = UP_IDLE;
        conn_port_pause(&srv->stage, 0); /* newcomers get the drain's 503 */
        conn_port_pause(&srv->stage_tls, 0);
        return;
    }
    if (quiet(srv) || loop->now_ms - srv->upgrade_since_ms >= UPGRADE_QUIET_MS) {
        upgrade_exec(srv); /* returns only if the exec failed */
        return;
    }
    loop_timer_start(loop, t, UPGRADE_POLL_MS, upgrade_timer_cb);
}

/* ---- the new binary ----------------------------------------------------------------------- */

int upgrade_resuming(void)
{
    return getenv("ROSTRUM_UPGRADE_STATE") != NULL;
}

static struct space *space_by_slot(struct server *srv, int slot)
{
    struct list_node *n;
    for (n = srv->spaces.list.next; n != &srv->spaces.list; n = n->next)
        if (list_entry(n, struct space, node)->slot == slot)
            return list_entry(n, struct space, node);
    return NULL;
}

int upgrade_resume(struct server *srv)
{
    int sfd = atoi(getenv("ROSTRUM_UPGRADE_STATE"));
    unsetenv("ROSTRUM_UPGRADE_STATE");
    struct stat stt;
    if (fstat(sfd, &stt) != 0 || stt.st_size <= 0 || (uint64_t)stt.st_size > UPGRADE_MAX_STATE) {
        fprintf(stderr, "rostrum: upgrade: no state to take over (fd %d)\n", sfd);
        return -1;
    }
    size_t size = (size_t)stt.st_size;
    uint8_t *data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, sfd, 0);
    close(sfd);
    if (data == MAP_FAILED) {
        fprintf(stderr, "rostrum: upgrade: mmap: %s\n", strerror(errno));
        return -1;
    }
    struct state_reader rd = {data, data + size};
    uint16_t type, ver;
    const void *p;
    uint32_t len;
    if (state_next(&rd, &type, &ver, &p, &len) != 1 || type != REC_MAIN ||
        ver != UPGRADE_VERSION || len != sizeof(struct main_record)) {
        fprintf(stderr, "rostrum: upgrade: the state does not start as this binary expects\n");
        munmap(data, size);
        return -1;
    }
    struct main_record m;
    memcpy(&m, p, sizeof(m));
    char err[300];
    srv->memfd = m.memfd;
    fcntl(m.memfd, F_SETFD, FD_CLOEXEC);
    srv->sh = shared_attach(m.memfd, err, sizeof(err));
    if (!srv->sh) {
        fprintf(stderr, "rostrum: upgrade: %s\n", err);
        munmap(data, size);
        return -1;
    }
    srv->start_wall = m.start_wall;
    srv->cfg_gen = m.cfg_gen;
    memcpy(srv->secret, m.secret, sizeof(srv->secret));
    srv->cfg.workers = (int)m.nworkers;
    srv->cfg.audience_port = m.audience_port;
    srv->cfg.audience_tls_port = m.audience_tls_port;
    memcpy(srv->audience_addr, m.audience_addr, sizeof(srv->audience_addr));
    memcpy(srv->stage_addr, m.stage_addr, sizeof(srv->stage_addr));
    memcpy(srv->audience_tls_addr, m.audience_tls_addr, sizeof(srv->audience_tls_addr));
    memcpy(srv->stage_tls_addr, m.stage_tls_addr, sizeof(srv->stage_tls_addr));
    if (server_init_common(srv) < 0) {
        munmap(data, size);
        return -1;
    }
    int lfds[] = {m.stage_fd, m.stage_tls_fd, m.reserve_fd, m.reserve_tls_fd};
    for (size_t i = 0; i < sizeof(lfds) / sizeof(lfds[0]); i++)
        if (lfds[i] >= 0)
            fcntl(lfds[i], F_SETFD, FD_CLOEXEC);
    srv->audience_reserve_fd = m.reserve_fd;
    srv->audience_tls_reserve_fd = m.reserve_tls_fd;
    if (conn_listen_fd(&srv->hub, &srv->stage, PORT_STAGE, m.stage_fd) < 0 ||
        (m.stage_tls_fd >= 0 &&
         conn_listen_fd(&srv->hub, &srv->stage_tls, PORT_STAGE, m.stage_tls_fd) < 0)) {
        fprintf(stderr, "rostrum: upgrade: cannot watch the stage port\n");
        munmap(data, size);
        return -1;
    }
    srv->stage_tls.tls = srv->tls;
    if (m.stage_tls_fd >= 0 && !srv->tls) {
        /* the new configuration has no stage-tls: a TLS port must not answer in the clear */
        log_warn("upgrade", "'stage-tls' is gone from the configuration: its port is closed "
                            "(TLS ports change with a restart)");
        conn_port_pause(&srv->stage_tls, 1);
        close(srv->stage_tls.io.fd);
        srv->stage_tls.io.fd = -1;
    }
    for (int i = 0; i < SHARED_MAX_WORKERS; i++) {
        struct worker_proc *w = &srv->workers[i];
        w->wake_fd = w->ready.fd = w->ctl_fd = w->old_wake_fd = w->old_ctl_fd = -1;
        w->ready.cb = workers_ready_cb();
    }
    uint32_t nspaces = 0, nmembers = 0, nsources = 0, lost = 0;
    struct stage *st = NULL;
    int r;
    while ((r = state_next(&rd, &type, &ver, &p, &len)) == 1) {
        if (type == REC_WORKER && len == sizeof(struct worker_record)) {
            struct worker_record wr;
            memcpy(&wr, p, sizeof(wr));
            if (wr.index < 0 || wr.index >= srv->cfg.workers)
                continue;
            struct worker_proc *w = &srv->workers[wr.index];
            w->pid = wr.pid;
            w->wake_fd = wr.wake_fd;
            w->ctl_fd = wr.ctl_fd;
            w->started_ms = wr.started_ms;
            fcntl(wr.wake_fd, F_SETFD, FD_CLOEXEC);
            fcntl(wr.ctl_fd, F_SETFD, FD_CLOEXEC);
        } else if (type == REC_SPACE && ver == SPACE_RECORD_VERSION &&
                   len == sizeof(struct space_record)) {
            st = NULL;
            if (space_restore(&srv->spaces, p))
                nspaces++;
            else
                lost++;
        } else if (type == REC_STAGE && ver == STAGE_RECORD_VERSION &&
                   len == sizeof(struct stage_record)) {
            const struct stage_record *tr = p;
            struct space *sp = space_by_slot(srv, tr->slot);
            st = sp ? stage_restore(sp, tr) : NULL;
        } else if (type == REC_MEMBER && ver == STAGE_RECORD_VERSION &&
                   len == sizeof(struct member_record)) {
            const struct member_record *mr = p;
            fcntl(mr->fd, F_SETFD, FD_CLOEXEC);
            struct conn *c = conn_adopt(&srv->hub, mr->fd, PORT_STAGE);
            if (c && st && stage_member_restore(st, c, mr) == 0)
                nmembers++;
            else if (c && !st)
                conn_close(c);
        } else if (type == REC_SOURCE && ver == SOURCE_RECORD_VERSION &&
                   len >= sizeof(struct source_record)) {
            struct source_record sr;
            memcpy(&sr, p, sizeof(sr));
            fcntl(sr.fd, F_SETFD, FD_CLOEXEC);
            struct conn *c = conn_adopt(&srv->hub, sr.fd, PORT_STAGE);
            if (c && source_restore(&srv->spaces, c, p, len) == 0)
                nsources++;
        } else {
            lost++;
        }
    }
    munmap(data, size);
    if (r < 0 || lost)
        log_warn("upgrade", "the state had %u records this binary could not use%s", lost,
                 r < 0 ? ", and it was cut short" : "");
    log_info("upgrade", "took over %u spaces, %u members, %u sources; replacing %d workers",
             nspaces, nmembers, nsources, srv->cfg.workers);
    workers_roll(srv);
    return 0;
}
