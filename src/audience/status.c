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
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audience/audience.h"
#include "relay/feedproto.h"
#include "util/check.h"

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

/* A live slot that is a space of its own, not a rendition (issue 11): what has a stage and a
 * tree. */
static int space_live(const struct shared *sh, int i)
{
    return slot_live(sh, i) && !shared_is_rendition(&sh->spaces[i]);
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
    /* issue 10: the whole tree below this server, its own listeners included */
    buf_printf(b, ",\"tree_listeners\":%u", feed_tree_listeners(a->sh, i));
    /* issue 11: HLS sessions whose beacons arrive, behind caches or not (beacon.c) */
    buf_printf(b, ",\"hls_listeners\":%u", beacon_counts(a)[i]);
    buf_printf(b, ",\"listenurl\":\"http://%s/%s\"", host, ss->mount);
    buf_puts(b, ",\"samplerate\":48000");
    json_kv_str(b, "server_description",
                ss->meta.description[0] ? ss->meta.description : "Unspecified description", 1);
    json_kv_str(b, "server_name", ss->meta.name[0] ? ss->meta.name : ss->mount, 1);
    /* a rendition (issue 11) is listed as Icecast lists a separate mount of the same show */
    int kind = shared_is_rendition(ss) ? (int)ss->rendition_kind : RENDITION_NONE;
    json_kv_str(b, "server_type", rendition_content_type(kind), 1);
    if (kind != RENDITION_NONE)
        buf_printf(b, ",\"bitrate\":%u", ss->rendition_kbps);
    json_kv_str(b, "server_url", ss->meta.url, 1);
    time_fmt(t, sizeof(t), ss->stream_start_wall, 0);
    json_kv_str(b, "stream_start", t, 1);
    time_fmt(t, sizeof(t), ss->stream_start_wall, 1);
    json_kv_str(b, "stream_start_iso8601", t, 1);
    json_kv_str(b, "subtype", rendition_codec_name(kind), 1);
    buf_printf(b, ",\"source_connected\":%s", ss->source_connected ? "true" : "false");
    int64_t starts = __atomic_load_n(&ss->starts_at_s, __ATOMIC_RELAXED);
    if (starts) /* issue 12: a scheduled space, its lobby open */
        buf_printf(b, ",\"starts_at\":%lld,\"starts_in_s\":%lld", (long long)starts,
                   (long long)(starts > time(NULL) ? starts - time(NULL) : 0));
    static const char *const rec[] = {"off", "on", "failed"};
    uint32_t rs = __atomic_load_n(&ss->record_state, __ATOMIC_ACQUIRE);
    json_kv_str(b, "recording", rs < 3 ? rec[rs] : "off", 1);
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

/* The reasons of rostrum_refused_total, in the order of status_refusals(). */
static const char *const refusal_names[SHARED_REFUSALS] = {
    "malformed",   "head_too_large", "head_timeout", "fd_limit",    "conns_per_ip", "joins_per_ip",
    "capacity",    "join_rate",      "overload",     "bad_ticket",  "early_ticket", "no_ticket",
    "ticket_used", "tickets_per_ip", "stage_token",  "max_members", "fd_reserve", "draining",
    "rendition_slots", "rendition_encoders", "schedule"};

/* Fills <out> with the refusals by reason (refusal_names) from the summed counters <st>, and
 * the stage port's own (main process only). */
static void status_refusals(const struct shared *sh, const struct shared_counters *st,
                            uint64_t out[SHARED_REFUSALS])
{
    const uint64_t v[SHARED_REFUSALS] = {st->bad_requests,           st->heads_too_large,
                                         st->head_timeouts,          st->refused_fd_limit,
                                         st->refused_conns_per_ip,   st->refused_joins_per_ip,
                                         st->refused_capacity,       st->refused_join_rate,
                                         st->refused_overload,       st->refused_ticket,
                                         st->refused_early,          st->refused_no_ticket,
                                         st->refused_ticket_used,    st->refused_tickets_per_ip,
                                         st->refused_stage_token,    sh->main.refused_max_members,
                                         sh->main.refused_fd_reserve, st->refused_draining,
                                         st->refused_rendition,
                                         st->refused_rendition_encoders,
                                         sh->main.refused_schedule};
    memcpy(out, v, sizeof(v));
}

/* One per-relay gauge family: <what> picks the figure of a row. */
struct relay_rows {
    struct buf *b;
    const char *name;
    int what;
    int64_t now_ms;
    const struct shared *sh;
};

static void relay_row(void *arg, const struct shared_relay *r)
{
    struct relay_rows *x = arg;
    /* addr, name and mount are of [A-Za-z0-9.:_[]-] (feed_text_ok, mount_name_ok, the peer's
     * numeric address): nothing a label would need escaped */
    buf_printf(x->b, "%s{relay=\"%s\",name=\"%s\",space=\"%s\"} ", x->name, r->addr, r->name,
               x->sh->spaces[r->slot].mount);
    switch (x->what) {
    case 0: buf_printf(x->b, "%u\n", r->tree); break;
    case 1: buf_printf(x->b, "%u\n", r->own); break;
    case 2: buf_printf(x->b, "%u\n", r->connections); break;
    case 3: buf_printf(x->b, "%u\n", r->capacity); break;
    case 4: buf_printf(x->b, "%.3f\n", r->load_milli / 1000.0); break;
    case 5: buf_printf(x->b, "%u\n", (r->flags & FEED_REPORT_DRAINING) ? 1u : 0u); break;
    default: buf_printf(x->b, "%.3f\n", (double)(x->now_ms - r->reported_ms) / 1000.0); break;
    }
}

/* Issue 10, items 3-4: the tree's count per space, what each relay below reported (bounded:
 * SHARED_WORKER_RELAYS rows per worker; rostrum_relay_table_full_total counts feeds without
 * a row, which are still in the count), and the redirects to relays. */
static void status_tree_metrics(struct audience *a, struct buf *b, const struct shared_counters *st)
{
    const struct shared *sh = a->sh;
    metric_head(b, "rostrum_tree_listeners", "gauge",
                "Listeners of a space receiving audio in the whole tree: this server's and "
                "what its relays report for their subtrees.");
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (space_live(sh, i))
            buf_printf(b, "rostrum_tree_listeners{space=\"%s\"} %u\n", sh->spaces[i].mount,
                       feed_tree_listeners(sh, i));
    static const char *const fam[][3] = {
        {"rostrum_relay_tree_listeners", "gauge",
         "Receiving listeners in a relay's subtree, as its last report said."},
        {"rostrum_relay_listeners", "gauge", "Of those, the relay's own listeners."},
        {"rostrum_relay_connections", "gauge", "A relay's open listener connections."},
        {"rostrum_relay_capacity", "gauge", "A relay's max-listeners."},
        {"rostrum_relay_pressure", "gauge", "A relay's worst worker pressure (1: overloaded)."},
        {"rostrum_relay_draining", "gauge", "1 if a relay is stopping (it gets no redirects)."},
        {"rostrum_relay_report_age_seconds", "gauge", "Age of a relay's last report."}};
    for (int k = 0; k < (int)(sizeof(fam) / sizeof(fam[0])); k++) {
        metric_head(b, fam[k][0], fam[k][1], fam[k][2]);
        struct relay_rows x = {b, fam[k][0], k, a->loop->now_ms, sh};
        feed_relays_each(a, relay_row, &x);
    }
    metric(b, "rostrum_relay_table_full_total", "counter",
           "Reporting relay feeds that found no row in the relay table (still counted).",
           st->relay_table_full);
    metric(b, "rostrum_relay_reports_stale_total", "counter",
           "Relay feeds that sent no report for the report age limit (out of the count).",
           st->relay_reports_stale);
    metric(b, "rostrum_tree_rows_full_total", "counter",
           "Relays of a report left out of the tree's count: the worker's table was full.",
           st->tree_rows_full);
    metric_head(b, "rostrum_redirects_total", "counter",
                "Listeners sent with a 307 to a relay with room, by why this server did not "
                "take them.");
    buf_printf(b, "rostrum_redirects_total{reason=\"full\"} %llu\n",
               (unsigned long long)st->redirects_full);
    buf_printf(b, "rostrum_redirects_total{reason=\"draining\"} %llu\n",
               (unsigned long long)st->redirects_draining);
}

/* Recordings (issue 12, item 2): kept by the main process (space/recording.c). */
static void status_record_metrics(const struct shared *sh, const struct shared_counters *st,
                                  struct buf *b)
{
    metric(b, "rostrum_replay_reads_total", "counter", "Recording reads begun (200 or 206).",
           st->replay_opened);
    metric(b, "rostrum_replay_reads", "gauge", "Recording reads open now.",
           st->replay_opened - st->replay_closed);
    metric(b, "rostrum_replay_bytes_total", "counter", "Recording bytes sent.", st->replay_bytes);
    metric(b, "rostrum_replay_bad_ranges_total", "counter",
           "Range headers ignored (malformed) or refused (416).", st->replay_bad_range);
    metric(b, "rostrum_replay_refused_total", "counter",
           "Recording reads refused (503): the process held as many as listeners it may.",
           st->refused_replay);
    metric(b, "rostrum_recordings_active", "gauge", "Recordings growing now.",
           sh->main.record_active);
    metric(b, "rostrum_recordings_started_total", "counter", "Recordings begun.",
           sh->main.record_started);
    metric(b, "rostrum_recording_errors_total", "counter",
           "Recordings stopped by a write error (disk full, file too large, I/O error).",
           sh->main.record_errors);
    metric(b, "rostrum_recording_bytes_total", "counter", "Bytes written to recordings.",
           sh->main.record_bytes);
    metric(b, "rostrum_recording_syncs_total", "counter", "fdatasync() calls on recordings.",
           sh->main.record_syncs);
}

/* Issue 11, item 5: the AAC and MP3 renditions' encoders (their listeners are in the
 * per-space gauges, under the rendition's mount). */
static void status_rendition_metrics(const struct shared *sh, struct buf *b)
{
    const struct shared_main *m = &sh->main;
    const struct {
        const char *name, *type, *help;
        uint64_t v;
    } rows[] = {
        {"slots", "gauge", "Slots taken by AAC and MP3 renditions.", m->rendition_slots},
        {"encoders", "gauge", "Rendition encoders running (only while listened to).",
         m->rendition_encoders},
        {"starts_total", "counter", "Rendition encoders started.", m->rendition_starts},
        {"errors_total", "counter",
         "Rendition decoder or encoder errors (the encoder starts again a second later).",
         m->rendition_errors},
        {"frames_total", "counter", "AAC and MP3 frames published.", m->rendition_frames},
        {"skips_total", "counter",
         "Times a rendition encoder skipped to the live edge (behind real time, or lapped).",
         m->rendition_skips},
        {"evictions_total", "counter",
         "Rendition slots given back because spaces needed them.", m->rendition_evictions}};
    char name[64];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(name, sizeof(name), "rostrum_rendition_%s", rows[i].name);
        metric(b, name, rows[i].type, rows[i].help, rows[i].v);
    }
    metric_head(b, "rostrum_rendition_cpu_seconds_total", "counter",
                "CPU time the renditions spent decoding and encoding.");
    buf_printf(b, "rostrum_rendition_cpu_seconds_total %.6f\n", (double)m->rendition_cpu_ns / 1e9);
}

