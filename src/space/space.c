/*
 * space: one live mount, main-process side (see space.h for its life cycle).
 *
 * Ingest path, all in the main process and all per page, never per listener:
 *   source bytes -> ogg_demux (packets) -> ogg_mux (rostrum's pages) -> ring_publish
 * then, before the loop sleeps, the audience processes are woken to write what is new.
 */
#include "space/space.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ogg/mux.h"
#include "util/buf.h"
#include "util/check.h"
#include "util/log.h"
#include "util/utf8.h"

#define SPACE_FILL_MS 20 /* silence packet duration while in grace */

struct space *space_find(struct spaces *host, const char *mount)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &host->list)
    {
        struct space *sp = list_entry(n, struct space, node);
        if (strcmp(sp->ss->mount, mount) == 0)
            return sp;
    }
    return NULL;
}

static int space_grace_ms(const struct space *sp)
{
    return config_grace_ms(sp->host->cfg, sp->cfg);
}

static int space_page_ms(const struct space *sp)
{
    return config_page_ms(sp->host->cfg, sp->cfg);
}

/* The stream's start on the wall clock, in seconds (status) and ms (HLS's clock). */
static void space_mark_start(struct shared_space *ss)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ss->stream_start_wall = ts.tv_sec;
    ss->stream_start_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct space *space_create(struct spaces *host, const char *mount)
{
    int slot = -1;
    for (int pass = 0; pass < 2 && slot < 0; pass++) {
        if (pass == 1 && !(host->reclaim && host->reclaim(host->reclaim_arg)))
            break;
        for (int i = 0; i < SHARED_MAX_SPACES && slot < 0; i++)
            if (host->sh->spaces[i].state == SLOT_FREE)
                slot = i;
    }
    if (slot < 0)
        return NULL;
    struct space *sp = calloc(1, sizeof(*sp));
    BUG_ON(!sp);
    sp->host = host;
    sp->slot = slot;
    sp->ss = &host->sh->spaces[slot];
    sp->ring = shared_ring(host->sh, slot);
    sp->cfg = config_space(host->cfg, mount);
    recording_init(&sp->rec);
    sp->record_want = config_record(host->cfg, sp->cfg);
    struct shared_space *ss = sp->ss;
    /* The slot still holds what its last space showed (ice-* meta, the preamble, the state
     * document): a new space starts clean. The generation counters stay, as readers in the
     * audience processes compare against them. */
    memset(&ss->meta, 0, sizeof(ss->meta));
    snprintf(ss->mount, sizeof(ss->mount), "%s", mount);
    space_mark_start(ss);
    ss->listener_peak = 0;
    ss->channels = 0;
    ss->record_state = RECORD_OFF;
    ss->source_connected = 0;
    shared_preamble_put(ss, NULL, 0, 0); /* empty generations, published as any other */
    shared_doc_put(ss, NULL, 0);
    ring_reset(sp->ring);
    __atomic_store_n(&ss->state, SLOT_WAITING, __ATOMIC_RELEASE);
    __atomic_add_fetch(&ss->gen, 1, __ATOMIC_RELEASE);
    list_insert_tail(&host->list, &sp->node);
    log_info("space", "/%s created (slot %d)", mount, slot);
    return sp;
}

void space_set_sink(struct space *sp, const struct space_sink *sink, void *arg)
{
    sp->sink = sink;
    sp->sink_arg = arg;
}

void space_end(struct space *sp, enum close_reason why)
{
    struct spaces *host = sp->host;
    (void)why;
    log_info("space", "/%s ended", sp->ss->mount);
    if (sp->source) {
        struct conn *src = sp->source;
        space_source_detach(sp, "space ended");
        conn_close(src);
    }
    loop_timer_stop(host->loop, &sp->fill);
    space_record_end(sp);
    if (sp->sink && sp->sink->free)
        sp->sink->free(sp->sink_arg);
    shared_doc_put(sp->ss, NULL, 0);
    /* The audience processes see the new generation and close the listeners. */
    __atomic_store_n(&sp->ss->state, SLOT_FREE, __ATOMIC_RELEASE);
    __atomic_add_fetch(&sp->ss->gen, 1, __ATOMIC_RELEASE);
    host->published = 1;
    list_unlink(&sp->node);
    ogg_mux_free(sp->mux);
    free(sp->relay_hdr);
    free(sp);
}

