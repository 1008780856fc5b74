/*
 * load/attack: "rostrum-load attack MODE", bounded hostile clients for the admission and
 * defence work (DESIGN.md, "Admission and defence"). Loopback only, like the rest of the tool.
 *
 *   flood      open connections at --rate, up to --count open at once, send nothing, hold them
 *              until the server closes them or the run ends
 *   slowloris  the same, but each sends a valid request head one line at a time, a line every
 *              --interval-ms, and never finishes it
 *   slowread   the same, but each sends a whole GET for the stream and then reads only
 *              --read-bytes-per-s with a small SO_RCVBUF (--rcvbuf)
 *   garbage    connections at --rate that send up to --max-bytes (<= 16 KiB) of junk (random
 *              bytes, overlong lines, bad methods, control bytes...) and read the answer
 *   joinstorm  --count joins in all at --rate: GET, response head, first whole audio page,
 *              close; success rate, refusals by status, time to first audio
 *   tickets    --count probes in all at --rate, each: GET /join/MOUNT for a waiting-room ticket,
 *              then the stream with a forged ticket, an expired one (--ticket-expired), the
 *              genuine one before its admit time, and the genuine one after it
 *
 * Against the stage port (the main process: the speakers' WebSocket, the mixer, the API); the
 * URL is http://HOST:STAGE_PORT/SPACE (or /ws/SPACE), and each member asks for
 * /ws/SPACE?name=atkN, with &token=--token if given (else an anonymous listener):
 *   wsping     members that, once upgraded, send {"type":"ping"} text frames as fast as the
 *              socket takes them and never read again (SO_RCVBUF --rcvbuf)
 *   wsnoread   members that join and never read again (SO_RCVBUF --rcvbuf): the server's state
 *              documents and pongs pile up toward them
 *   stagefd    a descriptor flood of the stage port: connections that send nothing, or with
 *              --handshake that complete the upgrade and then read (discard) what comes
 *
 * Bounds, whatever the server does: never more than --count connections open at once (the
 * "pressure" modes flood, slowloris, slowread and garbage replace a connection the server closed
 * while the run lasts, unless --no-reopen; joinstorm and tickets make --count attempts in all),
 * at most --rate new connections per second, never past --seconds (the parent kills a worker
 * still running at --seconds + 4.5 s), and only to 127.0.0.0/8 or ::1.
 *
 * Processes: as in "listen" (load/listen.h): a parent that forks --procs workers, each with its
 * share of --count and --rate on one event loop (event/loop.h), and merges the struct
 * attack_result each sends back through a pipe into one JSON object.
 *
 * A connection's life (all modes):
 *
 *   CONNECTING --connected--> SENDING <--> WAITING --EOF / RST / done / timeout--> DONE
 *        |                    (request,    (response head, body, held open)
 *        +-- refused, timeout, no address, no descriptor --> DONE (a connect failure)
 *
 * Server closes: a connection the server closes shows up as EOF or ECONNRESET on the next read.
 * A slow reader cannot see that (the FIN waits behind the data it has not read), so in slowread
 * each worker asks the kernel once a second (sock_diag) which of the server's ends of its
 * connections have left ESTABLISHED (FIN_WAIT1/2, CLOSING): that moment is the server's close.
 *
 * Files: attack_core.c holds the worker (slots, the state machine above, the response-head
 * parser, the timers); each mode is a table of hooks in its own file (attack_flood.c,
 * attack_slow.c for slowloris and slowread, attack_garbage.c, attack_joinstorm.c,
 * attack_tickets.c; attack_int.h is what they share); attack_cli.c holds the options, the parent
 * and the report.
 */
#ifndef ROSTRUM_LOAD_ATTACK_H
#define ROSTRUM_LOAD_ATTACK_H

#include <stddef.h>
#include <stdint.h>

#include "load/hist.h"
#include "load/url.h"

enum attack_mode {
    ATTACK_FLOOD,
    ATTACK_SLOWLORIS,
    ATTACK_SLOWREAD,
    ATTACK_GARBAGE,
    ATTACK_JOINSTORM,
    ATTACK_TICKETS,
    ATTACK_WSPING,
    ATTACK_WSNOREAD,
    ATTACK_STAGEFD,
    ATTACK_MODES
};

