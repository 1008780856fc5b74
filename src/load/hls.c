/*
 * load/hls: see hls.h for what a player does. The worker is listen.c's shape: one loop per
 * process, players started at a rate from one pacing timer, no timer per player (one 50 ms
 * scan starts what is due: plain reloads, retries, beacons), one record per worker to the
 * parent through load/procs.
 *
 * A player's request cycle:
 *
 *   IDLE --due--> (connected? yes) SENDING --sent--> RESPONSE --whole--> handle --> next
 *     |           (no) CONNECTING --------^               |
 *     +<---- keep-alive: the same socket; closed: a new one on the next request
 *
 * What comes next after a response is decided in one place (player_next): the init section,
 * queued media, a due beacon, the preload hint, the playlist reload.
 */
#include "load/hls.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "event/loop.h"
#include "load/httpresp.h"
#include "load/listen.h"
#include "load/m3u8.h"
#include "load/opts.h"
#include "load/procs.h"
#include "util/buf.h"
#include "util/log.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PACE_MS 10
#define SCAN_MS 50
#define REQ_TIMEOUT_US 20000000 /* a blocking reload may wait 3 target durations; more is dead */
#define RETRY_US 1000000        /* after a failed playlist */
#define QUEUE 6
#define SID_MAX 400
#define FD_SPARE 32
#define COLLECT_GRACE_MS 25000
#define HLS_MAGIC 0x524c4448u /* "RLDH" */

enum { P_NEW, P_IDLE, P_CONNECTING, P_SENDING, P_RESPONSE, P_DONE };
enum { R_MULTI, R_MEDIA, R_MAP, R_PART, R_SEG, R_HINT, R_BEACON, R_KINDS };
static const char *const kind_names[R_KINDS] = {"multivariant", "media_playlist", "init",  "part",
                                                "segment",      "preload_hint",   "beacon"};

struct hls_opts {
    struct load_url url;
    const char *url_str, *rendition;
    uint32_t players, seconds, procs, beacon_s;
    double rate;
    uint32_t src_first, src_count;
    int no_ll, no_hints, json;
    char beacon_path[LOAD_URL_MAX_PATH];
    struct load_url beacon; /* --beacon-url: beacons go there (their own connection each) */
    int beacon_elsewhere;
};

/* One worker's figures (a plain struct through the pipe: the same binary on both ends). */
struct hls_result {
    uint32_t magic;
    uint32_t players;
    uint64_t started;     /* players that fetched their first media */
    uint64_t playing_end; /* players whose play head ran at the end */
    uint64_t requests[R_KINDS];
    uint64_t failed[R_KINDS];         /* answered with a status other than 200 */
    uint64_t blocking, delta, cached; /* blocking reloads; delta updates got; answers with Age */
    uint64_t bytes;
    uint64_t stalls, stalled_players, stall_us;
    uint64_t jumps; /* fell out of the playlist's kept window: restarted at the edge */
    uint64_t conn_errors, bad_responses, timeouts, bad_playlists;
    uint64_t connects; /* connections opened (keep-alive makes it fewer than requests) */
    uint64_t beacons_ok, beacons_refused;
    uint64_t no_pdt; /* media fetched while playing whose program date time was unknown */
    uint32_t http[600];
    struct hist first_media_us; /* start to the first media fetched whole */
    struct hist latency_ms;     /* wall clock - play head's program date time */
    struct hist reload_us;      /* a playlist reload's request to its whole answer */
    struct hist media_us;       /* a part's or segment's request to its whole answer */
};

struct qitem {
    char path[M3U8_URI_MAX + 64];
    uint8_t kind; /* R_PART, R_SEG */
    int64_t msn;
    int32_t part;
    double dur_s;
    int64_t pdt_ms; /* start; 0 unknown */
};

struct player {
    struct io io;
    uint8_t state, kind, ll, loaded, keep, sent_map, ever_played, stalled;
    uint8_t away; /* its connection is to the --beacon-url server */
    uint32_t idx;
    int64_t t_start, t_req, next_at;
    uint32_t sent, req_len;
    char req[LOAD_URL_MAX_PATH + M3U8_URI_MAX + 256];
    struct httpresp resp;
    struct buf body; /* playlists and beacon answers only */
    char media[LOAD_URL_MAX_PATH];
    char map[M3U8_URI_MAX + 64];
    int64_t want_msn; /* the next part (ll) or segment wanted */
    int32_t want_part;
    double target_s, part_target_s, hold_s;
    int can_skip;
    struct qitem q[QUEUE];
    uint32_t nq, qhead;
    struct qitem hint;
    uint8_t has_hint;
    struct qitem cur; /* the media being fetched */
    /* playback */
    int64_t head_pdt_ms; /* program time at the play head (synthetic from 0 without PDT) */
    int64_t head_at_us;  /* when head_pdt_ms was true */
    int64_t buf_end_ms;  /* program time of the end of what was fetched */
    int64_t stall_from_us;
    uint8_t pdt_known;
    uint32_t stalls;
    /* beacons */
    int64_t beacon_at;
    char sid[SID_MAX];
};

