"""Relays (issue 10): `rostrum relay` pulls the spaces of an upstream (an origin or another relay)
through the relay feed, resumes by sequence number after a cut, fails over between upstreams,
ends what ends upstream, and can front a plain Icecast mount.

Every relay here is a real `rostrum relay` process with its own listener workers; listeners
are the harness's raw Listener (every Ogg page checked: one serial, page numbers by one,
granules by the audio) and ffmpeg decoding."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import (IcecastServer, Server, audio_seconds, check, check_ffmpeg_decode,
                     check_listener_ogg, check_tone, ffmpeg_listener, ffmpeg_source, free_port,
                     get_json, http_request, listen, metric, metrics, note, test, wait_for,
                     wait_live)
from test_stage import KEY, speaker


def relay(ctx, upstream, **kw):
    """A `rostrum relay` of <upstream> (a Server, or URL text), one worker."""
    if not isinstance(upstream, str):
        upstream = f"http://127.0.0.1:{upstream.audience}"
    extra = ["--workers", "1"] + list(kw.pop("extra", ()))
    return Server(ctx, ctx.binary, relay=upstream, extra=extra, **kw)


def relay_live(srv, mount, timeout=15):
    def live():
        r = http_request(srv.audience, "GET", "/relay.json", timeout=2)
        return r.status == 200 and f'"mount":"{mount[1:]}"'.encode() in r.body
    wait_for(live, timeout, f"{mount} live on the relay at :{srv.audience}")


def kill(srv):
    """SIGKILL, as a crash: the test does not stop it gracefully (its workers follow it)."""
    srv.stopped = True
    srv.proc.signal(signal.SIGKILL)
    srv.proc.wait(5)
    time.sleep(0.3)


def signal_all(srv, sig):
    """<sig> to <srv>'s main process and its workers (its children)."""
    pid = srv.proc.p.pid
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for p in [pid] + [int(k) for k in kids]:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def check_continuous(lst, what, slack=2.5):
    """One Ogg stream with no gap or repeat, and about as much audio as wall time."""
    pages = check_listener_ogg(lst)
    secs = audio_seconds(pages)
    wall = (lst.end_time or time.monotonic()) - lst.t0
    check(secs >= wall - slack, f"{what}: {secs:.1f} s of audio in {wall:.1f} s")
    return pages


