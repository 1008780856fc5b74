/*
 * api: the stage port's HTTP API and WebSocket entry (documented in the README).
 *
 *   POST /api/spaces?name=N[&title=T]          Authorization: Bearer HOST_KEY  -> 201
 *   POST /api/spaces/N/invites?role=R          Bearer HOST_KEY or a host/cohost token
 *   POST /api/spaces/N/end                     Bearer HOST_KEY or a host/cohost token
 *   POST /api/spaces?name=N&title=T&start=EPOCH|start_in=S[&description=D]   a scheduled
 *        space (issue 12, stage/schedule.h): a lobby until its start
 *   POST /api/spaces/N/live                    Bearer HOST_KEY or a host/cohost token: go live
 *   GET  /api/spaces/N                         the state document
 *   GET  /ws/N?token=T|key=K[&name=NAME]       WebSocket: control (text) and audio (binary)
 *
 * Every check that can refuse happens before any state changes, and before the WebSocket
 * upgrade, so a refused speaker gets a plain HTTP status with a reason.
 *
 * The main process's descriptors are shared by sources, speakers, the API and worker
 * respawn, so what anybody may open is bounded (issue 8): members off stage (no token, or
 * a listener token, which any number of people may share) count against max-members, and
 * they and plain API calls (no Authorization) are refused with 503 once the process is
 * within a reserve of its descriptor limit. Sources (source.c), the host key and stage
 * tokens (host, cohost, speaker: at most 13 a space) may use the reserve.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "stageport/stageport.h"

#include "http/request.h"
#include "record/record.h"
#include "space/space.h"
#include "stage/schedule.h"
#include "stage/stage.h"
#include "token/token.h"
#include "util/log.h"
#include "ws/ws.h"

/* Query parameter <name> of <req>, percent- and '+'-decoded into <out> (a form value). Returns
 * its length, or -1 if absent or malformed. */
static int query_param(const struct http_request *req, const char *name, char *out, size_t cap)
{
    const char *v;
    size_t len;
    if (http_query_value(req, name, &v, &len) < 0)
        return -1;
    return http_unescape(v, len, 1, out, cap);
}

#define API_FD_RESERVE 1000 /* descriptors kept for sources, stage seats and respawn... */
#define API_FD_RESERVE_SHARE 4 /* ...but at most a quarter of the limit */

/* 1 if <c> came when the process is within the reserve of its descriptor limit. The
 * kernel hands out the lowest free descriptor, so a new connection's number is a lower
 * bound on the descriptors open: at or above limit - reserve, the reserve is being eaten. */
static int fds_in_reserve(const struct conn *c)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)1 << 30)
        return 0;
    long limit = (long)rl.rlim_cur;
    long reserve = limit / API_FD_RESERVE_SHARE;
    if (reserve > API_FD_RESERVE)
        reserve = API_FD_RESERVE;
    return c->io.fd >= limit - reserve;
}

static void refuse_fd_reserve(struct spaces *host, struct conn *c, const char *what)
{
    host->sh->main.refused_fd_reserve++;
    LOG_RATELIMITED(LOG_WARN, "stage", "#%llu %s: near the descriptor limit, %s refused",
                    (unsigned long long)c->id, c->peer, what);
    conn_error(c, 503, "Retry-After: 10", "Server busy: try again shortly");
}

static int key_ok(const struct spaces *host, const char *key, size_t len)
{
    size_t klen = strlen(host->cfg->host_key);
    return klen > 0 && token_secret_equal(key, len, host->cfg->host_key, klen);
}

/* Who the request's bearer is for space <mount>: 2 = the operator's host key, 1 = a host or
 * co-host token of that space, 0 = nobody. */
static int bearer(const struct spaces *host, const struct http_request *req, const char *mount)
{
    const struct http_header *h = http_find_header(req, "Authorization");
    if (!h || h->value_len < 8 || strncasecmp(h->value, "Bearer ", 7) != 0)
        return 0;
    const char *v = h->value + 7;
    size_t len = h->value_len - 7;
    if (key_ok(host, v, len))
        return 2;
    struct token t;
    const char *why;
    if (mount && token_check(host->secret, TOKEN_STAGE, v, len, time(NULL), &t, &why) == 0 &&
        strcmp(t.space, mount) == 0 &&
        (strcmp(t.role, "host") == 0 || strcmp(t.role, "cohost") == 0))
        return 1;
    return 0;
}

