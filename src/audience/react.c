/*
 * react: listeners' reactions and raised hands, on the audience port (issue 12, item 3).
 *
 *   POST /react/<space>?r=<reaction>[&id=<listener id>]       200 (empty), no-store
 *   POST /hand/<space>?op=hello                               {"id": <listener id>, "hand": ..}
 *   POST /hand/<space>?op=up|keep|down&id=<listener id>[&name=..]  {"queued": true, "hand": ..}
 *   POST /hand/<space>?op=accept&id=<listener id>             {"token": <stage invite>}
 *
 * A reaction never reaches the main process: the worker that takes it adds one to its own
 * counter of (slot, reaction) in the shared memory (shared.h, shared_worker.reactions), and the
 * main process sums the workers' counters once a second into the space's state document
 * (stage/hands.c), which every listener polls and a CDN can cache. The cost of a click is one
 * parse, two bucket takes and an increment.
 *
 * A listener id is a token (token.h, TOKEN_LISTENER) issued to an address: the space, an
 * expiry (REACT_ID_S), 64 random bits. Checking it is one HMAC and no lookup; a forged one,
 * one expired, of another space or from another address is refused (403, counted).
 *
 * Bounds: reactions and hand requests come out of two token buckets, the listener id's
 * (react-per-s, burst 2x) and the address's (react-ip-per-s, burst 2x), kept in a table of
 * REACT_BUCKETS per worker, direct-mapped: a key whose entry another key used in the last
 * REACT_IDLE_MS shares that bucket (counted) rather than get a fresh one, so a full table only
 * makes limits stricter. A listener's connections may land on any worker (SO_REUSEPORT), so
 * the limit a listener sees is at most the number of workers times react-per-s. Hands go to
 * the main process through each worker's bounded queue (SHARED_HAND_QUEUE; full: 503), and a
 * space holds at most max-hands (as the main process last published; past it, "up" gets 503;
 * "keep", which only refreshes a hand already raised and never adds one, still passes).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audience/audience.h"
#include "http/request.h"
#include "token/token.h"
#include "util/log.h"
#include "util/utf8.h"

#define REACT_BUCKETS 8192
#define REACT_IDLE_MS 10000
#define REACT_ID_S (6 * 3600) /* a listener id lasts an evening */
#define REACT_INVITE_S 600    /* the stage token an invited hand gets */

#define react_names shared_reaction_names
static const char *const op_names[] = {[REACT_OP_HELLO] = "hello",
                                       [REACT_OP_UP] = "up",
                                       [REACT_OP_DOWN] = "down",
                                       [REACT_OP_ACCEPT] = "accept",
                                       [REACT_OP_KEEP] = "keep"};

static int id_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes a form value (%XX, '+' for a space) into <out> (SHARED_HAND_NAME). Returns 0, or -1
 * if it is malformed, too long, not UTF-8 or has a control character. */
static int decode_name(const char *v, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hexval((unsigned char)v[i + 1]), lo = hexval((unsigned char)v[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (ch < 0x20 || ch == 0x7f || o + 1 >= SHARED_HAND_NAME)
            return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    if (!utf8_valid(out, o))
        return -1;
    /* C1 controls (U+0080-U+009F, UTF-8 C2 80-9F) are refused too */
    for (size_t i = 0; i + 1 < o; i++)
        if ((unsigned char)out[i] == 0xc2 && (unsigned char)out[i + 1] < 0xa0)
            return -1;
    return 0;
}

int react_parse(const char *q, size_t len, struct react_req *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = -1;
    int seen_name = 0;
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(q + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - q) : len;
        const char *eq = memchr(q + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - (q + i)) : end - i;
        const char *k = q + i, *v = eq ? eq + 1 : q + end;
        size_t vlen = end - (size_t)(v - q);
        if (klen == 1 && k[0] == 'r') {
            if (!eq || out->kind >= 0)
                return -1;
            for (int r = 0; r < SHARED_REACTIONS; r++)
                if (strlen(react_names[r]) == vlen && memcmp(react_names[r], v, vlen) == 0)
                    out->kind = r;
            if (out->kind < 0)
                return -1;
        } else if (klen == 2 && memcmp(k, "op", 2) == 0) {
            if (!eq || out->op)
                return -1;
            for (int o = REACT_OP_HELLO; o <= REACT_OP_KEEP; o++)
                if (strlen(op_names[o]) == vlen && memcmp(op_names[o], v, vlen) == 0)
                    out->op = o;
            if (!out->op)
                return -1;
        } else if (klen == 2 && memcmp(k, "id", 2) == 0) {
            if (!eq || out->id || vlen == 0 || vlen >= TOKEN_MAX)
                return -1;
            for (size_t j = 0; j < vlen; j++)
                if (!id_char((unsigned char)v[j]))
                    return -1;
            out->id = v;
            out->id_len = vlen;
        } else if (klen == 4 && memcmp(k, "name", 4) == 0) {
            if (!eq || seen_name || decode_name(v, vlen, out->name) < 0)
                return -1;
            seen_name = 1;
        }
        /* anything else (a cache buster) is ignored */
        i = end + 1;
    }
    return (int)len;
}

/* ---- rate buckets ------------------------------------------------------------------------ */

struct react_bucket {
    uint64_t key;
    struct bucket b;
};
static struct react_bucket buckets[REACT_BUCKETS]; /* this process's */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Takes a token from <key>'s bucket. Returns 1 if taken. */
static int react_take(struct audience *a, uint64_t key, int rate)
{
    struct react_bucket *e = &buckets[mix64(key) % REACT_BUCKETS];
    int64_t now = a->loop->now_ms;
    if (e->key != key) {
        if (e->key && now - e->b.last_ms < REACT_IDLE_MS) {
            a->me->c.react_buckets_shared++; /* busy: share it (stricter, never looser) */
        } else {
            e->key = key;
            e->b = (struct bucket){.tokens = 2.0 * rate, .last_ms = now};
        }
    }
    return bucket_take(&e->b, rate, 2.0 * rate, now, NULL);
}

static uint64_t addr_hash(const struct addr_key *k)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < sizeof(k->b); i++)
        h = mix64(h ^ k->b[i]);
    return h | 1; /* never 0 (a free entry) */
}

