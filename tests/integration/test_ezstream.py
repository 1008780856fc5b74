"""A libshout source (ezstream), through a recording proxy to see what libshout sends.

libshout 2.4.6 connects up to three times (measured with a fake server):
  1. `OPTIONS * HTTP/1.1` with `Connection: Upgrade`, `Upgrade: TLS/1.0, HTTP/1.1`, no auth:
     the capability probe. If the answer carries `Allow:` listing PUT, libshout speaks PUT;
     otherwise (Icecast 2.4.4 just closes) it falls back to `SOURCE ... HTTP/1.0`.
  2. the chosen method with `Content-Length: 0` and no Authorization: an auth probe that
     must be refused with 401 (and must not take the mount).
  3. the chosen method with Authorization (and `Expect: 100-continue` for PUT): the stream.
ezstream loops the file, so the source sends chained Ogg streams (a new BOS at each loop).
"""

import os
import time

from harness import (RecordingProxy, check, check_ffmpeg_decode, check_listener_ogg, check_tone,
                     ffmpeg_listener, first_line, listen, make_opus_file, mount_status,
                     parse_head, test, wait_live)


def ezstream_config(ctx, port, password, mount, opus, name):
    path = ctx.tmp / "ezstream.xml"
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<ezstream>
  <servers><server>
    <protocol>HTTP</protocol><hostname>127.0.0.1</hostname><port>{port}</port>
    <user>source</user><password>{password}</password><reconnect_attempts>0</reconnect_attempts>
  </server></servers>
  <streams><stream>
    <mountpoint>{mount}</mountpoint><format>Ogg</format>
    <stream_name>{name}</stream_name><stream_genre>Talk</stream_genre>
  </stream></streams>
  <intakes><intake><type>file</type><filename>{opus}</filename></intake></intakes>
</ezstream>
""")
    os.chmod(path, 0o600)
    return path


@test(timeout=60)
def test_ezstream_libshout_source(ctx):
    srv = ctx.start_server()
    proxy = RecordingProxy(ctx, srv.stage)
    # Short, so ezstream loops it several times during the test and sends chained Ogg streams.
    # Icecast passes those through unchanged (same serial, sequence and granule restarting),
    # which ffmpeg cannot decode: there the file is long enough not to loop.
    opus = make_opus_file(ctx, 30 if ctx.icecast else 4)
    cfg = ezstream_config(ctx, proxy.port, srv.password, "/ez", opus, "EZ Space")
    ez = ctx.spawn("ezstream", ["ezstream", "-v", "-c", cfg])
    wait_live(srv, "/ez", proc=ez)
    raw = listen(ctx, srv, "/ez")
    check(raw.resp.status == 200, f"GET /ez -> {raw.resp.status}")
    check(raw.resp.header("icy-name") == "EZ Space", f"icy-name {raw.resp.header('icy-name')!r}")
    lst = ffmpeg_listener(ctx, srv, "/ez", 10)
    pcm = check_ffmpeg_decode(lst, 10, timeout=30)
    check_tone(pcm, 440, "listener of ezstream")
    check(ez.alive(), f"ezstream exited:\n{ez.tail()}")
    check(raw.end is None, f"raw listener's stream ended ({raw.end})")
    st = mount_status(srv, "/ez")
    check(st and st.get("server_name") == "EZ Space", f"status of /ez: {st!r}")

    reqs = proxy.requests()
    log = "\n".join(f"  {first_line(h) or '(nothing)'} -> {first_line(d)!r}" for h, d in reqs)
    streams = [(h, d) for h, d in reqs if "\nAuthorization:" in h.replace("\r\n", "\n")]
    check(len(streams) == 1, f"libshout made {len(streams)} authenticated connections (it "
                             f"reconnects after a failure); connections:\n{log}")
    method = streams[0][0].split(" ", 1)[0]
    if ctx.icecast:
        return  # Icecast 2.4.4 ignores OPTIONS, so libshout falls back to SOURCE: nothing more
    # rostrum: the probe must lead libshout to PUT, and the auth probe must get a 401.
    probes = [(h, d) for h, d in reqs if h.startswith("OPTIONS ")]
    check(probes, f"libshout sent no OPTIONS probe; connections:\n{log}")
    head = probes[0][1].split(b"\r\n\r\n", 1)[0]
    check(head.startswith(b"HTTP/1."), f"OPTIONS probe got no HTTP response: {head!r}")
    resp = parse_head(head)
    check(resp.status != 101, "server answered the TLS upgrade probe with 101")
    allow = [m.strip().upper() for m in (resp.header("Allow") or "").split(",")]
    check("PUT" in allow, f"OPTIONS answer has no Allow listing PUT: {head!r}")
    check(method == "PUT", f"libshout streamed with {method}, not PUT; connections:\n{log}")
    check(streams[0][1].startswith(b"HTTP/1.1 100 Continue"),
          f"streaming PUT answered {streams[0][1][:40]!r}, want 100 Continue")
    auth_probes = [(h, d) for h, d in reqs if h.startswith("PUT ") and (h, d) not in streams]
    for h, d in auth_probes:
        check(d.startswith(b"HTTP/1.1 401") or d.startswith(b"HTTP/1.0 401"),
              f"unauthenticated PUT probe answered {first_line(d)!r}, want 401")
    time.sleep(0.5)
    pages = check_listener_ogg(raw)  # one serial across ezstream's loops of the file
    check(len(pages) > 10, f"raw listener got {len(pages)} pages")
