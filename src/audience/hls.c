/*
 * audience/hls: HLS and LL-HLS of every live space (issue 11, item 2), a view of the page
 * ring computed in each audience process. No new shared memory and no state per stream:
 * a request reads the ring's pages, cuts them into parts and segments by the timeline of
 * hls/hls.h, and every process answers the same request with the same bytes, so caches in
 * front can take any worker's answer.
 *
 *   /<space>.m3u8                       multivariant: Opus (and AAC when its slot is live)
 *   /hls/<space>/o.m3u8[?_HLS_...]      media playlist (a.m3u8: AAC)
 *   /hls/<space>/<epoch>/oinit.mp4      init segment (ainit.mp4)
 *   /hls/<space>/<epoch>/o<msn>.m4s     segment: the concatenation of its parts
 *   /hls/<space>/<epoch>/o<msn>.<p>.m4s part
 *   /hls/<space>/c.m3u8                 live captions: WebVTT subtitles (issue 12), while the
 *   /hls/<space>/<epoch>/c<msn>.vtt     space is captioned
 *
 * <epoch> names the stream (its serial and slot generation): a space that restarts gets new
 * names, so no cache ever hands out a part of the stream before. The media playlist's own
 * URI does not change: its sequence numbers follow the wall clock (hls.h), so they go on
 * growing across a restart and a player polling it moves to the new stream's names.
 *
 * Blocking reloads (_HLS_msn/_HLS_part) and requests for the hinted next part are held
 * (parked) until the part is published: at most hls-max-blocked per process (503 past it,
 * counted), each at most 3 target durations (then 503: the source stopped). A request more
 * than 2 segments ahead is a 400 at once.
 */
#include <errno.h>
#include <opus/opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "audience/audience.h"
#include "captions/captions.h"
#include "hls/fmp4.h"
#include "hls/hls.h"
#include "http/request.h"
#include "ogg/demux.h"
#include "util/check.h"
#include "util/log.h"

#define HLS_MAX_SAMPLES 1024 /* packets in one part: 2 s of 2.5 ms Opus frames is 800 */
#define HLS_MAX_PAGE_PACKETS 256

enum hls_kind { HLS_MEDIA, HLS_INIT, HLS_SEGMENT, HLS_PART, HLS_VTT_MEDIA, HLS_VTT_SEGMENT };

/* One request, as parsed (and as kept while it waits). */
struct hls_req {
    uint16_t slot;
    uint8_t kind; /* enum hls_kind */
    uint8_t aac;
    uint8_t skip;
    uint8_t has_part;
    uint8_t head_only;
    uint8_t blocking; /* a playlist with _HLS_msn */
    uint32_t gen;     /* the Opus slot's generation when asked */
    uint32_t part;
    uint64_t msn;
    char epoch[24];
};

/* A held request (CONN_PRIV). */
struct hls_wait {
    struct hls_req rq;
    uint64_t need;      /* answerable once this many parts are complete (absolute) */
    int64_t deadline_ms;
};
CONN_PRIV_FITS(struct hls_wait);

/* What one request needs of a stream: its track and where its pages are on the timeline. */
struct hls_stream {
    struct ring *r;
    struct fmp4_track track;
    uint64_t base;  /* absolute sample of decoded position 0 */
    int pre_skip;   /* the Opus programme's (the AAC timeline is the same) */
    uint64_t tail, head;
    uint64_t first_abs, end_abs; /* the span of the ring's pages */
    uint32_t P;                  /* part samples */
    int pps;                     /* parts per segment */
    int target_s;
    char epoch[24];
};

/* Within one wake, the answers already built: every held request that waits for the same
 * part gets the same bytes, built once (a few hundred players parked on one part would
 * otherwise each cut the window's pages again). Keyed by what the answer depends on. */
#define HLS_MEMOS 8
struct hls_memo {
    int used;
    uint16_t slot;
    uint8_t aac, kind, skip;
    uint64_t k;    /* parts: the part; playlists: parts complete when it was built */
    int max_age;
    struct buf body;
};

static struct hls_memo *memo_find(struct hls_memo *m, const struct hls_req *rq, uint64_t k,
                                  uint64_t need)
{
    for (int i = 0; m && i < HLS_MEMOS; i++)
        if (m[i].used && m[i].slot == rq->slot && m[i].aac == rq->aac && m[i].kind == rq->kind &&
            m[i].skip == rq->skip && (rq->kind == HLS_MEDIA ? m[i].k >= need : m[i].k == k))
            return &m[i];
    return NULL;
}

static void memo_put(struct hls_memo *m, const struct hls_req *rq, uint64_t k, int max_age,
                     const struct buf *body)
{
    for (int i = 0; m && i < HLS_MEMOS; i++)
        if (!m[i].used) {
            m[i] = (struct hls_memo){1, rq->slot, rq->aac, rq->kind, rq->skip, k, max_age, {0}};
            buf_append(&m[i].body, body->data, body->len);
            return;
        }
}

