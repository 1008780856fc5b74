/*
 * Unit tests for the stage mixer, on real signals: tones are generated here, encoded with
 * libopus, pushed in lockstep with the ticks (or in bursts), and what comes out (the programme
 * and the returns) is decoded and measured with a Goertzel filter: the share of a block's power
 * at one frequency. Where codec delay would blur the timing (mute, PLC), the programme frame as
 * encoded (mixer_programme_pcm) is measured instead, so the checks are exact per tick.
 */
#include <math.h>
#include <stdint.h>

#include <opus/opus.h>

#include "harness.h"
#include "mixer/mixer.h"

#define FRAME MIXER_FRAME
#define SKIP 10 /* frames (200 ms) skipped before measuring: jitter start + codec delays */

/* ---- signals ------------------------------------------------------------------------------- */

/* A speaker: a continuous sine of <freq> Hz at <amp> (of full scale), and its Opus encoder. */
struct sender {
    double freq, amp, phase;
    int channels;
    OpusEncoder *enc;
};

static void sender_init_app(struct sender *s, double freq, double amp, int channels, int app)
{
    int err;
    *s = (struct sender){.freq = freq, .amp = amp, .channels = channels};
    s->enc = opus_encoder_create(48000, channels, app, &err);
    ASSERT(s->enc && err == OPUS_OK);
    opus_encoder_ctl(s->enc, OPUS_SET_BITRATE(64000 * channels));
}

static void sender_init(struct sender *s, double freq, double amp, int channels)
{
    sender_init_app(s, freq, amp, channels, OPUS_APPLICATION_AUDIO);
}

static void sender_free(struct sender *s)
{
    opus_encoder_destroy(s->enc);
}

/* The next <n> samples of the tone (interleaved if stereo: the same tone on both channels). */
static void sender_pcm(struct sender *s, int16_t *out, int n)
{
    for (int i = 0; i < n; i++) {
        double v = s->amp * 32767.0 * sin(s->phase);
        s->phase += 2 * M_PI * s->freq / 48000.0;
        if (s->phase > 2 * M_PI)
            s->phase -= 2 * M_PI;
        for (int c = 0; c < s->channels; c++)
            out[i * s->channels + c] = (int16_t)lrint(v);
    }
}

/* Encodes the next <n> samples (a valid Opus duration) into <pkt>; returns its length. */
static int sender_packet(struct sender *s, int n, unsigned char *pkt)
{
    int16_t pcm[2 * 5760];
    sender_pcm(s, pcm, n);
    int len = opus_encode(s->enc, pcm, n, pkt, 4000);
    ASSERT(len > 0);
    return len;
}

static void sender_push(struct mixer *m, int id, struct sender *s, int n)
{
    unsigned char pkt[4000];
    int len = sender_packet(s, n, pkt);
    ASSERT_EQ_INT(mixer_input_push_opus(m, id, pkt, (size_t)len), 0);
}

/* ---- measures ------------------------------------------------------------------------------ */

/* Goertzel with a Hann window: the share of <x>'s power at <f> Hz, 1.0 for a pure tone at <f>,
 * ~0.5 for each of two equal tones, ~0 for a tone a few bins away. 0 for silence. */
static double share(const double *x, int n, double f)
{
    double w = 2 * M_PI * f / 48000.0, c = 2 * cos(w);
    double s1 = 0, s2 = 0, sw = 0, sw2 = 0, e = 0;
    for (int i = 0; i < n; i++) {
        double win = 0.5 - 0.5 * cos(2 * M_PI * i / (n - 1));
        double v = x[i] * win;
        double s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
        sw += win;
        sw2 += win * win;
        e += v * v;
    }
    if (e <= 0)
        return 0;
    double p = s1 * s1 + s2 * s2 - c * s1 * s2;
    return 2 * sw2 * p / (sw * sw * e);
}

static double share_i16(const int16_t *x, int n, double f)
{
    double *d = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++)
        d[i] = x[i];
    double r = share(d, n, f);
    free(d);
    return r;
}

static double share_f32(const float *x, int n, double f)
{
    double d[FRAME];
    ASSERT(n <= FRAME);
    for (int i = 0; i < n; i++)
        d[i] = x[i];
    return share(d, n, f);
}

static double rms_i16(const int16_t *x, int n)
{
    double e = 0;
    for (int i = 0; i < n; i++)
        e += (double)x[i] * x[i];
    return sqrt(e / n) / 32768.0;
}

static double rms_f32(const float *x, int n)
{
    double e = 0;
    for (int i = 0; i < n; i++)
        e += (double)x[i] * x[i];
    return sqrt(e / n);
}

/* ---- decoded outputs ----------------------------------------------------------------------- */

/* An output stream (the programme, or one return) as a listener would decode it. */
struct track {
    OpusDecoder *dec;
    int16_t *pcm;
    int n, cap;
};

