/*
 * speak/source: what a speaker says, as 48 kHz mono signed 16-bit frames.
 *
 *   tone    a sine made in place at -12 dBFS (+ gain); the phase runs on across frames
 *   clicks  digital silence with a click (SPEAK_CLICK_MS of a SPEAK_CLICK_HZ sine at
 *           SPEAK_CLICK_DBFS + gain) every <period> ms, the first one period after the start;
 *           for latency measurements (rostrum-speak --clicks, bench/stage-latency)
 *   raw     a headerless s16le mono 48 kHz file (name ending in .s16 or .raw), read directly
 *           and rewound at its end
 *   ffmpeg  any other file: a child `ffmpeg -i FILE -f s16le -ac 1 -ar 48000 -` writes to a
 *           pipe that the event loop drains into a bounded buffer (SPEAK_SOURCE_BUFFER_MS).
 *           A full buffer stops the reading, so ffmpeg, which decodes far faster than real
 *           time, blocks on the pipe instead of racing ahead. At the end of the file a new
 *           child starts at once (the file loops) while the buffer still holds up to 2 s. A
 *           run that yields no audio at all is an error, so a broken file cannot make us
 *           restart ffmpeg forever.
 *
 * Reading never blocks: audio that is not there yet (ffmpeg still starting) is replaced by
 * silence and counted as an underrun.
 */
#ifndef ROSTRUM_SPEAK_SOURCE_H
#define ROSTRUM_SPEAK_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "event/loop.h"

#define SPEAK_RATE 48000
#define SPEAK_SOURCE_BUFFER_MS 2000 /* PCM kept ahead from ffmpeg */
#define SPEAK_SOURCE_READY_MS 200   /* buffered before an ffmpeg source calls itself ready */
#define SPEAK_TONE_DBFS (-12.0)
#define SPEAK_CLICK_MS 5
#define SPEAK_CLICK_HZ 2000.0
#define SPEAK_CLICK_DBFS (-6.0)

struct speak_source;

/* Called once when the source can deliver audio without underrunning: at once for a tone or
 * a raw file, after SPEAK_SOURCE_READY_MS of buffered audio (or the end of a short file, or a
 * failure) for ffmpeg. */
typedef void (*speak_ready_cb)(void *arg);

/* A sine of <hz> at SPEAK_TONE_DBFS + <gain_db>. Owned by the caller (speak_source_free). */
struct speak_source *speak_source_tone(double hz, double gain_db);

/* Silence with a click every <period_ms> (> 0; 0: silence only) at SPEAK_CLICK_DBFS + <gain_db>.
 * Click k (k >= 1) starts at sample k * period_ms * 48, so with a period that is a multiple of
 * 20 ms and reads of 20 ms it starts exactly at a frame boundary. Owned by the caller. */
struct speak_source *speak_source_clicks(unsigned period_ms, double gain_db);

/* Audio from file <path> (raw if it ends in .s16 or .raw, else decoded by ffmpeg on <loop>),
 * scaled by <gain_db>. <ready>(<arg>) is called from the loop (never from here). Returns the
 * source, owned by the caller, or NULL with a reason in <err> (no such file, empty raw file,
 * ffmpeg not found). */
struct speak_source *speak_source_file(struct loop *loop, const char *path, double gain_db,
                                       speak_ready_cb ready, void *arg, char *err, size_t errlen);

/* 1 if the source is ready (see speak_ready_cb). */
int speak_source_ready(const struct speak_source *s);

/* Writes the next <n> samples into <pcm>. Returns 0, or -1 once the source has failed for good
 * (speak_source_error says why). Never blocks. */
int speak_source_read(struct speak_source *s, int16_t *pcm, int n);

/* Where a click starts in the samples of the last speak_source_read: their index, or -1 if
 * none does (always -1 for anything but a click source). */
int speak_source_click_at(const struct speak_source *s);

/* Samples replaced by silence because the decoder had not delivered them yet. */
uint64_t speak_source_underruns(const struct speak_source *s);
/* How many times the file was started (ffmpeg runs, or raw rewinds + 1); 1 for a tone or
 * clicks. */
unsigned speak_source_plays(const struct speak_source *s);
const char *speak_source_error(const struct speak_source *s);

/* Stops the ffmpeg child (if any), closes files, frees <s>. NULL is a no-op. */
void speak_source_free(struct speak_source *s);

/* Scales <n> samples in place by <gain> (linear), saturating. */
void speak_apply_gain(int16_t *pcm, int n, double gain);

#endif
