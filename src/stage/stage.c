#include "stage/stage.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <opus/opus.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "mixer/mixer.h"
#include "net/net.h"
#include "ogg/mux.h"
#include "space/space.h"
#include "stage/control.h"
#include "stage/hands.h"
#include "stage/schedule.h"
#include "token/token.h"
#include "util/check.h"
#include "util/log.h"
#include "util/utf8.h"
#include "ws/ws.h"

#define STAGE_FRAME_MS 20
#define STAGE_STATE_MIN_MS 200      /* state broadcasts at most 5 times a second */
#define STAGE_STATE_LISTENER_MS 1000 /* members off stage get it at most once a second */
#define STAGE_MAX_MEMBERS 2000      /* control connections per space (listeners included) */
#define STAGE_RETURN_QUEUE 16384    /* bytes of return audio that may wait for a slow speaker */
#define STAGE_SNDBUF 16384          /* a member's kernel send buffer (the kernel doubles it) */
#define STAGE_STUCK_MS 10000        /* output waiting, the socket took nothing: not reading */
#define STAGE_BITRATE 48000
#define STAGE_MAX_REVOKED 1024      /* token ids revoked by removals, kept until they expire */
#define STAGE_STATE_REQUESTS 50     /* requests the state document lists; the rest are "more" */
#define STAGE_STATE_TAIL 96         /* room kept for the document's closing fields */
#define STAGE_STATE_KEEP (STAGE_STATE_TAIL + HANDS_DOC_RESERVE) /* and for reactions, hands */

struct member {
    struct list_node node;
    struct stage *st;
    struct conn *conn;
    struct ws *ws;
    uint32_t id;
    int role;
    int input; /* mixer input, -1 when not on stage */
    uint8_t muted, requested, pcm, talking;
    uint8_t blocked;          /* the last flush left output waiting */
    const char *close_reason; /* set in a callback: close once wslay has returned */
    int64_t last_rx_ms;       /* last message from the client: idle speakers are dropped */
    uint16_t close_code;
    uint64_t token_id;    /* the token that seated it; 0: the host key or no token */
    int64_t token_expiry;
    uint8_t token_once;   /* a single-use invite: nobody else may use it while this one is here */
    uint32_t state_seq;       /* the state document it was last sent (stage.state_seq) */
    int64_t state_ms;         /* and when */
    int64_t out_ok_ms;        /* last time its output was all out or its socket took bytes */
    uint64_t sent_seen;       /* ws_bytes_sent() then */
    struct loop_post reread;  /* read again next turn: TLS plaintext left at the budget */
    char name[48];
};

/* A member's connection holds a pointer to it (in its conn's priv), NULL once it left. */
struct member_ref {
    struct member *m;
};
CONN_PRIV_FITS(struct member_ref);
#define MEMBER(c) (CONN_PRIV(c, struct member_ref)->m)

static const struct conn_ops member_ops = {"member", NULL, NULL};

/* A token id that may seat nobody any more, until the token itself expires. */
struct revoked {
    uint64_t id;
    int64_t expiry;
};

struct stage {
    struct space *sp;
    struct spaces *host;
    struct mixer *mixer;
    struct list_node members;
    uint32_t nmembers;
    uint32_t next_id;
    struct loop_timer clock;
    int64_t next_tick_ms;
    int64_t last_state_ms;
    int64_t last_idle_check_ms;
    int64_t empty_since_ms; /* no member and no source since; 0 while someone is here */
    int state_dirty;
    int end_requested;
    struct buf state_msg;   /* the latest {"type":"state",...}: the only one members get */
    uint32_t state_seq;     /* bumped with each new document */
    int64_t last_deliver_ms;
    char title[128];
    /* Removal: the removed member's token is revoked here, so that they cannot rejoin with it.
     * Tokens are stateless, so this list is what "revoked" means; bounded by the token lifetime
     * (24 h: an entry goes once its token has expired) and by STAGE_MAX_REVOKED (past that,
     * the entry nearest its expiry is dropped, with a warning). */
    struct revoked revoked[STAGE_MAX_REVOKED];
    uint32_t nrevoked;
    uint8_t quiescing; /* an upgrade is near: nothing new goes to members */
    struct hands *hands; /* issue 12: reactions and raised hands (not carried by an upgrade) */
    struct schedule sched; /* issue 12: a lobby until live (always live if not scheduled) */
};

struct hands *stage_hands(struct stage *st)
{
    return st->hands;
}

void stage_state_changed(struct stage *st)
{
    st->state_dirty = 1;
}
_Static_assert(STAGE_MAX_REVOKED == STAGE_RECORD_REVOKED, "the record holds every revocation");

#define role_names role_name_table

static const struct space_sink stage_sink;
static void member_on_io(struct loop *loop, struct io *io, uint32_t events);
static void stage_holding(struct stage *st);

static int count_role(const struct stage *st, int role)
{
    int n = 0;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, (struct list_node *)&st->members)
    {
        n += list_entry(it, struct member, node)->role == role;
    }
    return n;
}

static int role_room(const struct stage *st, int role)
{
    const struct config *cfg = st->host->cfg;
    int max = role == ROLE_HOST ? 1 : role == ROLE_COHOST ? cfg->max_cohosts
              : role == ROLE_SPEAKER ? cfg->max_speakers : STAGE_MAX_MEMBERS;
    return count_role(st, role) < max;
}

