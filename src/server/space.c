/*
 * space: one live mount (see space.h for its life cycle).
 *
 * Ingest path, all in the main process and all per page, never per listener:
 *   source bytes -> ogg_demux (packets) -> ogg_mux (rostrum's pages) -> ring_publish
 * then, before the loop sleeps, space_flush() writes what is new to every listener.
 */
#include "server/space.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ogg/mux.h"
#include "util/log.h"

#define SPACE_RING_SLOTS 4096            /* pages: 13 min of 200 ms pages */
#define SPACE_RING_BYTES (4u << 20)      /* arena: minutes of audio at 48 kb/s */
#define SPACE_FILL_MS 20                 /* silence packet duration while in grace */
#define RECEIVING_WINDOW_MS 5000

struct space *space_find(struct server *srv, const char *mount)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->spaces)
    {
        struct space *sp = list_entry(n, struct space, node);
        if (strcmp(sp->mount, mount) == 0)
            return sp;
    }
    return NULL;
}

int space_burst_ms(const struct space *sp)
{
    return config_burst_ms(&sp->srv->cfg, sp->cfg);
}

int space_grace_ms(const struct space *sp)
{
    return config_grace_ms(&sp->srv->cfg, sp->cfg);
}

static int space_page_ms(const struct space *sp)
{
    return config_page_ms(&sp->srv->cfg, sp->cfg);
}

struct space *space_create(struct server *srv, const char *mount)
{
    struct space *sp = calloc(1, sizeof(*sp));
    if (!sp)
        abort();
    sp->srv = srv;
    snprintf(sp->mount, sizeof(sp->mount), "%s", mount);
    sp->cfg = config_space(&srv->cfg, mount);
    sp->ring = ring_create(SPACE_RING_SLOTS, SPACE_RING_BYTES);
    list_init(&sp->listeners);
    list_insert_tail(&srv->spaces, &sp->node);
    sp->stream_start_wall = time(NULL);
    log_info("space", "/%s created", sp->mount);
    return sp;
}

static void space_close_listeners(struct space *sp, enum close_reason why)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &sp->listeners)
    {
        listener_close(list_entry(n, struct conn, node), why);
    }
}

void space_end(struct space *sp, enum close_reason why)
{
    struct server *srv = sp->srv;
    log_info("space", "/%s ended (%u listeners closed)", sp->mount, sp->nlisteners);
    space_close_listeners(sp, why);
    if (sp->source) {
        struct conn *src = sp->source;
        space_source_detach(sp, "space ended");
        conn_close(src);
    }
    loop_timer_stop(&srv->loop, &sp->fill);
    list_unlink(&sp->node);
    ogg_mux_free(sp->mux);
    ring_destroy(sp->ring);
    buf_free(&sp->preamble);
    free(sp);
}

/* Copies a peer-supplied header value, dropping control bytes so it can go back out in a
 * header line and a log line unchanged. */
