/*
 * config: the server's configuration file.
 *
 * A small line-based format, read at start and again on SIGHUP (docs/config.example is the reference):
 *
 *     # a comment (whole lines only, so a password may contain '#')
 *     audience = 0.0.0.0:8000
 *     source-password = "hunter2"
 *     [space live]
 *     name = "Morning show"
 *
 * Keys before the first section are global; a `[space NAME]` section holds the options of
 * one space (mount `/NAME`). Every error names the file and line ("FILE:LINE: message") so an
 * operator can fix a file without reading the source. Parsing is bounded: lines are at most
 * CONFIG_MAX_LINE bytes, spaces at most CONFIG_MAX_SPACES, and each value must fit its field,
 * so a hostile or corrupt file cannot make the parser allocate or loop without bound.
 *
 * Ownership: a struct config is a plain value owned by whoever declared it; nothing in it
 * points elsewhere, so it may be copied with memcpy and shared with forked workers.
 */
#ifndef ROSTRUM_CONFIG_CONFIG_H
#define ROSTRUM_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_SPACES 64
#define CONFIG_MAX_LINE 1024          /* bytes per line, without the line ending */
#define CONFIG_MAX_FILE (1024 * 1024) /* config_load_file refuses larger files */

/* Options of one `[space NAME]` section. Unset values fall back to the global ones. */
struct space_config {
    char name[64];          /* mount name without the leading '/' */
    char display_name[128]; /* "" if unset */
    char description[256];
    char source_password[128];       /* "" = use the global one */
    int burst_ms, page_ms, grace_ms; /* -1 = use the global value */
    int record;                      /* 0/1; -1 = use the global value */
    int captions;                    /* 0/1; -1 = use the global value */
};

