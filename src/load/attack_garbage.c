/*
 * load/attack_garbage: "garbage", one message of junk per connection, up to --max-bytes
 * (<= 16 KiB), in seven flavours taken in turn (connection k gets k % ATTACK_G_KINDS): random
 * bytes, a request line then random bytes, an overlong path, an overlong header, a random
 * method, NUL and control bytes in a header, text without any line end. Then it reads the
 * answer, waiting --timeout-ms for it, and counts per flavour: answered 400, 431, another
 * status, or nothing.
 *
 * The message is generated again from its seed on every call (attack_garbage is deterministic
 * in its arguments), so a partial send resumes where it stopped without keeping the bytes.
 */
#include <stdio.h>
#include <string.h>

#include "load/attack_int.h"

/* Appends <s> to <out> at <*o>, as far as <cap> allows. */
static void put_str(uint8_t *out, uint32_t *o, uint32_t cap, const char *s)
{
    size_t l = strlen(s);
    if (l > cap - *o)
        l = cap - *o;
    memcpy(out + *o, s, l);
    *o += (uint32_t)l;
}

uint32_t attack_garbage(enum attack_garbage_kind kind, uint32_t seed, uint32_t len,
                        const char *path, const char *host, uint8_t *out)
{
    uint32_t s = seed * 2654435761u ^ 0x9e3779b9u;
    if (s == 0)
        s = 1;
    const uint32_t cap = ATTACK_GARBAGE_MAX;
    if (len < 1)
        len = 1;
    if (len > cap)
        len = cap;
    char line[LOAD_URL_MAX_PATH + 128];
    snprintf(line, sizeof(line), "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host);
    uint32_t o = 0;
    switch (kind) {
    case ATTACK_G_RANDOM:
        for (; o < len; o++)
            out[o] = (uint8_t)atk_rnd_next(&s);
        return o;
    case ATTACK_G_JUNK_HEADER:
        put_str(out, &o, cap, line);
        if (len < o + 16)
            len = o + 16 < cap ? o + 16 : cap;
        for (; o < len; o++)
            out[o] = (uint8_t)atk_rnd_next(&s);
        return o;
    case ATTACK_G_LONG_PATH: {
        put_str(out, &o, cap, "GET /");
        uint32_t tail = (uint32_t)strlen(" HTTP/1.1\r\n\r\n");
        uint32_t stop = len > o + tail ? len - tail : o + 1;
        for (; o < stop; o++)
            out[o] = (uint8_t)('A' + atk_rnd_next(&s) % 26);
        put_str(out, &o, cap, " HTTP/1.1\r\n\r\n");
        return o;
    }
    case ATTACK_G_LONG_HEADER: {
        put_str(out, &o, cap, line);
        put_str(out, &o, cap, "X-Long: ");
        uint32_t stop = len > o + 4 ? len - 4 : o + 1;
        for (; o < stop; o++)
            out[o] = (uint8_t)('a' + atk_rnd_next(&s) % 26);
        put_str(out, &o, cap, "\r\n\r\n");
        return o;
    }
    case ATTACK_G_BAD_METHOD: {
        uint32_t ml = 1 + atk_rnd_next(&s) % 16;
        for (uint32_t i = 0; i < ml; i++)
            out[o++] = (uint8_t)(0x21 + atk_rnd_next(&s) % 94);
        char rest[LOAD_URL_MAX_PATH + 128];
        snprintf(rest, sizeof(rest), " %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
        put_str(out, &o, cap, rest);
        return o;
    }
    case ATTACK_G_CONTROL: {
        put_str(out, &o, cap, line);
        static const uint8_t ctl[] = {'X',  '-', 'C', ':', ' ',  'a',  0,    'b',  1,    0x7f,
                                      0x1b, '[', '2', 'J', 0xff, 0xfe, '\r', '\n', '\r', '\n'};
        memcpy(out + o, ctl, sizeof(ctl));
        return o + (uint32_t)sizeof(ctl);
    }
    case ATTACK_G_NO_NEWLINE:
    default:
        for (; o < len; o++)
            out[o] = (uint8_t)(0x20 + atk_rnd_next(&s) % 95);
        return o;
    }
}

static void garbage_open(struct atk_worker *w, struct atk_conn *c, int fd)
{
    c->kind = (uint8_t)(c->len % ATTACK_G_KINDS); /* c->len: the connection's number */
    uint32_t s = c->seed | 1;
    c->len = 1 + atk_rnd_next(&s) % w->o->max_bytes;
}

static const void *garbage_chunk(struct atk_worker *w, struct atk_conn *c, uint32_t *len)
{
    const struct load_url *u = &w->o->url;
    *len = attack_garbage(c->kind, c->seed, c->len, u->path, u->host, w->gbuf);
    return w->gbuf;
}

static int garbage_sent(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    if (c->t_due == 0) {
        w->res.garbage_sent[c->kind]++;
        c->t_due = now + (int64_t)w->o->timeout_ms * 1000;
    }
    return 0;
}

static int garbage_head_end(struct atk_worker *w, struct atk_conn *c)
{
    /* a message that happened to be a valid request got the stream: answered, done (the
     * others stay to see whether the server closes after its answer) */
    if (c->status == 200) {
        atk_conn_finish(w, c, END_DONE);
        return -1;
    }
    return 0;
}

static void garbage_scan(struct atk_worker *w, uint32_t slot, int64_t now)
{
    struct atk_conn *c = &w->conns[slot];
    if (c->state == C_WAITING && now >= c->t_due)
        atk_conn_finish(w, c, END_TIMEOUT);
}

static void garbage_finish(struct atk_worker *w, struct atk_conn *c, int how)
{
    if (!(c->flags & CF_CONNECTED))
        return;
    int col = !(c->flags & CF_STATUS) ? 3 : c->status == 400 ? 0 : c->status == 431 ? 1 : 2;
    w->res.garbage_http[c->kind][col]++;
}

const struct atk_mode atk_mode_garbage = {
    .pressure = 1,
    .open = garbage_open,
    .chunk = garbage_chunk,
    .sent = garbage_sent,
    .head_end = garbage_head_end,
    .scan = garbage_scan,
    .finish = garbage_finish,
};
