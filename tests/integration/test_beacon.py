"""HLS players' beacons (issue 11, item 4): players behind caches are counted by a beacon with a
signed session id to GET/POST /beacon/<space> (uncacheable); a session counts while its beacons
arrive (session-window-s after the last one), once whatever worker its beacons land on; the
status JSON and /metrics report them apart from stream listeners; forged, expired, foreign
ids are refused before any work and counted; the bounds per address and per space are hit and
counted."""

import base64
import json
import socket
import time

from harness import (Skip, check, connect, ffmpeg_source, http_request, metric, metrics,
                     mount_status, note, read_head, read_until_close, test, wait_for, wait_live)

WINDOW = 5


def beacon(port, space, sid=None, bind="127.0.0.1", method="GET", extra=""):
    """One beacon on a fresh connection from <bind>; returns (status, headers, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(bind, 0))
    try:
        q = f"?sid={sid}" if sid else ""
        if extra:
            q += ("&" if q else "?") + extra
        body = b""
        s.sendall(f"{method} /beacon/{space}{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  f"{'Content-Length: 0' + chr(13) + chr(10) if method == 'POST' else ''}\r\n"
                  .encode())
        head, rest = read_head(s)
        more, _ = read_until_close(s, 5)
        body = rest + more
        return head, body
    finally:
        s.close()


class Player:
    """A simulated HLS player's beaconing: its session id, renewed by each answer."""

    def __init__(self, port, space, bind):
        self.port, self.space, self.bind, self.sid = port, space, bind, None

    def beat(self):
        head, body = beacon(self.port, self.space, self.sid, self.bind,
                            method="POST" if self.sid and len(self.sid) % 2 else "GET")
        check(head.status == 200, f"beacon from {self.bind} -> {head.status} {body[:200]!r}")
        check("no-store" in head.header("Cache-Control", ""), "a beacon answer must not be cached")
        doc = json.loads(body)
        check(doc["window_s"] == WINDOW and doc["every_s"] == 30, f"beacon answer {doc}")
        check(doc["new"] == (self.sid is None), f"new={doc['new']} with sid={self.sid is not None}")
        self.sid = doc["sid"]


def counts(srv, space):
    st = mount_status(srv, "/" + space)
    vals, _ = metrics(srv)
    return st["hls_listeners"], metric(vals, "rostrum_hls_listeners", space=space), st["listeners"]


def server(ctx, workers, extra=()):
    srv = ctx.start_server(extra=["--workers", str(workers), "--session-window-s", str(WINDOW)]
                           + list(extra))
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    return srv


def beat_all(players):
    for p in players:
        p.beat()