/* Timing from the config: segments a whole number of parts, parts whole 20 ms frames. */
static void hls_timing(const struct config *cfg, uint32_t *P, int *pps, int *target_s)
{
    int part_ms = cfg->hls_part_ms / 20 * 20;
    if (part_ms < 100)
        part_ms = 100;
    int n = cfg->hls_segment_ms / part_ms;
    if (n < 1)
        n = 1;
    if (n > HLS_MAX_PARTS_PER_SEGMENT)
        n = HLS_MAX_PARTS_PER_SEGMENT;
    *P = (uint32_t)part_ms * 48;
    *pps = n;
    *target_s = (n * part_ms + 999) / 1000;
}

/* The live slot of <mount>, or -1. */
static int hls_find(struct audience *a, const char *mount)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        const struct shared_space *ss = &a->sh->spaces[i];
        if (__atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) == SLOT_LIVE &&
            strcmp(ss->mount, mount) == 0)
            return i;
    }
    return -1;
}

/* The slot of the AAC rendition of the space in <slot>, or -1: the one place that knows how
 * to find it. The transcoder (issue 11, item 5) publishes it as the extra mount
 * "<space>.aac": pages of whole ADTS frames, <samples> in 48 kHz units, <granule> on the Opus
 * programme's granule timeline. It encodes only while someone listens (or aac-always), so a
 * rendition counts here only while its last page is recent. */
static int hls_aac_slot(struct audience *a, int slot)
{
    int s = shared_rendition_slot(a->sh, slot, RENDITION_AAC);
    if (s < 0)
        return -1;
    struct ring *r = shared_ring(a->sh, s);
    uint64_t head = ring_head(r);
    struct ring_page p;
    if (head == 0 || ring_page_get(r, head - 1, &p) < 0 || a->loop->now_ms - p.time_ms > 3000)
        return -1;
    return s;
}

/* The packets of ring page <p>: offsets, lengths and durations (48 kHz). Returns the count,
 * or -1 if the page is not what the track carries. */
static int page_packets(const struct hls_stream *st, const struct ring_page *p, uint32_t *off,
                        uint32_t *len, uint32_t *dur)
{
    if (!st->track.aac) {
        int n = hls_ogg_packets(p->data, p->len, off, len, HLS_MAX_PAGE_PACKETS);
        for (int i = 0; i < n; i++) {
            int s = opus_packet_get_nb_samples(p->data + off[i], (opus_int32)len[i], 48000);
            dur[i] = s > 0 ? (uint32_t)s : 0;
        }
        return n;
    }
    int n = 0;
    for (uint32_t at = 0; at < p->len && n < HLS_MAX_PAGE_PACKETS;) {
        struct adts_info ai;
        if (adts_parse(p->data + at, p->len - at, &ai) < 0 || at + (uint32_t)ai.frame_len > p->len)
            return n > 0 ? n : -1;
        off[n] = at + (uint32_t)ai.header_len;
        len[n] = (uint32_t)(ai.frame_len - ai.header_len);
        dur[n] = (uint32_t)(1024 * ai.blocks);
        n++;
        at += (uint32_t)ai.frame_len;
    }
    return n;
}

/* The absolute sample at the end of page <p>. */
static uint64_t page_end_abs(const struct hls_stream *st, const struct ring_page *p)
{
    int64_t d = (int64_t)p->granule - st->pre_skip;
    return st->base + (uint64_t)(d > 0 ? d : 0);
}

/* Reads where the ring's pages are. Returns 0, or -EAGAIN (nothing whole yet). */
static int stream_span(struct hls_stream *st)
{
    st->tail = ring_tail(st->r);
    st->head = ring_head(st->r);
    struct ring_page p;
    while (st->tail < st->head && ring_page_get(st->r, st->tail, &p) < 0)
        st->tail++;
    if (st->tail >= st->head)
        return -EAGAIN;
    uint64_t end = page_end_abs(st, &p);
    st->first_abs = end > p.samples ? end - p.samples : 0;
    if (st->first_abs < st->base)
        st->first_abs = st->base;
    if (ring_page_get(st->r, st->head - 1, &p) < 0)
        return -EAGAIN;
    st->end_abs = page_end_abs(st, &p);
    return 0;
}

/* Opens the stream of <slot> (the Opus programme) or of its AAC rendition. Returns 0,
 * -ENOENT (not live, or restarted since <gen>), or -EAGAIN (not ready: no pages yet). */