/* Issue 12, item 4: the live captions' recognisers (captions/captions.h). */
static void status_captions_metrics(const struct shared *sh, struct buf *b)
{
    const struct shared_main *m = &sh->main;
    const struct {
        const char *name, *type, *help;
        uint64_t v;
    } rows[] = {
        {"running", "gauge", "Caption recognisers running.", m->captions_running},
        {"starts_total", "counter", "Caption recognisers started.", m->captions_starts},
        {"restarts_total", "counter",
         "Of which started again after one exited, died or was killed.", m->captions_restarts},
        {"stuck_total", "counter",
         "Recognisers killed for leaving captions-queue-ms of audio unread.", m->captions_stuck},
        {"cues_total", "counter", "Caption cues published.", m->captions_cues},
        {"bad_lines_total", "counter",
         "Recogniser output lines refused (not a cue, too long, bad times).",
         m->captions_bad_lines},
        {"rate_limited_total", "counter", "Cues dropped past 20 a second from one recogniser.",
         m->captions_rate_limited},
        {"pcm_bytes_total", "counter", "PCM bytes written to recognisers.", m->captions_pcm_bytes},
        {"pcm_dropped_bytes_total", "counter",
         "PCM bytes dropped with a recogniser that was killed or exited.",
         m->captions_pcm_dropped},
        {"skips_total", "counter", "Times a captions decoder skipped to the live edge.",
         m->captions_skips}};
    char name[64];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(name, sizeof(name), "rostrum_captions_%s", rows[i].name);
        metric(b, name, rows[i].type, rows[i].help, rows[i].v);
    }
    metric_head(b, "rostrum_captions_decode_cpu_seconds_total", "counter",
                "CPU time the main process spent decoding audio for recognisers.");
    buf_printf(b, "rostrum_captions_decode_cpu_seconds_total %.6f\n",
               (double)m->captions_cpu_ns / 1e9);
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
        nspaces += sh->spaces[i].state != SLOT_FREE && !shared_is_rendition(&sh->spaces[i]);
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
    /* issue 11: HLS sessions (beacon.c), apart from the stream listeners above */
    const uint32_t *hls = beacon_counts(a);
    metric_head(b, "rostrum_hls_listeners", "gauge",
                "HLS sessions of a space whose last beacon came within session-window-s.");
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (slot_live(sh, i))
            buf_printf(b, "rostrum_hls_listeners{space=\"%s\"} %u\n", sh->spaces[i].mount,
                       hls[i]);
    metric(b, "rostrum_beacons_total", "counter", "HLS beacons counted.", st.beacons);
    metric(b, "rostrum_beacon_sessions_total", "counter", "HLS session ids issued.",
           st.beacon_sessions);
    metric_head(b, "rostrum_beacons_refused_total", "counter", "HLS beacons refused, by reason.");
    buf_printf(b,
               "rostrum_beacons_refused_total{reason=\"bad_session\"} %llu\n"
               "rostrum_beacons_refused_total{reason=\"sessions_per_ip\"} %llu\n"
               "rostrum_beacons_refused_total{reason=\"space_full\"} %llu\n"
               "rostrum_beacons_refused_total{reason=\"table_full\"} %llu\n",
               (unsigned long long)st.refused_beacon, (unsigned long long)st.refused_beacon_per_ip,
               (unsigned long long)st.refused_beacon_space,
               (unsigned long long)st.refused_beacon_table);
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
    /* issue 10: the relay feed, both sides */
    metric(b, "rostrum_feeds_joined_total", "counter",
           "Relay feeds served to downstream relays (also counted as listener joins).",
           st.feeds_joined);
    metric(b, "rostrum_keepalive_requests_total", "counter",
           "Requests read on a kept-alive connection (a page's ticket then its stream, or its "
           "state polls, on one connection).",
           st.keepalive_requests);
    metric(b, "rostrum_keepalive_idle_closes_total", "counter",
           "Kept-alive connections closed idle at the head deadline (not head timeouts).",
           st.keepalive_idle_closes);
    metric(b, "rostrum_listener_resumes_total", "counter",
           "Listener joins with from= (the web player's reconnect) that resumed at that page.",
           st.listener_resumes);
    metric(b, "rostrum_listener_resume_gaps_total", "counter",
           "Listener joins with from= that could not resume there (evicted): started at the "
           "burst, told so in X-Rostrum-Gap.",
           st.listener_resume_gaps);
    metric(b, "rostrum_feed_refused_relay_key_total", "counter",
           "Relay feeds refused: no relay key, or a wrong one.", st.refused_relay_key);
    metric(b, "rostrum_feed_cuts_total", "counter",
           "Relay feeds closed because the relay fell behind the ring or stopped reading.",
           st.feed_cuts);
    hls_metrics(a, b, &st);
    metric(b, "rostrum_relay_connects_total", "counter",
           "Feed connections to an upstream that got their header.", sh->main.relay_connects);
    metric(b, "rostrum_relay_cuts_total", "counter",
           "Feed connections to an upstream lost (closed, reset, refused frame, stalled).",
           sh->main.relay_cuts);
    metric(b, "rostrum_relay_stalls_total", "counter",
           "Feed connections cut for no page nor keepalive in 2 page intervals.",
           sh->main.relay_stalls);
    metric(b, "rostrum_relay_rows_unlisted_total", "counter",
           "Relays below this one reported upward without their own row (past 64 a report).",
           sh->main.relay_rows_unlisted);
    metric(b, "rostrum_relay_bad_frames_total", "counter",
           "Feed connections cut for an invalid, oversized or out-of-order frame.",
           sh->main.relay_bad_frames);
    metric(b, "rostrum_relay_resumes_total", "counter",
           "Reconnections that carried on the same stream at the next page (no gap).",
           sh->main.relay_resumes);
    metric(b, "rostrum_relay_restarts_total", "counter",
           "Relayed streams restarted: the upstream's stream changed or no longer had the page.",
           sh->main.relay_restarts);
    metric(b, "rostrum_relay_failovers_total", "counter",
           "Reconnections to another upstream than the last one.", sh->main.relay_failovers);
    metric(b, "rostrum_relay_feeds_up", "gauge", "Upstream feeds receiving now.",
           sh->main.relay_feeds_up);
    status_tree_metrics(a, b, &st);
    status_rendition_metrics(sh, b);
    status_captions_metrics(sh, b);
    react_metrics(sh, &st, b); /* issue 12 */
    status_record_metrics(sh, &st, b);
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
    metric_head(b, "rostrum_waiting_room_pace", "gauge",
                "The joins a second a worker's waiting room spaces its tickets for: its share of "
                "waiting-room-rate, cut while it refuses joins for overload (measured).");
    for (uint32_t w = 0; w < sh->nworkers; w++)
        buf_printf(b, "rostrum_waiting_room_pace{worker=\"%u\"} %u\n", w,
                   __atomic_load_n(&sh->workers[w].waiting_room_pace, __ATOMIC_RELAXED));
    metric_head(b, "rostrum_worker_overloaded", "gauge",
                "1 while a worker refuses joins because it is not keeping up.");
    for (uint32_t w = 0; w < sh->nworkers; w++)
        buf_printf(b, "rostrum_worker_overloaded{worker=\"%u\"} %u\n", w,
                   __atomic_load_n(&sh->workers[w].overloaded, __ATOMIC_RELAXED));
    metric(b, "rostrum_worker_restarts_total", "counter", "Listener workers restarted.",
           sh->main.worker_restarts);
    metric(b, "rostrum_requests_total", "counter", "Request heads parsed.", st.requests);
    uint64_t refused[SHARED_REFUSALS];
    status_refusals(sh, &st, refused);
    metric_head(b, "rostrum_refused_total", "counter", "Connections refused, by reason.");
    for (int i = 0; i < SHARED_REFUSALS; i++)
        buf_printf(b, "rostrum_refused_total{reason=\"%s\"} %llu\n", refusal_names[i],
                   (unsigned long long)refused[i]);
    metric(b, "rostrum_ws_members", "gauge", "WebSocket members of all stage spaces.",
           sh->main.ws_members);
    static const char *const ws_why[WS_CLOSE_REASONS] = {"send_queue", "not_reading",
                                                         "over_rate", "idle", "restart"};
    metric_head(b, "rostrum_ws_closes_total", "counter",
                "Stage WebSocket members closed for a bound, by reason.");
    for (int i = 0; i < WS_CLOSE_REASONS; i++)
        buf_printf(b, "rostrum_ws_closes_total{reason=\"%s\"} %llu\n", ws_why[i],
                   (unsigned long long)sh->main.ws_closes[i]);
    /* the stage (issue 9): kept by the main process, in the shared mapping */
    metric_head(b, "rostrum_stage_speakers", "gauge",
                "Members on a stage (host, co-hosts, speakers), by space.");
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (space_live(sh, i))
            buf_printf(b, "rostrum_stage_speakers{space=\"%s\"} %u\n", sh->spaces[i].mount,
                       __atomic_load_n(&sh->spaces[i].stage_speakers, __ATOMIC_RELAXED));
    metric_head(b, "rostrum_stage_members", "gauge",
                "WebSocket members of a stage, listeners included, by space.");
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (space_live(sh, i))
            buf_printf(b, "rostrum_stage_members{space=\"%s\"} %u\n", sh->spaces[i].mount,
                       __atomic_load_n(&sh->spaces[i].stage_members, __ATOMIC_RELAXED));
    metric_head(b, "rostrum_stage_return_queued_bytes", "gauge",
                "Bytes queued to a stage's speakers that their sockets have not taken, by space.");
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (space_live(sh, i))
            buf_printf(b, "rostrum_stage_return_queued_bytes{space=\"%s\"} %u\n",
                       sh->spaces[i].mount,
                       __atomic_load_n(&sh->spaces[i].stage_queued_bytes, __ATOMIC_RELAXED));
    metric(b, "rostrum_stage_return_drops_total", "counter",
           "Return-audio packets dropped for a speaker that does not read them.",
           __atomic_load_n(&sh->main.return_drops, __ATOMIC_RELAXED));
    metric_head(b, "rostrum_mixer_frame_seconds", "summary",
                "Time to mix, encode and queue one 20 ms stage frame.");
    buf_printf(b, "rostrum_mixer_frame_seconds_sum %.6f\n",
               (double)__atomic_load_n(&sh->main.mixer_frame_ns, __ATOMIC_RELAXED) / 1e9);
    buf_printf(b, "rostrum_mixer_frame_seconds_count %llu\n",
               (unsigned long long)__atomic_load_n(&sh->main.mixer_frames, __ATOMIC_RELAXED));
    metric_head(b, "rostrum_mixer_frame_max_seconds", "gauge",
                "The longest stage frame of the last second.");
    buf_printf(b, "rostrum_mixer_frame_max_seconds %.6f\n",
               (double)__atomic_load_n(&sh->main.mixer_frame_max_us, __ATOMIC_RELAXED) / 1e6);
    metric(b, "rostrum_mixer_overruns_total", "counter",
           "Stage frames that took over 20 ms, or whose tick came 20 ms late.",
           __atomic_load_n(&sh->main.mixer_overruns, __ATOMIC_RELAXED));
    metric(b, "rostrum_tickets_issued_total", "counter", "Waiting-room tickets handed out.",
           st.tickets_issued);
    metric(b, "rostrum_prequeue_early_total", "counter",
           "Waiting-room places before a scheduled space's start (its pre-queue).",
           st.prequeue_early);
    metric(b, "rostrum_prequeue_late_total", "counter",
           "Pre-queue places past its room: in arrival order from the start.", st.prequeue_late);
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