@test(timeout=120, icecast=False)
def test_relay_chain_gapless_through_cuts_10(ctx):
    """origin (studio source + a stage with a speaker) -> relay1 -> relay2. Stop relay1's main
    process for 3 s (its workers go on: their keepalives say it is starved, and relay2, with no
    other upstream, keeps its feed), then relay1 and its workers for 3 s (the link goes
    silent: relay2 sees the stall and resumes), then kill and restart it on its port: relay2's
    listeners get one stream with no gap, no repeat and no restart (relay2 resumes by
    sequence, from the restarted relay1 too)."""
    origin = ctx.start_server(extra=["--host-key", KEY, "--workers", "1"])
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    spk = speaker(ctx, origin, "room", "A", tone=660, seconds=60)
    wait_live(origin, "/room", proc=spk)
    r1_port = free_port()
    r1 = relay(ctx, origin, audience=f"127.0.0.1:{r1_port}")
    relay_live(r1, "/live")
    relay_live(r1, "/room")
    r2 = relay(ctx, r1)
    relay_live(r2, "/live")
    relay_live(r2, "/room")
    time.sleep(1.5)
    live = listen(ctx, r2, "/live")
    room = listen(ctx, r2, "/room")
    check(live.resp.status == 200 and room.resp.status == 200,
          f"listeners on relay2: {live.resp.status} {room.resp.status}")
    dec = ffmpeg_listener(ctx, r2, "/live", 30)
    time.sleep(4)
    # relay1 starved: its main process stops for 3 s, its workers still answer
    cuts0 = metric(metrics(r2)[0], "rostrum_relay_cuts_total")
    r1.proc.signal(signal.SIGSTOP)
    time.sleep(3)
    r1.proc.signal(signal.SIGCONT)
    time.sleep(3)
    m, _ = metrics(r2)
    check(metric(m, "rostrum_relay_cuts_total") == cuts0,
          f"relay2 cut its only upstream while that one was starved (its workers still sent "
          f"keepalives): cuts {cuts0} -> {metric(m, 'rostrum_relay_cuts_total')}")
    # a stalled link: relay1 and its workers stop for 3 s, relay2's feed has nothing for 2
    # page intervals
    ctx.on_cleanup(lambda: signal_all(r1, signal.SIGCONT))
    signal_all(r1, signal.SIGSTOP)
    time.sleep(3)
    signal_all(r1, signal.SIGCONT)
    time.sleep(4)
    # an upstream restart in the middle of the chain
    kill(r1)
    time.sleep(1)
    r1 = relay(ctx, origin, audience=f"127.0.0.1:{r1_port}")
    time.sleep(6)
    pcm = check_ffmpeg_decode(dec, 30, timeout=40)
    for lst in (live, room):
        check(lst.end is None, f"relay2's listener of {lst.mount} ended: {lst.end}")
        lst.close()
    check_continuous(live, "relay2 /live")
    check_continuous(room, "relay2 /room")
    check_tone(pcm[-96000 * 4:], 440, "ffmpeg on relay2 /live at the end", others=(660,))
    m, _ = metrics(r2)
    check(metric(m, "rostrum_relay_resumes_total") >= 2,
          f"relay2 resumed {metric(m, 'rostrum_relay_resumes_total')} times, want >= 2 "
          "(after the stall and after relay1's restart)")
    check(metric(m, "rostrum_relay_restarts_total") == 0,
          f"relay2 restarted a stream {metric(m, 'rostrum_relay_restarts_total')} times")
    check(metric(m, "rostrum_relay_stalls_total") >= 1, "relay2 never saw the stall")
    check(metric(m, "rostrum_relay_feeds_up") == 2, "relay2 does not have both feeds back")
    # relay2 reports upward what its listeners receive (issue 10, item 3 will sum it): the
    # raw listener and ffmpeg were on /live
    check(re.search(r"reports [12] listeners receiving /live in its subtree", r1.log_text()),
          "relay1 never got relay2's report of its /live listeners")
    # the stage's state document travels too
    r = http_request(r2.audience, "GET", "/state/room.json")
    check(r.status == 200 and b'"A"' in r.body, f"/state/room.json on relay2: {r.status} "
                                                f"{r.body[:200]!r}")
    for s in (r2, r1):
        s.stop()


@test(timeout=100, icecast=False)
def test_relay_failover_between_upstreams_10(ctx):
    """relayC --upstream A,B (both relays of one origin): A dies, C fails over to B and carries
    on at the next page, since both carry the origin's sequence numbers and identity; A comes
    back, B dies, and C goes back to A, again with no gap."""
    origin = ctx.start_server(extra=["--workers", "1"])
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    a_port = free_port()
    a = relay(ctx, origin, audience=f"127.0.0.1:{a_port}")
    b = relay(ctx, origin)
    relay_live(a, "/live")
    relay_live(b, "/live")
    c = relay(ctx, f"http://127.0.0.1:{a_port},http://127.0.0.1:{b.audience}")
    relay_live(c, "/live")
    time.sleep(1.5)
    lst = listen(ctx, c, "/live")
    time.sleep(4)
    kill(a)
    time.sleep(5)
    m, _ = metrics(c)
    check(metric(m, "rostrum_relay_failovers_total") >= 1, "relayC never failed over")
    check(metric(m, "rostrum_relay_resumes_total") >= 1, "relayC did not resume on B")
    a = relay(ctx, origin, audience=f"127.0.0.1:{a_port}")
    relay_live(a, "/live")
    time.sleep(3)
    kill(b)
    time.sleep(5)
    check(lst.end is None, f"the listener on relayC ended: {lst.end}")
    lst.close()
    check_continuous(lst, "relayC /live")
    m, _ = metrics(c)
    check(metric(m, "rostrum_relay_resumes_total") >= 2, "relayC did not resume back on A")
    check(metric(m, "rostrum_relay_restarts_total") == 0, "relayC restarted the stream")
    check(metric(m, "rostrum_relay_feeds_up") == 1, "relayC has no feed up at the end")
    # the relay's own status is Icecast's, as on an origin
    st = get_json(c.audience)
    check(st["icestats"].get("source"), f"relayC's status lists no source: {st}")
    for s in (c, a):
        s.stop()


