/*
 * load/attack_int: what the attack modes share inside the tool (not a public header: only
 * src/load/attack_*.c include it).
 *
 * attack_core.c holds one worker: the slots, the connection state machine of attack.h, the
 * response-head parser, the timers (pace, scan, end, the kernel's close watch) and the result.
 * Each mode is a struct atk_mode of hooks (attack_flood.c, attack_slow.c, attack_garbage.c,
 * attack_joinstorm.c, attack_tickets.c, attack_stage.c); the core calls a hook where a mode
 * does something of its own and does the common thing where the hook is NULL. A hook that
 * ends a connection does it through atk_conn_finish() and says so by its return value, as
 * the core's own functions do.
 */
#ifndef ROSTRUM_LOAD_ATTACK_INT_H
#define ROSTRUM_LOAD_ATTACK_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "event/loop.h"
#include "load/attack.h"
#include "load/oggcheck.h"

#define ATK_PACE_MS 10
#define ATK_SCAN_MS 100
#define ATK_DIAG_MS 1000
#define ATK_RBUF_SIZE 16384
#define ATK_SCRATCH_SIZE (LOAD_URL_MAX_PATH + 3 * ATTACK_TICKET_MAX + 512)

enum { C_FREE, C_CONNECTING, C_SENDING, C_WAITING, C_DONE };

/* How a connection ended (atk_conn_finish). */
enum {
    END_FIN,     /* the server closed: EOF */
    END_RST,     /* the server reset it (or the send side broke) */
    END_DONE,    /* the tool had what it came for */
    END_TIMEOUT, /* the tool stopped waiting */
    END_RUN,     /* the run ended with it open */
    END_FAILED,  /* never connected (counted in fail[]) or a local error */
};

#define CF_CONNECTED 1
#define CF_GOT_BYTE 2
#define CF_RETRY_AFTER 4
#define CF_LINE_NOMATCH 8   /* the current head line is not Retry-After */
#define CF_DETACHED 16      /* slowread: off the event loop, read by the scan */
#define CF_KERNEL_CLOSED 32 /* slowread, stage no-readers: the server's end was seen closing */
#define CF_STATUS 64        /* a status line was parsed */
#define CF_NOREAD 128       /* stage modes: never read again; a hang-up event ends it */
#define CF_HDR_NOMATCH 256  /* the current head line is not the worker's <hdr_match> */
#define CF_HDR_MATCH 512    /* a head line was the worker's <hdr_match> */

/* One connection; owned by its worker's slot array. */
struct atk_conn {
    struct io io;
    int64_t t_start; /* connect() */
    int64_t t_conn;  /* connected */
    int64_t t_due;   /* slowloris: next line; garbage: answer deadline; slowread: last read */
    uint64_t rx;     /* bytes received */
    uint32_t seed;   /* garbage: the message's seed; slowloris: header values; stage: masks */
    uint32_t len;    /* garbage: the message's length */
    uint32_t sent;   /* bytes of the current chunk sent */
    uint32_t laddr;  /* local IPv4 (host order): the kernel's close watch */
    uint16_t lport;
    uint16_t status;
    uint16_t lines;      /* slowloris: chunks sent whole (the first is the request line) */
    uint16_t head_bytes; /* response head bytes seen */
    uint16_t hpos;       /* bytes into the current response head line */
    uint16_t flags;      /* CF_* */
    uint8_t state;
    uint8_t hstate; /* 0 protocol token, 1..3 status digits read, 4 rest of the head, 5 body */
    uint8_t hnl;    /* the last head line ended and nothing but '\r' followed */
    uint8_t kind;   /* garbage flavour, tickets kind, stage phase */
    struct oggcheck ogg;
};

_Static_assert(sizeof(struct atk_conn) <= 224, "an attack connection must stay small");

/* A tickets probe: what /join gave and where the probe is. Owned by the worker. */
struct atk_probe {
    char *ticket; /* malloc'ed, NULL until /join gave one */
    char *stream; /* the "stream" path /join gave (malloc'ed), or NULL */
    char *body;   /* the /join answer being read (JOIN_BODY_MAX), NULL otherwise */
    uint32_t body_len;
    int64_t admit_us; /* admit_at as CLOCK_MONOTONIC us */
    int64_t joined_us;
    uint8_t open;    /* /join said admission is open */
    uint8_t waiting; /* waiting for admit_us to try the genuine ticket */
};

struct atk_worker;

