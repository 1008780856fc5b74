/*
 * tls: OpenSSL connections behind the seam of tls.h (handshake, read, writev with kTLS or a
 * bounded SSL_write fallback), server and client (rostrum-speak, the load tool).
 */
#include "tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util/check.h"

#define TLS_RECORD 16384 /* the largest TLS plaintext record */

struct tls_ctx {
    SSL_CTX *ctx;
};

/* Owned by the connection that made it; <fd> is borrowed. */
struct tls_conn {
    SSL *ssl;
    int fd;
    int ktls;             /* the kernel has the send keys */
    size_t pend;          /* bytes of <pend_buf> OpenSSL holds as a record not yet sent whole */
    char *pend_buf;       /* a copy of them, given again to SSL_write (malloc'd, TLS_RECORD) */
    unsigned long hs_err; /* OpenSSL's first error of a failed handshake, for the message */
    int hs_errno;         /* errno of a failed handshake's system call */
};

/* Puts OpenSSL's first queued reason into <err> after <what>. */
static void ssl_reason(char *err, size_t cap, const char *what)
{
    unsigned long e = ERR_get_error();
    char r[200] = "unknown error";
    if (e)
        ERR_error_string_n(e, r, sizeof(r));
    snprintf(err, cap, "%s: %s", what, r);
    ERR_clear_error();
}

struct tls_ctx *tls_ctx_new(const char *cert, const char *key, char *err, size_t errcap)
{
    char what[600];
    if (!cert[0] || !key[0]) {
        snprintf(err, errcap, "TLS needs both tls-cert and tls-key");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    BUG_ON(!ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* kTLS where the kernel offers it; no renegotiation (it would need writes during reads) */
    SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* AES-GCM first: the ciphers the kernel can take over */
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL");
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                  "TLS_CHACHA20_POLY1305_SHA256");
    /* many idle listeners: no read/write buffers kept between calls */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(what, sizeof(what), "tls-cert %s: cannot load the certificate chain", cert);
        ssl_reason(err, errcap, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof(what), "tls-key %s does not match tls-cert %s", key, cert);
        else
            snprintf(what, sizeof(what), "tls-key %s: cannot load the private key", key);
        ssl_reason(err, errcap, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof(what), "tls-key %s does not match tls-cert %s", key, cert);
        ssl_reason(err, errcap, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    struct tls_ctx *t = calloc(1, sizeof(*t));
    BUG_ON(!t);
    t->ctx = ctx;
    return t;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ctx);
    free(ctx);
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd)
{
    struct tls_conn *t = calloc(1, sizeof(*t));
    BUG_ON(!t);
    t->ssl = SSL_new(ctx->ctx);
    BUG_ON(!t->ssl);
    t->fd = fd;
    BUG_ON(SSL_set_fd(t->ssl, fd) != 1);
    SSL_set_accept_state(t->ssl);
    return t;
}

void tls_conn_free(struct tls_conn *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t->pend_buf);
    free(t);
}

/* Maps the result <rc> of an SSL call to errno: EAGAIN for a retry, 0 for a clean close,
 * ECONNRESET otherwise. Returns the SSL_ERROR_ code. */
static int ssl_errno(struct tls_conn *t, int rc)
{
    int e = SSL_get_error(t->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        break;
    case SSL_ERROR_ZERO_RETURN:
        errno = 0;
        break;
    case SSL_ERROR_SYSCALL:
        if (errno == 0 || errno == EAGAIN)
            errno = ECONNRESET; /* EOF in the middle of a record */
        break;
    default:
        errno = ECONNRESET;
        break;
    }
    ERR_clear_error();
    return e;
}

int tls_handshake(struct tls_conn *t)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->ktls = BIO_get_ktls_send(SSL_get_wbio(t->ssl)) ? 1 : 0;
        return TLS_DONE;
    }
    unsigned long first = ERR_peek_error(); /* before ssl_errno clears the queue */
    int saved = errno;
    int e = ssl_errno(t, rc);
    if (e == SSL_ERROR_WANT_READ)
        return TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return TLS_WANT_WRITE;
    t->hs_err = first;
    t->hs_errno = e == SSL_ERROR_SYSCALL ? saved : 0;
    return -1;
}

