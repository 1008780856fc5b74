#include "shm/ring.h"
#include "util/check.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static inline struct ring_slot *ring_slots(const struct ring *r)
{
    return (struct ring_slot *)(void *)((char *)(uintptr_t)r + sizeof(struct ring));
}

static inline unsigned char *ring_arena(const struct ring *r)
{
    return (unsigned char *)(ring_slots(r) + r->nslots);
}

static uint32_t pow2(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

size_t ring_bytes(uint32_t nslots, uint64_t data_size)
{
    return sizeof(struct ring) + (size_t)pow2(nslots) * sizeof(struct ring_slot) + data_size;
}

struct ring *ring_init(void *mem, uint32_t nslots, uint64_t data_size)
{
    struct ring *r = mem;
    *r = (struct ring){.nslots = pow2(nslots), .data_size = data_size};
    r->map_size = ring_bytes(nslots, data_size);
    return r;
}

struct ring *ring_create(uint32_t nslots, uint64_t data_size)
{
    size_t size = ring_bytes(nslots, data_size);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    BUG_ON(p == MAP_FAILED);
    return ring_init(p, nslots, data_size);
}

void ring_destroy(struct ring *r)
{
    if (r)
        munmap(r, r->map_size);
}

void ring_reset(struct ring *r)
{
    shm_publish64(&r->tail, r->head);
}

void ring_restart_at(struct ring *r, uint64_t seq)
{
    /* Everything leaves first (tail = head), then head moves, then tail follows it: a reader
     * never sees tail <= a seq whose slot belongs to the old numbering. */
    shm_publish64(&r->tail, r->head > seq ? r->head : seq);
    shm_publish64(&r->head, seq);
    shm_publish64(&r->tail, seq);
}

int ring_publish_at(struct ring *r, uint64_t seq, const void *page, uint32_t len,
                    uint32_t samples, uint64_t granule, int64_t time_ms)
{
    if (seq != r->head || len == 0 || len > r->data_size / 4)
        return -EINVAL;
    ring_publish(r, page, len, samples, granule, time_ms);
    return 0;
}

uint64_t ring_publish(struct ring *r, const void *page, uint32_t len, uint32_t samples,
                      uint64_t granule, int64_t time_ms)
{
    /* Only this process writes the ring, so its own plain reads of head, tail and write_pos
     * race with nothing; every store a reader may see follows shm.h. */
    assert(len > 0 && len <= r->data_size / 4);
    uint64_t pos = r->write_pos;
    uint64_t off = pos % r->data_size;
    if (off + len > r->data_size)
        pos += r->data_size - off; /* skip the arena's end: pages never wrap */
    struct ring_slot *slots = ring_slots(r);
    uint64_t head = r->head, tail = r->tail;
    /* Evict pages whose bytes the new page overwrites, and the page whose slot it takes. */
    while (tail < head) {
        struct ring_slot *old = &slots[tail & (r->nslots - 1)];
        if (old->pos + r->data_size >= pos + len && head - tail < r->nslots)
            break;
        tail++;
    }
    if (tail != r->tail)
        shm_publish64(&r->tail, tail); /* a page leaves the ring before its bytes change */
    shm_before_overwrite();
    memcpy(ring_arena(r) + pos % r->data_size, page, len);
    struct ring_slot *s = &slots[head & (r->nslots - 1)];
    SHM_SET(s->seq, RING_SEQ_BUSY);
    shm_before_overwrite();
    SHM_SET(s->pos, pos);
    SHM_SET(s->len, len);
    SHM_SET(s->samples, samples);
    SHM_SET(s->granule, granule);
    SHM_SET(s->time_ms, time_ms);
    shm_publish64(&s->seq, head);
    shm_publish64(&r->write_pos, pos + len);
    shm_publish64(&r->head, head + 1); /* bytes and slot are seen before the new head */
    return head;
}

int ring_page_get(const struct ring *r, uint64_t seq, struct ring_page *out)
{
    if (seq >= ring_head(r))
        return -EAGAIN;
    const struct ring_slot *s = &ring_slots(r)[seq & (r->nslots - 1)];
    if (shm_load_acquire64(&s->seq) != seq)
        return -ENOENT;
    struct ring_page p = {.seq = seq,
                          .pos = SHM_GET(s->pos),
                          .len = SHM_GET(s->len),
                          .samples = SHM_GET(s->samples),
                          .granule = SHM_GET(s->granule),
                          .time_ms = SHM_GET(s->time_ms)};
    if (shm_reload64(&s->seq) != seq || !ring_page_intact(r, seq))
        return -ENOENT;
    /* a whole slot of one page: its position and length are the writer's, so in bounds */
    p.data = ring_arena(r) + p.pos % r->data_size;
    *out = p;
    return 0;
}

uint64_t ring_burst_start(const struct ring *r, uint64_t burst_samples)
{
    uint64_t seq = ring_head(r);
    uint64_t got = 0;
    struct ring_page p;
    while (got < burst_samples && seq > 0 && ring_page_get(r, seq - 1, &p) == 0) {
        seq--;
        got += p.samples;
    }
    return seq;
}