@test(timeout=60, icecast=False)
def test_relay_failover_passes_over_a_silent_upstream_10(ctx):
    """relayC --upstream A,H,B where H takes connections and never answers (a black-holed or
    hung server): A dies, C tries H, passes over it after 1.5 s (not the 3 s a last upstream
    gets) and resumes on B with no gap."""
    origin = ctx.start_server(extra=["--workers", "1"])
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # the kernel completes the handshakes; nobody ever reads or answers
    ctx.on_cleanup(hole.close)
    h_url = f"http://127.0.0.1:{hole.getsockname()[1]}"
    a_port = free_port()
    a = relay(ctx, origin, audience=f"127.0.0.1:{a_port}")
    b = relay(ctx, origin)
    relay_live(a, "/live")
    relay_live(b, "/live")
    b_url = f"http://127.0.0.1:{b.audience}"
    c = relay(ctx, f"http://127.0.0.1:{a_port},{h_url},{b_url}")
    relay_live(c, "/live")
    time.sleep(1.5)
    lst = listen(ctx, c, "/live")
    time.sleep(3)
    kill(a)

    def resumed_on_b():
        return re.search(rf"/live: resumed from {re.escape(b_url)}", c.log_text())
    wait_for(resumed_on_b, 10, "relayC resumed on B")
    log = c.log_text()
    m = re.search(rf"/live: {re.escape(h_url)}: no answer in (\d+) ms", log)
    check(m, f"relayC never gave up on the silent upstream:\n{log[-3000:]}")
    waited = int(m.group(1))
    note(f"relayC passed over the silent upstream after {waited} ms")
    check(1400 <= waited < 2900, f"relayC waited {waited} ms for the silent upstream, want "
                                 "1.5 s (a fail-over with an untried upstream left)")
    time.sleep(2)
    check(lst.end is None, f"the listener on relayC ended: {lst.end}")
    lst.close()
    check_continuous(lst, "relayC /live")
    for s in (c, b):
        s.stop()


@test(timeout=60, icecast=False)
def test_relay_key_and_space_end_10(ctx):
    """With relay-key set, a feed needs it (403 without, 403 wrong, counted); a relay with the
    key pulls; when the space ends at the origin (its grace runs out), it ends on the relay and
    the relay's listeners are let go."""
    origin = ctx.start_server(grace_ms=2000, extra=["--workers", "1", "--relay-key", "s3cr+t"])
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    r = http_request(origin.audience, "GET", "/live?relay=1")
    check(r.status == 403, f"a feed without the key -> {r.status}")
    r = http_request(origin.audience, "GET", "/live?relay=1", headers=[("X-Relay-Key", "s3cr")])
    check(r.status == 403, f"a feed with a wrong key -> {r.status}")
    r = http_request(origin.audience, "GET", "/live?relay=1&from=x", timeout=2,
                     headers=[("X-Relay-Key", "s3cr+t")])
    check(r.status == 400, f"a feed with from=x -> {r.status}")
    # upward, a feed carries reports only: anything else is cut (and counted)
    sk = socket.create_connection(("127.0.0.1", origin.audience), timeout=5)
    sk.sendall(b"GET /live?relay=1&key=s3cr%2Bt HTTP/1.0\r\n\r\n")
    got = sk.recv(65536)
    check(got.startswith(b"HTTP/1.0 200") and b"application/x-rostrum-feed" in got,
          f"a feed with ?key= (percent-encoded) -> {got[:80]!r}")
    sk.sendall(b"\x02" + bytes(23))
    deadline = time.monotonic() + 5
    closed = False
    while time.monotonic() < deadline and not closed:
        try:
            closed = sk.recv(65536) == b""
        except (ConnectionResetError, socket.timeout):
            closed = True
    sk.close()
    check(closed, "a feed that sent a page upward was not cut")
    check(metric(metrics(origin)[0], "rostrum_feed_cuts_total") >= 1, "the cut was not counted")
    nokey = relay(ctx, origin)
    time.sleep(2.5)
    r = http_request(nokey.audience, "GET", "/live")
    check(r.status == 404, f"a relay without the key serves /live: {r.status}")
    check("relay key" in nokey.log_text(), "the keyless relay did not say why it was refused")
    check(metric(metrics(origin)[0], "rostrum_feed_refused_relay_key_total") >= 3,
          "refused feeds not counted")
    good = relay(ctx, origin, extra=["--relay-key", "s3cr+t"])
    relay_live(good, "/live")
    time.sleep(1)
    lst = listen(ctx, good, "/live")
    time.sleep(2)
    src.signal(signal.SIGKILL)
    t_kill = time.monotonic()
    wait_for(lambda: lst.end is not None, 15, "the relay's listener to be let go")
    took = time.monotonic() - t_kill
    check(took < 8, f"the space ended on the relay {took:.1f} s after its source died "
                    "(grace 2 s)")
    check_listener_ogg(lst)
    r = http_request(good.audience, "GET", "/live")
    check(r.status == 404, f"/live on the relay after the end: {r.status}")
    check(b'"spaces":[]' in http_request(good.audience, "GET", "/relay.json").body,
          "the relay still lists the space")
    for s in (good, nokey):
        s.stop()


