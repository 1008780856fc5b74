/*
 * state: a flat stream of typed records, for handing a process's state to the next binary
 * (an upgrade, src/proc/upgrade.c) or to the next worker (src/proc/handover.c).
 *
 *   record: u16 type | u16 version | u32 len | len bytes (the payload, padded to 8)
 *
 * Payloads are the owners' own fixed-layout structs (fixed-width fields only, no pointers);
 * the record's version is the owner's, and a reader refuses a record whose version it does
 * not know rather than guess. Both sides are the same machine, so byte order is native.
 */
#ifndef ROSTRUM_UTIL_STATE_H
#define ROSTRUM_UTIL_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct state_reader {
    const uint8_t *p, *end;
};

/* Appends a record of <type> and <version> with <len> bytes of <payload> to <b>. */
void state_put(struct buf *b, uint16_t type, uint16_t version, const void *payload, uint32_t len);
/* The next record of <r>: 1 with its fields set, 0 at the end, -1 if the stream is cut. */
int state_next(struct state_reader *r, uint16_t *type, uint16_t *version, const void **payload,
               uint32_t *len);

#endif
