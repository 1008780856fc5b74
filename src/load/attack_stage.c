/*
 * load/attack_stage: the modes against the stage port, which the main process serves alone
 * (the speakers' WebSocket, the mixer's input and output, the API): what one process holds for
 * members that misbehave is what the speakers on stage lose if it is unbounded.
 *
 *   wsping    CONNECTING → SENDING upgrade → WAITING for 101 → SENDING pings, for good (never
 *             reads again: CF_NOREAD; only a hang-up event or the kernel's close watch ends it)
 *   wsnoread  CONNECTING → SENDING upgrade → WAITING for 101 → WAITING, never read (CF_NOREAD)
 *   stagefd   CONNECTING → WAITING (nothing sent) — or, with --handshake, the upgrade and then
 *             WAITING, reading and dropping what the server sends
 *
 * The upgrade is checked as a client must: status 101 and the Sec-WebSocket-Accept computed
 * with the server's own ws_accept_key() from ATTACK_WS_KEY; the worker matches that header
 * line in the response head (struct atk_worker's hdr_match). Anything else but 101 is a
 * refusal, counted by status; a 101 with a wrong Accept is counted and closed.
 *
 * Pings go out in batches of up to 16 KiB of whole frames (780 of them), each frame masked
 * with its own key; a batch is built again from its seed when a send was partial.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "load/attack_int.h"
#include "ws/ws.h"

enum { PHASE_UPGRADE, PHASE_OPEN };

#define PING_BATCH (ATTACK_GARBAGE_MAX - ATTACK_GARBAGE_MAX % ATTACK_WS_PING_FRAME)

/* ---- pure pieces ---------------------------------------------------------------------------- */