@test(timeout=60, icecast=False)
def test_relay_of_one_mount_icecast_and_rostrum_10(ctx):
    """--upstream http://HOST:PORT/MOUNT: a plain Icecast mount (demuxed and muxed again, as a
    source), and a rostrum mount (which answers with a feed)."""
    ice = IcecastServer(ctx, "icecast2")
    src = ffmpeg_source(ctx, ice, "/ice", 550)
    wait_live(ice, "/ice", proc=src)
    ri = relay(ctx, f"http://127.0.0.1:{ice.audience}/ice")
    wait_live(ri, "/ice")
    origin = ctx.start_server(extra=["--workers", "1"])
    src2 = ffmpeg_source(ctx, origin, "/live", 440, proc_name="source2")
    wait_live(origin, "/live", proc=src2)
    rr = relay(ctx, f"http://127.0.0.1:{origin.audience}/live")
    relay_live(rr, "/live")
    time.sleep(1)
    li = listen(ctx, ri, "/ice")
    lr = listen(ctx, rr, "/live")
    di = ffmpeg_listener(ctx, ri, "/ice", 6, name="dec_ice")
    time.sleep(7)
    pcm = check_ffmpeg_decode(di, 6, timeout=20)
    check_tone(pcm[-96000 * 3:], 550, "ffmpeg on the relay of the Icecast mount")
    for lst, what in ((li, "relay of icecast /ice"), (lr, "relay of rostrum /live")):
        check(lst.end is None, f"{what}: listener ended {lst.end}")
        lst.close()
        check_continuous(lst, what)
    check("pulling a plain Ogg stream" in ri.log_text(), "the Icecast mount was not pulled as Ogg")
    check(metric(metrics(rr)[0], "rostrum_relay_connects_total") >= 1, "rostrum mount not a feed")
    for s in (rr, ri):
        s.stop()
    del src


@test(timeout=60, icecast=False)
def test_relay_restarts_a_stream_that_restarted_upstream_10(ctx):
    """The origin dies and comes back on its port with a new stream (another serial): the relay
    cannot resume it and restarts the stream as an origin does (its listeners are closed, a
    new listener gets the new stream whole)."""
    port = free_port()
    origin = ctx.start_server(audience=f"127.0.0.1:{port}", extra=["--workers", "1"])
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    rel = relay(ctx, origin)
    relay_live(rel, "/live")
    time.sleep(1)
    old = listen(ctx, rel, "/live")
    time.sleep(2)
    kill(origin)
    origin2 = ctx.start_server(audience=f"127.0.0.1:{port}", extra=["--workers", "1"])
    src2 = ffmpeg_source(ctx, origin2, "/live", 660, proc_name="source2")
    wait_live(origin2, "/live", proc=src2)
    wait_for(lambda: old.end is not None, 15, "the old stream's listener to be closed")
    old_pages = check_listener_ogg(old)
    wait_for(lambda: metric(metrics(rel)[0], "rostrum_relay_restarts_total") >= 1, 10,
             "the relay to restart the stream")
    time.sleep(1)
    new = listen(ctx, rel, "/live")
    time.sleep(3)
    new.close()
    new_pages = check_listener_ogg(new)
    check(new_pages[0].serial != old_pages[0].serial,
          "the restarted stream has the old serial")
    check(b'"mount":"live"' in http_request(rel.audience, "GET", "/relay.json").body,
          "the relay lost the space")
    rel.stop()
    origin2.stop()