static void track_init(struct track *t)
{
    int err;
    *t = (struct track){0};
    t->dec = opus_decoder_create(48000, 1, &err);
    ASSERT(t->dec && err == OPUS_OK);
}

static void track_add(struct track *t, const unsigned char *pkt, int len)
{
    ASSERT(pkt != NULL && len > 0);
    if (t->n + 5760 > t->cap) {
        t->cap = t->cap ? 2 * t->cap : 65536;
        t->pcm = realloc(t->pcm, sizeof(int16_t) * (size_t)t->cap);
        ASSERT(t->pcm);
    }
    int n = opus_decode(t->dec, pkt, len, t->pcm + t->n, 5760, 0);
    ASSERT_EQ_INT(n, FRAME);
    t->n += n;
}

static void track_free(struct track *t)
{
    opus_decoder_destroy(t->dec);
    free(t->pcm);
}

/* Every 100 ms block of <t> from frame <from> to frame <to> has a share of power at <f> of at
 * least <lo> (lo >= 0) or below <hi>. */
static void track_check(const struct track *t, int from, int to, double f, double lo, double hi)
{
    ASSERT(to * FRAME <= t->n);
    for (int b = from * FRAME; b + 5 * FRAME <= to * FRAME; b += 5 * FRAME) {
        double s = share_i16(t->pcm + b, 5 * FRAME, f);
        if (s < lo || s >= hi)
            TEST_FAIL_("share at %.0f Hz of block at frame %d: %.5f, want [%.3f, %.3f)", f,
                       b / FRAME, s, lo, hi);
    }
}

static uint64_t encodes(const struct mixer *m)
{
    struct mixer_stats st;
    mixer_stats(m, &st);
    return st.encodes;
}

static struct mixer_stats stats(const struct mixer *m)
{
    struct mixer_stats st;
    mixer_stats(m, &st);
    return st;
}

/* ---- tests --------------------------------------------------------------------------------- */

TEST(goertzel_self_check)
{
    struct sender s;
    sender_init(&s, 440, 0.5, 1);
    int16_t pcm[4800];
    sender_pcm(&s, pcm, 4800);
    ASSERT(share_i16(pcm, 4800, 440) > 0.98);
    ASSERT(share_i16(pcm, 4800, 660) < 1e-4);
    ASSERT(fabs(rms_i16(pcm, 4800) - 0.5 / sqrt(2)) < 0.01);
    sender_free(&s);
}

/* Two speakers, A at 440 Hz and B at 660 Hz. <jitter>: packets arrive in bursts of three (the
 * frames of the last 60 ms) every third tick, instead of one per tick. */
static void two_speakers(int jitter)
{
    struct mixer *m = mixer_new(48000);
    struct sender s[2];
    struct track prog, ret[2];
    int id[2];
    double freq[2] = {440, 660};
    track_init(&prog);
    for (int i = 0; i < 2; i++) {
        sender_init(&s[i], freq[i], 0.3, 1);
        track_init(&ret[i]);
        id[i] = mixer_input_add(m);
        ASSERT_EQ_INT(id[i], i);
    }
    int ticks = 60;
    for (int t = 0; t < ticks; t++) {
        for (int i = 0; i < 2; i++) {
            if (!jitter)
                sender_push(m, id[i], &s[i], FRAME);
            else if (t % 3 == 2)
                for (int k = 0; k < 3; k++)
                    sender_push(m, id[i], &s[i], FRAME);
        }
        int len;
        const unsigned char *p = mixer_tick(m, &len);
        track_add(&prog, p, len);
        for (int i = 0; i < 2; i++) {
            int rlen;
            const unsigned char *r = mixer_return_packet(m, id[i], &rlen);
            track_add(&ret[i], r, rlen);
            if (t >= SKIP)
                ASSERT(r != p); /* both talk: each has its own mix-minus */
        }
    }
    /* the programme carries both voices; each return carries only the other one */
    track_check(&prog, SKIP, ticks, 440, 0.3, 1);
    track_check(&prog, SKIP, ticks, 660, 0.3, 1);
    track_check(&ret[0], SKIP, ticks, 660, 0.95, 2);
    track_check(&ret[0], SKIP, ticks, 440, -1, 0.005);
    track_check(&ret[1], SKIP, ticks, 440, 0.95, 2);
    track_check(&ret[1], SKIP, ticks, 660, -1, 0.005);
    /* not limited (0.6 peak < ceiling): the programme keeps the level of the sum */
    double r = rms_i16(prog.pcm + SKIP * FRAME, (ticks - SKIP) * FRAME);
    ASSERT(fabs(r - 0.3) < 0.03);
    struct mixer_stats st = stats(m);
    ASSERT_EQ_UINT(st.plc_frames, 0);
    ASSERT_EQ_UINT(st.dropped_samples, 0);
    ASSERT_EQ_UINT(st.ticks, (uint64_t)ticks);
    for (int i = 0; i < 2; i++) {
        track_free(&ret[i]);
        sender_free(&s[i]);
    }
    track_free(&prog);
    mixer_free(m);
}

