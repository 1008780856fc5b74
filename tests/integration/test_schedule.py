"""Scheduled spaces and the lobby (issue 12, item 1): a space created ahead of time with a
title, description and start; its lobby streams holding silence on the space's one Ogg stream,
speakers who join early hear each other (the green room) but listeners do not hear them until
the space goes live, at its start time or by the API; the switch needs no reconnect. Bad input
is refused, counted, and the number of scheduled spaces is bounded. Speakers are real
rostrum-speak processes; listeners are ffmpeg and the raw Ogg reader."""

import json
import os
import signal
import time
from urllib.parse import quote

from harness import (check, check_ffmpeg_decode, check_listener_ogg, ffmpeg_listener,
                     get_json, http_request, listen, metric, metrics, note, pcm_samples, test,
                     wait_for)
from test_stage import KEY, api, decode_file, shares, speaker, stage_server


def schedule(srv, name, start_in=None, start=None, title="Evening talk", description=None):
    q = f"/api/spaces?name={name}&title={quote(title)}"
    if start_in is not None:
        q += f"&start_in={start_in}"
    if start is not None:
        q += f"&start={start}"
    if description is not None:
        q += f"&description={quote(description)}"
    return api(srv, "POST", q)


def state(srv, name):
    r = http_request(srv.audience, "GET", f"/state/{name}.json")
    check(r.status == 200, f"/state/{name}.json -> {r.status}")
    return json.loads(r.body)


def windows(pcm, freqs, window=0.5):
    """Per <window> s of PCM: (start s, peak, {freq: share})."""
    s = pcm_samples(pcm)
    n = int(48000 * window)
    out = []
    for i in range(0, len(s) - n + 1, n):
        w = s[i:i + n]
        peak = max(abs(x) for x in w)
        sh = shares(pcm[i * 2:(i + n) * 2], freqs, skip_s=0, window=window) if peak >= 300 else []
        out.append((i / 48000.0, peak, sh[0] if sh else {}))
    return out


def refused(srv):
    return metric(metrics(srv)[0], "rostrum_refused_total", reason="schedule") or 0


@test(timeout=120, icecast=False)
def test_schedule_lobby_switches_at_start_without_reconnect(ctx):
    """A space scheduled 9 s ahead: its state document counts down; two early speakers (440,
    660 Hz) hear each other, listeners who came early hear silence on the same stream and the
    tones after T0 (auto go-live), with one Ogg logical stream and ffmpeg decoding across."""
    srv = stage_server(ctx)
    r, body = schedule(srv, "evening", start_in=9, description="Ask me anything")
    check(r.status == 201, f"schedule -> {r.status} {body}")
    t0 = body["starts_at"]
    st = state(srv, "evening")
    check(st["live"] is False and st["scheduled"] is True and st["lobby"] is True and
          st["title"] == "Evening talk" and st["description"] == "Ask me anything",
          f"state before the start: {st}")
    check(5 <= st["starts_in_s"] <= 9, f"countdown {st['starts_in_s']}, want 5..9")
    time.sleep(1.5)
    st2 = state(srv, "evening")
    check(st2["starts_in_s"] < st["starts_in_s"], f"the countdown did not move: {st} {st2}")
    src = [s for s in get_json(srv.audience)["icestats"]["source"]
           if s["listenurl"].endswith("/evening")]
    check(src and src[0].get("starts_at") == t0 and src[0]["server_description"] ==
          "Ask me anything", f"status-json does not list the scheduled space: {src}")
    check(src[0].get("recording") == "on", f"a scheduled space is not recorded: {src[0]}")
    # early speakers: the green room
    a = speaker(ctx, srv, "evening", "A", tone=440, seconds=14, record="a.ogg")
    b = speaker(ctx, srv, "evening", "B", tone=660, seconds=14, record="b.ogg")
    raw = listen(ctx, srv, "/evening")
    t_listen = time.time()
    dec = ffmpeg_listener(ctx, srv, "/evening", 12)
    pcm = check_ffmpeg_decode(dec, 12, timeout=30)
    check(a.wait(25) == 0, f"speaker A failed:\n{a.tail()}")
    check(b.wait(25) == 0, f"speaker B failed:\n{b.tail()}")
    raw.close()
    check(raw.end == "closed", f"the raw listener was cut: {raw.end}")
    pages = check_listener_ogg(raw)  # one serial, pages by one, granules by the audio
    check(len({p.serial for p in pages}) == 1, "more than one logical stream")
    before = t0 - t_listen  # PCM before this is surely from the lobby (a burst only adds older)
    w = windows(pcm, (440, 660))
    lobby = [x for x in w if x[0] + 0.5 <= before - 0.5]
    loud = [x for x in lobby if x[1] >= 300]
    check(len(lobby) >= 4 and not loud,
          f"listeners heard the green room before T0 ({len(loud)} of {len(lobby)} windows "
          f"loud): {loud[:3]}")
    tail = [x for x in w if x[0] >= 9.0]
    both = [x for x in tail if x[2].get(440, 0) > 0.15 and x[2].get(660, 0) > 0.15]
    check(tail and len(both) >= len(tail) * 0.8,
          f"the programme after T0: both tones in {len(both)} of {len(tail)} windows")
    first = next((x[0] for x in w if x[1] >= 300), None)
    note(f"lobby: {len(lobby)} silent windows before T0 ({before:.1f} s after joining); "
         f"first sound at {first} s of the listener's PCM; {len(pages)} pages, one serial")
    # each speaker heard the other from the start, before T0 too
    for who, rec, mine, other in (("A", "a.ogg", 440, 660), ("B", "b.ogg", 660, 440)):
        ws = shares(decode_file(ctx, ctx.tmp / rec, f"dec_{who}"), (mine, other), skip_s=1)
        check(len(ws) >= 20, f"{who}'s return: only {len(ws)} windows with sound")
        early = ws[1:8]  # the first seconds, not live yet (the first window: the other's onset)
        bad = [x for x in early if x[other] < 0.5]
        check(not bad, f"{who} did not hear the other in the green room: {bad[:3]}")
    st = state(srv, "evening")
    check(st["live"] is True and st["lobby"] is False, f"state after T0: {st}")
    check("live (the start time)" in srv.log_text(), "no log line for the automatic go-live")