class HostileUpstream:
    """A fake upstream: lists one space, then answers each feed request with the next of
    <answers> (bytes after a 200 feed head), then closes."""

    def __init__(self, ctx, answers):
        self.answers = list(answers)
        self.served = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        import threading
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        ctx.on_cleanup(self.close)

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                c.settimeout(2)
                req = b""
                while b"\r\n\r\n" not in req:
                    d = c.recv(4096)
                    if not d:
                        break
                    req += d
                if req.startswith(b"GET /relay.json"):
                    body = b'{"feed":3,"spaces":[{"mount":"x"}]}'
                    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
                else:
                    a = self.answers[self.served % len(self.answers)]
                    self.served += 1
                    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/x-rostrum-feed\r\n"
                              b"X-Rostrum-Feed: 3\r\n\r\n" + a)
                    time.sleep(0.2)
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


@test(timeout=40, icecast=False)
def test_relay_bounds_a_hostile_upstream_10(ctx):
    """An upstream that sends an oversized frame, frames out of order, a second header or
    garbage: each feed is cut and counted, the relay keeps running and serving."""
    import struct

    def frame(t, payload):
        return struct.pack(">BBHI", t, 0, 0, len(payload)) + payload

    ogg = b"OggS" + bytes(23) + b"\x01" + b"x"
    meta = b"".join(struct.pack(">H", 0) for _ in range(5))
    header = frame(1, struct.pack(">HHIIIQI", 3, 1, 1234, 1, 150, 50, len(ogg)) + ogg + meta)

    def page(seq):
        return frame(2, struct.pack(">QQI", seq, 960 * seq, 960) + ogg)

    answers = [
        struct.pack(">BBHI", 2, 0, 0, 1 << 31),          # a 2 GiB frame: refused from its head
        header + page(50) + page(52),                     # a page skipped
        header + header,                                  # two headers
        page(1),                                          # a page before any header
        b"\xff" * 5000,                                   # garbage
    ]
    up = HostileUpstream(ctx, answers)
    rel = relay(ctx, f"http://127.0.0.1:{up.port}")
    wait_for(lambda: up.served >= 8, 20, "the relay to come back for more")
    m, _ = metrics(rel)
    check(metric(m, "rostrum_relay_bad_frames_total") >= 4,
          f"bad frames counted: {metric(m, 'rostrum_relay_bad_frames_total')}")
    log = rel.log_text()
    for why in ("page out of sequence", "a second header"):
        check(why in log, f"the relay did not cut a feed for '{why}'")
    check(rel.proc.alive(), "the relay died")
    r = http_request(rel.audience, "GET", "/status-json.xsl")
    check(r.status == 200, f"the relay's status after the attacks: {r.status}")
    rel.stop()


@test(timeout=60, icecast=False)
def test_relay_rides_an_origin_upgrade_10(ctx):
    """SIGUSR2 on the origin: its workers hand their listeners over, but relay feeds do not
    move; they are closed, counted out, and the relay resumes on the new worker with no gap.
    SIGUSR2 on a relay is refused with a reason (it does not upgrade in place yet)."""
    from test_upgrade import installed_copy, upgrade
    origin = Server(ctx, installed_copy(ctx), extra=["--workers", "1"])
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    rel = relay(ctx, origin)
    relay_live(rel, "/live")
    time.sleep(1)
    lst = listen(ctx, rel, "/live")
    time.sleep(2)
    upgrade(origin)
    wait_for(lambda: "handed over and exited" in origin.log_text(), 15, "the old worker to go")
    time.sleep(4)
    check(lst.end is None, f"the relay's listener ended: {lst.end}")
    lst.close()
    check_continuous(lst, "relay /live across the origin's upgrade")
    m, _ = metrics(rel)
    check(metric(m, "rostrum_relay_resumes_total") >= 1, "the relay did not resume")
    check(metric(m, "rostrum_relay_restarts_total") == 0, "the relay restarted the stream")
    m, _ = metrics(origin)
    check(metric(m, "rostrum_listener_connections") == 1,
          f"the origin counts {metric(m, 'rostrum_listener_connections')} listener "
          "connections, want 1 (the relay's feed, counted once)")
    os.kill(rel.proc.pid, signal.SIGUSR2)
    wait_for(lambda: "does not upgrade in place" in rel.log_text(), 10, "the refusal")
    rel.stop()
    origin.stop()