struct worker {
    struct loop loop;
    const struct hls_opts *o;
    struct player *p;
    uint32_t n, opened, index;
    double rate;
    int64_t start_us, end_us;
    struct loop_timer pace, scan, end;
    struct hls_result res;
    uint8_t rbuf[16384];
};

static struct worker *worker_of(struct loop *loop)
{
    return (struct worker *)((char *)loop - offsetof(struct worker, loop));
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void player_close(struct worker *w, struct player *p)
{
    if (p->io.fd >= 0) {
        loop_del(&w->loop, &p->io);
        close(p->io.fd);
        p->io.fd = -1;
    }
}

/* ---- playback ------------------------------------------------------------------------------ */

/* Moves the play head to <now>: it runs in real time up to the end of what was fetched, where
 * a stall begins. */
static void play_advance(struct worker *w, struct player *p, int64_t now)
{
    if (!p->ever_played || p->stalled)
        return;
    int64_t head = p->head_pdt_ms + (now - p->head_at_us) / 1000;
    if (head >= p->buf_end_ms) {
        /* ran dry at the moment the head reached the end */
        p->stall_from_us = p->head_at_us + (p->buf_end_ms - p->head_pdt_ms) * 1000;
        head = p->buf_end_ms;
        p->stalled = 1;
        now = p->stall_from_us;
    }
    p->head_pdt_ms = head;
    p->head_at_us = now;
}

/* Media item <it> is fetched whole at <now>. */
static void play_got(struct worker *w, struct player *p, const struct qitem *it, int64_t now)
{
    int64_t start = it->pdt_ms ? it->pdt_ms : p->buf_end_ms;
    int64_t end = start + (int64_t)llround(it->dur_s * 1000.0);
    if (!p->ever_played) {
        p->ever_played = 1;
        p->pdt_known = it->pdt_ms != 0;
        p->head_pdt_ms = start;
        p->head_at_us = now;
        p->buf_end_ms = end;
        w->res.started++;
        hist_add(&w->res.first_media_us, (uint64_t)(now - p->t_start));
        if (w->o->beacon_s && !p->beacon_at)
            p->beacon_at = now; /* the first beacon as it starts playing */
        return;
    }
    play_advance(w, p, now);
    if (end > p->buf_end_ms)
        p->buf_end_ms = end;
    if (p->stalled && p->buf_end_ms > p->head_pdt_ms) {
        p->stalled = 0;
        p->stalls++;
        w->res.stalls++;
        w->res.stall_us += (uint64_t)(now - p->stall_from_us);
        p->head_at_us = now;
    }
    if (it->pdt_ms && p->pdt_known) {
        int64_t lat = wall_ms() - p->head_pdt_ms;
        hist_add(&w->res.latency_ms, lat > 0 ? (uint64_t)lat : 0);
    } else {
        w->res.no_pdt++;
    }
}

/* ---- requests ------------------------------------------------------------------------------ */

static void player_on_io(struct loop *loop, struct io *io, uint32_t events);

/* Opens a connection for <p>. Returns 0, or -1 (counted) if it could not. */
static int player_connect(struct worker *w, struct player *p)
{
    const struct hls_opts *o = w->o;
    const struct load_url *to = p->kind == R_BEACON && o->beacon_elsewhere ? &o->beacon : &o->url;
    int fd = socket(to->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        w->res.conn_errors++;
        return -1;
    }
    p->io.fd = fd;
    p->io.cb = player_on_io;
    w->res.connects++;
    if (o->src_count) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(o->src_first + p->idx % o->src_count);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
            player_close(w, p);
            w->res.conn_errors++;
            return -1;
        }
    }
    if (connect(fd, (const struct sockaddr *)&to->addr, to->addrlen) == -1 &&
        errno != EINPROGRESS) {
        player_close(w, p);
        w->res.conn_errors++;
        return -1;
    }
    if (loop_add(&w->loop, &p->io, EPOLLOUT) < 0) {
        player_close(w, p);
        w->res.conn_errors++;
        return -1;
    }
    p->state = P_CONNECTING;
    return 0;
}

static void player_send(struct worker *w, struct player *p)
{
    while (p->sent < p->req_len) {
        ssize_t n = send(p->io.fd, p->req + p->sent, p->req_len - p->sent, MSG_NOSIGNAL);
        if (n > 0) {
            p->sent += (uint32_t)n;
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && errno == EAGAIN) {
            p->state = P_SENDING;
            loop_mod(&w->loop, &p->io, EPOLLOUT);
            return;
        } else {
            /* a kept connection the server closed meanwhile: once more on a new one */
            player_close(w, p);
            if (p->keep) {
                p->keep = 0;
                p->sent = 0;
                if (player_connect(w, p) == 0)
                    return;
            }
            w->res.conn_errors++;
            p->state = P_IDLE;
            p->next_at = load_now_us() + RETRY_US;
            return;
        }
    }
    p->state = P_RESPONSE;
    httpresp_init(&p->resp, 0);
    loop_mod(&w->loop, &p->io, EPOLLIN);
}