static int stream_open(struct audience *a, int slot, uint32_t gen, int aac, struct hls_stream *st)
{
    memset(st, 0, sizeof(*st));
    const struct shared_space *ss = &a->sh->spaces[slot];
    if (__atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) != SLOT_LIVE ||
        __atomic_load_n(&ss->gen, __ATOMIC_ACQUIRE) != gen)
        return -ENOENT;
    hls_timing(a->cfg, &st->P, &st->pps, &st->target_s);
    /* the Opus programme's OpusHead, from the preamble (HTTP part, then the header pages) */
    uint32_t pgen = shared_preamble_gen(ss);
    struct shared_view v;
    if (shared_preamble_view(ss, pgen, &v) < 0 || v.len <= v.aux)
        return -EAGAIN;
    const unsigned char *pkt;
    size_t plen;
    struct opus_head_info head;
    char err[64];
    if (hls_ogg_first_packet(v.data + v.aux, v.len - v.aux, &pkt, &plen) < 0 ||
        opus_head_parse(pkt, plen, &head, err, sizeof(err)) < 0 || !shared_preamble_intact(ss, pgen))
        return -EAGAIN;
    st->pre_skip = head.pre_skip;
    st->base = (uint64_t)ss->stream_start_ms * 48;
    int s = slot;
    if (aac) {
        s = hls_aac_slot(a, slot);
        if (s < 0)
            return -ENOENT;
    }
    const struct shared_space *ts = &a->sh->spaces[s];
    snprintf(st->epoch, sizeof(st->epoch), "%08x-%u", ss->feed_serial,
             __atomic_load_n(&ts->gen, __ATOMIC_ACQUIRE));
    st->r = shared_ring(a->sh, s);
    int rc = stream_span(st);
    if (rc < 0)
        return rc;
    if (!aac) {
        st->track = (struct fmp4_track){.channels = head.channels, .rate = 48000,
                                        .pre_skip = head.pre_skip, .input_rate = head.input_rate,
                                        .output_gain = head.output_gain};
        return 0;
    }
    struct ring_page p;
    struct adts_info ai;
    if (ring_page_get(st->r, st->head - 1, &p) < 0 || adts_parse(p.data, p.len, &ai) < 0 ||
        ai.rate != 48000 || ai.channels > 2 || !ring_page_intact(st->r, st->head - 1))
        return -EAGAIN; /* rostrum's timeline is 48 kHz: an AAC rendition at another rate is
                           not one it can carry */
    st->track = (struct fmp4_track){.aac = 1, .channels = ai.channels, .rate = ai.rate,
                                    .asc = {ai.asc[0], ai.asc[1]}};
    return 0;
}

/* Calls <fn> for every packet whose first sample is in [a0, a1), in order. Returns 0, or
 * -EAGAIN if the pages were overwritten meanwhile (what <fn> was given is then torn). */
static int each_packet(const struct hls_stream *st, uint64_t a0, uint64_t a1,
                       void (*fn)(void *arg, uint64_t abs, uint32_t dur, const unsigned char *p,
                                  uint32_t len),
                       void *arg)
{
    /* the first page that ends after a0 (page ends grow with the sequence) */
    uint64_t lo = st->tail, hi = st->head;
    struct ring_page p;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (ring_page_get(st->r, mid, &p) < 0)
            return -EAGAIN;
        if (page_end_abs(st, &p) <= a0)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint64_t first = lo;
    uint32_t off[HLS_MAX_PAGE_PACKETS], len[HLS_MAX_PAGE_PACKETS], dur[HLS_MAX_PAGE_PACKETS];
    for (uint64_t seq = first; seq < st->head; seq++) {
        if (ring_page_get(st->r, seq, &p) < 0)
            return -EAGAIN;
        int n = page_packets(st, &p, off, len, dur);
        if (n < 0)
            continue;
        uint64_t total = 0;
        for (int i = 0; i < n; i++)
            total += dur[i];
        uint64_t end = page_end_abs(st, &p);
        uint64_t at = end > total ? end - total : 0;
        for (int i = 0; i < n; i++) {
            if (at >= a1)
                return ring_page_intact(st->r, first) ? 0 : -EAGAIN;
            if (at >= a0 && dur[i] > 0)
                fn(arg, at, dur[i], p.data + off[i], len[i]);
            at += dur[i];
        }
    }
    return ring_page_intact(st->r, first) ? 0 : -EAGAIN;
}

/* The oldest part served: whole in the ring (it starts at or after the oldest page), and in a
 * segment that starts at least a second after the stream did. Why the second: a stream's
 * clock starts at its start in whole seconds (up to a second early), and the stream before it
 * on the same space ended before that start; so its first segment is numbered past every
 * segment of the stream before, and media sequence numbers never go back over a restart.
 * A restarted space thus starts listing 1 to 3 s after its source. */
static uint64_t oldest_part(const struct hls_stream *st)
{
    uint64_t P = st->P, S = (uint64_t)st->pps, seg = P * S;
    uint64_t first_seg = (st->base + 48000 + seg - 1) / seg * S;
    uint64_t in_ring = (st->first_abs + P - 1) / P;
    return in_ring > first_seg ? in_ring : first_seg;
}

/* Parts [first, end) complete in the ring, and what a playlist lists: at most the window,
 * from a segment's first part. */
static void stream_parts(const struct hls_stream *st, uint64_t *first, uint64_t *end)
{
    uint64_t P = st->P, S = (uint64_t)st->pps;
    *end = st->end_abs / P;
    uint64_t oldest = oldest_part(st);
    uint64_t msn_cur = *end / S;
    uint64_t from = msn_cur > HLS_WINDOW_SEGMENTS ? (msn_cur - HLS_WINDOW_SEGMENTS) * S : 0;
    if (from < oldest)
        from = (oldest + S - 1) / S * S;
    *first = from;
}

struct dur_acc {
    uint64_t k0;
    uint32_t P;
    uint32_t *d;
    uint64_t n;
};

static void dur_add(void *arg, uint64_t abs, uint32_t dur, const unsigned char *p, uint32_t len)
{
    struct dur_acc *acc = arg;
    uint64_t k = abs / acc->P;
    (void)p, (void)len;
    if (k >= acc->k0 && k - acc->k0 < acc->n)
        acc->d[k - acc->k0] += dur;
}

