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
 * that remembers (slot, gen) notices its space is gone. The preamble and the stage's state
 * document are double buffers (struct shared_dbuf): the main process writes the idle half,
 * then publishes its generation; a reader uses a generation's half and checks afterwards that
 * the half still holds that generation. The rules are in shm/shm.h; every access to a double
 * buffer goes through the functions below, and to a ring through ring.h.
 */
#ifndef ROSTRUM_SHM_SHARED_H
#define ROSTRUM_SHM_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "shm/ring.h"
#include "shm/shm.h"

#define SHARED_MAX_SPACES 64
#define SHARED_MAX_WORKERS 32
#define SHARED_PREAMBLE_MAX 8192
#define SHARED_STATE_MAX 8192
#define SHARED_RING_SLOTS 4096       /* pages: 13 min of 200 ms pages */
#define SHARED_RING_BYTES (2u << 20) /* arena: 5 min of audio at 48 kb/s */
#define SHARED_TICKETS (1u << 20)    /* used-ticket table: ~8 min of tickets at 2,000/s */
#define SHARED_TICKET_PROBE 32       /* slots looked at per ticket */
#define SHARED_CONFIG_BYTES (64u << 10) /* the serialised configuration, for the workers */
#define SHARED_BEACONS (1u << 18)       /* HLS sessions counted at once, all spaces (2 MiB) */
#define SHARED_BEACONS_PER_SPACE (1u << 16) /* of which one space may hold */
#define SHARED_BEACON_PROBE 32              /* slots looked at per session */

/* issue 12, item 3 (reactions and raised hands) */
#define SHARED_REACTIONS 6     /* the fixed set of reactions (shared_reaction_names) */
#define SHARED_HAND_QUEUE 256  /* hand events one worker may have waiting for the main process */
#define SHARED_HAND_INVITES 8  /* invited hands a space publishes at once (the newest kept) */
#define SHARED_HANDS_MAX 1000  /* max-hands' ceiling: raised hands a space holds */
#define SHARED_HAND_NAME 40

/* issue 12, item 4 (live captions) */
#define SHARED_CAPTIONS_MAX 16384 /* the cue list of a space: lines "ID START END TEXT\n" */

enum hand_op { HAND_UP = 1, HAND_DOWN = 2, HAND_KEEP = 3 /* refresh only: never adds a hand */ };

/* One hand raised or lowered, as a worker saw it. */
struct shared_hand_event {
    uint64_t id;       /* the listener id's 64 random bits (token.h, TOKEN_LISTENER) */
    int64_t at_ms;     /* CLOCK_MONOTONIC ms (the same clock in every process): the order */
    uint32_t slot_gen; /* the slot's generation then */
    uint16_t slot;
    uint8_t op; /* enum hand_op */
    uint8_t pad;
    char name[SHARED_HAND_NAME]; /* valid UTF-8, no controls, NUL-terminated */
};

/*
 * A single-producer single-consumer queue (a worker's hand events to the main process). The
 * worker alone writes <head> and the events, the main process alone writes <tail> (rule 3):
 * the worker fills ev[head % N], then publishes head + 1 (release); the main process reads
 * events up to <head> (acquire) and then publishes its <tail> (release), giving the slots
 * back. Full (head - tail == N): the worker refuses the hand (503, counted).
 */
