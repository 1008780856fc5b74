/*
 * Unit tests for stage/schedule: what a host may schedule (schedule_check), the lobby's
 * holding packets (valid Opus that decodes to silence), and the state fields.
 */
#include <opus/opus.h>
#include <string.h>

#include "harness.h"
#include "mixer/mixer.h"
#include "stage/schedule.h"
#include "util/buf.h"

#define NOW 1800000000LL
#define CHECK(t, d, start, n) schedule_check(t, strlen(t), d, strlen(d), start, NOW, n)

TEST(check_accepts_a_good_schedule)
{
    ASSERT(CHECK("Evening talk", "", NOW + 60, 0) == NULL);
    ASSERT(CHECK("\xc3\xa9t\xc3\xa9", "Ask me anything", NOW + SCHEDULE_MAX_AHEAD_S, 15) == NULL);
    ASSERT(CHECK("x", "", NOW + SCHEDULE_MIN_AHEAD_S, 0) == NULL);
}

TEST(check_refuses_bad_times)
{
    ASSERT(strstr(CHECK("t", "", NOW - 1, 0), "in the past"));
    ASSERT(strstr(CHECK("t", "", NOW + SCHEDULE_MIN_AHEAD_S - 1, 0), "in the past"));
    ASSERT(strstr(CHECK("t", "", NOW + SCHEDULE_MAX_AHEAD_S + 1, 0), "too far ahead"));
    ASSERT(strstr(CHECK("t", "", 0, 0), "in the past"));
}

TEST(check_refuses_bad_text_and_the_bound)
{
    char long_title[SCHEDULE_TITLE_MAX + 2];
    memset(long_title, 'a', sizeof(long_title) - 1);
    long_title[sizeof(long_title) - 1] = '\0';
    ASSERT(strstr(CHECK("", "", NOW + 60, 0), "title= is required"));
    ASSERT(strstr(CHECK(long_title, "", NOW + 60, 0), "title= is required"));
    long_title[SCHEDULE_TITLE_MAX] = '\0';
    ASSERT(CHECK(long_title, "", NOW + 60, 0) == NULL);
    ASSERT(strstr(CHECK("a\x01", "", NOW + 60, 0), "bad title"));
    ASSERT(strstr(CHECK("a\x7f", "", NOW + 60, 0), "bad title"));
    ASSERT(strstr(CHECK("a\xc2\x85", "", NOW + 60, 0), "bad title")); /* C1: NEL */
    ASSERT(strstr(CHECK("a\xff", "", NOW + 60, 0), "bad title"));
    ASSERT(strstr(CHECK("a", "line\nbreak", NOW + 60, 0), "bad description"));
    ASSERT(schedule_check("a\0b", 3, "", 0, NOW + 60, NOW, 0) != NULL); /* NUL inside */
    ASSERT(strstr(CHECK("a", "", NOW + 60, SCHEDULE_MAX_SPACES), "too many"));
}

TEST(lobby_packets_decode_to_silence)
{
    struct schedule s = {0};
    int err;
    OpusDecoder *d = opus_decoder_create(MIXER_RATE, 1, &err);
    ASSERT(d);
    for (int i = 0; i < 50; i++) {
        int len;
        const unsigned char *p = schedule_lobby_packet(&s, &len);
        ASSERT(p && len > 0);
        opus_int16 pcm[MIXER_FRAME];
        ASSERT(opus_decode(d, p, len, pcm, MIXER_FRAME, 0) == MIXER_FRAME);
        for (int j = 0; j < MIXER_FRAME; j++)
            ASSERT(pcm[j] == 0);
    }
    ASSERT(s.encodes < 10); /* settled: the same packet, no more encoding */
    opus_decoder_destroy(d);
    schedule_free(&s);
    schedule_free(&s);
}

TEST(state_fields)
{
    struct schedule s = {.start_s = NOW + 90, .live = 0};
    snprintf(s.description, sizeof(s.description), "say \"hi\"");
    struct buf b = {0};
    schedule_state_json(&s, NOW, &b);
    ASSERT(strstr(b.data, "\"live\":false,\"scheduled\":true,\"starts_at\":1800000090,"
                          "\"starts_in_s\":90,\"lobby\":true,\"description\":\"say \\\"hi\\\"\""));
    s.live = 1;
    b.len = 0;
    schedule_state_json(&s, NOW + 100, &b);
    ASSERT(strstr(b.data, "\"live\":true") && strstr(b.data, "\"starts_in_s\":0,\"lobby\":false"));
    struct schedule plain = {.live = 1};
    b.len = 0;
    schedule_state_json(&plain, NOW, &b);
    ASSERT(strcmp(b.data, ",\"live\":true") == 0);
    buf_free(&b);
}

int main(void)
{
    return RUN_TESTS();
}