/* Starts request <kind> for <path> (POST for a beacon). */
static void player_request(struct worker *w, struct player *p, int kind, const char *path)
{
    const struct hls_opts *o = w->o;
    int away = kind == R_BEACON && o->beacon_elsewhere; /* not where the playlists are */
    const struct load_url *to = away ? &o->beacon : &o->url;
    int n = snprintf(p->req, sizeof(p->req),
                     "%s %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: rostrum-load-hls\r\n%s\r\n",
                     kind == R_BEACON ? "POST" : "GET", path, to->host, to->port,
                     kind == R_BEACON ? "Content-Length: 0\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(p->req)) {
        w->res.bad_playlists++;
        p->state = P_DONE;
        return;
    }
    p->req_len = (uint32_t)n;
    p->sent = 0;
    p->kind = (uint8_t)kind;
    p->t_req = load_now_us();
    p->body.len = 0;
    w->res.requests[kind]++;
    if (away || p->away)
        p->keep = 0; /* the kept connection goes to the other server */
    p->away = (uint8_t)away;
    if (p->io.fd >= 0 && p->keep) {
        player_send(w, p);
        return;
    }
    player_close(w, p);
    p->keep = 0;
    if (player_connect(w, p) < 0) {
        p->state = P_IDLE;
        p->next_at = load_now_us() + RETRY_US;
    }
}

/* The blocking (or plain) reload of the media playlist. */
static void player_reload(struct worker *w, struct player *p)
{
    char path[LOAD_URL_MAX_PATH + 96];
    const char *sep = strchr(p->media, '?') ? "&" : "?";
    if (p->ll && p->loaded) {
        snprintf(path, sizeof(path), "%s%s_HLS_msn=%lld&_HLS_part=%d%s", p->media, sep,
                 (long long)p->want_msn, p->want_part, p->can_skip ? "&_HLS_skip=YES" : "");
        w->res.blocking++;
    } else {
        snprintf(path, sizeof(path), "%s", p->media);
    }
    player_request(w, p, R_MEDIA, path);
}

static void player_beacon(struct worker *w, struct player *p)
{
    char path[LOAD_URL_MAX_PATH + SID_MAX + 8];
    if (p->sid[0])
        snprintf(path, sizeof(path), "%s?sid=%s", w->o->beacon_path, p->sid);
    else
        snprintf(path, sizeof(path), "%s", w->o->beacon_path);
    p->beacon_at = load_now_us() + (int64_t)w->o->beacon_s * 1000000;
    player_request(w, p, R_BEACON, path);
}

/* Decides and starts what <p> does next, or leaves it idle until <p->next_at>. */
static void player_next(struct worker *w, struct player *p)
{
    int64_t now = load_now_us();
    if (now >= w->end_us) {
        p->state = P_IDLE;
        return;
    }
    if (p->map[0] && !p->sent_map) {
        p->sent_map = 1;
        player_request(w, p, R_MAP, p->map);
        return;
    }
    if (p->nq) {
        p->cur = p->q[p->qhead];
        p->qhead = (p->qhead + 1) % QUEUE;
        p->nq--;
        player_request(w, p, p->cur.kind, p->cur.path);
        return;
    }
    if (p->beacon_at && now >= p->beacon_at) {
        player_beacon(w, p);
        return;
    }
    if (p->ll && p->has_hint && !w->o->no_hints && p->hint.msn == p->want_msn &&
        p->hint.part == p->want_part) {
        /* the server answers the hinted part when it is whole: then ask for the next one */
        p->has_hint = 0;
        p->cur = p->hint;
        p->want_part++;
        player_request(w, p, R_HINT, p->cur.path);
        return;
    }
    if (!p->ll && p->loaded && now < p->next_at) {
        p->state = P_IDLE;
        return;
    }
    player_reload(w, p);
}

static void queue_push(struct player *p, const char *base, const struct m3u8_item *it, int kind)
{
    if (p->nq == QUEUE) { /* behind: the oldest goes, the edge matters */
        p->qhead = (p->qhead + 1) % QUEUE;
        p->nq--;
    }
    struct qitem *q = &p->q[(p->qhead + p->nq) % QUEUE];
    if (m3u8_resolve(base, it->uri, q->path, sizeof(q->path)) < 0)
        return;
    q->kind = (uint8_t)kind;
    q->msn = it->msn;
    q->part = it->part;
    q->dur_s = it->dur_s;
    q->pdt_ms = it->pdt_ms;
    p->nq++;
}

/* 1 if (msn, part) comes at or after (want_msn, want_part). */
static int at_or_after(int64_t msn, int32_t part, int64_t wmsn, int32_t wpart)
{
    return msn > wmsn || (msn == wmsn && part >= wpart);
}

