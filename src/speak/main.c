/*
 * rostrum-speak: one speaker on a stage space, from the command line (docs/stage.md).
 *
 *   rostrum-speak --stage HOST:PORT --space NAME (--key KEY | --token T)
 *                 (--tone HZ | --input FILE | --clicks MS) --seconds S [--tls [--cacert CA]]
 *                 [--record OUT.ogg] [--detect-clicks] [--name NAME] [--gain DB] [--json]
 *
 * It joins GET /ws/NAME over a WebSocket (wss:// with --tls: the server's certificate is
 * checked against --cacert or the system's trust store, and must name the host of --stage), sends
 * one Opus packet (48 kHz mono, 20 ms) per binary frame in real time, receives the mix-minus
 * (optionally into an Ogg/Opus file) and the JSON control messages, and after S seconds closes
 * cleanly.
 *
 * Timeline: slot i of the S*50 slots is due at start + 20*i ms on CLOCK_MONOTONIC, so the send
 * rate never drifts, whatever the timer's lateness. A slot found more than MAX_LATE_MS late
 * (the process was stopped, the machine stalled) is skipped, not sent in a burst: the mixer's
 * jitter buffer is small and a burst would only be dropped there, or add latency.
 *
 *   connect ─► upgrade ─► welcome (+ audio ready) ─► speaking ─► S s later: close 1000 ─►
 *   the server's close (≤ 2 s) ─► exit 0
 *
 * Latency (bench/stage-latency): --clicks sends silence with a click every MS ms, starting on a
 * frame boundary, and records the CLOCK_MONOTONIC time each click's frame was due; another
 * speaker's --detect-clicks decodes what it hears and records when the packet carrying each
 * click onset arrived, plus the onset's place in it. CLOCK_MONOTONIC is one clock for every
 * process on the machine, so the two lists (in --json) subtract.
 *
 * Exit status: 0 done; 1 failure, or the server closed first; 2 bad usage; 3 refused before the
 * upgrade (HTTP status and body on stderr).
 *
 * Everything runs on the project's event loop: the socket, the pacing clock, the ffmpeg pipe
 * (speak/source) and SIGINT/SIGTERM (a signalfd: the first one closes cleanly, a second one
 * quits at once).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <opus/opus.h>

#include "event/loop.h"
#include "ogg/mux.h"
#include "speak/detect.h"
#include "speak/source.h"
#include "speak/wsc.h"
#include "tls/tls.h"
#include "util/buf.h"
#include "util/check.h"
#include "util/log.h"

#define FRAME_MS 20
#define FRAME (SPEAK_RATE / 1000 * FRAME_MS)
#define MAX_LATE_MS 100      /* a slot later than this is skipped */
#define SEND_QUEUE_MAX 32768 /* bytes waiting for the socket before frames are dropped */
#define WELCOME_MS 5000      /* after the upgrade */
#define READY_MS 10000       /* for the audio source, after the welcome */
#define CLOSE_WAIT_MS 2000   /* for the server's close, after ours */
#define BITRATE 40000
#define MAX_PACKET 1500
#define PRE_SKIP 312 /* the server's encoder look-ahead (docs/stage.md) */
#define MAX_SECONDS 604800.0
#define MAX_CLICKS_MS 3600000 /* --clicks: at most one an hour */
#define TIMES_MAX 100000      /* click times kept for --json (more are counted, not kept) */

enum exit_code { EXIT_DONE = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3 };
enum phase { PH_CONNECTING, PH_WELCOME, PH_SPEAKING, PH_CLOSING, PH_DONE };

struct opts {
    const char *stage, *space, *key, *token, *input, *record, *name, *cacert;
    double tone, seconds, gain;
    unsigned clicks_ms;
    int has_tone, has_clicks, detect_clicks, json, tls;
};

/* A bounded list of CLOCK_MONOTONIC times in ms, for --json. */
struct times {
    double *v;
    size_t n, cap;
    uint64_t lost; /* past TIMES_MAX */
};

/* The whole session. One per process, on main()'s stack; everything it points to is owned by
 * it and freed in speak_free(). */