struct frag_acc {
    struct buf payload;
    uint32_t sizes[HLS_MAX_SAMPLES], durs[HLS_MAX_SAMPLES];
    int n;
    uint64_t first_abs;
};

static void frag_add(void *arg, uint64_t abs, uint32_t dur, const unsigned char *p, uint32_t len)
{
    struct frag_acc *f = arg;
    if (f->n == HLS_MAX_SAMPLES)
        return;
    if (f->n == 0)
        f->first_abs = abs;
    f->sizes[f->n] = len;
    f->durs[f->n] = dur;
    f->n++;
    buf_append(&f->payload, p, len);
}

/* Appends the fragments of parts [k0, k1) to <out>. Returns 0 or -EAGAIN (torn). */
static int build_parts(const struct hls_stream *st, uint64_t k0, uint64_t k1, struct buf *out)
{
    struct frag_acc *f = calloc(1, sizeof(*f));
    BUG_ON(!f);
    int rc = 0;
    for (uint64_t k = k0; k < k1 && rc == 0; k++) {
        f->n = 0;
        f->payload.len = 0;
        rc = each_packet(st, k * st->P, (k + 1) * st->P, frag_add, f);
        if (rc == 0 && f->n > 0) {
            /* tfdt: decoded position; mfhd: the part's number (grows, never repeats) */
            fmp4_fragment_head(out, (uint32_t)(k + 1), f->first_abs - st->base, f->sizes,
                               f->durs, f->n);
            buf_append(out, f->payload.data, f->payload.len);
        }
    }
    buf_free(&f->payload);
    free(f);
    return rc;
}

