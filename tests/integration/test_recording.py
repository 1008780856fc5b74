"""Recording and replay (issue 12, item 2): every page a space publishes goes to
<record-dir>/<id>.ogg as it is; the file is whole after the space ends, repaired after a
kill -9, and a disk that fills stops the recording and never the live stream."""

import os
import signal
import subprocess
import time

from harness import (Skip, audio_seconds, check, check_ffmpeg_decode, check_ogg_opus_stream,
                     ffmpeg_listener, ffmpeg_source, listen, make_opus_file, metric, metrics,
                     mount_status, note, parse_ogg, PySource, test, token_processes, wait_for,
                     wait_live, SERVER_ENV)


def recordings(d):
    """The recordings of directory <d>: {id: path}."""
    if not d.exists():
        return {}
    return {p.stem: p for p in d.iterdir() if p.suffix == ".ogg"}


def decode_file(path):
    """ffmpeg decodes the whole file: returns (seconds of PCM, stderr)."""
    r = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le",
                        "-ac", "1", "-ar", "48000", "-"], capture_output=True, timeout=60)
    check(r.returncode == 0, f"ffmpeg could not decode {path.name}: {r.stderr[-800:]!r}")
    return len(r.stdout) / 96000, r.stderr.decode(errors="replace").strip()


def start_recorded(ctx, d, **kw):
    extra = ["--record", "1", "--record-dir", str(d), "--record-sync-s", "1"]
    return ctx.start_server(extra=extra + list(kw.pop("extra", ())), **kw)


@test(timeout=60, icecast=False)
def test_recording_whole(ctx):
    d = ctx.tmp / "rec"
    srv = start_recorded(ctx, d, grace_ms=0)
    src = PySource(srv.stage, "/show")
    check(src.accepted, f"source refused: {src.resp.status}")
    src.stream_file(make_opus_file(ctx, 6))
    wait_live(srv, "/show")
    st = mount_status(srv, "/show")
    check(st.get("recording") == "on", f"status says recording={st.get('recording')!r}")
    lst = listen(ctx, srv, "/show")
    src.thread.join(20)
    src.sock.close()
    wait_for(lambda: lst.end is not None, 10, "the space to end after its source")
    recs = recordings(d)
    check(len(recs) == 1, f"want one recording, found {sorted(recs)}")
    path = next(iter(recs.values()))
    check(path.name.startswith("show-"), f"recording named {path.name}")
    wait_for(lambda: not path.with_suffix(".live").exists(), 5, "the recording's marker to go")
    data = path.read_bytes()
    pages, rest = parse_ogg(data)
    check(not rest, f"{len(rest)} bytes after the last whole page")
    check(all(p.crc_ok for p in pages), "a page of the recording fails its CRC")
    check_ogg_opus_stream(pages, allow_final_eos=True)
    live = parse_ogg(lst.data())[0]
    # the live stream's pages are the recording's pages, byte for byte, up to its last one
    check(live and live[-1].raw == pages[-1].raw,
          "the listener's last page is not the recording's last page")
    first_live = [p.raw for p in pages].index(live[2].raw) if len(live) > 2 else -1
    check(first_live >= 2 and [p.raw for p in pages[first_live:]] == [p.raw for p in live[2:]],
          "the recording's pages differ from what the listener got")
    rec_s = pages[-1].granule / 48000
    check(abs(rec_s - 6.0) <= 0.2 + 0.03,
          f"recording ends at granule {pages[-1].granule} ({rec_s:.3f} s), the source sent 6 s")
    secs, err = decode_file(path)
    check(not err, f"ffmpeg reported errors decoding the recording: {err[-800:]}")
    pre_skip = int.from_bytes(pages[0].body[10:12], "little")
    check(abs(secs - (pages[-1].granule - pre_skip) / 48000) < 0.01,
          f"decoded {secs:.3f} s of a recording whose last granule is {rec_s:.3f} s")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_recordings_started_total") == 1, "recordings_started != 1")
    check(metric(vals, "rostrum_recordings_active") == 0, "a recording still active")
    check(metric(vals, "rostrum_recording_bytes_total") == len(data),
          f"recording_bytes_total {metric(vals, 'rostrum_recording_bytes_total')} != "
          f"{len(data)} bytes on disk")
    check(metric(vals, "rostrum_recording_syncs_total") >= 2, "no fdatasync counted")
    note(f"recording: {len(pages)} pages, {len(data)} bytes, {rec_s:.3f} s (source 6 s), "
         f"ffmpeg decoded {secs:.3f} s; the listener's pages identical")