struct speak {
    struct opts o;
    struct loop loop;
    struct wsc ws;
    struct tls_ctx *tls; /* --tls: the client context, owned */
    struct speak_source *src;
    OpusEncoder *enc;
    struct loop_timer clock;    /* pacing */
    struct loop_timer deadline; /* welcome, source ready, or the server's close */
    struct io sig;              /* signalfd for SIGINT and SIGTERM */
    int phase;
    int signals;
    /* timeline */
    int64_t start_ms; /* CLOCK_MONOTONIC ms when slot 0 was due; valid once <started> */
    int started;
    uint64_t slot, nslots;
    /* what happened */
    int64_t welcome_ms, first_rx_ms;
    uint64_t packets_sent, packets_dropped, frames_late, frames_off_stage;
    int64_t send_late_max_ms; /* worst lateness of a slot that was sent */
    uint64_t packets_received, bytes_received, text_received;
    int have_welcome;
    char role[16];
    long long id;
    cJSON *state;   /* the last state document, owned */
    int close_code; /* -1: no close frame from the server */
    char close_reason[128];
    int http_status;
    char body[WSC_BODY_MAX + 1];
    /* the outcome */
    int done;
    int exit_code;
    char error[512];
    /* --record */
    FILE *rec;
    struct ogg_mux *mux;
    int rec_errno;
    uint64_t rec_packets, rec_bad;
    /* --clicks and --detect-clicks */
    struct times clicks_sent;  /* due time of each click frame sent */
    struct times clicks_heard; /* arrival of the packet with an onset + the onset's offset */
    struct times heard_offset; /* that offset alone */
    OpusDecoder *dec;
    struct detect det;
    uint64_t detect_bad; /* received packets that did not decode */
};

/* ---- times --------------------------------------------------------------------------------- */

static void times_add(struct times *t, double ms)
{
    if (t->n == TIMES_MAX) {
        t->lost++;
        return;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->v = realloc(t->v, t->cap * sizeof(*t->v));
        BUG_ON(!t->v);
    }
    t->v[t->n++] = ms;
}

static void times_free(struct times *t)
{
    free(t->v);
    *t = (struct times){0};
}

/* CLOCK_MONOTONIC in ms, to the microsecond (loop_clock_ms is the same clock, truncated). */
static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- outcome ------------------------------------------------------------------------------- */

/* Ends the session with <code> and a reason (the first call wins) and stops the loop. */
__attribute__((format(printf, 3, 4))) static void finish(struct speak *s, int code, const char *fmt,
                                                         ...)
{
    if (s->done)
        return;
    s->done = 1;
    s->exit_code = code;
    if (code == EXIT_DONE && s->signals)
        s->exit_code = EXIT_FAIL; /* closed cleanly, but not after --seconds: s->error says */
    else if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->error, sizeof(s->error), fmt, ap);
        va_end(ap);
    }
    s->phase = PH_DONE;
    loop_timer_stop(&s->loop, &s->clock);
    loop_timer_stop(&s->loop, &s->deadline);
    loop_stop(&s->loop);
}

static void on_deadline(struct loop *loop, struct loop_timer *t);

static void begin_close(struct speak *s, const char *reason)
{
    if (s->phase >= PH_CLOSING)
        return;
    s->phase = PH_CLOSING;
    loop_timer_stop(&s->loop, &s->clock);
    wsc_close(&s->ws, 1000, reason);
    loop_timer_start(&s->loop, &s->deadline, CLOSE_WAIT_MS, on_deadline);
}

/* ---- sending ------------------------------------------------------------------------------- */

/* Encodes and queues one frame. Returns 1 if it was queued, 0 if not (off stage, dropped). */
static int send_frame(struct speak *s, const int16_t *pcm)
{
    if (strcmp(s->role, "listener") == 0) {
        s->frames_off_stage++; /* the server would drop it: save the encoder and the wire */
        return 0;
    }
    unsigned char pkt[MAX_PACKET];
    opus_int32 n = opus_encode(s->enc, pcm, FRAME, pkt, sizeof(pkt));
    if (n < 0) {
        LOG_RATELIMITED(LOG_WARN, "speak", "opus_encode: %s", opus_strerror(n));
        return 0;
    }
    int rc = wsc_send(&s->ws, 1, pkt, (size_t)n, SEND_QUEUE_MAX);
    if (rc == 0)
        s->packets_sent++;
    else if (rc == -EAGAIN)
        s->packets_dropped++;
    return rc == 0;
}

static void on_clock(struct loop *loop, struct loop_timer *t)
{
    struct speak *s = (struct speak *)((char *)t - offsetof(struct speak, clock));
    int64_t now = loop_clock_ms();
    while (s->slot < s->nslots) {
        int64_t due = s->start_ms + (int64_t)s->slot * FRAME_MS;
        if (due > now)
            break;
        int16_t pcm[FRAME];
        if (speak_source_read(s->src, pcm, FRAME) < 0) {
            wsc_close(&s->ws, 1011, "audio source failed");
            return finish(s, EXIT_FAIL, "%s", speak_source_error(s->src));
        }
        /* a late slot still consumes its audio, so the file's timeline holds */
        if (now - due > MAX_LATE_MS) {
            s->frames_late++;
            LOG_RATELIMITED(LOG_WARN, "speak", "frame %llu is %lld ms late: skipped",
                            (unsigned long long)s->slot, (long long)(now - due));
        } else {
            if (now - due > s->send_late_max_ms)
                s->send_late_max_ms = now - due;
            int click = speak_source_click_at(s->src);
            if (send_frame(s, pcm) && click >= 0)
                times_add(&s->clicks_sent, (double)due + click * 1000.0 / SPEAK_RATE);
        }
        s->slot++;
    }
    if (s->slot >= s->nslots)
        return begin_close(s, "done");
    loop_timer_start(loop, &s->clock, s->start_ms + (int64_t)s->slot * FRAME_MS - loop_clock_ms(),
                     on_clock);
}

