/*
 * net: socket helpers. Every socket is non-blocking and close-on-exec.
 */
#ifndef ROSTRUM_NET_NET_H
#define ROSTRUM_NET_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Binds and listens on <host>:<port> (IPv4 or IPv6 literal, or a name resolved once).
 * <reuseport> sets SO_REUSEPORT so several processes may share the port. A <backlog> < 0 binds
 * without listening: the port is held, no connection is queued. Returns the fd or
 * -errno; on failure a reason is written to <err>. */
int net_listen(const char *host, uint16_t port, int backlog, int reuseport, char *err,
               size_t errlen);

/* The local port a socket is bound to, or 0. */
uint16_t net_local_port(int fd);

/* Formats a peer address as "1.2.3.4:5678" or "[::1]:5678". */
void net_addr_str(const struct sockaddr_storage *ss, char *out, size_t cap);

/* A unix socket message with descriptors (SCM_RIGHTS, at most NET_MAX_FDS): <iov>/<niov>
 * the bytes, <fds>/<nfds> the descriptors (still ours after the call). Returns what sendmsg
 * returns (-1 and errno: EAGAIN when it would block). */
#define NET_MAX_FDS 253
struct iovec;
ssize_t net_send_fds(int sock, const struct iovec *iov, int niov, const int *fds, int nfds);
/* Receives one such message without blocking into <buf>/<cap>; the descriptors it carried
 * (close-on-exec) go to <fds>, at most <max> (any more are closed), their count to <*nfds>.
 * <*cut> is 1 if the message or its descriptors did not fit. Returns what recvmsg returns. */
ssize_t net_recv_fds(int sock, void *buf, size_t cap, int *fds, int max, int *nfds, int *cut);

/* Sets O_NONBLOCK. Returns 0 or -errno. */
int net_set_nonblock(int fd);

/* What the socket <fd> can tell without being read or written, for idle and stuck checks
 * that must not mistake a pause of this process for a silent peer: bytes waiting to be read
 * (FIONREAD; 0 if none or on error), and 1 if a write would not block now. */
int net_readable_bytes(int fd);
int net_writable_now(int fd);

#endif