TEST(mix_minus_lockstep)
{
    two_speakers(0);
}

TEST(mix_minus_with_jitter)
{
    two_speakers(1);
}

TEST(thirteen_loud_inputs_never_clip)
{
    struct mixer *m = mixer_new(48000);
    struct sender s[13];
    struct track prog, ret[13];
    track_init(&prog);
    for (int i = 0; i < 13; i++) {
        sender_init(&s[i], 150 + 173 * i, 1.0, 1); /* full scale */
        track_init(&ret[i]);
        ASSERT_EQ_INT(mixer_input_add(m), i);
    }
    uint32_t seed = 12345;
    int ticks = 75;
    for (int t = 0; t < ticks; t++) {
        for (int i = 0; i < 13; i++) {
            if (i < 10) {
                sender_push(m, i, &s[i], FRAME);
            } else { /* three full-scale white-noise PCM inputs */
                int16_t pcm[FRAME];
                for (int j = 0; j < FRAME; j++) {
                    seed = seed * 1664525u + 1013904223u;
                    pcm[j] = (seed >> 16) & 1 ? 32767 : -32768;
                }
                ASSERT_EQ_INT(mixer_input_push_pcm(m, i, pcm, FRAME), 0);
            }
        }
        int len;
        const unsigned char *p = mixer_tick(m, &len);
        track_add(&prog, p, len);
        const float *out = mixer_programme_pcm(m);
        for (int j = 0; j < FRAME; j++)
            ASSERT(fabsf(out[j]) <= MIXER_CEILING + 1e-6f);
        for (int i = 0; i < 13; i++) {
            int rlen;
            const unsigned char *r = mixer_return_packet(m, i, &rlen);
            track_add(&ret[i], r, rlen);
        }
    }
    ASSERT_EQ_UINT(encodes(m), 14 * (uint64_t)(ticks - 1) + 1); /* all talk from tick 1 */
    struct track *all[14] = {&prog};
    for (int i = 0; i < 13; i++)
        all[i + 1] = &ret[i];
    for (int k = 0; k < 14; k++) {
        const int16_t *x = all[k]->pcm + SKIP * FRAME;
        int n = (ticks - SKIP) * FRAME, peak = 0, run = 0, longest = 0;
        for (int j = 0; j < n; j++) {
            int a = abs(x[j]);
            peak = a > peak ? a : peak;
            run = a >= 32767 ? run + 1 : 0;
            longest = run > longest ? run : longest;
        }
        if (longest > 0 || peak > 0.95 * 32767)
            TEST_FAIL_("stream %d: peak %d, clipped run %d", k, peak, longest);
        double r = rms_i16(x, n);
        if (r < 0.1) /* loud, not silenced by the limiter */
            TEST_FAIL_("stream %d: rms %.3f", k, r);
    }
    for (int i = 0; i < 13; i++) {
        track_free(&ret[i]);
        sender_free(&s[i]);
    }
    track_free(&prog);
    mixer_free(m);
}

/* A full-scale 400 Hz tone and a -6 dBFS 600 Hz tone (PCM, no codec on the way in): the limiter
 * brings the peaks to the ceiling with one steady gain, so the two tones keep their 4:1 power
 * ratio, the level does not pump from frame to frame, and nearly no power goes to distortion
 * (a clipper, or a fast release riding the beats of the two tones, would fail all three).
 * 400 and 600 Hz: whole cycles of both and of their beat in a frame, so a steady gain gives
 * exactly steady frame levels. */
TEST(limiter_gain_is_steady_and_clean)
{
    struct mixer *m = mixer_new(48000);
    struct sender a, b;
    sender_init(&a, 400, 1.0, 1);
    sender_init(&b, 600, 0.5, 1);
    int ia = mixer_input_add(m), ib = mixer_input_add(m);
    double lo = 1e9, hi = 0, body[40 * FRAME];
    for (int t = 0; t < 50; t++) {
        int16_t pcm[FRAME];
        sender_pcm(&a, pcm, FRAME);
        mixer_input_push_pcm(m, ia, pcm, FRAME);
        sender_pcm(&b, pcm, FRAME);
        mixer_input_push_pcm(m, ib, pcm, FRAME);
        int len;
        mixer_tick(m, &len);
        const float *out = mixer_programme_pcm(m);
        double peak = 0;
        for (int j = 0; j < FRAME; j++)
            peak = fabs(out[j]) > peak ? fabs(out[j]) : peak;
        ASSERT(peak <= MIXER_CEILING + 1e-6);
        if (t < SKIP)
            continue;
        ASSERT(peak > 0.95 * MIXER_CEILING); /* limited to the ceiling, not far below */
        double r = rms_f32(out, FRAME);
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
        for (int j = 0; j < FRAME; j++)
            body[(t - SKIP) * FRAME + j] = out[j];
    }
    if (hi / lo > pow(10, 0.2 / 20))
        TEST_FAIL_("programme frame rms from %.4f to %.4f", lo, hi);
    double s400 = share(body, 40 * FRAME, 400), s600 = share(body, 40 * FRAME, 600);
    if (s400 + s600 < 0.995 || fabs(s400 / s600 - 4) > 0.2)
        TEST_FAIL_("400 share %.4f, 600 share %.4f", s400, s600);
    sender_free(&a);
    sender_free(&b);
    mixer_free(m);
}

