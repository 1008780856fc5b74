/*
 * mixer: see mixer.h for the data flow and the jitter-buffer state machine.
 *
 * Design notes (the why):
 *  - Decode at push time, mix at tick time. The FIFO then holds PCM, so the cap, the jitter
 *    start and the latency trim count samples, whatever packet durations a sender uses. The cost
 *    is that a decoder's state is "after the last packet pushed", so concealment is only ever run
 *    once the queue is empty (the PLC then extrapolates from the audio just played), and a frame
 *    that arrives during concealment is played at once, not held for a second one.
 *  - Everything is preallocated in one block at mixer_new (FIFOs, frames, packet buffers); a
 *    tick allocates only the first time an input is mixed (its encoder); a push only the first
 *    time an input sends Opus (its decoder).
 *  - Mixing is in float: sums of 16 inputs cannot overflow, and libopus takes float directly.
 *  - An input whose gate is closed is not mixed, so the programme packet is exactly its
 *    mix-minus and the stage needs one encode per talker instead of one per seat. The gate
 *    (-60 dBFS) sits well below speech and above codec noise: SILK's "silence" decodes to
 *    +-1 LSB noise, and twelve of those mixed cost a full encode of hiss every tick (measured,
 *    bench/mixer_bench.c: 1 talker + 12 SILK-silent seats, ~450 us CPU per tick without the
 *    gate, ~170 us with it). Its hold (300 ms) keeps a talker on its own mix-minus through
 *    the gaps between words, so a speaker's decoder does not flip between two streams at every
 *    syllable. The talk indicator has its own, higher threshold (-45 dBFS).
 *  - Returns use OPUS_APPLICATION_AUDIO like the programme: same look-ahead, so a speaker's
 *    decoder switching between the programme packets and its mix-minus packets stays in time.
 *  - Limiter: peak follower with instant attack, so |out| <= ceiling on every sample without
 *    look-ahead latency; a 20 ms hold stops the gain from rippling within a pitch period (down
 *    to 50 Hz); the release is exponential (100 ms). The followed peak never goes below the
 *    ceiling, so the gain is <= 1 and the state never decays into denormals.
 */
#include "mixer/mixer.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <opus/opus.h>

#include "util/check.h"
#include "util/log.h"

#define TAG "mixer"
#define MAX_PACKET 1500     /* bytes: well above 20 ms at 510 kb/s (1275) */
#define OPUS_GRAIN 120      /* 2.5 ms: Opus durations (and PLC sizes) are multiples of this */
#define TRIM_WINDOW 50      /* ticks (1 s) over which the low-water mark of a queue is kept */
#define LIMIT_HOLD 960      /* samples (20 ms) */
#define LIMIT_RELEASE_S 0.1 /* seconds, time constant */

struct limiter {
    float env; /* followed peak, >= the ceiling */
    int hold;  /* samples left before release */
};

struct input {
    int in_use;
    int muted;
    int opus;       /* last push was Opus: underruns are concealed */
    int playing;    /* PLAYING or CONCEAL (plc_run > 0); 0 is IDLE */
    int plc_run;    /* consecutive concealed frames */
    int gate_hold;  /* ticks left with the gate open */
    int talk_hold;  /* ticks left in the talking state */
    int active;     /* this tick: mixed (it has its own return packet) */
    int was_active; /* last tick's <active>: seeds the return limiter on a restart */
    int win_ticks;  /* trim window: ticks counted, and the lowest queue after a pull */
    size_t lowwater;
    size_t trim; /* samples to cut at the next quiet frame */
    OpusDecoder *dec;
    OpusEncoder *enc;
    struct limiter lim;
    size_t head, count; /* FIFO: <count> samples from fifo[head], wrapping */
    int pkt_len;
    /* arrays last: mixer_input_add clears everything before <fifo> */
    float fifo[MIXER_FIFO_CAP];
    float frame[MIXER_FRAME]; /* this tick's contribution */
    unsigned char pkt[MAX_PACKET];
};

