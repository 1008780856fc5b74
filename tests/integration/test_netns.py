"""Issue 10 item 5, first part: rostrum across emulated links between test hosts (network
namespaces, netns.py). An origin host runs `rostrum serve` with an ffmpeg source on /live and
a stage space /stage with two rostrum-speak speakers (one on the origin's loopback, one on a
listener host, across its lossy link); two listener hosts each run an ffmpeg listener and raw
listeners against the origin's address over links with delay, jitter, loss and a tbf rate
limit. Then one listener host's link is cut (a black hole: packets dropped, no RST) for 4 s
and restored. Skipped, with the reason, where namespaces cannot be made (not root, no ip)."""

import json
import re
import socket
import struct
import threading
import time
from pathlib import Path

import netns
from harness import (check, check_ffmpeg_decode, check_listener_ogg, check_tone, metrics, note,
                     test, wait_for)

KEY = "netns-host-key"
CUT_S = 4.0


def ffmpeg_source(topo, srv, mount, freq):
    # niced up (the tests run as root): on a loaded box a starved ffmpeg -re sent nothing for
    # 2.5 s and every listener of /live downstream stalled, while /stage, mixed by the same
    # origin, went on: the tree was not what these tests judge there
    return topo.run(srv.host, [
        "nice", "-n", "-10", "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning", "-re", "-f", "lavfi",
        "-i", f"sine=frequency={freq}:sample_rate=48000", "-c:a", "libopus", "-b:a", "48k",
        "-vbr", "off", "-f", "ogg", "-page_duration", "200000", "-content_type", "audio/ogg",
        srv.source_url(mount)], name="source")


def speaker(topo, ctx, host, stage_addr, name, tone, seconds):
    binary = Path(ctx.binary).parent / "rostrum-speak"
    return topo.run(host, [
        binary, "--stage", stage_addr, "--space", "stage", "--name", name, "--key", KEY,
        "--tone", tone, "--seconds", seconds, "--json"], name=f"speak_{name}",
        stdout=ctx.tmp / f"speak_{name}.json")


def listeners_on(srv, mount):
    src = srv.json().get("icestats", {}).get("source") or []
    for s in [src] if isinstance(src, dict) else src:
        if str(s.get("listenurl", "")).endswith(mount):
            return s.get("listeners")
    return None


