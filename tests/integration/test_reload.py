"""Reload and the access log (issue 9, parts 2 and 5): SIGHUP re-reads the config file and
applies what may change live, in the main process and in the workers, while a source, listeners
and a stage speaker stay connected; what needs a restart is named; a broken file is refused
whole; an access log line per listener session, reopened on SIGUSR1."""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import (PASSWORD, basic_auth, check, check_ffmpeg_decode, check_listener_ogg,
                     ffmpeg_listener, ffmpeg_source, http_request, listen, metric, metrics,
                     read_head, test, wait_for, wait_live)

KEY = "test-host-key"


def write_config(ctx, text, name="rostrum.conf"):
    p = ctx.tmp / name
    p.write_text(text)
    return p


def hup(srv):
    os.kill(srv.proc.pid, signal.SIGHUP)


def probe(port, n, addr):
    """Opens <n> idle connections from <addr>, then one that asks for the status; returns
    (the status it got or None if closed, the held sockets)."""
    held = [socket.create_connection(("127.0.0.1", port), source_address=(addr, 0))
            for _ in range(n)]
    time.sleep(0.3)
    s = socket.create_connection(("127.0.0.1", port), source_address=(addr, 0))
    s.settimeout(5)
    try:
        s.sendall(b"GET /status-json.xsl HTTP/1.0\r\n\r\n")
        head, _ = read_head(s)
        status = head.status
    except (AssertionError, OSError):
        status = None
    s.close()
    return status, held


