"""Issue 10 item 5: the relay tree across emulated links (network namespaces, netns.py).

    origin ── regional1 ──┬── edge1 ── lhost1      every box a real process: `rostrum serve`
        └──── regional2 ──┴── edge2 ── lhost2      on the origin, `rostrum relay` elsewhere

The origin has an ffmpeg studio source on /live (440 Hz, 200 ms pages) and a stage space
/stage with two rostrum-speak speakers (330 and 660 Hz, on the origin's loopback). The
regionals pull from the origin; edge1 pulls from regional1 and fails over to regional2,
edge2 the other way round (`--upstream a,b`). Behind each edge, on its listener host across a
lossy last mile: a raw harness Listener of /live and one of /stage (every Ogg page checked:
one serial, sequence by one, granules by the audio) and an ffmpeg decoding /live (lhost2 also
decodes /stage); inside each edge host, rostrum-load with 200 listeners of /live (the tool
connects to loopback only, by design, so these listeners are the edge's local ones).

Then: (1) every link of regional1 is cut for 5 s (a black hole), (2) regional2 is killed
(SIGKILL, workers too) and restarted on its address, (3) the origin-regional1 link is frozen
for 4 s, by when both edges pull from regional1. (A wobble between events can move every edge
off the regional an event was meant for: the event then takes the other one, the one the
edges are on by their own logs.) Every listener on the edges must get one
continuous stream (no sequence or granule gap, no second serial, ffmpeg decodes the tone in
every half second), rostrum-load's 400 listeners no gap, no serial change and all still
receiving at the end, the speakers finish (exit 0) hearing each other all along, each edge
count its receiving listeners exactly (its /metrics against what the tools hold), and the
origin's `tree_listeners` (item 3) equal the listeners receiving in the whole tree within
0.1 % (of ~400: exactly) at every sample, every 100 ms, from before the first event to the
end: through the cut, the kill and the freeze. No relay here dies with listeners of its own
(regional2 has none), so the issue's "a relay that dies drops out within a few seconds"
allows no window: every subtree that moves must be counted all along, once (feedproto.h,
"How an upstream counts"). While that field is not in the build, that part is reported as
skipped (run.py counts it), not passed.

Figures (fail-over time per edge and event, from the edges' logs; delivery gaps, a player's
buffer low-water mark, rostrum-load's stalls) are reported under the result line."""

import json
import re
import threading
import time
from pathlib import Path

import netns
from harness import (check, check_ffmpeg_decode, check_listener_ogg, check_tone, goertzel_ratio,
                     metric, metrics, note, pcm_samples, rms, skip_part, test, wait_for)
from test_netns import KEY, ffmpeg_source, speaker

LOAD_N = 200        # rostrum-load listeners per edge
LOAD_S = 36         # their run; everything else is timed against it
CUT_R1 = (5.0, 5.0)       # (start after T0, length): every link of regional1, drop
KILL_R2 = (14.0, 3.0)     # regional2 SIGKILLed, restarted after 3 s
FREEZE_OR1 = (22.0, 4.0)  # origin-regional1 frozen (held, delivered on restore)
SAMPLE_S = 0.1            # the origin's count is sampled this often, and checked from the
                          # first sample that has the whole tree (before the first event)
LOG_TS = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) ")


def spaces_of(srv):
    """Mounts listed in <srv>'s /relay.json (what a downstream relay would pull)."""
    r = srv.request("GET", "/relay.json", timeout=2)
    if r.status != 200:
        return set()
    return {s.get("mount") for s in json.loads(r.body).get("spaces", [])}


def sources(srv):
    src = srv.json().get("icestats", {}).get("source") or []
    return {str(s.get("listenurl", "")).rsplit("/", 1)[-1]: s
            for s in ([src] if isinstance(src, dict) else src)}


def ns_metrics(tree, srv):
    with tree.entered(srv.host):
        return metrics(srv)[0]


def log_events(srv):
    """[(UTC seconds of the day, line)] of <srv>'s log lines from the relay client."""
    out = []
    for line in srv.log_text().splitlines():
        m = LOG_TS.match(line)
        if m and " relay " in line[:30]:
            h, mi, s, ms = map(int, m.groups())
            out.append((h * 3600 + mi * 60 + s + ms / 1000.0, line))
    return out


