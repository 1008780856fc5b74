/*
 * config: parses the configuration file (see config.h and docs/config.example).
 *
 * One pass over the text, one line at a time, no allocation but a scratch copy of the
 * struct: the parse fills the copy and only a complete, valid file is copied back, so a
 * failed (re)load never leaves a half-applied configuration. Each key is described once in
 * key_defs[] (name, where it may appear, integer range); the few kinds of value (integer,
 * string, HOST:PORT, log level) each have one setter.
 */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/check.h"
#include "util/log.h"
#include "util/utf8.h"
#include "web/web.h"

enum key_id {
    KEY_AUDIENCE,
    KEY_STAGE,
    KEY_SOURCE_PASSWORD,
    KEY_BURST_MS,
    KEY_PAGE_MS,
    KEY_GRACE_MS,
    KEY_MAX_LISTENERS,
    KEY_HEAD_TIMEOUT_MS,
    KEY_RESPONSE_TIMEOUT_MS,
    KEY_LAG_MS,
    KEY_MAX_STALLS,
    KEY_WORKERS,
    KEY_MAX_CONNS_PER_IP,
    KEY_JOINS_PER_IP,
    KEY_JOINS_PER_WORKER,
    KEY_JOINS_PER_SECOND,
    KEY_WAITING_ROOM_RATE,
    KEY_OVERLOAD_LAG_MS,
    KEY_WAITING_ROOM,
    KEY_TRUSTED_PROXIES,
    KEY_SPEAKER_IDLE_MS,
    KEY_STAGE_IDLE_END_MS,
    KEY_HOST_KEY,
    KEY_ADMIN_KEY,
    KEY_MAX_COHOSTS,
    KEY_MAX_SPEAKERS,
    KEY_WRITE_BUDGET,
    KEY_MAX_BATCH_MS,
    KEY_MAX_MEMBERS,
    KEY_LOG_LEVEL,
    KEY_ACCESS_LOG,
    KEY_LOG_FILE,
    KEY_USER,
    KEY_AUDIENCE_TLS,
    KEY_STAGE_TLS,
    KEY_TLS_CERT,
    KEY_TLS_KEY,
    KEY_LOBBY_AUDIO,
    KEY_DRAIN_MS,
    KEY_RELAY_KEY,
    KEY_PUBLIC_URL,
    KEY_RELAY_NAME,
    KEY_RELAY_CAFILE,
    KEY_AAC_KBPS,
    KEY_MP3_KBPS,
    KEY_AAC_ALWAYS,
    KEY_RENDITION_LINGER_MS,
    KEY_RENDITION_RESERVE,
    KEY_RENDITION_MAX_ENCODERS,
    KEY_NAME,
    KEY_DESCRIPTION,
    KEY_HLS,
    KEY_HLS_SEGMENT_MS,
    KEY_HLS_PART_MS,
    KEY_HLS_MAX_BLOCKED,
    KEY_SESSION_WINDOW_S,
    KEY_MAX_HLS_SESSIONS,
    KEY_REACT_PER_S,
    KEY_REACT_IP_PER_S,
    KEY_MAX_HANDS,
    KEY_HAND_TTL_S,
    KEY_RECORD,
    KEY_RECORD_DIR,
    KEY_RECORD_SYNC_S,
    KEY_CAPTIONS,
    KEY_CAPTIONS_CMD,
    KEY_CAPTIONS_QUEUE_MS,
    KEY_CAPTIONS_LANG,
    KEY_COUNT
};

#define IN_GLOBAL 1u
#define IN_SPACE 2u

struct key_def {
    const char *name;
    unsigned where; /* IN_GLOBAL | IN_SPACE */
    int min, max;   /* integer keys only; min > max marks the others */
};

