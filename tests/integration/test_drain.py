"""Graceful stop (issue 9, part 3): SIGTERM drains. Newcomers on both ports get 503 with a
Retry-After, stage members are told to come back (1012) and let go, listeners keep their
stream until everyone has left or drain-ms has passed; then the server exits 0. A second
SIGTERM stops at once."""

import signal
import time

from harness import (check, ffmpeg_source, http_request, listen, metric, metrics, test,
                     wait_for, wait_live)
from wsclient import WS

KEY = "drain-host-key"


def member(srv, space, name):
    ws = WS(srv.stage, f"/ws/{space}?key={KEY}&name={name}")
    ws.wait_for(lambda m: m.get("type") == "welcome", 5, "the welcome")
    return ws


def wait_exit(srv, timeout):
    t0 = time.monotonic()
    rc = srv.proc.p.wait(timeout)
    return rc, time.monotonic() - t0


@test(timeout=60, icecast=False)
def test_drain_refuses_newcomers_and_lets_everyone_go_issue9(ctx):
    srv = ctx.start_server(extra=["--host-key", KEY, "--workers", "1", "--drain-ms", "3000"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    ws = member(srv, "room", "Host")
    lst = listen(ctx, srv, "/live")
    time.sleep(1)
    t_term = time.monotonic()
    srv.proc.signal(signal.SIGTERM)
    # the member is told to come back, with the code a client reconnects on
    closed = ws.wait_closed(3)
    check(closed and closed[0] == 1012, f"the stage member got close {closed}, want 1012")
    check(any(m.get("type") == "restart" for m in ws.messages),
          f"no 'restart' message before the close: {ws.messages[-3:]}")
    # newcomers: 503 with a Retry-After past the drain, on both ports; pages still served
    r = http_request(srv.audience, "GET", "/live")
    check(r.status == 503, f"a new listener during the drain got {r.status}, want 503")
    ra = int(r.header("retry-after", "0"))
    check(ra >= 3, f"Retry-After {ra} s is shorter than the drain (3 s)")
    r = http_request(srv.stage, "GET", "/api/spaces")
    check(r.status == 503, f"the stage API during the drain answered {r.status}, want 503")
    check(http_request(srv.audience, "GET", "/status-json.xsl").status == 200,
          "status is not served during the drain")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_refused_total", reason="draining") >= 1,
          "the refusals are not counted as draining")
    # the listener keeps its stream until the drain is up
    n0 = lst.nbytes()
    time.sleep(1.5)
    check(lst.nbytes() > n0, "the listener stopped receiving during the drain")
    rc, _ = wait_exit(srv, 10)
    took = time.monotonic() - t_term
    srv.stop()  # exited already: checks the status, the log for sanitizer reports, leftovers
    check(rc == 0, f"exit status {rc} after the drain")
    check(2.5 <= took <= 6, f"the server stopped {took:.1f} s after SIGTERM, want ~3 s (drain-ms)")
    wait_for(lambda: lst.end is not None, 5, "the listener to be closed")


@test(timeout=60, icecast=False)
def test_drain_ends_early_when_everyone_left_and_second_signal_issue9(ctx):
    srv = ctx.start_server(extra=["--host-key", KEY, "--workers", "1", "--drain-ms", "20000"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = listen(ctx, srv, "/live")
    time.sleep(0.5)
    srv.proc.signal(signal.SIGTERM)
    time.sleep(0.5)
    check(srv.proc.alive(), "the server stopped at once with a listener connected")
    lst.close()
    rc, took = wait_exit(srv, 10)
    srv.stop()  # exited already: checks the status, the log for sanitizer reports, leftovers
    check(rc == 0 and took < 3, f"exit {rc} {took:.1f} s after the last listener left, want 0 "
                                "within 3 s (drain-ms 20000 is a bound, not a wait)")
    # a second signal cuts a drain short
    srv2 = ctx.start_server(extra=["--workers", "1", "--drain-ms", "20000"])
    src2 = ffmpeg_source(ctx, srv2, "/live", 440)
    wait_live(srv2, "/live", proc=src2)
    lst2 = listen(ctx, srv2, "/live")
    time.sleep(0.5)
    srv2.proc.signal(signal.SIGTERM)
    time.sleep(0.5)
    srv2.proc.signal(signal.SIGTERM)
    rc, took = wait_exit(srv2, 10)
    srv2.stop()
    check(rc == 0 and took < 3, f"a second SIGTERM: exit {rc} after {took:.1f} s, want 0 at once")
    lst2.close()
