/*
 * test_attack: "rostrum-load attack" (load/attack): the pieces that decide what is sent (garbage
 * messages, forged tickets), the option checks (loopback only, bounds), and each mode run whole
 * (processes, pipe, JSON) against a small fake server whose behaviour is known, so that every
 * counter the report prints can be checked against what the server really did.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <ogg/ogg.h>

#include "harness.h"
#include "load/attack.h"
#include "ws/ws.h"

/* ---- pure pieces ---------------------------------------------------------------------------- */

TEST(garbage_is_deterministic_and_bounded)
{
    static uint8_t a[ATTACK_GARBAGE_MAX], b[ATTACK_GARBAGE_MAX];
    const uint32_t lens[] = {0, 1, 5, 100, 8191, 8192, 16000, ATTACK_GARBAGE_MAX, 100000};
    for (int k = 0; k < ATTACK_G_KINDS; k++) {
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            for (uint32_t seed = 0; seed < 5; seed++) {
                uint32_t la = attack_garbage(k, seed, lens[i], "/live", "127.0.0.1:8000", a);
                uint32_t lb = attack_garbage(k, seed, lens[i], "/live", "127.0.0.1:8000", b);
                ASSERT_EQ_UINT(la, lb);
                ASSERT(la >= 1 && la <= ATTACK_GARBAGE_MAX);
                ASSERT_EQ_MEM(a, b, la);
            }
        }
    }
    /* shapes */
    uint32_t n = attack_garbage(ATTACK_G_LONG_PATH, 3, 12000, "/live", "h", a);
    ASSERT_EQ_UINT(n, 12000);
    ASSERT(memcmp(a, "GET /", 5) == 0);
    ASSERT(memcmp(a + n - 4, "\r\n\r\n", 4) == 0);
    n = attack_garbage(ATTACK_G_LONG_HEADER, 3, 9000, "/live", "h", a);
    ASSERT(memcmp(a, "GET /live HTTP/1.1\r\nHost: h\r\nX-Long: ", 36) == 0);
    ASSERT(memcmp(a + n - 4, "\r\n\r\n", 4) == 0);
    n = attack_garbage(ATTACK_G_NO_NEWLINE, 9, 4000, "/live", "h", a);
    ASSERT_EQ_UINT(n, 4000);
    ASSERT(memchr(a, '\n', n) == NULL && memchr(a, '\r', n) == NULL);
    n = attack_garbage(ATTACK_G_CONTROL, 9, 10, "/live", "h", a);
    ASSERT(memchr(a, 0, n) != NULL);
    /* different seeds differ */
    attack_garbage(ATTACK_G_RANDOM, 1, 64, "/", "h", a);
    attack_garbage(ATTACK_G_RANDOM, 2, 64, "/", "h", b);
    ASSERT(memcmp(a, b, 64) != 0);
}

TEST(forged_ticket_differs_in_the_signature_only)
{
    char out[128];
    const char *t = "djF8cm9vbXw.ZdzltoQBlvqCbepwTFdautbEfbF4G5Ov76q3KhH3H6M";
    ASSERT_EQ_INT(attack_forge_ticket(t, out, sizeof(out)), 0);
    ASSERT_EQ_UINT(strlen(out), strlen(t));
    size_t dot = (size_t)(strrchr(t, '.') - t);
    int diffs = 0;
    for (size_t i = 0; i < strlen(t); i++) {
        if (out[i] != t[i]) {
            diffs++;
            ASSERT(i > dot);
            ASSERT(i < strlen(t) - 2); /* not where base64 padding bits could absorb it */
        }
    }
    ASSERT_EQ_INT(diffs, 1);
    /* without a dot: still one change, in the middle */
    ASSERT_EQ_INT(attack_forge_ticket("abcdefgh", out, sizeof(out)), 0);
    ASSERT(strcmp(out, "abcdefgh") != 0);
    ASSERT_EQ_INT(attack_forge_ticket("zzzz9999", out, sizeof(out)), 0);
    ASSERT(strcmp(out, "zzzz9999") != 0);
    ASSERT_EQ_INT(attack_forge_ticket("", out, sizeof(out)), -1);
    ASSERT_EQ_INT(attack_forge_ticket("abcdefgh", out, 8), -1); /* no room for the NUL */
}

TEST(mode_names_round_trip)
{
    for (int m = 0; m < ATTACK_MODES; m++)
        ASSERT_EQ_INT(attack_mode_parse(attack_mode_name(m)), m);
    ASSERT_EQ_INT(attack_mode_parse("ddos"), -1);
}

/* ---- stage modes: the WebSocket pieces --------------------------------------------------------
 */

