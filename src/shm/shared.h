/*
 * shared: the memory the main process shares with its listener workers.
 *
 * One MAP_SHARED mapping made before the workers are forked, so every process sees it at the
 * same address. It holds a fixed table of space slots (each with its page ring and preamble)
 * written only by the main process, and one block of counters per worker written only by
 * that worker. Nothing in it is a pointer; nothing in it is locked:
 *
 *   main process                     shared mapping                      worker i
 *   ------------                     --------------                      --------
 *   space (mux, source, timers) -->  slot: state, gen, meta,  <-- reads  listeners (cursors)
 *                                      preamble[2], ring
 *   sums workers' counters      <--  worker[i]: counters,     <-- writes its own block
 *   for supervision                    per-slot listener counts
 *
 * A slot's <gen> changes whenever the slot is taken by a new space or ended, so a listener
 * that remembers (slot, gen) notices its space is gone. The preamble is double-buffered: the
 * main process writes the idle half, then bumps <preamble_gen>; a reader uses
 * half (preamble_gen & 1).
 */
#ifndef ROSTRUM_SHM_SHARED_H
#define ROSTRUM_SHM_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "shm/ring.h"

#define SHARED_MAX_SPACES 64
#define SHARED_MAX_WORKERS 32
#define SHARED_PREAMBLE_MAX 8192
#define SHARED_STATE_MAX 8192
#define SHARED_RING_SLOTS 4096       /* pages: 13 min of 200 ms pages */
#define SHARED_RING_BYTES (2u << 20) /* arena: 5 min of audio at 48 kb/s */

enum slot_state { SLOT_FREE = 0, SLOT_WAITING, SLOT_LIVE };

/* Outcomes of a listener join, labels of rostrum_joins_total. */
enum join_outcome { JOIN_OK, JOIN_NOT_FOUND, JOIN_BAD_REQUEST, JOIN_REFUSED, JOIN_OUTCOMES };

/* Why a listener was closed, labels of rostrum_listener_closes_total. */
enum close_reason {
    CLOSE_PEER,      /* the client went away */
    CLOSE_TOO_SLOW,  /* stalled max-stalls times */
    CLOSE_STUCK,     /* no byte accepted by its socket for a long time */
    CLOSE_MOUNT_END, /* the mount ended (grace ran out, or shutdown) */
    CLOSE_RESTART,   /* the stream had to restart (incompatible new source) */
    CLOSE_ERROR,     /* socket error */
    CLOSE_REASONS
};

/* Why the stage port closed a WebSocket member for a bound (issue 8), labels of
 * rostrum_ws_closes_total. */
enum ws_close_why {
    WS_CLOSE_QUEUE,       /* its send queue went over its bound */
    WS_CLOSE_NOT_READING, /* its socket took nothing for a long time while output waited */
    WS_CLOSE_OVER_RATE,   /* sent more frames or bytes per second than a speaker does */
    WS_CLOSE_IDLE,        /* sent nothing (not even a ping) for speaker-idle-ms */
    WS_CLOSE_REASONS
};

/* Counters of one process: monotonic, summed over processes for /metrics. */
struct shared_counters {
    uint64_t joins[JOIN_OUTCOMES];
    uint64_t listener_closes[CLOSE_REASONS];
    uint64_t stalls;
    uint64_t bytes_sent;
    uint64_t requests;
    uint64_t bad_requests;    /* 400 */
    uint64_t heads_too_large; /* 431 */
    uint64_t head_timeouts;
    uint64_t refused_fd_limit;
    uint64_t refused_conns_per_ip; /* 429 at accept */
    uint64_t refused_joins_per_ip; /* 429 on join */
    uint64_t refused_capacity;     /* 503: listener limits */
    uint64_t refused_join_rate;    /* 503: this worker's join rate */
    uint64_t refused_ticket;       /* 403: forged, expired or another space's ticket */
    uint64_t refused_early;        /* 425: a ticket before its admit time */
    uint64_t tickets_issued;
    uint64_t shed_stalled;         /* stalled listeners closed to free descriptors */
    uint64_t limits_table_full;
};

/* What a source announced in its ice-* headers, control bytes removed. */
struct space_meta {
    char name[128], description[256], genre[64], url[256], bitrate[16];
};

struct shared_space {
    uint32_t gen;   /* bumped when the slot is taken or freed */
    uint32_t state; /* enum slot_state */
    char mount[64];
    struct space_meta meta; /* with the config's display name/description applied */
    int32_t channels;
    uint32_t source_connected;
    int64_t stream_start_wall;
    uint32_t listener_peak; /* kept by the main process from the workers' counts */
    uint32_t preamble_gen;
    uint32_t preamble_len[2];
    uint32_t preamble_http_len[2];
    unsigned char preamble[2][SHARED_PREAMBLE_MAX]; /* HTTP response head + Ogg header pages */
    uint32_t doc_gen; /* the stage's state document, double-buffered like the preamble */
    uint32_t doc_len[2];
    char doc[2][SHARED_STATE_MAX];
};

struct shared_worker {
    int32_t pid;
    uint32_t listener_connections;
    uint32_t conns[SHARED_MAX_SPACES];     /* open listener connections per slot */
    uint32_t receiving[SHARED_MAX_SPACES]; /* of which received audio in the last 5 s */
    struct shared_counters c;
};

/* The main process's own figures (ingest and the stage port). */
struct shared_main {
    struct shared_counters c;
    uint64_t pages_published;
    uint64_t source_connects;
    uint64_t source_drops;
    uint64_t sources_connected; /* gauge */
    uint64_t worker_restarts;
    /* the stage port's WebSocket bounds (issue 8) */
    uint64_t ws_members;                   /* gauge: members of all stage spaces */
    uint64_t ws_off_stage;                 /* gauge: of which off stage (max-members) */
    uint64_t ws_closes[WS_CLOSE_REASONS];  /* members closed for a bound */
    uint64_t refused_max_members;          /* 503: max-members reached */
    uint64_t refused_fd_reserve;           /* 503: descriptors kept for sources and speakers */
};

struct shared {
    size_t size;
    struct shared_main main;
    uint32_t nworkers; /* worker blocks in use; 1 when the main process serves listeners */
    uint32_t total_connections; /* all listeners of all workers, updated by the main process */
    struct shared_counters retired; /* counters of workers that died, so totals never drop */
    struct shared_space spaces[SHARED_MAX_SPACES];
    struct shared_worker workers[SHARED_MAX_WORKERS];
    /* followed by SHARED_MAX_SPACES rings, each ring_bytes(SHARED_RING_SLOTS,
     * SHARED_RING_BYTES) long, at shared_ring() */
};

/* Maps the shared memory for <nworkers> workers (MAP_NORESERVE: rings take memory only as
 * pages are written). Aborts if it cannot. */
struct shared *shared_create(uint32_t nworkers);
void shared_destroy(struct shared *sh);

/* The ring of slot <i>. */
struct ring *shared_ring(struct shared *sh, int i);

/* The preamble a newcomer should get now (its current half), and its lengths. */
static inline const unsigned char *shared_preamble(const struct shared_space *s, uint32_t gen,
                                                   uint32_t *len, uint32_t *http_len)
{
    *len = s->preamble_len[gen & 1];
    *http_len = s->preamble_http_len[gen & 1];
    return s->preamble[gen & 1];
}

/* Sums the counters of the main process, every worker and the retired ones into <out>. */
void shared_sum_counters(const struct shared *sh, struct shared_counters *out);

#endif
