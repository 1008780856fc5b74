/*
 * load/url: see url.h.
 */
#include "load/url.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int load_url_parse(const char *s, struct load_url *u, char *err, size_t errlen)
{
    *u = (struct load_url){0};
    const char *h;
    if (strncmp(s, "http://", 7) == 0) {
        h = s + 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        h = s + 8;
        u->tls = 1;
    } else {
        snprintf(err, errlen, "URL must start with http:// or https://");
        return -1;
    }
    const char *hend, *rest;
    char host[64];
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend) {
            snprintf(err, errlen, "unterminated [ in URL host");
            return -1;
        }
        rest = hend + 1;
        h++;
    } else {
        hend = h + strcspn(h, ":/");
        rest = hend;
    }
    size_t hl = (size_t)(hend - h);
    if (hl == 0 || hl >= sizeof(host)) {
        snprintf(err, errlen, "bad URL host");
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';

    long port = u->tls ? 443 : 80;
    if (*rest == ':') {
        char *e;
        port = strtol(rest + 1, &e, 10);
        if (e == rest + 1 || port < 1 || port > 65535 || (*e != '/' && *e != '\0')) {
            snprintf(err, errlen, "bad URL port");
            return -1;
        }
        rest = e;
    } else if (*rest != '/' && *rest != '\0') {
        snprintf(err, errlen, "bad URL after host");
        return -1;
    }
    const char *path = *rest ? rest : "/";
    size_t pl = strlen(path);
    if (pl >= sizeof(u->path)) {
        snprintf(err, errlen, "URL path too long");
        return -1;
    }
    for (size_t i = 0; i < pl; i++) {
        if (path[i] <= ' ' || path[i] >= 0x7f) {
            snprintf(err, errlen, "URL path has a space or a non-printable byte");
            return -1;
        }
    }
    memcpy(u->path, path, pl + 1);
    u->port = (uint16_t)port;

    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        inet_pton(AF_INET, "127.0.0.1", &a4);
    if (strcmp(host, "localhost") == 0 || inet_pton(AF_INET, host, &a4) == 1) {
        if ((ntohl(a4.s_addr) >> 24) != 127) {
            snprintf(err, errlen,
                     "refusing %s: rostrum-load only connects to loopback (127.0.0.0/8, ::1)",
                     host);
            return -1;
        }
        struct sockaddr_in *sin = (struct sockaddr_in *)&u->addr;
        sin->sin_family = AF_INET;
        sin->sin_addr = a4;
        sin->sin_port = htons(u->port);
        u->addrlen = sizeof(*sin);
        u->family = AF_INET;
        inet_ntop(AF_INET, &a4, u->host, sizeof(u->host));
        snprintf(u->tls_name, sizeof(u->tls_name), "%s",
                 strcmp(host, "localhost") == 0 ? "localhost" : u->host);
    } else if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6)) {
            snprintf(err, errlen,
                     "refusing %s: rostrum-load only connects to loopback (127.0.0.0/8, ::1)",
                     host);
            return -1;
        }
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&u->addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = a6;
        sin6->sin6_port = htons(u->port);
        u->addrlen = sizeof(*sin6);
        u->family = AF_INET6;
        snprintf(u->host, sizeof(u->host), "[::1]");
        snprintf(u->tls_name, sizeof(u->tls_name), "::1");
    } else {
        snprintf(err, errlen,
                 "refusing host '%s': give a loopback IP literal (127.0.0.0/8 or [::1]); "
                 "rostrum-load is a loopback-only benchmark tool",
                 host);
        return -1;
    }
    return 0;
}

static int parse_lo4(const char *s, uint32_t *out, char *err, size_t errlen)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) {
        snprintf(err, errlen, "bad IPv4 address '%s'", s);
        return -1;
    }
    *out = ntohl(a.s_addr);
    if ((*out >> 24) != 127) {
        snprintf(err, errlen, "source address %s is not in 127.0.0.0/8", s);
        return -1;
    }
    return 0;
}

int load_ip_range_parse(const char *s, uint32_t *first, uint32_t *count, char *err, size_t errlen)
{
    char a[32], b[32];
    const char *dash = strchr(s, '-');
    size_t al = dash ? (size_t)(dash - s) : strlen(s);
    if (al >= sizeof(a) || (dash && strlen(dash + 1) >= sizeof(b))) {
        snprintf(err, errlen, "bad address range '%s'", s);
        return -1;
    }
    memcpy(a, s, al);
    a[al] = '\0';
    snprintf(b, sizeof(b), "%s", dash ? dash + 1 : a);
    uint32_t lo, hi;
    if (parse_lo4(a, &lo, err, errlen) < 0 || parse_lo4(b, &hi, err, errlen) < 0)
        return -1;
    if (hi < lo) {
        snprintf(err, errlen, "address range '%s' runs backwards", s);
        return -1;
    }
    *first = lo;
    *count = hi - lo + 1;
    return 0;
}
