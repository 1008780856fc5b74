"""The stage port must not be knocked over by WebSocket members (issue 8, items 1, 7, 11): what
a member can make the main process queue, hold or spend is bounded; past a bound it is closed
(1008) or refused (503) and counted, and sources and speakers with tokens still get in.
Flooding clients are raw sockets (wsclient.py); speakers are rostrum-speak."""

import json
import os
import socket
import struct
import time
from pathlib import Path

from harness import (PySource, Server, check, http_request, metric, metrics, test, wait_for)
from wsclient import WS, HandshakeRefused

KEY = "bounds-key"
MASK = b"\x11\x22\x33\x44"


def stage_server(ctx, conf="", binary=None):
    p = ctx.tmp / "bounds.conf"
    p.write_text(conf)
    return Server(ctx, binary or ctx.binary,
                  extra=["--host-key", KEY, "--workers", "1", "--config", str(p)])


def api(srv, method, path, token=KEY):
    r = http_request(srv.stage, method, path, headers=[("Authorization", f"Bearer {token}")])
    body = getattr(r, "body", b"")
    return r, json.loads(body) if body.strip().startswith(b"{") else None


def create(srv, name, title=""):
    # a reusable speaker link: these tests seat several speakers with it
    q = f"name={name}&reusable=1" + (f"&title={title}" if title else "")
    r, doc = api(srv, "POST", f"/api/spaces?{q}")
    check(r.status == 201 and doc, f"create {name} -> {r.status}")
    return doc


def speaker(ctx, srv, space, name, tone, seconds, token=None):
    binary = Path(ctx.binary).parent / "rostrum-speak"
    argv = [binary, "--stage", f"127.0.0.1:{srv.stage}", "--space", space, "--name", name,
            "--seconds", seconds, "--json", "--tone", tone]
    argv += ["--token", token] if token else ["--key", KEY]
    return ctx.spawn(f"speak_{name}", argv, stdout=ctx.tmp / f"speak_{name}.json")


def speaker_result(p, timeout=25):
    check(p.wait(timeout) == 0, f"{p.name} failed:\n{p.tail()}")
    return json.loads(p.output().strip().splitlines()[-1])


def masked(opcode, payload=b""):
    """One client frame (FIN set), masked with MASK."""
    n = len(payload)
    hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else \
        struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return hdr + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def closes(srv, reason):
    return metric(metrics(srv)[0], "rostrum_ws_closes_total", reason=reason) or 0


def refused(srv, reason):
    return metric(metrics(srv)[0], "rostrum_refused_total", reason=reason) or 0


def server_closed(ws, timeout):
    """True once the server closed <ws> (a close frame, EOF or a reset) within <timeout>."""
    try:
        return ws.wait_closed(timeout) is not None
    except OSError:
        return True


@test(timeout=90, icecast=False)
def test_ws_ping_flood_bounded(ctx):
    srv = stage_server(ctx)
    a = speaker(ctx, srv, "room", "A", 440, 12)
    wait_for(lambda: http_request(srv.stage, "GET", "/api/spaces/room").status == 200, 10,
             "the space")
    b = speaker(ctx, srv, "room", "B", 660, 11)
    time.sleep(1)
    base = rss_kib(srv.proc.pid)
    # an anonymous member pings as fast as it can and never reads a byte
    flood = WS(srv.stage, "/ws/room?name=flood")
    flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    blob = masked(0x9) * 20000
    peak, sent, stopped = base, 0, None
    t0 = time.monotonic()
    flood.sock.settimeout(0.5)
    while time.monotonic() - t0 < 6:
        try:
            flood.sock.sendall(blob)
            sent += len(blob)
        except socket.timeout:
            pass  # the server stopped reading it
        except OSError as e:
            stopped = e
            break
        peak = max(peak, rss_kib(srv.proc.pid))
        if peak - base > 100 * 1024:
            break  # fail fast: the old code grows by gigabytes
    peak = max(peak, rss_kib(srv.proc.pid))
    check(peak - base < 64 * 1024, f"main process RSS grew {(peak - base) // 1024} MiB under a "
                                   f"ping flood of {sent // 6} pings (bound: 64 MiB)")
    check(stopped or server_closed(flood, 5), "the flooding member was not closed")
    check(closes(srv, "over_rate") >= 1, "the flood was not counted as over_rate")
    for p in (a, b):
        r = speaker_result(p)
        check(r["packets_received"] >= 500,
              f"{p.name} got {r['packets_received']} return packets during the flood (~550+)")
    flood.sock.close()


