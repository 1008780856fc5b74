/*
 * load/hist: see hist.h.
 */
#include "load/hist.h"

#include <math.h>
#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

unsigned hist_bucket_of(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (unsigned)v;
    if (v > UINT32_MAX)
        return HIST_BUCKETS - 1;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 6..31 */
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return HIST_LINEAR + (e - HIST_SUB_BITS - 1) * HIST_SUB + sub;
}

uint64_t hist_bucket_low(unsigned i)
{
    if (i < HIST_LINEAR)
        return i;
    unsigned e = (i - HIST_LINEAR) / HIST_SUB + HIST_SUB_BITS + 1;
    unsigned sub = (i - HIST_LINEAR) % HIST_SUB;
    return ((uint64_t)(HIST_SUB + sub)) << (e - HIST_SUB_BITS);
}

/* Width of bucket <i>: 1 in the linear part, then 2^(e-5). */
static uint64_t bucket_width(unsigned i)
{
    if (i < HIST_LINEAR)
        return 1;
    unsigned e = (i - HIST_LINEAR) / HIST_SUB + HIST_SUB_BITS + 1;
    return (uint64_t)1 << (e - HIST_SUB_BITS);
}

void hist_add(struct hist *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
    h->bucket[hist_bucket_of(v)]++;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    if (from->count == 0)
        return;
    if (into->count == 0 || from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    into->count += from->count;
    into->sum += from->sum;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p > 100)
        p = 100;
    /* the epsilon keeps 99 % of 300 at rank 297 despite rounding */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count - 1e-9);
    if (rank < 1)
        rank = 1;
    if (rank >= h->count)
        return h->max;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_low(i) + bucket_width(i) / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}
