/*
 * load/attack: see attack.h for the modes, the bounds and a connection's states.
 *
 * One worker is one event loop holding its share of the connections in a fixed array of slots
 * (no allocation per connection, except a tickets probe's ticket and /join body). Three timers
 * drive it: a 10 ms pacing timer opens connections at the worker's share of the rate; a 100 ms
 * scan sends slowloris lines, does slowread's slow reads and expires waits (no timer per
 * connection); in slowread a 1 s timer asks the kernel which server ends have closed.
 *
 * Opening at the rate in the pressure modes: an opening that falls due while --count are open
 * is skipped, not made up later, so a server that frees slots gets the rate, never a burst.
 *
 * Every connection's end is counted once, in conn_finish(), by how it ended. Times are
 * CLOCK_MONOTONIC microseconds, shared by all processes.
 */
#include "load/attack.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "event/loop.h"
#include "load/listen.h"
#include "load/oggcheck.h"
#include "util/log.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PACE_MS 10
#define SCAN_MS 100
#define DIAG_MS 1000
#define RBUF_SIZE 16384
#define HEAD_MAX 16384           /* a longer response head is a bad response */
#define JOIN_BODY_MAX 4096       /* a longer /join answer is unparsable */
#define SLOWLORIS_MAX_LINES 1000 /* ~12 KB of head at most, whatever --interval-ms */
#define SLOW_AUDIO_US 1000000    /* a join slower than this to first audio is "slow" */
/* tickets: an early try needs admit_at this far ahead (the server forgives 250 ms of skew) */
#define EARLY_MARGIN_US 500000
#define SCRATCH_SIZE (LOAD_URL_MAX_PATH + 3 * ATTACK_TICKET_MAX + 512)

enum { C_FREE, C_CONNECTING, C_SENDING, C_WAITING, C_DONE };

/* How a connection ended (conn_finish). */
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
#define CF_KERNEL_CLOSED 32 /* slowread: the server's end was seen closing */
#define CF_STATUS 64        /* a status line was parsed */

