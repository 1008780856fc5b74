/*
 * speak/source: tone, clicks, raw PCM file, or a file decoded by an ffmpeg child. See source.h.
 *
 * The ffmpeg child gets its own process group (a Ctrl-C at the terminal is ours to handle: we
 * close the WebSocket cleanly and then stop the child), default signal dispositions and an
 * empty signal mask, stdin from /dev/null, and our stderr, so its errors reach the user as is.
 * If we die without stopping it, its next write to the pipe kills it (SIGPIPE).
 */
#include "speak/source.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/check.h"
#include "util/log.h"

extern char **environ;

enum kind { SRC_TONE, SRC_CLICKS, SRC_RAW, SRC_FFMPEG };

#define RING_BYTES (SPEAK_RATE / 1000 * SPEAK_SOURCE_BUFFER_MS * 2)

struct speak_source {
    int kind;
    double gain; /* linear */
    uint64_t underruns;
    unsigned plays;
    int failed;
    char error[256];
    /* tone (phase, step, amp) and clicks (step, amp) */
    double phase, step, amp;
    /* clicks */
    uint64_t pos;    /* samples made so far */
    uint64_t period; /* samples between click onsets; 0: silence only */
    int click_at;    /* onset index in the last read, -1: none */
    /* raw and ffmpeg */
    char *path;
    int fd;
    /* ffmpeg: the child writes into a pipe that we drain into ring[] */
    struct io io; /* the pipe's read end */
    struct loop *loop;
    pid_t pid;
    uint64_t run_bytes; /* bytes read from the current child */
    unsigned char *ring;
    size_t head, len; /* ring[head..head+len) (mod RING_BYTES) holds unread bytes */
    int ready;
    speak_ready_cb ready_cb;
    void *ready_arg;
};

void speak_apply_gain(int16_t *pcm, int n, double gain)
{
    for (int i = 0; i < n; i++) {
        double v = pcm[i] * gain;
        pcm[i] = (int16_t)(v > 32767.0 ? 32767 : v < -32768.0 ? -32768 : lrint(v));
    }
}

static struct speak_source *source_new(int kind, double gain_db)
{
    struct speak_source *s = calloc(1, sizeof(*s));
    BUG_ON(!s);
    s->kind = kind;
    s->gain = pow(10.0, gain_db / 20.0);
    s->fd = -1;
    s->io.fd = -1;
    s->click_at = -1;
    return s;
}

struct speak_source *speak_source_tone(double hz, double gain_db)
{
    struct speak_source *s = source_new(SRC_TONE, 0.0);
    s->step = 2.0 * M_PI * hz / SPEAK_RATE;
    s->amp = 32767.0 * pow(10.0, (SPEAK_TONE_DBFS + gain_db) / 20.0);
    s->plays = 1;
    s->ready = 1;
    return s;
}

struct speak_source *speak_source_clicks(unsigned period_ms, double gain_db)
{
    struct speak_source *s = source_new(SRC_CLICKS, 0.0);
    s->period = (uint64_t)period_ms * (SPEAK_RATE / 1000);
    s->step = 2.0 * M_PI * SPEAK_CLICK_HZ / SPEAK_RATE;
    s->amp = 32767.0 * pow(10.0, (SPEAK_CLICK_DBFS + gain_db) / 20.0);
    s->plays = 1;
    s->ready = 1;
    return s;
}

/* Silence, and the burst wherever a click falls: the sine starts at phase 0 on its onset sample,
 * so the first sample past a detector's threshold is within a sample or two of it. */
