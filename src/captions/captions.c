/*
 * captions: the recognisers of the captioned spaces (see captions.h for the contract).
 *
 * Driven from the shared table like the renditions: every CAPTIONS_TICK_MS the upkeep looks at
 * each live space and
 *
 *   live space, captions on, none here       --> capspace made (cue list empty, captions_on)
 *   capspace, no recogniser, back-off over   --> recogniser spawned, decoding from the live edge
 *   capspace, recogniser's queue too long    --> recogniser killed (stuck), back-off
 *   space ended or restarted, captions off   --> recogniser killed, capspace freed
 *
 * and pages published by the spaces are decoded at once (captions_pump). The recogniser's
 * clock is the PCM it was given; a map of (its sample, programme position) points, one more
 * at every discontinuity (a skip, a gap in the ring), turns its times into the programme's.
 */
#include "captions/captions.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <opus/opus.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ogg/demux.h"
#include "util/buf.h"
#include "util/check.h"
#include "util/log.h"
#include "util/utf8.h"

#define CAPTIONS_TICK_MS 100
#define RATE 16000            /* what recognisers take: 16 kHz mono s16le */
#define PUMP_MAX_PAGES 32     /* source pages one space decodes per pass */
#define START_CREDIT_MS 2000  /* audio the decoder may take at once past real time */
#define BEHIND_MAX_MS 6000    /* further behind than this: skip to the live edge */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define STEADY_MS 30000       /* a recogniser that ran this long restarts at once */
#define MAP_POINTS 16
#define MAX_PCM_FRAME 5760    /* 120 ms at 48 kHz: the longest Opus packet */

extern char **environ;

struct map_point {
    uint64_t rec;  /* the recogniser's sample (16 kHz) */
    int64_t pts;   /* the programme's position there (48 kHz granule units, pre-skip in) */
};

struct cue {
    uint64_t id;
    int64_t start_ms, end_ms;
    char text[CAPTIONS_TEXT_MAX + 1];
};

struct capspace {
    int slot;
    uint32_t gen;
    struct shared_space *ss;
    struct ring *ring;
    /* the decoder, while a recogniser runs */
    struct ogg_demux *demux;
    OpusDecoder *dec;
    int pre_skip;
    int failed;
    uint64_t cursor;          /* next ring page */
    int64_t next_pts;         /* position of the next packet */
    int64_t expect_pts;       /* where the PCM given so far ends (-1: nothing yet) */
    int64_t started_ms;       /* for the real-time bound */
    uint64_t taken;           /* 48 kHz samples decoded since started_ms */
    /* the recogniser */
    pid_t pid;                /* 0: none; kept after a kill until it is reaped */
    int in_fd, out_fd;
    struct io in_io, out_io;
    struct captions *cap;
    struct buf queue;         /* PCM not yet written */
    size_t queue_off;
    uint64_t given;           /* samples put in the queue since the spawn */
    struct map_point map[MAP_POINTS];
    int nmap;
    char line[CAPTIONS_LINE_MAX];
    size_t line_len;
    int line_skip;            /* in a line too long: skip to its end */
    int starts;
    int killed;               /* we killed it (stuck, error, captions off): no exit to report */
    int64_t run_since_ms;
    int64_t restart_at_ms;
    int backoff_ms;
    int64_t rate_sec;
    int rate_n;
    /* the cues */
    struct cue cues[CAPTIONS_KEEP];
    int ncues;                /* oldest at cues[0] */
    uint64_t next_id;
};

/* ---- the recogniser's output ------------------------------------------------------------- */