/* Starts the clock once the server said welcome and the audio can flow. */
static void maybe_start(struct speak *s)
{
    if (s->phase != PH_WELCOME || !s->have_welcome || !speak_source_ready(s->src))
        return;
    loop_timer_stop(&s->loop, &s->deadline);
    s->phase = PH_SPEAKING;
    s->start_ms = loop_clock_ms();
    s->started = 1;
    s->slot = 0;
    loop_timer_start(&s->loop, &s->clock, 0, on_clock);
}

static void on_source_ready(void *arg)
{
    maybe_start(arg);
}

static void on_deadline(struct loop *loop, struct loop_timer *t)
{
    struct speak *s = (struct speak *)((char *)t - offsetof(struct speak, deadline));
    (void)loop;
    if (s->phase == PH_CLOSING) {
        log_warn("speak", "no close frame from the server within %d ms", CLOSE_WAIT_MS);
        return finish(s, EXIT_DONE, NULL);
    }
    if (!s->have_welcome)
        return finish(s, EXIT_FAIL, "no welcome from the server within %d ms", WELCOME_MS);
    wsc_close(&s->ws, 1011, "audio source not ready");
    finish(s, EXIT_FAIL, "the audio source was not ready within %d ms", READY_MS);
}

/* ---- receiving ------------------------------------------------------------------------------ */

static void rec_page(void *arg, const unsigned char *page, size_t len, uint64_t granule,
                     uint32_t seqno, int samples)
{
    struct speak *s = arg;
    (void)granule;
    (void)seqno;
    (void)samples;
    if (!s->rec_errno && fwrite(page, 1, len, s->rec) != len)
        s->rec_errno = errno ? errno : EIO;
}

/* --detect-clicks: decodes one received packet and notes a click onset in it, timed from the
 * packet's arrival <now> (ms) plus the onset's offset inside the packet's audio. */
static void detect_packet(struct speak *s, const uint8_t *msg, size_t len, double now)
{
    int16_t pcm[5760]; /* 120 ms: the longest Opus packet */
    int n = opus_decode(s->dec, msg, (opus_int32)len, pcm, 5760, 0);
    if (n < 0) {
        s->detect_bad++;
        return;
    }
    int at = detect_feed(&s->det, pcm, n);
    if (at >= 0) {
        double off = at * 1000.0 / SPEAK_RATE;
        times_add(&s->clicks_heard, now + off);
        times_add(&s->heard_offset, off);
    }
}

