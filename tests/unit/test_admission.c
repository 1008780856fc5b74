/* Unit tests for the overload pressure that admission follows (issue 8, item 12). */
#include "harness.h"
#include "limits/limits.h"

#define LIMIT 1000 /* overload-lag-ms */

/* Feeds <n> samples 250 ms apart from <*t>; returns how many of them ended admitting. */
static int feed(struct overload *o, int64_t *t, int n, int64_t lag_ms, double busy)
{
    int admitting = 0;
    for (int i = 0; i < n; i++) {
        *t += 250;
        overload_sample(o, *t, lag_ms, LIMIT, busy);
        admitting += overload_admits(o);
    }
    return admitting;
}

TEST(issue8_healthy_worker_admits_at_full_rate)
{
    /* a worker with a few ms of lag and 30 % of its time in flush rounds never refuses */
    struct overload o = {0};
    int64_t t = 1000;
    ASSERT(overload_admits(&o));
    ASSERT_EQ_INT(feed(&o, &t, 400, 5, 0.30), 400);
    ASSERT(o.pressure >= 0.29 && o.pressure <= 0.31);
    /* a moment of 300 ms lag (a long flush round, a context switch) is not overload */
    ASSERT_EQ_INT(feed(&o, &t, 1, 300, 0.30), 1);
    ASSERT_EQ_INT(feed(&o, &t, 20, 5, 0.30), 20);
}

TEST(issue8_lag_over_threshold_refuses)
{
    struct overload o = {0};
    int64_t t = 1000;
    feed(&o, &t, 4, 2, 0.1);
    /* the loop ran a timer 900 ms late: its listeners are being served late */
    overload_sample(&o, t += 250, 900, LIMIT, 0.1);
    ASSERT(!overload_admits(&o));
    ASSERT(o.pressure >= 0.89 && o.pressure <= 0.91);
    /* lag beyond the limit is pressure 1, no more */
    overload_sample(&o, t += 250, 5000, LIMIT, 0.1);
    ASSERT(o.pressure == 1.0);
}

TEST(issue8_flush_rounds_back_to_back_refuse)
{
    /* no lag to speak of, but 85 % of the time spent writing: one more listener each and
     * writes fall behind */
    struct overload o = {0};
    int64_t t = 1000;
    ASSERT_EQ_INT(feed(&o, &t, 4, 10, 0.79), 4);
    ASSERT_EQ_INT(feed(&o, &t, 1, 10, 0.85), 0);
}

TEST(issue8_recovers_with_hysteresis)
{
    struct overload o = {0};
    int64_t t = 1000;
    overload_sample(&o, t += 250, 2000, LIMIT, 0); /* a worker stopped for 2 s */
    ASSERT(!overload_admits(&o));
    /* healthy samples again: pressure halves every 500 ms; it refuses while the pressure
     * is at or above 0.5 (1.0, 0.71, then 0.5 at 500 ms), admits from 750 ms */
    overload_sample(&o, t += 250, 0, LIMIT, 0);
    ASSERT(!overload_admits(&o));
    overload_sample(&o, t += 250, 0, LIMIT, 0);
    ASSERT(!overload_admits(&o));
    overload_sample(&o, t += 250, 0, LIMIT, 0);
    ASSERT(overload_admits(&o));
    /* between the two thresholds the state holds: 0.6 does not refuse once admitting ... */
    ASSERT_EQ_INT(feed(&o, &t, 8, 600, 0), 8);
    /* ... and, once refusing at 0.8, 0.6 does not admit */
    overload_sample(&o, t += 250, 800, LIMIT, 0);
    ASSERT(!overload_admits(&o));
    ASSERT_EQ_INT(feed(&o, &t, 8, 600, 0), 0);
    /* from 0.6, one healthy sample 250 ms later is 0.42: admitting again */
    ASSERT_EQ_INT(feed(&o, &t, 8, 100, 0.2), 8);
}

TEST(issue8_pressure_decays_by_time_not_by_samples)
{
    /* the status page may sample between ticks: the same time span gives the same decay */
    struct overload a = {0}, b = {0};
    overload_sample(&a, 1000, 1000, LIMIT, 0);
    overload_sample(&b, 1000, 1000, LIMIT, 0);
    overload_sample(&a, 2000, 0, LIMIT, 0);
    for (int64_t t = 1100; t <= 2000; t += 100)
        overload_sample(&b, t, 0, LIMIT, 0);
    ASSERT(a.pressure > 0.24 && a.pressure < 0.26);
    ASSERT(b.pressure > a.pressure - 1e-9 && b.pressure < a.pressure + 1e-9);
    ASSERT(overload_admits(&a) && overload_admits(&b));
}

int main(void)
{
    return RUN_TESTS();
}
