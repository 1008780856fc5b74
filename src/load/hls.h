/*
 * load/hls: "rostrum-load hls", many HLS players on one event loop per process, behaving as
 * hls.js does on a live (and low-latency) audio stream (issue 11):
 *
 *   GET the multivariant playlist --> pick a rendition (--rendition: a CODECS or URI substring;
 *   default the first) --> GET its media playlist --> start hold-back behind the live edge
 *   (PART-HOLD-BACK with parts, else HOLD-BACK or 3 target durations) --> GET the init
 *   section (EXT-X-MAP) and the parts (or segments) from there --> then, per round:
 *
 *     low-latency (PART-INF and CAN-BLOCK-RELOAD=YES, unless --no-ll):
 *       GET the preload hint if the playlist gives one for the next part (unless --no-hints),
 *       then a blocking reload: ?_HLS_msn=M&_HLS_part=P (the part after the newest it has),
 *       with &_HLS_skip=YES once it has a full playlist and the server offers CAN-SKIP-UNTIL;
 *       then the parts that are new.
 *     plain: reload after a target duration (half of one if nothing changed), then the new
 *       segments.
 *
 * and a beacon (POST /beacon/<space>, see audience/beacon.c) when it starts playing and every
 * --beacon-s after, with the session id each answer renews.
 *
 * A player keeps one connection alive across its requests (load/httpresp reads the framing)
 * and opens a new one when the server closes it. Playback is simulated: the play head starts
 * on the first media fetched, runs in real time, and stops when it reaches the end of what was
 * fetched (a stall, counted once per gap, with its length); latency behind live is wall time
 * minus the play head's program date time (EXT-X-PROGRAM-DATE-TIME), sampled at each media
 * fetch once playing.
 */
#ifndef ROSTRUM_LOAD_HLS_H
#define ROSTRUM_LOAD_HLS_H

#include <stdint.h>

#include "load/hist.h"
#include "load/url.h"

/* Runs "rostrum-load hls" with the arguments after the subcommand (<argv>[0] is "hls").
 * Returns 0 the run completed, 1 internal error, 2 bad arguments. */
int load_hls_main(int argc, char **argv);

#endif
