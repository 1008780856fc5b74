/*
 * load/hist: a fixed log-linear histogram of durations, for percentiles without samples.
 *
 * Values (microseconds in the load tool) below 64 have a bucket each; above, each power of two
 * is cut into 32 buckets, so a bucket is at most 1/32 (~3 %) of its values wide. The range
 * reaches 2^32 - 1 (71 minutes in us); larger values land in the last bucket. The exact count,
 * sum, min and max are kept beside the buckets. A histogram is plain data: it can be copied
 * through a pipe between processes of the same binary and merged.
 *
 * Percentiles use the nearest rank (the ceil(p/100 * n)-th smallest value) and report the middle
 * of its bucket, clamped to [min, max]: exact below 64, within ~1.6 % above.
 */
#ifndef ROSTRUM_LOAD_HIST_H
#define ROSTRUM_LOAD_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS) /* buckets per power of two */
#define HIST_LINEAR (2u * HIST_SUB)    /* values with a bucket each: 0..63 */
#define HIST_BUCKETS (HIST_LINEAR + (32 - HIST_SUB_BITS - 1) * HIST_SUB) /* 896 */

struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint32_t bucket[HIST_BUCKETS];
};

/* Empties <h>. */
void hist_init(struct hist *h);

/* Records value <v>. */
void hist_add(struct hist *h, uint64_t v);

/* Adds the values of <from> to <into>. */
void hist_merge(struct hist *into, const struct hist *from);

/* The <p>-th percentile (0 < p <= 100) of the values recorded, or 0 if there are none. */
uint64_t hist_percentile(const struct hist *h, double p);

/* Bucket index of <v>, and the smallest value of bucket <i> (exposed for tests). */
unsigned hist_bucket_of(uint64_t v);
uint64_t hist_bucket_low(unsigned i);

#endif