static void on_audio(struct speak *s, const uint8_t *msg, size_t len)
{
    double now = mono_ms(); /* first: the arrival, before any decoding */
    s->packets_received++;
    s->bytes_received += len;
    if (s->first_rx_ms < 0 && s->have_welcome)
        s->first_rx_ms = loop_clock_ms() - s->welcome_ms;
    if (s->dec)
        detect_packet(s, msg, len, now);
    if (!s->mux)
        return;
    int samples = opus_packet_get_nb_samples(msg, (opus_int32)len, SPEAK_RATE);
    if (samples <= 0) {
        s->rec_bad++; /* not Opus: it would make the file undecodable */
        return;
    }
    ogg_mux_packet(s->mux, msg, len, samples, rec_page, s);
    s->rec_packets++;
}

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void on_text(struct speak *s, const uint8_t *msg, size_t len)
{
    s->text_received++;
    char esc[200], esc2[200];
    cJSON *j = cJSON_ParseWithLength((const char *)msg, len);
    const char *type = cJSON_IsObject(j) ? jstr(j, "type") : NULL;
    if (!type) {
        LOG_RATELIMITED(LOG_WARN, "speak", "a text message that is not JSON with a type: %s",
                        log_escape(esc, sizeof(esc), (const char *)msg, len));
        cJSON_Delete(j);
        return;
    }
    if (strcmp(type, "welcome") == 0) {
        const char *role = jstr(j, "role"), *space = jstr(j, "space");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        snprintf(s->role, sizeof(s->role), "%s", role ? role : "?");
        s->id = cJSON_IsNumber(id) ? (long long)id->valuedouble : -1;
        if (!s->have_welcome)
            s->welcome_ms = loop_clock_ms();
        s->have_welcome = 1;
        log_info("speak", "welcome: id=%lld role=%s space=%s", s->id,
                 log_escape(esc, sizeof(esc), s->role, strlen(s->role)),
                 space ? log_escape(esc2, sizeof(esc2), space, strlen(space)) : "?");
        if (s->phase == PH_WELCOME)
            loop_timer_start(&s->loop, &s->deadline, READY_MS, on_deadline);
        maybe_start(s);
    } else if (strcmp(type, "role") == 0) {
        const char *role = jstr(j, "role");
        if (role) {
            snprintf(s->role, sizeof(s->role), "%s", role);
            log_info("speak", "role: %s", log_escape(esc, sizeof(esc), role, strlen(role)));
        }
    } else if (strcmp(type, "state") == 0) {
        cJSON *st = cJSON_DetachItemFromObjectCaseSensitive(j, "state");
        if (cJSON_IsObject(st)) {
            cJSON_Delete(s->state);
            s->state = st;
        } else {
            cJSON_Delete(st);
        }
    } else if (strcmp(type, "error") == 0) {
        const char *e = jstr(j, "error");
        log_warn("speak", "the server refused a request: %s",
                 e ? log_escape(esc, sizeof(esc), e, strlen(e)) : "?");
    } else if (strcmp(type, "ended") == 0) {
        log_info("speak", "the space has ended");
    } else if (strcmp(type, "invite") == 0) {
        const char *role = jstr(j, "role"), *tok = jstr(j, "token");
        log_info("speak", "invite: role=%s token=%s",
                 role ? log_escape(esc, sizeof(esc), role, strlen(role)) : "?",
                 tok ? log_escape(esc2, sizeof(esc2), tok, strlen(tok)) : "?");
    }
    cJSON_Delete(j);
}

/* ---- WebSocket callbacks -------------------------------------------------------------------- */

static void ws_on_open(void *arg)
{
    struct speak *s = arg;
    s->phase = PH_WELCOME;
    loop_timer_start(&s->loop, &s->deadline, WELCOME_MS, on_deadline);
}

static void ws_on_refused(void *arg, int status, const char *body, size_t len)
{
    struct speak *s = arg;
    s->http_status = status;
    memcpy(s->body, body, len + 1);
    while (len > 0 && (s->body[len - 1] == '\n' || s->body[len - 1] == '\r'))
        s->body[--len] = '\0';
    char esc[WSC_BODY_MAX + 8];
    finish(s, EXIT_REFUSED, "refused: HTTP %d: %s", status,
           log_escape(esc, sizeof(esc), body, len));
}

static void ws_on_message(void *arg, int binary, const uint8_t *msg, size_t len)
{
    struct speak *s = arg;
    if (s->done)
        return;
    if (binary)
        on_audio(s, msg, len);
    else
        on_text(s, msg, len);
}

static void ws_on_close(void *arg, int code, const char *reason, size_t len)
{
    struct speak *s = arg;
    char esc[128];
    s->close_code = code;
    log_escape(s->close_reason, sizeof(s->close_reason), reason, len);
    if (s->phase == PH_CLOSING)
        return finish(s, EXIT_DONE, NULL);
    finish(s, EXIT_FAIL, "the server closed the connection: %d %s", code,
           log_escape(esc, sizeof(esc), reason, len));
}

static void ws_on_fail(void *arg, const char *why)
{
    struct speak *s = arg;
    if (s->phase == PH_CLOSING && wsc_close_sent(&s->ws)) {
        log_warn("speak", "after our close: %s", why);
        return finish(s, EXIT_DONE, NULL);
    }
    if (s->ws.cert_failed == TLS_FAIL_NAME)
        return finish(s, EXIT_FAIL, "%s (the certificate does not name the host of --stage)", why);
    if (s->ws.cert_failed && s->o.cacert)
        return finish(s, EXIT_FAIL, "%s (is %s the CA that signed the server's certificate?)", why,
                      s->o.cacert);
    if (s->ws.cert_failed)
        return finish(s, EXIT_FAIL,
                      "%s (not trusted by the system's store: --cacert FILE "
                      "names a private CA)",
                      why);
    finish(s, EXIT_FAIL, "%s", why);
}

static const struct wsc_handler ws_handler = {
    .on_open = ws_on_open,
    .on_refused = ws_on_refused,
    .on_message = ws_on_message,
    .on_close = ws_on_close,
    .on_fail = ws_on_fail,
};