int captions_parse_line(const char *s, size_t len, struct caption_line *out)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
        i++;
    if (i == len)
        return 0;
    cJSON *j = cJSON_ParseWithLength(s, len);
    if (!j)
        return -1;
    int rc = -1;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "start");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "end");
    const cJSON *tx = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *pa = cJSON_GetObjectItemCaseSensitive(j, "partial");
    if (!cJSON_IsObject(j))
        goto out;
    if (cJSON_IsTrue(pa)) {
        rc = 0;
        goto out;
    }
    if (!cJSON_IsNumber(st) || !cJSON_IsNumber(en) || !cJSON_IsString(tx))
        goto out;
    double a = st->valuedouble, b = en->valuedouble;
    if (!isfinite(a) || !isfinite(b) || a < 0 || b < a || b - a > 3600)
        goto out;
    /* the text goes to JSON, WebVTT and logs: valid UTF-8, no controls, one line, trimmed */
    char tmp[CAPTIONS_TEXT_MAX + 1];
    const char *t = tx->valuestring;
    size_t n = utf8_sanitize(tmp, sizeof(tmp), t, strlen(t), UTF8_NO_CONTROLS);
    size_t b0 = 0;
    while (b0 < n && tmp[b0] == ' ')
        b0++;
    while (n > b0 && tmp[n - 1] == ' ')
        n--;
    if (n == b0)
        goto out;
    /* "-->" would end a WebVTT cue's text early in some parsers: no cue needs it */
    size_t o = 0;
    for (size_t k = b0; k < n; k++) {
        if (tmp[k] == '-' && k + 2 < n && tmp[k + 1] == '-' && tmp[k + 2] == '>') {
            out->text[o++] = '-';
            out->text[o++] = '>';
            k += 2;
            continue;
        }
        out->text[o++] = tmp[k];
    }
    out->text[o] = '\0';
    out->start_s = a;
    out->end_s = b;
    rc = 1;
out:
    cJSON_Delete(j);
    return rc;
}

int captions_next_cue(const char *list, size_t len, size_t *pos, struct caption_cue *out)
{
    size_t p = *pos;
    if (p >= len)
        return 0;
    const char *nl = memchr(list + p, '\n', len - p);
    if (!nl)
        return 0;
    size_t end = (size_t)(nl - list);
    char num[3][24];
    int k = 0;
    while (k < 3) {
        size_t q = p;
        while (q < end && list[q] >= '0' && list[q] <= '9')
            q++;
        if (q == p || q - p >= sizeof(num[0]) || q >= end || list[q] != ' ')
            return 0;
        memcpy(num[k], list + p, q - p);
        num[k][q - p] = '\0';
        p = q + 1;
        k++;
    }
    out->id = strtoull(num[0], NULL, 10);
    out->start_ms = (int64_t)strtoull(num[1], NULL, 10);
    out->end_ms = (int64_t)strtoull(num[2], NULL, 10);
    out->text = list + p;
    out->text_len = end - p;
    *pos = end + 1;
    return 1;
}

int captions_list_ok(const char *list, size_t len)
{
    size_t pos = 0;
    uint64_t last = 0;
    struct caption_cue c;
    while (pos < len) {
        if (!captions_next_cue(list, len, &pos, &c) || (last && c.id <= last) ||
            c.end_ms < c.start_ms || c.text_len == 0 || c.text_len > CAPTIONS_TEXT_MAX ||
            !utf8_valid(c.text, c.text_len))
            return 0;
        for (size_t i = 0; i < c.text_len; i++) {
            unsigned char ch = (unsigned char)c.text[i];
            /* C0 and DEL; C1 (U+0080-U+009F) is 0xC2 0x80-0x9F */
            if (ch < 0x20 || ch == 0x7f ||
                (ch == 0xc2 && i + 1 < c.text_len && (unsigned char)c.text[i + 1] < 0xa0))
                return 0;
        }
        last = c.id;
    }
    return 1;
}

/* ---- the cue list ------------------------------------------------------------------------ */

static void cues_publish(struct capspace *cs)
{
    struct buf b = {0};
    int first = 0;
    for (;;) {
        b.len = 0;
        for (int i = first; i < cs->ncues; i++)
            buf_printf(&b, "%llu %lld %lld %s\n", (unsigned long long)cs->cues[i].id,
                       (long long)cs->cues[i].start_ms, (long long)cs->cues[i].end_ms,
                       cs->cues[i].text);
        if (b.len <= SHARED_CAPTIONS_MAX)
            break;
        first++; /* 64 cues of 200 bytes are 13 KiB: never in practice */
    }
    shared_captions_put(cs->ss, b.data, (uint32_t)b.len);
    buf_free(&b);
}