/* Copies a peer-supplied header value as valid UTF-8 with control characters made spaces, so
 * it can go back out in a header line, JSON (status, the stage's pages) and OpusTags. */
static void meta_copy(char *dst, size_t cap, const char *src)
{
    utf8_sanitize(dst, cap, src, strlen(src), UTF8_NO_CONTROLS);
}

void space_http_head(struct buf *b, const struct space_meta *m, const char *content_type,
                     const char *bitrate)
{
    buf_printf(b, "HTTP/1.0 200 OK\r\n"
                  "Server: rostrum/0.1\r\n"
                  "Content-Type: %s\r\n"
                  "Cache-Control: no-cache, no-store\r\n"
                  "Pragma: no-cache\r\n"
                  "Expires: Mon, 26 Jul 1997 05:00:00 GMT\r\n"
                  "Access-Control-Allow-Origin: *\r\n"
                  "Access-Control-Allow-Headers: Origin, Accept, X-Requested-With, Content-Type, "
                  "Icy-MetaData\r\n"
                  "Access-Control-Expose-Headers: icy-name, icy-description, icy-genre, icy-url, "
                  "icy-br, X-Rostrum-Seq, X-Rostrum-Gap\r\n"
                  "icy-pub: 0\r\n",
               content_type);
    if (!bitrate)
        bitrate = m->bitrate;
    if (m->name[0])
        buf_printf(b, "icy-name: %s\r\n", m->name);
    if (m->description[0])
        buf_printf(b, "icy-description: %s\r\n", m->description);
    if (m->genre[0])
        buf_printf(b, "icy-genre: %s\r\n", m->genre);
    if (m->url[0])
        buf_printf(b, "icy-url: %s\r\n", m->url);
    if (bitrate[0])
        buf_printf(b, "icy-br: %s\r\n", bitrate);
    buf_puts(b, "Connection: close\r\n\r\n");
}

/* Writes the preamble (HTTP response head + Ogg header pages) into the idle half of the
 * slot's double buffer, then makes it current. */
static void space_build_preamble(struct space *sp)
{
    struct shared_space *ss = sp->ss;
    struct buf b = {0};
    space_http_head(&b, &ss->meta, "audio/ogg", NULL);
    size_t http_len = b.len;
    if (sp->mux) {
        size_t hlen;
        const unsigned char *h = ogg_mux_headers(sp->mux, &hlen);
        buf_append(&b, h, hlen);
    } else if (sp->relay_hdr) {
        buf_append(&b, sp->relay_hdr, sp->relay_hdr_len);
    }
    /* meta fields are bounded (under 1 KiB in all) and so are the Ogg headers */
    BUG_ON(b.len > SHARED_PREAMBLE_MAX);
    shared_preamble_put(ss, b.data, (uint32_t)b.len, (uint32_t)http_len);
    buf_free(&b);
}

/* Publishes what listeners see of the source's meta: its own, under the [space] section's
 * name and description when the config sets them. */
static void space_show_meta(struct space *sp)
{
    struct shared_space *ss = sp->ss;
    const struct space_config *sc = sp->cfg;
    struct space_meta shown = sp->meta;
    if (sc && sc->display_name[0])
        snprintf(shown.name, sizeof(shown.name), "%s", sc->display_name);
    if (sc && sc->description[0])
        snprintf(shown.description, sizeof(shown.description), "%s", sc->description);
    meta_copy(ss->meta.name, sizeof(ss->meta.name), shown.name);
    meta_copy(ss->meta.description, sizeof(ss->meta.description), shown.description);
    meta_copy(ss->meta.genre, sizeof(ss->meta.genre), shown.genre);
    meta_copy(ss->meta.url, sizeof(ss->meta.url), shown.url);
    meta_copy(ss->meta.bitrate, sizeof(ss->meta.bitrate), shown.bitrate);
}

