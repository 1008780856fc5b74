#include "event/loop.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256

int64_t loop_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int loop_init(struct loop *loop)
{
    *loop = (struct loop){0};
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd == -1)
        return -errno;
    loop->now_ms = loop_clock_ms();
    list_init(&loop->posted);
    return 0;
}

void loop_close(struct loop *loop)
{
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->epfd = -1;
}

int loop_add(struct loop *loop, struct io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) == -1)
        return -errno;
    io->events = events;
    return 0;
}

int loop_mod(struct loop *loop, struct io *io, uint32_t events)
{
    if (io->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) == -1)
        return -errno;
    io->events = events;
    return 0;
}

void loop_del(struct loop *loop, struct io *io)
{
    if (io->fd >= 0)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->events = 0;
}

void loop_timer_start(struct loop *loop, struct loop_timer *t, int64_t delay_ms, timer_cb cb)
{
    loop_timer_stop(loop, t);
    t->due_ms = loop_clock_ms() + delay_ms;
    if (t->due_ms == 0)
        t->due_ms = 1;
    t->cb = cb;
    t->next = loop->timers;
    loop->timers = t;
}

void loop_timer_stop(struct loop *loop, struct loop_timer *t)
{
    if (t->due_ms == 0)
        return;
    for (struct loop_timer **p = &loop->timers; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    t->due_ms = 0;
    t->next = NULL;
}

static int loop_next_timeout(struct loop *loop)
{
    int64_t next = -1;
    for (struct loop_timer *t = loop->timers; t; t = t->next)
        if (next < 0 || t->due_ms < next)
            next = t->due_ms;
    if (next < 0)
        return 1000;
    int64_t d = next - loop_clock_ms();
    return d < 0 ? 0 : (d > 1000 ? 1000 : (int)d);
}

static void loop_run_timers(struct loop *loop)
{
    /* Fire due timers one at a time: a callback may stop or re-arm any timer. */
    for (;;) {
        int64_t now = loop_clock_ms();
        struct loop_timer *due = NULL;
        for (struct loop_timer *t = loop->timers; t; t = t->next)
            if (t->due_ms <= now && (!due || t->due_ms < due->due_ms))
                due = t;
        if (!due)
            return;
        int64_t late = now - due->due_ms;
        if (late >= 0)
            loop->lag_ms = late;
        if (late > loop->lag_peak_ms)
            loop->lag_peak_ms = late;
        if (late > loop->lag_report_ms)
            loop->lag_report_ms = late;
        loop_timer_stop(loop, due);
        loop->now_ms = now;
        due->cb(loop, due);
    }
}

void loop_post(struct loop *loop, struct loop_post *p, post_cb cb)
{
    p->cb = cb;
    if (!list_linked(&p->node))
        list_insert_tail(&loop->posted, &p->node);
}

void loop_unpost(struct loop_post *p)
{
    list_unlink(&p->node);
}

static void loop_run_posted(struct loop *loop)
{
    if (list_empty(&loop->posted))
        return;
    /* This turn's work is what was posted before it began: take the whole list, so what the
     * callbacks post goes to the next turn. A callback may take back any entry (loop_unpost),
     * one of these included: each is unlinked before it runs. */
    struct list_node now = loop->posted;
    now.next->prev = &now;
    now.prev->next = &now;
    list_init(&loop->posted);
    while (!list_empty(&now)) {
        struct loop_post *p = list_entry(now.next, struct loop_post, node);
        list_unlink(&p->node);
        p->cb(loop, p);
    }
}

void loop_run(struct loop *loop)
{
    struct epoll_event events[LOOP_MAX_EVENTS];
    while (!loop->stop) {
        int timeout = list_empty(&loop->posted) ? loop_next_timeout(loop) : 0;
        int n = epoll_wait(loop->epfd, events, LOOP_MAX_EVENTS, timeout);
        loop->now_ms = loop_clock_ms();
        if (n == -1 && errno == EINTR) {
            /* EINTR, typically after SIGSTOP/SIGCONT (see signal(7)): the process was not
             * running, and what its sockets received meanwhile has not been looked at. Poll
             * again (timeout 0 if timers are due) before any timer judges idleness, so a
             * pause never looks like silence from every peer. */
            continue;
        }
        if (n < 0)
            n = 0; /* EBADF/EINVAL are bugs of ours; run the timers as before */
        for (int i = 0; i < n; i++) {
            struct io *io = events[i].data.ptr;
            io->cb(loop, io, events[i].events);
        }
        loop_run_timers(loop);
        loop_run_posted(loop);
        if (loop->before_sleep)
            loop->before_sleep(loop, loop->before_sleep_arg);
    }
}

void loop_stop(struct loop *loop)
{
    loop->stop = 1;
}