struct shared_hand_queue {
    uint32_t head;
    uint32_t tail;
    struct shared_hand_event ev[SHARED_HAND_QUEUE];
};
/* Writer (the worker): queues <e>. Returns 0, or -ENOSPC if the queue is full. */
int shared_hand_push(struct shared_hand_queue *q, const struct shared_hand_event *e);
/* Reader (the main process): takes the oldest event into <out>. Returns 1, or 0 if none. */
int shared_hand_pop(struct shared_hand_queue *q, struct shared_hand_event *out);
/* The reactions, as the API names them ("clap", ...): SHARED_REACTIONS of them. */
extern const char *const shared_reaction_names[SHARED_REACTIONS];

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
    WS_CLOSE_RESTART,     /* could not move to the new binary (an upgrade): asked back, 1012 */
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
    uint64_t prequeue_early;       /* issue 12: of those, pre-queue places before a start */
    uint64_t prequeue_late;        /* and past the pre-queue's room, in order from the start */
    uint64_t shed_stalled;         /* stalled listeners closed to free descriptors */
    uint64_t limits_table_full;
    /* issue 8 (tickets and tokens) */
    uint64_t refused_no_ticket;      /* 403: waiting room on, a join without a ticket */
    uint64_t refused_ticket_used;    /* 403: a ticket presented a second time */
    uint64_t refused_tickets_per_ip; /* 429: too many GET /join from one address */
    uint64_t refused_stage_token;    /* 401/403/409 on the stage: bad, revoked or in use */
    uint64_t refused_overload;     /* 503: this worker is not keeping up (struct overload) */
    /* issue 8 (shared memory protocol, laggards) */
    uint64_t torn_closes;        /* listeners closed: the writer overwrote bytes during their writev */
    uint64_t lag_jumps_mid_page; /* of the stalls: laggards that finished a partial page first */
    /* issue 9 (graceful stop) */
    uint64_t refused_draining; /* 503: the server is stopping (SIGTERM, drain-ms) */
    /* issue 10 (the relay feed, upstream side) */
    uint64_t feeds_joined;      /* relay feeds served (also counted as listener joins) */
    uint64_t refused_relay_key; /* 403: a feed without the relay-key, or a wrong one */
    uint64_t feed_cuts;         /* feeds closed: the relay fell behind the ring or stopped */
    /* issue 10, items 3-4 (the tree's count, finding an edge) */
    uint64_t relay_table_full;   /* reporting feeds that found no room in the relay table */
    uint64_t relay_reports_stale; /* feeds that went quiet: no report for FEED_REPORT_AGE_MS */
    uint64_t redirects_full;     /* 307: this server was full, sent to a relay with room */
    uint64_t redirects_draining; /* 307: this server was stopping, sent to a relay */
    /* issue 11 (HLS, audience/hls.c) */
    uint64_t hls_responses;       /* playlists, init segments, segments and parts answered 200 */
    uint64_t hls_blocked;         /* requests held for a part not published yet */
    uint64_t hls_refused_blocked; /* 503: hls-max-blocked requests already held here */
    uint64_t hls_block_timeouts;  /* 503: held past 3 target durations (the source stopped) */
    uint64_t hls_too_far;         /* 400: more than 2 segments (or 3 parts) ahead */
    /* issue 11 (the web player's resume) */
    uint64_t listener_resumes;     /* listener joins with from= that resumed at that page */
    uint64_t listener_resume_gaps; /* from= already evicted (or ahead): started at the burst */
    uint64_t tree_rows_full;     /* relays of a report left out of the count: no row free */
    /* issue 11, item 4 (HLS players' beacons: audience/beacon.c) */
    uint64_t beacons;                 /* beacons counted (a session's first one included) */
    uint64_t beacon_sessions;         /* session ids issued */
    uint64_t refused_beacon;          /* 403: a forged, expired or another space's session id */
    uint64_t refused_beacon_per_ip;   /* 429: too many new sessions from one address */
    uint64_t refused_beacon_space;    /* 503: the space has SHARED_BEACONS_PER_SPACE sessions */
    uint64_t refused_beacon_table;    /* 503: no free slot in the session's probe window */
    /* issue 11, item 5 (AAC and MP3 renditions, transcode/transcode.h) */
    uint64_t refused_rendition; /* 503: a space's rendition has no slot (the slot reserve) */
    uint64_t refused_rendition_encoders; /* 503: rendition-max-encoders run, this one not */
    /* issue 12, item 3 (reactions and raised hands: audience/react.c) */
    uint64_t reactions;            /* reactions counted */
    uint64_t refused_react_rate;   /* 429: a listener (its id) over react-per-s */
    uint64_t refused_react_ip;     /* 429: an address over react-ip-per-s */
    uint64_t refused_react_bad;    /* 400: a reaction or hand request that does not parse */
    uint64_t refused_react_id;     /* 403: a forged, expired or another space's listener id */
    uint64_t react_buckets_shared; /* rate buckets shared by two keys (the table was busy) */
    uint64_t listener_ids;         /* listener ids issued (POST /hand/<space>?op=hello) */
    uint64_t hand_events;          /* hands raised or lowered, queued for the main process */
    uint64_t refused_hand_queue;   /* 503: this worker's hand queue was full */
    uint64_t refused_hands_full;   /* 503: the space lists max-hands raised hands */
    uint64_t hand_invites_taken;   /* stage invites handed to an invited hand */
    /* issue 12, item 2 (replay of recordings, audience/replay.c) */
    uint64_t replay_opened;  /* recording reads begun (200 or 206) */
    uint64_t replay_closed;  /* of which ended (opened - closed: reads open now) */
    uint64_t replay_bytes;   /* recording bytes sent */
    uint64_t replay_bad_range; /* Range headers ignored (malformed) or refused (416) */
    uint64_t refused_replay; /* 503: the process holds as many reads as listeners it may */
    /* issue 12, item 5 (keep-alive for documents: conn/conn.h) */
    uint64_t keepalive_requests;    /* request heads read on a kept-alive connection */
    uint64_t keepalive_idle_closes; /* kept-alive connections closed idle at the head deadline */
};

