/*
 * test_speak: the pieces of rostrum-speak (src/speak/): the WebSocket client's handshake
 * helpers and answer parser, the client itself against a scripted server on loopback, and the
 * audio sources (tone, raw file, ffmpeg).
 *
 * The answer parser is fed every input whole and split at every byte: the result must not
 * depend on how TCP cut it. Over TLS, a record that blocks half-sent must still go out, in
 * order. The scripted server writes the 101, a text frame, a binary frame
 * and a close frame in ONE send, so the client must hand the bytes that follow the head to
 * wslay (the real server sends its welcome right behind the 101).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "event/loop.h"
#include "harness.h"
#include "speak/source.h"
#include "speak/wsc.h"
#include "tls/tls.h"
#include "util/buf.h"

/* ---- handshake helpers ---------------------------------------------------------------------- */

TEST(accept_matches_rfc6455_example)
{
    char out[WSC_ACCEPT_LEN + 1];
    wsc_accept_for("dGhlIHNhbXBsZSBub25jZQ==", out); /* RFC 6455 section 1.3 */
    ASSERT_EQ_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(key_is_16_random_bytes_in_base64)
{
    char a[WSC_KEY_LEN + 1], b[WSC_KEY_LEN + 1];
    unsigned char raw[32];
    wsc_key_new(a);
    wsc_key_new(b);
    ASSERT_EQ_INT(strlen(a), 24);
    ASSERT_EQ_INT(EVP_DecodeBlock(raw, (const unsigned char *)a, 24), 18); /* 16 + padding */
    ASSERT_EQ_STR(a + 22, "==");
    ASSERT(strcmp(a, b) != 0);
}

TEST(percent_encode_keeps_unreserved_only)
{
    struct buf b = {0};
    wsc_percent_encode(&b, "Ana B&c=d/é~-._");
    ASSERT_EQ_STR(b.data, "Ana%20B%26c%3Dd%2F%C3%A9~-._");
    buf_free(&b);
}

TEST(split_hostport)
{
    char h[64], p[8];
    ASSERT_EQ_INT(wsc_split_hostport("127.0.0.1:8000", h, sizeof(h), p, sizeof(p)), 0);
    ASSERT_EQ_STR(h, "127.0.0.1");
    ASSERT_EQ_STR(p, "8000");
    ASSERT_EQ_INT(wsc_split_hostport("[::1]:9", h, sizeof(h), p, sizeof(p)), 0);
    ASSERT_EQ_STR(h, "::1");
    ASSERT_EQ_STR(p, "9");
    ASSERT_EQ_INT(wsc_split_hostport("localhost:65535", h, sizeof(h), p, sizeof(p)), 0);
    const char *bad[] = {"localhost", ":80",    "host:",   "host:0", "host:65536",
                         "host:8x",   "::1:80", "[::1]80", "[::1]",  "h:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (wsc_split_hostport(bad[i], h, sizeof(h), p, sizeof(p)) != -1)
            TEST_FAIL_("accepted \"%s\"", bad[i]);
    ASSERT_EQ_INT(wsc_split_hostport("averyveryverylonghostname:80", h, 8, p, sizeof(p)), -1);
}

/* ---- the answer parser ---------------------------------------------------------------------- */

/* Feeds <in> to a fresh parser in two pieces cut at <cut> (as a socket would: the second piece
 * starts where the first was consumed, unless the parser stopped at a 101 head). Returns the
 * total consumed, or -1. */
static long feed_split(struct wsc_resp *r, const char *in, size_t len, size_t cut)
{
    wsc_resp_init(r);
    long a = wsc_resp_feed(r, in, cut);
    if (a < 0)
        return -1;
    if ((size_t)a < cut) /* stopped early: a 101 head ended inside the first piece */
        return a;
    long b = wsc_resp_feed(r, in + cut, len - cut);
    return b < 0 ? -1 : a + b;
}

static const char *resp_101(const char *accept, char *out, size_t cap)
{
    snprintf(out, cap,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
             "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept:  %s \r\n\r\n",
             accept);
    return out;
}

TEST(resp_101_split_at_every_byte)
{
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    char head[512], in[600];
    resp_101("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head, sizeof(head));
    size_t hlen = strlen(head);
    /* a server frame right behind the head: must not be eaten by the HTTP parser */
    memcpy(in, head, hlen);
    memcpy(in + hlen, "\x81\x02hi", 4);
    size_t len = hlen + 4;
    for (size_t cut = 0; cut <= len; cut++) {
        struct wsc_resp r;
        long used = feed_split(&r, in, len, cut);
        const char *why = NULL;
        if (used != (long)hlen)
            TEST_FAIL_("cut %zu: consumed %ld, head is %zu", cut, used, hlen);
        if (!wsc_resp_upgrade_ok(&r, key, &why))
            TEST_FAIL_("cut %zu: %s", cut, why);
        ASSERT(r.complete);
    }
}

TEST(resp_101_checks)
{
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==", *why;
    char in[512];
    struct wsc_resp r;
    wsc_resp_init(&r);
    resp_101("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", in, sizeof(in));
    ASSERT_EQ_INT(wsc_resp_feed(&r, in, strlen(in)), strlen(in));
    ASSERT_EQ_INT(wsc_resp_upgrade_ok(&r, key, &why), 0);
    ASSERT_EQ_STR(why, "wrong Sec-WebSocket-Accept");

    const char *no_upgrade = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    wsc_resp_init(&r);
    ASSERT(wsc_resp_feed(&r, no_upgrade, strlen(no_upgrade)) > 0);
    ASSERT(r.head_done);
    ASSERT_EQ_INT(wsc_resp_upgrade_ok(&r, key, &why), 0);

    const char *ok200 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    wsc_resp_init(&r);
    ASSERT_EQ_INT(wsc_resp_feed(&r, ok200, strlen(ok200)), strlen(ok200));
    ASSERT_EQ_INT(wsc_resp_upgrade_ok(&r, key, &why), 0);
}

TEST(resp_refusal_with_length_split_at_every_byte)
{
    const char *in = "HTTP/1.1 409 Conflict\r\nServer: rostrum/0.1\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\n"
                     "Connection: close\r\n\r\n409 Conflict: the stage is full\n";
    size_t len = strlen(in);
    for (size_t cut = 0; cut <= len; cut++) {
        struct wsc_resp r;
        ASSERT_EQ_INT(feed_split(&r, in, len, cut), len);
        ASSERT(r.complete);
        ASSERT_EQ_INT(r.status, 409);
        ASSERT_EQ_STR(r.body, "409 Conflict: the stage is full\n");
    }
}

TEST(resp_refusal_until_eof)
{
    const char *in = "HTTP/1.0 401 Unauthorized\r\n\r\nBad host key";
    struct wsc_resp r;
    wsc_resp_init(&r);
    ASSERT_EQ_INT(wsc_resp_feed(&r, in, strlen(in)), strlen(in));
    ASSERT(!r.complete);
    ASSERT_EQ_INT(wsc_resp_eof(&r), 0);
    ASSERT(r.complete);
    ASSERT_EQ_INT(r.status, 401);
    ASSERT_EQ_STR(r.body, "Bad host key");

    wsc_resp_init(&r); /* cut inside the head: EOF cannot complete it */
    ASSERT(wsc_resp_feed(&r, in, 12) >= 0);
    ASSERT_EQ_INT(wsc_resp_eof(&r), -1);
}

TEST(resp_long_body_is_kept_bounded)
{
    struct buf b = {0};
    buf_printf(&b, "HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n", 3 * WSC_BODY_MAX);
    for (int i = 0; i < 3 * WSC_BODY_MAX; i++)
        buf_puts(&b, "x");
    struct wsc_resp r;
    wsc_resp_init(&r);
    ASSERT_EQ_INT(wsc_resp_feed(&r, b.data, b.len), b.len);
    ASSERT(r.complete);
    ASSERT_EQ_INT(r.body_len, WSC_BODY_MAX);
    buf_free(&b);
}

TEST(resp_rejects_garbage_and_huge_heads)
{
    struct wsc_resp r;
    wsc_resp_init(&r);
    ASSERT_EQ_INT(wsc_resp_feed(&r, "SSH-2.0-OpenSSH\r\n", 17), -1);
    ASSERT_EQ_INT(wsc_resp_feed(&r, "more", 4), -1);

    wsc_resp_init(&r);
    const char *start = "HTTP/1.1 409 Conflict\r\n";
    ASSERT(wsc_resp_feed(&r, start, strlen(start)) > 0);
    char line[100];
    long rc = 0;
    for (int i = 0; i < 200 && rc >= 0; i++) {
        snprintf(line, sizeof(line), "X-Filler-%03d: %060d\r\n", i, i);
        rc = wsc_resp_feed(&r, line, strlen(line));
    }
    ASSERT_EQ_INT(rc, -1); /* past WSC_HEAD_MAX */
}

/* ---- the client against a scripted server -----------------------------------------------------
 */

struct script {
    struct loop loop;
    struct io lsn, conn;
    struct loop_timer timeout;
    struct wsc ws;
    int mode; /* 0: refuse with 409, 1: upgrade + frames + close in one write */
    char req[4096];
    size_t req_len;
    int opened, refused_status, closed_code, failed, texts, binaries;
    char body[256], text[256], reason[64], fail[160];
};

static void script_on_conn(struct loop *loop, struct io *io, uint32_t events)
{
    struct script *s = (struct script *)((char *)io - offsetof(struct script, conn));
    (void)events;
    ssize_t n = recv(io->fd, s->req + s->req_len, sizeof(s->req) - 1 - s->req_len, 0);
    if (n <= 0)
        return;
    s->req_len += (size_t)n;
    s->req[s->req_len] = '\0';
    if (!strstr(s->req, "\r\n\r\n"))
        return;
    loop_del(loop, io); /* the rest is read by the test itself */
    struct buf out = {0};
    if (s->mode == 0) {
        buf_puts(&out, "HTTP/1.1 409 Conflict\r\nContent-Type: text/plain\r\nContent-Length: 32"
                       "\r\nConnection: close\r\n\r\n409 Conflict: the stage is full\n");
    } else {
        const char *k = strstr(s->req, "Sec-WebSocket-Key: ");
        ASSERT(k);
        char key[WSC_KEY_LEN + 1], acc[WSC_ACCEPT_LEN + 1];
        memcpy(key, k + 19, WSC_KEY_LEN);
        key[WSC_KEY_LEN] = '\0';
        wsc_accept_for(key, acc);
        buf_printf(&out,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                   acc);
        static const char welcome[] = "{\"type\":\"welcome\",\"id\":1}";
        unsigned char hdr[2] = {0x81, sizeof(welcome) - 1};
        buf_append(&out, hdr, 2);
        buf_append(&out, welcome, sizeof(welcome) - 1);
        buf_append(&out, "\x82\x03\x01\x02\x03", 5);
        buf_append(&out, "\x88\x09\x0f\xa1removed", 11); /* 4001 "removed" */
    }
    ASSERT_EQ_INT(send(io->fd, out.data, out.len, MSG_NOSIGNAL), out.len);
    buf_free(&out);
}

static void script_on_accept(struct loop *loop, struct io *io, uint32_t events)
{
    struct script *s = (struct script *)((char *)io - offsetof(struct script, lsn));
    (void)events;
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT(fd >= 0);
    s->conn = (struct io){.fd = fd, .cb = script_on_conn};
    ASSERT_EQ_INT(loop_add(loop, &s->conn, EPOLLIN), 0);
    loop_del(loop, io);
}

static void script_timeout(struct loop *loop, struct loop_timer *t)
{
    (void)t;
    loop_stop(loop);
}

static void c_open(void *arg)
{
    ((struct script *)arg)->opened++;
}

static void c_refused(void *arg, int status, const char *body, size_t len)
{
    struct script *s = arg;
    s->refused_status = status;
    snprintf(s->body, sizeof(s->body), "%.*s", (int)len, body);
    loop_stop(&s->loop);
}

static void c_message(void *arg, int binary, const uint8_t *msg, size_t len)
{
    struct script *s = arg;
    if (binary) {
        s->binaries++;
        ASSERT_EQ_INT(len, 3);
        ASSERT_EQ_MEM(msg, "\x01\x02\x03", 3);
    } else {
        s->texts++;
        snprintf(s->text, sizeof(s->text), "%.*s", (int)len, (const char *)msg);
    }
}

static void c_close(void *arg, int code, const char *reason, size_t len)
{
    struct script *s = arg;
    s->closed_code = code;
    snprintf(s->reason, sizeof(s->reason), "%.*s", (int)len, reason);
    loop_stop(&s->loop);
}

static void c_fail(void *arg, const char *why)
{
    struct script *s = arg;
    s->failed++;
    snprintf(s->fail, sizeof(s->fail), "%s", why);
    loop_stop(&s->loop);
}

static const struct wsc_handler script_handler = {c_open, c_refused, c_message, c_close, c_fail};

static void script_before_sleep(struct loop *loop, void *arg)
{
    (void)loop;
    wsc_flush(&((struct script *)arg)->ws);
}

/* Runs the client against the scripted server in <mode> until a final callback. */
static void script_run(struct script *s, int mode)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->conn.fd = -1;
    ASSERT_EQ_INT(loop_init(&s->loop), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ_INT(listen(fd, 4), 0);
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    s->lsn = (struct io){.fd = fd, .cb = script_on_accept};
    ASSERT_EQ_INT(loop_add(&s->loop, &s->lsn, EPOLLIN), 0);
    char hp[32], err[128];
    snprintf(hp, sizeof(hp), "127.0.0.1:%u", ntohs(sa.sin_port));
    ASSERT_EQ_INT(wsc_connect(&s->ws, &s->loop, hp, "/ws/room?key=K&name=A", &script_handler, s,
                              err, sizeof(err)),
                  0);
    s->loop.before_sleep = script_before_sleep;
    s->loop.before_sleep_arg = s;
    loop_timer_start(&s->loop, &s->timeout, 5000, script_timeout);
    loop_run(&s->loop);
    ASSERT(strstr(s->req, "GET /ws/room?key=K&name=A HTTP/1.1\r\n") == s->req);
    ASSERT(strstr(s->req, "\r\nSec-WebSocket-Version: 13\r\n"));
    ASSERT(strstr(s->req, "\r\nUpgrade: websocket\r\n"));
}

TEST(client_reports_a_refusal_with_its_body)
{
    struct script s;
    script_run(&s, 0);
    ASSERT_EQ_INT(s.opened, 0);
    ASSERT_EQ_INT(s.failed, 0);
    ASSERT_EQ_INT(s.refused_status, 409);
    ASSERT_EQ_STR(s.body, "409 Conflict: the stage is full\n");
    wsc_free(&s.ws);
}

TEST(client_takes_frames_sent_with_the_101_and_answers_the_close)
{
    struct script s;
    script_run(&s, 1);
    if (s.failed)
        TEST_FAIL_("failed: %s", s.fail);
    ASSERT_EQ_INT(s.opened, 1);
    ASSERT_EQ_INT(s.texts, 1);
    ASSERT_EQ_STR(s.text, "{\"type\":\"welcome\",\"id\":1}");
    ASSERT_EQ_INT(s.binaries, 1);
    ASSERT_EQ_INT(s.closed_code, 4001);
    ASSERT_EQ_STR(s.reason, "removed");
    /* the answering close went out, masked (client to server), echoing the code */
    struct pollfd p = {.fd = s.conn.fd, .events = POLLIN};
    ASSERT_EQ_INT(poll(&p, 1, 2000), 1);
    unsigned char f[64];
    ssize_t n = recv(s.conn.fd, f, sizeof(f), 0);
    ASSERT(n >= 8);
    ASSERT_EQ_INT(f[0], 0x88);
    ASSERT((f[1] & 0x80) != 0);
    size_t plen = f[1] & 0x7f;
    ASSERT(plen >= 2 && (size_t)n == 6 + plen);
    unsigned code = (unsigned)((f[2 + 4] ^ f[2]) << 8 | (f[2 + 5] ^ f[3]));
    ASSERT_EQ_INT(code, 4001);
    ASSERT_EQ_INT(wsc_close_sent(&s.ws), 1);
    ASSERT_EQ_INT(wsc_send(&s.ws, 1, "x", 1, 1 << 20), -EPIPE);
    wsc_free(&s.ws);
}

TEST(client_connect_refused_fails_cleanly)
{
    struct script s;
    memset(&s, 0, sizeof(s));
    ASSERT_EQ_INT(loop_init(&s.loop), 0);
    /* a port bound but not listening: connect is refused */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char hp[32], err[128];
    snprintf(hp, sizeof(hp), "127.0.0.1:%u", ntohs(sa.sin_port));
    int rc = wsc_connect(&s.ws, &s.loop, hp, "/", &script_handler, &s, err, sizeof(err));
    if (rc == 0) {
        loop_run(&s.loop);
        ASSERT_EQ_INT(s.failed, 1);
        ASSERT(strstr(s.fail, "refused"));
    }
    wsc_free(&s.ws);
    ASSERT_EQ_INT(
        wsc_connect(&s.ws, &s.loop, "nohostport", "/", &script_handler, &s, err, sizeof(err)),
        -EINVAL);
    wsc_free(&s.ws);
}

/* ---- the client over TLS ----------------------------------------------------------------------
 *
 * A TLS server on loopback (tls_ctx_new with a self-signed certificate for 127.0.0.1 made here)
 * answers the upgrade, then stops reading while the client queues far more than both sockets
 * hold: a record blocks half-sent inside OpenSSL, and wsc must push it on later. Once the
 * server reads again, every frame must arrive whole and in order.
 */

#define TLS_MSGS 200
#define TLS_MSG_LEN 1000

/* Writes a self-signed P-256 certificate for 127.0.0.1 (its own CA) and its key to <cert> and
 * <key>. */
static void make_cert(const char *cert, const char *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    ASSERT(pk);
    X509 *x = X509_new();
    ASSERT(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"wsc test", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    const struct {
        int nid;
        const char *value;
    } ext[] = {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_subject_alt_name, "IP:127.0.0.1"}};
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, ext[i].nid, ext[i].value);
        ASSERT(e);
        ASSERT_EQ_INT(X509_add_ext(x, e, -1), 1);
        X509_EXTENSION_free(e);
    }
    ASSERT(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cert, "w");
    ASSERT(f && PEM_write_X509(f, x) == 1);
    fclose(f);
    f = fopen(key, "w");
    ASSERT(f && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) == 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

struct tls_script {
    struct loop loop;
    struct io lsn, conn;
    struct loop_timer timeout;
    struct wsc ws;
    struct tls_ctx *srv_ctx;
    struct tls_conn *srv;
    int phase; /* 0 handshake, 1 request, 2 paused, 3 reading frames */
    struct buf in;
    int frames, bad, opened, failed, unarmed;
    char fail[320];
};

/* Parses the client's masked binary frames out of s->in; counts those whose payload is the
 * expected pattern. */
static void tls_parse_frames(struct tls_script *s)
{
    size_t off = 0;
    for (;;) {
        const unsigned char *f = (const unsigned char *)s->in.data + off;
        size_t left = s->in.len - off;
        if (left < 2)
            break;
        size_t len = f[1] & 0x7f, hdr = 2;
        if (len == 126) {
            if (left < 4)
                break;
            len = (size_t)f[2] << 8 | f[3];
            hdr = 4;
        }
        if (left < hdr + 4 + len)
            break;
        const unsigned char *mask = f + hdr, *p = f + hdr + 4;
        int ok = f[0] == 0x82 && (f[1] & 0x80) && len == TLS_MSG_LEN;
        for (size_t i = 0; ok && i < len; i++)
            ok = (unsigned char)(p[i] ^ mask[i % 4]) == (unsigned char)(s->frames + i);
        s->frames++;
        s->bad += !ok;
        off += hdr + 4 + len;
    }
    memmove(s->in.data, s->in.data + off, s->in.len - off);
    s->in.len -= off;
    if (s->frames >= TLS_MSGS)
        loop_stop(&s->loop);
}

static void tls_on_conn(struct loop *loop, struct io *io, uint32_t events)
{
    struct tls_script *s = (struct tls_script *)((char *)io - offsetof(struct tls_script, conn));
    (void)events;
    if (s->phase == 0) {
        int rc = tls_handshake(s->srv);
        ASSERT(rc >= 0);
        if (rc != TLS_DONE) {
            loop_mod(loop, io, rc == TLS_WANT_WRITE ? EPOLLOUT : EPOLLIN);
            return;
        }
        s->phase = 1;
        loop_mod(loop, io, EPOLLIN);
    }
    char b[16384];
    for (;;) {
        ssize_t n = tls_read(s->srv, b, sizeof(b));
        if (n <= 0) {
            ASSERT(n < 0 && errno == EAGAIN);
            return;
        }
        buf_append(&s->in, b, (size_t)n);
        if (s->phase == 3) {
            tls_parse_frames(s);
            continue;
        }
        s->in.data[s->in.len] = '\0';
        const char *k = strstr(s->in.data, "Sec-WebSocket-Key: ");
        if (!k || !strstr(s->in.data, "\r\n\r\n"))
            continue;
        char key[WSC_KEY_LEN + 1], acc[WSC_ACCEPT_LEN + 1];
        memcpy(key, k + 19, WSC_KEY_LEN);
        key[WSC_KEY_LEN] = '\0';
        wsc_accept_for(key, acc);
        struct buf out = {0};
        buf_printf(&out,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                   acc);
        struct iovec iov = {.iov_base = out.data, .iov_len = out.len};
        ASSERT_EQ_INT(tls_writev(s->srv, &iov, 1), out.len);
        buf_free(&out);
        s->in.len = 0;
        s->phase = 2; /* stop reading: the client's writes pile up */
        loop_mod(loop, io, 0);
        return;
    }
}

static void tls_on_accept(struct loop *loop, struct io *io, uint32_t events)
{
    struct tls_script *s = (struct tls_script *)((char *)io - offsetof(struct tls_script, lsn));
    (void)events;
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT(fd >= 0);
    s->srv = tls_conn_new(s->srv_ctx, fd);
    s->conn = (struct io){.fd = fd, .cb = tls_on_conn};
    ASSERT_EQ_INT(loop_add(loop, &s->conn, EPOLLIN), 0);
    loop_del(loop, io);
}

static void t_open(void *arg)
{
    struct tls_script *s = arg;
    s->opened++;
    loop_stop(&s->loop);
}

static void t_fail(void *arg, const char *why)
{
    struct tls_script *s = arg;
    s->failed++;
    snprintf(s->fail, sizeof(s->fail), "%s", why);
    loop_stop(&s->loop);
}

static void t_refused(void *arg, int status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    t_fail(arg, status ? "refused" : "refused without a status");
}

static void t_message(void *arg, int binary, const uint8_t *msg, size_t len)
{
    (void)arg;
    (void)binary;
    (void)msg;
    (void)len;
}

static void t_close(void *arg, int code, const char *reason, size_t len)
{
    (void)code;
    (void)reason;
    (void)len;
    t_fail(arg, "closed by the server");
}

static const struct wsc_handler tls_handler = {t_open, t_refused, t_message, t_close, t_fail};

static void tls_before_sleep(struct loop *loop, void *arg)
{
    struct tls_script *s = arg;
    (void)loop;
    wsc_flush(&s->ws);
    /* a record counted as written but still inside OpenSSL needs EPOLLOUT to go on, even when
     * wslay has nothing more to send */
    if (s->ws.tls && tls_pending(s->ws.tls) && !(s->ws.io.events & EPOLLOUT))
        s->unarmed++;
}

TEST(client_over_tls_pushes_a_blocked_record_and_keeps_every_frame)
{
    char dir[] = "/tmp/test_speak_tls_XXXXXX", cert[64], key[64], err[512];
    ASSERT(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    make_cert(cert, key);
    static struct tls_script s; /* large: the wsc's buffers */
    memset(&s, 0, sizeof(s));
    s.conn.fd = -1;
    s.srv_ctx = tls_ctx_new(cert, key, err, sizeof(err));
    if (!s.srv_ctx)
        TEST_FAIL_("server context: %s", err);
    struct tls_ctx *cli = tls_client_ctx_new(cert, 1, err, sizeof(err));
    if (!cli)
        TEST_FAIL_("client context: %s", err);
    ASSERT_EQ_INT(loop_init(&s.loop), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int small = 4096; /* inherited by the accepted socket: little room in flight */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ_INT(listen(fd, 4), 0);
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    s.lsn = (struct io){.fd = fd, .cb = tls_on_accept};
    ASSERT_EQ_INT(loop_add(&s.loop, &s.lsn, EPOLLIN), 0);
    char hp[32];
    snprintf(hp, sizeof(hp), "127.0.0.1:%u", ntohs(sa.sin_port));
    ASSERT_EQ_INT(wsc_connect_tls(&s.ws, &s.loop, hp, cli, "/ws/room?key=K", &tls_handler, &s, err,
                                  sizeof(err)),
                  0);
    setsockopt(s.ws.io.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    s.loop.before_sleep = tls_before_sleep;
    s.loop.before_sleep_arg = &s;
    loop_timer_start(&s.loop, &s.timeout, 5000, script_timeout);
    loop_run(&s.loop); /* until the upgrade (or a failure) */
    if (s.failed)
        TEST_FAIL_("over TLS: %s", s.fail);
    ASSERT_EQ_INT(s.opened, 1);

    /* 200 KB while the server reads nothing: the socket fills in the middle of a record */
    unsigned char msg[TLS_MSG_LEN];
    for (int m = 0; m < TLS_MSGS; m++) {
        for (int i = 0; i < TLS_MSG_LEN; i++)
            msg[i] = (unsigned char)(m + i);
        ASSERT_EQ_INT(wsc_send(&s.ws, 1, msg, sizeof(msg), 1 << 20), 0);
    }
    loop_timer_stop(&s.loop, &s.timeout);
    loop_timer_start(&s.loop, &s.timeout, 300, script_timeout);
    s.loop.stop = 0; /* loop_run returns at once after a loop_stop otherwise */
    loop_run(&s.loop);
    ASSERT_EQ_INT(s.failed, 0);
    ASSERT_EQ_INT(tls_pending(s.ws.tls), 1); /* a record counted as written waits */
    ASSERT(s.ws.io.events & EPOLLOUT);

    /* the server reads again: all of it must come, whole and in order */
    s.phase = 3;
    loop_mod(&s.loop, &s.conn, EPOLLIN);
    loop_timer_stop(&s.loop, &s.timeout);
    loop_timer_start(&s.loop, &s.timeout, 10000, script_timeout);
    s.loop.stop = 0;
    loop_run(&s.loop);
    if (s.failed)
        TEST_FAIL_("after the pause: %s", s.fail);
    ASSERT_EQ_INT(s.frames, TLS_MSGS);
    ASSERT_EQ_INT(s.bad, 0);
    ASSERT_EQ_INT(tls_pending(s.ws.tls), 0);
    ASSERT_EQ_INT(s.unarmed, 0);

    wsc_free(&s.ws);
    tls_conn_free(s.srv);
    close(s.conn.fd);
    tls_ctx_free(cli);
    tls_ctx_free(s.srv_ctx);
    buf_free(&s.in);
    loop_close(&s.loop);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

/* ---- sources -------------------------------------------------------------------------------- */

TEST(tone_level_and_continuity)
{
    struct speak_source *s = speak_source_tone(1000, 0);
    int16_t a[960], b[960];
    ASSERT_EQ_INT(speak_source_read(s, a, 960), 0);
    ASSERT_EQ_INT(speak_source_read(s, b, 960), 0);
    int peak = 0;
    double sum = 0;
    for (int i = 0; i < 960; i++) {
        peak = abs(a[i]) > peak ? abs(a[i]) : peak;
        sum += (double)a[i] * a[i];
    }
    /* -12 dBFS: peak 0.2512 of full scale; 1 kHz is 48 samples a period, so 20 whole periods */
    ASSERT(abs(peak - 8231) <= 2);
    double rms_db = 20 * log10(sqrt(sum / 960) / 32767.0);
    ASSERT(fabs(rms_db - (-12.0 - 3.0103)) < 0.05);
    /* the second frame carries on where the first stopped (a whole number of periods) */
    for (int i = 0; i < 960; i++)
        ASSERT(abs(a[i] - b[i]) <= 1);
    speak_source_free(s);

    s = speak_source_tone(1000, -6);
    ASSERT_EQ_INT(speak_source_read(s, a, 960), 0);
    ASSERT(abs(a[12] - 4125) <= 2); /* the crest of the first period, 6 dB lower */
    speak_source_free(s);
}

TEST(gain_saturates)
{
    int16_t p[4] = {1000, -1000, 20000, -20000};
    speak_apply_gain(p, 4, 2.0);
    ASSERT_EQ_INT(p[0], 2000);
    ASSERT_EQ_INT(p[1], -2000);
    ASSERT_EQ_INT(p[2], 32767);
    ASSERT_EQ_INT(p[3], -32768);
}

static int16_t pattern(int i)
{
    return (int16_t)((i * 7919) % 30000 - 15000);
}

TEST(raw_file_loops)
{
    char path[] = "/tmp/test_speak_XXXXXX.s16";
    int fd = mkstemps(path, 4);
    ASSERT(fd >= 0);
    int16_t buf[1001];
    for (int i = 0; i < 1000; i++)
        buf[i] = pattern(i);
    ASSERT_EQ_INT(write(fd, buf, 2000), 2000);
    ASSERT_EQ_INT(write(fd, "\x7f", 1), 1); /* an odd trailing byte is dropped */
    close(fd);
    char err[256];
    struct speak_source *s = speak_source_file(NULL, path, 0, NULL, NULL, err, sizeof(err));
    ASSERT(s);
    ASSERT(speak_source_ready(s));
    int16_t out[960];
    for (int k = 0; k < 5; k++) {
        ASSERT_EQ_INT(speak_source_read(s, out, 960), 0);
        for (int i = 0; i < 960; i++)
            if (out[i] != pattern((k * 960 + i) % 1000))
                TEST_FAIL_("sample %d: %d != %d", k * 960 + i, out[i],
                           pattern((k * 960 + i) % 1000));
    }
    ASSERT_EQ_INT(speak_source_plays(s), 5);
    speak_source_free(s);
    unlink(path);

    ASSERT(!speak_source_file(NULL, "/nonexistent.s16", 0, NULL, NULL, err, sizeof(err)));
    ASSERT(strstr(err, "No such file"));
}

static void ready_stop(void *arg)
{
    loop_stop(arg);
}

static void write_wav(const char *path, int samples)
{
    unsigned char h[44];
    uint32_t data = (uint32_t)samples * 2;
    memcpy(h, "RIFF", 4);
    uint32_t v = 36 + data;
    memcpy(h + 4, &v, 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(h + 16, &v, 4);
    uint16_t fmt[2] = {1, 1}; /* PCM, mono */
    memcpy(h + 20, fmt, 4);
    v = 48000;
    memcpy(h + 24, &v, 4);
    v = 96000;
    memcpy(h + 28, &v, 4);
    uint16_t ba[2] = {2, 16};
    memcpy(h + 32, ba, 4);
    memcpy(h + 36, "data", 4);
    memcpy(h + 40, &data, 4);
    FILE *f = fopen(path, "wb");
    ASSERT(f);
    fwrite(h, 1, 44, f);
    for (int i = 0; i < samples; i++) {
        int16_t x = pattern(i);
        fwrite(&x, 2, 1, f);
    }
    fclose(f);
}

TEST(ffmpeg_file_decodes_exactly_and_loops)
{
    if (system("command -v ffmpeg >/dev/null 2>&1") != 0) {
        printf("    (no ffmpeg: skipped)\n");
        return;
    }
    char path[] = "/tmp/test_speak_XXXXXX.wav";
    int fd = mkstemps(path, 4);
    ASSERT(fd >= 0);
    close(fd);
    enum { LEN = 24000 }; /* 0.5 s: every read of 1 s crosses the end of the file */
    write_wav(path, LEN);
    struct loop loop;
    ASSERT_EQ_INT(loop_init(&loop), 0);
    char err[256];
    struct speak_source *s = speak_source_file(&loop, path, 0, ready_stop, &loop, err, sizeof(err));
    if (!s)
        TEST_FAIL_("%s", err);
    struct loop_timer t = {0};
    loop_timer_start(&loop, &t, 10000, script_timeout);
    loop_run(&loop);
    ASSERT(speak_source_ready(s));
    /* let a few more runs fill the buffer (it holds 2 s) */
    loop.stop = 0;
    loop_timer_start(&loop, &t, 3000, script_timeout);
    loop_run(&loop);
    static int16_t out[48000];
    ASSERT_EQ_INT(speak_source_read(s, out, 48000), 0);
    ASSERT_EQ_INT(speak_source_underruns(s), 0);
    for (int i = 0; i < 48000; i++)
        if (out[i] != pattern(i % LEN))
            TEST_FAIL_("sample %d: %d != %d", i, out[i], pattern(i % LEN));
    ASSERT(speak_source_plays(s) >= 2);
    speak_source_free(s);
    unlink(path);

    /* a file ffmpeg cannot decode fails, once, instead of restarting forever (ffmpeg's own
     * complaint would clutter the test log: its stderr, which it shares with us, goes away) */
    int devnull = open("/dev/null", O_WRONLY);
    ASSERT(devnull >= 0 && dup2(devnull, 2) == 2);
    char bad[] = "/tmp/test_speak_XXXXXX.mp3";
    fd = mkstemps(bad, 4);
    ASSERT_EQ_INT(write(fd, "not audio at all", 16), 16);
    close(fd);
    s = speak_source_file(&loop, bad, 0, ready_stop, &loop, err, sizeof(err));
    ASSERT(s);
    loop.stop = 0;
    loop_timer_start(&loop, &t, 10000, script_timeout);
    loop_run(&loop);
    int16_t f[960];
    ASSERT_EQ_INT(speak_source_read(s, f, 960), -1);
    ASSERT(strstr(speak_source_error(s), "ffmpeg"));
    ASSERT_EQ_INT(speak_source_plays(s), 1);
    speak_source_free(s);
    unlink(bad);
    loop_close(&loop);
}

int main(void)
{
    return RUN_TESTS();
}