/* ---- routes ------------------------------------------------------------------------------ */

static void react_refuse(struct conn *c, int status, const char *msg)
{
    conn_error(c, status,
               status == 429 ? "Retry-After: 1\r\nCache-Control: no-store\r\n"
                               "Access-Control-Allow-Origin: *"
                             : "Cache-Control: no-store\r\nAccess-Control-Allow-Origin: *",
               msg);
}

static void respond_json(struct conn *c, const struct buf *b)
{
    conn_respond_doc(c, 0, "application/json", b->data, b->len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: no-store");
}

void react_route(struct conn *c, const struct http_request *req, const char *path, int slot)
{
    struct audience *a = audience_of(c);
    struct shared_counters *ctr = &a->me->c;
    int hand = strncmp(path, "/hand/", 6) == 0;
    const char *mount = path + (hand ? 6 : 7);
    struct react_req rq;
    if (react_parse(req->query, req->query_len, &rq) < 0 || (hand ? !rq.op : rq.kind < 0) ||
        (hand && rq.op != REACT_OP_HELLO && !rq.id)) {
        ctr->refused_react_bad++;
        react_refuse(c, 400,
                     hand ? "Bad hand request: ?op=hello|up|keep|down|accept&id=<listener id>"
                          : "Bad reaction: ?r=clap|heart|laugh|wow|fire|up[&id=<listener id>]");
        return;
    }
    if (slot < 0 || !shared_dbuf_gen(&a->sh->spaces[slot].doc_hdr)) {
        react_refuse(c, 404, "No such stage space"); /* a plain mount has no state document */
        return;
    }
    struct addr_key key;
    int known;
    audience_client(c, req, &key, &known);
    if (!known) {
        react_refuse(c, 400, "No client address");
        return;
    }
    struct token t;
    if (rq.id) { /* one HMAC before anything else */
        const char *why;
        if (token_check_bound(a->secret, TOKEN_LISTENER, rq.id, rq.id_len, time(NULL), mount,
                              key.b, &t, &why) < 0) {
            ctr->refused_react_id++;
            LOG_RATELIMITED(LOG_INFO, "react", "#%llu %s: /%s refused: %s",
                            (unsigned long long)c->id, c->peer, mount, why);
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "Bad or expired listener id (%s): get a new one with "
                     "POST /hand/<space>?op=hello",
                     why);
            react_refuse(c, 403, msg);
            return;
        }
    }
    if (!react_take(a, addr_hash(&key), a->cfg->react_ip_per_s)) {
        ctr->refused_react_ip++;
        react_refuse(c, 429, "Too many reactions from your address");
        return;
    }
    if (rq.id && !react_take(a, (t.id & ~1ULL) | 2 /* even: never an address's key */,
                             a->cfg->react_per_s)) {
        ctr->refused_react_rate++;
        react_refuse(c, 429, "Too many reactions: slow down");
        return;
    }
    struct shared_space *ss = &a->sh->spaces[slot];
    struct buf b = {0};
    if (!hand) {
        __atomic_fetch_add(&a->me->reactions[slot][rq.kind], 1, __ATOMIC_RELAXED);
        ctr->reactions++;
        conn_respond_doc(c, 0, "text/plain", "", 0,
                         "Access-Control-Allow-Origin: *\r\nCache-Control: no-store");
        return;
    }
    if (rq.op == REACT_OP_HELLO) {
        t = (struct token){.purpose = TOKEN_LISTENER, .expiry = time(NULL) + REACT_ID_S};
        snprintf(t.space, sizeof(t.space), "%.63s", mount);
        memcpy(t.addr, key.b, sizeof(t.addr));
        char tok[TOKEN_MAX];
        if (token_mint(a->secret, &t, tok, sizeof(tok)) < 0) {
            react_refuse(c, 500, "Could not make a listener id");
            return;
        }
        ctr->listener_ids++;
        buf_printf(&b, "{\"id\":\"%s\",\"hand\":\"%016llx\",\"ttl_s\":%d}", tok,
                   (unsigned long long)t.id, a->cfg->hand_ttl_s);
    } else if (rq.op == REACT_OP_ACCEPT) {
        int invited = 0;
        for (int i = 0; i < SHARED_HAND_INVITES; i++)
            invited |= SHM_GET(ss->hand_invited[i]) == t.id;
        if (!invited) {
            react_refuse(c, 404, "The host has not invited this hand (or took it back)");
            return;
        }
        struct token it = {.purpose = TOKEN_STAGE, .expiry = time(NULL) + REACT_INVITE_S};
        snprintf(it.space, sizeof(it.space), "%.63s", mount);
        snprintf(it.role, sizeof(it.role), "speaker");
        char tok[TOKEN_MAX];
        if (token_mint(a->secret, &it, tok, sizeof(tok)) < 0) {
            react_refuse(c, 500, "Could not make an invite");
            return;
        }
        ctr->hand_invites_taken++;
        buf_printf(&b, "{\"token\":\"%s\",\"role\":\"speaker\"}", tok);
    } else {
        if (rq.op == REACT_OP_UP && SHM_GET(ss->hands_n) >= (uint32_t)a->cfg->max_hands) {
            ctr->refused_hands_full++;
            react_refuse(c, 503, "The host has as many raised hands as it can list: try later");
            return;
        }
        struct shared_hand_event e = {.id = t.id,
                                      .at_ms = a->loop->now_ms,
                                      .slot_gen = SHM_GET(ss->gen),
                                      .slot = (uint16_t)slot,
                                      .op = (uint8_t)(rq.op == REACT_OP_UP     ? HAND_UP
                                                      : rq.op == REACT_OP_KEEP ? HAND_KEEP
                                                                               : HAND_DOWN)};
        memcpy(e.name, rq.name, sizeof(e.name));
        if (shared_hand_push(&a->me->hands, &e) < 0) {
            ctr->refused_hand_queue++;
            react_refuse(c, 503, "Too many hands at once: try again in a second");
            return;
        }
        ctr->hand_events++;
        buf_printf(&b, "{\"queued\":true,\"hand\":\"%016llx\",\"ttl_s\":%d}",
                   (unsigned long long)t.id, a->cfg->hand_ttl_s);
    }
    respond_json(c, &b);
    buf_free(&b);
}