@test(timeout=90, icecast=False)
def test_ws_not_reading_closed_and_counted(ctx):
    # no idle drop in this test: only the output bound may close the readers that stall
    srv = stage_server(ctx, "speaker-idle-ms = 120000\n")
    doc = create(srv, "room", "T" * 120)
    host, _ = join(srv, "room", key=KEY, name="H" * 40)
    # fifty requests with long names make the state document ~4 KB
    askers = []
    for i in range(50):
        w, _ = join(srv, "room", name=f"asker{i:02d}" + "n" * 38)
        w.send_json({"type": "request"})
        w.sock.setblocking(False)
        askers.append(w)
    # two members that never read: one anonymous, one speaker with a token
    lazy_anon = WS(srv.stage, "/ws/room?name=lazy")
    r, inv = api(srv, "POST", "/api/spaces/room/invites?role=speaker", token=doc["host_token"])
    lazy_spk = WS(srv.stage, f"/ws/room?token={inv['token']}&name=lazyspeaker")
    for w in (lazy_anon, lazy_spk):
        w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host.sock.setblocking(False)
    t0 = time.monotonic()
    muted = False
    done, polled = None, 0.0
    while time.monotonic() - t0 < 60:
        muted = not muted  # the state changes 10 times a second: a document every 200 ms
        host.send_frame(1, json.dumps({"type": "mute", "muted": muted}).encode())
        for w in askers + [host]:
            try:
                while w.sock.recv(65536):
                    pass
            except (BlockingIOError, OSError):
                pass
        if time.monotonic() - polled > 1:
            polled = time.monotonic()
            if closes(srv, "not_reading") >= 2:
                done = polled - t0
                break
        time.sleep(0.1)
    check(done is not None, f"members that never read were not closed within 60 s "
                            f"(not_reading: {closes(srv, 'not_reading')})")
    m = metrics(srv)[0]
    check(metric(m, "rostrum_ws_members") == 51,
          f"rostrum_ws_members = {metric(m, 'rostrum_ws_members')}, want 51 (host + askers)")
    for w in (lazy_anon, lazy_spk):
        w.sock.settimeout(5)
        try:
            while w.sock.recv(65536):
                pass
        except OSError:
            pass  # reset after the linger: closed either way
    for w in askers + [host]:
        w.sock.close()


def join(srv, space, token=None, key=None, name="client"):
    q = f"key={key}&" if key else f"token={token}&" if token else ""
    ws = WS(srv.stage, f"/ws/{space}?{q}name={name}")
    welcome = ws.wait_for(lambda m: m.get("type") == "welcome", 5, "welcome")
    return ws, welcome


@test(timeout=60, icecast=False)
def test_ws_members_beyond_cap_refused(ctx):
    srv = stage_server(ctx, "max-members = 5\n")
    doc = create(srv, "room")
    members = [join(srv, "room", name=f"m{i}")[0] for i in range(5)]
    try:
        WS(srv.stage, "/ws/room?name=sixth")
        check(False, "a sixth member off stage was let in with max-members = 5")
    except HandshakeRefused as e:
        check(e.status == 503, f"sixth member -> {e.status}, want 503: {e.body!r}")
    check(refused(srv, "max_members") >= 1, "the refusal was not counted")
    # a speaker with a token takes a place on stage whatever the audience holds
    spk, w = join(srv, "room", token=doc["speaker_token"], name="speaker")
    check(w["role"] == "speaker", f"speaker token gave {w['role']}")
    members[0].close()
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_ws_members") == 5, 5, "a member to leave")
    again, _ = join(srv, "room", name="again")
    for m in members[1:] + [spk, again]:
        m.close()


