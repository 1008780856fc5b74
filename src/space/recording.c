/*
 * The recording of a space (issue 12, item 2): record/record.h writes the file; this is the
 * glue that feeds it the space's header pages and pages, names it, counts it and shows its
 * state in the slot. Kept out of space.c so that the recording touches the space in three
 * calls (space_record_begin, space_record_page, space_record_end).
 */
#include "space/space.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

/* The stream's Ogg header pages: the muxer's, or a relayed upstream's. */
static const unsigned char *space_headers(struct space *sp, size_t *len)
{
    if (sp->mux)
        return ogg_mux_headers(sp->mux, len);
    *len = sp->relay_hdr_len;
    return sp->relay_hdr;
}

void space_record_begin(struct space *sp)
{
    struct shared_main *m = &sp->host->sh->main;
    const struct config *cfg = sp->host->cfg;
    size_t hlen = 0;
    const unsigned char *hdr = space_headers(sp, &hlen);
    if (!sp->record_want || sp->rec.fd >= 0 || !hdr || hlen == 0)
        return;
    char id[RECORD_ID_MAX], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(id, sizeof(id), "%.63s-%s-%08x", sp->ss->mount, stamp, sp->serial);
    int rc = recording_open(&sp->rec, cfg->record_dir, id, hdr, hlen,
                            cfg->record_sync_s * 1000, sp->host->loop->now_ms);
    if (rc != 0) {
        log_warn("record", "/%s: cannot record to %s/%s.ogg: %s", sp->ss->mount, cfg->record_dir,
                 id, strerror(-rc));
        m->record_errors++;
        sp->ss->record_state = RECORD_FAILED;
        return;
    }
    m->record_started++;
    m->record_active++;
    m->record_bytes += hlen;
    m->record_syncs++;
    snprintf(sp->ss->record_id, sizeof(sp->ss->record_id), "%s", id);
    __atomic_store_n(&sp->ss->record_state, RECORD_ON, __ATOMIC_RELEASE);
    log_info("record", "/%s: recording to %s", sp->ss->mount, sp->rec.path);
}

void space_record_page(struct space *sp, const unsigned char *page, size_t len)
{
    if (sp->rec.fd < 0)
        return;
    struct shared_main *m = &sp->host->sh->main;
    uint64_t syncs = sp->rec.syncs;
    int rc = recording_page(&sp->rec, page, len, sp->host->loop->now_ms);
    m->record_syncs += sp->rec.syncs - syncs;
    if (rc == 0) {
        m->record_bytes += len;
        return;
    }
    /* logged once: the recording is closed, later pages do nothing */
    log_error("record", "/%s: recording %s stopped: %s (%llu bytes of whole pages kept); the "
              "live stream goes on", sp->ss->mount, sp->rec.path, strerror(-rc),
              (unsigned long long)sp->rec.size);
    m->record_errors++;
    m->record_active--;
    __atomic_store_n(&sp->ss->record_state, RECORD_FAILED, __ATOMIC_RELEASE);
}

void space_record_end(struct space *sp)
{
    if (sp->rec.fd < 0)
        return;
    uint64_t syncs = sp->rec.syncs;
    recording_close(&sp->rec);
    sp->host->sh->main.record_syncs += sp->rec.syncs - syncs;
    sp->host->sh->main.record_active--;
    log_info("record", "/%s: recording %s ended whole (%llu bytes)", sp->ss->mount, sp->rec.path,
             (unsigned long long)sp->rec.size);
    __atomic_store_n(&sp->ss->record_state, RECORD_OFF, __ATOMIC_RELEASE);
}

void space_set_record(struct space *sp, int on)
{
    sp->record_want = on != 0;
    if (on)
        space_record_begin(sp);
    else
        space_record_end(sp);
}

void space_record_resume(struct space *sp)
{
    recording_init(&sp->rec);
    sp->record_want = config_record(sp->host->cfg, sp->cfg);
    if (__atomic_load_n(&sp->ss->record_state, __ATOMIC_ACQUIRE) != RECORD_ON)
        return;
    sp->record_want = 1; /* it was recorded: it goes on being */
    const struct config *cfg = sp->host->cfg;
    int rc = recording_resume(&sp->rec, cfg->record_dir, sp->ss->record_id,
                              cfg->record_sync_s * 1000, sp->host->loop->now_ms);
    if (rc != 0) {
        log_warn("record", "/%s: cannot carry on recording %s: %s", sp->ss->mount,
                 sp->ss->record_id, strerror(-rc));
        sp->host->sh->main.record_errors++;
        sp->host->sh->main.record_active--;
        sp->ss->record_state = RECORD_FAILED;
        return;
    }
    log_info("record", "/%s: carrying on recording %s at byte %llu", sp->ss->mount,
             sp->rec.path, (unsigned long long)sp->rec.size);
}