TEST(ws_path_takes_the_space)
{
    char out[64];
    ASSERT_EQ_INT(attack_ws_path("/room", out, sizeof(out)), 0);
    ASSERT_EQ_STR(out, "/ws/room");
    ASSERT_EQ_INT(attack_ws_path("/ws/room", out, sizeof(out)), 0);
    ASSERT_EQ_STR(out, "/ws/room");
    ASSERT_EQ_INT(attack_ws_path("/", out, sizeof(out)), -1);
    ASSERT_EQ_INT(attack_ws_path("/ws/", out, sizeof(out)), -1);
    ASSERT_EQ_INT(attack_ws_path("/a/b", out, sizeof(out)), -1);
    ASSERT_EQ_INT(attack_ws_path("/room?x=1", out, sizeof(out)), -1);
    ASSERT_EQ_INT(attack_ws_path("/room", out, 8), -1); /* "/ws/room" and its NUL: 9 */
}

TEST(ws_upgrade_request_is_whole_and_encoded)
{
    char out[1024];
    uint32_t n = attack_ws_upgrade("/ws/room", "127.0.0.1", 8001, 42, NULL, out, sizeof(out));
    ASSERT(n > 0 && n == strlen(out));
    ASSERT(strncmp(out, "GET /ws/room?name=atk42 HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n", 56) == 0);
    ASSERT(strstr(out, "\r\nUpgrade: websocket\r\n") != NULL);
    ASSERT(strstr(out, "\r\nConnection: Upgrade\r\n") != NULL);
    ASSERT(strstr(out, "\r\nSec-WebSocket-Key: " ATTACK_WS_KEY "\r\n") != NULL);
    ASSERT(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
    ASSERT(strcmp(out + n - 4, "\r\n\r\n") == 0);
    n = attack_ws_upgrade("/ws/room", "127.0.0.1", 8001, 1, "a.b+c/d=", out, sizeof(out));
    ASSERT(strstr(out, "GET /ws/room?name=atk1&token=a.b%2Bc%2Fd%3D HTTP/1.1\r\n") == out);
    ASSERT_EQ_UINT(attack_ws_upgrade("/ws/room", "127.0.0.1", 8001, 1, NULL, out, 40), 0);
    /* the key's Accept, as the server computes it: the RFC 6455 sample */
    char acc[29];
    ws_accept_key(ATTACK_WS_KEY, strlen(ATTACK_WS_KEY), acc);
    ASSERT_EQ_STR(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(ws_frame_lengths_and_mask)
{
    static uint8_t pl[70000], out[70016];
    for (size_t i = 0; i < sizeof(pl); i++)
        pl[i] = (uint8_t)(i * 7);
    const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t len = lens[k];
        size_t n = attack_ws_frame(out, sizeof(out), 0x2, pl, len, 0xa1b2c3d4u);
        size_t hl = len < 126 ? 2 : len <= 65535 ? 4 : 10;
        ASSERT_EQ_UINT(n, hl + 4 + len);
        ASSERT_EQ_UINT(out[0], 0x82); /* FIN, binary */
        ASSERT(out[1] & 0x80);        /* masked, as a client must */
        uint64_t got = out[1] & 0x7f;
        if (hl == 4)
            got = (uint64_t)out[2] << 8 | out[3];
        if (hl == 10) {
            got = 0;
            for (int i = 0; i < 8; i++)
                got = got << 8 | out[2 + i];
        }
        ASSERT_EQ_UINT(got, len);
        if (hl == 4)
            ASSERT_EQ_UINT(out[1] & 0x7f, 126);
        if (hl == 10)
            ASSERT_EQ_UINT(out[1] & 0x7f, 127);
        const uint8_t key[4] = {0xa1, 0xb2, 0xc3, 0xd4};
        ASSERT_EQ_MEM(out + hl, key, 4);
        for (size_t i = 0; i < len; i++)
            ASSERT_EQ_UINT(out[hl + 4 + i] ^ key[i & 3], pl[i]);
        ASSERT_EQ_UINT(attack_ws_frame(out, hl + 3 + len, 0x2, pl, len, 1), 0); /* one short */
    }
}

/* The server's own WebSocket reader (ws/ws.c over wslay), fed from a buffer. */
struct feed {
    const uint8_t *p;
    size_t len, off;
    int texts;
    size_t text_bytes;
    int bad;
};

static long feed_recv(void *arg, uint8_t *buf, size_t len)
{
    struct feed *f = arg;
    if (f->off == f->len) {
        errno = EAGAIN;
        return -1;
    }
    size_t n = f->len - f->off < len ? f->len - f->off : len;
    n = n > 1000 ? 1000 : n; /* frames split across reads */
    memcpy(buf, f->p + f->off, n);
    f->off += n;
    return (long)n;
}

static long feed_send(void *arg, const uint8_t *buf, size_t len)
{
    return (long)len;
}

static void feed_text(void *arg, const uint8_t *msg, size_t len)
{
    struct feed *f = arg;
    f->texts++;
    f->text_bytes += len;
    if (len != strlen(ATTACK_WS_PING) || memcmp(msg, ATTACK_WS_PING, len) != 0)
        f->bad++;
}

TEST(ws_pings_are_what_the_server_reads)
{
    static uint8_t out[20000], again[20000];
    size_t n = attack_ws_pings(out, 16384, 7);
    ASSERT(n > 16384 - ATTACK_WS_PING_FRAME && n <= 16384);
    ASSERT_EQ_UINT(n % ATTACK_WS_PING_FRAME, 0);
    ASSERT_EQ_UINT(attack_ws_pings(again, 16384, 7), n);
    ASSERT_EQ_MEM(out, again, n); /* deterministic in its seed */
    attack_ws_pings(again, 16384, 8);
    ASSERT(memcmp(out, again, n) != 0);
    ASSERT_EQ_UINT(attack_ws_pings(out, ATTACK_WS_PING_FRAME - 1, 7), 0);
    struct feed f = {.p = out, .len = n};
    struct ws_io io = {.recv = feed_recv, .send = feed_send, .io_arg = &f};
    struct ws_handler h = {.on_text = feed_text};
    struct ws *w = ws_new(-1, &io, &h, &f);
    while (f.off < f.len)
        ASSERT_EQ_INT(ws_read(w), 0);
    ws_free(w);
    ASSERT_EQ_INT(f.texts, (int)(n / ATTACK_WS_PING_FRAME));
    ASSERT_EQ_INT(f.bad, 0);
}

/* ---- a fake server ------------------------------------------------------------------------- */

enum fake_mode {
    FAKE_CLOSE_300MS, /* accept, read nothing, close 300 ms later */
    FAKE_HTTP,        /* answer requests: streams, 503s, tickets, 400s (see fake_answer) */
    FAKE_TRICKLE,     /* read head lines, close after the third line (no blank line needed) */
    FAKE_FLOOD_SLOW,  /* on a whole request: send as much as fits of 1 MiB, close after 1 s */
    FAKE_WS,          /* a WebSocket upgrade (a wrong Accept for /ws/bad), then read and drop,
                         and close 500 ms after it; a connection that sends nothing stays */
};

struct fake_client {
    int fd;
    long t_accept;
    long t_close; /* ms, 0: none */
    int kind;     /* 1: a stream being sent, page by page */
    int next_page;
    size_t len;
    char buf[4096];
};

#define FAKE_CLIENTS 256
#define ADMIT_DELAY_MS 1500

static long fake_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The Ogg stream a fake listener gets: OpusHead, OpusTags, then audio pages. */
static unsigned char pages[8][512];
static size_t page_len[8];

static void make_pages(void)
{
    ogg_stream_state os;
    ogg_stream_init(&os, 42);
    ogg_page og;
    unsigned char head[19] = "OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0";
    unsigned char tags[24] = "OpusTags\x04\0\0\0test\0\0\0\0";
    unsigned char audio[100];
    memset(audio, 0x55, sizeof(audio));
    for (int i = 0; i < 8; i++) {
        ogg_packet op = {0};
        op.packet = i == 0 ? head : i == 1 ? tags : audio;
        op.bytes = i == 0 ? 19 : i == 1 ? 24 : 100;
        op.b_o_s = i == 0;
        op.granulepos = i < 2 ? 0 : 960 * (i - 1);
        op.packetno = i;
        ogg_stream_packetin(&os, &op);
        ASSERT(ogg_stream_flush(&os, &og) != 0);
        ASSERT((size_t)(og.header_len + og.body_len) <= sizeof(pages[i]));
        memcpy(pages[i], og.header, (size_t)og.header_len);
        memcpy(pages[i] + og.header_len, og.body, (size_t)og.body_len);
        page_len[i] = (size_t)(og.header_len + og.body_len);
    }
    ogg_stream_clear(&os);
}

static void say(int fd, const char *s)
{
    send(fd, s, strlen(s), MSG_NOSIGNAL);
}

static long admit_at_wall; /* the one admit time every ticket of this fake server names */
static int streams;        /* plain stream requests so far */

/* Answers the whole request in <c> (FAKE_HTTP). Returns 1 if <c> stays open (a stream). */
static int fake_answer(struct fake_client *c)
{
    char *b = c->buf;
    if (strncmp(b, "GET /join/live HTTP/1.0\r\n", 25) == 0) {
        char body[256], resp[512];
        snprintf(body, sizeof(body),
                 "{\"ticket\":\"payload.GENUINEsignature\",\"admit_at_ms\":%ld,\"position\":7,"
                 "\"stream\":\"/live?ticket=payload.GENUINEsignature\"}",
                 admit_at_wall);
        snprintf(resp, sizeof(resp), "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n%s",
                 body);
        say(c->fd, resp);
        return 0;
    }
    if (strncmp(b, "GET /live?ticket=", 17) == 0) {
        const char *t = b + 17;
        if (strncmp(t, "payload.GENUINEsignature ", 25) != 0) {
            say(c->fd, "HTTP/1.0 403 Forbidden\r\n\r\n");
            return 0;
        }
        if (wall_ms() + 250 < admit_at_wall) {
            say(c->fd, "HTTP/1.0 425 Too Early\r\nRetry-After: 2\r\n\r\n");
            return 0;
        }
    } else if (strncmp(b, "GET /live HTTP/1.", 17) == 0) {
        if (streams++ % 3 == 2) {
            say(c->fd, "HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n");
            return 0;
        }
    } else {
        say(c->fd, "HTTP/1.0 400 Bad Request\r\n\r\n");
        return 0;
    }
    say(c->fd, "HTTP/1.0 200 OK\r\nContent-Type: audio/ogg\r\n\r\n");
    for (int i = 0; i < 2; i++)
        send(c->fd, pages[i], page_len[i], MSG_NOSIGNAL);
    c->kind = 1;
    c->next_page = 2;
    return 1;
}

/* FAKE_WS: answers the upgrade in <c> with 101 and the Accept of its key (wrong for /ws/bad). */
static void fake_ws_upgrade(struct fake_client *c)
{
    const char *k = strstr(c->buf, "Sec-WebSocket-Key: ");
    char acc[29] = "wrong";
    if (k && strncmp(c->buf, "GET /ws/bad", 11) != 0)
        ws_accept_key(k + 19, 24, acc);
    char resp[256];
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n",
             acc);
    say(c->fd, resp);
    static const uint8_t welcome[] = {0x81, 5, 'h', 'e', 'l', 'l', 'o'};
    send(c->fd, welcome, sizeof(welcome), MSG_NOSIGNAL);
}

/* Forks a fake server in <mode> on 127.0.0.1:<*port>; it exits after <life_ms>. Returns its pid. */
static pid_t fake_server(enum fake_mode mode, uint16_t *port, long life_ms)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    ASSERT(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
    ASSERT(listen(lfd, 256) == 0);
    socklen_t al = sizeof(a);
    ASSERT(getsockname(lfd, (struct sockaddr *)&a, &al) == 0);
    *port = ntohs(a.sin_port);
    make_pages();
    admit_at_wall = wall_ms() + ADMIT_DELAY_MS;
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid > 0) {
        close(lfd);
        return pid;
    }
    static struct fake_client cl[FAKE_CLIENTS];
    static char big[1 << 20];
    memset(big, 'x', sizeof(big));
    int ncl = 0;
    long t0 = fake_ms();
    while (fake_ms() - t0 < life_ms) {
        struct pollfd pf[FAKE_CLIENTS + 1];
        pf[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < ncl; i++)
            pf[i + 1] = (struct pollfd){.fd = cl[i].fd, .events = POLLIN};
        int polled = ncl; /* a client accepted below has no pollfd this round */
        poll(pf, (nfds_t)ncl + 1, 20);
        long now = fake_ms();
        if ((pf[0].revents & POLLIN) && ncl < FAKE_CLIENTS) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                fcntl(fd, F_SETFL, O_NONBLOCK);
                cl[ncl++] = (struct fake_client){.fd = fd, .t_accept = now};
                if (mode == FAKE_CLOSE_300MS)
                    cl[ncl - 1].t_close = now + 300;
            }
        }
        for (int i = 0; i < ncl; i++) {
            struct fake_client *c = &cl[i];
            if (c->fd >= 0 && mode != FAKE_CLOSE_300MS && i < polled &&
                (pf[i + 1].revents & (POLLIN | POLLHUP))) {
                ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                } else if (n <= 0) {
                    close(c->fd);
                    c->fd = -1;
                } else if (!c->kind) {
                    c->len += (size_t)n;
                    c->buf[c->len] = 0;
                    int lines = 0;
                    for (size_t k = 0; k < c->len; k++)
                        lines += c->buf[k] == '\n';
                    int whole = strstr(c->buf, "\r\n\r\n") != NULL;
                    if (mode == FAKE_TRICKLE && lines >= 3) {
                        close(c->fd);
                        c->fd = -1;
                    } else if (mode == FAKE_FLOOD_SLOW && whole) {
                        say(c->fd, "HTTP/1.0 200 OK\r\n\r\n");
                        send(c->fd, big, sizeof(big), MSG_NOSIGNAL); /* as much as fits */
                        c->kind = 2;
                        c->t_close = now + 1000;
                    } else if (mode == FAKE_WS && whole) {
                        fake_ws_upgrade(c);
                        c->kind = 3;
                        c->t_close = now + 500;
                    } else if (mode == FAKE_HTTP && (whole || c->len >= sizeof(c->buf) - 1)) {
                        if (!whole)
                            say(c->fd, "HTTP/1.0 431 Request Header Fields Too Large\r\n\r\n");
                        if (!whole || !fake_answer(c)) {
                            shutdown(c->fd, SHUT_WR);
                            c->t_close = now + 200; /* lingering close: the answer arrives */
                        }
                    }
                }
            }
            if (c->fd >= 0 && c->kind == 1 && c->next_page < 8) {
                send(c->fd, pages[c->next_page], page_len[c->next_page], MSG_NOSIGNAL);
                c->next_page++;
            }
            if (c->fd >= 0 && c->t_close && now >= c->t_close) {
                close(c->fd); /* FAKE_FLOOD_SLOW: with unsent data, FIN_WAIT1 */
                c->fd = -1;
            }
        }
        /* drop finished clients */
        int j = 0;
        for (int i = 0; i < ncl; i++)
            if (cl[i].fd >= 0)
                cl[j++] = cl[i];
        ncl = j;
    }
    _exit(0);
}