int stage_place(const struct stage *st, int want, int by_key, const char **why)
{
    if (!by_key && (want < ROLE_LISTENER || want >= ROLES)) {
        *why = "the token names no role on this stage";
        return -1;
    }
    if (st->nmembers >= STAGE_MAX_MEMBERS) {
        *why = "too many connections to this space";
        return -1;
    }
    if (by_key) {
        for (int r = ROLE_HOST; r >= ROLE_SPEAKER; r--)
            if (role_room(st, r))
                return r;
        *why = "the stage is full";
        return -1;
    }
    if (!role_room(st, want)) {
        *why = want == ROLE_HOST ? "the host is already here" : "the stage is full";
        return -1;
    }
    return want;
}

/* ---- sending ----------------------------------------------------------------------------- */

/* Marks <m> to be closed with <code> for a bound (counted by <why>); the close happens
 * outside wslay's callbacks (member_drop). */
static void member_bound(struct member *m, enum ws_close_why why, uint16_t code,
                         const char *reason)
{
    if (m->close_reason)
        return;
    m->close_reason = reason;
    m->close_code = code;
    m->st->host->sh->main.ws_closes[why]++;
}

static void member_flush(struct member *m)
{
    int rc = ws_flush(m->ws);
    if (rc < 0) {
        if (!m->close_reason)
            m->close_reason = "write failed";
        return;
    }
    uint64_t sent = ws_bytes_sent(m->ws);
    if (rc == 0 || sent != m->sent_seen) {
        m->sent_seen = sent;
        m->out_ok_ms = m->st->host->loop->now_ms;
    }
    m->blocked = (uint8_t)rc;
    loop_mod(m->st->host->loop, &m->conn->io, EPOLLIN | EPOLLRDHUP | (rc ? EPOLLOUT : 0));
}

/* Queues text <s> for <m>; a member whose queue is over its bound is closed (1008). */
static void member_send_text(struct member *m, const char *s, size_t len)
{
    if (ws_send_text(m->ws, s, len) == -2)
        member_bound(m, WS_CLOSE_QUEUE, 1008, "not reading: send queue over its bound");
    member_flush(m);
}

static void member_send_json(struct member *m, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (s) {
        member_send_text(m, s, strlen(s));
        free(s);
    } else {
        member_flush(m);
    }
}

static void member_error(struct member *m, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "error");
    cJSON_AddStringToObject(j, "error", msg);
    member_send_json(m, j);
    cJSON_Delete(j);
}

/* Appends member <m> as an entry of the state document: with role, muted and talking if
 * <on_stage>. Names are valid UTF-8 without controls (stage_join), so it escapes only '"'
 * and '\\': at most 2 x 47 bytes. */
static void state_member(struct buf *b, const struct member *m, int on_stage)
{
    buf_printf(b, "{\"id\":%u,\"name\":", m->id);
    buf_json_str(b, m->name, strlen(m->name));
    if (on_stage)
        buf_printf(b, ",\"role\":\"%s\",\"muted\":%s,\"talking\":%s", role_names[m->role],
                   m->muted ? "true" : "false", m->talking ? "true" : "false");
    buf_puts(b, "}");
}

/* The document is bounded by construction: an entry goes in only if the document, with its
 * tail, still fits SHARED_STATE_MAX (what the audience processes can serve). Requests past
 * STAGE_STATE_REQUESTS or past the budget are counted in "more". The stage itself (at most 25
 * members by the config's limits, under 5 KiB) always fits; if it ever did not, the members
 * left out are logged. */
void stage_state_json(const struct stage *st, struct buf *out)
{
    size_t start = out->len;
    unsigned listeners = 0, nreq = 0, more = 0, left_out = 0, n = 0;
    struct buf e = {0};
    buf_puts(out, "{\"space\":");
    buf_json_str(out, st->sp->ss->mount, strlen(st->sp->ss->mount));
    buf_puts(out, ",\"title\":");
    buf_json_str(out, st->title, strlen(st->title));
    schedule_state_json(&st->sched, (int64_t)time(NULL), out);
    buf_puts(out, ",\"stage\":[");
    /* host first, then co-hosts, then speakers; then the listeners' requests */
    for (int r = ROLE_HOST; r >= ROLE_LISTENER; r--) {
        if (r == ROLE_LISTENER) {
            buf_puts(out, "],\"requests\":[");
            n = 0;
        }
        struct list_node *it, *tmp;
        list_for_each_safe(it, tmp, (struct list_node *)&st->members)
        {
            const struct member *m = list_entry(it, struct member, node);
            if (m->role != r)
                continue;
            if (r == ROLE_LISTENER && !m->requested) {
                listeners++;
                continue;
            }
            listeners += r == ROLE_LISTENER;
            e.len = 0;
            state_member(&e, m, r != ROLE_LISTENER);
            int fits = out->len - start + 1 + e.len + STAGE_STATE_KEEP <= SHARED_STATE_MAX;
            if (r == ROLE_LISTENER && (!fits || nreq >= STAGE_STATE_REQUESTS)) {
                more++;
                continue;
            }
            if (!fits) {
                left_out++;
                continue;
            }
            if (n++)
                buf_puts(out, ",");
            buf_append(out, e.data, e.len);
            nreq += r == ROLE_LISTENER;
        }
    }
    buf_puts(out, "]");
    if (more)
        buf_printf(out, ",\"more\":%u", more);
    hands_json(st->hands, st->host->loop->now_ms, out, start, STAGE_STATE_TAIL);
    buf_printf(out, ",\"control_listeners\":%u}", listeners);
    buf_free(&e);
    if (left_out)
        LOG_RATELIMITED(LOG_ERROR, "stage", "/%s: %u on stage left out of the state document",
                        st->sp->ss->mount, left_out);
}

/* Sends the latest state document to every member that lacks it and may have it now. The
 * feed is coalesced: a member with output still waiting gets nothing more queued behind it
 * (it gets the then-latest document once its queue is empty), and members off stage get at
 * most one document a second. So a member that does not read holds one document at most. */