TEST(silent_inputs_get_the_programme_packet)
{
    struct mixer *m = mixer_new(48000);
    struct sender talker, silent[5];
    sender_init(&talker, 440, 0.3, 1);
    /* digital silence: CELT decodes it to ~1e-34, SILK (VOIP) to +-1 LSB of noise */
    for (int i = 0; i < 5; i++)
        sender_init_app(&silent[i], 440, 0.0, 1,
                        i < 2 ? OPUS_APPLICATION_AUDIO : OPUS_APPLICATION_VOIP);
    for (int i = 0; i < 13; i++)
        ASSERT_EQ_INT(mixer_input_add(m), i);
    /* 0 talks (muted from tick 40); 1..5 send Opus silence; 6..9 send PCM zeros; 10..12 send
     * nothing */
    int16_t zeros[FRAME] = {0};
    int mute_at = 40, ticks = 60;
    for (int t = 0; t < ticks; t++) {
        sender_push(m, 0, &talker, FRAME);
        for (int i = 1; i <= 5; i++)
            sender_push(m, i, &silent[i - 1], FRAME);
        for (int i = 6; i <= 9; i++)
            ASSERT_EQ_INT(mixer_input_push_pcm(m, i, zeros, FRAME), 0);
        if (t == mute_at)
            mixer_input_set_muted(m, 0, 1);
        uint64_t before = encodes(m);
        int len;
        const unsigned char *p = mixer_tick(m, &len);
        uint64_t per_tick = encodes(m) - before;
        for (int i = 1; i < 13; i++) {
            int rlen;
            const unsigned char *r = mixer_return_packet(m, i, &rlen);
            ASSERT(r == p);
            ASSERT_EQ_INT(rlen, len);
            ASSERT_EQ_INT(mixer_input_talking(m, i), 0);
        }
        int rlen;
        const unsigned char *r = mixer_return_packet(m, 0, &rlen);
        /* the talker plays from tick 1, once two frames are queued */
        if (t >= 1 && t < mute_at) {
            ASSERT_EQ_INT(mixer_input_talking(m, 0), 1);
            ASSERT(r != p);
            ASSERT(rlen > 0);
            ASSERT_EQ_UINT(per_tick, 2); /* the programme + the talker's mix-minus */
        } else {
            ASSERT_EQ_INT(mixer_input_talking(m, 0), 0);
            ASSERT(r == p);
            ASSERT_EQ_UINT(per_tick, 1);
        }
    }
    sender_free(&talker);
    for (int i = 0; i < 5; i++)
        sender_free(&silent[i]);
    mixer_free(m);
}

TEST(mute_takes_effect_next_tick)
{
    struct mixer *m = mixer_new(48000);
    struct sender a, b;
    struct track prog;
    sender_init(&a, 440, 0.3, 1);
    sender_init(&b, 660, 0.3, 1);
    track_init(&prog);
    int ia = mixer_input_add(m), ib = mixer_input_add(m);
    int mute_at = 30, unmute_at = 50, ticks = 70;
    for (int t = 0; t < ticks; t++) {
        sender_push(m, ia, &a, FRAME);
        sender_push(m, ib, &b, FRAME);
        if (t == mute_at)
            mixer_input_set_muted(m, ia, 1);
        if (t == unmute_at)
            mixer_input_set_muted(m, ia, 0);
        int len;
        const unsigned char *p = mixer_tick(m, &len);
        track_add(&prog, p, len);
        const float *out = mixer_programme_pcm(m);
        double s440 = share_f32(out, FRAME, 440), s660 = share_f32(out, FRAME, 660);
        int muted = t >= mute_at && t < unmute_at;
        if (t >= 2 && !muted) {
            ASSERT(s440 > 0.3);
            ASSERT(s660 > 0.3);
        } else if (muted) {
            if (s440 > 1e-3)
                TEST_FAIL_("tick %d: muted A still at %.5f of the programme", t, s440);
            ASSERT(s660 > 0.98);
            int rlen;
            ASSERT(mixer_return_packet(m, ia, &rlen) == p); /* hears everything */
            ASSERT_EQ_INT(mixer_input_talking(m, ia), 0);
        }
    }
    /* as decoded by a listener: gone one frame later (the codec's 6.5 ms look-ahead) */
    track_check(&prog, mute_at + 2, unmute_at, 440, -1, 0.002);
    track_check(&prog, mute_at + 2, unmute_at, 660, 0.98, 2);
    track_check(&prog, unmute_at + 2, ticks, 440, 0.3, 1);
    track_free(&prog);
    sender_free(&a);
    sender_free(&b);
    mixer_free(m);
}

