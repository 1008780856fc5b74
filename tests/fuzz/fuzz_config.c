/*
 * fuzz_config: the configuration parser on arbitrary bytes.
 *
 * Beyond "does not crash", checks what the parser promises: a failed parse leaves the struct
 * as it was and says "FILE:LINE: ..."; a successful one leaves every string terminated within
 * its field, every number in its range and every space name valid. The same bytes also go
 * through config_parse_hostport as a C string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_str(const char *s, size_t cap)
{
    CHECK(memchr(s, '\0', cap) != NULL);
}

static void check_space_value(int v, int lo, int hi)
{
    CHECK(v == -1 || (v >= lo && v <= hi));
}

static void check_config(const struct config *c)
{
    check_str(c->audience_host, sizeof(c->audience_host));
    check_str(c->stage_host, sizeof(c->stage_host));
    check_str(c->source_password, sizeof(c->source_password));
    CHECK(c->burst_ms >= 0 && c->burst_ms <= 30000);
    CHECK(c->page_ms >= 20 && c->page_ms <= 2000);
    /* issue 11: a parsed file never leaves HLS parts that are not whole frames, or segments
     * that are not whole parts */
    CHECK(c->hls_part_ms >= 100 && c->hls_part_ms % 20 == 0 && c->hls_segment_ms % c->hls_part_ms == 0);
    CHECK(c->grace_ms >= 0 && c->grace_ms <= 600000);
    CHECK(c->max_listeners >= 1 && c->max_listeners <= 10000000);
    CHECK(c->head_timeout_ms >= 100 && c->head_timeout_ms <= 60000);
    CHECK(c->lag_ms >= 1000 && c->lag_ms <= 60000);
    CHECK(c->max_stalls >= 1 && c->max_stalls <= 100);
    CHECK(c->log_level >= 0 && c->log_level <= 3);
    CHECK(c->num_spaces <= CONFIG_MAX_SPACES);
    for (size_t i = 0; i < c->num_spaces; i++) {
        const struct space_config *sc = &c->spaces[i];
        check_str(sc->name, sizeof(sc->name));
        check_str(sc->display_name, sizeof(sc->display_name));
        check_str(sc->description, sizeof(sc->description));
        check_str(sc->source_password, sizeof(sc->source_password));
        CHECK(config_space_name_valid(sc->name));
        CHECK(config_space(c, sc->name) == sc); /* no duplicates */
        check_space_value(sc->burst_ms, 0, 30000);
        check_space_value(sc->page_ms, 20, 2000);
        check_space_value(sc->grace_ms, 0, 600000);
        int b = config_burst_ms(c, sc), p = config_page_ms(c, sc), g = config_grace_ms(c, sc);
        CHECK(b >= 0 && p >= 20 && g >= 0);
        CHECK(config_source_password(c, sc) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct config c, before;
    char err[160];
    config_defaults(&c);
    memcpy(&before, &c, sizeof(c));
    if (config_parse(&c, (const char *)data, size, "f", err, sizeof(err)) == 0) {
        check_config(&c);
    } else {
        CHECK(memcmp(&c, &before, sizeof(c)) == 0);
        CHECK(strncmp(err, "f:", 2) == 0 && memchr(err, '\0', sizeof(err)) != NULL);
    }

    if (size < 512) {
        char s[512], host[64];
        uint16_t port = 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (config_parse_hostport(s, host, sizeof(host), &port) == 0)
            check_str(host, sizeof(host));
    }
    return 0;
}
