"""Recording and replay (issue 12, item 2): every page a space publishes goes to
<record-dir>/<id>.ogg as it is; the file is whole after the space ends, repaired after a
kill -9, and a disk that fills stops the recording and never the live stream."""

import os
import signal
import subprocess
import time

import json
import shutil
from pathlib import Path

from harness import (Skip, audio_seconds, check, check_ffmpeg_decode, check_ogg_opus_stream,
                     ffmpeg_listener, ffmpeg_source, http_request, listen, make_opus_file, metric,
                     metrics, mount_status, note, parse_ogg, PySource, test, token_processes,
                     wait_for, wait_live, SERVER_ENV)

HOST_KEY = "recording-host-key"


def recordings(d):
    """The recordings of directory <d>: {id: path}."""
    if not d.exists():
        return {}
    return {p.stem: p for p in d.iterdir() if p.suffix == ".ogg"}


def decode_file(path, seek=None):
    """ffmpeg decodes the whole file or URL (from <seek> s): returns (seconds, stderr)."""
    argv = ["ffmpeg", "-nostdin", "-v", "error"] + (["-ss", str(seek)] if seek else [])
    r = subprocess.run(argv + ["-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                       capture_output=True, timeout=60)
    check(r.returncode == 0, f"ffmpeg could not decode {path}: {r.stderr[-800:]!r}")
    return len(r.stdout) / 96000, r.stderr.decode(errors="replace").strip()


def record_file(ctx, srv, d, seconds):
    """Streams a file of <seconds> to /show until the space ends (grace 0): its recording."""
    src = PySource(srv.stage, "/show")
    check(src.accepted, f"source refused: {src.resp.status}")
    src.stream_file(make_opus_file(ctx, seconds))
    wait_live(srv, "/show")
    src.thread.join(seconds + 10)
    src.sock.close()
    wait_for(lambda: mount_status(srv, "/show") is None, 10, "the space to end")
    path = next(iter(recordings(d).values()))
    wait_for(lambda: not path.with_suffix(".live").exists(), 5, "the recording's marker to go")
    return path


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
    r = http_request(srv.audience, "GET", "/dashboard.json")
    dash = json.loads(r.body)["recordings"]
    check(dash["errors"] == 1 and dash["failed"] == ["show"], f"dashboard recordings: {dash}")
    log = srv.log_text()
    check(log.count("stopped: No space left on device") == 1,
          "the disk-full error is not logged exactly once")
    path = next(iter(recordings(d).values()))
    pages, rest = parse_ogg(path.read_bytes())
    check(not rest, f"the stopped recording ends with {len(rest)} bytes of a torn page")
    check_ogg_opus_stream(pages)
    note(f"disk of 24 KiB full after {audio_seconds(pages):.2f} s recorded; live listeners "
         f"decoded on ({time.monotonic() - t_full:.1f} s after), max gap {gap:.2f} s")


@test(timeout=90, icecast=False)
def test_replay_range_seek_api(ctx):
    d = ctx.tmp / "rec"
    srv = start_recorded(ctx, d, grace_ms=0, extra=["--host-key", HOST_KEY])
    path = record_file(ctx, srv, d, 8)
    data = path.read_bytes()
    rid = path.stem
    size = len(data)
    lst = json.loads(http_request(srv.audience, "GET", "/recordings.json").body)["recordings"]
    check([r["id"] for r in lst] == [rid] and lst[0]["bytes"] == size and not lst[0]["growing"]
          and lst[0]["mount"] == "/show", f"/recordings.json: {lst}")
    url = f"/recordings/{rid}.ogg"
    r = http_request(srv.audience, "GET", url)
    check(r.status == 200 and r.body == data and r.header("Accept-Ranges") == "bytes",
          f"GET {url} -> {r.status}, {len(r.body)} bytes of {size}")
    cases = [("bytes=100-199", 100, 199), ("bytes=-50", size - 50, size - 1),
             (f"bytes={size - 10}-", size - 10, size - 1), (f"bytes=5-{size * 2}", 5, size - 1)]
    for rng, a, b in cases:
        r = http_request(srv.audience, "GET", url, headers=[("Range", rng)])
        check(r.status == 206 and r.body == data[a:b + 1] and
              r.header("Content-Range") == f"bytes {a}-{b}/{size}",
              f"Range {rng} -> {r.status} {r.header('Content-Range')}, {len(r.body)} bytes")
    for rng in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
        r = http_request(srv.audience, "GET", url, headers=[("Range", rng)])
        check(r.status == 416 and r.header("Content-Range") == f"bytes */{size}",
              f"Range {rng} -> {r.status}, want 416 with bytes */{size}")
    for rng in ("bytes=1-2,5-6", "items=0-1", "bytes=9-3", "bytes=x-"):
        r = http_request(srv.audience, "GET", url, headers=[("Range", rng)])
        check(r.status == 200 and r.body == data, f"malformed Range {rng} -> {r.status}")
    st = http_request(srv.audience, "GET", "/recordings/..%2Fx.ogg").status
    check(st in (400, 404), f"/recordings/..%2Fx.ogg -> {st}")
    check(http_request(srv.audience, "GET", "/recordings/nope.ogg").status == 404, "no 404")
    # seeking by time: ffmpeg -ss over HTTP (it seeks with Range requests)
    full, _ = decode_file(srv.url(url))
    secs, err = decode_file(srv.url(url), seek=5)
    check(not err, f"ffmpeg -ss 5 over HTTP reported: {err[-600:]}")
    check(abs(secs - (full - 5)) <= 0.2 + 0.03,
          f"ffmpeg -ss 5 decoded {secs:.3f} s of a {full:.3f} s recording")
    # the index, and ?t=
    idx = json.loads(http_request(srv.audience, "GET", f"/recordings/{rid}.json").body)
    pages = parse_ogg(data)[0]
    starts = {p.offset: p for p in pages}
    check(idx["bytes"] == size and abs(idx["duration_s"] - full) < 0.01 and
          len(idx["seconds"]) == int(full) + 1, f"index: {dict(idx, seconds='...')}")
    for sec, off in enumerate(idx["seconds"]):
        p = starts.get(off)
        check(p is not None, f"index second {sec} -> byte {off}: no page starts there")
        prev = pages[pages.index(p) - 1]
        check(p.granule > sec * 48000 + 312 >= prev.granule or prev.granule == 0,
              f"index second {sec}: the page at {off} (granule {p.granule}) does not hold it")
    r = http_request(srv.audience, "GET", f"{url}?t=3")
    tpages = parse_ogg(r.body)[0]
    check(r.status == 200 and r.body == data[:idx["header_bytes"]] + data[idx["seconds"][3]:],
          f"?t=3 -> {r.status}, {len(r.body)} bytes")
    check_ogg_opus_stream(tpages, allow_jumps=True)
    tsecs, err = decode_file(srv.url(f"{url}?t=3"))
    check(abs(tsecs - (full - 3)) <= 0.25, f"?t=3 decodes {tsecs:.3f} s of {full:.3f} s")
    check(http_request(srv.audience, "GET", f"{url}?t=99").status == 416, "?t= past the end")
    check(http_request(srv.audience, "GET", f"{url}?t=x").status == 400, "bad ?t=")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_replay_reads") == 0, "a replay read still counted open")
    check(metric(vals, "rostrum_replay_bad_ranges_total") == 7, "bad ranges not counted 7")
    # the stage-port API: the host key lists and deletes
    auth = [("Authorization", f"Bearer {HOST_KEY}")]
    check(http_request(srv.stage, "GET", "/api/recordings").status == 401, "no key: not 401")
    r = http_request(srv.stage, "GET", "/api/recordings", headers=auth)
    check(r.status == 200 and json.loads(r.body)["recordings"][0]["id"] == rid, f"API list {r.status}")
    check(http_request(srv.stage, "DELETE", f"/api/recordings/{rid}").status == 401,
          "delete without the key")
    r = http_request(srv.stage, "DELETE", f"/api/recordings/{rid}", headers=auth)
    check(r.status == 200 and not path.exists(), f"API delete -> {r.status}")
    check(http_request(srv.stage, "DELETE", f"/api/recordings/{rid}", headers=auth).status == 404,
          "deleting twice is not 404")
    check(http_request(srv.audience, "GET", url).status == 404, "a deleted recording served")
    note(f"replay: {size} bytes, {full:.3f} s; -ss 5 over HTTP decoded {secs:.3f} s, ?t=3 "
         f"{tsecs:.3f} s; 4 ranges 206, 3 x 416, 4 malformed -> 200")


VOD_PAGE = Path(__file__).resolve().parent.parent / "browser" / "vod.mjs"


@test(timeout=120, icecast=False)
def test_replay_hls_vod(ctx):
    """A recording as HLS VOD: the playlist is VOD with an end, its segments are the
    recording's packets, ffmpeg decodes it all, and hls.js in Chromium plays it to the end;
    the listener page lists it under Past spaces and its player seeks and plays."""
    d = ctx.tmp / "rec"
    srv = start_recorded(ctx, d, grace_ms=0)
    path = record_file(ctx, srv, d, 7)
    rid = path.stem
    r = http_request(srv.audience, "GET", f"/recordings/{rid}.m3u8")
    text = r.body.decode()
    check(r.status == 200 and "#EXT-X-PLAYLIST-TYPE:VOD" in text and
          text.rstrip().endswith("#EXT-X-ENDLIST"), f"VOD playlist: {r.status}\n{text[:400]}")
    segs = [l for l in text.splitlines() if l.endswith(".m4s")]
    check(len(segs) == 4, f"7 s in 2 s segments: want 4, got {len(segs)}")
    check(http_request(srv.audience, "GET", f"/recordings/{rid}/99.m4s").status == 404,
          "a segment past the end")
    secs, err = decode_file(srv.url(f"/recordings/{rid}.m3u8"))
    full, _ = decode_file(path)
    check(abs(secs - full) < 0.05, f"ffmpeg decoded {secs:.3f} s of the VOD, {full:.3f} s of "
                                   f"the Ogg file")
    node = shutil.which("node")
    check(node and (VOD_PAGE.parent / "node_modules" / "playwright-core").is_dir(),
          "node or playwright-core missing")
    check(http_request(srv.audience, "GET", "/hls.min.js").status == 200, "no /hls.min.js")
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    play = ctx.spawn("vod", [node, VOD_PAGE, srv.url(""), rid], env=env,
                     stdout=ctx.tmp / "vod.out")
    try:
        rc = play.wait(100)
    finally:
        play.signal(signal.SIGTERM)
    out = play.output().decode(errors="replace").strip()
    check(rc == 0, f"vod.mjs exited with {rc}: {out[-1500:]}\n{play.tail(15)}")
    res = json.loads(out.splitlines()[-1])
    p, pg = res["play"], res["page"]
    check(p["playlist_type"] == "VOD" and abs(p["played"] - full) < 0.3,
          f"hls.js: {p}")
    check(pg["title"] == "/show" and abs(pg["duration"] - full) < 0.3, f"page's player: {pg}")
    reads = metric(metrics(srv)[0], "rostrum_replay_reads_total")
    check(reads >= 1, "the page's player made no recording read")
    note(f"HLS VOD: {len(segs)} segments; ffmpeg decoded {secs:.3f} s (Ogg {full:.3f} s); "
         f"hls.js {p['version']} played {p['played']:.3f} s to 'ended', duration "
         f"{p['duration']:.3f} s; the listener page lists it under Past spaces, its player "
         f"seeked to {pg['seeked_to']:.2f} s and played to the end ({int(reads)} reads)")


@test(timeout=90, icecast=False)
def test_recording_through_upgrade(ctx):
    """SIGUSR2 (the new binary takes over): the recording goes on in the same file, one
    Ogg stream with no page lost, whole at the end."""
    from harness import Server
    from test_upgrade import installed_copy, replace_binary, upgrade
    d = ctx.tmp / "rec"
    exe = installed_copy(ctx)
    srv = Server(ctx, exe, grace_ms=0, extra=["--record", "1", "--record-dir", str(d),
                                              "--workers", "1"])
    src = PySource(srv.stage, "/show")
    check(src.accepted, f"source refused: {src.resp.status}")
    src.stream_file(make_opus_file(ctx, 8))
    wait_live(srv, "/show")
    time.sleep(3)
    replace_binary(ctx, exe)
    upgrade(srv)
    check("carrying on recording" in srv.log_text(), "the new process did not carry on")
    src.thread.join(20)
    src.sock.close()
    wait_for(lambda: mount_status(srv, "/show") is None, 10, "the space to end")
    recs = recordings(d)
    check(len(recs) == 1, f"want one recording, found {sorted(recs)}")
    path = next(iter(recs.values()))
    wait_for(lambda: not path.with_suffix(".live").exists(), 5, "the recording's marker to go")
    pages, rest = parse_ogg(path.read_bytes())
    check(not rest and all(p.crc_ok for p in pages), "torn or bad pages")
    check_ogg_opus_stream(pages, allow_final_eos=True)  # one serial, no page missing
    check(abs(pages[-1].granule / 48000 - 8.0) <= 0.23,
          f"the recording ends at {pages[-1].granule / 48000:.3f} s, the source sent 8 s")
    secs, err = decode_file(path)
    check(not err, f"ffmpeg errors: {err[-600:]}")
    note(f"upgrade 3 s in: one recording of {len(pages)} pages, {secs:.3f} s decoded")


@test(timeout=60, icecast=False)
def test_replay_bounded_like_listeners(ctx):
    """A recording read counts like a listener: with max-listeners 1 taken by a live listener,
    a read is 503 with Retry-After (counted), and served again once the listener leaves."""
    d = ctx.tmp / "rec"
    srv = start_recorded(ctx, d, grace_ms=0, extra=["--max-listeners", "1"])
    path = record_file(ctx, srv, d, 3)
    url = f"/recordings/{path.stem}.ogg"
    check(http_request(srv.audience, "GET", url).status == 200, "a read with room")
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = listen(ctx, srv, "/live")
    check(lst.resp.status == 200, f"the listener: {lst.resp.status}")
    wait_for(lambda: http_request(srv.audience, "GET", url).status == 503, 5,
             "a recording read to be refused with max-listeners taken")
    r = http_request(srv.audience, "GET", url)
    check(r.status == 503 and r.header("Retry-After"), f"refused read: {r.status}")
    vals, _ = metrics(srv)
    refused = metric(vals, "rostrum_replay_refused_total")
    check(refused >= 2, f"replay_refused_total = {refused}")
    lst.close()
    wait_for(lambda: http_request(srv.audience, "GET", url).status == 200, 10,
             "a read to be served again once the listener left")
    note(f"max-listeners 1: {int(refused)} reads refused (503) while a listener held it, "
         "served again after")


@test(timeout=60, icecast=False)
def test_replay_stuck_reader_closed(ctx):
    """A reader that takes nothing is closed after response-timeout-ms; while it is held it
    is counted open (rostrum_replay_reads)."""
    import socket
    d = ctx.tmp / "rec"
    d.mkdir()
    (d / "big-1.ogg").write_bytes(os.urandom(1 << 20) * 24)  # 24 MiB: more than sockets hold
    srv = start_recorded(ctx, d, extra=["--response-timeout-ms", "1500"])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.audience))
    s.sendall(b"GET /recordings/big-1.ogg HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_replay_reads") == 1, 5,
             "the read to be counted open")
    t0 = time.monotonic()
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_replay_reads") == 0, 10,
             "the stuck read to be closed")
    took = time.monotonic() - t0
    s.settimeout(5)
    got = 0
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += len(b)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    check(got < 24 << 20, f"the stuck reader got all {got} bytes")
    note(f"a reader taking nothing closed {took:.1f} s after it was counted (timeout 1.5 s), "
         f"having got {got} of {24 << 20} bytes")


