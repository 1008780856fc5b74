/*
 * loop: a tiny epoll event loop with one job, in the manner of Redis's ae.
 *
 * Watchers (struct io) and timers (struct loop_timer) are embedded in their owners; the loop
 * allocates nothing per registration. Timers are kept in a short unsorted list: the server has
 * a handful (one per space plus a housekeeping tick), never one per connection. Per-connection
 * deadlines use FIFO lists in their owners instead, since all deadlines of one kind have the
 * same length and so expire in insertion order.
 *
 * Each iteration: wait for events (no longer than the nearest timer; not at all if work is
 * posted), dispatch them, run due timers, run the work posted for this turn, then run the
 * before-sleep hook, where batched writes happen. Posted work (nginx's posted events) is for
 * a callback that must run again although no event will say so: a reader that stopped at its
 * budget while bytes it already took off the socket wait in user space (TLS plaintext inside
 * OpenSSL), which level-triggered epoll cannot report. Timers never run
 * before the events that were ready when the loop woke up have been dispatched (a wait cut
 * short by a signal is retried first), so a timer that judges a peer idle sees what the peer
 * sent while the process was stopped.
 */
#ifndef ROSTRUM_EVENT_LOOP_H
#define ROSTRUM_EVENT_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

#include "util/list.h"

struct loop;
struct io;
struct loop_timer;

typedef void (*io_cb)(struct loop *loop, struct io *io, uint32_t events);
typedef void (*timer_cb)(struct loop *loop, struct loop_timer *t);
typedef void (*loop_hook)(struct loop *loop, void *arg);
struct loop_post;
typedef void (*post_cb)(struct loop *loop, struct loop_post *p);

struct io {
    int fd;
    uint32_t events; /* what is registered now (EPOLLIN, EPOLLOUT...); 0 if not registered */
    io_cb cb;
};

struct loop_timer {
    int64_t due_ms;   /* monotonic ms; 0 = not armed */
    timer_cb cb;
    struct loop_timer *next;
};

/* Work posted to the next turn of the loop, embedded in its owner (zeroed or posted before). */
struct loop_post {
    struct list_node node; /* in loop->posted while posted */
    post_cb cb;
};

struct loop {
    int epfd;
    int stop;
    int64_t now_ms;   /* monotonic time at the start of this iteration's dispatch */
    int64_t lag_ms;   /* how late the last timer ran: event-loop lag, for /metrics */
    int64_t lag_peak_ms; /* the latest any timer ran since its reader last set it to 0 */
    int64_t lag_report_ms; /* the same, for /metrics: its once-a-second publisher resets it */
    struct loop_timer *timers;
    struct list_node posted; /* struct loop_post.node, to run on the next turn */
    loop_hook before_sleep;
    void *before_sleep_arg;
};

/* Creates the epoll instance. Returns 0 or -errno. */
int loop_init(struct loop *loop);
void loop_close(struct loop *loop);

/* Registers <io> (fd and cb set by the caller) for <events>. Returns 0 or -errno. */
int loop_add(struct loop *loop, struct io *io, uint32_t events);
/* Changes the events of a registered <io>; no syscall if unchanged. Returns 0 or -errno. */
int loop_mod(struct loop *loop, struct io *io, uint32_t events);
/* Unregisters <io>; the caller closes the fd afterwards. */
void loop_del(struct loop *loop, struct io *io);

/* Arms <t> to fire once, <delay_ms> from now; re-arming moves it. */
void loop_timer_start(struct loop *loop, struct loop_timer *t, int64_t delay_ms, timer_cb cb);
void loop_timer_stop(struct loop *loop, struct loop_timer *t);

/* Runs <cb> once on the next turn of the loop (after that turn's events and timers; the wait
 * for events does not block meanwhile). Posting what is already posted changes nothing but
 * <cb>; a callback that posts itself again runs on the turn after, once new events were
 * dispatched, so posted work never starves the rest. */
void loop_post(struct loop *loop, struct loop_post *p, post_cb cb);
/* Takes <p> back if it is posted (its owner is going away). */
void loop_unpost(struct loop_post *p);

/* Runs until loop_stop(). */
void loop_run(struct loop *loop);
void loop_stop(struct loop *loop);

/* Monotonic milliseconds. */
int64_t loop_clock_ms(void);

#endif
