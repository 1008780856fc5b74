"""TLS on the audience side (issue 9, part 1): `--audience-tls HOST:PORT` with `--tls-cert`
(full chain) and `--tls-key` serves the same audience code over HTTPS: status, metrics and
listener streams, whose bytes are the plain stream's. Real peers: curl, ffmpeg and
`openssl s_client` against a test CA made here with `openssl`; a bad certificate or key stops
start-up with a message; the log says whether kernel TLS carries the listener writes.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

from harness import (StreamReader, check, check_ffmpeg_decode, check_listener_ogg, check_ogg_opus_stream,
                     ffmpeg_source, listen, metric, metrics, parse_ogg, test, wait_for, wait_live)


def make_pki(ctx):
    """A test CA and a server certificate for localhost / 127.0.0.1 signed by it, in the temp
    dir. Returns (ca.pem, chain.pem = server + CA, server.key)."""
    d = ctx.tmp / "pki"
    d.mkdir(exist_ok=True)

    def run(*argv):
        r = subprocess.run(["openssl", *argv], cwd=d, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"openssl {' '.join(argv)}: {r.stderr[-800:]}")

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=rostrum test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=rostrum-test-server")
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext")
    (d / "chain.pem").write_bytes((d / "server.pem").read_bytes() + (d / "ca.pem").read_bytes())
    return d / "ca.pem", d / "chain.pem", d / "server.key"


def tls_server(ctx, workers=None):
    ca, chain, key = make_pki(ctx)
    extra = ["--audience-tls", "127.0.0.1:0", "--tls-cert", str(chain), "--tls-key", str(key)]
    if workers is not None:
        extra += ["--workers", str(workers)]
    srv = ctx.start_server(extra=extra)
    check(srv.audience_tls, "no audience-tls port in the ready line")
    return srv, ca


def tls_socket(port, ca, rcvbuf=None):
    """A TLS connection to 127.0.0.1:<port>, verified against <ca> as "localhost"."""
    raw = socket.socket()
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", port))
    return ssl.create_default_context(cafile=str(ca)).wrap_socket(raw, server_hostname="localhost")


class TlsListener(StreamReader):
    """A listener over TLS (Python's ssl, verifying against <ca>), read as fast as it comes."""

    def __init__(self, port, mount, ca):
        super().__init__(tls_socket(port, ca), mount, f"localhost:{port}")


def curl(ca, url, *extra, timeout=15):
    return subprocess.run(["curl", "-sS", "--cacert", str(ca), *extra, url],
                          capture_output=True, timeout=timeout)


def https(srv, path, host="127.0.0.1"):
    return f"https://{host}:{srv.audience_tls}{path}"


@test(timeout=90, icecast=False)
def test_issue9_tls_curl_status_metrics_and_stream(ctx):
    srv, ca = tls_server(ctx)
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    r = curl(ca, https(srv, "/status-json.xsl"))
    check(r.returncode == 0, f"curl https status: {r.returncode} {r.stderr!r}")
    st = json.loads(r.stdout)
    sources = st["icestats"].get("source")
    sources = sources if isinstance(sources, list) else [sources]
    check(any(s and s.get("listenurl", "").endswith("/live") for s in sources),
          f"/live not in the status over TLS: {st}")
    r = curl(ca, https(srv, "/metrics"))
    check(r.returncode == 0 and b"rostrum_" in r.stdout, f"curl https metrics: {r.stderr!r}")
    r = curl(ca, https(srv, "/live", host="localhost"), "-m", "4", "-o", "-")
    # curl ends with 28 (the -m deadline): a live stream never ends
    check(r.returncode == 28, f"curl https stream: exit {r.returncode} {r.stderr!r}")
    pages, _ = parse_ogg(r.stdout)
    problems = check_ogg_opus_stream(pages)
    check(len(pages) > 5 and not problems,
          f"stream over TLS: {len(r.stdout)} bytes, {len(pages)} pages: {problems}")


@test(timeout=90, icecast=False)
def test_issue9_tls_listener_ogg_and_ffmpeg_decodes(ctx):
    srv, ca = tls_server(ctx, workers=2)
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    lst = TlsListener(srv.audience_tls, "/live", ca)
    ctx.on_cleanup(lst.close)
    ff = ctx.spawn("tlsffmpeg", ["ffmpeg", "-nostdin", "-v", "error", "-ca_file", str(ca),
                                 "-i", https(srv, "/live", host="localhost"), "-t", "3",
                                 "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                   stdout=ctx.tmp / "tlsffmpeg.pcm")
    check_ffmpeg_decode(ff, 3, 30)
    time.sleep(1)
    check(lst.head.startswith(b"HTTP/1.") and b" 200 " in lst.head.split(b"\r\n")[0],
          f"TLS listener head: {lst.head[:200]!r}")
    check(lst.end is None, f"TLS listener ended: {lst.end}")
    pages = check_listener_ogg(lst)
    check(len(pages) > 10, f"only {len(pages)} pages over TLS")


@test(timeout=60, icecast=False)
def test_issue9_tls_s_client_sees_the_certificate(ctx):
    srv, ca = tls_server(ctx)
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.audience_tls}",
                        "-servername", "localhost", "-CAfile", str(ca), "-verify_return_error",
                        "-showcerts"], input=b"", capture_output=True, timeout=20)
    out = r.stdout.decode(errors="replace")
    check(r.returncode == 0, f"s_client exit {r.returncode}: {r.stderr[-800:]!r}")
    check("CN = rostrum-test-server" in out or "CN=rostrum-test-server" in out,
          f"s_client did not see the server certificate:\n{out[:1500]}")
    check("Verify return code: 0 (ok)" in out, f"chain not verified:\n{out[-1500:]}")
    # the full chain is sent: the CA follows the server certificate
    check(out.count("-----BEGIN CERTIFICATE-----") == 2, "the chain is not whole")
    # a plain request on the TLS port is not served
    s = socket.create_connection(("127.0.0.1", srv.audience_tls), timeout=5)
    s.sendall(b"GET /status-json.xsl HTTP/1.0\r\n\r\n")
    s.settimeout(5)
    try:
        got = s.recv(4096)
    except OSError:
        got = b""
    s.close()
    check(b"icestats" not in got, "plain HTTP answered on the TLS port")


