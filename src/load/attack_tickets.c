/*
 * load/attack_tickets: "tickets", --count probes in all at --rate, each a chain of requests on
 * one slot (one connection at a time):
 *
 *   JOIN ──ticket──► FORGED ──► EXPIRED (with --ticket-expired) ──► EARLY (if admit_at is more
 *    │                                 than 500 ms away) ──► wait for admit_at ──► GENUINE
 *    └──"ticket": null──► OPEN (the stream without a ticket)
 *
 * GET /join/MOUNT gives a waiting-room ticket; then the stream with the ticket's signature
 * altered (expect 403), with a ticket known to be expired (403), with the genuine one before
 * its admit time (425 or 403), and with the genuine one from its admit time on, until its
 * first audio page. A request that ends queues its slot; the loop's before-sleep hook moves
 * the probe on (never from inside the ending callback: the next request reuses the slot).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "load/attack_int.h"
#include "load/listen.h"

#define JOIN_BODY_MAX 4096 /* a longer /join answer is unparsable */
/* an early try needs admit_at this far ahead (the server forgives 250 ms of skew) */
#define EARLY_MARGIN_US 500000

int attack_forge_ticket(const char *t, char *out, size_t cap)
{
    size_t len = strlen(t);
    if (len == 0 || len + 1 > cap)
        return -1;
    memcpy(out, t, len + 1);
    const char *dot = strrchr(t, '.');
    size_t sig = dot && dot[1] ? (size_t)(dot - t) + 1 : 0;
    size_t i = sig + (len - sig) / 2;
    char c = out[i];
    if (c >= 'A' && c <= 'Z')
        out[i] = c == 'Z' ? 'A' : (char)(c + 1);
    else if (c >= 'a' && c <= 'z')
        out[i] = c == 'z' ? 'a' : (char)(c + 1);
    else if (c >= '0' && c <= '9')
        out[i] = c == '9' ? '0' : (char)(c + 1);
    else
        out[i] = c == 'A' ? 'B' : 'A';
    return 0;
}

