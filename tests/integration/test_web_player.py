"""The listener page's web player (issue 11, item 1): headless Chromium (and Firefox ESR, in the
tests named test_firefox_*) plays a space through tests/browser/listen.mjs, which reports the player's own data-* state as it goes; and the
listener stream's from= cursor, X-Rostrum-Seq and burst= with raw sockets.

Figures (click to playing, latency behind live) are printed with note(); the benchmark
(bench/player) compares them with <audio>."""

import json
import os
import shutil
import signal
import socket
import time

from harness import (ROOT, check, connect, ffmpeg_source, metric, metrics, note, parse_ogg,
                     read_head, read_until_close, test, wait_for, wait_live)

LISTEN = ROOT / "tests" / "browser" / "listen.mjs"
MODULES = ROOT / "tests" / "browser" / "node_modules"
FIREFOX = os.environ.get("FIREFOX", "/usr/bin/firefox-esr")


def browser_env(ctx):
    return {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
            "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}


class Browser:
    """listen.mjs in the background; samples() reads what it has printed so far."""

    def __init__(self, ctx, srv, query, seconds, mount="/live", browser="chromium"):
        node = shutil.which("node")
        check(node and (MODULES / "playwright-core").is_dir(),
              "node or playwright-core missing (make test-deps)")
        env = browser_env(ctx)
        if browser == "firefox":
            check((MODULES / "puppeteer-core").is_dir() and os.path.exists(FIREFOX)
                  and shutil.which("pulseaudio") and shutil.which("pacat"),
                  f"{FIREFOX}, pulseaudio, pacat or puppeteer-core missing (make test-deps)")
            env["BROWSER"] = "firefox"
        self.out = ctx.tmp / f"listen-{time.monotonic_ns()}.out"
        self.proc = ctx.spawn("listen", [node, LISTEN, srv.url("/" + query), mount, str(seconds)],
                              env=env, stdout=self.out)
        self.seconds = seconds

    def lines(self):
        try:
            text = self.out.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line still being written
        return out

    def samples(self):
        return [x for x in self.lines() if "t" in x]

    def wait(self, cond, timeout, what):
        return wait_for(lambda: next((s for s in reversed(self.samples()) if cond(s)), None),
                        timeout, what, interval=0.1)

    def finish(self):
        try:
            rc = self.proc.wait(self.seconds + 60)
        finally:
            self.proc.signal(signal.SIGTERM)
        done = [x for x in self.lines() if x.get("done")]
        check(done and done[-1].get("ok"), f"listen.mjs failed (rc {rc}): "
              f"{done[-1] if done else self.proc.tail(15)}")
        errors = [e for e in done[-1].get("page_errors", []) if "status of 404" not in e]
        check(not errors, f"the page reported errors: {errors[:5]}")
        return done[-1], self.samples()


def steady(samples, since_t=0):
    """The samples from the first 'playing' at or after <since_t> on."""
    for i, s in enumerate(samples):
        if s["t"] >= since_t and s.get("state") == "playing":
            return samples[i:]
    return []


def check_played_steadily(samples, what, slack_s=0.6):
    """played_s grows with wall time between the first and the last sample (no freeze)."""
    check(len(samples) >= 5, f"{what}: too few samples while playing: {samples[-3:]}")
    a, b = samples[0], samples[-1]
    wall = (b["t"] - a["t"]) / 1000
    played = (b["played_s"] or 0) - (a["played_s"] or 0)
    check(played >= wall - slack_s,
          f"{what}: played {played:.2f} s of audio in {wall:.2f} s (froze or fell behind)")
    check(played <= wall * 1.06 + 0.3, f"{what}: played {played:.2f} s in {wall:.2f} s?")
    return played, wall


def starts_at_once_near_live(ctx, browser):
    srv = ctx.start_server(extra=["--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    time.sleep(1.5)  # a full burst in the ring
    b = Browser(ctx, srv, "?player=web", 10, browser=browser)
    done, samples = b.finish()
    check(all(s.get("tag") == "web" for s in samples), "the page did not use the web player")
    playing = steady(samples)
    check(playing, f"never reached data-state=playing: {samples[-3:]}")
    first = done.get("first_playing_ms")
    fa = done.get("first_audio_ms")
    check(first is not None and fa is not None, f"no start time reported: {done}")
    check(0 < fa < 3000, f"click to first audio {fa} ms")
    lat = [s["latency_ms"] for s in playing if s.get("latency_ms") is not None]
    check(len(lat) >= len(playing) // 2, f"latency not reported while playing: {playing[-2:]}")
    late = sorted(lat)[len(lat) // 2]
    check(100 <= late <= 2500, f"median latency behind live {late} ms")
    check_played_steadily(playing, "web player")
    last = samples[-1]
    check(last["gap"] == 0 and last["concealed"] == 0,
          f"the player missed audio: gap {last['gap']} samples, concealed {last['concealed']}")
    check(last["words"].startswith("Playing"), f"the card says {last['words']!r}")
    note(f"web player in {done.get('browser')}: click to first audio {fa} ms (page saw playing "
         f"at {first} ms), latency behind live median {late} ms (min {min(lat)}, max {max(lat)})")


@test(timeout=90, icecast=False, exclusive=True)
def test_web_player_starts_at_once_near_live_11(ctx):
    starts_at_once_near_live(ctx, "chromium")


@test(timeout=120, icecast=False, exclusive=True)
def test_firefox_web_player_starts_at_once_near_live_11(ctx):
    # Firefox ESR through puppeteer-core (WebDriver BiDi), with a private PulseAudio
    # (tests/browser/firefox.mjs): the same player, the same checks as in Chromium
    starts_at_once_near_live(ctx, "firefox")


def worker_holding(srv, port):
    """The pid of the worker holding the browser's stream: the worker whose listener count is
    1 (/metrics), by its "worker N (pid P) serving" line. Not "the worker with an established
    connection on the port": a browser keeps its page's and polls' connections alive now, idle
    on any worker (a CI run killed such a worker, and the stream never noticed)."""
    import re
    vals, _ = metrics(srv)
    text = srv.log_text()
    for w in range(16):
        n = metric(vals, "rostrum_worker_listener_connections", worker=str(w))
        if n is None:
            return None
        if n >= 1:
            pids = re.findall(rf"worker {w} \(pid (\d+)\) (?:serving|restarted)", text)
            return int(pids[-1]) if pids else None
    return None


def resumes_gaplessly_after_worker_kill(ctx, browser):
    srv = ctx.start_server(extra=["--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    time.sleep(1.5)
    b = Browser(ctx, srv, "?player=web", 16, browser=browser)
    b.wait(lambda s: s.get("state") == "playing" and (s.get("played_s") or 0) > 2, 20,
           "the web player playing for 2 s")
    victim = wait_for(lambda: worker_holding(srv, srv.audience), 5, "the worker with the stream")
    os.kill(victim, signal.SIGKILL)
    t_kill = time.monotonic()
    before = b.samples()[-1]
    b.wait(lambda s: (s.get("resumes") or 0) >= 1, 10, "the player to resume with from=")
    note(f"worker {victim} killed; the player resumed {time.monotonic() - t_kill:.2f} s later")
    done, samples = b.finish()
    after = [s for s in samples if s["t"] >= before["t"]]
    last = samples[-1]
    check(last["reconnects"] >= 1 and last["resumes"] >= 1,
          f"no reconnect with from=: {last}")
    check(last["gap"] == 0, f"{last['gap']} samples of the stream were skipped across the cut")
    check(last["concealed"] == 0, f"{last['concealed']} samples of silence were played for "
          "want of audio across the cut: it was heard")
    check(all(s.get("state") == "playing" for s in after),
          f"the player left 'playing' across the cut: "
          f"{[s['state'] for s in after if s.get('state') != 'playing'][:3]}")
    check_played_steadily(after, "across the worker kill")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_listener_resumes_total") >= 1, "the server counted no resume")
    check(metric(vals, "rostrum_worker_restarts_total") == 1, "the worker restart not counted")
    lat = [s["latency_ms"] for s in after[-10:] if s.get("latency_ms") is not None]
    note(f"{done.get('browser')}, after the cut: latency behind live {min(lat)}-{max(lat)} ms, "
         f"{last['reconnects']} reconnect(s)")


@test(timeout=100, icecast=False, exclusive=True)
def test_web_player_resumes_gaplessly_after_worker_kill_11(ctx):
    resumes_gaplessly_after_worker_kill(ctx, "chromium")


@test(timeout=120, icecast=False, exclusive=True)
def test_firefox_web_player_resumes_gaplessly_after_worker_kill_11(ctx):
    resumes_gaplessly_after_worker_kill(ctx, "firefox")


@test(timeout=100, icecast=False, exclusive=True)
def test_web_player_says_host_away_in_grace_and_comes_back_near_live_11(ctx):
    srv = ctx.start_server(grace_ms=15000)
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    time.sleep(1.5)
    b = Browser(ctx, srv, "?player=web", 22)
    b.wait(lambda s: s.get("state") == "playing" and (s.get("played_s") or 0) > 2, 20,
           "the web player playing")
    src.signal(signal.SIGKILL)
    src.wait(5)
    away = b.wait(lambda s: "host is away" in s.get("words", ""), 8,
                  "the card to say the host is away")
    time.sleep(4)
    src2 = ffmpeg_source(ctx, srv, "/live", 660, proc_name="source_again")
    back = b.wait(lambda s: s["t"] > away["t"] + 3000 and s.get("state") == "playing" and
                  "host is away" not in s.get("words", ""), 12, "the card back to playing")
    done, samples = b.finish()
    check(src2.alive(), "the second source died")
    grace = [s for s in samples if away["t"] <= s["t"] <= back["t"]]
    check(all(s.get("state") == "playing" for s in grace),
          "the player stopped playing in the grace (silence must flow)")
    check_played_steadily(steady(samples), "through the grace", slack_s=1.0)
    tail = [s["latency_ms"] for s in samples[-10:] if s.get("latency_ms") is not None]
    check(tail and max(tail) < 3000, f"after the grace the player is {tail} ms behind live")
    note(f"grace: 'host is away' shown {away['t']} ms after the click; after the source came "
         f"back, latency {min(tail)}-{max(tail)} ms")


@test(timeout=80, icecast=False, exclusive=True)
def test_web_player_says_the_space_ended_11(ctx):
    srv = ctx.start_server(grace_ms=2000)
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    time.sleep(1.5)
    b = Browser(ctx, srv, "?player=web", 14)
    b.wait(lambda s: s.get("state") == "playing", 20, "the web player playing")
    src.signal(signal.SIGKILL)
    end = b.wait(lambda s: s.get("state") == "ended", 12, "data-state=ended")
    done, samples = b.finish()
    last = samples[-1]
    check(last["state"] == "ended" and last["words"] == "The space has ended",
          f"after the end the card says {last['words']!r} ({last['state']})")
    check(not any("Buffering" in s.get("words", "") for s in samples), "a frozen 'Buffering…'")
    note(f"the space ended; the player said so {end['t']} ms after the click")


def audio_fallback_rides_a_grace(ctx, browser):
    # <audio> (forced with ?player=audio) asks for a large burst and starts at once; during a
    # grace it keeps playing: the silence pages carry as many bytes as the audio did
    srv = ctx.start_server(grace_ms=15000)
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    time.sleep(6.5)  # the ring holds the 6 s burst the page asks for
    b = Browser(ctx, srv, "?player=audio", 18, browser=browser)
    b.wait(lambda s: s.get("state") == "playing" and (s.get("played_s") or 0) > 2, 15,
           "<audio> playing")
    src.signal(signal.SIGKILL)
    t_kill = b.samples()[-1]["t"]
    b.wait(lambda s: s["t"] > t_kill + 8000, 15, "8 s of grace")
    done, samples = b.finish()
    check(all(s.get("tag") == "audio" for s in samples), "?player=audio did not give <audio>")
    check(all(s.get("error") is None for s in samples), "media error")
    first = done.get("first_playing_ms")
    grace = [s for s in samples if s["t"] >= t_kill + 1000]
    played, wall = check_played_steadily(grace, "<audio> through the grace", slack_s=1.5)
    note(f"<audio> in {done.get('browser')} (burst=6000): click to playing {first} ms; in the "
         f"grace it played {played:.1f} s in {wall:.1f} s")


@test(timeout=90, icecast=False, exclusive=True)
def test_audio_fallback_plays_and_rides_a_grace_11(ctx):
    audio_fallback_rides_a_grace(ctx, "chromium")


@test(timeout=110, icecast=False, exclusive=True)
def test_firefox_audio_fallback_plays_and_rides_a_grace_11(ctx):
    audio_fallback_rides_a_grace(ctx, "firefox")


# ---- the listener stream's cursor, without a browser -------------------------------------


def get_stream(srv, query, seconds=1.0):
    s = connect(srv.audience)
    s.sendall(f"GET /live{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    resp, rest = read_head(s)
    data, _ = read_until_close(s, seconds) if resp.status == 200 else (rest, None)
    s.close()
    pages = []
    if resp.status == 200:
        pages, _ = parse_ogg(rest + data)
    else:
        resp.body = rest
    return resp, pages


@test(timeout=60, icecast=False)
def test_listener_from_cursor_and_burst_11(ctx):
    srv = ctx.start_server(extra=["--workers", "1"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    time.sleep(3)
    resp, pages = get_stream(srv, "")
    check(resp.status == 200, f"GET /live -> {resp.status}")
    seq = int(resp.header("X-Rostrum-Seq"))
    check(resp.header("X-Rostrum-Gap") is None, "a gap on a plain join")
    check(len(pages) >= 6 and pages[0].seq == 0 and pages[1].seq == 1, "header pages first")
    offset = pages[2].seq - seq  # the stream's constant: Ogg page number - ring seq
    check(offset == 2, f"Ogg page number - ring seq = {offset} (the mux numbers its two "
                       "header pages 0 and 1, and the ring its audio pages from 0)")
    by_seq = {p.seq - offset: p.raw for p in pages[2:]}
    # resume at a page we had: header pages, then exactly that page, byte for byte
    want = seq + 3
    resp2, pages2 = get_stream(srv, f"?from={want}")
    check(resp2.status == 200 and int(resp2.header("X-Rostrum-Seq")) == want,
          f"from={want} -> {resp2.status} X-Rostrum-Seq {resp2.header('X-Rostrum-Seq')}")
    check(resp2.header("X-Rostrum-Gap") is None, "a gap where the ring has the page")
    check([p.seq for p in pages2[:3]] == [0, 1, want + offset],
          f"from={want}: pages {[p.seq for p in pages2[:4]]}")
    check(pages2[0].serial == pages[0].serial, "another stream")
    check(pages2[2].raw == by_seq[want], "the resumed page differs from the one first sent")
    # the page it lacks, at the live edge: it waits, then gets it
    nxt = pages[-1].seq - offset + 1
    resp3, pages3 = get_stream(srv, f"?from={nxt}", 1.5)
    check(resp3.status == 200 and len(pages3) >= 3 and pages3[2].seq == nxt + offset,
          f"from={nxt} (next): {[p.seq for p in pages3[:4]]}")
    # gone (far ahead, as a page evicted long ago is gone): the burst, and it says so
    resp4, pages4 = get_stream(srv, "?from=1000000000")
    check(resp4.status == 200 and resp4.header("X-Rostrum-Gap") == "1",
          f"from far ahead: {resp4.status}, X-Rostrum-Gap {resp4.header('X-Rostrum-Gap')}")
    check(len(pages4) >= 3 and pages4[2].seq - offset == int(resp4.header("X-Rostrum-Seq")),
          "the gap's first page is not the one X-Rostrum-Seq names")
    # burst=: 0 starts at the live edge, 3000 further back than the default 1000
    r0, p0 = get_stream(srv, "?burst=0", 0.3)
    r3, p3 = get_stream(srv, "?burst=2500", 0.3)
    check(r0.status == 200 and r3.status == 200, "burst= refused")
    s0, s3 = int(r0.header("X-Rostrum-Seq")), int(r3.header("X-Rostrum-Seq"))
    check(s0 - s3 >= 10, f"burst=2500 starts {s0 - s3} pages before burst=0 (pages of 200 ms)")
    # garbage: 400 with a reason, counted, before any stream
    vals, _ = metrics(srv)
    bad0 = metric(vals, "rostrum_joins_total", outcome="bad_request") or 0
    for q in ["?from=", "?from=-1", "?from=1e3", "?from=%31", "?from=18446744073709551616",
              "?from=12x", "?burst=abc", "?burst=999999999"]:
        r, _ = get_stream(srv, q)
        check(r.status == 400, f"GET /live{q} -> {r.status}")
        check(b"from=" in r.body or b"burst=" in r.body, f"400 without a reason: {r.body!r}")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_joins_total", outcome="bad_request") - bad0 == 8,
          "bad from=/burst= not counted as bad_request joins")
    check(metric(vals, "rostrum_listener_resumes_total") >= 2, "resumes not counted")
    check(metric(vals, "rostrum_listener_resume_gaps_total") >= 1, "gaps not counted")
    check(src.alive(), "the source died")