void spaces_reconfigure(struct spaces *host)
{
    struct list_node *n;
    struct list_node *tmp;
    list_for_each_safe(n, tmp, &host->list)
    {
        struct space *sp = list_entry(n, struct space, node);
        /* sp->cfg points into the config, whose sections may have moved */
        sp->cfg = config_space(host->cfg, sp->ss->mount);
        /* a reload turns recording on (a failed one starts again, in a new file), never
         * off: a recording in progress ends whole with its space */
        if (config_record(host->cfg, sp->cfg) && sp->rec.fd < 0)
            space_set_record(sp, 1);
        if (!sp->source)
            continue;
        struct space_meta was;
        memcpy(was.name, sp->ss->meta.name, sizeof(was.name));
        memcpy(was.description, sp->ss->meta.description, sizeof(was.description));
        space_show_meta(sp);
        /* the icy-name/description headers of the next joiner; only when they changed, as a
         * listener caught mid-preamble by two changes must be closed */
        if (sp->mux && (memcmp(was.name, sp->ss->meta.name, sizeof(was.name)) != 0 ||
                        memcmp(was.description, sp->ss->meta.description,
                               sizeof(was.description)) != 0))
            space_build_preamble(sp);
    }
}

void space_source_attach(struct space *sp, struct conn *src, struct space_feed *feed,
                         const struct space_meta *meta)
{
    struct shared_space *ss = sp->ss;
    struct shared_main *st = &sp->host->sh->main;
    sp->source = src;
    sp->feed = feed;
    feed->space = sp;
    feed->input = sp->sink ? sp->sink->add(sp->sink_arg) : -1;
    sp->meta = *meta;
    space_show_meta(sp);
    ss->source_connected = 1;
    if (sp->mux)
        space_build_preamble(sp);
    st->sources_connected++;
    st->source_connects++;
}

static void space_publish_page(void *arg, const unsigned char *page, size_t len,
                               uint64_t granule, uint32_t seqno, int samples)
{
    struct space *sp = arg;
    (void)seqno;
    ring_publish(sp->ring, page, (uint32_t)len, (uint32_t)samples, granule,
                 sp->host->loop->now_ms);
    space_record_page(sp, page, len);
    sp->host->sh->main.pages_published++;
    sp->host->published = 1;
}

/* Grace: every 20 ms, add silence so the listeners' timeline keeps pace with the clock.
 * Silence is due from the arrival of the last source packet, not from the moment the drop
 * was noticed: a source sending 1 s pages (ffmpeg) that dies just before its next page has
 * left the listeners a second short already. The filler keeps running after a new source
 * connects, until that source's first packet arrives. */
static void space_fill_cb(struct loop *loop, struct loop_timer *t)
{
    struct space *sp = (struct space *)((char *)t - offsetof(struct space, fill));
    if (!sp->source && loop->now_ms - sp->gone_ms >= space_grace_ms(sp)) {
        log_info("space", "/%s: no source for %d ms, ending", sp->ss->mount, space_grace_ms(sp));
        space_end(sp, CLOSE_MOUNT_END);
        return;
    }
    if (sp->mux && sp->silence_len > 0) {
        uint64_t target =
            sp->fill_from_granule + (uint64_t)(loop->now_ms - sp->fill_from_ms) * 48;
        /* bounded per tick, whatever the clock did */
        for (int i = 0; i < 500 && ogg_mux_granule(sp->mux) + 960 <= target; i++)
            ogg_mux_packet(sp->mux, sp->silence, (size_t)sp->silence_len, 960,
                           space_publish_page, sp);
    }
    loop_timer_start(loop, &sp->fill, SPACE_FILL_MS, space_fill_cb);
}

/* Grace silence as heavy as the audio was (issue 11). A 3-byte silence packet makes a page
 * of 200 ms 68 bytes, 40 times fewer bytes per second than 48 kb/s audio: Chromium's <audio>
 * reads a live stream in chunks of bytes, not of seconds, so it stopped playing until enough
 * bytes came (the source's return), then played on from where it stopped, seconds behind
 * live. Padded to the source's bytes per 20 ms, silence keeps the byte rate and players
 * play through it. */