@test(timeout=60, icecast=False)
def test_netns_origin_two_listener_hosts_through_a_cut(ctx):
    topo = netns.Topology(ctx)  # Skip (reported with its reason) without the privileges
    for h in ("origin", "lhost1", "lhost2"):
        topo.add_host(h)
    topo.link("origin", "lhost1", delay_ms=25, jitter_ms=5, loss=0.01, rate="2mbit")
    topo.link("origin", "lhost2", delay_ms=60, jitter_ms=10, loss=0.02, rate="1mbit")
    srv = topo.server("origin", extra=["--host-key", KEY, "--workers", "1"])
    src = ffmpeg_source(topo, srv, "/live", 440)

    def live():
        check(src.alive(), f"the source exited:\n{src.tail()}")
        return listeners_on(srv, "/live") is not None

    wait_for(live, 15, "/live to go live")
    spk_a = speaker(topo, ctx, "origin", "127.0.0.1:8001", "A", 330, 24)
    wait_for(lambda: srv.request("GET", "/state/stage.json").status == 200, 10,
             "the stage space")
    spk_b = speaker(topo, ctx, "lhost1", f"{srv.ip}:8001", "B", 660, 22)

    t_start = time.monotonic()
    l1 = topo.listener("lhost1", srv, "/live")
    l2 = topo.listener("lhost2", srv, "/live")
    st1 = topo.listener("lhost2", srv, "/stage")
    dec1 = topo.ffmpeg_listener("lhost1", srv, "/live", 18, "dec1")
    dec2 = topo.ffmpeg_listener("lhost2", srv, "/live", 18, "dec2")
    check(l1.resp.status == 200 and l2.resp.status == 200 and st1.resp.status == 200,
          f"listeners across the links: {l1.resp.status} {l2.resp.status} {st1.resp.status}")

    # 1. healthy links: everyone receives; pages come every 200 ms, a lost packet costs a
    # retransmission (0.5 s seen), so no stall over 1.5 s
    time.sleep(6)
    n = listeners_on(srv, "/live")
    check(n == 4, f"the origin counts {n} listeners on /live, want 4 (2 raw + 2 ffmpeg)")
    for name, lst in (("lhost1 /live", l1), ("lhost2 /live", l2), ("lhost2 /stage", st1)):
        g = lst.max_gap(start=t_start + 1.5)
        check(g < 1.5, f"{name}: a {g:.2f} s gap on a healthy link")

    # 2. cut lhost2's link for CUT_S seconds: a black hole, then restore
    t_cut = time.monotonic()
    topo.cut("lhost2")
    time.sleep(CUT_S)
    during = listeners_on(srv, "/live")
    topo.restore("lhost2")
    t_restore = time.monotonic()
    cut_stats = topo.stats("origin", "lhost2")["stats"]
    check(cut_stats["ab"]["cut"] > 0, f"the cut dropped no packet: {cut_stats}")

    def resumed():
        c = [t for t, _ in list(l2.chunks) if t > t_restore]
        return c[0] if c else None

    t_back = wait_for(resumed, 12, "lhost2's listener to receive again after the restore")
    time.sleep(4)
    t_end = time.monotonic()

    # What happens: TCP keeps the connection (nothing reset it, no side timed out); the server
    # keeps writing into its send buffer (4 s of 48 kb/s is far under lag-ms), so after the
    # restore the retransmission delivers everything: a gap of about the cut (plus TCP's
    # backed-off retransmission timer), then the backlog at once, no jump, no new stream.
    check(l2.end is None, f"lhost2's listener was disconnected by the cut ({l2.end})")
    check(during == 4, f"during the cut the origin counted {during} listeners, want 4 "
                       "(the connections are alive, only silent)")
    g2 = l2.max_gap(start=t_cut, end=t_end)
    check(CUT_S - 0.5 <= g2 <= CUT_S + 6, f"lhost2's gap across the cut is {g2:.2f} s, "
                                          f"want about the cut's {CUT_S} s")
    check(t_back - t_restore < 7, f"lhost2 received again {t_back - t_restore:.2f} s after "
                                  "the restore")
    g1 = l1.max_gap(start=t_cut - 1, end=t_end)
    check(g1 < 1.5, f"lhost1's listener stalled {g1:.2f} s while lhost2 was cut")
    after = [len(c) for t, c in list(l2.chunks) if t_back <= t < t_back + 0.5]
    print(f"lhost2: gap {g2:.2f} s over a {CUT_S} s cut, back {t_back - t_restore:.2f} s after "
          f"the restore with {sum(after)} bytes in its first 0.5 s; lhost1 gap {g1:.2f} s")

    for name, lst in (("lhost1 /live", l1), ("lhost2 /live", l2), ("lhost2 /stage", st1)):
        ts = [t for t, _ in list(lst.chunks) if t > t_start + 1.5]
        big = sorted(((b - a, round(a - t_start, 1)) for a, b in zip(ts, ts[1:])), reverse=True)
        print(f"{name}: largest gaps (s, at) {[(round(g, 2), at) for g, at in big[:4]]}")

    # 3. every stream is one clean Ogg/Opus stream (no jump, no new serial) and decodes
    for lst in (l1, l2, st1):
        lst.close()
        pages = check_listener_ogg(lst)
        check(len(pages) > 20, f"{lst.mount}: only {len(pages)} pages")
    for dec, what in ((dec1, "lhost1 ffmpeg"), (dec2, "lhost2 ffmpeg (across the cut)")):
        pcm = check_ffmpeg_decode(dec, 18, timeout=30)
        check_tone(pcm, 440, what, skip_s=0.5)
    for spk, name in ((spk_a, "A (origin loopback)"), (spk_b, "B (lhost1, across its link)")):
        rc = spk.wait(25)
        check(rc == 0, f"speaker {name} failed:\n{spk.tail()}")
        r = json.loads(spk.output().strip().splitlines()[-1])
        check(r["packets_received"] > 700, f"speaker {name} heard {r['packets_received']} "
                                           "return packets in 22 s")
    # the 2 % loss link really lost packets while everyone above kept playing: counted over
    # the whole run and both directions (6 s of one direction, ~100 packets, lose none 1 time
    # in 9; a whole run's ~600 packets, about 1 in 10^5)
    st = topo.stats("origin", "lhost2")["stats"]
    sent = st["ab"]["in"] + st["ba"]["in"]
    lost = st["ab"]["lost"] + st["ba"]["lost"]
    check(lost > 0, f"no packet was lost on a 2 % loss link ({sent} packets): {st}")
    note(f"lhost2's 2 % link lost {lost} of {sent} packets ({100 * lost / max(sent, 1):.1f} %)")


