/*
 * Unit tests for util/utf8: the decoder against the categories of Markus Kuhn's "UTF-8
 * decoder capability and stress test" (correct text, boundary values, malformed sequences,
 * overlong forms, illegal code positions), cases written here from those categories; then
 * the sanitizer's replacements, control handling and cutting; then buf_json_str, which uses it.
 */
#include <string.h>

#include "harness.h"
#include "util/buf.h"
#include "util/utf8.h"

#define VALID(lit) utf8_valid(lit, sizeof(lit) - 1)

/* One whole sequence decodes to <want> using all of its bytes. */
static void expect_cp(const char *s, size_t len, uint32_t want)
{
    uint32_t cp = 0xdeadbeef;
    int n = utf8_decode((const unsigned char *)s, len, &cp);
    if (n != (int)len || cp != want)
        TEST_FAIL_("decode of %zu bytes: n %d cp U+%04X, want n %zu U+%04X", len, n,
                   (unsigned)cp, len, (unsigned)want);
    ASSERT(utf8_valid(s, len));
}
#define CP(lit, want) expect_cp(lit, sizeof(lit) - 1, want)

/* What utf8_sanitize makes of <in> with a roomy buffer. */
static const char *clean(const char *in, size_t len, unsigned flags)
{
    static char out[1024];
    utf8_sanitize(out, sizeof(out), in, len, flags);
    return out;
}
#define CLEAN(lit) clean(lit, sizeof(lit) - 1, 0)
#define R UTF8_REPLACEMENT