static void counter(struct buf *b, const char *name, const char *help, const char *label,
                    const char *const *values, const uint64_t *v, int n)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int i = 0; i < n; i++) {
        if (label)
            buf_printf(b, "%s{%s=\"%s\"} %llu\n", name, label, values[i], (unsigned long long)v[i]);
        else
            buf_printf(b, "%s %llu\n", name, (unsigned long long)v[i]);
    }
}

void react_metrics(const struct shared *sh, const struct shared_counters *st, struct buf *b)
{
    const struct shared_main *m = &sh->main;
    counter(b, "rostrum_reactions_total", "Reactions counted (all spaces).", NULL, NULL,
            &st->reactions, 1);
    static const char *const why[] = {"rate_per_listener", "rate_per_ip",     "bad_request",
                                      "bad_listener_id",   "hand_queue_full", "hands_full"};
    const uint64_t refused[] = {st->refused_react_rate, st->refused_react_ip,
                                st->refused_react_bad,  st->refused_react_id,
                                st->refused_hand_queue, st->refused_hands_full};
    counter(b, "rostrum_reactions_refused_total", "Reaction and hand requests refused, by reason.",
            "reason", why, refused, 6);
    buf_puts(b, "# HELP rostrum_worker_reactions_total Reactions counted, by worker process.\n"
                "# TYPE rostrum_worker_reactions_total counter\n");
    for (uint32_t w = 0; w < sh->nworkers; w++)
        buf_printf(b, "rostrum_worker_reactions_total{worker=\"%u\"} %llu\n", w,
                   (unsigned long long)sh->workers[w].c.reactions);
    counter(b, "rostrum_react_buckets_shared_total",
            "Rate buckets two keys shared (the worker's bucket table was busy).", NULL, NULL,
            &st->react_buckets_shared, 1);
    counter(b, "rostrum_listener_ids_total", "Listener ids issued (op=hello).", NULL, NULL,
            &st->listener_ids, 1);
    counter(b, "rostrum_hand_events_total", "Hands raised or lowered, queued by the workers.", NULL,
            NULL, &st->hand_events, 1);
    counter(b, "rostrum_hand_invites_taken_total", "Stage invites handed to invited hands.", NULL,
            NULL, &st->hand_invites_taken, 1);
    static const char *const what[] = {"raised",    "dropped_full", "lowered",
                                       "dismissed", "expired",      "invited"};
    const uint64_t hands[] = {m->hands_raised,    m->hands_dropped, m->hands_lowered,
                              m->hands_dismissed, m->hands_expired, m->hands_invited};
    counter(b, "rostrum_hands_total", "Raised hands in the spaces' lists, by what happened.",
            "event", what, hands, 6);
}