def tcp_connect_time(topo, host, addr, port, timeout):
    """Seconds a TCP connect from <host> to addr:port takes, or None if it fails in time."""
    with topo.entered(host):
        s = socket.socket()
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        s.connect((addr, port))
        return time.monotonic() - t0
    except OSError:
        return None
    finally:
        s.close()


@test(timeout=60, icecast=False)
def test_netns_relay_tree_topology_routes_and_cuts(ctx):
    """build_tree(), the topology the relay test will use, before the relay exists: every host
    reaches every other through the static routes, delays add up along a path (lhost1 ->
    edge1 -> regional1 -> origin), a listener 3 hops from the origin decodes, cutting every
    link of regional1 silences it while edge1 still reaches regional2 directly, and restoring
    brings the stream back, one clean Ogg stream."""
    tree = netns.build_tree(ctx)
    srv = tree.server("origin", extra=["--workers", "1"])
    src = ffmpeg_source(tree, srv, "/live", 440)

    def live():
        check(src.alive(), f"the source exited:\n{src.tail()}")
        return listeners_on(srv, "/live") is not None

    wait_for(live, 15, "/live to go live")
    # a port to connect to on every host (the kernel answers the handshake from the backlog)
    socks = []
    for h in tree.hosts:
        if h != "origin":
            with tree.entered(h):
                s = socket.socket()
            s.bind(("0.0.0.0", 9000))
            s.listen(16)
            socks.append(s)
            ctx.on_cleanup(s.close)
    port = {h: 9000 for h in tree.hosts}
    port["origin"] = 8000
    for a in tree.hosts:
        for b in tree.hosts:
            if a != b:
                t = tcp_connect_time(tree, a, tree.ip(b), port[b], 3)
                check(t is not None, f"{a} cannot reach {b} ({tree.ip(b)})")
    # lhost1 -> edge1 (20 ms) -> regional1 (10 ms) -> origin (40 ms): a round trip >= 140 ms
    rtt = tcp_connect_time(tree, "lhost1", tree.ip("origin"), 8000, 3)
    check(0.14 <= rtt < 0.5, f"lhost1 -> origin connect took {rtt * 1000:.0f} ms, want a "
                             "round trip of the 3 links' delays (>= 140 ms)")
    lst = tree.listener("lhost1", srv, "/live")
    dec = tree.ffmpeg_listener("lhost2", srv, "/live", 12, "dec2")
    time.sleep(4)
    check(lst.max_gap(start=lst.t0 + 1.5) < 1.5, "the listener 3 hops away stalled")

    tree.cut("regional1")
    t_cut = time.monotonic()
    check(tcp_connect_time(tree, "edge1", tree.ip("regional1"), 9000, 1) is None,
          "edge1 reached regional1 with every link of regional1 cut")
    check(tcp_connect_time(tree, "edge1", tree.ip("regional2"), 9000, 2) is not None,
          "edge1 could not reach regional2 while only regional1 was cut")
    time.sleep(max(0.0, 3 - (time.monotonic() - t_cut)))
    silent = [t for t, _ in list(lst.chunks) if t > t_cut + 0.5]
    check(not silent, f"lhost1's listener (routed through regional1) received "
                      f"{len(silent)} chunks while regional1 was cut")
    tree.restore("regional1")
    t_restore = time.monotonic()
    wait_for(lambda: [t for t, _ in list(lst.chunks) if t > t_restore], 10,
             "the stream to reach lhost1 again")
    time.sleep(2)
    lst.close()
    check(lst.end == "closed", f"lhost1's listener ended with {lst.end} (not by us)")
    check_listener_ogg(lst)
    pcm = check_ffmpeg_decode(dec, 12, timeout=30)
    check_tone(pcm, 440, "lhost2 ffmpeg across the tree (and regional1's cut)", skip_s=0.5)

    # the origin host's server dies (SIGKILL, workers too) and a new one takes its place:
    # the listener 3 hops away sees its connection end (EOF/RST), and a new one
    # reaches the new server on the same address and port
    lst2 = tree.listener("lhost1", srv, "/live")
    srv.crash()
    wait_for(lambda: lst2.end is not None, 10, "lhost1's listener to see the origin die")
    srv2 = tree.server("origin", extra=["--workers", "1"])
    check(srv2.ip == srv.ip and srv2.audience == srv.audience, "the new origin moved")
    src2 = ffmpeg_source(tree, srv2, "/live", 440)
    wait_for(lambda: src2.alive() and listeners_on(srv2, "/live") is not None, 15,
             "/live on the new origin")
    lst3 = tree.listener("lhost1", srv2, "/live")
    time.sleep(3)
    lst3.close()
    check(len(check_listener_ogg(lst3)) > 5, "too few pages from the new origin")


