/*
 * vod: a recording as an HLS VOD (issue 12, item 2): the same CMAF/fMP4 Opus the live HLS
 * serves (hls/fmp4.h), cut from the recording's pages instead of the ring.
 *
 *   GET /recordings/ID.m3u8          EXT-X-PLAYLIST-TYPE:VOD, segments of hls-segment-ms,
 *                                    EXT-X-ENDLIST (a recording that still grows: its pages
 *                                    so far, without EXT-X-ENDLIST, an EVENT playlist)
 *   GET /recordings/ID/init.mp4      the init segment, from the OpusHead
 *   GET /recordings/ID/N.m4s         segment N: the pages from second N x S to (N+1) x S
 *
 * Segment bounds come from the page index (record_index): a segment starts at the page that
 * holds its first second, so segments are whole pages, a little over or under S. Each
 * response is built whole (a segment is a few seconds of audio: bounded by VOD_SEG_MAX).
 */
#include "audience/audience.h"

#include <errno.h>
#include <fcntl.h>
#include <opus/opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hls/fmp4.h"
#include "hls/hls.h"
#include "ogg/demux.h"
#include "record/record.h"
#include "util/check.h"

#define VOD_SEG_MAX (2u << 20)        /* bytes of pages a segment may hold */
#define VOD_MAX_S (24 * 3600)         /* seconds a playlist reaches */
#define VOD_PAGE_PACKETS 128

struct vod {
    int fd;
    uint64_t size;
    uint64_t *off; /* byte offset of each second (owned) */
    long n;        /* seconds indexed */
    struct record_info in;
    int growing;
};

