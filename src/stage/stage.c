#include "stage/stage.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <opus/opus.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "mixer/mixer.h"
#include "proc/server.h"
#include "space/space.h"
#include "stage/control.h"
#include "token/token.h"
#include "util/log.h"
#include "ws/ws.h"

#define STAGE_FRAME_MS 20
#define STAGE_STATE_MIN_MS 200      /* state broadcasts at most 5 times a second */
#define STAGE_STATE_LISTENER_MS 1000 /* members off stage get it at most once a second */
#define STAGE_MAX_MEMBERS 2000      /* control connections per space (listeners included) */
#define STAGE_RETURN_QUEUE 16384    /* bytes of return audio that may wait for a slow speaker */
#define STAGE_SNDBUF 16384          /* a member's kernel send buffer (the kernel doubles it) */
#define STAGE_STUCK_MS 10000        /* output waiting, the socket took nothing: not reading */
#define STAGE_BITRATE 48000

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
    uint32_t state_seq;       /* the state document it was last sent (stage.state_seq) */
    int64_t state_ms;         /* and when */
    int64_t out_ok_ms;        /* last time its output was all out or its socket took bytes */
    uint64_t sent_seen;       /* ws_bytes_sent() then */
    char name[48];
};

struct stage {
    struct space *sp;
    struct server *srv;
    struct mixer *mixer;
    struct list_node members;
    uint32_t nmembers;
    uint32_t next_id;
    struct loop_timer clock;
    int64_t next_tick_ms;
    int64_t last_state_ms;
    int64_t last_idle_check_ms;
    int state_dirty;
    int end_requested;
    struct buf state_msg;   /* the latest {"type":"state",...}: the only one members get */
    uint32_t state_seq;     /* bumped with each new document */
    int64_t last_deliver_ms;
    char title[128];
};

#define role_names role_name_table

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
    const struct config *cfg = &st->srv->cfg;
    int max = role == ROLE_HOST ? 1 : role == ROLE_COHOST ? cfg->max_cohosts
              : role == ROLE_SPEAKER ? cfg->max_speakers : STAGE_MAX_MEMBERS;
    return count_role(st, role) < max;
}

int stage_place(const struct stage *st, int want, int by_key, const char **why)
{
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
    m->st->srv->sh->main.ws_closes[why]++;
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
        m->out_ok_ms = m->st->srv->loop.now_ms;
    }
    m->blocked = (uint8_t)rc;
    loop_mod(&m->st->srv->loop, &m->conn->io, EPOLLIN | EPOLLRDHUP | (rc ? EPOLLOUT : 0));
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

void stage_state_json(const struct stage *st, struct buf *out)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "space", st->sp->ss->mount);
    cJSON_AddStringToObject(j, "title", st->title);
    cJSON_AddBoolToObject(j, "live", 1);
    cJSON *stage = cJSON_AddArrayToObject(j, "stage");
    cJSON *req = cJSON_AddArrayToObject(j, "requests");
    int listeners = 0, nreq = 0;
    /* host first, then co-hosts, then speakers */
    for (int r = ROLE_HOST; r >= ROLE_LISTENER; r--) {
        struct list_node *it, *tmp;
        list_for_each_safe(it, tmp, (struct list_node *)&st->members)
        {
            const struct member *m = list_entry(it, struct member, node);
            if (m->role != r)
                continue;
            if (r == ROLE_LISTENER) {
                listeners++;
                if (m->requested && nreq++ < 50) {
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddNumberToObject(o, "id", m->id);
                    cJSON_AddStringToObject(o, "name", m->name);
                    cJSON_AddItemToArray(req, o);
                }
                continue;
            }
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "id", m->id);
            cJSON_AddStringToObject(o, "name", m->name);
            cJSON_AddStringToObject(o, "role", role_names[m->role]);
            cJSON_AddBoolToObject(o, "muted", m->muted);
            cJSON_AddBoolToObject(o, "talking", m->talking);
            cJSON_AddItemToArray(stage, o);
        }
    }
    cJSON_AddNumberToObject(j, "control_listeners", listeners);
    char *s = cJSON_PrintUnformatted(j);
    buf_puts(out, s);
    free(s);
    cJSON_Delete(j);
}

/* Sends the latest state document to every member that lacks it and may have it now. The
 * feed is coalesced: a member with output still waiting gets nothing more queued behind it
 * (it gets the then-latest document once its queue is empty), and members off stage get at
 * most one document a second. So a member that does not read holds one document at most. */
static void stage_deliver_state(struct stage *st)
{
    int64_t now = st->srv->loop.now_ms;
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
    st->last_state_ms = st->srv->loop.now_ms;
    stage_deliver_state(st);
}

/* ---- membership -------------------------------------------------------------------------- */