/* ---- the dashboard's history (issue 9) ----------------------------------------------------- */

void status_sample(struct shared *sh, int64_t wall_ms)
{
    struct shared_history *h = &sh->main.history;
    uint64_t n = h->count + 1;
    struct shared_sample *s = &h->samples[(n - 1) % SHARED_HISTORY];
    struct shared_counters st;
    __atomic_store_n(&s->seq, 0, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    shared_sum_counters(sh, &st);
    s->wall_ms = wall_ms;
    s->nworkers = sh->nworkers;
    s->speakers = s->members = s->queued_bytes = 0;
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        uint32_t r, c;
        slot_counts(sh, i, &r, &c);
        int used = sh->spaces[i].state != SLOT_FREE;
        s->listeners[i] = used ? r : 0;
        s->slot_gen[i] = used ? sh->spaces[i].gen : 0;
        s->speakers += sh->spaces[i].stage_speakers;
        s->members += sh->spaces[i].stage_members;
        s->queued_bytes += sh->spaces[i].stage_queued_bytes;
    }
    memcpy(s->joins, st.joins, sizeof(s->joins));
    status_refusals(sh, &st, s->refused);
    s->stalls = st.stalls;
    s->bytes_sent = st.bytes_sent;
    s->loop_lag_ms[0] = (uint32_t)sh->main.loop_lag_ms;
    for (uint32_t w = 0; w < SHARED_MAX_WORKERS; w++) {
        int in = w < sh->nworkers;
        s->pressure_milli[w] =
            in ? (uint16_t)__atomic_load_n(&sh->workers[w].pressure_milli, __ATOMIC_RELAXED) : 0;
        s->loop_lag_ms[1 + w] = in ? (uint32_t)sh->workers[w].loop_lag_ms : 0;
    }
    s->mixer_frame_max_us = sh->main.mixer_frame_max_us;
    s->mixer_overruns = sh->main.mixer_overruns;
    s->return_drops = sh->main.return_drops;
    s->ws_closes = 0;
    for (int i = 0; i < WS_CLOSE_REASONS; i++)
        s->ws_closes += sh->main.ws_closes[i];
    __atomic_store_n(&s->seq, (uint32_t)n, __ATOMIC_RELEASE);
    __atomic_store_n(&h->count, n, __ATOMIC_RELEASE);
}