static void space_size_silence(struct space *sp)
{
    int bytes = (int)((sp->bytes_per_frame16 + 8) / 16);
    if (!sp->mux || bytes < 3)
        return; /* nothing measured: the small packet made at the stream's start stays */
    if (bytes > OPUS_SILENCE_MAX)
        bytes = OPUS_SILENCE_MAX;
    int n = opus_silence_packet(sp->head.channels, bytes, sp->silence, sizeof(sp->silence));
    if (n > 0)
        sp->silence_len = n;
}

void space_source_detach(struct space *sp, const char *why)
{
    if (!sp->source)
        return;
    log_info("space", "/%s: source %s left (%s); grace %d ms", sp->ss->mount, sp->source->peer,
             why, space_grace_ms(sp));
    if (sp->sink)
        sp->sink->remove(sp->sink_arg, sp->feed->input);
    sp->feed->input = -1;
    sp->feed->space = NULL;
    sp->feed = NULL;
    sp->source = NULL;
    sp->ss->source_connected = 0;
    sp->host->sh->main.sources_connected--;
    sp->host->sh->main.source_drops++;
    sp->gone_ms = sp->host->loop->now_ms;
    if (sp->sink)
        return; /* the sink (a stage's mixer) keeps the stream going */
    if (sp->fill.due_ms == 0) {
        sp->fill_from_ms = sp->last_packet_ms ? sp->last_packet_ms : sp->gone_ms;
        sp->fill_from_granule = sp->mux ? ogg_mux_granule(sp->mux) : 0;
        space_size_silence(sp);
    }
    loop_timer_start(sp->host->loop, &sp->fill, SPACE_FILL_MS, space_fill_cb);
}

int space_on_head(struct space *sp, const struct opus_head_info *head)
{
    struct shared_space *ss = sp->ss;
    if (sp->mux && head->channels == sp->head.channels) {
        log_info("space", "/%s: new source stream continues the same Opus stream", ss->mount);
        return 0;
    }
    if (sp->mux) {
        log_warn("space", "/%s: source changed from %d to %d channels: restarting the stream",
                 ss->mount, sp->head.channels, head->channels);
        space_record_end(sp); /* the new stream gets a recording of its own */
        ogg_mux_free(sp->mux);
        ring_reset(sp->ring);
        /* a new generation: the audience processes close this slot's listeners */
        __atomic_add_fetch(&ss->gen, 1, __ATOMIC_RELEASE);
        sp->host->published = 1;
    }
    /* a new stream owes nobody silence: its timeline starts with this source */
    loop_timer_stop(sp->host->loop, &sp->fill);
    sp->head = *head;
    if (getrandom(&sp->serial, sizeof(sp->serial), 0) != sizeof(sp->serial))
        sp->serial = (uint32_t)time(NULL);
    const char *title = ss->meta.name[0] ? ss->meta.name : NULL;
    sp->mux = ogg_mux_new(sp->serial, head, "rostrum 0.1", title, space_page_ms(sp));
    sp->silence_len = opus_silence_packet(head->channels, 0, sp->silence, sizeof(sp->silence));
    space_mark_start(ss);
    ss->channels = head->channels;
    ss->feed_serial = sp->serial;
    ss->feed_epoch = ss->gen;
    space_build_preamble(sp);
    space_record_begin(sp);
    __atomic_store_n(&ss->state, SLOT_LIVE, __ATOMIC_RELEASE);
    log_info("space", "/%s: Opus stream, %d channel(s), serial %08x, pages of %d ms", ss->mount,
             head->channels, sp->serial, space_page_ms(sp));
    return 0;
}

void space_on_packet(struct space *sp, const unsigned char *pkt, size_t len, int samples)
{
    if (!sp->mux)
        return;
    if (sp->fill.due_ms)
        loop_timer_stop(sp->host->loop, &sp->fill); /* the new source's audio takes over */
    sp->last_packet_ms = sp->host->loop->now_ms;
    if (samples > 0) { /* bytes per 20 ms, a moving average over about 16 packets */
        uint64_t per = (uint64_t)len * 960 * 16 / (uint64_t)samples;
        if (per > (uint64_t)OPUS_SILENCE_MAX * 16)
            per = (uint64_t)OPUS_SILENCE_MAX * 16;
        sp->bytes_per_frame16 = sp->bytes_per_frame16
                                    ? (uint32_t)((sp->bytes_per_frame16 * 15 + per) / 16)
                                    : (uint32_t)per;
    }
    ogg_mux_packet(sp->mux, pkt, len, samples, space_publish_page, sp);
}