/* The programme's wall clock (unix ms) at recogniser time <t> seconds. */
static int64_t rec_to_ms(const struct capspace *cs, double t)
{
    uint64_t rec = (uint64_t)(t * RATE);
    int i = cs->nmap - 1;
    while (i > 0 && cs->map[i].rec > rec)
        i--;
    int64_t pts = cs->map[i].pts + (int64_t)(rec - cs->map[i].rec) * 3;
    if (rec < cs->map[i].rec) /* before the first point: the recogniser's own look-back */
        pts = cs->map[i].pts - (int64_t)(cs->map[i].rec - rec) * 3;
    return cs->ss->stream_start_ms + (pts - cs->pre_skip) / 48;
}

static void cue_add(struct captions *cap, struct capspace *cs, const struct caption_line *l)
{
    struct shared_main *m = &cap->sh->main;
    if (cs->nmap == 0) {
        m->captions_bad_lines++; /* times before it was given any audio */
        return;
    }
    int64_t sec = cap->loop->now_ms / 1000;
    if (sec != cs->rate_sec) {
        cs->rate_sec = sec;
        cs->rate_n = 0;
    }
    if (++cs->rate_n > CAPTIONS_MAX_PER_S) {
        m->captions_rate_limited++;
        LOG_RATELIMITED(LOG_WARN, "captions", "/%s: over %d cues a second from the recogniser: "
                        "dropped", cs->ss->mount, CAPTIONS_MAX_PER_S);
        return;
    }
    if (cs->ncues == CAPTIONS_KEEP) {
        memmove(&cs->cues[0], &cs->cues[1], sizeof(cs->cues[0]) * (CAPTIONS_KEEP - 1));
        cs->ncues--;
    }
    struct cue *c = &cs->cues[cs->ncues++];
    c->id = ++cs->next_id;
    c->start_ms = rec_to_ms(cs, l->start_s);
    c->end_ms = rec_to_ms(cs, l->end_s);
    if (c->end_ms < c->start_ms)
        c->end_ms = c->start_ms;
    memcpy(c->text, l->text, sizeof(c->text));
    m->captions_cues++;
    cues_publish(cs);
}

/* ---- the recogniser process --------------------------------------------------------------- */

static void proc_close_fds(struct captions *cap, struct capspace *cs)
{
    if (cs->in_fd >= 0) {
        if (cs->in_io.events)
            loop_del(cap->loop, &cs->in_io);
        close(cs->in_fd);
    }
    if (cs->out_fd >= 0) {
        if (cs->out_io.events)
            loop_del(cap->loop, &cs->out_io);
        close(cs->out_fd);
    }
    cs->in_fd = cs->out_fd = -1;
    cs->in_io.events = cs->out_io.events = 0;
    if (cs->queue.len > cs->queue_off)
        cap->sh->main.captions_pcm_dropped += cs->queue.len - cs->queue_off;
    cs->queue.len = cs->queue_off = 0;
    if (cs->demux) {
        ogg_demux_free(cs->demux);
        cs->demux = NULL;
    }
    if (cs->dec) {
        opus_decoder_destroy(cs->dec);
        cs->dec = NULL;
    }
}

/* Ends the recogniser of <cs> (it is reaped by captions_on_child_exit) and its decoder. */
static void proc_kill(struct captions *cap, struct capspace *cs)
{
    if (cs->in_fd >= 0 || cs->out_fd >= 0) {
        proc_close_fds(cap, cs);
        cap->sh->main.captions_running--;
        __atomic_store_n(&cs->ss->captions_on, 1, __ATOMIC_RELEASE);
    }
    if (cs->pid > 0)
        kill(-cs->pid, SIGKILL); /* its process group: sh and what it started */
    int64_t now = cap->loop->now_ms;
    if (now - cs->run_since_ms >= STEADY_MS)
        cs->backoff_ms = BACKOFF_MIN_MS;
    cs->restart_at_ms = now + cs->backoff_ms;
    cs->backoff_ms = cs->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cs->backoff_ms * 2;
}

static void in_on_io(struct loop *loop, struct io *io, uint32_t events);
static void out_on_io(struct loop *loop, struct io *io, uint32_t events);