@test(timeout=60, icecast=False)
def test_relay_pulls_an_https_upstream_10(ctx):
    """An origin serving its audience port over TLS too (`--audience-tls`, a test CA): a relay
    with `--upstream https://localhost:PORT --relay-cafile ca.pem` checks the certificate,
    relays /live (a listener on it gets one continuous stream, ffmpeg hears the tone) and
    reports over the same TLS connection (the origin counts the relay's listener in its
    tree); it resumes after the origin's TLS feed connection is cut. Without the CA (the
    system's store) and against the plain port, the handshake fails with the reason in the
    log and nothing is relayed."""
    from test_tls import make_pki
    from test_tree import tree
    ca, chain, key = make_pki(ctx)
    origin = ctx.start_server(extra=["--workers", "1", "--audience-tls", "127.0.0.1:0",
                                     "--tls-cert", str(chain), "--tls-key", str(key)])
    check(origin.audience_tls, "no audience-tls port in the ready line")
    src = ffmpeg_source(ctx, origin, "/live", 440)
    wait_live(origin, "/live", proc=src)
    url = f"https://localhost:{origin.audience_tls}"
    rel = relay(ctx, url, extra=["--relay-cafile", str(ca)])
    relay_live(rel, "/live")
    check("https:// upstreams: certificates checked against" in rel.log_text(),
          "the relay did not say which CA it trusts")
    lst = listen(ctx, rel, "/live")
    dec = ffmpeg_listener(ctx, rel, "/live", 8)
    wait_for(lambda: tree(origin)[0] == 2, 15, "the relay's 2 listeners in the origin's tree "
                                               "(its reports over TLS)")
    # the TLS feed cut at the origin (its worker killed: the relay resumes on the new one)
    m0, _ = metrics(rel)
    worker = Path(f"/proc/{origin.proc.p.pid}/task/{origin.proc.p.pid}/children").read_text()
    os.kill(int(worker.split()[0]), signal.SIGKILL)
    wait_for(lambda: metric(metrics(rel)[0], "rostrum_relay_resumes_total") >
             (metric(m0, "rostrum_relay_resumes_total") or 0), 15, "the relay to resume")
    pcm = check_ffmpeg_decode(dec, 8, timeout=30)
    check_tone(pcm, 440, "ffmpeg on the https-fed relay")
    time.sleep(1)
    lst.close()
    check_continuous(lst, "the https-fed relay's /live")
    m, _ = metrics(rel)
    check(metric(m, "rostrum_relay_restarts_total") == 0, "the relay restarted the stream")
    rel.stop()
    # the same without the CA: the system's store does not know the test CA
    bad = relay(ctx, url)
    wait_for(lambda: "the certificate does not verify" in bad.log_text(), 15,
             "the relay to refuse a certificate it cannot verify")
    r = http_request(bad.audience, "GET", "/relay.json", timeout=2)
    check(r.status == 200 and b'"mount":"live"' not in r.body,
          f"a relay that cannot verify its upstream relays: {r.body[:200]!r}")
    bad.stop()
    # https:// to the plain port: no TLS there
    plain = relay(ctx, f"https://localhost:{origin.audience}", extra=["--relay-cafile", str(ca)])
    wait_for(lambda: "TLS handshake failed" in plain.log_text(), 15,
             "the relay to say the plain port speaks no TLS")
    plain.stop()
    # a CA file that cannot be read: the relay does not start
    p = subprocess.run([ctx.binary, "relay", "--upstream", url, "--audience", "127.0.0.1:0",
                        "--relay-cafile", str(ctx.tmp / "nothing.pem"), "--workers", "0"],
                       capture_output=True, timeout=20)
    check(p.returncode != 0 and b"https:// upstreams" in p.stderr,
          f"an unreadable relay-cafile: exit {p.returncode}, {p.stderr[-300:]!r}")