static void stage_deliver_state(struct stage *st)
{
    int64_t now = st->host->loop->now_ms;
    if (st->quiescing)
        return;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &st->members)
    {
        struct member *m = list_entry(it, struct member, node);
        if (m->close_reason || m->state_seq == st->state_seq || m->blocked ||
            ws_queued(m->ws) > 0)
            continue;
        if (m->role == ROLE_LISTENER && m->state_ms &&
            now - m->state_ms < STAGE_STATE_LISTENER_MS)
            continue;
        m->state_seq = st->state_seq;
        m->state_ms = now;
        member_send_text(m, st->state_msg.data, st->state_msg.len);
    }
    st->last_deliver_ms = now;
}

static void stage_publish_state(struct stage *st)
{
    struct buf b = {0};
    stage_state_json(st, &b);
    space_set_state(st->sp, b.data, b.len);
    /* members get it as a message of type "state" */
    st->state_msg.len = 0;
    buf_puts(&st->state_msg, "{\"type\":\"state\",\"state\":");
    buf_append(&st->state_msg, b.data, b.len);
    buf_puts(&st->state_msg, "}");
    buf_free(&b);
    st->state_seq++;
    st->state_dirty = 0;
    st->last_state_ms = st->host->loop->now_ms;
    stage_deliver_state(st);
}

/* ---- membership -------------------------------------------------------------------------- */

static void member_set_role(struct member *m, int role)
{
    struct stage *st = m->st;
    if ((m->role == ROLE_LISTENER) != (role == ROLE_LISTENER)) {
        if (role == ROLE_LISTENER)
            st->host->sh->main.ws_off_stage++;
        else
            st->host->sh->main.ws_off_stage--;
    }
    if (role != ROLE_LISTENER && m->input < 0) {
        m->input = mixer_input_add(st->mixer);
        mixer_input_set_muted(st->mixer, m->input, m->muted);
    } else if (role == ROLE_LISTENER && m->input >= 0) {
        mixer_input_remove(st->mixer, m->input);
        m->input = -1;
    }
    m->role = role;
    m->requested = 0;
    st->state_dirty = 1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "role");
    cJSON_AddStringToObject(j, "role", role_names[role]);
    member_send_json(m, j);
    cJSON_Delete(j);
}

/* Removes <m> now: off the mixer, off the stage, its connection closed. */
static void member_leave(struct member *m, const char *why)
{
    struct stage *st = m->st;
    log_info("stage", "/%s: %s \"%s\" (#%u) left: %s", st->sp->ss->mount, role_names[m->role],
             m->name, m->id, why);
    if (m->input >= 0)
        mixer_input_remove(st->mixer, m->input);
    list_unlink(&m->node);
    st->nmembers--;
    st->host->sh->main.ws_members--;
    if (m->role == ROLE_LISTENER)
        st->host->sh->main.ws_off_stage--;
    st->state_dirty = 1;
    ws_flush(m->ws); /* a queued close frame, if any */
    MEMBER(m->conn) = NULL;
    /* Lingering close: closing with the speaker's audio unread would reset the connection
     * and could destroy the close frame before the peer reads it (RFC 6455 section 7.1.1).
     * Not for a peer that floods us: draining it would keep paying for its flood. */
    if (m->conn->dead || ws_over_rate(m->ws))
        conn_close(m->conn);
    else
        conn_linger(m->conn);
    loop_unpost(&m->reread);
    ws_free(m->ws);
    free(m);
}

/* Closes <m> for the reason a callback or a bound set. */
static void member_drop(struct member *m)
{
    if (m->close_code)
        ws_close(m->ws, m->close_code, m->close_reason);
    member_leave(m, m->close_reason);
}

static struct member *member_find(struct stage *st, uint32_t id)
{
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &st->members)
    {
        struct member *m = list_entry(it, struct member, node);
        if (m->id == id)
            return m;
    }
    return NULL;
}

/* ---- tokens: revocation and single use ---------------------------------------------------- */

static void stage_revoke(struct stage *st, uint64_t id, int64_t expiry)
{
    int64_t now = (int64_t)time(NULL);
    uint32_t keep = 0, soonest = 0;
    for (uint32_t i = 0; i < st->nrevoked; i++) {
        if (st->revoked[i].id == id)
            return;
        if (st->revoked[i].expiry >= now)
            st->revoked[keep++] = st->revoked[i];
    }
    st->nrevoked = keep;
    if (st->nrevoked == STAGE_MAX_REVOKED) {
        for (uint32_t i = 1; i < st->nrevoked; i++)
            if (st->revoked[i].expiry < st->revoked[soonest].expiry)
                soonest = i;
        log_warn("stage", "/%s: %d tokens revoked: forgetting the one nearest its expiry",
                 st->sp->ss->mount, STAGE_MAX_REVOKED);
        st->revoked[soonest] = st->revoked[--st->nrevoked];
    }
    st->revoked[st->nrevoked++] = (struct revoked){id, expiry};
}

const char *stage_token_refusal(const struct stage *st, const struct token *t)
{
    int64_t now = (int64_t)time(NULL);
    for (uint32_t i = 0; i < st->nrevoked; i++)
        if (st->revoked[i].id == t->id && st->revoked[i].expiry >= now)
            return "this token was revoked: its holder was removed from the stage";
    if (t->reusable)
        return NULL;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, (struct list_node *)&st->members)
    {
        const struct member *m = list_entry(it, struct member, node);
        if (m->token_once && m->token_id == t->id && !m->close_reason)
            return "this invite seats one person and is in use: ask the host for another";
    }
    return NULL;
}

