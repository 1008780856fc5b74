/*
 * load/opts: see opts.h.
 */
#include "load/opts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "load/procs.h"

int opts_bad(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rostrum-load %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see rostrum-load %s --help)\n", cmd);
    va_end(ap);
    return 2;
}

/* Stores <val> (the text after option <o>) where <o> says. Returns 0 or 2. */
static int opt_value(const char *cmd, const struct opt *o, const char *val)
{
    switch (o->kind) {
    case OPT_U32: {
        char *e;
        errno = 0;
        unsigned long long v = strtoull(val, &e, 10);
        if (*val == '\0' || *val == '-' || *val == '+' || *e != '\0' || errno ||
            (double)v < o->lo || (double)v > o->hi)
            return opts_bad(cmd, "--%s: expected a whole number from %.0f to %.0f, got \"%s\"",
                            o->name, o->lo, o->hi, val);
        *(uint32_t *)o->dst = (uint32_t)v;
        return 0;
    }
    case OPT_RATE: {
        char *e;
        errno = 0;
        double v = strtod(val, &e);
        if (*val == '\0' || *e != '\0' || errno || !(v > 0) || v > o->hi)
            return opts_bad(cmd, "--%s: expected %s in (0, %g], got \"%s\"", o->name,
                            o->what ? o->what : "a number", o->hi, val);
        *(double *)o->dst = v;
        return 0;
    }
    case OPT_STR:
        if (o->hi > 0 && (val[0] == '\0' || (double)strlen(val) > o->hi))
            return opts_bad(cmd, "--%s: expected %s of 1 to %.0f characters", o->name,
                            o->what ? o->what : "a value", o->hi);
        if (val[0] == '\0')
            return opts_bad(cmd, "--%s: expected %s, got nothing", o->name,
                            o->what ? o->what : "a value");
        *(const char **)o->dst = val;
        return 0;
    case OPT_FLAG:
    default:
        *(int *)o->dst = o->flag;
        return 0;
    }
}

int opts_parse(const char *cmd, int argc, char **argv, int first, const struct opt *tab, size_t n)
{
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 3;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return opts_bad(cmd, "unexpected argument \"%s\"", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = NULL;
        for (size_t k = 0; k < n && !o; k++)
            if (strlen(tab[k].name) == nl && strncmp(tab[k].name, name, nl) == 0)
                o = &tab[k];
        if (!o)
            return opts_bad(cmd, "unknown option \"%.*s\"", (int)nl + 2, a);
        const char *val = NULL;
        if (o->kind == OPT_FLAG) {
            if (eq)
                return opts_bad(cmd, "--%s takes no value", o->name);
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return opts_bad(cmd, "--%s needs a value", o->name);
        }
        if (opt_value(cmd, o, val) != 0)
            return 2;
        if (o->seen)
            *o->seen = 1;
    }
    return 0;
}

int opts_url(const char *cmd, const char *opt, const char *s, struct load_url *u)
{
    char err[256];
    if (!s)
        return opts_bad(cmd, "%s is required", opt);
    if (load_url_parse(s, u, err, sizeof(err)) < 0)
        return opts_bad(cmd, "%s %s: %s", opt, s, err);
    return 0;
}

int opts_src_ips(const char *cmd, const char *src, int family, uint32_t def_first,
                 uint32_t def_count, uint32_t *first, uint32_t *count)
{
    char err[256];
    *first = 0;
    *count = 0;
    if (src) {
        if (family != AF_INET)
            return opts_bad(cmd, "--src-ips: source addresses are IPv4; the URL is IPv6");
        if (load_ip_range_parse(src, first, count, err, sizeof(err)) < 0)
            return opts_bad(cmd, "--src-ips: %s", err);
    } else if (family == AF_INET) {
        *first = def_first;
        *count = def_count;
    }
    return 0;
}

void opts_procs(uint32_t *procs, uint32_t units, uint32_t per_proc)
{
    if (*procs == 0)
        *procs = (units + per_proc - 1) / per_proc;
    if (*procs > units)
        *procs = units;
    if (*procs == 0)
        *procs = 1;
}

int opts_check_fds(const char *cmd, const char *what, uint32_t units, uint32_t procs,
                   uint32_t spare)
{
    rlim_t nofile = procs_raise_nofile();
    uint32_t per_proc = (units + procs - 1) / procs;
    if ((rlim_t)per_proc + spare <= nofile)
        return 0;
    unsigned long long room = nofile > spare ? (unsigned long long)(nofile - spare) : 1;
    return opts_bad(cmd,
                    "%u %s per process exceed the descriptor limit (%llu); use more --procs "
                    "(at least %llu)",
                    per_proc, what, (unsigned long long)nofile,
                    ((unsigned long long)units + room - 1) / room);
}