@test(timeout=60, icecast=False)
def test_issue9_tls_bad_certificate_or_key_stops_startup(ctx):
    ca, chain, key = make_pki(ctx)
    other = ctx.tmp / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(other)], check=True,
                   capture_output=True, timeout=60)
    cases = [(ctx.tmp / "missing.pem", key, "missing.pem"),
             (chain, ctx.tmp / "missing.key", "missing.key"),
             (chain, other, "does not match")]
    for cert, k, want in cases:
        r = subprocess.run([ctx.binary, "serve", "--audience", "127.0.0.1:0", "--stage",
                            "127.0.0.1:0", "--source-password", "pw", "--audience-tls",
                            "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(k)],
                           capture_output=True, timeout=20)
        err = r.stderr.decode(errors="replace")
        check(r.returncode == 1, f"{cert.name}/{k.name}: exit {r.returncode}, want 1: {err}")
        check(want in err and "not starting" in err, f"no clear message for {want}: {err}")
        check(b"ready" not in r.stdout, f"ready printed with a bad {want}")
    r = subprocess.run([ctx.binary, "serve", "--audience", "127.0.0.1:0", "--stage",
                        "127.0.0.1:0", "--source-password", "pw", "--audience-tls",
                        "127.0.0.1:0"], capture_output=True, timeout=20)
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 1 and "tls-cert" in err, f"no cert at all: {r.returncode} {err}")


