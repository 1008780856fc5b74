"""Refusals, and hostile input that must cost the server nothing but the offending connection.

Every test ends, through the harness, with SIGTERM and a clean exit (exit 0, no sanitizer
report), so a crash or leak caused by the bad input fails the test that sent it."""

import time

from harness import (PASSWORD, PySource, basic_auth, check, check_ffmpeg_decode,
                     check_listener_ogg, check_tone, connect, ffmpeg_listener, ffmpeg_source,
                     http_request, listen, mount_status, parse_head, py_source, random_bytes,
                     raw_exchange, read_head, test, wait_live)


def still_serves(ctx, srv, mount="/live", seconds=3):
    """The server answers status and a listener of <mount> decodes <seconds> of audio."""
    r = http_request(srv.audience, "GET", "/status-json.xsl")
    check(r.status == 200, f"status-json -> {r.status} after the bad input")
    lst = ffmpeg_listener(ctx, srv, mount, seconds, name="check_listener")
    check_ffmpeg_decode(lst, seconds, timeout=seconds + 15)


def status_of(data):
    check(data.startswith(b"HTTP/1."), f"no HTTP response, got {data[:80]!r}")
    return parse_head(data.split(b"\r\n\r\n", 1)[0])


def put_head(mount, password=PASSWORD, content_type="audio/ogg", method="PUT", extra=""):
    auth = f"Authorization: {basic_auth('source', password)}\r\n" if password is not None else ""
    ct = f"Content-Type: {content_type}\r\n" if content_type else ""
    expect = "Expect: 100-continue\r\n" if method == "PUT" else ""
    version = "HTTP/1.0" if method == "SOURCE" else "HTTP/1.1"
    return (f"{method} {mount} {version}\r\nHost: x\r\n{auth}{ct}{expect}{extra}\r\n").encode()


# ---- the abuses, each usable alone or in sequence -------------------------------------------

def abuse_wrong_password(ctx, srv):
    for method, pw in (("PUT", "wrong"), ("PUT", None), ("SOURCE", "wrong")):
        data, _ = raw_exchange(srv.stage, put_head("/live", pw, method=method), timeout=5)
        r = status_of(data)
        check(r.status == 401, f"{method} with password {pw!r} -> {r.status} "
                               f"(first response; must not invite the body with 100 Continue)")
        www = r.header("WWW-Authenticate", "")
        check(www.lower().startswith("basic realm="), f"401 has WWW-Authenticate {www!r}")


def abuse_unsupported_type(ctx, srv):
    data, _ = raw_exchange(srv.stage, put_head("/typed", content_type="text/plain"), timeout=5)
    r = status_of(data)
    check(r.status == 415, f"PUT with Content-Type text/plain -> {r.status}, want 415")
    r = http_request(srv.audience, "GET", "/typed")
    check(r.status == 404, f"refused mount /typed answers GET with {r.status}")


def abuse_unknown_mount(ctx, srv):
    for method in ("GET",) if ctx.icecast else ("GET", "HEAD"):  # Icecast 2.4 has no HEAD
        r = http_request(srv.audience, method, "/no-such-mount")
        check(r.status == 404, f"{method} /no-such-mount -> {r.status}, want 404")


GARBAGE = (
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)) + b"\r\n\r\n",
    b"NOT A REQUEST\r\n\r\n",
    b"GET /live HTTP/1.1\r\nHost: x\r\nNo colon in this header line\r\n\r\n",
)


def abuse_garbage_head(ctx, srv):
    for port, which in ((srv.audience, "audience"), (srv.stage, "stage")):
        for g in GARBAGE:
            data, how = raw_exchange(port, g, timeout=5)
            check(data.startswith(b"HTTP/1."),
                  f"{which} port: {g[:24]!r}... got no HTTP answer ({how}): {data[:60]!r}")
            r = status_of(data)
            check(r.status == 400, f"{which} port: {g[:24]!r}... -> {r.status}, want 400")
            check(how in ("eof", "reset"), f"{which} port: connection left open after a 400")


def abuse_huge_head(ctx, srv):
    pad = "a" * 9216
    for port, which, req in (
            (srv.audience, "audience", f"GET /live HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n"),
            (srv.audience, "audience", "GET /live HTTP/1.1\r\n" +
             "".join(f"X-H{i}: {'b' * 60}\r\n" for i in range(150)) + "\r\n"),
            (srv.stage, "stage", put_head("/live", extra=f"X-Pad: {pad}\r\n").decode())):
        data, how = raw_exchange(port, req.encode(), timeout=5)
        check(data.startswith(b"HTTP/1."), f"{which} port: {len(req)}-byte head got no HTTP "
                                           f"answer ({how}): {data[:60]!r}")
        r = status_of(data)
        check(r.status == 431, f"{which} port: {len(req)}-byte head -> {r.status}, want 431")


def abuse_head_request(ctx, srv):
    """HEAD on a live mount: the stream's headers and no body at all."""
    s = connect(srv.audience)
    try:
        s.sendall(b"HEAD /live HTTP/1.1\r\nHost: x\r\n\r\n")
        r, rest = read_head(s)
        check(r.status == 200, f"HEAD /live -> {r.status}")
        check(r.header("Content-Type", "").startswith(("audio/ogg", "application/ogg")),
              f"HEAD /live Content-Type {r.header('Content-Type')!r}")
        if not ctx.icecast:
            check(r.header("icy-name") == "Test Space", f"HEAD icy-name {r.header('icy-name')!r}")
        s.settimeout(2)
        try:
            more = s.recv(4096)
        except TimeoutError:
            more = b""
        check(not rest and not more, f"HEAD /live sent a body: {(rest + more)[:40]!r}")
    finally:
        s.close()


