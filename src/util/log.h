/*
 * log: levelled logging to stderr, or to a file (log-file) put in stderr's place.
 *
 * Each line carries a time, a level and a module tag. Arguments are not evaluated below the
 * current level. Peer-supplied strings must go through log_escape() first so a client cannot
 * forge log lines. Repeated warnings are rate-limited with LOG_RATELIMITED.
 */
#ifndef ROSTRUM_UTIL_LOG_H
#define ROSTRUM_UTIL_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_level;

void log_write(int level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends the log, and everything else the process writes to stderr (a sanitizer's report, a
 * BUG line), to <path> from now on: opens it for appending (created 0640 if missing) and puts
 * it on descriptor 2, so processes forked later inherit it (nginx redirects stderr the same
 * way). The path is kept for log_file_reopen(). Returns 0, or -errno (stderr is unchanged). */
int log_file_open(const char *path);
/* Opens the log file again at its path (SIGUSR1: logrotate moved it away), in this process;
 * says so in the new file. If it cannot be opened the old one is kept, and the error goes to
 * it. Nothing happens without a log file. */
void log_file_reopen(void);

/* Copies at most <len> bytes of <in> into <out> (of <cap> bytes, NUL-terminated), replacing
 * control and non-ASCII bytes with '?' and cutting long input with "...". Returns <out>. */
const char *log_escape(char *out, size_t cap, const char *in, size_t len);

#define LOG_AT(lvl, tag, ...)                                                                      \
    do {                                                                                           \
        if ((lvl) <= log_level)                                                                    \
            log_write((lvl), (tag), __VA_ARGS__);                                                  \
    } while (0)
#define log_error(tag, ...) LOG_AT(LOG_ERROR, tag, __VA_ARGS__)
#define log_warn(tag, ...) LOG_AT(LOG_WARN, tag, __VA_ARGS__)
#define log_info(tag, ...) LOG_AT(LOG_INFO, tag, __VA_ARGS__)
#define log_debug(tag, ...) LOG_AT(LOG_DEBUG, tag, __VA_ARGS__)

/* Logs at most once per second per call site; says how many were suppressed. */
#define LOG_RATELIMITED(lvl, tag, fmt, ...)                                                        \
    do {                                                                                           \
        static int64_t log_rl_last_;                                                               \
        static unsigned log_rl_skipped_;                                                           \
        if ((lvl) <= log_level)                                                                    \
            log_ratelimited_(&log_rl_last_, &log_rl_skipped_, (lvl), (tag), fmt, ##__VA_ARGS__);   \
    } while (0)

void log_ratelimited_(int64_t *last, unsigned *skipped, int level, const char *tag,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
