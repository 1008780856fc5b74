"""TLS from the clients' side (issue 9, TLS item): `rostrum-speak --tls [--cacert CA]` joins a
stage over wss:// and is heard in the programme; a certificate it must not trust (another CA,
the system's store, another name) or a port that is not TLS fails with the reason and exit 1
before anything is sent; headless Chromium plays the listener page over https:// and speaks
from the speaker page over wss:// (fake microphone), trusting the test server by a pin of its
key (`--ignore-certificate-errors-spki-list`), and the programme carries its tone; ezstream
(libshout) sends a source over HTTPS and refuses another CA; the demo serves both TLS ports
with the CA it makes itself.

The CA and certificates are made here with `openssl` (test_tls.make_pki); every peer is real
(rostrum-speak, ffmpeg over https, Chromium) and on loopback.
"""

import base64
import hashlib
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness import (PASSWORD, ROOT, check, check_ffmpeg_decode, check_tone, ffmpeg_source,
                     goertzel_ratio, http_request, make_opus_file, pcm_samples, test, wait_for,
                     wait_live)
from test_tls import make_pki, server_cert

KEY = "tls-host-key"
BROWSER = ROOT / "tests" / "browser"


def tls_stage_server(ctx, pki=None):
    """rostrum with both TLS ports (audience and stage) beside the plain ones, one worker, with
    <pki> = (ca, chain, key) or a new make_pki. Returns (server, ca.pem)."""
    ca, chain, key = pki or make_pki(ctx)
    srv = ctx.start_server(extra=[
        "--host-key", KEY, "--workers", "1", "--audience-tls", "127.0.0.1:0", "--stage-tls",
        "127.0.0.1:0", "--tls-cert", str(chain), "--tls-key", str(key)])
    check(srv.audience_tls and srv.stage_tls, "no TLS ports in the ready line")
    return srv, ca


def speak_tls(ctx, host, port, name, tone=440, seconds=8, cacert=None, tls=True):
    argv = [Path(ctx.binary).parent / "rostrum-speak", "--stage", f"{host}:{port}", "--space",
            "room", "--key", KEY, "--name", name, "--tone", tone, "--seconds", seconds, "--json"]
    if tls:
        argv.append("--tls")
    if cacert:
        argv += ["--cacert", cacert]
    return ctx.spawn(f"speak_{name}", argv, stdout=ctx.tmp / f"speak_{name}.json")


