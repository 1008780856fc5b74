"""ffmpeg as source (PUT with Expect: 100-continue) and as listener; the Ogg stream read raw."""

import time

from harness import (check, check_ffmpeg_decode, check_listener_ogg, check_tone, audio_seconds,
                     ffmpeg_listener, ffmpeg_source, listen, make_opus_file, mount_status,
                     py_source, test, wait_live)


@test(timeout=60)
def test_ffmpeg_source_ffmpeg_listener(ctx):
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    t0 = time.monotonic()
    lst = ffmpeg_listener(ctx, srv, "/live", 10)
    pcm = check_ffmpeg_decode(lst, 10, timeout=30)
    # The burst lets the player start at once, and then it must keep up with real time.
    took = time.monotonic() - t0
    check(took < 13, f"10 s of audio took {took:.1f} s to arrive")
    check_tone(pcm, 440, "listener")
    check(src.alive(), f"ffmpeg source died:\n{src.tail()}")


@test(timeout=40)
def test_ogg_stream_and_headers(ctx):
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440, name="Test Space",
                        description="A test description", genre="Testing")
    wait_live(srv, "/live", proc=src)
    time.sleep(2)  # let the server hold some audio for the burst
    lst = listen(ctx, srv, "/live")
    r = lst.resp
    check(r.status == 200, f"GET /live -> {r.status}")
    ct = r.header("Content-Type", "")
    check(ct.split(";")[0].strip() in ("audio/ogg", "application/ogg"),
          f"Content-Type {ct!r}")
    if not ctx.icecast:
        check(ct.split(";")[0].strip() == "audio/ogg", f"Content-Type {ct!r}, want audio/ogg")
    check(r.header("icy-name") == "Test Space", f"icy-name {r.header('icy-name')!r}")
    check(r.header("icy-description") == "A test description",
          f"icy-description {r.header('icy-description')!r}")
    check(r.header("icy-genre") == "Testing", f"icy-genre {r.header('icy-genre')!r}")
    cc = [v.strip() for v in r.header("Cache-Control", "").split(",")]
    check("no-cache" in cc and "no-store" in cc, f"Cache-Control {r.header('Cache-Control')!r}")
    check(r.header("Access-Control-Allow-Origin") == "*",
          f"Access-Control-Allow-Origin {r.header('Access-Control-Allow-Origin')!r}")
    time.sleep(4)
    check(lst.end is None, f"stream ended early ({lst.end})")
    pages = check_listener_ogg(lst)
    secs = audio_seconds(pages)
    check(secs >= 3.5, f"only {secs:.2f} s of audio in 4 s (with burst)")
    st = mount_status(srv, "/live")
    check(st.get("server_name") == "Test Space", f"status server_name {st.get('server_name')!r}")


@test(timeout=40)
def test_legacy_source_method(ctx):
    """Old clients use `SOURCE /mount HTTP/1.0` and get `HTTP/1.0 200 OK`, no 100 Continue."""
    srv = ctx.start_server()
    opus = make_opus_file(ctx, 20)
    src = py_source(ctx, srv, "/old", method="SOURCE", content_type=None,
                    headers=[("ice-name", "Old Client")])
    check(src.resp.status == 200, f"SOURCE -> {src.resp.status} {src.resp.reason}")
    if not ctx.icecast:
        check(src.resp.version == "HTTP/1.0", f"SOURCE answered with {src.resp.version}")
    src.stream_file(opus)
    wait_live(srv, "/old")
    time.sleep(1)
    lst = ffmpeg_listener(ctx, srv, "/old", 5)
    pcm = check_ffmpeg_decode(lst, 5, timeout=20)
    check_tone(pcm, 440, "listener")
    check(not src.closed_by_server, "server closed the SOURCE connection")


@test(timeout=40, icecast=False)  # Icecast bursts a byte count (64 KB, ~10 s here)
def test_burst_on_join(ctx):
    """A newcomer gets about --burst-ms of recent audio at once (default 1 s), not the backlog."""
    default = ctx.start_server()
    big = ctx.start_server(burst_ms=3000)
    for srv, name in ((default, "source"), (big, "source_big")):
        ffmpeg_source(ctx, srv, "/live", 440, proc_name=name)
    for srv in (default, big):
        wait_live(srv, "/live")
    time.sleep(5)
    for srv, want in ((default, 1.0), (big, 3.0)):
        lst = listen(ctx, srv, "/live")
        time.sleep(1)
        got = lst.burst_seconds(0.3)
        check(want - 0.2 <= got <= want + 0.6, f"burst of {got:.2f} s with burst-ms "
                                               f"{int(want * 1000)}")
        check_listener_ogg(lst)
