#include "audience/prequeue.h"

#include <string.h>

double prequeue_place(struct prequeue *q, int64_t t0_ms, double now_ms, double per_ms,
                      uint64_t rnd)
{
    if (q->t0_ms != t0_ms) {
        memset(q, 0, sizeof(*q));
        q->t0_ms = t0_ms;
        q->next_ms = (double)t0_ms;
    }
    double start = (double)t0_ms - PREQUEUE_WINDOW_S * 1000.0;
    double cap = per_ms * 1000.0; /* places a second */
    if (cap < 1.0)
        cap = 1.0;
    /* the seconds of the window still ahead: from the one after now (a place in the current
     * second could already be behind us) to the last before T0 */
    int64_t first = now_ms < start ? 0 : (int64_t)((now_ms - start) / 1000.0) + 1;
    int64_t n = PREQUEUE_WINDOW_S - first;
    if (n > 0) {
        int64_t pick = (int64_t)(rnd % (uint64_t)n);
        for (int64_t k = 0; k < n; k++) { /* a random second, then the next with room */
            int64_t s = first + (pick + k) % n;
            if (q->used[s] < (uint32_t)cap) {
                /* spread within the second too: the u-th place of a second at u / cap */
                double at = start + (double)s * 1000.0 + 1000.0 * q->used[s] / cap;
                q->used[s]++;
                q->placed++;
                return at;
            }
        }
    }
    /* the window is full (or over): in arrival order from T0, at the rate */
    if (q->next_ms < now_ms)
        q->next_ms = now_ms;
    double at = q->next_ms;
    q->next_ms += 1.0 / per_ms;
    q->overflow++;
    return at;
}
