#include "shm/ring.h"

#include <assert.h>
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
    if (p == MAP_FAILED)
        abort();
    return ring_init(p, nslots, data_size);
}

void ring_destroy(struct ring *r)
{
    if (r)
        munmap(r, r->map_size);
}

void ring_reset(struct ring *r)
{
    __atomic_store_n(&r->tail, r->head, __ATOMIC_RELEASE);
}

uint64_t ring_publish(struct ring *r, const void *page, uint32_t len, uint32_t samples,
                      uint64_t granule, int64_t time_ms)
{
    assert(len > 0 && len <= r->data_size / 4);
    uint64_t pos = r->write_pos;
    uint64_t off = pos % r->data_size;
    if (off + len > r->data_size)
        pos += r->data_size - off; /* skip the arena's end: pages never wrap */
    struct ring_slot *slots = ring_slots(r);
    /* Evict pages whose bytes the new page overwrites, and the page whose slot it takes. */
    while (r->tail < r->head) {
        struct ring_slot *old = &slots[r->tail & (r->nslots - 1)];
        if (old->pos + r->data_size >= pos + len && r->head - r->tail < r->nslots)
            break;
        /* published before the bytes are overwritten: see ring_tail() */
        __atomic_store_n(&r->tail, r->tail + 1, __ATOMIC_RELEASE);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memcpy(ring_arena(r) + pos % r->data_size, page, len);
    struct ring_slot *s = &slots[r->head & (r->nslots - 1)];
    *s = (struct ring_slot){.seq = r->head,
                            .pos = pos,
                            .len = len,
                            .samples = samples,
                            .granule = granule,
                            .time_ms = time_ms};
    r->write_pos = pos + len;
    /* Readers in other processes must see the slot and bytes before the new head. */
    __atomic_store_n(&r->head, r->head + 1, __ATOMIC_RELEASE);
    return s->seq;
}

const struct ring_slot *ring_slot_get(const struct ring *r, uint64_t seq)
{
    if (seq < ring_tail(r) || seq >= ring_head(r))
        return NULL;
    const struct ring_slot *s = &ring_slots(r)[seq & (r->nslots - 1)];
    return s->seq == seq ? s : NULL;
}

const unsigned char *ring_slot_data(const struct ring *r, const struct ring_slot *slot)
{
    return ring_arena(r) + slot->pos % r->data_size;
}

uint64_t ring_burst_start(const struct ring *r, uint64_t burst_samples)
{
    uint64_t seq = r->head;
    uint64_t got = 0;
    while (got < burst_samples && seq > r->tail) {
        seq--;
        got += ring_slots(r)[seq & (r->nslots - 1)].samples;
    }
    return seq;
}