int attack_ws_path(const char *path, char *out, size_t cap)
{
    const char *name = strncmp(path, "/ws/", 4) == 0 ? path + 4 : path + (path[0] == '/');
    if (!name[0] || strpbrk(name, "/?#"))
        return -1;
    int n = snprintf(out, cap, "/ws/%s", name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

uint32_t attack_ws_upgrade(const char *ws_path, const char *host, uint16_t port, uint64_t n,
                           const char *token, char *out, size_t cap)
{
    char enc[3 * ATTACK_TICKET_MAX + 1] = "";
    if (token && atk_pct_encode(token, enc, sizeof(enc)) < 0)
        return 0;
    int len = snprintf(out, cap,
                       "GET %s?name=atk%llu%s%s HTTP/1.1\r\nHost: %s:%u\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: " ATTACK_WS_KEY "\r\nSec-WebSocket-Version: 13\r\n"
                       "User-Agent: rostrum-load attack\r\n\r\n",
                       ws_path, (unsigned long long)n, token ? "&token=" : "", enc, host, port);
    return len > 0 && (size_t)len < cap ? (uint32_t)len : 0;
}

size_t attack_ws_frame(uint8_t *out, size_t cap, uint8_t opcode, const void *payload, size_t len,
                       uint32_t mask)
{
    size_t hl = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
    if (cap < hl + 4 || cap - hl - 4 < len)
        return 0;
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[1] = 0x80 | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
    } else {
        out[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    uint8_t key[4] = {(uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8),
                      (uint8_t)mask};
    memcpy(out + hl, key, 4);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        out[hl + 4 + i] = p[i] ^ key[i & 3];
    return hl + 4 + len;
}

size_t attack_ws_pings(uint8_t *out, size_t cap, uint32_t seed)
{
    uint32_t s = seed * 2654435761u ^ 0x85ebca6bu;
    if (s == 0)
        s = 1;
    if (cap > 65536)
        cap = 65536;
    size_t o = 0;
    while (cap - o >= ATTACK_WS_PING_FRAME)
        o += attack_ws_frame(out + o, cap - o, 0x1, ATTACK_WS_PING, sizeof(ATTACK_WS_PING) - 1,
                             atk_rnd_next(&s));
    return o;
}

/* ---- the modes ------------------------------------------------------------------------------ */

static void stage_setup(struct atk_worker *w)
{
    char acc[29];
    ws_accept_key(ATTACK_WS_KEY, strlen(ATTACK_WS_KEY), acc);
    int n = snprintf(w->hdr_match, sizeof(w->hdr_match), "sec-websocket-accept: %s", acc);
    w->hdr_len = (uint16_t)n;
    w->hdr_ci = (uint16_t)strlen("sec-websocket-accept:");
}

/* wsping, wsnoread: the small receive buffer, before connect(), so that the window is agreed on
 * it and the server's bytes back up into the server soon. */
static void noread_open(struct atk_worker *w, struct atk_conn *c, int fd)
{
    int rb = (int)w->o->rcvbuf;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
}

static const void *stage_chunk(struct atk_worker *w, struct atk_conn *c, uint32_t *len)
{
    if (c->kind == PHASE_UPGRADE) {
        char path[LOAD_URL_MAX_PATH + 8];
        const struct load_url *u = &w->o->url;
        *len = attack_ws_path(u->path, path, sizeof(path)) < 0
                   ? 0
                   : attack_ws_upgrade(path, u->host, u->port, c->len, w->o->token, w->scratch,
                                       sizeof(w->scratch));
        return w->scratch;
    }
    /* wsping, open: the next batch of pings (c->lines batches went out before it) */
    *len = (uint32_t)attack_ws_pings(w->gbuf, PING_BATCH, c->seed ^ (uint32_t)c->lines * 40503u);
    return w->gbuf;
}

static int stage_sent(struct atk_worker *w, struct atk_conn *c, int64_t now)
{
    if (c->kind == PHASE_UPGRADE)
        return 0; /* read the answer */
    w->res.ws_frames_sent += PING_BATCH / ATTACK_WS_PING_FRAME;
    c->lines++;
    c->state = C_SENDING; /* the next batch when the socket takes it (EPOLLOUT stays armed) */
    return 1;
}

/* The answer to the upgrade is in (c->status, CF_HDR_MATCH). Returns 0 if <c> is open and may
 * be read on, -1 if it was finished or must not be read. */
static int upgraded(struct atk_worker *w, struct atk_conn *c)
{
    if (c->status != 101) {
        atk_conn_finish(w, c, END_DONE); /* refused: counted by its status */
        return -1;
    }
    if (!(c->flags & CF_HDR_MATCH)) {
        w->res.ws_bad_accept++;
        atk_conn_finish(w, c, END_DONE);
        return -1;
    }
    w->res.ws_upgraded++;
    c->kind = PHASE_OPEN;
    return 0;
}

static int wsping_head_end(struct atk_worker *w, struct atk_conn *c)
{
    if (upgraded(w, c) < 0)
        return -1;
    c->flags |= CF_NOREAD;
    c->state = C_SENDING;
    if (loop_mod(&w->loop, &c->io, EPOLLOUT | EPOLLRDHUP) < 0)
        atk_conn_finish(w, c, END_FAILED);
    return -1; /* never read again */
}

static int wsnoread_head_end(struct atk_worker *w, struct atk_conn *c)
{
    if (upgraded(w, c) < 0)
        return -1;
    c->flags |= CF_NOREAD;
    if (loop_mod(&w->loop, &c->io, EPOLLRDHUP) < 0)
        atk_conn_finish(w, c, END_FAILED);
    return -1; /* never read again */
}

static int stagefd_head_end(struct atk_worker *w, struct atk_conn *c)
{
    return upgraded(w, c); /* then held, reading what comes */
}

const struct atk_mode atk_mode_wsping = {
    .pressure = 1,
    .kernel_close = 1,
    .setup = stage_setup,
    .open = noread_open,
    .chunk = stage_chunk,
    .sent = stage_sent,
    .head_end = wsping_head_end,
};

const struct atk_mode atk_mode_wsnoread = {
    .pressure = 1,
    .kernel_close = 1,
    .setup = stage_setup,
    .open = noread_open,
    .chunk = stage_chunk,
    .sent = stage_sent,
    .head_end = wsnoread_head_end,
};

/* stagefd --handshake; without it, atk_mode_stagefd_tcp */
const struct atk_mode atk_mode_stagefd = {
    .pressure = 1,
    .setup = stage_setup,
    .chunk = stage_chunk,
    .sent = stage_sent,
    .head_end = stagefd_head_end,
};

/* stagefd: connections that send nothing, held (the core's flood) */
const struct atk_mode atk_mode_stagefd_tcp = {
    .pressure = 1,
};
