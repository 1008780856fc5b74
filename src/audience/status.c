/*
 * status: the two documents that describe the server, served by any audience process from
 * the shared table: /status-json.xsl in Icecast 2.4's shape (so existing dashboards and
 * players' directory code keep working) and /metrics in Prometheus text format. Figures are
 * sums over all processes; listener counts are at most a second old.
 *
 * Icecast's quirk is kept on purpose: "source" is absent with no live mount, an object with
 * one, and an array with several.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audience/audience.h"

static void time_fmt(char *out, size_t cap, int64_t t, int iso)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, cap, iso ? "%Y-%m-%dT%H:%M:%S+0000" : "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static void json_kv_str(struct buf *b, const char *key, const char *val, int comma)
{
    buf_printf(b, "%s\"%s\":", comma ? "," : "", key);
    buf_json_str(b, val, strlen(val));
}

/* Listeners of slot <i> that received audio lately, and open connections, over processes. */
static void slot_counts(const struct shared *sh, int i, uint32_t *receiving, uint32_t *conns)
{
    *receiving = *conns = 0;
    for (uint32_t w = 0; w < sh->nworkers; w++) {
        *receiving += sh->workers[w].receiving[i];
        *conns += sh->workers[w].conns[i];
    }
}

static int slot_live(const struct shared *sh, int i)
{
    return __atomic_load_n(&sh->spaces[i].state, __ATOMIC_ACQUIRE) == SLOT_LIVE;
}

static void status_source(struct audience *a, int i, struct buf *b)
{
    const struct shared_space *ss = &a->sh->spaces[i];
    char t[64], host[300];
    uint32_t receiving, conns;
    slot_counts(a->sh, i, &receiving, &conns);
    snprintf(host, sizeof(host), "%s", a->addr);
    if (strncmp(host, "0.0.0.0:", 8) == 0)
        snprintf(host, sizeof(host), "localhost:%s", a->addr + 8);
    buf_puts(b, "{");
    buf_printf(b, "\"audio_info\":\"channels=%d;samplerate=48000\"", ss->channels);
    buf_printf(b, ",\"channels\":%d", ss->channels);
    json_kv_str(b, "genre", ss->meta.genre[0] ? ss->meta.genre : "various", 1);
    buf_printf(b, ",\"listener_peak\":%u", ss->listener_peak > conns ? ss->listener_peak : conns);
    buf_printf(b, ",\"listeners\":%u", receiving);
    buf_printf(b, ",\"listener_connections\":%u", conns);
    buf_printf(b, ",\"listenurl\":\"http://%s/%s\"", host, ss->mount);
    buf_puts(b, ",\"samplerate\":48000");
    json_kv_str(b, "server_description",
                ss->meta.description[0] ? ss->meta.description : "Unspecified description", 1);
    json_kv_str(b, "server_name", ss->meta.name[0] ? ss->meta.name : ss->mount, 1);
    buf_puts(b, ",\"server_type\":\"audio/ogg\"");
    json_kv_str(b, "server_url", ss->meta.url, 1);
    time_fmt(t, sizeof(t), ss->stream_start_wall, 0);
    json_kv_str(b, "stream_start", t, 1);
    time_fmt(t, sizeof(t), ss->stream_start_wall, 1);
    json_kv_str(b, "stream_start_iso8601", t, 1);
    buf_puts(b, ",\"subtype\":\"Opus\"");
    buf_printf(b, ",\"source_connected\":%s", ss->source_connected ? "true" : "false");
    buf_puts(b, ",\"dummy\":null}");
}

void status_json(struct audience *a, struct buf *b)
{
    char t[64];
    audience_count_now(a);
    buf_puts(b, "{\"icestats\":{\"admin\":\"icemaster@localhost\",\"host\":\"localhost\","
                "\"location\":\"Earth\",\"server_id\":\"rostrum/0.1\"");
    time_fmt(t, sizeof(t), a->start_wall, 0);
    json_kv_str(b, "server_start", t, 1);
    time_fmt(t, sizeof(t), a->start_wall, 1);
    json_kv_str(b, "server_start_iso8601", t, 1);
    int live = 0;
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        live += slot_live(a->sh, i);
    if (live > 0) {
        buf_puts(b, ",\"source\":");
        if (live > 1)
            buf_puts(b, "[");
        int n = 0;
        for (int i = 0; i < SHARED_MAX_SPACES; i++) {
            if (!slot_live(a->sh, i))
                continue;
            if (n++)
                buf_puts(b, ",");
            status_source(a, i, b);
        }
        if (live > 1)
            buf_puts(b, "]");
    }
    buf_puts(b, "}}\n");
}