@test(timeout=120, icecast=False)
def test_beacons_counted_two_workers_issue11(ctx):
    """300 players beaconing over fresh connections to 2 workers are counted exactly, as HLS
    listeners apart from stream listeners; those that stop drop out after the window, not
    before."""
    srv = server(ctx, 2)
    n = 300
    players = [Player(srv.audience, "live", f"127.0.3.{1 + i % 30}") for i in range(n)]
    t0 = time.monotonic()
    for _ in range(3):  # three beacons each: each on a new connection, to either worker
        beat_all(players)
    note(f"{3 * n} beacons in {time.monotonic() - t0:.1f} s")
    # exact, and stays exact over several reads (each may be answered by either worker)
    wait_for(lambda: counts(srv, "live")[:2] == (n, n), 5, f"{n} HLS listeners")
    for _ in range(6):
        hls, prom, stream = counts(srv, "live")
        check((hls, prom) == (n, n), f"hls_listeners {hls}, metric {prom}, want {n}")
        check(stream == 0, f"HLS sessions must not count as stream listeners: {stream}")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_beacons_total") == 3 * n,
          f"beacons_total {metric(vals, 'rostrum_beacons_total')}, want {3 * n}")
    check(metric(vals, "rostrum_beacon_sessions_total") == n, "one session id each")
    # half stop beaconing: counted until the window passes, then gone
    keep, gone = players[: n // 2], players[n // 2:]
    stopped = time.monotonic()
    beat_all(keep)
    hls, prom, _ = counts(srv, "live")
    check(hls == n and prom == n, f"{time.monotonic() - stopped:.1f} s after the last beacon of "
          f"{len(gone)} players they still count: {hls}, {prom}")
    deadline = stopped + WINDOW + 4
    dropped = None
    while time.monotonic() < deadline:
        beat_all(keep)
        hls, prom, _ = counts(srv, "live")
        if hls == len(keep) and prom == len(keep):
            dropped = time.monotonic() - stopped
            break
        time.sleep(0.5)
    check(dropped is not None, f"the {len(gone)} silent players did not drop out: {hls}")
    check(dropped >= WINDOW - 1, f"dropped out after {dropped:.1f} s, before the {WINDOW} s window")
    note(f"silent players dropped out {dropped:.1f} s after their last beacon (window {WINDOW} s)")
    # a silent player's old id: its expiry is wall-clock seconds (the window, whole seconds
    # from its last answer), so give it the second it may still have; then refused
    time.sleep(2.1)
    head, body = beacon(srv.audience, "live", gone[0].sid, gone[0].bind)
    check(head.status == 403 and b"expired" in body, f"expired id -> {head.status} {body!r}")


@test(timeout=60, icecast=False)
def test_beacon_bad_ids_refused_issue11(ctx):
    """Forged, foreign, expired and malformed session ids are refused with a reason, counted, and
    count nobody."""
    srv = server(ctx, 1)
    p = Player(srv.audience, "live", "127.0.4.1")
    p.beat()
    payload, sig = p.sid.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[-40] ^= 1  # another id, same signature
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode() + "." + sig
    cases = [
        (forged, "127.0.4.1", 403, b"signature"),
        (p.sid[:-2] + ("AA" if p.sid[-2:] != "AA" else "BB"), "127.0.4.1", 403, b""),
        (p.sid, "127.0.4.2", 403, b"another address"),
        ("a" * 500, "127.0.4.1", 400, b""),
        ("bad%20id", "127.0.4.1", 400, b""),
    ]
    for sid, bind, want, why in cases:
        head, body = beacon(srv.audience, "live", sid, bind)
        check(head.status == want and why in body, f"sid {sid[:30]}... from {bind} -> "
              f"{head.status} {body[:160]!r}, want {want} {why!r}")
    head, body = beacon(srv.audience, "live", None, "127.0.4.1", extra=f"sid={p.sid}&sid={p.sid}")
    check(head.status == 400, f"two sids -> {head.status}")
    head, body = beacon(srv.audience, "nosuch", None, "127.0.4.1")
    check(head.status == 404, f"beacon to no space -> {head.status}")
    head, body = beacon(srv.audience, "live", None, "127.0.4.1", method="HEAD")
    check(head.status == 405, f"HEAD beacon -> {head.status}: it must not count")
    # a second, real session (a token of another purpose never passes: test_beacon.c)
    head, body = beacon(srv.audience, "live", None, "127.0.4.1")
    check(head.status == 200, "a new session")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_beacons_refused_total", reason="bad_session") == 6,
          f"refusals counted: {metric(vals, 'rostrum_beacons_refused_total', reason='bad_session')}")
    time.sleep(1.1)
    hls = mount_status(srv, "/live")["hls_listeners"]
    check(hls == 2, f"only the two real sessions count, not the refused ones: {hls}")
    # expired: no beacon for the window
    time.sleep(WINDOW + 1)
    head, body = beacon(srv.audience, "live", p.sid, "127.0.4.1")
    check(head.status == 403 and b"expired" in body, f"expired -> {head.status} {body!r}")


@test(timeout=60, icecast=False)
def test_beacon_bounds_issue11(ctx):
    """New sessions per address come out of its join bucket (joins-per-ip, burst 2x); a space
    counts at most max-hls-sessions; both refusals are counted, and an existing session keeps
    beaconing past either."""
    srv = server(ctx, 1, ["--joins-per-ip", "3", "--max-hls-sessions", "20"])
    one = [Player(srv.audience, "live", "127.0.5.1") for _ in range(6)]
    beat_all(one)  # the bucket's burst: 6
    head, body = beacon(srv.audience, "live", None, "127.0.5.1")
    check(head.status == 429 and head.header("Retry-After"), f"7th new session -> {head.status}")
    beat_all(one)  # existing sessions are not new sessions
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_beacons_refused_total", reason="sessions_per_ip") == 1,
          "the per-address refusal is counted")
    more = [Player(srv.audience, "live", f"127.0.5.{10 + i}") for i in range(14)]
    beat_all(more)  # 20 now
    time.sleep(1.1)  # the count the bound looks at is at most a second old
    head, body = beacon(srv.audience, "live", None, "127.0.5.40")
    check(head.status == 503 and head.header("Retry-After"), f"21st session -> {head.status}")
    beat_all(one + more)
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_beacons_refused_total", reason="space_full") == 1,
          "the space's refusal is counted")
    time.sleep(1.1)
    check(mount_status(srv, "/live")["hls_listeners"] == 20, "20 sessions counted")