/* One connection; owned by its worker's slot array. */
struct atk_conn {
    struct io io;
    int64_t t_start; /* connect() */
    int64_t t_conn;  /* connected */
    int64_t t_due;   /* slowloris: next line; garbage: answer deadline; slowread: last read */
    uint64_t rx;     /* bytes received */
    uint32_t seed;   /* garbage: the message's seed; slowloris: header values */
    uint32_t len;    /* garbage: the message's length */
    uint32_t sent;   /* bytes of the current chunk sent */
    uint32_t laddr;  /* local IPv4 (host order): slowread's kernel lookup */
    uint16_t lport;
    uint16_t status;
    uint16_t lines;      /* slowloris: chunks sent whole (the first is the request line) */
    uint16_t head_bytes; /* response head bytes seen */
    uint16_t hpos;       /* bytes into the current response head line */
    uint8_t state;
    uint8_t hstate; /* 0 protocol token, 1..3 status digits read, 4 rest of the head, 5 body */
    uint8_t hnl;    /* the last head line ended and nothing but '\r' followed */
    uint8_t flags;  /* CF_* */
    uint8_t kind;   /* garbage flavour, or tickets kind */
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

struct atk_worker {
    struct loop loop;
    const struct attack_opts *o;
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
    struct attack_result res;
    uint8_t rbuf[RBUF_SIZE];
    char scratch[SCRATCH_SIZE];
    uint8_t gbuf[ATTACK_GARBAGE_MAX + 64];
};

/* ---- names ---------------------------------------------------------------------------------- */

static const char *const mode_names[ATTACK_MODES] = {"flood",   "slowloris", "slowread",
                                                     "garbage", "joinstorm", "tickets"};
static const char *const fail_names[ATTACK_FAILS] = {"refused", "timeout", "addr_not_avail",
                                                     "socket_error", "other"};
static const char *const tk_names[ATTACK_TK_KINDS] = {"join",  "forged",  "expired",
                                                      "early", "genuine", "open"};
static const char *const garbage_names[ATTACK_G_KINDS] = {
    "random", "junk_header", "long_path", "long_header", "bad_method", "control", "no_newline"};

const char *attack_mode_name(enum attack_mode m)
{
    return (unsigned)m < ATTACK_MODES ? mode_names[m] : "?";
}

int attack_mode_parse(const char *s)
{
    for (int i = 0; i < ATTACK_MODES; i++)
        if (strcmp(s, mode_names[i]) == 0)
            return i;
    return -1;
}

const char *attack_fail_name(enum attack_fail f)
{
    return (unsigned)f < ATTACK_FAILS ? fail_names[f] : "?";
}

const char *attack_ticket_kind_name(enum attack_ticket_kind k)
{
    return (unsigned)k < ATTACK_TK_KINDS ? tk_names[k] : "?";
}

const char *attack_garbage_kind_name(enum attack_garbage_kind k)
{
    return (unsigned)k < ATTACK_G_KINDS ? garbage_names[k] : "?";
}

int attack_is_pressure(const struct attack_opts *o)
{
    return o->mode == ATTACK_FLOOD || o->mode == ATTACK_SLOWLORIS || o->mode == ATTACK_SLOWREAD ||
           o->mode == ATTACK_GARBAGE;
}

void attack_result_merge(struct attack_result *into, const struct attack_result *from)
{
    into->attempted += from->attempted;
    into->connected += from->connected;
    for (int i = 0; i < ATTACK_FAILS; i++)
        into->fail[i] += from->fail[i];
    into->closed_fin += from->closed_fin;
    into->closed_rst += from->closed_rst;
    into->closed_kernel += from->closed_kernel;
    into->done += from->done;
    into->timeouts += from->timeouts;
    into->open_at_end += from->open_at_end;
    into->peak_open += from->peak_open;
    into->responses += from->responses;
    into->bad_responses += from->bad_responses;
    into->no_response += from->no_response;
    into->retry_after += from->retry_after;
    into->bytes_sent += from->bytes_sent;
    into->bytes_received += from->bytes_received;
    into->lines_sent += from->lines_sent;
    into->joined += from->joined;
    into->unfinished += from->unfinished;
    for (int i = 0; i < ATTACK_HTTP_CODES; i++)
        into->http[i] += from->http[i];
    for (int k = 0; k < ATTACK_G_KINDS; k++) {
        into->garbage_sent[k] += from->garbage_sent[k];
        for (int j = 0; j < 4; j++)
            into->garbage_http[k][j] += from->garbage_http[k][j];
    }
    into->tk_tickets += from->tk_tickets;
    into->tk_open += from->tk_open;
    into->tk_unparsable += from->tk_unparsable;
    into->tk_early_skipped += from->tk_early_skipped;
    into->tk_admit_after_end += from->tk_admit_after_end;
    if (from->tk_max_position > into->tk_max_position)
        into->tk_max_position = from->tk_max_position;
    for (int k = 0; k < ATTACK_TK_KINDS; k++) {
        into->tk_audio[k] += from->tk_audio[k];
        into->tk_none[k] += from->tk_none[k];
        for (int i = 0; i < ATTACK_HTTP_CODES; i++)
            into->tk_http[k][i] += from->tk_http[k][i];
    }
    hist_merge(&into->connect_us, &from->connect_us);
    hist_merge(&into->ttfb_us, &from->ttfb_us);
    hist_merge(&into->first_audio_us, &from->first_audio_us);
    hist_merge(&into->closed_after_us, &from->closed_after_us);
    hist_merge(&into->kept_us, &from->kept_us);
    hist_merge(&into->tk_wait_us, &from->tk_wait_us);
    hist_merge(&into->tk_late_us, &from->tk_late_us);
    if (from->timeline_len > into->timeline_len)
        into->timeline_len = from->timeline_len;
    for (uint32_t s = 0; s < from->timeline_len && s < ATTACK_TIMELINE_MAX; s++) {
        struct attack_second *a = &into->tl[s];
        const struct attack_second *b = &from->tl[s];
        a->started += b->started;
        a->joined += b->joined;
        a->failed += b->failed;
        a->slow += b->slow;
        a->unfinished += b->unfinished;
        if (b->max_audio_ms > a->max_audio_ms)
            a->max_audio_ms = b->max_audio_ms;
    }
}

/* ---- garbage and forged tickets -------------------------------------------------------------- */

/* xorshift32: cheap, deterministic, never 0 from a non-zero state */
static uint32_t rnd_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* Appends <s> to <out> at <*o>, as far as <cap> allows. */
static void put_str(uint8_t *out, uint32_t *o, uint32_t cap, const char *s)
{
    size_t l = strlen(s);
    if (l > cap - *o)
        l = cap - *o;
    memcpy(out + *o, s, l);
    *o += (uint32_t)l;
}

uint32_t attack_garbage(enum attack_garbage_kind kind, uint32_t seed, uint32_t len,
                        const char *path, const char *host, uint8_t *out)
{
    uint32_t s = seed * 2654435761u ^ 0x9e3779b9u;
    if (s == 0)
        s = 1;
    const uint32_t cap = ATTACK_GARBAGE_MAX;
    if (len < 1)
        len = 1;
    if (len > cap)
        len = cap;
    char line[LOAD_URL_MAX_PATH + 128];
    snprintf(line, sizeof(line), "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host);
    uint32_t o = 0;
    switch (kind) {
    case ATTACK_G_RANDOM:
        for (; o < len; o++)
            out[o] = (uint8_t)rnd_next(&s);
        return o;
    case ATTACK_G_JUNK_HEADER:
        put_str(out, &o, cap, line);
        if (len < o + 16)
            len = o + 16 < cap ? o + 16 : cap;
        for (; o < len; o++)
            out[o] = (uint8_t)rnd_next(&s);
        return o;
    case ATTACK_G_LONG_PATH: {
        put_str(out, &o, cap, "GET /");
        uint32_t tail = (uint32_t)strlen(" HTTP/1.1\r\n\r\n");
        uint32_t stop = len > o + tail ? len - tail : o + 1;
        for (; o < stop; o++)
            out[o] = (uint8_t)('A' + rnd_next(&s) % 26);
        put_str(out, &o, cap, " HTTP/1.1\r\n\r\n");
        return o;
    }
    case ATTACK_G_LONG_HEADER: {
        put_str(out, &o, cap, line);
        put_str(out, &o, cap, "X-Long: ");
        uint32_t stop = len > o + 4 ? len - 4 : o + 1;
        for (; o < stop; o++)
            out[o] = (uint8_t)('a' + rnd_next(&s) % 26);
        put_str(out, &o, cap, "\r\n\r\n");
        return o;
    }
    case ATTACK_G_BAD_METHOD: {
        uint32_t ml = 1 + rnd_next(&s) % 16;
        for (uint32_t i = 0; i < ml; i++)
            out[o++] = (uint8_t)(0x21 + rnd_next(&s) % 94);
        char rest[LOAD_URL_MAX_PATH + 128];
        snprintf(rest, sizeof(rest), " %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
        put_str(out, &o, cap, rest);
        return o;
    }
    case ATTACK_G_CONTROL: {
        put_str(out, &o, cap, line);
        static const uint8_t ctl[] = {'X',  '-', 'C', ':', ' ',  'a',  0,    'b',  1,    0x7f,
                                      0x1b, '[', '2', 'J', 0xff, 0xfe, '\r', '\n', '\r', '\n'};
        memcpy(out + o, ctl, sizeof(ctl));
        return o + (uint32_t)sizeof(ctl);
    }
    case ATTACK_G_NO_NEWLINE:
    default:
        for (; o < len; o++)
            out[o] = (uint8_t)(0x20 + rnd_next(&s) % 95);
        return o;
    }
}

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

/* ---- worker: bookkeeping ----------------------------------------------------------------------
 */

static struct atk_worker *worker_of(struct loop *loop)
{
    return (struct atk_worker *)((char *)loop - offsetof(struct atk_worker, loop));
}

/* Counts the end of joinstorm connection <c> in its second: <how> is an END_*. */
static void tl_add(struct atk_worker *w, const struct atk_conn *c, int joined, int how)
{
    if (w->o->mode != ATTACK_JOINSTORM)
        return;
    int64_t s = (c->t_start - w->start_us) / 1000000;
    if (s < 0 || s >= ATTACK_TIMELINE_MAX)
        return;
    struct attack_second *t = &w->res.tl[s];
    t->started++;
    if (joined)
        t->joined++;
    else if (how == END_RUN)
        t->unfinished++;
    else
        t->failed++;
    if ((uint32_t)s + 1 > w->res.timeline_len)
        w->res.timeline_len = (uint32_t)s + 1;
}

static void tl_joined(struct atk_worker *w, const struct atk_conn *c, int64_t audio_us)
{
    int64_t s = (c->t_start - w->start_us) / 1000000;
    if (w->o->mode != ATTACK_JOINSTORM || s < 0 || s >= ATTACK_TIMELINE_MAX)
        return;
    struct attack_second *t = &w->res.tl[s];
    if (audio_us > SLOW_AUDIO_US)
        t->slow++;
    uint32_t ms = (uint32_t)(audio_us / 1000);
    if (ms > t->max_audio_ms)
        t->max_audio_ms = ms;
}

/* Ends <c> for good, counting it once by <how> (END_*). In tickets mode its probe is queued to
 * move on from the loop's before-sleep hook, never from here: the next request reuses the slot,
 * and the callers up the stack still look at it. */
static void conn_finish(struct atk_worker *w, struct atk_conn *c, int how)
{
    if (c->state == C_FREE || c->state == C_DONE)
        return;
    struct attack_result *r = &w->res;
    int64_t now = load_now_us();
    if (c->io.fd >= 0) {
        if (!(c->flags & CF_DETACHED))
            loop_del(&w->loop, &c->io);
        close(c->io.fd);
        c->io.fd = -1;
    }
    int connected = (c->flags & CF_CONNECTED) != 0;
    if (connected)
        hist_add(&r->kept_us, (uint64_t)(now - c->t_conn));
    switch (how) {
    case END_FIN:
    case END_RST:
        if (!(c->flags & CF_KERNEL_CLOSED)) {
            if (how == END_FIN)
                r->closed_fin++;
            else
                r->closed_rst++;
            if (connected)
                hist_add(&r->closed_after_us, (uint64_t)(now - c->t_conn));
        }
        if (connected && !(c->flags & CF_GOT_BYTE))
            r->no_response++;
        break;
    case END_DONE:
        r->done++;
        break;
    case END_TIMEOUT:
        r->timeouts++;
        break;
    case END_RUN:
        if (connected)
            r->open_at_end++;
        if (w->o->mode == ATTACK_JOINSTORM)
            r->unfinished++;
        break;
    default:
        break;
    }
    if (w->o->mode == ATTACK_GARBAGE && connected) {
        int col = !(c->flags & CF_STATUS) ? 3 : c->status == 400 ? 0 : c->status == 431 ? 1 : 2;
        r->garbage_http[c->kind][col]++;
    }
    if (w->o->mode == ATTACK_TICKETS && !(c->flags & CF_STATUS))
        r->tk_none[c->kind]++;
    tl_add(w, c, c->ogg.first_audio != 0, how);
    c->state = C_DONE;
    w->open--;
    uint32_t slot = (uint32_t)(c - w->conns);
    if (attack_is_pressure(w->o)) {
        c->state = C_FREE;
        w->free_slots[w->nfree++] = slot;
    }
    if (w->o->mode == ATTACK_TICKETS && !w->ending)
        w->pending[w->npending++] = slot;
}

static int connect_fail_reason(int err)
{
    switch (err) {
    case ECONNREFUSED:
    case ECONNRESET:
        return ATTACK_F_REFUSED;
    case ETIMEDOUT:
        return ATTACK_F_TIMEOUT;
    case EADDRNOTAVAIL:
    case EADDRINUSE:
        return ATTACK_F_ADDR_NOT_AVAIL;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        return ATTACK_F_SOCKET;
    default:
        return ATTACK_F_OTHER;
    }
}

static void conn_fail(struct atk_worker *w, struct atk_conn *c, int err)
{
    w->res.fail[connect_fail_reason(err)]++;
    conn_finish(w, c, END_FAILED);
}

/* ---- worker: what to send ---------------------------------------------------------------------
 */

/* Percent-encodes <s> into <out> (<cap> bytes), keeping unreserved characters. Returns 0, or -1
 * if it does not fit. */
static int pct_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int keep = isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~';
        if (o + (keep ? 1 : 3) + 1 > cap)
            return -1;
        if (keep) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
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
            pct_encode(forged, enc, sizeof(enc)) < 0)
            return 0;
        snprintf(target, sizeof(target), "%s?ticket=%s", u->path, enc);
        break;
    case ATTACK_TK_EXPIRED:
        if (!w->o->ticket_expired || pct_encode(w->o->ticket_expired, enc, sizeof(enc)) < 0)
            return 0;
        snprintf(target, sizeof(target), "%s?ticket=%s", u->path, enc);
        break;
    default: /* early, genuine: the server's own stream path when it gave a usable one */
        if (path_ok(p->stream)) {
            snprintf(target, sizeof(target), "%s", p->stream);
        } else {
            if (!p->ticket || pct_encode(p->ticket, enc, sizeof(enc)) < 0)
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

/* The bytes <c> has to send now (its current chunk), and their length in <*len>; NULL or 0 when
 * there is nothing to send. Chunks are generated again on each call: deterministic. */
static const void *conn_chunk(struct atk_worker *w, struct atk_conn *c, uint32_t *len)
{
    const struct load_url *u = &w->o->url;
    *len = 0;
    switch (w->o->mode) {
    case ATTACK_SLOWLORIS: {
        int n;
        if (c->lines == 0)
            n = snprintf(w->scratch, sizeof(w->scratch),
                         "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: rostrum-load attack\r\n",
                         u->path, u->host, u->port);
        else
            n = snprintf(w->scratch, sizeof(w->scratch), "X-a%u: %08x\r\n", c->lines,
                         c->seed ^ c->lines);
        *len = (uint32_t)n;
        return w->scratch;
    }
    case ATTACK_SLOWREAD:
    case ATTACK_JOINSTORM:
        *len = w->req_len;
        return w->req;
    case ATTACK_GARBAGE:
        *len = attack_garbage(c->kind, c->seed, c->len, u->path, u->host, w->gbuf);
        return w->gbuf;
    case ATTACK_TICKETS:
        *len = ticket_request(w, &w->probes[c - w->conns], c->kind);
        return w->scratch;
    default:
        return NULL;
    }
}

/* ---- worker: one connection -------------------------------------------------------------------
 */

static void conn_wait(struct atk_worker *w, struct atk_conn *c, int64_t now);
static void conn_read(struct atk_worker *w, struct atk_conn *c, size_t most);

/* Sends what is left of <c>'s chunk; when it is out, moves on (conn_wait). */
static void conn_send(struct atk_worker *w, struct atk_conn *c)
{
    uint32_t len;
    const char *p = conn_chunk(w, c, &len);
    if (len == 0 && w->o->mode != ATTACK_FLOOD) {
        conn_finish(w, c, END_FAILED); /* a request that could not be made */
        return;
    }
    while (c->sent < len) {
        ssize_t k = send(c->io.fd, p + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (k > 0) {
            c->sent += (uint32_t)k;
            w->res.bytes_sent += (uint64_t)k;
        } else if (k == -1 && errno == EINTR) {
            continue;
        } else if (k == -1 && errno == EAGAIN) {
            c->state = C_SENDING;
            if (loop_mod(&w->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP) < 0)
                conn_finish(w, c, END_FAILED);
            return;
        } else {
            /* the server closed or reset while we were sending: it may have answered first */
            int err = errno;
            conn_read(w, c, RBUF_SIZE);
            if (c->state != C_DONE && c->state != C_FREE)
                conn_finish(w, c, err == EPIPE || err == ECONNRESET ? END_RST : END_FAILED);
            return;
        }
    }
    c->sent = 0;
    conn_wait(w, c, load_now_us());
}

/* The chunk went out whole: what <c> does next depends on the mode. */
static void conn_wait(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    const struct attack_opts *o = w->o;
    c->state = C_WAITING;
    switch (o->mode) {
    case ATTACK_SLOWLORIS:
        if (c->lines > 0)
            w->res.lines_sent++;
        c->lines++;
        c->t_due = now + (int64_t)o->interval_ms * 1000;
        break;
    case ATTACK_SLOWREAD:
        /* from here on the scan reads it, slowly; the loop no longer watches it */
        loop_del(&w->loop, &c->io);
        c->flags |= CF_DETACHED;
        c->t_due = now;
        return;
    case ATTACK_GARBAGE:
        if (c->t_due == 0) {
            w->res.garbage_sent[c->kind]++;
            c->t_due = now + (int64_t)o->timeout_ms * 1000;
        }
        break;
    default:
        break;
    }
    if (loop_mod(&w->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
        conn_finish(w, c, END_FAILED);
}

static void conn_connected(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    c->flags |= CF_CONNECTED;
    c->t_conn = now;
    w->res.connected++;
    hist_add(&w->res.connect_us, (uint64_t)(now - c->t_start));
    if (w->o->mode == ATTACK_FLOOD) {
        c->state = C_WAITING;
        if (loop_mod(&w->loop, &c->io, EPOLLIN | EPOLLRDHUP) < 0)
            conn_finish(w, c, END_FAILED);
        return;
    }
    c->state = C_SENDING;
    conn_send(w, c);
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

/* The response head of <c> ended (status in c->status). Returns 0 to go on reading the body,
 * -1 if <c> was finished. */
static int conn_head_end(struct atk_worker *w, struct atk_conn *c)
{
    if (c->flags & CF_RETRY_AFTER)
        w->res.retry_after++;
    switch (w->o->mode) {
    case ATTACK_JOINSTORM:
        if (c->status != 200) {
            conn_finish(w, c, END_DONE); /* refused: counted by its status */
            return -1;
        }
        return 0;
    case ATTACK_TICKETS:
        if (c->kind == ATTACK_TK_JOIN) {
            if (c->status != 200) {
                conn_finish(w, c, END_DONE);
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
            conn_finish(w, c, END_DONE);
            return -1;
        }
        return 0;
    case ATTACK_GARBAGE:
        /* a message that happened to be a valid request got the stream: answered, done (the
         * others stay to see whether the server closes after its answer) */
        if (c->status == 200) {
            conn_finish(w, c, END_DONE);
            return -1;
        }
        return 0;
    default:
        return 0;
    }
}

/* Parses response head bytes of <c>. Returns how many of <n> belong to the head, or -1 if <c>
 * was finished. */
static ssize_t conn_head(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n)
{
    static const char ra[] = "retry-after:";
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (++c->head_bytes > HEAD_MAX) {
            w->res.bad_responses++;
            conn_finish(w, c, END_DONE);
            return -1;
        }
        if (c->hstate == 0) {
            if (b == ' ' && c->head_bytes > 1) {
                c->hstate = 1;
            } else if (b <= ' ' || b >= 0x7f || c->head_bytes > 16) {
                w->res.bad_responses++;
                conn_finish(w, c, END_DONE);
                return -1;
            }
        } else if (c->hstate <= 3) {
            if (b < '0' || b > '9') {
                w->res.bad_responses++;
                conn_finish(w, c, END_DONE);
                return -1;
            }
            c->status = (uint16_t)(c->status * 10 + (b - '0'));
            if (++c->hstate == 4) {
                c->flags |= CF_STATUS;
                w->res.responses++;
                if (c->status >= 100 && c->status < ATTACK_HTTP_CODES) {
                    w->res.http[c->status]++;
                    if (w->o->mode == ATTACK_TICKETS)
                        w->res.tk_http[c->kind][c->status]++;
                }
            }
        } else if (b == '\n') {
            if (c->hnl) {
                c->hstate = 5;
                if (conn_head_end(w, c) < 0)
                    return -1;
                return (ssize_t)(i + 1);
            }
            c->hnl = 1;
            c->hpos = 0;
            c->flags &= (uint8_t)~CF_LINE_NOMATCH;
        } else if (b != '\r') {
            c->hnl = 0;
            if (c->hpos < sizeof(ra) - 1 && !(c->flags & CF_LINE_NOMATCH)) {
                if (tolower(b) != ra[c->hpos])
                    c->flags |= CF_LINE_NOMATCH;
                else if (c->hpos == sizeof(ra) - 2)
                    c->flags |= CF_RETRY_AFTER;
            }
            if (c->hpos < UINT16_MAX)
                c->hpos++;
        }
    }
    return (ssize_t)n;
}

/* Body bytes of <c>. Returns 0, or -1 if <c> was finished. */
static int conn_body(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n,
                     int64_t now)
{
    const struct attack_opts *o = w->o;
    if (o->mode == ATTACK_TICKETS && c->kind == ATTACK_TK_JOIN) {
        struct atk_probe *pr = &w->probes[c - w->conns];
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
    int wants_audio =
        o->mode == ATTACK_JOINSTORM ||
        (o->mode == ATTACK_TICKETS && (c->kind == ATTACK_TK_GENUINE || c->kind == ATTACK_TK_OPEN));
    if (!wants_audio)
        return 0;
    oggcheck_feed(&c->ogg, p, n);
    if (!c->ogg.first_audio)
        return 0;
    int64_t audio_us = now - c->t_start;
    hist_add(&w->res.first_audio_us, (uint64_t)audio_us);
    if (o->mode == ATTACK_JOINSTORM) {
        w->res.joined++;
        tl_joined(w, c, audio_us);
    } else {
        w->res.tk_audio[c->kind]++;
        if (c->kind == ATTACK_TK_GENUINE) {
            const struct atk_probe *pr = &w->probes[c - w->conns];
            hist_add(&w->res.tk_late_us, (uint64_t)(now > pr->admit_us ? now - pr->admit_us : 0));
        }
    }
    conn_finish(w, c, END_DONE);
    return -1;
}

/* Handles received bytes of <c>. Returns 0, or -1 if <c> was finished. */
static int conn_bytes(struct atk_worker *w, struct atk_conn *c, const uint8_t *p, size_t n,
                      int64_t now)
{
    w->res.bytes_received += n;
    c->rx += n;
    if (!(c->flags & CF_GOT_BYTE)) {
        c->flags |= CF_GOT_BYTE;
        hist_add(&w->res.ttfb_us, (uint64_t)(now - c->t_start));
    }
    ssize_t off = 0;
    if (c->hstate < 5 && (off = conn_head(w, c, p, n)) < 0)
        return -1;
    if ((size_t)off < n)
        return conn_body(w, c, p + off, n - (size_t)off, now);
    return 0;
}

/* The server closed <c> (EOF, <how> END_FIN) or reset it (END_RST). */
static void conn_closed(struct atk_worker *w, struct atk_conn *c, int how)
{
    if (w->o->mode == ATTACK_TICKETS && c->kind == ATTACK_TK_JOIN && c->hstate == 5) {
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
        conn_finish(w, c, END_DONE);
        return;
    }
    conn_finish(w, c, how);
}

/* Reads what <c> has, at most <most> bytes (RBUF_SIZE rounds of 4 for an ordinary reader). */
static void conn_read(struct atk_worker *w, struct atk_conn *c, size_t most)
{
    int rounds = most >= RBUF_SIZE ? 4 : 1;
    for (int round = 0; round < rounds; round++) {
        size_t want = most < sizeof(w->rbuf) ? most : sizeof(w->rbuf);
        ssize_t n = recv(c->io.fd, w->rbuf, want, 0);
        if (n > 0) {
            if (conn_bytes(w, c, w->rbuf, (size_t)n, load_now_us()) < 0)
                return;
            if ((size_t)n < want)
                return;
        } else if (n == 0) {
            conn_closed(w, c, END_FIN);
            return;
        } else if (errno == EAGAIN || errno == EINTR) {
            return;
        } else {
            conn_closed(w, c, END_RST);
            return;
        }
    }
}

static void conn_on_io(struct loop *loop, struct io *io, uint32_t events)
{
    struct atk_worker *w = worker_of(loop);
    struct atk_conn *c = (struct atk_conn *)((char *)io - offsetof(struct atk_conn, io));
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err) {
            conn_fail(w, c, err);
            return;
        }
        if (events & EPOLLOUT)
            conn_connected(w, c, load_now_us());
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        conn_read(w, c, RBUF_SIZE);
        if (c->state == C_DONE || c->state == C_FREE)
            return;
    }
    if ((events & EPOLLOUT) && c->state == C_SENDING)
        conn_send(w, c);
}

/* Opens slot <c> as connection number <w>->seq (source address, garbage seed and flavour). */
static void conn_open(struct atk_worker *w, struct atk_conn *c, int kind)
{
    const struct attack_opts *o = w->o;
    *c = (struct atk_conn){.io = {.fd = -1, .cb = conn_on_io}, .state = C_CONNECTING};
    oggcheck_init(&c->ogg);
    uint64_t g = w->seq++ * o->procs + w->index; /* over all workers */
    c->kind = (uint8_t)kind;
    c->seed = (uint32_t)(o->seed * 7919u + g * 2654435761u);
    if (o->mode == ATTACK_GARBAGE) {
        c->kind = (uint8_t)(g % ATTACK_G_KINDS);
        uint32_t s = c->seed | 1;
        c->len = 1 + rnd_next(&s) % o->max_bytes;
    }
    c->t_start = load_now_us();
    w->res.attempted++;
    w->open++;
    if (w->open > w->res.peak_open)
        w->res.peak_open = w->open;
    int fd = socket(o->url.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        LOG_RATELIMITED(LOG_WARN, "attack", "socket: %s", strerror(errno));
        conn_fail(w, c, errno);
        return;
    }
    c->io.fd = fd;
    if (o->mode == ATTACK_SLOWREAD) {
        /* before connect(), so the window scale is agreed on the small buffer */
        int rb = (int)o->rcvbuf;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
    }
    if (o->src_count) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(o->src_first + (uint32_t)(g % o->src_count));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
            LOG_RATELIMITED(LOG_WARN, "attack", "bind: %s", strerror(errno));
            conn_fail(w, c, errno);
            return;
        }
    }
    int rc = connect(fd, (const struct sockaddr *)&o->url.addr, o->url.addrlen);
    if (rc == -1 && errno != EINPROGRESS) {
        conn_fail(w, c, errno);
        return;
    }
    if (o->mode == ATTACK_SLOWREAD && o->url.family == AF_INET) {
        struct sockaddr_in me;
        socklen_t ml = sizeof(me);
        if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0) {
            c->laddr = ntohl(me.sin_addr.s_addr);
            c->lport = ntohs(me.sin_port);
        }
    }
    if (loop_add(&w->loop, &c->io, EPOLLOUT) < 0) {
        conn_fail(w, c, ENOMEM);
        return;
    }
    if (rc == 0)
        conn_connected(w, c, load_now_us());
}

/* ---- tickets probes ------------------------------------------------------------------------- */

/* Starts the request of kind <kind> for the probe in <slot>. */
static void probe_start(struct atk_worker *w, uint32_t slot, int kind)
{
    conn_open(w, &w->conns[slot], kind);
}

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

/* ---- timers and the end -----------------------------------------------------------------------
 */

static void on_pace(struct loop *loop, struct loop_timer *t)
{
    struct atk_worker *w = worker_of(loop);
    const struct attack_opts *o = w->o;
    int64_t now = load_now_us();
    double elapsed = (double)(now - w->start_us) / 1e6;
    double due_d = floor(w->rate * elapsed) + 1;
    uint64_t due = due_d > 1e15 ? (uint64_t)1e15 : (uint64_t)due_d;
    if (attack_is_pressure(o)) {
        while (w->started + w->skipped < due && now < w->end_us && !w->ending) {
            if (!o->reopen && w->started >= w->n)
                break;
            if (w->nfree == 0) {
                w->skipped++;
                continue;
            }
            uint32_t slot = w->free_slots[--w->nfree];
            w->started++;
            conn_open(w, &w->conns[slot], 0);
        }
        if (o->reopen || w->started < w->n)
            loop_timer_start(loop, t, PACE_MS, on_pace);
        return;
    }
    while (w->started < due && w->started < w->n && now < w->end_us && !w->ending) {
        uint32_t slot = (uint32_t)w->started++;
        if (o->mode == ATTACK_TICKETS) {
            probe_start(w, slot, ATTACK_TK_JOIN);
        } else {
            conn_open(w, &w->conns[slot], 0);
        }
    }
    if (w->started < w->n && !w->ending)
        loop_timer_start(loop, t, PACE_MS, on_pace);
}

/* slowread: reads what the budget allows since the last read of <c>. */
static void slowread_step(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    uint64_t allowed = (uint64_t)((double)(now - c->t_conn) / 1e6 * w->o->read_bps);
    if (allowed <= c->rx)
        return;
    uint64_t want = allowed - c->rx;
    /* about one read a second: fewer system calls, the same average rate */
    if (want < w->o->read_bps && now - c->t_due < 1000000)
        return;
    c->t_due = now;
    conn_read(w, c, want < RBUF_SIZE ? (size_t)want : RBUF_SIZE - 1);
}

static void on_scan(struct loop *loop, struct loop_timer *t)
{
    struct atk_worker *w = worker_of(loop);
    const struct attack_opts *o = w->o;
    int64_t now = load_now_us();
    uint32_t slots = attack_is_pressure(o) ? w->n : (uint32_t)w->started;
    /* a join's --timeout-ms runs from connect(): a backlog that drops SYNs must not stretch it */
    int64_t connect_timeout_us = ATTACK_CONNECT_TIMEOUT_US;
    if ((o->mode == ATTACK_JOINSTORM || o->mode == ATTACK_TICKETS) &&
        (int64_t)o->timeout_ms * 1000 < connect_timeout_us)
        connect_timeout_us = (int64_t)o->timeout_ms * 1000;
    for (uint32_t i = 0; i < slots && !w->ending; i++) {
        struct atk_conn *c = &w->conns[i];
        if (o->mode == ATTACK_TICKETS && w->probes[i].waiting && now >= w->probes[i].admit_us) {
            w->probes[i].waiting = 0;
            w->waiting--;
            probe_start(w, i, ATTACK_TK_GENUINE);
            continue;
        }
        switch (c->state) {
        case C_CONNECTING:
            if (now - c->t_start > connect_timeout_us)
                conn_fail(w, c, ETIMEDOUT);
            break;
        case C_WAITING:
            if (o->mode == ATTACK_SLOWLORIS) {
                if (now >= c->t_due && c->lines <= SLOWLORIS_MAX_LINES) {
                    c->state = C_SENDING;
                    conn_send(w, c);
                }
            } else if (o->mode == ATTACK_SLOWREAD) {
                slowread_step(w, c, now);
            } else if (o->mode == ATTACK_GARBAGE) {
                if (now >= c->t_due)
                    conn_finish(w, c, END_TIMEOUT);
            } else if (o->mode == ATTACK_JOINSTORM || o->mode == ATTACK_TICKETS) {
                if (now - c->t_start > (int64_t)o->timeout_ms * 1000)
                    conn_finish(w, c, END_TIMEOUT);
            }
            break;
        case C_SENDING:
            if ((o->mode == ATTACK_JOINSTORM || o->mode == ATTACK_TICKETS) &&
                now - c->t_start > (int64_t)o->timeout_ms * 1000)
                conn_finish(w, c, END_TIMEOUT);
            break;
        default:
            break;
        }
    }
    if (!w->ending)
        loop_timer_start(loop, t, SCAN_MS, on_scan);
}

/* ---- slowread: the server's closes, from the kernel ------------------------------------------ */

static int key_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Asks sock_diag for TCP sockets of the server's address and port that have left ESTABLISHED
 * for a closing state: the server closed them. Stores (peer IPv4 << 16 | peer port) keys,
 * sorted, in <*keys> (malloc'ed, caller frees). Returns how many, or -1. */
static long diag_server_closing(struct atk_worker *w, uint64_t **keys)
{
    const struct sockaddr_in *srv = (const struct sockaddr_in *)&w->o->url.addr;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req = {
        .nlh = {.nlmsg_len = sizeof(req),
                .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
        .r = {.sdiag_family = AF_INET,
              .sdiag_protocol = IPPROTO_TCP,
              .idiag_states = (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSING) |
                              (1u << TCP_LAST_ACK)},
    };
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
    if (sendto(w->diag_fd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) == -1)
        return -1;
    size_t n = 0, cap = 256;
    uint64_t *k = malloc(cap * sizeof(*k));
    if (!k)
        abort();
    static char buf[65536] __attribute__((aligned(8)));
    for (;;) {
        ssize_t got = recv(w->diag_fd, buf, sizeof(buf), 0);
        if (got == -1 && errno == EINTR)
            continue;
        if (got <= 0) {
            free(k);
            return -1;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got);
             h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                qsort(k, n, sizeof(*k), key_cmp);
                *keys = k;
                return (long)n;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                free(k);
                return -1;
            }
            const struct inet_diag_msg *m = NLMSG_DATA(h);
            if (m->id.idiag_sport != srv->sin_port || m->id.idiag_src[0] != srv->sin_addr.s_addr)
                continue;
            if (n == cap) {
                cap *= 2;
                k = realloc(k, cap * sizeof(*k));
                if (!k)
                    abort();
            }
            k[n++] = (uint64_t)ntohl(m->id.idiag_dst[0]) << 16 | ntohs(m->id.idiag_dport);
        }
    }
}

static void on_diag(struct loop *loop, struct loop_timer *t)
{
    struct atk_worker *w = worker_of(loop);
    uint64_t *keys = NULL;
    long nk = diag_server_closing(w, &keys);
    if (nk > 0) {
        int64_t now = load_now_us();
        for (uint32_t i = 0; i < w->n; i++) {
            struct atk_conn *c = &w->conns[i];
            if ((c->state != C_WAITING && c->state != C_SENDING) || !(c->flags & CF_CONNECTED) ||
                (c->flags & CF_KERNEL_CLOSED))
                continue;
            uint64_t key = (uint64_t)c->laddr << 16 | c->lport;
            if (bsearch(&key, keys, (size_t)nk, sizeof(*keys), key_cmp)) {
                c->flags |= CF_KERNEL_CLOSED;
                w->res.closed_kernel++;
                hist_add(&w->res.closed_after_us, (uint64_t)(now - c->t_conn));
            }
        }
    } else if (nk < 0) {
        LOG_RATELIMITED(LOG_WARN, "attack", "sock_diag: %s", strerror(errno));
    }
    free(keys);
    if (!w->ending)
        loop_timer_start(loop, t, DIAG_MS, on_diag);
}

/* Closes everything still open (counted as open at the end) and stops the loop. */
static void worker_finish_run(struct atk_worker *w)
{
    if (w->ending)
        return;
    w->ending = 1;
    uint32_t slots = attack_is_pressure(w->o) ? w->n : (uint32_t)w->started;
    for (uint32_t i = 0; i < slots; i++) {
        if (w->probes && w->probes[i].waiting) {
            w->probes[i].waiting = 0;
            w->res.tk_admit_after_end++;
        }
        conn_finish(w, &w->conns[i], END_RUN);
    }
    w->waiting = 0;
    loop_timer_stop(&w->loop, &w->pace);
    loop_timer_stop(&w->loop, &w->scan);
    loop_timer_stop(&w->loop, &w->diag);
    loop_timer_stop(&w->loop, &w->end);
    loop_stop(&w->loop);
}

static void on_end(struct loop *loop, struct loop_timer *t)
{
    worker_finish_run(worker_of(loop));
}

/* After each loop iteration: moves tickets probes on, and ends the run of a joinstorm or tickets
 * worker whose attempts are all over. */
static void on_before_sleep(struct loop *loop, void *arg)
{
    struct atk_worker *w = arg;
    while (w->npending > 0 && !w->ending) {
        uint32_t slot = w->pending[--w->npending];
        probe_next(w, slot, w->conns[slot].kind, load_now_us());
    }
    if (!w->ending && !attack_is_pressure(w->o) && w->started >= w->n && w->open == 0 &&
        w->waiting == 0 && w->npending == 0)
        worker_finish_run(w);
}

static void sleep_until_us(int64_t t)
{
    for (;;) {
        int64_t d = t - load_now_us();
        if (d <= 0)
            return;
        struct timespec ts = {.tv_sec = d / 1000000, .tv_nsec = (d % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

int attack_worker(const struct attack_opts *o, uint32_t index, uint32_t n, int64_t start_us,
                  struct attack_result *res)
{
    struct atk_worker *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->o = o;
    w->index = index;
    w->n = n;
    w->rate = o->rate * (double)n / (double)o->count;
    w->start_us = start_us;
    w->end_us = start_us + (int64_t)o->seconds * 1000000;
    w->diag_fd = -1;
    w->res.magic = ATTACK_RESULT_MAGIC;
    struct hist *hs[] = {&w->res.connect_us,      &w->res.ttfb_us, &w->res.first_audio_us,
                         &w->res.closed_after_us, &w->res.kept_us, &w->res.tk_wait_us,
                         &w->res.tk_late_us};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        hist_init(hs[i]);
    int rl = snprintf(w->req, sizeof(w->req),
                      "GET %s HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: rostrum-load attack\r\n\r\n",
                      o->url.path, o->url.host, o->url.port);
    w->req_len = (uint16_t)rl;
    w->conns = calloc(n ? n : 1, sizeof(*w->conns));
    if (!w->conns)
        abort();
    for (uint32_t i = 0; i < n; i++)
        w->conns[i].io.fd = -1;
    if (attack_is_pressure(o)) {
        w->free_slots = malloc((n ? n : 1) * sizeof(*w->free_slots));
        if (!w->free_slots)
            abort();
        for (uint32_t i = 0; i < n; i++)
            w->free_slots[w->nfree++] = n - 1 - i;
    }
    if (o->mode == ATTACK_TICKETS) {
        w->probes = calloc(n ? n : 1, sizeof(*w->probes));
        w->pending = calloc(n ? n : 1, sizeof(*w->pending));
        if (!w->probes || !w->pending)
            abort();
    }
    int rc = loop_init(&w->loop);
    if (rc == 0 && o->mode == ATTACK_SLOWREAD && o->url.family == AF_INET) {
        w->diag_fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (w->diag_fd == -1)
            log_warn("attack",
                     "sock_diag unavailable (%s): server closes of slow readers "
                     "will only be seen at EOF",
                     strerror(errno));
    }
    if (rc == 0) {
        sleep_until_us(start_us);
        int64_t now = load_now_us();
        loop_timer_start(&w->loop, &w->pace, 0, on_pace);
        loop_timer_start(&w->loop, &w->scan, SCAN_MS, on_scan);
        if (w->diag_fd >= 0)
            loop_timer_start(&w->loop, &w->diag, DIAG_MS, on_diag);
        loop_timer_start(&w->loop, &w->end, (w->end_us - now + 999) / 1000, on_end);
        w->loop.before_sleep = on_before_sleep;
        w->loop.before_sleep_arg = w;
        if (n == 0)
            worker_finish_run(w);
        loop_run(&w->loop);
        loop_close(&w->loop);
        *res = w->res;
    }
    if (w->diag_fd >= 0)
        close(w->diag_fd);
    if (w->probes) {
        for (uint32_t i = 0; i < n; i++) {
            free(w->probes[i].ticket);
            free(w->probes[i].stream);
            free(w->probes[i].body);
        }
    }
    free(w->probes);
    free(w->pending);
    free(w->free_slots);
    free(w->conns);
    free(w);
    return rc;
}
