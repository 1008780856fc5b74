/*
 * transcode: the renditions' slots and encoders (see transcode.h for the contract).
 *
 * Everything is driven from the shared table, not from hooks in the spaces: every
 * TRANSCODE_TICK_MS the upkeep looks at each live space and each rendition slot, and
 *
 *   live space, kind on, no rendition, free slots > reserve  --> rendition slot made (LIVE,
 *                                                                preamble = HTTP head, no pages)
 *   rendition, listeners (or aac-always)  --> encoder started at the source's burst point
 *   rendition, no listener for linger-ms  --> encoder stopped, ring emptied
 *   source ended or restarted (its gen), kind off or rate changed --> rendition slot freed
 *   free slots < reserve                  --> an idle rendition gives its slot back
 *
 * and pages published by the spaces are encoded at once (transcode_pump, before the audience is
 * woken), so a rendition's listener is at most a page behind the Ogg listener.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ogg/demux.h"
#include "space/space.h"
#include "transcode/transcode.h"
#include "util/check.h"
#include "util/log.h"

#define TRANSCODE_TICK_MS 100
#define PUMP_MAX_PAGES 32     /* source pages one rendition takes per pass */
#define START_CREDIT_MS 3000  /* audio an encoder may take at once: the burst and some jitter */
#define BEHIND_MAX_MS 6000    /* further behind its source than this: skip to the live edge */
#define RETRY_MS 1000         /* after an encoder error, before it starts again */

struct rendition {
    int slot, src, kind, kbps;
    uint32_t src_gen;
    struct shared_space *ss, *src_ss;
    struct ring *ring, *src_ring;
    struct space_meta shown; /* the source's meta its preamble was made from */
    /* the encoder, while it runs (codec != NULL) */
    struct rcodec *codec;
    struct ogg_demux *demux;
    int failed;            /* the current pass hit an error */
    uint64_t cursor;       /* next source page */
    int64_t next_pts;      /* timeline position of the next Opus packet */
    int64_t started_ms;    /* for the real-time bound */
    uint64_t taken;        /* samples taken since started_ms */
    int64_t wanted_ms;     /* last time it had a listener */
    int64_t retry_ms;      /* no start before then (after an error) */
    struct buf page;       /* frames of the page being made */
    uint32_t page_samples;
    int64_t page_end;
    int page_frames;
};

static int kind_kbps(const struct config *cfg, int kind)
{
    return kind == RENDITION_AAC ? cfg->aac_kbps : kind == RENDITION_MP3 ? cfg->mp3_kbps : 0;
}

static uint32_t slot_conns(const struct shared *sh, int slot)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < sh->nworkers; w++)
        n += __atomic_load_n(&sh->workers[w].conns[slot], __ATOMIC_RELAXED);
    return n;
}

static void rendition_preamble(struct rendition *r)
{
    struct buf b = {0};
    char br[16];
    snprintf(br, sizeof(br), "%d", r->kbps);
    r->shown = r->src_ss->meta;
    space_http_head(&b, &r->shown, rendition_content_type(r->kind), br);
    BUG_ON(b.len > SHARED_PREAMBLE_MAX);
    shared_preamble_put(r->ss, b.data, (uint32_t)b.len, (uint32_t)b.len);
    buf_free(&b);
}

/* ---- the encoder ---------------------------------------------------------------------- */

static void encoder_stop(struct transcode *t, struct rendition *r)
{
    if (!r->demux)
        return;
    rcodec_free(r->codec);
    ogg_demux_free(r->demux);
    r->codec = NULL;
    r->demux = NULL;
    buf_free(&r->page);
    r->page = (struct buf){0};
    t->sh->main.rendition_encoders--;
    __atomic_store_n(&r->ss->rendition_on, 0, __ATOMIC_RELEASE);
}

