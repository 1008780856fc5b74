#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int log_level = LOG_INFO;

static char log_path[256]; /* the log file, "" = stderr as the process got it */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

__attribute__((format(printf, 3, 0))) static void log_vwrite(int level, const char *tag,
                                                          const char *fmt, va_list ap)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %-5s %-7s ", tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], tag);
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* one write() per line so lines from several processes do not interleave */
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}

void log_write(int level, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, tag, fmt, ap);
    va_end(ap);
}

/* Puts <path> on descriptor 2. Returns 0 or -errno (descriptor 2 unchanged). */
static int log_redirect(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1)
        return -errno;
    fflush(stderr);
    if (fd == STDERR_FILENO) /* 2 was closed: the file took its place */
        return fcntl(fd, F_SETFD, 0) == -1 ? -errno : 0;
    /* dup2 clears close-on-exec on 2 and closes what 2 was: in-flight lines of other
     * processes that share the old file are not affected */
    int rc = dup2(fd, STDERR_FILENO) == -1 ? -errno : 0;
    close(fd);
    return rc;
}

int log_file_open(const char *path)
{
    if (strlen(path) >= sizeof(log_path))
        return -ENAMETOOLONG;
    int rc = log_redirect(path);
    if (rc == 0)
        memcpy(log_path, path, strlen(path) + 1);
    return rc;
}

void log_file_reopen(void)
{
    if (!log_path[0])
        return;
    int rc = log_redirect(log_path);
    if (rc < 0)
        log_error("log", "log-file %s: %s: reopen failed, still writing to the old file",
                  log_path, strerror(-rc));
    else
        log_info("log", "log-file %s reopened (pid %d)", log_path, (int)getpid());
}

void log_ratelimited_(int64_t *last, unsigned *skipped, int level, const char *tag,
                      const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (*last != 0 && ts.tv_sec - *last < 1) {
        (*skipped)++;
        return;
    }
    if (*skipped)
        log_write(level, tag, "(%u similar messages suppressed)", *skipped);
    *last = ts.tv_sec;
    *skipped = 0;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, tag, fmt, ap);
    va_end(ap);
}

const char *log_escape(char *out, size_t cap, const char *in, size_t len)
{
    size_t o = 0;
    if (cap == 0)
        return out;
    for (size_t i = 0; i < len; i++) {
        if (o + 4 >= cap) {
            if (cap >= 4)
                memcpy(out + (cap >= 4 ? cap - 4 : 0), "...", 3), o = cap - 1;
            break;
        }
        unsigned char c = (unsigned char)in[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o < cap ? o : cap - 1] = '\0';
    return out;
}