/* A stage token for <space> and <role>, valid 24 h, into <out> (TOKEN_MAX bytes). A single-use
 * one (<reusable> 0) seats one person at a time; see stage_token_refusal(). */
static int mint_stage_token(struct spaces *host, const char *space, const char *role,
                            int reusable, char *out)
{
    struct token t = {.purpose = TOKEN_STAGE, .expiry = (int64_t)time(NULL) + 24 * 3600,
                      .reusable = reusable};
    snprintf(t.space, sizeof(t.space), "%s", space);
    snprintf(t.role, sizeof(t.role), "%s", role);
    return token_mint(host->secret, &t, out, TOKEN_MAX);
}

/* reusable=1 (or true) in the query: the host asks for a link that seats many. */
static int reusable_param(const struct http_request *req)
{
    char v[8];
    return query_param(req, "reusable", v, sizeof(v)) > 0 &&
           (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

/* <extra>: more header lines, each ending in CRLF, or "". (A HEAD request gets the head
 * alone: conn_respond cuts the body.) */
static void respond_json_h(struct conn *c, int status, const char *extra, const char *body)
{
    struct buf out = {0};
    size_t len = strlen(body);
    buf_printf(&out,
               "HTTP/1.1 %d %s\r\nServer: rostrum/0.1\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\nAccess-Control-Allow-Origin: *\r\n"
               "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n%s",
               status, http_status_reason(status), len, extra, body);
    conn_respond(c, &out);
}

static void respond_json(struct conn *c, int status, const char *body)
{
    respond_json_h(c, status, "", body);
}

static void respond_err_h(struct conn *c, int status, const char *extra, const char *msg)
{
    struct buf b = {0};
    buf_puts(&b, "{\"error\":");
    buf_json_str(&b, msg, strlen(msg));
    buf_puts(&b, "}");
    respond_json_h(c, status, extra, b.data);
    buf_free(&b);
}

static void respond_err(struct conn *c, int status, const char *msg)
{
    respond_err_h(c, status, "", msg);
}

/* Creates stage space <name>. Returns it, or NULL with <why> and the HTTP <status> to refuse
 * with: 400 bad name, 409 exists, 503 no free slot (a client should retry later). */
static struct space *create_stage_space(struct spaces *host, const char *name, const char *title,
                                        const char **why, int *status)
{
    if (!mount_name_ok(name) || rendition_mount_kind(name, NULL)) {
        *why = "bad space name: use 1-63 of A-Z a-z 0-9 . _ -, not a page or API name, not "
               "ending in .aac or .mp3 (a space's AAC and MP3 streams)";
        *status = 400;
        return NULL;
    }
    if (space_find(host, name)) {
        *why = "a space with that name exists";
        *status = 409;
        return NULL;
    }
    struct space *sp = space_create(host, name);
    if (!sp) {
        *why = "too many spaces on this server";
        *status = 503;
        return NULL;
    }
    stage_new(sp, title);
    log_info("stage", "/%s: stage space created", name);
    return sp;
}

/* Scheduled spaces not yet live. */
static int spaces_waiting(struct spaces *host)
{
    int n = 0;
    struct list_node *it;
    for (it = host->list.next; it != &host->list; it = it->next) {
        const struct space *sp = list_entry(it, struct space, node);
        n += stage_of(sp) && stage_waiting(stage_of(sp));
    }
    return n;
}

/* A refused schedule: counted, logged (rate-limited), answered with <why>. */
static void refuse_schedule(struct spaces *host, struct conn *c, int status, const char *why)
{
    host->sh->main.refused_schedule++;
    LOG_RATELIMITED(LOG_WARN, "stage", "#%llu %s: scheduled space refused: %s",
                    (unsigned long long)c->id, c->peer, why);
    respond_err(c, status, why);
}

/* The start of a scheduled space from start= (epoch seconds) or start_in= (seconds from now):
 * 1 with <*start>, 0 if neither is given, -1 if malformed. */
static int start_param(const struct http_request *req, int64_t now, int64_t *start)
{
    char v[24], *end;
    int rel = 0;
    int n = query_param(req, "start", v, sizeof(v));
    if (n < 0 && (n = query_param(req, "start_in", v, sizeof(v))) >= 0)
        rel = 1;
    if (n < 0)
        return 0;
    long long x = strtoll(v, &end, 10);
    if (n == 0 || *end || x < 0 || x > (1LL << 40))
        return -1;
    *start = rel ? now + x : x;
    return 1;
}

static void api_create(struct spaces *host, struct conn *c, const struct http_request *req)
{
    char name[64], title[512] = "", desc[512] = "";
    if (bearer(host, req, NULL) != 2)
        return respond_err(c, 401, "creating a space needs the host key (Bearer)");
    if (query_param(req, "name", name, sizeof(name)) < 0)
        return respond_err(c, 400, "name= is required");
    int tlen = query_param(req, "title", title, sizeof(title));
    int dlen = query_param(req, "description", desc, sizeof(desc));
    int64_t now = (int64_t)time(NULL), start = 0;
    int sched = start_param(req, now, &start);
    if (sched < 0)
        return refuse_schedule(host, c, 400, "bad start: seconds since the epoch (start=) or "
                                             "from now (start_in=)");
    const char *raw;
    size_t rawlen;
    if (sched && (tlen < 0 || dlen < 0) &&
        (http_query_value(req, tlen < 0 ? "title" : "description", &raw, &rawlen) == 0))
        return refuse_schedule(host, c, 400, tlen < 0 ? "bad title: it must be valid UTF-8 "
                                                        "without control characters"
                                                      : "bad description: too long or "
                                                        "not text");
    if (sched || dlen > 0) {
        const char *bad = sched ? schedule_check(title, tlen < 0 ? 0 : (size_t)tlen, desc,
                                                 dlen < 0 ? 0 : (size_t)dlen, start, now,
                                                 spaces_waiting(host))
                                : "description= needs start= or start_in=";
        if (bad)
            return refuse_schedule(host, c, strstr(bad, "too many") ? 503 : 400, bad);
    } else if (tlen >= 128) {
        return respond_err(c, 400, "title too long: at most 127 bytes");
    }
    const char *why;
    int status;
    struct space *sp = create_stage_space(host, name, title, &why, &status);
    if (sp && sched)
        stage_schedule(stage_of(sp), start, desc);
    if (!sp && status == 503) {
        log_warn("stage", "#%llu %s: /%s refused: all %d space slots in use",
                 (unsigned long long)c->id, c->peer, name, SHARED_MAX_SPACES);
        return respond_err_h(c, 503, "Retry-After: 10\r\n", why);
    }
    if (!sp)
        return respond_err(c, status, why);
    char host_tok[TOKEN_MAX], speaker[TOKEN_MAX];
    if (mint_stage_token(host, name, "host", 0, host_tok) < 0 ||
        mint_stage_token(host, name, "speaker", reusable_param(req), speaker) < 0)
        return respond_err(c, 500, "could not make the tokens");
    struct buf b = {0};
    buf_printf(&b, "{\"space\":\"%s\",\"host_token\":\"%s\",\"speaker_token\":\"%s\","
                   "\"listen_path\":\"/%s\",\"state_path\":\"/state/%s.json\"",
               name, host_tok, speaker, name, name);
    if (sched)
        buf_printf(&b, ",\"starts_at\":%lld", (long long)start);
    buf_puts(&b, "}");
    respond_json(c, 201, b.data);
    buf_free(&b);
}

static void api_space(struct spaces *host, struct conn *c, const struct http_request *req, const char *name,
                      const char *action)
{
    struct space *sp = mount_name_ok(name) ? space_find(host, name) : NULL;
    if (!sp || !stage_of(sp))
        return respond_err(c, 404, "no such stage space");
    if (action[0] == '\0' && (req->method == HTTP_GET || req->method == HTTP_HEAD)) {
        struct buf b = {0};
        stage_state_json(stage_of(sp), &b);
        respond_json(c, 200, b.data);
        buf_free(&b);
        return;
    }
    if (req->method != HTTP_POST)
        return respond_err(c, 405, "use POST");
    if (!bearer(host, req, name))
        return respond_err(c, 401, "needs the host key or a host/cohost token (Bearer)");
    if (strcmp(action, "/invites") == 0) {
        char rs[16] = "speaker";
        query_param(req, "role", rs, sizeof(rs));
        int role = role_parse(rs);
        if (role < ROLE_LISTENER || role > ROLE_COHOST)
            return respond_err(c, 400, "role must be listener, speaker or cohost");
        char tok[TOKEN_MAX];
        int reusable = reusable_param(req);
        if (mint_stage_token(host, name, rs, reusable, tok) < 0)
            return respond_err(c, 500, "could not make the invite");
        struct buf b = {0};
        buf_printf(&b, "{\"role\":\"%s\",\"token\":\"%s\",\"reusable\":%s}", rs, tok,
                   reusable ? "true" : "false");
        respond_json(c, 201, b.data);
        buf_free(&b);
    } else if (strcmp(action, "/live") == 0) {
        int rc = stage_go_live(stage_of(sp), bearer(host, req, name) == 2 ? "host key" : "API");
        respond_json(c, 200, rc == 0 ? "{\"live\":true}" : "{\"live\":true,\"already\":true}");
    } else if (strcmp(action, "/end") == 0) {
        respond_json(c, 200, "{\"ended\":true}");
        space_end(sp, CLOSE_MOUNT_END);
    } else {
        respond_err(c, 404, "unknown action");
    }
}

/* Refuses a stage token with <status> and the reason <why> (a static string), counted. */
static void refuse_token(struct conn *c, int status, const char *space, const char *why)
{
    char msg[160];
    conn_counters(c)->refused_stage_token++;
    log_warn("stage", "#%llu %s: token refused for /%s: %s", (unsigned long long)c->id, c->peer,
             space, why);
    snprintf(msg, sizeof(msg), "Token refused: %s", why);
    conn_error(c, status, NULL, msg);
}

static void ws_join(struct spaces *host, struct conn *c, const struct http_request *req, const char *name)
{
    char tok[TOKEN_MAX], who[256] = ""; /* stage_join cuts it, on a whole character */
    query_param(req, "name", who, sizeof(who));
    int by_key = 0, want = ROLE_LISTENER;
    struct token t;
    const struct token *seat = NULL; /* the token that seats this one, if any */
    struct shared_counters *ctr = conn_counters(c);
    if (query_param(req, "key", tok, sizeof(tok)) >= 0) {
        if (!key_ok(host, tok, strlen(tok))) {
            ctr->refused_stage_token++;
            log_warn("stage", "#%llu %s: bad host key for /%s", (unsigned long long)c->id,
                     c->peer, name);
            return conn_error(c, 401, NULL, "Bad host key");
        }
        by_key = 1;
    } else if (query_param(req, "token", tok, sizeof(tok)) >= 0) {
        const char *why = "malformed token";
        int bad = token_check(host->secret, TOKEN_STAGE, tok, strlen(tok), time(NULL), &t, &why) <
                  0;
        if (!bad && strcmp(t.space, name) != 0) {
            bad = 1;
            why = "token for another space";
        }
        if (!bad && role_parse(t.role) < 0) {
            bad = 1;
            why = "the token names no role on this stage";
        }
        if (bad)
            return refuse_token(c, 403, name, why);
        want = role_parse(t.role);
        seat = &t;
    }
    struct space *sp = mount_name_ok(name) ? space_find(host, name) : NULL;
    if (sp && !stage_of(sp))
        return conn_error(c, 409, NULL, "This mount is a studio relay, not a stage");
    if (!sp && !by_key)
        return conn_error(c, 404, NULL, "No such space");
    if (!by_key && want == ROLE_LISTENER) {
        /* off stage: bounded in number, and kept out of the descriptor reserve */
        if (fds_in_reserve(c))
            return refuse_fd_reserve(host, c, "member off stage");
        if (host->sh->main.ws_off_stage >= (uint64_t)host->cfg->max_members) {
            host->sh->main.refused_max_members++;
            LOG_RATELIMITED(LOG_WARN, "stage", "#%llu %s: %d members (max-members), refused",
                            (unsigned long long)c->id, c->peer, host->cfg->max_members);
            return conn_error(c, 503, "Retry-After: 10", "Too many members: try again later");
        }
    }
    if (seat) {
        const char *why = stage_token_refusal(stage_of(sp), seat);
        if (why)
            return refuse_token(c, strstr(why, "revoked") ? 403 : 409, name, why);
    }
    char head[256];
    int status = 0;
    int n = ws_handshake(req, head, sizeof(head), &status);
    if (n < 0) {
        if (status == 426)
            return conn_error(c, 426, "Sec-WebSocket-Version: 13", "WebSocket version 13 only");
        return conn_error(c, 400, NULL, "Not a WebSocket upgrade");
    }
    const char *why = NULL;
    if (!sp) {
        int st;
        sp = create_stage_space(host, name, name, &why, &st);
        if (!sp)
            return conn_error(c, st, st == 503 ? "Retry-After: 10" : NULL, why);
    }
    int role = stage_place(stage_of(sp), want, by_key, &why);
    if (role < 0)
        return conn_error(c, 409, NULL, why ? why : "no room on this stage");
    struct iovec iov = {head, (size_t)n};
    if (conn_writev(c, &iov, 1) != n || conn_write_pending(c))
        return conn_close(c);
    loop_mod(host->loop, &c->io, EPOLLIN | EPOLLRDHUP);
    stage_join(stage_of(sp), c, role, who, seat);
}

/* Recordings (issue 12, item 2), the host key's: GET /api/recordings lists them, DELETE
 * /api/recordings/ID deletes one that has ended (409 while it grows). */
static void api_recordings(struct spaces *host, struct conn *c, const struct http_request *req,
                           const char *rest)
{
    if (bearer(host, req, NULL) != 2)
        return respond_err(c, 401, "recordings need the host key (Bearer)");
    const char *dir = host->cfg->record_dir;
    if (!rest[0]) {
        if (req->method != HTTP_GET)
            return respond_err(c, 405, "use GET");
        struct buf b = {0};
        buf_puts(&b, "{\"recordings\":");
        record_list_json(dir, &b, 1000);
        buf_puts(&b, "}");
        respond_json(c, 200, b.data);
        buf_free(&b);
        return;
    }
    if (req->method != HTTP_DELETE)
        return respond_err(c, 405, "use DELETE");
    int rc = record_delete(dir, rest + 1);
    if (rc == -EBUSY)
        return respond_err(c, 409, "the recording is still growing: end its space first");
    if (rc == -EINVAL || rc == -ENOENT)
        return respond_err(c, 404, "no such recording");
    if (rc < 0)
        return respond_err(c, 500, strerror(-rc));
    log_info("record", "#%llu %s: recording %s deleted", (unsigned long long)c->id, c->peer,
             rest + 1);
    respond_json(c, 200, "{\"deleted\":true}");
}

void api_route(struct spaces *host, struct conn *c, const struct http_request *req)
{
    char path[256];
    if (http_decode_path(req->path, req->path_len, path, sizeof(path)) < 0)
        return conn_error(c, 400, NULL, "Bad path");
    if (strncmp(path, "/ws/", 4) == 0)
        return ws_join(host, c, req, path + 4);
    if (!http_find_header(req, "Authorization") && fds_in_reserve(c))
        return refuse_fd_reserve(host, c, "API call");
    if (strcmp(path, "/api/recordings") == 0 || strncmp(path, "/api/recordings/", 16) == 0)
        return api_recordings(host, c, req, path + 15);
    if (strcmp(path, "/api/spaces") == 0) {
        if (req->method != HTTP_POST)
            return respond_err(c, 405, "use POST");
        return api_create(host, c, req);
    }
    if (strncmp(path, "/api/spaces/", 12) == 0) {
        char name[64];
        const char *rest = path + 12, *slash = strchr(rest, '/');
        size_t nlen = slash ? (size_t)(slash - rest) : strlen(rest);
        if (nlen >= sizeof(name))
            return respond_err(c, 404, "no such stage space");
        memcpy(name, rest, nlen);
        name[nlen] = '\0';
        return api_space(host, c, req, name, slash ? slash : "");
    }
    conn_error(c, 404, NULL, "Not found");
}