/* Runs the tool with <args> (NULL-terminated), its stdout and stderr into <out> (<cap> bytes).
 * Returns its exit status. */
static int run_tool(const char *const *args, char *out, size_t cap)
{
    char path[] = "/tmp/test_attack_XXXXXX";
    int tmp = mkstemp(path);
    ASSERT(tmp >= 0);
    unlink(path);
    fflush(stdout);
    fflush(stderr);
    int saved = dup(1), saved_err = dup(2);
    dup2(tmp, 1);
    dup2(tmp, 2);
    int argc = 0;
    while (args[argc])
        argc++;
    int rc = load_attack_main(argc, (char **)args);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, 1);
    dup2(saved_err, 2);
    close(saved);
    close(saved_err);
    ssize_t n = pread(tmp, out, cap - 1, 0);
    close(tmp);
    out[n > 0 ? n : 0] = 0;
    return rc;
}

/* The number after "<key>": (first match, or after <within> if given) in <j>, or -1. */
static long long json_num_in(const char *j, const char *within, const char *key)
{
    if (within) {
        char w[64];
        snprintf(w, sizeof(w), "\"%s\":", within);
        j = strstr(j, w);
        if (!j)
            return -1;
    }
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(j, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static long long json_num(const char *j, const char *key)
{
    return json_num_in(j, NULL, key);
}

static void stop(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void url_of(char *url, size_t cap, uint16_t port)
{
    snprintf(url, cap, "http://127.0.0.1:%u/live", port);
}

/* ---- the tool, whole ------------------------------------------------------------------------- */

TEST(refuses_bad_arguments)
{
    char out[2048];
    const char *remote[] = {"attack",    "flood", "--url",   "http://10.0.0.1:8000/live",
                            "--rate",    "1",     "--count", "1",
                            "--seconds", "1",     NULL};
    ASSERT_EQ_INT(run_tool(remote, out, sizeof(out)), 2);
    ASSERT(strstr(out, "loopback") != NULL);
    const char *named[] = {"attack",    "flood", "--url",   "http://example.com/live",
                           "--rate",    "1",     "--count", "1",
                           "--seconds", "1",     NULL};
    ASSERT_EQ_INT(run_tool(named, out, sizeof(out)), 2);
    const char *no_mode[] = {"attack", "--url", "http://127.0.0.1:1/live", NULL};
    ASSERT_EQ_INT(run_tool(no_mode, out, sizeof(out)), 2);
    const char *bad_mode[] = {"attack", "ddos", "--url", "http://127.0.0.1:1/live", NULL};
    ASSERT_EQ_INT(run_tool(bad_mode, out, sizeof(out)), 2);
    const char *missing[] = {"attack", "flood", "--url", "http://127.0.0.1:1/live", NULL};
    ASSERT_EQ_INT(run_tool(missing, out, sizeof(out)), 2);
    const char *misplaced[] = {
        "attack", "flood",     "--url", "http://127.0.0.1:1/live", "--rate", "1", "--count",
        "1",      "--seconds", "1",     "--ticket-expired",        "x",      NULL};
    ASSERT_EQ_INT(run_tool(misplaced, out, sizeof(out)), 2);
    const char *too_big[] = {"attack",    "garbage", "--url",       "http://127.0.0.1:1/live",
                             "--rate",    "1",       "--count",     "1",
                             "--seconds", "1",       "--max-bytes", "16385",
                             NULL};
    ASSERT_EQ_INT(run_tool(too_big, out, sizeof(out)), 2);
    const char *fds[] = {"attack",    "flood", "--url",   "http://127.0.0.1:1/live",
                         "--rate",    "1",     "--count", "60000",
                         "--seconds", "1",     "--procs", "1",
                         NULL};
    ASSERT_EQ_INT(run_tool(fds, out, sizeof(out)), 2);
    ASSERT(strstr(out, "descriptor limit") != NULL);
    ASSERT(strstr(out, "{") == NULL); /* no report on bad arguments */
    const char *help[] = {"attack", "--help", NULL};
    ASSERT_EQ_INT(run_tool(help, out, sizeof(out)), 0);
    ASSERT(strstr(out, "slowloris") != NULL);
}

TEST(connect_refused_is_counted_and_bounded)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd); /* a closed port */
    char url[64], out[8192];
    url_of(url, sizeof(url), ntohs(a.sin_port));
    const char *args[] = {"attack",  "flood", "--url",     url, "--rate", "50",
                          "--count", "5",     "--seconds", "1", "--json", NULL};
    long t0 = fake_ms();
    ASSERT_EQ_INT(run_tool(args, out, sizeof(out)), 0);
    ASSERT(fake_ms() - t0 < 6000);
    /* reopened at the rate: ~50 tries in the second, never more than 5 at once */
    ASSERT(json_num(out, "attempted") >= 40 && json_num(out, "attempted") <= 52);
    ASSERT_EQ_INT(json_num(out, "refused"), json_num(out, "attempted"));
    ASSERT_EQ_INT(json_num(out, "connected"), 0);
    ASSERT(json_num(out, "peak_open") <= 5);
}

TEST(flood_sees_server_closes)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_CLOSE_300MS, &port, 8000);
    char url[64], out[8192];
    url_of(url, sizeof(url), port);
    const char *args[] = {"attack",      "flood",   "--url", url,         "--rate",
                          "100",         "--count", "10",    "--seconds", "2",
                          "--no-reopen", "--procs", "2",     "--json",    NULL};
    int rc = run_tool(args, out, sizeof(out));
    stop(srv);
    if (json_num_in(out, "closed_by_server", "fin") != 10)
        fprintf(stderr, "    %s", out);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(json_num(out, "attempted"), 10);
    ASSERT_EQ_INT(json_num(out, "connected"), 10);
    ASSERT_EQ_INT(json_num_in(out, "closed_by_server", "fin"), 10);
    ASSERT_EQ_INT(json_num(out, "no_response"), 10);
    ASSERT_EQ_INT(json_num(out, "open_at_end"), 0);
    long long p50 = json_num_in(out, "server_closed_after_ms", "p50");
    ASSERT(p50 >= 250 && p50 <= 1000);
}

