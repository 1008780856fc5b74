/*
 * mixer: the stage mixer of one space. Speakers (and studio sources) push Opus packets or PCM;
 * the caller's 20 ms clock calls mixer_tick(), which produces one frame of
 *
 *   - the programme: every input mixed, limited, encoded ONCE as mono Opus (for all listeners);
 *   - a return for each input: the mix without that input's own voice (mix-minus), encoded with
 *     the input's own encoder, but only for inputs that contributed to this frame; every other
 *     input gets the shared programme packet, which is then exactly its mix-minus. Encoder cost
 *     grows with the number of talkers, not with the size of the stage.
 *
 * An input contributes to a frame when it is unmuted, has audio to play, and its gate is open:
 * a frame above MIXER_GATE_DBFS (-60 dBFS RMS) within the last 300 ms. Below that (digital
 * silence, codec noise, a quiet room) it is left out, so a stage of open mics does not add up
 * to hiss, and a silent seat costs no encode. The gate is far below speech, and its 300 ms hold
 * keeps word tails and a talker's return stream continuous between words.
 *
 *   push_opus -> decode -+    (per input, <= 200 ms)        +-> limiter -> encode -> programme
 *                        +-> FIFO -> jitter/PLC -> frame -> sum
 *   push_pcm  -----------+                                  +-> sum - own frame -> limiter
 *                        (gate: silent inputs left out)          -> encode -> return
 *
 * Per input, a jitter-buffer state machine runs once per tick:
 *
 *          >= 2 frames queued                   < 1 frame queued (Opus input)
 *   IDLE ----------------------> PLAYING ---------------------------------> CONCEAL (libopus PLC)
 *    ^  (contributes nothing)     ^  |  < 1 frame (PCM input: the rest           |     |
 *    |                            |  |  padded with silence)                     |     |
 *    +----------------------------|--+                                           |     |
 *    |                            +------------ >= 1 frame queued ---------------+     |
 *    +------------------------------------- 5 concealed frames (100 ms) ---------------+
 *
 * Latency is bounded two ways: the FIFO is capped at 200 ms (past it the oldest samples are
 * dropped and counted), and when an input kept >= 40 ms more than it needed for a whole second,
 * the excess is cut at its next quiet frame (counted apart), so a sender whose clock runs fast
 * or who once sent a burst does not keep mouth-to-ear latency high.
 *
 * Levels: the programme passes a peak limiter (instant attack, 20 ms hold, 100 ms release,
 * ceiling -3 dBFS) then a hard clamp, so any number of loud inputs never clips. Each return has
 * its own limiter state, seeded from the programme's when the input starts contributing.
 *
 * Ownership: the caller owns the mixer (mixer_new/mixer_free); packets handed in are borrowed
 * for the call (decoded and copied); packets handed out are owned by the mixer and valid until
 * the next mixer_tick, mixer_input_remove of that input, or mixer_free. Not thread-safe: one
 * owner (the space's stage) serialises calls. Ids out of range or not in use are ignored by
 * every call (no-op, -1, 0 or NULL as documented), so a caller's -1 "no input" is harmless.
 */
#ifndef ROSTRUM_MIXER_MIXER_H
#define ROSTRUM_MIXER_MIXER_H

#include <stddef.h>
#include <stdint.h>

#define MIXER_RATE 48000
#define MIXER_FRAME 960 /* samples per 20 ms frame */
#define MIXER_MAX_INPUTS 16
/* Largest Opus packet or PCM push, in samples: 120 ms. */
#define MIXER_MAX_PUSH 5760
/* Per-input FIFO cap (200 ms), and the queue needed to start playing after an underrun. */
#define MIXER_FIFO_CAP (10 * MIXER_FRAME)
#define MIXER_JB_START (2 * MIXER_FRAME)
/* Concealed frames before a silent Opus input goes idle (100 ms). */
#define MIXER_PLC_MAX 5
/* Gate (what is mixed) and talk detection (what mixer_input_talking reports): a frame's RMS
 * above these (dBFS) opens them for this many frames (300 ms). */
#define MIXER_GATE_DBFS (-60.0)
#define MIXER_TALK_DBFS (-45.0)
#define MIXER_HOLD 15
/* Limiter ceiling: -3 dBFS. Opus at speech bitrates overshoots the peaks of a dense limited mix
 * by up to ~2 dB, so a -1 dBFS ceiling still clips after decoding (measured: 48 kb/s, 13 loud
 * inputs); -3 dBFS decodes to peaks around -1.5 dBFS. */
