"""Issue 12, item 4: live captions. rostrum feeds a space's programme (16 kHz mono PCM) to the
recogniser command (captions-cmd) and publishes its cues at /<space>.captions.json (and as
WebVTT in the HLS stream); a recogniser that crashes, prints garbage, floods or stops reading is
restarted or killed, and the audio never notices. These tests use a stand-in recogniser
(tests/captions/fake-recogniser) whose cues are known; test_captions_pocketsphinx runs the
packaged default on real speech."""

import json
import os
import shutil
import signal
import time

from harness import (ROOT, Server, check, check_ffmpeg_decode, check_tone, ffmpeg_listener,
                     ffmpeg_source, get_json, http_request, metric, metrics, note, test, wait_for,
                     wait_live)

FAKE = ROOT / "tests" / "captions" / "fake-recogniser"
CAPTIONS_PAGE = ROOT / "tests" / "browser" / "captions.mjs"
MODULES = ROOT / "tests" / "browser" / "node_modules"


def cap_metrics(srv):
    vals, _ = metrics(srv)
    return {k: metric(vals, f"rostrum_captions_{k}") for k in
            ("running", "starts_total", "restarts_total", "stuck_total", "cues_total",
             "bad_lines_total", "rate_limited_total", "pcm_bytes_total",
             "pcm_dropped_bytes_total", "skips_total", "decode_cpu_seconds_total")}


def captions_server(ctx, mode, *extra, log=None):
    cmd = f"python3 {FAKE} {mode}"
    if log:
        os.environ["FAKE_RECOGNISER_LOG"] = str(log)
    return ctx.start_server(extra=["--captions", "1", "--captions-cmd", cmd, *extra])


def cues(srv, mount="/live", since=None):
    path = f"{mount}.captions.json" + (f"?since={since}" if since is not None else "")
    return get_json(srv.audience, path)


@test(timeout=60, icecast=False)
def test_captions_feed(ctx):
    """The fake recogniser's cue k is 1 s after cue k-1 on the programme's clock, so rostrum
    feeds it PCM at exactly 16 kHz and maps its times back; since= pages the feed; partial
    lines are skipped; bad since= is a 400, a space without captions a 404; the headers let a
    cache carry it; the language the operator declares (captions-lang) is the feed's "lang"
    and the HLS rendition's LANGUAGE."""
    srv = captions_server(ctx, "normal", "--captions-lang", "pt-BR")
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    wait_for(lambda: len(cues(srv)["cues"]) >= 5, 20, "five cues from the recogniser")
    doc = cues(srv)
    cs = doc["cues"]
    check(doc["running"] is True, f"running {doc['running']!r}")
    check(doc.get("lang") == "pt-BR", f"lang {doc.get('lang')!r}, want the declared pt-BR")
    mv = http_request(srv.audience, "GET", "/live.m3u8").body.decode()
    media = [ln for ln in mv.splitlines() if ln.startswith("#EXT-X-MEDIA:TYPE=SUBTITLES")]
    check(len(media) == 1 and 'LANGUAGE="pt-BR"' in media[0],
          f"the multivariant playlist's captions rendition: {media}")
    texts = [c["text"] for c in cs]
    check(all(t.startswith("second ") for t in texts), f"texts {texts} (partial lines kept?)")
    ks = [int(t.split()[1]) for t in texts]
    check(ks == list(range(ks[0], ks[0] + len(ks))), f"cue numbers {ks}")
    ids = [c["id"] for c in cs]
    check(ids == sorted(ids) and len(set(ids)) == len(ids), f"ids {ids}")
    starts = [c["start_ms"] for c in cs]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    check(all(abs(g - 1000) <= 25 for g in gaps), f"cue starts {gaps} ms apart, want 1000")
    check(all(c["end_ms"] - c["start_ms"] in range(490, 511) for c in cs),
          f"cue lengths {[c['end_ms'] - c['start_ms'] for c in cs]}")
    now_ms = time.time() * 1000
    check(all(now_ms - 60000 < s < now_ms for s in starts),
          f"cue times {starts} not on the wall clock (now {now_ms:.0f})")
    note(f"{len(cs)} cues, {gaps} ms apart; the newest cue started {now_ms - starts[-1]:.0f} ms "
         "before it was read")
    later = cues(srv, since=ids[1])
    check([c["id"] for c in later["cues"]][:len(ids) - 2] == ids[2:],
          f"since={ids[1]} gave {[c['id'] for c in later['cues']]}")
    check(later["next"] >= ids[-1], f"next {later['next']} < last id {ids[-1]}")
    r = http_request(srv.audience, "GET", "/live.captions.json")
    check(r.status == 200 and "max-age=1" in r.header("Cache-Control", ""),
          f"Cache-Control {r.header('Cache-Control')!r}")
    check(r.header("Access-Control-Allow-Origin") == "*", "no CORS header")
    for bad in ("since=x", "since=-1", "since=1&since=2", "since="):
        r = http_request(srv.audience, "GET", f"/live.captions.json?{bad}")
        check(r.status == 400, f"?{bad} -> {r.status}, want 400")
    r = http_request(srv.audience, "GET", "/nosuch.captions.json")
    check(r.status == 404, f"/nosuch.captions.json -> {r.status}")
    m = cap_metrics(srv)
    check(m["running"] == 1 and m["starts_total"] == 1 and m["cues_total"] >= 5, f"metrics {m}")
    check(m["bad_lines_total"] == 0 and m["restarts_total"] == 0, f"metrics {m}")
    check(m["pcm_bytes_total"] >= 5 * 32000, f"pcm bytes {m['pcm_bytes_total']}")