@test(timeout=90, icecast=False)
def test_ws_fd_reserve_keeps_sources_and_speakers(ctx):
    # 400 descriptors in all: a reserve of 100 for sources, stage seats and respawn
    wrapper = ctx.tmp / "rostrum-400-fds"
    wrapper.write_text(f"#!/bin/sh\nulimit -n 400\nexec {ctx.binary} \"$@\"\n")
    wrapper.chmod(0o755)
    srv = stage_server(ctx, binary=str(wrapper))
    doc = create(srv, "room")
    held, status = [], None
    for i in range(450):
        try:
            held.append(WS(srv.stage, f"/ws/room?name=a{i}", timeout=3))
        except HandshakeRefused as e:
            status = e.status
            break
        except OSError as e:
            status = repr(e)
            break
    check(status == 503, f"anonymous member {len(held) + 1} -> {status}, want 503 before "
                         "the descriptors run out")
    check(len(held) >= 200, f"only {len(held)} anonymous members before the reserve")
    r = http_request(srv.stage, "GET", "/api/spaces/room")
    check(r.status == 503 and r.header("Retry-After"),
          f"anonymous API call in the reserve -> {r.status}, want 503 with Retry-After")
    check(refused(srv, "fd_reserve") >= 2, "reserve refusals not counted")
    # what the reserve is for: a source, speakers with a token or the key
    src = PySource(srv.stage, "/studio", password=srv.password)
    check(src.accepted, f"a source was refused: {src.resp.status}")
    ctx.on_cleanup(src.close)
    spk, w = join(srv, "room", token=doc["speaker_token"], name="speaker")
    check(w["role"] == "speaker", f"speaker token gave {w['role']}")
    host, w = join(srv, "room", key=KEY, name="host")
    check(w["role"] in ("host", "cohost", "speaker"), f"host key gave {w['role']}")
    r, _ = api(srv, "POST", "/api/spaces/room/invites?role=speaker")
    check(r.status == 201, f"an API call with the host key in the reserve -> {r.status}")
    for m in held + [spk, host]:
        m.sock.close()


@test(timeout=60, icecast=False)
def test_ws_over_rate_sender_closed_and_counted(ctx):
    srv = stage_server(ctx)
    doc = create(srv, "room")
    good = speaker(ctx, srv, "room", "good", 440, 8, token=doc["speaker_token"])
    time.sleep(1)
    fast, w = join(srv, "room", token=doc["speaker_token"], name="fast")
    check(w["role"] == "speaker", f"speaker token gave {w['role']}")
    # 180x real time: 9,000 Opus-sized frames a second
    blob = masked(0x2, os.urandom(120)) * 900
    fast.sock.settimeout(0.5)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        try:
            fast.sock.sendall(blob)
        except socket.timeout:
            pass
        except OSError:
            break
        time.sleep(0.1)
    fast.sock.settimeout(5)
    closed = None
    try:
        closed = fast.wait_closed(5)
    except OSError:
        closed = (0, "reset")
    check(closed is not None and closed[0] in (1008, 0),
          f"the over-rate sender was not closed with 1008: {closed}")
    check(closes(srv, "over_rate") >= 1, "the over-rate close was not counted")
    r = speaker_result(good)
    check(r["packets_received"] >= 330, f"the good speaker got {r['packets_received']} return "
                                        "packets in 8 s (~400)")
    fast.sock.close()


@test(timeout=30, icecast=False)
def test_ws_ping_frame_answered_at_once_off_stage_issue10(ctx):
    """A WebSocket ping frame from a member off stage is answered at once, not when the
    server next has something else to send it (clients such as Python's websockets close the
    connection when no pong comes within their ping timeout)."""
    srv = stage_server(ctx)
    host = WS(srv.stage, f"/ws/room?key={KEY}&name=host")
    host.wait_for(lambda m: m.get("type") == "welcome", 5, "the host's welcome")
    ws = WS(srv.stage, "/ws/room?name=pinger")
    ws.wait_for(lambda m: m.get("type") == "welcome", 5, "the member's welcome")
    time.sleep(0.5)  # past the join's state documents
    for i in range(3):
        payload = b"keepalive-%d" % i
        ws.send_frame(0x9, payload)
        t0 = time.monotonic()
        got = None
        while time.monotonic() - t0 < 1.0:
            try:
                op, p = ws.read_frame(timeout=max(0.05, 1.0 - (time.monotonic() - t0)))
            except (socket.timeout, TimeoutError):
                break
            if op == 0xA:
                got = p
                break
        check(got == payload, f"ping {i}: pong {got!r} within 1 s, want {payload!r}")
    ws.close()
    host.close()