/* A request path is sent as is: printable ASCII without spaces, or it is not used. */
static int path_ok(const char *p)
{
    if (!p || p[0] != '/')
        return 0;
    for (; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return 0;
    return 1;
}

/* Builds the request of tickets kind <kind> for probe <p> in w->scratch. Returns its length, or
 * 0 if it cannot be made. */
static uint32_t ticket_request(struct atk_worker *w, const struct atk_probe *p, int kind)
{
    const struct load_url *u = &w->o->url;
    char target[LOAD_URL_MAX_PATH + 3 * ATTACK_TICKET_MAX + 16];
    char enc[3 * ATTACK_TICKET_MAX + 1];
    char forged[ATTACK_TICKET_MAX + 1];
    switch (kind) {
    case ATTACK_TK_JOIN:
        snprintf(target, sizeof(target), "/join%s", u->path);
        break;
    case ATTACK_TK_OPEN:
        snprintf(target, sizeof(target), "%s", u->path);
        break;
    case ATTACK_TK_FORGED:
        if (!p->ticket || attack_forge_ticket(p->ticket, forged, sizeof(forged)) < 0 ||
            atk_pct_encode(forged, enc, sizeof(enc)) < 0)
            return 0;
        snprintf(target, sizeof(target), "%s?ticket=%s", u->path, enc);
        break;
    case ATTACK_TK_EXPIRED:
        if (!w->o->ticket_expired || atk_pct_encode(w->o->ticket_expired, enc, sizeof(enc)) < 0)
            return 0;
        snprintf(target, sizeof(target), "%s?ticket=%s", u->path, enc);
        break;
    default: /* early, genuine: the server's own stream path when it gave a usable one */
        if (path_ok(p->stream)) {
            snprintf(target, sizeof(target), "%s", p->stream);
        } else {
            if (!p->ticket || atk_pct_encode(p->ticket, enc, sizeof(enc)) < 0)
                return 0;
            snprintf(target, sizeof(target), "%s?ticket=%s", u->path, enc);
        }
        break;
    }
    int n = snprintf(w->scratch, sizeof(w->scratch),
                     "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rostrum-load attack\r\n\r\n",
                     target, u->host, u->port);
    return n > 0 && (size_t)n < sizeof(w->scratch) ? (uint32_t)n : 0;
}

/* ---- the requests -----------------------------------------------------------------------------
 */

static void probe_start(struct atk_worker *w, uint32_t slot, int kind)
{
    atk_conn_open(w, &w->conns[slot], kind);
}

static void tickets_start(struct atk_worker *w, uint32_t slot)
{
    probe_start(w, slot, ATTACK_TK_JOIN);
}

static const void *tickets_chunk(struct atk_worker *w, struct atk_conn *c, uint32_t *len)
{
    *len = ticket_request(w, &w->probes[c - w->conns], c->kind);
    return w->scratch;
}

static void tickets_status(struct atk_worker *w, struct atk_conn *c)
{
    if (c->status >= 100 && c->status < ATTACK_HTTP_CODES)
        w->res.tk_http[c->kind][c->status]++;
}

static int tickets_head_end(struct atk_worker *w, struct atk_conn *c)
{
    if (c->kind == ATTACK_TK_JOIN) {
        if (c->status != 200) {
            atk_conn_finish(w, c, END_DONE);
            return -1;
        }
        struct atk_probe *p = &w->probes[c - w->conns];
        p->body = malloc(JOIN_BODY_MAX);
        if (!p->body)
            abort();
        p->body_len = 0;
        return 0;
    }
    /* a ticket that must be refused was taken: counted, no need to listen */
    if (c->status != 200 || c->kind == ATTACK_TK_FORGED || c->kind == ATTACK_TK_EXPIRED ||
        c->kind == ATTACK_TK_EARLY) {
        atk_conn_finish(w, c, END_DONE);
        return -1;
    }
    return 0;
}

/* Parses /join's answer in probe <p>; fills its ticket, stream and admit time. Returns 1 with a
 * ticket, 0 when admission is open (ticket null), -1 if unparsable. */
static int probe_parse_join(struct atk_worker *w, struct atk_probe *p, int64_t now)
{
    cJSON *j = p->body ? cJSON_ParseWithLength(p->body, p->body_len) : NULL;
    int rc = -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "ticket");
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "admit_at_ms");
    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(j, "position");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "stream");
    if (cJSON_IsObject(j) && cJSON_IsNull(t)) {
        rc = 0;
    } else if (cJSON_IsObject(j) && cJSON_IsString(t) && t->valuestring[0] &&
               strlen(t->valuestring) <= ATTACK_TICKET_MAX && cJSON_IsNumber(at)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t real_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        p->ticket = strdup(t->valuestring);
        if (cJSON_IsString(st) &&
            strlen(st->valuestring) < LOAD_URL_MAX_PATH + 3 * ATTACK_TICKET_MAX)
            p->stream = strdup(st->valuestring);
        if (!p->ticket || (cJSON_IsString(st) && !p->stream))
            abort();
        p->admit_us = now + ((int64_t)(at->valuedouble * 1000.0) - real_us);
        hist_add(&w->res.tk_wait_us, (uint64_t)(p->admit_us > now ? p->admit_us - now : 0));
        if (cJSON_IsNumber(pos) && pos->valuedouble > (double)w->res.tk_max_position &&
            pos->valuedouble < 1e15)
            w->res.tk_max_position = (uint64_t)pos->valuedouble;
        rc = 1;
    }
    cJSON_Delete(j);
    free(p->body);
    p->body = NULL;
    p->body_len = 0;
    return rc;
}

static int tickets_body(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n,
                        int64_t now)
{
    struct atk_probe *pr = &w->probes[c - w->conns];
    if (c->kind == ATTACK_TK_JOIN) {
        size_t room = JOIN_BODY_MAX - pr->body_len;
        if (n > room) {
            pr->body_len = JOIN_BODY_MAX + 1; /* marks it too long: unparsable */
            return 0;
        }
        if (pr->body && pr->body_len <= JOIN_BODY_MAX) {
            memcpy(pr->body + pr->body_len, p, n);
            pr->body_len += (uint32_t)n;
        }
        return 0;
    }
    if (c->kind != ATTACK_TK_GENUINE && c->kind != ATTACK_TK_OPEN)
        return 0;
    if (!atk_first_audio(w, c, p, n, now))
        return 0;
    w->res.tk_audio[c->kind]++;
    if (c->kind == ATTACK_TK_GENUINE)
        hist_add(&w->res.tk_late_us, (uint64_t)(now > pr->admit_us ? now - pr->admit_us : 0));
    atk_conn_finish(w, c, END_DONE);
    return -1;
}