struct mixer {
    int bitrate;
    float gate_ms; /* mean-square thresholds */
    float talk_ms;
    float release; /* limiter release coefficient per sample */
    OpusEncoder *enc;
    struct limiter lim;
    int pkt_len;
    struct mixer_stats stats;
    float mix[MIXER_FRAME]; /* sum of contributions, before the limiter */
    float out[MIXER_FRAME]; /* programme as encoded */
    float tmp[MIXER_FRAME]; /* a return being built */
    float dec[MIXER_MAX_PUSH];
    unsigned char pkt[MAX_PACKET];
    struct input in[MIXER_MAX_INPUTS];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int input_valid(const struct mixer *m, int id)
{
    return m && id >= 0 && id < MIXER_MAX_INPUTS && m->in[id].in_use;
}

static struct input *input_get(struct mixer *m, int id)
{
    return input_valid(m, id) ? &m->in[id] : NULL;
}

static const struct input *input_cget(const struct mixer *m, int id)
{
    return input_valid(m, id) ? &m->in[id] : NULL;
}

/* A mono encoder at the mixer's bitrate. Aborts on failure (only OOM is possible here). */
static OpusEncoder *encoder_new(const struct mixer *m)
{
    int err;
    OpusEncoder *e = opus_encoder_create(MIXER_RATE, 1, OPUS_APPLICATION_AUDIO, &err);
    BUG_ON(!e || err != OPUS_OK);
    opus_encoder_ctl(e, OPUS_SET_BITRATE(m->bitrate));
    return e;
}

/* ---- the FIFO ------------------------------------------------------------------------------ */

/* Appends <n> (<= MIXER_MAX_PUSH) samples, dropping the oldest past the cap. Drops are rounded up
 * to whole 2.5 ms grains so an Opus input's queue stays a multiple of the PLC granularity. */
static void fifo_push(struct mixer *m, struct input *in, const float *x, size_t n)
{
    if (in->count + n > MIXER_FIFO_CAP) {
        size_t drop = in->count + n - MIXER_FIFO_CAP;
        drop = (drop + OPUS_GRAIN - 1) / OPUS_GRAIN * OPUS_GRAIN;
        if (drop > in->count)
            drop = in->count;
        in->head = (in->head + drop) % MIXER_FIFO_CAP;
        in->count -= drop;
        m->stats.dropped_samples += drop;
    }
    size_t tail = (in->head + in->count) % MIXER_FIFO_CAP;
    size_t first = MIXER_FIFO_CAP - tail < n ? MIXER_FIFO_CAP - tail : n;
    memcpy(in->fifo + tail, x, first * sizeof(float));
    memcpy(in->fifo, x + first, (n - first) * sizeof(float));
    in->count += n;
}

/* Moves <n> (<= count) samples into <out>, or discards them if <out> is NULL. */
static void fifo_pop(struct input *in, float *out, size_t n)
{
    if (out) {
        size_t first = MIXER_FIFO_CAP - in->head < n ? MIXER_FIFO_CAP - in->head : n;
        memcpy(out, in->fifo + in->head, first * sizeof(float));
        memcpy(out + first, in->fifo, (n - first) * sizeof(float));
    }
    in->head = (in->head + n) % MIXER_FIFO_CAP;
    in->count -= n;
}

/* ---- the limiter --------------------------------------------------------------------------- */

static void limiter_run(struct limiter *l, float release, float *x, int n)
{
    float env = l->env;
    int hold = l->hold;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a >= env) {
            env = a;
            hold = LIMIT_HOLD;
        } else if (hold > 0) {
            hold--;
        } else {
            env = fmaxf(env * release, a); /* never released below the sample at hand */
            if (env < MIXER_CEILING)
                env = MIXER_CEILING;
        }
        float y = x[i] * (MIXER_CEILING / env);
        /* the hard clamp: only rounding (or a NaN from a broken input) can get here */
        x[i] = y > 1.0f ? 1.0f : y < -1.0f ? -1.0f : y == y ? y : 0.0f;
    }
    l->env = env;
    l->hold = hold;
}

/* ---- public API ---------------------------------------------------------------------------- */

struct mixer *mixer_new(int bitrate)
{
    struct mixer *m = calloc(1, sizeof(*m));
    BUG_ON(!m);
    m->bitrate = bitrate < 6000 ? 6000 : bitrate > 510000 ? 510000 : bitrate;
    m->gate_ms = (float)pow(10.0, MIXER_GATE_DBFS / 10.0);
    m->talk_ms = (float)pow(10.0, MIXER_TALK_DBFS / 10.0);
    m->release = (float)exp(-1.0 / (LIMIT_RELEASE_S * MIXER_RATE));
    m->lim.env = MIXER_CEILING;
    m->enc = encoder_new(m);
    return m;
}

void mixer_free(struct mixer *m)
{
    if (!m)
        return;
    for (int i = 0; i < MIXER_MAX_INPUTS; i++)
        mixer_input_remove(m, i);
    opus_encoder_destroy(m->enc);
    free(m);
}

