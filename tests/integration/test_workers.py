"""Listener workers (issue 3): identical bytes on every worker, a killed worker restarted
without disturbing the others, and a short rostrum-load run whose figures match the server's."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from harness import (check, check_listener_ogg, ffmpeg_listener, check_ffmpeg_decode,
                     ffmpeg_source, listen, metric, metrics, parse_ogg, test, wait_for,
                     wait_live)


def worker_conns(srv):
    vals, _ = metrics(srv)
    return [metric(vals, "rostrum_worker_listener_connections", worker=str(w)) or 0
            for w in range(int(metric(vals, "rostrum_workers")))]


def worker_pids(srv):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(srv.proc.pid)], capture_output=True,
                         text=True).stdout
    return [int(x) for x in out.split()]


@test(timeout=60, icecast=False)
def test_workers_send_identical_bytes(ctx):
    srv = ctx.start_server(extra=["--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = []
    # connect until both workers hold listeners (the kernel spreads by address and port)
    for i in range(24):
        lst.append(listen(ctx, srv, "/live"))
        time.sleep(0.05)
        if i >= 3 and all(n > 0 for n in worker_conns(srv)):
            break
    wait_for(lambda: sum(worker_conns(srv)) == len(lst), 5, "every listener counted")
    per_worker = worker_conns(srv)
    check(all(n > 0 for n in per_worker), f"listeners all on one worker: {per_worker}")
    time.sleep(4)
    for l in lst:
        l.close()
    streams = [check_listener_ogg(l) for l in lst]
    # pages with the same sequence number must be byte-identical across all listeners
    first = {p.seq: p.raw for p in streams[0][2:]}
    common = 0
    for pages in streams[1:]:
        for p in pages[2:]:
            if p.seq in first:
                check(p.raw == first[p.seq], f"page {p.seq} differs between listeners")
                common += 1
    check(common >= (len(streams) - 1) * 5, f"only {common} common pages compared")


@test(timeout=60, icecast=False)
def test_killed_worker_is_restarted(ctx):
    srv = ctx.start_server(extra=["--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    pids = wait_for(lambda: len(worker_pids(srv)) == 2 and worker_pids(srv), 5, "two workers")
    lst = [listen(ctx, srv, "/live") for _ in range(16)]
    wait_for(lambda: sum(worker_conns(srv)) == 16, 5, "16 listeners counted")
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    t_kill = time.monotonic()
    wait_for(lambda: len(worker_pids(srv)) == 2 and victim not in worker_pids(srv), 5,
             "the worker to be restarted")
    time.sleep(3)
    cut = [l for l in lst if l.end is not None]
    kept = [l for l in lst if l.end is None]
    check(cut and kept, f"{len(cut)} listeners cut, {len(kept)} kept: want some of each")
    for l in kept:
        gap = l.max_gap(start=t_kill - 0.5)
        check(gap < 2.5, f"a listener on the surviving worker got nothing for {gap:.1f} s")
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_worker_restarts_total") == 1, "restart not counted")
    # a reconnecting listener gets audio, whichever worker takes it
    dec = ffmpeg_listener(ctx, srv, "/live", 4)
    check_ffmpeg_decode(dec, 4, timeout=20)
    joins = metric(metrics(srv)[0], "rostrum_joins_total", outcome="ok")
    check(joins >= 17, f"joins_total{{ok}} = {joins} after a restart: counters went backwards")


@test(timeout=90, icecast=False)
def test_rostrum_load_short_run_matches_server(ctx):
    load = Path(ctx.binary).parent / "rostrum-load"
    srv = ctx.start_server(extra=["--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    p = ctx.spawn("rostrum_load", [load, "listen", "--url", srv.url("/live"), "--listeners",
                                   300, "--rate", 150, "--seconds", 15, "--json"],
                  stdout=ctx.tmp / "load.json")
    check(p.wait(60) == 0, f"rostrum-load failed:\n{p.tail()}")
    r = json.loads(p.output().strip().splitlines()[-1])
    check(r["connected"] == 300, f"connected {r['connected']} of 300: {r['refused']}")
    check(r["stalls"] == 0 and r["seq_gaps"] == 0 and r["crc_errors"] == 0,
          f"stalls {r['stalls']}, gaps {r['seq_gaps']}, CRC errors {r['crc_errors']}")
    check(r["held_bitrate"] == 300, f"only {r['held_bitrate']} of 300 held the bitrate")
    check(r["server_listeners"] == r["tool_listeners"] == 300,
          f"server counts {r['server_listeners']}, tool {r['tool_listeners']}")