/* What a series of the dashboard shows of a sample. */
enum series_kind {
    SER_LISTENERS, /* <idx>: slot; -1: all */
    SER_JOINS,
    SER_REFUSED, /* <idx>: reason; -1: all */
    SER_STALLS,
    SER_BYTES,
    SER_PRESSURE,
    SER_LAG, /* <idx>: 0 main, 1 + worker */
    SER_SPEAKERS,
    SER_MEMBERS,
    SER_QUEUED,
    SER_MIXER_MAX_MS,
    SER_OVERRUNS,
    SER_RETURN_DROPS,
    SER_WS_CLOSES,
};

static double sample_value(const struct shared_sample *s, enum series_kind k, int idx, uint32_t gen)
{
    double v = 0;
    switch (k) {
    case SER_LISTENERS:
        if (idx >= 0)
            return s->slot_gen[idx] == gen ? s->listeners[idx] : 0;
        for (int i = 0; i < SHARED_MAX_SPACES; i++)
            v += s->listeners[i];
        return v;
    case SER_JOINS:
        return (double)s->joins[idx];
    case SER_REFUSED:
        if (idx >= 0)
            return (double)s->refused[idx];
        for (int i = 0; i < SHARED_REFUSALS; i++)
            v += (double)s->refused[i];
        return v;
    case SER_STALLS:
        return (double)s->stalls;
    case SER_BYTES:
        return (double)s->bytes_sent;
    case SER_PRESSURE:
        return s->pressure_milli[idx] / 1000.0;
    case SER_LAG:
        return s->loop_lag_ms[idx];
    case SER_SPEAKERS:
        return s->speakers;
    case SER_MEMBERS:
        return s->members;
    case SER_QUEUED:
        return s->queued_bytes;
    case SER_MIXER_MAX_MS:
        return s->mixer_frame_max_us / 1000.0;
    case SER_OVERRUNS:
        return (double)s->mixer_overruns;
    case SER_RETURN_DROPS:
        return (double)s->return_drops;
    case SER_WS_CLOSES:
        return (double)s->ws_closes;
    }
    return 0;
}

