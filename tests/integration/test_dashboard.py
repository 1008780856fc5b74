"""The operator's views (issue 9): /dashboard.json's bounded history, the admin key, the
stage's figures in /metrics with a live stage, and the dashboard page in headless Chromium."""

import json
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from harness import (ROOT, check, ffmpeg_source, http_request, listen, metric, metrics, test,
                     wait_for, wait_live)

ADMIN = "test-admin-key"
HOST_KEY = "test-host-key"
DASHBOARD = ROOT / "tests" / "browser" / "dashboard.mjs"
MODULES = ROOT / "tests" / "browser" / "node_modules"


def dashboard(srv, key=None):
    path = "/dashboard.json" + (f"?key={key}" if key else "")
    r = http_request(srv.audience, "GET", path)
    check(r.status == 200, f"GET {path} -> {r.status}: {r.body[:200]!r}")
    try:
        return json.loads(r.body)
    except ValueError as e:
        raise AssertionError(f"/dashboard.json is not JSON ({e}): {r.body[:300]!r}")


def listeners_now(d, space):
    """The latest value of the listener series of <space>, 0 if none yet."""
    vals = d["charts"]["listeners"].get(space) or [0]
    return vals[-1]


def check_shape(d):
    n = d["points"]
    check(0 < n <= d["capacity"] <= 600, f"points {n}, capacity {d['capacity']}")
    check(len(d["t"]) == n, f"{len(d['t'])} times for {n} points")
    check(all(b > a for a, b in zip(d["t"], d["t"][1:])), "sample times do not increase")
    for chart, series in d["charts"].items():
        check(series, f"chart {chart} has no series")
        for name, vals in series.items():
            check(len(vals) == n, f"{chart}/{name}: {len(vals)} values for {n} points")


def promtool(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=20)
    out = (p.stdout + p.stderr).decode(errors="replace").strip()
    check(p.returncode == 0, f"promtool check metrics failed ({p.returncode}):\n{out}")


