"""The stage (issue 4): speakers over WebSocket, the mixer, mix-minus, roles and limits, the
API, and a browser speaker. Speakers are real rostrum-speak processes; control clients are
the small WebSocket client in wsclient.py; listeners are ffmpeg and the raw Ogg reader."""

import json
import time
from pathlib import Path

from harness import (audio_seconds, check, check_ffmpeg_decode, check_listener_ogg,
                     ffmpeg_listener, goertzel_ratio, http_request, listen, pcm_samples, test,
                     wait_for)
from wsclient import WS, HandshakeRefused

KEY = "test-host-key"


def stage_server(ctx, *extra):
    return ctx.start_server(extra=["--host-key", KEY, "--workers", "1", *extra])


def speaker(ctx, srv, space, name, tone=None, seconds=10, record=None, key=True, token=None,
            extra=()):
    binary = Path(ctx.binary).parent / "rostrum-speak"
    argv = [binary, "--stage", f"127.0.0.1:{srv.stage}", "--space", space, "--name", name,
            "--seconds", seconds, "--json"]
    argv += ["--key", KEY] if key and not token else ["--token", token]
    if tone:
        argv += ["--tone", tone]
    if record:
        argv += ["--record", ctx.tmp / record]
    argv += list(extra)
    return ctx.spawn(f"speak_{name}", argv, stdout=ctx.tmp / f"speak_{name}.json")


def decode_file(ctx, path, name):
    p = ctx.spawn(name, ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "s16le", "-ac",
                         "1", "-ar", "48000", "-"], stdout=ctx.tmp / f"{name}.pcm")
    check(p.wait(20) == 0, f"{name}: ffmpeg could not decode {path}:\n{p.tail()}")
    return p.output()