/* An HTTP-date (RFC 9110 5.6.7) of now. */
static void http_date(char *out, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Answers 200 with <body> and the cache lifetime <max_age> (seconds). */
static void respond(struct conn *c, const char *type, const struct buf *body, int max_age,
                    int immutable)
{
    char date[40];
    http_date(date, sizeof(date));
    struct buf out = {0};
    buf_printf(&out,
               "HTTP/1.0 200 OK\r\nServer: rostrum/0.1\r\nContent-Type: %s\r\n"
               "Content-Length: %zu\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n"
               "Cache-Control: public, max-age=%d%s\r\nDate: %s\r\nLast-Modified: %s\r\n\r\n",
               type, body->len, max_age, immutable ? ", immutable" : "", date, date);
    buf_append(&out, body->data, body->len);
    conn_counters(c)->hls_responses++;
    conn_respond(c, &out);
}

/* The media playlist of <st> for <rq> into <out>; its last complete part count is <end>. */
static void media_playlist(struct audience *a, const struct hls_req *rq, const struct hls_stream *st,
                           struct buf *out)
{
    uint64_t first, end;
    stream_parts(st, &first, &end);
    uint32_t *d = calloc(end - first + 1, sizeof(*d));
    BUG_ON(!d);
    struct dur_acc acc = {first, st->P, d, end - first};
    struct hls_media m = {
        .epoch = st->epoch,
        .prefix = rq->aac ? "a" : "o",
        .target_s = st->target_s,
        .part_samples = st->P,
        /* AAC frames (1024) do not divide a part: one may start just before its end */
        .part_target = st->track.aac ? st->P + 1023 : st->P,
        .parts_per_segment = st->pps,
        .first_part = first,
        .end_part = end,
        .part_dur = d,
        .skip = rq->skip,
    };
    int rc = each_packet(st, first * st->P, end * st->P, dur_add, &acc);
    /* the first part's first sample: its wall time (the absolute clock is unix time) */
    uint64_t start = first * st->P > st->first_abs ? first * st->P : st->first_abs;
    m.first_pdt_ms = (int64_t)(start / 48);
    struct hls_stream other;
    if (stream_open(a, rq->slot, rq->gen, !rq->aac, &other) == 0) {
        uint64_t of, oe;
        stream_parts(&other, &of, &oe);
        m.report_uri = rq->aac ? "o.m3u8" : "a.m3u8";
        m.report_msn = oe / (uint64_t)other.pps;
        m.report_part = (uint32_t)(oe % (uint64_t)other.pps);
        /* LAST-PART is the last one there: of the segment before if none of this one yet */
        if (m.report_part == 0 && m.report_msn > 0) {
            m.report_msn--;
            m.report_part = (uint32_t)other.pps;
        }
        m.report_part--;
    }
    if (rc == 0)
        hls_media_playlist(out, &m);
    free(d);
}

/* The live captions' subtitles playlist or segment <rq> (issue 12, item 4). A segment is listed
 * (and served) once the audio has it whole and the captions are final to its end: a cue that
 * comes later than that is on the listener page's feed, not in HLS. */
static void vtt_answer(struct audience *a, struct conn *c, const struct hls_req *rq)
{
    struct hls_stream st;
    const struct shared_space *ss = &a->sh->spaces[rq->slot];
    int rc = stream_open(a, rq->slot, rq->gen, 0, &st);
    if (rc == -ENOENT || !__atomic_load_n(&ss->captions_on, __ATOMIC_ACQUIRE)) {
        conn_error(c, 404, "Cache-Control: no-cache", "No live captions for this stream");
        return;
    }
    if (rc < 0) {
        conn_error(c, 503, "Retry-After: 1", "The stream is starting");
        return;
    }
    if (rq->kind == HLS_VTT_SEGMENT && strcmp(rq->epoch, st.epoch) != 0) {
        conn_error(c, 404, "Cache-Control: max-age=60", "Not this stream: reload the playlist");
        return;
    }
    uint64_t first, end, S = (uint64_t)st.pps, seg = st.P * S;
    stream_parts(&st, &first, &end);
    /* complete segments, and of those the ones whose captions are final */
    uint64_t msn_first = first / S, msn_end = end / S;
    int64_t final_ms = __atomic_load_n(&ss->captions_final_ms, __ATOMIC_ACQUIRE);
    while (msn_end > msn_first && (int64_t)((msn_end * seg) / 48) > final_ms)
        msn_end--;
    struct buf body = {0};
    if (rq->kind == HLS_VTT_MEDIA) {
        hls_vtt_playlist(&body, st.epoch, st.target_s, (uint32_t)(seg / 48), msn_first, msn_end,
                         (int64_t)(msn_first * seg / 48));
        respond(c, "application/vnd.apple.mpegurl", &body, st.target_s / 2 > 0 ? st.target_s / 2 : 1,
                0);
        buf_free(&body);
        return;
    }
    if (rq->msn >= msn_end || rq->msn < msn_first) {
        conn_error(c, 404, "Cache-Control: no-cache",
                   rq->msn >= msn_end ? "Not final yet" : "No longer held");
        return;
    }
    static char list[SHARED_CAPTIONS_MAX];
    int len = shared_captions_copy(ss, list);
    if (len < 0) {
        conn_error(c, 503, "Retry-After: 1", "The captions changed under the request: retry");
        return;
    }
    /* the segment's span on the media timeline (ms from the stream's start) */
    int64_t s0 = ((int64_t)(rq->msn * seg) - (int64_t)st.base) / 48, s1 = s0 + (int64_t)(seg / 48);
    struct hls_vtt_cue cues[CAPTIONS_KEEP];
    int n = 0;
    size_t pos = 0;
    struct caption_cue cue;
    while (n < CAPTIONS_KEEP && captions_next_cue(list, (size_t)len, &pos, &cue)) {
        int64_t c0 = cue.start_ms - ss->stream_start_ms, c1 = cue.end_ms - ss->stream_start_ms;
        if (c0 < s1 && (c1 > s0 || (c1 == c0 && c0 >= s0)))
            cues[n++] = (struct hls_vtt_cue){c0, c1, cue.text, cue.text_len};
    }
    hls_vtt_segment(&body, cues, n);
    respond(c, "text/vtt; charset=utf-8", &body, 86400, 0);
    buf_free(&body);
}

/* Tries to answer <rq> on <c> now. Returns 1 if answered (or refused), 0 if it must wait
 * for part <*need> (absolute count of complete parts). <memo> (may be NULL): answers built
 * earlier in this wake, taken and added to. */
static int hls_answer(struct audience *a, struct conn *c, const struct hls_req *rq, uint64_t *need,
                      struct hls_memo *memo)
{
    if (rq->kind == HLS_VTT_MEDIA || rq->kind == HLS_VTT_SEGMENT) {
        vtt_answer(a, c, rq);
        return 1;
    }
    struct hls_stream st;
    int rc = stream_open(a, rq->slot, rq->gen, rq->aac, &st);
    if (rc == -ENOENT) {
        conn_error(c, 404, "Cache-Control: no-cache", "No such stream (ended or restarted)");
        return 1;
    }
    if (rc < 0 && rq->kind != HLS_MEDIA) {
        conn_error(c, 503, "Retry-After: 1", "The stream is starting");
        return 1;
    }
    if (rq->kind != HLS_MEDIA && strcmp(rq->epoch, st.epoch) != 0) {
        conn_error(c, 404, "Cache-Control: max-age=60", "Not this stream: reload the playlist");
        return 1;
    }
    uint64_t S = (uint64_t)st.pps, end = rc == 0 ? st.end_abs / st.P : 0;
    struct buf body = {0};
    switch (rq->kind) {
    case HLS_INIT:
        fmp4_init(&body, &st.track);
        respond(c, "audio/mp4", &body, 86400, 1);
        break;
    case HLS_MEDIA: {
        uint64_t first, last;
        if (rc == 0)
            stream_parts(&st, &first, &last);
        if (rc < 0 || last <= first) { /* no whole part yet: wait for the first */
            *need = rc < 0 ? 0 : first + 1;
            if (rc < 0 && !rq->blocking) {
                conn_error(c, 503, "Retry-After: 1", "The stream is starting");
                return 1;
            }
            return 0;
        }
        if (rq->blocking) {
            uint64_t msn_cur = end / S;
            if (rq->msn > msn_cur + HLS_ADVANCE_SEGMENTS ||
                (rq->has_part && rq->part >= S + HLS_ADVANCE_PARTS)) {
                conn_counters(c)->hls_too_far++;
                conn_error(c, 400, NULL, "_HLS_msn/_HLS_part too far ahead of the playlist");
                return 1;
            }
            uint64_t want = rq->has_part ? rq->msn * S + rq->part + 1 : (rq->msn + 1) * S;
            if (want > end) {
                *need = want;
                return 0;
            }
        }
        /* the low-latency profile: a blocking response names one state of the playlist and
         * may be kept for 6 target durations; a plain one changes every part */
        int age = rq->blocking ? 6 * st.target_s : st.target_s / 2 > 0 ? st.target_s / 2 : 1;
        uint64_t want = rq->has_part ? rq->msn * S + rq->part + 1 : (rq->msn + 1) * S;
        struct hls_memo *mm = rq->blocking ? memo_find(memo, rq, 0, want) : NULL;
        if (mm) {
            respond(c, "application/vnd.apple.mpegurl", &mm->body, age, 0);
            break;
        }
        media_playlist(a, rq, &st, &body);
        if (body.len == 0) {
            conn_error(c, 503, "Retry-After: 1", "The ring moved under the playlist: retry");
            return 1;
        }
        if (rq->blocking)
            memo_put(memo, rq, end, age, &body);
        respond(c, "application/vnd.apple.mpegurl", &body, age, 0);
        break;
    }
    case HLS_SEGMENT:
    case HLS_PART: {
        if (rq->msn > end / S + HLS_ADVANCE_SEGMENTS) { /* (and msn x S cannot overflow) */
            conn_error(c, 404, "Cache-Control: no-cache", "Not published yet");
            return 1;
        }
        uint64_t k0 = rq->kind == HLS_PART ? rq->msn * S + rq->part : rq->msn * S;
        uint64_t k1 = rq->kind == HLS_PART ? k0 + 1 : k0 + S;
        if (rq->kind == HLS_PART && rq->part >= S) {
            conn_error(c, 404, NULL, "No such part");
            return 1;
        }
        if (k1 > end) {
            /* the hinted next part (or the one after) is held until it is there */
            if (rq->kind == HLS_PART && k1 <= end + 2) {
                *need = k1;
                return 0;
            }
            conn_error(c, 404, "Cache-Control: no-cache", "Not published yet");
            return 1;
        }
        if (k0 < oldest_part(&st)) {
            conn_error(c, 404, NULL, "No longer held");
            return 1;
        }
        struct hls_memo *mm = rq->kind == HLS_PART ? memo_find(memo, rq, k0, 0) : NULL;
        if (mm) {
            respond(c, "audio/mp4", &mm->body, mm->max_age, 0);
            break;
        }
        if (build_parts(&st, k0, k1, &body) < 0 || body.len == 0) {
            buf_free(&body);
            conn_error(c, 404, NULL, "No longer held");
            return 1;
        }
        if (rq->kind == HLS_PART)
            memo_put(memo, rq, k0, 6 * st.target_s, &body);
        respond(c, "audio/mp4", &body, rq->kind == HLS_PART ? 6 * st.target_s : 86400,
                rq->kind == HLS_SEGMENT);
        break;
    }
    }
    buf_free(&body);
    return 1;
}

/* ---- held requests -------------------------------------------------------------------- */

static void wait_close(struct conn *c)
{
    struct audience *a = audience_of(c);
    a->hls_nwaiting--;
    a->me->hls_blocked_now = a->hls_nwaiting;
}

static const struct conn_ops hls_wait_ops = {.name = "hls", .close = wait_close};

/* A held request's socket: the client may only go away (or pipeline, which we ignore). */
static void wait_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    char sink[512];
    (void)loop, (void)events;
    if (c->dead)
        return;
    ssize_t r = conn_recv(c, sink, sizeof(sink));
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        conn_close(c);
}