def https_listener(ctx, srv, ca, mount, seconds, name="listener"):
    """ffmpeg decoding <mount> from the TLS audience port, verified against <ca>."""
    return ctx.spawn(name, ["ffmpeg", "-nostdin", "-v", "error", "-ca_file", str(ca), "-i",
                            f"https://localhost:{srv.audience_tls}{mount}", "-t", seconds,
                            "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                     stdout=ctx.tmp / f"{name}.pcm")


def share_windows(pcm, freq, skip_s=1.0, window=0.25):
    """Per window of the PCM after <skip_s>: (peak, share of energy at <freq>)."""
    s = pcm_samples(pcm[int(skip_s * 96000) // 2 * 2:])
    n = int(48000 * window)
    return [(max(abs(x) for x in s[i:i + n]), goertzel_ratio(s[i:i + n], freq))
            for i in range(0, len(s) - n + 1, n)]


def last_json(proc):
    lines = proc.output().decode(errors="replace").strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


@test(timeout=90, icecast=False)
def test_issue9_tls_speak_joins_over_wss_and_is_heard(ctx):
    srv, ca = tls_stage_server(ctx)
    # by address (the certificate's IP SAN) and by name (its DNS SAN, sent as SNI)
    a = speak_tls(ctx, "127.0.0.1", srv.stage_tls, "A", tone=440, seconds=10, cacert=ca)
    time.sleep(0.7)
    b = speak_tls(ctx, "localhost", srv.stage_tls, "B", tone=660, seconds=9, cacert=ca)
    time.sleep(2)
    pcm = check_ffmpeg_decode(https_listener(ctx, srv, ca, "/room", 5), 5, timeout=30)
    check(a.wait(25) == 0, f"speaker A over wss failed:\n{a.tail()}")
    check(b.wait(25) == 0, f"speaker B over wss failed:\n{b.tail()}")
    for who, p in (("A", a), ("B", b)):
        r = last_json(p)
        check(r.get("role") in ("host", "cohost", "speaker") and r.get("packets_sent", 0) > 300
              and r.get("packets_received", 0) > 300 and r.get("close_code") == 1000,
              f"{who}: {json.dumps(r)[:400]}")
    # the programme, heard over https, carries both voices
    w = share_windows(pcm, 440)
    w2 = share_windows(pcm, 660)
    both = [i for i in range(len(w)) if w[i][1] > 0.15 and w2[i][1] > 0.15]
    check(w and len(both) >= len(w) * 0.8,
          f"both tones in only {len(both)} of {len(w)} windows of the programme: "
          f"440 {[round(x[1], 2) for x in w[:6]]} 660 {[round(x[1], 2) for x in w2[:6]]}")


@test(timeout=90, icecast=False)
def test_issue9_tls_speak_refuses_an_untrusted_certificate(ctx):
    srv, ca = tls_stage_server(ctx)
    d = ctx.tmp / "pki"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        "other.key", "-out", "other-ca.pem", "-days", "2", "-subj",
                        "/CN=another CA"], cwd=d, capture_output=True, timeout=60)
    check(r.returncode == 0, f"openssl: {r.stderr[-400:]!r}")
    cases = [
        # (name, host, port, --cacert, --tls, what stderr must say)
        ("otherca", "127.0.0.1", srv.stage_tls, d / "other-ca.pem", True,
         "did not verify: self-signed certificate in certificate chain (is "),
        ("system", "127.0.0.1", srv.stage_tls, None, True,
         "not trusted by the system's store"),
        ("plainport", "127.0.0.1", srv.stage, ca, True, "is that port speaking TLS?"),
        ("nofile", "127.0.0.1", srv.stage_tls, d / "missing.pem", True,
         "missing.pem: No such file or directory"),
        ("notpem", "127.0.0.1", srv.stage_tls, d / "ext", True, "no CA certificate in it"),
    ]
    for name, host, port, cacert, tls, want in cases:
        p = speak_tls(ctx, host, port, name, seconds=2, cacert=cacert, tls=tls)
        rc = p.wait(20)
        err = p.log.read_text(errors="replace")
        check(rc == 1, f"{name}: exit {rc}, want 1: {err[-600:]}")
        check(want in err, f"{name}: stderr does not say {want!r}: {err[-600:]}")
        check("welcome" not in err, f"{name}: it joined all the same: {err[-600:]}")
    # nothing reached the stage: the key would have created the space
    r = http_request(srv.audience, "GET", "/state/room.json")
    check(r.status == 404, f"the refused attempts made a space: {r.status}")
    # the one CA it was told to trust works on the same server
    ok = speak_tls(ctx, "127.0.0.1", srv.stage_tls, "ok", seconds=1, cacert=ca)
    check(ok.wait(20) == 0, f"the right CA: {ok.tail()}")
    # --cacert alone is a usage error
    p = speak_tls(ctx, "127.0.0.1", srv.stage_tls, "usage", seconds=1, cacert=ca, tls=False)
    check(p.wait(10) == 2 and "--cacert is for --tls" in p.log.read_text(),
          f"--cacert without --tls: {p.tail()}")


@test(timeout=90, icecast=False)
def test_issue9_tls_speak_checks_the_host_name(ctx):
    # a certificate from the trusted CA, but for other names: refused by name and by address
    ca, _, _ = make_pki(ctx)
    (ctx.tmp / "pki" / "ext").write_text("subjectAltName=DNS:elsewhere.example,IP:127.0.0.2\n")
    chain, key = server_cert(ctx, "elsewhere")
    (ctx.tmp / "elsewhere-chain.pem").write_bytes(chain)
    (ctx.tmp / "elsewhere.key").write_bytes(key)
    srv, _ = tls_stage_server(ctx, (ca, ctx.tmp / "elsewhere-chain.pem",
                                    ctx.tmp / "elsewhere.key"))
    for host, want in (("127.0.0.1", "IP address mismatch"), ("localhost", "hostname mismatch")):
        p = speak_tls(ctx, host, srv.stage_tls, host.replace(".", "_"), seconds=2, cacert=ca)
        rc = p.wait(20)
        err = p.log.read_text(errors="replace")
        check(rc == 1 and want in err and "does not name the host" in err,
              f"{host}: exit {rc}, want 1 and {want!r}: {err[-600:]}")


# ---- Chromium over https:// and wss:// -------------------------------------------------------


def spki_pin(cert):
    """base64(SHA-256(SubjectPublicKeyInfo)) of the PEM certificate <cert>, with openssl: what
    Chromium's --ignore-certificate-errors-spki-list takes."""
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
                         capture_output=True, timeout=20, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, timeout=20, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def browser_env(ctx, pin=None, fake_audio=None):
    node = shutil.which("node")
    check(node and (BROWSER / "node_modules" / "playwright-core").is_dir(),
          "node or tests/browser/node_modules/playwright-core missing: make test-deps")
    env = {"HOME": str(ctx.tmp), "XDG_CONFIG_HOME": str(ctx.tmp / ".config"),
           "XDG_CACHE_HOME": str(ctx.tmp / ".cache"), "TMPDIR": str(ctx.tmp)}
    if pin:
        env["TLS_SPKI"] = pin
    if fake_audio:
        env["FAKE_AUDIO"] = str(fake_audio)
    return node, env


def run_browser(ctx, name, script, args, env, timeout):
    node = shutil.which("node")
    p = ctx.spawn(name, [node, BROWSER / script, *args], env=env, stdout=ctx.tmp / f"{name}.out")
    try:
        rc = p.wait(timeout)
    finally:
        p.signal(signal.SIGTERM)  # Playwright then closes the browser it started
    out = p.output().decode(errors="replace").strip()
    try:
        res = json.loads(out.splitlines()[-1])
    except (IndexError, ValueError):
        res = {}
    return rc, res, out, p


@test(timeout=150, icecast=False, exclusive=True)
def test_issue9_tls_browser_plays_over_https_with_a_pinned_key(ctx):
    pki = make_pki(ctx)
    srv, _ = tls_stage_server(ctx, pki)
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    pin = spki_pin(ctx.tmp / "pki" / "server.pem")
    url = f"https://localhost:{srv.audience_tls}/"
    # without the pin the test CA is not trusted: the page does not even load
    _, env = browser_env(ctx)
    rc, res, out, p = run_browser(ctx, "play_nopin", "play.mjs", [url, "/live", "10"], env, 80)
    check(rc != 0 and "ERR_CERT" in res.get("reason", ""),
          f"without the pin Chromium should refuse the certificate: rc {rc} {out[-600:]}")
    # with it, the listener page plays the stream over https
    _, env = browser_env(ctx, pin=pin)
    rc, res, out, p = run_browser(ctx, "play", "play.mjs", [url, "/live", "20"], env, 100)
    check(rc == 0, f"play.mjs over https exited with {rc}: {out[-1500:]}\n{p.tail(15)}")
    check(str(res.get("src", "")).startswith(f"https://localhost:{srv.audience_tls}/"),
          f"the player's stream is not the https one: {res.get('src')}")
    check(src.alive(), f"source died:\n{src.tail()}")


@test(timeout=150, icecast=False, exclusive=True)
def test_issue9_tls_browser_speaks_over_wss_and_is_heard(ctx):
    pki = make_pki(ctx)
    srv, ca = tls_stage_server(ctx, pki)
    tone = ctx.tmp / "mic.wav"
    r = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                        "sine=frequency=880:sample_rate=48000", "-t", "30", "-ac", "1", "-c:a",
                        "pcm_s16le", str(tone)], capture_output=True, timeout=30)
    check(r.returncode == 0, f"ffmpeg could not make the microphone's file: {r.stderr[-400:]!r}")
    r = http_request(srv.stage, "POST", "/api/spaces?name=web",
                     headers=[("Authorization", f"Bearer {KEY}")])
    check(r.status == 201, f"create -> {r.status}")
    token = json.loads(r.body)["speaker_token"]
    node, env = browser_env(ctx, pin=spki_pin(ctx.tmp / "pki" / "server.pem"), fake_audio=tone)
    # the page over https; stage= the TLS stage port: the page then speaks wss://
    b = ctx.spawn("speak", [node, BROWSER / "speak.mjs",
                            f"https://localhost:{srv.audience_tls}/",
                            f"localhost:{srv.stage_tls}", "web", token, "14"],
                  env=env, stdout=ctx.tmp / "speak.out")
    ctx.on_cleanup(lambda: b.signal(signal.SIGTERM))

    def on_stage():
        r = http_request(srv.audience, "GET", "/state/web.json")
        doc = json.loads(r.body) if r.status == 200 else {}
        return any(m.get("name") == "browser" for m in doc.get("stage", []))

    wait_for(on_stage, 40, "the browser on stage over wss", interval=0.3)
    time.sleep(2)
    pcm = check_ffmpeg_decode(https_listener(ctx, srv, ca, "/web", 6), 6, timeout=30)
    rc = b.wait(60)
    out = b.output().decode(errors="replace").strip()
    check(rc == 0, f"speak.mjs over wss exited with {rc}: {out[-1500:]}\n{b.tail()}")
    # the fake microphone's 880 Hz (-18 dBFS; the page's noise suppression takes a steady tone
    # down by some 20 dB) is in the programme the https listener heard; silence would be 0
    w = share_windows(pcm, 880)
    heard = [x for x in w if x[0] > 200 and x[1] > 0.8]
    check(len(heard) >= len(w) * 0.6,
          f"880 Hz in only {len(heard)} of {len(w)} windows of the programme (peak, share): "
          f"{[(x[0], round(x[1], 2)) for x in w[:8]]}")


