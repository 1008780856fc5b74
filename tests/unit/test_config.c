/*
 * test_config: the configuration file parser (src/config/config.c), and the command line's
 * options, which go through it (config_set).
 *
 * A full valid file sets every key; each kind of error is reported with its own line number
 * and message and leaves the struct untouched; inputs are parsed from right before an
 * unreadable page so a read past <len> crashes the test.
 */
#include "config/config.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "util/log.h"

static int parse(struct config *c, const char *text, char *err, size_t errlen)
{
    return config_parse(c, text, strlen(text), "t.conf", err, errlen);
}

/* Parses <text> onto defaults, expects failure at <line> with <needle> in the message, and
 * checks that the struct was not touched. */
static void expect_error_(const char *file, int at, const char *text, unsigned line,
                          const char *needle)
{
    struct config c, before;
    char err[256], prefix[64];
    config_defaults(&c);
    memcpy(&before, &c, sizeof(c));
    int rc = parse(&c, text, err, sizeof(err));
    snprintf(prefix, sizeof(prefix), "t.conf:%u: ", line);
    if (rc != -1 || strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, needle)) {
        fprintf(stderr, "    %s:%d: rc %d, err \"%s\"; want \"%s...%s...\"\n", file, at, rc, err,
                prefix, needle);
        exit(1);
    }
    if (memcmp(&c, &before, sizeof(c)) != 0) {
        fprintf(stderr, "    %s:%d: a failed parse changed the config\n", file, at);
        exit(1);
    }
}
#define EXPECT_ERROR(text, line, needle) expect_error_(__FILE__, __LINE__, text, line, needle)

TEST(defaults)
{
    struct config c;
    memset(&c, 0x5a, sizeof(c));
    config_defaults(&c);
    ASSERT_EQ_STR(c.audience_host, "0.0.0.0");
    ASSERT_EQ_UINT(c.audience_port, 8000);
    ASSERT_EQ_STR(c.stage_host, "0.0.0.0");
    ASSERT_EQ_UINT(c.stage_port, 8001);
    ASSERT_EQ_STR(c.source_password, "");
    ASSERT_EQ_INT(c.burst_ms, 1000);
    ASSERT_EQ_INT(c.page_ms, 200);
    ASSERT_EQ_INT(c.grace_ms, 10000);
    ASSERT_EQ_INT(c.max_listeners, 100000);
    ASSERT_EQ_INT(c.head_timeout_ms, 5000);
    ASSERT_EQ_INT(c.lag_ms, 10000);
    ASSERT_EQ_INT(c.max_stalls, 3);
    ASSERT_EQ_INT(c.log_level, LOG_INFO);
    ASSERT_EQ_UINT(c.num_spaces, 0);
    ASSERT(config_space(&c, "live") == NULL);
}

static const char full_file[] = "\xef\xbb\xbf# rostrum test config\n"
                                "\n"
                                "audience = 127.0.0.1:9000\n"
                                "stage=[::1]:9001\r\n"
                                "\tsource-password = \"s3cret \\\"quoted\\\" back\\\\slash\"   \n"
                                "burst-ms = 0\n"
                                "page-ms = 2000\n"
                                "grace-ms = 600000\n"
                                "max-listeners = 10000000\n"
                                "head-timeout-ms = 100\n"
                                "lag-ms = 1000\n"
                                "max-stalls = 100\n"
                                "log-level = debug\n"
                                "   # indented comment\n"
                                "[space live]\n"
                                "name = \"Morning show\"\n"
                                "description = Talk, news and # not a comment\n"
                                "source-password = pw#1\n"
                                "burst-ms = 500\n"
                                "page-ms = 20\n"
                                "grace-ms = 0\n"
                                "[ space  other.room_2-b ]\n"
                                "name = \"\"\n"
                                "[space x]"; /* no final newline */