# ---- tests ----------------------------------------------------------------------------------

@test(timeout=40)
def test_wrong_password_401(ctx):
    srv = ctx.start_server()
    abuse_wrong_password(ctx, srv)
    r = http_request(srv.audience, "GET", "/live")
    check(r.status == 404, f"a refused source made /live answer {r.status}")
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    still_serves(ctx, srv)


@test(timeout=40)
def test_busy_mount_403_first_source_unharmed(ctx):
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    second = PySource(srv.stage, "/live", password=srv.password)
    check(second.resp.status == 403, f"second source on /live -> {second.resp.status}, want 403")
    check(second.server_closed(3), "server kept the refused second source's connection open")
    second.close()
    lst = ffmpeg_listener(ctx, srv, "/live", 4)
    check_tone(check_ffmpeg_decode(lst, 4, timeout=20), 440, "listener after the 403")
    check(src.alive(), f"first source died after the 403:\n{src.tail()}")


@test(timeout=30, icecast=False)
def test_unsupported_content_type_415(ctx):
    srv = ctx.start_server()
    abuse_unsupported_type(ctx, srv)
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    still_serves(ctx, srv)


@test(timeout=20)
def test_unknown_mount_404(ctx):
    srv = ctx.start_server()
    abuse_unknown_mount(ctx, srv)


@test(timeout=30, icecast=False)
def test_garbage_head_400(ctx):
    srv = ctx.start_server()
    abuse_garbage_head(ctx, srv)
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    still_serves(ctx, srv)


@test(timeout=30, icecast=False)
def test_huge_head_431(ctx):
    srv = ctx.start_server()
    abuse_huge_head(ctx, srv)
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    still_serves(ctx, srv)


@test(timeout=40, icecast=False)  # Icecast 2.4 answers HEAD with 400
def test_head_request_has_no_body(ctx):
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    abuse_head_request(ctx, srv)
    still_serves(ctx, srv)


@test(timeout=45, icecast=False)  # Icecast 2.4 relays whatever bytes a source sends
def test_non_ogg_source_dropped_other_mount_unharmed(ctx):
    srv = ctx.start_server()
    good = ffmpeg_source(ctx, srv, "/good", 660)
    wait_live(srv, "/good", proc=good)
    lst = listen(ctx, srv, "/good")
    check(lst.resp.status == 200, f"GET /good -> {lst.resp.status}")
    log_before = len(srv.log_text())

    bad = py_source(ctx, srv, "/junk")
    check(bad.resp.status == 100, f"PUT /junk -> {bad.resp.status}, want 100 Continue")
    t0 = time.monotonic()
    junk = random_bytes(256 * 1024)
    sent = 0
    while sent < len(junk) and time.monotonic() - t0 < 5:
        if not bad.send(junk[sent:sent + 4096]):
            break
        sent += 4096
        time.sleep(0.01)
    check(bad.server_closed(5), f"server still reads the non-Ogg source after {sent} bytes")
    dropped_after = time.monotonic() - t0
    check(dropped_after < 8, f"non-Ogg source dropped only after {dropped_after:.1f} s")
    new_log = srv.log_text()[log_before:]
    check("/junk" in new_log or "junk" in new_log,
          f"no log line names the dropped /junk source:\n{new_log[-1500:]}")

    # The mount never carried audio: nobody can listen to it, and a real source may take it.
    r = http_request(srv.audience, "GET", "/junk")
    check(r.status == 404, f"GET /junk after its source was dropped -> {r.status}, want 404")
    check(mount_status(srv, "/junk") is None, "status-json lists the dropped /junk")
    again = ffmpeg_source(ctx, srv, "/junk", 440, proc_name="source_junk_again")
    wait_live(srv, "/junk", proc=again)
    lst2 = ffmpeg_listener(ctx, srv, "/junk", 3, name="listener_junk")
    check_tone(check_ffmpeg_decode(lst2, 3, timeout=15), 440, "listener of /junk retaken")

    check(lst.end is None, f"listener of /good was cut ({lst.end})")
    gap = lst.max_gap(start=lst.t0 + 1)
    check(gap < 1.6, f"listener of /good got nothing for {gap:.1f} s")
    lst.close()
    check_listener_ogg(lst)
    check(good.alive(), f"source of /good died:\n{good.tail()}")
    still_serves(ctx, srv, "/good")


@test(timeout=60, icecast=False)
def test_all_bad_input_then_still_serves(ctx):
    """Every abuse above against one server, while a source and a listener are live."""
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = listen(ctx, srv, "/live")
    for abuse in (abuse_wrong_password, abuse_unsupported_type, abuse_unknown_mount,
                  abuse_garbage_head, abuse_huge_head, abuse_head_request):
        abuse(ctx, srv)
    junk = py_source(ctx, srv, "/junk")
    check(junk.resp.status == 100, f"PUT /junk -> {junk.resp.status}")
    junk.send(random_bytes(64 * 1024, seed=2))
    check(junk.server_closed(5), "non-Ogg source not dropped")
    busy = PySource(srv.stage, "/live", password=srv.password)
    check(busy.resp.status == 403, f"second source on /live -> {busy.resp.status}")
    busy.close()
    still_serves(ctx, srv)
    check(lst.end is None, f"the listener present through it all was cut ({lst.end})")
    lst.close()
    check_listener_ogg(lst)
    check(src.alive(), f"source died:\n{src.tail()}")