/* ---- control messages -------------------------------------------------------------------- */

static int can_manage(const struct member *by, const struct member *target)
{
    if (by->role != ROLE_HOST && by->role != ROLE_COHOST)
        return 0;
    return target->role != ROLE_HOST || by == target;
}

static void control(struct member *m, const struct control *ctl)
{
    struct stage *st = m->st;
    struct member *t = ctl->has_id ? member_find(st, ctl->id) : NULL;

    switch (ctl->type) {
    case CTL_REQUEST:
    case CTL_CANCEL_REQUEST:
        if (m->role != ROLE_LISTENER)
            return member_error(m, "already on stage");
        m->requested = ctl->type == CTL_REQUEST;
        st->state_dirty = 1;
        return;
    case CTL_MUTE:
        if (!ctl->has_id)
            t = m;
        if (!t)
            return member_error(m, "no such member");
        if (t != m && !can_manage(m, t))
            return member_error(m, "not allowed");
        if (t->input < 0)
            return member_error(m, "not on stage");
        t->muted = (uint8_t)ctl->muted;
        mixer_input_set_muted(st->mixer, t->input, t->muted);
        st->state_dirty = 1;
        return;
    case CTL_PROMOTE: {
        int role = ctl->role < 0 ? ROLE_SPEAKER : ctl->role;
        if (!t || !can_manage(m, t))
            return member_error(m, t ? "not allowed" : "no such member");
        if (role != ROLE_SPEAKER && role != ROLE_COHOST)
            return member_error(m, "promote to speaker or cohost");
        if (role == ROLE_COHOST && m->role != ROLE_HOST)
            return member_error(m, "only the host makes co-hosts");
        if (t->role == role)
            return;
        if (!role_room(st, role))
            return member_error(m, "the stage is full");
        member_set_role(t, role);
        return;
    }
    case CTL_DEMOTE:
        if (!ctl->has_id)
            t = m;
        if (!t || (t != m && !can_manage(m, t)) || t->role == ROLE_HOST)
            return member_error(m, t ? "not allowed" : "no such member");
        member_set_role(t, ROLE_LISTENER);
        return;
    case CTL_REMOVE:
        if (!t || t == m || !can_manage(m, t))
            return member_error(m, t ? "not allowed" : "no such member");
        /* keep them out: their token seats nobody any more (a reusable link is revoked for
         * newcomers too; those already seated by it stay). The host key cannot be revoked. */
        if (t->token_id)
            stage_revoke(st, t->token_id, t->token_expiry);
        ws_close(t->ws, 4001, "removed");
        member_leave(t, "removed by the host");
        return;
    case CTL_GO_LIVE:
        if (m->role != ROLE_HOST && m->role != ROLE_COHOST)
            return member_error(m, "only the host or a co-host goes live");
        stage_go_live(st, role_names[m->role]);
        return;
    case CTL_END:
        if (m->role != ROLE_HOST && m->role != ROLE_COHOST)
            return member_error(m, "only the host or a co-host ends the space");
        st->end_requested = 1;
        return;
    case CTL_INVITE: {
        int role = ctl->role < 0 ? ROLE_SPEAKER : ctl->role;
        if (m->role != ROLE_HOST && m->role != ROLE_COHOST)
            return member_error(m, "not allowed");
        if (role > ROLE_COHOST || (role == ROLE_COHOST && m->role != ROLE_HOST))
            return member_error(m, "bad role");
        char tok[TOKEN_MAX];
        struct token it = {.purpose = TOKEN_STAGE, .expiry = (int64_t)time(NULL) + 24 * 3600,
                           .reusable = ctl->reusable};
        snprintf(it.space, sizeof(it.space), "%s", st->sp->ss->mount);
        snprintf(it.role, sizeof(it.role), "%s", role_names[role]);
        if (token_mint(st->host->secret, &it, tok, sizeof(tok)) < 0)
            return member_error(m, "could not make an invite");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "invite");
        cJSON_AddStringToObject(o, "role", role_names[role]);
        cJSON_AddStringToObject(o, "token", tok);
        cJSON_AddBoolToObject(o, "reusable", it.reusable);
        member_send_json(m, o);
        cJSON_Delete(o);
        return;
    }
    case CTL_INVITE_HAND:
    case CTL_DISMISS_HAND: {
        if (m->role != ROLE_HOST && m->role != ROLE_COHOST)
            return member_error(m, "not allowed");
        struct shared_main *mc = &st->host->sh->main;
        int rc = ctl->type == CTL_INVITE_HAND ? hands_invite(st->hands, st->sp->ss, ctl->hand)
                                              : hands_dismiss(st->hands, st->sp->ss, ctl->hand);
        if (rc < 0)
            return member_error(m, "no such raised hand");
        if (ctl->type == CTL_INVITE_HAND)
            mc->hands_invited++;
        else
            mc->hands_dismissed++;
        st->state_dirty = 1;
        return;
    }
    case CTL_FORMAT:
        m->pcm = (uint8_t)ctl->pcm;
        return;
    case CTL_PING: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "pong");
        member_send_json(m, o);
        cJSON_Delete(o);
        return;
    }
    case CTL_UNKNOWN:
        member_error(m, "unknown message type");
        return;
    }
}

static void member_on_text(void *arg, const uint8_t *msg, size_t len)
{
    struct member *m = arg;
    struct control ctl;
    m->last_rx_ms = m->st->host->loop->now_ms;
    if (m->close_reason)
        return;
    int rc = control_parse((const char *)msg, len, &ctl);
    if (rc == -2) {
        m->close_reason = "control message too large";
        m->close_code = 1009;
        return;
    }
    if (rc < 0) {
        m->close_reason = "malformed control message";
        m->close_code = 1007;
        return;
    }
    control(m, &ctl);
}

