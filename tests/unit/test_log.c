/* log: the log file (log-file) in stderr's place, and its reopen for logrotate (issue 10). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "util/log.h"

/* The whole text of <path> ("" if it cannot be read), in a static buffer of its own slot. */
static const char *slurp(const char *path, int slot)
{
    static char text[2][8192];
    char *t = text[slot];
    t[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return t;
    size_t n = fread(t, 1, sizeof(text[0]) - 1, f);
    t[n] = '\0';
    fclose(f);
    return t;
}

TEST(log_file_takes_stderr_and_reopens_issue10)
{
    char dir[] = "/tmp/rostrum-test-log-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char path[128], first[128], second[128];
    snprintf(path, sizeof(path), "%s/rostrum.log", dir);
    snprintf(first, sizeof(first), "%s/rostrum.log.1", dir);
    snprintf(second, sizeof(second), "%s/rostrum.log.2", dir);
    int saved = dup(STDERR_FILENO); /* the harness reports on stderr: put it back before */
    ASSERT(saved >= 0);
    log_file_reopen(); /* no log file: nothing happens */
    int rc_open = log_file_open(path);
    log_warn("test", "line one");
    fprintf(stderr, "a stray stderr line\n");
    /* logrotate moves the file away; the reopen makes a new one */
    int rc_mv1 = rename(path, first);
    log_file_reopen();
    log_warn("test", "line two");
    /* a reopen that cannot open the path (a directory now) keeps the file it has */
    int rc_mv2 = rename(path, second);
    int rc_mkdir = mkdir(path, 0700);
    log_file_reopen();
    log_warn("test", "line three");
    dup2(saved, STDERR_FILENO);
    close(saved);
    rmdir(path);
    ASSERT_EQ_INT(rc_open, 0);
    ASSERT_EQ_INT(rc_mv1, 0);
    ASSERT_EQ_INT(rc_mv2, 0);
    ASSERT_EQ_INT(rc_mkdir, 0);
    const char *one = slurp(first, 0), *two = slurp(second, 1);
    ASSERT(strstr(one, "warn  test    line one") != NULL);
    ASSERT(strstr(one, "a stray stderr line") != NULL); /* stderr itself went there */
    ASSERT(strstr(one, "line two") == NULL);
    ASSERT(strstr(one, "reopened") == NULL);
    ASSERT(strstr(two, "reopened") != NULL);
    ASSERT(strstr(two, "line two") != NULL);
    ASSERT(strstr(two, "reopen failed, still writing to the old file") != NULL);
    ASSERT(strstr(two, "line three") != NULL);
    unlink(first);
    unlink(second);
    rmdir(dir);
}

TEST(log_file_open_failure_leaves_stderr_issue10)
{
    int before = fcntl(STDERR_FILENO, F_GETFL);
    ASSERT_EQ_INT(log_file_open("/nonexistent-dir-of-rostrum/x.log"), -ENOENT);
    ASSERT_EQ_INT(fcntl(STDERR_FILENO, F_GETFL), before);
    char big[400];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ASSERT_EQ_INT(log_file_open(big), -ENAMETOOLONG);
}

TEST(log_file_on_a_closed_stderr_issue10)
{
    char path[] = "/tmp/rostrum-test-log2-XXXXXX";
    int tmp = mkstemp(path);
    ASSERT(tmp >= 0);
    close(tmp);
    int saved = dup(STDERR_FILENO);
    close(STDERR_FILENO); /* started with 2 closed: the file gets descriptor 2 itself */
    int rc = log_file_open(path);
    log_warn("test", "on descriptor two");
    int flags = fcntl(STDERR_FILENO, F_GETFD);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(flags, 0); /* open, and kept across exec like any stderr */
    ASSERT(strstr(slurp(path, 0), "on descriptor two") != NULL);
    unlink(path);
}

int main(void)
{
    return RUN_TESTS();
}