TEST(plc_conceals_then_silences_then_recovers)
{
    struct mixer *m = mixer_new(48000);
    struct sender a;
    sender_init(&a, 440, 0.3, 1);
    int ia = mixer_input_add(m);
    int stop_at = 30, resume_at = 50, ticks = 60;
    double steady = 0;
    int first_plc = -1, plc_ticks = 0;
    for (int t = 0; t < ticks; t++) {
        if (t < stop_at || t >= resume_at)
            sender_push(m, ia, &a, FRAME);
        uint64_t plc0 = stats(m).plc_frames;
        int len;
        mixer_tick(m, &len);
        int plc = (int)(stats(m).plc_frames - plc0);
        const float *out = mixer_programme_pcm(m);
        double r = rms_f32(out, FRAME);
        if (t == stop_at - 1)
            steady = r;
        if (plc) {
            ASSERT_EQ_INT(plc, 1);
            if (first_plc < 0) {
                first_plc = t;
                /* the queue held one frame: it plays, then the next tick is concealed */
                ASSERT_EQ_INT(t, stop_at + 1);
                /* not an abrupt cut: the tone carries on at about its level */
                if (r < 0.5 * steady || share_f32(out, FRAME, 440) < 0.8)
                    TEST_FAIL_("first concealed frame: rms %.3f (was %.3f), 440 share %.3f", r,
                               steady, share_f32(out, FRAME, 440));
            }
            ASSERT_EQ_INT(t, first_plc + plc_ticks); /* consecutive */
            plc_ticks++;
        } else if (first_plc >= 0 && t < resume_at + 1) {
            /* after 100 ms of concealment the input is silent, and stays so until two frames
             * are queued again (the first frame sent on resume is held) */
            ASSERT(r == 0.0);
            ASSERT_EQ_INT(mixer_input_queued(m, ia), t == resume_at ? FRAME : 0);
        } else if (t >= resume_at + 1) {
            /* heard again; the decoder fades in out of its old concealment on the first frame */
            int first = t == resume_at + 1;
            if (share_f32(out, FRAME, 440) < (first ? 0.9 : 0.98) ||
                fabs(r - steady) > (first ? 0.3 : 0.1) * steady)
                TEST_FAIL_("tick %d after resuming: rms %.3f (was %.3f), 440 share %.3f", t, r,
                           steady, share_f32(out, FRAME, 440));
        }
    }
    ASSERT_EQ_INT(plc_ticks, MIXER_PLC_MAX);
    ASSERT_EQ_UINT(stats(m).plc_frames, MIXER_PLC_MAX);
    sender_free(&a);
    mixer_free(m);
}

TEST(remove_and_add_mid_programme)
{
    struct mixer *m = mixer_new(48000);
    struct sender a, b, c;
    struct track ret_a, ret_c;
    sender_init(&a, 440, 0.3, 1);
    sender_init(&b, 660, 0.3, 1);
    sender_init(&c, 880, 0.3, 1);
    track_init(&ret_a);
    track_init(&ret_c);
    int ia = mixer_input_add(m), ib = mixer_input_add(m), ic = -1;
    int remove_at = 20, ticks = 60;
    for (int t = 0; t < ticks; t++) {
        sender_push(m, ia, &a, FRAME);
        if (t < remove_at)
            sender_push(m, ib, &b, FRAME);
        if (t == remove_at) {
            mixer_input_remove(m, ib);
            int rlen;
            ASSERT(mixer_return_packet(m, ib, &rlen) == NULL);
            unsigned char pkt[4000];
            int plen = sender_packet(&b, FRAME, pkt);
            ASSERT_EQ_INT(mixer_input_push_opus(m, ib, pkt, (size_t)plen), -1);
            ic = mixer_input_add(m);
            ASSERT_EQ_INT(ic, ib); /* the freed id is reused */
        }
        if (ic >= 0)
            sender_push(m, ic, &c, FRAME);
        int len, rlen;
        mixer_tick(m, &len);
        const float *out = mixer_programme_pcm(m);
        if (t == remove_at) /* C's first frame is held; B is gone at once */
            ASSERT(share_f32(out, FRAME, 660) < 1e-3 && share_f32(out, FRAME, 880) < 1e-3);
        const unsigned char *r = mixer_return_packet(m, ia, &rlen);
        track_add(&ret_a, r, rlen);
        if (ic >= 0) {
            r = mixer_return_packet(m, ic, &rlen);
            track_add(&ret_c, r, rlen);
        }
    }
    track_check(&ret_a, SKIP, remove_at, 660, 0.95, 2);
    track_check(&ret_a, remove_at + 5, ticks, 880, 0.95, 2);
    track_check(&ret_a, remove_at + 5, ticks, 660, -1, 0.005);
    track_check(&ret_c, 5, ticks - remove_at, 440, 0.95, 2);
    track_check(&ret_c, 5, ticks - remove_at, 880, -1, 0.005);
    /* fill the stage: 16 inputs at most */
    for (int i = 2; i < MIXER_MAX_INPUTS; i++)
        ASSERT_EQ_INT(mixer_input_add(m), i);
    ASSERT_EQ_INT(mixer_input_add(m), -1);
    track_free(&ret_a);
    track_free(&ret_c);
    sender_free(&a);
    sender_free(&b);
    sender_free(&c);
    mixer_free(m);
}

