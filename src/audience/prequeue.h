/*
 * prequeue: the waiting room's places for a scheduled space before its start (issue 12). The
 * storm of listeners announced for T0 arrives over the minutes before it; instead of queueing
 * them in arrival order behind T0, each early arrival gets a random place among the free ones
 * of the PREQUEUE_WINDOW_S before T0 (so the admissions are spread evenly over that window,
 * at most the waiting room's rate in any second, and all of them are listening to the lobby
 * when the programme starts). Once the window is full, places go in arrival order from T0 on
 * at the same rate. One per worker and space slot; pure (no clock, no I/O), unit tested.
 */
#ifndef ROSTRUM_AUDIENCE_PREQUEUE_H
#define ROSTRUM_AUDIENCE_PREQUEUE_H

#include <stdint.h>

#define PREQUEUE_WINDOW_S 300 /* the minutes before the start over which places are spread */

struct prequeue {
    int64_t t0_ms;   /* the start it was laid out for (loop clock); 0: unused */
    double next_ms;  /* past the window: the next place in arrival order, from T0 */
    uint64_t placed, overflow;
    uint32_t used[PREQUEUE_WINDOW_S]; /* places taken in each second of the window */
};

/* A place (loop-clock ms) for an arrival at <now_ms> before the start <t0_ms>, admitting at
 * most <per_ms> per millisecond; <rnd> is a random number (the pick among the free seconds).
 * A new <t0_ms> (the schedule moved, or another space in the slot) starts afresh. */
double prequeue_place(struct prequeue *q, int64_t t0_ms, double now_ms, double per_ms,
                      uint64_t rnd);

#endif