static const struct key_def key_defs[KEY_COUNT] = {
    [KEY_AUDIENCE] = {"audience", IN_GLOBAL, 1, 0},
    [KEY_STAGE] = {"stage", IN_GLOBAL, 1, 0},
    [KEY_SOURCE_PASSWORD] = {"source-password", IN_GLOBAL | IN_SPACE, 1, 0},
    [KEY_BURST_MS] = {"burst-ms", IN_GLOBAL | IN_SPACE, 0, 30000},
    [KEY_PAGE_MS] = {"page-ms", IN_GLOBAL | IN_SPACE, 20, 2000},
    [KEY_GRACE_MS] = {"grace-ms", IN_GLOBAL | IN_SPACE, 0, 600000},
    [KEY_MAX_LISTENERS] = {"max-listeners", IN_GLOBAL, 1, 10000000},
    [KEY_HEAD_TIMEOUT_MS] = {"head-timeout-ms", IN_GLOBAL, 100, 60000},
    [KEY_RESPONSE_TIMEOUT_MS] = {"response-timeout-ms", IN_GLOBAL, 100, 600000},
    [KEY_LAG_MS] = {"lag-ms", IN_GLOBAL, 1000, 60000},
    [KEY_MAX_STALLS] = {"max-stalls", IN_GLOBAL, 1, 100},
    [KEY_WORKERS] = {"workers", IN_GLOBAL, 0, 32},
    [KEY_MAX_CONNS_PER_IP] = {"max-conns-per-ip", IN_GLOBAL, 1, 1000000},
    [KEY_JOINS_PER_IP] = {"joins-per-ip", IN_GLOBAL, 1, 1000000},
    [KEY_JOINS_PER_WORKER] = {"joins-per-worker", IN_GLOBAL, 0, 1000000},
    [KEY_JOINS_PER_SECOND] = {"joins-per-second", IN_GLOBAL, 1, 10000000},
    [KEY_WAITING_ROOM_RATE] = {"waiting-room-rate", IN_GLOBAL, 1, 1000000},
    [KEY_OVERLOAD_LAG_MS] = {"overload-lag-ms", IN_GLOBAL, 10, 60000},
    [KEY_WAITING_ROOM] = {"waiting-room", IN_GLOBAL, 0, 1},
    [KEY_TRUSTED_PROXIES] = {"trusted-proxies", IN_GLOBAL, 1, 0},
    [KEY_SPEAKER_IDLE_MS] = {"speaker-idle-ms", IN_GLOBAL, 1000, 600000},
    [KEY_STAGE_IDLE_END_MS] = {"stage-idle-end-ms", IN_GLOBAL, 1000, 86400000},
    [KEY_HOST_KEY] = {"host-key", IN_GLOBAL, 1, 0},
    [KEY_ADMIN_KEY] = {"admin-key", IN_GLOBAL, 1, 0},
    [KEY_MAX_COHOSTS] = {"max-cohosts", IN_GLOBAL, 0, 12},
    [KEY_MAX_SPEAKERS] = {"max-speakers", IN_GLOBAL, 0, 12},
    [KEY_WRITE_BUDGET] = {"write-budget", IN_GLOBAL, 1000, 10000000},
    [KEY_MAX_BATCH_MS] = {"max-batch-ms", IN_GLOBAL, 0, 5000},
    [KEY_MAX_MEMBERS] = {"max-members", IN_GLOBAL, 1, 1000000},
    [KEY_LOG_LEVEL] = {"log-level", IN_GLOBAL, 1, 0},
    [KEY_ACCESS_LOG] = {"access-log", IN_GLOBAL, 1, 0},
    [KEY_LOG_FILE] = {"log-file", IN_GLOBAL, 1, 0},
    [KEY_USER] = {"user", IN_GLOBAL, 1, 0},
    [KEY_AUDIENCE_TLS] = {"audience-tls", IN_GLOBAL, 1, 0},
    [KEY_STAGE_TLS] = {"stage-tls", IN_GLOBAL, 1, 0},
    [KEY_TLS_CERT] = {"tls-cert", IN_GLOBAL, 1, 0},
    [KEY_TLS_KEY] = {"tls-key", IN_GLOBAL, 1, 0},
    [KEY_LOBBY_AUDIO] = {"lobby-audio", IN_GLOBAL, 1, 0},
    [KEY_DRAIN_MS] = {"drain-ms", IN_GLOBAL, 0, 60000},
    [KEY_RELAY_KEY] = {"relay-key", IN_GLOBAL, 1, 0},
    [KEY_PUBLIC_URL] = {"public-url", IN_GLOBAL, 1, 0},
    [KEY_RELAY_NAME] = {"relay-name", IN_GLOBAL, 1, 0},
    [KEY_RELAY_CAFILE] = {"relay-cafile", IN_GLOBAL, 1, 0},
    [KEY_AAC_KBPS] = {"aac-kbps", IN_GLOBAL, 0, 320},
    [KEY_MP3_KBPS] = {"mp3-kbps", IN_GLOBAL, 0, 320},
    [KEY_AAC_ALWAYS] = {"aac-always", IN_GLOBAL, 0, 1},
    [KEY_RENDITION_LINGER_MS] = {"rendition-linger-ms", IN_GLOBAL, 0, 600000},
    [KEY_RENDITION_RESERVE] = {"rendition-reserve", IN_GLOBAL, 0, 64},
    [KEY_RENDITION_MAX_ENCODERS] = {"rendition-max-encoders", IN_GLOBAL, 1, 64},
    [KEY_NAME] = {"name", IN_SPACE, 1, 0},
    [KEY_DESCRIPTION] = {"description", IN_SPACE, 1, 0},
    [KEY_HLS] = {"hls", IN_GLOBAL, 0, 1},
    [KEY_HLS_SEGMENT_MS] = {"hls-segment-ms", IN_GLOBAL, 1000, 10000},
    [KEY_HLS_PART_MS] = {"hls-part-ms", IN_GLOBAL, 100, 2000},
    [KEY_HLS_MAX_BLOCKED] = {"hls-max-blocked", IN_GLOBAL, 0, 100000},
    [KEY_SESSION_WINDOW_S] = {"session-window-s", IN_GLOBAL, 5, 3600},
    [KEY_MAX_HLS_SESSIONS] = {"max-hls-sessions", IN_GLOBAL, 1, 65536},
    [KEY_REACT_PER_S] = {"react-per-s", IN_GLOBAL, 1, 100},
    [KEY_REACT_IP_PER_S] = {"react-ip-per-s", IN_GLOBAL, 1, 100000},
    [KEY_MAX_HANDS] = {"max-hands", IN_GLOBAL, 1, 1000}, /* SHARED_HANDS_MAX */
    [KEY_HAND_TTL_S] = {"hand-ttl-s", IN_GLOBAL, 5, 3600},
    [KEY_RECORD] = {"record", IN_GLOBAL | IN_SPACE, 0, 1},
    [KEY_RECORD_DIR] = {"record-dir", IN_GLOBAL, 1, 0},
    [KEY_RECORD_SYNC_S] = {"record-sync-s", IN_GLOBAL, 1, 3600},
    [KEY_CAPTIONS] = {"captions", IN_GLOBAL | IN_SPACE, 0, 1},
    [KEY_CAPTIONS_CMD] = {"captions-cmd", IN_GLOBAL, 1, 0},
    [KEY_CAPTIONS_QUEUE_MS] = {"captions-queue-ms", IN_GLOBAL, 200, 30000},
    [KEY_CAPTIONS_LANG] = {"captions-lang", IN_GLOBAL, 1, 0},
};

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

