"""Issue 11, item 5: /<space>.aac (ADTS, AAC-LC) and /<space>.mp3 (MP3) progressive streams,
encoded once per space from its Opus programme, only while someone listens."""

import os
import re
import shutil
import signal
import time

from harness import (PASSWORD, Server, basic_auth, check, check_ffmpeg_decode, check_tone, connect,
                     ffmpeg_listener, ffmpeg_source, get_json, http_request, listen, metric,
                     metrics, mount_status, note, read_head, status_sources, test, wait_for,
                     wait_live)

# MPEG-1 layer III bitrates by index (ISO/IEC 11172-3 2.4.2.3); 0: free format
MP3_KBPS = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]


def source_head_bytes(mount):
    """A source's PUT head and nothing after: a space that holds a slot, waiting for audio."""
    return (f"PUT {mount} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {basic_auth('source', PASSWORD)}\r\n"
            "Content-Type: audio/ogg\r\n\r\n").encode()


def split_frames(data, head_len, frame_len):
    """Splits <data> into frames: <frame_len>(header bytes, offset) checks a header and returns
    its frame's length. Returns (frames, bytes of an unfinished last frame)."""
    frames, i = [], 0
    while i + head_len <= len(data):
        n = frame_len(data[i:i + head_len], i)
        if i + n > len(data):
            break
        frames.append(data[i:i + n])
        i += n
    return frames, len(data) - i


def adts_len(h, i):
    """An ADTS header (ISO/IEC 13818-7 6.2): sync, MPEG-4, no CRC, AAC LC, 48 kHz."""
    check(h[0] == 0xFF and (h[1] & 0xF6) == 0xF0, f"no ADTS sync at byte {i}: {h.hex()}")
    check(h[1] & 1 == 1, f"ADTS frame at {i} has a CRC (protection_absent 0)")
    check(h[2] >> 6 == 1, f"ADTS frame at {i}: profile {h[2] >> 6}, want 1 (LC)")
    check((h[2] >> 2) & 15 == 3, f"ADTS frame at {i}: frequency index {(h[2] >> 2) & 15}")
    n = ((h[3] & 3) << 11) | (h[4] << 3) | (h[5] >> 5)
    check(n > 7, f"ADTS frame at {i} of length {n}")
    return n


def mp3_len(h, i):
    """An MPEG-1 layer III header at 48 kHz (ISO/IEC 11172-3 2.4.1.3)."""
    check(h[0] == 0xFF and (h[1] & 0xFE) == 0xFA, f"no MPEG-1 layer III sync at {i}: {h.hex()}")
    br = MP3_KBPS[h[2] >> 4]
    check(br > 0, f"MP3 frame at {i}: free or bad bitrate index {h[2] >> 4}")
    check((h[2] >> 2) & 3 == 1, f"MP3 frame at {i}: sampling index {(h[2] >> 2) & 3}, want 48 kHz")
    return 144 * br * 1000 // 48000 + ((h[2] >> 1) & 1)


def adts_frames(data):
    return split_frames(data, 7, adts_len)


def mp3_frames(data):
    return split_frames(data, 4, mp3_len)


def rendition_metrics(srv):
    vals, _ = metrics(srv)
    return {k: metric(vals, f"rostrum_rendition_{k}") for k in
            ("slots", "encoders", "starts_total", "errors_total", "frames_total",
             "cpu_seconds_total", "skips_total", "evictions_total")}