static int on_head(void *arg, const struct opus_head_info *head)
{
    struct rendition *r = arg;
    if (r->codec)
        return 0; /* the same stream (a restarted one changes the slot's generation) */
    char err[200];
    r->codec = rcodec_new(r->kind, head->channels, head->output_gain, r->kbps, err, sizeof(err));
    if (!r->codec) {
        LOG_RATELIMITED(LOG_ERROR, "transcode", "/%s: %s", r->ss->mount, err);
        r->failed = 1;
        return 1;
    }
    return 0;
}

static int on_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct rendition *r = arg;
    if (!r->codec)
        return 0; /* audio before any head: not ours to guess */
    int n = rcodec_packet(r->codec, pkt, len, r->next_pts, &r->page, &r->page_samples,
                          &r->page_end);
    r->next_pts += samples;
    if (n < 0) {
        r->failed = 1;
        return 1;
    }
    r->page_frames += n;
    return 0;
}

static const struct ogg_demux_cb demux_cb = {on_head, on_packet};

/* Starts the encoder of <r> at source page <from>: the source's Ogg header pages first, from
 * its preamble, so the demuxer and the decoder know the stream. Returns 0 or -1. */
static int encoder_start(struct transcode *t, struct rendition *r, uint64_t from)
{
    unsigned char *pre = malloc(SHARED_PREAMBLE_MAX);
    BUG_ON(!pre);
    uint32_t http_len = 0;
    int len = shared_dbuf_copy(&r->src_ss->preamble_hdr, &r->src_ss->preamble[0][0],
                               SHARED_PREAMBLE_MAX, pre, &http_len);
    r->demux = ogg_demux_new();
    t->sh->main.rendition_encoders++;
    __atomic_store_n(&r->ss->rendition_on, 1, __ATOMIC_RELEASE);
    t->sh->main.rendition_starts++;
    r->failed = 0;
    if (len > 0 && http_len < (uint32_t)len)
        ogg_demux_feed(r->demux, pre + http_len, (size_t)len - http_len, &demux_cb, r);
    free(pre);
    if (!r->codec) {
        if (!r->failed)
            LOG_RATELIMITED(LOG_ERROR, "transcode", "/%s: the source has no Opus head",
                            r->ss->mount);
        t->sh->main.rendition_errors++;
        encoder_stop(t, r);
        r->retry_ms = t->loop->now_ms + RETRY_MS;
        return -1;
    }
    r->cursor = from;
    r->started_ms = t->loop->now_ms;
    r->taken = 0;
    r->page = (struct buf){0};
    r->page_samples = 0;
    r->page_frames = 0;
    log_info("transcode", "/%s: encoder started (%s, %d kb/s, %d channel(s))", r->ss->mount,
             rendition_codec_name(r->kind), r->kbps, r->src_ss->channels);
    return 0;
}

/* Encodes the source pages <r> has not taken yet, within the real-time bound, and publishes
 * what they made as one page. */