def upstream_at(events, t):
    """The upstream URL an edge was pulling /live from at <t> (seconds of the day), by the
    last "pulling from" or "resumed from" line of its relay log before then; "" if none."""
    url = ""
    for ts, line in events:
        if ts >= t:
            break
        m = re.search(r"/live: (?:pulling|resumed) from (\S+)", line)
        if m:
            url = m.group(1)
    return url


def sod(wall):
    return wall % 86400.0


def failover_after(events, t_event, until):
    """From an edge's relay log lines: the first feed cut of /live at or after <t_event>
    (seconds of the day) and the resume that followed it before <until>. Returns
    (seconds to the cut, seconds to the resume, upstream resumed from) or None if no cut."""
    cut = next(((t, l) for t, l in events if t >= t_event - 0.05 and t < until
                and "/live: feed from" in l and " cut: " in l), None)
    if not cut:
        return None
    res = next(((t, l) for t, l in events if t >= cut[0] and t < until + 10
                and "/live: resumed from" in l), None)
    if not res:
        return cut[0] - t_event, None, None
    up = re.search(r"resumed from (\S+)", res[1]).group(1)
    return cut[0] - t_event, res[0] - t_event, up


def playout_low_water(lst, until=None):
    """A player that starts playing at the first audio page it receives and plays in real
    time, with no buffer of its own beyond what arrives (the join burst, 2 s on a relay, is all
    it holds ahead): the least audio it holds just before a page arrives, from 0.5 s after the join (the
    burst has arrived) up to <until>, in seconds; < 0: it ran dry for that long."""
    timed = [(t, p) for t, p in lst.pages_with_times() if p.granule > 0]
    if len(timed) < 3:
        return None
    t0 = timed[0][0]
    g0 = timed[0][1].granule - (timed[1][1].granule - timed[0][1].granule)  # its first sample
    low = None
    for (_, prev), (t, p) in zip(timed, timed[1:]):
        if t < t0 + 0.5 or (until is not None and t > until):
            continue
        held = (prev.granule - g0) / 48000.0 - (t - t0)
        low = held if low is None else min(low, held)
    return low


