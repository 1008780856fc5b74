/*
 * load/procs: what "rostrum-load listen" and "rostrum-load attack" share on the parent side.
 *
 * procs_run() forks P worker processes; worker k gets its share of the units (listeners or
 * connections), runs work() and sends back one fixed-size record through a pipe. The parent
 * reads the records until the deadline (calling at() once at its time, for the server's count
 * taken while the run is still on), kills any worker still running then, and reaps them all.
 * A record counts only if it came whole, starts with the expected magic, and its worker
 * exited 0.
 *
 * Also the small helpers both reports use: the descriptor limit, a histogram as JSON. The
 * options themselves are load/opts.
 */
#ifndef ROSTRUM_LOAD_PROCS_H
#define ROSTRUM_LOAD_PROCS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include "load/hist.h"
#include "util/buf.h"

struct procs {
    const char *tag;        /* for the log: "load", "attack" */
    uint32_t nprocs, units; /* worker k gets units / nprocs, one more if k < units % nprocs */
    size_t rec_size;        /* bytes of a record; its first 4 bytes hold <magic> */
    uint32_t magic;
    unsigned alarm_s;    /* a worker's last bound (SIGALRM), 0 for none */
    int64_t start_us;    /* handed to every worker: they start pacing at the same instant */
    int64_t deadline_us; /* the parent stops waiting then */
    /* In the worker: fills <rec>; returns 0 or -errno. */
    int (*work)(void *arg, uint32_t index, uint32_t n, int64_t start_us, void *rec);
    void *arg;
    int64_t at_us; /* at() runs once at this time (0: no at()) */
    void (*at)(void *arg);
    /* tick() runs in the parent every <tick_ms> while the workers run (NULL: never); it may
     * block briefly (the parent holds no connection) */
    int tick_ms;
    void (*tick)(void *arg);
};

/* Runs the workers. Returns nprocs records (calloc'd, the caller frees; a worker that failed
 * leaves its record zeroed, so the magic tells), and sets <*failed> if any failed. */
void *procs_run(const struct procs *p, int *failed);

/* Raises RLIMIT_NOFILE soft to hard; returns the resulting soft limit. */
rlim_t procs_raise_nofile(void);

/* Appends "name":{"p50":..,"p99":..,"max":..,"count":..}, with the times in ms. */
void procs_json_hist(struct buf *b, const char *name, const struct hist *h);

static inline double procs_ms(uint64_t us)
{
    return (double)us / 1000.0;
}

#endif