/* A mode: flags and hooks (any hook may be NULL: the core's default then). */
struct atk_mode {
    int pressure;      /* keeps --count open, replacing closed ones (else --count attempts) */
    int timeout_start; /* --timeout-ms bounds each attempt from connect() on (connect too) */
    int kernel_close;  /* watch the server's closes in the kernel (sock_diag), IPv4 only */
    /* Worker setup and teardown (allocations of the mode's own). */
    void (*setup)(struct atk_worker *w);
    void (*cleanup)(struct atk_worker *w);
    /* Non-pressure modes: start attempt <slot> (default: open a connection of kind 0). */
    void (*start)(struct atk_worker *w, uint32_t slot);
    /* A new connection: <c> is set up (seed, kind), its socket <fd> not yet connected. */
    void (*open)(struct atk_worker *w, struct atk_conn *c, int fd);
    /* The bytes <c> sends now and their length; NULL / 0: nothing (a connection of a mode
     * without this hook sends nothing and waits for the server from the start). */
    const void *(*chunk)(struct atk_worker *w, struct atk_conn *c, uint32_t *len);
    /* The chunk went out whole (c->state is C_WAITING). Returns 1 if the hook has set up what
     * <c> waits for (or finished it), 0 to wait for the server's bytes. */
    int (*sent)(struct atk_worker *w, struct atk_conn *c, int64_t now);
    /* A status line was parsed (c->status). */
    void (*status)(struct atk_worker *w, struct atk_conn *c);
    /* The response head ended. Returns 0 to read the body, -1 if <c> was finished or must not
     * be read further now. */
    int (*head_end)(struct atk_worker *w, struct atk_conn *c);
    /* Body bytes. Returns 0, or -1 if <c> was finished. */
    int (*body)(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n, int64_t now);
    /* The server closed <c> (<how> END_FIN or END_RST). Returns 1 if the hook ended it. */
    int (*closed)(struct atk_worker *w, struct atk_conn *c, int how);
    /* Every 100 ms for a slot whose connection is not connecting (any other state). */
    void (*scan)(struct atk_worker *w, uint32_t slot, int64_t now);
    /* <c> ends by <how>; called once, after the common counts. */
    void (*finish)(struct atk_worker *w, struct atk_conn *c, int how);
    /* After each loop iteration, while the run lasts. */
    void (*before_sleep)(struct atk_worker *w);
    /* The run ends: before every open connection is closed. */
    void (*end)(struct atk_worker *w);
};

struct atk_worker {
    struct loop loop;
    const struct attack_opts *o;
    const struct atk_mode *m;
    struct atk_conn *conns;
    struct atk_probe *probes; /* tickets: one per slot */
    uint32_t *free_slots;     /* pressure modes: free slot indexes (a stack) */
    uint32_t nfree;
    uint32_t *pending; /* tickets: slots whose request ended, to move on (a stack) */
    uint32_t npending;
    uint32_t n;       /* slots: open at once (pressure) or attempts (joinstorm, tickets) */
    uint32_t open;    /* connections open now */
    uint32_t waiting; /* tickets: probes waiting for their admit time */
    uint64_t started; /* connections (pressure, joinstorm) or probes (tickets) started */
    uint64_t skipped; /* pressure: openings that fell due at the cap */
    uint64_t seq;     /* connections opened: picks source address and garbage seed */
    uint32_t index;
    int ending;
    double rate;
    int64_t start_us, end_us;
    int diag_fd;
    struct loop_timer pace, scan, end, diag;
    char req[LOAD_URL_MAX_PATH + 256]; /* GET of the stream, whole */
    uint16_t req_len;
    /* a response head line to look for, or "": its first <hdr_ci> bytes (the name) compared
     * without case, the rest exactly (stage modes: Sec-WebSocket-Accept) */
    char hdr_match[64];
    uint16_t hdr_len, hdr_ci;
    struct attack_result res;
    uint8_t rbuf[ATK_RBUF_SIZE];
    char scratch[ATK_SCRATCH_SIZE];
    uint8_t gbuf[ATTACK_GARBAGE_MAX + 64];
};

extern const struct atk_mode atk_mode_flood, atk_mode_slowloris, atk_mode_slowread,
    atk_mode_garbage, atk_mode_joinstorm, atk_mode_tickets, atk_mode_wsping, atk_mode_wsnoread,
    atk_mode_stagefd, atk_mode_stagefd_tcp;

/* The worker that owns <loop>. */
struct atk_worker *atk_worker_of(struct loop *loop);

/* Opens slot <c> as connection number <w>->seq, of kind <kind>. */
void atk_conn_open(struct atk_worker *w, struct atk_conn *c, int kind);
/* Sends what is left of <c>'s chunk; when it is out, the mode's sent hook. */
void atk_conn_send(struct atk_worker *w, struct atk_conn *c);
/* Reads what <c> has, at most <most> bytes (ATK_RBUF_SIZE: up to four full reads). */
void atk_conn_read(struct atk_worker *w, struct atk_conn *c, size_t most);
/* Ends <c> for good, counting it once by <how> (END_*). */
void atk_conn_finish(struct atk_worker *w, struct atk_conn *c, int how);
/* A connect() that failed with <err>: counted by reason, <c> ended. */
void atk_conn_fail(struct atk_worker *w, struct atk_conn *c, int err);
/* Feeds body bytes of <c> to its Ogg checker and counts the first whole audio page. Returns
 * the time from connect() to it when it has just arrived, else 0. */
int64_t atk_first_audio(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n,
                        int64_t now);

/* Percent-encodes <s> into <out> (<cap> bytes), keeping unreserved characters. Returns 0, or -1
 * if it does not fit. */
int atk_pct_encode(const char *s, char *out, size_t cap);

/* xorshift32: cheap, deterministic, never 0 from a non-zero state */
static inline uint32_t atk_rnd_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* slowread, stage no-readers: one look at the kernel's list of the server's closing ends. */
void atk_diag_tick(struct atk_worker *w);

#endif