/* What a source announced in its ice-* headers, control bytes removed. */
struct space_meta {
    char name[128], description[256], genre[64], url[256], bitrate[16];
};

/* The header of a double buffer of two halves, each <cap> bytes, that follow it in its owner
 * (shm.h, rule 2). Written by the main process only. */
struct shared_dbuf {
    uint32_t gen;         /* the generation to take now; it lives in half gen & 1 */
    uint32_t half_gen[2]; /* the generation half i holds (of parity i), other parity: busy */
    uint32_t len[2];
    uint32_t aux[2]; /* the preamble: length of its HTTP part */
};

/* A reader's view of one generation of a double buffer. Its bytes may change under the reader:
 * trust what was made of them only if shared_dbuf_intact() says so afterwards. */
struct shared_view {
    uint32_t gen;
    uint32_t len;
    uint32_t aux;
    const unsigned char *data;
};

struct shared_space {
    uint32_t gen;   /* bumped when the slot is taken or freed */
    uint32_t state; /* enum slot_state */
    char mount[64];
    struct space_meta meta; /* with the config's display name/description applied */
    int32_t channels;
    uint32_t source_connected;
    int64_t stream_start_wall;
    int64_t stream_start_ms; /* the same in ms (HLS's clock: a second's floor would put
                              * EXT-X-PROGRAM-DATE-TIME up to 1 s early) */
    uint32_t listener_peak; /* kept by the main process from the workers' counts */
    struct shared_dbuf preamble_hdr;
    unsigned char preamble[2][SHARED_PREAMBLE_MAX]; /* HTTP response head + Ogg header pages */
    struct shared_dbuf doc_hdr; /* the stage's state document */
    unsigned char doc[2][SHARED_STATE_MAX];
    /* issue 12, item 3: raised hands (stage/hands.c writes, audience/react.c reads) */
    uint32_t hands_n;                                /* hands raised now */
    uint64_t hand_invited[SHARED_HAND_INVITES];      /* listener ids the host invited; 0: none */
    /* issue 9 (the operator's views), gauges kept by the stage of this slot, 0 without one */
    uint32_t stage_members;      /* WebSocket members, listeners included */
    uint32_t stage_speakers;     /* of which on stage (host, co-hosts, speakers) */
    uint32_t stage_queued_bytes; /* bytes queued to its speakers, not yet taken by their sockets */
    int64_t starts_at_s;         /* issue 12: a scheduled space's start (epoch s) until live */
    /* issue 10 (relays): the stream's identity as the relay feed carries it down the tree:
     * the Ogg serial and the origin's slot generation when the stream began */
    uint32_t feed_serial, feed_epoch;
    /* a relay's space: its main process's own feed of it is well until this CLOCK_MONOTONIC
     * ms (pushed on while it is; in the past while it is down; 0: not a relay, never
     * starved); its workers' keepalives to the relays below say FEED_KEEPALIVE_STARVED past
     * it. A time, not a flag, so a relay whose main process froze is starved too. */
    int64_t feed_fed_until_ms;
    /* issue 11, item 5: a rendition slot (transcode/transcode.h) carries another slot's
     * programme re-encoded: <rendition_of> is that slot + 1 (0: a space of its own), <kind>
     * an enum rendition_kind, <src_gen> the source slot's generation it renders, <kbps> its
     * bitrate. Set before the slot goes LIVE, constant while it is. */
    int32_t rendition_of;
    uint32_t rendition_kind, rendition_src_gen, rendition_kbps;
    uint32_t rendition_on; /* 1 while its encoder runs (the workers' admission reads it) */
    /* issue 12, item 2: enum record_state of this slot's recording, and its id */
    uint32_t record_state;
    char record_id[128];
    /* issue 12, item 4: live captions (captions/captions.c writes, audience/captions.c reads).
     * The cue list is a double buffer of lines "ID START_MS END_MS TEXT\n", oldest first, ids
     * growing, times on the programme's wall clock (unix ms, stream_start_ms's clock). */
    uint32_t captions_on;       /* 0: no captions; 1: captioned, recogniser restarting; 2: running */
    uint32_t captions_epoch;    /* changes when the cue list starts over (a new stream) */
    int64_t captions_final_ms;  /* no new cue will start before this (WebVTT segments are done) */
    char captions_lang[36];     /* its language (BCP 47; captions-lang, or a relay's upstream's) */
    struct shared_dbuf captions_hdr;
    unsigned char captions[2][SHARED_CAPTIONS_MAX];
};

