/*
 * captions: live captions of a space (issue 12, item 4), in the main process.
 *
 * The recogniser is pluggable: a command the operator configures (captions-cmd, run by
 * /bin/sh), one process per captioned space. rostrum decodes the space's own programme (the
 * Ogg/Opus pages its ring already holds, so relays and origins caption the same audio) to
 * 16 kHz mono PCM and writes it to the command's stdin; the command writes one JSON object per
 * line on stdout:
 *
 *   {"start": 12.34, "end": 13.9, "text": "good evening"}
 *
 * start and end in seconds of the PCM it has read (its first sample is 0); a line with
 * "partial": true is an interim guess and skipped; other keys are ignored. rostrum maps those
 * times back onto the programme (a skip to the live edge or a restart moves the mapping, never
 * the cues) and publishes the cues in the shared memory, where every audience worker serves
 * them: /<space>.captions.json (the listener page) and a WebVTT rendition of the HLS stream.
 *
 *   ring (Ogg/Opus) --ogg_demux--> packets --libopus @16 kHz mono--> PCM queue --pipe--> cmd
 *   cmd --pipe--> JSON lines --captions_parse_line--> cues --> shared_space.captions
 *
 * The recogniser never touches the audio: it reads a copy, on pipes that never block the main
 * loop. Bounds, each counted (shared_main.captions_*):
 *   - PCM not yet read by the recogniser: at most captions-queue-ms of it; past that the
 *     recogniser is stuck and is killed (its process group), the queue dropped.
 *   - its output: lines of at most CAPTIONS_LINE_MAX bytes (longer ones are skipped whole),
 *     CAPTIONS_READ_MAX bytes read per wake, CAPTIONS_MAX_PER_S cues a second, texts cut to
 *     CAPTIONS_TEXT_MAX bytes of valid UTF-8 without controls; the last CAPTIONS_KEEP cues kept.
 *   - restarts: after an exit or a kill, again after a back-off from 1 s doubling to 30 s
 *     (reset once a recogniser has run for 30 s), so a command that cannot start costs a fork
 *     every 30 s.
 *   - CPU: the decoder takes at most a few pages per pass and never runs faster than real time
 *     past a small start credit; behind by more, it skips to the live edge.
 */
#ifndef ROSTRUM_CAPTIONS_CAPTIONS_H
#define ROSTRUM_CAPTIONS_CAPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"
#include "event/loop.h"
#include "shm/shared.h"

#define CAPTIONS_LINE_MAX 4096
#define CAPTIONS_READ_MAX (64 * 1024)
#define CAPTIONS_TEXT_MAX 200
#define CAPTIONS_MAX_PER_S 20
#define CAPTIONS_KEEP 64
/* Cues are all in for audio this long before what the recogniser was given (the WebVTT
 * segments list only what is final): a recogniser ends an utterance about a second after it. */
#define CAPTIONS_SETTLE_MS 3000

/* One line of a recogniser's output, parsed. */
struct caption_line {
    double start_s, end_s;
    char text[CAPTIONS_TEXT_MAX + 1]; /* valid UTF-8, no control characters, trimmed */
};

/* Parses one output line <s>/<len> (without its newline; untrusted). Returns 1 with <out> set
 * for a final cue, 0 for a line to skip quietly (blank, or "partial": true), or -1 for a bad
 * line: not a JSON object, no text (or empty after cleaning), start or end missing, not
 * finite, negative, end before start, or longer than an hour. */
int captions_parse_line(const char *s, size_t len, struct caption_line *out);

/* One cue as the shared cue list holds it. */
struct caption_cue {
    uint64_t id;
    int64_t start_ms, end_ms; /* the programme's wall clock (unix ms) */
    const char *text;         /* into the list; <text_len> bytes, no newline */
    size_t text_len;
};
/* Reads the cue at <*pos> of the cue list <list>/<len> (a copy of shared_space.captions) and
 * moves <*pos> past it. Returns 1, or 0 at the end (or on a malformed line: the list is ours,
 * but a reader never trusts shared memory to be whole). */
int captions_next_cue(const char *list, size_t len, size_t *pos, struct caption_cue *out);
/* 1 if <list>/<len> (untrusted: a relay's upstream sent it) is a cue list as this module makes
 * one: whole lines, ids rising, no cue ending before it starts, texts of at most
 * CAPTIONS_TEXT_MAX bytes of valid UTF-8 without control characters. Else 0. */
int captions_list_ok(const char *list, size_t len);

struct capspace;

/* Owned by the main process (embedded in its struct); set the borrowed fields, then
 * captions_init. */
struct captions {
    struct loop *loop;
    struct shared *sh;
    const struct config *cfg;
    int relay; /* a relay: its spaces carry their upstream's captions, none are made here */
    struct loop_timer timer;
    char exe_dir[512]; /* put first in the recogniser's PATH: the default sits beside us */
    struct capspace *s[SHARED_MAX_SPACES]; /* by slot; NULL: not captioned */
    /* after an upgrade: the cue list a slot's space had under the earlier binary, taken over
     * if that space (the same generation) is still captioned at the first upkeep */
    uint8_t adopt[SHARED_MAX_SPACES];
    uint32_t adopt_gen[SHARED_MAX_SPACES];
};

void captions_init(struct captions *cap);
/* Stops every recogniser (killed: they read a copy, nothing is lost) and ends the upkeep. */
void captions_free(struct captions *cap);
/* Decodes what the spaces published for their recognisers (pages were published). */
void captions_pump(struct captions *cap);
/* A child exited (the main process reaps every child): returns 1 if <pid> was a recogniser. */
int captions_on_child_exit(struct captions *cap, pid_t pid, int status);

#endif