@test(timeout=90, icecast=False)
def test_renditions_decode_headers_status(ctx):
    """ffmpeg decodes /live.aac and /live.mp3 for 10 s without error and hears the source's tone;
    the responses carry the Ogg stream's headers with their own Content-Type; status-json lists
    them as extra sources with their listeners; nothing is encoded before the first listener."""
    srv = ctx.start_server(extra=["--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/live", 440, name="Test Space", description="Renditions",
                        genre="Testing")
    wait_live(srv, "/live", proc=src)
    wait_for(lambda: mount_status(srv, "/live.aac") and mount_status(srv, "/live.mp3"), 5,
             "status to list /live.aac and /live.mp3")
    time.sleep(1.5)
    m0 = rendition_metrics(srv)
    check(m0["slots"] == 2, f"rendition slots {m0['slots']}, want 2")
    check(m0["encoders"] == 0 and m0["starts_total"] == 0 and m0["frames_total"] == 0,
          f"an encoder ran with no listener: {m0}")
    for mount, ctype, subtype, kbps in (("/live.aac", "audio/aac", "AAC", 96),
                                        ("/live.mp3", "audio/mpeg", "MP3", 128)):
        st = mount_status(srv, mount)
        check(st.get("server_type") == ctype and st.get("subtype") == subtype,
              f"{mount} status type {st.get('server_type')!r}/{st.get('subtype')!r}")
        check(st.get("bitrate") == kbps, f"{mount} status bitrate {st.get('bitrate')!r}")
        check(st.get("server_name") == "Test Space", f"{mount} server_name {st.get('server_name')!r}")
        check(st.get("listeners") == 0, f"{mount} listeners {st.get('listeners')!r}, want 0")

    t0 = time.monotonic()
    la = ffmpeg_listener(ctx, srv, "/live.aac", 10, name="aac_listener")
    lm = ffmpeg_listener(ctx, srv, "/live.mp3", 10, name="mp3_listener")
    time.sleep(4)
    for mount in ("/live.aac", "/live.mp3"):
        st = mount_status(srv, mount)
        check(st.get("listeners") == 1 and st.get("listener_connections") == 1,
              f"{mount}: listeners {st.get('listeners')!r} connections "
              f"{st.get('listener_connections')!r}, want 1")
    live = mount_status(srv, "/live")
    check(live.get("listeners") == 0, f"/live counts the renditions' listeners: {live}")
    m1 = rendition_metrics(srv)
    check(m1["encoders"] == 2 and m1["starts_total"] == 2, f"encoders with two listeners: {m1}")
    vals, _ = metrics(srv)
    for mount in ("live.aac", "live.mp3"):
        v = metric(vals, "rostrum_space_listener_connections", space=mount)
        check(v == 1, f"rostrum_space_listener_connections{{space={mount}}} = {v}")
    check(metric(vals, "rostrum_spaces") == 1, "rostrum_spaces counts the renditions")
    pa = check_ffmpeg_decode(la, 10, timeout=30)
    pm = check_ffmpeg_decode(lm, 10, timeout=30)
    took = time.monotonic() - t0
    check(took < 14, f"10 s of AAC and MP3 took {took:.1f} s to arrive")
    check_tone(pa, 440, "AAC listener", skip_s=0.1)
    check_tone(pm, 440, "MP3 listener", skip_s=0.1)

    # the raw streams: the Ogg stream's headers, then whole frames from the first byte
    raw = {}
    for mount, ctype in (("/live.aac", "audio/aac"), ("/live.mp3", "audio/mpeg")):
        lst = listen(ctx, srv, mount)
        r = lst.resp
        check(r.status == 200, f"GET {mount} -> {r.status}")
        check(r.header("Content-Type") == ctype, f"{mount} Content-Type {r.header('Content-Type')!r}")
        check(r.header("icy-name") == "Test Space", f"{mount} icy-name {r.header('icy-name')!r}")
        check(r.header("icy-description") == "Renditions", f"{mount} icy-description")
        check(r.header("icy-genre") == "Testing", f"{mount} icy-genre {r.header('icy-genre')!r}")
        check(r.header("icy-br") == ("96" if ctype == "audio/aac" else "128"),
              f"{mount} icy-br {r.header('icy-br')!r}")
        cc = [v.strip() for v in r.header("Cache-Control", "").split(",")]
        check("no-cache" in cc and "no-store" in cc, f"{mount} Cache-Control {cc}")
        check(r.header("Access-Control-Allow-Origin") == "*", f"{mount} CORS")
        raw[mount] = lst
    time.sleep(3)
    frames, _ = adts_frames(raw["/live.aac"].data())
    fm, _ = mp3_frames(raw["/live.mp3"].data())
    # the burst (1 s) and 3 s of live: AAC frames are 1024 samples, MP3 ones 1152
    check(len(frames) >= 3.5 * 48000 / 1024, f"{len(frames)} ADTS frames in 3 s (with burst)")
    check(len(fm) >= 3.5 * 48000 / 1152, f"{len(fm)} MP3 frames in 3 s (with burst)")
    note(f"in 3 s after join: {len(frames)} ADTS frames, {len(fm)} MP3 frames; "
         f"encoder CPU so far {rendition_metrics(srv)['cpu_seconds_total']:.3f} s")
    check(rendition_metrics(srv)["errors_total"] == 0, "encoder errors")
    check(src.alive(), f"source died:\n{src.tail()}")


@test(timeout=60, icecast=False)
def test_renditions_one_encoder_for_many_and_linger(ctx):
    """Two listeners of /x.aac share one encoder; it stops rendition-linger-ms after the last
    leaves, and starts again for the next listener."""
    srv = ctx.start_server(extra=["--rendition-linger-ms", "1000", "--mp3-kbps", "0"])
    src = ffmpeg_source(ctx, srv, "/x", 660)
    wait_live(srv, "/x", proc=src)
    wait_for(lambda: mount_status(srv, "/x.aac"), 5, "/x.aac to be listed")
    check(mount_status(srv, "/x.mp3") is None, "mp3-kbps 0 still lists /x.mp3")
    r = http_request(srv.audience, "GET", "/x.mp3")
    check(r.status == 404, f"GET /x.mp3 with mp3-kbps 0 -> {r.status}, want 404")
    a = listen(ctx, srv, "/x.aac")
    b = listen(ctx, srv, "/x.aac")
    wait_for(lambda: mount_status(srv, "/x.aac").get("listener_connections") == 2, 5,
             "two listeners of /x.aac")
    # ffmpeg's first Ogg page holds a second of audio: the first frames come after it
    wait_for(lambda: len(adts_frames(a.data())[0]) > 40 and len(adts_frames(b.data())[0]) > 40,
             8, "both listeners to get a second of AAC")
    m = rendition_metrics(srv)
    check(m["encoders"] == 1 and m["starts_total"] == 1, f"two listeners, encoders: {m}")
    fa, _ = adts_frames(a.data())
    fb, _ = adts_frames(b.data())
    # the same frames: one encoder, the same ring
    common = set(fa) & set(fb)
    check(len(common) >= min(len(fa), len(fb)) // 2,
          f"the two listeners share {len(common)} of {len(fa)}/{len(fb)} frames")
    a.close()
    b.close()
    wait_for(lambda: rendition_metrics(srv)["encoders"] == 0, 5,
             "the encoder to stop after the linger")
    c = listen(ctx, srv, "/x.aac")
    wait_for(lambda: rendition_metrics(srv)["encoders"] == 1, 5, "the encoder to start again")
    time.sleep(1)
    check(rendition_metrics(srv)["starts_total"] == 2, "a new listener did not restart it")
    fc, _ = adts_frames(c.data())
    check(len(fc) > 20, f"the new listener got {len(fc)} frames")


@test(timeout=60, icecast=False)
def test_renditions_end_with_their_space(ctx):
    """A space that ends ends its renditions: their listeners are closed, status drops them,
    the mount is 404; relay feeds and /relay.json never carry renditions."""
    srv = ctx.start_server(grace_ms=500)
    src = ffmpeg_source(ctx, srv, "/e", 440)
    wait_live(srv, "/e", proc=src)
    wait_for(lambda: mount_status(srv, "/e.mp3"), 5, "/e.mp3 to be listed")
    idx = get_json(srv.audience, "/relay.json")
    check([s["mount"] for s in idx["spaces"]] == ["e"], f"/relay.json lists {idx['spaces']}")
    r = http_request(srv.audience, "GET", "/e.aac?relay=1")
    check(r.status == 404, f"a relay feed of /e.aac -> {r.status}, want 404")
    lst = listen(ctx, srv, "/e.mp3")
    wait_for(lambda: lst.nbytes() > 1000, 5, "MP3 bytes")
    src.kill()
    wait_for(lambda: lst.end is not None, 10, "the MP3 listener to be closed with its space")
    wait_for(lambda: not any(s["listenurl"].endswith((".aac", ".mp3"))
                             for s in status_sources(srv)), 5, "status to drop the renditions")
    for mount in ("/e.aac", "/e.mp3"):
        r = http_request(srv.audience, "GET", mount)
        check(r.status == 404, f"GET {mount} after its space ended -> {r.status}")
    # the names are the renditions': no source may take them
    s = connect(srv.stage)
    s.sendall(source_head_bytes("/e.aac"))
    resp, _ = read_head(s)
    check(resp.status == 400, f"a source on /e.aac -> {resp.status}, want 400")
    s.close()
    check(rendition_metrics(srv)["slots"] == 0, "rendition slots left")


@test(timeout=90, icecast=False)
def test_renditions_slot_reserve(ctx):
    """Renditions never take the slots spaces need: past the reserve a rendition answers 503
    with Retry-After (counted); every space still gets a slot, renditions giving theirs back."""
    srv = ctx.start_server(extra=["--rendition-reserve", "60", "--workers", "1"])
    a = ffmpeg_source(ctx, srv, "/a", 440, proc_name="source_a")
    wait_live(srv, "/a", proc=a)
    wait_for(lambda: mount_status(srv, "/a.aac") and mount_status(srv, "/a.mp3"), 5,
             "/a's renditions (63 free > 60)")
    b = ffmpeg_source(ctx, srv, "/b", 660, proc_name="source_b")
    wait_live(srv, "/b", proc=b)
    time.sleep(0.5)
    check(mount_status(srv, "/b.aac") is None, "/b.aac made a slot inside the reserve")
    r = http_request(srv.audience, "GET", "/b.aac")
    check(r.status == 503, f"GET /b.aac past the reserve -> {r.status}, want 503")
    check(r.header("Retry-After", "").isdigit(), f"Retry-After {r.header('Retry-After')!r}")
    r = http_request(srv.audience, "GET", "/nosuch.aac")
    check(r.status == 404, f"GET /nosuch.aac -> {r.status}, want 404")
    vals, _ = metrics(srv)
    refused = metric(vals, "rostrum_refused_total", reason="rendition_slots")
    check(refused == 1, f"rostrum_refused_total{{reason=rendition_slots}} = {refused}, want 1")
    # spaces unharmed: the 60 slots left and the renditions' 2 all go to spaces
    socks = []
    for i in range(62):
        s = connect(srv.stage)
        s.sendall(source_head_bytes(f"/w{i}"))
        resp, _ = read_head(s)
        check(resp.status == 200, f"space /w{i} -> {resp.status} with renditions holding slots")
        socks.append(s)
    m = rendition_metrics(srv)
    check(m["slots"] == 0 and m["evictions_total"] == 2, f"renditions after 64 spaces: {m}")
    r = http_request(srv.audience, "GET", "/a.aac")
    check(r.status == 503, f"GET /a.aac with every slot a space's -> {r.status}, want 503")
    lst = ffmpeg_listener(ctx, srv, "/b", 3, name="ogg_listener")
    check_tone(check_ffmpeg_decode(lst, 3, timeout=20), 660, "/b listener")
    for s in socks:
        s.close()


@test(timeout=60, icecast=False)
def test_renditions_aac_always_and_config_errors(ctx):
    """aac-always keeps the AAC encoder on with no listener (the HLS rendition reads it); bad
    bitrates are refused at start with a clear message."""
    srv = ctx.start_server(extra=["--aac-always", "1", "--aac-kbps", "64"])
    src = ffmpeg_source(ctx, srv, "/h", 440)
    wait_live(srv, "/h", proc=src)
    wait_for(lambda: rendition_metrics(srv)["encoders"] == 1, 5, "the always-on AAC encoder")
    wait_for(lambda: rendition_metrics(srv)["frames_total"] > 100, 8,
             "two seconds of AAC encoded with no listener")
    m = rendition_metrics(srv)
    check(m["encoders"] == 1 and m["starts_total"] == 1, f"aac-always, no listener: {m}")
    check(mount_status(srv, "/h.aac").get("bitrate") == 64, "aac-kbps 64 not shown")
    for key, val, want in (("--mp3-kbps", "100", "not an MP3 bitrate"),
                           ("--aac-kbps", "16", "too low"),
                           ("--aac-kbps", "999", "out of range"),
                           ("--rendition-reserve", "65", "out of range"),
                           ("--rendition-max-encoders", "0", "out of range")):
        p = ctx.spawn(f"bad{key}{val}", [srv.binary, "serve", "--audience", "127.0.0.1:0",
                                         "--stage", "127.0.0.1:0", "--source-password", "x",
                                         key, val])
        rc = p.wait(15)
        err = p.log.read_text(errors="replace")
        check(rc != 0 and want in err and key[2:] in err, f"{key} {val}: exit {rc}, {err!r}")


@test(timeout=90, icecast=False)
def test_renditions_survive_upgrade(ctx):
    """SIGUSR2: the new binary takes the rendition slots over; their listeners stay connected,
    an ffmpeg MP3 listener decodes through the upgrade without error, and the AAC stream stays
    whole ADTS frames."""
    exe = ctx.tmp / "bin" / "rostrum"
    exe.parent.mkdir(exist_ok=True)
    shutil.copy2(ctx.binary, exe)
    srv = Server(ctx, exe, extra=["--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/u", 440)
    wait_live(srv, "/u", proc=src)
    wait_for(lambda: mount_status(srv, "/u.aac"), 5, "/u.aac to be listed")
    raw = listen(ctx, srv, "/u.aac")
    dec = ffmpeg_listener(ctx, srv, "/u.mp3", 9, name="mp3_listener")
    time.sleep(3)
    new = exe.with_name("rostrum.new")
    shutil.copy2(ctx.binary, new)
    os.replace(new, exe)
    os.kill(srv.proc.pid, signal.SIGUSR2)
    wait_for(lambda: re.search(r"took over \d+ spaces", srv.log_text()), 15,
             "the new binary to take over")
    check("not upgrading" not in srv.log_text(), f"upgrade refused:\n{srv.proc.tail()}")
    check(re.search(r"transcode /u\.aac taken over", srv.log_text()),
          "the new binary did not take /u.aac over")
    pcm = check_ffmpeg_decode(dec, 9, timeout=30)
    check_tone(pcm, 440, "MP3 listener across the upgrade", skip_s=0.1)
    check(raw.end is None, f"the AAC listener was closed by the upgrade ({raw.end})")
    frames, _ = adts_frames(raw.data())
    check(len(frames) > 9 * 48000 / 1024 * 0.8, f"{len(frames)} ADTS frames in 9 s")
    check(rendition_metrics(srv)["errors_total"] == 0, "encoder errors after the upgrade")


@test(timeout=60, icecast=False)
def test_renditions_on_a_relay(ctx):
    """A relay makes its own renditions from the Ogg stream it pulls (the origin's renditions
    are not relayed): ffmpeg decodes the relay's /live.aac with the origin's tone, and the
    relay lists /live only as a space it relays."""
    origin = ctx.start_server(extra=["--workers", "1"])
    src = ffmpeg_source(ctx, origin, "/live", 550)
    wait_live(origin, "/live", proc=src)
    edge = Server(ctx, ctx.binary, relay=f"http://127.0.0.1:{origin.audience}",
                  extra=["--workers", "1"])
    wait_for(lambda: mount_status(edge, "/live.aac"), 15, "the relay's /live.aac")
    idx = get_json(edge.audience, "/relay.json")
    check([s["mount"] for s in idx["spaces"]] == ["live"], f"the relay's /relay.json: {idx}")
    lst = ffmpeg_listener(ctx, edge, "/live.aac", 5, name="relay_aac")
    check_tone(check_ffmpeg_decode(lst, 5, timeout=25), 550, "AAC listener on the relay",
               skip_s=0.1)
    o = rendition_metrics(origin)
    check(o["encoders"] == 0, f"the origin encoded for the relay's listener: {o}")


@test(timeout=60, icecast=False)
def test_renditions_encoder_cap(ctx):
    """rendition-max-encoders bounds the main process's encoding CPU whatever listeners ask
    for: with one allowed, a listener of a second space's rendition gets 503 with Retry-After
    (counted), a listener of the running one is taken, and the second starts once the first
    encoder stopped."""
    srv = ctx.start_server(extra=["--rendition-max-encoders", "1", "--mp3-kbps", "0",
                                  "--rendition-linger-ms", "300", "--workers", "2"])
    a = ffmpeg_source(ctx, srv, "/a", 440, proc_name="source_a")
    b = ffmpeg_source(ctx, srv, "/b", 660, proc_name="source_b")
    wait_live(srv, "/a", proc=a)
    wait_live(srv, "/b", proc=b)
    wait_for(lambda: mount_status(srv, "/a.aac") and mount_status(srv, "/b.aac"), 5,
             "both renditions listed")
    la = listen(ctx, srv, "/a.aac")
    wait_for(lambda: rendition_metrics(srv)["encoders"] == 1, 5, "/a.aac's encoder")
    for _ in range(3):  # whichever worker answers
        r = http_request(srv.audience, "GET", "/b.aac")
        check(r.status == 503, f"GET /b.aac with the one encoder busy -> {r.status}, want 503")
        check(r.header("Retry-After", "").isdigit(), f"Retry-After {r.header('Retry-After')!r}")
    vals, _ = metrics(srv)
    n = metric(vals, "rostrum_refused_total", reason="rendition_encoders")
    check(n == 3, f"rostrum_refused_total{{reason=rendition_encoders}} = {n}, want 3")
    la2 = listen(ctx, srv, "/a.aac")
    check(la2.resp.status == 200, f"a second listener of the running /a.aac -> {la2.resp.status}")
    wait_for(lambda: len(adts_frames(la2.data())[0]) > 20, 8, "frames for the second listener")
    check(rendition_metrics(srv)["encoders"] == 1, "more encoders than the cap")
    la.close()
    la2.close()
    wait_for(lambda: rendition_metrics(srv)["encoders"] == 0, 5, "/a.aac's encoder to stop")
    lb = ffmpeg_listener(ctx, srv, "/b.aac", 3, name="b_aac")
    check_tone(check_ffmpeg_decode(lb, 3, timeout=20), 660, "/b.aac once the cap allows it",
               skip_s=0.1)
