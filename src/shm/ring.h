/*
 * ring: the page ring of one space. One writer (the space's packager) publishes Ogg pages;
 * any number of readers (listeners) hold a cursor, a page sequence number, into it.
 *
 *        tail                                   head
 *         v                                      v
 *   ... | old page | page | page | ... | page |  (next seq to publish)
 *
 * Pages live in one contiguous arena; a page never wraps (if it does not fit before the end,
 * the writer skips to the start). Publishing evicts the oldest pages whose bytes or slots it
 * needs. A page <seq> is readable while tail <= seq < head. The whole ring is one mapping
 * made with MAP_SHARED so that forked listener workers can read it in place (part 2); its
 * layout therefore holds offsets, never pointers.
 *
 * Listeners never copy page bytes: they point iovecs into the arena and writev() them.
 */
#ifndef ROSTRUM_SHM_RING_H
#define ROSTRUM_SHM_RING_H

#include <stddef.h>
#include <stdint.h>

struct ring_slot {
    uint64_t seq;     /* page sequence in this ring (not the Ogg page number) */
    uint64_t pos;     /* arena position: monotonic, the offset is pos % data_size */
    uint32_t len;     /* bytes */
    uint32_t samples; /* audio duration carried, 48 kHz samples */
    uint64_t granule; /* Ogg granule position at the end of the page */
    int64_t time_ms;  /* monotonic publish time */
};

struct ring {
    uint64_t head;      /* next seq to publish; pages [tail, head) are readable */
    uint64_t tail;
    uint64_t write_pos; /* arena position of the next byte */
    uint32_t nslots;    /* power of two */
    uint32_t pad_;
    uint64_t data_size; /* arena bytes */
    size_t map_size;
    /* followed by nslots struct ring_slot, then data_size bytes of arena */
};

/* Bytes of memory a ring of <nslots> (rounded up to a power of two) and <data_size> needs. */
size_t ring_bytes(uint32_t nslots, uint64_t data_size);
/* Lays out an empty ring in <mem> (ring_bytes() long, zeroed or not). Returns it. */
struct ring *ring_init(void *mem, uint32_t nslots, uint64_t data_size);
/* Creates a ring with <nslots> (rounded up to a power of two) and an arena of <data_size>
 * bytes, in its own shared anonymous mapping. Aborts if the mapping fails. */
struct ring *ring_create(uint32_t nslots, uint64_t data_size);
void ring_destroy(struct ring *r);

/* The oldest readable page: a reader in another process that copied page <seq> out may trust
 * the bytes it copied only if <seq> >= ring_tail() after the copy (the writer moves tail past a
 * page before it overwrites the page's bytes). */
static inline uint64_t ring_tail(const struct ring *r)
{
    return __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
}
static inline uint64_t ring_head(const struct ring *r)
{
    return __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
}

/* Empties the ring; sequence numbers go on from head (readers' cursors become stale). */
void ring_reset(struct ring *r);

/* Copies a page of <len> bytes (<= data_size / 4) into the ring. Returns its sequence number.
 * Evicts the oldest pages as needed. */
uint64_t ring_publish(struct ring *r, const void *page, uint32_t len, uint32_t samples,
                      uint64_t granule, int64_t time_ms);

/* The slot of page <seq>, or NULL if it is not (or no longer) in the ring. */
const struct ring_slot *ring_slot_get(const struct ring *r, uint64_t seq);

/* Bytes of page <slot>. */
const unsigned char *ring_slot_data(const struct ring *r, const struct ring_slot *slot);

/* The sequence number of the page a newcomer should start at so that it receives at least
 * <burst_samples> of recent audio (the oldest page needed, at a page boundary); head if the
 * ring is empty or burst is 0. */
uint64_t ring_burst_start(const struct ring *r, uint64_t burst_samples);

#endif
