/*
 * hands: the main process's side of reactions and raised hands (issue 12, item 3; the
 * audience side is audience/react.c).
 *
 * Once a second the main process sums the workers' reaction counters of each stage space
 * (shared_worker.reactions: cumulative, so it keeps each worker's last value and adds the
 * difference; a worker that restarted, a new pid, starts from 0 and its value is the difference:
 * what the dead one counted after the last sum, under a second's worth, is lost) into
 * "reactions" (that second) and "reactions_total" (since the space began) of the space's state
 * document. Raised hands arrive through the workers' queues (shared_hand_queue), every main
 * tick (250 ms), and are taken in the order the workers saw them (their CLOCK_MONOTONIC time).
 *
 * A space holds at most max-hands hands (a fixed table; an "up" past it is dropped and
 * counted: the workers refuse first, from hands_n, which lags by a tick). A hand is lowered
 * by its listener (op=down), dismissed by the host, or lapses hand-ttl-s after it was last
 * raised or refreshed (op=keep, every ttl / 3 from the listener page; a keep never adds a
 * hand, so it passes even when the list is full). The host invites a hand: its id goes into the
 * space's hand_invited words (the newest SHARED_HAND_INVITES), and the listener,
 * seeing its hand "invited" in the state document, asks its worker for a stage token
 * (op=accept), which the worker mints only for the holder of that listener id.
 */
#ifndef ROSTRUM_STAGE_HANDS_H
#define ROSTRUM_STAGE_HANDS_H

#include <stdint.h>

#include "shm/shared.h"
#include "util/buf.h"

#define HANDS_LISTED 50       /* hands the state document lists ("hands_count": all of them) */
#define HANDS_DOC_RESERVE 640 /* bytes of the state document kept for reactions and hands */

struct hand {
    uint64_t id;
    int64_t raised_ms; /* first raised (the order) */
    int64_t seen_ms;   /* last raised (the expiry) */
    uint8_t invited;
    char name[SHARED_HAND_NAME];
};

struct hands {
    struct hand h[SHARED_HANDS_MAX]; /* h[0..n), oldest first */
    uint32_t n;
    uint64_t prev[SHARED_MAX_WORKERS][SHARED_REACTIONS]; /* workers' counters last summed */
    int32_t prev_pid[SHARED_MAX_WORKERS];                /* and the worker's pid then */
    uint32_t per_s[SHARED_REACTIONS];                    /* the last whole second's */
    uint64_t total[SHARED_REACTIONS];                    /* since the space began */
    uint32_t next_invite; /* the hand_invited word the next invite takes */
};

struct spaces;

/* A new stage space on <slot>: its counters start from the workers' values now. */
void hands_init(struct hands *h, struct shared *sh, int slot);
/* The space ends: its invitations are withdrawn. */
void hands_clear(struct hands *h, struct shared_space *ss);
/* Every main tick: takes the workers' hand events; with <second>, sums the reactions and
 * lowers lapsed hands. Stages whose document changed are told (stage_state_changed). */
void hands_pump(struct spaces *host, int second);
/* Applies one event with <max> hands allowed. Returns 1 if the list changed. */
int hands_apply(struct hands *h, struct shared *sh, const struct shared_hand_event *e, int max);
/* Reactions of the last second from the workers' counters. Returns 1 if any or any before. */
int hands_sum(struct hands *h, const struct shared *sh, int slot);
/* Lowers hands not raised again since <now_ms> - <ttl_ms>. Returns how many. */
int hands_expire(struct hands *h, struct shared_space *ss, int64_t now_ms, int64_t ttl_ms);
/* The host's actions on hand <id>. Return 0, or -ENOENT if no such hand is raised. */
int hands_invite(struct hands *h, struct shared_space *ss, uint64_t id);
int hands_dismiss(struct hands *h, struct shared_space *ss, uint64_t id);
/* Appends ,"reactions":{..},"reactions_total":{..},"hands":[..],"hands_count":N to the state
 * document <out> (which began at <start>), listing hands only while the document stays
 * <tail> bytes under SHARED_STATE_MAX. */
void hands_json(const struct hands *h, int64_t now_ms, struct buf *out, size_t start, size_t tail);

#endif