TEST(slowloris_sends_lines_until_closed)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_TRICKLE, &port, 8000);
    char url[64], out[8192];
    url_of(url, sizeof(url), port);
    /* the first chunk holds 3 lines (request, Host, User-Agent): the fake closes on it */
    const char *args[] = {"attack",      "slowloris",     "--url", url,         "--rate",
                          "20",          "--count",       "4",     "--seconds", "2",
                          "--no-reopen", "--interval-ms", "200",   "--json",    NULL};
    int rc = run_tool(args, out, sizeof(out));
    stop(srv);
    if (json_num_in(out, "closed_by_server", "all") != 4)
        fprintf(stderr, "    %s", out);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(json_num_in(out, "closed_by_server", "all"), 4);
    ASSERT_EQ_INT(json_num(out, "lines_sent"), 0);
}

TEST(slowloris_holds_and_trickles)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_HTTP, &port, 8000); /* waits for a blank line that never comes */
    char url[64], out[8192];
    url_of(url, sizeof(url), port);
    const char *args[] = {"attack",      "slowloris",     "--url", url,         "--rate",
                          "50",          "--count",       "3",     "--seconds", "2",
                          "--no-reopen", "--interval-ms", "300",   "--json",    NULL};
    int rc = run_tool(args, out, sizeof(out));
    stop(srv);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(json_num(out, "open_at_end"), 3);
    ASSERT_EQ_INT(json_num_in(out, "closed_by_server", "all"), 0);
    /* ~2 s / 300 ms = 5 or 6 lines each after the request line */
    long long lines = json_num(out, "lines_sent");
    ASSERT(lines >= 12 && lines <= 21);
}

