/*
 * load/opts: the command-line options of "rostrum-load listen" and "rostrum-load attack", from
 * one table per command instead of a getopt switch per command.
 *
 * A table lists each option once: its name, what it takes (a whole number in a range, a
 * positive real number up to a bound, a string, or nothing) and where the value goes. The
 * parser checks every value against its range and prints one line that names the command, the
 * option, what was expected and what it got, so that both commands refuse a bad argument in
 * the same words. "--name VALUE" and "--name=VALUE" are both accepted; unlike getopt_long, an
 * abbreviation is not (a benchmark script that abbreviates would break the day a second option
 * starts the same way).
 *
 * The helpers after it are what both commands do with what was parsed: the URL (loopback
 * only), the source addresses, the number of worker processes and the descriptor check.
 */
#ifndef ROSTRUM_LOAD_OPTS_H
#define ROSTRUM_LOAD_OPTS_H

#include <stddef.h>
#include <stdint.h>

#include "load/url.h"

enum opt_kind {
    OPT_U32,  /* uint32_t in [lo, hi] */
    OPT_RATE, /* double in (0, hi] */
    OPT_STR,  /* const char *, borrowed from argv; at most <hi> bytes if hi > 0 */
    OPT_FLAG, /* int set to <flag> (1 to turn a thing on, 0 for a "--no-..." option) */
};

/* One option. <dst> points at the uint32_t, double, const char * or int it fills; <seen>, if
 * not NULL, is set to 1 when the option is given (for required options). */
struct opt {
    const char *name; /* without the dashes: "rate" */
    enum opt_kind kind;
    void *dst;
    double lo, hi;
    int flag;
    int *seen;
    const char *what; /* OPT_RATE / OPT_STR: what the value is, for the message ("joins per
                         second"); NULL: a generic phrase */
};

/* Parses <argv>[<first>..<argc>) against <tab> (<n> entries), as command <cmd> ("listen",
 * "attack": the messages say "rostrum-load <cmd>: ..."). "--help" or "-h" anywhere wins.
 * Returns 0; 2 on a bad argument (unknown option, missing value, a value out of its range or
 * not a number, an argument that is not an option), after printing why on stderr; or 3 for
 * --help. Values already in the destinations are the defaults. */
int opts_parse(const char *cmd, int argc, char **argv, int first, const struct opt *tab, size_t n);

/* Prints "rostrum-load <cmd>: <message>" and the pointer to --help on stderr; returns 2, the
 * exit status for a bad argument. */
int opts_bad(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses the --url <s> into <u> (loopback only). Returns 0, or 2 after printing why. */
int opts_url(const char *cmd, const char *opt, const char *s, struct load_url *u);

/* Source addresses: <src> ("A-B", or NULL for <def_first>, <def_count>) for a target of
 * <family>; IPv6 targets bind no source address (<*count> 0). Returns 0, or 2 after printing
 * why. */
int opts_src_ips(const char *cmd, const char *src, int family, uint32_t def_first,
                 uint32_t def_count, uint32_t *first, uint32_t *count);

/* Worker processes: <*procs> if given (non-zero), else ceil(<units> / <per_proc>); never more
 * than <units>. */
void opts_procs(uint32_t *procs, uint32_t units, uint32_t per_proc);

/* Raises the descriptor limit and checks that <units> over <procs> processes, each with
 * <spare> descriptors of its own, fit under it. Returns 0, or 2 after printing how many
 * processes would do. */
int opts_check_fds(const char *cmd, const char *what, uint32_t units, uint32_t procs,
                   uint32_t spare);

#endif