struct parser {
    struct config *c;        /* the scratch copy being filled */
    struct space_config *sc; /* the current [space] section; NULL before the first */
    const char *filename;
    unsigned line;
    uint64_t seen[2]; /* bit per key_id set in the current section */
    char *err;
    size_t errlen;
};

_Static_assert(KEY_COUNT <= 128, "parser.seen has one bit per key");

/* Writes "FILE:LINE: message" to the error buffer. Always returns -1. */
__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
    if (p->errlen == 0)
        return -1;
    /* line 0: a value from the command line, named by its option */
    int n = p->line ? snprintf(p->err, p->errlen, "%s:%u: ", p->filename, p->line)
                    : snprintf(p->err, p->errlen, "%s: ", p->filename);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Escapes <len> bytes of file text for a message; the result lives in <buf> (48 bytes is
 * plenty: long text is cut with "..."). */
#define SHOW(buf, s, len) log_escape((buf), sizeof(buf), (s), (len))

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->audience_host, "0.0.0.0");
    c->audience_port = 8000;
    strcpy(c->stage_host, "0.0.0.0");
    c->stage_port = 8001;
    c->burst_ms = 1000;
    c->page_ms = 200;
    c->grace_ms = 10000;
    c->drain_ms = 3000;
    c->max_listeners = 100000;
    c->head_timeout_ms = 5000;
    c->response_timeout_ms = 30000;
    c->lag_ms = 10000;
    c->max_stalls = 3;
    c->workers = -1;
    c->max_conns_per_ip = 500;
    c->joins_per_ip = 50;
    c->joins_per_worker = 0;
    c->joins_per_second = 20000;
    c->waiting_room_rate = 5000;
    c->overload_lag_ms = 1000;
    c->waiting_room = 0;
    c->speaker_idle_ms = 30000;
    c->stage_idle_end_ms = 300000;
    c->max_cohosts = 2;
    c->max_speakers = 10;
    c->write_budget = 50000;
    c->max_batch_ms = 2000;
    c->max_members = 4000;
    c->session_window_s = 75;
    c->max_hls_sessions = 65536; /* SHARED_BEACONS_PER_SPACE (beacon.c checks) */
    c->react_per_s = 4;
    c->react_ip_per_s = 200;
    c->max_hands = 200;
    c->hand_ttl_s = 120;
    c->log_level = LOG_INFO;
    c->hls = 1;
    c->hls_segment_ms = 2000;
    /* with PART-HOLD-BACK's 1 s floor: under 3 s behind live through nginx (docs/caches.md) */
    c->hls_part_ms = 200;
    c->hls_max_blocked = 1000;
    c->aac_kbps = 96;
    c->mp3_kbps = 128;
    c->rendition_linger_ms = 10000;
    c->rendition_reserve = 8;
    c->rendition_max_encoders = 16;
    c->record = 0;
    snprintf(c->record_dir, sizeof(c->record_dir), "recordings");
    c->record_sync_s = 5;
    c->captions = 0;
    snprintf(c->captions_cmd, sizeof(c->captions_cmd), "rostrum-captions");
    snprintf(c->captions_lang, sizeof(c->captions_lang), "en"); /* the default's model */
    c->captions_queue_ms = 4000;
}

static bool is_name_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

static bool name_valid(const char *s, size_t len)
{
    if (len < 1 || len > 63)
        return false;
    bool all_dots = true;
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char((unsigned char)s[i]))
            return false;
        if (s[i] != '.')
            all_dots = false;
    }
    return !all_dots;
}

int config_space_name_valid(const char *name)
{
    /* a name the ports serve themselves (a page, a route) could never be its mount */
    return name && name_valid(name, strnlen(name, 64)) && !web_reserved(name);
}

