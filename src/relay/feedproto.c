/*
 * feedproto: the relay feed's frames (see feedproto.h). picohttpparser's contract: stateless,
 * bytes consumed / -2 incomplete / -1 invalid, every length checked against what is there
 * and against its bound before anything is read past it.
 */
#include "relay/feedproto.h"

#include <string.h>
#include <strings.h>

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (24 - 8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static const uint32_t meta_max[5] = {
    sizeof(((struct space_meta *)0)->name) - 1, sizeof(((struct space_meta *)0)->description) - 1,
    sizeof(((struct space_meta *)0)->genre) - 1, sizeof(((struct space_meta *)0)->url) - 1,
    sizeof(((struct space_meta *)0)->bitrate) - 1};

static int parse_header(const unsigned char *p, uint32_t len, struct feed_frame *f)
{
    if (len < 28)
        return -1;
    f->header.version = get16(p);
    f->header.channels = get16(p + 2);
    f->header.serial = get32(p + 4);
    f->header.epoch = get32(p + 8);
    f->header.keepalive_ms = get32(p + 12);
    f->header.start = get64(p + 16);
    if (f->header.version != FEED_VERSION ||
        (f->header.channels != 1 && f->header.channels != 2) || f->header.keepalive_ms == 0 ||
        f->header.keepalive_ms > FEED_KEEPALIVE_MAX_MS)
        return -1;
    uint32_t ogg = get32(p + 24), off = 28;
    if (ogg < 27 || ogg > FEED_MAX_OGG_HEADERS || ogg > len - off || memcmp(p + off, "OggS", 4))
        return -1;
    f->header.ogg = (struct feed_str){p + off, ogg};
    off += ogg;
    for (int i = 0; i < 5; i++) {
        if (len - off < 2)
            return -1;
        uint32_t n = get16(p + off);
        off += 2;
        if (n > meta_max[i] || n > len - off)
            return -1;
        f->header.meta[i] = (struct feed_str){p + off, n};
        off += n;
    }
    return off == len ? 0 : -1;
}

int feed_parse(const unsigned char *buf, size_t len, struct feed_frame *f)
{
    if (len < FEED_HEAD_BYTES)
        return -2;
    uint32_t plen = get32(buf + 4);
    if (buf[1] != 0 || get16(buf + 2) != 0 || plen > FEED_MAX_PAYLOAD)
        return -1;
    if (len - FEED_HEAD_BYTES < plen)
        return -2;
    const unsigned char *p = buf + FEED_HEAD_BYTES;
    memset(f, 0, sizeof(*f));
    f->type = buf[0];
    switch (buf[0]) {
    case FEED_HEADER:
        if (parse_header(p, plen, f) < 0)
            return -1;
        break;
    case FEED_PAGE:
        if (plen < FEED_PAGE_FIXED + 27 || memcmp(p + FEED_PAGE_FIXED, "OggS", 4) != 0)
            return -1;
        f->page.seq = get64(p);
        f->page.granule = get64(p + 8);
        f->page.samples = get32(p + 16);
        /* a page lasts at most 255 packets of 120 ms */
        if (f->page.samples > 255u * 5760)
            return -1;
        f->page.page = (struct feed_str){p + FEED_PAGE_FIXED, plen - FEED_PAGE_FIXED};
        break;
    case FEED_STATE:
        if (plen > SHARED_STATE_MAX)
            return -1;
        f->state = (struct feed_str){p, plen};
        break;
    case FEED_CAPTIONS:
        if (plen < FEED_CAPTIONS_FIXED || p[0] > 2 || p[1] > 35 ||
            (p[2] & ~FEED_CAPTIONS_SAME_LIST) || p[3] || plen - FEED_CAPTIONS_FIXED < p[1] ||
            plen - FEED_CAPTIONS_FIXED - p[1] > SHARED_CAPTIONS_MAX ||
            ((p[2] & FEED_CAPTIONS_SAME_LIST) && plen != FEED_CAPTIONS_FIXED + (uint32_t)p[1]))
            return -1;
        f->captions.on = p[0];
        f->captions.same_list = p[2] & FEED_CAPTIONS_SAME_LIST;
        f->captions.epoch = get32(p + 4);
        f->captions.final_ms = (int64_t)get64(p + 8);
        f->captions.lang = (struct feed_str){p + FEED_CAPTIONS_FIXED, p[1]};
        f->captions.list = (struct feed_str){p + FEED_CAPTIONS_FIXED + p[1],
                                             plen - FEED_CAPTIONS_FIXED - p[1]};
        break;
    case FEED_KEEPALIVE:
        if (plen != 12)
            return -1;
        f->keepalive.head = get64(p);
        f->keepalive.flags = get32(p + 8);
        if (f->keepalive.flags & ~FEED_KEEPALIVE_STARVED)
            return -1;
        break;
    case FEED_END:
        if (plen != 1 || (p[0] != FEED_END_ENDED && p[0] != FEED_END_RESTART))
            return -1;
        f->end = p[0];
        break;
    case FEED_REPORT: {
        if (plen < FEED_REPORT_FIXED + 2 || plen > FEED_REPORT_MAX - FEED_HEAD_BYTES)
            return -1;
        f->report.tree = get32(p);
        f->report.connections = get32(p + 4);
        f->report.capacity = get32(p + 8);
        f->report.load_milli = get16(p + 12);
        f->report.flags = get16(p + 14);
        f->report.own = get32(p + 16);
        f->report.id = get64(p + 20);
        f->report.gen = get32(p + 28);
        f->report.nrows = get16(p + 32);
        if ((f->report.flags & ~FEED_REPORT_DRAINING) || f->report.own > f->report.tree ||
            f->report.load_milli > 1000 || f->report.id == 0 ||
            f->report.nrows > FEED_REPORT_ROWS || get16(p + 34) != 0)
            return -1;
        uint32_t off = FEED_REPORT_FIXED;
        struct feed_str *str[2] = {&f->report.name, &f->report.url};
        for (int i = 0; i < 2; i++) {
            if (off >= plen)
                return -1;
            uint32_t n = p[off++];
            if (n > plen - off || !feed_text_ok((const char *)p + off, n, i))
                return -1;
            *str[i] = (struct feed_str){p + off, n};
            off += n;
        }
        if (plen - off != f->report.nrows * FEED_ROW_BYTES)
            return -1;
        f->report.rows = p + off;
        /* every row names another relay, within the age limit, and the rows fit in <tree> */
        uint64_t sum = f->report.own;
        for (uint32_t i = 0; i < f->report.nrows; i++) {
            struct feed_tree_row r;
            feed_report_row(f, i, &r);
            if (r.id == 0 || r.id == f->report.id || r.age_ms > FEED_REPORT_AGE_MS)
                return -1;
            sum += r.own;
        }
        if (sum > f->report.tree)
            return -1;
        break;
    }
    default:
        return -1;
    }
    return (int)(FEED_HEAD_BYTES + plen);
}

static void put_head(struct buf *b, uint8_t type, uint32_t len)
{
    unsigned char h[FEED_HEAD_BYTES] = {type, 0, 0, 0};
    put32(h + 4, len);
    buf_append(b, h, sizeof(h));
}

void feed_put_header(struct buf *b, uint16_t channels, uint32_t serial, uint32_t epoch,
                     uint32_t keepalive_ms, uint64_t start, const void *ogg, uint32_t ogg_len,
                     const struct space_meta *meta)
{
    const char *m[5] = {meta->name, meta->description, meta->genre, meta->url, meta->bitrate};
    uint32_t ml[5], len = 28 + ogg_len;
    for (int i = 0; i < 5; i++) {
        ml[i] = (uint32_t)strnlen(m[i], meta_max[i]);
        len += 2 + ml[i];
    }
    put_head(b, FEED_HEADER, len);
    unsigned char f[28] = {0};
    put16(f, FEED_VERSION);
    put16(f + 2, channels);
    put32(f + 4, serial);
    put32(f + 8, epoch);
    put32(f + 12, keepalive_ms);
    put64(f + 16, start);
    put32(f + 24, ogg_len);
    buf_append(b, f, sizeof(f));
    buf_append(b, ogg, ogg_len);
    for (int i = 0; i < 5; i++) {
        unsigned char l[2];
        put16(l, (uint16_t)ml[i]);
        buf_append(b, l, 2);
        buf_append(b, m[i], ml[i]);
    }
}

void feed_page_head(unsigned char out[FEED_HEAD_BYTES + FEED_PAGE_FIXED], uint64_t seq,
                    uint64_t granule, uint32_t samples, uint32_t page_len)
{
    memset(out, 0, FEED_HEAD_BYTES);
    out[0] = FEED_PAGE;
    put32(out + 4, FEED_PAGE_FIXED + page_len);
    put64(out + 8, seq);
    put64(out + 16, granule);
    put32(out + 24, samples);
}

void feed_put_state(struct buf *b, const void *json, uint32_t len)
{
    put_head(b, FEED_STATE, len);
    buf_append(b, json, len);
}

void feed_put_captions(struct buf *b, uint8_t on, uint32_t epoch, int64_t final_ms,
                       const char *lang, const void *list, uint32_t len)
{
    size_t ll = strnlen(lang, 35);
    if (!list)
        len = 0;
    put_head(b, FEED_CAPTIONS, FEED_CAPTIONS_FIXED + (uint32_t)ll + len);
    unsigned char v[FEED_CAPTIONS_FIXED] = {on, (unsigned char)ll,
                                            list ? 0 : FEED_CAPTIONS_SAME_LIST};
    put32(v + 4, epoch);
    put64(v + 8, (uint64_t)final_ms);
    buf_append(b, v, sizeof(v));
    buf_append(b, lang, ll);
    if (list)
        buf_append(b, list, len);
}

void feed_put_keepalive(struct buf *b, uint64_t head, uint32_t flags)
{
    put_head(b, FEED_KEEPALIVE, 12);
    unsigned char v[12];
    put64(v, head);
    put32(v + 8, flags & FEED_KEEPALIVE_STARVED);
    buf_append(b, v, 12);
}

void feed_put_end(struct buf *b, uint8_t reason)
{
    put_head(b, FEED_END, 1);
    buf_append(b, &reason, 1);
}

int feed_text_ok(const char *s, size_t n, int is_url)
{
    if (n == 0)
        return 1;
    if (n > (is_url ? FEED_URL_MAX : FEED_NAME_MAX))
        return 0;
    size_t i = 0;
    if (is_url) {
        if (n > 7 && memcmp(s, "http://", 7) == 0)
            i = 7;
        else if (n > 8 && memcmp(s, "https://", 8) == 0)
            i = 8;
        else
            return 0;
    }
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '-' || ch == '_' || ch == ':' ||
                 (is_url && (ch == '[' || ch == ']'));
        if (!ok)
            return 0;
    }
    return 1;
}

