/*
 * record: a space's programme on disk (issue 12, item 2), and what replay needs of the file.
 *
 * A recording is rostrum's own Ogg/Opus stream as the listeners get it: the header pages
 * (OpusHead, OpusTags) and then every page the space publishes, written by the main process
 * from the bytes it puts in the ring. Nothing is re-encoded. The file is <dir>/<id>.ogg; while
 * it grows a marker <dir>/<id>.live sits beside it, removed once the recording is closed whole.
 *
 * Durability (fdatasync policy): the pages go out with write() as they are published (a page
 * of 200 ms is one write), so a reader sees them at once ("readable while it grows"). The file
 * is fdatasync()ed when it is opened (headers), then at most once every <sync_ms> (the config's
 * record-sync-s, 5 s by default) when a page is written, and when it is closed. A power cut
 * loses at most the last <sync_ms> of audio; a crash or kill -9 of the server loses nothing
 * the kernel took.
 *
 * Repair: a recording whose marker is still there at start (the server died while it grew) is
 * scanned page by page (capture pattern, sizes, CRC-32 of RFC 3533) and cut after its last
 * whole page; everything before it is kept as it was.
 *
 * Errors: a write that fails or comes up short (ENOSPC, EFBIG, EIO...) stops the recording:
 * the file is cut back to its last whole page, closed, and the error returned once. The
 * caller logs and counts it; the live stream does not depend on the file in any way.
 */
#ifndef ROSTRUM_RECORD_RECORD_H
#define ROSTRUM_RECORD_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define RECORD_ID_MAX 128

struct recording {
    int fd;               /* -1 when not recording */
    int sync_ms;
    int64_t last_sync_ms; /* when it was last fdatasync()ed */
    uint64_t size;        /* bytes of whole pages written */
    uint64_t syncs;       /* fdatasync() calls made */
    char id[RECORD_ID_MAX];
    char path[512];       /* <dir>/<id>.ogg */
    char live[512];       /* <dir>/<id>.live */
};

/* Sets <r> to "not recording". */
void recording_init(struct recording *r);
/* Creates <dir> if needed and starts <dir>/<id>.ogg with <hdr> (the Ogg header pages).
 * Returns 0, or -errno (nothing left open; a half-made file is removed). */
int recording_open(struct recording *r, const char *dir, const char *id,
                   const unsigned char *hdr, size_t hlen, int sync_ms, int64_t now_ms);
/* Carries on <dir>/<id>.ogg, which another process was recording (an upgrade: the space goes
 * on in this one): cut to its whole pages, then appended to. Returns 0 or -errno. */
int recording_resume(struct recording *r, const char *dir, const char *id, int sync_ms,
                     int64_t now_ms);
/* Appends one whole page. Returns 0, or -errno: the recording has stopped (cut back to its
 * last whole page, closed; r->fd is -1). Does nothing (returns 0) when not recording. */
int recording_page(struct recording *r, const unsigned char *page, size_t len, int64_t now_ms);
/* Ends the recording whole: fdatasync, close, the marker removed. Safe when not recording. */
void recording_close(struct recording *r);

/* Ogg's CRC-32 (RFC 3533 section 6: polynomial 0x04c11db7, no reflection, 0 start). */
uint32_t record_crc(uint32_t crc, const unsigned char *p, size_t len);
/* Checks the page at the start of <p> (<len> bytes): returns its length if it is whole with
 * a good CRC, -2 if <len> is too short to tell, -1 if it is no valid page. Fills <granule>. */
long record_page_check(const unsigned char *p, size_t len, uint64_t *granule);

/* Cuts <path> after its last whole page. Returns the bytes kept (>= 0) or -errno; <cut> gets
 * the bytes removed. */
long long recording_repair(const char *path, uint64_t *cut);
/* Repairs every recording of <dir> whose marker is there, and removes the marker. Returns
 * how many it repaired (a missing directory is 0). */
int recording_repair_dir(const char *dir);

/* 1 if <id> is a valid recording id: 1..RECORD_ID_MAX-1 bytes of [A-Za-z0-9._-], not
 * starting with '.'. Ids come from URLs: this is what keeps them inside the directory. */
int record_id_valid(const char *id, size_t len);

/* Parses the value of an HTTP Range header (RFC 9110 section 14.2) for a resource of <size>
 * bytes: one range, "bytes=FIRST-", "bytes=FIRST-LAST" or "bytes=-SUFFIX". Returns <len>
 * (bytes consumed) with [*first, *last] set, -1 if the value is malformed or asks several
 * ranges (the caller ignores it and sends the whole file, as the RFC allows), or -3 if it is
 * well-formed but unsatisfiable (416). Bounded: at most <len> bytes read, numbers of at most
 * 18 digits. */
long record_range_parse(const char *s, size_t len, uint64_t size, uint64_t *first,
                        uint64_t *last);

/* The granule -> byte offset index of a recording: the offset of the first page whose
 * granule reaches each whole second, scanned from the file's page headers (<fd>, <size>
 * bytes; a pread per page, bounded by <max> entries). Writes at most <max> offsets to <off>
 * (entry i: second i; second 0 is the first audio page) and returns how many, or -errno.
 * The scan stops once <max> seconds are indexed (the cost is a pread per page up to there).
 * <info> (may be NULL) gets where the header pages end, and the last granule and the end of
 * the pages scanned: the file's own when it is shorter than <max> seconds. */
struct record_info {
    uint64_t hdr_end;      /* bytes of the header pages (granule 0) at the start */
    uint64_t last_granule; /* of the last whole page scanned */
    uint64_t pre_skip;     /* from OpusHead */
    uint64_t scanned;      /* bytes of whole pages scanned */
};
long record_index(int fd, uint64_t size, uint64_t *off, long max, struct record_info *info);

struct buf;
/* Appends the recordings of <dir> as a JSON array (at most <max>, newest first by name
 * order within a mount) to <b>: id, mount, bytes, growing (its marker is there), url.
 * Returns how many it listed. */
int record_list_json(const char *dir, struct buf *b, int max);
/* Deletes recording <id> of <dir>: 0, -ENOENT, -EBUSY (still growing), -EINVAL (bad id). */
int record_delete(const char *dir, const char *id);

#endif