/* Opens recording <id> and indexes its first <max> seconds. */
static int vod_open(struct audience *a, const char *id, size_t len, struct vod *v, long max)
{
    char path[600];
    struct stat st;
    if (!record_id_valid(id, len))
        return -1;
    snprintf(path, sizeof(path), "%s/%.*s.ogg", a->cfg->record_dir, (int)len, id);
    v->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (v->fd < 0)
        return -1;
    if (fstat(v->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(v->fd);
        return -1;
    }
    v->size = (uint64_t)st.st_size;
    snprintf(path, sizeof(path), "%s/%.*s.live", a->cfg->record_dir, (int)len, id);
    v->growing = access(path, F_OK) == 0;
    v->off = malloc(sizeof(uint64_t) * (size_t)max);
    BUG_ON(!v->off);
    v->n = record_index(v->fd, v->size, v->off, max, &v->in);
    if (v->n < 0)
        v->n = 0;
    v->size = v->in.scanned; /* whole pages only */
    return 0;
}

static void vod_close(struct vod *v)
{
    close(v->fd);
    free(v->off);
}

static int seg_s(const struct audience *a)
{
    int s = a->cfg->hls_segment_ms / 1000;
    return s > 0 ? s : 2;
}

static void vod_playlist(struct audience *a, struct conn *c, struct vod *v, const char *id,
                         size_t len, int head_only)
{
    int S = seg_s(a);
    double total = v->in.last_granule > v->in.pre_skip
                       ? (double)(v->in.last_granule - v->in.pre_skip) / 48000 : 0;
    long nseg = (v->n + S - 1) / S;
    struct buf b = {0};
    buf_printf(&b, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n"
               "#EXT-X-PLAYLIST-TYPE:%s\n#EXT-X-INDEPENDENT-SEGMENTS\n"
               "#EXT-X-MAP:URI=\"%.*s/init.mp4\"\n",
               S + 1, v->growing ? "EVENT" : "VOD", (int)len, id);
    for (long k = 0; k < nseg; k++) {
        double d = k + 1 < nseg ? S : total - (double)k * S;
        if (d <= 0)
            d = 0.02;
        buf_printf(&b, "#EXTINF:%.3f,\n%.*s/%ld.m4s\n", d, (int)len, id, k);
    }
    if (!v->growing)
        buf_puts(&b, "#EXT-X-ENDLIST\n");
    conn_respond_doc(c, head_only, "application/vnd.apple.mpegurl", b.data, b.len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: no-cache");
    buf_free(&b);
}

static void vod_init(struct conn *c, struct vod *v, int head_only)
{
    unsigned char pg[300];
    ssize_t r = pread(v->fd, pg, sizeof(pg), 0);
    const unsigned char *pkt;
    size_t plen;
    struct opus_head_info h;
    char err[64];
    if (r < 27 || hls_ogg_first_packet(pg, (size_t)r, &pkt, &plen) < 0 ||
        opus_head_parse(pkt, plen, &h, err, sizeof(err)) < 0) {
        conn_error(c, 404, NULL, "The recording has no Opus head");
        return;
    }
    struct fmp4_track t = {.channels = h.channels, .rate = 48000, .pre_skip = h.pre_skip,
                           .input_rate = h.input_rate, .output_gain = h.output_gain};
    struct buf b = {0};
    fmp4_init(&b, &t);
    conn_respond_doc(c, head_only, "audio/mp4", b.data, b.len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: max-age=86400");
    buf_free(&b);
}

static void vod_segment(struct audience *a, struct conn *c, struct vod *v, uint64_t k,
                        int head_only)
{
    int S = seg_s(a);
    uint64_t s0 = k * (uint64_t)S, s1 = s0 + (uint64_t)S;
    if (s0 >= (uint64_t)v->n) {
        conn_error(c, 404, NULL, "No such segment");
        return;
    }
    uint64_t from = v->off[s0], to = s1 < (uint64_t)v->n ? v->off[s1] : v->size;
    if (to <= from || to - from > VOD_SEG_MAX) {
        conn_error(c, 404, NULL, "No such segment");
        return;
    }
    unsigned char *pg = malloc(to - from);
    BUG_ON(!pg);
    size_t got = 0, len = (size_t)(to - from);
    while (got < len) {
        ssize_t r = pread(v->fd, pg + got, len - got, (off_t)(from + got));
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    /* the packets of the pages: sizes and durations, payload gathered in order */
    size_t cap = len / 3 + VOD_PAGE_PACKETS;
    uint32_t *sizes = malloc(sizeof(uint32_t) * cap), *durs = malloc(sizeof(uint32_t) * cap);
    BUG_ON(!sizes || !durs);
    struct buf payload = {0};
    int n = 0;
    uint64_t base = 0;
    for (size_t at = 0; at < got;) {
        uint64_t g;
        long l = record_page_check(pg + at, got - at, &g);
        if (l <= 0)
            break;
        uint32_t off[VOD_PAGE_PACKETS], pl[VOD_PAGE_PACKETS];
        int m = hls_ogg_packets(pg + at, (size_t)l, off, pl, VOD_PAGE_PACKETS);
        uint64_t page_samples = 0;
        for (int i = 0; i < m && (size_t)n < cap; i++) {
            int d = opus_packet_get_nb_samples(pg + at + off[i], (opus_int32)pl[i], 48000);
            sizes[n] = pl[i];
            durs[n] = d > 0 ? (uint32_t)d : 0;
            page_samples += durs[n];
            buf_append(&payload, pg + at + off[i], pl[i]);
            n++;
        }
        if (at == 0) /* the first packet starts where this page's audio does */
            base = g > page_samples ? g - page_samples : 0;
        at += (size_t)l;
    }
    free(pg);
    if (n == 0) {
        free(sizes);
        free(durs);
        buf_free(&payload);
        conn_error(c, 404, NULL, "No such segment");
        return;
    }
    struct buf b = {0};
    fmp4_fragment_head(&b, (uint32_t)k + 1, base, sizes, durs, n);
    buf_append(&b, payload.data, payload.len);
    free(sizes);
    free(durs);
    buf_free(&payload);
    conn_respond_doc(c, head_only, "video/iso.segment", b.data, b.len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: no-cache");
    buf_free(&b);
}

int vod_route(struct audience *a, struct conn *c, const char *rest, int head_only)
{
    /* rest: "ID.m3u8", "ID/init.mp4" or "ID/N.m4s" */
    size_t len = strlen(rest);
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : len;
    int playlist = !slash && len > 5 && strcmp(rest + len - 5, ".m3u8") == 0;
    if (playlist)
        idlen = len - 5;
    else if (!slash)
        return 0;
    /* a segment needs the index up to its end only: the pread cost grows with its place,
     * not with the recording */
    long max = VOD_MAX_S;
    if (slash && slash[1] >= '0' && slash[1] <= '9') {
        long k = strtol(slash + 1, NULL, 10);
        if (k >= 0 && k < VOD_MAX_S / seg_s(a))
            max = (k + 1) * seg_s(a) + 1;
    } else if (slash) {
        max = 1; /* init.mp4: the header pages */
    }
    struct vod v;
    if (vod_open(a, rest, idlen, &v, max) < 0) {
        conn_error(c, 404, NULL, "No such recording");
        return 1;
    }
    if (playlist) {
        vod_playlist(a, c, &v, rest, idlen, head_only);
    } else if (strcmp(slash, "/init.mp4") == 0) {
        vod_init(c, &v, head_only);
    } else {
        const char *p = slash + 1;
        uint64_t k = 0;
        size_t i = 0;
        while (p[i] >= '0' && p[i] <= '9' && i < 9)
            k = k * 10 + (uint64_t)(p[i++] - '0');
        if (i == 0 || strcmp(p + i, ".m4s") != 0)
            conn_error(c, 404, NULL, "No such segment");
        else
            vod_segment(a, c, &v, k, head_only);
    }
    vod_close(&v);
    return 1;
}