def seq_jumps(pages):
    """[(sequence before, after, granule step)] where page sequence numbers skip."""
    return [(a.seq, b.seq, b.granule - a.granule) for a, b in zip(pages[2:], pages[3:])
            if b.seq != a.seq + 1]


@test(timeout=60, icecast=False)
def test_netns_cuts_longer_than_lag_jump_or_close(ctx):
    """Outages longer than lag-ms (2 s here). rostrum sizes a listener's socket buffer to
    about lag-ms of audio (the kernel doubles it), so seconds into an outage its writes block.
    The links are frozen (cut how="stall": packets held, delivered on restore), so an outage
    ends when the link comes back, not at TCP's next backed-off retransmission. lhost1 is
    frozen 9 s: afterwards it gets what was buffered, then one jump to the live edge at a page
    boundary (a counted stall; 5.4 s skipped, seen), on the same connection. lhost2 is frozen
    17 s: its socket blocked past 3 x lag-ms, the server closes it as stuck during the outage
    (~14 s in, seen) and no longer counts it as receiving; after the restore the client reads
    the rest and the end of the connection, and a new listener joins fine."""
    topo = netns.Topology(ctx)
    for h in ("origin", "lhost1", "lhost2"):
        topo.add_host(h)
    topo.link("origin", "lhost1", delay_ms=25, jitter_ms=5, loss=0.01, rate="2mbit")
    topo.link("origin", "lhost2", delay_ms=25, jitter_ms=5, loss=0.01, rate="2mbit")
    srv = topo.server("origin", extra=["--workers", "1", "--lag-ms", "2000"])
    src = ffmpeg_source(topo, srv, "/live", 440)

    def live():
        check(src.alive(), f"the source exited:\n{src.tail()}")
        return listeners_on(srv, "/live") is not None

    wait_for(live, 15, "/live to go live")
    l1 = topo.listener("lhost1", srv, "/live")
    l2 = topo.listener("lhost2", srv, "/live")
    wait_for(lambda: listeners_on(srv, "/live") == 2, 5, "both listeners to be counted")
    time.sleep(2)
    t_cut = time.monotonic()
    topo.cut("lhost1", how="stall")
    topo.cut("lhost2", how="stall")
    time.sleep(max(0.0, 9 - (time.monotonic() - t_cut)))
    topo.restore("lhost1")
    t_restore1 = time.monotonic()
    # a listener counts as receiving while its client acknowledged bytes in the last 5 s
    # (looked at every 2.5 s): lhost2, 13 s into its outage, no longer does; lhost1 does again
    time.sleep(max(0.0, 13 - (time.monotonic() - t_cut)))
    n = listeners_on(srv, "/live")
    check(n == 1, f"13 s into lhost2's outage, 4 s after lhost1's restore, the origin counts "
                  f"{n} receiving listeners, want 1")
    time.sleep(max(0.0, 17 - (time.monotonic() - t_cut)))
    check(l1.end is None, f"lhost1's connection ended: {l1.end}")
    check(l2.end is None, f"lhost2's connection ended during its outage: {l2.end}")
    check(re.search(r"10\.77\.2\.2:\d+: closed \(stuck\)", srv.log_text()),
          "the server did not close lhost2's listener as stuck during a 17 s outage")
    topo.restore("lhost2")
    t_restore2 = time.monotonic()
    wait_for(lambda: l2.end is not None, 10, "lhost2 to see its connection end after the restore")
    l2b = topo.listener("lhost2", srv, "/live")
    wait_for(lambda: listeners_on(srv, "/live") == 2, 6, "lhost2's new listener to count")
    time.sleep(2)
    vals, _ = harness_metrics(topo, srv)
    stalls = vals.get(("rostrum_stalls_total", frozenset()))
    for lst in (l1, l2b):
        lst.close()
    check(l1.end == "closed", f"lhost1's connection ended with {l1.end}")
    pages = check_listener_ogg(l1, allow_jumps=True)
    jumps = seq_jumps(pages)
    check(len(jumps) == 1, f"lhost1: want one jump to the live edge, got {jumps}")
    check(jumps[0][2] >= 2 * 48000, f"lhost1's jump skipped only {jumps[0][2]} samples")
    check(stalls == 1, f"rostrum_stalls_total is {stalls}, want 1 (lhost1's jump)")
    p2 = check_listener_ogg(l2, allow_final_eos=True)  # what it had, up to the close
    check(not seq_jumps(p2), f"lhost2's stream jumped before it was closed: {seq_jumps(p2)}")
    check(len(check_listener_ogg(l2b)) > 5, "lhost2's new listener got too few pages")
    resumed = [t for t, _ in list(l1.chunks) if t > t_restore1][0]
    print(f"lhost1 back {resumed - t_restore1:.2f} s after the restore, jump {jumps[0]} "
          f"({jumps[0][2] / 48000:.1f} s skipped); lhost2 ended '{l2.end}' "
          f"{l2.end_time - t_restore2:.1f} s after its restore")