/* Why a connect() did not give a connection. */
enum attack_fail {
    ATTACK_F_REFUSED,        /* ECONNREFUSED, or reset before it was up */
    ATTACK_F_TIMEOUT,        /* not connected within ATTACK_CONNECT_TIMEOUT_US */
    ATTACK_F_ADDR_NOT_AVAIL, /* no local port left (EADDRNOTAVAIL, EADDRINUSE) */
    ATTACK_F_SOCKET,         /* EMFILE, ENFILE, ENOBUFS, ENOMEM */
    ATTACK_F_OTHER,
    ATTACK_FAILS
};

/* The requests of one tickets probe; each is one connection. */
enum attack_ticket_kind {
    ATTACK_TK_JOIN,    /* GET /join/MOUNT */
    ATTACK_TK_FORGED,  /* the stream with the ticket's signature altered (expect 403) */
    ATTACK_TK_EXPIRED, /* the stream with --ticket-expired (expect 403) */
    ATTACK_TK_EARLY,   /* the stream with the genuine ticket before admit_at (expect 425/403) */
    ATTACK_TK_GENUINE, /* the stream with the genuine ticket from admit_at on (expect 200) */
    ATTACK_TK_OPEN,    /* the stream without a ticket when /join said admission is open */
    ATTACK_TK_KINDS
};

/* Garbage flavours, taken in turn (connection k gets k % ATTACK_G_KINDS). */
enum attack_garbage_kind {
    ATTACK_G_RANDOM,      /* random bytes, any value */
    ATTACK_G_JUNK_HEADER, /* a valid request line, then random bytes */
    ATTACK_G_LONG_PATH,   /* "GET /AAAA..." as long as the budget allows */
    ATTACK_G_LONG_HEADER, /* a valid request line, then one header line as long as allowed */
    ATTACK_G_BAD_METHOD,  /* a random printable token as the method, a whole head */
    ATTACK_G_CONTROL,     /* a whole head with NUL and control bytes in a header value */
    ATTACK_G_NO_NEWLINE,  /* printable text, no line end at all */
    ATTACK_G_KINDS
};

#define ATTACK_HTTP_CODES 600
#define ATTACK_TIMELINE_MAX 1024 /* seconds of per-second join outcomes kept */
#define ATTACK_CONNECT_TIMEOUT_US 10000000
#define ATTACK_GARBAGE_MAX 16384
#define ATTACK_TICKET_MAX 1024 /* longest ticket kept; a longer one counts as unparsable */
/* The stage modes' Sec-WebSocket-Key: the RFC 6455 sample (any 16 bytes will do for an
 * attacker; a fixed one lets the worker compute the expected Accept once). */
#define ATTACK_WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ATTACK_WS_PING "{\"type\":\"ping\"}"
#define ATTACK_WS_PING_FRAME (2 + 4 + sizeof(ATTACK_WS_PING) - 1) /* header, mask, payload */

/* Joins (joinstorm) started in one second of the run, by outcome. */
struct attack_second {
    uint32_t started;
    uint32_t joined;       /* got a first audio page */
    uint32_t failed;       /* refused, closed or timed out */
    uint32_t unfinished;   /* still joining when the run ended: neither joined nor failed */
    uint32_t slow;         /* joined, first audio later than 1 s after connect() */
    uint32_t max_audio_ms; /* slowest first audio of the joined */
};

/* One worker's figures, sent whole through a pipe to the parent (same binary at both ends, so
 * a plain struct is the format), merged with attack_result_merge. */