static void metric_head(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(struct buf *b, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    metric_head(b, name, type, help);
    buf_printf(b, "%s %llu\n", name, v);
}

void status_metrics(struct audience *a, struct buf *b)
{
    const struct shared *sh = a->sh;
    struct shared_counters st;
    audience_count_now(a);
    shared_sum_counters(sh, &st);
    uint64_t receiving = 0, conns = 0, nspaces = 0;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t r, c;
        slot_counts(sh, i, &r, &c);
        receiving += r;
        conns += c;
        nspaces += sh->spaces[i].state != SLOT_FREE;
    }
    metric(b, "rostrum_listeners", "gauge", "Listeners that received audio in the last 5 s.",
           receiving);
    metric(b, "rostrum_listener_connections", "gauge", "Open listener connections.", conns);
    metric_head(b, "rostrum_space_listeners", "gauge",
                "Listeners of a space that received audio in the last 5 s.");
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t r, c;
        if (!slot_live(sh, i))
            continue;
        slot_counts(sh, i, &r, &c);
        buf_printf(b, "rostrum_space_listeners{space=\"%s\"} %u\n", sh->spaces[i].mount, r);
    }
    metric_head(b, "rostrum_space_listener_connections", "gauge",
                "Open listener connections of a space.");
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t r, c;
        if (!slot_live(sh, i))
            continue;
        slot_counts(sh, i, &r, &c);
        buf_printf(b, "rostrum_space_listener_connections{space=\"%s\"} %u\n",
                   sh->spaces[i].mount, c);
    }
    static const char *const outcomes[JOIN_OUTCOMES] = {"ok", "not_found", "bad_request",
                                                        "refused"};
    metric_head(b, "rostrum_joins_total", "counter", "Listener join attempts by outcome.");
    for (int i = 0; i < JOIN_OUTCOMES; i++)
        buf_printf(b, "rostrum_joins_total{outcome=\"%s\"} %llu\n", outcomes[i],
                   (unsigned long long)st.joins[i]);
    static const char *const reasons[CLOSE_REASONS] = {"peer", "too_slow", "stuck",
                                                       "mount_end", "restart", "error"};
    metric_head(b, "rostrum_listener_closes_total", "counter",
                "Listener connections closed, by reason.");
    for (int i = 0; i < CLOSE_REASONS; i++)
        buf_printf(b, "rostrum_listener_closes_total{reason=\"%s\"} %llu\n", reasons[i],
                   (unsigned long long)st.listener_closes[i]);
    metric(b, "rostrum_stalls_total", "counter",
           "Times a listener fell behind the ring and jumped to the live edge.", st.stalls);
    metric(b, "rostrum_bytes_sent_total", "counter", "Bytes written to clients.", st.bytes_sent);
    metric(b, "rostrum_sources_connected", "gauge", "Studio sources connected.",
           sh->main.sources_connected);
    metric(b, "rostrum_source_connects_total", "counter", "Studio sources accepted.",
           sh->main.source_connects);
    metric(b, "rostrum_source_drops_total", "counter",
           "Studio sources that left or were dropped.", sh->main.source_drops);
    metric(b, "rostrum_pages_published_total", "counter", "Ogg pages published to rings.",
           sh->main.pages_published);
    metric(b, "rostrum_spaces", "gauge", "Spaces (mounts) that exist, live or in grace.",
           nspaces);
    metric(b, "rostrum_workers", "gauge", "Listener worker processes.", sh->nworkers);
    metric_head(b, "rostrum_worker_listener_connections", "gauge",
                "Open listener connections, by worker process.");
    for (uint32_t w = 0; w < sh->nworkers; w++)
        buf_printf(b, "rostrum_worker_listener_connections{worker=\"%u\"} %u\n", w,
                   sh->workers[w].listener_connections);
    metric_head(b, "rostrum_worker_pressure", "gauge",
                "Overload pressure of a worker, 0 to 1, from its loop lag and flush time; "
                "joins are refused from 0.8 until it falls under 0.5.");
    for (uint32_t w = 0; w < sh->nworkers; w++)
        buf_printf(b, "rostrum_worker_pressure{worker=\"%u\"} %.3f\n", w,
                   __atomic_load_n(&sh->workers[w].pressure_milli, __ATOMIC_RELAXED) / 1000.0);
    metric_head(b, "rostrum_worker_overloaded", "gauge",
                "1 while a worker refuses joins because it is not keeping up.");
    for (uint32_t w = 0; w < sh->nworkers; w++)
        buf_printf(b, "rostrum_worker_overloaded{worker=\"%u\"} %u\n", w,
                   __atomic_load_n(&sh->workers[w].overloaded, __ATOMIC_RELAXED));
    metric(b, "rostrum_worker_restarts_total", "counter", "Listener workers restarted.",
           sh->main.worker_restarts);
    metric(b, "rostrum_requests_total", "counter", "Request heads parsed.", st.requests);
    metric_head(b, "rostrum_refused_total", "counter", "Connections refused, by reason.");
    buf_printf(b, "rostrum_refused_total{reason=\"malformed\"} %llu\n",
               (unsigned long long)st.bad_requests);
    buf_printf(b, "rostrum_refused_total{reason=\"head_too_large\"} %llu\n",
               (unsigned long long)st.heads_too_large);
    buf_printf(b, "rostrum_refused_total{reason=\"head_timeout\"} %llu\n",
               (unsigned long long)st.head_timeouts);
    buf_printf(b, "rostrum_refused_total{reason=\"fd_limit\"} %llu\n",
               (unsigned long long)st.refused_fd_limit);
    static const struct {
        const char *reason;
        size_t off;
    } more[] = {
        {"conns_per_ip", offsetof(struct shared_counters, refused_conns_per_ip)},
        {"joins_per_ip", offsetof(struct shared_counters, refused_joins_per_ip)},
        {"capacity", offsetof(struct shared_counters, refused_capacity)},
        {"join_rate", offsetof(struct shared_counters, refused_join_rate)},
        {"overload", offsetof(struct shared_counters, refused_overload)},
        {"bad_ticket", offsetof(struct shared_counters, refused_ticket)},
        {"early_ticket", offsetof(struct shared_counters, refused_early)},
        {"no_ticket", offsetof(struct shared_counters, refused_no_ticket)},
        {"ticket_used", offsetof(struct shared_counters, refused_ticket_used)},
        {"tickets_per_ip", offsetof(struct shared_counters, refused_tickets_per_ip)},
        {"stage_token", offsetof(struct shared_counters, refused_stage_token)},
    };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
        buf_printf(b, "rostrum_refused_total{reason=\"%s\"} %llu\n", more[i].reason,
                   (unsigned long long)*(const uint64_t *)(const void *)((const char *)&st +
                                                                         more[i].off));
    /* the stage port's own refusals (main process only) */
    buf_printf(b, "rostrum_refused_total{reason=\"max_members\"} %llu\n",
               (unsigned long long)sh->main.refused_max_members);
    buf_printf(b, "rostrum_refused_total{reason=\"fd_reserve\"} %llu\n",
               (unsigned long long)sh->main.refused_fd_reserve);
    metric(b, "rostrum_ws_members", "gauge", "WebSocket members of all stage spaces.",
           sh->main.ws_members);
    static const char *const ws_why[WS_CLOSE_REASONS] = {"send_queue", "not_reading",
                                                         "over_rate", "idle"};
    metric_head(b, "rostrum_ws_closes_total", "counter",
                "Stage WebSocket members closed for a bound, by reason.");
    for (int i = 0; i < WS_CLOSE_REASONS; i++)
        buf_printf(b, "rostrum_ws_closes_total{reason=\"%s\"} %llu\n", ws_why[i],
                   (unsigned long long)sh->main.ws_closes[i]);
    metric(b, "rostrum_tickets_issued_total", "counter", "Waiting-room tickets handed out.",
           st.tickets_issued);
    metric(b, "rostrum_shed_stalled_total", "counter",
           "Stalled listeners closed to free descriptors.", st.shed_stalled);
    metric(b, "rostrum_limits_table_full_total", "counter",
           "Connections not tracked per address because the bounded table was full.",
           st.limits_table_full);
    metric(b, "rostrum_listener_lag_jumps_mid_page_total", "counter",
           "Of the stalls: laggards caught mid-page that were given the rest of it first.",
           st.lag_jumps_mid_page);
    metric(b, "rostrum_listener_torn_closes_total", "counter",
           "Listeners closed because shared bytes changed during their write (never expected).",
           st.torn_closes);
    /* every process's own loop, main included (ingest and the mixer run there), whichever
     * process answers: each publishes its peak of the last second in the shared mapping */
    metric_head(b, "rostrum_event_loop_lag_seconds", "gauge",
                "Latest a timer ran in the last second, by process (main: ingest and mixer).");
    buf_printf(b, "rostrum_event_loop_lag_seconds{process=\"main\"} %.3f\n",
               (double)sh->main.loop_lag_ms / 1000.0);
    for (uint32_t w = 0; a->cfg->workers > 0 && w < sh->nworkers; w++)
        buf_printf(b, "rostrum_event_loop_lag_seconds{process=\"worker-%u\"} %.3f\n", w,
                   (double)sh->workers[w].loop_lag_ms / 1000.0);
    metric(b, "rostrum_sources_paced_total", "counter",
           "Sources found faster than real time and paced to it.", sh->main.sources_paced);
    metric(b, "rostrum_start_time_seconds", "gauge", "Unix time the server started.",
           (unsigned long long)a->start_wall);
}