enum record_state { RECORD_OFF = 0, RECORD_ON, RECORD_FAILED };

struct shared;

/* The renditions a space can have, by the suffix of their mount (issue 11, item 5). */
enum rendition_kind { RENDITION_NONE = 0, RENDITION_AAC, RENDITION_MP3, RENDITION_KINDS };

/* 1 if slot <s> is a rendition of another slot (its listeners count, but it is no space: no
 * stage, no relay feed, no state document). */
static inline int shared_is_rendition(const struct shared_space *s)
{
    return __atomic_load_n(&s->rendition_of, __ATOMIC_ACQUIRE) != 0;
}
/* The rendition kind a mount name asks for, by its suffix (".aac", ".mp3"), with the length
 * of the space's name before it in <*base_len>; RENDITION_NONE for any other name. */
int rendition_mount_kind(const char *mount, size_t *base_len);
/* The live rendition slot of <kind> of slot <src>, or -1 (a reader such as the HLS packager
 * finds a space's AAC frames there: the contract is in transcode/transcode.h). */
int shared_rendition_slot(const struct shared *sh, int src, int kind);
/* The suffix of <kind> (".aac"), and its Content-Type and status-json subtype. */
const char *rendition_suffix(int kind);
const char *rendition_content_type(int kind);
const char *rendition_codec_name(int kind);

/*
 * One relay feed's last report (issue 10, item 3), in the table of the worker serving the feed.
 * A record with a sequence (shm.h, rule 4): <seq> odd while the worker writes it; a reader
 * copies the record and keeps the copy only if <seq> was the same even, non-zero value before
 * and after. Texts are NUL-terminated and were checked by feed_text_ok() (relay/feedproto.h).
 */
#define SHARED_WORKER_RELAYS 16 /* per worker: past it a feed still counts, but has no row */
#define SHARED_RELAY_ADDR 64
#define SHARED_RELAY_NAME 33
#define SHARED_RELAY_URL 129
struct shared_relay {
    uint32_t seq;
    uint16_t slot, flags;   /* the space it feeds from; FEED_REPORT_DRAINING */
    uint32_t slot_gen;      /* that slot's generation when the feed began */
    uint32_t tree, own;     /* receiving listeners: its subtree's, of which its own */
    uint32_t connections, capacity, load_milli;
    int64_t reported_ms;    /* CLOCK_MONOTONIC ms (the loop's clock) of the report */
    char addr[SHARED_RELAY_ADDR]; /* the feed's peer address */
    char name[SHARED_RELAY_NAME];
    char url[SHARED_RELAY_URL];   /* its public listener URL base; "": not for redirects */
};

/*
 * The relays a worker counts in the tree (issue 10, item 3; relay/feedproto.h, "How an
 * upstream counts"): one row per (slot, relay id), the best report of that relay whichever of
 * this worker's feeds carried it, until FEED_REPORT_AGE_MS after <seen_ms>. The whole table is
 * a record with a sequence (shm.h, rule 4): shared_tree_write / shared_tree_read.
 */
#define SHARED_WORKER_TREE_ROWS 256
struct shared_tree_row {
    uint64_t id;
    uint32_t gen, own;  /* the relay's feed generation; its own receiving listeners */
    int64_t seen_ms;    /* CLOCK_MONOTONIC ms when that relay made the report */
    uint16_t slot, pad;
    uint32_t slot_gen;  /* that slot's generation when the row was taken */
};
struct shared_tree_rows {
    uint32_t seq, n;
    struct shared_tree_row row[SHARED_WORKER_TREE_ROWS];
};