/* Writes what the queue holds; EAGAIN leaves it for the next EPOLLOUT. */
static void queue_flush(struct captions *cap, struct capspace *cs)
{
    while (cs->in_fd >= 0 && cs->queue_off < cs->queue.len) {
        ssize_t n = write(cs->in_fd, cs->queue.data + cs->queue_off, cs->queue.len - cs->queue_off);
        if (n > 0) {
            cs->queue_off += (size_t)n;
            cap->sh->main.captions_pcm_bytes += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        /* EPIPE: it closed its input (it is exiting); the SIGCHLD says how */
        LOG_RATELIMITED(LOG_WARN, "captions", "/%s: the recogniser's input closed: %s",
                        cs->ss->mount, n < 0 ? strerror(errno) : "short write");
        proc_kill(cap, cs);
        return;
    }
    if (cs->in_fd < 0)
        return;
    if (cs->queue_off == cs->queue.len) {
        cs->queue.len = cs->queue_off = 0;
    } else if (cs->queue_off > cs->queue.len / 2) {
        memmove(cs->queue.data, cs->queue.data + cs->queue_off, cs->queue.len - cs->queue_off);
        cs->queue.len -= cs->queue_off;
        cs->queue_off = 0;
    }
    uint32_t want = cs->queue.len > cs->queue_off ? EPOLLOUT : 0;
    if (want && !cs->in_io.events)
        loop_add(cap->loop, &cs->in_io, EPOLLOUT);
    else if (!want && cs->in_io.events)
        loop_del(cap->loop, &cs->in_io);
}

static void in_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct capspace *cs = (struct capspace *)((char *)io - offsetof(struct capspace, in_io));
    (void)loop;
    (void)events;
    queue_flush(cs->cap, cs);
}

static void line_done(struct captions *cap, struct capspace *cs)
{
    struct caption_line l;
    int rc = captions_parse_line(cs->line, cs->line_len, &l);
    if (rc > 0) {
        cue_add(cap, cs, &l);
    } else if (rc < 0) {
        cap->sh->main.captions_bad_lines++;
        char shown[64];
        LOG_RATELIMITED(LOG_WARN, "captions", "/%s: the recogniser printed a bad line: %s",
                        cs->ss->mount, log_escape(shown, sizeof(shown), cs->line, cs->line_len));
    }
    cs->line_len = 0;
}

static void out_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct capspace *cs = (struct capspace *)((char *)io - offsetof(struct capspace, out_io));
    struct captions *cap = cs->cap;
    (void)loop;
    (void)events;
    char chunk[4096];
    size_t total = 0;
    while (cs->out_fd >= 0 && total < CAPTIONS_READ_MAX) {
        ssize_t n = read(cs->out_fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            /* its output closed: it is exiting (the SIGCHLD tells), or it prints elsewhere;
             * its input is still fed either way */
            loop_del(cap->loop, &cs->out_io);
            cs->out_io.events = 0;
            close(cs->out_fd);
            cs->out_fd = -1;
            return;
        }
        total += (size_t)n;
        for (ssize_t i = 0; i < n; i++) {
            char ch = chunk[i];
            if (ch == '\n') {
                if (cs->line_skip) {
                    cs->line_skip = 0;
                    cs->line_len = 0;
                } else {
                    line_done(cap, cs);
                }
            } else if (!cs->line_skip) {
                if (cs->line_len == sizeof(cs->line)) {
                    cap->sh->main.captions_bad_lines++;
                    LOG_RATELIMITED(LOG_WARN, "captions", "/%s: a recogniser line over %d "
                                    "bytes: skipped", cs->ss->mount, CAPTIONS_LINE_MAX);
                    cs->line_skip = 1;
                    cs->line_len = 0;
                } else {
                    cs->line[cs->line_len++] = ch;
                }
            }
        }
    }
    /* more than a wake's share waits: the loop comes back (level-triggered) */
}