@test(timeout=60, icecast=False)
def test_dashboard_issue9_history_grows_and_counts_listener(ctx):
    srv = ctx.start_server(extra=["--workers", "1"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = listen(ctx, srv, "/live")
    check(lst.resp.status == 200, f"GET /live -> {lst.resp.status}")
    wait_for(lambda: lst.nbytes() > 10000, 10, "the listener to receive audio")

    def counted():
        return listeners_now(dashboard(srv), "live") == 1

    wait_for(counted, 10, "the dashboard's listener series to show the listener")
    d1 = dashboard(srv)
    check_shape(d1)
    lst2 = listen(ctx, srv, "/live")  # a join while the history is being taken
    check(lst2.resp.status == 200, f"second GET /live -> {lst2.resp.status}")
    time.sleep(3)
    wait_for(lambda: listeners_now(dashboard(srv), "live") == 2, 10,
             "the listener series to show the second listener")
    d2 = dashboard(srv)
    check_shape(d2)
    check(d2["points"] >= d1["points"] + 2, f"history did not grow: {d1['points']} -> "
                                            f"{d2['points']} points in 3 s")
    lis = d2["charts"]["listeners"]
    check(lis["live"][-1] == 2 and lis["all"][-1] == 2, f"listeners now: {lis}")
    check(1 in lis["live"], f"the history lost the time with one listener: {lis['live']}")
    check(max(d2["charts"]["bytes_out_per_s"]["bytes"][-3:]) > 2000,
          f"bytes out per second: {d2['charts']['bytes_out_per_s']['bytes'][-5:]}")
    check(sum(d2["charts"]["joins_per_s"]["ok"]) > 0, "no ok join in joins_per_s")
    check("worker-0" in d2["charts"]["worker_pressure"] and
          "main" in d2["charts"]["loop_lag_ms"], f"load charts: {list(d2['charts'])}")


@test(timeout=40, icecast=False)
def test_dashboard_issue9_admin_key(ctx):
    srv = ctx.start_server(extra=["--workers", "1", "--admin-key", ADMIN])
    for path in ("/dashboard", "/dashboard.json", "/dashboard.html"):
        r = http_request(srv.audience, "GET", path)
        check(r.status == 401, f"GET {path} without the key -> {r.status}, want 401")
        r = http_request(srv.audience, "GET", path + "?key=wrong")
        check(r.status == 403, f"GET {path}?key=wrong -> {r.status}, want 403")
        r = http_request(srv.audience, "GET", path, headers=[("Authorization", "Bearer nope")])
        check(r.status == 403, f"GET {path} with a wrong bearer -> {r.status}, want 403")
        r = http_request(srv.audience, "GET", f"{path}?x=1&key={ADMIN}")
        check(r.status == 200, f"GET {path}?key=<admin key> -> {r.status}")
        r = http_request(srv.audience, "GET", path, headers=[("Authorization", f"Bearer {ADMIN}")])
        check(r.status == 200, f"GET {path} with the admin key as bearer -> {r.status}")
    r = http_request(srv.audience, "GET", f"/dashboard?key={ADMIN}")
    check(b"dashboard.js" in r.body, "/dashboard is not the dashboard page")
    wait_for(lambda: dashboard(srv, ADMIN)["points"] >= 1, 5, "a first sample")
    # the rest of the audience port stays open
    r = http_request(srv.audience, "GET", "/metrics")
    check(r.status == 200, f"/metrics -> {r.status} with an admin key set")


def speaker(ctx, srv, space, name, tone, seconds):
    binary = Path(ctx.binary).parent / "rostrum-speak"
    argv = [binary, "--stage", f"127.0.0.1:{srv.stage}", "--space", space, "--name", name,
            "--seconds", seconds, "--json", "--key", HOST_KEY, "--tone", tone]
    return ctx.spawn(f"speak_{name}", argv, stdout=ctx.tmp / f"speak_{name}.json")


@test(timeout=60, icecast=False)
def test_dashboard_issue9_metrics_stage_gauges(ctx):
    srv = ctx.start_server(extra=["--host-key", HOST_KEY, "--workers", "1"])
    a = speaker(ctx, srv, "room", "A", 440, 12)
    time.sleep(0.7)
    b = speaker(ctx, srv, "room", "B", 660, 11)

    def two_on_stage():
        vals, _ = metrics(srv)
        return metric(vals, "rostrum_stage_speakers", space="room") == 2

    wait_for(two_on_stage, 10, "rostrum_stage_speakers{space=room} to be 2")
    time.sleep(1.5)
    vals, text = metrics(srv)
    promtool(text)
    check(metric(vals, "rostrum_stage_members", space="room") == 2,
          f"stage_members = {metric(vals, 'rostrum_stage_members', space='room')}")
    q = metric(vals, "rostrum_stage_return_queued_bytes", space="room")
    check(q is not None and 0 <= q <= 2 * 16384 + 16384, f"return queued bytes = {q}")
    check(metric(vals, "rostrum_stage_return_drops_total") == 0, "return drops with fast speakers")
    n1 = metric(vals, "rostrum_mixer_frame_seconds_count")
    s1 = metric(vals, "rostrum_mixer_frame_seconds_sum")
    check(n1 is not None and n1 > 50, f"mixer frames counted: {n1}")
    check(s1 is not None and 0 < s1 < n1 * 0.02, f"mixer frame time sum {s1} for {n1} frames")
    mx = metric(vals, "rostrum_mixer_frame_max_seconds")
    check(mx is not None and 0 < mx < 0.5, f"mixer frame max over the last second: {mx}")
    check(metric(vals, "rostrum_mixer_overruns_total") is not None, "no overruns counter")
    check("# TYPE rostrum_mixer_frame_seconds summary" in text, "mixer frame time is no summary")
    check(metric(vals, "rostrum_event_loop_lag_seconds", process="main") is not None,
          "no main-process loop lag")
    time.sleep(1)
    vals, _ = metrics(srv)
    n2 = metric(vals, "rostrum_mixer_frame_seconds_count")
    check(40 <= n2 - n1 <= 70, f"{n2 - n1} mixer frames in ~1 s, want ~50")
    d = dashboard(srv)
    check(max(d["charts"]["stage"]["speakers"][-3:]) == 2, f"stage chart: {d['charts']['stage']}")
    check(max(d["charts"]["stage_health"]["mixer_max_ms"][-3:]) > 0, "no mixer time in history")
    # the Grafana dashboard asks only for metrics that exist
    graf = json.loads((ROOT / "docs" / "grafana-rostrum.json").read_text())
    check(graf["__inputs"][0]["name"] == "DS_PROMETHEUS", "no DS_PROMETHEUS input")
    kinds = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    for p in graf["panels"]:
        check(p["datasource"]["uid"] == "${DS_PROMETHEUS}", f"panel {p['title']}: datasource")
        for t in p["targets"]:
            for name in re.findall(r"rostrum_[a-z_]+", t["expr"]):
                base = re.sub(r"_(sum|count)$", "", name)
                check(name in kinds or base in kinds, f"Grafana panel {p['title']!r} asks for "
                                                      f"{name}, which /metrics does not have")
    check(a.wait(20) == 0, f"speaker A failed:\n{a.tail()}")
    check(b.wait(20) == 0, f"speaker B failed:\n{b.tail()}")


def png_size(path):
    data = path.read_bytes()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG")
    w, h = struct.unpack(">II", data[16:24])
    return len(data), w, h


@test(timeout=120, icecast=False, exclusive=True)
def test_dashboard_issue9_browser_draws_charts(ctx):
    node = shutil.which("node")
    check(node, "node is not installed (the test runner installs it: make test-deps)")
    check((MODULES / "playwright-core").is_dir(),
          f"{MODULES}/playwright-core is missing: run `npm ci` in tests/browser")
    # a key with '+' as a base64 one has, pasted into the address bar as it is (issue 10): the
    # page's script must read it as the server does, not as URLSearchParams (a space)
    key = "test+admin/key="
    srv = ctx.start_server(extra=["--workers", "1", "--admin-key", key])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = listen(ctx, srv, "/live")
    check(lst.resp.status == 200, f"GET /live -> {lst.resp.status}")
    wait_for(lambda: listeners_now(dashboard(srv, key), "live") == 1, 10,
             "the history to count the listener")
    shot = ctx.tmp / "dashboard.png"
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    p = ctx.spawn("dashboard", [node, DASHBOARD, srv.url(f"/dashboard?key={key}"), shot, "3"],
                  env=env, stdout=ctx.tmp / "dashboard.out")
    try:
        rc = p.wait(100)
    finally:
        p.signal(signal.SIGTERM)
    out = p.output().decode(errors="replace").strip()
    check(rc == 0, f"dashboard.mjs exited with {rc}: {out[-1500:]}\n{p.tail(15)}")
    res = json.loads(out.splitlines()[-1])
    charts = res["charts"]
    for want in ("listeners", "joins_per_s", "refusals_per_s", "stalls_per_s", "bytes_out_per_s",
                 "worker_pressure", "loop_lag_ms", "stage", "stage_health"):
        check(want in charts and charts[want]["points"] >= 3 and charts[want]["paths"] > 0,
              f"chart {want}: {charts.get(want)}")
    check("live: 1" in charts["listeners"]["legend"],
          f"the listeners chart does not show the listener: {charts['listeners']}")
    size, w, h = png_size(shot)
    check(size > 20000 and w >= 800 and h >= 600, f"screenshot {size} bytes, {w}x{h}")


@test(timeout=60, icecast=False)
def test_dashboard_issue9_return_drops_for_slow_speaker(ctx):
    from wsclient import WS  # the suite's small WebSocket client

    srv = ctx.start_server(extra=["--host-key", HOST_KEY, "--workers", "1",
                                  "--speaker-idle-ms", "120000"])
    a = speaker(ctx, srv, "room", "A", 440, 25)
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_stage_speakers", space="room") == 1, 10,
             "the first speaker on stage")
    # a speaker that takes its seat, then never reads its return audio
    lazy = WS(srv.stage, f"/ws/room?key={HOST_KEY}&name=lazy")
    lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_stage_speakers", space="room") == 2, 10,
             "the lazy speaker on stage")

    def dropping():
        vals, _ = metrics(srv)
        return (metric(vals, "rostrum_stage_return_drops_total") or 0) > 0

    wait_for(dropping, 30, "return audio for the lazy speaker to be dropped", interval=0.5)
    vals, text = metrics(srv)
    promtool(text)
    q = metric(vals, "rostrum_stage_return_queued_bytes", space="room")
    check(q is not None and q >= 8000, f"return queued bytes {q} with a speaker not reading")
    wait_for(lambda: max(dashboard(srv)["charts"]["stage_health"]["return_drops_per_s"]) > 0,
             3, "the dashboard's history to show the return drops")
    lazy.sock.close()


