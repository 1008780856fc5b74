/*
 * transcode: the AAC and MP3 renditions of a space (issue 11, item 5), in the main process.
 *
 * Devices that play no Opus (internet radios, smart speakers, car units, older Apple players)
 * get /<space>.aac (ADTS, AAC-LC, libavcodec's native encoder) and /<space>.mp3 (libmp3lame,
 * through libavcodec's wrapper: one encoder API, exact timestamps for both). Each is encoded
 * once per space, whatever the number of listeners, from the space's own programme: the Ogg/Opus
 * pages its ring already holds (decoded with libopus), so a rendition carries what every other
 * path carries, on an origin and on a relay alike.
 *
 *   space's ring (Ogg/Opus pages) --ogg_demux--> Opus packets --libopus--> PCM 48 kHz
 *        --avcodec (aac | libmp3lame)--> frames --> rendition slot's ring --> audience workers
 *
 * A rendition is a slot of the shared table of its own (mount "<space>.aac"), marked with
 * shared_space.rendition_of, so the audience workers serve it with the listener code of every
 * stream: its preamble, the burst, live pages, stalls, admission, limits and counting. Relay
 * discovery, the stage, state documents and the tree's count skip such slots.
 *
 * THE CONTRACT of a rendition slot (what a reader such as the HLS packager may rely on):
 *   - preamble: the HTTP response head only (no codec header: ADTS and MP3 carry theirs in
 *     every frame); <aux> == <len>.
 *   - each ring page is one or more whole frames: ADTS frames (7-byte header, no CRC,
 *     protection_absent = 1, one raw_data_block each, AAC-LC, 48 kHz, the space's channels),
 *     or MPEG-1 layer III frames (48 kHz, CBR, no Xing/LAME tag). A raw AAC access unit is a
 *     frame minus its first 7 bytes.
 *   - <samples>: the audio the page carries, in 48 kHz units (1024 per AAC frame, 1152 per
 *     MP3 frame).
 *   - <granule>: where the page's audio ends on the Opus programme's timeline, in the units of
 *     the source slot's Ogg granule positions (48 kHz, pre-skip included), encoder delay taken
 *     out: the page ends at the same instant as the Opus page of that granule, and its first
 *     sample sits at granule - samples. Each frame lasts its <samples> share, so frame k of a
 *     page starts at granule - samples + k * frame_samples. Granules only grow; a jump
 *     (encoder restarted, fell behind) shows as a page whose start is past the previous end.
 *   - the slot's generation changes when the source space ends or restarts its stream (the
 *     rendition ends with it and is made again for the new stream).
 *
 * Bounds: a rendition encodes only while it has listeners (the workers' conns[] for its slot)
 * or, for AAC, while aac-always is set; its encoder stops rendition-linger-ms after the last
 * listener left. Renditions never take the last rendition-reserve free slots (a rendition
 * without a slot answers 503 with Retry-After, counted), and an idle one gives its slot back
 * when spaces need it. An encoder never encodes faster than real time (past a small start
 * credit it skips to the live edge, counted), nor more than a few pages per pass.
 */
#ifndef ROSTRUM_TRANSCODE_TRANSCODE_H
#define ROSTRUM_TRANSCODE_TRANSCODE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "event/loop.h"
#include "shm/shared.h"
#include "util/buf.h"

/* ---- the codec: Opus packets in, AAC or MP3 frames out (codec.c) ------------------------ */

struct rcodec;

/* A decoder for an Opus stream of <channels> (1 or 2) with <output_gain> (Q7.8 dB) and an
 * encoder of <kind> at <kbps>. Returns it, or NULL with the reason in <err>. */
struct rcodec *rcodec_new(int kind, int channels, int output_gain, int kbps, char *err,
                          size_t errlen);
void rcodec_free(struct rcodec *c);
/* Decodes Opus packet <pkt> (<len> bytes) whose first sample is at <pts> on the timeline (48 kHz
 * granule units) and encodes what is due. Whole frames are appended to <out>; <*samples> grows
 * by their duration and <*end> becomes where the last one ends (see the contract above).
 * Returns the number of frames appended, or -1 on a decoder or encoder error. */
int rcodec_packet(struct rcodec *c, const unsigned char *pkt, size_t len, int64_t pts,
                  struct buf *out, uint32_t *samples, int64_t *end);
/* Samples per frame of the encoder (1024 for AAC, 1152 for MP3 at 48 kHz). */
int rcodec_frame_samples(const struct rcodec *c);

/* Writes the 7-byte ADTS header (ISO/IEC 13818-7 6.2, 14496-3 1.A.2) of an AAC-LC frame of
 * <payload> bytes, 48 kHz, <channels> into <out>. Returns 0, or -1 if the frame is too long. */
int adts_header(unsigned char out[7], size_t payload, int channels);

/* ---- the renditions of the spaces (transcode.c) ----------------------------------------- */

struct rendition;

/* Owned by the main process (embedded in its struct); set the borrowed fields, then
 * transcode_init. */
struct transcode {
    struct loop *loop;
    struct shared *sh;
    const struct config *cfg;
    int *published; /* set when pages were published (the audience is woken) */
    struct loop_timer timer;
    struct rendition *r[SHARED_MAX_SPACES]; /* by rendition slot; NULL: not one of ours */
};

/* Starts the renditions' upkeep. Rendition slots already in the table (left by the binary
 * before an upgrade) are taken over: their listeners stay, their encoders start again at the
 * live edge. */
void transcode_init(struct transcode *t);
/* Ends every rendition (their listeners are closed by their processes) and stops. */
void transcode_free(struct transcode *t);
/* With no free slot for a new space: ends the rendition with the fewest listeners (an idle one
 * first) so the space can have its slot. Returns 1 if one was ended (struct spaces.reclaim). */
int transcode_reclaim(void *arg);
/* Makes the renditions catch up with their sources now (pages were published). */
void transcode_pump(struct transcode *t);

#endif