/* Writes "<name>":[...] of <n> samples <s>: the values, or with <rate> the change per second
 * from the sample before (0 for the first). */
static void series(struct buf *b, const char *name, const struct shared_sample *s, int n,
                   enum series_kind k, int idx, uint32_t gen, int rate, int comma)
{
    buf_printf(b, "%s", comma ? "," : "");
    buf_json_str(b, name, strlen(name));
    buf_puts(b, ":[");
    for (int i = 0; i < n; i++) {
        double v = sample_value(&s[i], k, idx, gen);
        if (rate) {
            double dt = i > 0 ? (double)(s[i].wall_ms - s[i - 1].wall_ms) / 1000.0 : 0;
            double d = i > 0 ? v - sample_value(&s[i - 1], k, idx, gen) : 0;
            v = dt > 0 && d > 0 ? d / dt : 0;
        }
        buf_printf(b, i ? ",%.4g" : "%.4g", v);
    }
    buf_puts(b, "]");
}

/* Copies the samples still held into <out> (SHARED_HISTORY of them), oldest first; returns
 * how many. A sample the writer is replacing meanwhile is left out. */
static int history_copy(const struct shared *sh, struct shared_sample *out)
{
    const struct shared_history *h = &sh->main.history;
    uint64_t count = __atomic_load_n(&h->count, __ATOMIC_ACQUIRE);
    /* the oldest slot is the next to be written: leave it out */
    uint64_t first = count >= SHARED_HISTORY ? count - SHARED_HISTORY + 2 : 1;
    int n = 0;
    for (uint64_t k = first; k <= count; k++) {
        const struct shared_sample *s = &h->samples[(k - 1) % SHARED_HISTORY];
        if (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) != (uint32_t)k)
            continue;
        memcpy(&out[n], s, sizeof(*s));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == (uint32_t)k)
            n++;
    }
    return n;
}