/* ---- relay (issue 10) ------------------------------------------------------------------- */

void space_relay_begin(struct space *sp, const struct space_relay_stream *st, uint64_t start)
{
    struct shared_space *ss = sp->ss;
    if (sp->relay_hdr || sp->mux) {
        log_warn("space", "/%s: upstream stream changed (serial %08x epoch %u): restarting",
                 ss->mount, st->serial, st->epoch);
        /* a new generation first: the audience processes close this slot's listeners */
        __atomic_add_fetch(&ss->gen, 1, __ATOMIC_RELEASE);
        sp->host->published = 1;
    }
    /* a new stream: none of the old one's captions (the upstream sends its own next) */
    space_set_captions(sp, 0, 0, 0, "", 0, NULL, 0);
    ogg_mux_free(sp->mux);
    sp->mux = NULL;
    free(sp->relay_hdr);
    sp->relay_hdr = malloc(st->ogg_len);
    BUG_ON(!sp->relay_hdr);
    memcpy(sp->relay_hdr, st->ogg, st->ogg_len);
    sp->relay_hdr_len = st->ogg_len;
    ring_restart_at(sp->ring, start);
    sp->serial = st->serial;
    sp->meta = st->meta;
    space_show_meta(sp);
    ss->channels = st->channels;
    ss->feed_serial = st->serial;
    ss->feed_epoch = st->epoch;
    ss->source_connected = 1;
    space_mark_start(ss);
    space_build_preamble(sp);
    __atomic_store_n(&ss->state, SLOT_LIVE, __ATOMIC_RELEASE);
    log_info("space", "/%s: relayed stream, %d channel(s), serial %08x, epoch %u, from page %llu",
             ss->mount, st->channels, st->serial, st->epoch, (unsigned long long)start);
}

int space_relay_continues(const struct space *sp, uint32_t serial, uint32_t epoch, uint64_t seq)
{
    return sp->relay_hdr && sp->ss->feed_serial == serial && sp->ss->feed_epoch == epoch &&
           ring_head(sp->ring) == seq;
}

uint64_t space_relay_next(const struct space *sp)
{
    return ring_head(sp->ring);
}

int space_relay_page(struct space *sp, uint64_t seq, const unsigned char *page, uint32_t len,
                     uint32_t samples, uint64_t granule)
{
    if (!sp->relay_hdr)
        return -EINVAL;
    int rc = ring_publish_at(sp->ring, seq, page, len, samples, granule, sp->host->loop->now_ms);
    if (rc == 0) {
        sp->host->sh->main.pages_published++;
        sp->host->published = 1;
        sp->last_packet_ms = sp->host->loop->now_ms;
    }
    return rc;
}

void space_set_state(struct space *sp, const char *json, size_t len)
{
    struct shared_space *ss = sp->ss;
    if (len > SHARED_STATE_MAX) {
        /* stage_state_json bounds it; never publish a cut document */
        LOG_RATELIMITED(LOG_ERROR, "space", "/%s: state document of %zu bytes over %d: not served",
                        ss->mount, len, SHARED_STATE_MAX);
        len = 0;
    }
    shared_doc_put(ss, json, (uint32_t)len);
}

void space_set_captions(struct space *sp, uint8_t on, uint32_t epoch, int64_t final_ms,
                        const char *lang, size_t lang_len, const void *list, size_t len)
{
    struct shared_space *ss = sp->ss;
    if (len > SHARED_CAPTIONS_MAX)
        len = 0;
    char tag[sizeof(ss->captions_lang)];
    snprintf(tag, sizeof(tag), "%.*s", (int)(lang_len < sizeof(tag) ? lang_len : 0), lang);
    if (strcmp(tag, ss->captions_lang) != 0) /* rarely: a reader may see it change once */
        memcpy(ss->captions_lang, tag, sizeof(tag));
    /* the list and its figures before <on>, which readers look at first */
    if (list || !on)
        shared_captions_put(ss, on ? list : NULL, on ? (uint32_t)len : 0);
    __atomic_store_n(&ss->captions_final_ms, final_ms, __ATOMIC_RELEASE);
    __atomic_store_n(&ss->captions_epoch, epoch, __ATOMIC_RELEASE);
    __atomic_store_n(&ss->captions_on, on, __ATOMIC_RELEASE);
}

