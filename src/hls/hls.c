/* hls: playlists, the _HLS_* query and Ogg page packets (see hls.h). */
#include "hls/hls.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Parses a decimal of 1-19 digits. Returns 0, or -1. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int hls_query_parse(const char *q, size_t len, struct hls_query *out)
{
    memset(out, 0, sizeof(*out));
    int seen_skip = 0;
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(q + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - q) : len;
        const char *k = q + i;
        const char *eq = memchr(k, '=', end - i);
        size_t klen = eq ? (size_t)(eq - k) : end - i;
        const char *v = eq ? eq + 1 : q + end;
        size_t vlen = (size_t)(q + end - v);
        i = end + 1;
        if (klen < 5 || memcmp(k, "_HLS_", 5) != 0)
            continue; /* not ours: cache busters, keys */
        if (klen == 8 && memcmp(k, "_HLS_msn", 8) == 0) {
            if (out->has_msn || parse_u64(v, vlen, &out->msn) < 0)
                return -1;
            out->has_msn = 1;
        } else if (klen == 9 && memcmp(k, "_HLS_part", 9) == 0) {
            uint64_t p;
            if (out->has_part || parse_u64(v, vlen, &p) < 0 || p > UINT32_MAX)
                return -1;
            out->part = (uint32_t)p;
            out->has_part = 1;
        } else if (klen == 9 && memcmp(k, "_HLS_skip", 9) == 0) {
            if (seen_skip)
                return -1;
            seen_skip = 1;
            if (vlen == 3 && memcmp(v, "YES", 3) == 0)
                out->skip = 1;
            else if (vlen == 2 && memcmp(v, "v2", 2) == 0)
                out->skip = 2;
            else
                return -1;
        }
        /* other _HLS_ names (a later revision's) are ignored, as clients may send them */
    }
    if (out->has_part && !out->has_msn)
        return -1;
    return (int)len;
}

void hls_iso_time(int64_t ms, char *out, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char day[24];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", day, (int)(ms % 1000));
}

static double secs(uint64_t samples)
{
    return (double)samples / 48000.0;
}