/* Parses a port of 1-5 decimal digits, 0..65535. */
static int parse_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    if (n < 1 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static bool is_hostname_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

/* Characters of an IPv6 literal, with an optional "%zone" (an interface name). */
static bool is_v6_char(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
           ch == ':' || ch == '.';
}

int config_parse_hostport(const char *s, char *host, size_t host_cap, uint16_t *port)
{
    const char *h, *colon;
    size_t hlen;
    if (!s || host_cap == 0)
        return -1;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        if (hlen == 0)
            return -1;
        const char *zone = memchr(h, '%', hlen);
        size_t addr_len = zone ? (size_t)(zone - h) : hlen;
        if (addr_len < 2 || !memchr(h, ':', addr_len))
            return -1;
        for (size_t i = 0; i < hlen; i++) {
            unsigned char ch = (unsigned char)h[i];
            if (i < addr_len ? !is_v6_char(ch) : (i > addr_len && !is_hostname_char(ch)))
                return -1;
        }
        if (zone && hlen - addr_len < 2)
            return -1;
    } else {
        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
            return -1; /* no port, or an IPv6 address without brackets */
        h = s;
        hlen = (size_t)(colon - s);
        for (size_t i = 0; i < hlen; i++)
            if (!is_hostname_char((unsigned char)h[i]))
                return -1;
        if (hlen == 0) {
            h = "0.0.0.0";
            hlen = 7;
        }
    }
    uint16_t p;
    if (parse_port(colon + 1, &p) != 0 || hlen >= host_cap)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = p;
    return 0;
}

const struct space_config *config_space(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->num_spaces; i++)
        if (strcmp(c->spaces[i].name, name) == 0)
            return &c->spaces[i];
    return NULL;
}

int config_burst_ms(const struct config *c, const struct space_config *sc)
{
    return sc && sc->burst_ms >= 0 ? sc->burst_ms : c->burst_ms;
}

int config_page_ms(const struct config *c, const struct space_config *sc)
{
    return sc && sc->page_ms >= 0 ? sc->page_ms : c->page_ms;
}

int config_record(const struct config *c, const struct space_config *sc)
{
    return sc && sc->record >= 0 ? sc->record : c->record;
}
int config_captions(const struct config *c, const struct space_config *sc)
{
    return sc && sc->captions >= 0 ? sc->captions : c->captions;
}

int config_grace_ms(const struct config *c, const struct space_config *sc)
{
    return sc && sc->grace_ms >= 0 ? sc->grace_ms : c->grace_ms;
}

const char *config_source_password(const struct config *c, const struct space_config *sc)
{
    return sc && sc->source_password[0] ? sc->source_password : c->source_password;
}

/* ---- the line parser ------------------------------------------------------------------- */

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Returns the field an integer key sets in the current section. */
static int *int_field(struct parser *p, enum key_id id)
{
    struct config *c = p->c;
    struct space_config *sc = p->sc;
    switch (id) {
    case KEY_BURST_MS:
        return sc ? &sc->burst_ms : &c->burst_ms;
    case KEY_PAGE_MS:
        return sc ? &sc->page_ms : &c->page_ms;
    case KEY_GRACE_MS:
        return sc ? &sc->grace_ms : &c->grace_ms;
    case KEY_MAX_LISTENERS:
        return &c->max_listeners;
    case KEY_HEAD_TIMEOUT_MS:
        return &c->head_timeout_ms;
    case KEY_RESPONSE_TIMEOUT_MS:
        return &c->response_timeout_ms;
    case KEY_LAG_MS:
        return &c->lag_ms;
    case KEY_MAX_STALLS:
        return &c->max_stalls;
    case KEY_WORKERS:
        return &c->workers;
    case KEY_MAX_CONNS_PER_IP:
        return &c->max_conns_per_ip;
    case KEY_JOINS_PER_IP:
        return &c->joins_per_ip;
    case KEY_JOINS_PER_WORKER:
        return &c->joins_per_worker;
    case KEY_JOINS_PER_SECOND:
        return &c->joins_per_second;
    case KEY_WAITING_ROOM_RATE:
        return &c->waiting_room_rate;
    case KEY_OVERLOAD_LAG_MS:
        return &c->overload_lag_ms;
    case KEY_WAITING_ROOM:
        return &c->waiting_room;
    case KEY_SPEAKER_IDLE_MS:
        return &c->speaker_idle_ms;
    case KEY_STAGE_IDLE_END_MS:
        return &c->stage_idle_end_ms;
    case KEY_MAX_COHOSTS:
        return &c->max_cohosts;
    case KEY_MAX_SPEAKERS:
        return &c->max_speakers;
    case KEY_WRITE_BUDGET:
        return &c->write_budget;
    case KEY_MAX_BATCH_MS:
        return &c->max_batch_ms;
    case KEY_MAX_MEMBERS:
        return &c->max_members;
    case KEY_DRAIN_MS:
        return &c->drain_ms;
    case KEY_HLS:
        return &c->hls;
    case KEY_HLS_SEGMENT_MS:
        return &c->hls_segment_ms;
    case KEY_HLS_PART_MS:
        return &c->hls_part_ms;
    case KEY_HLS_MAX_BLOCKED:
        return &c->hls_max_blocked;
    case KEY_SESSION_WINDOW_S:
        return &c->session_window_s;
    case KEY_MAX_HLS_SESSIONS:
        return &c->max_hls_sessions;
    case KEY_REACT_PER_S:
        return &c->react_per_s;
    case KEY_REACT_IP_PER_S:
        return &c->react_ip_per_s;
    case KEY_MAX_HANDS:
        return &c->max_hands;
    case KEY_HAND_TTL_S:
        return &c->hand_ttl_s;
    case KEY_AAC_KBPS:
        return &c->aac_kbps;
    case KEY_MP3_KBPS:
        return &c->mp3_kbps;
    case KEY_AAC_ALWAYS:
        return &c->aac_always;
    case KEY_RENDITION_LINGER_MS:
        return &c->rendition_linger_ms;
    case KEY_RENDITION_RESERVE:
        return &c->rendition_reserve;
    case KEY_RENDITION_MAX_ENCODERS:
        return &c->rendition_max_encoders;
    case KEY_RECORD:
        return sc ? &sc->record : &c->record;
    case KEY_RECORD_SYNC_S:
        return &c->record_sync_s;
    case KEY_CAPTIONS:
        return sc ? &sc->captions : &c->captions;
    case KEY_CAPTIONS_QUEUE_MS:
        return &c->captions_queue_ms;
    default:
        check_fail(__FILE__, __LINE__, "key_defs[] and this switch disagree");
    }
}

