/*
 * harness: a tiny unit-test harness. Each TEST runs in its own forked process with a timeout,
 * so a crash or a hang fails that test alone. Typed asserts print both operands.
 *
 *   TEST(ring_wraps) { ... ASSERT_EQ_INT(a, b); ... }
 *   int main(void) { return RUN_TESTS(); }
 *
 * Output: one "ok"/"FAIL" line per test and, last, "N passed, N failed".
 */
#ifndef ROSTRUM_TEST_HARNESS_H
#define ROSTRUM_TEST_HARNESS_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct test_case {
    const char *name;
    void (*fn)(void);
};

#define MAX_TESTS 256
static struct test_case test_cases_[MAX_TESTS];
static int test_count_;

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void test_register_##name(void)                           \
    {                                                                                              \
        if (test_count_ < MAX_TESTS)                                                               \
            test_cases_[test_count_++] = (struct test_case){#name, test_##name};                   \
    }                                                                                              \
    static void test_##name(void)

#define TEST_FAIL_(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "    %s:%d: ", __FILE__, __LINE__);                                        \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            TEST_FAIL_("assertion failed: %s", #c);                                                \
    } while (0)
#define ASSERT_EQ_INT(a, b)                                                                        \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                                  \
    } while (0)
#define ASSERT_EQ_UINT(a, b)                                                                       \
    do {                                                                                           \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);             \
        if (a_ != b_)                                                                              \
            TEST_FAIL_("%s == %s: %llu != %llu", #a, #b, a_, b_);                                  \
    } while (0)
#define ASSERT_EQ_STR(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",                   \
                       b_ ? b_ : "(null)");                                                        \
    } while (0)
#define ASSERT_EQ_MEM(a, b, n)                                                                     \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0)                                                            \
            TEST_FAIL_("%s == %s: %zu bytes differ", #a, #b, (size_t)(n));                         \
    } while (0)

static inline int run_tests_(const char *prog)
{
    int passed = 0, failed = 0;
    const char *only = getenv("TEST_ONLY");
    for (int i = 0; i < test_count_; i++) {
        if (only && strcmp(only, test_cases_[i].name) != 0)
            continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(60);
            test_cases_[i].fn();
            exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (ok)
            passed++;
        else
            failed++;
        printf("%s %s.%s", ok ? "ok  " : "FAIL", prog, test_cases_[i].name);
        if (WIFSIGNALED(st))
            printf(" (signal %d)", WTERMSIG(st));
        printf("\n");
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define RUN_TESTS() run_tests_(__FILE__)

#endif