int tls_ktls_send(const struct tls_conn *t)
{
    return t->ktls;
}

ssize_t tls_read(struct tls_conn *t, void *buf, size_t len)
{
    ERR_clear_error();
    size_t got = 0;
    if (SSL_read_ex(t->ssl, buf, len, &got) == 1)
        return (ssize_t)got;
    int e = ssl_errno(t, 0);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_SYSCALL && errno == ECONNRESET && !ERR_peek_error())
        return 0; /* EOF without close_notify: the peer left all the same */
    return -1;
}

int tls_read_buffered(const struct tls_conn *t)
{
    return SSL_has_pending(t->ssl);
}

int tls_pending(const struct tls_conn *t)
{
    return t->pend > 0;
}

int tls_flush(struct tls_conn *t)
{
    while (t->pend > 0) {
        ERR_clear_error();
        size_t w = 0;
        if (SSL_write_ex(t->ssl, t->pend_buf, t->pend, &w) != 1) {
            ssl_errno(t, 0);
            return -1;
        }
        /* partial write mode: the record went, maybe a shorter one than asked */
        memmove(t->pend_buf, t->pend_buf + w, t->pend - w);
        t->pend -= w;
    }
    return 0;
}

/* Gathers from <iov>[<i>] at <off> onward, over the following entries, at most one record's
 * worth into <buf>. Returns the bytes gathered. */
static size_t gather(const struct iovec *iov, int n, int i, size_t off, char *buf)
{
    size_t got = 0;
    for (; i < n && got < TLS_RECORD; i++, off = 0) {
        size_t take = iov[i].iov_len - off;
        if (take > TLS_RECORD - got)
            take = TLS_RECORD - got;
        memcpy(buf + got, (const char *)iov[i].iov_base + off, take);
        got += take;
    }
    return got;
}

ssize_t tls_writev(struct tls_conn *t, const struct iovec *iov, int n)
{
    /* Without kTLS each SSL_write is a record and a write() to the socket: small entries (a
     * listener's burst is several 200 ms pages, ~1.2 KB each) are gathered into one record,
     * so a burst costs one system call as the plain writev() does. One buffer per thread
     * (a worker is one), only used within this call; a record OpenSSL keeps is copied out. */
    static __thread char gbuf[TLS_RECORD];
    if (t->pend > 0 && tls_flush(t) < 0)
        return -1;
    if (t->ktls)
        return writev(t->fd, iov, n);
    size_t total = 0, off = 0;
    int i = 0;
    while (i < n) {
        size_t here = iov[i].iov_len - off;
        if (here == 0) {
            i++;
            off = 0;
            continue;
        }
        const char *p = (const char *)iov[i].iov_base + off;
        size_t chunk = here < TLS_RECORD ? here : TLS_RECORD;
        if (here < TLS_RECORD && i + 1 < n) {
            p = gbuf;
            chunk = gather(iov, n, i, off, gbuf);
        }
        size_t w = 0;
        ERR_clear_error();
        if (SSL_write_ex(t->ssl, p, chunk, &w) != 1) {
            int e = ssl_errno(t, 0);
            if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
                return total > 0 ? (ssize_t)total : -1;
            /* OpenSSL made a record of <chunk> bytes and holds it: it is ours to send again,
             * so count it as written and keep the bytes it must be given */
            if (!t->pend_buf) {
                t->pend_buf = malloc(TLS_RECORD);
                BUG_ON(!t->pend_buf);
            }
            memcpy(t->pend_buf, p, chunk);
            t->pend = chunk;
            total += chunk;
            errno = EAGAIN;
            return (ssize_t)total;
        }
        /* partial write mode: the record went, maybe a shorter one than asked */
        total += w;
        while (w > 0) {
            size_t left = iov[i].iov_len - off;
            if (w < left) {
                off += w;
                break;
            }
            w -= left;
            i++;
            off = 0;
        }
    }
    return (ssize_t)total;
}