@test(timeout=60, icecast=False)
def test_captions_carried_down_a_relay(ctx):
    """A relay carries its upstream's captions down the feed (a CAPTIONS frame, asked for with
    captions=1): its /<space>.captions.json has the origin's cues (same ids, texts and times)
    and language, and its HLS has the captions rendition; it runs no recogniser of its own,
    even when configured to caption."""
    origin = captions_server(ctx, "normal", "--captions-lang", "pt-BR")
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    relay = Server(ctx, ctx.binary, relay=f"http://127.0.0.1:{origin.audience}",
                   extra=["--workers", "1", "--captions", "1", "--captions-cmd",
                          f"python3 {FAKE} normal"])
    wait_for(lambda: http_request(relay.audience, "GET", "/live.captions.json",
                                  timeout=2).status == 200, 15, "captions on the relay")
    wait_for(lambda: len(cues(relay)["cues"]) >= 4, 20, "four cues on the relay")
    down, up = cues(relay), cues(origin)
    check(down["lang"] == "pt-BR" and down["running"] is True,
          f"the relay's feed: lang {down['lang']!r}, running {down['running']!r}")
    by_id = {c["id"]: c for c in up["cues"]}
    same = [c for c in down["cues"] if by_id.get(c["id"]) == c]
    check(len(same) >= 3 and len(same) >= len(down["cues"]) - 1,
          f"the relay's cues {down['cues']} against the origin's {up['cues']}")
    check(down["epoch"] == up["epoch"], f"epochs {down['epoch']} and {up['epoch']}")
    mv = http_request(relay.audience, "GET", "/live.m3u8").body.decode()
    media = [ln for ln in mv.splitlines() if ln.startswith("#EXT-X-MEDIA:TYPE=SUBTITLES")]
    check(len(media) == 1 and 'LANGUAGE="pt-BR"' in media[0],
          f"the relay's multivariant playlist: {media}")
    m = cap_metrics(relay)
    check(not m["starts_total"], f"the relay started {m['starts_total']} recognisers")
    note(f"{len(down['cues'])} cues on the relay, {len(same)} the same as the origin's; lang "
         f"{down['lang']}")


@test(timeout=60, icecast=False)
def test_captions_crash_and_garbage(ctx):
    """A recogniser that prints garbage and exits every 2 s is restarted (with a back-off) and
    its bad lines are counted; a listener decodes the tone whole all along; the feed keeps its
    good cues."""
    log = ctx.tmp / "starts.log"
    srv = captions_server(ctx, "crash", log=log)
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = ffmpeg_listener(ctx, srv, "/live", 12)
    wait_for(lambda: cap_metrics(srv)["restarts_total"] >= 2, 30, "two restarts")
    pcm = check_ffmpeg_decode(lst, 12, timeout=30)
    check_tone(pcm, 440, "listener during recogniser crashes", skip_s=0.1)
    m = cap_metrics(srv)
    check(m["bad_lines_total"] >= 5, f"bad lines counted {m['bad_lines_total']}, want >= 5")
    starts = log.read_text().splitlines()
    check(len(starts) == m["starts_total"] and len(starts) >= 3,
          f"{len(starts)} starts logged, metrics say {m['starts_total']}")
    texts = [c["text"] for c in cues(srv)["cues"]]
    check(texts and all(t.startswith("second ") for t in texts), f"cues kept: {texts}")
    text = srv.log_text()
    check("the recogniser exited (status 3)" in text, "the exit is not logged")
    check(text.count("bad line") <= 10, f"bad lines logged {text.count('bad line')} times")
    check(src.alive(), "the source died")
    note(f"starts {m['starts_total']}, bad lines {m['bad_lines_total']}, cues {m['cues_total']}")


