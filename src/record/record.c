/* record: see record.h. */
#include "record/record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "util/buf.h"
#include "util/log.h"

void recording_init(struct recording *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int recording_open(struct recording *r, const char *dir, const char *id,
                   const unsigned char *hdr, size_t hlen, int sync_ms, int64_t now_ms)
{
    recording_init(r);
    if (!record_id_valid(id, strlen(id)))
        return -EINVAL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -errno;
    if ((size_t)snprintf(r->path, sizeof(r->path), "%s/%s.ogg", dir, id) >= sizeof(r->path) ||
        (size_t)snprintf(r->live, sizeof(r->live), "%s/%s.live", dir, id) >= sizeof(r->live))
        return -ENAMETOOLONG;
    snprintf(r->id, sizeof(r->id), "%s", id);
    /* the marker first: a recording that exists without a marker is whole */
    int m = open(r->live, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (m < 0)
        return -errno;
    close(m);
    int fd = open(r->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = -errno;
        unlink(r->live);
        return e;
    }
    int rc = write_all(fd, hdr, hlen);
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    if (rc != 0) {
        close(fd);
        unlink(r->path);
        unlink(r->live);
        return rc;
    }
    r->fd = fd;
    r->size = hlen;
    r->sync_ms = sync_ms;
    r->last_sync_ms = now_ms;
    r->syncs = 1;
    return 0;
}

int recording_resume(struct recording *r, const char *dir, const char *id, int sync_ms,
                     int64_t now_ms)
{
    recording_init(r);
    if (!record_id_valid(id, strlen(id)))
        return -EINVAL;
    if ((size_t)snprintf(r->path, sizeof(r->path), "%s/%s.ogg", dir, id) >= sizeof(r->path) ||
        (size_t)snprintf(r->live, sizeof(r->live), "%s/%s.live", dir, id) >= sizeof(r->live))
        return -ENAMETOOLONG;
    long long kept = recording_repair(r->path, NULL);
    if (kept < 0)
        return (int)kept;
    int fd = open(r->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->fd = fd;
    r->size = (uint64_t)kept;
    r->sync_ms = sync_ms;
    r->last_sync_ms = now_ms;
    return 0;
}

/* Stops a recording after an error: back to its last whole page, closed. The marker goes
 * too, as what is left is whole. */
static void recording_stop(struct recording *r)
{
    if (ftruncate(r->fd, (off_t)r->size) != 0)
        log_warn("record", "%s: cannot cut back to %llu bytes: %s", r->path,
                 (unsigned long long)r->size, strerror(errno));
    (void)fdatasync(r->fd);
    close(r->fd);
    r->fd = -1;
    unlink(r->live);
}

int recording_page(struct recording *r, const unsigned char *page, size_t len, int64_t now_ms)
{
    if (r->fd < 0)
        return 0;
    int rc = write_all(r->fd, page, len);
    if (rc == 0 && now_ms - r->last_sync_ms >= r->sync_ms) {
        if (fdatasync(r->fd) != 0)
            rc = -errno;
        r->last_sync_ms = now_ms;
        r->syncs++;
    }
    if (rc != 0) {
        recording_stop(r);
        return rc;
    }
    r->size += len;
    return 0;
}

void recording_close(struct recording *r)
{
    if (r->fd < 0)
        return;
    if (fdatasync(r->fd) == 0)
        r->syncs++;
    close(r->fd);
    r->fd = -1;
    unlink(r->live);
}

/* ---- pages ------------------------------------------------------------------------------ */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i << 24;
        for (int k = 0; k < 8; k++)
            c = (c & 0x80000000u) ? (c << 1) ^ 0x04c11db7u : c << 1;
        crc_table[i] = c;
    }
}

uint32_t record_crc(uint32_t crc, const unsigned char *p, size_t len)
{
    if (crc_table[1] == 0)
        crc_init();
    for (size_t i = 0; i < len; i++)
        crc = (crc << 8) ^ crc_table[((crc >> 24) ^ p[i]) & 0xff];
    return crc;
}

/* The header of the page at <p>: its total length, -2 short, -1 invalid. */
static long page_len(const unsigned char *p, size_t len)
{
    if (len < 27)
        return -2;
    if (memcmp(p, "OggS", 4) != 0 || p[4] != 0)
        return -1;
    size_t nseg = p[26];
    if (len < 27 + nseg)
        return -2;
    size_t body = 0;
    for (size_t i = 0; i < nseg; i++)
        body += p[27 + i];
    return (long)(27 + nseg + body);
}

static uint64_t page_granule(const unsigned char *p)
{
    uint64_t g = 0;
    for (int i = 7; i >= 0; i--)
        g = (g << 8) | p[6 + i];
    return g;
}

long record_page_check(const unsigned char *p, size_t len, uint64_t *granule)
{
    long n = page_len(p, len);
    if (n < 0)
        return n;
    if ((size_t)n > len)
        return -2;
    uint32_t want = (uint32_t)p[22] | (uint32_t)p[23] << 8 | (uint32_t)p[24] << 16 |
                    (uint32_t)p[25] << 24;
    static const unsigned char zero[4];
    uint32_t c = record_crc(0, p, 22);
    c = record_crc(c, zero, 4);
    c = record_crc(c, p + 26, (size_t)n - 26);
    if (c != want)
        return -1;
    if (granule)
        *granule = page_granule(p);
    return n;
}

long long recording_repair(const char *path, uint64_t *cut)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    uint64_t size = (uint64_t)st.st_size, good = 0;
    static unsigned char page[27 + 255 + 255 * 255];
    while (good < size) {
        ssize_t n = pread(fd, page, sizeof(page), (off_t)good);
        if (n <= 0)
            break;
        long l = record_page_check(page, (size_t)n, NULL);
        if (l <= 0)
            break;
        good += (uint64_t)l;
    }
    int rc = 0;
    if (good < size && (ftruncate(fd, (off_t)good) != 0 || fdatasync(fd) != 0))
        rc = -errno;
    close(fd);
    if (cut)
        *cut = size - good;
    return rc ? rc : (long long)good;
}