void space_update_peak(struct space *sp)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < sp->host->sh->nworkers; w++)
        n += sp->host->sh->workers[w].conns[sp->slot];
    if (n > sp->ss->listener_peak)
        sp->ss->listener_peak = n;
}

int space_feed_head(struct space_feed *f, const struct opus_head_info *head)
{
    if (!f->space)
        return 1;
    if (f->space->sink)
        return 0; /* a mixer input: its own decoder follows the stream */
    return space_on_head(f->space, head) < 0 ? 1 : 0;
}

int space_feed_packet(struct space_feed *f, const unsigned char *pkt, size_t len, int samples)
{
    if (!f->space)
        return 1;
    if (f->space->sink)
        f->space->sink->packet(f->space->sink_arg, f->input, pkt, len);
    else
        space_on_packet(f->space, pkt, len, samples);
    return 0;
}

/* ---- upgrade ---------------------------------------------------------------------------- */

void space_save(struct space *sp, struct space_record *r)
{
    memset(r, 0, sizeof(*r));
    r->slot = sp->slot;
    r->serial = sp->serial;
    r->channels = sp->head.channels;
    r->pre_skip = sp->head.pre_skip;
    r->input_rate = sp->head.input_rate;
    r->output_gain = sp->head.output_gain;
    if (sp->mux) {
        ogg_mux_flush(sp->mux, space_publish_page, sp);
        ogg_mux_save(sp->mux, &r->pos);
        r->has_mux = 1;
    }
    r->fill_on = sp->fill.due_ms != 0;
    r->gone_ms = sp->gone_ms;
    r->fill_from_ms = sp->fill_from_ms;
    r->fill_from_granule = sp->fill_from_granule;
    r->last_packet_ms = sp->last_packet_ms;
    r->meta = sp->meta;
}

struct space *space_restore(struct spaces *host, const struct space_record *r)
{
    if (r->slot < 0 || r->slot >= SHARED_MAX_SPACES ||
        host->sh->spaces[r->slot].state == SLOT_FREE)
        return NULL;
    struct space *sp = calloc(1, sizeof(*sp));
    BUG_ON(!sp);
    sp->host = host;
    sp->slot = r->slot;
    sp->ss = &host->sh->spaces[r->slot];
    sp->ring = shared_ring(host->sh, r->slot);
    sp->cfg = config_space(host->cfg, sp->ss->mount);
    space_record_resume(sp);
    sp->serial = r->serial;
    sp->head = (struct opus_head_info){r->channels, r->pre_skip, r->input_rate, r->output_gain};
    sp->meta = r->meta;
    if (r->has_mux) {
        /* the same headers as before (same serial, head and title), then the same stream */
        const char *title = sp->ss->meta.name[0] ? sp->ss->meta.name : NULL;
        sp->mux = ogg_mux_new(sp->serial, &sp->head, "rostrum 0.1", title, space_page_ms(sp));
        if (!sp->mux) {
            free(sp);
            return NULL;
        }
        ogg_mux_restore(sp->mux, &r->pos);
        sp->silence_len =
            opus_silence_packet(sp->head.channels, 0, sp->silence, sizeof(sp->silence));
    }
    sp->gone_ms = r->gone_ms;
    sp->fill_from_ms = r->fill_from_ms;
    sp->fill_from_granule = r->fill_from_granule;
    sp->last_packet_ms = r->last_packet_ms;
    if (r->fill_on)
        loop_timer_start(host->loop, &sp->fill, SPACE_FILL_MS, space_fill_cb);
    list_insert_tail(&host->list, &sp->node);
    return sp;
}

void space_source_reattach(struct space *sp, struct conn *src, struct space_feed *feed)
{
    sp->source = src;
    sp->feed = feed;
    feed->space = sp;
    feed->input = sp->sink ? sp->sink->add(sp->sink_arg) : -1;
}