TEST(slowread_sees_close_in_the_kernel)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_FLOOD_SLOW, &port, 8000);
    char url[64], out[8192];
    url_of(url, sizeof(url), port);
    const char *args[] = {"attack", "slowread",  "--url", url,           "--rate", "50", "--count",
                          "3",      "--seconds", "4",     "--no-reopen", "--json", NULL};
    int rc = run_tool(args, out, sizeof(out));
    stop(srv);
    if (json_num_in(out, "closed_by_server", "kernel") != 3)
        fprintf(stderr, "    %s", out);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(json_num(out, "200"), 3);
    /* the FIN waits behind unread data: only the kernel saw the close */
    ASSERT_EQ_INT(json_num_in(out, "closed_by_server", "kernel"), 3);
    ASSERT_EQ_INT(json_num_in(out, "closed_by_server", "fin"), 0);
    long long p50 = json_num_in(out, "server_closed_after_ms", "p50");
    ASSERT(p50 >= 900 && p50 <= 3500);
    /* read at 32 B/s for ~4 s */
    long long got = json_num(out, "bytes_received");
    ASSERT(got >= 3 * 64 && got <= 3 * 5 * 32);
}

TEST(joinstorm_counts_refusals_and_first_audio)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_HTTP, &port, 10000);
    char url[64], out[16384];
    url_of(url, sizeof(url), port);
    const char *args[] = {"attack", "joinstorm", "--url", url,          "--rate", "30", "--count",
                          "9",      "--seconds", "5",     "--timeline", "--json", NULL};
    long t0 = fake_ms();
    int rc = run_tool(args, out, sizeof(out));
    long took = fake_ms() - t0;
    stop(srv);
    if (json_num(out, "joined") != 6)
        fprintf(stderr, "    %s", out);
    ASSERT_EQ_INT(rc, 0);
    ASSERT(took < 3000); /* it stops when every join is over */
    ASSERT_EQ_INT(json_num(out, "attempted"), 9);
    ASSERT_EQ_INT(json_num(out, "joined"), 6);
    ASSERT_EQ_INT(json_num(out, "503"), 3);
    ASSERT_EQ_INT(json_num(out, "retry_after"), 3);
    ASSERT_EQ_INT(json_num_in(out, "first_audio_ms", "count"), 6);
    ASSERT(strstr(out, "\"timeline\":[[0,9,6,3,0,"));
}

