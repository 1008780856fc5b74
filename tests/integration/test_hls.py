"""HLS and LL-HLS (issue 11, item 2): ffmpeg decodes /<space>.m3u8; the blocking-reload rules
(too far ahead -> 400, _HLS_skip -> delta update, a held request answered when its part is
published, 503 past 3 target durations when the source stops); held requests bounded; a
restarted space gets new names and media sequence numbers that never go back; every worker
answers the same part with the same bytes."""

import json
import re
import shutil
import signal
import subprocess
import threading
import time

from harness import (ROOT, check, check_tone, ffmpeg_source, http_request, metric, metrics, note,
                     skip_part, test, wait_for, wait_live)


HLS_PAGE = ROOT / "tests" / "browser" / "hls.mjs"
MODULES = ROOT / "tests" / "browser" / "node_modules"


def get(srv, path, timeout=10.0):
    return http_request(srv.audience, "GET", path, timeout=timeout)


def media(srv, query="", mount="live", timeout=10.0):
    r = get(srv, f"/hls/{mount}/o.m3u8" + (f"?{query}" if query else ""), timeout=timeout)
    return r, r.body.decode() if r.status == 200 else ""


def tag(text, name):
    m = re.search(rf"^#{name}:(.*)$", text, re.M)
    return m.group(1) if m else None


def hint(text):
    """(msn, part) of the EXT-X-PRELOAD-HINT, and the epoch."""
    m = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^/]+)/o(\d+)\.(\d+)\.m4s"', text)
    check(m, f"no preload hint in:\n{text}")
    return int(m.group(2)), int(m.group(3)), m.group(1)


def max_age(r):
    m = re.search(r"max-age=(\d+)", r.header("Cache-Control", ""))
    return int(m.group(1)) if m else None


def live_playlist(srv, parts=4, timeout=20, segments=0, rendition="o"):
    """Waits until the media playlist lists at least <parts> parts and <segments> whole
    segments; returns its text."""
    out = {}

    def ready():
        r = get(srv, f"/hls/live/{rendition}.m3u8")
        text = out["t"] = r.body.decode() if r.status == 200 else ""
        return (r.status == 200 and text.count("#EXT-X-PART:") >= parts and
                text.count("#EXTINF:") >= segments)

    wait_for(ready, timeout, "the media playlist to list parts")
    return out["t"]