struct attack_result {
    uint32_t magic;
    uint32_t timeline_len; /* seconds of <tl> in use */
    uint64_t attempted;    /* connect() calls */
    uint64_t connected;    /* connections that came up */
    uint64_t fail[ATTACK_FAILS];
    uint64_t closed_fin;    /* connected, then EOF from the server */
    uint64_t closed_rst;    /* connected, then ECONNRESET (or EPIPE) */
    uint64_t closed_kernel; /* slowread: the server's end left ESTABLISHED (sock_diag) */
    uint64_t done;          /* finished by the tool: joined, answered, a probe step done */
    uint64_t timeouts;      /* the tool stopped waiting (answer, first audio) */
    uint64_t open_at_end;   /* still open when the run ended */
    uint64_t peak_open;     /* most open at once (summed over workers: an upper bound) */
    uint64_t responses;     /* connections that got a parsable status line */
    uint64_t bad_responses; /* ... or bytes that were not one */
    uint64_t no_response;   /* closed by the server without a byte */
    uint64_t retry_after;   /* responses with a Retry-After header */
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint64_t lines_sent;     /* slowloris: header lines sent after the request line */
    uint64_t joined;         /* joinstorm: a first whole audio page arrived */
    uint64_t unfinished;     /* joinstorm: still joining when the run ended */
    uint64_t ws_upgraded;    /* stage modes: 101 with the right Sec-WebSocket-Accept */
    uint64_t ws_bad_accept;  /* ... 101 without it (closed by the tool) */
    uint64_t ws_frames_sent; /* wsping: ping frames sent whole */
    uint32_t http[ATTACK_HTTP_CODES];
    uint32_t garbage_sent[ATTACK_G_KINDS];    /* garbage: messages sent whole, by flavour */
    uint32_t garbage_http[ATTACK_G_KINDS][4]; /* ... answered 400, 431, other, nothing */
    /* tickets */
    uint64_t tk_tickets;                /* /join gave a ticket */
    uint64_t tk_open;                   /* /join said admission is open ("ticket": null) */
    uint64_t tk_unparsable;             /* /join answered 200 with something else */
    uint64_t tk_early_skipped;          /* admit_at had passed before the early try could start */
    uint64_t tk_admit_after_end;        /* admit_at lay past the end of the run */
    uint64_t tk_audio[ATTACK_TK_KINDS]; /* streams that gave a first audio page */
    uint64_t tk_none[ATTACK_TK_KINDS];  /* no status: connect failure, closed, timed out */
    uint64_t tk_max_position;
    uint32_t tk_http[ATTACK_TK_KINDS][ATTACK_HTTP_CODES];
    struct hist connect_us;      /* connect() to connected */
    struct hist ttfb_us;         /* connect() to the first response byte */
    struct hist first_audio_us;  /* connect() to the first whole audio page */
    struct hist closed_after_us; /* connected to the server's close (EOF, RST, kernel) */
    struct hist kept_us;         /* connected to closed by anyone, or to the end of the run */
    struct hist tk_wait_us;      /* tickets: /join answered to admit_at */
    struct hist tk_late_us;      /* tickets: admit_at to the genuine stream's first audio */
    struct attack_second tl[ATTACK_TIMELINE_MAX];
};

#define ATTACK_RESULT_MAGIC 0x524c4141u /* "RLAA" */

/* The options of a run, as parsed from the command line. */
struct attack_opts {
    enum attack_mode mode;
    struct load_url url;
    const char *url_str;
    double rate;    /* new connections per second, all workers together */
    uint32_t count; /* open at once (pressure modes) or attempts in all (joinstorm, tickets) */
    uint32_t seconds;
    uint32_t procs;
    uint32_t src_first, src_count; /* source addresses (host order); count 0: do not bind */
    uint32_t interval_ms;          /* slowloris: between header lines */
    uint32_t read_bps;             /* slowread: bytes read per second per connection */
    uint32_t rcvbuf;               /* slowread: SO_RCVBUF */
    uint32_t max_bytes;            /* garbage: most bytes sent per connection */
    uint32_t timeout_ms; /* joinstorm, tickets: from connect() to first audio / an answer (the
                            connect timeout too, if shorter); garbage: sent to an answer */
    uint32_t seed;
    const char *ticket_expired; /* tickets: a ticket known to be expired, or NULL */
    const char *token;          /* stage modes: the member's token, or NULL (anonymous) */
    int handshake;              /* stagefd: complete the WebSocket upgrade */
    int reopen;                 /* pressure modes: replace closed connections */
    int timeline;               /* joinstorm: print per-second outcomes */
    int json;
};