static void clicks_read(struct speak_source *s, int16_t *pcm, int n)
{
    const uint64_t len = (uint64_t)SPEAK_RATE / 1000 * SPEAK_CLICK_MS;
    s->click_at = -1;
    for (int i = 0; i < n; i++) {
        uint64_t p = s->pos + (uint64_t)i, k = s->period ? p % s->period : 0;
        if (s->period && p >= s->period && k < len) {
            if (k == 0)
                s->click_at = i;
            double v = s->amp * sin(s->step * (double)k);
            pcm[i] = (int16_t)(v > 32767.0 ? 32767 : v < -32768.0 ? -32768 : lrint(v));
        } else {
            pcm[i] = 0;
        }
    }
    s->pos += (uint64_t)n;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* ---- ffmpeg ------------------------------------------------------------------------------- */

static void ffmpeg_on_io(struct loop *loop, struct io *io, uint32_t events);

static void set_ready(struct speak_source *s)
{
    if (s->ready)
        return;
    s->ready = 1;
    if (s->ready_cb)
        s->ready_cb(s->ready_arg);
}

/* Starts a child decoding s->path into a new pipe. Returns 0 or -errno (reason in s->error). */
static int ffmpeg_start(struct speak_source *s)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) == -1) {
        int e = errno;
        snprintf(s->error, sizeof(s->error), "pipe: %s", strerror(e));
        return -e;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1); /* dup2 clears close-on-exec on fd 1 */
    posix_spawnattr_init(&at);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
    char *argv[] = {"ffmpeg", "-nostdin", "-v", "error", "-i",    s->path, "-f",
                    "s16le",  "-ac",      "1",  "-ar",   "48000", "-",     NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "ffmpeg", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        snprintf(s->error, sizeof(s->error), "cannot run ffmpeg: %s", strerror(rc));
        return -rc;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    s->pid = pid;
    s->run_bytes = 0;
    s->plays++;
    s->io = (struct io){.fd = p[0], .cb = ffmpeg_on_io};
    if ((rc = loop_add(s->loop, &s->io, EPOLLIN)) < 0) {
        snprintf(s->error, sizeof(s->error), "epoll: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

/* Waits for the child. Called once its stdout reached EOF, i.e. it is exiting now, so this
 * does not block for long. Returns its wait status. */
static int ffmpeg_reap(struct speak_source *s)
{
    int status = 0;
    if (s->pid > 0) {
        while (waitpid(s->pid, &status, 0) == -1 && errno == EINTR)
            ;
        s->pid = 0;
    }
    return status;
}

static void ffmpeg_fail(struct speak_source *s, const char *why)
{
    if (!s->failed) {
        s->failed = 1;
        snprintf(s->error, sizeof(s->error), "%s", why);
    }
    set_ready(s); /* the failure shows on the next read */
}

/* The child's stdout ended: reap it, and start the file again unless it gave nothing. */
static void ffmpeg_eof(struct speak_source *s)
{
    loop_del(s->loop, &s->io);
    close(s->io.fd);
    s->io.fd = -1;
    int status = ffmpeg_reap(s);
    if (s->run_bytes < 2) {
        char why[200];
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            snprintf(why, sizeof(why), "ffmpeg could not decode %s (exit %d)", s->path,
                     WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            snprintf(why, sizeof(why), "ffmpeg died (signal %d)", WTERMSIG(status));
        else
            snprintf(why, sizeof(why), "%s decodes to no audio", s->path);
        return ffmpeg_fail(s, why);
    }
    if (s->failed)
        return;
    set_ready(s); /* a file shorter than the ready threshold */
    if (ffmpeg_start(s) < 0)
        ffmpeg_fail(s, s->error);
}

static void ffmpeg_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct speak_source *s =
        (struct speak_source *)((char *)io - offsetof(struct speak_source, io));
    (void)loop;
    (void)events;
    while (s->len < RING_BYTES) {
        size_t tail = (s->head + s->len) % RING_BYTES;
        size_t room = tail >= s->head ? RING_BYTES - tail : s->head - tail;
        if (room > RING_BYTES - s->len)
            room = RING_BYTES - s->len;
        ssize_t n = read(s->io.fd, s->ring + tail, room);
        if (n > 0) {
            s->len += (size_t)n;
            s->run_bytes += (uint64_t)n;
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n == -1) {
            char why[128];
            snprintf(why, sizeof(why), "reading from ffmpeg: %s", strerror(errno));
            ffmpeg_fail(s, why);
        }
        ffmpeg_eof(s);
        return;
    }
    if (s->len >= RING_BYTES)
        loop_mod(s->loop, &s->io, 0); /* full: let ffmpeg block until we need more */
    if (s->len >= (size_t)SPEAK_RATE / 1000 * SPEAK_SOURCE_READY_MS * 2)
        set_ready(s);
}

/* Takes up to <n> samples from the ring; returns how many. Resumes reading the pipe once half
 * the ring is free. */
static int ring_take(struct speak_source *s, int16_t *pcm, int n)
{
    int got = 0;
    while (got < n && s->len >= 2) {
        unsigned char b[2];
        /* byte by byte only where a sample straddles the wrap; else whole runs */
        size_t run = RING_BYTES - s->head;
        if (run > s->len)
            run = s->len;
        if (run >= 2) {
            size_t k = run / 2;
            if (k > (size_t)(n - got))
                k = (size_t)(n - got);
            memcpy(pcm + got, s->ring + s->head, k * 2); /* s16le on a little-endian host */
            s->head = (s->head + k * 2) % RING_BYTES;
            s->len -= k * 2;
            got += (int)k;
        } else {
            b[0] = s->ring[s->head];
            b[1] = s->ring[(s->head + 1) % RING_BYTES];
            memcpy(pcm + got, b, 2);
            s->head = (s->head + 2) % RING_BYTES;
            s->len -= 2;
            got++;
        }
    }
    if (s->io.fd >= 0 && s->io.events == 0 && s->len <= RING_BYTES / 2)
        loop_mod(s->loop, &s->io, EPOLLIN);
    return got;
}

/* ---- raw ----------------------------------------------------------------------------------- */

static int raw_read(struct speak_source *s, int16_t *pcm, int n)
{
    size_t want = (size_t)n * 2, have = 0;
    int rewound = 0;
    while (have < want) {
        ssize_t r = read(s->fd, (char *)pcm + have, want - have);
        if (r > 0) {
            have += (size_t)r;
            rewound = 0;
            continue;
        }
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1 || rewound) {
            s->failed = 1;
            snprintf(s->error, sizeof(s->error), "reading %s: %s", s->path,
                     r == -1 ? strerror(errno) : "no audio");
            return -1;
        }
        if (have % 2) /* an odd byte at the end of the file: drop it */
            have--;
        if (lseek(s->fd, 0, SEEK_SET) == -1) {
            s->failed = 1;
            snprintf(s->error, sizeof(s->error), "rewinding %s: %s", s->path, strerror(errno));
            return -1;
        }
        rewound = 1;
        s->plays++;
    }
    return 0;
}

/* ---- common -------------------------------------------------------------------------------- */

struct speak_source *speak_source_file(struct loop *loop, const char *path, double gain_db,
                                       speak_ready_cb ready, void *arg, char *err, size_t errlen)
{
    int raw = ends_with(path, ".s16") || ends_with(path, ".raw");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || (raw && st.st_size < 2)) {
        snprintf(err, errlen, "%s: %s", path,
                 raw && S_ISREG(st.st_mode) ? "no audio in it" : "not a regular file");
        close(fd);
        return NULL;
    }
    struct speak_source *s = source_new(raw ? SRC_RAW : SRC_FFMPEG, gain_db);
    s->path = strdup(path);
    BUG_ON(!s->path);
    if (raw) {
        s->fd = fd;
        s->plays = 1;
        s->ready = 1;
        return s;
    }
    close(fd); /* ffmpeg opens it itself; we only checked it is there */
    s->loop = loop;
    s->ready_cb = ready;
    s->ready_arg = arg;
    s->ring = malloc(RING_BYTES);
    BUG_ON(!s->ring);
    if (ffmpeg_start(s) < 0) {
        snprintf(err, errlen, "%s", s->error);
        speak_source_free(s);
        return NULL;
    }
    return s;
}

int speak_source_ready(const struct speak_source *s)
{
    return s->ready;
}

int speak_source_read(struct speak_source *s, int16_t *pcm, int n)
{
    if (s->kind == SRC_TONE) {
        for (int i = 0; i < n; i++) {
            pcm[i] = (int16_t)lrint(s->amp * sin(s->phase));
            s->phase += s->step;
            if (s->phase >= 2.0 * M_PI)
                s->phase -= 2.0 * M_PI;
        }
        return 0;
    }
    if (s->kind == SRC_CLICKS) {
        clicks_read(s, pcm, n);
        return 0;
    }
    if (s->kind == SRC_RAW) {
        if (raw_read(s, pcm, n) < 0)
            return -1;
    } else {
        int got = ring_take(s, pcm, n);
        if (got < n) {
            if (s->failed)
                return -1;
            memset(pcm + got, 0, (size_t)(n - got) * 2);
            s->underruns += (uint64_t)(n - got);
        }
    }
    if (s->gain != 1.0)
        speak_apply_gain(pcm, n, s->gain);
    return 0;
}

int speak_source_click_at(const struct speak_source *s)
{
    return s->click_at;
}

uint64_t speak_source_underruns(const struct speak_source *s)
{
    return s->underruns;
}

unsigned speak_source_plays(const struct speak_source *s)
{
    return s->plays;
}

const char *speak_source_error(const struct speak_source *s)
{
    return s->error;
}

void speak_source_free(struct speak_source *s)
{
    if (!s)
        return;
    /* The child only decodes for us: kill it outright (a graceful SIGTERM could leave it
     * blocked on a full pipe, and our waitpid with it), then close and reap. */
    if (s->pid > 0)
        kill(s->pid, SIGKILL);
    if (s->io.fd >= 0) {
        if (s->io.events)
            loop_del(s->loop, &s->io);
        close(s->io.fd);
    }
    ffmpeg_reap(s);
    if (s->fd >= 0)
        close(s->fd);
    free(s->ring);
    free(s->path);
    free(s);
}