#define MIXER_CEILING 0.708f

struct mixer;

/* A mixer whose programme and returns are mono Opus at <bitrate> b/s (clamped to 6000..510000),
 * 20 ms frames, OPUS_APPLICATION_AUDIO (the programme's pre-skip is that encoder's look-ahead,
 * 312 samples). Owned by the caller. Aborts on OOM. */
struct mixer *mixer_new(int bitrate);

/* Frees <m> and every input's codecs. NULL is a no-op. */
void mixer_free(struct mixer *m);

/* Adds an input (a speaker, or a studio source), unmuted and idle, at the lowest free id.
 * Returns its id (0..MIXER_MAX_INPUTS-1) or -1 if all are in use. */
int mixer_input_add(struct mixer *m);

/* Removes input <id>: its queued audio, decoder and encoder are freed at once; the id may be
 * reused by the next mixer_input_add. Its return packet is gone (mixer_return_packet: NULL). */
void mixer_input_remove(struct mixer *m, int id);

/* Mutes (<muted> non-zero) or unmutes input <id>. A muted input contributes nothing from the next
 * tick, is not talking, and gets the programme as its return (its gate closes too, so on unmute
 * it is heard once a frame passes the gate). Its queue keeps draining in real
 * time, so unmuting plays current audio, not audio held since the mute. */
void mixer_input_set_muted(struct mixer *m, int id, int muted);

/* Queues Opus packet <pkt>/<len> (borrowed) from input <id>: any valid duration (2.5 to 120 ms),
 * mono or stereo (decoded to mono). Returns 0, or -1 for an invalid packet (counted in
 * bad_packets, the input carries on) or an id not in use (not counted). */
int mixer_input_push_opus(struct mixer *m, int id, const unsigned char *pkt, size_t len);

/* Queues <samples> (0..MIXER_MAX_PUSH) of s16 mono 48 kHz PCM from input <id> (borrowed).
 * Returns 0, or -1 for a bad count or an id not in use. PCM has no concealment: an underrun is
 * silence. */
int mixer_input_push_pcm(struct mixer *m, int id, const int16_t *pcm, int samples);

/* Produces one frame: pulls 20 ms from every input, mixes, encodes the programme and the
 * returns of the inputs that contributed. Returns the programme packet (owned by <m>, valid
 * until the next tick) and stores its length in <*len> (0 only if the encoder failed, which is
 * logged). Call it every 20 ms; its cost is in mixer_stats (last_tick_ns, max_tick_ns). */
const unsigned char *mixer_tick(struct mixer *m, int *len);

/* After a tick: the packet to send back to input <id> (its mix-minus, or the shared programme
 * packet, the very same pointer) and its length in <*len>; NULL if <id> is not in use. Valid until
 * the next tick. An input added since the last tick gets the programme packet (length 0 before
 * the first tick). */
const unsigned char *mixer_return_packet(const struct mixer *m, int id, int *len);

/* 1 if input <id> is talking: unmuted and played a frame above MIXER_TALK_DBFS RMS in the
 * last MIXER_HOLD ticks (300 ms); 0 otherwise or if <id> is not in use. For the stage's
 * speaking indicator; what is mixed follows the lower gate. */
int mixer_input_talking(const struct mixer *m, int id);

/* Samples queued for input <id> (its jitter-buffer depth); -1 if <id> is not in use. */
int mixer_input_queued(const struct mixer *m, int id);

/* The programme frame of the last tick as it was encoded: MIXER_FRAME floats in [-1, 1], after
 * the limiter. Owned by <m>, valid until the next tick. For level meters and tests. */
const float *mixer_programme_pcm(const struct mixer *m);

struct mixer_stats {
    uint64_t ticks;
    uint64_t plc_frames;      /* frames concealed with libopus PLC */
    uint64_t dropped_samples; /* dropped at the FIFO cap */
    uint64_t bad_packets;     /* invalid Opus packets pushed */
    uint64_t encodes;         /* Opus encodes: 1 per tick for the programme + 1 per contributor */
    uint64_t trimmed_samples; /* excess latency cut at quiet frames */
    int64_t last_tick_ns, max_tick_ns; /* mixer_tick cost, CLOCK_MONOTONIC */
};

/* Copies <m>'s counters into <*out>. */
void mixer_stats(const struct mixer *m, struct mixer_stats *out);

#endif