/* Copies a string value into a field of <cap> bytes. Tabs are kept; other control bytes and
 * invalid UTF-8 are refused, because names and descriptions end up in JSON, WebSocket text
 * frames, HTTP headers and logs. */
static int set_string(struct parser *p, const struct key_def *def, char *dst, size_t cap,
                      const char *val, size_t vlen)
{
    if (vlen >= cap)
        return fail(p, "%s: value too long (%zu bytes, max %zu)", def->name, vlen, cap - 1);
    for (size_t i = 0; i < vlen; i++) {
        unsigned char ch = (unsigned char)val[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(p, "%s: control character in value", def->name);
    }
    if (!utf8_valid(val, vlen))
        return fail(p, "%s: value is not valid UTF-8", def->name);
    memcpy(dst, val, vlen);
    dst[vlen] = '\0';
    return 0;
}

/* public-url and relay-name travel in a relay's reports and end up in a Location header and
 * a metric label as they are, so they are held to what the feed allows (feed_text_ok in
 * relay/feedproto.h, a layer above this one): a name of [A-Za-z0-9._:-], a URL of "http://"
 * or "https://" and a host[:port], no path. */
static int set_report_text(struct parser *p, const struct key_def *def, char *dst, size_t cap,
                           const char *val, size_t vlen, int is_url)
{
    if (vlen >= cap)
        return fail(p, "%s: value too long (%zu bytes, max %zu)", def->name, vlen, cap - 1);
    size_t i = 0;
    if (is_url) {
        if (vlen > 7 && strncmp(val, "http://", 7) == 0)
            i = 7;
        else if (vlen > 8 && strncmp(val, "https://", 8) == 0)
            i = 8;
        else
            return fail(p, "%s: not an http:// or https:// URL with a host", def->name);
    }
    for (; i < vlen; i++) {
        unsigned char ch = (unsigned char)val[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':' ||
              (is_url && (ch == '[' || ch == ']'))))
            return fail(p, is_url ? "%s: only scheme://host[:port], no path (the listener's "
                                    "path is kept)"
                                  : "%s: only letters, digits and . _ : -",
                        def->name);
    }
    memcpy(dst, val, vlen);
    dst[vlen] = '\0';
    return 0;
}

/* A language tag (BCP 47, as HLS's LANGUAGE wants): subtags of 1-8 letters or digits joined
 * by '-', the first of letters only; or empty, to claim none. */
int config_language_ok(const char *val, size_t vlen)
{
    size_t run = 0; /* characters of the subtag so far */
    int first = 1;  /* in the first subtag */
    for (size_t i = 0; i < vlen; i++) {
        unsigned char ch = (unsigned char)val[i];
        int letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        int digit = ch >= '0' && ch <= '9';
        if (ch == '-' && run > 0 && i + 1 < vlen) {
            run = 0;
            first = 0;
        } else if ((letter || (digit && !first)) && run < 8) {
            run++;
        } else {
            return 0;
        }
    }
    return 1;
}

static int set_language(struct parser *p, const struct key_def *def, char *dst, size_t cap,
                        const char *val, size_t vlen)
{
    if (vlen >= cap)
        return fail(p, "%s: value too long (%zu bytes, max %zu)", def->name, vlen, cap - 1);
    if (!config_language_ok(val, vlen))
        return fail(p, "%s: not a language tag (like en, en-GB, pt-BR; empty for none)",
                    def->name);
    memcpy(dst, val, vlen);
    dst[vlen] = '\0';
    return 0;
}