static int opus_head_cb(void *arg, const struct opus_head_info *head)
{
    struct capspace *cs = arg;
    if (cs->dec)
        return 0;
    int err;
    /* libopus decodes at 16 kHz and mixes a stereo stream down to mono itself */
    cs->dec = opus_decoder_create(RATE, 1, &err);
    if (!cs->dec) {
        LOG_RATELIMITED(LOG_ERROR, "captions", "/%s: opus_decoder_create: %s", cs->ss->mount,
                        opus_strerror(err));
        cs->failed = 1;
        return 1;
    }
    opus_decoder_ctl(cs->dec, OPUS_SET_GAIN(head->output_gain));
    cs->pre_skip = head->pre_skip;
    return 0;
}

static int opus_packet_cb(void *arg, const unsigned char *pkt, size_t len, int samples)
{
    struct capspace *cs = arg;
    if (!cs->dec)
        return 0;
    opus_int16 pcm[MAX_PCM_FRAME / 3];
    int n = opus_decode(cs->dec, pkt, (opus_int32)len, pcm, MAX_PCM_FRAME / 3, 0);
    int64_t pts = cs->next_pts;
    cs->next_pts += samples;
    if (n < 0) {
        cs->failed = 1;
        return 1;
    }
    if (cs->expect_pts != pts && cs->nmap < MAP_POINTS) {
        cs->map[cs->nmap++] = (struct map_point){cs->given, pts};
    } else if (cs->expect_pts != pts) {
        memmove(&cs->map[0], &cs->map[1], sizeof(cs->map[0]) * (MAP_POINTS - 1));
        cs->map[MAP_POINTS - 1] = (struct map_point){cs->given, pts};
    }
    cs->expect_pts = pts + n * 3;
    cs->given += (uint64_t)n;
    /* s16le: the recogniser's format on any host */
    unsigned char *o;
    buf_reserve(&cs->queue, (size_t)n * 2);
    o = (unsigned char *)cs->queue.data + cs->queue.len;
    for (int i = 0; i < n; i++) {
        uint16_t v = (uint16_t)pcm[i];
        o[2 * i] = (unsigned char)(v & 0xff);
        o[2 * i + 1] = (unsigned char)(v >> 8);
    }
    cs->queue.len += (size_t)n * 2;
    return 0;
}

static const struct ogg_demux_cb demux_cb = {opus_head_cb, opus_packet_cb};

/* posix_spawn with what a child of a server should have: no descriptor but its pipes, default
 * signal dispositions and an empty mask (the main process blocks several for its signalfd),
 * its own process group (a kill takes what sh started too), and the folder of rostrum's
 * binary first in PATH, so the default recogniser beside it is found. */
static pid_t spawn_cmd(struct captions *cap, const char *cmd, int in_fd, int out_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof(*env));
    BUG_ON(!env);
    const char *old_path = getenv("PATH");
    char *path = NULL;
    if (asprintf(&path, "PATH=%s%s%s", cap->exe_dir, cap->exe_dir[0] ? ":" : "",
                 old_path ? old_path : "/usr/local/bin:/usr/bin:/bin") < 0)
        path = NULL;
    size_t k = 0;
    if (path)
        env[k++] = path;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "PATH=", 5) != 0)
            env[k++] = environ[i];
    env[k] = NULL;
    char *exec_cmd = NULL;
    if (asprintf(&exec_cmd, "exec %s", cmd) < 0)
        exec_cmd = NULL;
    char *argv[] = {"sh", "-c", exec_cmd, NULL};
    pid_t pid = -1;
    int rc = exec_cmd ? posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env) : ENOMEM;
    if (rc != 0) {
        errno = rc;
        pid = -1;
    }
    free(exec_cmd);
    free(path);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return pid;
}