int recording_repair_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".live") != 0)
            continue;
        char path[600], live[600];
        snprintf(live, sizeof(live), "%s/%s", dir, e->d_name);
        snprintf(path, sizeof(path), "%s/%.*s.ogg", dir, (int)(l - 5), e->d_name);
        uint64_t cut = 0;
        long long kept = recording_repair(path, &cut);
        if (kept < 0 && kept != -ENOENT) {
            log_warn("record", "%s: cannot repair: %s (marker kept)", path, strerror((int)-kept));
            continue;
        }
        if (kept >= 0)
            log_info("record", "%s: repaired after an unclean stop: %lld bytes of whole pages "
                     "kept, %llu cut", path, kept, (unsigned long long)cut);
        unlink(live);
        n++;
    }
    closedir(d);
    return n;
}

int record_id_valid(const char *id, size_t len)
{
    if (len == 0 || len >= RECORD_ID_MAX || id[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* ---- replay ----------------------------------------------------------------------------- */

/* Digits at s[*i..]: at most 18, at least one. Returns 0 or -1. */
static int range_num(const char *s, size_t len, size_t *i, uint64_t *v)
{
    size_t start = *i;
    uint64_t x = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        if (*i - start >= 18)
            return -1;
        x = x * 10 + (uint64_t)(s[*i] - '0');
        (*i)++;
    }
    if (*i == start)
        return -1;
    *v = x;
    return 0;
}

long record_range_parse(const char *s, size_t len, uint64_t size, uint64_t *first,
                        uint64_t *last)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (len - i < 6 || strncasecmp(s + i, "bytes=", 6) != 0)
        return -1;
    i += 6;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    uint64_t a = 0, b = 0;
    int suffix = 0, open_end = 0;
    if (i < len && s[i] == '-') {
        i++;
        suffix = 1;
        if (range_num(s, len, &i, &b) != 0)
            return -1;
    } else {
        if (range_num(s, len, &i, &a) != 0 || i >= len || s[i] != '-')
            return -1;
        i++;
        if (i < len && s[i] >= '0' && s[i] <= '9') {
            if (range_num(s, len, &i, &b) != 0)
                return -1;
        } else {
            open_end = 1;
        }
    }
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i != len) /* several ranges, or junk */
        return -1;
    if (suffix) {
        if (b == 0 || size == 0)
            return -3;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return (long)len;
    }
    if (!open_end && b < a)
        return -1; /* RFC 9110 14.1.1: invalid, ignored */
    if (a >= size)
        return -3;
    *first = a;
    *last = open_end || b >= size ? size - 1 : b;
    return (long)len;
}