@test(timeout=70, icecast=False)
def test_recording_survives_kill9(ctx):
    d = ctx.tmp / "rec"
    srv = start_recorded(ctx, d)
    src = ffmpeg_source(ctx, srv, "/show", 440)
    wait_live(srv, "/show", proc=src)
    time.sleep(4)
    path = next(iter(recordings(d).values()))
    check(path.with_suffix(".live").exists(), "no marker beside a growing recording")
    # readable while it grows: whole pages, and they decode
    grow1 = path.read_bytes()
    check(parse_ogg(grow1)[0][-1].granule > 0, "the growing recording has no audio page yet")
    srv.proc.signal(signal.SIGKILL)
    srv.proc.p.wait(5)
    srv.stopped = True  # nothing to shut down cleanly: its workers follow it
    wait_for(lambda: not token_processes(srv.mark, SERVER_ENV), 10, "the workers to go")
    before = path.read_bytes()
    check(before.startswith(grow1), "the recording changed under a reader")
    # a torn write, as a crash in the middle of one leaves it: half a page at the end
    whole, _ = parse_ogg(before)
    torn = whole[-1].raw[: len(whole[-1].raw) // 2]
    with open(path, "ab") as f:
        f.write(torn)
    srv2 = start_recorded(ctx, d)
    after = path.read_bytes()
    check(after == before[: sum(len(p.raw) for p in whole)],
          f"repair kept {len(after)} bytes of {len(before) + len(torn)}; the whole pages before "
          f"the kill were {sum(len(p.raw) for p in whole)} bytes")
    check(not path.with_suffix(".live").exists(), "the marker is still there after the repair")
    check("repaired after an unclean stop" in srv2.log_text(), "the repair was not logged")
    pages = parse_ogg(after)[0]
    check_ogg_opus_stream(pages)
    secs, err = decode_file(path)
    check(not err, f"ffmpeg errors on the repaired recording: {err[-800:]}")
    pre_skip = int.from_bytes(pages[0].body[10:12], "little")
    check(abs(secs - (pages[-1].granule - pre_skip) / 48000) < 0.01 and secs >= 2.5,
          f"the repaired recording decodes {secs:.2f} s, its last page ends at "
          f"{pages[-1].granule / 48000:.2f} s (4 s after going live)")
    note(f"kill -9 after 4 s: {len(before)} bytes on disk, {len(torn)} torn bytes added, "
         f"repaired to {len(after)} bytes, decodes {secs:.2f} s")


@test(timeout=70, icecast=False)
def test_recording_disk_full(ctx):
    if os.geteuid() != 0:
        raise Skip("a small tmpfs for the disk-full test needs root")
    d = ctx.tmp / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(d)],
                       capture_output=True)
    if r.returncode != 0:
        raise Skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    ctx.on_cleanup(lambda: subprocess.run(["umount", "-l", str(d)]))
    srv = start_recorded(ctx, d)
    src = ffmpeg_source(ctx, srv, "/show", 440)
    wait_live(srv, "/show", proc=src)
    dec = ffmpeg_listener(ctx, srv, "/show", 12)
    raw = listen(ctx, srv, "/show")

    def failed():
        st = mount_status(srv, "/show")
        return st and st.get("recording") == "failed"

    wait_for(failed, 20, "status to show the recording failed (24 KiB disk)")
    t_full = time.monotonic()
    check_ffmpeg_decode(dec, 12, timeout=30)
    check(raw.end is None, f"a raw listener's stream ended ({raw.end}) when the disk filled")
    gap = raw.max_gap(start=raw.t0 + 0.5)
    check(gap < 1.6, f"the raw listener got nothing for {gap:.2f} s")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_recording_errors_total") == 1,
          f"recording_errors_total = {metric(vals, 'rostrum_recording_errors_total')}")
    check(metric(vals, "rostrum_recordings_active") == 0, "the failed recording counts as active")
    log = srv.log_text()
    check(log.count("stopped: No space left on device") == 1,
          "the disk-full error is not logged exactly once")
    path = next(iter(recordings(d).values()))
    pages, rest = parse_ogg(path.read_bytes())
    check(not rest, f"the stopped recording ends with {len(rest)} bytes of a torn page")
    check_ogg_opus_stream(pages)
    note(f"disk of 24 KiB full after {audio_seconds(pages):.2f} s recorded; live listeners "
         f"decoded on ({time.monotonic() - t_full:.1f} s after), max gap {gap:.2f} s")