int hls_media_playlist(struct buf *out, const struct hls_media *m)
{
    const uint64_t S = (uint64_t)m->parts_per_segment;
    const uint64_t first = m->first_part, end = m->end_part;
    const uint64_t msn_first = first / S, msn_cur = end / S;
    const int can_skip_s = 6 * m->target_s; /* the spec's floor for CAN-SKIP-UNTIL */
    const char *e = m->epoch, *pre = m->prefix;
    /* in whole ms, rounded up: a part is never longer than its playlist says */
    double part_target = (double)(((m->part_target ? m->part_target : m->part_samples) + 47) / 48) / 1000;
    double hold = 3 * part_target;
    if (hold < HLS_MIN_PART_HOLD_BACK_MS / 1000.0)
        hold = HLS_MIN_PART_HOLD_BACK_MS / 1000.0;
    buf_printf(out,
               "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:%d\n"
               "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%.3f,"
               "CAN-SKIP-UNTIL=%d.0\n#EXT-X-PART-INF:PART-TARGET=%.3f\n"
               "#EXT-X-MEDIA-SEQUENCE:%llu\n#EXT-X-MAP:URI=\"%s/%sinit.mp4\"\n",
               m->target_s, hold, can_skip_s, part_target,
               (unsigned long long)msn_first, e, pre);
    /* the duration of segment <msn> (complete or not) and of everything from it to the end */
    uint64_t total = 0;
    for (uint64_t k = first; k < end; k++)
        total += m->part_dur[k - first];
    int skipped = 0;
    uint64_t k = first, pdt_samples = 0;
    if (m->skip) {
        /* a segment may go only if all of it is further than CAN-SKIP-UNTIL from the end */
        uint64_t left = total;
        for (uint64_t msn = msn_first; msn < msn_cur; msn++) {
            uint64_t kend = (msn + 1) * S, dur = 0;
            for (uint64_t j = k; j < kend; j++)
                dur += m->part_dur[j - first];
            if (left - dur < (uint64_t)can_skip_s * 48000)
                break;
            left -= dur;
            pdt_samples += dur;
            k = kend;
            skipped++;
        }
        if (skipped > 0)
            buf_printf(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS=%d\n", skipped);
    }
    char when[40];
    hls_iso_time(m->first_pdt_ms + (int64_t)(pdt_samples / 48), when, sizeof(when));
    buf_printf(out, "#EXT-X-PROGRAM-DATE-TIME:%s\n", when);
    for (uint64_t msn = msn_first + (uint64_t)skipped; msn <= msn_cur; msn++) {
        uint64_t kend = msn == msn_cur ? end : (msn + 1) * S;
        int parts = msn + HLS_PART_SEGMENTS >= msn_cur;
        uint64_t dur = 0;
        for (; k < kend; k++) {
            uint32_t d = m->part_dur[k - first];
            dur += d;
            if (parts)
                buf_printf(out, "#EXT-X-PART:DURATION=%.5f,URI=\"%s/%s%llu.%u.m4s\",INDEPENDENT=YES\n",
                           secs(d), e, pre, (unsigned long long)msn, (unsigned)(k % S));
        }
        if (msn < msn_cur)
            buf_printf(out, "#EXTINF:%.5f,\n%s/%s%llu.m4s\n", secs(dur), e, pre,
                       (unsigned long long)msn);
    }
    buf_printf(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"%s/%s%llu.%u.m4s\"\n", e, pre,
               (unsigned long long)(end / S), (unsigned)(end % S));
    if (m->report_uri)
        buf_printf(out, "#EXT-X-RENDITION-REPORT:URI=\"%s\",LAST-MSN=%llu,LAST-PART=%u\n",
                   m->report_uri, (unsigned long long)m->report_msn, m->report_part);
    return skipped;
}

void hls_multivariant(struct buf *out, const struct hls_variant *v, int n, const char *subtitles,
                      const char *lang)
{
    buf_puts(out, "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    /* live captions, in the recogniser's language as the operator declares it (captions-lang;
     * empty: none claimed) */
    if (subtitles) {
        buf_puts(out, "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"cc\",NAME=\"Live captions\",");
        if (lang && lang[0])
            buf_printf(out, "LANGUAGE=\"%s\",", lang);
        buf_printf(out, "DEFAULT=YES,AUTOSELECT=YES,FORCED=NO,URI=\"%s\"\n", subtitles);
    }
    for (int i = 0; i < n; i++)
        buf_printf(out, "#EXT-X-STREAM-INF:BANDWIDTH=%u,CODECS=\"%s\"%s\n%s\n", v[i].bandwidth,
                   v[i].codecs, subtitles ? ",SUBTITLES=\"cc\"" : "", v[i].uri);
}

void hls_vtt_playlist(struct buf *out, const char *epoch, int target_s, uint32_t seg_ms,
                      uint64_t msn_first, uint64_t msn_end, int64_t first_pdt_ms)
{
    char when[40];
    hls_iso_time(first_pdt_ms, when, sizeof(when));
    buf_printf(out, "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:%d\n"
                    "#EXT-X-MEDIA-SEQUENCE:%llu\n#EXT-X-PROGRAM-DATE-TIME:%s\n",
               target_s, (unsigned long long)msn_first, when);
    for (uint64_t m = msn_first; m < msn_end; m++)
        buf_printf(out, "#EXTINF:%.5f,\n%s/c%llu.vtt\n", seg_ms / 1000.0, epoch,
                   (unsigned long long)m);
}

/* A WebVTT timestamp (hours of at least two digits). */
static void vtt_time(struct buf *out, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    buf_printf(out, "%02lld:%02d:%02d.%03d", (long long)(ms / 3600000), (int)(ms / 60000 % 60),
               (int)(ms / 1000 % 60), (int)(ms % 1000));
}

void hls_vtt_segment(struct buf *out, const struct hls_vtt_cue *c, int n)
{
    buf_puts(out, "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n");
    for (int i = 0; i < n; i++) {
        buf_puts(out, "\n");
        vtt_time(out, c[i].start_ms);
        buf_puts(out, " --> ");
        vtt_time(out, c[i].end_ms > c[i].start_ms ? c[i].end_ms : c[i].start_ms + 1);
        buf_puts(out, "\n");
        /* the text is a cue payload: '<' and '&' would start a tag or an entity */
        for (size_t k = 0; k < c[i].len; k++) {
            char ch = c[i].text[k];
            if (ch == '<')
                buf_puts(out, "&lt;");
            else if (ch == '&')
                buf_puts(out, "&amp;");
            else if (ch == '>')
                buf_puts(out, "&gt;");
            else if (ch != '\n' && ch != '\r')
                buf_append(out, &ch, 1);
        }
        buf_puts(out, "\n");
    }
}

/* The segment table of the Ogg page at the start of <page>: returns the header length and
 * sets <*whole> to the page's length (<= len), or returns -1. */
static int ogg_header(const unsigned char *page, size_t len, int *nseg, size_t *whole)
{
    if (len < 27 || memcmp(page, "OggS", 4) != 0 || page[4] != 0)
        return -1;
    *nseg = page[26];
    size_t hlen = 27 + (size_t)*nseg;
    if (len < hlen)
        return -1;
    size_t body = 0;
    for (int i = 0; i < *nseg; i++)
        body += page[27 + i];
    *whole = hlen + body;
    return *whole <= len ? (int)hlen : -1;
}

int hls_ogg_packets(const unsigned char *page, size_t len, uint32_t *off, uint32_t *plen, int max)
{
    int nseg;
    size_t whole;
    int hlen = ogg_header(page, len, &nseg, &whole);
    if (hlen < 0 || whole != len)
        return -1;
    int continued = page[5] & 1;
    uint32_t start = (uint32_t)hlen, cur = 0;
    int n = 0;
    for (int i = 0; i < nseg; i++) {
        unsigned lace = page[27 + i];
        cur += lace;
        if (lace == 255)
            continue;
        if (continued)
            continued = 0; /* the tail of a packet begun on the page before */
        else if (n < max) {
            off[n] = start;
            plen[n] = cur;
            n++;
        }
        start += cur;
        cur = 0;
    }
    return n;
}

int hls_ogg_first_packet(const unsigned char *page, size_t len, const unsigned char **pkt,
                         size_t *plen)
{
    uint32_t off, l;
    int nseg;
    size_t whole;
    if (ogg_header(page, len, &nseg, &whole) < 0 || hls_ogg_packets(page, whole, &off, &l, 1) != 1)
        return -1;
    *pkt = page + off;
    *plen = l;
    return 0;
}
