"""Several spaces (mounts) at once, status-json's shape, and the web page."""

import time

from harness import (check, check_ffmpeg_decode, check_tone, ffmpeg_listener, ffmpeg_source,
                     get_json, http_request, listen, status_sources, test, wait_for, wait_live)


def source_shape(srv):
    """'absent', 'object' or 'array:N' for icestats.source."""
    src = get_json(srv.audience)["icestats"].get("source", "absent")
    if src == "absent":
        return src
    if isinstance(src, dict):
        return "object"
    if isinstance(src, list):
        return f"array:{len(src)}"
    return type(src).__name__


@test(timeout=60)
def test_two_spaces_each_own_tone(ctx):
    # Icecast's shape of "source" by mount count: renditions (issue 11), which status lists
    # as mounts of their own, are off here so that one space is one mount
    srv = ctx.start_server(grace_ms=500, extra=["--aac-kbps", "0", "--mp3-kbps", "0"])
    check(source_shape(srv) == "absent", f"no mount live: source is {source_shape(srv)}")

    a = ffmpeg_source(ctx, srv, "/a", 440, name="Space A", proc_name="source_a")
    wait_live(srv, "/a", proc=a)
    check(source_shape(srv) == "object", f"one mount live: source is {source_shape(srv)}")
    b = ffmpeg_source(ctx, srv, "/b", 660, name="Space B", proc_name="source_b")
    wait_live(srv, "/b", proc=b)
    check(source_shape(srv) == "array:2", f"two mounts live: source is {source_shape(srv)}")

    la = ffmpeg_listener(ctx, srv, "/a", 6, name="listener_a")
    lb = ffmpeg_listener(ctx, srv, "/b", 6, name="listener_b")
    time.sleep(3)
    by_mount = {s["listenurl"].rsplit("/", 1)[-1]: s for s in status_sources(srv)}
    check(set(by_mount) == {"a", "b"}, f"listenurls {sorted(by_mount)}")
    for m, name in (("a", "Space A"), ("b", "Space B")):
        s = by_mount[m]
        check(s["listenurl"].startswith("http://"), f"listenurl {s['listenurl']!r}")
        check(s.get("server_name") == name, f"/{m} server_name {s.get('server_name')!r}")
        check(s.get("listeners") == 1, f"/{m} listeners {s.get('listeners')!r}, want 1")
    pa = check_ffmpeg_decode(la, 6, timeout=20)
    pb = check_ffmpeg_decode(lb, 6, timeout=20)
    check_tone(pa, 440, "listener of /a", others=(660, 880, 220))
    check_tone(pb, 660, "listener of /b", others=(440, 880, 330))

    b.kill()
    wait_for(lambda: source_shape(srv) == "object", 10, "status to list one source after /b ends")
    a.kill()
    wait_for(lambda: source_shape(srv) == "absent", 10, "status to list no source")


@test(timeout=20)
def test_web_page_and_unknown_paths(ctx):
    srv = ctx.start_server()
    page = "/status.xsl" if ctx.icecast else "/"  # Icecast's own HTML page
    r = http_request(srv.audience, "GET", page)
    check(r.status == 200, f"GET {page} -> {r.status}")
    html = ("text/html", "text/xml") if ctx.icecast else ("text/html",)  # Icecast: XHTML
    check(r.header("Content-Type", "").startswith(html),
          f"GET {page} Content-Type {r.header('Content-Type')!r}")
    check(b"<html" in r.body.lower() or b"<!doctype html" in r.body.lower(),
          f"GET {page} body is not HTML: {r.body[:100]!r}")
    r = http_request(srv.audience, "GET", "/status-json.xsl")
    check(r.header("Content-Type", "").startswith("application/json"),
          f"status-json Content-Type {r.header('Content-Type')!r}")
    for path in ("/nothing-here", "/live"):
        r = http_request(srv.audience, "GET", path)
        check(r.status == 404, f"GET {path} with no source -> {r.status}, want 404")
    # A listener that asks for a mount before it is live gets 404 at once, not a hanging stream.
    t0 = time.monotonic()
    lst = listen(ctx, srv, "/soon")
    check(lst.resp.status == 404, f"GET /soon -> {lst.resp.status}")
    check(time.monotonic() - t0 < 2, "404 took more than 2 s")
