/*
 * hls/fmp4: the few ISO BMFF (ISO/IEC 14496-12) boxes of a CMAF audio track, written by hand:
 * an init segment (ftyp + moov with empty sample tables and mvex/trex) and media fragments
 * (moof/mfhd/traf/tfhd/tfdt/trun + mdat). One track, timescale 48000, every sample a sync
 * sample, so nothing here depends on the codec but the sample entry:
 *
 *   Opus  "Opus" AudioSampleEntry + dOps (Opus-in-ISOBMFF mapping, opus-codec.org), priming
 *         (pre-skip) trimmed with an edit list whose media_time is the pre-skip
 *   AAC   "mp4a" AudioSampleEntry + esds (ISO/IEC 14496-1 ES_Descriptor, its
 *         DecoderSpecificInfo the AudioSpecificConfig of ISO/IEC 14496-3 taken from an ADTS
 *         header), samples are raw access units (ADTS headers stripped)
 *
 *   init:      ftyp | moov( mvhd trak( tkhd edts(elst) mdia( mdhd hdlr minf( smhd dinf stbl(
 *                                       stsd(entry) stts stsc stsz stco ))))  mvex(trex) )
 *   fragment:  moof( mfhd traf( tfhd tfdt trun ) ) | mdat
 *
 * Pure: bytes in, bytes out (util/buf), nothing read from the network.
 */
#ifndef ROSTRUM_HLS_FMP4_H
#define ROSTRUM_HLS_FMP4_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define FMP4_TIMESCALE 48000

/* What the sample entry says about the track. */
struct fmp4_track {
    int aac;               /* 0: Opus, 1: AAC */
    int channels;          /* 1 or 2 */
    uint32_t rate;         /* sample rate of the entry (Opus: always 48000) */
    int pre_skip;          /* Opus: samples of priming (dOps and the edit list); AAC: delay */
    uint32_t input_rate;   /* Opus: OpusHead's input sample rate (informational) */
    int16_t output_gain;   /* Opus: Q7.8 dB */
    unsigned char asc[2];  /* AAC: AudioSpecificConfig */
    uint32_t avg_bitrate;  /* AAC: esds figures (0: unknown) */
};

/* Appends the init segment of <t> to <out>. */
void fmp4_init(struct buf *out, const struct fmp4_track *t);

/* Appends a fragment of <n> samples (<sizes>/<durations> each, durations in 1/48000 s), the
 * first decoded at <base_time>, numbered <seq> (mfhd: must grow from fragment to fragment),
 * and the mdat header for sum(sizes) payload bytes. The caller appends the payload itself
 * right after. <n> >= 1. */
void fmp4_fragment_head(struct buf *out, uint32_t seq, uint64_t base_time, const uint32_t *sizes,
                        const uint32_t *durations, int n);

/* An ADTS header (ISO/IEC 14496-3, 1.A.2) as far as an init segment needs it. */
struct adts_info {
    int header_len;    /* 7, or 9 with a CRC */
    int frame_len;     /* whole frame, header included */
    int channels;      /* 1..7 (channel_configuration; 0 is refused) */
    uint32_t rate;     /* from sampling_frequency_index */
    unsigned char asc[2];
    int blocks;        /* raw data blocks in the frame (1 in practice) */
};

/* Parses the ADTS header at <p> (<len> bytes). Returns the header length (7 or 9) with <out>
 * filled, -2 if <len> is too short to tell, -1 if it is not an ADTS header rostrum can carry
 * (no sync, a reserved rate, channel configuration 0, a frame shorter than its header). */
int adts_parse(const unsigned char *p, size_t len, struct adts_info *out);

#endif