TEST(full_file_sets_every_key)
{
    struct config c;
    char err[256] = "untouched";
    config_defaults(&c);
    int rc = parse(&c, full_file, err, sizeof(err));
    if (rc != 0)
        TEST_FAIL_("parse failed: %s", err);
    ASSERT_EQ_STR(err, "");
    ASSERT_EQ_STR(c.audience_host, "127.0.0.1");
    ASSERT_EQ_UINT(c.audience_port, 9000);
    ASSERT_EQ_STR(c.stage_host, "::1");
    ASSERT_EQ_UINT(c.stage_port, 9001);
    ASSERT_EQ_STR(c.source_password, "s3cret \"quoted\" back\\slash");
    ASSERT_EQ_INT(c.burst_ms, 0);
    ASSERT_EQ_INT(c.page_ms, 2000);
    ASSERT_EQ_INT(c.grace_ms, 600000);
    ASSERT_EQ_INT(c.max_listeners, 10000000);
    ASSERT_EQ_INT(c.head_timeout_ms, 100);
    ASSERT_EQ_INT(c.lag_ms, 1000);
    ASSERT_EQ_INT(c.max_stalls, 100);
    ASSERT_EQ_INT(c.log_level, LOG_DEBUG);
    ASSERT_EQ_UINT(c.num_spaces, 3);

    const struct space_config *live = config_space(&c, "live");
    ASSERT(live == &c.spaces[0]);
    ASSERT_EQ_STR(live->name, "live");
    ASSERT_EQ_STR(live->display_name, "Morning show");
    ASSERT_EQ_STR(live->description, "Talk, news and # not a comment");
    ASSERT_EQ_STR(live->source_password, "pw#1");
    ASSERT_EQ_INT(live->burst_ms, 500);
    ASSERT_EQ_INT(live->page_ms, 20);
    ASSERT_EQ_INT(live->grace_ms, 0);

    const struct space_config *other = config_space(&c, "other.room_2-b");
    ASSERT(other != NULL);
    ASSERT_EQ_STR(other->display_name, "");
    ASSERT_EQ_STR(other->source_password, "");
    ASSERT_EQ_INT(other->burst_ms, -1);
    ASSERT_EQ_INT(other->page_ms, -1);
    ASSERT_EQ_INT(other->grace_ms, -1);
    ASSERT(config_space(&c, "x") != NULL);
    ASSERT(config_space(&c, "nope") == NULL);
    ASSERT(config_space(&c, "Live") == NULL); /* names are case-sensitive, like paths */
}

TEST(hls_keys_issue11)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    ASSERT(c.hls == 1 && c.hls_segment_ms == 2000 && c.hls_part_ms == 200);
    ASSERT_EQ_INT(c.hls_max_blocked, 1000);
    ASSERT_EQ_INT(parse(&c, "hls = 0\nhls-segment-ms = 1800\nhls-part-ms = 300\n"
                            "hls-max-blocked = 5\n", err, sizeof(err)), 0);
    ASSERT(c.hls == 0 && c.hls_segment_ms == 1800 && c.hls_part_ms == 300 && c.hls_max_blocked == 5);
    EXPECT_ERROR("hls-part-ms = 50\n", 1, "out of range (100 to 2000)");
    EXPECT_ERROR("hls-segment-ms = 20000\n", 1, "out of range");
    EXPECT_ERROR("[space a]\nhls = 1\n", 2, "global key");
    /* segments are whole parts, parts whole 20 ms frames: said without a line, as the two
     * keys may be anywhere; nothing applied */
    const char *bad[] = {"hls-segment-ms = 2100\n", "hls-part-ms = 310\nhls-segment-ms = 3100\n"};
    for (int i = 0; i < 2; i++) {
        config_defaults(&c);
        ASSERT_EQ_INT(parse(&c, bad[i], err, sizeof(err)), -1);
        ASSERT(strstr(err, "t.conf: hls-part-ms") && strstr(err, "whole number of parts"));
        ASSERT_EQ_INT(c.hls_segment_ms, 2000);
    }
}

TEST(record_keys_issue12)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    ASSERT(c.record == 0 && c.record_sync_s == 5);
    ASSERT_EQ_STR(c.record_dir, "recordings");
    ASSERT_EQ_INT(parse(&c, "record = 1\nrecord-dir = /srv/rec\nrecord-sync-s = 60\n"
                            "[space a]\nrecord = 0\n[space b]\n", err, sizeof(err)), 0);
    ASSERT(c.record == 1 && c.record_sync_s == 60);
    ASSERT_EQ_STR(c.record_dir, "/srv/rec");
    ASSERT_EQ_INT(config_record(&c, config_space(&c, "a")), 0); /* its own */
    ASSERT_EQ_INT(config_record(&c, config_space(&c, "b")), 1); /* the global one */
    ASSERT_EQ_INT(config_record(&c, NULL), 1);
    EXPECT_ERROR("record = 2\n", 1, "out of range (0 to 1)");
    EXPECT_ERROR("record-sync-s = 0\n", 1, "out of range (1 to 3600)");
    EXPECT_ERROR("[space a]\nrecord-dir = x\n", 2, "global key");
}