int mixer_input_add(struct mixer *m)
{
    for (int i = 0; i < MIXER_MAX_INPUTS; i++) {
        struct input *in = &m->in[i];
        if (in->in_use)
            continue;
        /* the arrays after the state need no clearing: count = 0 and pkt_len = 0 guard them */
        memset(in, 0, offsetof(struct input, fifo));
        in->in_use = 1;
        in->lowwater = SIZE_MAX;
        in->lim.env = MIXER_CEILING;
        return i;
    }
    return -1;
}

void mixer_input_remove(struct mixer *m, int id)
{
    struct input *in = input_get(m, id);
    if (!in)
        return;
    if (in->dec)
        opus_decoder_destroy(in->dec);
    if (in->enc)
        opus_encoder_destroy(in->enc);
    in->dec = NULL;
    in->enc = NULL;
    in->in_use = 0;
}

void mixer_input_set_muted(struct mixer *m, int id, int muted)
{
    struct input *in = input_get(m, id);
    if (in)
        in->muted = muted != 0;
}

int mixer_input_push_opus(struct mixer *m, int id, const unsigned char *pkt, size_t len)
{
    struct input *in = input_get(m, id);
    if (!in)
        return -1;
    /* len 0 means "lost" to libopus; from a sender it is just a bad packet */
    int n = len > 0 && len <= 0x7fffffff && pkt
                ? opus_packet_get_nb_samples(pkt, (opus_int32)len, MIXER_RATE)
                : OPUS_INVALID_PACKET;
    if (n <= 0 || n > MIXER_MAX_PUSH)
        goto bad;
    if (!in->dec) {
        int err;
        /* a mono decoder downmixes stereo packets itself */
        in->dec = opus_decoder_create(MIXER_RATE, 1, &err);
        BUG_ON(!in->dec || err != OPUS_OK);
    }
    n = opus_decode_float(in->dec, pkt, (opus_int32)len, m->dec, MIXER_MAX_PUSH, 0);
    if (n < 0)
        goto bad;
    in->opus = 1;
    fifo_push(m, in, m->dec, (size_t)n);
    return 0;
bad:
    m->stats.bad_packets++;
    LOG_RATELIMITED(LOG_DEBUG, TAG, "input %d: invalid Opus packet (%zu bytes)", id, len);
    return -1;
}

int mixer_input_push_pcm(struct mixer *m, int id, const int16_t *pcm, int samples)
{
    struct input *in = input_get(m, id);
    if (!in || samples < 0 || samples > MIXER_MAX_PUSH || (samples > 0 && !pcm))
        return -1;
    for (int i = 0; i < samples; i++)
        m->dec[i] = (float)pcm[i] * (1.0f / 32768.0f);
    in->opus = 0;
    fifo_push(m, in, m->dec, (size_t)samples);
    return 0;
}

/* Runs <in>'s jitter-buffer state machine for one tick. Returns 1 with in->frame filled (real
 * or concealed audio), or 0 if the input has nothing to play. */
static int input_pull(struct mixer *m, struct input *in)
{
    if (in->count >= MIXER_FRAME && (in->playing || in->count >= MIXER_JB_START)) {
        fifo_pop(in, in->frame, MIXER_FRAME);
        in->playing = 1;
        in->plc_run = 0;
        /* the low-water mark only means something while the flow is steady */
        if (in->count < in->lowwater)
            in->lowwater = in->count;
        if (++in->win_ticks == TRIM_WINDOW) {
            if (in->lowwater >= MIXER_JB_START)
                in->trim = (in->lowwater - MIXER_FRAME) / OPUS_GRAIN * OPUS_GRAIN;
            in->win_ticks = 0;
            in->lowwater = SIZE_MAX;
        }
        return 1;
    }
    in->win_ticks = 0;
    in->lowwater = SIZE_MAX;
    in->trim = 0;
    if (!in->playing)
        return 0;
    /* underrun: play what is left, then conceal (Opus) or pad with silence (PCM) */
    size_t have = in->count;
    fifo_pop(in, in->frame, have);
    size_t need = MIXER_FRAME - have;
    if (in->opus && in->dec && in->plc_run < MIXER_PLC_MAX) {
        int n = (int)((need + OPUS_GRAIN - 1) / OPUS_GRAIN * OPUS_GRAIN);
        int got = opus_decode_float(in->dec, NULL, 0, m->dec, n, 0);
        if (got >= (int)need) {
            memcpy(in->frame + have, m->dec, need * sizeof(float));
            in->plc_run++;
            m->stats.plc_frames++;
            return 1;
        }
    }
    /* IDLE. The decoder is not reset: CELT codes band energies relative to the previous frame,
     * and a reset decoder's first frame of a resumed stream came out ~10 dB low (measured),
     * where the kept one's is ~1.5 dB low. */
    in->playing = 0;
    in->plc_run = 0;
    if (have == 0)
        return 0;
    memset(in->frame + have, 0, need * sizeof(float));
    return 1;
}