static void before_sleep(struct loop *loop, void *arg)
{
    struct speak *s = arg;
    (void)loop;
    wsc_flush(&s->ws);
}

static void on_signal(struct loop *loop, struct io *io, uint32_t events)
{
    struct speak *s = (struct speak *)((char *)io - offsetof(struct speak, sig));
    struct signalfd_siginfo si;
    (void)loop;
    (void)events;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        s->signals++;
        if (s->phase == PH_SPEAKING && s->signals == 1) {
            log_info("speak", "signal %u: closing", si.ssi_signo);
            snprintf(s->error, sizeof(s->error), "interrupted by signal %u", si.ssi_signo);
            begin_close(s, "interrupted");
        } else {
            wsc_close(&s->ws, 1001, "interrupted");
            finish(s, EXIT_FAIL, "interrupted by signal %u", si.ssi_signo);
        }
    }
}

/* ---- setup and report ----------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rostrum-speak --stage HOST:PORT --space NAME (--key KEY | --token T)\n"
            "                     (--tone HZ | --input FILE | --clicks MS) --seconds S\n"
            "                     [--record OUT.ogg] [--detect-clicks] [--name NAME]\n"
            "                     [--gain DB] [--json] [--tls [--cacert FILE]]\n"
            "\n"
            "  --stage HOST:PORT  the server's stage port ([v6]:PORT for IPv6)\n"
            "  --tls              connect with TLS (wss://, the server's --stage-tls port); the\n"
            "                     certificate must verify and name HOST (DNS name or IP)\n"
            "  --cacert FILE      trust the CA certificates in FILE (PEM) instead of the\n"
            "                     system's store (a private or test CA); needs --tls\n"
            "  --space NAME       the stage space to join (/ws/NAME)\n"
            "  --key KEY          the host key: creates the space if needed, takes the next\n"
            "                     free place on stage (host, co-hosts, speakers)\n"
            "  --token T          a token from the API or an invite\n"
            "  --tone HZ          send a sine at -12 dBFS\n"
            "  --input FILE       send FILE: raw s16le mono 48 kHz if it ends in .s16 or .raw,\n"
            "                     anything else through ffmpeg; looped to fill --seconds\n"
            "  --clicks MS        send silence with a click (5 ms of 2 kHz at -6 dBFS) every MS\n"
            "                     ms (a multiple of 20), each at the start of a frame, the first\n"
            "                     after MS ms; 0: silence only. --json lists when each was due\n"
            "  --seconds S        how long to speak, then close\n"
            "  --record OUT.ogg   write what we hear (the mix-minus) as Ogg/Opus\n"
            "  --detect-clicks    decode what we hear and note when each click arrives (an onset\n"
            "                     above -20 dBFS after 300 ms below it), for --json\n"
            "  --name NAME        the name shown on stage\n"
            "  --gain DB          level change in dB (default 0)\n"
            "  --json             print a JSON summary line on stdout at the end (times are\n"
            "                     CLOCK_MONOTONIC ms: start_mono_ms, click_sent_mono_ms,\n"
            "                     clicks_heard_mono_ms)\n"
            "\n"
            "exit: 0 done, 1 failed or closed by the server, 2 usage, 3 refused (HTTP status)\n");
}

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Returns 0, or -1 after printing what is wrong. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    enum {
        O_STAGE = 1,
        O_SPACE,
        O_KEY,
        O_TOKEN,
        O_TONE,
        O_INPUT,
        O_SECONDS,
        O_RECORD,
        O_NAME,
        O_GAIN,
        O_JSON,
        O_CLICKS,
        O_DETECT,
        O_TLS,
        O_CACERT,
        O_HELP
    };
    static const struct option longs[] = {
        {"stage", required_argument, NULL, O_STAGE},
        {"space", required_argument, NULL, O_SPACE},
        {"key", required_argument, NULL, O_KEY},
        {"token", required_argument, NULL, O_TOKEN},
        {"tone", required_argument, NULL, O_TONE},
        {"input", required_argument, NULL, O_INPUT},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"record", required_argument, NULL, O_RECORD},
        {"name", required_argument, NULL, O_NAME},
        {"gain", required_argument, NULL, O_GAIN},
        {"json", no_argument, NULL, O_JSON},
        {"clicks", required_argument, NULL, O_CLICKS},
        {"detect-clicks", no_argument, NULL, O_DETECT},
        {"tls", no_argument, NULL, O_TLS},
        {"cacert", required_argument, NULL, O_CACERT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.seconds = -1};
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case O_STAGE:
            o->stage = optarg;
            break;
        case O_SPACE:
            o->space = optarg;
            break;
        case O_KEY:
            o->key = optarg;
            break;
        case O_TOKEN:
            o->token = optarg;
            break;
        case O_INPUT:
            o->input = optarg;
            break;
        case O_RECORD:
            o->record = optarg;
            break;
        case O_NAME:
            o->name = optarg;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_DETECT:
            o->detect_clicks = 1;
            break;
        case O_TLS:
            o->tls = 1;
            break;
        case O_CACERT:
            o->cacert = optarg;
            break;
        case O_CLICKS: {
            double ms;
            if (parse_double(optarg, 0, MAX_CLICKS_MS, &ms) < 0 || ms != floor(ms) ||
                fmod(ms, FRAME_MS) != 0) {
                fprintf(stderr,
                        "rostrum-speak: --clicks wants 0 or a multiple of %d ms (up to %d)\n",
                        FRAME_MS, MAX_CLICKS_MS);
                return -1;
            }
            o->clicks_ms = (unsigned)ms;
            o->has_clicks = 1;
            break;
        }
        case O_TONE:
            if (parse_double(optarg, 1, SPEAK_RATE / 2 - 1, &o->tone) < 0) {
                fprintf(stderr, "rostrum-speak: --tone wants a frequency in Hz (1-23999)\n");
                return -1;
            }
            o->has_tone = 1;
            break;
        case O_SECONDS:
            if (parse_double(optarg, 0.02, MAX_SECONDS, &o->seconds) < 0) {
                fprintf(stderr, "rostrum-speak: --seconds wants 0.02 to %.0f\n", MAX_SECONDS);
                return -1;
            }
            break;
        case O_GAIN:
            if (parse_double(optarg, -96, 40, &o->gain) < 0) {
                fprintf(stderr, "rostrum-speak: --gain wants dB, -96 to 40\n");
                return -1;
            }
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            exit(EXIT_DONE);
        default:
            usage(stderr);
            return -1;
        }
    }
    int sources = !!o->has_tone + !!o->input + !!o->has_clicks;
    const char *missing = !o->stage              ? "--stage"
                          : !o->space            ? "--space"
                          : !o->key && !o->token ? "--key or --token"
                          : sources == 0         ? "--tone, --input or --clicks"
                          : o->seconds < 0       ? "--seconds"
                                                 : NULL;
    if (missing || optind < argc || (o->key && o->token) || sources > 1 || !o->space[0] ||
        (o->cacert && (!o->tls || !o->cacert[0]))) {
        if (missing)
            fprintf(stderr, "rostrum-speak: %s is required\n", missing);
        else if (optind < argc)
            fprintf(stderr, "rostrum-speak: unexpected argument \"%s\"\n", argv[optind]);
        else if (!o->space[0])
            fprintf(stderr, "rostrum-speak: --space is empty\n");
        else if (o->cacert && !o->tls)
            fprintf(stderr, "rostrum-speak: --cacert is for --tls: give both\n");
        else if (o->cacert && !o->cacert[0])
            fprintf(stderr, "rostrum-speak: --cacert is empty\n");
        else
            fprintf(stderr, "rostrum-speak: give only one of %s\n",
                    o->key && o->token ? "--key and --token" : "--tone, --input and --clicks");
        usage(stderr);
        return -1;
    }
    return 0;
}

static int open_record(struct speak *s, char *err, size_t errlen)
{
    uint32_t serial;
    if (getrandom(&serial, sizeof(serial), 0) != sizeof(serial))
        serial = (uint32_t)getpid();
    struct opus_head_info head = {.channels = 1, .pre_skip = PRE_SKIP, .input_rate = SPEAK_RATE};
    s->rec = fopen(s->o.record, "wbe");
    if (!s->rec) {
        snprintf(err, errlen, "%s: %s", s->o.record, strerror(errno));
        return -1;
    }
    s->mux = ogg_mux_new(serial, &head, "rostrum-speak", NULL, 200);
    size_t hlen;
    const unsigned char *h = ogg_mux_headers(s->mux, &hlen);
    if (fwrite(h, 1, hlen, s->rec) != hlen)
        s->rec_errno = errno ? errno : EIO;
    return 0;
}

/* Flushes and closes the recording. Returns 0, or -errno if any write failed. */
static int close_record(struct speak *s)
{
    if (!s->rec)
        return 0;
    ogg_mux_flush(s->mux, rec_page, s);
    if (fclose(s->rec) != 0 && !s->rec_errno)
        s->rec_errno = errno ? errno : EIO;
    s->rec = NULL;
    return -s->rec_errno;
}