static void member_on_binary(void *arg, const uint8_t *msg, size_t len)
{
    struct member *m = arg;
    m->last_rx_ms = m->st->host->loop->now_ms;
    if (m->close_reason || m->input < 0)
        return; /* a listener's audio goes nowhere */
    if (m->pcm) {
        if (len % 2 || len / 2 > 5760)
            return;
        int16_t pcm[5760];
        memcpy(pcm, msg, len);
        mixer_input_push_pcm(m->st->mixer, m->input, pcm, (int)(len / 2));
    } else {
        mixer_input_push_opus(m->st->mixer, m->input, msg, len);
    }
}

static const struct ws_handler member_ws = {member_on_text, member_on_binary};

/* The ws transport of a member on a TLS connection <arg> (struct conn *). */
static long member_tls_recv(void *arg, uint8_t *buf, size_t len)
{
    return conn_recv(arg, buf, len);
}

static long member_tls_send(void *arg, const uint8_t *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return conn_writev(arg, &iov, buf ? 1 : 0);
}

static int member_tls_pending(void *arg)
{
    return conn_write_pending(arg);
}

static int member_tls_buffered(void *arg)
{
    return conn_read_buffered(arg);
}

void stage_join(struct stage *st, struct conn *c, int role, const char *name,
                const struct token *t)
{
    struct member *m = calloc(1, sizeof(*m));
    BUG_ON(!m);
    m->st = st;
    m->conn = c;
    m->id = ++st->next_id;
    m->input = -1;
    m->last_rx_ms = st->host->loop->now_ms;
    if (t) {
        m->token_id = t->id;
        m->token_expiry = t->expiry;
        m->token_once = (uint8_t)!t->reusable;
    }
    /* over TLS, the bytes go through the connection's seam */
    struct ws_io tls_io = {member_tls_recv, member_tls_send, c, member_tls_pending,
                           member_tls_buffered};
    m->ws = ws_new(c->io.fd, c->tls ? &tls_io : NULL, &member_ws, m);
    /* the name goes into JSON and every member's text frames: valid UTF-8, no controls */
    utf8_sanitize(m->name, sizeof(m->name), name, strlen(name), UTF8_NO_CONTROLS);
    if (!m->name[0])
        snprintf(m->name, sizeof(m->name), "%s", role_names[role]);
    m->out_ok_ms = st->host->loop->now_ms;
    /* A bounded kernel buffer, so a member that does not read is noticed (STAGE_STUCK_MS)
     * instead of the kernel autotuning megabytes for it. */
    int sndbuf = STAGE_SNDBUF;
    setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    st->host->sh->main.ws_members++;
    st->host->sh->main.ws_off_stage++; /* a listener until member_set_role below */
    list_insert_tail(&st->members, &m->node);
    st->nmembers++;
    conn_take(c, &member_ops);
    MEMBER(c) = m;
    c->io.cb = member_on_io;
    log_info("stage", "/%s: \"%s\" joined as %s (#%u, %s)", st->sp->ss->mount, m->name,
             role_names[role], m->id, c->peer);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "welcome");
    cJSON_AddNumberToObject(j, "id", m->id);
    cJSON_AddStringToObject(j, "role", role_names[role]);
    cJSON_AddStringToObject(j, "space", st->sp->ss->mount);
    cJSON_AddNumberToObject(j, "sample_rate", 48000);
    cJSON_AddNumberToObject(j, "frame_ms", STAGE_FRAME_MS);
    member_send_json(m, j);
    cJSON_Delete(j);
    if (role != ROLE_LISTENER)
        member_set_role(m, role);
    st->state_dirty = 1;
}

static void member_reread(struct loop *loop, struct loop_post *p)
{
    struct member *m = (struct member *)((char *)p - offsetof(struct member, reread));
    member_on_io(loop, &m->conn->io, EPOLLIN);
}

static void member_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    if (c->dead || !MEMBER(c))
        return;
    struct member *m = MEMBER(c);
    struct stage *st = m->st;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (ws_read(m->ws) < 0 && !m->close_reason) {
            m->close_reason = ws_error(m->ws);
            if (ws_over_rate(m->ws)) /* ws has queued the close (1008) */
                st->host->sh->main.ws_closes[WS_CLOSE_OVER_RATE]++;
        } else if (ws_read_more(m->ws)) {
            /* the budget ran out with plaintext inside OpenSSL and maybe none in the
             * socket: no event would come for it, so read again next turn */
            loop_post(loop, &m->reread, member_reread);
        }
    }
    if (st->end_requested) {
        space_end(st->sp, CLOSE_MOUNT_END); /* frees the stage and every member */
        return;
    }
    if (m->close_reason) {
        member_drop(m);
        return;
    }
    /* a pong wslay queued for a ping goes now; a member off stage gets no 20 ms flush */
    if ((events & EPOLLOUT) || (!m->blocked && ws_want_write(m->ws)))
        member_flush(m);
}

/* ---- the clock --------------------------------------------------------------------------- */