@test(timeout=90, icecast=False)
def test_issue9_tls_and_plain_serve_the_same_bytes_and_log_ktls(ctx):
    for workers in (0, 1):
        srv, ca = tls_server(ctx, workers=workers)
        src = ffmpeg_source(ctx, srv, "/live", proc_name=f"source{workers}")
        wait_live(srv, "/live", proc=src)
        plain = listen(ctx, srv, "/live")
        tls = TlsListener(srv.audience_tls, "/live", ca)
        ctx.on_cleanup(tls.close)
        time.sleep(3)
        tls.close()
        plain.close()
        a, _ = parse_ogg(plain.data())
        b, _ = parse_ogg(tls.data())
        check(len(a) > 5 and len(b) > 5, f"workers {workers}: pages plain {len(a)} tls {len(b)}")
        # after the preamble (OpusHead, OpusTags) every page both got is the same bytes
        pa = {p.seq: p.raw for p in a if p.seq >= 2}
        pb = {p.seq: p.raw for p in b if p.seq >= 2}
        common = sorted(set(pa) & set(pb))
        check(len(common) >= 5, f"workers {workers}: only {len(common)} pages in common")
        diff = [s for s in common if pa[s] != pb[s]]
        check(not diff, f"workers {workers}: pages {diff[:5]} differ between plain and TLS")
        check(a[0].raw == b[0].raw, f"workers {workers}: OpusHead differs")
        log = srv.log_text()
        check("kTLS send in use" in log or "kTLS not available" in log,
              f"workers {workers}: the log does not say whether kTLS is used")
        srv.stop()
        src.kill()


class SlowTlsListener(StreamReader):
    """A TLS listener with a small receive buffer that reads <rate> bytes a second: its socket
    fills, so the server's TLS writes block mid-record (the fallback keeps the record) and the
    laggard rule jumps it to the live edge."""

    def __init__(self, port, mount, ca, rate):
        super().__init__(tls_socket(port, ca, rcvbuf=4096), mount, "localhost", rate)


@test(timeout=90, icecast=False)
def test_issue9_tls_slow_reader_stream_stays_valid(ctx):
    ca, chain, key = make_pki(ctx)
    cfg = ctx.tmp / "slow.conf"
    cfg.write_text("lag-ms = 2000\nmax-stalls = 100\n")
    srv = ctx.start_server(config=str(cfg), burst_ms=500, extra=[
        "--workers", "1", "--audience-tls", "127.0.0.1:0", "--tls-cert", str(chain),
        "--tls-key", str(key)])
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    stalls0 = metric(metrics(srv)[0], "rostrum_stalls_total")
    slow = SlowTlsListener(srv.audience_tls, "/live", ca, 3000)
    ctx.on_cleanup(slow.close)
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_stalls_total") > stalls0, 40,
             "the slow TLS reader to be jumped to the live edge")
    time.sleep(12)  # what was queued before the jump drains
    slow.close()
    check(slow.end is None, f"the slow TLS reader was closed ({slow.end})")
    pages = check_listener_ogg(slow, allow_jumps=True)
    jumps = sum(1 for a, b in zip(pages[2:], pages[3:]) if b.seq != a.seq + 1)
    check(jumps >= 1, f"no jump in the slow TLS reader's {len(pages)} pages")


def server_cert(ctx, cn):
    """Another server certificate (CN <cn>) from the CA make_pki made. Returns (chain, key)."""
    d = ctx.tmp / "pki"
    for argv in (["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{cn}.key", "-out",
                  f"{cn}.csr", "-subj", f"/CN={cn}"],
                 ["x509", "-req", "-in", f"{cn}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-CAcreateserial", "-out", f"{cn}.pem", "-days", "2", "-extfile", "ext"]):
        r = subprocess.run(["openssl", *argv], cwd=d, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"openssl {argv[0]}: {r.stderr[-500:]}")
    chain = (d / f"{cn}.pem").read_bytes() + (d / "ca.pem").read_bytes()
    return chain, (d / f"{cn}.key").read_bytes()