TEST(tickets_forged_early_expired_genuine)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_HTTP, &port, 10000);
    char url[64], out[16384];
    url_of(url, sizeof(url), port);
    const char *args[] = {
        "attack",  "tickets", "--url",     url, "--rate",           "20",
        "--count", "4",       "--seconds", "6", "--ticket-expired", "payload.OLDsignature",
        "--json",  NULL};
    int rc = run_tool(args, out, sizeof(out));
    stop(srv);
    if (json_num_in(out, "genuine", "audio") != 4)
        fprintf(stderr, "    %s", out);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(json_num_in(out, "tickets", "issued"), 4);
    ASSERT_EQ_INT(json_num_in(out, "tickets", "max_position"), 7);
    ASSERT_EQ_INT(json_num_in(out, "forged", "403"), 4);
    ASSERT_EQ_INT(json_num_in(out, "expired", "403"), 4);
    ASSERT_EQ_INT(json_num_in(out, "early", "425"), 4);
    ASSERT_EQ_INT(json_num_in(out, "genuine", "200"), 4);
    ASSERT_EQ_INT(json_num_in(out, "genuine", "audio"), 4);
    ASSERT_EQ_INT(json_num_in(out, "tickets", "early_skipped"), 0);
    long long late = json_num_in(out, "genuine_late_ms", "max");
    ASSERT(late >= 0 && late < 500);
}