long record_index(int fd, uint64_t size, uint64_t *off, long max, struct record_info *info)
{
    unsigned char h[27 + 255 + 19];
    uint64_t pos = 0;
    long n = 0;
    struct record_info in = {0};
    while (pos < size && n < max) {
        ssize_t r = pread(fd, h, sizeof(h), (off_t)pos);
        if (r < 0)
            return -errno;
        long l = page_len(h, (size_t)r);
        if (l <= 0 || pos + (uint64_t)l > size)
            break;
        uint64_t g = page_granule(h);
        if (pos == 0 && (size_t)r >= 27u + h[26] + 12 && memcmp(h + 27 + h[26], "OpusHead", 8) == 0)
            in.pre_skip = (uint64_t)h[27 + h[26] + 10] | (uint64_t)h[27 + h[26] + 11] << 8;
        if (g == 0 && pos == in.hdr_end)
            in.hdr_end = pos + (uint64_t)l; /* still in the header pages */
        else if (g != UINT64_MAX) {
            /* the first page whose end reaches second n holds its first sample */
            while (n < max && g > (uint64_t)n * 48000 + in.pre_skip) {
                off[n] = pos;
                n++;
            }
            in.last_granule = g;
        }
        pos += (uint64_t)l;
    }
    in.scanned = pos;
    if (info)
        *info = in;
    return n;
}

int record_list_json(const char *dir, struct buf *b, int max)
{
    buf_puts(b, "[");
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && n < max && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".ogg") != 0 ||
            !record_id_valid(e->d_name, l - 4))
            continue;
        char path[600];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        snprintf(path, sizeof(path), "%s/%.*s.live", dir, (int)(l - 4), e->d_name);
        int growing = access(path, F_OK) == 0;
        /* <mount>-<YYYYmmddTHHMMSSZ>-<serial>: the mount is what comes before the stamp */
        size_t ml = l - 4;
        if (ml > 26 && e->d_name[ml - 9] == '-' && e->d_name[ml - 26] == '-')
            ml -= 26;
        buf_printf(b, "%s{\"id\":\"%.*s\",\"mount\":\"/%.*s\",\"bytes\":%lld,"
                   "\"modified\":%lld,\"growing\":%s,\"url\":\"/recordings/%s\"}",
                   n ? "," : "", (int)(l - 4), e->d_name, (int)ml, e->d_name,
                   (long long)st.st_size, (long long)st.st_mtime, growing ? "true" : "false",
                   e->d_name);
        n++;
    }
    if (d)
        closedir(d);
    buf_puts(b, "]");
    return n;
}

int record_delete(const char *dir, const char *id)
{
    char path[600];
    if (!record_id_valid(id, strlen(id)))
        return -EINVAL;
    snprintf(path, sizeof(path), "%s/%s.live", dir, id);
    if (access(path, F_OK) == 0)
        return -EBUSY;
    snprintf(path, sizeof(path), "%s/%s.ogg", dir, id);
    return unlink(path) == 0 ? 0 : -errno;
}