static void stage_tick(struct loop *loop, struct loop_timer *t)
{
    struct stage *st = (struct stage *)((char *)t - offsetof(struct stage, clock));
    /* Drift-free: due times advance by exactly 20 ms; after a long stall, resynchronise
     * instead of bursting. */
    int frames = 0;
    struct shared_main *fig = &st->host->sh->main;
    uint32_t speakers = 0, queued = 0;
    while (st->next_tick_ms <= loop->now_ms && frames < 5) {
        int len = 0;
        struct list_node *it, *tmp;
        /* the frame's cost for /metrics: mixing, encoding and queueing, per frame */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int late = loop->now_ms - st->next_tick_ms >= STAGE_FRAME_MS;
        speakers = queued = 0;
        if (!st->sched.live && (int64_t)time(NULL) >= st->sched.start_s)
            stage_go_live(st, "the start time");
        const unsigned char *prog = mixer_tick(st->mixer, &len);
        if (!st->sched.live) /* the lobby: listeners get silence, the stage its mix-minus */
            prog = schedule_lobby_packet(&st->sched, &len);
        if (prog && len > 0)
            space_on_packet(st->sp, prog, (size_t)len, 960);
        list_for_each_safe(it, tmp, &st->members)
        {
            struct member *m = list_entry(it, struct member, node);
            if (m->input < 0 || m->close_reason)
                continue;
            int talking = mixer_input_talking(st->mixer, m->input);
            if (talking != m->talking) {
                m->talking = (uint8_t)talking;
                st->state_dirty = 1;
            }
            int rlen = 0;
            const unsigned char *r = mixer_return_packet(st->mixer, m->input, &rlen);
            if (st->quiescing)
                r = NULL; /* an upgrade is near: the queue drains */
            if (r && rlen > 0 && ws_send_binary(m->ws, r, (size_t)rlen, STAGE_RETURN_QUEUE) < 0)
                fig->return_drops++;
            member_flush(m);
            speakers++;
            queued += (uint32_t)ws_queued(m->ws);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
        fig->mixer_frames++;
        fig->mixer_frame_ns += (uint64_t)ns;
        if ((uint32_t)(ns / 1000) > fig->mixer_frame_peak_us)
            fig->mixer_frame_peak_us = (uint32_t)(ns / 1000);
        if (late || ns > STAGE_FRAME_MS * 1000000LL)
            fig->mixer_overruns++;
        st->next_tick_ms += STAGE_FRAME_MS;
        frames++;
    }
    if (frames > 0) {
        st->sp->ss->stage_speakers = speakers;
        st->sp->ss->stage_queued_bytes = queued;
    }
    st->sp->ss->stage_members = st->nmembers;
    if (st->next_tick_ms <= loop->now_ms)
        st->next_tick_ms = loop->now_ms + STAGE_FRAME_MS;
    if (loop->now_ms - st->last_idle_check_ms >= 1000) {
        /* a client that sends nothing at all (no audio, no ping) is gone: the pages ping;
         * one whose socket takes nothing while output waits does not read */
        st->last_idle_check_ms = loop->now_ms;
        struct list_node *it, *tmp;
        list_for_each_safe(it, tmp, &st->members)
        {
            struct member *m = list_entry(it, struct member, node);
            if (m->close_reason)
                ; /* set outside its own event handler (a bound, a control message) */
            else if (loop->now_ms - m->last_rx_ms > st->host->cfg->speaker_idle_ms &&
                     net_readable_bytes(m->conn->io.fd) == 0) /* unread bytes (this process
                                                                * was stopped) are not idle */
                member_bound(m, WS_CLOSE_IDLE, 1001, "idle: sent nothing for too long");
            else if (m->blocked && loop->now_ms - m->out_ok_ms > STAGE_STUCK_MS)
                member_bound(m, WS_CLOSE_NOT_READING, 1008,
                             "not reading: its socket took nothing for 10 s");
            else
                continue;
            member_drop(m);
        }
        if (!st->sched.live)
            st->state_dirty = 1; /* the countdown */
        /* a space nobody is in (no member, no studio source) ends after stage-idle-end-ms;
         * a scheduled one waits for its start */
        if (st->nmembers > 0 || st->sp->source || !st->sched.live) {
            st->empty_since_ms = 0;
        } else if (!st->empty_since_ms) {
            st->empty_since_ms = loop->now_ms;
        } else if (loop->now_ms - st->empty_since_ms >= st->host->cfg->stage_idle_end_ms) {
            log_info("stage", "/%s: nobody here for %d ms, ending the space", st->sp->ss->mount,
                     st->host->cfg->stage_idle_end_ms);
            space_end(st->sp, CLOSE_MOUNT_END); /* frees <st>, its clock stopped */
            return;
        }
    }
    if (st->state_dirty && loop->now_ms - st->last_state_ms >= STAGE_STATE_MIN_MS)
        stage_publish_state(st);
    else if (loop->now_ms - st->last_deliver_ms >= STAGE_STATE_MIN_MS)
        stage_deliver_state(st);
    loop_timer_start(loop, &st->clock, st->next_tick_ms - loop_clock_ms(), stage_tick);
}

struct stage *stage_new(struct space *sp, const char *title)
{
    struct stage *st = calloc(1, sizeof(*st));
    BUG_ON(!st);
    st->sp = sp;
    st->host = sp->host;
    st->mixer = mixer_new(STAGE_BITRATE);
    list_init(&st->members);
    st->hands = malloc(sizeof(*st->hands));
    BUG_ON(!st->hands);
    hands_init(st->hands, sp->host->sh, sp->slot);
    st->sched.live = 1;
    if (title && title[0])
        utf8_sanitize(st->title, sizeof(st->title), title, strlen(title), UTF8_NO_CONTROLS);
    if (!st->title[0])
        snprintf(st->title, sizeof(st->title), "%s", sp->ss->mount);
    st->empty_since_ms = sp->host->loop->now_ms; /* nobody has joined yet */
    snprintf(sp->ss->meta.name, sizeof(sp->ss->meta.name), "%s", st->title);
    /* the programme's stream: mono Opus, pre-skip = the encoder's look-ahead */
    int err;
    OpusEncoder *e = opus_encoder_create(48000, 1, OPUS_APPLICATION_AUDIO, &err);
    opus_int32 lookahead = 312;
    if (e) {
        opus_encoder_ctl(e, OPUS_GET_LOOKAHEAD(&lookahead));
        opus_encoder_destroy(e);
    }
    struct opus_head_info head = {.channels = 1, .pre_skip = lookahead, .input_rate = 48000};
    space_on_head(sp, &head);
    st->next_tick_ms = sp->host->loop->now_ms + STAGE_FRAME_MS;
    loop_timer_start(sp->host->loop, &st->clock, STAGE_FRAME_MS, stage_tick);
    space_set_sink(sp, &stage_sink, st);
    stage_publish_state(st);
    return st;
}

void stage_free(struct stage *st)
{
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &st->members)
    {
        struct member *m = list_entry(it, struct member, node);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "type", "ended");
        member_send_json(m, j);
        cJSON_Delete(j);
        ws_close(m->ws, 1001, "space ended");
        member_leave(m, "space ended");
    }
    loop_timer_stop(st->host->loop, &st->clock);
    st->sp->ss->stage_members = st->sp->ss->stage_speakers = st->sp->ss->stage_queued_bytes = 0;
    mixer_free(st->mixer);
    schedule_free(&st->sched);
    st->sp->ss->starts_at_s = 0;
    buf_free(&st->state_msg);
    hands_clear(st->hands, st->sp->ss);
    free(st->hands);
    free(st);
}

