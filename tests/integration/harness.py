"""Integration-test harness for rostrum: processes, a raw HTTP client, Ogg parsing, audio checks.

Standard library only.  A test is a function `test_*(ctx)` in a `test_*.py` module beside this
file; `run.py` runs each one in its own process (and process group) with its own temp dir and a
timeout, and kills everything the test started when it ends, whatever happened.

The same tests run against Icecast 2 (`run.py icecast2`), which the server under test imitates;
tests or parts of tests that check rostrum-only behaviour are marked and skipped there.

Contract of a test: it receives a `Ctx`; it starts its server with `ctx.start_server()` and its
peers with `ctx.spawn()` / the helpers below; it fails by raising (use `check()`).  On return the
harness stops each server with SIGTERM while its peers are still connected and requires a clean
exit (exit 0, no sanitizer report, no worker left behind), then stops every other process.
"""

import array
import base64
import json
import math
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-src"
TOKEN_ENV = "ROSTRUM_ITEST_TOKEN"
SERVER_ENV = "ROSTRUM_ITEST_SERVER"
SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "AddressSanitizer:DEADLYSIGNAL",
    "runtime error:",
    "SUMMARY: UndefinedBehaviorSanitizer",
)


class TestFailure(AssertionError):
    pass


class FatalFailure(TestFailure):
    """A failure that no amount of waiting can mend (wait_for passes it on at once)."""


class Skip(Exception):
    """Raised by a test that does not apply to the server kind under test."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


NOTE = "#note "  # a line of the test's output that run.py shows under the test's result
PART_SKIPPED = "skipped part: "


def note(text):
    """Reports <text> (measured figures, ...) under the test's result line, pass or fail."""
    for line in str(text).splitlines() or [""]:
        print(f"{NOTE}{line}", flush=True)


def skip_part(what, reason):
    """A part of a test that cannot run here (a feature not in this build yet): reported
    under the result line and counted in run.py's summary (`N parts skipped`), never a
    silent pass."""
    note(f"{PART_SKIPPED}{what}: {reason}")


def test(timeout=60, icecast=True, exclusive=False):
    """Decorator for test metadata: <timeout> in seconds, <icecast> False when the test checks
    rostrum-only behaviour, <exclusive> True to run with no other test beside it."""

    def wrap(fn):
        fn.timeout = timeout
        fn.icecast = icecast
        fn.exclusive = exclusive
        return fn

    return wrap


def wait_for(cond, timeout, what, interval=0.1):
    """Polls <cond>() until it returns a true value (returned) or <timeout> s pass (failure)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except FatalFailure:
            raise
        except (OSError, ValueError, TestFailure) as e:
            last_exc = e
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise TestFailure(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def tail(path, lines=25):
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").rstrip("\n").split("\n")
    return "\n".join(text[-lines:])


# ---- processes ------------------------------------------------------------------------------


class Proc:
    """A child process whose stderr (and, unless redirected, stdout) goes to a log file."""

    def __init__(self, ctx, name, argv, stdout=None, env=None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = ctx.tmp / f"{name}.log"
        self.stdout_path = Path(stdout) if stdout else None
        self._errf = open(self.log, "ab")
        self._outf = open(self.stdout_path, "wb") if stdout else self._errf
        e = dict(os.environ)
        e.update(env or {})
        self.started = time.monotonic()
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._outf,
                                  stderr=self._errf, env=e, cwd=cwd or ctx.tmp)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout):
        """Waits for exit and returns the exit code; fails if still running after <timeout> s."""
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{self.name} still running after {timeout}s\n"
                              f"--- {self.name} log:\n{self.tail()}")

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, grace=3.0):
        """SIGTERM, then SIGKILL after <grace> s; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.p.wait()
        self._close_files()
        return self.p.returncode

    def _close_files(self):
        for f in (self._errf, self._outf):
            try:
                f.close()
            except OSError:
                pass

    def tail(self, lines=25):
        return tail(self.log, lines)

    def output(self):
        return self.stdout_path.read_bytes() if self.stdout_path else b""