/* 1: correct UTF-8 text */
TEST(kuhn1_correct_text)
{
    ASSERT(VALID("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")); /* kosme, in Greek */
    ASSERT(VALID("plain ASCII, nothing else"));
    ASSERT(VALID("Gr\xc3\xbc\xc3\x9f" "e \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x99"));
    ASSERT(VALID(""));
    ASSERT_EQ_STR(CLEAN("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
                  "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
}

/* 2.1: the first code point of each length; 2.2: the last; 2.3: other boundaries */
TEST(kuhn2_boundaries)
{
    expect_cp("\0", 1, 0x0);
    CP("\xc2\x80", 0x80);
    CP("\xe0\xa0\x80", 0x800);
    CP("\xf0\x90\x80\x80", 0x10000);
    CP("\x7f", 0x7f);
    CP("\xdf\xbf", 0x7ff);
    CP("\xef\xbf\xbf", 0xffff); /* a noncharacter, but a scalar value: valid */
    CP("\xf4\x8f\xbf\xbf", 0x10ffff);
    CP("\xed\x9f\xbf", 0xd7ff);  /* just below the surrogates */
    CP("\xee\x80\x80", 0xe000);  /* just above */
    CP("\xef\xbf\xbd", 0xfffd);
    CP("\xef\xbf\xbe", 0xfffe);
    /* the last 4-, 5- and 6-byte forms of the old ISO 10646: past U+10FFFF */
    ASSERT(!VALID("\xf4\x90\x80\x80")); /* U+110000 */
    ASSERT(!VALID("\xf7\xbf\xbf\xbf")); /* U+1FFFFF */
    ASSERT(!VALID("\xfb\xbf\xbf\xbf\xbf"));
    ASSERT(!VALID("\xfd\xbf\xbf\xbf\xbf\xbf"));
    ASSERT(!VALID("\xf8\x88\x80\x80\x80"));
    ASSERT(!VALID("\xfc\x84\x80\x80\x80\x80"));
}

/* 3.1: unexpected continuation bytes */
TEST(kuhn3_1_continuation_bytes)
{
    for (int b = 0x80; b <= 0xbf; b++) {
        char s[3] = {'a', (char)b, 'z'};
        ASSERT(!utf8_valid(s, 3));
        ASSERT_EQ_STR(clean(s, 3, 0), "a" R "z");
    }
    ASSERT_EQ_STR(CLEAN("\x80\xbf"), R R);
    ASSERT_EQ_STR(CLEAN("\x80\xbf\x80"), R R R);
    ASSERT_EQ_STR(CLEAN("\x80\xbf\x80\xbf"), R R R R);
}

/* 3.2: lonely start bytes, each followed by a space */
TEST(kuhn3_2_lonely_start_bytes)
{
    for (int b = 0xc0; b <= 0xff; b++) {
        char s[2] = {(char)b, ' '};
        ASSERT(!utf8_valid(s, 2));
        ASSERT_EQ_STR(clean(s, 2, 0), R " ");
    }
}

/* 3.3: sequences with the last byte missing, 3.4: those concatenated */
TEST(kuhn3_3_last_byte_missing)
{
    /* overlong or invalid leads: each byte is its own subpart (C0, E0 80, F0 80 80 ...) */
    ASSERT_EQ_STR(CLEAN("\xc0"), R);
    ASSERT_EQ_STR(CLEAN("\xe0\x80"), R R);
    ASSERT_EQ_STR(CLEAN("\xf0\x80\x80"), R R R);
    ASSERT_EQ_STR(CLEAN("\xf8\x80\x80\x80"), R R R R);
    ASSERT_EQ_STR(CLEAN("\xfc\x80\x80\x80\x80"), R R R R R);
    /* valid prefixes of the highest value of each length: one subpart each */
    ASSERT_EQ_STR(CLEAN("\xdf"), R);
    ASSERT_EQ_STR(CLEAN("\xef\xbf"), R);
    ASSERT_EQ_STR(CLEAN("\xf4\x8f\xbf"), R);
    ASSERT_EQ_STR(CLEAN("\xe1\x80" "a"), R "a");
    ASSERT_EQ_STR(CLEAN("\xf1\x80\x80" "a"), R "a");
    uint32_t cp;
    ASSERT_EQ_INT(utf8_decode((const unsigned char *)"\xf4\x8f\xbf", 3, &cp), -3);
    ASSERT_EQ_INT(utf8_decode((const unsigned char *)"\xf4\x8f\xbf\xbf", 3, &cp), -3);
    ASSERT_EQ_INT(utf8_decode((const unsigned char *)"\xe2\x82", 2, &cp), -2);
    /* 3.4 */
    ASSERT_EQ_STR(CLEAN("\xdf\xef\xbf\xf4\x8f\xbf" "end"), R R R "end");
    /* Unicode's own example (Table 3-8): 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 */
    ASSERT_EQ_STR(CLEAN("a\xf1\x80\x80\xe1\x80\xc2" "b\x80" "c\x80\xbf" "d"),
                  "a" R R R "b" R "c" R R "d");
}

/* 3.5: bytes that never appear */
TEST(kuhn3_5_impossible_bytes)
{
    ASSERT(!VALID("\xfe"));
    ASSERT(!VALID("\xff"));
    ASSERT_EQ_STR(CLEAN("\xfe\xfe\xff\xff"), R R R R);
}

/* 4: overlong forms, of '/', the largest overlongs, and of NUL */
TEST(kuhn4_overlong)
{
    ASSERT(!VALID("\xc0\xaf"));
    ASSERT(!VALID("\xe0\x80\xaf"));
    ASSERT(!VALID("\xf0\x80\x80\xaf"));
    ASSERT(!VALID("\xf8\x80\x80\x80\xaf"));
    ASSERT(!VALID("\xfc\x80\x80\x80\x80\xaf"));
    ASSERT(!VALID("\xc1\xbf"));
    ASSERT(!VALID("\xe0\x9f\xbf"));
    ASSERT(!VALID("\xf0\x8f\xbf\xbf"));
    ASSERT(!VALID("\xc0\x80"));
    ASSERT(!VALID("\xe0\x80\x80"));
    ASSERT(!VALID("\xf0\x80\x80\x80"));
    /* an overlong '/' never turns into a '/' */
    ASSERT_EQ_STR(CLEAN("\xc0\xaf"), R R);
    ASSERT_EQ_STR(CLEAN("\xe0\x80\xaf"), R R R);
    ASSERT(strchr(CLEAN("\xf0\x80\x80\xaf"), '/') == NULL);
}

/* 5.1: single surrogates, 5.2: paired ones (CESU-8), 5.3: noncharacters (valid) */
TEST(kuhn5_surrogates_and_noncharacters)
{
    static const char *const single[] = {"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80",
                                         "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80",
                                         "\xed\xbf\xbf"};
    for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++) {
        ASSERT(!utf8_valid(single[i], 3));
        ASSERT_EQ_STR(clean(single[i], 3, 0), R R R);
    }
    ASSERT(!VALID("\xed\xa0\x80\xed\xb0\x80"));
    ASSERT(!VALID("\xed\xaf\xbf\xed\xbf\xbf"));
    ASSERT(VALID("\xef\xbf\xbe"));
    ASSERT(VALID("\xef\xb7\x90")); /* U+FDD0 */
    ASSERT(VALID("\xf4\x8f\xbf\xbe")); /* U+10FFFE */
}

TEST(sanitize_controls_become_spaces)
{
    ASSERT_EQ_STR(clean("a\tb\nc\x7f" "d\x1b[31m", 12, UTF8_NO_CONTROLS), "a b c d [31m");
    ASSERT_EQ_STR(clean("x\xc2\x85y", 4, UTF8_NO_CONTROLS), "x y"); /* NEL, a C1 control */
    ASSERT_EQ_STR(clean("x\xc2\xa0y", 4, UTF8_NO_CONTROLS), "x\xc2\xa0y"); /* NBSP stays */
    ASSERT_EQ_STR(clean("a\tb", 3, 0), "a\tb");
    ASSERT_EQ_STR(clean("ab\0cd", 5, UTF8_NO_CONTROLS), "ab"); /* NUL ends the copy */
}

TEST(sanitize_cuts_whole_code_points)
{
    char out[6];
    /* "ab" + U+20AC (3 bytes) + "c": 6 bytes with the NUL would be 7 */
    ASSERT_EQ_UINT(utf8_sanitize(out, sizeof(out), "ab\xe2\x82\xac" "c", 6, 0), 5);
    ASSERT_EQ_STR(out, "ab\xe2\x82\xac");
    ASSERT_EQ_UINT(utf8_sanitize(out, 5, "ab\xe2\x82\xac" "c", 6, 0), 2);
    ASSERT_EQ_STR(out, "ab");
    /* replacements grow the output: 47 bad bytes into 48 fit 15 replacements */
    char bad[47], name[48];
    memset(bad, 0xff, sizeof(bad));
    ASSERT_EQ_UINT(utf8_sanitize(name, sizeof(name), bad, sizeof(bad), 0), 45);
    ASSERT(utf8_valid(name, strlen(name)));
    ASSERT_EQ_UINT(utf8_sanitize(out, 1, "abc", 3, 0), 0);
    ASSERT_EQ_STR(out, "");
}

/* Every 1-, 2- and 3-byte input: the sanitizer's output is always valid, and valid input
 * is copied unchanged. */
TEST(sanitize_exhaustive_short_inputs)
{
    unsigned char s[3];
    char out[16];
    for (int len = 1; len <= 3; len++) {
        unsigned long total = 1ul << (8 * len);
        for (unsigned long v = 0; v < total; v++) {
            for (int i = 0; i < len; i++)
                s[i] = (unsigned char)(v >> (8 * i));
            if (memchr(s, 0, (size_t)len))
                continue;
            size_t n = utf8_sanitize(out, sizeof(out), (const char *)s, (size_t)len, 0);
            if (!utf8_valid(out, n))
                TEST_FAIL_("invalid output for %02x %02x %02x", s[0], s[1], s[2]);
            if (utf8_valid(s, (size_t)len) && (n != (size_t)len || memcmp(out, s, n)))
                TEST_FAIL_("valid input changed: %02x %02x %02x", s[0], s[1], s[2]);
        }
    }
}

/* Every scalar value encodes (by hand here) to something the decoder takes back. */
TEST(decode_every_scalar_value)
{
    for (uint32_t v = 0; v <= 0x10ffff; v++) {
        unsigned char s[4];
        size_t n;
        if (v >= 0xd800 && v <= 0xdfff)
            continue;
        if (v < 0x80) {
            s[0] = (unsigned char)v;
            n = 1;
        } else if (v < 0x800) {
            s[0] = (unsigned char)(0xc0 | v >> 6);
            s[1] = (unsigned char)(0x80 | (v & 0x3f));
            n = 2;
        } else if (v < 0x10000) {
            s[0] = (unsigned char)(0xe0 | v >> 12);
            s[1] = (unsigned char)(0x80 | ((v >> 6) & 0x3f));
            s[2] = (unsigned char)(0x80 | (v & 0x3f));
            n = 3;
        } else {
            s[0] = (unsigned char)(0xf0 | v >> 18);
            s[1] = (unsigned char)(0x80 | ((v >> 12) & 0x3f));
            s[2] = (unsigned char)(0x80 | ((v >> 6) & 0x3f));
            s[3] = (unsigned char)(0x80 | (v & 0x3f));
            n = 4;
        }
        uint32_t cp;
        int got = utf8_decode(s, n, &cp);
        if (got != (int)n || cp != v)
            TEST_FAIL_("U+%04X: got %d, U+%04X", (unsigned)v, got, (unsigned)cp);
    }
}

TEST(json_str_always_valid)
{
    struct buf b = {0};
    buf_json_str(&b, "a\xff\"\\\x01\xf0\x9f\x8e\x99\xed\xa0\x80", 12);
    ASSERT_EQ_STR(b.data, "\"a" R "\\\"\\\\\\u0001\xf0\x9f\x8e\x99" R R R "\"");
    ASSERT(utf8_valid(b.data, b.len));
    buf_free(&b);
}

int main(void)
{
    return RUN_TESTS();
}