@test(timeout=90, icecast=False)
def test_schedule_go_live_from_the_api_and_survives_reload(ctx):
    """A space scheduled an hour ahead goes live when the host says so (POST .../live); before
    that it survives SIGHUP with its schedule, and the tone is not heard."""
    srv = stage_server(ctx)
    # made with the small CLI (tools/schedule); its refusal shows the server's reason
    from pathlib import Path
    cli = [Path(__file__).resolve().parents[2] / "tools" / "schedule", "--stage",
           f"127.0.0.1:{srv.stage}", "--key", KEY]
    bad = ctx.spawn("cli_bad", cli + ["create", "later", "--title", "T", "--start", "1000"])
    check(bad.wait(10) == 1 and "in the past" in bad.log.read_text(),
          f"tools/schedule with a past start: {bad.tail()}")
    p = ctx.spawn("cli", cli + ["create", "later", "--title", "Later", "--start-in", "3600"],
                  stdout=ctx.tmp / "cli.json")
    check(p.wait(10) == 0, f"tools/schedule create failed:\n{p.tail()}")
    body = json.loads(p.output())
    check(3590 <= state(srv, "later")["starts_in_s"] <= 3600, "countdown of an hour")
    os.kill(srv.proc.pid, signal.SIGHUP)
    time.sleep(1)
    st = state(srv, "later")
    check(st["live"] is False and st["starts_at"] == body["starts_at"],
          f"the schedule after SIGHUP: {st}")
    a = speaker(ctx, srv, "later", "A", tone=440, seconds=10)
    time.sleep(1)
    dec = ffmpeg_listener(ctx, srv, "/later", 8)
    time.sleep(3.5)
    r2, live = api(srv, "POST", "/api/spaces/later/live", token="wrong")
    check(r2.status == 401, f"go live without the key -> {r2.status}")
    r2, live = api(srv, "POST", "/api/spaces/later/live", token=body["host_token"])
    check(r2.status == 200 and live == {"live": True}, f"go live -> {r2.status} {live}")
    pcm = check_ffmpeg_decode(dec, 8, timeout=20)
    check(a.wait(20) == 0, f"speaker A failed:\n{a.tail()}")
    w = windows(pcm, (440,))
    check(not [x for x in w[:4] if x[1] >= 300], f"the tone was heard before going live: {w[:4]}")
    tone = [x for x in w[-4:] if x[2].get(440, 0) > 0.5]
    check(len(tone) >= 3, f"the tone after going live: {w[-4:]}")
    check(state(srv, "later")["live"] is True, "not live in the state document")
    r2, again = api(srv, "POST", "/api/spaces/later/live")
    check(r2.status == 200 and again.get("already"), f"a second go-live -> {again}")