static void rendition_pump(struct transcode *t, struct rendition *r)
{
    struct ring *src = r->src_ring;
    int64_t now = t->loop->now_ms;
    uint64_t head = ring_head(src);
    if (r->cursor < ring_tail(src) || r->cursor > head) {
        r->cursor = head; /* lapped (or the ring restarted): carry on at the live edge */
        t->sh->main.rendition_skips++;
    }
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    uint64_t allowed = (uint64_t)(now - r->started_ms + START_CREDIT_MS) * 48;
    for (int i = 0; i < PUMP_MAX_PAGES && r->cursor < head && !r->failed; i++) {
        struct ring_page pg;
        if (ring_page_get(src, r->cursor, &pg) < 0)
            break;
        if (r->taken + pg.samples > allowed) {
            /* faster than real time: a source never is for long, so this is a backlog */
            struct ring_page last;
            if (ring_page_get(src, head - 1, &last) == 0 && last.granule > pg.granule &&
                last.granule - pg.granule > (uint64_t)BEHIND_MAX_MS * 48) {
                r->cursor = head - 1;
                t->sh->main.rendition_skips++;
                LOG_RATELIMITED(LOG_WARN, "transcode", "/%s: encoder behind real time: "
                                "skipped to the live edge", r->ss->mount);
            }
            break;
        }
        r->next_pts = (int64_t)(pg.granule - pg.samples);
        r->taken += pg.samples;
        r->cursor++;
        ogg_demux_feed(r->demux, pg.data, pg.len, &demux_cb, r);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    t->sh->main.rendition_cpu_ns +=
        (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec));
    if (r->failed) {
        t->sh->main.rendition_errors++;
        LOG_RATELIMITED(LOG_ERROR, "transcode", "/%s: decoder or encoder error: restarting the "
                        "encoder in %d ms", r->ss->mount, RETRY_MS);
        encoder_stop(t, r);
        r->retry_ms = now + RETRY_MS;
        return;
    }
    if (r->page_frames == 0)
        return;
    ring_publish(r->ring, r->page.data, (uint32_t)r->page.len, r->page_samples,
                 (uint64_t)r->page_end, now);
    t->sh->main.rendition_frames += (uint64_t)r->page_frames;
    *t->published = 1;
    r->page.len = 0;
    r->page_samples = 0;
    r->page_frames = 0;
}

void transcode_pump(struct transcode *t)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (t->r[i] && t->r[i]->demux)
            rendition_pump(t, t->r[i]);
}

/* ---- the slots -------------------------------------------------------------------------- */

static struct rendition *rendition_new(struct transcode *t, int slot, int src, int kind, int kbps)
{
    struct rendition *r = calloc(1, sizeof(*r));
    BUG_ON(!r);
    r->slot = slot;
    r->src = src;
    r->kind = kind;
    r->kbps = kbps;
    r->ss = &t->sh->spaces[slot];
    r->src_ss = &t->sh->spaces[src];
    r->ring = shared_ring(t->sh, slot);
    r->src_ring = shared_ring(t->sh, src);
    r->src_gen = __atomic_load_n(&r->src_ss->gen, __ATOMIC_ACQUIRE);
    r->wanted_ms = t->loop->now_ms;
    t->r[slot] = r;
    t->sh->main.rendition_slots++;
    return r;
}

static void rendition_end(struct transcode *t, struct rendition *r, const char *why)
{
    struct shared_space *ss = r->ss;
    log_info("transcode", "/%s ended (%s)", ss->mount, why);
    encoder_stop(t, r);
    /* the audience processes see the new generation and close the listeners */
    __atomic_store_n(&ss->state, SLOT_FREE, __ATOMIC_RELEASE);
    __atomic_add_fetch(&ss->gen, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&ss->rendition_of, 0, __ATOMIC_RELEASE);
    *t->published = 1;
    t->r[r->slot] = NULL;
    t->sh->main.rendition_slots--;
    free(r);
}

/* Free slots now, and the free slot renditions take (the highest: spaces take the lowest). */
static int free_slots(const struct shared *sh, int *last)
{
    int n = 0;
    *last = -1;
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (__atomic_load_n(&sh->spaces[i].state, __ATOMIC_ACQUIRE) == SLOT_FREE) {
            n++;
            *last = i;
        }
    return n;
}

static int mount_taken(const struct shared *sh, const char *mount)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (sh->spaces[i].state != SLOT_FREE && strcmp(sh->spaces[i].mount, mount) == 0)
            return 1;
    return 0;
}