static float mean_square(const float *x, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++)
        s += x[i] * x[i];
    return s / (float)n;
}

/* Encodes MIXER_FRAME samples of <pcm> with <e> into <pkt>; returns the length, 0 on failure. */
static int encode(struct mixer *m, OpusEncoder *e, const float *pcm, unsigned char *pkt)
{
    int n = opus_encode_float(e, pcm, MIXER_FRAME, pkt, MAX_PACKET);
    m->stats.encodes++;
    if (n < 0) {
        LOG_RATELIMITED(LOG_ERROR, TAG, "opus_encode_float: %s", opus_strerror(n));
        return 0;
    }
    return n;
}

const unsigned char *mixer_tick(struct mixer *m, int *len)
{
    int64_t t0 = now_ns();
    memset(m->mix, 0, sizeof(m->mix));
    for (int i = 0; i < MIXER_MAX_INPUTS; i++) {
        struct input *in = &m->in[i];
        if (!in->in_use)
            continue;
        in->was_active = in->active;
        in->active = 0;
        int have = input_pull(m, in) && !in->muted;
        float ms = have ? mean_square(in->frame, MIXER_FRAME) : 0;
        if (in->muted) {
            in->gate_hold = in->talk_hold = 0;
        } else {
            in->gate_hold = ms > m->gate_ms ? MIXER_HOLD : in->gate_hold ? in->gate_hold - 1 : 0;
            in->talk_hold = ms > m->talk_ms ? MIXER_HOLD : in->talk_hold ? in->talk_hold - 1 : 0;
        }
        if (have && in->gate_hold > 0) {
            for (int j = 0; j < MIXER_FRAME; j++)
                m->mix[j] += in->frame[j];
            in->active = 1;
        }
        /* excess latency goes where nobody hears it: in a frame without talk */
        if (in->trim && in->talk_hold == 0) {
            size_t spare = in->count > MIXER_FRAME ? in->count - MIXER_FRAME : 0;
            size_t cut = (in->trim < spare ? in->trim : spare) / OPUS_GRAIN * OPUS_GRAIN;
            fifo_pop(in, NULL, cut);
            m->stats.trimmed_samples += cut;
            in->trim = 0;
        }
    }

    struct limiter before = m->lim;
    memcpy(m->out, m->mix, sizeof(m->out));
    limiter_run(&m->lim, m->release, m->out, MIXER_FRAME);
    m->pkt_len = encode(m, m->enc, m->out, m->pkt);

    for (int i = 0; i < MIXER_MAX_INPUTS; i++) {
        struct input *in = &m->in[i];
        if (!in->in_use || !in->active)
            continue;
        if (!in->enc)
            in->enc = encoder_new(m);
        if (!in->was_active)
            in->lim = before;
        for (int j = 0; j < MIXER_FRAME; j++)
            m->tmp[j] = m->mix[j] - in->frame[j];
        limiter_run(&in->lim, m->release, m->tmp, MIXER_FRAME);
        in->pkt_len = encode(m, in->enc, m->tmp, in->pkt);
    }

    m->stats.ticks++;
    int64_t dt = now_ns() - t0;
    m->stats.last_tick_ns = dt;
    if (dt > m->stats.max_tick_ns)
        m->stats.max_tick_ns = dt;
    *len = m->pkt_len;
    return m->pkt;
}

const unsigned char *mixer_return_packet(const struct mixer *m, int id, int *len)
{
    const struct input *in = input_cget(m, id);
    if (!in) {
        *len = 0;
        return NULL;
    }
    if (in->active) {
        *len = in->pkt_len;
        return in->pkt;
    }
    *len = m->pkt_len;
    return m->pkt;
}

int mixer_input_talking(const struct mixer *m, int id)
{
    const struct input *in = input_cget(m, id);
    return in && !in->muted && in->talk_hold > 0;
}

int mixer_input_queued(const struct mixer *m, int id)
{
    const struct input *in = input_cget(m, id);
    return in ? (int)in->count : -1;
}

const float *mixer_programme_pcm(const struct mixer *m)
{
    return m->out;
}

void mixer_stats(const struct mixer *m, struct mixer_stats *out)
{
    *out = m->stats;
}
