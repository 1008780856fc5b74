/*
 * load/url: the load tool's addresses. rostrum-load is a loopback-only benchmark: a URL whose
 * host is not in 127.0.0.0/8 or ::1 is refused here, before any socket exists.
 */
#ifndef ROSTRUM_LOAD_URL_H
#define ROSTRUM_LOAD_URL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define LOAD_URL_MAX_PATH 512

struct load_url {
    struct sockaddr_storage addr; /* the server: 127.x.y.z or ::1, with the port */
    socklen_t addrlen;
    int family;    /* AF_INET or AF_INET6 */
    char host[64]; /* as written, for the Host header ("127.0.0.1", "[::1]") */
    uint16_t port;
    char path[LOAD_URL_MAX_PATH]; /* "/live"; at least "/" */
    int tls;                      /* 1 for https:// */
    char tls_name[64];            /* the name its certificate must carry: "localhost", or the
                                     address ("127.0.0.1", "::1") without brackets */
};

/* Parses <s>, "http://HOST[:PORT][/PATH]" or "https://..." (tls set) where HOST is an IPv4
 * literal in 127.0.0.0/8, "localhost" (127.0.0.1) or "[::1]"; PORT defaults to 80 (443). The
 * path must be printable ASCII without spaces. Returns 0, or -1 with a reason in <err>
 * (<errlen> bytes). */
int load_url_parse(const char *s, struct load_url *u, char *err, size_t errlen);

/* Parses <s>, "A.B.C.D-A.B.C.E" or a single "A.B.C.D", all in 127.0.0.0/8, into a first
 * address and a count (host order). Returns 0, or -1 with a reason in <err>. */
int load_ip_range_parse(const char *s, uint32_t *first, uint32_t *count, char *err, size_t errlen);

#endif