TEST(invalid_packets_counted_not_fatal)
{
    struct mixer *m = mixer_new(48000);
    struct sender a;
    sender_init(&a, 440, 0.3, 1);
    int ia = mixer_input_add(m);
    static const unsigned char code3_zero[] = {0xfb, 0x00};      /* code 3, 0 frames */
    static const unsigned char code3_long[] = {0xfb, 0x30};      /* 48 x 20 ms > 120 ms */
    static const unsigned char code1_odd[] = {0xf9, 1, 2, 3};    /* two CBR frames, odd bytes */
    static const unsigned char code2_over[] = {0xfa, 200, 1, 2}; /* first frame past the end */
    static const struct bad_packet {
        const unsigned char *p;
        size_t len;
    } bad[] = {{code3_zero, 2}, {code3_long, 2}, {code1_odd, 4}, {code2_over, 4}, {code1_odd, 0}};
    int nbad = (int)(sizeof(bad) / sizeof(bad[0]));
    for (int t = 0; t < 30; t++) {
        sender_push(m, ia, &a, FRAME);
        const struct bad_packet *b = &bad[t % nbad];
        if (t < 2 * nbad)
            ASSERT_EQ_INT(mixer_input_push_opus(m, ia, b->p, b->len), -1);
        int len;
        mixer_tick(m, &len);
        ASSERT(len > 0);
        if (t >= 2)
            ASSERT(share_f32(mixer_programme_pcm(m), FRAME, 440) > 0.98);
    }
    /* bad ids are refused and not counted as bad packets */
    unsigned char pkt[4000];
    int plen = sender_packet(&a, FRAME, pkt);
    ASSERT_EQ_INT(mixer_input_push_opus(m, -1, pkt, (size_t)plen), -1);
    ASSERT_EQ_INT(mixer_input_push_opus(m, 7, pkt, (size_t)plen), -1);
    ASSERT_EQ_INT(mixer_input_push_opus(m, MIXER_MAX_INPUTS, pkt, (size_t)plen), -1);
    ASSERT_EQ_INT(mixer_input_push_pcm(m, ia, NULL, MIXER_MAX_PUSH + 1), -1);
    ASSERT_EQ_INT(mixer_input_push_pcm(m, 9, NULL, 0), -1);
    struct mixer_stats st = stats(m);
    ASSERT_EQ_UINT(st.bad_packets, 2 * nbad);
    ASSERT_EQ_UINT(st.plc_frames, 0);
    /* the other calls ignore ids not in use */
    int rlen = 99;
    ASSERT(mixer_return_packet(m, 7, &rlen) == NULL);
    ASSERT_EQ_INT(rlen, 0);
    ASSERT_EQ_INT(mixer_input_talking(m, -1), 0);
    ASSERT_EQ_INT(mixer_input_queued(m, 7), -1);
    mixer_input_set_muted(m, -1, 1);
    mixer_input_remove(m, 7);
    sender_free(&a);
    mixer_free(m);
}

TEST(fifo_cap_drops_oldest)
{
    struct mixer *m = mixer_new(48000);
    struct sender a;
    sender_init(&a, 440, 0.3, 1);
    int ia = mixer_input_add(m);
    for (int i = 0; i < 25; i++) /* 500 ms at once */
        sender_push(m, ia, &a, FRAME);
    ASSERT_EQ_INT(mixer_input_queued(m, ia), MIXER_FIFO_CAP);
    ASSERT_EQ_UINT(stats(m).dropped_samples, 25 * FRAME - MIXER_FIFO_CAP);
    /* the sender keeps going in real time: the queue (latency) stays at the cap, no more */
    int len;
    mixer_tick(m, &len);
    for (int t = 0; t < 20; t++) {
        sender_push(m, ia, &a, FRAME);
        mixer_tick(m, &len);
        ASSERT_EQ_INT(mixer_input_queued(m, ia), MIXER_FIFO_CAP - FRAME);
    }
    /* a sender running fast (two frames per tick) is held at the cap by drops */
    for (int t = 0; t < 20; t++) {
        sender_push(m, ia, &a, FRAME);
        sender_push(m, ia, &a, FRAME);
        mixer_tick(m, &len);
        ASSERT_EQ_INT(mixer_input_queued(m, ia), MIXER_FIFO_CAP - FRAME);
        ASSERT(share_f32(mixer_programme_pcm(m), FRAME, 440) > 0.98);
    }
    ASSERT_EQ_UINT(stats(m).dropped_samples, 25 * FRAME - MIXER_FIFO_CAP + 20 * FRAME);
    ASSERT_EQ_UINT(stats(m).trimmed_samples, 0); /* a talker's audio is never trimmed */
    sender_free(&a);
    mixer_free(m);
}