class Server:
    """rostrum under test: `BINARY serve ...` on port 0, ports read from its ready line."""

    kind = "rostrum"

    def __init__(self, ctx, binary, grace_ms=None, burst_ms=None, page_ms=None, config=None,
                 log_level="debug", extra=(), relay=None, audience="127.0.0.1:0"):
        """<relay>: upstream URL(s): `rostrum relay --upstream RELAY` (no stage port) instead of
        `serve`. <audience>: a fixed address (a server restarted on the same port)."""
        self.ctx = ctx
        self.binary = str(binary)
        self.password = PASSWORD
        self.relay = relay
        if relay:
            argv = [binary, "relay", "--upstream", relay, "--audience", audience]
        else:
            argv = [binary, "serve", "--audience", audience, "--stage", "127.0.0.1:0",
                    "--source-password", PASSWORD]
        if config:
            argv += ["--config", config]
        for flag, v in (("--grace-ms", grace_ms), ("--burst-ms", burst_ms), ("--page-ms", page_ms)):
            if v is not None:
                argv += [flag, str(v)]
        if log_level:
            argv += ["--log-level", log_level]
        if "--drain-ms" not in [str(x) for x in extra]:
            argv += ["--drain-ms", "0"]  # tests stop at once unless they test the drain
        argv += list(extra)
        # A mark of its own, to find this server's processes (forked workers) after it exits.
        self.mark = f"{ctx.token}-{len(ctx.servers) + 1}"
        env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1"),
               "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS", "print_stacktrace=1"),
               SERVER_ENV: self.mark}
        n = len(ctx.servers) + 1
        self.proc = Proc(ctx, f"server{n}", argv, stdout=ctx.tmp / f"server{n}.stdout", env=env)
        self.log = self.proc.log
        self.stopped = False
        ctx.servers.append(self)
        m = None

        def ready():
            nonlocal m
            if not self.proc.alive():
                raise FatalFailure(f"server exited with {self.proc.p.returncode} before ready:\n"
                                   f"{self.proc.tail()}")
            first = self.proc.output().split(b"\n", 1)
            if len(first) < 2:
                return False
            if relay:
                m = re.fullmatch(rb"ready audience=127\.0\.0\.1:(\d+) relay=\d+()()()", first[0])
                if not m:
                    raise FatalFailure(f"bad ready line {first[0]!r}")
                return True
            m = re.fullmatch(rb"ready audience=127\.0\.0\.1:(\d+) stage=127\.0\.0\.1:(\d+)"
                             rb"(?: audience-tls=127\.0\.0\.1:(\d+))?"
                             rb"(?: stage-tls=127\.0\.0\.1:(\d+))?", first[0])
            if not m:
                raise FatalFailure(f"bad ready line {first[0]!r}")
            return True

        wait_for(ready, 15, "the server's ready line", interval=0.02)
        self.audience = int(m.group(1))
        self.stage = int(m.group(2)) if m.group(2) else None
        self.audience_tls = int(m.group(3)) if m.group(3) else None  # with --audience-tls
        self.stage_tls = int(m.group(4)) if m.group(4) else None  # with --stage-tls

    def url(self, path):
        return f"http://127.0.0.1:{self.audience}{path}"

    def source_url(self, mount):
        return f"icecast://source:{self.password}@127.0.0.1:{self.stage}{mount}"

    def log_text(self):
        return self.log.read_bytes().decode("utf-8", "replace")

    def stop(self):
        """SIGTERM; requires exit 0 within 20 s, no sanitizer report, and no process of the
        binary left behind (forked workers must go with the main process)."""
        if self.stopped:
            return
        self.stopped = True
        self.proc.signal(signal.SIGTERM)
        try:
            rc = self.proc.p.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill(0)
            raise TestFailure(f"server did not exit within 20 s of SIGTERM\n{self.proc.tail()}")
        self.proc._close_files()
        problems = []
        text = self.log_text()
        bad = [p for p in SANITIZER_PATTERNS if p in text]
        if bad:
            problems.append(f"sanitizer report in server log ({', '.join(bad)}):\n"
                            + "\n".join(sanitizer_excerpt(text)))
        if rc != 0:
            problems.append(f"server exited with {rc} on SIGTERM (expected 0)\n{self.proc.tail()}")
        # A worker that crashed was restarted, and the test may not have noticed: still a bug.
        # (SIGKILL and SIGTERM are what tests use to kill workers on purpose.)
        crashes = [m.group(0) for m in re.finditer(
            r"worker \d+ \(pid \d+\) (killed by signal (\d+)|exited with (\d+))[^\n]*", text)
            if (m.group(2) and m.group(2) not in ("9", "15")) or m.group(3)]
        if crashes:
            problems.append("listener worker crashed during the test:\n" + "\n".join(crashes[:5]))
        left = []
        for _ in range(20):
            left = [pid for pid, _ in token_processes(self.mark, SERVER_ENV)]
            if not left:
                break
            time.sleep(0.1)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            problems.append(f"server processes {left} still running 2 s after the main one exited")
        check(not problems, "\n".join(problems))


def sanitizer_excerpt(text, lines=40):
    out = text.split("\n")
    for i, line in enumerate(out):
        if any(p in line for p in SANITIZER_PATTERNS):
            return out[max(0, i - 3):i + lines]
    return out[-lines:]