struct stage *stage_of(const struct space *sp)
{
    return sp->sink == &stage_sink ? sp->sink_arg : NULL;
}

/* ---- a studio source on a stage space is one more mixer input -------------------------- */

static int stage_sink_add(void *arg)
{
    struct stage *st = arg;
    return mixer_input_add(st->mixer);
}

static void stage_sink_remove(void *arg, int input)
{
    struct stage *st = arg;
    if (input >= 0)
        mixer_input_remove(st->mixer, input);
}

static void stage_sink_packet(void *arg, int input, const unsigned char *pkt, size_t len)
{
    struct stage *st = arg;
    if (input >= 0)
        mixer_input_push_opus(st->mixer, input, pkt, len);
}

static void stage_sink_free(void *arg)
{
    stage_free(arg);
}

static const struct space_sink stage_sink = {stage_sink_add, stage_sink_remove, stage_sink_packet,
                                             stage_sink_free};

/* ---- stopping and upgrade --------------------------------------------------------------- */

int stage_drain(struct stage *st)
{
    int n = 0;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &st->members)
    {
        struct member *m = list_entry(it, struct member, node);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "type", "restart");
        cJSON_AddNumberToObject(j, "retry_ms", 1000.0 * st->host->sh->main.drain_retry_s);
        member_send_json(m, j);
        cJSON_Delete(j);
        if (!m->close_reason)
            member_bound(m, WS_CLOSE_RESTART, 1012, "server stopping: come back in a moment");
        member_drop(m); /* the close frame goes now; the connection lingers for its answer */
        n++;
    }
    return n;
}

uint32_t stage_members(const struct stage *st)
{
    return st->nmembers;
}

void stage_quiesce(struct stage *st)
{
    st->quiescing = 1;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &st->members)
    {
        ws_hold(list_entry(it, struct member, node)->ws);
    }
}

int stage_quiet(const struct stage *st)
{
    struct ws_saved tmp_saved;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, (struct list_node *)&st->members)
    {
        const struct member *m = list_entry(it, struct member, node);
        if (!m->conn->tls && !m->close_reason && ws_save(m->ws, &tmp_saved) < 0)
            return 0;
    }
    return 1;
}

void stage_save(const struct stage *st, struct stage_record *r)
{
    memset(r, 0, sizeof(*r));
    r->slot = st->sp->slot;
    r->next_id = st->next_id;
    r->nrevoked = st->nrevoked;
    r->empty_since_ms = st->empty_since_ms;
    r->next_tick_ms = st->next_tick_ms;
    memcpy(r->title, st->title, sizeof(r->title));
    r->sched_start_s = st->sched.start_s;
    r->sched_live = st->sched.live;
    memcpy(r->sched_description, st->sched.description, sizeof(r->sched_description));
    for (uint32_t i = 0; i < st->nrevoked; i++) {
        r->revoked[i].id = st->revoked[i].id;
        r->revoked[i].expiry = st->revoked[i].expiry;
    }
}

void stage_save_members(struct stage *st, void (*put)(void *arg, const struct member_record *r),
                        void *arg)
{
    static struct member_record r;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &st->members)
    {
        struct member *m = list_entry(it, struct member, node);
        memset(&r, 0, sizeof(r));
        if (m->conn->tls || m->close_reason || ws_save(m->ws, &r.ws) < 0) {
            /* cannot move: 1012 asks the client to come back in a moment (RFC 6455 7.4) */
            log_info("stage", "/%s: \"%s\" (#%u) cannot move to the new binary (%s): asked to "
                     "reconnect", st->sp->ss->mount, m->name, m->id,
                     m->conn->tls ? "TLS" : m->close_reason ? m->close_reason : "busy");
            if (!m->close_reason)
                member_bound(m, WS_CLOSE_RESTART, 1012, "service restart");
            member_drop(m); /* the close frame goes out before the exec */
            continue;
        }
        r.slot = st->sp->slot;
        r.fd = m->conn->io.fd;
        r.id = m->id;
        r.role = m->role;
        r.muted = m->muted;
        r.requested = m->requested;
        r.pcm = m->pcm;
        r.token_once = m->token_once;
        r.token_id = m->token_id;
        r.token_expiry = m->token_expiry;
        r.last_rx_ms = m->last_rx_ms;
        memcpy(r.name, m->name, sizeof(r.name));
        put(arg, &r);
    }
}