# ---- the demo over TLS ------------------------------------------------------------------------


@test(timeout=120, icecast=False)
def test_issue9_tls_demo_serves_https_with_its_own_ca(ctx):
    # the demo as `make demo` runs it, with the binaries under test, on loopback port 0
    bin_dir = Path(ctx.binary).resolve().parent
    check((bin_dir / "rostrum-speak").exists(), f"{bin_dir}/rostrum-speak missing")
    tls_dir = ctx.tmp / "demo-tls"
    env = {"AUDIENCE": "127.0.0.1:0", "STAGE": "127.0.0.1:0", "AUDIENCE_TLS": "127.0.0.1:0",
           "STAGE_TLS": "127.0.0.1:0", "DEMO_TLS_DIR": str(tls_dir), "BUILD": str(bin_dir)}
    demo = ctx.spawn("demo", ["bash", ROOT / "scripts" / "demo"], env=env, cwd=ROOT,
                     stdout=ctx.tmp / "demo.out")
    ctx.on_cleanup(lambda: demo.kill(grace=10))
    wait_for(lambda: b"Ctrl-C stops it" in demo.output() or not demo.alive(), 60,
             "the demo to print its links")
    out = demo.output().decode(errors="replace")
    check(demo.alive(), f"the demo exited:\n{out[-1500:]}\n{demo.tail()}")
    m = re.search(r"listen: +https://127\.0\.0\.1:(\d+)/", out)
    j = re.search(r"join the stage: https://127\.0\.0\.1:(\d+)/speak\.html\?stage=127\.0\.0\.1:"
                  r"(\d+)&space=stage&token=\S+", out)
    check(m and j and m.group(1) == j.group(1), f"no https links in the demo's output:\n{out}")
    ca = tls_dir / "ca.pem"
    check(f"{ca}" in out, f"the demo does not name its CA file {ca}:\n{out}")
    aport, sport = int(m.group(1)), int(j.group(2))
    # the demo CA is all a client needs: curl (page, status) and the stage port's API
    r = subprocess.run(["curl", "-sS", "--cacert", str(ca), f"https://localhost:{aport}/"],
                       capture_output=True, timeout=15)
    check(r.returncode == 0 and b"<html" in r.stdout.lower(),
          f"the listener page over https: {r.returncode} {r.stderr[-300:]!r}")

    def on_stage():
        r = subprocess.run(["curl", "-sS", "--cacert", str(ca),
                            f"https://127.0.0.1:{aport}/state/stage.json"],
                           capture_output=True, timeout=15)
        try:
            names = {m["name"] for m in json.loads(r.stdout).get("stage", [])}
        except ValueError:
            return False
        return {"Alice", "Bob"} <= names

    # Bob speaks over wss:// with --cacert the demo CA
    wait_for(on_stage, 30, "Alice and Bob on the demo's stage", interval=0.5)
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{sport}", "-CAfile",
                        str(ca), "-verify_return_error", "-verify_ip", "127.0.0.1"], input=b"",
                       capture_output=True, timeout=20)
    check(r.returncode == 0 and b"Verify return code: 0 (ok)" in r.stdout,
          f"the demo's stage-tls port does not verify: {r.stderr[-400:]!r}")
    # the CA may vouch only for this machine: its name constraints refuse any other name
    cons = subprocess.run(["openssl", "x509", "-in", str(ca), "-noout", "-ext",
                           "nameConstraints"], capture_output=True, timeout=10, text=True)
    check("critical" in cons.stdout and "DNS:localhost" in cons.stdout,
          f"the demo CA has no name constraints: {cons.stdout} {cons.stderr}")
    # the plain demo is still there beside it
    pm = re.search(r"listen: +http://127\.0\.0\.1:(\d+)/", out)
    check(pm, f"no plain listen link:\n{out}")
    # (its /live source, an ffmpeg, starts after the speakers: on a loaded box it may still
    # be connecting when they are on stage)
    def plain_status():
        r = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{pm.group(1)}/status-json.xsl"],
                           capture_output=True, timeout=15)
        return r.stdout if b'/live"' in r.stdout and b'/stage"' in r.stdout else None

    wait_for(plain_status, 20, "/live and /stage in the plain port's status", interval=0.5)
    demo.signal(signal.SIGTERM)
    demo.wait(20)  # and its children with it (its trap)


