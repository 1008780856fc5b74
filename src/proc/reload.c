/*
 * reload: SIGHUP re-reads the configuration without dropping anyone.
 *
 * The main process reads the files and options again (server_config_read, the same path as
 * at start), checks what start-up checks, and then either refuses the whole result (the old
 * configuration stays, the error with its FILE:LINE goes to the log) or takes it. Keys bound
 * to a socket or a process (audience, stage, workers) cannot change under live connections:
 * each one that differs is named in a log line and keeps its value. Everything else is read
 * from srv->cfg where it is used, or copied from it by server_apply_config().
 *
 * The workers are forked processes with their own struct config. The main process publishes
 * the new one, as bytes, in the shared memory (shared_config_put: a seqlock and a
 * generation) and wakes them; each worker copies it when its generation moves (on the wake,
 * and on its 250 ms tick as a fallback) and applies it with the same server_apply_config.
 * So every process runs the configuration the main process validated, byte for byte, and a
 * worker forked later starts from the main process's current copy.
 *
 *   SIGHUP -> main: read + check --refused--> log FILE:LINE, keep all
 *                      \--ok--> keep restart-only keys (logged) -> cfg -> apply
 *                               -> shared_config_put -> wake workers -> each: get -> apply
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc/server.h"
#include "tls/tls.h"
#include "util/check.h"
#include "util/log.h"

_Static_assert(sizeof(struct config) <= SHARED_CONFIG_BYTES,
               "struct config must fit the shared memory's configuration buffer");

int server_config_read(const struct server_args *args, struct config *out, char *err,
                       size_t errlen)
{
    config_defaults(out);
    if (args->relay) {
        /* A relay's listeners ride out its fail-overs: finding a feed dead takes about a
         * second (no page for two page intervals, at least 1 s) and the next one answers in
         * a tenth, so a listener needs more than the origin's 1 s of audio ahead (measured in
         * test_tree_netns: a 1 s burst ran dry for up to 0.2 s). And an upstream that is away
         * for a while (restarting, a link down) should not end its spaces on every edge. */
        out->burst_ms = RELAY_BURST_MS;
        out->grace_ms = RELAY_GRACE_MS;
    }
    for (int i = 0; i < args->nfiles; i++)
        if (config_load_file(out, args->files[i], err, errlen) < 0)
            return -1;
    for (int i = 0; i < args->nopts; i++)
        if (config_set(out, args->key[i], args->val[i], err, errlen) < 0)
            return -1;
    return args->nopts ? config_check(out, err, errlen, "command line") : 0;
}

static const char *workers_shown(int n, char *buf, size_t cap)
{
    if (n < 0)
        return "auto";
    snprintf(buf, cap, "%d", n);
    return buf;
}

/* Keeps in <nc> the keys that need a restart, naming each that the files changed. <was> is
 * the configuration as last read; <run> as it runs (ports and workers resolved). */
static void keep_restart_keys(struct config *nc, const struct config *was,
                              const struct config *run)
{
    char a[16], b[16], c[16];
    if (strcmp(nc->audience_host, was->audience_host) != 0 ||
        nc->audience_port != was->audience_port)
        log_warn("reload", "'audience' changed from %s:%u to %s:%u: needs a restart, kept %s:%u",
                 was->audience_host, was->audience_port, nc->audience_host, nc->audience_port,
                 run->audience_host, run->audience_port);
    if (strcmp(nc->stage_host, was->stage_host) != 0 || nc->stage_port != was->stage_port)
        log_warn("reload", "'stage' changed from %s:%u to %s:%u: needs a restart, kept %s:%u",
                 was->stage_host, was->stage_port, nc->stage_host, nc->stage_port,
                 run->stage_host, run->stage_port);
    if (nc->workers != was->workers)
        log_warn("reload", "'workers' changed from %s to %s: needs a restart, kept %s",
                 workers_shown(was->workers, a, sizeof(a)),
                 workers_shown(nc->workers, b, sizeof(b)),
                 workers_shown(run->workers, c, sizeof(c)));
    if (nc->audience_tls != was->audience_tls ||
        strcmp(nc->audience_tls_host, was->audience_tls_host) != 0 ||
        nc->audience_tls_port != was->audience_tls_port)
        log_warn("reload", "'audience-tls' changed: needs a restart, kept %s",
                 run->audience_tls ? "the running TLS listener" : "no TLS listener");
    if (nc->stage_tls != was->stage_tls || strcmp(nc->stage_tls_host, was->stage_tls_host) != 0 ||
        nc->stage_tls_port != was->stage_tls_port)
        log_warn("reload", "'stage-tls' changed: needs a restart, kept %s",
                 run->stage_tls ? "the running TLS listener" : "no TLS listener");
    nc->stage_tls = was->stage_tls;
    memcpy(nc->stage_tls_host, was->stage_tls_host, sizeof(nc->stage_tls_host));
    nc->stage_tls_port = was->stage_tls_port;
    nc->audience_tls = was->audience_tls;
    memcpy(nc->audience_tls_host, was->audience_tls_host, sizeof(nc->audience_tls_host));
    nc->audience_tls_port = was->audience_tls_port;
    if (strcmp(nc->user, was->user) != 0)
        log_warn("reload", "'user' changed from '%s' to '%s': needs a restart, kept '%s'",
                 was->user, nc->user, run->user);
    memcpy(nc->user, was->user, sizeof(nc->user));
    if (strcmp(nc->log_file, was->log_file) != 0) /* stderr itself was moved at start */
        log_warn("reload", "'log-file' changed from '%s' to '%s': needs a restart, kept '%s'",
                 was->log_file, nc->log_file, run->log_file);
    memcpy(nc->log_file, was->log_file, sizeof(nc->log_file));
    memcpy(nc->audience_host, was->audience_host, sizeof(nc->audience_host));
    nc->audience_port = was->audience_port;
    memcpy(nc->stage_host, was->stage_host, sizeof(nc->stage_host));
    nc->stage_port = was->stage_port;
    nc->workers = was->workers;
}