/* Gives <c> back from the held list, to be answered. */
static void unpark(struct conn *c)
{
    wait_close(c);
    c->ops = NULL;
}

static void park(struct audience *a, struct conn *c, const struct hls_req *rq, uint64_t need)
{
    struct shared_counters *ctr = conn_counters(c);
    if (a->hls_nwaiting >= (uint32_t)a->cfg->hls_max_blocked) {
        ctr->hls_refused_blocked++;
        LOG_RATELIMITED(LOG_WARN, "hls", "#%llu %s: %u blocking requests held: refused (503)",
                        (unsigned long long)c->id, c->peer, a->hls_nwaiting);
        conn_error(c, 503, "Retry-After: 1", "Too many blocking requests held: retry");
        return;
    }
    uint32_t P;
    int pps, target_s;
    hls_timing(a->cfg, &P, &pps, &target_s);
    conn_take(c, &hls_wait_ops);
    struct hls_wait *w = CONN_PRIV(c, struct hls_wait);
    w->rq = *rq;
    w->need = need;
    w->deadline_ms = a->loop->now_ms + 3000LL * target_s;
    c->io.cb = wait_on_io;
    list_insert_tail(&a->hls_waiting, &c->node);
    a->hls_nwaiting++;
    a->me->hls_blocked_now = a->hls_nwaiting;
    ctr->hls_blocked++;
    if (loop_mod(a->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
        conn_close(c);
}

void hls_on_wake(struct audience *a)
{
    if (a->hls_nwaiting == 0)
        return;
    /* parts complete per slot (and its rendition), read once per wake */
    uint64_t done[SHARED_MAX_SPACES][2];
    uint8_t known[SHARED_MAX_SPACES][2] = {{0}};
    struct hls_memo memo[HLS_MEMOS];
    memset(memo, 0, sizeof(memo));
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->hls_waiting)
    {
        struct conn *c = list_entry(n, struct conn, node);
        struct hls_wait *w = CONN_PRIV(c, struct hls_wait);
        int s = w->rq.slot, k = w->rq.aac;
        if (!known[s][k]) {
            struct hls_stream st;
            int rc = stream_open(a, s, w->rq.gen, k, &st);
            done[s][k] = rc == 0 ? st.end_abs / st.P : rc == -ENOENT ? UINT64_MAX : 0;
            known[s][k] = 1;
        }
        if (done[s][k] < w->need)
            continue;
        struct hls_req rq = w->rq;
        uint64_t need = 0;
        unpark(c);
        if (!hls_answer(a, c, &rq, &need, memo)) /* not yet after all: again */
            park(a, c, &rq, need);
    }
    for (int i = 0; i < HLS_MEMOS; i++)
        buf_free(&memo[i].body);
}

void hls_tick(struct audience *a)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->hls_waiting)
    {
        struct conn *c = list_entry(n, struct conn, node);
        if (CONN_PRIV(c, struct hls_wait)->deadline_ms > a->loop->now_ms)
            continue; /* (nearly always in order of arrival; a request parked again is not) */
        unpark(c);
        conn_counters(c)->hls_block_timeouts++;
        conn_error(c, 503, "Retry-After: 1",
                   "Nothing published for 3 target durations: the source may have stopped");
    }
}