/* Builds /ws/NAME?key=K&name=N (or token=T), percent-encoded, into <b>. */
static void build_target(const struct opts *o, struct buf *b)
{
    buf_puts(b, "/ws/");
    wsc_percent_encode(b, o->space);
    buf_puts(b, o->key ? "?key=" : "?token=");
    wsc_percent_encode(b, o->key ? o->key : o->token);
    if (o->name) {
        buf_puts(b, "&name=");
        wsc_percent_encode(b, o->name);
    }
}

static void add_times(cJSON *j, const char *name, const struct times *t)
{
    cJSON *a = cJSON_AddArrayToObject(j, name);
    for (size_t i = 0; i < t->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(round(t->v[i] * 1000.0) / 1000.0));
}

static void print_json(struct speak *s)
{
    cJSON *j = cJSON_CreateObject();
    if (s->have_welcome) {
        cJSON_AddStringToObject(j, "role", s->role);
        cJSON_AddNumberToObject(j, "id", (double)s->id);
    } else {
        cJSON_AddNullToObject(j, "role");
        cJSON_AddNullToObject(j, "id");
    }
    cJSON_AddStringToObject(j, "space", s->o.space);
    cJSON_AddNumberToObject(j, "packets_sent", (double)s->packets_sent);
    cJSON_AddNumberToObject(j, "packets_dropped", (double)s->packets_dropped);
    cJSON_AddNumberToObject(j, "frames_late", (double)s->frames_late);
    cJSON_AddNumberToObject(j, "send_late_max_ms", (double)s->send_late_max_ms);
    cJSON_AddNumberToObject(j, "frames_off_stage", (double)s->frames_off_stage);
    cJSON_AddNumberToObject(j, "packets_received", (double)s->packets_received);
    cJSON_AddNumberToObject(j, "bytes_received", (double)s->bytes_received);
    if (s->first_rx_ms >= 0)
        cJSON_AddNumberToObject(j, "first_packet_ms", (double)s->first_rx_ms);
    else
        cJSON_AddNullToObject(j, "first_packet_ms");
    cJSON_AddNumberToObject(j, "underruns", s->src ? (double)speak_source_underruns(s->src) : 0);
    if (s->close_code >= 0) {
        cJSON_AddNumberToObject(j, "close_code", s->close_code);
        cJSON_AddStringToObject(j, "close_reason", s->close_reason);
    } else {
        cJSON_AddNullToObject(j, "close_code");
        cJSON_AddNullToObject(j, "close_reason");
    }
    if (s->http_status) {
        cJSON_AddNumberToObject(j, "http_status", s->http_status);
        cJSON_AddStringToObject(j, "http_body", s->body);
    }
    if (s->o.record)
        cJSON_AddNumberToObject(j, "recorded_packets", (double)s->rec_packets);
    /* CLOCK_MONOTONIC ms, comparable across processes: when frame 0 was due */
    if (s->started)
        cJSON_AddNumberToObject(j, "start_mono_ms", (double)s->start_ms);
    else
        cJSON_AddNullToObject(j, "start_mono_ms");
    if (s->o.has_clicks) {
        add_times(j, "click_sent_mono_ms", &s->clicks_sent);
        cJSON_AddNumberToObject(j, "clicks_not_kept", (double)s->clicks_sent.lost);
    }
    if (s->o.detect_clicks) {
        add_times(j, "clicks_heard_mono_ms", &s->clicks_heard);
        add_times(j, "clicks_heard_offset_ms", &s->heard_offset);
        cJSON_AddNumberToObject(j, "clicks_heard_not_kept", (double)s->clicks_heard.lost);
        cJSON_AddNumberToObject(j, "undecodable_packets", (double)s->detect_bad);
    }
    cJSON_AddNumberToObject(j, "exit", s->exit_code);
    if (s->error[0])
        cJSON_AddStringToObject(j, "error", s->error);
    if (s->state)
        cJSON_AddItemReferenceToObject(j, "state", s->state);
    else
        cJSON_AddNullToObject(j, "state");
    char *out = cJSON_PrintUnformatted(j);
    if (out) {
        puts(out);
        fflush(stdout);
        free(out);
    }
    cJSON_Delete(j);
}