TEST(excess_latency_trimmed_when_quiet)
{
    struct mixer *m = mixer_new(48000);
    int ia = mixer_input_add(m);
    /* a quiet input (-60 dBFS hum, below the talk threshold) that once sent 160 ms at once */
    struct sender hum;
    sender_init(&hum, 100, 0.001, 1);
    int16_t pcm[FRAME];
    for (int i = 0; i < 8; i++) {
        sender_pcm(&hum, pcm, FRAME);
        ASSERT_EQ_INT(mixer_input_push_pcm(m, ia, pcm, FRAME), 0);
    }
    int t;
    for (t = 0; t < 150; t++) {
        sender_pcm(&hum, pcm, FRAME);
        ASSERT_EQ_INT(mixer_input_push_pcm(m, ia, pcm, FRAME), 0);
        int len;
        mixer_tick(m, &len);
        ASSERT_EQ_INT(mixer_input_talking(m, ia), 0);
        if (mixer_input_queued(m, ia) == FRAME)
            break;
    }
    /* cut after the first full second of a steady excess */
    ASSERT(t < 2 * 50);
    ASSERT_EQ_UINT(stats(m).trimmed_samples, 7 * FRAME);
    ASSERT_EQ_UINT(stats(m).plc_frames, 0);
    sender_free(&hum);
    mixer_free(m);
}

TEST(stereo_and_any_packet_duration)
{
    struct mixer *m = mixer_new(48000);
    struct sender s60, s2_5, s120;
    struct track prog;
    sender_init(&s60, 440, 0.2, 2);  /* stereo, 60 ms packets */
    sender_init(&s2_5, 660, 0.2, 1); /* 2.5 ms packets */
    sender_init(&s120, 990, 0.2, 1); /* 120 ms packets */
    track_init(&prog);
    int i60 = mixer_input_add(m), i2_5 = mixer_input_add(m), i120 = mixer_input_add(m);
    int ticks = 60;
    for (int t = 0; t < ticks; t++) {
        if (t % 3 == 0)
            sender_push(m, i60, &s60, 3 * FRAME);
        for (int k = 0; k < 8; k++)
            sender_push(m, i2_5, &s2_5, 120);
        if (t % 6 == 0)
            sender_push(m, i120, &s120, 6 * FRAME);
        int len;
        const unsigned char *p = mixer_tick(m, &len);
        track_add(&prog, p, len);
    }
    track_check(&prog, SKIP, ticks, 440, 0.2, 1);
    track_check(&prog, SKIP, ticks, 660, 0.2, 1);
    track_check(&prog, SKIP, ticks, 990, 0.2, 1);
    ASSERT_EQ_UINT(stats(m).plc_frames, 0);
    ASSERT_EQ_UINT(stats(m).bad_packets, 0);
    track_free(&prog);
    sender_free(&s60);
    sender_free(&s2_5);
    sender_free(&s120);
    mixer_free(m);
}

TEST(pcm_input_odd_chunks_and_underrun)
{
    struct mixer *m = mixer_new(48000);
    struct sender s;
    sender_init(&s, 440, 0.3, 1);
    int id = mixer_input_add(m);
    int pushed = 0, stop_at = 40;
    for (int t = 0; t < 60; t++) {
        while (t < stop_at && pushed < (t + 1) * FRAME) { /* 333-sample chunks */
            int16_t pcm[333];
            sender_pcm(&s, pcm, 333);
            ASSERT_EQ_INT(mixer_input_push_pcm(m, id, pcm, 333), 0);
            pushed += 333;
        }
        int len;
        mixer_tick(m, &len);
        const float *out = mixer_programme_pcm(m);
        if (t >= 2 && t < stop_at)
            ASSERT(share_f32(out, FRAME, 440) > 0.98);
        if (t >= stop_at + 2) /* no concealment for PCM: silence */
            ASSERT(rms_f32(out, FRAME) == 0.0);
    }
    ASSERT_EQ_UINT(stats(m).plc_frames, 0);
    ASSERT_EQ_INT(mixer_input_queued(m, id), 0);
    sender_free(&s);
    mixer_free(m);
}

/* Three PCM inputs: L is loud (-37 dBFS RMS) for 20 ticks then stops; Q is quiet speech level
 * (-53 dBFS: under the talk threshold, over the gate); H is a hum at -66 dBFS (under the gate). */