def served_cn(port, ca):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                        "localhost", "-CAfile", str(ca), "-verify_return_error"], input=b"",
                       capture_output=True, timeout=20)
    out = r.stdout.decode(errors="replace")
    check(r.returncode == 0 and "Verify return code: 0 (ok)" in out,
          f"s_client: {r.returncode} {r.stderr[-500:]!r}")
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN", 1)[1].lstrip(" =")
    raise AssertionError(f"no subject in s_client output:\n{out[:1000]}")


@test(timeout=120, icecast=False)
def test_issue9_tls_sighup_rereads_certificate_for_new_connections(ctx):
    import signal
    ca, chain, key = make_pki(ctx)
    live_cert, live_key = ctx.tmp / "fullchain.pem", ctx.tmp / "privkey.pem"
    live_cert.write_bytes(chain.read_bytes())
    live_key.write_bytes(key.read_bytes())
    cfg = ctx.tmp / "tls.conf"
    cfg.write_text(f"tls-cert = {live_cert}\ntls-key = {live_key}\n")
    srv = ctx.start_server(config=str(cfg), extra=["--workers", "1", "--audience-tls",
                                                   "127.0.0.1:0"])
    src = ffmpeg_source(ctx, srv, "/live")
    wait_live(srv, "/live", proc=src)
    check(served_cn(srv.audience_tls, ca) == "rostrum-test-server", "not the first certificate")
    old = TlsListener(srv.audience_tls, "/live", ca)
    ctx.on_cleanup(old.close)
    time.sleep(1)
    # certbot's deploy hook: the files are replaced, then the server gets SIGHUP
    new_chain, new_key = server_cert(ctx, "rostrum-renewed")
    live_cert.write_bytes(new_chain)
    live_key.write_bytes(new_key)
    srv.proc.signal(signal.SIGHUP)
    wait_for(lambda: srv.log_text().count("certificate re-read from") >= 2, 15,
             "the main process and the worker to re-read the certificate")
    check(served_cn(srv.audience_tls, ca) == "rostrum-renewed",
          "a new connection after SIGHUP does not get the new certificate")
    # a broken file on reload keeps the running certificate
    live_key.write_bytes(b"not a key\n")
    srv.proc.signal(signal.SIGHUP)
    wait_for(lambda: srv.log_text().count("kept the running certificate") >= 2, 15,
             "the bad key to be refused by both processes")
    check(served_cn(srv.audience_tls, ca) == "rostrum-renewed", "lost the certificate")
    n = len(old.data())
    time.sleep(2)
    old.close()
    check(old.end is None, f"the listener from before the reload was closed ({old.end})")
    check(len(old.data()) > n, "the listener from before the reload stopped receiving")
    check_listener_ogg(old)


def stage_tls_server(ctx):
    from test_stage import KEY
    ca, chain, key = make_pki(ctx)
    srv = ctx.start_server(extra=["--host-key", KEY, "--workers", "1", "--stage-tls",
                                  "127.0.0.1:0", "--tls-cert", str(chain), "--tls-key",
                                  str(key)])
    check(srv.stage_tls, "no stage-tls port in the ready line")
    return srv, ca, KEY


