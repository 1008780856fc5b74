/*
 * Two-process stress tests of the shared-memory protocol (shm/shm.h), issue 8 item 10.
 *
 * In each test a writer process publishes as fast as it can -- ring pages into a small ring
 * that wraps every few pages, or generations of a double buffer -- while this process reads
 * with the protocol and checks every copy it accepts against the CRC and sequence number the
 * writer put in it. The reader yields the CPU in the middle of its copies now and then, so
 * that even on a loaded 2-core machine the writer laps it often: each test also requires that
 * the re-check did reject copies (the race was exercised, not dodged), and the *_old_read_path
 * tests read as the code before issue 8 did (check, copy, no re-check) and require that the
 * same checker then finds torn copies, which shows the checker can see what the protocol
 * prevents.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "harness.h"
#include "shm/ring.h"
#include "shm/shared.h"

#define RUN_MS 1500
#define HDR 16 /* a page or document starts with: u64 seq/gen, u32 len, u32 crc of the rest */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fills <buf> with a self-checking record of <len> bytes for <id>. */
static void make_record(unsigned char *buf, uint32_t len, uint64_t id)
{
    uint64_t s = id * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = HDR; i < len; i++)
        buf[i] = (unsigned char)xorshift(&s);
    memcpy(buf, &id, 8);
    memcpy(buf + 8, &len, 4);
    uint32_t crc = crc32(buf + HDR, len - HDR);
    memcpy(buf + 12, &crc, 4);
}

/* 1 if <buf> is the whole record <id> of <len> bytes. */
static int record_ok(const unsigned char *buf, uint32_t len, uint64_t id)
{
    uint64_t got_id;
    uint32_t got_len, crc;
    if (len < HDR)
        return 0;
    memcpy(&got_id, buf, 8);
    memcpy(&got_len, buf + 8, 4);
    memcpy(&crc, buf + 12, 4);
    return got_id == id && got_len == len && crc32(buf + HDR, len - HDR) == crc;
}

/* Copies like a slow reader: in two halves, sometimes giving the CPU away in between. */
static void slow_copy(unsigned char *dst, const unsigned char *src, size_t n, uint64_t *rnd)
{
    size_t half = n / 2;
    memcpy(dst, src, half);
    if (xorshift(rnd) % 4 == 0)
        sched_yield();
    memcpy(dst + half, src + half, n - half);
}

/* The writer process: a shared flag tells it to stop. */
struct control {
    int stop;
    uint64_t published;
};