void tls_refuse(int fd)
{
    /* a TLSPlaintext record (RFC 8446 5.1, 6): type alert (21), legacy version 0x0303,
     * length 2; level fatal (2), description access_denied (49): "access control was
     * applied and the sender decided not to proceed" */
    static const unsigned char alert[] = {21, 3, 3, 0, 2, 2, 49};
    if (send(fd, alert, sizeof(alert), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* nothing to do: the connection is closed either way */
    }
}

void tls_close_notify(struct tls_conn *t)
{
    if (t->pend > 0 && tls_flush(t) < 0)
        return;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

/* ---- the client side ------------------------------------------------------------------- */

struct tls_ctx *tls_client_ctx_new(const char *cafile, int verify, char *err, size_t errcap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    BUG_ON(!ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* a failed check fails the handshake; only a benchmark against its own self-signed
     * certificate turns it off (rostrum-load --insecure) */
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    /* tls_writev's contract: a blocked record is given again from our copy. The load tool
     * holds thousands of connections that read now and then: no buffers kept between calls,
     * no session cache (every listener is a new visitor). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!verify) {
        /* nothing to load */
    } else if (cafile) {
        /* the file's own errno first: OpenSSL's message for a missing file is obscure */
        FILE *f = fopen(cafile, "re");
        if (!f) {
            snprintf(err, errcap, "CA file %s: %s", cafile, strerror(errno));
            SSL_CTX_free(ctx);
            return NULL;
        }
        fclose(f);
        ERR_clear_error();
        if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
            char what[600];
            snprintf(what, sizeof(what), "CA file %s: no CA certificate in it (PEM wanted)",
                     cafile);
            ssl_reason(err, errcap, what);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_reason(err, errcap, "the system's trust store");
        SSL_CTX_free(ctx);
        return NULL;
    }
    struct tls_ctx *t = calloc(1, sizeof(*t));
    BUG_ON(!t);
    t->ctx = ctx;
    return t;
}

struct tls_conn *tls_client_new(struct tls_ctx *ctx, int fd, const char *host)
{
    struct tls_conn *t = calloc(1, sizeof(*t));
    BUG_ON(!t);
    t->ssl = SSL_new(ctx->ctx);
    BUG_ON(!t->ssl);
    t->fd = fd;
    BUG_ON(SSL_set_fd(t->ssl, fd) != 1);
    SSL_set_connect_state(t->ssl);
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
    if (is_ip) {
        /* RFC 6066: no SNI for an address; the certificate must name the address itself */
        BUG_ON(X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1);
    } else {
        BUG_ON(SSL_set_tlsext_host_name(t->ssl, host) != 1);
        /* the whole name, no partial wildcards ("f*.example.com") */
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        BUG_ON(SSL_set1_host(t->ssl, host) != 1);
    }
    return t;
}

int tls_handshake_error(const struct tls_conn *t, char *buf, size_t cap)
{
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        snprintf(buf, cap, "%s", X509_verify_cert_error_string(v));
        return v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH
                   ? TLS_FAIL_NAME
                   : TLS_FAIL_CERT;
    }
    if (t->hs_err) {
        const char *r = ERR_reason_error_string(t->hs_err);
        int reason = ERR_GET_REASON(t->hs_err);
        snprintf(buf, cap, "%s%s", r ? r : "a TLS error",
                 reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG
                     ? " (is that port speaking TLS?)"
                     : "");
        return TLS_FAIL_OTHER;
    }
    if (t->hs_errno && t->hs_errno != ECONNRESET)
        snprintf(buf, cap, "%s", strerror(t->hs_errno));
    else
        snprintf(buf, cap, "the peer closed the connection during the handshake");
    return TLS_FAIL_OTHER;
}

const char *tls_describe(const struct tls_conn *t, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
    return buf;
}