struct config {
    char audience_host[256];
    uint16_t audience_port; /* default 0.0.0.0:8000 */
    char stage_host[256];
    uint16_t stage_port;       /* default 0.0.0.0:8001 */
    char audience_tls_host[256];
    uint16_t audience_tls_port; /* with audience_tls: the TLS listener of the audience side */
    int audience_tls;           /* 1 if audience-tls is set (default: no TLS listener) */
    char stage_tls_host[256];
    uint16_t stage_tls_port;    /* with stage_tls: the TLS listener of the stage side */
    int stage_tls;              /* 1 if stage-tls is set (default: no TLS listener) */
    char tls_cert[512];         /* full chain, PEM; needed by a TLS listener */
    char tls_key[512];          /* its private key, PEM */
    char lobby_audio[512];      /* issue 12: Ogg/Opus file a lobby loops; "": silence */
    char source_password[128]; /* default "" (server refuses to start without one) */
    int burst_ms;              /* audio sent at once on join; default 1000, 0..30000 */
    int page_ms;               /* Ogg page duration; default 200, 20..2000 */
    int grace_ms;              /* a space outlives its source this long; default 10000 */
    int max_listeners;         /* default 100000, 1..10000000 */
    int head_timeout_ms;       /* a request head must arrive within; default 5000 */
    int response_timeout_ms;   /* a response must be written whole within; default 30000 */
    int lag_ms;                /* further behind than this jumps to the live edge; 10000 */
    int max_stalls;            /* jumps before a listener is closed; default 3, 1..100 */
    int workers;               /* listener worker processes; -1 (default) = from max-listeners
                                  and the descriptor limit; 0 = the main process serves */
    int write_budget;          /* writes/s all listeners may cost before batching; 50000 */
    int max_cohosts;           /* co-hosts on a stage besides the host; default 2 */
    int max_speakers;          /* speakers on a stage besides host and co-hosts; 10 */
    char host_key[128];
    char admin_key[128];       /* if set, /dashboard and its data need it (?key= or Bearer) */
    char relay_key[128];       /* if set, relay feeds need it (X-Relay-Key or ?key=) (issue 10);
                                * a relay presents it to its upstreams */
    char public_url[129];      /* a relay's listener URL base, sent upward in its reports so
                                * that a full or draining upstream redirects there (issue 10);
                                * "": never a redirect target */
    char relay_name[33];       /* the name a relay reports upward (default: its audience
                                * address), a label of the upstream's per-relay gauges */
    char relay_cafile[512];    /* CA certificates (PEM) a relay trusts for https:// upstreams;
                                * "": the system's store (read when the relay starts) */
    int max_conns_per_ip;      /* open connections per client address (IPv6: /64); 500 */
    int joins_per_ip;          /* listener joins per second per address (burst 2x); 50 */
    int joins_per_second;      /* ceiling on listener joins per second, all workers; 20000 */
    int joins_per_worker;      /* the same per worker (bucket 3 s deep); 0 (default) =
                                  joins_per_second split over the workers, which each audience
                                  process resolves into its own copy at start */
    int waiting_room_rate;     /* waiting room: admissions per second its tickets are spaced
                                  at, over all workers; 5000 */
    int overload_lag_ms;       /* loop lag that is pressure 1; joins refused from 0.8 x; 1000 */
    int waiting_room;          /* 1: GET /join/<space> hands out admission tickets */
    char trusted_proxies[512]; /* addresses whose X-Forwarded-For is believed, comma-separated */
    int stage_idle_end_ms;     /* a stage space with no member and no source ends; 300000 */
    int drain_ms;              /* SIGTERM: newcomers refused (503), members told to come back,
                                  then at most this long for everyone to leave; 3000 */
    int speaker_idle_ms;       /* a speaker that sends nothing this long is dropped; 30000 */        /* creates stage spaces; "" = nobody can */
    int max_batch_ms;          /* longest wait between writes to one listener; 2000 */
    int max_members;           /* stage WebSocket members off stage, all spaces; 4000 */
    int session_window_s;      /* an HLS session counts this long after its last beacon; 75 */
    int max_hls_sessions;      /* HLS sessions counted per space; SHARED_BEACONS_PER_SPACE */
    int react_per_s;           /* issue 12: reactions (and hand requests) per listener id, per
                                  second, burst 2x; 4 */
    int react_ip_per_s;        /* the same per address (many listeners behind a NAT); 200 */
    int max_hands;             /* raised hands a space holds; 200 (SHARED_HANDS_MAX) */
    int hand_ttl_s;            /* a hand not raised again this long is lowered; 120 */
    int log_level;             /* enum log_level (util/log.h); default LOG_INFO */
    char access_log[256];      /* a line per listener session, appended; "" (default) = none */
    char log_file[256];        /* the server's log (and stderr), appended; "" (default) = stderr;
                                  read at start only, reopened on SIGUSR1 */
    char user[64];             /* after binding, run as this user; "" (default) = stay */
    int hls;                   /* 1 (default): HLS and LL-HLS at /<space>.m3u8 (issue 11) */
    int hls_segment_ms;        /* HLS segment duration; 2000, a whole number of parts */
    int hls_part_ms;           /* LL-HLS part duration; 500, a multiple of 20 */
    int hls_max_blocked;       /* blocking playlist/part requests held per worker; 1000 */
    /* issue 11, item 5: the AAC and MP3 renditions (transcode/transcode.h) */
    int aac_kbps;              /* /<space>.aac bitrate; 0 = none; default 96, 32..320 */
    int mp3_kbps;              /* /<space>.mp3 bitrate; 0 = none; default 128, an MP3 rate */
    int aac_always;            /* 1: encode AAC with no listener too (HLS reads it); 0 */
    int rendition_linger_ms;   /* an encoder outlives its last listener this long; 10000 */
    int rendition_reserve;     /* free slots renditions never take (kept for spaces); 8 */
    int rendition_max_encoders; /* encoders running at once, all spaces; default 16 */
    /* recording and replay (issue 12, item 2; record/record.h) */
    int record;                /* 1: every space is recorded; default 0 (per space too) */
    char record_dir[256];      /* where recordings live; default "recordings" */
    int record_sync_s;         /* fdatasync a growing recording this often; default 5 */
    /* live captions (issue 12, item 4; captions/captions.h) */
    int captions;              /* 1: every space is captioned; default 0 (per space too) */
    char captions_cmd[512];    /* the recogniser, run by /bin/sh; default "rostrum-captions" */
    char captions_lang[36];    /* its language (BCP 47) for HLS's LANGUAGE; "en"; "": none */
    int captions_queue_ms;     /* PCM the recogniser may leave unread before it is killed; 4000 */
    struct space_config spaces[CONFIG_MAX_SPACES];
    size_t num_spaces;
};