def harness_metrics(topo, srv):
    with topo.entered(srv.host):
        return metrics(srv)


@test(timeout=60, icecast=False)
def test_netns_wire_does_what_it_claims(ctx):
    """The link emulation itself, measured with UDP and TCP between two hosts: the share of
    datagrams lost matches `loss`, one-way delay is delay_ms..delay_ms + jitter_ms and never
    reorders, tbf holds TCP to the rate, a "drop" cut passes nothing, a "stall" delivers
    everything at the restore, "down" and back keeps the routes."""
    topo = netns.Topology(ctx)
    topo.add_host("a")
    topo.add_host("b")
    topo.link("a", "b", delay_ms=40, jitter_ms=10, loss=0.1, rate="1mbit")
    with topo.entered("b"):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        rx.bind((topo.ip("b"), 9100))
        lsock = socket.socket()
        lsock.bind((topo.ip("b"), 9101))
        lsock.listen(1)
    with topo.entered("a"):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctx.on_cleanup(rx.close)
    ctx.on_cleanup(tx.close)
    ctx.on_cleanup(lsock.close)

    received = []  # (tag, index, one-way delay), read as they arrive

    def receive():
        rx.settimeout(0.05)
        while True:
            try:
                d = rx.recv(64)
            except socket.timeout:
                continue
            except OSError:
                return
            tag, i, sent = struct.unpack("!cId", d)
            received.append((tag, i, time.monotonic() - sent))

    threading.Thread(target=receive, daemon=True).start()

    def burst(n, tag, gap=0.002):
        for i in range(n):
            tx.sendto(struct.pack("!cId", tag, i, time.monotonic()), (topo.ip("b"), 9100))
            time.sleep(gap)

    def drain(wait):
        time.sleep(wait)
        got = list(received)
        del received[:len(got)]
        return got

    burst(1000, b"L")
    got = drain(0.5)
    lost = 1 - len(got) / 1000
    check(0.06 <= lost <= 0.14, f"{lost:.1%} of datagrams lost on a 10 % loss link")
    delays = sorted(d for _, _, d in got)
    med = delays[len(delays) // 2]
    # the upper bound leaves room for scheduling on 2 shared cores (seen: up to 73 ms)
    check(0.039 <= delays[0] and 0.040 <= med <= 0.065 and delays[-1] <= 0.15,
          f"one-way delays {delays[0] * 1000:.1f}..{delays[-1] * 1000:.1f} ms, median "
          f"{med * 1000:.1f} ms, on a 40 ms + 10 ms jitter link")
    order = [i for _, i, _ in got]
    check(order == sorted(order), "the wire reordered datagrams")

    # tbf: 300 KB over TCP at 1 mbit/s (125 KB/s) take >= 2 s (the 16 KB burst aside)
    topo.set_link("a", "b", loss=0.0, jitter_ms=0)
    with topo.entered("a"):
        c = socket.create_connection((topo.ip("b"), 9101), timeout=10)
    s, _ = lsock.accept()
    s.settimeout(10)
    t0 = time.monotonic()
    c.sendall(b"x" * 300_000)
    n = 0
    while n < 300_000:
        n += len(s.recv(65536))
    took = time.monotonic() - t0
    c.close()
    s.close()
    check(2.0 <= took <= 4.5, f"300 KB at 1 mbit/s took {took:.2f} s, want ~2.4 s")

    topo.cut("a", "b")
    burst(50, b"D")
    check(not drain(0.5), "datagrams crossed a cut (drop) link")
    topo.restore("a", "b")
    topo.cut("a", "b", how="stall")
    burst(50, b"S")
    check(not drain(0.5), "datagrams crossed a frozen link before its restore")
    topo.restore("a", "b")
    held = drain(0.5)
    check(len(held) == 50 and [i for _, i, _ in held] == list(range(50)),
          f"a frozen link delivered {len(held)} of 50 held datagrams at its restore")
    topo.cut("a", "b", how="down")
    topo.restore("a", "b")
    burst(20, b"U")
    check(len(drain(0.5)) == 20, "after down and up, the route from a to b was not restored")
    print(f"loss {lost:.1%}, delays {delays[0] * 1000:.1f}..{delays[-1] * 1000:.1f} ms "
          f"(median {med * 1000:.1f}), "
          f"300 KB in {took:.2f} s; stats {topo.stats('a', 'b')['stats']}")


@test(timeout=30, icecast=False)
def test_netns_without_privileges_says_why_and_skips_10(ctx):
    """Issue 10 item 5: where namespaces cannot be made, the namespace tests are skipped with
    the reason, not passed. Shown for real: the same check the tests run (netns.Topology),
    run as an unprivileged user (uid 65534 through setpriv), must raise harness.Skip naming
    root; and as root here it must not (the tests above really ran)."""
    import os
    import shutil
    import subprocess
    import sys
    here = Path(__file__).resolve().parent
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        check(netns.privileges_reason() is not None or os.geteuid() == 0,
              "not root, yet the namespace check finds nothing missing")
        return
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import harness, netns\n"
             "try:\n    netns.Topology(None)\nexcept harness.Skip as e:\n"
             "    print('SKIP', e); sys.exit(0)\nprint('NO SKIP'); sys.exit(1)\n")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        shutil.which("python3", path="/usr/bin:/bin") or sys.executable,
                        "-c", probe, str(here)],
                       capture_output=True, text=True, timeout=20, cwd="/")
    if "Permission denied" in r.stderr or "can't open" in r.stderr:
        from harness import skip_part
        skip_part("the unprivileged run", f"uid 65534 cannot read {here}: {r.stderr.strip()[-200:]}")
        return
    check(r.returncode == 0 and r.stdout.startswith("SKIP "),
          f"as uid 65534 the namespace check did not skip: rc {r.returncode}\n"
          f"{r.stdout}{r.stderr}")
    check("need root" in r.stdout and "65534" in r.stdout,
          f"the skip does not say why: {r.stdout!r}")
    check(netns.privileges_reason() is None,
          f"as root the namespace tests would skip here: {netns.privileges_reason()}")
