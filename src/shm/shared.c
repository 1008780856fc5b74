#include "shm/shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/check.h"
#include "web/web.h"

static size_t ring_stride(void)
{
    size_t n = ring_bytes(SHARED_RING_SLOTS, SHARED_RING_BYTES);
    return (n + 4095) & ~(size_t)4095;
}

static size_t shared_head_size(void)
{
    return (sizeof(struct shared) + 4095) & ~(size_t)4095;
}

static size_t shared_size(void)
{
    return shared_head_size() + SHARED_MAX_SPACES * ring_stride();
}

uint64_t shared_layout(void)
{
    /* what a reader of another build must agree on: the version and every size */
    uint64_t h = 1469598103934665603ULL;
    uint64_t parts[] = {SHARED_LAYOUT_VERSION, sizeof(struct shared), sizeof(struct shared_space),
                        sizeof(struct shared_worker), sizeof(struct shared_main),
                        SHARED_RING_SLOTS, SHARED_RING_BYTES, SHARED_MAX_SPACES,
                        SHARED_MAX_WORKERS, shared_size()};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        h = (h ^ parts[i]) * 1099511628211ULL;
    return h;
}

struct shared *shared_create(uint32_t nworkers, int *memfd)
{
    size_t size = shared_size();
    /* a memfd, not an anonymous mapping: an upgrade hands it to the next binary */
    int fd = memfd_create("rostrum-shared", MFD_CLOEXEC);
    BUG_ON(fd < 0);
    BUG_ON(ftruncate(fd, (off_t)size) != 0);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    BUG_ON(p == MAP_FAILED);
    if (memfd)
        *memfd = fd;
    else
        close(fd);
    struct shared *sh = p;
    sh->size = size;
    sh->layout = shared_layout();
    sh->nworkers = nworkers;
    for (int i = 0; i < SHARED_MAX_SPACES; i++)
        ring_init(shared_ring(sh, i), SHARED_RING_SLOTS, SHARED_RING_BYTES);
    return sh;
}

struct shared *shared_attach(int memfd, char *err, size_t errlen)
{
    size_t size = shared_size();
    struct stat st;
    if (fstat(memfd, &st) != 0 || (size_t)st.st_size != size) {
        snprintf(err, errlen, "shared memory of %lld bytes, this build needs %zu",
                 (long long)st.st_size, size);
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "mmap: %s", strerror(errno));
        return NULL;
    }
    struct shared *sh = p;
    if (sh->layout != shared_layout()) {
        snprintf(err, errlen, "shared memory layout %016llx, this build's is %016llx",
                 (unsigned long long)sh->layout, (unsigned long long)shared_layout());
        munmap(p, size);
        return NULL;
    }
    return sh;
}

void shared_destroy(struct shared *sh)
{
    if (sh)
        munmap(sh, sh->size);
}

uint32_t shared_config_put(struct shared *sh, const void *data, uint32_t len)
{
    BUG_ON(len > SHARED_CONFIG_BYTES);
    uint32_t g = sh->cfg_gen;
    __atomic_store_n(&sh->cfg_gen, g + 1, __ATOMIC_RELAXED); /* odd: being written */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(sh->cfg_blob, data, len);
    sh->cfg_len = len;
    __atomic_store_n(&sh->cfg_gen, g + 2, __ATOMIC_RELEASE);
    return g + 2;
}

uint32_t shared_config_get(const struct shared *sh, uint32_t seen, void *out, uint32_t len)
{
    uint32_t g = shm_load_acquire32(&sh->cfg_gen);
    if (g == seen)
        return seen;
    if ((g & 1) || g == 0 || __atomic_load_n(&sh->cfg_len, __ATOMIC_RELAXED) != len)
        return 0;
    memcpy(out, sh->cfg_blob, len);
    return shm_reload32(&sh->cfg_gen) == g ? g : 0;
}