struct shared_worker {
    int32_t pid;
    uint32_t listener_connections;
    uint32_t conns[SHARED_MAX_SPACES];     /* open listener connections per slot */
    uint32_t receiving[SHARED_MAX_SPACES]; /* of which received audio in the last 5 s */
    struct shared_counters c;
    /* Admission (audience.c), added at the end: this worker's overload pressure in
     * thousandths, updated every 250 ms, and 1 while it refuses joins for it. */
    uint32_t pressure_milli;
    uint32_t overloaded;
    uint32_t waiting_room_pace; /* issue 12: the joins a second its tickets are spaced for */
    int64_t loop_lag_ms; /* issue 8: this worker's peak loop lag over the last second */
    /* issue 10, item 3: the relays below this worker's feeds, by identity (what the tree
     * counts), and the last report of each feed (nrelays rows in use: gauges, redirects) */
    struct shared_tree_rows tree;
    uint32_t nrelays;
    struct shared_relay relays[SHARED_WORKER_RELAYS];
    uint32_t hls_blocked_now; /* issue 11: HLS requests held by this worker now (gauge) */
    /* issue 12, item 3: reactions counted by this worker, per slot and kind, cumulative (rule
     * 3: relaxed words, one writer); the main process sums the differences each second */
    uint64_t reactions[SHARED_MAX_SPACES][SHARED_REACTIONS];
    struct shared_hand_queue hands; /* raised and lowered hands, on their way to the main */
};

/* Writer (the worker owning <w>): publishes <n> (<= SHARED_WORKER_TREE_ROWS) rows. */
void shared_tree_write(struct shared_worker *w, const struct shared_tree_row *rows, uint32_t n);
/* Reader: copies <w>'s rows into <out> (SHARED_WORKER_TREE_ROWS of room). Returns how many, or
 * -EAGAIN if the writer was busy through every retry (microseconds each; a reader then counts
 * without that worker's relays this once). */
int shared_tree_read(const struct shared_worker *w, struct shared_tree_row *out);
/* The relays counted in slot <slot>'s tree, over every worker: rows of its current space no
 * older than <max_age_ms> at <now_ms>, one per relay id (the highest generation, then the
 * latest), into <out> (nworkers x SHARED_WORKER_TREE_ROWS of room). Returns how many. */
struct shared;
int shared_tree_collect(const struct shared *sh, int slot, int64_t now_ms, int64_t max_age_ms,
                        struct shared_tree_row *out);

/* Reader: copies row <i> of worker block <w> into <out>. Returns 0, or -EAGAIN if the row is
 * unused or being written (a reader then skips it: the next report writes it again). */
int shared_relay_read(const struct shared_worker *w, uint32_t i, struct shared_relay *out);
/* Writer (the worker owning <w>): writes row <i> from <in> (its <seq> is ignored). */
void shared_relay_write(struct shared_worker *w, uint32_t i, const struct shared_relay *in);

/*
 * The dashboard's history (issue 9): one sample a second of the figures it charts, the last
 * SHARED_HISTORY seconds, taken by the main process (status_sample()) and read by whichever
 * process serves /dashboard.json. Bounded by construction: a ring of fixed samples.
 *
 * Sample n (from 1) lives in samples[(n - 1) % SHARED_HISTORY]. The writer sets its <seq> to
 * 0, fills it, stores <seq> = n (release), then <count> = n (release). A reader takes <count>,
 * copies the samples it wants and keeps a copy only if its <seq> is the one expected before
 * and after the copy; counters are cumulative, so the reader makes rates of neighbours.
 */
#define SHARED_HISTORY 600
#define SHARED_REFUSALS 21 /* reasons of rostrum_refused_total (status.c, refusal_names) */

struct shared_sample {
    uint32_t seq;
    uint32_t nworkers;
    int64_t wall_ms;
    uint32_t listeners[SHARED_MAX_SPACES]; /* per slot: received audio in the last 5 s */
    uint32_t slot_gen[SHARED_MAX_SPACES];  /* the slot's generation then (0: free) */
    uint64_t joins[JOIN_OUTCOMES];
    uint64_t refused[SHARED_REFUSALS];
    uint64_t stalls, bytes_sent;
    uint16_t pressure_milli[SHARED_MAX_WORKERS];
    uint32_t loop_lag_ms[SHARED_MAX_WORKERS + 1]; /* [0]: main, [1 + i]: worker i */
    uint32_t speakers, members, queued_bytes;     /* over all stages */
    uint32_t mixer_frame_max_us;
    uint64_t mixer_overruns, return_drops, ws_closes;
};