class IcecastServer:
    """Debian's icecast2 as the reference peer: one port serves both sources and listeners."""

    kind = "icecast"

    def __init__(self, ctx, binary, **_ignored):
        self.ctx = ctx
        self.password = PASSWORD
        d = ctx.tmp / "icecast"
        d.mkdir(exist_ok=True)
        os.chmod(ctx.tmp, 0o755)
        os.chmod(d, 0o777)
        port = free_port()
        cfg = d / "icecast.xml"
        cfg.write_text(f"""<icecast>
  <hostname>127.0.0.1</hostname>
  <limits><clients>2000</clients><sources>20</sources><burst-size>65535</burst-size>
    <source-timeout>10</source-timeout></limits>
  <authentication><source-password>{PASSWORD}</source-password>
    <admin-user>admin</admin-user><admin-password>{PASSWORD}</admin-password></authentication>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <http-headers><header name="Access-Control-Allow-Origin" value="*" /></http-headers>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{d}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><errorlog>-</errorlog><accesslog>-</accesslog><loglevel>4</loglevel></logging>
</icecast>
""")
        os.chmod(cfg, 0o644)
        argv = ["setpriv", "--reuid=icecast2", "--regid=icecast", "--init-groups", binary,
                "-c", cfg]
        n = len(ctx.servers) + 1
        self.proc = Proc(ctx, f"server{n}", argv)
        self.log = self.proc.log
        self.stopped = False
        ctx.servers.append(self)
        self.audience = self.stage = port

        def ready():
            if not self.proc.alive():
                raise FatalFailure(f"icecast exited early:\n{self.proc.tail()}")
            # Icecast answers before it has published its global stats, and until then its
            # status-json is not even valid JSON: wait for those.
            r = http_request(port, "GET", "/status-json.xsl", timeout=1)
            return r.status == 200 and b'"server_id"' in r.body

        wait_for(ready, 15, "icecast to serve")

    url = Server.url
    source_url = Server.source_url
    log_text = Server.log_text

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.proc.kill(10)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def token_processes(token, var=TOKEN_ENV):
    """(pid, argv) of every process whose environment has <var>=<token>, except this one."""
    needle = f"{var}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = [c.decode("utf-8", "replace") for c in f.read().split(b"\0") if c]
        except OSError:
            continue
        found.append((int(entry), cmd))
    return found


def kill_token_processes(token):
    """SIGKILLs every process carrying <token> (those a test started, even detached ones)."""
    for _ in range(3):
        procs = token_processes(token)
        if not procs:
            return []
        for pid, _cmd in procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return token_processes(token)


class Ctx:
    """Per-test context: temp dir, the binary under test, and everything to clean up."""

    def __init__(self, binary, tmp, token):
        self.binary = binary
        self.tmp = Path(tmp)
        self.token = token
        self.kind = "icecast" if Path(binary).name.startswith("icecast") else "rostrum"
        self.icecast = self.kind == "icecast"
        self.servers = []
        self.procs = []
        self.closers = []

    def start_server(self, **opts):
        if self.icecast:
            return IcecastServer(self, self.binary, **opts)
        return Server(self, self.binary, **opts)

    def spawn(self, name, argv, **kw):
        names = {p.name for p in self.procs}
        base, i = name, 2
        while name in names:
            name, i = f"{base}{i}", i + 1
        p = Proc(self, name, argv, **kw)
        self.procs.append(p)
        return p

    def on_cleanup(self, fn):
        self.closers.append(fn)

    def rostrum_only(self, what):
        if self.icecast:
            raise Skip(f"icecast: {what}")

    def cleanup(self):
        """Stops the servers first, while their peers are still connected (so shutdown with live
        sources and listeners is checked: exit 0, no leak), then the peers. Returns the first
        failure or None."""
        first = None
        for s in self.servers:
            try:
                s.stop()
            except TestFailure as e:
                first = first or e
            except Exception as e:
                first = first or TestFailure(f"stopping server: {e!r}")
        for fn in reversed(self.closers):
            try:
                fn()
            except Exception:
                pass
        for p in self.procs:
            p.kill(2)
        return first

    def failure_details(self):
        out = []
        for s in self.servers:
            out.append(f"--- {s.proc.name} ({s.kind}) log tail:\n{s.proc.tail(30)}")
        for p in self.procs:
            t = p.tail(10)
            if t:
                out.append(f"--- {p.name} log tail:\n{t}")
        return "\n".join(out)


# ---- raw HTTP -------------------------------------------------------------------------------


class Response:
    def __init__(self, status, reason, version, headers, head_raw):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers  # list of (name, value), order kept
        self.head_raw = head_raw
        self.body = b""

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def __repr__(self):
        return f"<{self.version} {self.status} {self.reason} {self.headers}>"