void hls_close_all(struct audience *a)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &a->hls_waiting)
    {
        conn_close(list_entry(n, struct conn, node));
    }
}

/* ---- routes ------------------------------------------------------------------------------- */

/* Parses "<msn>[.<part>].m4s" after the rendition letter. Returns 0, or -1. */
static int parse_media_name(const char *s, struct hls_req *rq)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    rq->msn = strtoull(s, &end, 10);
    if (errno)
        return -1;
    rq->kind = HLS_SEGMENT;
    if (*end == '.' && end[1] >= '0' && end[1] <= '9') {
        unsigned long p = strtoul(end + 1, &end, 10);
        if (p > 1000)
            return -1;
        rq->part = (uint32_t)p;
        rq->kind = HLS_PART;
    }
    return strcmp(end, ".m4s") == 0 ? 0 : -1;
}

/* BANDWIDTH of a rendition: the peak bit rate of its last 20 pages (whole pages only),
 * rounded up to 16 kb/s with 10 % for the boxes, so that it rarely changes between requests;
 * <fallback> if the ring says nothing yet. */
static uint32_t bandwidth(struct audience *a, int slot, uint32_t fallback)
{
    struct ring *r = shared_ring(a->sh, slot);
    uint64_t head = ring_head(r), peak = 0;
    struct ring_page p;
    for (uint64_t seq = head > 20 ? head - 20 : 0; seq < head; seq++)
        if (ring_page_get(r, seq, &p) == 0 && p.samples > 0 && ring_page_intact(r, seq)) {
            uint64_t bps = (uint64_t)p.len * 8 * 48000 / p.samples;
            peak = bps > peak ? bps : peak;
        }
    if (peak == 0)
        return fallback;
    peak = peak * 11 / 10;
    return (uint32_t)((peak + 15999) / 16000 * 16000);
}

static void multivariant(struct audience *a, struct conn *c, int slot)
{
    struct hls_variant v[2];
    char uo[96], ua[96];
    const char *mount = a->sh->spaces[slot].mount;
    snprintf(uo, sizeof(uo), "hls/%s/o.m3u8", mount);
    snprintf(ua, sizeof(ua), "hls/%s/a.m3u8", mount);
    /* CODECS: the sample entry is "Opus"; Chromium's and Firefox's MSE take "opus", and so
     * does hls.js, which also maps the name for Safari. One answer for every browser, so
     * caches need no Vary: User-Agent. */
    int n = 0;
    v[n++] = (struct hls_variant){uo, "opus", bandwidth(a, slot, 96000)};
    int aac = hls_aac_slot(a, slot);
    if (aac >= 0)
        v[n++] = (struct hls_variant){ua, "mp4a.40.2", bandwidth(a, aac, 160000)};
    char uc[96];
    snprintf(uc, sizeof(uc), "hls/%s/c.m3u8", mount);
    int captioned = __atomic_load_n(&a->sh->spaces[slot].captions_on, __ATOMIC_ACQUIRE) != 0;
    struct buf body = {0};
    char lang[sizeof(a->sh->spaces[slot].captions_lang)];
    snprintf(lang, sizeof(lang), "%.35s", a->sh->spaces[slot].captions_lang);
    hls_multivariant(&body, v, n, captioned ? uc : NULL, lang);
    respond(c, "application/vnd.apple.mpegurl", &body, 2, 0);
    buf_free(&body);
}

