/*
 * load/listen: "rostrum-load listen", many HTTP listeners that check what they hear.
 *
 *   parent: parses options, raises RLIMIT_NOFILE, forks P workers, fetches the server's
 *           rostrum_listeners gauge ~1 s before the end, collects one result record per worker
 *           through a pipe, prints JSON or a summary.
 *   worker: one event loop (event/loop.h) holding its share of the listeners; joins them at its
 *           share of the rate from one 10 ms pacing timer, checks each stream with load/oggcheck,
 *           scans for stalls and connect timeouts from one 500 ms timer (no timer per listener),
 *           and at the end closes everything and writes its record.
 *
 * A listener's life:
 *
 *   CONNECTING --connected--> [HANDSHAKE] --> SENDING --request sent--> HEAD --200 + blank
 *        |                         |                                     |   line--> BODY
 *        +--- error / 10 s --------+--> DONE (refused) <-- status != 200, EOF, error ---+
 *
 * HANDSHAKE only for an https:// URL: OpenSSL drives the handshake from the same events, and
 * then the request goes out and the stream comes in through SSL_write / SSL_read into the
 * same head parser and Ogg checker. The handshake counts in the same 10 s connect deadline.
 *
 * Its state is ~170 bytes (struct load_conn, checked at compile time), all of it fixed: the
 * response head and the Ogg pages are parsed as they stream and never kept. Over TLS, OpenSSL's
 * connection comes on top (a few KB; its buffers are released between reads).
 *
 * The figures (times from the connect() call):
 *   connected     listeners that got a first audio page (whole, CRC valid); attempted =
 *                 connected + the refusals except the two *_after_audio ones, which count
 *                 listeners that were connected and then lost.
 *   timeout       still joining (no first audio yet) when the run ended.
 *   stall         --stall-ms without an audio byte, from the response head on; each gap counts
 *                 once, when the scan sees it or when the read that ends it comes.
 *   held_bitrate  audio bytes from first audio + 2 s to the end >= 90 % of --kbps over that
 *                 time. Coarse when the server delivers in bursts and that time is short: with
 *                 1 s bursts a steady part under ~8 s can miss by one burst; use --seconds >= 15.
 *   tool_listeners  open listeners with an audio byte in the 5 s before the count time, the
 *                 moment the parent reads server_listeners (1 s before the end).
 *   programme     with --programme STATE_URL (a scheduled space's state document): when the
 *                 programme reached each listener that was already in the lobby. The parent
 *                 polls the document every 100 ms until it has "live_granule" and
 *                 "live_at_ms" (set at the go-live; docs/stage.md) and shares them with the
 *                 workers (a page of shared memory). A listener's programme arrival is the
 *                 first read that completes an audio page with a granule position above
 *                 live_granule; until the go-live is known, each listener keeps the time and
 *                 last granule of its last 16 such reads, so a poll's delay loses nothing
 *                 (16 reads are >= 3 s of 200 ms pages). Reported against T0: the announced
 *                 start ("starts_at"), or the go-live if that came earlier. "In the lobby": a
 *                 first audio page before the go-live (wall clock); the others joined live.
 *                 before_t0 counts lobby listeners whose programme page came before T0,
 *                 which only a wrong live_granule (or clock) can do: it should be 0.
 *
 *   --join        each listener first asks GET /join<path> (the waiting room, docs and
 *                 README "Admission"), takes the ticket's stream path and admit time from the
 *                 JSON, and connects to that path at that time (a timer wheel, not a timer per
 *                 listener). The answer must arrive whole with its head (a few hundred bytes
 *                 from one send; otherwise join_errors). tickets counts the answers,
 *                 ticket_wait the admit time less the answer's arrival.
 *   --retry N     a 503 or 429 (to /join or to the stream) is asked again after its
 *                 Retry-After (1 s without one, at most 60 s, plus up to 0.5 s of jitter, as
 *                 the listener page does), at most N times per listener; retries counts them,
 *                 and a refusal is counted in refused only once the retries are spent.
 *
 * listen.c holds the worker, listen_cli.c the options, the parent and the reports.
 */
#ifndef ROSTRUM_LOAD_LISTEN_H
#define ROSTRUM_LOAD_LISTEN_H

#include <stdint.h>

#include "load/hist.h"
#include "load/url.h"

/* Why a listener did not join (or, for the *_AFTER_AUDIO ones, did not stay). */
enum load_reason {
    LOAD_R_CONNECT_REFUSED,
    LOAD_R_CONNECT_TIMEOUT,
    LOAD_R_ADDR_NOT_AVAIL,
    LOAD_R_SOCKET_ERROR,
    LOAD_R_CONNECT_ERROR,
    LOAD_R_BAD_RESPONSE,
    LOAD_R_CLOSED_BEFORE_AUDIO,
    LOAD_R_READ_ERROR,
    LOAD_R_TIMEOUT,
    LOAD_R_CLOSED_AFTER_AUDIO,
    LOAD_R_READ_ERROR_AFTER_AUDIO,
    LOAD_R_TLS_HANDSHAKE, /* https://: the handshake failed (or the certificate did not verify) */
    LOAD_REASONS
};

#define LOAD_HTTP_CODES 600