/* Starts the recogniser of <cs> and its decoder at the live edge. Returns 0 or -1. */
static int proc_start(struct captions *cap, struct capspace *cs)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid_t pid = spawn_cmd(cap, cap->cfg->captions_cmd, in[0], out[1]);
    int saved = errno;
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        errno = saved;
        return -1;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    /* the pipe holds about 2 s of 16 kHz PCM already; the queue bound is ours */
    fcntl(in[1], F_SETPIPE_SZ, 64 * 1024);
    cs->pid = pid;
    cs->in_fd = in[1];
    cs->out_fd = out[0];
    cs->in_io = (struct io){.fd = cs->in_fd, .cb = in_on_io};
    cs->out_io = (struct io){.fd = cs->out_fd, .cb = out_on_io};
    loop_add(cap->loop, &cs->out_io, EPOLLIN);
    cs->line_len = 0;
    cs->line_skip = 0;
    cs->given = 0;
    cs->nmap = 0;
    cs->expect_pts = -1;
    cs->queue.len = cs->queue_off = 0;
    cs->run_since_ms = cap->loop->now_ms;
    struct shared_main *m = &cap->sh->main;
    if (cs->starts++ > 0)
        m->captions_restarts++;
    m->captions_starts++;
    m->captions_running++;
    __atomic_store_n(&cs->ss->captions_on, 2, __ATOMIC_RELEASE);
    /* the decoder: the stream's header pages from the preamble, then the live edge */
    cs->demux = ogg_demux_new();
    cs->failed = 0;
    unsigned char *pre = malloc(SHARED_PREAMBLE_MAX);
    BUG_ON(!pre);
    uint32_t http_len = 0;
    int len = shared_dbuf_copy(&cs->ss->preamble_hdr, &cs->ss->preamble[0][0],
                               SHARED_PREAMBLE_MAX, pre, &http_len);
    if (len > 0 && http_len < (uint32_t)len)
        ogg_demux_feed(cs->demux, pre + http_len, (size_t)len - http_len, &demux_cb, cs);
    free(pre);
    cs->cursor = ring_head(cs->ring);
    cs->started_ms = cap->loop->now_ms;
    cs->taken = 0;
    log_info("captions", "/%s: recogniser started (pid %d): %s", cs->ss->mount, (int)pid,
             cap->cfg->captions_cmd);
    return 0;
}

int captions_on_child_exit(struct captions *cap, pid_t pid, int status)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct capspace *cs = cap->s[i];
        if (!cs || cs->pid != pid)
            continue;
        cs->pid = 0;
        if (cs->in_fd >= 0 || cs->out_fd >= 0)
            proc_kill(cap, cs); /* before its output said so */
        if (!cs->killed) {
            int64_t in = cs->restart_at_ms - cap->loop->now_ms;
            if (WIFEXITED(status))
                LOG_RATELIMITED(LOG_WARN, "captions", "/%s: the recogniser exited (status %d): "
                                "restarting it in %lld ms", cs->ss->mount, WEXITSTATUS(status),
                                (long long)(in > 0 ? in : 0));
            else
                LOG_RATELIMITED(LOG_WARN, "captions", "/%s: the recogniser died (signal %d): "
                                "restarting it in %lld ms", cs->ss->mount,
                                WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                                (long long)(in > 0 ? in : 0));
        }
        cs->killed = 0;
        return 1;
    }
    /* a recogniser of a space that ended meanwhile: nobody holds it any more */
    return 0;
}

/* ---- the decoder ---------------------------------------------------------------------------- */

