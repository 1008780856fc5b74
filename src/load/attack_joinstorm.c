/*
 * load/attack_joinstorm: "joinstorm", --count joins in all at --rate: GET, response head, first
 * whole CRC-valid audio page, close. Counts the success rate, refusals by status and the time
 * to first audio; --timeout-ms bounds each join from connect() on. With --timeline, the outcome
 * of the joins started in each second of the run (attack_second): what a legitimate client
 * sees, second by second, before, during and after another attack.
 */
#include "load/attack_int.h"

#define SLOW_AUDIO_US 1000000 /* a join slower than this to first audio is "slow" */

/* The second of the run <c> started in, or -1 outside the timeline. */
static int64_t second_of(const struct atk_worker *w, const struct atk_conn *c)
{
    int64_t s = (c->t_start - w->start_us) / 1000000;
    return s < 0 || s >= ATTACK_TIMELINE_MAX ? -1 : s;
}

static const void *joinstorm_chunk(struct atk_worker *w, struct atk_conn *c, uint32_t *len)
{
    *len = w->req_len;
    return w->req;
}

static int joinstorm_head_end(struct atk_worker *w, struct atk_conn *c)
{
    if (c->status != 200) {
        atk_conn_finish(w, c, END_DONE); /* refused: counted by its status */
        return -1;
    }
    return 0;
}

static int joinstorm_body(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n,
                          int64_t now)
{
    int64_t audio_us = atk_first_audio(w, c, p, n, now);
    if (!audio_us)
        return 0;
    w->res.joined++;
    int64_t s = second_of(w, c);
    if (s >= 0) {
        struct attack_second *t = &w->res.tl[s];
        if (audio_us > SLOW_AUDIO_US)
            t->slow++;
        uint32_t ms = (uint32_t)(audio_us / 1000);
        if (ms > t->max_audio_ms)
            t->max_audio_ms = ms;
    }
    atk_conn_finish(w, c, END_DONE);
    return -1;
}

/* Counts the end of <c> in its second: joined, failed (refused, closed, timed out) or still
 * joining when the run ended. */
static void joinstorm_finish(struct atk_worker *w, struct atk_conn *c, int how)
{
    if (how == END_RUN)
        w->res.unfinished++;
    int64_t s = second_of(w, c);
    if (s < 0)
        return;
    struct attack_second *t = &w->res.tl[s];
    t->started++;
    if (c->ogg.first_audio)
        t->joined++;
    else if (how == END_RUN)
        t->unfinished++;
    else
        t->failed++;
    if ((uint32_t)s + 1 > w->res.timeline_len)
        w->res.timeline_len = (uint32_t)s + 1;
}

const struct atk_mode atk_mode_joinstorm = {
    .timeout_start = 1,
    .chunk = joinstorm_chunk,
    .head_end = joinstorm_head_end,
    .body = joinstorm_body,
    .finish = joinstorm_finish,
};
