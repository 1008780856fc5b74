/*
 * speak/detect: click onsets in the audio a speaker hears, for latency measurements
 * (rostrum-speak --detect-clicks, bench/stage-latency).
 *
 * An onset is the first sample whose magnitude exceeds DETECT_THRESHOLD after at least
 * DETECT_QUIET_MS of samples at or below it. The threshold (-20 dBFS) sits 14 dB under the clicks
 * of speak_source_clicks (-6 dBFS) and far above what Opus makes of digital silence (a few LSB),
 * and the quiet run rejects every later cycle of the same burst and its codec ringing; so with
 * clicks at least ~320 ms apart each one is found once, within a sample or two of where its sine
 * starts. The stream's very start counts as loud: a click is only found after 300 ms of quiet
 * has been heard.
 */
#ifndef ROSTRUM_SPEAK_DETECT_H
#define ROSTRUM_SPEAK_DETECT_H

#include <stdint.h>

#define DETECT_THRESHOLD 3277 /* |sample| above this (-20 dBFS) is loud */
#define DETECT_QUIET_MS 300

/* Detector state across blocks: zero it to start. No allocation. */
struct detect {
    uint64_t quiet; /* samples at or below the threshold since the last loud one */
};

/* Feeds <n> consecutive samples of 48 kHz mono <pcm>. Returns the index in <pcm> of the first
 * onset in it, or -1 if none. At most one onset fits in a block of up to 300 ms; a longer block
 * reports only its first. */
int detect_feed(struct detect *d, const int16_t *pcm, int n);

#endif
