/* Unit tests for the page ring: wrap-around of slots and arena, laggard detection, bursts. */
#include <errno.h>

#include "harness.h"
#include "shm/ring.h"

static void fill(unsigned char *buf, uint32_t len, uint64_t seq)
{
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(seq * 31 + i);
}

static int check(const struct ring *r, uint64_t seq, uint32_t len)
{
    unsigned char want[4096];
    struct ring_page p;
    if (ring_page_get(r, seq, &p) < 0 || p.len != len)
        return 0;
    fill(want, len, seq);
    return memcmp(p.data, want, len) == 0 && ring_page_intact(r, seq);
}

TEST(publish_and_read)
{
    struct ring *r = ring_create(8, 1 << 16);
    unsigned char page[1000];
    for (uint64_t i = 0; i < 5; i++) {
        fill(page, sizeof(page), i);
        ASSERT_EQ_UINT(ring_publish(r, page, sizeof(page), 960, (i + 1) * 960, 0), i);
    }
    for (uint64_t i = 0; i < 5; i++)
        ASSERT(check(r, i, sizeof(page)));
    struct ring_page p;
    ASSERT_EQ_INT(ring_page_get(r, 5, &p), -EAGAIN);
    ASSERT_EQ_INT(ring_page_get(r, 4, &p), 0);
    ASSERT_EQ_UINT(p.granule, 5 * 960);
    ring_destroy(r);
}

TEST(slot_wraparound_evicts_oldest)
{
    struct ring *r = ring_create(8, 1 << 20);
    unsigned char page[100];
    for (uint64_t i = 0; i < 100; i++) {
        fill(page, sizeof(page), i);
        ring_publish(r, page, sizeof(page), 960, 0, 0);
        /* never more pages than slots, and every page still held is intact */
        ASSERT(r->head - r->tail <= 8);
        for (uint64_t s = r->tail; s < r->head; s++)
            ASSERT(check(r, s, sizeof(page)));
    }
    ASSERT_EQ_UINT(r->tail, 92);
    struct ring_page p;
    ASSERT_EQ_INT(ring_page_get(r, 91, &p), -ENOENT);
    ring_destroy(r);
}

TEST(arena_wraparound_never_splits_a_page)
{
    /* odd page sizes so pages land across the arena's end and must skip to its start */
    struct ring *r = ring_create(1024, 16384);
    unsigned char page[4096];
    for (uint64_t i = 0; i < 500; i++) {
        uint32_t len = 1 + (uint32_t)((i * 977) % 4096);
        fill(page, len, i);
        uint64_t seq = ring_publish(r, page, len, 960, 0, 0);
        ASSERT(check(r, seq, len));
        uint64_t bytes = 0;
        for (uint64_t s = r->tail; s < r->head; s++) {
            struct ring_page p;
            ASSERT_EQ_INT(ring_page_get(r, s, &p), 0);
            ASSERT(p.pos % r->data_size + p.len <= r->data_size);
            bytes += p.len;
        }
        ASSERT(bytes <= r->data_size);
    }
    ring_destroy(r);
}

TEST(slow_reader_sees_its_page_evicted)
{
    /* a reader holding a cursor at seq 0 finds it gone once the writer has lapped it,
     * which is how a listener learns it lags and must jump to the live edge */
    struct ring *r = ring_create(16, 1 << 16);
    unsigned char page[512];
    uint64_t cursor = 0;
    for (uint64_t i = 0; i < 16; i++) {
        fill(page, sizeof(page), i);
        ring_publish(r, page, sizeof(page), 960, 0, 0);
    }
    ASSERT(check(r, cursor, sizeof(page)));
    fill(page, sizeof(page), 16);
    ring_publish(r, page, sizeof(page), 960, 0, 0);
    struct ring_page p;
    ASSERT_EQ_INT(ring_page_get(r, cursor, &p), -ENOENT);
    ASSERT(cursor < r->tail);
    ASSERT(!ring_page_intact(r, cursor));
    ring_destroy(r);
}

TEST(burst_starts_at_a_page_boundary)
{
    struct ring *r = ring_create(64, 1 << 16);
    unsigned char page[100] = {0};
    ASSERT_EQ_UINT(ring_burst_start(r, 48000), 0); /* empty ring: start at head */
    for (int i = 0; i < 20; i++)
        ring_publish(r, page, sizeof(page), 9600, 0, 0); /* 200 ms pages */
    ASSERT_EQ_UINT(ring_burst_start(r, 48000), 15);    /* 5 pages = 1 s */
    ASSERT_EQ_UINT(ring_burst_start(r, 48001), 14);    /* never less than asked */
    ASSERT_EQ_UINT(ring_burst_start(r, 0), 20);
    ASSERT_EQ_UINT(ring_burst_start(r, 10 * 48000), 0); /* capped by what the ring holds */
    ring_destroy(r);
}

TEST(reset_keeps_sequence_going)
{
    struct ring *r = ring_create(8, 1 << 16);
    unsigned char page[10] = {0};
    ring_publish(r, page, sizeof(page), 960, 0, 0);
    ring_publish(r, page, sizeof(page), 960, 0, 0);
    ring_reset(r);
    struct ring_page p;
    ASSERT_EQ_INT(ring_page_get(r, 1, &p), -ENOENT);
    ASSERT_EQ_UINT(ring_publish(r, page, sizeof(page), 960, 0, 0), 2);
    ring_destroy(r);
}

/* Issue 10: a relay's ring carries its upstream's sequence numbers. */
TEST(relay_ring_starts_at_and_continues_a_given_seq_10)
{
    struct ring *r = ring_create(8, 1 << 16);
    unsigned char page[500];
    ring_restart_at(r, 1000);
    ASSERT_EQ_UINT(ring_head(r), 1000);
    ASSERT_EQ_UINT(ring_tail(r), 1000);
    fill(page, sizeof(page), 999);
    ASSERT_EQ_INT(ring_publish_at(r, 999, page, sizeof(page), 960, 0, 0), -EINVAL);
    ASSERT_EQ_INT(ring_publish_at(r, 1001, page, sizeof(page), 960, 0, 0), -EINVAL);
    for (uint64_t s = 1000; s < 1012; s++) {
        fill(page, sizeof(page), s);
        ASSERT_EQ_INT(ring_publish_at(r, s, page, sizeof(page), 960, 0, 0), 0);
    }
    for (uint64_t s = ring_tail(r); s < 1012; s++)
        ASSERT(check(r, s, sizeof(page)));
    ASSERT_EQ_UINT(ring_tail(r), 1004); /* 8 slots */
    /* a new stream with lower numbers: nothing of the old one is readable under them */
    ring_restart_at(r, 3);
    struct ring_page p;
    ASSERT_EQ_INT(ring_page_get(r, 3, &p), -EAGAIN);
    ASSERT_EQ_INT(ring_page_get(r, 1005, &p), -EAGAIN);
    fill(page, sizeof(page), 3);
    ASSERT_EQ_INT(ring_publish_at(r, 3, page, sizeof(page), 960, 0, 0), 0);
    ASSERT(check(r, 3, sizeof(page)));
    ASSERT_EQ_INT(ring_page_get(r, 2, &p), -ENOENT);
    ring_destroy(r);
}

int main(void)
{
    return RUN_TESTS();
}