@test(timeout=60, icecast=False)
def test_schedule_bad_input_and_bound(ctx):
    """Starts in the past or over a week ahead, bad titles and descriptions, a malformed start:
    400 with a clear error, counted in rostrum_refused_total{reason="schedule"}. At most 16
    scheduled spaces wait at once: the 17th gets 503 until one goes live."""
    srv = stage_server(ctx)
    now = int(time.time())
    cases = [
        (dict(start=now - 60), "in the past"),
        (dict(start_in=8 * 24 * 3600), "too far ahead"),
        (dict(start_in=60, title=""), "title= is required"),
        (dict(start_in=60, title="x" * 200), "title= is required"),
        (dict(start_in=60, title="bad\x01title"), "bad title"),
        (dict(start_in=60, description="d" * 300), "description too long"),
    ]
    n0 = refused(srv)
    for i, (kw, want) in enumerate(cases):
        r, body = schedule(srv, f"bad{i}", **kw)
        check(r.status == 400 and want in body["error"], f"{kw} -> {r.status} {body}, want "
                                                          f"400 '{want}'")
    for i, q in enumerate(["start=abc", "start_in=-5", "title=%FF%FE&start_in=60"]):
        r, body = api(srv, "POST", f"/api/spaces?name=q{i}&{q}")
        check(r.status == 400 and body and body.get("error"), f"{q} -> {r.status} {body}")
    n = refused(srv) - n0
    check(n == len(cases) + 3, f"refusals counted: {n}, want {len(cases) + 3}")
    for i in range(16):
        r, body = schedule(srv, f"s{i}", start_in=600)
        check(r.status == 201, f"scheduled space {i} -> {r.status} {body}")
    r, body = schedule(srv, "s16", start_in=600)
    check(r.status == 503 and "too many scheduled" in body["error"], f"the 17th -> {r.status} "
                                                                       f"{body}")
    check(refused(srv) - n0 == n + 1, "the bound's refusal not counted")
    r, _ = api(srv, "POST", "/api/spaces/s0/live")
    check(r.status == 200, f"go live -> {r.status}")
    r, body = schedule(srv, "s16", start_in=600)
    check(r.status == 201, f"after one went live, scheduling -> {r.status} {body}")
    # an unscheduled space is unaffected by the bound
    r, body = api(srv, "POST", "/api/spaces?name=plain&title=x")
    check(r.status == 201, f"a plain space -> {r.status} {body}")
    note(f"{int(n) + 1} refusals counted; 16 scheduled spaces at once")


@test(timeout=90, icecast=False)
def test_schedule_survives_upgrade(ctx):
    """An in-place upgrade (SIGUSR2) carries the schedule in the stage's record: the space is
    still a lobby with the same start after it, its raw listener stays on one stream, and it
    goes live from the API afterwards."""
    from harness import Server
    from test_upgrade import installed_copy, replace_binary, upgrade
    exe = installed_copy(ctx)
    srv = Server(ctx, exe, extra=["--host-key", KEY, "--workers", "1"])
    r, body = schedule(srv, "morning", start_in=3600, description="the news")
    check(r.status == 201, f"schedule -> {r.status} {body}")
    raw = listen(ctx, srv, "/morning")
    time.sleep(1.5)
    replace_binary(ctx, exe)
    upgrade(srv)
    time.sleep(1)
    st = state(srv, "morning")
    check(st["live"] is False and st["starts_at"] == body["starts_at"] and
          st["description"] == "the news", f"the schedule after the upgrade: {st}")
    r, live = api(srv, "POST", "/api/spaces/morning/live")
    check(r.status == 200 and live == {"live": True}, f"go live after the upgrade -> {live}")
    time.sleep(1)
    check(state(srv, "morning")["live"] is True, "not live after go-live")
    raw.close()
    check(raw.end == "closed", f"the raw listener was cut by the upgrade: {raw.end}")
    pages = check_listener_ogg(raw)
    note(f"{len(pages)} pages on one stream across the upgrade and the go-live")