def connect(port, timeout=5.0, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def parse_head(raw):
    """Parses a response head (bytes up to, not including, the blank line)."""
    lines = raw.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?", lines[0])
    check(m, f"bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        check(":" in line, f"bad header line {line!r} in {raw!r}")
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return Response(int(m.group(2)), m.group(3) or "", m.group(1), headers, raw)


def read_head(sock, buf=b"", limit=65536):
    """Reads one response head from <sock>; returns (Response, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        check(len(buf) < limit, f"response head larger than {limit} bytes")
        d = sock.recv(65536)
        check(d, f"connection closed before a complete response head (got {buf[:200]!r})")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return parse_head(head), rest


def read_until_close(sock, timeout, limit=1 << 24):
    """Everything <sock> sends until EOF, reset, <timeout> s or <limit> bytes.
    Returns (data, how) with how in 'eof', 'reset', 'timeout', 'limit'."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, "timeout"
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except ConnectionResetError:
            return data, "reset"
        if not d:
            return data, "eof"
        data += d
        if len(data) >= limit:
            return data, "limit"


def http_request(port, method, path, headers=(), body=b"", timeout=5.0, version="HTTP/1.1"):
    """One request on a fresh connection; reads the head and the body (Content-Length, or until
    close for a GET without one). Not for streams: use Listener."""
    s = connect(port, timeout)
    try:
        hdrs = [("Host", f"127.0.0.1:{port}"), ("Connection", "close")] + list(headers)
        if body:
            hdrs.append(("Content-Length", str(len(body))))
        req = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs)
        s.sendall(req.encode("latin-1") + b"\r\n" + body)
        resp, rest = read_head(s)
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            resp.body = rest
            return resp
        n = resp.header("Content-Length")
        if n is not None:
            n = int(n)
            while len(rest) < n:
                d = s.recv(65536)
                check(d, f"body cut at {len(rest)} of {n} bytes")
                rest += d
            resp.body = rest[:n]
        else:
            more, _ = read_until_close(s, timeout)
            resp.body = rest + more
        return resp
    finally:
        s.close()


def raw_exchange(port, data, timeout=5.0, shut_wr=False):
    """Sends raw <data>, returns (everything received until close/timeout, how it ended)."""
    s = connect(port, timeout)
    try:
        try:
            s.sendall(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_until_close(s, timeout)
    finally:
        s.close()


def get_json(port, path="/status-json.xsl"):
    r = http_request(port, "GET", path)
    check(r.status == 200, f"GET {path} -> {r.status}")
    try:
        return json.loads(r.body)
    except ValueError as e:
        raise TestFailure(f"GET {path}: invalid JSON ({e}): {r.body[:300]!r}")


def status_sources(server):
    """The `source` entries of status-json as a list (absent → [], object → [obj])."""
    st = get_json(server.audience)
    check(isinstance(st, dict) and isinstance(st.get("icestats"), dict),
          f"status-json has no icestats object: {st!r:.300}")
    src = st["icestats"].get("source")
    if src is None:
        return []
    if isinstance(src, dict):
        return [src]
    check(isinstance(src, list), f"icestats.source is {type(src).__name__}")
    return src


def mount_status(server, mount):
    for s in status_sources(server):
        if str(s.get("listenurl", "")).endswith(mount):
            return s
    return None


def wait_live(server, mount, timeout=15, proc=None):
    """Waits until <mount> is listed with a source and answers GET with 200."""

    def live():
        if proc is not None and not proc.alive():
            raise FatalFailure(f"{proc.name} exited with {proc.p.returncode}:\n{proc.tail()}")
        return mount_status(server, mount) is not None

    wait_for(live, timeout, f"{mount} to go live")


def metrics(server):
    """Parses /metrics into {(name, frozenset(labels)): value}; also returns the raw text."""
    r = http_request(server.audience, "GET", "/metrics")
    check(r.status == 200, f"GET /metrics -> {r.status}")
    text = r.body.decode("utf-8")
    return parse_metrics(text), text


def parse_metrics(text):
    """The samples of a /metrics document: {(name, frozenset(labels)): value}."""
    vals = {}
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?", line)
        check(m, f"unparsable metrics line {line!r}")
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""))
        vals[(m.group(1), labels)] = float(m.group(4))
    return vals


def metric(vals, name, **labels):
    """Value of <name> with exactly <labels>, or the sum over all label sets if labels == {} and
    no unlabelled sample exists; None if absent."""
    key = (name, frozenset(labels.items()))
    if key in vals:
        return vals[key]
    if labels:
        return None
    matching = [v for (n, _), v in vals.items() if n == name]
    return sum(matching) if matching else None


# ---- listeners ------------------------------------------------------------------------------