static int set_int(struct parser *p, const struct key_def *def, enum key_id id, const char *val,
                   size_t vlen)
{
    char shown[48];
    long v = 0;
    bool ok = vlen > 0 && vlen <= 9;
    for (size_t i = 0; ok && i < vlen; i++) {
        if (val[i] < '0' || val[i] > '9')
            ok = false;
        else
            v = v * 10 + (val[i] - '0');
    }
    if (!ok) {
        /* long digit strings are out of range rather than "not a number" */
        bool digits = vlen > 0;
        for (size_t i = 0; i < vlen; i++)
            digits = digits && val[i] >= '0' && val[i] <= '9';
        if (digits)
            v = (long)def->max + 1;
        else
            return fail(p, "%s: '%s' is not a whole number", def->name, SHOW(shown, val, vlen));
    }
    if (v < def->min || v > def->max)
        return fail(p, "%s: %s is out of range (%d to %d)", def->name, SHOW(shown, val, vlen),
                    def->min, def->max);
    /* the renditions (issue 11): rates the encoders take as they are. MPEG-1 layer III at
     * 48 kHz has 14 bitrates (ISO/IEC 11172-3, 2.4.2.3); AAC-LC below 32 kb/s is not worth
     * a listener's while. */
    static const int mp3_rates[] = {32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320};
    bool rate_ok = v == 0 || id != KEY_MP3_KBPS;
    for (size_t i = 0; !rate_ok && i < sizeof(mp3_rates) / sizeof(mp3_rates[0]); i++)
        rate_ok = v == mp3_rates[i];
    if (!rate_ok)
        return fail(p, "%s: %ld is not an MP3 bitrate (0 = off, or 32 40 48 56 64 80 96 112 128 "
                       "160 192 224 256 320)", def->name, v);
    if (id == KEY_AAC_KBPS && v > 0 && v < 32)
        return fail(p, "%s: %ld is too low (0 = off, or 32 to 320)", def->name, v);
    *int_field(p, id) = (int)v;
    return 0;
}

static int set_hostport(struct parser *p, const struct key_def *def, char *host, size_t cap,
                        uint16_t *port, const char *val, size_t vlen)
{
    char shown[48], tmp[CONFIG_MAX_LINE + 1];
    memcpy(tmp, val, vlen);
    tmp[vlen] = '\0';
    if (config_parse_hostport(tmp, host, cap, port) != 0)
        return fail(p, "%s: bad address '%s' (expected HOST:PORT, [IPv6]:PORT or :PORT)", def->name,
                    SHOW(shown, val, vlen));
    return 0;
}

static int set_log_level(struct parser *p, const struct key_def *def, const char *val, size_t vlen)
{
    char shown[48];
    for (int i = 0; i < (int)(sizeof(log_level_names) / sizeof(log_level_names[0])); i++) {
        if (strlen(log_level_names[i]) == vlen && memcmp(log_level_names[i], val, vlen) == 0) {
            p->c->log_level = i;
            return 0;
        }
    }
    return fail(p, "%s: '%s' is not one of error, warn, info, debug", def->name,
                SHOW(shown, val, vlen));
}

static int apply(struct parser *p, enum key_id id, const char *val, size_t vlen)
{
    const struct key_def *def = &key_defs[id];
    struct config *c = p->c;
    struct space_config *sc = p->sc;
    if (p->sc && !(def->where & IN_SPACE))
        return fail(p, "'%s' is a global key: put it before the first [space] section", def->name);
    if (!p->sc && !(def->where & IN_GLOBAL))
        return fail(p, "'%s' is only allowed in a [space NAME] section", def->name);
    if (p->seen[id / 64] & (UINT64_C(1) << (id % 64)))
        return fail(p, "duplicate key '%s'", def->name);
    p->seen[id / 64] |= UINT64_C(1) << (id % 64);

    if (def->min <= def->max)
        return set_int(p, def, id, val, vlen);
    switch (id) {
    case KEY_AUDIENCE:
        return set_hostport(p, def, c->audience_host, sizeof(c->audience_host), &c->audience_port,
                            val, vlen);
    case KEY_STAGE:
        return set_hostport(p, def, c->stage_host, sizeof(c->stage_host), &c->stage_port, val,
                            vlen);
    case KEY_SOURCE_PASSWORD:
        if (sc)
            return set_string(p, def, sc->source_password, sizeof(sc->source_password), val, vlen);
        return set_string(p, def, c->source_password, sizeof(c->source_password), val, vlen);
    case KEY_LOG_LEVEL:
        return set_log_level(p, def, val, vlen);
    case KEY_HOST_KEY:
        return set_string(p, def, c->host_key, sizeof(c->host_key), val, vlen);
    case KEY_ADMIN_KEY:
        return set_string(p, def, c->admin_key, sizeof(c->admin_key), val, vlen);
    case KEY_RELAY_KEY:
        return set_string(p, def, c->relay_key, sizeof(c->relay_key), val, vlen);
    case KEY_PUBLIC_URL:
        return set_report_text(p, def, c->public_url, sizeof(c->public_url), val, vlen, 1);
    case KEY_RELAY_NAME:
        return set_report_text(p, def, c->relay_name, sizeof(c->relay_name), val, vlen, 0);
    case KEY_RELAY_CAFILE:
        return set_string(p, def, c->relay_cafile, sizeof(c->relay_cafile), val, vlen);
    case KEY_TRUSTED_PROXIES:
        return set_string(p, def, c->trusted_proxies, sizeof(c->trusted_proxies), val, vlen);
    case KEY_ACCESS_LOG:
        return set_string(p, def, c->access_log, sizeof(c->access_log), val, vlen);
    case KEY_LOG_FILE:
        return set_string(p, def, c->log_file, sizeof(c->log_file), val, vlen);
    case KEY_RECORD_DIR:
        return set_string(p, def, c->record_dir, sizeof(c->record_dir), val, vlen);
    case KEY_CAPTIONS_CMD:
        return set_string(p, def, c->captions_cmd, sizeof(c->captions_cmd), val, vlen);
    case KEY_CAPTIONS_LANG:
        return set_language(p, def, c->captions_lang, sizeof(c->captions_lang), val, vlen);
    case KEY_USER:
        return set_string(p, def, c->user, sizeof(c->user), val, vlen);
    case KEY_AUDIENCE_TLS:
        c->audience_tls = 1;
        return set_hostport(p, def, c->audience_tls_host, sizeof(c->audience_tls_host),
                            &c->audience_tls_port, val, vlen);
    case KEY_STAGE_TLS:
        c->stage_tls = 1;
        return set_hostport(p, def, c->stage_tls_host, sizeof(c->stage_tls_host),
                            &c->stage_tls_port, val, vlen);
    case KEY_TLS_CERT:
        return set_string(p, def, c->tls_cert, sizeof(c->tls_cert), val, vlen);
    case KEY_TLS_KEY:
        return set_string(p, def, c->tls_key, sizeof(c->tls_key), val, vlen);
    case KEY_LOBBY_AUDIO:
        return set_string(p, def, c->lobby_audio, sizeof(c->lobby_audio), val, vlen);
    case KEY_NAME:
        return set_string(p, def, sc->display_name, sizeof(sc->display_name), val, vlen);
    case KEY_DESCRIPTION:
        return set_string(p, def, sc->description, sizeof(sc->description), val, vlen);
    default:
        check_fail(__FILE__, __LINE__, "key_defs[] and this switch disagree");
    }
}