struct shared_history {
    uint64_t count; /* samples taken so far */
    struct shared_sample samples[SHARED_HISTORY];
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
    uint64_t refused_schedule;             /* 400/503: a scheduled space refused (issue 12) */
    /* issue 8 (pause): added at the end to ease merging */
    uint64_t sources_paced;   /* sources found faster than real time and paced */
    int64_t loop_lag_ms;      /* the main loop's peak timer lateness over the last second */
    /* issue 9 (the operator's views): the mixers of all stages, kept by the main process */
    uint64_t mixer_frames;        /* frames mixed */
    uint64_t mixer_frame_ns;      /* their mixing time, summed (with mixer_frames: a summary) */
    uint64_t mixer_overruns;      /* frames that took over 20 ms, or ticks that came 20 ms late */
    uint64_t return_drops;        /* return-audio packets dropped for a speaker not reading */
    uint32_t mixer_frame_max_us;  /* the longest frame of the last second (published) */
    uint32_t mixer_frame_peak_us; /* the longest of the current second (main process only) */
    uint32_t draining;            /* SIGTERM: newcomers are refused until the process stops */
    uint32_t drain_retry_s;       /* their Retry-After */
    struct shared_history history;
    /* issue 10 (rostrum relay): its upstream feeds */
    uint64_t relay_connects;       /* feed connections that got their header */
    uint64_t relay_cuts;           /* feed connections lost: closed, reset, bad frame, stalled */
    uint64_t relay_stalls;         /* of which: no page for 2 page intervals */
    uint64_t relay_bad_frames;     /* of which: refused frames (invalid, too large, out of order) */
    uint64_t relay_resumes;        /* reconnections that carried on the same stream, no gap */
    uint64_t relay_restarts;       /* streams restarted (identity changed, seq no longer there) */
    uint64_t relay_failovers;      /* reconnections to another upstream than the last */
    uint64_t relay_feeds_up;       /* gauge: feeds receiving now */
    uint64_t relay_rows_unlisted;  /* relays of the subtree reported past FEED_REPORT_ROWS */
    /* issue 11, item 5: the renditions' encoders (transcode/transcode.h) */
    uint64_t rendition_slots;        /* gauge: rendition slots taken */
    uint64_t rendition_encoders;     /* gauge: encoders running */
    uint64_t rendition_starts;       /* encoders started (a first listener, or always-on) */
    uint64_t rendition_errors;       /* encoder or decoder errors (the encoder restarts) */
    uint64_t rendition_frames;       /* AAC / MP3 frames published */
    uint64_t rendition_cpu_ns;       /* CPU time spent decoding and encoding (thread clock) */
    uint64_t rendition_skips;        /* times an encoder fell behind real time and skipped */
    uint64_t rendition_evictions;    /* idle rendition slots given back for new spaces */
    /* issue 12, item 3: raised hands (stage/hands.c) */
    uint64_t hands_raised;      /* hands taken into a space's list */
    uint64_t hands_dropped;     /* "up" events dropped: the space held max-hands already */
    uint64_t hands_lowered;     /* by their listener */
    uint64_t hands_dismissed;   /* by the host */
    uint64_t hands_expired;     /* not raised again for hand-ttl-s */
    uint64_t hands_invited;     /* invited on stage by the host */
    /* issue 12, item 2: recordings (record/record.h) */
    uint64_t record_active;   /* gauge: recordings growing now */
    uint64_t record_started;  /* recordings begun */
    uint64_t record_errors;   /* recordings stopped by a write error (disk full...) */
    uint64_t record_bytes;    /* bytes written to recordings */
    uint64_t record_syncs;    /* fdatasync() calls on recordings */
    /* issue 12, item 4: live captions (captions/captions.h) */
    uint64_t captions_running;      /* gauge: recognisers running */
    uint64_t captions_starts;       /* recognisers started */
    uint64_t captions_restarts;     /* of which after one exited or was killed */
    uint64_t captions_stuck;        /* recognisers killed for not reading their input */
    uint64_t captions_cues;         /* cues published */
    uint64_t captions_bad_lines;    /* output lines refused (not JSON, no text, bad times) */
    uint64_t captions_rate_limited; /* cues dropped past CAPTIONS_MAX_PER_S */
    uint64_t captions_pcm_bytes;    /* PCM written to recognisers */
    uint64_t captions_pcm_dropped;  /* PCM dropped (a recogniser killed with it queued) */
    uint64_t captions_skips;        /* times the decoder skipped to the live edge */
    uint64_t captions_cpu_ns;       /* decoding for recognisers (thread clock) */
};