static int tickets_closed(struct atk_worker *w, struct atk_conn *c, int how)
{
    if (c->kind != ATTACK_TK_JOIN || c->hstate != 5)
        return 0;
    /* /join's answer is whole at EOF (HTTP/1.0, Connection: close) */
    struct atk_probe *p = &w->probes[c - w->conns];
    int64_t now = load_now_us();
    int rc = p->body_len > JOIN_BODY_MAX ? -1 : probe_parse_join(w, p, now);
    if (rc < 0) {
        free(p->body);
        p->body = NULL;
        w->res.tk_unparsable++;
    } else if (rc == 0) {
        w->res.tk_open++;
        p->open = 1;
    } else {
        w->res.tk_tickets++;
    }
    atk_conn_finish(w, c, END_DONE);
    return 1;
}

static void tickets_finish(struct atk_worker *w, struct atk_conn *c, int how)
{
    if (!(c->flags & CF_STATUS))
        w->res.tk_none[c->kind]++;
    if (!w->ending)
        w->pending[w->npending++] = (uint32_t)(c - w->conns);
}

/* ---- the probe's chain ---------------------------------------------------------------------- */

/* The request of kind <kind_done> of the probe in <slot> is over: start the next, or wait. */
static void probe_next(struct atk_worker *w, uint32_t slot, int kind_done, int64_t now)
{
    struct atk_probe *p = &w->probes[slot];
    switch (kind_done) {
    case ATTACK_TK_JOIN:
        if (p->ticket) {
            p->joined_us = now;
            probe_start(w, slot, ATTACK_TK_FORGED);
        } else if (p->open) {
            /* admission open: the stream must work without a ticket */
            probe_start(w, slot, ATTACK_TK_OPEN);
        }
        return;
    case ATTACK_TK_FORGED:
        if (w->o->ticket_expired) {
            probe_start(w, slot, ATTACK_TK_EXPIRED);
            return;
        }
        /* no expired ticket to try */
        /* fall through */
    case ATTACK_TK_EXPIRED:
        if (now + EARLY_MARGIN_US < p->admit_us) {
            probe_start(w, slot, ATTACK_TK_EARLY);
            return;
        }
        w->res.tk_early_skipped++; /* too late for an early try */
        /* fall through */
    case ATTACK_TK_EARLY:
        if (p->admit_us > w->end_us) {
            w->res.tk_admit_after_end++;
            return;
        }
        if (now >= p->admit_us) {
            probe_start(w, slot, ATTACK_TK_GENUINE);
            return;
        }
        p->waiting = 1;
        w->waiting++;
        return;
    default:
        return;
    }
}

static void tickets_scan(struct atk_worker *w, uint32_t slot, int64_t now)
{
    struct atk_probe *p = &w->probes[slot];
    if (p->waiting && now >= p->admit_us) {
        p->waiting = 0;
        w->waiting--;
        probe_start(w, slot, ATTACK_TK_GENUINE);
    }
}

static void tickets_before_sleep(struct atk_worker *w)
{
    while (w->npending > 0 && !w->ending) {
        uint32_t slot = w->pending[--w->npending];
        probe_next(w, slot, w->conns[slot].kind, load_now_us());
    }
}

static void tickets_end(struct atk_worker *w)
{
    for (uint32_t i = 0; i < (uint32_t)w->started && i < w->n; i++) {
        if (w->probes[i].waiting) {
            w->probes[i].waiting = 0;
            w->res.tk_admit_after_end++;
        }
    }
}

static void tickets_setup(struct atk_worker *w)
{
    w->probes = calloc(w->n ? w->n : 1, sizeof(*w->probes));
    w->pending = calloc(w->n ? w->n : 1, sizeof(*w->pending));
    if (!w->probes || !w->pending)
        abort();
}

static void tickets_cleanup(struct atk_worker *w)
{
    for (uint32_t i = 0; i < w->n; i++) {
        free(w->probes[i].ticket);
        free(w->probes[i].stream);
        free(w->probes[i].body);
    }
    free(w->probes);
    free(w->pending);
}

const struct atk_mode atk_mode_tickets = {
    .timeout_start = 1,
    .setup = tickets_setup,
    .cleanup = tickets_cleanup,
    .start = tickets_start,
    .chunk = tickets_chunk,
    .status = tickets_status,
    .head_end = tickets_head_end,
    .body = tickets_body,
    .closed = tickets_closed,
    .scan = tickets_scan,
    .finish = tickets_finish,
    .before_sleep = tickets_before_sleep,
    .end = tickets_end,
};