@test(timeout=60, icecast=False)
def test_captions_stuck_and_flood(ctx):
    """A recogniser that stops reading is killed once captions-queue-ms of PCM waits for it,
    and its queue dropped; one that floods gets 20 cues a second through; neither reaches the
    audio."""
    srv = captions_server(ctx, "stuck", "--captions-queue-ms", "500")
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = ffmpeg_listener(ctx, srv, "/live", 8)
    wait_for(lambda: cap_metrics(srv)["stuck_total"] >= 1, 20, "the stuck recogniser killed")
    m = cap_metrics(srv)
    # the pipe takes 64 KiB (2 s) it never reads, then 500 ms of queue (16,000 bytes) waits
    check(m["pcm_dropped_bytes_total"] >= 16000, f"dropped {m['pcm_dropped_bytes_total']}")
    pcm = check_ffmpeg_decode(lst, 8, timeout=30)
    check_tone(pcm, 440, "listener while the recogniser is stuck", skip_s=0.1)
    check("left 500 ms of audio unread: killed" in srv.log_text(), "the kill is not logged")
    srv.stop()

    srv = captions_server(ctx, "flood")
    src = ffmpeg_source(ctx, srv, "/live", 440, proc_name="source2")
    wait_live(srv, "/live", proc=src)
    wait_for(lambda: cap_metrics(srv)["rate_limited_total"] >= 180, 20, "the flood limited")
    m = cap_metrics(srv)
    doc = cues(srv)
    check(len(doc["cues"]) <= 64, f"{len(doc['cues'])} cues kept, want <= 64")
    check(m["cues_total"] <= 20 * 6, f"{m['cues_total']} cues published in a few seconds")
    note(f"flood: {m['cues_total']} cues published, {m['rate_limited_total']} dropped")


def run_captions_page(ctx, srv, seconds=25):
    node = shutil.which("node")
    check(node and (MODULES / "playwright-core").is_dir(), "node or playwright-core missing")
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    play = ctx.spawn("captions_page", [node, CAPTIONS_PAGE, srv.url(""), "live", str(seconds)],
                     env=env, stdout=ctx.tmp / "captions_page.out")
    try:
        rc = play.wait(2 * seconds + 60)
    finally:
        play.signal(signal.SIGTERM)
    out = play.output().decode(errors="replace").strip()
    check(rc == 0, f"captions.mjs exited with {rc}: {out[-2000:]}\n{play.tail(15)}")
    return json.loads(out.splitlines()[-1])


@test(timeout=150, icecast=False, exclusive=True)
def test_captions_browser_page_and_hlsjs(ctx):
    """Chromium: the listener page shows each cue under the web player when the sound reaches
    it (not before, and not more than its hold later); hls.js takes the WebVTT subtitles
    rendition and puts its cues at the same programme time as the JSON feed says."""
    srv = captions_server(ctx, "normal")
    check(http_request(srv.audience, "GET", "/hls.min.js").status == 200,
          "the server has no /hls.min.js: `npm ci` in tests/browser before building")
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    wait_for(lambda: len(cues(srv)["cues"]) >= 1, 20, "a first cue")
    res = run_captions_page(ctx, srv)
    feed = {c["text"]: c for c in cues(srv)["cues"]}
    shown = res["page"]
    for c in shown:
        d = c["heard_ms"] - c["start_ms"]
        check(c["text"].startswith("second ") and c["start_ms"] == feed[c["text"]]["start_ms"],
              f"the page showed {c} which the feed does not have")
        # shown once the player reaches it (a poll tick of 250 ms), gone 2.5 s after
        check(-300 <= d <= 3000, f"cue {c['text']!r} shown {d:.0f} ms after its time was heard")
    hls = res["hls"]
    check(hls["tracks"] >= 1, f"hls.js found {hls['tracks']} subtitle tracks")
    offs = []
    for c in hls["cues"]:
        check(c["text"] in feed, f"hls.js cue {c['text']!r} not in the feed {sorted(feed)}")
        offs.append(c["wall_ms"] - feed[c["text"]]["start_ms"])
    check(all(abs(o) <= 500 for o in offs),
          f"hls.js puts the WebVTT cues {[round(o) for o in offs]} ms off the feed's times")
    note(f"page: {len(shown)} cues shown {[round(c['heard_ms'] - c['start_ms']) for c in shown]} "
         f"ms after their time was heard (web player {shown[0]['latency_ms']:.0f} ms behind "
         f"live); hls.js {hls['version']}: {len(hls['cues'])} WebVTT cues, "
         f"{[round(o) for o in offs]} ms from the feed's times")