def join_ticket(srv, mount, addr):
    import socket
    from harness import read_head
    s = socket.create_connection(("127.0.0.1", srv.audience), source_address=(addr, 0))
    s.settimeout(5)
    s.sendall(f"GET /join/{mount} HTTP/1.0\r\n\r\n".encode())
    head, rest = read_head(s)
    while True:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    s.close()
    check(head.status == 200, f"/join/{mount} from {addr} -> {head.status}")
    return json.loads(rest)


@test(timeout=60, icecast=False)
def test_schedule_prequeue_places_before_the_start(ctx):
    """The waiting room (2 admissions a second) in front of a space starting in 15 s: 40
    listeners from 40 addresses ask for places before the start. The first ones get places
    spread over the seconds before T0 (at most 2 in any second, not in arrival order); once
    those are full, the rest queue in arrival order from T0, 0.5 s apart. The earliest place,
    used on time, gets the lobby's stream before T0 and keeps it across the go-live."""
    conf = ctx.tmp / "rostrum.conf"
    conf.write_text("waiting-room = 1\nwaiting-room-rate = 2\n")
    srv = ctx.start_server(config=str(conf), extra=["--host-key", KEY, "--workers", "1"])
    r, body = schedule(srv, "storm", start_in=15)
    check(r.status == 201, f"schedule -> {r.status} {body}")
    t0_ms = body["starts_at"] * 1000
    t_ask = time.time()
    tickets = [join_ticket(srv, "storm", f"127.0.1.{10 + i}") for i in range(40)]
    check(all(t.get("prequeue") is True and t.get("starts_at") == body["starts_at"]
              for t in tickets), f"not pre-queue tickets: {tickets[0]}")
    at = [t["admit_at_ms"] for t in tickets]
    early = [x for x in at if x < t0_ms]
    late = [x for x in at if x >= t0_ms]
    ahead = (t0_ms / 1000 - t_ask)
    check(2 * (int(ahead) - 2) <= len(early) <= 2 * (int(ahead) + 1),
          f"{len(early)} places before T0 with {ahead:.1f} s ahead at 2/s")
    check(all(x > t_ask * 1000 for x in early), "a place behind the time it was given")
    per_s = {}
    for x in early:
        per_s[int(x // 1000)] = per_s.get(int(x // 1000), 0) + 1
    check(max(per_s.values()) <= 2, f"more than the rate in one second: {per_s}")
    check(early != sorted(early), "early places in arrival order, not random")
    check(late == sorted(late) and late and late[0] == min(late) and
          all(abs((b - a) - 500) < 2 for a, b in zip(late, late[1:])) and late[0] - t0_ms < 2,
          f"places past the window not in order from T0 at 0.5 s: {late[:5]}")
    vals = metrics(srv)[0]
    m_early = metric(vals, "rostrum_prequeue_early_total")
    m_late = metric(vals, "rostrum_prequeue_late_total")
    check(m_early == len(early) and m_late == len(late),
          f"/metrics says {m_early} early and {m_late} late places, want {len(early)}, "
          f"{len(late)}")
    note(f"{len(early)} places spread over the {ahead:.1f} s before T0, {len(late)} in order "
         f"from T0")
    # the earliest place, used on time: the lobby's stream before T0
    first = min(range(40), key=lambda i: at[i])
    time.sleep(max(0, at[first] / 1000 - time.time()) + 0.2)
    check(time.time() * 1000 < t0_ms, "the earliest place came after T0")
    lst = listen(ctx, srv, tickets[first]["stream"], bind=f"127.0.1.{10 + first}")
    check(lst.resp.status == 200, f"the earliest ticket on time -> {lst.resp.status}")
    wait_for(lambda: time.time() * 1000 > t0_ms + 2000, 20, "the start")
    wait_for(lambda: state(srv, "storm")["live"], 5, "the space live")
    lst.close()
    check(lst.end == "closed", f"the lobby listener was cut at the go-live: {lst.end}")
    check_listener_ogg(lst)


@test(timeout=120, icecast=False, exclusive=True)
def test_schedule_host_console_go_live_browser(ctx):
    """Chromium: the host console schedules a space an hour ahead (start, description), shows
    its lobby with a countdown; the listener page lists it with "starts in"; Go live ends the
    lobby (tests/browser/golive.mjs says each step)."""
    import shutil
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    node = shutil.which("node")
    check(node and (root / "tests/browser/node_modules/playwright-core").is_dir(),
          "node or playwright-core missing")
    srv = stage_server(ctx)
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    p = ctx.spawn("golive", [node, root / "tests/browser/golive.mjs", srv.url(""),
                             f"127.0.0.1:{srv.stage}", KEY, "evening"], env=env,
                  stdout=ctx.tmp / "golive.out")
    try:
        rc = p.wait(100)
    finally:
        p.signal(signal.SIGTERM)
    out = p.output().decode(errors="replace").strip()
    check(rc == 0, f"golive.mjs exited with {rc}: {out[-1500:]}\n{p.tail(15)}")
    res = json.loads(out.splitlines()[-1])
    check([s["step"] for s in res["steps"]] == ["lobby", "listed", "live"], f"steps: {res}")
    note(f"host console: {res['steps'][0]['countdown']}; listener page: "
         f"{res['steps'][1]['listed']}")
    check("live (host" in srv.log_text() or "live (API" in srv.log_text(),
          "no log line for the console's go-live")


@test(timeout=90, icecast=False)
def test_schedule_lobby_holding_audio(ctx):
    """lobby-audio: a 550 Hz Ogg/Opus file made by ffmpeg is looped in the lobby; after the
    go-live the programme (a 440 Hz speaker in the green room) replaces it on the same stream,
    and a bad lobby-audio file is logged and leaves the lobby silent."""
    hold = ctx.tmp / "holding.opus"
    mk = ctx.spawn("mkhold", ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                              "sine=frequency=550:sample_rate=48000:duration=1.3", "-ac", "1",
                              "-c:a", "libopus", "-b:a", "48k", "-y", hold])
    check(mk.wait(20) == 0, f"ffmpeg could not make the holding file:\n{mk.tail()}")
    srv = stage_server(ctx, "--lobby-audio", hold)
    r, body = schedule(srv, "held", start_in=3600)
    check(r.status == 201, f"schedule -> {r.status} {body}")
    a = speaker(ctx, srv, "held", "A", tone=440, seconds=11)
    raw = listen(ctx, srv, "/held")
    dec = ffmpeg_listener(ctx, srv, "/held", 8)
    time.sleep(4.5)
    r, live = api(srv, "POST", "/api/spaces/held/live")
    check(r.status == 200, f"go live -> {r.status}")
    pcm = check_ffmpeg_decode(dec, 8, timeout=20)
    check(a.wait(20) == 0, f"speaker A failed:\n{a.tail()}")
    raw.close()
    check_listener_ogg(raw)
    w = windows(pcm, (440, 550))
    lobby = [x for x in w[:6] if x[2].get(550, 0) > 0.5 and x[2].get(440, 0) < 0.05]
    check(len(lobby) >= 5, f"the holding audio (550 Hz) in the lobby: {w[:6]}")
    prog = [x for x in w[-4:] if x[2].get(440, 0) > 0.5 and x[2].get(550, 0) < 0.05]
    check(len(prog) >= 3, f"the programme (440 Hz) after going live: {w[-4:]}")
    note(f"lobby: 550 Hz in {len(lobby)} of the first 6 windows; programme: 440 Hz in "
         f"{len(prog)} of the last 4")
    # a file that is not Ogg/Opus: logged, the lobby silent, the space fine
    bad = ctx.tmp / "bad.opus"
    bad.write_bytes(b"not an ogg file" * 100)
    srv2 = stage_server(ctx, "--lobby-audio", bad)
    r, body = schedule(srv2, "quiet", start_in=3600)
    check(r.status == 201, f"schedule with a bad lobby-audio -> {r.status} {body}")
    wait_for(lambda: "the lobby is silent" in srv2.log_text(), 5, "the bad file logged")
