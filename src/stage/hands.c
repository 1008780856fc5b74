#include "stage/hands.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "space/space.h"
#include "stage/stage.h"
#include "util/log.h"

void hands_init(struct hands *h, struct shared *sh, int slot)
{
    memset(h, 0, sizeof(*h));
    for (uint32_t w = 0; w < sh->nworkers && w < SHARED_MAX_WORKERS; w++) {
        h->prev_pid[w] = SHM_GET(sh->workers[w].pid);
        for (int r = 0; r < SHARED_REACTIONS; r++)
            h->prev[w][r] = SHM_GET(sh->workers[w].reactions[slot][r]);
    }
    SHM_SET(sh->spaces[slot].hands_n, 0);
    for (int i = 0; i < SHARED_HAND_INVITES; i++)
        SHM_SET(sh->spaces[slot].hand_invited[i], 0);
}

void hands_clear(struct hands *h, struct shared_space *ss)
{
    h->n = 0;
    SHM_SET(ss->hands_n, 0);
    for (int i = 0; i < SHARED_HAND_INVITES; i++)
        SHM_SET(ss->hand_invited[i], 0);
}

static int find(const struct hands *h, uint64_t id)
{
    for (uint32_t i = 0; i < h->n; i++)
        if (h->h[i].id == id)
            return (int)i;
    return -1;
}

static void uninvite(struct shared_space *ss, uint64_t id)
{
    for (int i = 0; i < SHARED_HAND_INVITES; i++)
        if (SHM_GET(ss->hand_invited[i]) == id)
            SHM_SET(ss->hand_invited[i], 0);
}

/* Removes hand <i>, keeping the order of the others. */
static void drop(struct hands *h, struct shared_space *ss, uint32_t i)
{
    if (h->h[i].invited)
        uninvite(ss, h->h[i].id);
    memmove(&h->h[i], &h->h[i + 1], (h->n - i - 1) * sizeof(h->h[0]));
    h->n--;
    SHM_SET(ss->hands_n, h->n);
}

int hands_apply(struct hands *h, struct shared *sh, const struct shared_hand_event *e, int max)
{
    struct shared_space *ss = &sh->spaces[e->slot];
    int i = find(h, e->id);
    if (e->op == HAND_DOWN) {
        if (i < 0)
            return 0;
        drop(h, ss, (uint32_t)i);
        sh->main.hands_lowered++;
        return 1;
    }
    if (i < 0 && e->op == HAND_KEEP)
        return 0; /* not (or no longer) raised: a refresh adds nothing */
    if (i >= 0) { /* raised again: keeps its place, lapses later */
        h->h[i].seen_ms = e->at_ms;
        if (e->name[0] && strcmp(h->h[i].name, e->name) != 0) {
            memcpy(h->h[i].name, e->name, sizeof(h->h[i].name));
            return 1;
        }
        return 0;
    }
    if (h->n >= (uint32_t)max || h->n >= SHARED_HANDS_MAX) {
        sh->main.hands_dropped++;
        LOG_RATELIMITED(LOG_WARN, "hands", "/%s: %u hands raised already (max-hands): one dropped",
                        ss->mount, h->n);
        return 0;
    }
    struct hand *n = &h->h[h->n++];
    *n = (struct hand){.id = e->id, .raised_ms = e->at_ms, .seen_ms = e->at_ms};
    memcpy(n->name, e->name, sizeof(n->name));
    n->name[sizeof(n->name) - 1] = '\0';
    SHM_SET(ss->hands_n, h->n);
    sh->main.hands_raised++;
    return 1;
}

int hands_sum(struct hands *h, const struct shared *sh, int slot)
{
    int any = 0;
    for (int r = 0; r < SHARED_REACTIONS; r++) {
        any |= h->per_s[r] != 0;
        h->per_s[r] = 0;
    }
    for (uint32_t w = 0; w < sh->nworkers && w < SHARED_MAX_WORKERS; w++) {
        int32_t pid = SHM_GET(sh->workers[w].pid);
        int fresh = pid != h->prev_pid[w]; /* a restarted worker's block starts again from 0 */
        h->prev_pid[w] = pid;
        for (int r = 0; r < SHARED_REACTIONS; r++) {
            uint64_t cur = SHM_GET(sh->workers[w].reactions[slot][r]);
            uint64_t d = !fresh && cur >= h->prev[w][r] ? cur - h->prev[w][r] : cur;
            h->prev[w][r] = cur;
            h->per_s[r] += (uint32_t)d;
            h->total[r] += d;
            any |= d != 0;
        }
    }
    return any;
}