/* A media playlist arrived: queue what is new, note the hint, plan the next reload. */
static void player_media(struct worker *w, struct player *p, const struct m3u8 *m, int64_t now)
{
    if (m->skipped)
        w->res.delta++;
    if (!p->loaded) {
        p->ll = !w->o->no_ll && m->part_target_s > 0 && m->can_block && m->nparts > 0;
        p->target_s = m->target_s;
        p->part_target_s = m->part_target_s;
        p->hold_s = p->ll ? (m->part_hold_back_s > 0 ? m->part_hold_back_s : 3 * m->part_target_s)
                          : (m->hold_back_s > 0 ? m->hold_back_s : 3 * m->target_s);
        if (m->map_uri[0])
            m3u8_resolve(p->media, m->map_uri, p->map, sizeof(p->map));
    }
    p->can_skip = m->can_skip_until_s > 0;
    if (p->ll) {
        int start = -1;
        if (p->loaded) {
            for (uint32_t i = 0; i < m->nparts; i++)
                if (at_or_after(m->parts[i].msn, m->parts[i].part, p->want_msn, p->want_part)) {
                    start = (int)i;
                    break;
                }
            /* what it wants is older than every part kept: it fell behind */
            if (start == 0 && m->nparts == M3U8_PARTS &&
                (m->parts[0].msn != p->want_msn || m->parts[0].part != p->want_part) &&
                !(m->parts[0].part == 0 && m->parts[0].msn == p->want_msn + 1))
                w->res.jumps++;
        }
        if (start < 0 && (!p->loaded || m->nparts == 0 ||
                          !at_or_after(p->want_msn, p->want_part, m->parts[m->nparts - 1].msn,
                                       m->parts[m->nparts - 1].part + 1))) {
            /* the first load (or lost): hold-back behind the edge */
            double acc = 0;
            start = (int)m->nparts - 1;
            while (start > 0 && acc + m->parts[start].dur_s < p->hold_s)
                acc += m->parts[start--].dur_s;
        }
        if (start >= 0)
            for (uint32_t i = (uint32_t)start; i < m->nparts; i++)
                queue_push(p, p->media, &m->parts[i], R_PART);
        if (m->nparts) {
            const struct m3u8_item *last = &m->parts[m->nparts - 1];
            if (at_or_after(last->msn, last->part + 1, p->want_msn, p->want_part) || !p->loaded) {
                p->want_msn = last->msn;
                p->want_part = last->part + 1;
            }
        }
        p->has_hint = (uint8_t)m->has_hint;
        if (m->has_hint) {
            if (m3u8_resolve(p->media, m->hint.uri, p->hint.path, sizeof(p->hint.path)) < 0)
                p->has_hint = 0;
            p->hint.kind = R_HINT;
            p->hint.msn = m->hint.msn;
            p->hint.part = m->hint.part;
            p->hint.dur_s = m->hint.dur_s;
            p->hint.pdt_ms = m->hint.pdt_ms;
        }
    } else {
        int start = -1, news = 0;
        if (p->loaded) {
            for (uint32_t i = 0; i < m->nsegs; i++)
                if (m->segs[i].msn >= p->want_msn) {
                    start = (int)i;
                    break;
                }
            if (start == 0 && m->nsegs && m->segs[0].msn > p->want_msn)
                w->res.jumps++;
        } else if (m->nsegs) {
            double acc = 0;
            start = (int)m->nsegs - 1;
            while (start > 0 && acc + m->segs[start].dur_s < p->hold_s)
                acc += m->segs[start--].dur_s;
        }
        if (start >= 0)
            for (uint32_t i = (uint32_t)start; i < m->nsegs; i++, news++)
                queue_push(p, p->media, &m->segs[i], R_SEG);
        if (m->nsegs && m->segs[m->nsegs - 1].msn + 1 > p->want_msn)
            p->want_msn = m->segs[m->nsegs - 1].msn + 1;
        /* the spec's reload timing: a target duration, half of one when nothing changed */
        p->next_at = now + (int64_t)((news ? 1.0 : 0.5) * m->target_s * 1e6);
        if (m->endlist)
            p->next_at = w->end_us;
    }
    p->loaded = 1;
}

static void on_body(void *arg, const uint8_t *b, size_t len)
{
    struct player *p = arg;
    if (p->kind == R_MULTI || p->kind == R_MEDIA || p->kind == R_BEACON) {
        if (p->body.len + len <= M3U8_MAX)
            buf_append(&p->body, b, len);
        else
            p->body.len = M3U8_MAX + 1; /* too big: refused when whole */
    }
}