void server_reload(struct server *srv)
{
    char err[600];
    struct config *nc = malloc(sizeof(*nc));
    BUG_ON(!nc);
    const char *file = srv->args.nfiles ? srv->args.files[srv->args.nfiles - 1] : NULL;
    if (server_config_read(&srv->args, nc, err, sizeof(err)) < 0) {
        log_error("reload", "%s: refused, the configuration is unchanged", err);
        free(nc);
        return;
    }
    if (nc->source_password[0] == '\0') {
        log_error("reload", "no source password in %s: refused, the configuration is unchanged",
                  file ? file : "the options");
        free(nc);
        return;
    }
    /* the one check start-up makes after parsing: the proxy list; tried on the live hub, put
     * back if it fails */
    struct addr_key trusted[16];
    int ntrusted = srv->hub.ntrusted;
    memcpy(trusted, srv->hub.trusted, sizeof(trusted));
    if (conn_hub_set_trusted(&srv->hub, nc->trusted_proxies) < 0) {
        memcpy(srv->hub.trusted, trusted, sizeof(trusted));
        srv->hub.ntrusted = ntrusted;
        log_error("reload", "trusted-proxies: bad or too many addresses (max 16): refused, the "
                            "configuration is unchanged");
        free(nc);
        return;
    }
    keep_restart_keys(nc, &srv->given, &srv->cfg);
    srv->given = *nc;
    /* as it runs: the resolved ports and number of workers */
    nc->audience_port = srv->cfg.audience_port;
    nc->stage_port = srv->cfg.stage_port;
    nc->audience_tls_port = srv->cfg.audience_tls_port;
    nc->stage_tls_port = srv->cfg.stage_tls_port;
    nc->workers = srv->cfg.workers;
    srv->cfg = *nc;
    free(nc);
    server_apply_config(srv);
    server_publish_config(srv);
    log_info("reload", "configuration re-read from %s%s", file ? file : "the command line",
             file && srv->args.nopts ? " (command-line options over it)" : "");
}

/* Reads the certificate and key again (certbot renews them in place) for the connections
 * accepted from now on; those already open keep the context they began with (each SSL holds
 * a reference). Each process reads the files itself, as the user it runs as. A file that
 * cannot be loaded keeps the running certificate, said in the log. */
static void server_tls_reload(struct server *srv)
{
    char err[800];
    struct tls_ctx *t = tls_ctx_new(srv->cfg.tls_cert, srv->cfg.tls_key, err, sizeof(err));
    if (!t) {
        log_error("reload", "%s: kept the running certificate", err);
        return;
    }
    tls_ctx_free(srv->tls);
    srv->tls = t;
    srv->audience_tls.tls = t;
    srv->stage_tls.tls = t;
    log_info("tls", "certificate re-read from %s for new connections", srv->cfg.tls_cert);
}

void server_apply_config(struct server *srv)
{
    const struct config *cfg = &srv->cfg;
    if (srv->tls)
        server_tls_reload(srv);
    log_level = cfg->log_level;
    srv->hub.head_timeout_ms = cfg->head_timeout_ms;
    srv->hub.response_timeout_ms = cfg->response_timeout_ms;
    srv->hub.max_conns_per_ip = cfg->max_conns_per_ip;
    if (conn_hub_set_trusted(&srv->hub, cfg->trusted_proxies) < 0)
        log_error("reload", "trusted-proxies: bad list kept out"); /* checked by the main */
    if (srv->serves_audience)
        audience_reconfigure(&srv->aud);
    if (!srv->is_worker)
        spaces_reconfigure(&srv->spaces);
}

void server_publish_config(struct server *srv)
{
    srv->cfg_gen = shared_config_put(srv->sh, &srv->cfg, (uint32_t)sizeof(srv->cfg));
    if (!srv->serves_audience)
        workers_wake(srv);
}