/* "flood", "slowloris"... */
const char *attack_mode_name(enum attack_mode m);
/* The mode called <s>, or -1. */
int attack_mode_parse(const char *s);
const char *attack_fail_name(enum attack_fail f);
const char *attack_ticket_kind_name(enum attack_ticket_kind k);
const char *attack_garbage_kind_name(enum attack_garbage_kind k);

/* True if <o>->mode keeps --count connections open (flood, slowloris, slowread, garbage and
 * the stage modes). */
int attack_is_pressure(const struct attack_opts *o);

/* Runs worker <index> (of <o>->procs) with <n> of the --count connections: waits for
 * <start_us> (CLOCK_MONOTONIC us, shared by all workers), attacks until <start_us> + --seconds
 * (or, in joinstorm and tickets, until its <n> attempts are over) and fills <res> (caller-owned,
 * zeroed or not). Blocks for the run. Returns 0, or -errno if the event loop could not be set
 * up. */
int attack_worker(const struct attack_opts *o, uint32_t index, uint32_t n, int64_t start_us,
                  struct attack_result *res);

/* Adds <from> into <into>. */
void attack_result_merge(struct attack_result *into, const struct attack_result *from);

/* Garbage message of flavour <kind>, <len> bytes (<= ATTACK_GARBAGE_MAX), drawn from <seed>,
 * for a request to <path> on <host>: written to <out> (at least ATTACK_GARBAGE_MAX bytes).
 * Deterministic in its arguments (a partial send is resumed by generating it again). Returns
 * the length written, which may be below <len> for flavours that have a shape to keep. */
uint32_t attack_garbage(enum attack_garbage_kind kind, uint32_t seed, uint32_t len,
                        const char *path, const char *host, uint8_t *out);

/* Copies the ticket of <t> into <out> (<cap> bytes) with one character of its signature (the
 * part after the last '.', or the whole if none) changed to another of the same class, in the
 * middle of it so that base64 padding bits cannot absorb the change. Returns 0, or -1 if <t> is
 * empty or does not fit. */
int attack_forge_ticket(const char *t, char *out, size_t cap);

/* The WebSocket path asked for by the stage modes for URL path <path>: "/ws/SPACE" for "/SPACE"
 * or "/ws/SPACE", into <out> (<cap> bytes). Returns 0, or -1 if <path> names no space (empty,
 * a '/' or '?' in the name) or it does not fit. */
int attack_ws_path(const char *path, char *out, size_t cap);

/* The upgrade request of stage member number <n> for <ws_path> (attack_ws_path) on
 * <host>:<port>, with <token> (percent-encoded here) or anonymous if NULL, Sec-WebSocket-Key
 * ATTACK_WS_KEY: written to <out> (<cap> bytes). Returns its length, or 0 if it does not fit. */
uint32_t attack_ws_upgrade(const char *ws_path, const char *host, uint16_t port, uint64_t n,
                           const char *token, char *out, size_t cap);

/* One client-to-server WebSocket frame (RFC 6455 5.2): FIN, <opcode>, masked with <mask> (as
 * the 4 key bytes, most significant first), <len> bytes of <payload>, with the 7-, 16- or 64-bit
 * length as <len> needs. Written to <out> (<cap> bytes); returns its length, or 0 if it does not
 * fit. */
size_t attack_ws_frame(uint8_t *out, size_t cap, uint8_t opcode, const void *payload, size_t len,
                       uint32_t mask);

/* As many whole ATTACK_WS_PING text frames as fit in <cap> bytes (at most 65536), each with its
 * own mask drawn from <seed> (deterministic: a partial send is resumed by building it again).
 * Returns the length, a multiple of ATTACK_WS_PING_FRAME. */
size_t attack_ws_pings(uint8_t *out, size_t cap, uint32_t seed);

/* Runs "rostrum-load attack" (load/attack_cli.c) with the arguments after "rostrum-load"
 * (<argv>[0] is "attack"). Returns the exit status: 0 the run completed, 1 internal error,
 * 2 bad arguments. */
int load_attack_main(int argc, char **argv);

#endif