def vtt_cues(text):
    """(start_s, end_s, text) of each cue of a WebVTT segment."""
    out = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if " --> " in line:
            a, b = (x.strip() for x in line.split(" --> ")[:2])

            def secs(t):
                h, m, s = t.split(":")
                return int(h) * 3600 + int(m) * 60 + float(s)
            out.append((secs(a), secs(b.split()[0]), lines[i + 1] if i + 1 < len(lines) else ""))
    return out


@test(timeout=150, icecast=False)
def test_captions_pocketsphinx(ctx):
    """The packaged recogniser (rostrum-captions, pocketsphinx), found beside the server as the
    default captions-cmd, captions real recorded speech (Debian's alsa-utils voice clips, laid
    end to end by tests/captions/clip.py): its words match the transcript better than chance
    would, and its WebVTT cues sit where the phrases are in the programme."""
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "captions"))
    from clip import build_clip
    from wer import wer
    rec = os.path.join(os.path.dirname(str(ctx.binary)), "rostrum-captions")
    check(os.access(rec, os.X_OK), f"no {rec}: make builds it beside rostrum")
    check(os.path.isdir("/usr/share/pocketsphinx/model/en-us/en-us"),
          "no pocketsphinx-en-us model (scripts/install-deps installs it)")
    raw = ctx.tmp / "clip.raw"
    phrases = build_clip(raw)
    clip_s = raw.stat().st_size / 32000
    srv = ctx.start_server(extra=["--captions", "1"])
    src = ctx.spawn("source", ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning", "-re",
                               "-f", "s16le", "-ar", "16000", "-ac", "1", "-i", str(raw),
                               "-c:a", "libopus", "-b:a", "48k", "-f", "ogg",
                               "-content_type", "audio/ogg", srv.source_url("/live")])
    wait_live(srv, "/live", proc=src)
    segs = {}
    t_end = time.monotonic() + clip_s + 8
    while time.monotonic() < t_end:
        r = http_request(srv.audience, "GET", "/hls/live/c.m3u8")
        if r.status == 200:
            for line in r.body.decode().splitlines():
                if line.endswith(".vtt") and line not in segs:
                    s = http_request(srv.audience, "GET", "/hls/live/" + line)
                    check(s.status == 200 and s.header("Content-Type", "").startswith("text/vtt"),
                          f"{line}: {s.status} {s.header('Content-Type')}")
                    body = s.body.decode()
                    check(body.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n"),
                          f"{line} does not start as WebVTT with its timestamp map: {body[:80]!r}")
                    segs[line] = vtt_cues(body)
        time.sleep(2)
    feed = cues(srv)["cues"]
    check(feed, "the recogniser made no cue")
    hyp = " ".join(c["text"] for c in feed).split()
    ref = " ".join(p[2] for p in phrases).split()
    rate, S, D, I, N = wer(ref, hyp)
    vtt = sorted({c for cs in segs.values() for c in cs})
    check(vtt, f"no WebVTT cue in {len(segs)} segments")
    near = [c for c in vtt if any(c[0] < p[1] + 0.5 and c[1] > p[0] - 0.5 for p in phrases)]
    check(len(near) >= len(vtt) * 0.6,
          f"only {len(near)} of {len(vtt)} WebVTT cues overlap a phrase: {vtt[:6]} vs {phrases[:6]}")
    check(rate < 0.85, f"word error rate {rate:.2f} ({S} sub, {D} del, {I} ins of {N}): "
                       f"heard {' '.join(hyp)!r}")
    m = cap_metrics(srv)
    check(m["bad_lines_total"] == 0 and m["restarts_total"] == 0, f"metrics {m}")
    note(f"pocketsphinx on {len(phrases)} phrases ({N} words): WER {rate:.2f} ({S} sub, {D} del, "
         f"{I} ins), {len(feed)} cues, {len(vtt)} WebVTT cues in {len(segs)} segments, "
         f"{len(near)} on a phrase; heard: {' '.join(hyp)[:120]}")