TEST(captions_keys_issue12)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    ASSERT(c.captions == 0 && c.captions_queue_ms == 4000);
    ASSERT_EQ_STR(c.captions_cmd, "rostrum-captions");
    ASSERT_EQ_STR(c.captions_lang, "en");
    ASSERT_EQ_INT(parse(&c, "captions = 1\ncaptions-cmd = \"my-asr --lang fr\"\n"
                            "captions-lang = fr-CA\n"
                            "captions-queue-ms = 1000\n[space a]\ncaptions = 0\n[space b]\n",
                        err, sizeof(err)), 0);
    ASSERT(c.captions == 1 && c.captions_queue_ms == 1000);
    ASSERT_EQ_STR(c.captions_cmd, "my-asr --lang fr");
    ASSERT_EQ_STR(c.captions_lang, "fr-CA");
    ASSERT_EQ_INT(config_captions(&c, config_space(&c, "a")), 0);
    ASSERT_EQ_INT(config_captions(&c, config_space(&c, "b")), 1);
    ASSERT_EQ_INT(config_captions(&c, NULL), 1);
    EXPECT_ERROR("captions-queue-ms = 100\n", 1, "out of range (200 to 30000)");
    EXPECT_ERROR("captions-lang = en_GB\n", 1, "not a language tag");
    EXPECT_ERROR("captions-lang = 1en\n", 1, "not a language tag");
    EXPECT_ERROR("captions-lang = en-\n", 1, "not a language tag");
    EXPECT_ERROR("captions-lang = en--GB\n", 1, "not a language tag");
    EXPECT_ERROR("captions-lang = americanenglish\n", 1, "not a language tag");
    ASSERT_EQ_INT(parse(&c, "captions-lang = \"\"\n", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.captions_lang, "");
    ASSERT_EQ_INT(parse(&c, "captions-lang = zh-Hant-TW\n", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.captions_lang, "zh-Hant-TW");
    EXPECT_ERROR("[space a]\ncaptions-cmd = x\n", 2, "global key");
    /* past 64 keys: the duplicate check still sees each one */
    EXPECT_ERROR("captions-queue-ms = 300\ncaptions-queue-ms = 400\n", 2, "duplicate key");
    EXPECT_ERROR("[space a]\ncaptions = 1\ncaptions = 1\n", 3, "duplicate key");
}

TEST(issue9_access_log_key)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    ASSERT_EQ_STR(c.access_log, "");
    ASSERT_EQ_INT(parse(&c, "access-log = /var/log/rostrum/access.log\n", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.access_log, "/var/log/rostrum/access.log");
    ASSERT_EQ_INT(config_set(&c, "access-log", "", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.access_log, "");
    EXPECT_ERROR("[space a]\naccess-log = x\n", 2, "global key");
}

TEST(log_file_key_issue10)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    ASSERT_EQ_STR(c.log_file, "");
    ASSERT_EQ_INT(parse(&c, "log-file = /var/log/rostrum/rostrum.log\n", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.log_file, "/var/log/rostrum/rostrum.log");
    ASSERT_EQ_INT(config_set(&c, "log-file", "/tmp/r.log", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.log_file, "/tmp/r.log");
    EXPECT_ERROR("[space a]\nlog-file = x\n", 2, "global key");
    int found = 0;
    for (int i = 0; config_global_key(i); i++)
        found |= strcmp(config_global_key(i), "log-file") == 0;
    ASSERT(found); /* so --log-file is an option */
}

TEST(effective_values_fall_back_to_global)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    ASSERT_EQ_INT(parse(&c,
                        "burst-ms = 700\npage-ms = 40\ngrace-ms = 3000\nsource-password = g\n"
                        "[space a]\nburst-ms = 0\npage-ms = 100\ngrace-ms = 0\n"
                        "source-password = s\n[space b]\n",
                        err, sizeof(err)),
                  0);
    const struct space_config *a = config_space(&c, "a"), *b = config_space(&c, "b");
    ASSERT_EQ_INT(config_burst_ms(&c, a), 0);
    ASSERT_EQ_INT(config_page_ms(&c, a), 100);
    ASSERT_EQ_INT(config_grace_ms(&c, a), 0);
    ASSERT_EQ_STR(config_source_password(&c, a), "s");
    ASSERT_EQ_INT(config_burst_ms(&c, b), 700);
    ASSERT_EQ_INT(config_page_ms(&c, b), 40);
    ASSERT_EQ_INT(config_grace_ms(&c, b), 3000);
    ASSERT_EQ_STR(config_source_password(&c, b), "g");
    ASSERT_EQ_INT(config_burst_ms(&c, NULL), 700);
    ASSERT_EQ_INT(config_page_ms(&c, NULL), 40);
    ASSERT_EQ_INT(config_grace_ms(&c, NULL), 3000);
    ASSERT_EQ_STR(config_source_password(&c, NULL), "g");
}

TEST(empty_and_comment_only_files)
{
    struct config c, d;
    char err[64];
    config_defaults(&c);
    config_defaults(&d);
    ASSERT_EQ_INT(config_parse(&c, "", 0, "t.conf", err, sizeof(err)), 0);
    ASSERT_EQ_INT(parse(&c, "\n\n# just a comment\n   \n\t\n", err, sizeof(err)), 0);
    ASSERT_EQ_INT(parse(&c, "\r\n", err, sizeof(err)), 0);
    ASSERT_EQ_MEM(&c, &d, sizeof(c));
}

TEST(log_levels)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        struct config c;
        char text[64], err[128];
        config_defaults(&c);
        snprintf(text, sizeof(text), "log-level = %s\n", names[i]);
        ASSERT_EQ_INT(parse(&c, text, err, sizeof(err)), 0);
        ASSERT_EQ_INT(c.log_level, i);
    }
    EXPECT_ERROR("log-level = loud\n", 1, "not one of error, warn, info, debug");
    EXPECT_ERROR("log-level = INFO\n", 1, "not one of");
}