TEST(garbage_answers_by_kind)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_HTTP, &port, 10000);
    char url[64], out[16384];
    url_of(url, sizeof(url), port);
    const char *args[] = {
        "attack",  "garbage",      "--url",     url,      "--rate",      "70",
        "--count", "14",           "--seconds", "3",      "--no-reopen", "--max-bytes",
        "3000",    "--timeout-ms", "500",       "--json", NULL};
    int rc = run_tool(args, out, sizeof(out));
    stop(srv);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(json_num(out, "attempted"), 14);
    /* two of each flavour; the fake answers 400 to what is not "GET /live", and no flavour
     * is ever whole and valid except long_header, whose request the fake serves or refuses */
    ASSERT_EQ_INT(json_num_in(out, "random", "sent"), 2);
    ASSERT_EQ_INT(json_num_in(out, "bad_method", "400"), 2);
    ASSERT_EQ_INT(json_num_in(out, "long_path", "400"), 2);
    ASSERT_EQ_INT(json_num_in(out, "control", "sent"), 2);
    /* no newline at all, under the fake's 4 KiB: it waits; the tool gives up after 500 ms */
    ASSERT_EQ_INT(json_num_in(out, "no_newline", "no_status"), 2);
    ASSERT(json_num(out, "timeouts") >= 2);
}

TEST(wsping_upgrades_and_pings_without_reading)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_WS, &port, 8000);
    char url[64], out[16384];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/room", port);
    const char *args[] = {"attack", "wsping",    "--url", url,           "--rate", "50", "--count",
                          "3",      "--seconds", "2",     "--no-reopen", "--json", NULL};
    int rc = run_tool(args, out, sizeof(out));
    stop(srv);
    if (json_num_in(out, "stage", "upgraded") != 3)
        fprintf(stderr, "    %s", out);
    ASSERT_EQ_INT(rc, 0);
    ASSERT(strstr(out, "\"mode\":\"wsping\"") != NULL);
    ASSERT(strstr(out, "\"ws_path\":\"/ws/room\"") != NULL);
    ASSERT_EQ_INT(json_num(out, "101"), 3);
    ASSERT_EQ_INT(json_num_in(out, "stage", "upgraded"), 3);
    ASSERT_EQ_INT(json_num_in(out, "stage", "bad_accept"), 0);
    ASSERT(json_num_in(out, "stage", "frames_sent") >= 3 * 780);
    ASSERT(json_num(out, "bytes_sent") >= json_num_in(out, "stage", "frames_sent") * 21);
    /* the fake closes 500 ms after the upgrade: seen, though the tool never reads */
    ASSERT_EQ_INT(json_num_in(out, "closed_by_server", "all"), 3);
    ASSERT_EQ_INT(json_num(out, "open_at_end"), 0);
}

