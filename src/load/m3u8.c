/*
 * load/m3u8: see m3u8.h. One pass over the lines; the newest segments and parts are kept in
 * rings and put in order at the end, so a long playlist costs a copy per item, not a shift.
 */
#include "load/m3u8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds attribute <name> in the attribute list <a> (<len> bytes: NAME=VALUE,...) and copies its
 * value, quotes removed, into <out> (<cap> bytes, NUL-terminated). Returns 0, 1 if absent, or
 * -1 if the list is malformed or the value does not fit. */
static int attr(const char *a, size_t len, const char *name, char *out, size_t cap)
{
    size_t i = 0, nlen = strlen(name);
    int found = 1;
    while (i < len) {
        size_t k = i;
        while (k < len &&
               ((a[k] >= 'A' && a[k] <= 'Z') || (a[k] >= '0' && a[k] <= '9') || a[k] == '-'))
            k++;
        if (k == i || k >= len || a[k] != '=')
            return -1;
        size_t v = k + 1, vend;
        int quoted = v < len && a[v] == '"';
        if (quoted) {
            const char *q = memchr(a + v + 1, '"', len - v - 1);
            if (!q)
                return -1;
            vend = (size_t)(q - a) + 1;
        } else {
            vend = v;
            while (vend < len && a[vend] != ',')
                vend++;
            if (vend == v)
                return -1;
        }
        if (vend < len && a[vend] != ',')
            return -1; /* "A="x"y": something after the closing quote */
        if (found == 1 && k - i == nlen && memcmp(a + i, name, nlen) == 0) {
            size_t s = quoted ? v + 1 : v, e = quoted ? vend - 1 : vend;
            if (e - s >= cap)
                return -1;
            memcpy(out, a + s, e - s);
            out[e - s] = '\0';
            found = 0;
        }
        i = vend + 1;
        if (vend + 1 == len)
            return -1; /* a trailing comma */
    }
    return found;
}

/* A non-negative decimal in <s> (whole string). Returns 0 or -1. */
static int decimal(const char *s, double *out)
{
    char *end;
    if (!((*s >= '0' && *s <= '9')))
        return -1;
    double v = strtod(s, &end);
    if (*end || !isfinite(v) || v < 0 || v > 1e9)
        return -1;
    *out = v;
    return 0;
}

