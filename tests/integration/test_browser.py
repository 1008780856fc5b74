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