void status_dashboard(struct audience *a, struct buf *b)
{
    const struct shared *sh = a->sh;
    struct shared_sample *s = malloc(sizeof(*s) * SHARED_HISTORY);
    BUG_ON(!s);
    int n = history_copy(sh, s);
    uint32_t nworkers = n > 0 ? s[n - 1].nworkers : sh->nworkers;
    buf_printf(b, "{\"interval_ms\":1000,\"capacity\":%d,\"points\":%d,\"workers\":%u,\"t\":[",
               SHARED_HISTORY, n, nworkers);
    for (int i = 0; i < n; i++)
        buf_printf(b, i ? ",%.3f" : "%.3f", (double)s[i].wall_ms / 1000.0);
    buf_puts(b, "],\"charts\":{\"listeners\":{");
    series(b, "all", s, n, SER_LISTENERS, -1, 0, 0, 0);
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (sh->spaces[i].state != SLOT_FREE && !shared_is_rendition(&sh->spaces[i]))
            series(b, sh->spaces[i].mount, s, n, SER_LISTENERS, i, sh->spaces[i].gen, 0, 1);
    static const char *const outcomes[JOIN_OUTCOMES] = {"ok", "not_found", "bad_request",
                                                        "refused"};
    buf_puts(b, "},\"joins_per_s\":{");
    for (int i = 0; i < JOIN_OUTCOMES; i++)
        series(b, outcomes[i], s, n, SER_JOINS, i, 0, 1, i > 0);
    buf_puts(b, "},\"refusals_per_s\":{");
    series(b, "all", s, n, SER_REFUSED, -1, 0, 1, 0);
    for (int r = 0; r < SHARED_REFUSALS; r++)
        if (n > 1 && s[n - 1].refused[r] != s[0].refused[r]) /* only reasons seen lately */
            series(b, refusal_names[r], s, n, SER_REFUSED, r, 0, 1, 1);
    buf_puts(b, "},\"stalls_per_s\":{");
    series(b, "stalls", s, n, SER_STALLS, 0, 0, 1, 0);
    buf_puts(b, "},\"bytes_out_per_s\":{");
    series(b, "bytes", s, n, SER_BYTES, 0, 0, 1, 0);
    buf_puts(b, "},\"worker_pressure\":{");
    char name[32];
    for (uint32_t w = 0; w < nworkers && w < SHARED_MAX_WORKERS; w++) {
        snprintf(name, sizeof(name), "worker-%u", w);
        series(b, name, s, n, SER_PRESSURE, (int)w, 0, 0, w > 0);
    }
    buf_puts(b, "},\"loop_lag_ms\":{");
    series(b, "main", s, n, SER_LAG, 0, 0, 0, 0);
    for (uint32_t w = 0; a->cfg->workers > 0 && w < nworkers && w < SHARED_MAX_WORKERS; w++) {
        snprintf(name, sizeof(name), "worker-%u", w);
        series(b, name, s, n, SER_LAG, 1 + (int)w, 0, 0, 1);
    }
    buf_puts(b, "},\"stage\":{");
    series(b, "speakers", s, n, SER_SPEAKERS, 0, 0, 0, 0);
    series(b, "members", s, n, SER_MEMBERS, 0, 0, 0, 1);
    buf_puts(b, "},\"stage_health\":{");
    series(b, "mixer_max_ms", s, n, SER_MIXER_MAX_MS, 0, 0, 0, 0);
    series(b, "overruns_per_s", s, n, SER_OVERRUNS, 0, 0, 1, 1);
    series(b, "return_drops_per_s", s, n, SER_RETURN_DROPS, 0, 0, 1, 1);
    series(b, "ws_closes_per_s", s, n, SER_WS_CLOSES, 0, 0, 1, 1);
    series(b, "queued_bytes", s, n, SER_QUEUED, 0, 0, 0, 1);
    /* issue 12, item 2: the recordings, and the spaces whose recording failed (disk full) */
    buf_printf(b, "}},\"recordings\":{\"active\":%llu,\"errors\":%llu,\"failed\":[",
               (unsigned long long)sh->main.record_active,
               (unsigned long long)sh->main.record_errors);
    int nf = 0;
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        if (sh->spaces[i].state != SLOT_FREE &&
            __atomic_load_n(&sh->spaces[i].record_state, __ATOMIC_ACQUIRE) == RECORD_FAILED)
        {
            buf_puts(b, nf++ ? "," : "");
            buf_json_str(b, sh->spaces[i].mount, strlen(sh->spaces[i].mount));
        }
    buf_puts(b, "]}}\n");
    free(s);
}