int hands_expire(struct hands *h, struct shared_space *ss, int64_t now_ms, int64_t ttl_ms)
{
    int n = 0;
    for (uint32_t i = 0; i < h->n;)
        if (now_ms - h->h[i].seen_ms > ttl_ms) {
            drop(h, ss, i);
            n++;
        } else {
            i++;
        }
    return n;
}

int hands_invite(struct hands *h, struct shared_space *ss, uint64_t id)
{
    int i = find(h, id);
    if (i < 0)
        return -ENOENT;
    if (!h->h[i].invited) {
        h->h[i].invited = 1;
        uint32_t k = h->next_invite++ % SHARED_HAND_INVITES;
        uint64_t old = SHM_GET(ss->hand_invited[k]);
        int j = old ? find(h, old) : -1;
        if (j >= 0)
            h->h[j].invited = 0; /* the oldest invitation gives way */
        SHM_SET(ss->hand_invited[k], id);
    }
    return 0;
}

int hands_dismiss(struct hands *h, struct shared_space *ss, uint64_t id)
{
    int i = find(h, id);
    if (i < 0)
        return -ENOENT;
    drop(h, ss, (uint32_t)i);
    return 0;
}

void hands_json(const struct hands *h, int64_t now_ms, struct buf *out, size_t start, size_t tail)
{
    for (int pass = 0; pass < 2; pass++) {
        buf_puts(out, pass ? ",\"reactions_total\":{" : ",\"reactions\":{");
        for (int r = 0; r < SHARED_REACTIONS; r++)
            buf_printf(out, "%s\"%s\":%llu", r ? "," : "", shared_reaction_names[r],
                       (unsigned long long)(pass ? h->total[r] : h->per_s[r]));
        buf_puts(out, "}");
    }
    buf_puts(out, ",\"hands\":[");
    struct buf e = {0};
    uint32_t listed = 0;
    for (uint32_t i = 0; i < h->n && listed < HANDS_LISTED; i++) {
        const struct hand *x = &h->h[i];
        e.len = 0;
        buf_printf(&e, "%s{\"hand\":\"%016llx\",\"name\":", listed ? "," : "",
                   (unsigned long long)x->id);
        buf_json_str(&e, x->name, strlen(x->name));
        buf_printf(&e, ",\"age_s\":%lld,\"invited\":%s}", (long long)(now_ms - x->raised_ms) / 1000,
                   x->invited ? "true" : "false");
        /* 32: room for the closing '],"hands_count":N' */
        if (out->len - start + e.len + 32 + tail > SHARED_STATE_MAX)
            break;
        buf_append(out, e.data, e.len);
        listed++;
    }
    buf_free(&e);
    buf_printf(out, "],\"hands_count\":%u", h->n);
}

/* ---- the main tick ------------------------------------------------------------------------ */

static int by_time(const void *a, const void *b)
{
    const struct shared_hand_event *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static struct stage *stage_at(struct spaces *host, int slot, uint32_t gen)
{
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &host->list)
    {
        struct space *sp = list_entry(it, struct space, node);
        if (sp->slot == slot)
            return SHM_GET(sp->ss->gen) == gen ? stage_of(sp) : NULL;
    }
    return NULL;
}

void hands_pump(struct spaces *host, int second)
{
    static struct shared_hand_event ev[SHARED_MAX_WORKERS * SHARED_HAND_QUEUE];
    struct shared *sh = host->sh;
    size_t n = 0;
    for (uint32_t w = 0; w < sh->nworkers && w < SHARED_MAX_WORKERS; w++)
        while (n < sizeof(ev) / sizeof(ev[0]) && shared_hand_pop(&sh->workers[w].hands, &ev[n]))
            n += ev[n].slot < SHARED_MAX_SPACES;
    qsort(ev, n, sizeof(ev[0]), by_time);
    for (size_t i = 0; i < n; i++) {
        struct stage *st = stage_at(host, ev[i].slot, ev[i].slot_gen);
        if (st && hands_apply(stage_hands(st), sh, &ev[i], host->cfg->max_hands))
            stage_state_changed(st);
    }
    if (!second)
        return;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &host->list)
    {
        struct space *sp = list_entry(it, struct space, node);
        struct stage *st = stage_of(sp);
        if (!st)
            continue;
        struct hands *h = stage_hands(st);
        int changed = hands_sum(h, sh, sp->slot);
        int gone = hands_expire(h, sp->ss, host->loop->now_ms, host->cfg->hand_ttl_s * 1000LL);
        sh->main.hands_expired += (uint64_t)gone;
        if (changed || gone || h->n) /* ages of hands move too */
            stage_state_changed(st);
    }
}