TEST(hostport)
{
    char host[64];
    uint16_t port = 1;
    ASSERT_EQ_INT(config_parse_hostport("127.0.0.1:8000", host, sizeof(host), &port), 0);
    ASSERT_EQ_STR(host, "127.0.0.1");
    ASSERT_EQ_UINT(port, 8000);
    ASSERT_EQ_INT(config_parse_hostport(":0", host, sizeof(host), &port), 0);
    ASSERT_EQ_STR(host, "0.0.0.0");
    ASSERT_EQ_UINT(port, 0);
    ASSERT_EQ_INT(config_parse_hostport("[::]:65535", host, sizeof(host), &port), 0);
    ASSERT_EQ_STR(host, "::");
    ASSERT_EQ_UINT(port, 65535);
    ASSERT_EQ_INT(config_parse_hostport("[fe80::1%eth0]:80", host, sizeof(host), &port), 0);
    ASSERT_EQ_STR(host, "fe80::1%eth0");
    ASSERT_EQ_INT(config_parse_hostport("[::ffff:127.0.0.1]:81", host, sizeof(host), &port), 0);
    ASSERT_EQ_STR(host, "::ffff:127.0.0.1");
    ASSERT_EQ_INT(config_parse_hostport("localhost:00080", host, sizeof(host), &port), 0);
    ASSERT_EQ_STR(host, "localhost");
    ASSERT_EQ_UINT(port, 80);

    static const char *const bad[] = {
        "",        "8000",         "host",     "host:",     ":",
        ":65536",  ":123456",      ":-1",      ":+80",      ": 80",
        "h:80 ",   "::1:80",       "[::1]80",  "[::1]",     "[]:80",
        "[::1:80", "[1.2.3.4]:80", "[::g]:80", "[::1%]:80", "[::1%e/0]:80",
        "a b:80",  "host:80:90",   "h\x01:80", "[:]:80x",   "[x]:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        port = 4242;
        if (config_parse_hostport(bad[i], host, sizeof(host), &port) != -1)
            TEST_FAIL_("accepted bad address \"%s\"", bad[i]);
        ASSERT_EQ_UINT(port, 4242);
    }
    /* a host that does not fit the caller's buffer is refused, not cut */
    char small[4];
    ASSERT_EQ_INT(config_parse_hostport("abc:1", small, sizeof(small), &port), 0);
    ASSERT_EQ_INT(config_parse_hostport("abcd:1", small, sizeof(small), &port), -1);
    ASSERT_EQ_INT(config_parse_hostport(":1", small, sizeof(small), &port), -1);
}

TEST(space_names)
{
    ASSERT(config_space_name_valid("live"));
    ASSERT(config_space_name_valid("a"));
    ASSERT(config_space_name_valid("A.b_c-9"));
    ASSERT(config_space_name_valid(".hidden"));
    ASSERT(config_space_name_valid("..x"));
    char max[64];
    memset(max, 'n', 63);
    max[63] = '\0';
    ASSERT(config_space_name_valid(max));
    ASSERT(!config_space_name_valid(""));
    ASSERT(!config_space_name_valid("."));
    ASSERT(!config_space_name_valid(".."));
    ASSERT(!config_space_name_valid("a/b"));
    ASSERT(!config_space_name_valid("a b"));
    ASSERT(!config_space_name_valid("caf\xc3\xa9"));
    ASSERT(!config_space_name_valid(NULL));
    /* names the ports serve themselves (issue 8: a [space stage.js] could never be a mount) */
    ASSERT(!config_space_name_valid("stage.js"));
    ASSERT(!config_space_name_valid("metrics"));
    ASSERT(!config_space_name_valid("api"));
    char long_name[65];
    memset(long_name, 'n', 64);
    long_name[64] = '\0';
    ASSERT(!config_space_name_valid(long_name));
}

/* issue 8: a [space] a page or route owns could never be its mount (found by fuzz_config: the
 * parser and config_space_name_valid disagreed) */
TEST(error_reserved_space_name)
{
    EXPECT_ERROR("[space stage.js]\n", 1, "page or route");
    EXPECT_ERROR("source-password = x\n[space  state ]\n", 2, "page or route");
}

TEST(error_unknown_key)
{
    EXPECT_ERROR("# c\n\nburst-ms = 5\nbogus = 1\n", 4, "unknown key 'bogus'");
    EXPECT_ERROR("Burst-ms = 5\n", 1, "unknown key 'Burst-ms'");
    EXPECT_ERROR("[space a]\nlisteners = 1\n", 2, "unknown key 'listeners'");
    /* a key from the file is escaped in the message */
    EXPECT_ERROR("x\x1b[2J = 1\n", 1, "unknown key 'x?[2J'");
}