@test(timeout=90, icecast=False)
def test_issue9_tls_wss_member_joins_stage_and_hears_the_mix(ctx):
    from test_stage import speaker
    from wsclient import WS
    srv, ca, key = stage_tls_server(ctx)
    # the API over HTTPS: create the space
    r = curl(ca, f"https://localhost:{srv.stage_tls}/api/spaces?name=room", "-X", "POST",
             "-H", f"Authorization: Bearer {key}")
    check(r.returncode == 0, f"curl https API: {r.returncode} {r.stderr!r}")
    created = json.loads(r.stdout)
    check("speaker_token" in created, f"create over HTTPS: {r.stdout[:300]!r}")
    a = speaker(ctx, srv, "room", "A", tone=440, seconds=12)
    sslctx = ssl.create_default_context(cafile=str(ca))
    ws = WS(srv.stage_tls, f"/ws/room?token={created['speaker_token']}&name=wss",
            wrap=lambda s: sslctx.wrap_socket(s, server_hostname="localhost"))
    welcome = ws.wait_for(lambda m: m.get("type") == "welcome", 5, "welcome over wss")
    check(welcome.get("role") in ("speaker", "listener"), f"welcome: {welcome}")
    deadline = time.monotonic() + 15
    while ws.binary < 100 and time.monotonic() < deadline:
        try:
            ws.read_frame(timeout=1)
        except (socket.timeout, TimeoutError):
            pass
    check(ws.binary >= 100, f"only {ws.binary} audio frames of the mix over wss")
    ws.close()
    check(a.wait(25) == 0, f"speaker A failed:\n{a.tail()}")


@test(timeout=90, icecast=False)
def test_issue9_tls_ffmpeg_source_over_tls(ctx):
    from harness import PASSWORD, ffmpeg_listener
    srv, ca, key = stage_tls_server(ctx)
    src = ctx.spawn("tlssource", [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning", "-re", "-f", "lavfi",
        "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "libopus", "-b:a", "48k",
        "-vbr", "off", "-f", "ogg", "-content_type", "audio/ogg", "-tls", "1",
        f"icecast://source:{PASSWORD}@127.0.0.1:{srv.stage_tls}/live"])
    wait_live(srv, "/live", proc=src)
    check_ffmpeg_decode(ffmpeg_listener(ctx, srv, "/live", 3), 3, 30)


ACCESS_DENIED_ALERT = bytes([21, 3, 3, 0, 2, 2, 49])  # fatal access_denied, in the clear


def raw_bytes_until_close(port, addr, timeout=5):
    """Connects from <addr>, sends nothing, returns every byte the server sends until it
    closes (or resets) the connection."""
    s = socket.create_connection(("127.0.0.1", port), source_address=(addr, 0), timeout=timeout)
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except ConnectionResetError:
        pass
    finally:
        s.close()
    return got