static void capspace_pump(struct captions *cap, struct capspace *cs)
{
    struct ring *r = cs->ring;
    int64_t now = cap->loop->now_ms;
    uint64_t head = ring_head(r);
    if (cs->cursor < ring_tail(r) || cs->cursor > head) {
        cs->cursor = head;
        cap->sh->main.captions_skips++;
    }
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    uint64_t allowed = (uint64_t)(now - cs->started_ms + START_CREDIT_MS) * 48;
    for (int i = 0; i < PUMP_MAX_PAGES && cs->cursor < head && !cs->failed; i++) {
        struct ring_page pg;
        if (ring_page_get(r, cs->cursor, &pg) < 0)
            break;
        if (cs->taken + pg.samples > allowed) {
            struct ring_page last;
            if (ring_page_get(r, head - 1, &last) == 0 && last.granule > pg.granule &&
                last.granule - pg.granule > (uint64_t)BEHIND_MAX_MS * 48) {
                cs->cursor = head - 1;
                cap->sh->main.captions_skips++;
            }
            break;
        }
        cs->next_pts = (int64_t)(pg.granule - pg.samples);
        cs->taken += pg.samples;
        cs->cursor++;
        ogg_demux_feed(cs->demux, pg.data, pg.len, &demux_cb, cs);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    cap->sh->main.captions_cpu_ns +=
        (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec));
    if (cs->failed) {
        LOG_RATELIMITED(LOG_ERROR, "captions", "/%s: decoder error: restarting", cs->ss->mount);
        cs->killed = 1;
        proc_kill(cap, cs);
        return;
    }
    /* what the recogniser was given up to now, less what it may still be thinking about */
    if (cs->nmap > 0) {
        int64_t fed = rec_to_ms(cs, (double)cs->given / RATE);
        int64_t unread = (int64_t)((cs->queue.len - cs->queue_off) / 2) * 1000 / RATE;
        __atomic_store_n(&cs->ss->captions_final_ms, fed - unread - CAPTIONS_SETTLE_MS,
                         __ATOMIC_RELEASE);
    }
    size_t max = (size_t)cap->cfg->captions_queue_ms * RATE / 1000 * 2;
    if (cs->queue.len - cs->queue_off > max) {
        cap->sh->main.captions_stuck++;
        cs->killed = 1;
        proc_kill(cap, cs);
        log_warn("captions", "/%s: the recogniser left %d ms of audio unread: killed, restarting "
                 "it in %lld ms", cs->ss->mount, cap->cfg->captions_queue_ms,
                 (long long)(cs->restart_at_ms - now));
        return;
    }
    queue_flush(cap, cs);
}

void captions_pump(struct captions *cap)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (cap->s[i] && cap->s[i]->demux)
            capspace_pump(cap, cap->s[i]);
}

/* ---- the spaces --------------------------------------------------------------------------- */

static void capspace_free(struct captions *cap, struct capspace *cs)
{
    cs->killed = 1;
    proc_kill(cap, cs);
    struct shared_space *ss = cs->ss;
    __atomic_store_n(&ss->captions_on, 0, __ATOMIC_RELEASE);
    shared_captions_put(ss, NULL, 0);
    buf_free(&cs->queue);
    cap->s[cs->slot] = NULL;
    if (cs->pid > 0)
        log_info("captions", "/%s: captions off (recogniser pid %d killed)", ss->mount,
                 (int)cs->pid);
    free(cs);
}

/* An upgrade: takes over the cue list the earlier binary left in <cs>'s slot (same epoch, ids
 * going on from its last), so a poller's since= and the HLS captions go on where they were.
 * Returns 1, or 0 if the list does not read whole (then it starts over). */
static int capspace_adopt(struct capspace *cs)
{
    static char list[SHARED_CAPTIONS_MAX];
    int len = shared_captions_copy(cs->ss, list);
    if (len < 0 || !captions_list_ok(list, (size_t)len))
        return 0;
    size_t pos = 0;
    struct caption_cue c;
    while (captions_next_cue(list, (size_t)len, &pos, &c)) {
        if (cs->ncues == CAPTIONS_KEEP) {
            memmove(cs->cues, cs->cues + 1, sizeof(cs->cues[0]) * (CAPTIONS_KEEP - 1));
            cs->ncues--;
        }
        struct cue *k = &cs->cues[cs->ncues++];
        k->id = c.id;
        k->start_ms = c.start_ms;
        k->end_ms = c.end_ms;
        memcpy(k->text, c.text, c.text_len);
        k->text[c.text_len] = '\0';
        cs->next_id = c.id;
    }
    log_info("captions", "/%s: took over %d cues of the earlier binary (last id %llu)",
             cs->ss->mount, cs->ncues, (unsigned long long)cs->next_id);
    return 1;
}