static void speak_free(struct speak *s)
{
    wsc_free(&s->ws);
    tls_ctx_free(s->tls);
    speak_source_free(s->src);
    if (s->enc)
        opus_encoder_destroy(s->enc);
    ogg_mux_free(s->mux);
    if (s->dec)
        opus_decoder_destroy(s->dec);
    times_free(&s->clicks_sent);
    times_free(&s->clicks_heard);
    times_free(&s->heard_offset);
    cJSON_Delete(s->state);
    if (s->sig.fd >= 0) {
        loop_del(&s->loop, &s->sig);
        close(s->sig.fd);
    }
    loop_close(&s->loop);
}

/* Blocks SIGINT and SIGTERM and reads them from a signalfd on the loop. Returns 0 or -errno. */
static int setup_signals(struct speak *s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        return -errno;
    s->sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sig.fd == -1)
        return -errno;
    s->sig.cb = on_signal;
    return loop_add(&s->loop, &s->sig, EPOLLIN);
}

int main(int argc, char **argv)
{
    static struct speak sess; /* large (wsc buffers): not on the stack */
    struct speak *s = &sess;
    *s = (struct speak){.sig = {.fd = -1}, .first_rx_ms = -1, .close_code = -1, .id = -1};
    s->ws.io.fd = -1;
    if (parse_args(argc, argv, &s->o) < 0)
        return EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    int rc = loop_init(&s->loop);
    if (rc < 0) {
        fprintf(stderr, "rostrum-speak: epoll: %s\n", strerror(-rc));
        return EXIT_FAIL;
    }
    if ((rc = setup_signals(s)) < 0) {
        fprintf(stderr, "rostrum-speak: signals: %s\n", strerror(-rc));
        speak_free(s);
        return EXIT_FAIL;
    }
    s->nslots = (uint64_t)llround(s->o.seconds * 1000.0 / FRAME_MS);
    if (s->nslots == 0)
        s->nslots = 1;
    if (s->o.has_tone)
        s->src = speak_source_tone(s->o.tone, s->o.gain);
    else if (s->o.has_clicks)
        s->src = speak_source_clicks(s->o.clicks_ms, s->o.gain);
    else
        s->src = speak_source_file(&s->loop, s->o.input, s->o.gain, on_source_ready, s, err,
                                   sizeof(err));
    if (!s->src) {
        fprintf(stderr, "rostrum-speak: %s\n", err);
        speak_free(s);
        return EXIT_FAIL;
    }
    int oerr;
    s->enc = opus_encoder_create(SPEAK_RATE, 1, OPUS_APPLICATION_AUDIO, &oerr);
    if (!s->enc) {
        fprintf(stderr, "rostrum-speak: opus_encoder_create: %s\n", opus_strerror(oerr));
        speak_free(s);
        return EXIT_FAIL;
    }
    opus_encoder_ctl(s->enc, OPUS_SET_BITRATE(BITRATE));
    if (s->o.detect_clicks) {
        s->dec = opus_decoder_create(SPEAK_RATE, 1, &oerr);
        if (!s->dec) {
            fprintf(stderr, "rostrum-speak: opus_decoder_create: %s\n", opus_strerror(oerr));
            speak_free(s);
            return EXIT_FAIL;
        }
    }
    if (s->o.record && open_record(s, err, sizeof(err)) < 0) {
        fprintf(stderr, "rostrum-speak: %s\n", err);
        speak_free(s);
        return EXIT_FAIL;
    }

    if (s->o.tls && !(s->tls = tls_client_ctx_new(s->o.cacert, 1, err, sizeof(err)))) {
        fprintf(stderr, "rostrum-speak: --%s: %s\n", s->o.cacert ? "cacert" : "tls", err);
        speak_free(s);
        return EXIT_FAIL;
    }

    struct buf target = {0};
    build_target(&s->o, &target);
    rc = wsc_connect_tls(&s->ws, &s->loop, s->o.stage, s->tls, target.data, &ws_handler, s, err,
                         sizeof(err));
    buf_free(&target);
    if (rc < 0) {
        finish(s, EXIT_FAIL, "%s", err);
    } else {
        s->loop.before_sleep = before_sleep;
        s->loop.before_sleep_arg = s;
        loop_run(&s->loop);
    }
    wsc_flush(&s->ws); /* a close frame queued on the way out */

    if (close_record(s) < 0 && s->exit_code == EXIT_DONE) {
        s->exit_code = EXIT_FAIL;
        snprintf(s->error, sizeof(s->error), "writing %s: %s", s->o.record, strerror(s->rec_errno));
    }
    /* headers alone do not decode: leave no file that looks like a recording */
    if (s->o.record && s->rec_packets == 0 && unlink(s->o.record) == 0)
        log_info("speak", "nothing was heard: %s removed", s->o.record);
    if (s->exit_code == EXIT_REFUSED)
        fprintf(stderr, "rostrum-speak: refused: HTTP %d\n%s\n", s->http_status, s->body);
    else if (s->exit_code != EXIT_DONE)
        fprintf(stderr, "rostrum-speak: %s\n", s->error);
    else
        log_info("speak", "done: %llu packets sent, %llu received (%llu bytes)",
                 (unsigned long long)s->packets_sent, (unsigned long long)s->packets_received,
                 (unsigned long long)s->bytes_received);
    if (s->o.json)
        print_json(s);
    int code = s->exit_code;
    speak_free(s);
    return code;
}
