/*
 * stage: the live room of a space. Speakers on WebSocket send Opus (or PCM) frames; a 20 ms
 * clock runs the mixer; the programme goes into the space's stream (one encode for every
 * listener) and each speaker gets the mix without their own voice back.
 *
 * Roles: one host, up to max-cohosts co-hosts and max-speakers speakers on stage; any number
 * of listeners connected to the control channel (to request to speak). The host or a co-host
 * promotes, mutes, demotes, removes, invites and ends.
 *
 * Callbacks from wslay only set flags (a member to close, the stage to end); the connection's
 * event handler acts on them once wslay has returned, so nothing is freed under wslay's feet.
 */
#ifndef ROSTRUM_STAGE_STAGE_H
#define ROSTRUM_STAGE_STAGE_H

#include <stdint.h>

#include "event/loop.h"
#include "util/buf.h"
#include "util/list.h"
#include "ws/ws.h"

struct space;
struct conn;
struct token;

enum role { ROLE_LISTENER, ROLE_SPEAKER, ROLE_COHOST, ROLE_HOST, ROLES };

struct stage;
struct member;

/* Makes <sp> a stage space: a mixer on a 20 ms clock feeding its stream, and the sink of its
 * studio sources (each one more mixer input). The space owns the stage from then on and
 * frees it when it ends. */
struct stage *stage_new(struct space *sp, const char *title);
/* Closes every member and stops the clock (the space's sink free). */
void stage_free(struct stage *st);
/* The stage of <sp>, or NULL if it is a plain mount (a studio relay). */
struct stage *stage_of(const struct space *sp);

/* The role a newcomer asking for <want> would get now (by key: the next free place on stage,
 * host first), or -1 with <why> if there is no room. */
int stage_place(const struct stage *st, int want, int by_key, const char **why);
/* Why the stage token <t> may not seat anyone now (revoked when its holder was removed, or a
 * single-use invite whose holder is connected), or NULL if it may. */
const char *stage_token_refusal(const struct stage *st, const struct token *t);
/* Takes <c> (its WebSocket handshake answered, still in HEAD) as a member with <role>, seated
 * by token <t> (NULL: by the host key or no token). */
void stage_join(struct stage *st, struct conn *c, int role, const char *name,
                const struct token *t);

/* Reactions and raised hands (hands.h, issue 12): the stage's table, and "publish a new state
 * document soon". */
struct hands *stage_hands(struct stage *st);
void stage_state_changed(struct stage *st);

/* The state document (who is on stage, who talks, requests). */
void stage_state_json(const struct stage *st, struct buf *out);
const char *role_name(int role);
extern const char *const role_name_table[ROLES];
int role_parse(const char *s);

/* Upgrade: a stage and its members as the next binary takes them over. The mixer starts
 * afresh (a speaker's jitter buffer, at most a few frames, is not carried); the programme's
 * stream goes on through the space. Members over TLS cannot move (their keys are in this
 * process) and are told to come back (1012). */
#define STAGE_RECORD_VERSION 2 /* 2: the schedule (issue 12) */
#define STAGE_RECORD_REVOKED 1024
struct stage_record {
    int32_t slot;
    uint32_t next_id, nrevoked;
    int64_t empty_since_ms, next_tick_ms;
    char title[128];
    int64_t sched_start_s;
    uint8_t sched_live;
    char sched_description[256];
    struct {
        uint64_t id;
        int64_t expiry;
    } revoked[STAGE_RECORD_REVOKED];
};
struct member_record {
    int32_t slot, fd;
    uint32_t id;
    int32_t role;
    uint8_t muted, requested, pcm, token_once;
    uint64_t token_id;
    int64_t token_expiry, last_rx_ms;
    char name[48];
    struct ws_saved ws;
};
/* Scheduled spaces (issue 12, schedule.h): <st> becomes a lobby until <start_s> (checked by
 * schedule_check) or stage_go_live. */
void stage_schedule(struct stage *st, int64_t start_s, const char *description);
/* The programme reaches listeners from the next frame. Returns 0, or -EALREADY if it did. */
int stage_go_live(struct stage *st, const char *by);
/* 1 while <st> is a scheduled space not yet live. */
int stage_waiting(const struct stage *st);

/* Stopping (SIGTERM): every member is told to come back (1012, "service restart") and let
 * go. Returns how many there were. */
int stage_drain(struct stage *st);
/* Members connected now. */
uint32_t stage_members(const struct stage *st);
/* Before a save: stop sending members anything new and hand wslay whole frames only. */
void stage_quiesce(struct stage *st);
/* 1 once every member can be saved (between frames, nothing to write). */
int stage_quiet(const struct stage *st);
void stage_save(const struct stage *st, struct stage_record *r);
/* Calls <put> for each member that can move; closes the others (1012: come back). */
void stage_save_members(struct stage *st, void (*put)(void *arg, const struct member_record *r),
                        void *arg);
/* The stage of <r> on <sp> (restored by space_restore); NULL if <r> is bad. */
struct stage *stage_restore(struct space *sp, const struct stage_record *r);
/* Member <r> back on <c> (conn_adopt'ed). Returns 0, or -1 (closed). */
int stage_member_restore(struct stage *st, struct conn *c, const struct member_record *r);

#endif
