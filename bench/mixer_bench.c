/*
 * mixer_bench: what one stage costs per 20 ms frame. Two loads on one mixer each:
 *
 *   - 13 talkers: every input sends a tone (Opus, 20 ms), so the tick encodes the programme and
 *     13 mix-minus returns: the worst case of a full stage;
 *   - 1 talker and 12 silent inputs: the usual case, 2 encodes per tick.
 *
 * It prints, per frame, the CPU cost of the pushes (mixer_input_push_opus: the decodes) and of the
 * tick (mix, limiter, encodes), the share of one core a stage takes, and the tick's wall time as
 * the mixer's stats report it (mean and max: the max shows preemption on a busy machine).
 *
 *   gcc -O2 -std=gnu11 -D_GNU_SOURCE -Isrc -o build/mixer_bench bench/mixer_bench.c \
 *       src/mixer/mixer.c src/util/log.c -lopus -lm && build/mixer_bench [frames]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <opus/opus.h>

#include "mixer/mixer.h"

#define PKTS 50 /* distinct packets per input, replayed in a loop (1 s of tone) */

/* CPU time of this thread: what a tick costs whatever else the machine runs (wall time, which
 * the mixer's own stats measure, also counts preemption on a busy box). */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct packets {
    unsigned char data[PKTS][1500];
    int len[PKTS];
};

/* 1 s of a <freq> Hz tone at <amp>, as 20 ms Opus packets at 32 kb/s (a browser's voice). */
static void make_packets(struct packets *p, double freq, double amp)
{
    int err;
    OpusEncoder *e = opus_encoder_create(MIXER_RATE, 1, OPUS_APPLICATION_VOIP, &err);
    if (!e)
        abort();
    opus_encoder_ctl(e, OPUS_SET_BITRATE(32000));
    double phase = 0;
    for (int k = 0; k < PKTS; k++) {
        int16_t pcm[MIXER_FRAME];
        for (int i = 0; i < MIXER_FRAME; i++) {
            pcm[i] = (int16_t)lrint(amp * 32767 * sin(phase));
            phase = fmod(phase + 2 * M_PI * freq / MIXER_RATE, 2 * M_PI);
        }
        p->len[k] = opus_encode(e, pcm, MIXER_FRAME, p->data[k], sizeof(p->data[k]));
        if (p->len[k] <= 0)
            abort();
    }
    opus_encoder_destroy(e);
}

static void run(const char *name, int talkers, int inputs, int frames)
{
    static struct packets tone[13], silence;
    for (int i = 0; i < 13; i++)
        make_packets(&tone[i], 150 + 97 * i, 0.2);
    make_packets(&silence, 100, 0);

    struct mixer *m = mixer_new(48000);
    for (int i = 0; i < inputs; i++)
        mixer_input_add(m);
    int64_t push_ns = 0, tick_ns = 0, wall_ns = 0, wall_max = 0;
    int warm = 50;
    for (int t = 0; t < warm + frames; t++) {
        int64_t t0 = cpu_ns();
        for (int i = 0; i < inputs; i++) {
            const struct packets *p = i < talkers ? &tone[i] : &silence;
            mixer_input_push_opus(m, i, p->data[t % PKTS], (size_t)p->len[t % PKTS]);
        }
        int64_t t1 = cpu_ns();
        int len;
        mixer_tick(m, &len);
        int64_t t2 = cpu_ns();
        struct mixer_stats st;
        mixer_stats(m, &st);
        if (t < warm)
            continue;
        push_ns += t1 - t0;
        tick_ns += t2 - t1;
        wall_ns += st.last_tick_ns;
        wall_max = st.last_tick_ns > wall_max ? st.last_tick_ns : wall_max;
    }
    struct mixer_stats st;
    mixer_stats(m, &st);
    double push_us = push_ns / 1e3 / frames, tick_us = tick_ns / 1e3 / frames;
    printf("%-22s %4.1f encodes/tick; CPU per frame: decode %6.1f us, tick %6.1f us, "
           "%4.1f%% of a core; tick wall time (stats) mean %6.1f us, max %7.1f us\n",
           name, (double)st.encodes / (double)st.ticks, push_us, tick_us,
           (push_us + tick_us) / 200.0, wall_ns / 1e3 / frames, wall_max / 1e3);
    mixer_free(m);
}

int main(int argc, char **argv)
{
    int frames = argc > 1 ? atoi(argv[1]) : 1000;
    if (frames <= 0)
        frames = 1000;
    run("13 talkers", 13, 13, frames);
    run("1 talker + 12 silent", 1, 13, frames);
    return 0;
}
