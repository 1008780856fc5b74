/*
 * speak/detect: click onsets. See detect.h.
 */
#include "speak/detect.h"

#include "speak/source.h"

int detect_feed(struct detect *d, const int16_t *pcm, int n)
{
    const uint64_t need = (uint64_t)SPEAK_RATE / 1000 * DETECT_QUIET_MS;
    int found = -1;
    for (int i = 0; i < n; i++) {
        int v = pcm[i] < 0 ? -(int)pcm[i] : pcm[i];
        if (v <= DETECT_THRESHOLD) {
            d->quiet++;
            continue;
        }
        if (found < 0 && d->quiet >= need)
            found = i;
        d->quiet = 0;
    }
    return found;
}
