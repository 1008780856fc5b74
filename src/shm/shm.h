/*
 * shm: the protocol for memory shared between the main process and the listener workers.
 *
 * Every object in the shared mapping has exactly one writer process; any number of readers in
 * other processes read it without locks, and the writer never waits for them. A reader can be
 * descheduled at any instruction, so it must assume the writer ran on in between: it takes a
 * version, uses the bytes (copies them, or hands them to writev()), then takes the version
 * again, and trusts what it used only if the version did not move (seqlock style). There are
 * three kinds of object, each with one rule:
 *
 * 1. Ring pages (ring.h). The version of page <seq> is "seq >= tail": the writer moves the
 *    tail past a page (a release store) *before* it overwrites the page's bytes or its slot.
 *    A slot's own <seq> field is published last with a release store; a reader checks it
 *    before and after reading the slot (and the tail after), so the slot's fields it read
 *    belong to one page. Bytes are trusted only after ring_page_intact() says the tail is
 *    still at or before the oldest page used.
 *
 *        writer (main)                               reader (worker)
 *        -------------                               ---------------
 *        tail = evicted + 1   (release)              p = ring_page_get(seq)  (slot seq x2,
 *        fence                                                                tail, acquire)
 *        memcpy(arena, page)                         use p.data[0..p.len)   (copy / writev)
 *        slot.seq = BUSY; fence; slot fields         fence (acquire)
 *        slot.seq = seq       (release)              ring_page_intact(seq): seq >= tail ?
 *        head = seq + 1       (release)                 yes: the bytes used were page <seq>
 *                                                       no: they may be torn, never trust them
 *
 * 2. Double buffers (shared.h: the preamble, the stage's state document). Two halves; half
 *    <h> holds generation half_gen[h] (always of parity h). To publish generation g+1 the
 *    writer marks half (g+1)&1 busy (a value of the wrong parity, which no reader asks for),
 *    fences, writes it, stores half_gen = g+1 (release), then gen = g+1 (release). A reader
 *    uses generation <g> from half g&1 only while half_gen[g&1] == g before and after the use;
 *    a reader that was slow enough for the writer to come round to its half (two changes)
 *    sees the mismatch after the copy and drops what it copied.
 *
 * 3. Words with one writer (slot state and generation, counters): atomic loads and stores;
 *    acquire/release where they order other data, relaxed for counters.
 *
 * 4. Records with a sequence (shared.h: a worker's relay table). The writer makes <seq> odd
 *    (release fence after), writes the record's fields, then stores <seq> + 1, even (release).
 *    A reader loads <seq> (acquire), skips the record if it is odd (or 0: never written),
 *    copies the record, and keeps the copy only if <seq> reloaded is the same: the Linux
 *    seqcount, for records too small and too rarely written (once a second) to double-buffer.
 *
 * The bytes themselves (arena, halves) are written with memcpy() and read with memcpy() or by
 * the kernel in writev(): a race on them is expected and harmless because the version check
 * after the use rejects whatever a race could have produced. That is the seqlock bargain (as
 * in Linux's seqcount); strictly, C11 would want the bytes copied with relaxed atomics, which
 * we do not do for speed. The fences are what the hardware needs: writer stores are ordered
 * by a release fence (StoreStore), reader loads by an acquire fence (LoadLoad) before the
 * version is loaded again; a system call (writev) is a full barrier on its own.
 *
 * tests/unit/test_shm.c runs a writer and a reader in two processes over a small, fast-wrapping
 * ring and fast-flipping double buffers, and checks every accepted copy against its CRC.
 */
#ifndef ROSTRUM_SHM_SHM_H
#define ROSTRUM_SHM_SHM_H

#include <stdint.h>

/* Reader: the version of an object before using it. */
static inline uint64_t shm_load_acquire64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint32_t shm_load_acquire32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Reader: after using an object's bytes, the version again. Loads made before the call are
 * ordered before the version's load. */
static inline uint64_t shm_reload64(const uint64_t *p)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline uint32_t shm_reload32(const uint32_t *p)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Writer: publishes a version; every store before it is seen before it. */
static inline void shm_publish64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void shm_publish32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Writer: after marking an object busy (or its old version gone), and before overwriting its
 * bytes, so that no reader sees new bytes with the old version. */
static inline void shm_before_overwrite(void)
{
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

/* Fields read or written between the version checks: relaxed, so the compiler neither tears
 * nor caches them. */
#define SHM_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define SHM_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

#endif
