#include "stage/schedule.h"

#include <errno.h>
#include <fcntl.h>
#include <opus/opus.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mixer/mixer.h"
#include "ogg/demux.h"
#include "util/check.h"
#include "util/utf8.h"

/* 1 if <s> holds a C0 or C1 control or DEL (it is valid UTF-8 already). */
static int has_controls(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n <= 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return 1;
        i += (size_t)n;
    }
    return 0;
}

const char *schedule_check(const char *title, size_t tlen, const char *desc, size_t dlen,
                           int64_t start_s, int64_t now_s, int nscheduled)
{
    if (tlen == 0 || tlen > SCHEDULE_TITLE_MAX)
        return "title= is required: 1-127 bytes of UTF-8";
    if (!utf8_valid(title, tlen) || has_controls(title, tlen))
        return "bad title: it must be valid UTF-8 without control characters";
    if (dlen > SCHEDULE_DESC_MAX)
        return "description too long: at most 255 bytes";
    if (!utf8_valid(desc, dlen) || has_controls(desc, dlen))
        return "bad description: it must be valid UTF-8 without control characters";
    if (start_s < now_s + SCHEDULE_MIN_AHEAD_S)
        return "start is in the past: give a time at least 5 s ahead";
    if (start_s > now_s + SCHEDULE_MAX_AHEAD_S)
        return "start is too far ahead: at most 7 days";
    if (nscheduled >= SCHEDULE_MAX_SPACES)
        return "too many scheduled spaces waiting to start (16)";
    return NULL;
}

struct schedule_holding {
    unsigned char *pkts; /* the packets, back to back */
    uint32_t *lens;
    uint32_t npkts, cap_pkts, bytes, next;
    OpusDecoder *dec;
    int16_t fifo[MIXER_MAX_PUSH + MIXER_FRAME];
    int nfifo;
};

static int holding_packet(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct schedule_holding *h = arg;
    if (h->npkts == h->cap_pkts) {
        h->cap_pkts = h->cap_pkts ? 2 * h->cap_pkts : 256;
        h->lens = realloc(h->lens, h->cap_pkts * sizeof(*h->lens));
        BUG_ON(!h->lens);
    }
    memcpy(h->pkts + h->bytes, pkt, len); /* fits: packets are smaller than the file */
    h->lens[h->npkts++] = (uint32_t)len;
    h->bytes += (uint32_t)len;
    return 0;
}

static void holding_free(struct schedule_holding *h)
{
    if (!h)
        return;
    if (h->dec)
        opus_decoder_destroy(h->dec);
    free(h->pkts);
    free(h->lens);
    free(h);
}

int schedule_load_holding(struct schedule *s, const char *path, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    unsigned char *file = malloc(SCHEDULE_HOLDING_MAX + 1);
    BUG_ON(!file);
    size_t n = 0;
    ssize_t r;
    while (n <= SCHEDULE_HOLDING_MAX &&
           (r = read(fd, file + n, SCHEDULE_HOLDING_MAX + 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    struct schedule_holding *h = calloc(1, sizeof(*h));
    BUG_ON(!h);
    h->pkts = malloc(n ? n : 1);
    BUG_ON(!h->pkts);
    int err;
    h->dec = opus_decoder_create(MIXER_RATE, 1, &err);
    struct ogg_demux *d = ogg_demux_new();
    const struct ogg_demux_cb cb = {NULL, holding_packet};
    int rc = n > SCHEDULE_HOLDING_MAX ? -2 : ogg_demux_feed(d, file, n, &cb, h);
    *why = rc == -2 ? "over 1 MiB" : rc < 0 ? ogg_demux_error(d) : !h->dec ? "no decoder"
         : !h->npkts ? "no Opus audio in it" : NULL;
    ogg_demux_free(d);
    free(file);
    if (*why) {
        holding_free(h);
        return -1;
    }
    holding_free(s->holding);
    s->holding = h;
    return 0;
}

/* The next 20 ms of holding audio, the file looped, into <pcm>. */
static void holding_frame(struct schedule_holding *h, float *pcm)
{
    for (int tries = 0; h->nfifo < MIXER_FRAME && tries < 64; tries++) {
        uint32_t off = 0;
        if (h->next >= h->npkts)
            h->next = 0;
        for (uint32_t i = 0; i < h->next; i++) /* small files: a scan is fine at 50/s */
            off += h->lens[i];
        int got = opus_decode(h->dec, h->pkts + off, (opus_int32)h->lens[h->next],
                              h->fifo + h->nfifo, MIXER_MAX_PUSH, 0);
        h->next++;
        if (got > 0)
            h->nfifo += got;
    }
    for (int i = 0; i < MIXER_FRAME; i++)
        pcm[i] = i < h->nfifo ? h->fifo[i] / 32768.0f : 0.0f;
    int used = h->nfifo < MIXER_FRAME ? h->nfifo : MIXER_FRAME;
    memmove(h->fifo, h->fifo + used, (size_t)(h->nfifo - used) * sizeof(h->fifo[0]));
    h->nfifo -= used;
}

const unsigned char *schedule_lobby_packet(struct schedule *s, int *len)
{
    *len = 0;
    if (!s->lobby) {
        int err;
        /* the mixer's settings, so that the stream's one OpusHead (its pre-skip) fits both */
        OpusEncoder *e = opus_encoder_create(MIXER_RATE, 1, OPUS_APPLICATION_AUDIO, &err);
        if (!e)
            return NULL;
        opus_encoder_ctl(e, OPUS_SET_BITRATE(48000));
        s->lobby = e;
    }
    if (s->same >= 3 && !s->holding) {
        *len = s->pkt_len;
        return s->pkt;
    }
    static const float zeros[MIXER_FRAME];
    float frame[MIXER_FRAME];
    if (s->holding)
        holding_frame(s->holding, frame);
    unsigned char out[sizeof(s->pkt)];
    int n = opus_encode_float(s->lobby, s->holding ? frame : zeros, MIXER_FRAME, out,
                              (opus_int32)sizeof(out));
    s->encodes++;
    if (n <= 0)
        return NULL;
    s->same = n == s->pkt_len && memcmp(out, s->pkt, (size_t)n) == 0 ? s->same + 1 : 0;
    memcpy(s->pkt, out, (size_t)n);
    s->pkt_len = n;
    *len = n;
    return s->pkt;
}

void schedule_state_json(const struct schedule *s, int64_t now_s, struct buf *out)
{
    buf_printf(out, ",\"live\":%s", s->live ? "true" : "false");
    if (!s->start_s)
        return;
    int64_t in = s->start_s - now_s;
    buf_printf(out, ",\"scheduled\":true,\"starts_at\":%lld,\"starts_in_s\":%lld,\"lobby\":%s",
               (long long)s->start_s, (long long)(in > 0 && !s->live ? in : 0),
               s->live ? "false" : "true");
    buf_puts(out, ",\"description\":");
    buf_json_str(out, s->description, strlen(s->description));
    if (s->live && s->live_at_ms)
        buf_printf(out, ",\"live_at_ms\":%lld,\"live_granule\":%llu", (long long)s->live_at_ms,
                   (unsigned long long)s->live_granule);
}

void schedule_free(struct schedule *s)
{
    if (s->lobby)
        opus_encoder_destroy(s->lobby);
    s->lobby = NULL;
    holding_free(s->holding);
    s->holding = NULL;
}
