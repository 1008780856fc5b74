/*
 * status: the two documents that describe the server: /status-json.xsl in Icecast 2.4's shape
 * (so existing dashboards and players' directory code keep working) and /metrics in
 * Prometheus text format.
 *
 * Icecast's quirk is kept on purpose: "source" is absent with no live mount, an object with
 * one, and an array with several.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server/server.h"
#include "server/space.h"

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

static void status_source(struct server *srv, struct space *sp, struct buf *b)
{
    char t[64], host[300];
    const struct space_config *sc = sp->cfg;
    const char *name = sc && sc->display_name[0] ? sc->display_name : sp->meta.name;
    const char *desc = sc && sc->description[0] ? sc->description : sp->meta.description;
    snprintf(host, sizeof(host), "%s", srv->audience_addr);
    if (strncmp(host, "0.0.0.0:", 8) == 0)
        snprintf(host, sizeof(host), "localhost:%s", srv->audience_addr + 8);
    buf_puts(b, "{");
    buf_printf(b, "\"audio_info\":\"channels=%d;samplerate=48000\"", sp->head.channels);
    buf_printf(b, ",\"channels\":%d", sp->head.channels);
    json_kv_str(b, "genre", sp->meta.genre[0] ? sp->meta.genre : "various", 1);
    buf_printf(b, ",\"listener_peak\":%u", sp->listener_peak);
    buf_printf(b, ",\"listeners\":%u", space_receiving(sp));
    buf_printf(b, ",\"listener_connections\":%u", sp->nlisteners);
    buf_printf(b, ",\"listenurl\":\"http://%s/%s\"", host, sp->mount);
    buf_puts(b, ",\"samplerate\":48000");
    json_kv_str(b, "server_description", desc[0] ? desc : "Unspecified description", 1);
    json_kv_str(b, "server_name", name[0] ? name : sp->mount, 1);
    buf_puts(b, ",\"server_type\":\"audio/ogg\"");
    json_kv_str(b, "server_url", sp->meta.url, 1);
    time_fmt(t, sizeof(t), sp->stream_start_wall, 0);
    json_kv_str(b, "stream_start", t, 1);
    time_fmt(t, sizeof(t), sp->stream_start_wall, 1);
    json_kv_str(b, "stream_start_iso8601", t, 1);
    buf_puts(b, ",\"subtype\":\"Opus\"");
    buf_printf(b, ",\"source_connected\":%s", sp->source ? "true" : "false");
    buf_puts(b, ",\"dummy\":null}");
}

void status_json(struct server *srv, struct buf *b)
{
    char t[64];
    buf_puts(b, "{\"icestats\":{\"admin\":\"icemaster@localhost\",\"host\":\"localhost\","
                "\"location\":\"Earth\",\"server_id\":\"rostrum/0.1\"");
    time_fmt(t, sizeof(t), srv->start_wall, 0);
    json_kv_str(b, "server_start", t, 1);
    time_fmt(t, sizeof(t), srv->start_wall, 1);
    json_kv_str(b, "server_start_iso8601", t, 1);
    int live = 0;
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->spaces)
    {
        live += space_listenable(list_entry(n, struct space, node));
    }
    if (live > 0) {
        buf_puts(b, ",\"source\":");
        if (live > 1)
            buf_puts(b, "[");
        int i = 0;
        list_for_each_safe(n, tmp, &srv->spaces)
        {
            struct space *sp = list_entry(n, struct space, node);
            if (!space_listenable(sp))
                continue;
            if (i++)
                buf_puts(b, ",");
            status_source(srv, sp, b);
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

void status_metrics(struct server *srv, struct buf *b)
{
    const struct server_stats *st = &srv->st;
    uint64_t receiving = 0, nspaces = 0;
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &srv->spaces)
    {
        receiving += space_receiving(list_entry(n, struct space, node));
        nspaces++;
    }
    metric(b, "rostrum_listeners", "gauge", "Listeners that received audio in the last 5 s.",
           receiving);
    metric(b, "rostrum_listener_connections", "gauge", "Open listener connections.",
           st->listener_connections);
    metric_head(b, "rostrum_space_listeners", "gauge",
                "Listeners of a space that received audio in the last 5 s.");
    list_for_each_safe(n, tmp, &srv->spaces)
    {
        struct space *sp = list_entry(n, struct space, node);
        buf_printf(b, "rostrum_space_listeners{space=\"%s\"} %u\n", sp->mount,
                   space_receiving(sp));
    }
    metric_head(b, "rostrum_space_listener_connections", "gauge",
                "Open listener connections of a space.");
    list_for_each_safe(n, tmp, &srv->spaces)
    {
        struct space *sp = list_entry(n, struct space, node);
        buf_printf(b, "rostrum_space_listener_connections{space=\"%s\"} %u\n", sp->mount,
                   sp->nlisteners);
    }
    static const char *const outcomes[JOIN_OUTCOMES] = {"ok", "not_found", "bad_request",
                                                        "refused"};
    metric_head(b, "rostrum_joins_total", "counter", "Listener join attempts by outcome.");
    for (int i = 0; i < JOIN_OUTCOMES; i++)
        buf_printf(b, "rostrum_joins_total{outcome=\"%s\"} %llu\n", outcomes[i],
                   (unsigned long long)st->joins[i]);
    static const char *const reasons[CLOSE_REASONS] = {"peer", "too_slow", "stuck",
                                                       "mount_end", "restart", "error"};
    metric_head(b, "rostrum_listener_closes_total", "counter",
                "Listener connections closed, by reason.");
    for (int i = 0; i < CLOSE_REASONS; i++)
        buf_printf(b, "rostrum_listener_closes_total{reason=\"%s\"} %llu\n", reasons[i],
                   (unsigned long long)st->listener_closes[i]);
    metric(b, "rostrum_stalls_total", "counter",
           "Times a listener fell behind the ring and jumped to the live edge.", st->stalls);
    metric(b, "rostrum_bytes_sent_total", "counter", "Bytes written to clients.",
           st->bytes_sent);
    metric(b, "rostrum_sources_connected", "gauge", "Studio sources connected.",
           st->sources_connected);
    metric(b, "rostrum_source_connects_total", "counter", "Studio sources accepted.",
           st->source_connects);
    metric(b, "rostrum_source_drops_total", "counter",
           "Studio sources that left or were dropped.", st->source_drops);
    metric(b, "rostrum_pages_published_total", "counter", "Ogg pages published to rings.",
           st->pages_published);
    metric(b, "rostrum_spaces", "gauge", "Spaces (mounts) that exist, live or in grace.",
           nspaces);
    metric(b, "rostrum_requests_total", "counter", "Request heads parsed.", st->requests);
    metric_head(b, "rostrum_refused_total", "counter", "Connections refused, by reason.");
    buf_printf(b, "rostrum_refused_total{reason=\"malformed\"} %llu\n",
               (unsigned long long)st->bad_requests);
    buf_printf(b, "rostrum_refused_total{reason=\"head_too_large\"} %llu\n",
               (unsigned long long)st->heads_too_large);
    buf_printf(b, "rostrum_refused_total{reason=\"head_timeout\"} %llu\n",
               (unsigned long long)st->head_timeouts);
    buf_printf(b, "rostrum_refused_total{reason=\"fd_limit\"} %llu\n",
               (unsigned long long)st->refused_fd_limit);
    metric_head(b, "rostrum_event_loop_lag_seconds", "gauge",
                "How late the last timer of the main loop ran.");
    buf_printf(b, "rostrum_event_loop_lag_seconds %.3f\n", (double)srv->loop.lag_ms / 1000.0);
    metric(b, "rostrum_start_time_seconds", "gauge", "Unix time the server started.",
           (unsigned long long)srv->start_wall);
}