struct shared {
    uint64_t layout; /* shared_layout() of the build that made it */
    size_t size;
    struct shared_main main;
    uint32_t nworkers; /* worker blocks in use; 1 when the main process serves listeners */
    uint32_t total_connections; /* all listeners of all workers, updated by the main process */
    struct shared_counters retired; /* counters of workers that died, so totals never drop */
    struct shared_space spaces[SHARED_MAX_SPACES];
    struct shared_worker workers[SHARED_MAX_WORKERS];
    /* The configuration as the main process last (re)loaded it, as opaque bytes (the layer
     * that knows its type is above this one): a seqlock, <cfg_gen> odd while it is being
     * written. See shared_config_put(). */
    uint32_t cfg_gen;
    uint32_t cfg_len;
    unsigned char cfg_blob[SHARED_CONFIG_BYTES];
    /* Admission tickets already used, by every worker: see shared_ticket_use(). 8 MiB of
     * address space, touched only where tickets land (MAP_NORESERVE). */
    uint64_t used_tickets[SHARED_TICKETS];
    /* HLS sessions whose beacons arrive (issue 11), written by every worker: see
     * shared_beacon_seen(). */
    uint64_t beacons[SHARED_BEACONS];
    /* followed by SHARED_MAX_SPACES rings, each ring_bytes(SHARED_RING_SLOTS,
     * SHARED_RING_BYTES) long, at shared_ring() */
};

/* Bumped whenever a shared structure changes meaning without changing size. */
#define SHARED_LAYOUT_VERSION 3 /* 2: rendition slots (issue 11); 3: captions (issue 12) */

/* Maps the shared memory for <nworkers> workers (MAP_NORESERVE: rings take memory only as
 * pages are written), a memfd whose descriptor goes to <*memfd> (close-on-exec; NULL: closed).
 * Aborts if it cannot. */
struct shared *shared_create(uint32_t nworkers, int *memfd);
/* Maps the shared memory another process (an earlier binary: an upgrade) made in <memfd>.
 * Returns it, or NULL with the reason in <err> if its layout is not this build's. */
struct shared *shared_attach(int memfd, char *err, size_t errlen);
/* A fingerprint of this build's shared layout (its version and sizes). */
uint64_t shared_layout(void);
void shared_destroy(struct shared *sh);

/* Writer (the main process, one at a time): publishes <len> bytes (<= SHARED_CONFIG_BYTES) of
 * configuration as the next generation. Returns that generation (even, never 0). */
uint32_t shared_config_put(struct shared *sh, const void *data, uint32_t len);

/* Reader (a worker): if the configuration's generation is not <seen>, copies it into <out>
 * (<len> bytes, which must be the published length) and returns its generation; returns
 * <seen> if nothing changed, or 0 if a write is under way or <len> does not match (try
 * again later). */
uint32_t shared_config_get(const struct shared *sh, uint32_t seen, void *out, uint32_t len);

/* The ring of slot <i>. */
struct ring *shared_ring(struct shared *sh, int i);

/* Writer: publishes <len> bytes of <data> (<= <cap>) with <aux> as the next generation of the
 * double buffer <d> whose halves, <cap> bytes each, start at <halves>. */
void shared_dbuf_put(struct shared_dbuf *d, unsigned char *halves, size_t cap, const void *data,
                     uint32_t len, uint32_t aux);

/* Reader: the generation to take now. */
static inline uint32_t shared_dbuf_gen(const struct shared_dbuf *d)
{
    return shm_load_acquire32(&d->gen);
}

/* Reader: a view of generation <gen> of <d>. Returns 0, or -ENOENT if its half has been (or is
 * being) given to a later generation. */
int shared_dbuf_view(const struct shared_dbuf *d, const unsigned char *halves, size_t cap,
                     uint32_t gen, struct shared_view *v);

/* Reader: after using bytes of a view of generation <gen>, 1 if they were that generation's
 * all along, 0 if the writer may have overwritten them meanwhile. */
static inline int shared_dbuf_intact(const struct shared_dbuf *d, uint32_t gen)
{
    return shm_reload32(&d->half_gen[gen & 1]) == gen;
}

/* Reader: copies the current generation into <out> (<cap> bytes, >= the buffer's). Returns its
 * length (0 if empty), or -EAGAIN if the writer changed it under every one of a few tries. */
int shared_dbuf_copy(const struct shared_dbuf *d, const unsigned char *halves, size_t cap,
                     void *out, uint32_t *aux);