struct stage *stage_restore(struct space *sp, const struct stage_record *r)
{
    if (!sp->mux || r->nrevoked > STAGE_MAX_REVOKED)
        return NULL;
    struct stage *st = calloc(1, sizeof(*st));
    BUG_ON(!st);
    st->sp = sp;
    st->host = sp->host;
    st->mixer = mixer_new(STAGE_BITRATE);
    list_init(&st->members);
    st->hands = malloc(sizeof(*st->hands));
    BUG_ON(!st->hands);
    hands_init(st->hands, sp->host->sh, sp->slot);
    memcpy(st->title, r->title, sizeof(st->title));
    st->title[sizeof(st->title) - 1] = '\0';
    st->sched.start_s = r->sched_start_s;
    st->sched.live = r->sched_live || !r->sched_start_s;
    memcpy(st->sched.description, r->sched_description, sizeof(st->sched.description));
    st->sched.description[sizeof(st->sched.description) - 1] = '\0';
    sp->ss->starts_at_s = st->sched.live ? 0 : st->sched.start_s;
    if (!st->sched.live)
        stage_holding(st);
    st->next_id = r->next_id;
    st->nrevoked = r->nrevoked;
    for (uint32_t i = 0; i < r->nrevoked; i++)
        st->revoked[i] = (struct revoked){r->revoked[i].id, r->revoked[i].expiry};
    st->empty_since_ms = r->empty_since_ms;
    /* the clock goes on where it was: stage_tick catches up a short gap, frame by frame */
    st->next_tick_ms = r->next_tick_ms;
    loop_timer_start(sp->host->loop, &st->clock, 0, stage_tick);
    space_set_sink(sp, &stage_sink, st);
    st->state_dirty = 1;
    return st;
}

int stage_member_restore(struct stage *st, struct conn *c, const struct member_record *r)
{
    if (r->role < ROLE_LISTENER || r->role >= ROLES) {
        conn_close(c);
        return -1;
    }
    struct member *m = calloc(1, sizeof(*m));
    BUG_ON(!m);
    m->st = st;
    m->conn = c;
    m->ws = ws_restore(c->io.fd, NULL, &member_ws, m, &r->ws);
    if (!m->ws) {
        free(m);
        conn_close(c);
        return -1;
    }
    m->id = r->id;
    m->role = r->role;
    m->muted = r->muted;
    m->requested = r->requested;
    m->pcm = r->pcm;
    m->token_once = r->token_once;
    m->token_id = r->token_id;
    m->token_expiry = r->token_expiry;
    m->last_rx_ms = r->last_rx_ms;
    memcpy(m->name, r->name, sizeof(m->name));
    m->name[sizeof(m->name) - 1] = '\0';
    m->out_ok_ms = st->host->loop->now_ms;
    m->input = -1;
    if (m->role != ROLE_LISTENER) {
        m->input = mixer_input_add(st->mixer);
        mixer_input_set_muted(st->mixer, m->input, m->muted);
    }
    int sndbuf = STAGE_SNDBUF;
    setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    /* the shared gauges (members, off stage) already count it */
    list_insert_tail(&st->members, &m->node);
    st->nmembers++;
    conn_take(c, &member_ops);
    MEMBER(c) = m;
    c->io.cb = member_on_io;
    st->state_dirty = 1;
    /* bytes it sent during the handover wait in the socket, and some may be parsed already */
    member_on_io(st->host->loop, &c->io, EPOLLIN);
    return 0;
}

/* ---- scheduled spaces (issue 12) --------------------------------------------------------- */

/* The lobby's holding audio (lobby-audio), if the operator set one. */
static void stage_holding(struct stage *st)
{
    const char *path = st->host->cfg->lobby_audio, *why;
    if (path[0] && schedule_load_holding(&st->sched, path, &why) < 0)
        log_warn("stage", "/%s: lobby-audio %s: %s: the lobby is silent", st->sp->ss->mount,
                 path, why);
}

void stage_schedule(struct stage *st, int64_t start_s, const char *description)
{
    st->sched.start_s = start_s;
    st->sched.live = 0;
    snprintf(st->sched.description, sizeof(st->sched.description), "%s", description);
    snprintf(st->sp->ss->meta.description, sizeof(st->sp->ss->meta.description), "%s",
             description);
    st->sp->ss->starts_at_s = start_s;
    stage_holding(st);
    stage_publish_state(st); /* listed with its countdown at once */
    /* issue 12: a scheduled space is recorded, from the lobby's first page on (an event is
     * worth keeping whatever the global default) */
    space_set_record(st->sp, 1);
}

int stage_go_live(struct stage *st, const char *by)
{
    if (st->sched.live)
        return -EALREADY;
    st->sched.live = 1;
    /* the next packet into the mux is the programme's first (stage_tick goes live before it
     * mixes): pages past this granule are programme */
    st->sched.live_granule = st->sp->mux ? ogg_mux_granule(st->sp->mux) : 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    st->sched.live_at_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    st->sp->ss->starts_at_s = 0;
    st->empty_since_ms = 0; /* the idle clock starts now */
    stage_publish_state(st);
    log_info("stage", "/%s: live (%s), %+lld s from the announced start", st->sp->ss->mount,
             by, (long long)((int64_t)time(NULL) - st->sched.start_s));
    return 0;
}

int stage_waiting(const struct stage *st)
{
    return !st->sched.live;
}