def shares(pcm, freqs, skip_s=1.0, window=0.5):
    """Per half-second window: {freq: share of energy} (windows with sound only)."""
    s = pcm_samples(pcm[int(skip_s * 96000) // 2 * 2:])
    n = int(48000 * window)
    out = []
    for i in range(0, len(s) - n + 1, n):
        w = s[i:i + n]
        if max(abs(x) for x in w) < 300:
            continue
        out.append({f: goertzel_ratio(w, f) for f in freqs})
    return out


def api(srv, method, path, token=KEY):
    r = http_request(srv.stage, method, path, headers=[("Authorization", f"Bearer {token}")])
    body = r.body if hasattr(r, "body") else b""
    return r, json.loads(body) if body.strip().startswith(b"{") else None


def join(srv, space, token=None, name="client", key=None):
    q = f"key={key}" if key else f"token={token}"
    ws = WS(srv.stage, f"/ws/{space}?{q}&name={name}")
    welcome = ws.wait_for(lambda m: m.get("type") == "welcome", 5, "welcome")
    return ws, welcome


@test(timeout=90, icecast=False)
def test_stage_mix_and_mix_minus(ctx):
    srv = stage_server(ctx)
    a = speaker(ctx, srv, "room", "A", tone=440, seconds=12, record="a.ogg")
    time.sleep(0.7)
    b = speaker(ctx, srv, "room", "B", tone=660, seconds=11, record="b.ogg")
    time.sleep(2)
    lst = ffmpeg_listener(ctx, srv, "/room", 5)
    prog = check_ffmpeg_decode(lst, 5, timeout=25)
    check(a.wait(20) == 0, f"speaker A failed:\n{a.tail()}")
    check(b.wait(20) == 0, f"speaker B failed:\n{b.tail()}")
    ra = json.loads(a.output().strip().splitlines()[-1])
    check(ra["role"] == "host" and ra["packets_received"] > 400,
          f"A: role {ra['role']}, {ra['packets_received']} return packets")
    # the programme carries both voices
    w = shares(prog, (440, 660), skip_s=1)
    both = [x for x in w if x[440] > 0.15 and x[660] > 0.15]
    check(len(both) >= len(w) * 0.8 and w, f"programme: both tones in {len(both)} of {len(w)} "
                                          f"windows: {w[:4]}")
    # each speaker hears the other, never themselves
    for who, rec, mine, other in (("A", "a.ogg", 440, 660), ("B", "b.ogg", 660, 440)):
        w = shares(decode_file(ctx, ctx.tmp / rec, f"dec_{who}"), (mine, other), skip_s=2)
        check(len(w) >= 8, f"{who}'s return: only {len(w)} windows with sound")
        bad = [x for x in w[:-2] if x[other] < 0.5 or x[mine] > x[other] / 20]
        check(not bad, f"{who}'s return should hold {other} Hz and not {mine} Hz: {bad[:3]}")


@test(timeout=90, icecast=False)
def test_stage_limits_fourteenth_refused(ctx):
    srv = stage_server(ctx)
    spk = [speaker(ctx, srv, "full", f"s{i}", tone=300 + 40 * i, seconds=12) for i in range(13)]
    wait_for(lambda: len(stage_doc(srv, "full").get("stage", [])) == 13, 15,
             "13 on stage", interval=0.2)
    roles = [m["role"] for m in stage_doc(srv, "full")["stage"]]
    check(roles.count("host") == 1 and roles.count("cohost") == 2 and roles.count("speaker") == 10,
          f"roles on a full stage: {roles}")
    extra = speaker(ctx, srv, "full", "s13", tone=1000, seconds=3)
    rc = extra.wait(15)
    check(rc == 3, f"the 14th speaker exited {rc}, want 3 (refused):\n{extra.tail()}")
    check("409" in extra.tail(), f"the 14th speaker was not refused with 409:\n{extra.tail()}")
    # and the stage is still 13, all of them still sending
    check(len(stage_doc(srv, "full")["stage"]) == 13, "stage changed after the refusal")
    for p in spk:
        check(p.wait(20) == 0, f"{p.name} failed:\n{p.tail()}")


def stage_doc(srv, space):
    r = http_request(srv.audience, "GET", f"/state/{space}.json")
    if r.status != 200:
        return {}
    return json.loads(r.body)


@test(timeout=90, icecast=False)
def test_stage_roles_request_promote_mute_remove(ctx):
    srv = stage_server(ctx)
    r, created = api(srv, "POST", "/api/spaces?name=talk&title=Talk+show")
    check(r.status == 201 and created, f"create space -> {r.status} {getattr(r, 'body', b'')!r}")
    r, _ = api(srv, "POST", "/api/spaces?name=talk")
    check(r.status == 409, f"creating it twice -> {r.status}, want 409")
    r, _ = api(srv, "POST", "/api/spaces?name=other", token="wrong")
    check(r.status == 401, f"create with a wrong key -> {r.status}, want 401")

    host, hw = join(srv, "talk", token=created["host_token"], name="Host")
    check(hw["role"] == "host", f"host token gave role {hw['role']}")
    r, inv = api(srv, "POST", "/api/spaces/talk/invites?role=listener",
                 token=created["host_token"])
    check(r.status == 201, f"invite -> {r.status}")
    lis, lw = join(srv, "talk", token=inv["token"], name="Ben")
    check(lw["role"] == "listener", f"listener token gave {lw['role']}")

    # a listener cannot promote anyone, itself included
    lis.send_json({"type": "promote", "id": lw["id"]})
    err = lis.wait_for(lambda m: m.get("type") == "error", 5, "an error for promote")
    check("not allowed" in err["error"], f"listener promote: {err}")
    # it may ask; the host sees the request and promotes
    lis.send_json({"type": "request"})
    host.wait_for(lambda m: m.get("type") == "state" and
                  any(q["id"] == lw["id"] for q in m["state"]["requests"]), 5, "the request")
    host.send_json({"type": "promote", "id": lw["id"], "role": "speaker"})
    lis.wait_for(lambda m: m.get("type") == "role" and m["role"] == "speaker", 5, "promotion")
    doc = wait_for(lambda: any(m["name"] == "Ben" for m in stage_doc(srv, "talk").get("stage", [])),
                   5, "Ben on stage in the state document")

    # a tone speaker; the host mutes it, the programme loses it; then removes it
    spk = speaker(ctx, srv, "talk", "tone", tone=440, seconds=30,
                  token=api(srv, "POST", "/api/spaces/talk/invites?role=speaker")[1]["token"])
    tid = wait_for(lambda: next((m["id"] for m in stage_doc(srv, "talk").get("stage", [])
                                 if m["name"] == "tone"), None), 10, "the tone speaker")
    before = ffmpeg_listener(ctx, srv, "/talk", 3, name="before_mute")
    w = shares(check_ffmpeg_decode(before, 3, 20), (440,), skip_s=1)
    check(w and all(x[440] > 0.5 for x in w), f"tone not in the programme before mute: {w}")
    host.send_json({"type": "mute", "id": tid, "muted": True})
    wait_for(lambda: any(m["id"] == tid and m["muted"] for m in stage_doc(srv, "talk")["stage"]),
             5, "muted in the state")
    after = ffmpeg_listener(ctx, srv, "/talk", 3, name="after_mute")
    pcm = check_ffmpeg_decode(after, 3, 20)
    w = shares(pcm, (440,), skip_s=1.5)  # skip the burst from before the mute
    check(not w, f"muted speaker still heard: {w[:3]}")
    # Ben (a speaker now) cannot mute or remove the host's stage; the host can remove
    lis.send_json({"type": "remove", "id": tid})
    lis.wait_for(lambda m: m.get("type") == "error" and "not allowed" in m["error"], 5,
                 "refusal of a speaker's remove")
    host.send_json({"type": "remove", "id": tid})
    rc = spk.wait(10)
    check(rc != 0, "the removed speaker's rostrum-speak exited 0")
    check("removed" in spk.tail() or "4001" in spk.tail(), f"no removal reason:\n{spk.tail()}")
    wait_for(lambda: all(m["id"] != tid for m in stage_doc(srv, "talk")["stage"]), 5,
             "the removed speaker gone from the state")

    # ending: every member is told, the mount goes away
    host.send_json({"type": "end"})
    lis.wait_for(lambda m: m.get("type") == "ended", 5, "ended")
    wait_for(lambda: http_request(srv.audience, "GET", "/talk").status == 404, 5,
             "the mount to end")
    host.close()
    lis.close()


@test(timeout=60, icecast=False)
def test_stage_bad_frames_close_only_that_client(ctx):
    srv = stage_server(ctx)
    good = speaker(ctx, srv, "room", "good", tone=440, seconds=10, record="good.ogg")
    wait_for(lambda: stage_doc(srv, "room").get("stage"), 10, "the space")
    r, inv = api(srv, "POST", "/api/spaces/room/invites?role=speaker")
    bad, _ = join(srv, "room", token=inv["token"], name="bad")
    bad.send_frame(1, b'{"type": "mute", ')  # not JSON
    check(bad.wait_closed(5) and bad.closed[0] == 1007, f"malformed control: {bad.closed}")
    bad2, _ = join(srv, "room", token=inv["token"], name="bad2")
    bad2.send_raw(b"\x81\x05hello")  # an unmasked client frame: a protocol error
    check(bad2.wait_closed(5) is not None, "unmasked frame did not close the connection")
    try:
        WS(srv.stage, "/ws/room?token=forged.token&name=x")
        check(False, "a forged token was accepted")
    except HandshakeRefused as e:
        check(e.status == 403, f"forged token -> {e.status}, want 403")
    try:
        WS(srv.stage, "/ws/room?key=wrong&name=x")
        check(False, "a wrong key was accepted")
    except HandshakeRefused as e:
        check(e.status == 401, f"wrong key -> {e.status}, want 401")
    check(good.wait(20) == 0, f"the good speaker was disturbed:\n{good.tail()}")
    res = json.loads(good.output().strip().splitlines()[-1])
    check(res["packets_received"] > 400, f"good speaker got {res['packets_received']} packets")


@test(timeout=60, icecast=False)
def test_stage_speakers_come_and_go_without_a_gap(ctx):
    srv = stage_server(ctx)
    r, created = api(srv, "POST", "/api/spaces?name=flow")
    check(r.status == 201, f"create -> {r.status}")
    lst = listen(ctx, srv, "/flow")
    t0 = time.monotonic()
    for i, f in enumerate((440, 550, 660)):
        p = speaker(ctx, srv, "flow", f"s{i}", tone=f, seconds=3, key=False,
                    token=created["speaker_token"])
        check(p.wait(15) == 0, f"speaker {i}:\n{p.tail()}")
        time.sleep(0.5)
    time.sleep(1)
    lst.close()
    wall = time.monotonic() - t0
    pages = check_listener_ogg(lst)
    secs = audio_seconds(pages)
    check(secs >= wall - 2.0, f"{secs:.1f} s of audio in {wall:.1f} s: the stream had a gap")
    gap = lst.max_gap(start=lst.t0 + 1.5)
    check(gap < 1.0, f"the listener received nothing for {gap:.1f} s while speakers changed")


@test(timeout=90, icecast=False)
def test_stage_browser_speaker_reaches_programme(ctx):
    browser = Path(__file__).resolve().parent.parent / "browser"
    check((browser / "node_modules" / "playwright-core").exists(),
          "tests/browser/node_modules missing: run scripts/install-deps test")
    srv = stage_server(ctx)
    r, created = api(srv, "POST", "/api/spaces?name=web")
    check(r.status == 201, f"create -> {r.status}")
    b = ctx.spawn("chromium", ["node", browser / "speak.mjs", f"http://127.0.0.1:{srv.audience}",
                               f"127.0.0.1:{srv.stage}", "web", created["speaker_token"], 14],
                  stdout=ctx.tmp / "chromium.json")
    wait_for(lambda: any(m["name"] == "browser" for m in stage_doc(srv, "web").get("stage", [])),
             30, "the browser on stage", interval=0.3)
    time.sleep(2)
    lst = ffmpeg_listener(ctx, srv, "/web", 6)
    pcm = check_ffmpeg_decode(lst, 6, timeout=30)
    rc = b.wait(40)
    check(rc == 0, f"browser speaker failed ({rc}): {b.output()[-800:]!r}\n{b.tail()}")
    # Chromium's fake microphone beeps; the programme must carry that sound
    s = pcm_samples(pcm[96000:])
    loud = sum(1 for i in range(0, len(s) - 4800, 4800)
               if max(abs(x) for x in s[i:i + 4800]) > 1000)
    check(loud >= 5, f"only {loud} loud 100 ms windows in 5 s of programme: the browser's "
                     "microphone did not reach listeners")