@test(timeout=90, icecast=False)
def test_browser_beacons_counted_issue11(ctx):
    """Chromium runs web/beacon.js from rostrum's page: 3 beacons are 3 HLS listeners, they
    renew their sessions (3 issued in all after the window), and after stop() they drop out
    once the window has passed."""
    import shutil
    from pathlib import Path
    node = shutil.which("node")
    modules = Path(__file__).resolve().parents[2] / "tests" / "browser" / "node_modules"
    check(node and (modules / "playwright-core").is_dir(), "node or playwright-core missing "
          "(make test-deps; tests/browser/node_modules)")
    srv = server(ctx, 2)
    script = Path(__file__).resolve().parents[2] / "tests" / "browser" / "beacon.mjs"
    p = ctx.spawn("beacon_mjs", [node, script, srv.url("/"), "/live", 3, WINDOW],
                  stdout=ctx.tmp / "beacon.json")
    rc = p.wait(60)
    out = p.output().decode().strip().splitlines()
    r = json.loads(out[-1]) if out else {"reason": p.tail()}
    check(rc == 0 and r.get("ok"), f"beacon.mjs: {r.get('reason')}")
    note(f"Chromium: counted {r['counted_ms']} ms after the first beacon, dropped out "
         f"{r['dropped_ms']} ms after stop() (window {WINDOW} s)")


@test(timeout=150, icecast=False)
def test_browser_hlsjs_page_beacons_issue11(ctx):
    """The listener page in Chromium plays /<space>.m3u8 with ?player=hlsjs through hls.js (the
    card's <audio> on a MediaSource) and with ?player=hls (the browser's own HLS where it has
    one), and each time, while it plays, is counted as one HLS listener by its beacons; after
    Stop it drops out within the window."""
    import shutil
    from pathlib import Path
    node = shutil.which("node")
    modules = Path(__file__).resolve().parents[2] / "tests" / "browser" / "node_modules"
    check(node and (modules / "playwright-core").is_dir(), "node or playwright-core missing "
          "(make test-deps; tests/browser/node_modules)")
    srv = server(ctx, 2)
    if http_request(srv.audience, "GET", "/hls.min.js").status != 200:
        raise Skip("this build serves no /hls.min.js (hls.js not in tests/browser/node_modules "
                   "when it was built)")
    wait_for(lambda: http_request(srv.audience, "GET", "/hls/live/o.m3u8").status == 200, 15,
             "the HLS media playlist")
    script = Path(__file__).resolve().parents[2] / "tests" / "browser" / "hlspage.mjs"
    for mode in ("hlsjs", "hls"):
        p = ctx.spawn(f"hlspage_{mode}", [node, script, srv.url(f"/?player={mode}"), "/live", 5,
                                          WINDOW], stdout=ctx.tmp / f"hlspage_{mode}.json")
        rc = p.wait(70)
        out = p.output().decode().strip().splitlines()
        r = json.loads(out[-1]) if out else {"reason": p.tail()}
        check(rc == 0 and r.get("ok"), f"hlspage.mjs ?player={mode}: {r.get('reason')} ({r})")
        note(f"Chromium, ?player={mode} ({'hls.js' if r['hlsjs'] else 'native HLS'}): click to "
             f"playing {r['start_ms']} ms, counted as an HLS listener {r['counted_ms']} ms after "
             f"the click, played {r['played_s']:.1f} s; dropped out {r['dropped_ms']} ms after "
             f"Stop (window {WINDOW} s)")
        check(0 < r["start_ms"] < 15000 and r["counted_ms"] is not None, "timings not sane")
