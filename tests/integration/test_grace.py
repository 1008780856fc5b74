"""Source loss: listeners ride out a source restart within the grace, and are let go after it.

Icecast has no grace (its listeners are dropped with the source), so these are rostrum-only."""

import signal
import time

from harness import (audio_seconds, check, check_ffmpeg_decode, check_listener_ogg, check_tone,
                     ffmpeg_listener, ffmpeg_source, http_request, listen, mount_status, test,
                     wait_for, wait_live)


@test(timeout=70, icecast=False)
def test_source_restart_within_grace(ctx):
    srv = ctx.start_server()  # default grace: 10 s
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    time.sleep(1.5)
    raw = listen(ctx, srv, "/live")
    check(raw.resp.status == 200, f"GET /live -> {raw.resp.status}")
    t0 = time.monotonic()
    dec = ffmpeg_listener(ctx, srv, "/live", 20)

    time.sleep(4)
    src.signal(signal.SIGKILL)  # the source vanishes without a goodbye
    src.wait(5)
    t_kill = time.monotonic()
    time.sleep(2)
    src2 = ffmpeg_source(ctx, srv, "/live", 660, proc_name="source_again")
    t_back = time.monotonic()

    pcm = check_ffmpeg_decode(dec, 20, timeout=30)
    took = time.monotonic() - t0
    check(took < 23, f"20 s of audio took {took:.1f} s of wall time to arrive")
    check(src2.alive(), f"the returning source died:\n{src2.tail()}")
    check(raw.end is None, f"raw listener's stream ended ({raw.end}) across the restart")
    raw.close()
    # The source sends a page a second; anything much longer is a stall a player would hear.
    gap = raw.max_gap(start=raw.t0 + 0.5, end=raw.end_time)
    check(gap < 1.6, f"raw listener received nothing for {gap:.1f} s (source dropped at "
                     f"+{t_kill - raw.t0:.1f} s, reconnected at +{t_back - raw.t0:.1f} s); "
                     "silence must flow until the new source's audio arrives")
    pages = check_listener_ogg(raw)  # one serial, continuous sequence, granules growing
    secs = audio_seconds(pages)
    wall = raw.end_time - raw.t0
    check(secs >= wall - 1.5, f"raw listener got {secs:.1f} s of audio in {wall:.1f} s")
    # First the old source's tone, at the end the new one's.
    check_tone(pcm[:96000 * 3], 440, "listener before the source dropped", others=(660,))
    check_tone(pcm[-96000 * 5:], 660, "listener after the source came back", others=(440,))


@test(timeout=40, icecast=False)
def test_grace_expiry_closes_listeners(ctx):
    srv = ctx.start_server(grace_ms=2000)
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    time.sleep(1)
    lst = listen(ctx, srv, "/live")
    check(lst.resp.status == 200, f"GET /live -> {lst.resp.status}")
    time.sleep(2)
    src.signal(signal.SIGKILL)
    src.wait(5)
    t_kill = time.monotonic()
    wait_for(lambda: lst.end is not None, 8, "the listener to be closed after the grace")
    closed_after = lst.end_time - t_kill
    check(1.5 <= closed_after <= 5, f"listener closed {closed_after:.1f} s after the source "
                                    "dropped; grace is 2 s")
    check(lst.end == "eof", f"listener ended by {lst.end}, want a clean close")
    got_in_grace = [t for t, _ in lst.chunks if t_kill + 0.3 < t < t_kill + 1.9]
    check(got_in_grace, "listener received nothing during the grace")
    pages = check_listener_ogg(lst, allow_final_eos=True)
    wall = lst.end_time - lst.t0
    check(audio_seconds(pages) >= wall - 1.5,
          f"only {audio_seconds(pages):.1f} s of audio in {wall:.1f} s")
    r = http_request(srv.audience, "GET", "/live")
    check(r.status == 404, f"GET /live after the grace -> {r.status}, want 404")
    check(mount_status(srv, "/live") is None, "status-json still lists /live after the grace")


@test(timeout=60, icecast=False)
def test_restart_with_new_metadata_keeps_stream_valid(ctx):
    """A returning source with another (longer) ice-name changes the preamble new listeners
    get; listeners already past it must never see a byte of the new one mid-stream."""
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440, name="Short")
    wait_live(srv, "/live", proc=src)
    raw = listen(ctx, srv, "/live")
    time.sleep(3)
    src.signal(signal.SIGKILL)
    src.wait(5)
    src1b = ffmpeg_source(ctx, srv, "/live", 550, name="A middling name",
                          proc_name="source_b")
    time.sleep(3)
    src1b.signal(signal.SIGKILL)
    src1b.wait(5)
    # a second change: the half of the double buffer the listener began with is rewritten
    src2 = ffmpeg_source(ctx, srv, "/live", 660, name="A much longer name for the same space",
                         proc_name="source_again")
    time.sleep(4)
    head = http_request(srv.audience, "HEAD", "/live")
    check(head.header("icy-name") == "A much longer name for the same space",
          f"new listeners get icy-name {head.header('icy-name')!r}")
    check(raw.end is None, f"the listener was dropped ({raw.end}) by the metadata change")
    raw.close()
    check_listener_ogg(raw)  # one serial, continuous, CRCs valid: no stray preamble bytes
    check(src2.alive(), f"the second source died:\n{src2.tail()}")
