"""The event day, small (issue 12, item 5; the full one is bench/event): a scheduled space with
two speakers in the green room (rostrum-speak, clicks 1,020 and 1,000 ms apart, each detecting
the other's), 3,000 listeners (rostrum-load listen --programme, 2 processes) arriving over 16 s
around T0, most before it through the lobby, while a small flood and slowloris
(rostrum-load attack) run against the audience port. The space goes live by itself at T0.

Checked: every join admitted, or refused only by the workers' pressure (503 "overload", at
most a fifth: a loaded box may); the programme reached every listener already in the lobby,
within a (generous) bound of T0; the server's count equals the listeners the tool saw
receiving; no stall, gap or serial change among them; the attacks were closed by the server;
both speakers kept hearing each other; the recording is one stream from the first second,
its lobby silent, its programme's first click right after the go-live, its length the
space's live time within two pages (decoded by ffmpeg)."""

import json
import sys
import time
from pathlib import Path

from harness import ROOT, check, metric, metrics, note, test
from test_stage import KEY, api

sys.path.insert(0, str(ROOT / "bench"))
from eventlib import pair_clicks, pct, recording_check  # noqa: E402

N = 3000
LEAD_S = 14          # T0 after the create
ARRIVE_S = 16        # the joins' spread; they start 2 s after the create: 12 of 16 s before T0
HOLD_S = 6
PROG_BOUND_MS = 4000  # bench/event's target is 2,000 ms; this is an ASan build on a busy box
REC_BOUND_MS = 400    # two pages (the bench: one)


def last_json(p):
    return json.loads(p.output().decode(errors="replace").strip().splitlines()[-1])


