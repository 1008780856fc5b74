"""A real browser (headless Chromium, tests/browser/play.mjs) plays a space from our page."""

import shutil
import signal

from harness import ROOT, check, ffmpeg_source, test, wait_live

PLAY = ROOT / "tests" / "browser" / "play.mjs"
MODULES = ROOT / "tests" / "browser" / "node_modules"


@test(timeout=120, icecast=False, exclusive=True)
def test_browser_plays_live_space(ctx):
    node = shutil.which("node")
    check(node, "node is not installed (the test runner installs it: make test-deps)")
    check(PLAY.exists(), f"{PLAY} is missing")
    check((MODULES / "playwright-core").is_dir(),
          f"{MODULES}/playwright-core is missing: run `npm ci` in tests/browser "
          "(make test-deps does it)")
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    # HOME and XDG dirs point into the temp dir so that the browser leaves nothing behind.
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    play = ctx.spawn("play", [node, PLAY, srv.url("/"), "/live", "20"], env=env,
                     stdout=ctx.tmp / "play.out")
    try:
        rc = play.wait(100)
    finally:
        # SIGTERM first: Playwright then closes the browser it started in its own group.
        play.signal(signal.SIGTERM)
    out = play.output().decode(errors="replace").strip()
    check(rc == 0, f"play.mjs exited with {rc}: {out[-1500:]}\n{play.tail(15)}")
    check(src.alive(), f"source died:\n{src.tail()}")


HOST = ROOT / "tests" / "browser" / "host.mjs"


@test(timeout=150, icecast=False, exclusive=True)
def test_browser_host_console_runs_a_stage(ctx):
    # the host console and the speaker page in one browser: create, invite, request to speak,
    # promote, mute, demote, remove, end (tests/browser/host.mjs says each step)
    node = shutil.which("node")
    check(node and (MODULES / "playwright-core").is_dir(), "node or playwright-core missing")
    key = "browser-host-key"
    srv = ctx.start_server(extra=["--host-key", key, "--workers", "1"])
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    host = ctx.spawn("host", [node, HOST, srv.url(""), f"127.0.0.1:{srv.stage}", key], env=env,
                     stdout=ctx.tmp / "host.out")
    try:
        rc = host.wait(120)
    finally:
        host.signal(signal.SIGTERM)
    out = host.output().decode(errors="replace").strip()
    check(rc == 0, f"host.mjs exited with {rc}: {out[-1500:]}\n{host.tail(15)}")
    check('"step":"ended"' in out, f"host.mjs did not reach the end: {out[-800:]}")


@test(timeout=150, icecast=False, exclusive=True)
def test_browser_plays_from_an_edge_and_shows_the_tree_count_10(ctx):
    # issue 10, items 3-4: the origin is full (a relay's feed and one listener), so the page's
    # player is sent to the relay with a 307 and plays there; the card shows the tree's count
    # (1 on the origin + 3 raw listeners and the browser on the relay), not the origin's 1
    from harness import free_port, listen
    from test_relay import relay, relay_live
    node = shutil.which("node")
    check(node and (MODULES / "playwright-core").is_dir(), "node or playwright-core missing")
    origin = ctx.start_server(extra=["--workers", "1", "--max-listeners", "2"])
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    port = free_port()
    edge = relay(ctx, origin, audience=f"127.0.0.1:{port}",
                 extra=["--public-url", f"http://127.0.0.1:{port}"])
    relay_live(edge, "/live")
    lst = [listen(ctx, origin, "/live")] + [listen(ctx, edge, "/live") for _ in range(3)]
    check(all(x.resp.status == 200 for x in lst), "the raw listeners")
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    play = ctx.spawn("play", [node, PLAY, origin.url("/"), "/live", "20", "5"], env=env,
                     stdout=ctx.tmp / "play.out")
    try:
        rc = play.wait(100)
    finally:
        play.signal(signal.SIGTERM)
    out = play.output().decode(errors="replace").strip()
    check(rc == 0, f"play.mjs exited with {rc}: {out[-1500:]}\n{play.tail(15)}")
    # <audio>.currentSrc keeps the URL it was given, so ask the servers where it played
    from harness import metric, metrics
    m, _ = metrics(origin)
    check(metric(m, "rostrum_redirects_total", reason="full") >= 1,
          f"the origin sent nobody to the relay: {out[-600:]}")
    m, _ = metrics(edge)
    check(metric(m, "rostrum_joins_total", outcome="ok") >= 4,
          f"the browser did not join on the relay: {metric(m, 'rostrum_joins_total', outcome='ok')}")