/* Handles "[space NAME]"; <s> spans the trimmed line, brackets included. */
static int parse_section(struct parser *p, const char *s, size_t len)
{
    char shown[48];
    if (len < 2 || s[len - 1] != ']')
        return fail(p, "a section header must end with ']' (comments go on their own line)");
    const char *in = s + 1, *end = s + len - 1;
    while (in < end && is_blank(*in))
        in++;
    while (end > in && is_blank(end[-1]))
        end--;
    if ((size_t)(end - in) < 5 || memcmp(in, "space", 5) != 0 || (end - in > 5 && !is_blank(in[5])))
        return fail(p, "unknown section '%s' (expected [space NAME])", SHOW(shown, s, len));
    in += 5;
    while (in < end && is_blank(*in))
        in++;
    size_t nlen = (size_t)(end - in);
    if (nlen == 0)
        return fail(p, "[space] needs a name, as in [space live]");
    if (!name_valid(in, nlen))
        return fail(p, "bad space name '%s': 1 to 63 of A-Z a-z 0-9 . _ - (and not only dots)",
                    SHOW(shown, in, nlen));
    char name[64];
    memcpy(name, in, nlen);
    name[nlen] = '\0';
    if (web_reserved(name))
        return fail(p, "space name '%s' is a page or route of the server's own", name);
    for (size_t i = 0; i < p->c->num_spaces; i++) {
        if (strlen(p->c->spaces[i].name) == nlen && memcmp(p->c->spaces[i].name, in, nlen) == 0)
            return fail(p, "duplicate space '%.*s'", (int)nlen, in);
    }
    if (p->c->num_spaces >= CONFIG_MAX_SPACES)
        return fail(p, "too many spaces (max %d)", CONFIG_MAX_SPACES);
    struct space_config *sc = &p->c->spaces[p->c->num_spaces++];
    memset(sc, 0, sizeof(*sc));
    memcpy(sc->name, in, nlen);
    sc->name[nlen] = '\0';
    sc->burst_ms = sc->page_ms = sc->grace_ms = -1;
    sc->record = -1;
    sc->captions = -1;
    p->sc = sc;
    p->seen[0] = p->seen[1] = 0;
    return 0;
}

/* Decodes a "quoted" value starting at <s> (on the opening quote) into <out> (at least
 * <len> bytes). Only \" and \\ are escapes. Returns the decoded length or -1. */
static long parse_quoted(struct parser *p, const char *s, size_t len, char *out)
{
    size_t o = 0, i = 1;
    for (;;) {
        if (i >= len)
            return fail(p, "unterminated quote");
        char ch = s[i++];
        if (ch == '"')
            break;
        if (ch == '\\') {
            if (i >= len)
                return fail(p, "unterminated quote");
            ch = s[i++];
            if (ch != '"' && ch != '\\')
                return fail(p, "bad escape '\\%c' in quoted value (only \\\" and \\\\)",
                            (ch >= 0x20 && ch < 0x7f) ? ch : '?');
        }
        out[o++] = ch;
    }
    while (i < len && is_blank(s[i]))
        i++;
    if (i < len)
        return fail(p, "unexpected text after the closing quote");
    return (long)o;
}