static void capspace_new(struct captions *cap, int slot)
{
    struct capspace *cs = calloc(1, sizeof(*cs));
    BUG_ON(!cs);
    cs->slot = slot;
    cs->cap = cap;
    cs->ss = &cap->sh->spaces[slot];
    cs->ring = shared_ring(cap->sh, slot);
    cs->gen = __atomic_load_n(&cs->ss->gen, __ATOMIC_ACQUIRE);
    cs->in_fd = cs->out_fd = -1;
    cs->backoff_ms = BACKOFF_MIN_MS;
    cs->restart_at_ms = 0;
    cs->run_since_ms = cap->loop->now_ms;
    cs->expect_pts = -1;
    cap->s[slot] = cs;
    if (cap->adopt[slot] && cap->adopt_gen[slot] == cs->gen && capspace_adopt(cs)) {
        cap->adopt[slot] = 0;
        __atomic_store_n(&cs->ss->captions_on, 1, __ATOMIC_RELEASE);
        return;
    }
    cap->adopt[slot] = 0;
    shared_captions_put(cs->ss, NULL, 0);
    cs->ss->captions_final_ms = 0;
    cs->ss->captions_epoch++;
    __atomic_store_n(&cs->ss->captions_on, 1, __ATOMIC_RELEASE);
}

static void captions_tick(struct loop *loop, struct loop_timer *timer)
{
    struct captions *cap = (struct captions *)((char *)timer - offsetof(struct captions, timer));
    struct shared *sh = cap->sh;
    int64_t now = loop->now_ms;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct shared_space *ss = &sh->spaces[i];
        struct capspace *cs = cap->s[i];
        int live = __atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) == SLOT_LIVE &&
                   !shared_is_rendition(ss);
        int want = live && !cap->relay &&
                   config_captions(cap->cfg, config_space(cap->cfg, ss->mount));
        if (cs && (!want || __atomic_load_n(&ss->gen, __ATOMIC_ACQUIRE) != cs->gen)) {
            capspace_free(cap, cs);
            cs = NULL;
        }
        if (!want) {
            if (cap->adopt[i]) { /* captioned under the earlier binary, not now */
                cap->adopt[i] = 0;
                __atomic_store_n(&ss->captions_on, 0, __ATOMIC_RELEASE);
                shared_captions_put(ss, NULL, 0);
            }
            continue;
        }
        if (!cs) {
            capspace_new(cap, i);
            cs = cap->s[i];
        }
        if (strcmp(ss->captions_lang, cap->cfg->captions_lang) != 0) /* new, or a reload */
            snprintf(ss->captions_lang, sizeof(ss->captions_lang), "%s", cap->cfg->captions_lang);
        if (cs->pid == 0 && cs->in_fd < 0 && now >= cs->restart_at_ms &&
            ring_head(cs->ring) > ring_tail(cs->ring)) {
            if (proc_start(cap, cs) < 0) {
                LOG_RATELIMITED(LOG_ERROR, "captions", "/%s: cannot start the recogniser: %s",
                                ss->mount, strerror(errno));
                proc_kill(cap, cs);
            }
        }
    }
    captions_pump(cap);
    loop_timer_start(loop, timer, CAPTIONS_TICK_MS, captions_tick);
}

void captions_init(struct captions *cap)
{
    char exe[sizeof(cap->exe_dir)];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    cap->exe_dir[0] = '\0';
    if (n > 0) {
        exe[n] = '\0';
        char *sl = strrchr(exe, '/');
        if (sl && sl > exe) {
            *sl = '\0';
            snprintf(cap->exe_dir, sizeof(cap->exe_dir), "%s", exe);
        }
    }
    cap->sh->main.captions_running = 0;
    /* an upgrade: the earlier binary's recognisers died with it (their input closed), but
     * the cue lists of spaces still live are taken over when their upkeep finds them
     * captioned (capspace_adopt); until then they show as restarting */
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        struct shared_space *ss = &cap->sh->spaces[i];
        int had = __atomic_load_n(&ss->captions_on, __ATOMIC_ACQUIRE) != 0 &&
                  __atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) == SLOT_LIVE && !cap->relay;
        cap->adopt[i] = (uint8_t)had;
        cap->adopt_gen[i] = __atomic_load_n(&ss->gen, __ATOMIC_ACQUIRE);
        if (!cap->relay)
            __atomic_store_n(&ss->captions_on, had ? 1 : 0, __ATOMIC_RELEASE);
    }
    loop_timer_start(cap->loop, &cap->timer, CAPTIONS_TICK_MS, captions_tick);
}

void captions_free(struct captions *cap)
{
    loop_timer_stop(cap->loop, &cap->timer);
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (cap->s[i])
            capspace_free(cap, cap->s[i]);
}