/* Sets every field of <c> to its default: no spaces, empty password, listeners on
 * 0.0.0.0:8000, stage on 0.0.0.0:8001. */
void config_defaults(struct config *c);

/* Parses <len> bytes of config text (need not be NUL-terminated; a NUL byte is an error) and
 * applies it on top of <c>, which the caller has filled (config_defaults, usually). <filename>
 * is used in messages (NULL reads "config"). Returns 0, or -1 with "FILE:LINE: message" in
 * <err> (of <errlen> bytes, always NUL-terminated when errlen > 0); on error <c> is left
 * exactly as it was. A space already in <c> may not be declared again. */
int config_parse(struct config *c, const char *text, size_t len, const char *filename, char *err,
                 size_t errlen);

/* Checks what spans keys (HLS parts and segments): 0, or -1 with the reason, prefixed by
 * <where>, in <err>. config_load_file does it per file; after command-line options
 * (config_set, one at a time) the caller does. */
int config_check(const struct config *c, char *err, size_t errlen, const char *where);

/* Sets global key <key> (its config-file name) to <value>, checked as a line of the file would
 * be, with the same ranges: the command line goes through here. Returns 0, or -1 with
 * "--KEY: message" in <err>; on error <c> is unchanged. */
int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen);
/* The name of the <i>th key a command line may set (a global one), or NULL past the last. */
const char *config_global_key(int i);

/* Reads the file at <path> (at most CONFIG_MAX_FILE bytes) and config_parse()s it onto <c>.
 * File errors read "PATH: No such file or directory" and the like; <c> is unchanged. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);

/* Splits "HOST:PORT", "[v6]:PORT" or ":PORT" (host 0.0.0.0). The host is copied into <host>
 * (<host_cap> bytes) without brackets, ready for getaddrinfo(); port 0 is allowed (tests bind
 * port 0 and read it back). Returns 0, or -1 (nothing written to <port>) on a malformed
 * string, a port above 65535 or a host that does not fit. */
int config_parse_hostport(const char *s, char *host, size_t host_cap, uint16_t *port);

/* Returns 1 if <name> is a valid space name: 1-63 bytes of [A-Za-z0-9._-], not all dots
 * (a browser would resolve "/.." to "/"), else 0. */
int config_space_name_valid(const char *name);

/* Returns the configured space called <name> (without '/'), or NULL if there is none.
 * The pointer borrows from <c>. */
const struct space_config *config_space(const struct config *c, const char *name);

/* Effective per-space values: the space's own if set, else the global one. <sc> may be NULL
 * (a space started by a source without a section). */
int config_burst_ms(const struct config *c, const struct space_config *sc);
int config_page_ms(const struct config *c, const struct space_config *sc);
int config_grace_ms(const struct config *c, const struct space_config *sc);
/* 1 if the space of <sc> (may be NULL) is recorded: its record, or the global one. */
int config_record(const struct config *c, const struct space_config *sc);
/* 1 if the space of <sc> (may be NULL) is captioned: its captions, or the global one. */
int config_captions(const struct config *c, const struct space_config *sc);
const char *config_source_password(const struct config *c, const struct space_config *sc);

/* 1 if <s>/<n> is a language tag of the shape captions-lang takes (BCP 47's: subtags of 1-8
 * letters, digits after the first, joined by '-'; empty: none), else 0. */
int config_language_ok(const char *s, size_t n);

#endif