TEST(error_bad_number)
{
    EXPECT_ERROR("burst-ms = abc\n", 1, "burst-ms: 'abc' is not a whole number");
    EXPECT_ERROR("\nburst-ms =\n", 2, "burst-ms: '' is not a whole number");
    EXPECT_ERROR("page-ms = 1.5\n", 1, "not a whole number");
    EXPECT_ERROR("page-ms = -20\n", 1, "not a whole number");
    EXPECT_ERROR("page-ms = 0x20\n", 1, "not a whole number");
    EXPECT_ERROR("page-ms = 20 ms\n", 1, "not a whole number");
    EXPECT_ERROR("[space s]\ngrace-ms = ten\n", 2, "grace-ms: 'ten' is not a whole number");
}

TEST(error_out_of_range)
{
    EXPECT_ERROR("burst-ms = 30001\n", 1, "burst-ms: 30001 is out of range (0 to 30000)");
    EXPECT_ERROR("page-ms = 19\n", 1, "page-ms: 19 is out of range (20 to 2000)");
    EXPECT_ERROR("page-ms = 2001\n", 1, "(20 to 2000)");
    EXPECT_ERROR("grace-ms = 600001\n", 1, "(0 to 600000)");
    EXPECT_ERROR("max-listeners = 0\n", 1, "(1 to 10000000)");
    EXPECT_ERROR("max-listeners = 10000001\n", 1, "(1 to 10000000)");
    EXPECT_ERROR("head-timeout-ms = 99\n", 1, "(100 to 60000)");
    EXPECT_ERROR("head-timeout-ms = 60001\n", 1, "(100 to 60000)");
    EXPECT_ERROR("lag-ms = 999\n", 1, "(1000 to 60000)");
    EXPECT_ERROR("lag-ms = 60001\n", 1, "(1000 to 60000)");
    EXPECT_ERROR("max-stalls = 0\n", 1, "(1 to 100)");
    EXPECT_ERROR("max-stalls = 101\n", 1, "(1 to 100)");
    /* no overflow on absurd numbers */
    EXPECT_ERROR("max-listeners = 99999999999999999999999999\n", 1, "out of range");
    EXPECT_ERROR("[space s]\npage-ms = 5\n", 2, "page-ms: 5 is out of range");
}

TEST(error_bad_hostport)
{
    EXPECT_ERROR("audience = 8000\n", 1, "audience: bad address '8000'");
    EXPECT_ERROR("\n\nstage = ::1:8001\n", 3, "stage: bad address '::1:8001'");
    EXPECT_ERROR("audience = host:70000\n", 1, "expected HOST:PORT, [IPv6]:PORT or :PORT");
    EXPECT_ERROR("audience =\n", 1, "audience: bad address ''");
}

TEST(error_duplicate_space)
{
    EXPECT_ERROR("[space a]\n[space b]\n\n[space a]\n", 4, "duplicate space 'a'");
    /* a space set by an earlier parse is a duplicate too */
    struct config c;
    char err[128];
    config_defaults(&c);
    ASSERT_EQ_INT(parse(&c, "[space a]\n", err, sizeof(err)), 0);
    ASSERT_EQ_INT(parse(&c, "[space b]\n[space a]\n", err, sizeof(err)), -1);
    ASSERT_EQ_STR(err, "t.conf:2: duplicate space 'a'");
    ASSERT_EQ_UINT(c.num_spaces, 1);
}

TEST(error_duplicate_key)
{
    EXPECT_ERROR("burst-ms = 1\nburst-ms = 2\n", 2, "duplicate key 'burst-ms'");
    EXPECT_ERROR("[space a]\nname = x\nname = y\n", 3, "duplicate key 'name'");
    /* the same key in another section is fine */
    struct config c;
    char err[128];
    config_defaults(&c);
    ASSERT_EQ_INT(parse(&c, "burst-ms = 1\n[space a]\nburst-ms = 2\n[space b]\nburst-ms = 3\n", err,
                        sizeof(err)),
                  0);
}