struct ring *shared_ring(struct shared *sh, int i)
{
    return (struct ring *)(void *)((char *)sh + shared_head_size() + (size_t)i * ring_stride());
}

static void add_counters(struct shared_counters *to, const struct shared_counters *from)
{
    /* every field is a uint64_t: add them as an array */
    const uint64_t *f = (const uint64_t *)from;
    uint64_t *t = (uint64_t *)to;
    for (size_t i = 0; i < sizeof(*from) / sizeof(uint64_t); i++)
        t[i] += __atomic_load_n(&f[i], __ATOMIC_RELAXED);
}

void shared_sum_counters(const struct shared *sh, struct shared_counters *out)
{
    memset(out, 0, sizeof(*out));
    add_counters(out, &sh->retired);
    add_counters(out, &sh->main.c);
    for (uint32_t i = 0; i < sh->nworkers; i++)
        add_counters(out, &sh->workers[i].c);
}

int mount_name_ok(const char *m)
{
    if (web_reserved(m))
        return 0;
    size_t n = strlen(m);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = m[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return m[0] != '.';
}

#define TICKET_EXP_BITS 20
#define TICKET_EXP_MASK ((1u << TICKET_EXP_BITS) - 1)

/* Expired: <now> is past the word's expiry, modulo 2^20 s (lifetimes are far shorter). */
static int ticket_word_expired(uint64_t w, int64_t now_s)
{
    uint32_t d = ((uint32_t)now_s - (uint32_t)(w & TICKET_EXP_MASK)) & TICKET_EXP_MASK;
    return d != 0 && d < (TICKET_EXP_MASK + 1) / 2;
}

int shared_ticket_use(struct shared *sh, uint64_t id, int64_t expiry_s, int64_t now_s)
{
    uint64_t tag = id >> TICKET_EXP_BITS ? id >> TICKET_EXP_BITS : 1;
    uint64_t word = tag << TICKET_EXP_BITS | ((uint64_t)expiry_s & TICKET_EXP_MASK);
    uint32_t home = (uint32_t)id & (SHARED_TICKETS - 1);
    for (int attempt = 0; attempt < 4; attempt++) {
        uint64_t *slot = NULL, was = 0;
        for (uint32_t i = 0; i < SHARED_TICKET_PROBE; i++) {
            uint64_t *s = &sh->used_tickets[(home + i) & (SHARED_TICKETS - 1)];
            uint64_t w = __atomic_load_n(s, __ATOMIC_ACQUIRE);
            if (w && w >> TICKET_EXP_BITS == tag)
                return -EALREADY;
            if (!slot && (w == 0 || ticket_word_expired(w, now_s))) {
                slot = s;
                was = w;
            }
        }
        if (!slot)
            return -ENOSPC;
        if (!__atomic_compare_exchange_n(slot, &was, word, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue; /* someone took that slot: look again */
        /* another worker claiming the same ticket at once may have taken another slot */
        for (uint32_t i = 0; i < SHARED_TICKET_PROBE; i++) {
            uint64_t *s = &sh->used_tickets[(home + i) & (SHARED_TICKETS - 1)];
            if (s != slot && __atomic_load_n(s, __ATOMIC_ACQUIRE) >> TICKET_EXP_BITS == tag)
                return -EALREADY;
        }
        return 0;
    }
    return -ENOSPC;
}

#define BEACON_TIME_BITS 22
#define BEACON_TIME_MASK ((1u << BEACON_TIME_BITS) - 1)
#define BEACON_TAG_SHIFT 28

/* 1 if slot word <w> was last refreshed within <window_s> of <now_s>. A time a little ahead
 * of <now_s> (another process's loop clock is a few ms newer) is fresh, not 48 days old. */
static int beacon_live(uint64_t w, int64_t now_s, int window_s)
{
    uint32_t age = ((uint32_t)now_s - (uint32_t)w) & BEACON_TIME_MASK;
    return w != 0 && (age <= (uint32_t)window_s || age > BEACON_TIME_MASK - 16);
}

int shared_beacon_seen(struct shared *sh, uint64_t id, int slot, int64_t now_s, int window_s)
{
    uint64_t tag = id >> BEACON_TAG_SHIFT ? id >> BEACON_TAG_SHIFT : 1;
    uint64_t word = tag << BEACON_TAG_SHIFT | (uint64_t)(slot & 63) << BEACON_TIME_BITS |
                    ((uint64_t)now_s & BEACON_TIME_MASK);
    uint32_t home = (uint32_t)id & (SHARED_BEACONS - 1);
    for (int attempt = 0; attempt < 4; attempt++) {
        uint64_t *spare = NULL, was = 0;
        uint32_t i, at = 0;
        for (i = 0; i < SHARED_BEACON_PROBE; i++) {
            uint64_t *s = &sh->beacons[(home + i) & (SHARED_BEACONS - 1)];
            uint64_t w = __atomic_load_n(s, __ATOMIC_ACQUIRE);
            if (w && w >> BEACON_TAG_SHIFT == tag) { /* its own slot: refresh it */
                int lapsed = !beacon_live(w, now_s, window_s);
                if (__atomic_compare_exchange_n(s, &w, word, 0, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE))
                    return lapsed;
                break; /* changed under us: look again */
            }
            if (!spare && !beacon_live(w, now_s, window_s)) {
                spare = s;
                was = w;
                at = i;
            }
        }
        if (i < SHARED_BEACON_PROBE)
            continue;
        if (!spare)
            return -ENOSPC;
        if (!__atomic_compare_exchange_n(spare, &was, word, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue; /* someone took that slot: look again */
        /* another worker taking this session's first beacon at once may hold another slot:
         * the lower one in probe order stays */
        for (uint32_t j = 0; j < at; j++) {
            uint64_t *s = &sh->beacons[(home + j) & (SHARED_BEACONS - 1)];
            if (__atomic_load_n(s, __ATOMIC_ACQUIRE) >> BEACON_TAG_SHIFT == tag) {
                uint64_t mine = word;
                __atomic_compare_exchange_n(spare, &mine, 0, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE);
                return 0;
            }
        }
        return 1;
    }
    return -ENOSPC;
}

void shared_beacon_count(const struct shared *sh, int64_t now_s, int window_s,
                         uint32_t out[SHARED_MAX_SPACES])
{
    memset(out, 0, SHARED_MAX_SPACES * sizeof(out[0]));
    for (uint32_t i = 0; i < SHARED_BEACONS; i++) {
        uint64_t w = __atomic_load_n(&sh->beacons[i], __ATOMIC_RELAXED);
        if (beacon_live(w, now_s, window_s))
            out[(w >> BEACON_TIME_BITS) & 63]++;
    }
}

void shared_dbuf_put(struct shared_dbuf *d, unsigned char *halves, size_t cap, const void *data,
                     uint32_t len, uint32_t aux)
{
    BUG_ON(len > cap);
    uint32_t next = d->gen + 1, h = next & 1;
    SHM_SET(d->half_gen[h], next ^ 1); /* the wrong parity: busy, no reader asks for it */
    shm_before_overwrite();
    if (len)
        memcpy(halves + h * cap, data, len);
    SHM_SET(d->len[h], len);
    SHM_SET(d->aux[h], aux);
    shm_publish32(&d->half_gen[h], next);
    shm_publish32(&d->gen, next);
}

int shared_dbuf_view(const struct shared_dbuf *d, const unsigned char *halves, size_t cap,
                     uint32_t gen, struct shared_view *v)
{
    uint32_t h = gen & 1;
    if (shm_load_acquire32(&d->half_gen[h]) != gen)
        return -ENOENT;
    uint32_t len = SHM_GET(d->len[h]), aux = SHM_GET(d->aux[h]);
    /* lengths read while a writer may come round are checked with the bytes, afterwards; keep
     * even a torn one inside the half meanwhile */
    if (len > cap)
        len = (uint32_t)cap;
    if (aux > len)
        aux = len;
    *v = (struct shared_view){.gen = gen, .len = len, .aux = aux, .data = halves + h * cap};
    return 0;
}

int shared_dbuf_copy(const struct shared_dbuf *d, const unsigned char *halves, size_t cap,
                     void *out, uint32_t *aux)
{
    for (int tries = 0; tries < 8; tries++) {
        struct shared_view v;
        uint32_t gen = shared_dbuf_gen(d);
        if (shared_dbuf_view(d, halves, cap, gen, &v) < 0)
            continue;
        memcpy(out, v.data, v.len);
        if (!shared_dbuf_intact(d, gen))
            continue;
        if (aux)
            *aux = v.aux;
        return (int)v.len;
    }
    return -EAGAIN;
}

void shared_relay_write(struct shared_worker *w, uint32_t i, const struct shared_relay *in)
{
    BUG_ON(i >= SHARED_WORKER_RELAYS);
    struct shared_relay *r = &w->relays[i];
    uint32_t seq = SHM_GET(r->seq) | 1; /* odd: being written */
    SHM_SET(r->seq, seq);
    shm_before_overwrite();
    /* everything after <seq> (its first field) */
    size_t skip = offsetof(struct shared_relay, slot);
    memcpy((char *)r + skip, (const char *)in + skip, sizeof(*r) - skip);
    shm_publish32(&r->seq, seq + 1);
}

void shared_tree_write(struct shared_worker *w, const struct shared_tree_row *rows, uint32_t n)
{
    BUG_ON(n > SHARED_WORKER_TREE_ROWS);
    struct shared_tree_rows *t = &w->tree;
    uint32_t seq = SHM_GET(t->seq) | 1; /* odd: being written */
    SHM_SET(t->seq, seq);
    shm_before_overwrite();
    memcpy(t->row, rows, n * sizeof(*rows));
    SHM_SET(t->n, n);
    shm_publish32(&t->seq, seq + 1);
}

int shared_tree_read(const struct shared_worker *w, struct shared_tree_row *out)
{
    const struct shared_tree_rows *t = &w->tree;
    for (int tries = 0; tries < 64; tries++) {
        uint32_t seq = shm_load_acquire32(&t->seq);
        if (seq & 1)
            continue;
        uint32_t n = SHM_GET(t->n);
        if (n > SHARED_WORKER_TREE_ROWS)
            n = SHARED_WORKER_TREE_ROWS;
        memcpy(out, t->row, n * sizeof(*out));
        if (shm_reload32(&t->seq) == seq)
            return (int)n;
    }
    return -EAGAIN;
}

static int tree_row_order(const void *pa, const void *pb)
{
    const struct shared_tree_row *a = pa, *b = pb;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    if (a->gen != b->gen)
        return a->gen > b->gen ? -1 : 1; /* the highest generation first */
    return a->seen_ms > b->seen_ms ? -1 : a->seen_ms < b->seen_ms;
}

int shared_tree_collect(const struct shared *sh, int slot, int64_t now_ms, int64_t max_age_ms,
                        struct shared_tree_row *out)
{
    struct shared_tree_row rows[SHARED_WORKER_TREE_ROWS];
    uint32_t gen = __atomic_load_n(&sh->spaces[slot].gen, __ATOMIC_ACQUIRE);
    int n = 0;
    for (uint32_t w = 0; w < sh->nworkers && w < SHARED_MAX_WORKERS; w++) {
        int k = shared_tree_read(&sh->workers[w], rows);
        for (int i = 0; i < k; i++)
            if (rows[i].slot == slot && rows[i].slot_gen == gen &&
                now_ms - rows[i].seen_ms <= max_age_ms)
                out[n++] = rows[i];
    }
    /* a relay whose feeds moved between workers may be in two tables: its best row counts */
    qsort(out, (size_t)n, sizeof(*out), tree_row_order);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || out[m - 1].id != out[i].id)
            out[m++] = out[i];
    return m;
}

int shared_relay_read(const struct shared_worker *w, uint32_t i, struct shared_relay *out)
{
    if (i >= SHARED_WORKER_RELAYS)
        return -EAGAIN;
    const struct shared_relay *r = &w->relays[i];
    uint32_t seq = shm_load_acquire32(&r->seq);
    if (seq == 0 || (seq & 1))
        return -EAGAIN;
    memcpy(out, r, sizeof(*out));
    if (shm_reload32(&r->seq) != seq)
        return -EAGAIN;
    out->addr[SHARED_RELAY_ADDR - 1] = out->name[SHARED_RELAY_NAME - 1] = '\0';
    out->url[SHARED_RELAY_URL - 1] = '\0';
    return 0;
}

/* ---- renditions (issue 11, item 5) ------------------------------------------------------ */

static const char *const rendition_suffixes[RENDITION_KINDS] = {"", ".aac", ".mp3"};
static const char *const rendition_types[RENDITION_KINDS] = {"audio/ogg", "audio/aac",
                                                             "audio/mpeg"};
static const char *const rendition_codecs[RENDITION_KINDS] = {"Opus", "AAC", "MP3"};

int rendition_mount_kind(const char *mount, size_t *base_len)
{
    size_t n = strlen(mount);
    for (int k = 1; k < RENDITION_KINDS; k++) {
        size_t sl = strlen(rendition_suffixes[k]);
        if (n > sl && strcmp(mount + n - sl, rendition_suffixes[k]) == 0) {
            if (base_len)
                *base_len = n - sl;
            return k;
        }
    }
    return RENDITION_NONE;
}

const char *rendition_suffix(int kind)
{
    return kind > 0 && kind < RENDITION_KINDS ? rendition_suffixes[kind] : "";
}

const char *rendition_content_type(int kind)
{
    return kind > 0 && kind < RENDITION_KINDS ? rendition_types[kind] : rendition_types[0];
}

const char *rendition_codec_name(int kind)
{
    return kind > 0 && kind < RENDITION_KINDS ? rendition_codecs[kind] : rendition_codecs[0];
}

int shared_rendition_slot(const struct shared *sh, int src, int kind)
{
    for (int i = 0; i < SHARED_MAX_SPACES; i++) {
        const struct shared_space *ss = &sh->spaces[i];
        if (__atomic_load_n(&ss->state, __ATOMIC_ACQUIRE) == SLOT_LIVE &&
            __atomic_load_n(&ss->rendition_of, __ATOMIC_ACQUIRE) == src + 1 &&
            ss->rendition_kind == (uint32_t)kind)
            return i;
    }
    return -1;
}

int shared_hand_push(struct shared_hand_queue *q, const struct shared_hand_event *e)
{
    uint32_t head = q->head; /* ours */
    uint32_t tail = shm_load_acquire32(&q->tail);
    if (head - tail >= SHARED_HAND_QUEUE)
        return -ENOSPC;
    /* the main process gave slot head % N back before it moved <tail> past it */
    q->ev[head % SHARED_HAND_QUEUE] = *e;
    shm_publish32(&q->head, head + 1);
    return 0;
}

int shared_hand_pop(struct shared_hand_queue *q, struct shared_hand_event *out)
{
    uint32_t tail = q->tail; /* ours */
    uint32_t head = shm_load_acquire32(&q->head);
    if (head == tail)
        return 0;
    *out = q->ev[tail % SHARED_HAND_QUEUE];
    out->name[SHARED_HAND_NAME - 1] = '\0';
    shm_publish32(&q->tail, tail + 1); /* after the copy: the worker may reuse the slot */
    return 1;
}

const char *const shared_reaction_names[SHARED_REACTIONS] = {"clap", "heart", "laugh",
                                                             "wow",  "fire",  "up"};
