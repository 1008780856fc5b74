"""Stage fixes (issues 8 and 11): invalid UTF-8 never reaches a text frame (a browser on the
stage stays connected when someone joins with a name that is not UTF-8), a slot's metadata does
not leak into the next space, unjoined stage spaces end, the state document is bounded, a
source cannot take a page's name, no free slot is a 503, and HEAD answers carry no body."""

import base64
import json
import shutil
import signal
import socket
import time
from pathlib import Path

from harness import (PASSWORD, check, connect, http_request, raw_exchange, read_head, test,
                     wait_for)
from wsclient import WS, HandshakeRefused

KEY = "test-host-key"
BROWSER = Path(__file__).resolve().parent.parent / "browser"


def stage_server(ctx, config=None, **kw):
    opts = {"extra": ["--host-key", KEY, "--workers", "1"]}
    if config:
        path = ctx.tmp / "rostrum.conf"
        path.write_text(config)
        opts["config"] = str(path)
    opts.update(kw)
    return ctx.start_server(**opts)


def api(srv, method, path):
    return http_request(srv.stage, method, path, headers=[("Authorization", f"Bearer {KEY}")])


def source_head(mount, *headers):
    auth = base64.b64encode(f"source:{PASSWORD}".encode()).decode()
    lines = [f"PUT {mount} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Basic {auth}",
             "Content-Type: audio/ogg", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def state_json(srv, space):
    r = http_request(srv.audience, "GET", f"/state/{space}.json")
    return r, (json.loads(r.body) if r.status == 200 else None)


@test(timeout=60, icecast=False)
def test_new_space_has_no_old_metadata(ctx):
    """Issue 11: a slot taken by a new space starts clean (the old mount's icy-description
    showed on the new stage space)."""
    srv = stage_server(ctx, grace_ms=300)
    s = connect(srv.stage)
    s.sendall(source_head("/old", "ice-name: Old show", "ice-description: OLD-DESCRIPTION",
                          "ice-genre: oldgenre", "ice-url: http://old.example/"))
    resp, _ = read_head(s)
    check(resp.status == 200, f"source PUT -> {resp.status}")
    s.close()
    wait_for(lambda: "/old ended" in srv.log_text(), 10, "the old mount to end")
    r = api(srv, "POST", "/api/spaces?name=fresh&title=Fresh")
    check(r.status == 201, f"create -> {r.status} {r.body!r}")
    r = http_request(srv.audience, "HEAD", "/fresh")
    check(r.status == 200, f"HEAD /fresh -> {r.status}")
    head = r.head_raw.decode("latin-1")
    check("OLD" not in head and "old" not in head.lower(),
          f"the new space shows the old mount's metadata:\n{head}")
    check(r.header("icy-name") == "Fresh", f"icy-name {r.header('icy-name')!r}")
    st = json.loads(http_request(srv.audience, "GET", "/status-json.xsl").body)
    check("OLD" not in json.dumps(st) and "oldgenre" not in json.dumps(st),
          f"status shows the old mount's metadata: {st}")


@test(timeout=60, icecast=False)
def test_unjoined_stage_space_ends(ctx):
    """Issue 11: a stage space with no member and no source ends after stage-idle-end-ms;
    one with a member does not."""
    srv = stage_server(ctx, config="stage-idle-end-ms = 1000\n")
    check(api(srv, "POST", "/api/spaces?name=empty").status == 201, "create empty")
    check(api(srv, "POST", "/api/spaces?name=busy").status == 201, "create busy")
    ws = WS(srv.stage, "/ws/busy?name=stayer")
    ws.wait_for(lambda m: m.get("type") == "welcome", 5, "welcome")
    check(api(srv, "GET", "/api/spaces/empty").status == 200, "empty exists at first")
    wait_for(lambda: api(srv, "GET", "/api/spaces/empty").status == 404, 6,
             "the unjoined space to end")
    check("/empty: nobody here" in srv.log_text(), "the end is not logged")
    check(http_request(srv.audience, "GET", "/empty").status == 404, "its mount is gone")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        ws.send_json({"type": "ping"})
        time.sleep(0.5)
    check(api(srv, "GET", "/api/spaces/busy").status == 200,
          "a space with a member ended for idleness")
    ws.close()
    wait_for(lambda: api(srv, "GET", "/api/spaces/busy").status == 404, 6,
             "the space its last member left to end")


@test(timeout=90, icecast=False)
def test_state_doc_bounded_many_requests(ctx):
    """Issue 11: the largest stage the config allows (25), a long title and 60 requests to
    speak, all with names that JSON-escape to twice their length: the document stays under
    8 KiB and served, and says how many requests it does not list (before, it came to about
    10 KiB and /state was 404)."""
    srv = stage_server(ctx, config="max-cohosts = 12\nmax-speakers = 12\n")
    q = "%22" * 47  # 47 '"': 94 bytes in JSON
    r = api(srv, "POST", f"/api/spaces?name=big&title={'%22' * 127}")
    check(r.status == 201, f"create -> {r.status}")
    clients = []
    for i in range(25):
        ws = WS(srv.stage, f"/ws/big?key={KEY}&name={q}")
        ws.wait_for(lambda m: m.get("type") == "welcome", 5, "welcome")
        clients.append(ws)
    for i in range(60):
        ws = WS(srv.stage, f"/ws/big?name={q}")
        ws.wait_for(lambda m: m.get("type") == "welcome", 5, "welcome")
        ws.send_json({"type": "request"})
        clients.append(ws)
    doc = {}

    def settled():
        nonlocal doc
        r, d = state_json(srv, "big")
        check(r.status == 200, f"/state/big.json -> {r.status}: the document did not fit")
        check(len(r.body) <= 8192, f"state document of {len(r.body)} bytes")
        doc = d
        return len(d["requests"]) + d.get("more", 0) == 60

    wait_for(settled, 10, "all 60 requests counted")
    check(len(doc["stage"]) == 25, f"{len(doc['stage'])} of 25 on stage listed")
    check(doc["control_listeners"] == 60, f"control_listeners {doc['control_listeners']}")
    check(doc["more"] >= 10 and len(doc["requests"]) >= 20,
          f"more {doc['more']}: listed {len(doc['requests'])}")
    check(all(x["name"] == '"' * 47 for x in doc["requests"]), "names changed")
    # the members' own copy of the document (a text frame) is the same
    m = clients[-1].wait_for(lambda m: m.get("type") == "state" and
                             len(m["state"]["requests"]) + m["state"].get("more", 0) == 60,
                             5, "the state message")
    check(m["state"]["more"] == doc["more"], "the WebSocket state differs")
    for ws in clients:
        ws.close()


@test(timeout=60, icecast=False)
def test_source_cannot_take_asset_name(ctx):
    """Issue 11: every file the audience port serves, and every route's first component, is
    reserved: a source cannot take /stage.js (the hand list missed it), nor the API create it."""
    srv = stage_server(ctx)
    for name in ("stage.js", "speak.html", "speak.js", "host.html", "host.js", "app.js",
                 "index.html", "style.css", "metrics", "status-json.xsl", "api", "ws", "state",
                 "join"):
        data, _ = raw_exchange(srv.stage, source_head(f"/{name}"), timeout=3)
        check(data.startswith(b"HTTP/1.0 400") or data.startswith(b"HTTP/1.1 400"),
              f"PUT /{name}: {data[:60]!r}")
        r = api(srv, "POST", f"/api/spaces?name={name}")
        check(r.status == 400, f"create {name} -> {r.status}")
    r = http_request(srv.audience, "GET", "/stage.js")
    check(r.status == 200 and b"StageClient" in r.body, "/stage.js is not the page script")
    data, _ = raw_exchange(srv.stage, source_head("/stagejs"), timeout=1)
    check(data.startswith(b"HTTP/1.0 200"), f"an ordinary name is refused: {data[:60]!r}")


@test(timeout=60, icecast=False)
def test_too_many_spaces_503(ctx):
    """Issue 11: with every slot taken, creating a space is 503 with Retry-After (was 400),
    from the API and from a WebSocket join with the key."""
    srv = stage_server(ctx, grace_ms=200)
    socks = []
    for i in range(64):  # SHARED_MAX_SPACES: sources that have sent no audio hold a slot
        s = connect(srv.stage)
        s.sendall(source_head(f"/s{i}"))
        resp, _ = read_head(s)
        check(resp.status == 200, f"source /s{i} -> {resp.status}")
        socks.append(s)
    r = api(srv, "POST", "/api/spaces?name=onemore")
    check(r.status == 503, f"create with no free slot -> {r.status} {r.body!r}")
    check(r.header("Retry-After", "").isdigit(), f"Retry-After {r.header('Retry-After')!r}")
    check(json.loads(r.body).get("error"), f"no error in {r.body!r}")
    try:
        WS(srv.stage, f"/ws/onemore?key={KEY}&name=x")
        check(False, "a key join made a space with no free slot")
    except HandshakeRefused as e:
        check(e.status == 503, f"key join with no free slot -> {e.status}")
    for s in socks:
        s.close()
    wait_for(lambda: api(srv, "POST", "/api/spaces?name=onemore").status == 201, 10,
             "a slot to be free again")


@test(timeout=60, icecast=False)
def test_api_head_has_no_body(ctx):
    """Issue 11: a HEAD on the stage port (API documents, errors) has a head and no body."""
    srv = stage_server(ctx)
    check(api(srv, "POST", "/api/spaces?name=room").status == 201, "create")
    for path, want in (("/api/spaces/room", 200), ("/api/spaces/nope", 404), ("/nothing", 404)):
        data, how = raw_exchange(srv.stage, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                                 timeout=3)
        check(b"\r\n\r\n" in data, f"HEAD {path}: no complete head ({how}): {data!r}")
        head, body = data.split(b"\r\n\r\n", 1)
        check(head.split(b" ")[1] == str(want).encode(), f"HEAD {path}: {head[:40]!r}")
        check(body == b"", f"HEAD {path} has a body: {body[:80]!r}")
        check(b"Content-Length:" in head, f"HEAD {path}: no Content-Length")
        g = http_request(srv.stage, "GET", path)
        check(g.status == want and g.body, f"GET {path} -> {g.status} {g.body!r}")
        check(int(g.header("Content-Length")) == int(dict(
            line.split(b": ", 1) for line in head.split(b"\r\n")[1:])[b"Content-Length"]),
            f"HEAD and GET {path} disagree on Content-Length")


@test(timeout=120, icecast=False, exclusive=True)
def test_issue8_browser_stays_connected_with_invalid_utf8_name(ctx):
    """Issue 8: a member joins with a name of bytes that are not UTF-8 and asks to speak; the
    host's page in Chromium keeps its WebSocket and shows the request (before, Chromium failed
    the connection on the state frame: "could not decode a text frame as UTF-8")."""
    node = shutil.which("node")
    check(node, "node is not installed (make test-deps)")
    check((BROWSER / "node_modules" / "playwright-core").is_dir(),
          "tests/browser/node_modules missing: run scripts/install-deps test")
    srv = stage_server(ctx)
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    b = ctx.spawn("chromium", [node, BROWSER / "stage_watch.mjs", srv.url("/"),
                               f"127.0.0.1:{srv.stage}", "room", KEY, "15"],
                  env=env, stdout=ctx.tmp / "chromium.json")
    try:
        wait_for(lambda: b"joined" in b.output() or not b.alive(), 40, "the browser to join")
        check(b.alive(), f"the browser gave up: {b.output()[-800:]!r}\n{b.tail()}")
        # Latin-1 e-acute, an overlong '/', a lone surrogate, a cut sequence
        bad = "%E9t%E9%C0%AF%ED%A0%80x%E2%82"
        ws = WS(srv.stage, f"/ws/room?name={bad}")
        ws.wait_for(lambda m: m.get("type") == "welcome", 5, "welcome")
        ws.send_json({"type": "request"})
        t0 = time.monotonic()
        while b.alive() and time.monotonic() - t0 < 30:
            ws.send_json({"type": "ping"})
            time.sleep(0.5)
        rc = b.wait(5)
    finally:
        b.signal(signal.SIGTERM)
    out = b.output().decode(errors="replace").strip().splitlines()
    check(rc == 0, f"browser check failed ({rc}): {out[-1] if out else ''}\n{b.tail()}")
    res = json.loads(out[-1])
    check(any("\ufffd" in r for r in res["requests"]), f"requests shown: {res['requests']}")
    # one U+FFFD per maximal invalid subpart, in the document and on the WebSocket
    want = "\ufffdt" + "\ufffd" * 6 + "x\ufffd"
    r, doc = state_json(srv, "room")
    check(r.status == 200 and doc["requests"][0]["name"] == want, f"state: {r.body[:300]!r}")
    m = ws.wait_for(lambda m: m.get("type") == "state" and m["state"]["requests"], 5,
                    "the state with the request")
    check(m["state"]["requests"][0]["name"] == want, f"name {m['state']['requests']!r}")