/* Handles "key = value"; <s> spans the trimmed, non-empty line. */
static int parse_assignment(struct parser *p, const char *s, size_t len)
{
    char shown[48], val[CONFIG_MAX_LINE + 1];
    size_t k = 0;
    while (k < len && !is_blank(s[k]) && s[k] != '=')
        k++;
    size_t i = k;
    while (i < len && is_blank(s[i]))
        i++;
    if (i >= len || s[i] != '=')
        return fail(p, "expected 'key = value', '[space NAME]' or a # comment");
    if (k == 0)
        return fail(p, "missing key before '='");
    int id = -1;
    for (int j = 0; j < KEY_COUNT; j++) {
        if (strlen(key_defs[j].name) == k && memcmp(key_defs[j].name, s, k) == 0) {
            id = j;
            break;
        }
    }
    if (id < 0)
        return fail(p, "unknown key '%s'", SHOW(shown, s, k));
    i++;
    while (i < len && is_blank(s[i]))
        i++;
    const char *v = s + i;
    size_t vlen = len - i;
    if (vlen > 0 && v[0] == '"') {
        long n = parse_quoted(p, v, vlen, val);
        if (n < 0)
            return -1;
        v = val;
        vlen = (size_t)n;
    }
    return apply(p, (enum key_id)id, v, vlen);
}

static int parse_line(struct parser *p, const char *s, size_t len)
{
    while (len > 0 && is_blank(*s))
        s++, len--;
    while (len > 0 && is_blank(s[len - 1]))
        len--;
    if (len == 0 || s[0] == '#')
        return 0;
    if (s[0] == '[')
        return parse_section(p, s, len);
    return parse_assignment(p, s, len);
}

int config_parse(struct config *c, const char *text, size_t len, const char *filename, char *err,
                 size_t errlen)
{
    struct config *tmp = malloc(sizeof(*tmp));
    BUG_ON(!tmp);
    memcpy(tmp, c, sizeof(*tmp));
    struct parser p = {
        .c = tmp,
        .filename = filename ? filename : "config",
        .err = err,
        .errlen = errlen,
    };
    if (errlen > 0)
        err[0] = '\0';

    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        pos = 3; /* a UTF-8 byte order mark, as some editors write */
    int rc = 0;
    while (pos < len && rc == 0) {
        p.line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (n > CONFIG_MAX_LINE)
            rc = fail(&p, "line too long (%zu bytes, max %d)", n, CONFIG_MAX_LINE);
        else if (memchr(s, '\0', n))
            rc = fail(&p, "NUL byte in line");
        else
            rc = parse_line(&p, s, n);
    }
    if (rc == 0) {
        p.line = 0;
        rc = config_check(tmp, p.err, p.errlen, p.filename);
    }
    if (rc == 0)
        memcpy(c, tmp, sizeof(*c));
    free(tmp);
    return rc;
}

int config_check(const struct config *c, char *err, size_t errlen, const char *where)
{
    if (c->hls_part_ms % 20 != 0 || c->hls_segment_ms % c->hls_part_ms != 0) {
        /* HLS parts are whole Opus frames (20 ms), segments whole parts (issue 11) */
        snprintf(err, errlen, "%s: hls-part-ms (%d) must be a multiple of 20 and hls-segment-ms "
                 "(%d) a whole number of parts", where, c->hls_part_ms, c->hls_segment_ms);
        return -1;
    }
    return 0;
}

int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen)
{
    int id = -1;
    for (int j = 0; j < KEY_COUNT && id < 0; j++)
        if (strcmp(key_defs[j].name, key) == 0 && (key_defs[j].where & IN_GLOBAL))
            id = j;
    if (id < 0) {
        snprintf(err, errlen, "--%s: unknown option", key);
        return -1;
    }
    size_t vlen = strlen(value);
    if (vlen > CONFIG_MAX_LINE) {
        snprintf(err, errlen, "--%s: value too long", key);
        return -1;
    }
    struct config *tmp = malloc(sizeof(*tmp));
    BUG_ON(!tmp);
    memcpy(tmp, c, sizeof(*tmp));
    struct parser p = {.c = tmp, .filename = "command line", .err = err, .errlen = errlen};
    int rc = apply(&p, (enum key_id)id, value, vlen);
    if (rc == 0)
        memcpy(c, tmp, sizeof(*c));
    free(tmp);
    return rc;
}

const char *config_global_key(int i)
{
    for (int j = 0; j < KEY_COUNT; j++)
        if ((key_defs[j].where & IN_GLOBAL) && i-- == 0)
            return key_defs[j].name;
    return NULL;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == -1) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size > CONFIG_MAX_FILE) {
        snprintf(err, errlen, "%s: file too large (max %d bytes)", path, CONFIG_MAX_FILE);
        close(fd);
        return -1;
    }
    /* read to EOF rather than trusting st_size: the file may change under us */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    BUG_ON(!buf);
    for (;;) {
        if (len == cap) {
            if (cap > CONFIG_MAX_FILE) {
                snprintf(err, errlen, "%s: file too large (max %d bytes)", path, CONFIG_MAX_FILE);
                free(buf);
                close(fd);
                return -1;
            }
            cap *= 2;
            buf = realloc(buf, cap);
            BUG_ON(!buf);
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    int rc = config_parse(c, buf, len, path, err, errlen);
    free(buf);
    return rc;
}
