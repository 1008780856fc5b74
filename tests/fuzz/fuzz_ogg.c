/*
 * fuzz_ogg: the source path end to end. Bytes a studio source could send go through
 * ogg_demux_feed in chunks; each Opus stream it finds feeds an ogg_mux, as the server does,
 * and every page the mux emits is checked against the stream invariants a player relies on
 * (sequence numbers continuous, granule = previous + page samples, page within bounds).
 *
 * The whole input is the stream, so any Ogg file is a seed; its first two bytes also pick the
 * chunk size and the page duration. The demuxer must never crash, leak or break its bounds; a
 * violated invariant traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ogg/demux.h"
#include "ogg/mux.h"

struct fuzz_ctx {
    struct ogg_mux *mux;
    uint32_t next_seqno;
    uint64_t granule;
    int packets;
    int page_ms;
};

static void on_page(void *arg, const unsigned char *page, size_t len, uint64_t granule,
                    uint32_t seqno, int samples)
{
    struct fuzz_ctx *c = arg;
    if (len < 27 || len > OGG_MUX_MAX_PAGE || memcmp(page, "OggS", 4) != 0)
        __builtin_trap();
    if (seqno != c->next_seqno || samples <= 0 || granule != c->granule + (uint64_t)samples)
        __builtin_trap();
    c->next_seqno++;
    c->granule = granule;
}

static int on_head(void *arg, const struct opus_head_info *head)
{
    struct fuzz_ctx *c = arg;
    if (head->channels < 1 || head->channels > 2)
        __builtin_trap();
    if (!c->mux) { /* the first stream sets up the output; later ones continue it */
        c->mux = ogg_mux_new(0x726f7374, head, NULL, "fuzz", c->page_ms);
        if (!c->mux)
            __builtin_trap();
        c->next_seqno = 2;
        c->granule = ogg_mux_granule(c->mux);
    }
    return 0;
}

static int on_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct fuzz_ctx *c = arg;
    if (!c->mux || len == 0 || len > OGG_DEMUX_MAX_PACKET || samples <= 0 || samples > 5760)
        __builtin_trap();
    ogg_mux_packet(c->mux, pkt, len, samples, on_page, c);
    if (++c->packets % 37 == 0)
        ogg_mux_set_page_ms(c->mux, 20 + c->packets % 300);
    /* stop now and then: the demuxer must resume where it stopped */
    return c->packets % 53 == 0 ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = 1 + (size_t)data[0] * 64;
    struct fuzz_ctx c = {.page_ms = 20 + data[1] * 4};
    struct ogg_demux *d = ogg_demux_new();
    const struct ogg_demux_cb cb = {on_head, on_packet};
    int rc = 0;
    for (size_t off = 0; off < size && rc >= 0; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        rc = ogg_demux_feed(d, data + off, n, &cb, &c);
        while (rc > 0) /* resume after a stop */
            rc = ogg_demux_feed(d, NULL, 0, &cb, &c);
    }
    if (rc < 0 && ogg_demux_error(d)[0] == '\0')
        __builtin_trap(); /* a failure always says why */
    struct ogg_demux_stats st;
    ogg_demux_stats(d, &st);
    if (st.packets != (uint64_t)c.packets)
        __builtin_trap();
    if (c.mux) {
        ogg_mux_flush(c.mux, on_page, &c);
        ogg_mux_free(c.mux);
    }
    ogg_demux_free(d);
    return 0;
}
