/*
 * Unit tests for audience/prequeue: early arrivals get places spread over the window before
 * the start, at most the rate in any second, in random order; past the window's room, places
 * go in arrival order from the start at the rate; a new start lays the window out afresh.
 */
#include <stdlib.h>
#include <string.h>

#include "audience/prequeue.h"
#include "harness.h"

#define T0 1000000LL /* loop-clock ms */

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

TEST(early_arrivals_spread_before_the_start_at_the_rate)
{
    static struct prequeue q;
    memset(&q, 0, sizeof(q));
    double per_ms = 0.01; /* 10 a second */
    double now = (double)T0 - 200 * 1000.0; /* 200 s before: 199 whole seconds ahead */
    int n = 1500, descending = 0;
    static uint32_t per_s[PREQUEUE_WINDOW_S];
    memset(per_s, 0, sizeof(per_s));
    double prev = 0;
    for (int i = 0; i < n; i++) {
        double at = prequeue_place(&q, T0, now + i, per_ms, next_rand());
        ASSERT(at > now + i && at < (double)T0); /* ahead, and before the start */
        int s = (int)((at - ((double)T0 - PREQUEUE_WINDOW_S * 1000.0)) / 1000.0);
        ASSERT(s >= 0 && s < PREQUEUE_WINDOW_S);
        per_s[s]++;
        descending += at < prev;
        prev = at;
    }
    for (int s = 0; s < PREQUEUE_WINDOW_S; s++)
        ASSERT(per_s[s] <= 10);
    ASSERT(descending > n / 4); /* random order, not arrival order */
    ASSERT(q.placed == (uint64_t)n && q.overflow == 0);
}

TEST(past_the_window_room_in_order_from_the_start)
{
    static struct prequeue q;
    memset(&q, 0, sizeof(q));
    double per_ms = 0.002; /* 2 a second */
    double now = (double)T0 - 10 * 1000.0 - 500; /* 10 whole seconds ahead: 20 places */
    for (int i = 0; i < 20; i++)
        ASSERT(prequeue_place(&q, T0, now, per_ms, next_rand()) < (double)T0);
    double prev = 0;
    for (int i = 0; i < 10; i++) {
        double at = prequeue_place(&q, T0, now, per_ms, next_rand());
        ASSERT(at >= (double)T0);
        ASSERT(i == 0 ? at == (double)T0 : at - prev > 499.0 && at - prev < 501.0);
        prev = at;
    }
    ASSERT(q.placed == 20 && q.overflow == 10);
}

TEST(a_new_start_starts_afresh_and_late_callers_are_not_behind_now)
{
    static struct prequeue q;
    memset(&q, 0, sizeof(q));
    double at = prequeue_place(&q, T0, (double)T0 - 5000, 0.001, 7);
    ASSERT(at < (double)T0 && at > (double)T0 - 5000);
    ASSERT(prequeue_place(&q, T0 + 60000, (double)T0 - 5000, 0.001, 7) > (double)T0);
    ASSERT(q.placed == 1 && q.t0_ms == T0 + 60000);
    /* within the last second before the start: no whole second left, from the start on */
    memset(&q, 0, sizeof(q));
    ASSERT(prequeue_place(&q, T0, (double)T0 - 300, 0.001, 1) == (double)T0);
    /* a caller after the start (it raced the go-live): never a place behind now */
    ASSERT(prequeue_place(&q, T0, (double)T0 + 5000, 0.001, 1) >= (double)T0 + 5000);
}

int main(void)
{
    return RUN_TESTS();
}