@test(timeout=60, icecast=False)
def test_recording_turned_on_by_reload(ctx):
    """SIGHUP with `record = 1`: a live space starts recording at once, from its header pages
    (the file decodes on its own); the live stream is not touched."""
    d = ctx.tmp / "rec"
    conf = ctx.tmp / "rostrum.conf"
    conf.write_text(f"record = 0\nrecord-dir = {d}\n")
    srv = ctx.start_server(config=str(conf), grace_ms=0)
    src = PySource(srv.stage, "/show")
    check(src.accepted, f"source refused: {src.resp.status}")
    src.stream_file(make_opus_file(ctx, 6))
    wait_live(srv, "/show")
    lst = listen(ctx, srv, "/show")
    time.sleep(1.5)
    check(not recordings(d), "recorded with record = 0")
    conf.write_text(f"record = 1\nrecord-dir = {d}\n")
    srv.proc.signal(signal.SIGHUP)
    wait_for(lambda: recordings(d), 5, "the reload to start a recording")
    src.thread.join(20)
    src.sock.close()
    wait_for(lambda: lst.end is not None, 10, "the space to end")
    path = next(iter(recordings(d).values()))
    wait_for(lambda: not path.with_suffix(".live").exists(), 5, "the recording's marker to go")
    pages = parse_ogg(path.read_bytes())[0]
    check_ogg_opus_stream(pages, allow_final_eos=True, allow_jumps=True)
    secs, err = decode_file(path)
    check(not err and 2.5 <= secs <= 5.0, f"the recording from the reload on decodes {secs:.2f} s "
                                          f"({err[-300:]})")
    check_ogg_opus_stream(parse_ogg(lst.data())[0], allow_final_eos=True)  # live: unbroken
    note(f"record turned on by SIGHUP 1.5 s in: {secs:.2f} s recorded of the 6 s programme")