static struct control *control_new(void)
{
    void *p = mmap(NULL, sizeof(struct control), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

static pid_t spawn_writer(struct control *ctl, void (*fn)(void *, struct control *), void *arg)
{
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fn(arg, ctl);
        _exit(0);
    }
    return pid;
}

static void stop_writer(struct control *ctl, pid_t pid)
{
    __atomic_store_n(&ctl->stop, 1, __ATOMIC_RELEASE);
    int st = 0;
    ASSERT(waitpid(pid, &st, 0) == pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- ring pages ------------------------------------------------------------------------ */

#define RING_SLOTS 16
#define RING_ARENA 16384 /* pages up to 4 KiB: the arena wraps every 4 to 60 pages */

static void ring_writer(void *arg, struct control *ctl)
{
    struct ring *r = arg;
    static unsigned char page[RING_ARENA / 4];
    uint64_t rnd = 42;
    int64_t deadline = now_ms() + 20000;
    while (!__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) && now_ms() < deadline) {
        uint32_t len = HDR + (uint32_t)(xorshift(&rnd) % (sizeof(page) - HDR + 1));
        uint64_t seq = r->head;
        make_record(page, len, seq);
        ring_publish(r, page, len, len, seq * 7, 0); /* samples = len, granule = 7 seq */
        __atomic_store_n(&ctl->published, seq + 1, __ATOMIC_RELAXED);
    }
}

enum read_mode { READ_PROTOCOL, READ_OLD };

struct tally {
    uint64_t accepted, rejected_before, rejected_after, torn_accepted, meta_wrong;
};

/* Reads pages for RUN_MS: the oldest (the writer is about to take it), the newest, and any. */
static struct tally ring_reader(struct ring *r, enum read_mode mode)
{
    static unsigned char buf[RING_ARENA / 4];
    struct tally t = {0};
    uint64_t rnd = 7;
    int64_t end = now_ms() + RUN_MS;
    while (now_ms() < end) {
        uint64_t tail = ring_tail(r), head = ring_head(r);
        if (head == tail)
            continue;
        uint64_t pick = xorshift(&rnd) % 3;
        uint64_t seq = pick == 0 ? tail : pick == 1 ? head - 1 : tail + xorshift(&rnd) % (head - tail);
        struct ring_page p;
        if (ring_page_get(r, seq, &p) < 0) {
            t.rejected_before++;
            continue;
        }
        slow_copy(buf, p.data, p.len, &rnd);
        if (mode == READ_PROTOCOL && !ring_page_intact(r, seq)) {
            t.rejected_after++;
            continue;
        }
        t.accepted++;
        if (!record_ok(buf, p.len, seq))
            t.torn_accepted++;
        if (p.samples != p.len || p.granule != seq * 7)
            t.meta_wrong++;
    }
    return t;
}

static void print_tally(const char *what, const struct tally *t, uint64_t published)
{
    fprintf(stderr,
            "    %s: %llu published, %llu accepted, %llu rejected before / %llu after the copy, "
            "%llu torn accepted, %llu slots inconsistent\n",
            what, (unsigned long long)published, (unsigned long long)t->accepted,
            (unsigned long long)t->rejected_before, (unsigned long long)t->rejected_after,
            (unsigned long long)t->torn_accepted, (unsigned long long)t->meta_wrong);
}

TEST(issue8_ring_pages_never_torn_under_a_fast_writer)
{
    crc_init();
    struct ring *r = ring_create(RING_SLOTS, RING_ARENA);
    struct control *ctl = control_new();
    pid_t w = spawn_writer(ctl, ring_writer, r);
    struct tally t = ring_reader(r, READ_PROTOCOL);
    stop_writer(ctl, w);
    print_tally("protocol", &t, ctl->published);
    ASSERT_EQ_UINT(t.torn_accepted, 0);
    ASSERT_EQ_UINT(t.meta_wrong, 0);
    ASSERT(t.accepted > 1000);
    ASSERT(t.rejected_after > 0); /* the writer did lap the reader mid-copy */
    ASSERT(ctl->published > 100 * RING_SLOTS);
}

TEST(issue8_ring_old_read_path_is_caught)
{
    crc_init();
    struct ring *r = ring_create(RING_SLOTS, RING_ARENA);
    struct control *ctl = control_new();
    pid_t w = spawn_writer(ctl, ring_writer, r);
    struct tally t = ring_reader(r, READ_OLD);
    stop_writer(ctl, w);
    print_tally("old path", &t, ctl->published);
    ASSERT(t.torn_accepted > 0); /* without the re-check, torn pages get through */
}

/* The zero-copy path: the kernel copies the page in writev(); the re-check comes after it. */
TEST(issue8_writev_from_ring_rechecked_after_the_write)
{
    crc_init();
    struct ring *r = ring_create(RING_SLOTS, RING_ARENA);
    struct control *ctl = control_new();
    int sv[2];
    ASSERT_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int sz = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    pid_t w = spawn_writer(ctl, ring_writer, r);
    static unsigned char buf[RING_ARENA / 4];
    struct tally t = {0}, old = {0};
    uint64_t rnd = 9;
    int64_t end = now_ms() + RUN_MS;
    while (now_ms() < end) {
        uint64_t seq = ring_tail(r);
        struct ring_page p;
        if (ring_page_get(r, seq, &p) < 0) {
            t.rejected_before++;
            continue;
        }
        /* in two writes with a yield between, as a listener whose socket takes half a page */
        struct iovec iov[1] = {{(void *)p.data, p.len / 2}};
        ASSERT(writev(sv[0], iov, 1) == (ssize_t)(p.len / 2));
        if (xorshift(&rnd) % 2)
            sched_yield();
        iov[0] = (struct iovec){(void *)(p.data + p.len / 2), p.len - p.len / 2};
        ASSERT(writev(sv[0], iov, 1) == (ssize_t)(p.len - p.len / 2));
        int intact = ring_page_intact(r, seq);
        size_t got = 0;
        while (got < p.len) {
            ssize_t n = read(sv[1], buf + got, p.len - got);
            ASSERT(n > 0);
            got += (size_t)n;
        }
        int whole = record_ok(buf, p.len, seq);
        old.accepted++;
        old.torn_accepted += !whole;
        if (!intact) {
            t.rejected_after++;
            continue;
        }
        t.accepted++;
        t.torn_accepted += !whole;
    }
    stop_writer(ctl, w);
    print_tally("writev protocol", &t, ctl->published);
    print_tally("writev old path", &old, ctl->published);
    ASSERT_EQ_UINT(t.torn_accepted, 0);
    ASSERT(t.accepted > 100);
    ASSERT(t.rejected_after > 0);
    ASSERT(old.torn_accepted > 0);
}

/* ---- double buffers (preamble, state document) ----------------------------------------- */

static void preamble_writer(void *arg, struct control *ctl)
{
    struct shared_space *ss = arg;
    static unsigned char rec[SHARED_PREAMBLE_MAX];
    uint64_t rnd = 5;
    int64_t deadline = now_ms() + 20000;
    while (!__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) && now_ms() < deadline) {
        uint32_t gen = ss->preamble_hdr.gen + 1;
        uint32_t len = HDR + (uint32_t)(xorshift(&rnd) % (sizeof(rec) - HDR + 1));
        make_record(rec, len, gen);
        shared_preamble_put(ss, rec, len, len / 2);
        __atomic_store_n(&ctl->published, gen, __ATOMIC_RELAXED);
    }
}

static struct shared_space *space_new(void)
{
    void *p = mmap(NULL, sizeof(struct shared_space), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

TEST(issue8_preamble_never_torn_while_generations_flip)
{
    crc_init();
    struct shared_space *ss = space_new();
    struct control *ctl = control_new();
    pid_t w = spawn_writer(ctl, preamble_writer, ss);
    static unsigned char buf[SHARED_PREAMBLE_MAX];
    struct tally copy = {0}, listener = {0};
    uint64_t rnd = 3;
    int64_t end = now_ms() + RUN_MS;
    while (now_ms() < end) {
        /* a newcomer's copy of the current generation (as /state/<space>.json is read) */
        uint32_t aux = 0;
        int n = shared_dbuf_copy(&ss->preamble_hdr, &ss->preamble[0][0], SHARED_PREAMBLE_MAX,
                                 buf, &aux);
        if (n < 0) {
            copy.rejected_after++;
        } else if (n > 0) {
            copy.accepted++;
            uint64_t id;
            memcpy(&id, buf, 8);
            if (!record_ok(buf, (uint32_t)n, id) || aux != (uint32_t)n / 2)
                copy.torn_accepted++;
        }
        /* a listener sending one generation in pieces across several writes */
        uint32_t gen = shared_preamble_gen(ss);
        struct shared_view v;
        if (gen == 0 || shared_preamble_view(ss, gen, &v) < 0) {
            listener.rejected_before++;
            continue;
        }
        size_t off = 0, piece = v.len / 3 + 1;
        int ok = 1;
        while (off < v.len && ok) {
            size_t k = v.len - off < piece ? v.len - off : piece;
            memcpy(buf + off, v.data + off, k);
            if (xorshift(&rnd) % 4 == 0)
                sched_yield();
            ok = shared_preamble_intact(ss, gen);
            off += k;
        }
        if (!ok) {
            listener.rejected_after++;
            continue;
        }
        listener.accepted++;
        if (!record_ok(buf, v.len, gen) || v.aux != v.len / 2)
            listener.torn_accepted++;
    }
    stop_writer(ctl, w);
    print_tally("preamble copy", &copy, ctl->published);
    print_tally("preamble in pieces", &listener, ctl->published);
    ASSERT_EQ_UINT(copy.torn_accepted, 0);
    ASSERT_EQ_UINT(listener.torn_accepted, 0);
    ASSERT(copy.accepted > 100 && listener.accepted > 100);
    ASSERT(listener.rejected_after > 0);
}

TEST(issue8_preamble_old_read_path_is_caught)
{
    /* the read before issue 8: take preamble_gen, use half gen & 1, never look again */
    crc_init();
    struct shared_space *ss = space_new();
    struct control *ctl = control_new();
    pid_t w = spawn_writer(ctl, preamble_writer, ss);
    static unsigned char buf[SHARED_PREAMBLE_MAX];
    struct tally t = {0};
    uint64_t rnd = 11;
    int64_t end = now_ms() + RUN_MS;
    while (now_ms() < end) {
        uint32_t gen = __atomic_load_n(&ss->preamble_hdr.gen, __ATOMIC_ACQUIRE);
        if (gen == 0)
            continue;
        uint32_t len = ss->preamble_hdr.len[gen & 1];
        slow_copy(buf, ss->preamble[gen & 1], len, &rnd);
        t.accepted++;
        if (!record_ok(buf, len, gen))
            t.torn_accepted++;
    }
    stop_writer(ctl, w);
    print_tally("preamble old path", &t, ctl->published);
    ASSERT(t.torn_accepted > 0);
}

/* ---- the configuration the workers take on a reload (issue 9) --------------------------- */

#define CFG_LEN 40000 /* about sizeof(struct config) */

static void config_writer(void *arg, struct control *ctl)
{
    struct shared *sh = arg;
    static unsigned char cfg[CFG_LEN];
    uint64_t n = 0;
    int64_t deadline = now_ms() + 20000;
    while (!__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) && now_ms() < deadline) {
        make_record(cfg, CFG_LEN, ++n);
        shared_config_put(sh, cfg, CFG_LEN);
        __atomic_store_n(&ctl->published, n, __ATOMIC_RELAXED);
    }
}

TEST(issue9_config_copy_never_torn_while_reloads_race)
{
    crc_init();
    struct shared *sh = shared_create(1, NULL);
    struct control *ctl = control_new();
    pid_t w = spawn_writer(ctl, config_writer, sh);
    static unsigned char out[CFG_LEN];
    struct tally t = {0};
    uint32_t seen = 0;
    int64_t end = now_ms() + RUN_MS;
    while (now_ms() < end) {
        uint32_t g = shared_config_get(sh, seen, out, CFG_LEN);
        if (g == seen)
            continue;
        if (g == 0) {
            t.rejected_after++;
            continue;
        }
        t.accepted++;
        seen = g;
        uint64_t id;
        memcpy(&id, out, 8);
        if (!record_ok(out, CFG_LEN, id))
            t.torn_accepted++;
    }
    stop_writer(ctl, w);
    print_tally("config", &t, ctl->published);
    /* a length that is not the published one is refused, not copied short */
    ASSERT_EQ_UINT(shared_config_get(sh, 0, out, CFG_LEN - 1), 0);
    ASSERT_EQ_UINT(t.torn_accepted, 0);
    ASSERT(t.accepted > 10 && t.rejected_after > 0);
    shared_destroy(sh);
}

int main(void)
{
    return RUN_TESTS();
}

/* Issue 10: the relays a worker counts (shared_tree_write/read), and the count over workers
 * (shared_tree_collect): one row per relay id, the highest generation, then the latest; rows of
 * another slot, of an ended space or past the age limit left out; a table being written is
 * refused, not read torn. */
TEST(issue10_tree_rows_one_per_relay_over_workers)
{
    struct shared *sh = shared_create(2, NULL);
    uint32_t gen = sh->spaces[3].gen;
    struct shared_tree_row a[4] = {
        {.id = 7, .gen = 4, .own = 100, .seen_ms = 1000, .slot = 3, .slot_gen = gen},
        {.id = 8, .gen = 1, .own = 10, .seen_ms = 1000, .slot = 3, .slot_gen = gen},
        {.id = 9, .gen = 1, .own = 5, .seen_ms = 1000, .slot = 2, .slot_gen = sh->spaces[2].gen},
        {.id = 10, .gen = 1, .own = 3, .seen_ms = 1000, .slot = 3, .slot_gen = gen + 1}};
    struct shared_tree_row b[3] = {
        /* relay 7 moved to worker 1's feed: a newer generation, an older report */
        {.id = 7, .gen = 5, .own = 101, .seen_ms = 900, .slot = 3, .slot_gen = gen},
        {.id = 8, .gen = 1, .own = 11, .seen_ms = 1200, .slot = 3, .slot_gen = gen},
        {.id = 11, .gen = 1, .own = 1, .seen_ms = -5000, .slot = 3, .slot_gen = gen}};
    shared_tree_write(&sh->workers[0], a, 4);
    shared_tree_write(&sh->workers[1], b, 3);
    static struct shared_tree_row out[SHARED_MAX_WORKERS * SHARED_WORKER_TREE_ROWS];
    ASSERT_EQ_INT(shared_tree_read(&sh->workers[0], out), 4);
    int n = shared_tree_collect(sh, 3, 1500, 3000, out);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_UINT(out[0].id, 7);
    ASSERT_EQ_UINT(out[0].gen, 5);
    ASSERT_EQ_UINT(out[0].own, 101);
    ASSERT_EQ_UINT(out[1].id, 8);
    ASSERT_EQ_UINT(out[1].own, 11); /* the same generation: the latest report */
    /* past the age limit everything goes */
    ASSERT_EQ_INT(shared_tree_collect(sh, 3, 5000, 3000, out), 0);
    /* a writer caught in the middle (odd sequence): refused after the retries */
    sh->workers[1].tree.seq |= 1;
    ASSERT_EQ_INT(shared_tree_read(&sh->workers[1], out), -EAGAIN);
    ASSERT_EQ_INT(shared_tree_collect(sh, 3, 1500, 3000, out), 2); /* worker 0's 7 and 8 */
    ASSERT_EQ_UINT(out[0].gen, 4);
    shared_destroy(sh);
}
