/*
 * check: always-on assertions (kept in release builds, like Redis's serverAssert): a broken
 * invariant or a failed allocation stops the process with where it happened, instead of a
 * bare abort() or undefined behaviour later.
 */
#ifndef ROSTRUM_UTIL_CHECK_H
#define ROSTRUM_UTIL_CHECK_H

/* Prints "BUG at FILE:LINE: <what>" to stderr and aborts. */
__attribute__((noreturn, cold)) void check_fail(const char *file, int line, const char *what);

/* Stops the process if <cond> holds. */
#define BUG_ON(cond)                                                                           \
    do {                                                                                       \
        if (__builtin_expect(!!(cond), 0))                                                     \
            check_fail(__FILE__, __LINE__, #cond);                                             \
    } while (0)

#endif
