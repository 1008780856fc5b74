#include "stage/schedule.h"

#include <opus/opus.h>
#include <string.h>

#include "mixer/mixer.h"
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
    if (s->same >= 3) {
        *len = s->pkt_len;
        return s->pkt;
    }
    static const float zeros[MIXER_FRAME];
    unsigned char out[sizeof(s->pkt)];
    int n = opus_encode_float(s->lobby, zeros, MIXER_FRAME, out, (opus_int32)sizeof(out));
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
}

void schedule_free(struct schedule *s)
{
    if (s->lobby)
        opus_encoder_destroy(s->lobby);
    s->lobby = NULL;
}