TEST(error_quotes)
{
    EXPECT_ERROR("name_x = 1\n", 1, "unknown key"); /* keys are checked before values */
    EXPECT_ERROR("source-password = \"abc\n", 1, "unterminated quote");
    EXPECT_ERROR("\nsource-password = \"abc\\\"\n", 2, "unterminated quote");
    EXPECT_ERROR("source-password = \"abc\\", 1, "unterminated quote");
    EXPECT_ERROR("source-password = \"", 1, "unterminated quote");
    EXPECT_ERROR("source-password = \"a\\nb\"\n", 1, "bad escape '\\n'");
    EXPECT_ERROR("source-password = \"a\" b\n", 1, "unexpected text after the closing quote");
    EXPECT_ERROR("source-password = \"a\" # no trailing comments\n", 1, "after the closing");
    /* a quote inside an unquoted value is just a character */
    struct config c;
    char err[128];
    config_defaults(&c);
    ASSERT_EQ_INT(parse(&c, "source-password = a\"b\n", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.source_password, "a\"b");
    ASSERT_EQ_INT(parse(&c, "[space s]\nname = \"  padded  \"\n", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.spaces[0].display_name, "  padded  ");
}

TEST(error_line_too_long)
{
    /* exactly CONFIG_MAX_LINE bytes (plus CRLF) is fine, one more is not */
    size_t pre = strlen("description = ");
    char *text = malloc(4096);
    strcpy(text, "[space a]\n");
    size_t off = strlen(text);
    memcpy(text + off, "description = ", pre);
    memset(text + off + pre, 'd', CONFIG_MAX_LINE - pre);
    strcpy(text + off + CONFIG_MAX_LINE, "\r\n");
    struct config c;
    char err[128];
    config_defaults(&c);
    /* 1010 bytes do not fit description[256] */
    ASSERT_EQ_INT(parse(&c, text, err, sizeof(err)), -1);
    ASSERT_EQ_STR(err, "t.conf:2: description: value too long (1010 bytes, max 255)");
    text[off] = '#';
    ASSERT_EQ_INT(parse(&c, text, err, sizeof(err)), 0);
    strcpy(text + off + CONFIG_MAX_LINE, "d\n");
    EXPECT_ERROR(text, 2, "line too long (1025 bytes, max 1024)");
    strcpy(text + off + CONFIG_MAX_LINE, "d"); /* the last line, without a newline */
    EXPECT_ERROR(text, 2, "line too long");
    free(text);
}

TEST(error_key_outside_allowed_section)
{
    EXPECT_ERROR("name = x\n", 1, "'name' is only allowed in a [space NAME] section");
    EXPECT_ERROR("description = x\n", 1, "'description' is only allowed in a [space NAME]");
    static const char *const global_only[] = {
        "audience = :1", "stage = :2",     "max-listeners = 5", "head-timeout-ms = 500",
        "lag-ms = 2000", "max-stalls = 2", "log-level = warn"};
    for (size_t i = 0; i < sizeof(global_only) / sizeof(global_only[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "[space a]\nname = A\n%s\n", global_only[i]);
        EXPECT_ERROR(text, 3, "is a global key: put it before the first [space] section");
    }
}

TEST(error_too_many_spaces)
{
    size_t cap = 32 * (CONFIG_MAX_SPACES + 2);
    char *text = malloc(cap);
    size_t off = 0;
    for (int i = 0; i < CONFIG_MAX_SPACES; i++)
        off += (size_t)snprintf(text + off, cap - off, "[space s%d]\n", i);
    struct config c;
    char err[128];
    config_defaults(&c);
    ASSERT_EQ_INT(parse(&c, text, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(c.num_spaces, CONFIG_MAX_SPACES);
    ASSERT_EQ_STR(c.spaces[CONFIG_MAX_SPACES - 1].name, "s63");
    snprintf(text + off, cap - off, "[space one-more]\n");
    EXPECT_ERROR(text, CONFIG_MAX_SPACES + 1, "too many spaces (max 64)");
    free(text);
}

TEST(error_bad_sections)
{
    EXPECT_ERROR("[space]\n", 1, "[space] needs a name");
    EXPECT_ERROR("[space   ]\n", 1, "[space] needs a name");
    EXPECT_ERROR("[global]\n", 1, "unknown section '[global]'");
    EXPECT_ERROR("[spacex]\n", 1, "unknown section");
    EXPECT_ERROR("[space a\n", 1, "must end with ']'");
    EXPECT_ERROR("[space a] # c\n", 1, "must end with ']'");
    EXPECT_ERROR("[space a/b]\n", 1, "bad space name 'a/b'");
    EXPECT_ERROR("[space a b]\n", 1, "bad space name 'a b'");
    EXPECT_ERROR("[space ..]\n", 1, "bad space name '..'");
    EXPECT_ERROR("[space 0123456789012345678901234567890123456789012345678901234567890123]\n", 1,
                 "bad space name");
}

TEST(error_syntax)
{
    EXPECT_ERROR("burst-ms 5\n", 1, "expected 'key = value'");
    EXPECT_ERROR("just-a-word\n", 1, "expected 'key = value'");
    EXPECT_ERROR("= 5\n", 1, "missing key before '='");
}

TEST(error_nul_and_control_bytes)
{
    static const char text[] = "burst-ms = 5\nbur\0st-ms = 1\n";
    struct config c;
    char err[128];
    config_defaults(&c);
    ASSERT_EQ_INT(config_parse(&c, text, sizeof(text) - 1, "t.conf", err, sizeof(err)), -1);
    ASSERT_EQ_STR(err, "t.conf:2: NUL byte in line");
    EXPECT_ERROR("[space a]\nname = \"a\x01\"\n", 2, "name: control character in value");
    EXPECT_ERROR("source-password = a\x7f\n", 1, "control character");
    ASSERT_EQ_INT(parse(&c, "[space a]\nname = \"a\tb\"\n", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.spaces[0].display_name, "a\tb");
}

/* issue 8: names and descriptions reach JSON and WebSocket text frames */
TEST(error_invalid_utf8)
{
    struct config c;
    char err[128];
    EXPECT_ERROR("[space a]\nname = \"caf\xe9\"\n", 2, "name: value is not valid UTF-8");
    EXPECT_ERROR("[space a]\ndescription = \"\xed\xa0\x80\"\n", 2, "not valid UTF-8");
    EXPECT_ERROR("[space a]\nname = \"\xc0\xaf\"\n", 2, "not valid UTF-8");
    config_defaults(&c);
    ASSERT_EQ_INT(parse(&c, "[space a]\nname = \"caf\xc3\xa9 \xf0\x9f\x8e\x99\"\n", err,
                        sizeof(err)), 0);
    ASSERT_EQ_STR(c.spaces[0].display_name, "caf\xc3\xa9 \xf0\x9f\x8e\x99");
}

TEST(stage_idle_end_ms)
{
    struct config c;
    char err[128];
    config_defaults(&c);
    ASSERT_EQ_INT(c.stage_idle_end_ms, 300000);
    ASSERT_EQ_INT(parse(&c, "stage-idle-end-ms = 1000\n", err, sizeof(err)), 0);
    ASSERT_EQ_INT(c.stage_idle_end_ms, 1000);
    EXPECT_ERROR("stage-idle-end-ms = 999\n", 1, "stage-idle-end-ms");
}

TEST(error_value_too_long)
{
    char text[512];
    snprintf(text, sizeof(text), "source-password = %0128d\n", 0);
    EXPECT_ERROR(text, 1, "source-password: value too long (128 bytes, max 127)");
    snprintf(text, sizeof(text), "source-password = %0127d\n", 0);
    struct config c;
    char err[128];
    config_defaults(&c);
    ASSERT_EQ_INT(parse(&c, text, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(strlen(c.source_password), 127);
}

TEST(filename_and_small_error_buffers)
{
    struct config c;
    char err[16];
    config_defaults(&c);
    ASSERT_EQ_INT(config_parse(&c, "x = 1", 5, NULL, err, sizeof(err)), -1);
    ASSERT_EQ_STR(err, "config:1: unkno"); /* cut, still terminated */
    ASSERT_EQ_INT(config_parse(&c, "x = 1", 5, "a-very-long-file-name.conf", err, 8), -1);
    ASSERT_EQ_STR(err, "a-very-");
    ASSERT_EQ_INT(config_parse(&c, "x = 1", 5, "f", NULL, 0), -1);
}

/* Places <len> bytes right before a PROT_NONE page so any read past the end faults. */
static char *guarded_copy(const char *s, size_t len, void **map, size_t *maplen)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t pages = (len + (size_t)pg - 1) / (size_t)pg + 1;
    *maplen = (pages + 1) * (size_t)pg;
    char *m = mmap(NULL, *maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(m != MAP_FAILED);
    ASSERT_EQ_INT(mprotect(m + pages * (size_t)pg, (size_t)pg, PROT_NONE), 0);
    char *p = m + pages * (size_t)pg - len;
    memcpy(p, s, len);
    *map = m;
    return p;
}

TEST(every_prefix_reads_only_its_bytes)
{
    size_t n = sizeof(full_file) - 1;
    for (size_t len = 0; len <= n; len++) {
        void *map;
        size_t maplen;
        char *p = guarded_copy(full_file, len, &map, &maplen);
        struct config c;
        char err[256];
        config_defaults(&c);
        int rc = config_parse(&c, p, len, "t.conf", err, sizeof(err));
        ASSERT(rc == 0 || (rc == -1 && strncmp(err, "t.conf:", 7) == 0));
        munmap(map, maplen);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

TEST(load_file)
{
    char dir[] = "/tmp/test_config.XXXXXX", path[128], err[256];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/rostrum.conf", dir);
    struct config c;
    config_defaults(&c);

    ASSERT_EQ_INT(config_load_file(&c, path, err, sizeof(err)), -1);
    char want[256];
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    ASSERT_EQ_STR(err, want);

    write_file(path, full_file);
    ASSERT_EQ_INT(config_load_file(&c, path, err, sizeof(err)), 0);
    ASSERT_EQ_UINT(c.num_spaces, 3);
    ASSERT_EQ_UINT(c.audience_port, 9000);

    write_file(path, "# one\nburst-ms = 1\n\nlag-ms = 5\n");
    config_defaults(&c);
    ASSERT_EQ_INT(config_load_file(&c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:4: lag-ms: 5 is out of range (1000 to 60000)", path);
    ASSERT_EQ_STR(err, want);
    ASSERT_EQ_INT(c.burst_ms, 1000);

    ASSERT_EQ_INT(config_load_file(&c, dir, err, sizeof(err)), -1);
    ASSERT(strstr(err, "not a regular file") || strstr(err, "Is a directory"));

    /* the shipped example must parse */
    config_defaults(&c);
    if (config_load_file(&c, "docs/config.example", err, sizeof(err)) != 0 &&
        !strstr(err, "No such file"))
        TEST_FAIL_("docs/config.example: %s", err);

    unlink(path);
    rmdir(dir);
}

TEST(load_file_too_large)
{
    char dir[] = "/tmp/test_config.XXXXXX", path[128], err[256];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/big.conf", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd != -1);
    ASSERT_EQ_INT(ftruncate(fd, CONFIG_MAX_FILE + 1), 0);
    close(fd);
    struct config c;
    config_defaults(&c);
    ASSERT_EQ_INT(config_load_file(&c, path, err, sizeof(err)), -1);
    ASSERT(strstr(err, "file too large") != NULL);
    unlink(path);
    rmdir(dir);
}

/* issue 8: command-line options are checked by the config parser, against the same table */
TEST(command_line_options_use_the_config_ranges)
{
    struct config c, before;
    char err[256];
    config_defaults(&c);
    ASSERT_EQ_INT(config_set(&c, "max-members", "12", err, sizeof(err)), 0);
    ASSERT_EQ_INT(c.max_members, 12);
    ASSERT_EQ_INT(config_set(&c, "audience", "127.0.0.1:9000", err, sizeof(err)), 0);
    ASSERT_EQ_INT(c.audience_port, 9000);
    memcpy(&before, &c, sizeof(c));
    ASSERT_EQ_INT(config_set(&c, "page-ms", "5", err, sizeof(err)), -1);
    ASSERT(strstr(err, "out of range (20 to 2000)") != NULL);
    ASSERT_EQ_INT(config_set(&c, "workers", "x", err, sizeof(err)), -1);
    ASSERT_EQ_INT(config_set(&c, "no-such-key", "1", err, sizeof(err)), -1);
    ASSERT(strstr(err, "--no-such-key: unknown option") != NULL);
    ASSERT_EQ_INT(config_set(&c, "name", "x", err, sizeof(err)), -1); /* a [space] key */
    ASSERT(memcmp(&c, &before, sizeof(c)) == 0);
    /* every key the command line offers is a global key config_set takes */
    int n = 0;
    for (const char *k; (k = config_global_key(n)); n++)
        ASSERT(strcmp(k, "name") != 0 && strcmp(k, "description") != 0);
    ASSERT(n > 20);
}

/* issue 9: `user` is a global string key (so also --user), bounded by its field, not allowed
 * in a [space] section, and unset by default */
TEST(user_key_issue9)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    ASSERT_EQ_INT(c.user[0], '\0');
    const char *text = "user = rostrum\n";
    ASSERT_EQ_INT(config_parse(&c, text, strlen(text), "t.conf", err, sizeof(err)), 0);
    ASSERT(strcmp(c.user, "rostrum") == 0);
    ASSERT_EQ_INT(config_set(&c, "user", "nobody", err, sizeof(err)), 0);
    ASSERT(strcmp(c.user, "nobody") == 0);
    char big[100];
    memset(big, 'u', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ASSERT_EQ_INT(config_set(&c, "user", big, err, sizeof(err)), -1);
    ASSERT(strcmp(c.user, "nobody") == 0);
    const char *in_space = "[space a]\nuser = x\n";
    ASSERT_EQ_INT(config_parse(&c, in_space, strlen(in_space), "t.conf", err, sizeof(err)), -1);
    ASSERT(strstr(err, "t.conf:2:") != NULL);
    int found = 0;
    for (int i = 0; config_global_key(i); i++)
        found |= strcmp(config_global_key(i), "user") == 0;
    ASSERT(found);
}

/* issue 10, item 4: public-url and relay-name travel into a Location header and a metric label
 * unescaped, so only what the feed's REPORT allows is taken */
TEST(public_url_and_relay_name_10)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    ASSERT_EQ_INT(c.public_url[0], '\0');
    ASSERT_EQ_INT(config_set(&c, "public-url", "http://edge1.example:8000", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.public_url, "http://edge1.example:8000");
    ASSERT_EQ_INT(config_set(&c, "public-url", "https://[2001:db8::1]:443", err, sizeof(err)), 0);
    ASSERT_EQ_INT(config_set(&c, "relay-name", "edge-1.eu", err, sizeof(err)), 0);
    ASSERT_EQ_STR(c.relay_name, "edge-1.eu");
    EXPECT_ERROR("public-url = http://edge/path\n", 1, "no path");
    EXPECT_ERROR("public-url = ftp://edge\n", 1, "http://");
    EXPECT_ERROR("public-url = http://\n", 1, "http://");
    EXPECT_ERROR("public-url = http://a\"b\n", 1, "no path");
    EXPECT_ERROR("relay-name = a b\n", 1, "only letters");
    EXPECT_ERROR("relay-name = 0123456789012345678901234567890123\n", 1, "too long");
    EXPECT_ERROR("[space a]\npublic-url = http://x\n", 2, "public-url");
}

int main(void)
{
    return RUN_TESTS();
}