/* The response to <p>'s request is whole. */
static void player_done(struct worker *w, struct player *p)
{
    int64_t now = load_now_us();
    struct hls_result *r = &w->res;
    int st = p->resp.status;
    p->keep = (uint8_t)p->resp.keep;
    if (!p->keep)
        player_close(w, p);
    else
        loop_mod(&w->loop, &p->io, 0);
    r->bytes += p->resp.body;
    if (p->resp.age[0])
        r->cached++;
    if (st != 200) {
        r->failed[p->kind]++;
        if (st >= 100 && st < 600)
            r->http[st]++;
    }
    switch (p->kind) {
    case R_MULTI:
    case R_MEDIA: {
        hist_add(&r->reload_us, (uint64_t)(now - p->t_req));
        static struct m3u8 m; /* one at a time: the loop is single-threaded */
        if (st != 200 || p->body.len > M3U8_MAX ||
            m3u8_parse(p->body.data ? p->body.data : "", p->body.len, &m) < 0) {
            if (st == 200)
                r->bad_playlists++;
            p->state = P_IDLE;
            p->next_at = now + RETRY_US;
            return;
        }
        if (m.kind == M3U8_MULTIVARIANT) {
            uint32_t pick = 0;
            if (w->o->rendition)
                for (uint32_t i = 0; i < m.nvariants; i++)
                    if (strstr(m.variants[i].codecs, w->o->rendition) ||
                        strstr(m.variants[i].uri, w->o->rendition)) {
                        pick = i;
                        break;
                    }
            if (m3u8_resolve(w->o->url.path, m.variants[pick].uri, p->media, sizeof(p->media)) <
                0) {
                r->bad_playlists++;
                p->state = P_DONE;
                return;
            }
            p->loaded = 0;
            break;
        }
        player_media(w, p, &m, now);
        break;
    }
    case R_MAP:
        break;
    case R_PART:
    case R_SEG:
    case R_HINT:
        if (st == 200) {
            hist_add(&r->media_us, (uint64_t)(now - p->t_req));
            play_got(w, p, &p->cur, now);
        }
        break;
    case R_BEACON: {
        cJSON *j =
            st == 200 && p->body.len ? cJSON_ParseWithLength(p->body.data, p->body.len) : NULL;
        const cJSON *sid = j ? cJSON_GetObjectItemCaseSensitive(j, "sid") : NULL;
        if (cJSON_IsString(sid) && strlen(sid->valuestring) < sizeof(p->sid)) {
            snprintf(p->sid, sizeof(p->sid), "%s", sid->valuestring);
            r->beacons_ok++;
        } else {
            r->beacons_refused++;
            p->sid[0] = '\0'; /* a new session next time */
        }
        cJSON_Delete(j);
        break;
    }
    }
    player_next(w, p);
}

static void player_failed(struct worker *w, struct player *p, uint64_t *counter)
{
    (*counter)++;
    player_close(w, p);
    p->keep = 0;
    p->state = P_IDLE;
    p->next_at = load_now_us() + RETRY_US;
}

static void player_read(struct worker *w, struct player *p)
{
    for (int round = 0; round < 4; round++) {
        ssize_t n = recv(p->io.fd, w->rbuf, sizeof(w->rbuf), 0);
        if (n == 0) {
            if (httpresp_eof(&p->resp) == 0) {
                p->resp.keep = 0;
                player_done(w, p);
            } else if (p->resp.state == HR_HEAD && p->resp.head_len == 0 && p->keep &&
                       p->kind != R_BEACON) {
                /* the server let a kept connection go just as we asked: once more */
                player_close(w, p);
                p->keep = 0;
                w->res.requests[p->kind]--;
                char path[sizeof(p->req)];
                char *sp = strchr(p->req, ' '), *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
                if (!sp2) {
                    player_failed(w, p, &w->res.conn_errors);
                    return;
                }
                snprintf(path, sizeof(path), "%.*s", (int)(sp2 - sp - 1), sp + 1);
                player_request(w, p, p->kind, path);
            } else {
                player_failed(w, p, &w->res.conn_errors);
            }
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                player_failed(w, p, &w->res.conn_errors);
            return;
        }
        long used = httpresp_feed(&p->resp, w->rbuf, (size_t)n, on_body, p);
        if (used < 0) {
            player_failed(w, p, &w->res.bad_responses);
            return;
        }
        if (p->resp.state == HR_DONE) {
            if (used < n) /* bytes past the response: nothing was asked for them */
                p->resp.keep = 0;
            player_done(w, p);
            return;
        }
    }
}

static void player_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct worker *w = worker_of(loop);
    struct player *p = (struct player *)((char *)io - offsetof(struct player, io));
    switch (p->state) {
    case P_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err) {
            player_failed(w, p, &w->res.conn_errors);
            return;
        }
        if (events & EPOLLOUT)
            player_send(w, p);
        return;
    }
    case P_SENDING:
        player_send(w, p);
        return;
    case P_RESPONSE:
        player_read(w, p);
        return;
    default:
        /* a kept connection, idle (no events asked): an error or hang-up ends it */
        if (events & (EPOLLERR | EPOLLHUP)) {
            player_close(w, p);
            p->keep = 0;
        }
        return;
    }
}

/* ---- worker -------------------------------------------------------------------------------- */

static void on_pace(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = worker_of(loop);
    int64_t now = load_now_us();
    double due_d = floor(w->rate * (double)(now - w->start_us) / 1e6) + 1;
    uint32_t due = due_d >= (double)w->n ? w->n : (uint32_t)due_d;
    while (w->opened < due && now < w->end_us) {
        struct player *p = &w->p[w->opened++];
        p->t_start = load_now_us();
        player_request(w, p, R_MULTI, w->o->url.path);
    }
    if (w->opened < w->n)
        loop_timer_start(loop, t, PACE_MS, on_pace);
}

