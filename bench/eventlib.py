"""bench/eventlib.py: the event-day checks bench/event and tests/integration/test_event.py share.

- recording_check(): reads a space's recording (Ogg/Opus, as rostrum wrote it), parses its
  pages itself and decodes it with ffmpeg; says whether it is one logical stream, starts at
  the stream's first second, how long it is (by granule and by decoded samples), and whether the
  lobby part is silent and the programme part (past the go-live's live_granule) has sound.
- pair_clicks(): pairs rostrum-speak --clicks due times with another speaker's
  --detect-clicks arrivals (as bench/stage-latency does): mouth-to-ear per click.
- pct(): a nearest-rank percentile.

Standard library only (plus the ffmpeg binary).
"""

import array
import math
import struct
import subprocess

RATE = 48000
LOUD = 3277  # as src/speak/detect.h: -20 dBFS


def pct(v, q):
    """The <q>-th percentile of <v> (nearest rank), None if empty."""
    if not v:
        return None
    s = sorted(v)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def ogg_pages(data):
    """[(offset, granule, serial, seq, flags, body)] of the whole pages in <data>; stops at the
    first byte that is not a page (the caller compares the bytes used with the file's size)."""
    out, off, n = [], 0, len(data)
    while off + 27 <= n and data[off:off + 4] == b"OggS" and data[off + 4] == 0:
        nseg = data[off + 26]
        if off + 27 + nseg > n:
            break
        size = 27 + nseg + sum(data[off + 27:off + 27 + nseg])
        if off + size > n:
            break
        granule, serial, seq = struct.unpack_from("<qII", data, off + 6)
        out.append((off, granule, serial, seq, data[off + 5], data[off + 27 + nseg:off + size]))
        off += size
    return out, off


def pair_clicks(sent, heard, window_ms=500):
    """[(due ms, mouth-to-ear ms)]: each heard click paired with the latest click due at most
    <window_ms> before it (CLOCK_MONOTONIC ms on both sides)."""
    out, s = [], sorted(sent)
    for h in heard:
        near = [t for t in s if 0 <= h - t <= window_ms]
        if near:
            out.append((max(near), h - max(near)))
    return out


def recording_check(path, live_granule=None, page_ms=200, ffmpeg="ffmpeg", timeout=120):
    """The figures of the recording at <path> (see the module's note). <live_granule>: the
    go-live's, from the state document (None: no lobby/programme split)."""
    data = open(path, "rb").read()
    pages, used = ogg_pages(data)
    r = {"bytes": len(data), "whole_pages_bytes": used, "pages": len(pages)}
    if len(pages) < 3 or not pages[0][5].startswith(b"OpusHead"):
        r["error"] = "not an Ogg/Opus file with audio pages"
        return r
    pre_skip = struct.unpack_from("<H", pages[0][5], 10)[0]
    audio = pages[2:]
    r["serials"] = len({p[2] for p in pages})
    r["seq_gaps"] = sum(1 for a, b in zip(pages, pages[1:]) if b[3] != a[3] + 1)
    r["pre_skip"] = pre_skip
    # the first audio page holds at most one page of audio: the stream's first second is there
    r["first_page_ms"] = (audio[0][1] - pre_skip) * 1000.0 / RATE
    r["duration_granule_s"] = (audio[-1][1] - pre_skip) / RATE
    r["eos"] = bool(pages[-1][4] & 4)
    dec = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le",
                          "-ac", "1", "-ar", str(RATE), "-"], capture_output=True,
                         timeout=timeout)
    r["ffmpeg_rc"] = dec.returncode
    r["ffmpeg_errors"] = dec.stderr.decode(errors="replace").strip()[-400:]
    pcm = array.array("h")
    pcm.frombytes(dec.stdout[:len(dec.stdout) // 2 * 2])
    r["duration_decoded_s"] = len(pcm) / RATE
    if live_granule is not None:
        cut = max(0, min(len(pcm), live_granule - pre_skip))
        r["lobby_s"] = cut / RATE
        # the lobby is silence (the green room is not heard); the programme has the clicks
        r["lobby_peak"] = max((abs(x) for x in pcm[:cut]), default=0)
        first = next((i for i in range(cut, len(pcm)) if abs(pcm[i]) >= LOUD), None)
        r["programme_first_sound_ms"] = None if first is None else (first - cut) * 1000.0 / RATE
        r["programme_s"] = (len(pcm) - cut) / RATE
    r["page_ms"] = page_ms
    return r