size_t feed_report(unsigned char out[FEED_REPORT_MAX], const struct feed_report_fields *r)
{
    const char *str[2] = {r->name ? r->name : "", r->url ? r->url : ""};
    size_t sl[2];
    for (int i = 0; i < 2; i++) {
        sl[i] = strnlen(str[i], i ? FEED_URL_MAX + 1 : FEED_NAME_MAX + 1);
        if (!feed_text_ok(str[i], sl[i], i))
            sl[i] = 0;
    }
    uint32_t nrows = r->nrows < FEED_REPORT_ROWS ? r->nrows : FEED_REPORT_ROWS;
    uint64_t sum = r->own;
    for (uint32_t i = 0; i < nrows; i++)
        sum += r->rows[i].own;
    size_t len = FEED_HEAD_BYTES + FEED_REPORT_FIXED;
    memset(out, 0, len);
    out[0] = FEED_REPORT;
    put32(out + 8, sum > r->tree ? (uint32_t)(sum > UINT32_MAX ? UINT32_MAX : sum) : r->tree);
    put32(out + 12, r->connections);
    put32(out + 16, r->capacity);
    put16(out + 20, r->load_milli > 1000 ? 1000 : r->load_milli);
    put16(out + 22, r->flags & FEED_REPORT_DRAINING);
    put32(out + 24, r->own);
    put64(out + 28, r->id);
    put32(out + 36, r->gen);
    put16(out + 40, (uint16_t)nrows);
    for (int i = 0; i < 2; i++) {
        out[len++] = (unsigned char)sl[i];
        memcpy(out + len, str[i], sl[i]);
        len += sl[i];
    }
    for (uint32_t i = 0; i < nrows; i++) {
        put64(out + len, r->rows[i].id);
        put32(out + len + 8, r->rows[i].gen);
        put32(out + len + 12, r->rows[i].own);
        put32(out + len + 16,
              r->rows[i].age_ms < FEED_REPORT_AGE_MS ? r->rows[i].age_ms : FEED_REPORT_AGE_MS);
        len += FEED_ROW_BYTES;
    }
    put32(out + 4, (uint32_t)(len - FEED_HEAD_BYTES));
    return len;
}