/* One worker's figures, sent whole to the parent through a pipe (same binary on both ends, so
 * a plain struct is the format). Merged with load_result_merge. */
struct load_result {
    uint32_t magic;
    uint32_t listeners;     /* listeners this worker was given */
    uint64_t attempted;     /* connects started */
    uint64_t connected;     /* listeners that received a first audio page */
    uint64_t held;          /* ... that held the bitrate over their steady part */
    uint64_t held_eligible; /* ... whose steady part (first audio + 2 s .. end) was not empty */
    uint64_t stalls;
    uint64_t listeners_with_stalls;
    uint64_t stalls_before_audio; /* of the stalls: the response head, then no audio yet */
    uint64_t seq_gaps;
    uint64_t crc_errors;
    uint64_t serial_changes;
    uint64_t sync_losses;
    uint64_t bytes;          /* audio bytes, Ogg page overhead included */
    uint64_t open_at_end;    /* listeners still receiving at the end */
    uint64_t tool_listeners; /* open listeners with audio in the 5 s before the count time */
    uint64_t tool_listeners_answered; /* the same when the server's count came in */
    uint64_t duration_us;    /* start to end as this worker measured it */
    uint64_t reasons[LOAD_REASONS];
    uint32_t http[LOAD_HTTP_CODES]; /* joins refused with this status (100..599) */
    struct hist connect_us;         /* connect start to connected */
    struct hist ttfb_us;            /* connect start to first response byte */
    struct hist first_audio_us;     /* connect start to first audio page (whole, CRC valid) */
    /* --programme: listeners in the lobby at the go-live, those the programme reached (their
     * arrival after T0 in programme_us), those whose arrival was lost (more than the kept
     * reads before the go-live became known), those that joined after it */
    uint64_t prog_lobby, prog_reached, prog_unresolved, prog_joined_live;
    uint64_t prog_early; /* reached before T0: impossible unless live_granule is wrong */
    struct hist programme_us;
    /* --join and --retry */
    uint64_t tickets;     /* /join answers taken (a ticket, or the open stream's path) */
    uint64_t join_errors; /* /join answers without a stream path (or cut) */
    uint64_t retries;     /* 503 / 429 answers retried after their Retry-After */
    uint64_t kept;        /* streams asked on the /join's kept-alive connection */
    struct hist ticket_wait_us; /* a ticket's admit time less when it was given */
};

/* --programme: the go-live as the parent read it, shared with the workers (one page of
 * MAP_SHARED memory made before the fork). <known> is written last (release), read first
 * (acquire). */
struct load_programme {
    uint64_t live_granule;
    int64_t live_at_ms;  /* wall clock */
    int64_t t0_ms;       /* the announced start, or the go-live if earlier (wall clock) */
    uint32_t known;
};

/* The options of a run, as parsed from the command line. */
struct load_listen_opts {
    struct load_url url;
    struct load_url metrics; /* where rostrum_listeners is read (have_metrics) */
    int have_metrics;
    uint32_t listeners;
    double rate; /* joins per second, all workers together */
    uint32_t seconds;
    uint32_t procs;
    uint32_t kbps;
    uint32_t stall_ms;
    uint32_t src_first, src_count; /* source addresses (host order); count 0: do not bind */
    int json;
    const char *url_str;
    const char *metrics_str;
    const char *cacert;  /* https://: the CA the server's certificate must lead to */
    int insecure;        /* https://: no verification at all */
    struct tls_ctx *tls; /* https:// (the URL's or the metrics URL's): the client context,
                            made by the parent before the workers fork */
    int join;          /* --join: each listener asks /join<path> for a ticket first */
    uint32_t retry;    /* --retry N: a 503 or 429 is asked again after its Retry-After */
    int no_keep_alive; /* --no-keep-alive: every request on a new connection (as before) */
    int *count_pending; /* shared: 1 until the parent has the server's count (NULL: none
                           asked); workers keep their listeners open until then */
    const char *programme_str;       /* --programme: the state document's URL */
    struct load_url programme;
    struct load_programme *prog;     /* shared; NULL without --programme */
};

#define LOAD_RESULT_MAGIC 0x524c4431u /* "RLD1" */
/* The workers count their receiving listeners, and the parent reads the server's gauge, this
 * long before the end. */
#define LOAD_COUNT_BEFORE_END_US 1000000

/* Runs worker <index> (of <o>->procs) with <n> listeners: waits for <start_us> (CLOCK_MONOTONIC
 * us, shared by all workers), joins, listens until the end and fills <res>. Blocks for the whole
 * run. Returns 0, or -errno if the event loop could not be set up. */
int load_listen_worker(const struct load_listen_opts *o, uint32_t index, uint32_t n,
                       int64_t start_us, struct load_result *res);

/* CLOCK_MONOTONIC in microseconds. */
int64_t load_now_us(void);

/* JSON key of reason <r>. */
const char *load_reason_name(enum load_reason r);

/* Adds <from> into <into>. */
void load_result_merge(struct load_result *into, const struct load_result *from);

/* Runs "rostrum-load listen" (load/listen_cli.c) with the arguments after the subcommand (<argv>[0]
 * is "listen"). Returns the exit status: 0 the run completed, 1 internal error, 2 bad arguments. */
int load_listen_main(int argc, char **argv);

#endif