# ---- a libshout source over TLS -------------------------------------------------------------


def ezstream_tls_config(ctx, port, ca, opus, name):
    """ezstream (libshout 2.4) sending <opus> over HTTPS (TLS from the first byte, RFC 2818) to
    localhost:<port>, trusting <ca> only."""
    path = ctx.tmp / f"{name}.xml"
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<ezstream>
  <servers><server>
    <protocol>HTTPS</protocol><hostname>localhost</hostname><port>{port}</port>
    <user>source</user><password>{PASSWORD}</password><reconnect_attempts>1</reconnect_attempts>
    <ca_file>{ca}</ca_file>
  </server></servers>
  <streams><stream><mountpoint>/ez</mountpoint><format>Ogg</format>
    <stream_name>EZ over TLS</stream_name></stream></streams>
  <intakes><intake><type>file</type><filename>{opus}</filename></intake></intakes>
</ezstream>
""")
    path.chmod(0o600)  # ezstream refuses a config others can read (it holds the password)
    return path


@test(timeout=90, icecast=False)
def test_issue9_tls_libshout_source_over_https(ctx):
    srv, ca = tls_stage_server(ctx)
    opus = make_opus_file(ctx, 30)
    # a CA that did not sign the server's certificate: libshout refuses, nothing goes live
    other = ctx.tmp / "pki" / "other-ca.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(ctx.tmp / "pki" / "other.key"), "-out", str(other), "-days", "2",
                        "-subj", "/CN=another CA"], capture_output=True, timeout=60)
    check(r.returncode == 0, f"openssl: {r.stderr[-400:]!r}")
    bad = ctx.spawn("ezstream_badca", ["ezstream", "-v", "-c",
                                       ezstream_tls_config(ctx, srv.stage_tls, other, opus, "bad")])
    rc = bad.wait(30)
    log = bad.log.read_text(errors="replace")
    check(rc != 0 and "bad certificate" in log, f"ezstream with another CA: exit {rc}:\n{log}")
    r = http_request(srv.audience, "GET", "/ez")
    check(r.status == 404, f"/ez went live through a refused certificate: {r.status}")
    # the right CA: the source streams over TLS and listeners hear its tone
    ez = ctx.spawn("ezstream", ["ezstream", "-v", "-c",
                                ezstream_tls_config(ctx, srv.stage_tls, ca, opus, "good")])
    wait_live(srv, "/ez", proc=ez)
    pcm = check_ffmpeg_decode(https_listener(ctx, srv, ca, "/ez", 6), 6, timeout=30)
    check_tone(pcm, 440, "an https listener of ezstream over TLS", skip_s=1)
    check(ez.alive(), f"ezstream exited:\n{ez.tail()}")
    log = ez.log.read_text(errors="replace")
    check(f"connected: https://localhost:{srv.stage_tls}/ez" in log,
          f"ezstream did not say it connected over https:\n{log[-800:]}")


@test(timeout=180, icecast=False, exclusive=True)
def test_issue9_tls_browser_host_console_runs_a_stage_over_https(ctx):
    # tests/browser/host.mjs (create, invite, request, promote, mute, demote, remove, end),
    # every page over https and every WebSocket over wss, the key pinned
    pki = make_pki(ctx)
    srv, _ = tls_stage_server(ctx, pki)
    _, env = browser_env(ctx, pin=spki_pin(ctx.tmp / "pki" / "server.pem"))
    rc, res, out, p = run_browser(ctx, "host", "host.mjs",
                                  [f"https://localhost:{srv.audience_tls}/",
                                   f"localhost:{srv.stage_tls}", KEY], env, 150)
    check(rc == 0 and '"step":"ended"' in out,
          f"host.mjs over https exited with {rc}: {out[-1500:]}\n{p.tail(15)}")
    # an https page may not open ws:// (mixed content): the members it seated came over wss
    log = srv.log_text()
    joins = [line for line in log.splitlines() if "joined as" in line]
    check(len(joins) >= 3, f"only {len(joins)} members joined:\n{log[-1500:]}")
