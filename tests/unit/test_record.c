/*
 * test_record: recordings (src/record/record.c): the Range parser (a network parser: every
 * case of RFC 9110 section 14 it takes or refuses), page checks, the repair of a torn file,
 * a write error that stops the recording at its last whole page, and the time index.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include "harness.h"
#include "record/record.h"

static long range(const char *s, uint64_t size, uint64_t *a, uint64_t *b)
{
    /* an exact-size heap copy: ASan sees a read past the value */
    size_t n = strlen(s);
    char *p = malloc(n ? n : 1);
    memcpy(p, s, n);
    long r = record_range_parse(p, n, size, a, b);
    free(p);
    return r;
}

TEST(range_forms)
{
    uint64_t a = 0, b = 0;
    ASSERT_EQ_INT(range("bytes=0-99", 1000, &a, &b), 10);
    ASSERT_EQ_UINT(a, 0);
    ASSERT_EQ_UINT(b, 99);
    ASSERT(range("bytes=500-", 1000, &a, &b) > 0 && a == 500 && b == 999);
    ASSERT(range("bytes=-100", 1000, &a, &b) > 0 && a == 900 && b == 999);
    ASSERT(range("bytes=-5000", 1000, &a, &b) > 0 && a == 0 && b == 999); /* whole file */
    ASSERT(range("bytes=990-5000", 1000, &a, &b) > 0 && a == 990 && b == 999); /* clipped */
    ASSERT(range(" BYTES=1-1 ", 1000, &a, &b) > 0 && a == 1 && b == 1);
    ASSERT(range("bytes=999-999", 1000, &a, &b) > 0 && a == 999 && b == 999);
}

TEST(range_unsatisfiable_is_416)
{
    uint64_t a, b;
    ASSERT_EQ_INT(range("bytes=1000-", 1000, &a, &b), -3);
    ASSERT_EQ_INT(range("bytes=1000-2000", 1000, &a, &b), -3);
    ASSERT_EQ_INT(range("bytes=-0", 1000, &a, &b), -3);
    ASSERT_EQ_INT(range("bytes=0-", 0, &a, &b), -3);
    ASSERT_EQ_INT(range("bytes=-10", 0, &a, &b), -3);
}

TEST(range_malformed_is_ignored)
{
    uint64_t a, b;
    const char *bad[] = {"", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=1-2,3-4",
                         "bits=0-1", "bytes=5-4", "bytes=1--2", "bytes=0-1x", "bytes =0-1",
                         "bytes=1234567890123456789-", "bytes=+1-2", "bytes=0x10-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ_INT(range(bad[i], 1000, &a, &b), -1);
    /* 18 digits is the bound: taken, and out of a small file's range */
    ASSERT_EQ_INT(range("bytes=123456789012345678-", 1000, &a, &b), -3);
}

/* A page: "OggS", granule <g>, <n> bytes of body, with its CRC. */
static size_t make_page(unsigned char *p, uint64_t g, uint32_t seq, size_t n)
{
    memset(p, 0, 27);
    memcpy(p, "OggS", 4);
    for (int i = 0; i < 8; i++)
        p[6 + i] = (unsigned char)(g >> (8 * i));
    p[14] = 7;
    p[18] = (unsigned char)seq;
    p[26] = 1;
    p[27] = (unsigned char)n;
    for (size_t i = 0; i < n; i++)
        p[28 + i] = (unsigned char)(i * 7 + seq);
    uint32_t c = record_crc(0, p, 28 + n);
    p[22] = (unsigned char)c;
    p[23] = (unsigned char)(c >> 8);
    p[24] = (unsigned char)(c >> 16);
    p[25] = (unsigned char)(c >> 24);
    return 28 + n;
}

TEST(crc_is_ogg_crc)
{
    /* RFC 3533's CRC of "123456789" (CRC-32/MPEG-2 without the final xor and reflection) */
    ASSERT_EQ_UINT(record_crc(0, (const unsigned char *)"123456789", 9), 0x89a1897fu);
}

TEST(page_check)
{
    unsigned char p[400];
    size_t n = make_page(p, 960, 3, 100);
    uint64_t g = 0;
    ASSERT_EQ_INT(record_page_check(p, n, &g), (long)n);
    ASSERT_EQ_UINT(g, 960);
    ASSERT_EQ_INT(record_page_check(p, n - 1, &g), -2);
    ASSERT_EQ_INT(record_page_check(p, 20, &g), -2);
    p[40] ^= 1;
    ASSERT_EQ_INT(record_page_check(p, n, &g), -1);
    p[40] ^= 1;
    p[0] = 'X';
    ASSERT_EQ_INT(record_page_check(p, n, &g), -1);
}

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rostrum-test-record-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
}