static void on_scan(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = worker_of(loop);
    int64_t now = load_now_us();
    for (uint32_t i = 0; i < w->opened; i++) {
        struct player *p = &w->p[i];
        if (p->state == P_IDLE && now >= p->next_at && now < w->end_us)
            player_next(w, p);
        else if ((p->state == P_CONNECTING || p->state == P_SENDING || p->state == P_RESPONSE) &&
                 now - p->t_req > REQ_TIMEOUT_US)
            player_failed(w, p, &w->res.timeouts);
    }
    loop_timer_start(loop, t, SCAN_MS, on_scan);
}

static void on_end(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = worker_of(loop);
    int64_t now = load_now_us();
    for (uint32_t i = 0; i < w->opened; i++) {
        struct player *p = &w->p[i];
        play_advance(w, p, now);
        if (p->ever_played && !p->stalled)
            w->res.playing_end++;
        if (p->stalled) { /* a stall still going at the end counts, up to now */
            p->stalls++;
            w->res.stalls++;
            w->res.stall_us += (uint64_t)(now - p->stall_from_us);
        }
        w->res.stalled_players += p->stalls > 0;
        player_close(w, p);
        buf_free(&p->body);
    }
    loop_stop(loop);
}

static void sleep_until_us(int64_t t)
{
    for (int64_t d; (d = t - load_now_us()) > 0;) {
        struct timespec ts = {.tv_sec = d / 1000000, .tv_nsec = (d % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

static int hls_worker(void *arg, uint32_t index, uint32_t n, int64_t start_us, void *rec)
{
    const struct hls_opts *o = arg;
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->o = o;
    w->n = n;
    w->index = index;
    w->rate = o->rate * (double)n / (double)o->players;
    w->start_us = start_us;
    w->end_us = start_us + (int64_t)o->seconds * 1000000;
    w->res.magic = HLS_MAGIC;
    w->res.players = n;
    hist_init(&w->res.first_media_us);
    hist_init(&w->res.latency_ms);
    hist_init(&w->res.reload_us);
    hist_init(&w->res.media_us);
    w->p = calloc(n ? n : 1, sizeof(*w->p));
    if (!w->p)
        abort();
    for (uint32_t i = 0; i < n; i++) {
        w->p[i].io.fd = -1;
        w->p[i].idx = index + i * o->procs;
        snprintf(w->p[i].media, sizeof(w->p[i].media), "%s", o->url.path);
    }
    int rc = loop_init(&w->loop);
    if (rc < 0) {
        free(w->p);
        free(w);
        return rc;
    }
    sleep_until_us(start_us);
    int64_t now = load_now_us();
    loop_timer_start(&w->loop, &w->pace, 0, on_pace);
    loop_timer_start(&w->loop, &w->scan, SCAN_MS, on_scan);
    loop_timer_start(&w->loop, &w->end, (w->end_us - now + 999) / 1000, on_end);
    loop_run(&w->loop);
    loop_close(&w->loop);
    w->res.magic = HLS_MAGIC;
    memcpy(rec, &w->res, sizeof(w->res));
    free(w->p);
    free(w);
    return 0;
}

/* ---- parent -------------------------------------------------------------------------------- */

static void merge(struct hls_result *a, const struct hls_result *b)
{
    const uint64_t *src = &b->started;
    uint64_t *dst = &a->started;
    /* the uint64_t fields from <started> to <no_pdt> are contiguous */
    for (size_t i = 0; i <= (size_t)(&b->no_pdt - &b->started); i++)
        dst[i] += src[i];
    a->players += b->players;
    for (int i = 0; i < 600; i++)
        a->http[i] += b->http[i];
    hist_merge(&a->first_media_us, &b->first_media_us);
    hist_merge(&a->latency_ms, &b->latency_ms);
    hist_merge(&a->reload_us, &b->reload_us);
    hist_merge(&a->media_us, &b->media_us);
}

static void json_hist_raw(struct buf *b, const char *name, const struct hist *h)
{
    buf_printf(b, ",\"%s\":{\"p50\":%llu,\"p95\":%llu,\"max\":%llu,\"count\":%llu}", name,
               (unsigned long long)hist_percentile(h, 50),
               (unsigned long long)hist_percentile(h, 95), (unsigned long long)h->max,
               (unsigned long long)h->count);
}

static void report(const struct hls_opts *o, const struct hls_result *r)
{
    struct buf b = {0};
    buf_puts(&b, "{\"mode\":\"hls\",\"url\":");
    buf_json_str(&b, o->url_str, strlen(o->url_str));
    buf_printf(&b, ",\"players\":%u,\"rate\":%g,\"seconds\":%u,\"procs\":%u,\"beacon_s\":%u",
               o->players, o->rate, o->seconds, o->procs, o->beacon_s);
    buf_printf(&b, ",\"started\":%llu,\"playing_at_end\":%llu,\"requests\":{",
               (unsigned long long)r->started, (unsigned long long)r->playing_end);
    for (int i = 0; i < R_KINDS; i++)
        buf_printf(&b, "%s\"%s\":%llu", i ? "," : "", kind_names[i],
                   (unsigned long long)r->requests[i]);
    buf_puts(&b, "},\"failed\":{");
    for (int i = 0; i < R_KINDS; i++)
        buf_printf(&b, "%s\"%s\":%llu", i ? "," : "", kind_names[i],
                   (unsigned long long)r->failed[i]);
    buf_puts(&b, "},\"http\":{");
    const char *sep = "";
    for (int i = 100; i < 600; i++)
        if (r->http[i]) {
            buf_printf(&b, "%s\"%d\":%u", sep, i, r->http[i]);
            sep = ",";
        }
    buf_printf(&b,
               "},\"blocking_reloads\":%llu,\"delta_updates\":%llu,\"cached_answers\":%llu,"
               "\"connections\":%llu,\"bytes\":%llu,\"stalls\":%llu,\"players_with_stalls\":%llu,"
               "\"stall_ms\":%.1f,\"jumps\":%llu,\"conn_errors\":%llu,\"bad_responses\":%llu,"
               "\"timeouts\":%llu,\"bad_playlists\":%llu,\"beacons_ok\":%llu,"
               "\"beacons_refused\":%llu,\"media_without_pdt\":%llu",
               (unsigned long long)r->blocking, (unsigned long long)r->delta,
               (unsigned long long)r->cached, (unsigned long long)r->connects,
               (unsigned long long)r->bytes, (unsigned long long)r->stalls,
               (unsigned long long)r->stalled_players, procs_ms(r->stall_us),
               (unsigned long long)r->jumps, (unsigned long long)r->conn_errors,
               (unsigned long long)r->bad_responses, (unsigned long long)r->timeouts,
               (unsigned long long)r->bad_playlists, (unsigned long long)r->beacons_ok,
               (unsigned long long)r->beacons_refused, (unsigned long long)r->no_pdt);
    buf_puts(&b, ",");
    procs_json_hist(&b, "first_media_ms", &r->first_media_us);
    json_hist_raw(&b, "latency_ms", &r->latency_ms);
    buf_puts(&b, ",");
    procs_json_hist(&b, "reload_ms", &r->reload_us);
    buf_puts(&b, ",");
    procs_json_hist(&b, "media_ms", &r->media_us);
    buf_puts(&b, "}\n");
    if (o->json) {
        fwrite(b.data, 1, b.len, stdout);
    } else {
        printf("rostrum-load hls: %u players on %s for %u s\n", o->players, o->url_str, o->seconds);
        printf("  started %llu, playing at the end %llu, stalls %llu (%llu players)\n",
               (unsigned long long)r->started, (unsigned long long)r->playing_end,
               (unsigned long long)r->stalls, (unsigned long long)r->stalled_players);
        printf("  latency behind live p50 %llu ms, p95 %llu ms (%llu samples)\n",
               (unsigned long long)hist_percentile(&r->latency_ms, 50),
               (unsigned long long)hist_percentile(&r->latency_ms, 95),
               (unsigned long long)r->latency_ms.count);
        printf("  requests: %llu playlists (%llu blocking, %llu delta), %llu parts, %llu "
               "segments, %llu hints, %llu beacons\n",
               (unsigned long long)(r->requests[R_MULTI] + r->requests[R_MEDIA]),
               (unsigned long long)r->blocking, (unsigned long long)r->delta,
               (unsigned long long)r->requests[R_PART], (unsigned long long)r->requests[R_SEG],
               (unsigned long long)r->requests[R_HINT], (unsigned long long)r->requests[R_BEACON]);
    }
    buf_free(&b);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: rostrum-load hls --url http://HOST:PORT/SPACE.m3u8 --players N --rate R\n"
               "                        --seconds S [options]\n"
               "  --url URL        multivariant (or media) playlist; HOST must be loopback\n"
               "  --players N      players in all (1..100000)\n"
               "  --rate R         players started per second in all (> 0)\n"
               "  --seconds S      run length (1..86400)\n"
               "  --procs P        worker processes (default ceil(N / 5000))\n"
               "  --rendition STR  the first rendition whose CODECS or URI contains STR\n"
               "                   (default the first listed)\n"
               "  --beacon-s S     beacon every S seconds to --beacon-path (default 30; 0: none)\n"
               "  --beacon-path P  default /beacon/SPACE, SPACE from the URL's /SPACE.m3u8\n"
               "  --beacon-url URL beacons to another server than the playlists' (loopback)\n"
               "  --no-ll          plain reloads even where the playlist is low-latency\n"
               "  --no-hints       do not fetch EXT-X-PRELOAD-HINT parts (hls.js does not)\n"
               "  --src-ips A-B    source addresses, round-robin (default 127.0.0.2-127.0.0.250)\n"
               "  --json           print one JSON object instead of a summary\n"
               "exit status: 0 run completed, 1 internal error, 2 bad arguments\n");
}

int load_hls_main(int argc, char **argv)
{
    struct hls_opts o = {.beacon_s = 30};
    const char *src = NULL, *bpath = NULL, *burl = NULL;
    int have_n = 0, have_rate = 0, have_secs = 0, rc;
    const struct opt tab[] = {
        {"url", OPT_STR, &o.url_str, 0, 0, 0, NULL, "a URL"},
        {"players", OPT_U32, &o.players, 1, 100000, 0, &have_n, NULL},
        {"rate", OPT_RATE, &o.rate, 0, 1e6, 0, &have_rate, "players per second"},
        {"seconds", OPT_U32, &o.seconds, 1, 86400, 0, &have_secs, NULL},
        {"procs", OPT_U32, &o.procs, 1, 64, 0, NULL, NULL},
        {"rendition", OPT_STR, &o.rendition, 0, 63, 0, NULL, "a CODECS or URI substring"},
        {"beacon-s", OPT_U32, &o.beacon_s, 0, 3600, 0, NULL, NULL},
        {"beacon-path", OPT_STR, &bpath, 0, 200, 0, NULL, "a path"},
        {"beacon-url", OPT_STR, &burl, 0, 0, 0, NULL, "a URL"},
        {"no-ll", OPT_FLAG, &o.no_ll, 0, 0, 1, NULL, NULL},
        {"no-hints", OPT_FLAG, &o.no_hints, 0, 0, 1, NULL, NULL},
        {"src-ips", OPT_STR, &src, 0, 0, 0, NULL, "an address range"},
        {"json", OPT_FLAG, &o.json, 0, 0, 1, NULL, NULL},
    };
    rc = opts_parse("hls", argc, argv, 1, tab, sizeof(tab) / sizeof(tab[0]));
    if (rc == 3) {
        usage(stdout);
        return 0;
    }
    if (rc)
        return rc;
    if (!o.url_str || !have_n || !have_rate || !have_secs)
        return opts_bad("hls", "--url, --players, --rate and --seconds are required");
    if ((rc = opts_url("hls", "--url", o.url_str, &o.url)) != 0)
        return rc;
    if (o.url.tls)
        return opts_bad("hls", "https:// is not supported by the hls mode");
    if (burl && bpath)
        return opts_bad("hls", "--beacon-url and --beacon-path exclude each other");
    if (burl) {
        if ((rc = opts_url("hls", "--beacon-url", burl, &o.beacon)) != 0)
            return rc;
        if (o.beacon.tls || strchr(o.beacon.path, '?'))
            return opts_bad("hls", "--beacon-url: http:// and no query");
        o.beacon_elsewhere = 1;
        snprintf(o.beacon_path, sizeof(o.beacon_path), "%s", o.beacon.path);
    } else if (bpath) {
        if (bpath[0] != '/' || strpbrk(bpath, " ?#"))
            return opts_bad("hls", "--beacon-path: a path starting with /, no query");
        snprintf(o.beacon_path, sizeof(o.beacon_path), "%s", bpath);
    } else {
        const char *slash = strrchr(o.url.path, '/'), *dot = strstr(o.url.path, ".m3u8");
        if (o.beacon_s && (!slash || !dot || dot <= slash + 1))
            return opts_bad("hls", "--beacon-path is needed when the URL is not /SPACE.m3u8");
        if (slash && dot && dot > slash)
            snprintf(o.beacon_path, sizeof(o.beacon_path), "/beacon/%.*s", (int)(dot - slash - 1),
                     slash + 1);
    }
    if ((rc = opts_src_ips("hls", src, o.url.family, 0x7f000002, 249, &o.src_first,
                           &o.src_count)) != 0)
        return rc;
    opts_procs(&o.procs, o.players, 5000);
    if (opts_check_fds("hls", "players", o.players, o.procs, FD_SPARE) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    int64_t start_us = load_now_us() + 200000 + (int64_t)o.procs * 5000;
    int64_t end_us = start_us + (int64_t)o.seconds * 1000000;
    struct procs pr = {
        .tag = "hls",
        .nprocs = o.procs,
        .units = o.players,
        .rec_size = sizeof(struct hls_result),
        .magic = HLS_MAGIC,
        .start_us = start_us,
        .deadline_us = end_us + (int64_t)COLLECT_GRACE_MS * 1000,
        .work = hls_worker,
        .arg = &o,
    };
    int failed;
    struct hls_result *res = procs_run(&pr, &failed);
    struct hls_result *total = calloc(1, sizeof(*total));
    if (!total)
        abort();
    hist_init(&total->first_media_us);
    hist_init(&total->latency_ms);
    hist_init(&total->reload_us);
    hist_init(&total->media_us);
    for (uint32_t k = 0; k < o.procs; k++)
        if (res[k].magic == HLS_MAGIC)
            merge(total, &res[k]);
    report(&o, total);
    fflush(stdout);
    free(total);
    free(res);
    return failed ? 1 : 0;
}