def check_two_tones(pcm, what, a=330, b=660, skip_s=1.5):
    """The stage's mix after <skip_s> (the join burst's first second may be from before both
    were on stage): no half-second window silent or holding a foreign tone (440 Hz, /live's),
    and each speaker's tone in nearly all of them: the stage's mixer may miss a late frame of
    a speaker when the machine is busy (seen: one window in 75 with a sender 93 ms late), which
    is the stage's business, not the relays'. Returns the windows missing a tone."""
    s = pcm_samples(pcm[int(skip_s * 96000) // 2 * 2:])
    n = 24000
    bad, weak = [], []
    wins = 0
    for i in range(0, len(s) - n + 1, n):
        w = s[i:i + n]
        wins += 1
        ra, rb, r440 = goertzel_ratio(w, a), goertzel_ratio(w, b), goertzel_ratio(w, 440)
        row = (i // n, round(rms(w)), round(ra, 2), round(rb, 2), round(r440, 2))
        if rms(w) < 300 or r440 > max(ra, rb) / 5:
            bad.append(row)
        elif ra < 0.15 or rb < 0.15:
            weak.append(row)
    check(wins > 10, f"{what}: only {wins} windows of audio")
    check(not bad, f"{what}: silent or foreign audio in {len(bad)} of {wins} half-second windows "
                   f"(index, rms, share {a}, share {b}, share 440): {bad[:5]}")
    check(len(weak) <= max(2, wins // 20),
          f"{what}: {a} or {b} Hz missing in {len(weak)} of {wins} half-second windows "
          f"(index, rms, share {a}, share {b}, share 440): {weak[:5]}")
    return weak, wins


# alone (exclusive): six servers, 400 load listeners and eight links on 2 cores; run beside
# test_upgrade in CI, every load listener of one edge stalled 2.5 s (twice this session)
@test(timeout=150, icecast=False, exclusive=True)
def test_tree_gapless_through_cuts_kills_and_failover_10(ctx):
    tree = netns.build_tree(ctx)  # Skip, with the reason, without the privileges
    bindir = Path(ctx.binary).parent
    origin = tree.server("origin", extra=["--host-key", KEY, "--workers", "1"])
    src = ffmpeg_source(tree, origin, "/live", 440)

    def origin_live():
        check(src.alive(), f"the source exited:\n{src.tail()}")
        return "live" in sources(origin)

    wait_for(origin_live, 15, "/live on the origin")
    relays = {h: tree.relay(h, extra=["--workers", "1"])
              for h in ("regional1", "regional2", "edge1", "edge2")}
    wait_for(lambda: all("live" in spaces_of(relays[e]) for e in tree.EDGES), 20,
             "/live on both edges")
    spk_s = LOAD_S + 10
    spk_a = speaker(tree, ctx, "origin", "127.0.0.1:8001", "A", 330, spk_s)
    spk_b = speaker(tree, ctx, "origin", f"{origin.ip}:8001", "B", 660, spk_s)
    wait_for(lambda: all("stage" in spaces_of(relays[e]) for e in tree.EDGES), 20,
             "/stage on both edges")
    time.sleep(1.5)  # both speakers on stage, a little ring on every relay

    # ---- the audience ------------------------------------------------------------------
    T0 = time.monotonic()
    e1, e2 = relays["edge1"], relays["edge2"]
    peers = {}  # edge -> [(what, Listener or ffmpeg Proc)] of its listener host
    raw = []
    decs = []
    for edge, lh in tree.LISTENER_HOSTS.items():
        srv = relays[edge]
        lv = tree.listener(lh, srv, "/live")
        st = tree.listener(lh, srv, "/stage")
        check(lv.resp.status == 200 and st.resp.status == 200,
              f"{lh}'s listeners on {edge}: {lv.resp.status} {st.resp.status}")
        dec = tree.ffmpeg_listener(lh, srv, "/live", LOAD_S + 3, f"dec_{lh}")
        raw += [(f"{lh} /live", lv), (f"{lh} /stage", st)]
        decs.append((f"{lh} ffmpeg /live", dec, 440))
        peers[edge] = {"live": 2, "stage": 1}
    dstage = tree.ffmpeg_listener("lhost2", e2, "/stage", LOAD_S + 3, "dec_stage_lhost2")
    peers["edge2"]["stage"] += 1
    loads = {}
    for edge in tree.EDGES:
        loads[edge] = tree.run(edge, [
            bindir / "rostrum-load", "listen", "--url", "http://127.0.0.1:8000/live",
            "--listeners", LOAD_N, "--rate", 200, "--seconds", LOAD_S, "--stall-ms", 2500,
            "--json"],
            name=f"load_{edge}", stdout=ctx.tmp / f"load_{edge}.json")
    t_load_end = T0 + 0.3 + LOAD_S

    def at(t):
        time.sleep(max(0.0, T0 + t - time.monotonic()))

    events = []  # (name, wall time)
    tree_counts = []  # (monotonic time, live, stage): the origin's tree_listeners, or None
    sampling = [True]

    def sample():
        while sampling[0]:
            t = time.monotonic()
            try:
                s = sources(origin)
                tree_counts.append((t,) + tuple(
                    s.get(m, {}).get("tree_listeners") for m in ("live", "stage")))
            except Exception as e:  # noqa: BLE001 (reported with the figures)
                tree_counts.append((t, f"error {e!r}", None))
            time.sleep(max(0.0, t + SAMPLE_S - time.monotonic()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ctx.on_cleanup(lambda: sampling.__setitem__(0, False))

    def target(planned, other):
        """The regional an event takes away: <planned>, unless no edge pulls from it now (a
        wobble between events, the unexplained ~0.5 s silence of a regional's feed on a loaded
        box, can move every edge to the other one; CI once killed a regional nobody was on)."""
        ip = tree.ip(planned)
        now = sod(time.time()) + 1
        on = [e for e in tree.EDGES if f"//{ip}:" in upstream_at(log_events(relays[e]), now)]
        return planned if on else other

    hit = []  # the regional each event took away

    # ---- 1. regional1 cut off: edge1 fails over to regional2 ---------------------------
    at(CUT_R1[0])
    r = target("regional1", "regional2")
    hit.append(r)
    events.append((f"cut every link of {r} for 5 s", time.time()))
    tree.cut(r)
    at(CUT_R1[0] + CUT_R1[1])
    tree.restore(r)

    # ---- 2. regional2 dies: both edges (edge1 is on it now) fail over to regional1 ------
    at(KILL_R2[0])
    r = target("regional2", "regional1")
    hit.append(r)
    events.append((f"SIGKILL {r} (restarted 3 s later)", time.time()))
    relays[r].crash()
    at(KILL_R2[0] + KILL_R2[1])
    relays[r] = tree.relay(r, extra=["--workers", "1"])
    wait_for(lambda: "live" in spaces_of(relays[r]), 10, f"/live on the new {r}")

    # ---- 3. the origin's feed to regional1 frozen: the edges (on regional1) go to regional2
    at(FREEZE_OR1[0])
    r = target("regional1", "regional2")
    hit.append(r)
    events.append((f"freeze origin-{r} for 4 s", time.time()))
    tree.cut("origin", r, how="stall")
    at(FREEZE_OR1[0] + FREEZE_OR1[1])
    tree.restore("origin", r)
    events.append(("end", time.time()))

    # ---- the edges' counts, while rostrum-load still runs ------------------------------
    at(LOAD_S - 1.5)
    sampling[0] = False
    sampler.join(3)
    edge_space = {}
    for edge in tree.EDGES:
        m = ns_metrics(tree, relays[edge])
        edge_space[edge] = {sp: metric(m, "rostrum_space_listeners", space=sp)
                            for sp in ("live", "stage")}

    # ---- what everyone got -------------------------------------------------------------
    reports = {}
    for edge, p in loads.items():
        rc = p.wait(30)
        check(rc == 0, f"rostrum-load on {edge} exited {rc}:\n{p.tail()}")
        reports[edge] = json.loads(p.output().decode().strip().splitlines()[-1])
    for what, lst in raw:
        check(lst.end is None, f"{what}: the connection ended ({lst.end})")
    t_end = time.monotonic()
    gaps, lows, calm = {}, {}, {}
    for what, lst in raw:
        gaps[what] = lst.max_gap(start=T0 + 2, end=t_end)
        lows[what] = playout_low_water(lst)
        calm[what] = playout_low_water(lst, until=T0 + CUT_R1[0])
        lst.close()
    for what, lst in raw:
        # nothing audible: a player that joined with the relay's burst (3 s) never ran dry. On a
        # loaded 2-core box an origin-to-regional feed has been seen silent for ~0.5 s at a
        # fail-over (not explained yet): with the old 2 s burst a player ran 0.06 and 0.27 s dry
        check(lows[what] is not None and lows[what] > 0,
              f"{what}: a real-time player ran dry (low water {lows[what]} s) through the "
              "fail-overs")
    note("playout low water through the fail-overs (s): " +
         ", ".join(f"{w} {v:.2f}" for w, v in lows.items() if v is not None))
    for what, lst in raw:
        pages = check_listener_ogg(lst)  # one serial, sequence by one, granules by the audio
        secs = (pages[-1].granule - pages[2].granule) / 48000.0
        wall = lst.end_time - lst.t0
        check(secs >= wall - 2.5, f"{what}: {secs:.1f} s of audio in {wall:.1f} s")
    for what, dec, freq in decs:
        pcm = check_ffmpeg_decode(dec, LOAD_S + 3, timeout=20)
        check_tone(pcm, freq, what, skip_s=0.5, others=(330, 660))
    weak, wins = check_two_tones(check_ffmpeg_decode(dstage, LOAD_S + 3, timeout=20),
                                 "lhost2 ffmpeg /stage")

    for edge, r in reports.items():
        check(r["connected"] == LOAD_N and r["open_at_end"] == LOAD_N,
              f"rostrum-load on {edge}: {r['connected']} of {LOAD_N} got audio, "
              f"{r['open_at_end']} still receiving at the end; refused {r['refused']}")
        # a stall: 2.5 s without audio (a fail-over takes ~1.2 s, see the figures)
        for k in ("seq_gaps", "serial_changes", "crc_errors", "sync_losses", "stalls"):
            check(r[k] == 0, f"rostrum-load on {edge}: {k} = {r[k]}")
        # the edge's own count (1 s before the end) against the listeners that receive:
        # the tool's, plus the listener host's peers (all of them still reading then)
        mine = sum(peers[edge].values())
        check(r.get("server_listeners") == r["tool_listeners"] + mine,
              f"{edge} counts {r.get('server_listeners')} receiving listeners "
              f"({r.get('metrics_error', '')}), the tools hold {r['tool_listeners']} + {mine}")
        for sp in ("live", "stage"):
            want = peers[edge][sp] + (r["tool_listeners"] if sp == "live" else 0)
            check(edge_space[edge][sp] == want, f"{edge} counts {edge_space[edge][sp]} "
                                                f"listeners of /{sp}, want {want}")

    for spk, name in ((spk_a, "A"), (spk_b, "B")):
        rc = spk.wait(spk_s + 15 - (time.monotonic() - T0))
        check(rc == 0, f"speaker {name} exited {rc}:\n{spk.tail()}")
        j = json.loads(spk.output().decode().strip().splitlines()[-1])
        check(j["packets_received"] > 0.6 * 50 * spk_s,
              f"speaker {name} heard {j['packets_received']} return packets in {spk_s} s")

    # ---- fail-over, seen by the edges --------------------------------------------------
    logs = {e: log_events(relays[e]) for e in tree.EDGES}
    fo_lines = []
    # each event takes one regional's feed away; an edge must fail over if it was pulling from
    # that regional then (by its own log: not where the test expects it to be, since a wobble
    # between events may have moved it back), and each event must have hit at least one edge
    hits = {e: 0 for e in tree.EDGES}  # events that took an edge's upstream away
    for i, (name, wall) in enumerate(events[:-1]):
        ip = tree.ip(hit[i])
        expect = [e for e in tree.EDGES if f"//{ip}:" in upstream_at(logs[e], sod(wall))]
        for e in expect:
            hits[e] += 1
        check(expect, f"no edge was pulling from {hit[i]} at '{name}': "
                      f"{ {e: upstream_at(logs[e], sod(wall)) for e in tree.EDGES} }")
        until = sod(events[i + 1][1])
        for edge in tree.EDGES:
            fo = failover_after(logs[edge], sod(wall), until)
            if fo is None:
                check(edge not in expect, f"{edge} never lost its feed at '{name}' (it was "
                                          f"pulling from {hit[i]})")
                fo_lines.append(f"  {name}: {edge} kept its feed")
                continue
            detect, resumed, up = fo
            check(resumed is not None, f"{edge} did not resume after '{name}'")
            if edge not in expect and detect > 2.0:
                # not this event's doing (it is noticed in 2 page intervals): a later wobble
                # of the edge's own upstream, e.g. when the cut regional came back and caught
                # up (seen on the loaded 2-core box: a regional's feed from the origin quiet
                # for 0.5 s); the listener checks above show it was not heard
                fo_lines.append(f"  {name}: {edge} kept its feed; a later cut {detect:.2f} s "
                                f"after the event, resumed from {up} {resumed - detect:.2f} s "
                                "after it (no gap)")
                continue
            # a dead feed is noticed in 2 page intervals (at least 0.4 s), then a back-off of
            # 50-100 ms and a connection: well under 3 s
            check(resumed < 3.0, f"{edge} took {resumed:.2f} s to resume after '{name}'")
            fo_lines.append(f"  {name}: {edge} cut its feed after {detect:.2f} s, resumed "
                            f"from {up} {resumed:.2f} s after the event (no gap)")
    r1 = failover_after(log_events(relays[hit[2]]), sod(events[2][1]), sod(events[3][1]))
    check(r1 and r1[1] is not None, f"{hit[2]} did not resume its feed from the origin after "
                                    "the freeze")
    fo_lines.append(f"  {events[2][0]}: {hit[2]} cut its feed after {r1[0]:.2f} s, resumed "
                    f"from the origin {r1[1]:.2f} s after the event (the restore: "
                    f"{FREEZE_OR1[1]:.0f} s)")
    for host in ("regional1", "regional2"):
        m = ns_metrics(tree, relays[host])
        check(metric(m, "rostrum_relay_restarts_total") == 0, f"{host} restarted a stream")
    for edge in tree.EDGES:
        m = ns_metrics(tree, relays[edge])
        check(metric(m, "rostrum_relay_restarts_total") == 0, f"{edge} restarted a stream")
        check(metric(m, "rostrum_relay_failovers_total") >= hits[edge], f"{edge} failed over "
              f"{metric(m, 'rostrum_relay_failovers_total')} times, want >= {hits[edge]}")
        fo_lines.append(f"  {edge}: resumes {metric(m, 'rostrum_relay_resumes_total'):.0f}, "
                        f"failovers {metric(m, 'rostrum_relay_failovers_total'):.0f}, stalls "
                        f"{metric(m, 'rostrum_relay_stalls_total'):.0f}, cuts "
                        f"{metric(m, 'rostrum_relay_cuts_total'):.0f}")

    # ---- the tree's count (item 3) ------------------------------------------------------
    want_live = sum(r["tool_listeners"] for r in reports.values()) + sum(
        p["live"] for p in peers.values())
    want_stage = sum(p["stage"] for p in peers.values())

    def exact(live, stage):
        return (isinstance(live, int) and abs(live - want_live) <= 0.001 * want_live and
                isinstance(stage, int) and abs(stage - want_stage) <= 0.001 * want_stage)
    t_count = next((t for t, live, stage in tree_counts if exact(live, stage)), None)
    counted = [(t, live, stage) for t, live, stage in tree_counts
               if t_count is not None and t_count <= t]
    off = [(round(t - T0, 1), live, stage) for t, live, stage in counted
           if not exact(live, stage)]

    # ---- figures ------------------------------------------------------------------------
    note("fail-over (event -> the edge's feed cut -> resumed, from the edges' logs; the relay "
         "counters count /live and /stage):")
    for line in fo_lines:
        note(line)
    note("listener hosts' raw listeners: longest delivery gap, a real-time player's buffer "
         "low-water mark (joined with the relay's 3 s burst):")
    for what, _ in raw:
        note(f"  {what}: gap {gaps[what]:.2f} s, low water {lows[what]:+.2f} s "
             f"({calm[what]:+.2f} s before the first event)")
    note(f"lhost2 ffmpeg /stage: both speakers' tones in {wins - len(weak)} of {wins} "
         f"half-second windows; the others {weak}")
    for edge, r in reports.items():
        note(f"rostrum-load on {edge}: {r['connected']}/{LOAD_N} joined, {r['open_at_end']} "
             f"receiving at the end, stalls (>= {r['stall_ms']} ms) {r['stalls']} on "
             f"{r['listeners_with_stalls']} listeners, held 48 kb/s {r['held_bitrate_pct']} %, "
             f"seq gaps {r['seq_gaps']}, serial changes {r['serial_changes']}; the edge counts "
             f"{r.get('server_listeners')} = {r['tool_listeners']} + {sum(peers[edge].values())}"
             " on its listener host")
    series, last = [], None
    for t, live, stage in tree_counts:
        if (live, stage) != last:
            series.append(f"{t - T0:+.1f}s {live}/{stage}")
            last = (live, stage)
    note(f"tree: {want_live} listeners of /live, {want_stage} of /stage receive; the origin's "
         f"tree_listeners /live//stage, sampled every {SAMPLE_S * 1000:.0f} ms "
         f"({len(tree_counts)} samples, {len(counted)} from when the tree was whole at "
         f"{'never' if t_count is None else f'+{t_count - T0:.1f} s'}), as it changed "
         f"(events at +{CUT_R1[0]:.0f}, +{KILL_R2[0]:.0f}, +{FREEZE_OR1[0]:.0f} s): "
         f"{', '.join(series)}")

    # ---- the tree's count (item 3), all along -----------------------------------------
    if not [c for c in tree_counts if c[1] is not None]:
        skip_part("the tree's count", "the origin's /status-json.xsl has no tree_listeners "
                  f"(item 3 not in this build); the tree holds {want_live} listeners of /live "
                  f"and {want_stage} of /stage")
        return
    check(t_count is not None and t_count < T0 + CUT_R1[0],
          f"the origin's count never had the whole tree ({want_live}/{want_stage}) before the "
          f"first event: {', '.join(series[:12])}")
    # before, during and after the cut, the kill and the freeze
    span = (LOAD_S - 1.5) - (t_count - T0)
    check(len(counted) >= 0.6 * span / SAMPLE_S,
          f"only {len(counted)} samples of the origin's status in {span:.0f} s")
    check(not off, f"the origin's tree_listeners (/live, /stage) left {want_live}/{want_stage} "
                   f"(within 0.1 %) in {len(off)} of {len(counted)} samples (+s after T0, live, "
                   f"stage; events at +{CUT_R1[0]:.0f}, +{KILL_R2[0]:.0f}, "
                   f"+{FREEZE_OR1[0]:.0f} s): {off[:12]}")
