/*
 * load/procs: see procs.h.
 */
#include "load/procs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "load/listen.h"
#include "util/log.h"

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k == -1 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static void worker_child(const struct procs *p, uint32_t index, uint32_t n, int fd, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    if (p->alarm_s)
        alarm(p->alarm_s);
    void *rec = calloc(1, p->rec_size);
    if (!rec)
        abort();
    int rc = p->work(p->arg, index, n, p->start_us, rec);
    if (rc < 0) {
        log_error(p->tag, "worker %u: %s", index, strerror(-rc));
        _exit(1);
    }
    if (write_all(fd, rec, p->rec_size) < 0)
        _exit(1);
    close(fd);
    free(rec);
    _exit(0);
}

struct child {
    pid_t pid;
    int fd;     /* read end of its pipe, -1 once at EOF */
    size_t got; /* bytes of its record read */
};

void *procs_run(const struct procs *p, int *failed)
{
    fflush(stdout);
    fflush(stderr);
    struct child *ch = calloc(p->nprocs, sizeof(*ch));
    char *recs = calloc(p->nprocs, p->rec_size);
    struct pollfd *pfd = calloc(p->nprocs, sizeof(*pfd));
    uint32_t *who = calloc(p->nprocs, sizeof(*who));
    if (!ch || !recs || !pfd || !who)
        abort();
    pid_t self = getpid();
    int spawn_failed = 0;
    for (uint32_t k = 0; k < p->nprocs; k++) {
        ch[k].fd = -1;
        ch[k].pid = -1;
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) == -1) {
            log_error(p->tag, "pipe: %s", strerror(errno));
            spawn_failed = 1;
            break;
        }
        uint32_t n = p->units / p->nprocs + (k < p->units % p->nprocs);
        pid_t pid = fork();
        if (pid == -1) {
            log_error(p->tag, "fork: %s", strerror(errno));
            close(fds[0]);
            close(fds[1]);
            spawn_failed = 1;
            break;
        }
        if (pid == 0) {
            close(fds[0]);
            for (uint32_t j = 0; j < k; j++)
                close(ch[j].fd);
            worker_child(p, k, n, fds[1], self);
        }
        close(fds[1]);
        ch[k].pid = pid;
        ch[k].fd = fds[0];
    }

    int at_done = !p->at || spawn_failed;
    int64_t next_tick = p->tick ? load_now_us() : INT64_MAX;
    for (;;) {
        int64_t now = load_now_us();
        if (now >= next_tick && !spawn_failed) {
            p->tick(p->arg);
            next_tick = load_now_us() + (int64_t)p->tick_ms * 1000;
            continue;
        }
        if (!at_done && now >= p->at_us) {
            p->at(p->arg);
            at_done = 1;
            continue;
        }
        nfds_t np = 0;
        for (uint32_t k = 0; k < p->nprocs; k++) {
            if (ch[k].fd >= 0) {
                who[np] = k;
                pfd[np++] = (struct pollfd){.fd = ch[k].fd, .events = POLLIN};
            }
        }
        if ((np == 0 && at_done) || now >= p->deadline_us || spawn_failed)
            break;
        int64_t wake = at_done ? p->deadline_us : p->at_us;
        if (next_tick < wake)
            wake = next_tick;
        int timeout = (int)((wake - now + 999) / 1000);
        int n = poll(pfd, np, timeout < 0 ? 0 : timeout);
        if (n == -1 && errno != EINTR) {
            log_error(p->tag, "poll: %s", strerror(errno));
            break;
        }
        for (nfds_t i = 0; i < np && n > 0; i++) {
            if (!pfd[i].revents)
                continue;
            struct child *c = &ch[who[i]];
            char *rec = recs + (size_t)who[i] * p->rec_size;
            ssize_t r;
            if (c->got < p->rec_size) {
                r = read(c->fd, rec + c->got, p->rec_size - c->got);
            } else {
                char junk[256];
                r = read(c->fd, junk, sizeof(junk));
            }
            if (r > 0 && c->got < p->rec_size) {
                c->got += (size_t)r;
            } else if (r == 0 || (r == -1 && errno != EINTR && errno != EAGAIN)) {
                close(c->fd);
                c->fd = -1;
            }
        }
    }

    /* workers stop by themselves; one that has not by now is stuck: kill it */
    *failed = spawn_failed;
    for (uint32_t k = 0; k < p->nprocs; k++) {
        char *rec = recs + (size_t)k * p->rec_size;
        if (ch[k].pid <= 0)
            continue;
        if (ch[k].fd >= 0) {
            log_error(p->tag, "worker %u (pid %d) did not finish in time; killing it", k,
                      (int)ch[k].pid);
            kill(ch[k].pid, SIGKILL);
            close(ch[k].fd);
            ch[k].fd = -1;
        }
        int st = 0;
        while (waitpid(ch[k].pid, &st, 0) == -1 && errno == EINTR)
            ;
        uint32_t magic;
        memcpy(&magic, rec, sizeof(magic));
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || ch[k].got != p->rec_size ||
            magic != p->magic) {
            log_error(p->tag, "worker %u (pid %d) failed (%s %d)", k, (int)ch[k].pid,
                      WIFSIGNALED(st) ? "signal" : "exit",
                      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            memset(rec, 0, p->rec_size);
            *failed = 1;
        }
    }
    free(pfd);
    free(who);
    free(ch);
    return recs;
}

rlim_t procs_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

void procs_json_hist(struct buf *b, const char *name, const struct hist *h)
{
    buf_printf(b, "\"%s\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"count\":%llu}", name,
               procs_ms(hist_percentile(h, 50)), procs_ms(hist_percentile(h, 99)), procs_ms(h->max),
               (unsigned long long)h->count);
}