/* Makes the rendition <kind> of live space <src> in a free slot, if the reserve allows. */
static void rendition_make(struct transcode *t, int src, int kind, int kbps)
{
    struct shared *sh = t->sh;
    const struct shared_space *s = &sh->spaces[src];
    char mount[sizeof(s->mount)];
    int slot;
    if (s->channels < 1 || s->channels > 2 ||
        snprintf(mount, sizeof(mount), "%s%s", s->mount, rendition_suffix(kind)) >=
            (int)sizeof(mount) ||
        mount_taken(sh, mount))
        return; /* no rendition for it: the audience port answers 404 */
    if (free_slots(sh, &slot) <= t->cfg->rendition_reserve)
        return; /* the reserve is for spaces: the audience port answers 503 */
    struct rendition *r = rendition_new(t, slot, src, kind, kbps);
    struct shared_space *ss = r->ss;
    memset(&ss->meta, 0, sizeof(ss->meta));
    snprintf(ss->mount, sizeof(ss->mount), "%s", mount);
    ss->stream_start_wall = time(NULL);
    ss->listener_peak = 0;
    ss->channels = s->channels;
    ss->source_connected = 1;
    ss->feed_serial = ss->feed_epoch = 0;
    ss->stage_members = ss->stage_speakers = ss->stage_queued_bytes = 0;
    ss->rendition_kind = (uint32_t)kind;
    ss->rendition_src_gen = r->src_gen;
    ss->rendition_kbps = (uint32_t)kbps;
    ss->rendition_on = 0;
    __atomic_store_n(&ss->rendition_of, src + 1, __ATOMIC_RELEASE);
    rendition_preamble(r);
    ss->meta = r->shown;
    shared_doc_put(ss, NULL, 0);
    ring_reset(r->ring);
    __atomic_store_n(&ss->state, SLOT_LIVE, __ATOMIC_RELEASE);
    __atomic_add_fetch(&ss->gen, 1, __ATOMIC_RELEASE);
    *t->published = 1;
    log_info("transcode", "/%s created (slot %d, %s %d kb/s of slot %d)", mount, slot,
             rendition_codec_name(kind), kbps, src);
}

/* The upkeep of rendition <r>: ends it if its source is gone, starts or stops its encoder. */
static void rendition_upkeep(struct transcode *t, struct rendition *r)
{
    const struct shared_space *s = r->src_ss;
    int64_t now = t->loop->now_ms;
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_LIVE || shared_is_rendition(s) ||
        __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) != r->src_gen) {
        rendition_end(t, r, "its space ended or restarted");
        return;
    }
    if (kind_kbps(t->cfg, r->kind) != r->kbps) {
        rendition_end(t, r, "its bitrate changed");
        return;
    }
    if (memcmp(&s->meta, &r->shown, sizeof(r->shown)) != 0) {
        rendition_preamble(r); /* the next joiner's icy-* headers */
        r->ss->meta = r->shown;
    }
    r->ss->source_connected = s->source_connected; /* status: a space in its grace */
    uint32_t conns = slot_conns(t->sh, r->slot);
    if (conns > r->ss->listener_peak)
        r->ss->listener_peak = conns;
    if (conns > 0 || (r->kind == RENDITION_AAC && t->cfg->aac_always))
        r->wanted_ms = now;
    if (r->demux && now - r->wanted_ms > t->cfg->rendition_linger_ms) {
        log_info("transcode", "/%s: no listener for %d ms: encoder stopped", r->ss->mount,
                 t->cfg->rendition_linger_ms);
        encoder_stop(t, r);
        ring_reset(r->ring); /* the next listener gets no stale burst */
    } else if (!r->demux && r->wanted_ms == now && now >= r->retry_ms &&
               t->sh->main.rendition_encoders < (uint64_t)t->cfg->rendition_max_encoders) {
        /* a first listener: from the source's burst point, so players start at once */
        int burst = config_burst_ms(t->cfg, config_space(t->cfg, s->mount));
        if (burst > START_CREDIT_MS - 1000)
            burst = START_CREDIT_MS - 1000;
        /* a ring with pages (taken over from the binary before): on from the live edge, so
         * granules only grow and nobody hears audio twice */
        uint64_t from = ring_head(r->ring) > ring_tail(r->ring)
                            ? ring_head(r->src_ring)
                            : ring_burst_start(r->src_ring, (uint64_t)burst * 48);
        if (encoder_start(t, r, from) == 0)
            rendition_pump(t, r);
    }
}