TEST(record_repair_cuts_torn_page)
{
    make_dir();
    struct recording r;
    unsigned char hdr[100], p[300];
    size_t hl = make_page(hdr, 0, 0, 19);
    ASSERT_EQ_INT(recording_open(&r, dir, "a-1", hdr, hl, 1000, 0), 0);
    size_t total = hl;
    for (uint32_t i = 1; i <= 5; i++) {
        size_t n = make_page(p, i * 9600, i, 200);
        ASSERT_EQ_INT(recording_page(&r, p, n, i), 0);
        total += n;
    }
    ASSERT_EQ_UINT(r.size, total);
    /* the process dies here (no close): the marker stays; a torn write follows */
    int fd = r.fd;
    ASSERT(write(fd, p, 50) == 50);
    close(fd);
    char path[200];
    snprintf(path, sizeof(path), "%s/a-1.live", dir);
    ASSERT(access(path, F_OK) == 0);
    ASSERT_EQ_INT(recording_repair_dir(dir), 1);
    ASSERT(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/a-1.ogg", dir);
    struct stat st;
    ASSERT(stat(path, &st) == 0);
    ASSERT_EQ_UINT((uint64_t)st.st_size, total);
    ASSERT_EQ_INT(recording_repair_dir(dir), 0); /* nothing left to repair */
    /* the index: second 0 starts at the first audio page, each page 0.2 s */
    fd = open(path, O_RDONLY);
    uint64_t off[10];
    struct record_info in;
    long n = record_index(fd, (uint64_t)st.st_size, off, 10, &in);
    close(fd);
    ASSERT_EQ_INT(n, 1); /* 48000 samples = 1 s: the pages reach 0.2 * 5 = 1 s, second 0 only */
    ASSERT_EQ_UINT(off[0], hl);
    ASSERT_EQ_UINT(in.hdr_end, hl);
    ASSERT_EQ_UINT(in.last_granule, 48000);
    ASSERT_EQ_INT(record_delete(dir, "a-1"), 0);
    ASSERT_EQ_INT(record_delete(dir, "a-1"), -ENOENT);
    ASSERT_EQ_INT(record_delete(dir, "../x"), -EINVAL);
    rmdir(dir);
}

TEST(record_write_error_stops_at_a_whole_page)
{
    make_dir();
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {1000, 1000}; /* this test's own process: a file of at most 1000 bytes */
    ASSERT(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    struct recording r;
    unsigned char hdr[100], p[300];
    size_t hl = make_page(hdr, 0, 0, 19);
    ASSERT_EQ_INT(recording_open(&r, dir, "b-1", hdr, hl, 1000, 0), 0);
    int rc = 0;
    uint64_t good = hl;
    for (uint32_t i = 1; i < 20 && rc == 0; i++) {
        size_t n = make_page(p, i * 960, i, 200);
        rc = recording_page(&r, p, n, i);
        if (rc == 0)
            good += n;
    }
    ASSERT_EQ_INT(rc, -EFBIG);
    ASSERT_EQ_INT(r.fd, -1);
    ASSERT_EQ_INT(recording_page(&r, p, 10, 99), 0); /* stopped: later pages do nothing */
    char path[200];
    snprintf(path, sizeof(path), "%s/b-1.ogg", dir);
    struct stat st;
    ASSERT(stat(path, &st) == 0);
    ASSERT_EQ_UINT((uint64_t)st.st_size, good);
    snprintf(path, sizeof(path), "%s/b-1.live", dir);
    ASSERT(access(path, F_OK) != 0);
    ASSERT_EQ_INT(record_delete(dir, "b-1"), 0);
    rmdir(dir);
}

TEST(record_ids)
{
    ASSERT(record_id_valid("show-20261202T061529Z-a72e3d7b", 30));
    ASSERT(!record_id_valid("", 0));
    ASSERT(!record_id_valid(".hidden", 7));
    ASSERT(!record_id_valid("a/b", 3));
    ASSERT(!record_id_valid("a b", 3));
}

int main(void)
{
    return RUN_TESTS();
}