@test(timeout=90, icecast=False)
def test_hls_ffmpeg_decodes_playlist(ctx):
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    text = live_playlist(srv, parts=4, segments=1)
    mv = get(srv, "/live.m3u8")
    check(mv.status == 200 and mv.header("Content-Type") == "application/vnd.apple.mpegurl",
          f"/live.m3u8 -> {mv.status} {mv.header('Content-Type')}")
    check(b'CODECS="opus"\nhls/live/o.m3u8' in mv.body, f"multivariant:\n{mv.body.decode()}")
    check(mv.header("Access-Control-Allow-Origin") == "*", "no CORS on the playlist")
    check(mv.header("Date") and mv.header("Last-Modified"), "no Date/Last-Modified")
    # the cache lifetimes of the low-latency profile (target duration 2 s)
    r, _ = media(srv)
    check(max_age(r) == 1, f"plain playlist Cache-Control {r.header('Cache-Control')!r}")
    msn, part, epoch = hint(text)
    init = get(srv, f"/hls/live/{epoch}/oinit.mp4")
    check(init.status == 200 and init.header("Content-Type") == "audio/mp4", f"init {init.status}")
    check(max_age(init) >= 86400, f"init Cache-Control {init.header('Cache-Control')!r}")
    seg = re.findall(r"^(\S+/o\d+\.m4s)$", text, re.M)
    prt = re.findall(r'EXT-X-PART:DURATION=[\d.]+,URI="([^"]+)"', text)
    check(prt, "no part listed")
    p = get(srv, f"/hls/live/{prt[-1]}")
    check(p.status == 200 and max_age(p) == 12, f"part {p.status} {p.header('Cache-Control')!r}")
    (ctx.tmp / "init.mp4").write_bytes(init.body)
    (ctx.tmp / "o.mp4").write_bytes(init.body + p.body)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                            "stream=codec_name,sample_rate,channels", "-of", "csv=p=0",
                            str(ctx.tmp / "o.mp4")], capture_output=True, text=True, timeout=20)
    check(probe.stdout.strip() == "opus,48000,1" and not probe.stderr,
          f"ffprobe of init + part: {probe.stdout!r} {probe.stderr!r}")
    if seg:
        s = get(srv, f"/hls/live/{seg[-1]}")
        check(s.status == 200 and max_age(s) >= 86400, f"segment {s.status}")
    # ffmpeg plays the multivariant playlist as a live HLS client, 10 s without an error
    t0 = time.monotonic()
    lst = ctx.spawn("hlsplayer", ["ffmpeg", "-nostdin", "-v", "error", "-i", srv.url("/live.m3u8"),
                                  "-t", "10", "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                    stdout=ctx.tmp / "hls.pcm")
    rc = lst.wait(40)
    pcm = lst.output()
    err = lst.log.read_text(errors="replace").strip()
    check(rc == 0 and not err, f"ffmpeg on the playlist: exit {rc}: {err[-1500:]}")
    check(len(pcm) >= 9.9 * 96000, f"decoded only {len(pcm) / 96000:.2f} s")
    check_tone(pcm, 440, "HLS through ffmpeg")
    note(f"ffmpeg decoded {len(pcm) / 96000:.2f} s of HLS in {time.monotonic() - t0:.1f} s")


@test(timeout=90, icecast=False)
def test_hls_blocking_reload_rules(ctx):
    srv = ctx.start_server(extra=["--hls-segment-ms", "1000", "--hls-part-ms", "200"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    text = live_playlist(srv, parts=3)
    msn, part, epoch = hint(text)
    # too far ahead: more than 2 segments past the last one -> 400 at once
    r, _ = media(srv, f"_HLS_msn={msn + 3}")
    check(r.status == 400, f"_HLS_msn 3 ahead -> {r.status}, want 400")
    r, _ = media(srv, "_HLS_part=1")
    check(r.status == 400, f"_HLS_part without _HLS_msn -> {r.status}, want 400")
    # a blocking reload for the hinted part is held until that part is published
    t0 = time.monotonic()
    r, text = media(srv, f"_HLS_msn={msn}&_HLS_part={part}")
    held = time.monotonic() - t0
    check(r.status == 200, f"blocking reload -> {r.status}")
    check(f"o{msn}.{part}.m4s" in text.split("PRELOAD-HINT")[0],
          f"the answer does not list part {msn}.{part}:\n{text}")
    check(max_age(r) == 6, f"blocking playlist Cache-Control {r.header('Cache-Control')!r}")
    note(f"blocking reload for the hinted part answered after {held * 1000:.0f} ms")
    # the hinted part itself, asked before it exists, is held and then served
    msn2, part2, _ = hint(text)
    t0 = time.monotonic()
    p = get(srv, f"/hls/live/{epoch}/o{msn2}.{part2}.m4s")
    check(p.status == 200 and p.body[4:8] == b"moof", f"hinted part -> {p.status}")
    note(f"hinted part answered after {(time.monotonic() - t0) * 1000:.0f} ms")
    # delta update: once the playlist is longer than CAN-SKIP-UNTIL (6 s) + a segment
    wait_for(lambda: len(re.findall(r"^#EXTINF", media(srv)[1], re.M)) >= 9, 30,
             "9 whole segments")
    r, full = media(srv)
    r, delta = media(srv, "_HLS_skip=YES")
    skip = tag(delta, "EXT-X-SKIP")
    check(r.status == 200 and skip, f"no EXT-X-SKIP in the delta update:\n{delta}")
    n = int(skip.split("=")[1])
    check(n >= 1 and delta.count("#EXTINF") + n >= full.count("#EXTINF"),
          f"skipped {n}: delta lists {delta.count('#EXTINF')}, full {full.count('#EXTINF')}")
    check(tag(delta, "EXT-X-MEDIA-SEQUENCE") == tag(full, "EXT-X-MEDIA-SEQUENCE") or
          int(tag(delta, "EXT-X-MEDIA-SEQUENCE")) > int(tag(full, "EXT-X-MEDIA-SEQUENCE")),
          "the delta update's media sequence went back")
    # the source stops (stopped, its connection open: no page for 10 s): a held request
    # ends in 503 after 3 target durations
    src.signal(signal.SIGSTOP)
    try:
        time.sleep(1.5)  # what was sent before the stop is published
        _, text = media(srv)
        msn, part, _ = hint(text)
        t0 = time.monotonic()
        r, _ = media(srv, f"_HLS_msn={msn + 1}&_HLS_part=0", timeout=15)
        waited = time.monotonic() - t0
        check(r.status == 503, f"held with no source -> {r.status}, want 503")
        check(2.5 <= waited <= 5, f"503 after {waited:.1f} s, want about 3 target durations (3 s)")
        note(f"no source: held request refused (503) after {waited:.1f} s")
    finally:
        src.signal(signal.SIGCONT)
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_hls_refused_total", reason="too_far") >= 1, "too_far not counted")
    check(metric(vals, "rostrum_hls_refused_total", reason="timeout") >= 1, "timeout not counted")
    check(metric(vals, "rostrum_hls_blocked_total") >= 3, "held requests not counted")


@test(timeout=60, icecast=False)
def test_hls_held_requests_bounded(ctx):
    srv = ctx.start_server(extra=["--hls-max-blocked", "2", "--workers", "0"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    text = live_playlist(srv, parts=2)
    msn, _, _ = hint(text)
    out = []

    def blocked():
        out.append(media(srv, f"_HLS_msn={msn + 1}", timeout=15)[0].status)

    threads = [threading.Thread(target=blocked) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_hls_blocked") == 2, 5, "2 requests held")
    r, _ = media(srv, f"_HLS_msn={msn + 1}")
    check(r.status == 503 and r.header("Retry-After"), f"third held request -> {r.status}")
    for t in threads:
        t.join(20)
    check(out == [200, 200], f"the two held requests got {out}")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_hls_refused_total", reason="max_blocked") == 1,
          "max_blocked refusal not counted")
    check(metric(vals, "rostrum_hls_blocked") == 0, "held gauge did not go back to 0")


@test(timeout=90, icecast=False)
def test_hls_epoch_and_sequence(ctx):
    srv = ctx.start_server(grace_ms=500)
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    text = live_playlist(srv, parts=4)
    _, _, epoch1 = hint(text)
    # every worker cuts the same part into the same bytes (connections spread over workers)
    prt = re.findall(r'EXT-X-PART:DURATION=[\d.]+,URI="([^"]+)"', text)[0]
    bodies = {get(srv, f"/hls/live/{prt}").body for _ in range(8)}
    check(len(bodies) == 1, f"{len(bodies)} different answers for one part")
    # media sequence numbers never go back over reloads, and a listed segment keeps its bytes
    seqs, last = [], 0
    t_end = time.monotonic() + 4
    while time.monotonic() < t_end:
        _, t = media(srv)
        seqs.append(int(tag(t, "EXT-X-MEDIA-SEQUENCE")))
        last = max(last, hint(t)[0])
        time.sleep(0.3)
    check(seqs == sorted(seqs), f"media sequence went back: {seqs}")
    # the space ends and starts again: new names, and numbers past the old ones
    src.kill()
    wait_for(lambda: get(srv, "/live.m3u8").status == 404, 15, "the space to end")
    check(get(srv, f"/hls/live/{epoch1}/oinit.mp4").status == 404, "old init still served")
    src2 = ffmpeg_source(ctx, srv, "/live", 660, proc_name="source2")
    wait_live(srv, "/live", proc=src2)
    text2 = live_playlist(srv, parts=2)
    _, _, epoch2 = hint(text2)
    check(epoch2 != epoch1, f"restarted space kept epoch {epoch1}")
    seq2 = int(tag(text2, "EXT-X-MEDIA-SEQUENCE"))
    check(seq2 > last, f"media sequence {seq2} after a restart, the old stream reached {last}")
    note(f"epochs {epoch1} -> {epoch2}; media sequence {last} -> {seq2}")


@test(timeout=120, icecast=False, exclusive=True)
def test_hls_browser_mse_and_hlsjs(ctx):
    """Chromium's MSE takes the init segment and a part; hls.js (npm, bundled into the server
    at build time) plays /live.m3u8 in low-latency mode."""
    node = shutil.which("node")
    check(node and (MODULES / "playwright-core").is_dir(), "node or playwright-core missing")
    srv = ctx.start_server()
    check(get(srv, "/hls.min.js").status == 200,
          "the server has no /hls.min.js: `npm ci` in tests/browser before building "
          "(make test-deps does it)")
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    live_playlist(srv, parts=2)
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    play = ctx.spawn("hlsjs", [node, HLS_PAGE, srv.url(""), "live", "6"], env=env,
                     stdout=ctx.tmp / "hls.out")
    try:
        rc = play.wait(100)
    finally:
        play.signal(signal.SIGTERM)
    out = play.output().decode(errors="replace").strip()
    check(rc == 0, f"hls.mjs exited with {rc}: {out[-1500:]}\n{play.tail(15)}")
    res = json.loads(out.splitlines()[-1])
    p, m = res["play"], res["mse"]
    check(p["codec"] == "opus", f"hls.js chose codec {p['codec']!r}")
    note(f"MSE: opus {m['lower']}, Opus {m['upper']}, {m['buffered']:.2f} s buffered from init + "
         f"one part; hls.js {p['version']}: playing {p['start_ms']} ms after load, "
         f"{p['played']:.1f} s played, latency {p['latency_s']:.2f} s")


@test(timeout=60, icecast=False)
def test_hls_many_held_one_answer(ctx):
    """100 players parked on the same next part (one worker) all get it when it is published,
    the same playlist bytes for every one of them."""
    srv = ctx.start_server(extra=["--workers", "0"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    msn, part, _ = hint(live_playlist(srv, parts=2))
    got = []

    def one():
        t0 = time.monotonic()
        r, text = media(srv, f"_HLS_msn={msn}&_HLS_part={part}", timeout=15)
        got.append((r.status, text, time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    check(len(got) == 100 and all(g[0] == 200 for g in got),
          f"statuses {sorted(set(g[0] for g in got))} of {len(got)}")
    bodies = {g[1] for g in got}
    check(len(bodies) <= 2, f"{len(bodies)} different playlists for one blocking request")
    check(all(f"o{msn}.{part}.m4s" in b.split("PRELOAD-HINT")[0] for b in bodies),
          "an answer lacks the part it was held for")
    waits = sorted(g[2] for g in got)
    note(f"100 held requests: answered after {waits[0] * 1000:.0f}-{waits[-1] * 1000:.0f} ms, "
         f"{len(bodies)} distinct bodies")


def has_option(ctx, key):
    """1 if this build knows the global key <key> (a feature another branch may bring)."""
    r = subprocess.run([ctx.binary, "serve", f"--{key}", "1", "--audience", "no-such-address"],
                       capture_output=True, text=True, timeout=10)
    return "unrecognized option" not in r.stderr and "unknown option" not in r.stderr


@test(timeout=90, icecast=False)
def test_hls_aac_rendition(ctx):
    """With the AAC rendition encoding (aac-always, item 5's transcoder), the multivariant
    playlist lists it beside Opus; ffmpeg decodes its playlist and ffprobe reads AAC-LC; its
    parts never pass its PART-TARGET; both renditions number the same audio alike."""
    if not has_option(ctx, "aac-always"):
        skip_part("the AAC rendition", "this build has no AAC transcoder (aac-always)")
        return
    srv = ctx.start_server(extra=["--aac-always", "1"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    wait_for(lambda: b'CODECS="mp4a.40.2"\nhls/live/a.m3u8' in get(srv, "/live.m3u8").body, 15,
             "the AAC rendition in the multivariant playlist")
    live_playlist(srv, parts=4)

    a = live_playlist(srv, parts=4, segments=1, rendition="a")
    target = float(re.search(r"PART-TARGET=([\d.]+)", a).group(1))
    durs = [float(d) for d in re.findall(r"EXT-X-PART:DURATION=([\d.]+)", a)]
    check(durs and max(durs) <= target, f"AAC parts {durs} past PART-TARGET {target}")
    epoch = re.search(r'EXT-X-MAP:URI="([^/]+)/ainit.mp4"', a).group(1)
    init = get(srv, f"/hls/live/{epoch}/ainit.mp4").body
    part = get(srv, "/hls/live/" + re.findall(r'EXT-X-PART:[^\n]*URI="([^"]+)"', a)[-1]).body
    (ctx.tmp / "a.mp4").write_bytes(init + part)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                            "stream=codec_name,profile,sample_rate", "-of", "csv=p=0",
                            str(ctx.tmp / "a.mp4")], capture_output=True, text=True, timeout=20)
    check(probe.stdout.strip() == "aac,LC,48000" and not probe.stderr,
          f"ffprobe of the AAC init + part: {probe.stdout!r} {probe.stderr!r}")
    # the same media sequence number is the same moment in both renditions
    _, o = media(srv)
    for text in (a, o):
        check(tag(text, "EXT-X-RENDITION-REPORT"), "no rendition report")
    so, sa = int(tag(o, "EXT-X-MEDIA-SEQUENCE")), int(tag(a, "EXT-X-MEDIA-SEQUENCE"))
    if so == sa:
        check(tag(o, "EXT-X-PROGRAM-DATE-TIME")[:21] == tag(a, "EXT-X-PROGRAM-DATE-TIME")[:21],
              f"segment {so} starts at {tag(o, 'EXT-X-PROGRAM-DATE-TIME')} in Opus, "
              f"{tag(a, 'EXT-X-PROGRAM-DATE-TIME')} in AAC")
    lst = ctx.spawn("aacplayer", ["ffmpeg", "-nostdin", "-v", "error", "-i",
                                  srv.url("/hls/live/a.m3u8"), "-t", "6", "-f", "s16le", "-ac", "1",
                                  "-ar", "48000", "-"], stdout=ctx.tmp / "aac.pcm")
    rc = lst.wait(40)
    pcm = lst.output()
    err = lst.log.read_text(errors="replace").strip()
    check(rc == 0 and not err, f"ffmpeg on the AAC playlist: exit {rc}: {err[-1500:]}")
    check(len(pcm) >= 5.9 * 96000, f"decoded only {len(pcm) / 96000:.2f} s of AAC")
    check_tone(pcm, 440, "AAC HLS through ffmpeg")
    note(f"AAC rendition: PART-TARGET {target}, parts {min(durs)}-{max(durs)} s, "
         f"ffmpeg decoded {len(pcm) / 96000:.2f} s")


@test(timeout=40, icecast=False)
def test_hls_part_and_segment_checked_on_the_command_line_issue11(ctx):
    """hls-part-ms must be whole Opus frames and a segment whole parts, from a file or from the
    command line (options are set one at a time, so the check runs after all of them)."""
    for args, ok in ((["--hls-part-ms", "250"], False),
                     (["--hls-segment-ms", "2100"], False),
                     (["--hls-part-ms", "400", "--hls-segment-ms", "2400"], True)):
        p = ctx.spawn("hlsargs" + "".join(args).replace("-", ""),
                      [ctx.binary, "serve", "--audience", "127.0.0.1:0", "--stage", "127.0.0.1:0",
                       "--source-password", "x", "--workers", "0", *args])
        if ok:
            wait_for(lambda: "ready audience=" in p.log.read_text(errors="replace"), 15,
                     f"{args} to start")
            p.kill()
            continue
        rc = p.wait(15)
        err = p.log.read_text(errors="replace")
        check(rc != 0 and "command line: hls-part-ms" in err, f"{args}: exit {rc}, {err!r}")
