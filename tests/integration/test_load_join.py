"""Issue 12, item 5: rostrum-load listen joins as the listener page does. With --join each
listener takes a ticket from /join/<space> (the waiting room, a scheduled space's pre-queue)
and connects with it at its admit time; with --retry N a 503 or 429 is asked again after its
Retry-After. So bench/event measures an audience that goes through the lobby and comes back
when told to, not one that gives up at the first refusal."""

import json
import time
from pathlib import Path

from harness import check, ffmpeg_source, metric, metrics, note, test, wait_live


def load(ctx, srv, name, *args, seconds=10):
    exe = Path(ctx.binary).parent / "rostrum-load"
    p = ctx.spawn(name, [exe, "listen", "--url", srv.url("/live"), "--seconds", seconds,
                         "--metrics-url", "none", "--json", *args],
                  stdout=ctx.tmp / f"{name}.json")
    check(p.wait(seconds + 30) == 0, f"{name} failed:\n{p.tail()}")
    return json.loads(p.output().strip().splitlines()[-1])


@test(timeout=90, icecast=False)
def test_load_join_takes_tickets_and_waits_its_turn(ctx):
    """The waiting room on, 20 tickets a second: 60 listeners arriving at once all get in with
    --join, each at its ticket's time (spread over ~3 s, the server's pace); without a ticket
    the same listeners are refused (403); the server counts the tickets it issued."""
    srv = ctx.start_server(extra=["--waiting-room", "1", "--waiting-room-rate", "20",
                                  "--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    plain = load(ctx, srv, "plain", "--listeners", 10, "--rate", 100, seconds=3)
    check(plain["connected"] == 0 and plain["refused"].get("403") == 10,
          f"without a ticket: connected {plain['connected']}, refused {plain['refused']}")
    t0 = time.monotonic()
    r = load(ctx, srv, "joined", "--listeners", 60, "--rate", 600, "--join")
    check(r["connected"] == 60 and r["tickets"] == 60 and r["join_errors"] == 0,
          f"--join: connected {r['connected']}, tickets {r['tickets']}, bad answers "
          f"{r['join_errors']}, refused {r['refused']}")
    w = r["ticket_wait_ms"]
    # 60 tickets at 20 a second: the last is admitted about 3 s after the first
    check(2000 <= w["max"] <= 6000, f"ticket waits {w}: the waiting room's pace not kept")
    check(r["seq_gaps"] == 0 and r["crc_errors"] == 0 and r["stalls"] == 0, f"stream {r}")
    vals, _ = metrics(srv)
    issued = metric(vals, "rostrum_tickets_issued_total")
    check(issued is not None and issued >= 60, f"the server issued {issued} tickets")
    # as a page does: the ticket asked with keep-alive, and the stream on that connection when
    # its time comes within the server's Keep-Alive (4 s): here nearly all (waits of 0-3 s)
    kept = metric(vals, "rostrum_keepalive_requests_total")
    check(r["kept"] >= 40 and kept == r["kept"],
          f"streams on the ticket's connection: the tool says {r['kept']}, the server {kept}")
    again = load(ctx, srv, "new-conns", "--listeners", 20, "--rate", 600, "--join",
                 "--no-keep-alive", seconds=6)
    vals, _ = metrics(srv)
    check(again["connected"] == 20 and again["kept"] == 0 and
          metric(vals, "rostrum_keepalive_requests_total") == kept,
          f"--no-keep-alive: connected {again['connected']}, kept {again['kept']}, server "
          f"{metric(vals, 'rostrum_keepalive_requests_total')}")
    note(f"60 listeners with --join in {time.monotonic() - t0:.1f} s: ticket wait p50 "
         f"{w['p50']:.0f} ms, max {w['max']:.0f} ms; all 60 got audio, {r['kept']} of them "
         f"on the ticket's connection")


@test(timeout=90, icecast=False)
def test_load_retry_after_429(ctx):
    """joins-per-ip 5 and every listener from one address: without --retry most are refused
    (429); with --retry 10 each comes back after the Retry-After and all get in."""
    srv = ctx.start_server(extra=["--joins-per-ip", "5", "--workers", "0"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    once = load(ctx, srv, "once", "--listeners", 30, "--rate", 300,
                "--src-ips", "127.0.0.9-127.0.0.9", seconds=4)
    check(once["refused"].get("429", 0) >= 10, f"no --retry: refused {once['refused']}")
    r = load(ctx, srv, "retried", "--listeners", 30, "--rate", 300,
             "--src-ips", "127.0.0.10-127.0.0.10", "--retry", 10, seconds=12)
    check(r["connected"] == 30, f"--retry 10: connected {r['connected']}, refused {r['refused']}")
    check(r["retries"] >= 10, f"only {r['retries']} retries")
    note(f"no retry: {once['connected']} of 30 in, {once['refused'].get('429')} refused 429; "
         f"--retry 10: 30 of 30 in after {r['retries']} retries")


@test(timeout=60, icecast=False)
def test_load_counts_a_late_start_apart_from_a_stall(ctx):
    """A server that answers 200 and then sends no audio for longer than --stall-ms: the tool
    counts a stall, and says it came before any audio (a late start, not a listener already
    listening cut off), so bench/event can tell the two apart."""
    import socket
    import threading
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    port = ls.getsockname()[1]
    held = []

    def serve():
        c, _ = ls.accept()
        c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: audio/ogg\r\n\r\n")
        held.append(c)  # nothing more: closed when the test ends

    threading.Thread(target=serve, daemon=True).start()
    exe = Path(ctx.binary).parent / "rostrum-load"
    p = ctx.spawn("late", [exe, "listen", "--url", f"http://127.0.0.1:{port}/x", "--listeners",
                           1, "--rate", 10, "--seconds", 3, "--stall-ms", 1000, "--metrics-url",
                           "none", "--json"], stdout=ctx.tmp / "late.json")
    check(p.wait(30) == 0, f"rostrum-load failed:\n{p.tail()}")
    r = json.loads(p.output().strip().splitlines()[-1])
    for c in held:
        c.close()
    ls.close()
    check(r["stalls"] == 1 and r["stalls_before_audio"] == 1 and r["connected"] == 0,
          f"a head and no audio: stalls {r['stalls']}, before audio "
          f"{r['stalls_before_audio']}, connected {r['connected']}")
