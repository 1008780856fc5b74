/*
 * tls: TLS (OpenSSL) behind a small seam, so the connection layer reads and writes a TLS
 * connection as it does a plain socket. The server's side (the TLS ports) and a client's
 * (rostrum-speak's wss://) share the connection calls; only the context and the way a
 * connection starts differ.
 *
 * A tls_ctx holds the certificate chain and key (made once in the main process, before the
 * workers fork: each has its own copy). A tls_conn wraps one accepted, non-blocking socket:
 *
 *   tls_conn_new --> tls_handshake (repeat on the event it wants) --> done:
 *     tls_read / tls_writev, tls_close_notify, tls_conn_free
 *
 * Kernel TLS: the context asks for it (SSL_OP_ENABLE_KTLS). When the kernel took the send
 * keys after the handshake (tls_ktls_send), a plain writev() on the socket is encrypted by the
 * kernel, so the listener path stays one writev() from shared memory. Otherwise tls_writev
 * falls back to SSL_write, one record (at most 16 KB) at a time, small iovec entries gathered
 * into one record (a burst of pages is one record and one write(), not one per page; bench/tls
 * measured 5 writes per listener-second without it). A record that could not go
 * out whole stays inside OpenSSL, which must be given the same bytes again: tls_writev keeps
 * a copy of them (bounded: one record) and counts them as written, and tls_pending says a
 * copy waits; the next tls_writev or tls_flush sends it first. So the caller may present
 * different bytes next time (a listener that jumped), and what was counted is what goes out.
 *
 * Client side (rostrum-speak's wss://, the load tool's https listeners): tls_client_ctx_new
 * trusts one CA file or the system's store and verifies the server's chain (only a benchmark
 * may turn that off); tls_client_new names the server (SNI for a DNS name, and the name or IP
 * address the certificate must carry: SSL_set1_host). A handshake that fails says why through
 * tls_handshake_error (the certificate check's own reason when that was it). A client never
 * asks for kTLS: it reads, and OpenSSL 3.0 has no kTLS receive for TLS 1.3.
 *
 * Errors follow the socket calls: -1 with errno (EAGAIN when it would block).
 */
#ifndef ROSTRUM_TLS_TLS_H
#define ROSTRUM_TLS_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct tls_ctx;
struct tls_conn;

enum { TLS_DONE = 0, TLS_WANT_READ = 1, TLS_WANT_WRITE = 2 };

/* Loads the full chain <cert> (PEM) and <key> (PEM) into a new server context. Returns it,
 * or NULL with a message in <err> (the file and OpenSSL's reason). */
struct tls_ctx *tls_ctx_new(const char *cert, const char *key, char *err, size_t errcap);
void tls_ctx_free(struct tls_ctx *ctx);

/* Wraps <fd> (borrowed: the caller closes it after tls_conn_free) for a server handshake.
 * Allocation failure aborts. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd);
/* Frees <t> without a close_notify (see tls_close_notify). NULL is fine. */
void tls_conn_free(struct tls_conn *t);

/* Drives the handshake: TLS_DONE, TLS_WANT_READ or TLS_WANT_WRITE (wait for that event and
 * call again), or -1 if it failed (the peer is not speaking TLS, or gave up). */
int tls_handshake(struct tls_conn *t);
/* 1 if the kernel encrypts what is written on the socket (kTLS send), once the handshake is
 * done. */
int tls_ktls_send(const struct tls_conn *t);

/* Reads up to <len> bytes: >0, 0 at the peer's close_notify or EOF, -1 with errno. */
ssize_t tls_read(struct tls_conn *t, void *buf, size_t len);
/* Writes from <iov>: the bytes taken (maybe fewer than offered), or -1 with errno EAGAIN if
 * none could be (a pending copy still waiting), or another errno. See the note above. */
ssize_t tls_writev(struct tls_conn *t, const struct iovec *iov, int n);
/* 1 if OpenSSL holds received bytes not yet read (decrypted plaintext, or a record already
 * taken off the socket): epoll will not report them, so a reader that stopped before
 * tls_read said EAGAIN must come back by itself. */
int tls_read_buffered(const struct tls_conn *t);
/* 1 if a record counted as written is still waiting to go out. */
int tls_pending(const struct tls_conn *t);
/* Sends the pending record: 0 when none is left, -1 with errno (EAGAIN: call again). */
int tls_flush(struct tls_conn *t);
/* Sends a close_notify if it can at once (never waits). */
void tls_close_notify(struct tls_conn *t);

/* Client side. A context that verifies servers against the CA certificates in <cafile> (PEM),
 * or the system's default trust store when <cafile> is NULL; <verify> 0 accepts anything (a
 * benchmark against its own self-signed certificate). Returns it (free it with tls_ctx_free),
 * or NULL with a message in <err>. */
struct tls_ctx *tls_client_ctx_new(const char *cafile, int verify, char *err, size_t errcap);
/* Wraps the connected non-blocking <fd> (borrowed) for a client handshake with <host>: a DNS
 * name is sent as SNI and must be one of the certificate's names; an IP address (v4 or v6,
 * without brackets) must be one of its IP addresses. Drive it with tls_handshake. Allocation
 * failure aborts. */
struct tls_conn *tls_client_new(struct tls_ctx *ctx, int fd, const char *host);
/* After tls_handshake returned -1: why, for a person, in <buf>. Returns TLS_FAIL_NAME if the
 * server's certificate is valid but not for the name asked ("hostname mismatch", "IP address
 * mismatch"), TLS_FAIL_CERT if it failed verification otherwise (<buf> has the check's reason:
 * "unable to get local issuer certificate", "certificate has expired", ...), TLS_FAIL_OTHER
 * for anything else (not TLS, the peer closed, a protocol error). */
enum { TLS_FAIL_OTHER = 0, TLS_FAIL_CERT = 1, TLS_FAIL_NAME = 2 };
int tls_handshake_error(const struct tls_conn *t, char *buf, size_t cap);
/* Refuses the connection on <fd> before any handshake, at accept, without reading it: writes
 * one fatal alert record (access_denied) in the clear, as TLS allows before keys exist, so a
 * TLS client reads a well-formed refusal instead of plaintext it cannot parse; no OpenSSL
 * state, no allocation, one send(). The caller closes <fd>. */
void tls_refuse(int fd);

/* What the last finished handshake used, for the log: "TLSv1.3 TLS_AES_256_GCM_SHA384". */
const char *tls_describe(const struct tls_conn *t, char *buf, size_t cap);

#endif