static void member_set_role(struct member *m, int role)
{
    struct stage *st = m->st;
    if ((m->role == ROLE_LISTENER) != (role == ROLE_LISTENER)) {
        if (role == ROLE_LISTENER)
            st->srv->sh->main.ws_off_stage++;
        else
            st->srv->sh->main.ws_off_stage--;
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
    st->srv->sh->main.ws_members--;
    if (m->role == ROLE_LISTENER)
        st->srv->sh->main.ws_off_stage--;
    st->state_dirty = 1;
    ws_flush(m->ws); /* a queued close frame, if any */
    m->conn->ws_member = NULL;
    /* Lingering close: closing with the speaker's audio unread would reset the connection
     * and could destroy the close frame before the peer reads it (RFC 6455 section 7.1.1).
     * Not for a peer that floods us: draining it would keep paying for its flood. */
    if (m->conn->dead || ws_over_rate(m->ws))
        conn_close(m->conn);
    else
        conn_linger(m->conn);
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
        ws_close(t->ws, 4001, "removed");
        member_leave(t, "removed by the host");
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
        token_mint(st->srv->secret, st->sp->ss->mount, role_names[role],
                   (int64_t)time(NULL) + 24 * 3600, tok, sizeof(tok));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "invite");
        cJSON_AddStringToObject(o, "role", role_names[role]);
        cJSON_AddStringToObject(o, "token", tok);
        member_send_json(m, o);
        cJSON_Delete(o);
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
    m->last_rx_ms = m->st->srv->loop.now_ms;
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
    m->last_rx_ms = m->st->srv->loop.now_ms;
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

void stage_join(struct stage *st, struct conn *c, int role, const char *name)
{
    struct member *m = calloc(1, sizeof(*m));
    if (!m)
        abort();
    m->st = st;
    m->conn = c;
    m->id = ++st->next_id;
    m->input = -1;
    m->last_rx_ms = st->srv->loop.now_ms;
    m->out_ok_ms = st->srv->loop.now_ms;
    m->ws = ws_new(c->io.fd, NULL, &member_ws, m);
    /* A bounded kernel buffer, so a member that does not read is noticed (STAGE_STUCK_MS)
     * instead of the kernel autotuning megabytes for it. */
    int sndbuf = STAGE_SNDBUF;
    setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    st->srv->sh->main.ws_members++;
    st->srv->sh->main.ws_off_stage++; /* a listener until member_set_role below */
    snprintf(m->name, sizeof(m->name), "%s", name[0] ? name : role_names[role]);
    list_insert_tail(&st->members, &m->node);
    st->nmembers++;
    c->kind = CONN_WS;
    c->ws_member = m;
    c->io.cb = stage_member_on_io;
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

void stage_member_conn_gone(struct conn *c)
{
    (void)c; /* the member was freed by member_leave before the connection */
}

void stage_member_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct conn *c = (struct conn *)io;
    (void)loop;
    if (c->dead || !c->ws_member)
        return;
    struct member *m = c->ws_member;
    struct stage *st = m->st;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (ws_read(m->ws) < 0 && !m->close_reason) {
            m->close_reason = ws_error(m->ws);
            if (ws_over_rate(m->ws)) /* ws has queued the close (1008) */
                st->srv->sh->main.ws_closes[WS_CLOSE_OVER_RATE]++;
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
    if (events & EPOLLOUT)
        member_flush(m);
}

/* ---- the clock --------------------------------------------------------------------------- */

static void stage_tick(struct loop *loop, struct loop_timer *t)
{
    struct stage *st = (struct stage *)((char *)t - offsetof(struct stage, clock));
    /* Drift-free: due times advance by exactly 20 ms; after a long stall, resynchronise
     * instead of bursting. */
    int frames = 0;
    while (st->next_tick_ms <= loop->now_ms && frames < 5) {
        int len = 0;
        struct list_node *it, *tmp;
        const unsigned char *prog = mixer_tick(st->mixer, &len);
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
            if (r && rlen > 0)
                ws_send_binary(m->ws, r, (size_t)rlen, STAGE_RETURN_QUEUE);
            member_flush(m);
        }
        st->next_tick_ms += STAGE_FRAME_MS;
        frames++;
    }
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
            else if (loop->now_ms - m->last_rx_ms > st->srv->cfg.speaker_idle_ms)
                member_bound(m, WS_CLOSE_IDLE, 1001, "idle: sent nothing for too long");
            else if (m->blocked && loop->now_ms - m->out_ok_ms > STAGE_STUCK_MS)
                member_bound(m, WS_CLOSE_NOT_READING, 1008,
                             "not reading: its socket took nothing for 10 s");
            else
                continue;
            member_drop(m);
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
    if (!st)
        abort();
    st->sp = sp;
    st->srv = sp->srv;
    st->mixer = mixer_new(STAGE_BITRATE);
    list_init(&st->members);
    snprintf(st->title, sizeof(st->title), "%s", title && title[0] ? title : sp->ss->mount);
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
    st->next_tick_ms = sp->srv->loop.now_ms + STAGE_FRAME_MS;
    loop_timer_start(&sp->srv->loop, &st->clock, STAGE_FRAME_MS, stage_tick);
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
    loop_timer_stop(&st->srv->loop, &st->clock);
    mixer_free(st->mixer);
    buf_free(&st->state_msg);
    free(st);
}

int stage_source_add(struct stage *st)
{
    return mixer_input_add(st->mixer);
}

void stage_source_remove(struct stage *st, int input)
{
    if (input >= 0)
        mixer_input_remove(st->mixer, input);
}

void stage_source_packet(struct stage *st, int input, const unsigned char *pkt, size_t len)
{
    if (input >= 0)
        mixer_input_push_opus(st->mixer, input, pkt, len);
}