static void meta_copy(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (size_t i = 0; src[i] && o + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[o++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
    }
    dst[o] = '\0';
}

static void space_build_preamble(struct space *sp)
{
    struct buf *b = &sp->preamble;
    buf_free(b);
    const struct space_config *sc = sp->cfg;
    const char *name = sc && sc->display_name[0] ? sc->display_name : sp->meta.name;
    const char *desc = sc && sc->description[0] ? sc->description : sp->meta.description;
    buf_puts(b, "HTTP/1.0 200 OK\r\n"
                "Server: rostrum/0.1\r\n"
                "Content-Type: audio/ogg\r\n"
                "Cache-Control: no-cache, no-store\r\n"
                "Pragma: no-cache\r\n"
                "Expires: Mon, 26 Jul 1997 05:00:00 GMT\r\n"
                "Access-Control-Allow-Origin: *\r\n"
                "Access-Control-Allow-Headers: Origin, Accept, X-Requested-With, Content-Type, "
                "Icy-MetaData\r\n"
                "Access-Control-Expose-Headers: icy-name, icy-description, icy-genre, icy-url, "
                "icy-br\r\n"
                "icy-pub: 0\r\n");
    if (name[0])
        buf_printf(b, "icy-name: %s\r\n", name);
    if (desc[0])
        buf_printf(b, "icy-description: %s\r\n", desc);
    if (sp->meta.genre[0])
        buf_printf(b, "icy-genre: %s\r\n", sp->meta.genre);
    if (sp->meta.url[0])
        buf_printf(b, "icy-url: %s\r\n", sp->meta.url);
    if (sp->meta.bitrate[0])
        buf_printf(b, "icy-br: %s\r\n", sp->meta.bitrate);
    buf_puts(b, "Connection: close\r\n\r\n");
    sp->preamble_http_len = b->len;
    if (sp->mux) {
        size_t hlen;
        const unsigned char *h = ogg_mux_headers(sp->mux, &hlen);
        buf_append(b, h, hlen);
    }
    sp->preamble_gen++;
}

void space_source_attach(struct space *sp, struct conn *src, const struct space_meta *meta)
{
    sp->source = src;
    loop_timer_stop(&sp->srv->loop, &sp->fill);
    meta_copy(sp->meta.name, sizeof(sp->meta.name), meta->name);
    meta_copy(sp->meta.description, sizeof(sp->meta.description), meta->description);
    meta_copy(sp->meta.genre, sizeof(sp->meta.genre), meta->genre);
    meta_copy(sp->meta.url, sizeof(sp->meta.url), meta->url);
    meta_copy(sp->meta.bitrate, sizeof(sp->meta.bitrate), meta->bitrate);
    if (sp->mux)
        space_build_preamble(sp);
    sp->srv->st.sources_connected++;
    sp->srv->st.source_connects++;
}

static void space_publish_page(void *arg, const unsigned char *page, size_t len,
                               uint64_t granule, uint32_t seqno, int samples)
{
    struct space *sp = arg;
    (void)seqno;
    ring_publish(sp->ring, page, (uint32_t)len, (uint32_t)samples, granule,
                 sp->srv->loop.now_ms);
    sp->pages_published++;
    sp->srv->st.pages_published++;
    sp->dirty = 1;
}

/* Grace: every 20 ms, add silence so the listeners' timeline keeps pace with the clock. */
static void space_fill_cb(struct loop *loop, struct loop_timer *t)
{
    struct space *sp = (struct space *)((char *)t - offsetof(struct space, fill));
    int64_t elapsed = loop->now_ms - sp->gone_ms;
    if (elapsed >= space_grace_ms(sp)) {
        log_info("space", "/%s: no source for %d ms, ending", sp->mount, space_grace_ms(sp));
        space_end(sp, CLOSE_MOUNT_END);
        return;
    }
    if (sp->mux && sp->silence_len > 0) {
        uint64_t target = sp->gone_granule + (uint64_t)elapsed * 48;
        while (ogg_mux_granule(sp->mux) + 960 <= target)
            ogg_mux_packet(sp->mux, sp->silence, (size_t)sp->silence_len, 960,
                           space_publish_page, sp);
    }
    loop_timer_start(loop, &sp->fill, SPACE_FILL_MS, space_fill_cb);
}

void space_source_detach(struct space *sp, const char *why)
{
    if (!sp->source)
        return;
    log_info("space", "/%s: source %s left (%s); grace %d ms", sp->mount, sp->source->peer, why,
             space_grace_ms(sp));
    sp->source->src.space = NULL;
    sp->source = NULL;
    sp->srv->st.sources_connected--;
    sp->srv->st.source_drops++;
    sp->gone_ms = sp->srv->loop.now_ms;
    sp->gone_granule = sp->mux ? ogg_mux_granule(sp->mux) : 0;
    loop_timer_start(&sp->srv->loop, &sp->fill, SPACE_FILL_MS, space_fill_cb);
}

int space_on_head(struct space *sp, const struct opus_head_info *head)
{
    if (sp->mux && head->channels == sp->head.channels) {
        log_info("space", "/%s: new source stream continues the same Opus stream", sp->mount);
        return 0;
    }
    if (sp->mux) {
        log_warn("space", "/%s: source changed from %d to %d channels: restarting the stream",
                 sp->mount, sp->head.channels, head->channels);
        space_close_listeners(sp, CLOSE_RESTART);
        ogg_mux_free(sp->mux);
        ring_reset(sp->ring);
    }
    sp->head = *head;
    if (getrandom(&sp->serial, sizeof(sp->serial), 0) != sizeof(sp->serial))
        sp->serial = (uint32_t)time(NULL);
    const struct space_config *sc = sp->cfg;
    const char *title = sc && sc->display_name[0] ? sc->display_name
                        : sp->meta.name[0]        ? sp->meta.name
                                                  : NULL;
    sp->mux = ogg_mux_new(sp->serial, head, "rostrum 0.1", title, space_page_ms(sp));
    sp->silence_len = opus_silence_packet(head->channels, sp->silence, sizeof(sp->silence));
    sp->stream_start_wall = time(NULL);
    space_build_preamble(sp);
    log_info("space", "/%s: Opus stream, %d channel(s), serial %08x, pages of %d ms", sp->mount,
             head->channels, sp->serial, space_page_ms(sp));
    return 0;
}

void space_on_packet(struct space *sp, const unsigned char *pkt, size_t len, int samples)
{
    if (!sp->mux)
        return;
    ogg_mux_packet(sp->mux, pkt, len, samples, space_publish_page, sp);
}

int space_listenable(const struct space *sp)
{
    return sp->mux != NULL;
}

uint32_t space_receiving(struct space *sp)
{
    int64_t now = sp->srv->loop.now_ms;
    if (sp->receiving_at_ms && now - sp->receiving_at_ms < 1000)
        return sp->receiving_cached;
    uint32_t n = 0;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &sp->listeners)
    {
        struct conn *c = list_entry(it, struct conn, node);
        if (c->l.bytes > 0 && now - c->l.last_byte_ms < RECEIVING_WINDOW_MS)
            n++;
    }
    sp->receiving_cached = n;
    sp->receiving_at_ms = now;
    return n;
}

void space_flush(struct space *sp)
{
    if (!sp->dirty)
        return;
    sp->dirty = 0;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &sp->listeners)
    {
        struct conn *c = list_entry(it, struct conn, node);
        if (!c->l.blocked)
            listener_flush(c);
    }
}

void space_tick(struct space *sp)
{
    /* A listener whose socket has taken nothing for 3 x lag-ms is gone or hostile. */
    int64_t now = sp->srv->loop.now_ms;
    int64_t stuck = (int64_t)sp->srv->cfg.lag_ms * 3;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &sp->listeners)
    {
        struct conn *c = list_entry(it, struct conn, node);
        if (c->l.blocked && now - c->l.last_byte_ms > stuck)
            listener_close(c, CLOSE_STUCK);
    }
}