void feed_report_row(const struct feed_frame *f, uint32_t i, struct feed_tree_row *row)
{
    const unsigned char *p = f->report.rows + (size_t)i * FEED_ROW_BYTES;
    row->id = get64(p);
    row->gen = get32(p + 8);
    row->own = get32(p + 12);
    row->age_ms = get32(p + 16);
}

/* <name>: <value> lines: 1 if line <l>/<n> is header <name>, with its trimmed value. */
static int header_is(const char *l, size_t n, const char *name, const char **v, size_t *vn)
{
    size_t k = strlen(name);
    if (n <= k || l[k] != ':' || strncasecmp(l, name, k) != 0)
        return 0;
    const char *p = l + k + 1, *e = l + n;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *v = p;
    *vn = (size_t)(e - p);
    return 1;
}

static int value_is(const char *v, size_t n, const char *want)
{
    size_t k = strlen(want);
    /* a media type may carry parameters: "audio/ogg; codecs=opus" */
    return n >= k && strncasecmp(v, want, k) == 0 && (n == k || v[k] == ';' || v[k] == ' ');
}

int feed_parse_response_head(const unsigned char *buf, size_t len, struct feed_http_head *h)
{
    size_t scan = len < FEED_MAX_HEAD ? len : FEED_MAX_HEAD;
    const unsigned char *end = NULL;
    for (size_t i = 0; i + 3 < scan; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = buf + i;
            break;
        }
    if (!end)
        return len >= FEED_MAX_HEAD ? -1 : -2;
    memset(h, 0, sizeof(*h));
    const char *s = (const char *)buf, *e = (const char *)end;
    /* status line: HTTP/1.x NNN ... or ICY NNN ... */
    const char *p;
    if (e - s >= 12 && memcmp(s, "HTTP/1.", 7) == 0 && s[8] == ' ')
        p = s + 9;
    else if (e - s >= 7 && memcmp(s, "ICY ", 4) == 0)
        p = s + 4;
    else
        return -1;
    if (e - p < 3 || p[0] < '1' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] < '0' ||
        p[2] > '9' || (e - p > 3 && p[3] != ' ' && p[3] != '\r'))
        return -1;
    h->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    int feed_type = 0;
    const char *l = memchr(p, '\n', (size_t)(e - p));
    while (l && l < e) {
        l++;
        const char *nl = memchr(l, '\r', (size_t)(e - l));
        size_t n = nl ? (size_t)(nl - l) : (size_t)(e - l);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)l[i] < 0x20 && l[i] != '\t')
                return -1;
        const char *v;
        size_t vn;
        if (header_is(l, n, "Content-Type", &v, &vn)) {
            if (value_is(v, vn, FEED_CONTENT_TYPE))
                feed_type = 1;
            else if (value_is(v, vn, "audio/ogg") || value_is(v, vn, "application/ogg") ||
                     value_is(v, vn, "audio/opus"))
                h->kind = FEED_KIND_OGG;
            else if (value_is(v, vn, "application/json"))
                h->kind = FEED_KIND_JSON;
        } else if (header_is(l, n, "X-Rostrum-Feed", &v, &vn)) {
            int ver = 0;
            for (size_t i = 0; i < vn && i < 6; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return -1;
                ver = ver * 10 + (v[i] - '0');
            }
            h->feed_version = ver;
        }
        l = memchr(l, '\n', (size_t)(e - l));
    }
    if (feed_type)
        h->kind = FEED_KIND_FEED;
    return (int)(end - buf) + 4;
}