/* The preamble (HTTP response head + Ogg header pages) and the state document of a space. */
static inline void shared_preamble_put(struct shared_space *s, const void *data, uint32_t len,
                                       uint32_t http_len)
{
    shared_dbuf_put(&s->preamble_hdr, &s->preamble[0][0], SHARED_PREAMBLE_MAX, data, len,
                    http_len);
}
static inline uint32_t shared_preamble_gen(const struct shared_space *s)
{
    return shared_dbuf_gen(&s->preamble_hdr);
}
/* <v->aux> is the length of the HTTP part. */
static inline int shared_preamble_view(const struct shared_space *s, uint32_t gen,
                                       struct shared_view *v)
{
    return shared_dbuf_view(&s->preamble_hdr, &s->preamble[0][0], SHARED_PREAMBLE_MAX, gen, v);
}
static inline int shared_preamble_intact(const struct shared_space *s, uint32_t gen)
{
    return shared_dbuf_intact(&s->preamble_hdr, gen);
}
static inline void shared_doc_put(struct shared_space *s, const void *json, uint32_t len)
{
    shared_dbuf_put(&s->doc_hdr, &s->doc[0][0], SHARED_STATE_MAX, json, len, 0);
}
/* Copies the state document into <out> (SHARED_STATE_MAX bytes). Returns as shared_dbuf_copy. */
static inline int shared_doc_copy(const struct shared_space *s, void *out)
{
    return shared_dbuf_copy(&s->doc_hdr, &s->doc[0][0], SHARED_STATE_MAX, out, NULL);
}
/* The cue list of a space (issue 12, item 4). */
static inline void shared_captions_put(struct shared_space *s, const void *text, uint32_t len)
{
    shared_dbuf_put(&s->captions_hdr, &s->captions[0][0], SHARED_CAPTIONS_MAX, text, len, 0);
}
/* Copies the cue list into <out> (SHARED_CAPTIONS_MAX bytes). Returns as shared_dbuf_copy. */
static inline int shared_captions_copy(const struct shared_space *s, void *out)
{
    return shared_dbuf_copy(&s->captions_hdr, &s->captions[0][0], SHARED_CAPTIONS_MAX, out,
                            NULL);
}

/* 1 if <m> is a valid mount name: 1-63 of [A-Za-z0-9._-], not starting with '.', and not a
 * name the audience port serves itself. */
int mount_name_ok(const char *m);
/*
 * Marks admission ticket <id> (valid until <expiry_s>, unix seconds) used, for all workers at
 * once. Returns 0 if it was not used before, -EALREADY if it was, -ENOSPC if its probe window
 * holds only live tickets (the caller refuses: fail closed).
 *
 * Why shared memory: a listener's connections are spread over the workers by the kernel's
 * hash of the 4-tuple, so a ticket replayed on a new connection usually reaches another
 * worker; a used-ticket set per worker would let a ticket in once per worker. One table,
 * lock-free: each slot is one 64-bit word, (44 high bits of the id) << 20 | (expiry mod 2^20
 * s), claimed with a compare-and-swap, so a slot never holds half of an entry. A slot whose
 * expiry passed is free again: the table holds only the tickets of the last ticket lifetime
 * (60 s after their admit time), whatever the number issued. Two workers using the same ticket
 * at the same instant both claim a slot; each then sees the other's and refuses, so the
 * ticket is used at most once even then.
 */
int shared_ticket_use(struct shared *sh, uint64_t id, int64_t expiry_s, int64_t now_s);

/*
 * HLS sessions (issue 11, item 4). Records that session <id> (a signed session id's 64 random
 * bits) of slot <slot> beaconed at <now_s> (CLOCK_MONOTONIC seconds, the same clock in every
 * process). Returns 1 if the session was not in the table (or had lapsed), 0 if it was and is
 * now refreshed, -ENOSPC if its probe window holds only live sessions of other ids.
 *
 * A session counts while its beacons arrive: it is live for <window_s> after its last beacon.
 * Beacons land on any worker (SO_REUSEPORT hashes each new connection), so the table is shared
 * and one session is one slot wherever its beacons land: the count is of distinct ids. Each
 * slot is one 64-bit word claimed or refreshed by compare-and-swap, so a slot never holds half
 * of an entry: (36 bits of the id) << 28 | slot << 22 | (<now_s> mod 2^22). A lapsed slot is
 * free for the next new session. Two workers taking the first beacon of one session at the same
 * instant may claim two slots; the one at the higher index lets its slot go again, so the
 * session is counted once. Two ids that share their 36 bits count as one (a count low by one:
 * at 65,536 sessions about a 3 % chance that some pair does, at the table's 262,144 about 40 %).
 */
int shared_beacon_seen(struct shared *sh, uint64_t id, int slot, int64_t now_s, int window_s);
/* Counts, per slot into <out>, the sessions live at <now_s> (beaconed within <window_s>). */
void shared_beacon_count(const struct shared *sh, int64_t now_s, int window_s,
                         uint32_t out[SHARED_MAX_SPACES]);

/* Sums the counters of the main process, every worker and the retired ones into <out>. */
void shared_sum_counters(const struct shared *sh, struct shared_counters *out);

#endif