static int integer(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

static int num_attr(const char *a, size_t len, const char *name, double *out, int required)
{
    char v[64];
    int rc = attr(a, len, name, v, sizeof(v));
    if (rc < 0 || (rc == 1 && required))
        return -1;
    return rc == 1 ? 0 : decimal(v, out);
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* An ISO 8601 date-time with a time zone (EXT-X-PROGRAM-DATE-TIME), e.g.
 * "2026-12-02T05:00:00.250Z" or "...+01:00", into unix milliseconds. Returns 0 or -1. */
static int iso_ms(const char *s, int64_t *out)
{
    int Y, M, D, h, m, sec;
    size_t n = strlen(s);
    if (n < 20 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &m) || s[16] != ':' || digits(s + 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    const char *p = s + 19;
    int64_t ms = 0;
    if (*p == '.') {
        int scale = 100, any = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, any = 1) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
        if (!any)
            return -1;
    }
    int64_t off_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        /* "+01:00"; also "+0100", which ffmpeg's hls muxer writes (strftime's %z) */
        int oh, om, colon = p[3] == ':';
        if (digits(p + 1, 2, &oh) || digits(p + 3 + colon, 2, &om) || oh > 23 || om > 59)
            return -1;
        off_s = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 5 + colon;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    int64_t t = days_from_civil(Y, M, D) * 86400 + h * 3600 + m * 60 + sec - off_s;
    *out = t * 1000 + ms;
    return 0;
}

/* 0 if the <len> bytes at <s> can be a URI here: not empty, no space or control byte. */
static int uri_ok(const char *s, size_t len)
{
    if (len == 0 || len >= M3U8_URI_MAX)
        return -1;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return -1;
    return 0;
}

static int copy_uri(char *dst, const char *src, size_t len)
{
    if (uri_ok(src, len) < 0)
        return -1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* The attribute <name>, a URI, into <dst> (M3U8_URI_MAX bytes). Returns 0 or -1. */
static int uri_attr(const char *a, size_t len, const char *name, char *dst)
{
    return attr(a, len, name, dst, M3U8_URI_MAX) == 0 && uri_ok(dst, strlen(dst)) == 0 ? 0 : -1;
}

/* Puts the <n> newest of ring <r> (<cap> items, <count> pushed) in order. */
static void unring(struct m3u8_item *r, uint32_t cap, uint64_t count)
{
    if (count <= cap)
        return;
    struct m3u8_item tmp[M3U8_PARTS > M3U8_SEGS ? M3U8_PARTS : M3U8_SEGS];
    uint32_t start = (uint32_t)(count % cap);
    for (uint32_t i = 0; i < cap; i++)
        tmp[i] = r[(start + i) % cap];
    memcpy(r, tmp, cap * sizeof(*r));
}

#define TAG(line, len, name)                                                                       \
    ((len) >= sizeof(name) - 1 && memcmp((line), (name), sizeof(name) - 1) == 0)

int m3u8_parse(const char *p, size_t len, struct m3u8 *out)
{
    memset(out, 0, sizeof(*out));
    if (len > M3U8_MAX)
        return -1;
    int media = 0, multi = 0, have_target = 0, have_inf = 0, want_variant = 0, listed = 0;
    double inf_s = 0, parts_s = 0;
    int64_t pdt_next = 0; /* program date time of the next segment's start, 0 unknown */
    int32_t part_idx = 0;
    uint64_t segs_pushed = 0, parts_pushed = 0;
    struct m3u8_variant pending = {0};
    char val[M3U8_LINE_MAX];
    size_t i = 0;
    int lineno = 0;
    while (i < len) {
        const char *nl = memchr(p + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - p) : len;
        const char *line = p + i;
        size_t ll = end - i;
        i = end + 1;
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (ll > M3U8_LINE_MAX - 1 || memchr(line, '\0', ll))
            return -1;
        if (lineno++ == 0) {
            if (!(ll == 7 && memcmp(line, "#EXTM3U", 7) == 0))
                return -1;
            continue;
        }
        if (ll == 0)
            continue;
        int64_t msn = out->media_seq + out->skipped + (int64_t)out->nsegs_total;
        if (line[0] != '#') { /* a URI */
            if (want_variant) {
                if (out->nvariants < M3U8_VARIANTS) {
                    if (copy_uri(pending.uri, line, ll) < 0)
                        return -1;
                    out->variants[out->nvariants++] = pending;
                }
                want_variant = 0;
                continue;
            }
            if (!have_inf || out->has_hint)
                return -1; /* a segment URI needs its EXTINF; a part hint comes last */
            struct m3u8_item *s = &out->segs[segs_pushed % M3U8_SEGS];
            memset(s, 0, sizeof(*s));
            if (copy_uri(s->uri, line, ll) < 0)
                return -1;
            s->msn = msn;
            s->part = -1;
            s->dur_s = inf_s;
            s->pdt_ms = pdt_next;
            segs_pushed++;
            out->nsegs_total++;
            listed = 1;
            if (pdt_next)
                pdt_next += (int64_t)llround(inf_s * 1000.0);
            have_inf = 0;
            part_idx = 0;
            parts_s = 0;
            continue;
        }
        if (!TAG(line, ll, "#EXT"))
            continue; /* a comment */
        if (want_variant)
            return -1; /* EXT-X-STREAM-INF must be followed by its URI */
        const char *colon = memchr(line, ':', ll);
        size_t alen = colon ? ll - (size_t)(colon - line) - 1 : 0;
        const char *a = colon ? colon + 1 : line + ll;
        memcpy(val, a, alen);
        val[alen] = '\0';
        if (TAG(line, ll, "#EXT-X-STREAM-INF:")) {
            multi = 1;
            char bw[32];
            int64_t b;
            memset(&pending, 0, sizeof(pending));
            if (attr(a, alen, "BANDWIDTH", bw, sizeof(bw)) != 0 || integer(bw, &b) < 0 ||
                b > UINT32_MAX ||
                attr(a, alen, "CODECS", pending.codecs, sizeof(pending.codecs)) < 0)
                return -1;
            pending.bandwidth = (uint32_t)b;
            want_variant = 1;
        } else if (TAG(line, ll, "#EXT-X-MEDIA:")) {
            multi = 1;
            char type[16], uri[M3U8_URI_MAX];
            if (attr(a, alen, "TYPE", type, sizeof(type)) != 0)
                return -1;
            int rc = attr(a, alen, "URI", uri, sizeof(uri));
            if (rc < 0)
                return -1;
            if (rc == 0 && strcmp(type, "AUDIO") == 0 && out->nvariants < M3U8_VARIANTS) {
                struct m3u8_variant *v = &out->variants[out->nvariants++];
                memset(v, 0, sizeof(*v));
                if (copy_uri(v->uri, uri, strlen(uri)) < 0)
                    return -1;
            }
        } else if (TAG(line, ll, "#EXT-X-TARGETDURATION:")) {
            media = 1;
            int64_t t;
            if (integer(val, &t) < 0 || t > 86400)
                return -1;
            out->target_s = (double)t;
            have_target = 1;
        } else if (TAG(line, ll, "#EXT-X-MEDIA-SEQUENCE:")) {
            media = 1;
            if (listed || integer(val, &out->media_seq) < 0 || out->media_seq > INT64_MAX / 4)
                return -1;
        } else if (TAG(line, ll, "#EXT-X-PART-INF:")) {
            media = 1;
            if (num_attr(a, alen, "PART-TARGET", &out->part_target_s, 1) < 0)
                return -1;
        } else if (TAG(line, ll, "#EXT-X-SERVER-CONTROL:")) {
            media = 1;
            char yes[8];
            int rc = attr(a, alen, "CAN-BLOCK-RELOAD", yes, sizeof(yes));
            if (rc < 0 || num_attr(a, alen, "HOLD-BACK", &out->hold_back_s, 0) < 0 ||
                num_attr(a, alen, "PART-HOLD-BACK", &out->part_hold_back_s, 0) < 0 ||
                num_attr(a, alen, "CAN-SKIP-UNTIL", &out->can_skip_until_s, 0) < 0)
                return -1;
            out->can_block = rc == 0 && strcmp(yes, "YES") == 0;
        } else if (TAG(line, ll, "#EXT-X-SKIP:")) {
            media = 1;
            char n[24];
            int64_t k;
            if (listed || out->skipped || attr(a, alen, "SKIPPED-SEGMENTS", n, sizeof(n)) != 0 ||
                integer(n, &k) < 0 || k > INT64_MAX / 4)
                return -1;
            out->skipped = k;
        } else if (TAG(line, ll, "#EXT-X-MAP:")) {
            media = 1;
            if (uri_attr(a, alen, "URI", out->map_uri) < 0)
                return -1;
        } else if (TAG(line, ll, "#EXT-X-PROGRAM-DATE-TIME:")) {
            media = 1;
            if (iso_ms(val, &pdt_next) < 0)
                return -1;
            pdt_next -= (int64_t)llround(parts_s * 1000.0); /* tagged mid-segment: its start */
        } else if (TAG(line, ll, "#EXTINF:")) {
            media = 1;
            char *comma = strchr(val, ',');
            if (comma)
                *comma = '\0';
            if (have_inf || decimal(val, &inf_s) < 0)
                return -1;
            have_inf = 1;
        } else if (TAG(line, ll, "#EXT-X-PART:")) {
            media = 1;
            if (out->has_hint)
                return -1; /* the hint names the part after the last one listed */
            struct m3u8_item *q = &out->parts[parts_pushed % M3U8_PARTS];
            memset(q, 0, sizeof(*q));
            char ind[8];
            int rc = attr(a, alen, "INDEPENDENT", ind, sizeof(ind));
            if (num_attr(a, alen, "DURATION", &q->dur_s, 1) < 0 || rc < 0 ||
                uri_attr(a, alen, "URI", q->uri) < 0)
                return -1;
            q->independent = rc == 0 && strcmp(ind, "YES") == 0;
            q->msn = msn;
            q->part = part_idx++;
            q->pdt_ms = pdt_next ? pdt_next + (int64_t)llround(parts_s * 1000.0) : 0;
            parts_s += q->dur_s;
            parts_pushed++;
            listed = 1;
        } else if (TAG(line, ll, "#EXT-X-PRELOAD-HINT:")) {
            media = 1;
            char type[8];
            struct m3u8_item *h = &out->hint;
            if (attr(a, alen, "TYPE", type, sizeof(type)) != 0 ||
                uri_attr(a, alen, "URI", h->uri) < 0)
                return -1;
            if (strcmp(type, "PART") == 0) {
                if (out->has_hint)
                    return -1; /* one part hint */
                out->has_hint = 1;
                listed = 1; /* numbered: no EXT-X-MEDIA-SEQUENCE or EXT-X-SKIP after it */
                h->msn = msn;
                h->part = part_idx;
                h->dur_s = out->part_target_s;
                h->pdt_ms = pdt_next ? pdt_next + (int64_t)llround(parts_s * 1000.0) : 0;
            } else {
                h->uri[0] = '\0';
            }
        } else if (TAG(line, ll, "#EXT-X-ENDLIST")) {
            media = 1;
            out->endlist = 1;
        }
        /* other tags: skipped, as a client must */
    }
    if (want_variant || have_inf || (media && multi))
        return -1;
    if (multi) {
        out->kind = M3U8_MULTIVARIANT;
        return out->nvariants ? (int)len : -1;
    }
    if (!have_target)
        return -1;
    out->kind = M3U8_MEDIA;
    out->last_msn = out->media_seq + out->skipped + (int64_t)out->nsegs_total - 1;
    out->nsegs = segs_pushed < M3U8_SEGS ? (uint32_t)segs_pushed : M3U8_SEGS;
    out->nparts = parts_pushed < M3U8_PARTS ? (uint32_t)parts_pushed : M3U8_PARTS;
    unring(out->segs, M3U8_SEGS, segs_pushed);
    unring(out->parts, M3U8_PARTS, parts_pushed);
    return (int)len;
}

int m3u8_resolve(const char *base, const char *uri, char *out, size_t cap)
{
    int n;
    if (strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0) {
        const char *path = strchr(uri + (uri[4] == 's' ? 8 : 7), '/');
        n = snprintf(out, cap, "%s", path ? path : "/");
    } else if (uri[0] == '/') {
        n = snprintf(out, cap, "%s", uri);
    } else {
        size_t q = strcspn(base, "?");
        size_t dir = 0;
        for (size_t k = 0; k < q; k++)
            if (base[k] == '/')
                dir = k + 1;
        n = snprintf(out, cap, "%.*s%s", (int)dir, base, uri);
    }
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