TEST(gate_and_talk_thresholds)
{
    struct mixer *m = mixer_new(48000);
    struct sender loud, quiet, hum;
    sender_init(&loud, 700, 0.02, 1);
    sender_init(&quiet, 300, 0.003, 1);
    sender_init(&hum, 500, 0.0007, 1);
    int il = mixer_input_add(m), iq = mixer_input_add(m), ih = mixer_input_add(m);
    int16_t pcm[FRAME];
    int last_loud = 20, ticks = 60, went_quiet = -1;
    for (int t = 0; t < ticks; t++) {
        if (t <= last_loud) {
            sender_pcm(&loud, pcm, FRAME);
            mixer_input_push_pcm(m, il, pcm, FRAME);
        }
        sender_pcm(&quiet, pcm, FRAME);
        mixer_input_push_pcm(m, iq, pcm, FRAME);
        sender_pcm(&hum, pcm, FRAME);
        mixer_input_push_pcm(m, ih, pcm, FRAME);
        int len, rlen;
        const unsigned char *p = mixer_tick(m, &len);
        const float *out = mixer_programme_pcm(m);
        /* H: left out of the mix, so the programme is its exact mix-minus */
        ASSERT_EQ_INT(mixer_input_talking(m, ih), 0);
        ASSERT(mixer_return_packet(m, ih, &rlen) == p);
        ASSERT(share_f32(out, FRAME, 500) < 1e-4);
        /* Q: mixed (it has its own return) but not talking */
        ASSERT_EQ_INT(mixer_input_talking(m, iq), 0);
        if (t >= 1)
            ASSERT(mixer_return_packet(m, iq, &rlen) != p);
        if (t > last_loud + 1)
            ASSERT(share_f32(out, FRAME, 300) > 0.99);
        /* L: talking while loud and for the hold after its last frame (played at last + 1) */
        if (t >= 1 && t <= last_loud + 1)
            ASSERT_EQ_INT(mixer_input_talking(m, il), 1);
        if (t > last_loud + 1)
            ASSERT(mixer_return_packet(m, il, &rlen) == p); /* nothing to play: not mixed */
        if (went_quiet < 0 && t > last_loud && !mixer_input_talking(m, il))
            went_quiet = t;
    }
    ASSERT_EQ_INT(went_quiet, last_loud + 1 + MIXER_HOLD);
    sender_free(&loud);
    sender_free(&quiet);
    sender_free(&hum);
    mixer_free(m);
}

/* A talker who pauses for 100 ms between words stays mixed, on its own return stream, through
 * the pause; 300 ms after its last sound it is left out and gets the programme. */
TEST(gate_hold_bridges_pauses)
{
    struct mixer *m = mixer_new(48000);
    struct sender talk, other;
    sender_init(&talk, 440, 0.1, 1);
    sender_init(&other, 660, 0.1, 1);
    int it = mixer_input_add(m), io = mixer_input_add(m);
    int16_t pcm[FRAME];
    for (int t = 0; t < 60; t++) {
        /* frames 0-9 speech, 10-14 digital silence, 15-24 speech, then silence */
        int speech = t < 10 || (t >= 15 && t < 25);
        sender_pcm(&talk, pcm, FRAME);
        if (!speech)
            memset(pcm, 0, sizeof(pcm));
        mixer_input_push_pcm(m, it, pcm, FRAME);
        sender_pcm(&other, pcm, FRAME);
        mixer_input_push_pcm(m, io, pcm, FRAME);
        int len, rlen;
        const unsigned char *p = mixer_tick(m, &len);
        const unsigned char *r = mixer_return_packet(m, it, &rlen);
        /* tick t plays frame t - 1: the last sound (frame 24) at tick 25, then 15 ticks of hold */
        if (t >= 1 && t < 25 + MIXER_HOLD)
            ASSERT(r != p);
        else
            ASSERT(r == p);
    }
    sender_free(&talk);
    sender_free(&other);
    mixer_free(m);
}

TEST(empty_mixer_ticks_silence_and_times_itself)
{
    struct mixer *m = mixer_new(48000);
    struct track prog;
    track_init(&prog);
    int rlen = 99;
    int id = mixer_input_add(m);
    ASSERT(mixer_return_packet(m, id, &rlen) != NULL);
    ASSERT_EQ_INT(rlen, 0); /* before the first tick */
    for (int t = 0; t < 10; t++) {
        int len;
        const unsigned char *p = mixer_tick(m, &len);
        track_add(&prog, p, len);
        ASSERT(mixer_return_packet(m, id, &rlen) == p);
    }
    ASSERT(rms_i16(prog.pcm, prog.n) == 0.0);
    struct mixer_stats st = stats(m);
    ASSERT_EQ_UINT(st.ticks, 10);
    ASSERT_EQ_UINT(st.encodes, 10);
    ASSERT(st.last_tick_ns > 0 && st.max_tick_ns >= st.last_tick_ns);
    track_free(&prog);
    mixer_free(m);
    mixer_free(NULL);
}

int main(void)
{
    return RUN_TESTS();
}