@test(timeout=90, icecast=False)
def test_event_day_small(ctx):
    bindir = Path(ctx.binary).parent
    rec_dir = ctx.tmp / "rec"
    srv = ctx.start_server(extra=["--host-key", KEY, "--workers", "2", "--record-dir", rec_dir],
                           log_level="info")
    r, body = api(srv, "POST", f"/api/spaces?name=ev&title=Event&start_in={LEAD_S}")
    check(r.status == 201, f"schedule -> {r.status} {body}")
    t_create = time.time()
    t0 = body["starts_at"]
    spk = {}
    for name, ms in (("A", 1020), ("B", 1000)):
        spk[name] = ctx.spawn(f"speak_{name}", [
            bindir / "rostrum-speak", "--stage", f"127.0.0.1:{srv.stage}", "--space", "ev",
            "--key", KEY, "--name", name, "--clicks", ms, "--detect-clicks", "--seconds", 60,
            "--json"], stdout=ctx.tmp / f"speak_{name}.json")
    time.sleep(2)
    storm_m = time.monotonic() * 1000
    secs = ARRIVE_S + HOLD_S
    load = ctx.spawn("load", [bindir / "rostrum-load", "listen", "--url", srv.url("/ev"),
                              "--listeners", N, "--rate", N / ARRIVE_S, "--seconds", secs,
                              "--procs", 2, "--programme", srv.url("/state/ev.json"), "--json"],
                     stdout=ctx.tmp / "load.json")
    atk = {}
    for mode, n, src, more in (("flood", 200, "127.0.1.1-127.0.1.50", []),
                               ("slowloris", 300, "127.0.1.51-127.0.1.100",
                                ["--interval-ms", 2000])):
        atk[mode] = ctx.spawn(mode, [bindir / "rostrum-load", "attack", mode, "--url",
                                     srv.url("/ev"), "--rate", 200, "--count", n, "--seconds",
                                     secs, "--src-ips", src, "--json", *more],
                              stdout=ctx.tmp / f"{mode}.json")
    check(load.wait(secs + 25) == 0, f"rostrum-load listen failed:\n{load.tail()}")
    storm_end_m = time.monotonic() * 1000
    for mode, p in atk.items():
        check(p.wait(20) == 0, f"rostrum-load attack {mode} failed:\n{p.tail()}")
    res = last_json(load)
    st = json.loads(api(srv, "GET", "/api/spaces/ev")[0].body)
    r, ended = api(srv, "POST", "/api/spaces/ev/end")
    t_end = time.time()
    check(r.status == 200, f"end -> {r.status} {ended}")
    for p in spk.values():
        p.wait(15)

    # the go-live, and the programme at every lobby listener
    check(st.get("live") is True and "live_granule" in st and "live_at_ms" in st,
          f"the state document after T0: {st}")
    golive_ms = st["live_at_ms"] - t0 * 1000
    check(0 <= golive_ms < 1000, f"went live {golive_ms} ms from T0")
    pr = res["programme"]
    why = f"rostrum-load: {json.dumps(res)[:1500]}"
    # a join is refused only by the workers' pressure (503, retry later: a loaded box may do
    # that to a few), never failed otherwise
    vals, _ = metrics(srv)
    overload = metric(vals, "rostrum_refused_total", reason="overload") or 0
    n503 = res["refused"].get("503", 0)
    # the tool polled the state document on one kept-alive connection (a new one per poll would
    # wait in the listen queue a storm overflows): every poll after its first one
    kept = metric(vals, "rostrum_keepalive_requests_total") or 0
    check(kept >= 5, f"{kept} state polls on the kept connection")
    check(res["attempted"] == N and res["connected"] + n503 == N and n503 == overload and
          res["connected"] >= N * 0.8,
          f"{res['connected']} of {res['attempted']} listeners admitted, {n503} refused with "
          f"503 ({overload} for overload): {res['refused']}")
    n = res["connected"]
    check(pr["t0_ms"] == t0 * 1000, f"the tool's T0 {pr['t0_ms']}, want {t0 * 1000}")
    check(pr["in_lobby"] >= n // 2, f"only {pr['in_lobby']} listeners in the lobby at T0")
    check(pr["in_lobby"] + pr["joined_live"] == n, f"lobby + live != {n}: {pr}")
    check(pr["before_t0"] == 0, f"{pr['before_t0']} listeners had the programme before T0")
    check(pr["reached"] == pr["in_lobby"] and pr["unresolved"] == 0,
          f"the programme reached {pr['reached']} of {pr['in_lobby']} lobby listeners "
          f"({pr['unresolved']} not measurable)")
    a = pr["after_t0_ms"]
    check(a["count"] == pr["reached"] and a["max"] <= PROG_BOUND_MS,
          f"programme after T0: {a} (bound {PROG_BOUND_MS} ms)")
    # counts, and nobody stalled
    check(res["server_listeners"] == res["tool_listeners"] == n,
          f"server {res['server_listeners']}, tool {res['tool_listeners']}, want {n}")
    check(res["stalls"] == 0 and res["seq_gaps"] == 0 and res["serial_changes"] == 0 and
          res["crc_errors"] == 0, f"stalls/gaps/serial changes/CRC: {why}")
    # the attacks ran and were shed by the server
    for mode in atk:
        j = last_json(atk[mode])
        check(j["attempted"] >= 200 and j["closed_by_server"]["all"] > 0,
              f"{mode}: {json.dumps(j)[:600]}")
    # the speakers heard each other through it
    ja = json.loads((ctx.tmp / "speak_A.json").read_text().strip().splitlines()[-1])
    jb = json.loads((ctx.tmp / "speak_B.json").read_text().strip().splitlines()[-1])
    pairs = pair_clicks(jb["click_sent_mono_ms"], ja["clicks_heard_mono_ms"]) + \
        pair_clicks(ja["click_sent_mono_ms"], jb["clicks_heard_mono_ms"])
    before = [m for t, m in pairs if t < storm_m]
    during = [m for t, m in pairs if storm_m <= t <= storm_end_m]
    sent_during = sum(1 for t in ja["click_sent_mono_ms"] + jb["click_sent_mono_ms"]
                      if storm_m <= t <= storm_end_m - 600)
    check(len(during) >= sent_during * 0.9,
          f"the speakers heard {len(during)} of {sent_during} clicks during the storm")
    # the recording
    files = sorted(rec_dir.glob("ev-*.ogg"))
    check(len(files) == 1, f"recordings: {files}")
    for _ in range(50):
        if not list(rec_dir.glob("*.live")):
            break
        time.sleep(0.1)
    rec = recording_check(files[0], st["live_granule"])
    live_s = t_end - t_create
    check(rec.get("serials") == 1 and rec["seq_gaps"] == 0 and rec["ffmpeg_rc"] == 0 and
          not rec["ffmpeg_errors"] and rec["whole_pages_bytes"] == rec["bytes"],
          f"the recording is not one whole stream: {rec}")
    check(rec["first_page_ms"] <= 200, f"the recording's first page ends at "
                                       f"{rec['first_page_ms']} ms: not the first second")
    diff_ms = (rec["duration_granule_s"] - live_s) * 1000
    check(abs(diff_ms) <= REC_BOUND_MS and
          abs(rec["duration_decoded_s"] - rec["duration_granule_s"]) < 0.2,
          f"recording {rec['duration_granule_s']:.3f} s (decoded {rec['duration_decoded_s']:.3f})"
          f" vs live {live_s:.3f} s")
    check(rec["lobby_peak"] < 300 and abs(rec["lobby_s"] - (t0 - t_create)) < 1.0,
          f"the recording's lobby: {rec['lobby_s']:.2f} s, peak {rec['lobby_peak']}")
    check(rec["programme_first_sound_ms"] is not None and rec["programme_first_sound_ms"] < 1500,
          f"the programme's first click {rec['programme_first_sound_ms']} ms after the go-live")
    note(f"{n} of {N} listeners admitted ({n503} refused for overload), {pr['in_lobby']} in the "
         f"lobby: programme after T0 p50 {a['p50']} "
         f"p95 {pr['after_t0_p95_ms']} max {a['max']} ms (go-live +{golive_ms} ms); "
         f"count {res['server_listeners']} = {res['tool_listeners']}; stalls 0")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    note(f"mouth-to-ear p50 before {fmt(pct(before, 50))} ms ({len(before)}), during "
         f"{fmt(pct(during, 50))} ms ({len(during)}); recording {rec['duration_granule_s']:.3f} s "
         f"vs live {live_s:.3f} s ({diff_ms:+.0f} ms), lobby silent, first click "
         f"{rec['programme_first_sound_ms']:.0f} ms after the go-live")
