/*
 * schedule: a stage space announced ahead of time (issue 12, item 1). Until it goes live (at
 * its start time, or when the host says so) it is a lobby: the space's stream runs, one
 * logical Ogg stream from the first listener on, but the programme sent to the ring is
 * holding silence from the lobby's own encoder while the mixer's mix-minus still reaches
 * whoever is on stage (the green room). Going live swaps the programme's source packet by
 * packet on the 20 ms clock: no new stream, no new headers, the granules run on.
 *
 * The checks on what a host may schedule are pure (schedule_check) and unit tested.
 */
#ifndef ROSTRUM_STAGE_SCHEDULE_H
#define ROSTRUM_STAGE_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define SCHEDULE_MAX_AHEAD_S (7 * 24 * 3600) /* a start at most a week ahead */
#define SCHEDULE_MIN_AHEAD_S 5               /* and not in the past (a few seconds' grace) */
#define SCHEDULE_MAX_SPACES 16               /* scheduled spaces not yet live, per server */
#define SCHEDULE_TITLE_MAX 127
#define SCHEDULE_DESC_MAX 255

struct schedule {
    int64_t start_s; /* the announced start, seconds since the epoch; 0: never scheduled */
    uint8_t live;    /* the programme reaches listeners */
    /* issue 12, item 5: where the programme begins on the space's stream, for a listener (or
     * the event bench) to tell lobby from programme: a page whose granule position is above
     * live_granule carries programme audio. Set at the go-live, with its wall-clock time. */
    uint64_t live_granule;
    int64_t live_at_ms;
    char description[SCHEDULE_DESC_MAX + 1];
    void *lobby;     /* the holding encoder (OpusEncoder), made on first use */
    unsigned char pkt[400];
    int pkt_len;
    uint32_t same;   /* encodes in a row that gave the same packet: at 3, it is reused */
    uint64_t encodes;
    /* holding audio (lobby-audio): the file's Opus packets, looped through a decoder into
     * the lobby's encoder; NULL: silence */
    struct schedule_holding *holding;
};

#define SCHEDULE_HOLDING_MAX (1024 * 1024) /* bytes of a lobby-audio file */

/* Why a space titled <title> (<tlen> bytes, untrusted), described by <desc> (<dlen>), starting
 * at <start_s> may not be scheduled at <now_s> with <nscheduled> already waiting; or NULL. */
const char *schedule_check(const char *title, size_t tlen, const char *desc, size_t dlen,
                           int64_t start_s, int64_t now_s, int nscheduled);
/* One 20 ms packet of holding silence (owned by <s>, valid until the next call); NULL with
 * <*len> 0 if the encoder could not be made. Once the encoder has settled (the same packet
 * three times), that packet is reused without encoding: a lobby waiting for days costs no
 * encoder time. */
const unsigned char *schedule_lobby_packet(struct schedule *s, int *len);
/* Appends the document's schedule fields (",\"scheduled\":..."), <live> included. */
void schedule_state_json(const struct schedule *s, int64_t now_s, struct buf *out);
/* Loads Ogg/Opus file <path> (at most SCHEDULE_HOLDING_MAX bytes) as <s>'s holding audio.
 * Returns 0, or -1 with <why> (the lobby then stays silent). */
int schedule_load_holding(struct schedule *s, const char *path, const char **why);
void schedule_free(struct schedule *s);

#endif