class StreamReader:
    """GET <mount> over <sock> (connected: a plain socket or an ssl one), then reads the stream
    in a thread, at most <rate> bytes a second (None: as fast as it comes). The response head
    is read before this returns (head); the body is kept as (monotonic time, bytes) chunks.
    data() and mount are what check_listener_ogg wants; end says why reading stopped."""

    def __init__(self, sock, mount, host, rate=None):
        self.sock, self.mount, self.rate = sock, mount, rate
        self.chunks, self.end, self._stop = [], None, False
        self._size = 256 if rate else 65536
        sock.sendall(f"GET {mount} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = sock.recv(self._size)
            check(d, f"listener of {mount}: closed before a response head")
            buf += d
        self._got = len(buf)
        self.head, rest = buf.split(b"\r\n\r\n", 1)
        if rest:
            self.chunks.append((time.monotonic(), rest))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        t0 = time.monotonic()
        while not self._stop:
            if self.rate:
                # pace: never more than <rate> bytes a second since the start
                due = t0 + self._got / self.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(min(0.05, due - now))
                    continue
            try:
                d = self.sock.recv(self._size)
            except socket.timeout:
                continue
            except OSError as e:
                self.end = f"error {e}"
                return
            if not d:
                self.end = "eof"
                return
            self._got += len(d)
            self.chunks.append((time.monotonic(), d))

    def data(self):
        return b"".join(c for _, c in list(self.chunks))

    def close(self):
        self._stop = True
        self.thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass


class Listener:
    """A raw HTTP listener: GET <mount>, then a thread records every chunk with its arrival time.

    Fields after start: `resp` (head), `chunks` [(monotonic time, bytes)], `end` (None while
    running, else 'eof' | 'reset' | 'closed' | error text) and `end_time`."""

    def __init__(self, port, mount, headers=(), timeout=10.0, bind=None, host="127.0.0.1"):
        self.mount = mount
        self.chunks = []
        self.end = None
        self.end_time = None
        self._stop = False
        self.sock = socket.socket()
        if bind:
            self.sock.bind((bind, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        hdrs = [("Host", f"{host}:{port}"), ("User-Agent", "rostrum-itest")] + list(headers)
        req = f"GET {mount} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
        self.t0 = time.monotonic()
        self.sock.sendall(req.encode())
        self.resp, rest = read_head(self.sock)
        if rest:
            self.chunks.append((time.monotonic(), rest))
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                self.end = "reset"
                break
            except OSError as e:
                self.end = "closed" if self._stop else f"error {e}"
                break
            if not d:
                self.end = "eof"
                break
            self.chunks.append((time.monotonic(), d))
        if self.end is None:
            self.end = "closed"
        self.end_time = time.monotonic()

    def data(self):
        return b"".join(c for _, c in list(self.chunks))

    def nbytes(self):
        return sum(len(c) for _, c in list(self.chunks))

    def last_time(self):
        c = self.chunks
        return c[-1][0] if c else None

    def pages_with_times(self):
        """[(arrival time, OggPage)] of the complete pages received so far."""
        ends, off = [], 0
        for t, c in list(self.chunks):
            off += len(c)
            ends.append((off, t))
        pages, _ = parse_ogg(b"".join(c for _, c in list(self.chunks)))
        out, j = [], 0
        for p in pages:
            while ends[j][0] < p.offset + len(p.raw):
                j += 1
            out.append((ends[j][1], p))
        return out

    def burst_seconds(self, window=0.3):
        """Seconds of Opus audio in the pages that arrived within <window> s of the request."""
        timed = self.pages_with_times()
        early = [p for t, p in timed if t <= self.t0 + window]
        packets = ogg_packets([p for _, p in timed])[2:]  # skip OpusHead, OpusTags
        n = sum(opus_packet_samples(pkt) or 0 for pkt, i in packets if i < len(early))
        return n / 48000.0

    def close(self, abrupt=False):
        """Stops reading; <abrupt> closes with RST (SO_LINGER 0) as a vanished client would."""
        self._stop = True
        if abrupt:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if self.thread:
            self.thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass

    def max_gap(self, start=None, end=None):
        """Longest time without data between <start> and <end> (monotonic; default: whole run)."""
        times = [t for t, _ in list(self.chunks)]
        start = self.t0 if start is None else start
        end = (self.end_time or time.monotonic()) if end is None else end
        pts = [start] + [t for t in times if start <= t <= end] + [end]
        return max(b - a for a, b in zip(pts, pts[1:]))


def listen(ctx, server, mount, **kw):
    lst = Listener(server.audience, mount, **kw).start()
    ctx.on_cleanup(lst.close)
    return lst


def ffmpeg_listener(ctx, server, mount, seconds, name="listener"):
    """ffmpeg decoding <mount> to s16le mono 48 kHz for <seconds>; output in <name>.pcm."""
    return ctx.spawn(name, ["ffmpeg", "-nostdin", "-v", "error", "-i", server.url(mount),
                            "-t", seconds, "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                     stdout=ctx.tmp / f"{name}.pcm")


def check_ffmpeg_decode(proc, seconds, timeout):
    """Waits for an ffmpeg_listener: exit 0, empty stderr (no decode error), >= <seconds> audio.
    Returns the PCM bytes."""
    rc = proc.wait(timeout)
    pcm = proc.output()
    err = proc.log.read_text(errors="replace").strip()
    check(rc == 0, f"{proc.name}: ffmpeg exited with {rc}: {err[-1500:]}")
    check(not err, f"{proc.name}: ffmpeg reported errors while decoding:\n{err[-1500:]}")
    want = int(seconds * 96000)
    check(len(pcm) >= want,
          f"{proc.name}: decoded {len(pcm)} bytes ({len(pcm) / 96000:.2f} s), want >= {want}")
    return pcm


# ---- sources --------------------------------------------------------------------------------


def ffmpeg_source(ctx, server, mount, freq=440, name="Test Space", description=None,
                  genre=None, proc_name="source"):
    """A live ffmpeg source: a sine at <freq> Hz as Opus in Ogg, PUT to <mount>."""
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning", "-re", "-f", "lavfi",
            "-i", f"sine=frequency={freq}:sample_rate=48000", "-c:a", "libopus", "-b:a", "48k",
            "-vbr", "off", "-f", "ogg", "-content_type", "audio/ogg"]
    if name is not None:
        argv += ["-ice_name", name]
    if description is not None:
        argv += ["-ice_description", description]
    if genre is not None:
        argv += ["-ice_genre", genre]
    return ctx.spawn(proc_name, argv + [server.source_url(mount)])


def make_opus_file(ctx, seconds, freq=440, name=None):
    """Encodes <seconds> of a <freq> Hz sine to an Ogg/Opus file in the temp dir."""
    path = ctx.tmp / (name or f"sine{freq}_{seconds}s.opus")
    if not path.exists():
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"sine=frequency={freq}:sample_rate=48000", "-t", str(seconds),
                        "-c:a", "libopus", "-b:a", "48k", "-vbr", "off", str(path)],
                       check=True, timeout=60)
    return path


def basic_auth(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class PySource:
    """A raw source client (PUT with Expect: 100-continue, or legacy SOURCE).

    `resp` is the first response head read after sending the request head."""

    def __init__(self, port, mount, method="PUT", password=PASSWORD, user="source",
                 content_type="audio/ogg", headers=(), expect=True, timeout=5.0):
        self.sock = connect(port, timeout)
        hdrs = [("Host", f"127.0.0.1:{port}"), ("User-Agent", "rostrum-itest-source")]
        if password is not None:
            hdrs.append(("Authorization", basic_auth(user, password)))
        if content_type is not None:
            hdrs.append(("Content-Type", content_type))
        if method == "PUT" and expect:
            hdrs.append(("Expect", "100-continue"))
        hdrs += list(headers)
        version = "HTTP/1.0" if method == "SOURCE" else "HTTP/1.1"
        head = f"{method} {mount} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs)
        self.sock.sendall(head.encode() + b"\r\n")
        self.resp, self.leftover = read_head(self.sock)
        self.accepted = self.resp.status in (100, 200)
        self.closed_by_server = False
        self.thread = None
        self._stop = False

    def send(self, data):
        """Sends <data>; returns False if the server has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed_by_server = True
            return False

    def stream_file(self, path, realtime=True, loop=False):
        """Starts a thread sending the Ogg pages of <path>, paced by granule position."""
        pages = list(parse_ogg(Path(path).read_bytes())[0])

        def run():
            t0 = time.monotonic()
            offset = 0
            while not self._stop:
                for p in pages:
                    if self._stop:
                        return
                    if realtime and p.granule > 0:
                        due = t0 + (offset + p.granule) / 48000.0 - 0.5
                        while not self._stop and time.monotonic() < due:
                            time.sleep(min(0.05, due - time.monotonic() + 0.001))
                    if not self.send(p.raw):
                        return
                if not loop:
                    return
                offset += max(p.granule for p in pages)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def server_closed(self, timeout):
        """True if the server closes (EOF/RST) the connection within <timeout> s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.closed_by_server:
                return True
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                try:
                    if not self.sock.recv(4096):
                        return True
                except (ConnectionResetError, OSError):
                    return True
        return self.closed_by_server

    def close(self):
        self._stop = True
        if self.thread:
            self.thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass


def py_source(ctx, server, mount, **kw):
    src = PySource(server.stage, mount, password=server.password, **kw)
    ctx.on_cleanup(src.close)
    return src


class RecordingProxy:
    """A TCP proxy to 127.0.0.1:<target> that records, per connection, the first request head the
    client sent and the first response head(s) the server sent back (to see a peer's probes)."""

    def __init__(self, ctx, target):
        self.target = target
        self.conns = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self._stop = False
        self._socks = []
        threading.Thread(target=self._accept, daemon=True).start()
        ctx.on_cleanup(self.close)

    def _accept(self):
        self.lsock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                c.close()
                continue
            rec = {"up": b"", "down": b"", "t": time.monotonic(), "closed": None}
            self.conns.append(rec)
            self._socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u, rec, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, rec, "down"), daemon=True).start()

    def _pump(self, src, dst, rec, key):
        src.settimeout(None)
        while True:
            try:
                d = src.recv(65536)
            except OSError:
                d = b""
            if not d:
                rec["closed"] = rec["closed"] or key
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if len(rec[key]) < 4096:
                rec[key] += d[:4096 - len(rec[key])]
            try:
                dst.sendall(d)
            except OSError:
                return

    def requests(self):
        """[(request head text, response bytes)] per connection, in order."""
        out = []
        for r in list(self.conns):
            head = r["up"].split(b"\r\n\r\n", 1)[0].decode("latin-1")
            out.append((head, r["down"]))
        return out

    def close(self):
        self._stop = True
        for s in [self.lsock] + self._socks:
            try:
                s.close()
            except OSError:
                pass


# ---- Ogg ------------------------------------------------------------------------------------


def _crc_table():
    t = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        t.append(r & 0xFFFFFFFF)
    return t


_CRC = _crc_table()


def ogg_crc(data):
    """Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial value 0, no final xor."""
    crc = 0
    t = _CRC
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ t[((crc >> 24) ^ b) & 0xFF]
    return crc


class OggPage:
    __slots__ = ("offset", "flags", "granule", "serial", "seq", "crc", "crc_ok", "lacing",
                 "body", "raw")

    @property
    def continued(self):
        return bool(self.flags & 1)

    @property
    def bos(self):
        return bool(self.flags & 2)

    @property
    def eos(self):
        return bool(self.flags & 4)

    def __repr__(self):
        return (f"<page @{self.offset} seq={self.seq} serial={self.serial:#x} "
                f"granule={self.granule} flags={self.flags} len={len(self.raw)}>")


def parse_ogg(data):
    """Splits <data> into Ogg pages. Returns (pages, leftover) where leftover is an incomplete
    last page. Fails on bytes that are not a page (no capture pattern / bad version)."""
    pages = []
    off = 0
    n = len(data)
    while off < n:
        if n - off < 27:
            break
        check(data[off:off + 4] == b"OggS",
              f"no Ogg capture pattern at byte {off} (page {len(pages)}): {data[off:off+16]!r}")
        check(data[off + 4] == 0, f"Ogg version {data[off + 4]} at byte {off}")
        nseg = data[off + 26]
        if n - off < 27 + nseg:
            break
        lacing = data[off + 27:off + 27 + nseg]
        size = 27 + nseg + sum(lacing)
        if n - off < size:
            break
        p = OggPage()
        p.offset = off
        p.raw = data[off:off + size]
        p.flags = data[off + 5]
        p.granule, p.serial, p.seq, p.crc = struct.unpack_from("<qIII", data, off + 6)
        p.lacing = lacing
        p.body = p.raw[27 + nseg:]
        p.crc_ok = ogg_crc(p.raw[:22] + b"\0\0\0\0" + p.raw[26:]) == p.crc
        pages.append(p)
        off += size
    return pages, data[off:]


def ogg_page_bytes(flags, granule, serial, seq, lacing, body):
    """Serialises one Ogg page with a correct CRC."""
    head = b"OggS\0" + struct.pack("<BqIII", flags, granule, serial, seq, 0)
    raw = head + bytes([len(lacing)]) + bytes(lacing) + body
    crc = ogg_crc(raw)
    return raw[:22] + struct.pack("<I", crc) + raw[26:]


def rebuild_page(p, **changes):
    """Bytes of page <p> with some of flags/granule/serial/seq/lacing/body changed."""
    f = {k: getattr(p, k) for k in ("flags", "granule", "serial", "seq", "lacing", "body")}
    f.update(changes)
    return ogg_page_bytes(**f)


def ogg_packets(pages):
    """Assembles packets. Returns [(packet bytes, index of the page where it completes)];
    a packet continued from before the first page is dropped, an unfinished last one too."""
    out = []
    cur = None
    for i, p in enumerate(pages):
        pos = 0
        if not p.continued:
            cur = b""  # a dangling partial packet is dropped
        for lace in p.lacing:
            seg = p.body[pos:pos + lace]
            pos += lace
            if cur is not None:
                cur += seg
            if lace < 255:
                if cur is not None:
                    out.append((cur, i))
                cur = b""
    return out


def opus_packet_samples(pkt):
    """Samples at 48 kHz in one Opus packet (RFC 6716 §3.1), or None if malformed."""
    if not pkt:
        return None
    toc = pkt[0]
    config = toc >> 3
    if config < 12:
        fs = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:
        fs = (480, 960)[config & 1]
    else:
        fs = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(pkt) < 2:
            return None
        frames = pkt[1] & 0x3F
    return fs * frames


def check_ogg_opus_stream(pages, allow_final_eos=False, allow_jumps=False):
    """Checks one listener's Ogg/Opus stream; returns a list of problems (empty = good).

    Rules: every CRC valid; page 0 is BOS, sequence 0, granule 0, one packet `OpusHead`;
    page 1 starts `OpusTags`; one serial throughout; no other BOS; no EOS (unless last and
    <allow_final_eos>); from the first audio page on, sequence numbers continue by one and
    granule positions strictly increase, each by the samples of the packets that end on that
    page (the Opus TOC tells their length). With <allow_jumps> (a laggard moved to the live
    edge), the sequence may skip forward between two audio pages if the page before ends its
    last packet and the page after continues none; the granule then grows by at least the
    samples of the page's packets (the audio skipped)."""
    problems = []
    if len(pages) < 3:
        return [f"only {len(pages)} complete Ogg pages"]
    bad_crc = [p.seq for p in pages if not p.crc_ok]
    if bad_crc:
        problems.append(f"bad CRC on pages with sequence {bad_crc[:10]}")
    h = pages[0]
    if not h.bos:
        problems.append(f"first page is not BOS: {h}")
    if h.seq != 0 or h.granule != 0:
        problems.append(f"first page has seq {h.seq} granule {h.granule}, want 0/0")
    if not h.body.startswith(b"OpusHead") or len(h.lacing) != 1 or h.lacing[0] == 255:
        problems.append(f"first page is not a lone OpusHead packet: {h.body[:12]!r}")
    if not pages[1].body.startswith(b"OpusTags"):
        problems.append(f"second page does not start OpusTags: {pages[1].body[:12]!r}")
    serials = sorted({p.serial for p in pages})
    if len(serials) != 1:
        problems.append(f"{len(serials)} serial numbers: {[hex(s) for s in serials]}")
    for i, p in enumerate(pages[1:], 1):
        if p.bos:
            problems.append(f"BOS again at page {i}: {p}")
        if p.eos and not (allow_final_eos and i == len(pages) - 1):
            problems.append(f"EOS at page {i} of {len(pages)}: {p}")
    # Header pages end with the page where OpusTags completes.
    packets = ogg_packets(pages)
    if len(packets) < 2:
        return problems + ["fewer than 2 complete packets"]
    first_audio = packets[1][1] + 1
    if pages[1].seq != 1:
        problems.append(f"second page has sequence {pages[1].seq}, want 1")
    audio = pages[first_audio:]
    if not audio:
        return problems + ["no audio pages"]
    samples_on = {}
    for pkt, i in packets[2:]:
        n = opus_packet_samples(pkt)
        if n is None:
            problems.append(f"malformed Opus packet on page {i}")
            n = 0
        samples_on[i] = samples_on.get(i, 0) + n
    prev = None
    for j, p in enumerate(audio):
        i = first_audio + j
        jumped = False
        if j and p.seq != audio[j - 1].seq + 1:
            before = audio[j - 1]
            if (allow_jumps and p.seq > before.seq and not p.continued and before.lacing
                    and before.lacing[-1] != 255):
                jumped = True
            else:
                problems.append(f"sequence jumps {before.seq} -> {p.seq} at page {i}")
        if p.granule == -1:
            continue
        if prev is not None:
            pg, pi = prev
            if p.granule <= pg:
                problems.append(f"granule does not increase at page {i}: {pg} -> {p.granule}")
            else:
                got = sum(samples_on.get(k, 0) for k in range(pi + 1, i + 1))
                # The end of a stream may be trimmed: the EOS page may hold more than it plays.
                trimmed = p.eos and 0 < p.granule - pg <= got
                skipped = jumped and p.granule - pg > got
                if got != p.granule - pg and not trimmed and not skipped:
                    problems.append(f"granule step {p.granule - pg} at page {i} (seq {p.seq}) "
                                    f"but its packets hold {got} samples")
        prev = (p.granule, i)
    return problems[:20]


def audio_seconds(pages):
    """Seconds of audio between the first and last granule of audio pages."""
    g = [p.granule for p in pages[2:] if p.granule > 0]
    return (g[-1] - g[0]) / 48000.0 if len(g) >= 2 else 0.0


def check_listener_ogg(lst, allow_final_eos=False, allow_jumps=False):
    """Parses what a Listener received and fails on any Ogg/Opus problem; returns the pages.
    <allow_jumps>: see check_ogg_opus_stream."""
    data = lst.data()
    pages, _rest = parse_ogg(data)
    problems = check_ogg_opus_stream(pages, allow_final_eos, allow_jumps)
    check(not problems, f"Ogg stream of {lst.mount} ({len(data)} bytes, {len(pages)} pages) "
                        "is broken:\n  " + "\n  ".join(problems))
    return pages


# ---- audio ----------------------------------------------------------------------------------


def pcm_samples(pcm):
    a = array.array("h")
    a.frombytes(pcm[:len(pcm) // 2 * 2])
    return a


def goertzel_ratio(samples, freq, rate=48000):
    """Share of the window's energy at <freq> (1.0 for a pure tone centred on it, ~0 elsewhere)."""
    n = len(samples)
    if n == 0:
        return 0.0
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    energy = sum(x * x for x in samples)
    return 2.0 * power / (n * energy) if energy else 0.0


def rms(samples):
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if len(samples) else 0.0


def tone_windows(pcm, freq, others=(220, 330, 550, 660, 880, 1000), window=0.5):
    """Per <window> seconds of s16le mono 48 kHz: (rms, share at <freq>, best other share)."""
    s = pcm_samples(pcm)
    n = int(48000 * window)
    out = []
    for i in range(0, len(s) - n + 1, n):
        w = s[i:i + n]
        out.append((rms(w), goertzel_ratio(w, freq),
                    max(goertzel_ratio(w, f) for f in others if f != freq)))
    return out


def check_tone(pcm, freq, what, skip_s=0.0, min_share=0.5, others=(220, 330, 550, 660, 880, 1000)):
    """Requires <freq> to dominate every 0.5 s window of <pcm> after <skip_s> seconds."""
    pcm = pcm[int(skip_s * 96000) // 2 * 2:]
    wins = tone_windows(pcm, freq, others)
    check(wins, f"{what}: no audio to analyse")
    bad = [(i, w) for i, w in enumerate(wins)
           if w[0] < 300 or w[1] < min_share or w[2] > w[1] / 10]
    check(not bad, f"{what}: {freq} Hz not dominant in {len(bad)} of {len(wins)} half-second "
                   "windows; first ones (index, rms, share, best other share): "
                   + ", ".join(f"({i}, {w[0]:.0f}, {w[1]:.2f}, {w[2]:.2f})" for i, w in bad[:5]))


def random_bytes(n, seed=1):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(n))


def first_line(b):
    """First line of a head (bytes or str), without the line end."""
    if isinstance(b, bytes):
        return b.split(b"\r\n", 1)[0]
    return b.split("\r\n", 1)[0]