@test(timeout=60, icecast=False)
def test_tls_port_refusal_is_a_tls_alert_not_plaintext_issue10(ctx):
    """Over max-conns-per-ip on a TLS port, the refusal at accept is a TLS alert record
    (access_denied), never the plaintext 429 a TLS client cannot parse; counted and logged like
    the plain refusal. Audience-tls (a worker) and stage-tls (the main process)."""
    ca, chain, key = make_pki(ctx)
    srv = ctx.start_server(extra=[
        "--workers", "1", "--max-conns-per-ip", "2", "--head-timeout-ms", "30000",
        "--audience-tls", "127.0.0.1:0", "--stage-tls", "127.0.0.1:0",
        "--tls-cert", str(chain), "--tls-key", str(key)])
    before = metric(metrics(srv)[0], "rostrum_refused_total", reason="conns_per_ip") or 0
    refusals = 0
    for port, addr in ((srv.audience_tls, "127.0.0.2"), (srv.stage_tls, "127.0.0.3")):
        held = [socket.create_connection(("127.0.0.1", port), source_address=(addr, 0))
                for _ in range(2)]
        time.sleep(0.3)
        got = raw_bytes_until_close(port, addr)
        check(got == ACCESS_DENIED_ALERT, f"port {port}: the refusal sent {got[:80]!r}, want "
              f"the access_denied alert {ACCESS_DENIED_ALERT!r}")
        # a real TLS client: the handshake ends with the alert, not a record-layer error
        raw = socket.create_connection(("127.0.0.1", port), source_address=(addr, 0), timeout=5)
        try:
            ssl.create_default_context(cafile=str(ca)).wrap_socket(
                raw, server_hostname="localhost").close()
            check(False, f"port {port}: the TLS handshake over the limit succeeded")
        except ssl.SSLError as e:
            check("ACCESS_DENIED" in str(e).upper() or "ACCESS DENIED" in str(e).upper(),
                  f"port {port}: the TLS client saw {e!r}, want an access_denied alert")
        finally:
            raw.close()
        refusals += 2
        if addr == "127.0.0.2":
            # the plain audience port shares the worker's table: still a plaintext 429 there
            s = socket.create_connection(("127.0.0.1", srv.audience), source_address=(addr, 0),
                                         timeout=5)
            s.sendall(b"GET /status-json.xsl HTTP/1.0\r\n\r\n")
            head = s.recv(4096)
            s.close()
            check(head.startswith(b"HTTP/1.0 429"), f"the plain port answered {head[:60]!r}")
            refusals += 1
        for h in held:
            h.close()
        # under the limit again: served
        wait_for(lambda: served_ok(port, ca, addr), 5, f"a TLS request on {port} once "
                 "the held connections closed")
        # openssl s_client (it cannot pick its source address: 127.0.0.1 over the limit)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        time.sleep(0.3)
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                            "-servername", "localhost", "-CAfile", str(ca)],
                           input="", capture_output=True, text=True, timeout=20)
        for h in held:
            h.close()
        check("alert access denied" in (r.stdout + r.stderr).lower(),
              f"port {port}: openssl s_client: {(r.stdout + r.stderr)[-600:]}")
        refusals += 1
        wait_for(lambda: served_ok(port, ca, "127.0.0.1"), 5, "127.0.0.1 under the limit again")
    after = metric(metrics(srv)[0], "rostrum_refused_total", reason="conns_per_ip") or 0
    check(after - before >= refusals, f"refusals counted {after - before}, want {refusals}")
    check(re.search(r"over 2 connections, refused \(TLS port", srv.log_text()),
          "the TLS refusal is not logged")


def served_ok(port, ca, addr):
    """1 if a TLS request from <addr> to <port> is answered (not refused)."""
    raw = socket.create_connection(("127.0.0.1", port), source_address=(addr, 0), timeout=5)
    try:
        s = ssl.create_default_context(cafile=str(ca)).wrap_socket(raw,
                                                                   server_hostname="localhost")
        s.sendall(b"GET /status-json.xsl HTTP/1.0\r\nHost: localhost\r\n\r\n")
        return s.recv(64).startswith(b"HTTP/1.")
    except (ssl.SSLError, OSError):
        return False
    finally:
        raw.close()


@test(timeout=60, icecast=False)
def test_wss_burst_over_read_budget_is_all_read_issue10(ctx):
    """A wss member's burst larger than the WebSocket read budget (64 KiB a turn), ending
    inside a TLS record: the plaintext OpenSSL still holds when the budget runs out is read on
    the next loop turn, not when the client next sends something. The burst is written while
    the main process is stopped, so all of it waits in the socket; each of its control pings
    must be answered with a pong without anything sent after it."""
    import signal
    from wsclient import WS
    srv, ca, key = stage_tls_server(ctx)
    sslctx = ssl.create_default_context(cafile=str(ca))

    def wrap(s):
        return sslctx.wrap_socket(s, server_hostname="localhost")

    host = WS(srv.stage_tls, f"/ws/room?key={key}&name=host", wrap=wrap)  # creates the space
    host.wait_for(lambda m: m.get("type") == "welcome", 5, "the host's welcome")
    ws = WS(srv.stage_tls, "/ws/room?name=burst", wrap=wrap)  # a member off stage
    ws.wait_for(lambda m: m.get("type") == "welcome", 5, "the member's welcome")
    # 65,008 bytes of binary frame (a listener's audio goes nowhere; Python's ssl writes it as
    # four records), then 40 pings of 21 bytes in one more record: 528 bytes of that record
    # fit the 65,536-byte budget, the other 312 wait in OpenSSL with the socket drained
    npings = 40
    ping = json.dumps({"type": "ping"}).encode()
    frames = b""
    for _ in range(npings):
        mask = os.urandom(4)
        frames += bytes([0x81, 0x80 | len(ping)]) + mask + bytes(
            b ^ mask[j % 4] for j, b in enumerate(ping))
    os.kill(srv.proc.pid, signal.SIGSTOP)
    try:
        ws.send_frame(2, b"\0" * 65000)
        ws.send_raw(frames)
        time.sleep(0.3)
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)

    def pongs():
        return sum(1 for m in ws.messages if m.get("type") == "pong")

    deadline = time.monotonic() + 3
    while pongs() < npings and time.monotonic() < deadline:
        try:
            ws.read_frame(timeout=max(0.05, deadline - time.monotonic()))
        except (socket.timeout, TimeoutError):
            break
    check(pongs() == npings, f"{pongs()} of the burst's {npings} pings answered within 3 s: the "
          "rest waited inside OpenSSL for the client's next bytes")
    ws.close()
    host.close()


