/*
 * beacon: counting HLS players that rostrum never sees (issue 11, item 4).
 *
 * A player behind a cache fetches playlists and media from the cache, so the origin cannot
 * count it by its connections. Instead the player calls, every BEACON_EVERY_S seconds,
 *
 *   GET or POST /beacon/<space>[?sid=<session id>]      (uncacheable: Cache-Control: no-store)
 *
 * The first call carries no sid: the answer hands out a session id, a token signed with the
 * server's key (token.h, TOKEN_SESSION: the space, an expiry, 64 random bits, the address it
 * was issued to), and counts the session at once. Every later call presents the id; the answer
 * carries it again with a later expiry (same 64 bits: the same session). A forged id, one
 * expired (no beacon for session-window-s), of another space or from another address is
 * refused with 403 after one HMAC and before anything else (rostrum_beacons_refused_total
 * {reason="bad_session"}); the player then starts a new session.
 *
 * Definition: an HLS session counts while its beacons arrive, that is for session-window-s
 * (default 75 s: two beacons missed at 30 s, and slack) after its last beacon. Triton counts
 * its players the same way from 60 s pings. The count is of distinct session ids in a table
 * every worker shares (shared_beacon_seen()), so a session whose beacons land on different
 * workers is one session.
 *
 * Bounds: new sessions from one address come out of that address's join bucket (joins-per-ip
 * per second, burst 2x, per worker); one space holds at most max-hls-sessions (at most
 * SHARED_BEACONS_PER_SPACE; as last counted, at most a second ago: a burst of new sessions in
 * one second may pass it by that second's worth), all spaces SHARED_BEACONS, with
 * SHARED_BEACON_PROBE slots looked at per session. Past any of them the beacon is refused and
 * counted.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audience/audience.h"
#include "http/request.h"
#include "token/token.h"
#include "util/log.h"

_Static_assert(SHARED_BEACONS_PER_SPACE == 65536, "max-hls-sessions' ceiling (config.c)");
_Static_assert(SHARED_MAX_SPACES <= 64, "a slot takes 6 bits of a session's word (shared.c)");

static int sid_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

int beacon_parse(const char *q, size_t len, struct beacon_req *out)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(q + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - q) : len;
        const char *eq = memchr(q + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - (q + i)) : end - i;
        if (klen == 3 && memcmp(q + i, "sid", 3) == 0) {
            if (!eq || out->sid)
                return -1; /* "sid" with no value, or twice: which one would count? */
            const char *v = eq + 1;
            size_t vlen = end - (size_t)(v - q);
            if (vlen == 0 || vlen >= TOKEN_MAX)
                return -1;
            for (size_t k = 0; k < vlen; k++)
                if (!sid_char((unsigned char)v[k]))
                    return -1;
            out->sid = v;
            out->sid_len = vlen;
        }
        /* anything else (a cache buster, a player's own fields) is ignored */
        i = end + 1;
    }
    return (int)len;
}

const uint32_t *beacon_counts(struct audience *a)
{
    /* counted once per second of the clock every worker shares, not per second since this
     * worker last counted: sessions lapse on whole seconds, so every worker then gives the same
     * figure and a status document fetched twice does not go 0, 1 as it hits another worker */
    int64_t now_s = a->loop->now_ms / 1000;
    if (now_s != a->hls_counted_s) {
        shared_beacon_count(a->sh, now_s, a->cfg->session_window_s, a->hls);
        a->hls_counted_s = now_s;
    }
    return a->hls;
}

static void beacon_refuse(struct conn *c, int status, int retry_s, const char *msg)
{
    char hdr[96];
    snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\nCache-Control: no-store", retry_s);
    conn_error(c, status, status == 403 ? "Cache-Control: no-store" : hdr, msg);
}

void beacon_route(struct conn *c, const struct http_request *req, const char *mount, int slot)
{
    struct audience *a = audience_of(c);
    struct shared_counters *ctr = &a->me->c;
    struct beacon_req br;
    if (beacon_parse(req->query, req->query_len, &br) < 0) {
        ctr->refused_beacon++;
        conn_error(c, 400, "Cache-Control: no-store", "Bad beacon: ?sid=<session id>");
        return;
    }
    if (slot < 0) {
        conn_error(c, 404, "Cache-Control: no-store", "No such mount");
        return;
    }
    struct addr_key key;
    int known;
    struct addr_entry *e = audience_client(c, req, &key, &known);
    int64_t now_wall = time(NULL);
    struct token t;
    if (br.sid) {
        /* one HMAC before anything else */
        const char *why;
        if (token_check_bound(a->secret, TOKEN_SESSION, br.sid, br.sid_len, now_wall, mount,
                              known ? key.b : NULL, &t, &why) < 0) {
            ctr->refused_beacon++;
            LOG_RATELIMITED(LOG_INFO, "beacon", "#%llu %s: beacon for /%s refused: %s",
                            (unsigned long long)c->id, c->peer, mount, why);
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "Bad or expired session id (%s): start a new one at "
                     "/beacon/%.63s",
                     why, mount);
            conn_error(c, 403, "Cache-Control: no-store", msg);
            return;
        }
    } else {
        int64_t wait;
        if (!known) {
            conn_error(c, 400, "Cache-Control: no-store",
                       "No client address to issue a session to");
            return;
        }
        if (e && !bucket_take(&e->joins, a->cfg->joins_per_ip, 2.0 * a->cfg->joins_per_ip,
                              a->loop->now_ms, &wait)) {
            ctr->refused_beacon_per_ip++;
            beacon_refuse(c, 429, (int)(wait / 1000) + 1,
                          "Too many new sessions from your address");
            return;
        }
        if (beacon_counts(a)[slot] >= (uint32_t)a->cfg->max_hls_sessions) {
            ctr->refused_beacon_space++;
            beacon_refuse(c, 503, 30, "This space counts as many sessions as it can");
            return;
        }
        t = (struct token){.purpose = TOKEN_SESSION};
        snprintf(t.space, sizeof(t.space), "%.63s", mount);
        memcpy(t.addr, key.b, sizeof(t.addr));
    }
    t.expiry = now_wall + a->cfg->session_window_s;
    char tok[TOKEN_MAX];
    if (token_mint(a->secret, &t, tok, sizeof(tok)) < 0) { /* makes the id of a new one */
        conn_error(c, 500, NULL, "Could not make a session id");
        return;
    }
    int rc =
        shared_beacon_seen(a->sh, t.id, slot, a->loop->now_ms / 1000, a->cfg->session_window_s);
    if (rc < 0) {
        ctr->refused_beacon_table++;
        beacon_refuse(c, 503, 30, "No room to count this session");
        return;
    }
    ctr->beacons++;
    if (!br.sid)
        ctr->beacon_sessions++;
    struct buf b = {0};
    buf_printf(&b, "{\"sid\":\"%s\",\"every_s\":%d,\"window_s\":%d,\"new\":%s}", tok,
               BEACON_EVERY_S, a->cfg->session_window_s, rc == 1 ? "true" : "false");
    conn_respond_doc(c, 0, "application/json", b.data, b.len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: no-store");
    buf_free(&b);
}