def put_status(port, mount, password):
    """The status a PUT source to <mount> with <password> gets (the connection is closed)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall(f"PUT {mount} HTTP/1.1\r\nHost: x\r\nAuthorization: "
              f"{basic_auth('source', password)}\r\nContent-Type: audio/ogg\r\n"
              f"Expect: 100-continue\r\n\r\n".encode())
    head, _ = read_head(s)
    s.close()
    return head.status


def speaker(ctx, srv, space, seconds):
    binary = Path(ctx.binary).parent / "rostrum-speak"
    argv = [binary, "--stage", f"127.0.0.1:{srv.stage}", "--space", space, "--name", "A",
            "--seconds", seconds, "--json", "--key", KEY, "--tone", 440]
    return ctx.spawn("speak_A", argv, stdout=ctx.tmp / "speak_A.json")


def wait_log(srv, pattern, timeout, what):
    wait_for(lambda: re.search(pattern, srv.log_text()), timeout, what)


BASE = f"""host-key = {KEY}
max-conns-per-ip = 50
workers = 1
[space live]
name = "Before"
"""


@test(timeout=90, icecast=False)
def test_reload_limits_live_issue9(ctx):
    """A lowered max-conns-per-ip and a new per-space password take effect for new connections
    on the audience port (a worker) and the stage port (the main process); the source, a raw
    listener, an ffmpeg listener and a speaker see nothing."""
    conf = write_config(ctx, BASE)
    srv = ctx.start_server(config=str(conf))
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    spk = speaker(ctx, srv, "room", 12)
    lst = listen(ctx, srv, "/live")
    dec = ffmpeg_listener(ctx, srv, "/live", 10)
    time.sleep(1.5)
    # before: 4 connections from one address are fine on both ports; /other takes PASSWORD
    for port in (srv.audience, srv.stage):
        st, held = probe(port, 3, "127.0.0.9")
        check(st == 200 or (port == srv.stage and st == 404),
              f"before the reload, a 4th connection to port {port} got {st}")
        for h in held:
            h.close()
    check(put_status(srv.stage, "/other", "other-pw") == 401, "/other took a password it has not")
    write_config(ctx, BASE.replace("max-conns-per-ip = 50", "max-conns-per-ip = 3")
                 .replace('"Before"', '"After"')
                 + '[space other]\nsource-password = "other-pw"\n')
    time.sleep(1.0)  # let the address's connections above be forgotten
    t_reload = time.monotonic()
    hup(srv)
    wait_log(srv, r"reload +configuration re-read from", 5, "the reload to be logged")
    time.sleep(0.6)  # the worker picks it up on its wake or its 250 ms tick
    for port, name in ((srv.audience, "audience (worker)"), (srv.stage, "stage (main)")):
        st, held = probe(port, 3, "127.0.0.9")
        check(st == 429, f"after lowering max-conns-per-ip to 3, a 4th connection to the "
                         f"{name} port got {st}")
        for h in held:
            h.close()
    check(put_status(srv.stage, "/other", "other-pw") == 100,
          "the new per-space source password was not taken")
    check(put_status(srv.stage, "/other", PASSWORD) == 401,
          "/other still takes the global password after its own was set")
    # the new display name shows for the running source
    wait_for(lambda: b"After" in http_request(srv.audience, "GET", "/status-json.xsl").body, 5,
             "the new name in the status")
    pcm = check_ffmpeg_decode(dec, 10, timeout=30)
    check(len(pcm) >= 10 * 96000, "ffmpeg listener cut short")
    rc = spk.wait(25)
    check(rc == 0, f"speaker failed across the reload:\n{spk.tail()}")
    r = json.loads(spk.output().strip().splitlines()[-1])
    check(r["packets_received"] > 450, f"speaker received {r['packets_received']} packets")
    check(src.alive(), "the ffmpeg source was dropped")
    time.sleep(1)
    lst.close()
    check_listener_ogg(lst)
    gap = lst.max_gap(start=t_reload - 1)
    check(gap < 1.5, f"the listener had a {gap:.2f} s gap around the reload")


@test(timeout=40, icecast=False)
def test_reload_restart_keys_named_issue9(ctx):
    conf = write_config(ctx, "workers = 1\n")
    srv = ctx.start_server(config=str(conf))
    write_config(ctx, "workers = 2\nmax-members = 10\n")
    hup(srv)
    wait_log(srv, r"reload +'workers' changed from 1 to 2: needs a restart, kept 1", 5,
             "the workers change to be named")
    wait_log(srv, r"reload +configuration re-read", 3, "the rest of the reload to be applied")
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_workers") == 1, 3, "still one worker")


@test(timeout=40, icecast=False)
def test_reload_bad_file_keeps_old_issue9(ctx):
    conf = write_config(ctx, "workers = 1\nmax-conns-per-ip = 3\n")
    srv = ctx.start_server(config=str(conf))
    write_config(ctx, "workers = 1\nmax-conns-per-ip = 50\nlag-ms = fast\n")
    hup(srv)
    wait_log(srv, re.escape(f"{conf}:3: lag-ms: 'fast' is not a whole number"), 5,
             "the error with FILE:LINE")
    check("refused, the configuration is unchanged" in srv.log_text(), "no refusal said")
    time.sleep(0.6)
    st, held = probe(srv.audience, 3, "127.0.0.9")
    check(st == 429, f"the old limit of 3 was not kept: 4th connection got {st}")
    for h in held:
        h.close()
    check(srv.proc.alive(), "the server died")


def access_lines(path):
    if not path.exists():
        return []
    return [l.split("\t") for l in path.read_text().splitlines()]


@test(timeout=60, icecast=False)
def test_access_log_and_reopen_issue9(ctx):
    log = ctx.tmp / "access.log"
    conf = write_config(ctx, f"workers = 2\naccess-log = {log}\n")
    srv = ctx.start_server(config=str(conf))
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = listen(ctx, srv, "/live")
    time.sleep(2)
    lst.close()
    got = lst.nbytes()
    wait_for(lambda: len(access_lines(log)) >= 1, 5, "an access log line")
    f = access_lines(log)[0]
    check(len(f) == 6, f"access log line should have 6 tab-separated fields: {f}")
    when, client, space, secs, nbytes, why = f
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when), f"time field {when!r}")
    check(re.fullmatch(r"127\.0\.0\.1:\d+", client), f"client field {client!r}")
    check(space == "/live", f"space field {space!r}")
    check(1.5 <= float(secs) <= 4, f"duration {secs} for a 2 s session")
    check(abs(int(nbytes) - got) <= 65536 + 4096 and int(nbytes) > 0,
          f"bytes {nbytes}, the listener got {got}")
    check(why == "peer closed", f"reason {why!r}")
    # logrotate: move the file, SIGUSR1, and the next sessions go to a new file
    rotated = ctx.tmp / "access.log.1"
    log.rename(rotated)
    os.kill(srv.proc.pid, signal.SIGUSR1)
    wait_log(srv, r"SIGUSR1: reopening log files", 5, "the reopen")
    time.sleep(0.5)
    for _ in range(4):  # both workers, whichever the kernel picks
        l2 = listen(ctx, srv, "/live")
        time.sleep(0.4)
        l2.close()
    wait_for(lambda: len(access_lines(log)) >= 4, 5, "4 lines in the new access log")
    check(len(access_lines(rotated)) == 1, "lines went to the rotated file after SIGUSR1")


@test(timeout=40, icecast=False)
def test_source_refusals_logged_issue9(ctx):
    """Each refusal of a source is logged with its status and reason; a first PUT without
    credentials (libshout's probe) and OPTIONS are not warnings."""
    srv = ctx.start_server(extra=["--workers", "1"])
    auth = basic_auth("source", PASSWORD)

    def send(head):
        s = socket.create_connection(("127.0.0.1", srv.stage))
        s.settimeout(5)
        s.sendall(head.encode())
        st = read_head(s)[0].status
        s.close()
        return st

    cases = [
        (f"PUT /bad%20name HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n", 400,
         r"warn +source .*PUT /bad%20name refused: 400, bad mount name"),
        (f"PUT /live HTTP/1.1\r\nAuthorization: {auth}\r\nContent-Type: audio/mpeg\r\n\r\n", 415,
         r"warn +source .*PUT /live refused: 415, content type 'audio/mpeg'"),
        (f"PUT /live HTTP/1.1\r\nAuthorization: {auth}\r\nContent-Type: audio/ogg\r\n"
         "Transfer-Encoding: chunked\r\n\r\n", 501, r"warn +source .*refused: 501, chunked body"),
        ("DELETE /live HTTP/1.1\r\n\r\n", 405, r"warn +source .*DELETE /live refused: 405"),
        (f"PUT /live HTTP/1.1\r\nAuthorization: {basic_auth('source', 'nope')}\r\n\r\n", 401,
         r"warn +source .*PUT /live refused: 401, bad credentials"),
        ("PUT /live HTTP/1.1\r\nContent-Type: audio/ogg\r\n\r\n", 401,
         r"info +source .*PUT /live: 401, no credentials yet"),
        ("OPTIONS * HTTP/1.1\r\n\r\n", 200, r"debug +source .*OPTIONS"),
    ]
    for head, want, pattern in cases:
        st = send(head)
        check(st == want, f"{head.splitlines()[0]}: {st}, want {want}")
        time.sleep(1.1)  # one line per second per reason is the rate limit
        wait_log(srv, pattern, 3, f"the log line /{pattern}/")
    check(not re.search(r"warn +source .*no credentials", srv.log_text()),
          "a request without credentials was logged as a warning")


@test(timeout=40, icecast=False)
def test_reload_in_one_process_issue9(ctx):
    """--workers 0: the main process serves listeners itself and takes the reload there."""
    log = ctx.tmp / "access.log"
    conf = write_config(ctx, "workers = 0\nmax-conns-per-ip = 50\n")
    srv = ctx.start_server(config=str(conf))
    st, held = probe(srv.audience, 3, "127.0.0.9")
    check(st == 200, f"before: 4th connection got {st}")
    for h in held:
        h.close()
    write_config(ctx, f"workers = 0\nmax-conns-per-ip = 3\naccess-log = {log}\n")
    time.sleep(0.5)
    hup(srv)
    wait_log(srv, r"reload +configuration re-read", 5, "the reload")
    st, held = probe(srv.audience, 3, "127.0.0.9")
    check(st == 429, f"after: 4th connection got {st}")
    for h in held:
        h.close()
    check(log.exists(), "the access log named by the reload was not opened")


def children(pid):
    """The pids of <pid>'s child processes (its listener workers)."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@test(timeout=60, icecast=False)
def test_log_file_and_reopen_on_sigusr1_issue10(ctx):
    """--log-file: the server log goes to the file (appended), not stderr; SIGUSR1 makes the
    main process and every worker open it again (logrotate moved it); a reopen that fails is
    logged and the old file kept."""
    path = ctx.tmp / "rostrum.log"
    path.write_text("an older line, kept\n")
    srv = ctx.start_server(extra=["--workers", "2", "--log-file", str(path)])
    wait_for(lambda: "rostrum listening" in path.read_text(), 5, "the start in the log file")
    check(path.read_text().startswith("an older line, kept\n"), "the log file was not appended to")
    check("rostrum listening" not in srv.log_text(), "the log still goes to stderr too")
    main = srv.proc.pid
    wait_for(lambda: len(children(main)) == 2, 10, "two workers")
    workers = children(main)

    def request(port, path_):
        r = http_request(port, "GET", path_)
        check(r.status == 404, f"GET {path_} -> {r.status}")

    rotated = ctx.tmp / "rostrum.log.1"
    path.rename(rotated)
    os.kill(main, signal.SIGUSR1)
    for pid in [main] + workers:
        wait_for(lambda: path.exists() and f"reopened (pid {pid})" in path.read_text(), 5,
                 f"process {pid} reopening the log file")
    for i in range(6):  # the stage port is the main process's; the audience, the workers'
        request(srv.stage, f"/after-rotate-stage-{i}")
        request(srv.audience, f"/after-rotate-audience-{i}")
    names = [f"/after-rotate-{p}-{i}" for p in ("stage", "audience") for i in range(6)]
    wait_for(lambda: all(n in path.read_text() for n in names), 5,
             "the 12 requests logged in the new file")
    old = rotated.read_text()
    check("SIGUSR1: reopening log files" in old, "the rotated file lacks the signal's line")
    check("/after-rotate-" not in old, "lines went to the rotated file after SIGUSR1")
    # a reopen that cannot open the path (a directory in its place): logged, the file kept
    second = ctx.tmp / "rostrum.log.2"
    path.rename(second)
    path.mkdir()
    os.kill(main, signal.SIGUSR1)
    wait_for(lambda: second.read_text().count("reopen failed, still writing to the old file")
             == 3, 5, "three processes saying the reopen failed")
    request(srv.stage, "/after-failed-reopen")
    wait_for(lambda: "/after-failed-reopen" in second.read_text(), 5,
             "the next line in the file kept")
    srv.stop()
    text = rotated.read_text() + second.read_text()
    check("Sanitizer" not in text, "sanitizer report in the log file")


@test(timeout=20, icecast=False)
def test_log_file_that_cannot_be_opened_stops_startup_issue10(ctx):
    bad = ctx.tmp / "no-such-dir" / "rostrum.log"
    r = subprocess.run([ctx.binary, "serve", "--audience", "127.0.0.1:0", "--stage",
                        "127.0.0.1:0", "--source-password", "x", "--log-file", str(bad)],
                       capture_output=True, text=True, timeout=15)
    check(r.returncode == 1, f"exit {r.returncode}, want 1: {r.stderr}")
    check(f"log-file {bad}: No such file or directory: not starting" in r.stderr,
          f"stderr: {r.stderr!r}")
    check("ready" not in r.stdout, "it started")


@test(timeout=30, icecast=False)
def test_reload_log_file_change_needs_restart_issue10(ctx):
    a, b = ctx.tmp / "a.log", ctx.tmp / "b.log"
    conf = write_config(ctx, f"workers = 1\nlog-file = {a}\n")
    srv = ctx.start_server(config=str(conf))
    wait_for(lambda: "rostrum listening" in a.read_text(), 5, "the start in a.log")
    write_config(ctx, f"workers = 1\nlog-file = {b}\n")
    hup(srv)
    wait_for(lambda: f"'log-file' changed from '{a}' to '{b}': needs a restart, kept '{a}'"
             in a.read_text(), 5, "the change named in the running log")
    wait_for(lambda: "configuration re-read" in a.read_text(), 5, "the rest of the reload")
    check(not b.exists(), "the new log file was opened on reload")