@test(timeout=120, icecast=False)
def test_issue10_rostrum_load_listens_over_tls(ctx):
    """rostrum-load listen on an https:// URL (bench/tls's client): its listeners shake hands in
    the event loop, verify the test CA (--cacert), and check the stream read through SSL_read
    with the same Ogg checker as plain ones; its /metrics read goes over TLS too. Without the
    CA the handshake is refused and counted as such; --insecure takes any certificate."""
    load = Path(ctx.binary).parent / "rostrum-load"
    srv, ca = tls_server(ctx, workers=2)
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)

    def run(name, n, seconds, *extra):
        p = ctx.spawn(name, [load, "listen", "--url", https(srv, "/live"), "--listeners", n,
                             "--rate", 20, "--seconds", seconds, "--json", *extra],
                      stdout=ctx.tmp / f"{name}.json")
        check(p.wait(seconds + 40) == 0, f"rostrum-load ({name}) failed:\n{p.tail()}")
        return json.loads(p.output().strip().splitlines()[-1])

    r = run("load_tls", 20, 15, "--cacert", str(ca))
    check(r["tls"] is True and r["tls_verify"] is True, f"not a verified TLS run: {r}")
    check(r["connected"] == 20, f"connected {r['connected']} of 20: {r['refused']}")
    check(r["stalls"] == 0 and r["seq_gaps"] == 0 and r["crc_errors"] == 0 and
          r["sync_losses"] == 0, f"stalls {r['stalls']}, gaps {r['seq_gaps']}, CRC errors "
          f"{r['crc_errors']}, sync losses {r['sync_losses']}")
    check(r["held_bitrate"] == 20, f"only {r['held_bitrate']} of 20 held the bitrate")
    # 15 s of 48 kb/s: the audio went through the checker, not just a head
    check(r["bytes"] > 20 * 10 * 6000, f"only {r['bytes']} audio bytes")
    check(r.get("server_listeners") == r["tool_listeners"] == 20,
          f"server counts {r.get('server_listeners')} (over https /metrics: "
          f"{r.get('metrics_error')}), tool {r['tool_listeners']}")
    check("kTLS" in srv.log_text(), "the server never said whether kTLS carries the writes")

    # the system's CAs do not know the test CA: every handshake fails, and is counted so
    r = run("load_noca", 3, 3, "--metrics-url", "none")
    check(r["connected"] == 0 and r["refused"]["tls_handshake"] == 3,
          f"unverifiable server accepted: {r['connected']} connected, {r['refused']}")
    r = run("load_insecure", 3, 4, "--insecure", "--metrics-url", "none")
    check(r["tls_verify"] is False and r["connected"] == 3,
          f"--insecure: {r['connected']} of 3 connected, {r['refused']}")
