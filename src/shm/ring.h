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
 * Readers in other processes follow the protocol in shm.h: ring_page_get() before, and
 * ring_page_intact() after using a page's bytes. Nothing else of the ring is read by them.
 *
 * Why a listener's pages are not overwritten under it: a page at arena position <p> is evicted
 * only once the writer is more than data_size - 2 * max_page past it (max_page = data_size/4),
 * so a page within data_size / 4 bytes and nslots / 2 pages of the head (ring_lag_limits())
 * survives the next data_size / 4 bytes of publishing. Listeners further behind are laggards
 * and jump (listener.c); the re-check after each writev() is what makes this safe rather than
 * likely.
 */
#ifndef ROSTRUM_SHM_RING_H
#define ROSTRUM_SHM_RING_H

#include <stddef.h>
#include <stdint.h>

#include "shm/shm.h"

/* A page's slot. Written by the writer only, under the slot protocol of shm.h: <seq> is
 * RING_SEQ_BUSY while the fields change and the page's sequence once they are whole. */
struct ring_slot {
    uint64_t seq;     /* page sequence in this ring (not the Ogg page number) */
    uint64_t pos;     /* arena position: monotonic, the offset is pos % data_size */
    uint32_t len;     /* bytes */
    uint32_t samples; /* audio duration carried, 48 kHz samples */
    uint64_t granule; /* Ogg granule position at the end of the page */
    int64_t time_ms;  /* monotonic publish time */
};

#define RING_SEQ_BUSY UINT64_MAX

struct ring {
    uint64_t head;      /* next seq to publish; pages [tail, head) are readable */
    uint64_t tail;
    uint64_t write_pos; /* arena position of the next byte */
    uint32_t nslots;    /* power of two; constant once made */
    uint32_t pad_;
    uint64_t data_size; /* arena bytes; constant once made */
    size_t map_size;
    /* followed by nslots struct ring_slot, then data_size bytes of arena */
};

/* A reader's copy of a page's slot, taken by ring_page_get(): whole, from one page. */
struct ring_page {
    uint64_t seq;
    uint64_t pos; /* arena position of its first byte */
    const unsigned char *data;
    uint32_t len;
    uint32_t samples;
    uint64_t granule;
    int64_t time_ms;
};

/* Bytes of memory a ring of <nslots> (rounded up to a power of two) and <data_size> needs. */
size_t ring_bytes(uint32_t nslots, uint64_t data_size);
/* Lays out an empty ring in <mem> (ring_bytes() long, zeroed or not). Returns it. */
struct ring *ring_init(void *mem, uint32_t nslots, uint64_t data_size);
/* Creates a ring with <nslots> (rounded up to a power of two) and an arena of <data_size>
 * bytes, in its own shared anonymous mapping. Aborts if the mapping fails. */
struct ring *ring_create(uint32_t nslots, uint64_t data_size);
void ring_destroy(struct ring *r);

/* The oldest page still readable (pages below it may be being overwritten). */
static inline uint64_t ring_tail(const struct ring *r)
{
    return __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
}
/* The next page to be published; the newest readable page is head - 1. */
static inline uint64_t ring_head(const struct ring *r)
{
    return __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
}
/* The arena position the next page will be written at (bytes published so far, plus the
 * arena ends skipped). */
static inline uint64_t ring_write_pos(const struct ring *r)
{
    return __atomic_load_n(&r->write_pos, __ATOMIC_ACQUIRE);
}

/* How far behind the head a reader may be, in arena bytes and in pages, and still be sure its
 * page survives the next data_size / 4 bytes of publishing (see the note at the top). */
static inline void ring_lag_limits(const struct ring *r, uint64_t *bytes, uint64_t *pages)
{
    *bytes = r->data_size / 4;
    *pages = r->nslots / 2;
}

/* Empties the ring; sequence numbers go on from head (readers' cursors become stale). Writer
 * only. */
void ring_reset(struct ring *r);

/* Relay (issue 10): a relay's ring carries its upstream's sequence numbers, so that a cut is
 * resumed by asking for the next one it lacks, from any upstream carrying the same stream.
 * ring_restart_at empties the ring and makes <seq> the next sequence to publish (forwards or
 * backwards: only for a new stream, whose readers of the old one are closed by the slot's
 * generation). ring_publish_at publishes page <seq>, which must be the head (continuing):
 * returns 0, or -EINVAL (nothing published) if it is not. Writer only. */
void ring_restart_at(struct ring *r, uint64_t seq);
int ring_publish_at(struct ring *r, uint64_t seq, const void *page, uint32_t len,
                    uint32_t samples, uint64_t granule, int64_t time_ms);

/* Copies a page of <len> bytes (<= data_size / 4) into the ring. Returns its sequence number.
 * Evicts the oldest pages as needed. Writer only. */
uint64_t ring_publish(struct ring *r, const void *page, uint32_t len, uint32_t samples,
                      uint64_t granule, int64_t time_ms);

/* Reader: fills <out> with page <seq>'s slot. Returns 0; -EAGAIN if <seq> is not published yet;
 * -ENOENT if it was evicted (or is being). The bytes at out->data may still be overwritten
 * from now on: trust what was made of them only if ring_page_intact() says so afterwards. */
int ring_page_get(const struct ring *r, uint64_t seq, struct ring_page *out);

/* Reader: after using bytes of pages <seq> and later (copied, or written to a socket), 1 if
 * none of them can have been overwritten meanwhile, 0 if they may be torn. */
static inline int ring_page_intact(const struct ring *r, uint64_t seq)
{
    return shm_reload64(&r->tail) <= seq;
}

/* The sequence number of the page a newcomer should start at so that it receives at least
 * <burst_samples> of recent audio (the oldest page needed, at a page boundary); head if the
 * ring is empty or burst is 0. Reader. */
uint64_t ring_burst_start(const struct ring *r, uint64_t burst_samples);

#endif