static void transcode_tick(struct loop *loop, struct loop_timer *timer)
{
    struct transcode *t = (struct transcode *)((char *)timer - offsetof(struct transcode, timer));
    struct shared *sh = t->sh;
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (t->r[i])
            rendition_upkeep(t, t->r[i]);
    /* each live space's missing renditions */
    for (int src = 0; src < SHARED_MAX_SPACES; src++) {
        const struct shared_space *s = &sh->spaces[src];
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_LIVE || shared_is_rendition(s))
            continue;
        for (int kind = RENDITION_AAC; kind < RENDITION_KINDS; kind++) {
            int kbps = kind_kbps(t->cfg, kind);
            if (kbps > 0 && shared_rendition_slot(sh, src, kind) < 0)
                rendition_make(t, src, kind, kbps);
        }
    }
    /* spaces need slots: idle renditions give theirs back, one a tick */
    int last;
    if (free_slots(sh, &last) < t->cfg->rendition_reserve) {
        for (int i = 0; i < SHARED_MAX_SPACES; i++) {
            if (t->r[i] && !t->r[i]->demux && slot_conns(sh, i) == 0) {
                sh->main.rendition_evictions++;
                rendition_end(t, t->r[i], "its slot is needed by spaces");
                break;
            }
        }
    }
    transcode_pump(t);
    loop_timer_start(loop, timer, TRANSCODE_TICK_MS, transcode_tick);
}

int transcode_reclaim(void *arg)
{
    struct transcode *t = arg;
    struct rendition *best = NULL;
    uint32_t fewest = UINT32_MAX;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t n = t->r[i] ? slot_conns(t->sh, i) : UINT32_MAX;
        if (n < fewest || (n == fewest && best && best->demux && !t->r[i]->demux)) {
            best = t->r[i];
            fewest = n;
        }
    }
    if (!best)
        return 0;
    t->sh->main.rendition_evictions++;
    rendition_end(t, best, "a new space needs its slot");
    return 1;
}

void transcode_init(struct transcode *t)
{
    struct shared *sh = t->sh;
    sh->main.rendition_slots = 0;
    sh->main.rendition_encoders = 0;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct shared_space *ss = &sh->spaces[i];
        int32_t of = __atomic_load_n(&ss->rendition_of, __ATOMIC_ACQUIRE);
        if (ss->state != SLOT_LIVE || of == 0)
            continue;
        /* left by the binary before (an upgrade): its listeners stay; upkeep ends it if its
         * source did not come through, else its encoder starts at the live edge */
        if (of < 1 || of > SHARED_MAX_SPACES || ss->rendition_kind <= RENDITION_NONE ||
            ss->rendition_kind >= RENDITION_KINDS) {
            __atomic_store_n(&ss->rendition_of, 0, __ATOMIC_RELEASE);
            __atomic_store_n(&ss->state, SLOT_FREE, __ATOMIC_RELEASE);
            __atomic_add_fetch(&ss->gen, 1, __ATOMIC_RELEASE);
            continue;
        }
        struct rendition *r = rendition_new(t, i, of - 1, (int)ss->rendition_kind,
                                            (int)ss->rendition_kbps);
        r->src_gen = ss->rendition_src_gen;
        r->shown = ss->meta;
        __atomic_store_n(&ss->rendition_on, 0, __ATOMIC_RELEASE); /* its encoder starts anew */
        log_info("transcode", "/%s taken over (slot %d)", ss->mount, i);
    }
    loop_timer_start(t->loop, &t->timer, TRANSCODE_TICK_MS, transcode_tick);
}

void transcode_free(struct transcode *t)
{
    loop_timer_stop(t->loop, &t->timer);
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (t->r[i])
            rendition_end(t, t->r[i], "server stopping");
}
