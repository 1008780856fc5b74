"""Tickets and tokens (issue 8, items 5, 6, 8): waiting-room tickets are single-use, bound to
their address and paced below a millisecond; /join is limited per address and one client's
retries do not push the queue; a ticketless join is sent to /join; a removed speaker stays out;
an invite seats one person unless it is reusable; a token of one kind never passes as another,
and every refusal says why."""

import json
import socket
import time

from harness import (check, ffmpeg_source, http_request, metric, metrics, read_head,
                     read_until_close, test, wait_for, wait_live)
from wsclient import WS, HandshakeRefused

KEY = "test-host-key"


def config(ctx, text):
    p = ctx.tmp / "rostrum.conf"
    p.write_text(text)
    return str(p)


def refused(srv, reason):
    return metric(metrics(srv)[0], "rostrum_refused_total", reason=reason) or 0


def get(port, path, bind="127.0.0.1", timeout=5.0):
    """GET <path> from source address <bind>; returns (Response, body). Streams are cut after
    their head (the body is then what came with it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(bind, 0))
    try:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        head, rest = read_head(s)
        if head.status == 200 and head.header("Content-Type", "").startswith("audio/"):
            return head, rest
        more, _ = read_until_close(s, timeout)
        return head, rest + more
    finally:
        s.close()


def ticket(srv, space, bind="127.0.0.1"):
    head, body = get(srv.audience, f"/join/{space}", bind)
    check(head.status == 200, f"/join/{space} from {bind} -> {head.status} {body[:200]!r}")
    return json.loads(body)


def waiting_room(ctx, extra_conf="", workers=1):
    srv = ctx.start_server(config=config(ctx, "waiting-room = 1\n" + extra_conf),
                           extra=["--workers", str(workers)])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    return srv


def wait_admit(t):
    time.sleep(max(0.0, (t["admit_at_ms"] - time.time() * 1000) / 1000) + 0.3)


@test(timeout=60, icecast=False)
def test_ticket_single_use(ctx):
    # two workers: a replay on a new connection usually reaches the other one
    srv = waiting_room(ctx, workers=2)
    t = ticket(srv, "live")
    wait_admit(t)
    head, _ = get(srv.audience, t["stream"])
    check(head.status == 200, f"first use of a ticket -> {head.status}")
    for i in range(6):
        head, body = get(srv.audience, t["stream"])
        check(head.status == 403 and b"used already" in body and b"/join/live" in body,
              f"replay {i + 1} of a used ticket -> {head.status} {body!r}")
    # a ticket issued to one address is no good from another
    t2 = ticket(srv, "live", bind="127.0.0.1")
    wait_admit(t2)
    head, body = get(srv.audience, t2["stream"], bind="127.0.0.5")
    check(head.status == 403 and b"another address" in body,
          f"ticket of 127.0.0.1 used from 127.0.0.5 -> {head.status} {body!r}")
    head, _ = get(srv.audience, t2["stream"], bind="127.0.0.1")
    check(head.status == 200, f"...and from its own address -> {head.status}")
    check(refused(srv, "ticket_used") >= 6, "replays not counted as ticket_used")


@test(timeout=60, icecast=False)
def test_join_flood_limited_and_does_not_push_queue(ctx):
    # 2 admissions a second: each new place in the queue is 500 ms further back
    srv = waiting_room(ctx, "waiting-room-rate = 2\njoins-per-ip = 5\n")
    statuses, places = [], set()
    for _ in range(30):
        head, body = get(srv.audience, "/join/live", bind="127.0.0.3")
        statuses.append(head.status)
        if head.status == 200:
            places.add(json.loads(body)["admit_at_ms"])
        else:
            check(head.status == 429 and head.header("Retry-After"),
                  f"/join flood answered {head.status} {head.headers}")
    ok = statuses.count(200)
    check(ok <= 10 and statuses.count(429) >= 20,
          f"30 quick /join from one address with joins-per-ip 5 (burst 10): {statuses}")
    check(len(places) <= 2, f"one address took {len(places)} places in the queue: {places}")
    # someone else, right after the flood, is not behind it
    other = ticket(srv, "live", bind="127.0.0.9")
    wait_s = (other["admit_at_ms"] - time.time() * 1000) / 1000
    check(other["position"] <= 2 and wait_s < 1.6,
          f"after one address's flood, another waits {wait_s:.1f} s at position "
          f"{other['position']} (the flood held {len(places)} places)")
    check(refused(srv, "tickets_per_ip") >= 20, "/join refusals not counted as tickets_per_ip")


@test(timeout=60, icecast=False)
def test_ticket_pacing_below_a_millisecond(ctx):
    # 3,000/s: a ticket every 1/3 ms (the old pacing truncated that to 1 ms). Requests that
    # arrive together queue up, and their tickets must name times exactly 1/3 ms apart,
    # however long the server took to answer each.
    srv = waiting_room(ctx, "waiting-room-rate = 3000\n")
    socks = []
    for i in range(32):  # each from its own address, so no one gets a place back
        socks.append(socket.create_connection(("127.0.0.1", srv.audience), timeout=5,
                                              source_address=(f"127.0.1.{10 + i}", 0)))
    for s in socks:
        s.sendall(b"GET /join/live HTTP/1.0\r\n\r\n")
    admits = []
    for s in socks:
        head, rest = read_head(s)
        more, _ = read_until_close(s, 5)
        s.close()
        check(head.status == 200, f"/join -> {head.status}")
        admits.append(json.loads(rest + more)["admit_at_ms"])
    admits.sort()
    diffs = [round(b - a, 3) for a, b in zip(admits, admits[1:])]
    check(len(set(admits)) == len(admits), f"admit times not distinct: {admits}")
    paced = [d for d in diffs if 0.332 <= d <= 0.335]
    check(len(paced) >= len(diffs) // 2,
          f"at 3,000/s queued tickets should be 1/3 ms apart: gaps {diffs}")


@test(timeout=60, icecast=False)
def test_ticketless_join_sent_to_join(ctx):
    srv = waiting_room(ctx)
    head, body = get(srv.audience, "/live")
    check(head.status == 403, f"join without a ticket, waiting room on -> {head.status}")
    check(head.header("Location") == "/join/live", f"Location: {head.header('Location')}")
    check("</join/live>" in (head.header("Link") or ""), f"Link: {head.header('Link')}")
    check(b"/join/live" in body and b"(null)" not in body, f"body {body!r}")
    check(refused(srv, "no_ticket") >= 1, "not counted as no_ticket")
    # the way the page does it still works
    t = ticket(srv, "live")
    wait_admit(t)
    check(get(srv.audience, t["stream"])[0].status == 200, "join with a ticket")


# ---- the stage --------------------------------------------------------------------------------


def stage_server(ctx, conf=""):
    return ctx.start_server(config=config(ctx, conf) if conf else None,
                            extra=["--host-key", KEY, "--workers", "1"])


def api(srv, method, path, token=KEY):
    r = http_request(srv.stage, method, path, headers=[("Authorization", f"Bearer {token}")])
    return r, json.loads(r.body) if r.body.strip().startswith(b"{") else None


def join(srv, space, token, name):
    ws = WS(srv.stage, f"/ws/{space}?token={token}&name={name}")
    return ws, ws.wait_for(lambda m: m.get("type") == "welcome", 5, "welcome")


def refused_join(srv, space, token, name="x"):
    try:
        ws = WS(srv.stage, f"/ws/{space}?token={token}&name={name}")
    except HandshakeRefused as e:
        return e
    ws.close()
    return None


def make_space(srv, name="room"):
    r, created = api(srv, "POST", f"/api/spaces?name={name}")
    check(r.status == 201, f"create -> {r.status} {r.body!r}")
    host, _ = join(srv, name, created["host_token"], "Host")
    return created, host


@test(timeout=60, icecast=False)
def test_removed_speaker_stays_out(ctx):
    srv = stage_server(ctx)
    created, host = make_space(srv)
    r, inv = api(srv, "POST", "/api/spaces/room/invites?role=speaker", token=created["host_token"])
    check(r.status == 201 and not inv.get("reusable"), f"invite -> {r.status} {inv}")
    spk, w = join(srv, "room", inv["token"], "Spk")
    host.send_json({"type": "remove", "id": w["id"]})
    check(spk.wait_closed(5) and spk.closed[0] == 4001, f"removal close: {spk.closed}")
    e = refused_join(srv, "room", inv["token"])
    check(e is not None, "the removed speaker rejoined at once with the same token")
    check(e.status == 403 and b"revoked" in e.body and b"(null)" not in e.body,
          f"rejoin after removal -> {e.status} {e.body!r}")
    # removing someone who came with a reusable link revokes it for newcomers
    r, many = api(srv, "POST", "/api/spaces/room/invites?role=speaker&reusable=1",
                  token=created["host_token"])
    a, wa = join(srv, "room", many["token"], "A")
    b, _ = join(srv, "room", many["token"], "B")
    host.send_json({"type": "remove", "id": wa["id"]})
    check(a.wait_closed(5), "A not removed")
    e = refused_join(srv, "room", many["token"])
    check(e is not None and e.status == 403, f"reusable link after a removal: {e}")
    b.send_json({"type": "ping"})
    b.wait_for(lambda m: m.get("type") == "pong", 5, "B still seated")
    check(refused(srv, "stage_token") >= 2, "stage token refusals not counted")
    for ws in (host, b):
        ws.close()


@test(timeout=60, icecast=False)
def test_single_use_invite_seats_one_reusable_many(ctx):
    srv = stage_server(ctx)
    created, host = make_space(srv)
    r, once = api(srv, "POST", "/api/spaces/room/invites?role=speaker", token=created["host_token"])
    a, wa = join(srv, "room", once["token"], "A")
    check(wa["role"] == "speaker", f"A joined as {wa['role']}")
    e = refused_join(srv, "room", once["token"], "B")
    check(e is not None, "a single-use invite seated a second person")
    check(e.status == 409 and b"in use" in e.body, f"second use -> {e.status} {e.body!r}")
    # the create answer's speaker link is single-use too
    s1, _ = join(srv, "room", created["speaker_token"], "S1")
    check(refused_join(srv, "room", created["speaker_token"]) is not None,
          "the space's speaker link seated two")
    # over the socket, the host may ask for a reusable one
    host.send_json({"type": "invite", "role": "speaker", "reusable": True})
    inv = host.wait_for(lambda m: m.get("type") == "invite", 5, "an invite")
    check(inv.get("reusable") is True, f"invite message {inv}")
    seated = [join(srv, "room", inv["token"], f"M{i}")[0] for i in range(3)]
    r, many = api(srv, "POST", "/api/spaces/room/invites?role=listener&reusable=true",
                  token=created["host_token"])
    check(r.status == 201 and many["reusable"] is True, f"reusable invite -> {r.status} {many}")
    seated += [join(srv, "room", many["token"], f"L{i}")[0] for i in range(3)]
    # a single-use invite whose holder left may seat them again (a dropped connection)
    a.close()
    wait_for(lambda: refused_join(srv, "room", once["token"], "A-again") is None, 5,
             "A back with its invite after leaving")
    for ws in [host, s1] + seated:
        ws.close()


@test(timeout=60, icecast=False)
def test_ticket_not_a_stage_token(ctx):
    srv = ctx.start_server(config=config(ctx, "waiting-room = 1\n"),
                           extra=["--host-key", KEY, "--workers", "1"])
    created, host = make_space(srv)
    wait_for(lambda: get(srv.audience, "/join/room")[0].status == 200, 5, "the space's /join")
    t = ticket(srv, "room")
    e = refused_join(srv, "room", t["ticket"])
    check(e is not None, "an admission ticket was accepted as a stage token")
    check(e.status in (401, 403) and b"(null)" not in e.body and b"not a stage token" in e.body,
          f"ticket as a stage token -> {e.status} {e.body!r}")
    r, _ = api(srv, "POST", "/api/spaces/room/end", token=t["ticket"])
    check(r.status == 401, f"ticket as a Bearer for /end -> {r.status}")
    # and a stage token is no admission ticket
    head, body = get(srv.audience, f"/room?ticket={created['host_token']}")
    check(head.status == 403 and b"not an admission ticket" in body,
          f"host token as a ticket -> {head.status} {body!r}")
    host.close()


def send_keep(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n".encode())


def read_doc(s, buf=b""):
    """One response with a Content-Length from <s>: (Response, body, bytes past it)."""
    head, rest = read_head(s, buf)
    n = int(head.header("Content-Length", "-1"))
    check(n >= 0, f"no Content-Length in {head}")
    while len(rest) < n:
        d = s.recv(65536)
        check(d, f"closed inside a {n}-byte body")
        rest += d
    return head, rest[:n], rest[n:]


@test(timeout=60, icecast=False)
def test_ticket_then_stream_on_one_kept_alive_connection(ctx):
    """Issue 12, item 5: a page asks /join, then joins with its ticket; asked with
    "Connection: keep-alive" both go on one connection (the storm through the waiting room costs
    one connection per listener, not two). A kept connection left idle is closed at the head
    deadline and counted as such, not as a slow head; a request that does not ask, and every
    refusal, still close."""
    srv = waiting_room(ctx)
    s = socket.create_connection(("127.0.0.1", srv.audience), timeout=5)
    try:
        send_keep(s, "/join/live")
        head, body, rest = read_doc(s)
        check(head.status == 200 and head.version == "HTTP/1.1", f"/join: {head}")
        check((head.header("Connection") or "").lower() == "keep-alive",
              f"/join asked to keep alive: {head}")
        check(head.header("Keep-Alive") == "timeout=4",
              f"Keep-Alive should be a second under the 5 s head deadline: {head}")
        t = json.loads(body)
        wait_admit(t)
        send_keep(s, t["stream"])
        head, rest = read_head(s, rest)
        check(head.status == 200 and head.header("Content-Type", "").startswith("audio/ogg"),
              f"the stream on the kept connection: {head}")
        while len(rest) < 4096:
            d = s.recv(65536)
            check(d, "the stream ended")
            rest += d
        check(rest.startswith(b"OggS"), f"the stream starts with a page: {rest[:16]!r}")
    finally:
        s.close()
    m = metrics(srv)[0]
    check(metric(m, "rostrum_keepalive_requests_total") == 1,
          f"one request on a kept connection: {metric(m, 'rostrum_keepalive_requests_total')}")

    # idle: closed at the head deadline (5 s), as an idle close, not a head timeout
    timeouts = refused(srv, "head_timeout")
    s = socket.create_connection(("127.0.0.1", srv.audience), timeout=10)
    try:
        send_keep(s, "/status-json.xsl")
        head, _, rest = read_doc(s)
        check(head.status == 200 and rest == b"", f"status: {head}")
        t0 = time.monotonic()
        data, how = read_until_close(s, 9)
        took = time.monotonic() - t0
        check(how == "eof" and data == b"" and 4.5 < took < 7.5,
              f"an idle kept connection closed after {took:.2f} s ({how}, {data[:60]!r})")
    finally:
        s.close()
    m = metrics(srv)[0]
    check(metric(m, "rostrum_keepalive_idle_closes_total") == 1,
          f"idle closes: {metric(m, 'rostrum_keepalive_idle_closes_total')}")
    check(refused(srv, "head_timeout") == timeouts, "an idle close is not a slow head")

    # not asked: HTTP/1.0 and close; a refusal closes though asked
    for path, keep, status in (("/join/live", False, 200), ("/live?ticket=forged", True, 403)):
        s = socket.create_connection(("127.0.0.1", srv.audience), timeout=5)
        try:
            if keep:
                send_keep(s, path)
            else:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head, rest = read_head(s)
            more, how = read_until_close(s, 3)
            check(head.status == status and how == "eof" and
                  (head.header("Connection") or "").lower() == "close",
                  f"{path} (keep-alive asked: {keep}) should answer {status} and close: "
                  f"{head} then {how}")
        finally:
            s.close()