int hls_route(struct audience *a, struct conn *c, const struct http_request *req, const char *path)
{
    if (!a->cfg->hls)
        return 0;
    size_t plen = strlen(path);
    struct hls_req rq = {.head_only = req->method == HTTP_HEAD};
    char mount[64];
    if (strncmp(path, "/hls/", 5) != 0) {
        if (plen < 7 || plen - 6 >= sizeof(mount) || strcmp(path + plen - 5, ".m3u8") != 0)
            return 0;
        memcpy(mount, path + 1, plen - 6);
        mount[plen - 6] = '\0';
        int slot = mount_name_ok(mount) ? hls_find(a, mount) : -1;
        if (slot < 0)
            return 0; /* perhaps a mount called x.m3u8 */
        multivariant(a, c, slot);
        return 1;
    }
    const char *s = path + 5, *sl = strchr(s, '/');
    if (!sl || (size_t)(sl - s) >= sizeof(mount)) {
        conn_error(c, 404, NULL, "No such HLS stream");
        return 1;
    }
    memcpy(mount, s, (size_t)(sl - s));
    mount[sl - s] = '\0';
    int slot = mount_name_ok(mount) ? hls_find(a, mount) : -1;
    if (slot < 0) {
        conn_error(c, 404, "Cache-Control: no-cache", "No such space");
        return 1;
    }
    rq.slot = (uint16_t)slot;
    rq.gen = __atomic_load_n(&a->sh->spaces[slot].gen, __ATOMIC_ACQUIRE);
    const char *rest = sl + 1, *sl2 = strchr(rest, '/');
    int bad = 0;
    if (!sl2 && strcmp(rest, "c.m3u8") == 0) {
        rq.kind = HLS_VTT_MEDIA;
    } else if (!sl2) {
        rq.kind = HLS_MEDIA;
        rq.aac = rest[0] == 'a';
        bad = strcmp(rest + 1, ".m3u8") != 0 || (rest[0] != 'o' && rest[0] != 'a');
        struct hls_query q;
        if (!bad && hls_query_parse(req->query, req->query_len, &q) < 0) {
            conn_error(c, 400, NULL, "Bad _HLS_ directive");
            return 1;
        }
        if (!bad) {
            rq.blocking = (uint8_t)q.has_msn;
            rq.msn = q.msn;
            rq.part = q.part;
            rq.has_part = (uint8_t)q.has_part;
            rq.skip = (uint8_t)(q.skip != 0);
        }
    } else {
        size_t elen = (size_t)(sl2 - rest);
        const char *name = sl2 + 1;
        bad = elen == 0 || elen >= sizeof(rq.epoch) ||
              (name[0] != 'o' && name[0] != 'a' && name[0] != 'c');
        if (!bad && name[0] == 'c') {
            memcpy(rq.epoch, rest, elen);
            rq.epoch[elen] = '\0';
            char *e;
            rq.kind = HLS_VTT_SEGMENT;
            errno = 0;
            rq.msn = name[1] >= '0' && name[1] <= '9' ? strtoull(name + 1, &e, 10) : 0;
            bad = !(name[1] >= '0' && name[1] <= '9') || errno || strcmp(e, ".vtt") != 0;
        } else if (!bad) {
            memcpy(rq.epoch, rest, elen);
            rq.epoch[elen] = '\0';
            rq.aac = name[0] == 'a';
            if (strcmp(name + 1, "init.mp4") == 0)
                rq.kind = HLS_INIT;
            else
                bad = parse_media_name(name + 1, &rq) < 0;
        }
    }
    if (bad) {
        conn_error(c, 404, NULL, "No such HLS file");
        return 1;
    }
    uint64_t need = 0;
    if (!hls_answer(a, c, &rq, &need, NULL))
        park(a, c, &rq, need);
    return 1;
}

void hls_metrics(struct audience *a, struct buf *b, const struct shared_counters *st)
{
    uint32_t held = 0;
    for (uint32_t i = 0; i < a->sh->nworkers; i++)
        held += a->sh->workers[i].hls_blocked_now;
    buf_printf(b,
               "# HELP rostrum_hls_responses_total HLS playlists, init segments, segments and "
               "parts answered.\n# TYPE rostrum_hls_responses_total counter\n"
               "rostrum_hls_responses_total %llu\n"
               "# HELP rostrum_hls_blocked_total HLS requests held for a part not published "
               "yet (blocking reload, preload hint).\n# TYPE rostrum_hls_blocked_total counter\n"
               "rostrum_hls_blocked_total %llu\n"
               "# HELP rostrum_hls_blocked HLS requests held now.\n"
               "# TYPE rostrum_hls_blocked gauge\nrostrum_hls_blocked %u\n"
               "# HELP rostrum_hls_refused_total HLS requests refused: held requests at "
               "hls-max-blocked (503), held past 3 target durations (503), too far ahead (400)."
               "\n# TYPE rostrum_hls_refused_total counter\n"
               "rostrum_hls_refused_total{reason=\"max_blocked\"} %llu\n"
               "rostrum_hls_refused_total{reason=\"timeout\"} %llu\n"
               "rostrum_hls_refused_total{reason=\"too_far\"} %llu\n",
               (unsigned long long)st->hls_responses, (unsigned long long)st->hls_blocked, held,
               (unsigned long long)st->hls_refused_blocked,
               (unsigned long long)st->hls_block_timeouts, (unsigned long long)st->hls_too_far);
}