TEST(wsnoread_joins_and_holds)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_WS, &port, 8000);
    char url[64], out[16384];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/ws/room", port);
    const char *args[] = {"attack",      "wsnoread",  "--url", url,       "--rate",
                          "50",          "--count",   "3",     "--token", "t.k",
                          "--no-reopen", "--seconds", "2",     "--json",  NULL};
    int rc = run_tool(args, out, sizeof(out));
    stop(srv);
    if (json_num_in(out, "stage", "upgraded") != 3)
        fprintf(stderr, "    %s", out);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(json_num_in(out, "stage", "upgraded"), 3);
    ASSERT_EQ_INT(json_num_in(out, "stage", "frames_sent"), 0);
    ASSERT(strstr(out, "\"token\":true") != NULL);
    ASSERT_EQ_INT(json_num_in(out, "closed_by_server", "fin"), 3);
    /* the request and nothing else went out */
    char req[1024];
    uint32_t one = attack_ws_upgrade("/ws/room", "127.0.0.1", port, 0, "t.k", req, sizeof(req));
    ASSERT_EQ_INT(json_num(out, "bytes_sent"), 3 * (long long)one);
}

TEST(stage_upgrade_with_a_wrong_accept_is_counted)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_WS, &port, 8000);
    char url[64], out[16384];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/bad", port);
    const char *args[] = {"attack", "wsnoread",  "--url", url,           "--rate", "50", "--count",
                          "2",      "--seconds", "1",     "--no-reopen", "--json", NULL};
    ASSERT_EQ_INT(run_tool(args, out, sizeof(out)), 0);
    stop(srv);
    ASSERT_EQ_INT(json_num_in(out, "stage", "upgraded"), 0);
    ASSERT_EQ_INT(json_num_in(out, "stage", "bad_accept"), 2);
}

TEST(stagefd_holds_with_and_without_the_handshake)
{
    uint16_t port;
    pid_t srv = fake_server(FAKE_WS, &port, 8000);
    char url[64], out[16384];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/room", port);
    const char *tcp[] = {"attack", "stagefd",   "--url", url,           "--rate", "50", "--count",
                         "4",      "--seconds", "1",     "--no-reopen", "--json", NULL};
    ASSERT_EQ_INT(run_tool(tcp, out, sizeof(out)), 0);
    ASSERT_EQ_INT(json_num(out, "connected"), 4);
    ASSERT_EQ_INT(json_num(out, "bytes_sent"), 0);
    ASSERT_EQ_INT(json_num(out, "open_at_end"), 4); /* the fake waits for a request */
    ASSERT(strstr(out, "\"handshake\":false") != NULL);
    const char *ws[] = {"attack",      "stagefd", "--url",       url,         "--rate",
                        "50",          "--count", "4",           "--seconds", "2",
                        "--no-reopen", "--json",  "--handshake", NULL};
    ASSERT_EQ_INT(run_tool(ws, out, sizeof(out)), 0);
    stop(srv);
    if (json_num_in(out, "stage", "upgraded") != 4)
        fprintf(stderr, "    %s", out);
    ASSERT_EQ_INT(json_num_in(out, "stage", "upgraded"), 4);
    /* it reads: the fake's first frame arrived, and its close was seen at EOF */
    ASSERT(json_num(out, "bytes_received") >= 4 * 7);
    ASSERT_EQ_INT(json_num_in(out, "closed_by_server", "fin"), 4);
}

TEST(stage_options_are_checked)
{
    char out[2048];
    const char *nospace[] = {"attack",    "wsping", "--url",   "http://127.0.0.1:1/",
                             "--rate",    "1",      "--count", "1",
                             "--seconds", "1",      NULL};
    ASSERT_EQ_INT(run_tool(nospace, out, sizeof(out)), 2);
    ASSERT(strstr(out, "/SPACE") != NULL);
    const char *hs[] = {"attack",    "wsping", "--url",       "http://127.0.0.1:1/room",
                        "--rate",    "1",      "--count",     "1",
                        "--seconds", "1",      "--handshake", NULL};
    ASSERT_EQ_INT(run_tool(hs, out, sizeof(out)), 2);
    const char *tok[] = {"attack",    "flood", "--url",   "http://127.0.0.1:1/room",
                         "--rate",    "1",     "--count", "1",
                         "--seconds", "1",     "--token", "x",
                         NULL};
    ASSERT_EQ_INT(run_tool(tok, out, sizeof(out)), 2);
}

int main(void)
{
    return RUN_TESTS();
}