@test(timeout=40, icecast=False)
def test_dashboard_admin_key_percent_decoded_issue10(ctx):
    """?key= is percent-decoded as a browser encodes it: a key with + / = % and a space works
    encoded (%2B %2F %3D %25 %20), and a base64 key pasted as it is keeps its '+'."""
    special = "p+a/s=s%w o"
    b64 = "Zm9v+YmFy/eg=="
    for key, good, bad in (
            (special, [quote(special, safe=""), "p+a/s=s%25w%20o"],
             [quote(special.replace("+", " "), safe=""), "p+a/s=s%w%20o", "p%2Ba",
              quote(special, safe="") + "x", "%" * 300]),
            (b64, [b64, quote(b64, safe="")], [b64.replace("+", "%20"), b64[:-1]])):
        srv = ctx.start_server(extra=["--workers", "1", "--admin-key", key])
        for path in ("/dashboard", "/dashboard.json"):
            for q in good:
                r = http_request(srv.audience, "GET", f"{path}?key={q}")
                check(r.status == 200, f"admin key {key!r}: GET {path}?key={q} -> {r.status}")
            for q in bad:
                r = http_request(srv.audience, "GET", f"{path}?key={q}")
                check(r.status == 403, f"admin key {key!r}: GET {path}?key={q[:40]} -> "
                      f"{r.status}, want 403")
            r = http_request(srv.audience, "GET", path, headers=[("Authorization", f"Bearer {key}")])
            check(r.status == 200, f"admin key {key!r} as bearer: {path} -> {r.status}")
        srv.stop()
