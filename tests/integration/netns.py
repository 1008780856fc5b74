"""Test hosts in network namespaces: a topology of hosts and emulated links for multi-host tests.

Each host is a network namespace named `rit<PID>-<K>-<host>` (PID: the test process, K: the
topology's number in it), with `lo` up and one host address 10.77.0.N/32 on `lo`.  Each link
is its own subnet 10.77.L.0/24 (side a is .1, side b is .2).  Every host gets static routes
to every other host's address and to every link subnet along a shortest path (forwarding on
in each namespace), so any host can reach any other; a cut link is not routed around (static
routes, as a real cut would be until a routing protocol moved).  Nothing is ever made in, or
routed through, the machine's own namespace: the veth ends are created inside the namespaces
(`ip -n A link add ... peer ... netns B`) and the TUN ends from inside them (setns(2)); all
addresses are 10.77.x.y inside namespaces of this test only.

Link emulation, and why.  This kernel (6.18, see /proc/config.gz) has no `netem` qdisc (nor
fq_codel, sfq) and no tc actions (gact: no `tc ... action drop`); it has `tbf`, `htb`, `pfifo`,
TUN/TAP, veth, bridges, and nf_tables with `numgen` (`numgen random mod 100 < N drop` works,
with Debian's `nftables` package).  nftables can drop but cannot delay, so delay needs user
space anyway; one mechanism for both is simpler to reason about:

* kind="tun" (the default): a userspace wire.  One small process per link (this file, run as
  `netns.py --link`, started through the harness so its log is `linkN.log` in the test's temp
  dir and it is killed at the end) opens a TUN device in each of the two namespaces and copies
  IP packets between them, each one delayed by `delay_ms` (+ uniform `jitter_ms`, never
  reordered) and dropped with probability `loss` (a seeded RNG: the same run drops the same
  packet numbers).  TCP above it sees real delay and loss: it retransmits, backs off, and a
  cut link is a silent black hole, as on a real network.  `rate` is the kernel's own `tbf`
  on each TUN device (egress into the wire), per direction.  At test rates (tens of streams of
  48 kb/s) the wire costs little CPU; it is not for benchmarks of throughput.
* kind="veth": a plain veth pair: kernel speed, `rate` by tbf, no delay or loss.

Cutting a link: `cut(a, b, how=...)`: "drop" (default; the wire drops every packet: a black
hole, connections stay open and time out or retransmit), "stall" (the wire holds the packets,
up to 2000 per direction, and delivers them on restore: a frozen path), or "down" (`ip link set
down` on both ends: the kernel removes the routes, so local senders get errors). `restore(a, b)`
undoes it (re-adding the routes after "down"). A veth link only cuts with "down".

Cleanup.  `Topology` registers itself with the test's ctx (so the harness removes everything
after the servers were stopped), is also a context manager, and starts a reaper process, in a
session of its own and without the test's token, that waits on a pipe from the test process:
when the test process goes, however it goes (even SIGKILL), the reaper kills what runs in this
test's namespaces and deletes them.  At start, namespaces `rit<PID>-*` whose PID is no longer
alive (a reaper that could not run) are removed too.

Without root, or without `ip netns`, `Topology(ctx)` raises harness.Skip with the reason.

    topo = netns.Topology(ctx)
    topo.add_host("origin"); topo.add_host("lhost1")
    topo.link("origin", "lhost1", delay_ms=30, loss=0.01, rate="2mbit")
    srv = topo.server("origin", extra=["--workers", "1"])       # rostrum serve in origin
    p = topo.run("lhost1", ["ffmpeg", "-i", srv.url("/live"), ...])   # log: lhost1-ffmpeg.log
    lst = topo.listener("lhost1", srv, "/live")                 # harness.Listener in lhost1
    with topo.entered("lhost1"):                                # sockets made here live there
        s = socket.create_connection((srv.ip, srv.audience))
    topo.cut("origin", "lhost1"); time.sleep(3); topo.restore("origin", "lhost1")

See build_tree() for the relay tree of issue 10.
"""

import ctypes
import ctypes.util
import fcntl
import heapq
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import harness  # noqa: E402
from harness import FatalFailure, Skip, TestFailure, check, wait_for  # noqa: E402

CLONE_NEWNET = 0x40000000
NS_RE = re.compile(r"^rit(\d+)-")
_libc = None
_made = 0  # topologies made by this process: each has its own prefix


def _setns(fd):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


@contextmanager
def in_netns(name):
    """Runs the body with the calling thread in network namespace <name>: sockets it creates
    belong to that namespace for good (they keep working after the thread went back)."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(there)
        try:
            yield
        finally:
            _setns(here)
    finally:
        os.close(here)
        os.close(there)


def ip(*args, check_rc=True, timeout=10):
    """Runs `ip ARGS`; returns stdout; fails with its stderr if it fails and <check_rc>."""
    r = subprocess.run(["ip", *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise TestFailure(f"ip {' '.join(map(str, args))}: exit {r.returncode}: "
                          f"{r.stderr.strip()}")
    return r.stdout


def ns_list():
    try:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def remove_namespace(name):
    """Kills every process in namespace <name>, then deletes it (quietly if already gone)."""
    for _ in range(3):
        r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                           timeout=10)
        pids = [int(p) for p in r.stdout.split() if p.isdigit()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def remove_namespaces(prefix):
    for name in ns_list():
        if name.startswith(prefix):
            remove_namespace(name)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """Removes test namespaces (rit<PID>-*) whose test process is gone."""
    for name in ns_list():
        m = NS_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            remove_namespace(name)


def privileges_reason():
    """None if this process can make network namespaces, else why not."""
    if os.geteuid() != 0:
        return f"network namespaces need root (running as uid {os.geteuid()})"
    for tool, pkg in (("ip", "iproute2"), ("tc", "iproute2"), ("sysctl", "procps")):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"]):
            return f"`{tool}` ({pkg}) is not installed"
    probe = f"rit{os.getpid()}-probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return f"`ip netns add` fails here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun for the emulated links"
    return None


class NsServer(harness.Server):
    """`rostrum serve` inside a test host: audience and stage on all of the host's addresses
    (the namespace's only), fixed ports; stopped and checked by the harness like any Server."""

    def __init__(self, topo, host, audience_port=8000, stage_port=8001, log_level="debug",
                 extra=(), binary=None, command="serve"):
        ctx = topo.ctx
        self.ctx, self.topo, self.host = ctx, topo, host
        self.ip = topo.ip(host)
        self.binary = str(binary or ctx.binary)
        self.password = harness.PASSWORD
        argv = [self.binary, command, "--audience", f"0.0.0.0:{audience_port}"]
        if command == "serve":
            argv += ["--stage", f"0.0.0.0:{stage_port}", "--source-password", self.password]
        if log_level:
            argv += ["--log-level", log_level]
        if command == "serve" and "--drain-ms" not in [str(x) for x in extra]:
            argv += ["--drain-ms", "0"]
        argv += [str(x) for x in extra]
        n = len(ctx.servers) + 1
        self.mark = f"{ctx.token}-{n}"
        env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1"),
               "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS", "print_stacktrace=1"),
               harness.SERVER_ENV: self.mark}
        name = f"server{n}-{host}"
        self.proc = harness.Proc(ctx, name, ["ip", "netns", "exec", topo.ns(host), *argv],
                                 stdout=ctx.tmp / f"{name}.stdout", env=env)
        self.log = self.proc.log
        self.stopped = False
        ctx.servers.append(self)
        topo.servers.append(self)
        line = None

        def ready():
            nonlocal line
            if not self.proc.alive():
                raise FatalFailure(f"{name} exited with {self.proc.p.returncode} before ready:"
                                   f"\n{self.proc.tail()}")
            first = self.proc.output().split(b"\n", 1)
            if len(first) < 2:
                return False
            line = first[0].decode("utf-8", "replace")
            return True

        wait_for(ready, 20, f"{name}'s ready line", interval=0.05)
        m = re.search(r"audience=\S*?:(\d+)", line)
        if not m:
            raise FatalFailure(f"bad ready line {line!r}")
        self.audience = int(m.group(1))
        m = re.search(r"stage=\S*?:(\d+)", line)
        self.stage = int(m.group(1)) if m else None
        self.audience_tls = self.stage_tls = None

    def crash(self):
        """SIGKILLs the server's processes (main and workers: a host that dies) and leaves it
        out of the end-of-test checks; a new topo.server() on the same host can follow."""
        self.stopped = True
        self.proc.signal(signal.SIGKILL)
        self.proc.p.wait(10)
        self.proc._close_files()
        for pid, _ in harness.token_processes(self.mark, harness.SERVER_ENV):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def url(self, path):
        return f"http://{self.ip}:{self.audience}{path}"

    def source_url(self, mount):
        return f"icecast://source:{self.password}@127.0.0.1:{self.stage}{mount}"

    def request(self, method, path, **kw):
        """harness.http_request from inside the server's host (over its loopback)."""
        with self.topo.entered(self.host):
            return harness.http_request(self.audience, method, path, **kw)

    def json(self, path="/status-json.xsl"):
        with self.topo.entered(self.host):
            return harness.get_json(self.audience, path)


class Link:
    def __init__(self, index, a, b, kind, ifa, ifb, params):
        self.index, self.a, self.b, self.kind = index, a, b, kind
        self.ifa, self.ifb = ifa, ifb
        self.addr_a, self.addr_b = f"10.77.{index}.1", f"10.77.{index}.2"
        self.params = params
        self.proc = None  # the wire process (kind tun)
        self.ctl = None
        self.state = "up"

    def addr(self, host):
        return self.addr_a if host == self.a else self.addr_b

    def ifname(self, host):
        return self.ifa if host == self.a else self.ifb

    def other(self, host):
        return self.b if host == self.a else self.a

    def __repr__(self):
        return f"<link {self.index} {self.a}-{self.b} {self.kind} {self.state} {self.params}>"


class Topology:
    """Hosts (network namespaces) and links of one test; see the module docstring."""

    def __init__(self, ctx, name_prefix=None):
        self.ctx = ctx
        reason = privileges_reason()
        if reason:
            raise Skip(f"no network namespaces: {reason}")
        sweep_stale()
        global _made
        _made += 1
        self.prefix = name_prefix or f"rit{os.getpid()}-{_made}-"
        remove_namespaces(self.prefix)  # leftovers of an earlier run of this very process
        self.hosts = {}  # name -> index (host address 10.77.0.index)
        self.links = []
        self.servers = []
        self.closed = False
        self._reaper = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--reap", self.prefix],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, cwd="/",
            env={k: v for k, v in os.environ.items() if k != harness.TOKEN_ENV})
        ctx.on_cleanup(self.close)

    # ---- building ----

    def ns(self, host):
        check(host in self.hosts, f"no host {host!r} in the topology")
        return f"{self.prefix}{host}"

    def ip(self, host):
        """The host's own address (on its lo), reachable from every host while links are up."""
        return f"10.77.0.{self.hosts[host]}"

    def add_host(self, name):
        check(re.fullmatch(r"[a-z][a-z0-9]{0,11}", name), f"bad host name {name!r}")
        check(name not in self.hosts and len(self.hosts) < 250, f"host {name!r} again")
        self.hosts[name] = len(self.hosts) + 1
        ns = self.ns(name)
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "addr", "add", f"{self.ip(name)}/32", "dev", "lo")
        self.sh(name, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                       "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
        return ns

    def sysctl(self, host, **settings):
        """Sets sysctls of <host>'s namespace (net.* are per namespace), e.g.
        sysctl("origin", **{"net.ipv4.tcp_wmem": "4096 16384 16384"})."""
        self.sh(host, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())])

    def sh(self, host, argv, timeout=10):
        """Runs a short command in <host> and returns its stdout; fails if it fails."""
        r = subprocess.run(["ip", "netns", "exec", self.ns(host), *map(str, argv)],
                           capture_output=True, text=True, timeout=timeout)
        check(r.returncode == 0, f"{host}: {' '.join(map(str, argv))}: exit {r.returncode}: "
                                 f"{r.stderr.strip()}")
        return r.stdout

    def link(self, a, b, kind="tun", delay_ms=0, jitter_ms=0, loss=0.0, rate=None, seed=None):
        """Links hosts <a> and <b>: subnet 10.77.L.0/24, a = .1, b = .2. <rate> is a tc rate
        ("2mbit", per direction); <delay_ms>, <jitter_ms>, <loss> (0..1) need kind "tun"."""
        check(a in self.hosts and b in self.hosts and a != b, f"bad link {a}-{b}")
        check(not self.find(a, b, must=False), f"{a} and {b} are linked already")
        check(len(self.links) < 250, "too many links")
        check(kind in ("tun", "veth"), f"bad link kind {kind!r}")
        check(kind == "tun" or not (delay_ms or jitter_ms or loss),
              "delay and loss need kind='tun' (this kernel has no netem)")
        index = len(self.links) + 1
        lk = Link(index, a, b, kind, f"l{index}-{b}"[:15], f"l{index}-{a}"[:15],
                  {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "loss": loss, "rate": rate})
        self.links.append(lk)
        if kind == "veth":
            ip("-n", self.ns(a), "link", "add", lk.ifa, "type", "veth", "peer", "name", lk.ifb,
               "netns", self.ns(b))
        else:
            lk.ctl = str(self.ctx.tmp / f"link{index}.ctl")
            conf = {"ns_a": self.ns(a), "if_a": lk.ifa, "ns_b": self.ns(b), "if_b": lk.ifb,
                    "delay_ms": delay_ms, "jitter_ms": jitter_ms, "loss": loss,
                    "seed": index if seed is None else seed, "ctl": lk.ctl}
            lk.proc = self.ctx.spawn(f"link{index}", [sys.executable, str(Path(__file__)
                                     .resolve()), "--link", json.dumps(conf)])
            wait_for(lambda: self._wire_ready(lk), 10, f"the wire of link {a}-{b}")
        for host in (a, b):
            dev = lk.ifname(host)
            ip("-n", self.ns(host), "addr", "add", f"{lk.addr(host)}/24", "dev", dev)
            ip("-n", self.ns(host), "link", "set", dev, "up")
            if rate:
                # tbf: burst one 1500-byte packet's worth at least, queue ~0.5 s of rate
                self.sh(host, ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
                               "burst", "16kb", "latency", "500ms"])
        self.route()
        return lk

    def _wire_ready(self, lk):
        if not lk.proc.alive():
            raise FatalFailure(f"the wire of link {lk.a}-{lk.b} exited:\n{lk.proc.tail()}")
        return b"ready" in lk.proc.log.read_bytes()

    def neighbours(self, host):
        return [(lk, lk.other(host)) for lk in self.links if host in (lk.a, lk.b)]

    def find(self, a, b, must=True):
        for lk in self.links:
            if {lk.a, lk.b} == {a, b}:
                return lk
        check(not must, f"no link between {a} and {b}")
        return None

    def _first_hops(self, src):
        """{host: (link, neighbour) of the first hop from <src>} along BFS shortest paths."""
        first = {src: None}
        dist = {src: 0}
        q = deque([src])
        while q:
            h = q.popleft()
            for lk, n in sorted(self.neighbours(h), key=lambda x: x[0].index):
                if n not in dist:
                    dist[n] = dist[h] + 1
                    first[n] = first[h] or (lk, n)
                    q.append(n)
        return first, dist

    def route(self, hosts=None):
        """(Re)writes every host's static routes: to each other host's address and each link
        subnet not its own, via the first hop of a shortest path (idempotent)."""
        for h in hosts or self.hosts:
            first, dist = self._first_hops(h)
            ns = self.ns(h)
            for dst, hop in first.items():
                if hop is None:
                    continue
                lk, n = hop
                ip("-n", ns, "route", "replace", f"{self.ip(dst)}/32", "via", lk.addr(n),
                   "dev", lk.ifname(h), check_rc=lk.state != "down")
            for lk in self.links:
                if h in (lk.a, lk.b):
                    continue
                near = min((lk.a, lk.b), key=lambda x: dist.get(x, 1 << 30))
                if near not in first or first[near] is None:
                    continue
                hl, n = first[near]
                ip("-n", ns, "route", "replace", f"10.77.{lk.index}.0/24", "via", hl.addr(n),
                   "dev", hl.ifname(h), check_rc=hl.state != "down")

    # ---- running ----

    @contextmanager
    def entered(self, host):
        """The calling thread in <host>'s namespace: harness.Listener, http_request, sockets."""
        with in_netns(self.ns(host)):
            yield

    def run(self, host, argv, name=None, **kw):
        """ctx.spawn of <argv> inside <host> (`ip netns exec`, which execs: the Proc is the
        program itself); log in NAME.log (default HOST-PROGRAM) of the test's temp dir, killed
        at the end. **kw: ctx.spawn's (stdout=, env=)."""
        name = name or f"{host}-{Path(str(argv[0])).name}"
        return self.ctx.spawn(name, ["ip", "netns", "exec", self.ns(host), *map(str, argv)],
                              **kw)

    def server(self, host, **kw):
        """`rostrum serve` in <host> (NsServer: audience :8000, stage :8001 on every address
        of the host); `srv.url(path)` is its audience URL by the host's address."""
        return NsServer(self, host, **kw)

    def listener(self, host, srv, mount, **kw):
        """A harness.Listener in <host> reading <mount> of <srv> by its host address."""
        with self.entered(host):
            lst = harness.Listener(srv.audience, mount, host=srv.ip, **kw).start()
        self.ctx.on_cleanup(lst.close)
        return lst

    def ffmpeg_listener(self, host, srv, mount, seconds, name):
        """ffmpeg in <host> decoding <mount> of <srv> to s16le mono 48 kHz, in NAME.pcm;
        check it with harness.check_ffmpeg_decode."""
        return self.run(host, ["ffmpeg", "-nostdin", "-v", "error", "-i", srv.url(mount),
                               "-t", seconds, "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                        name=name, stdout=self.ctx.tmp / f"{name}.pcm")

    # ---- links at run time ----

    def _links_of(self, a, b):
        if b is not None:
            return [self.find(a, b)]
        if a in self.hosts:
            return [lk for lk, _ in self.neighbours(a)]
        raise TestFailure(f"no host {a!r}")

    def control(self, lk, **msg):
        """Sends one command to link <lk>'s wire, returns its answer (stats included)."""
        check(lk.kind == "tun", f"link {lk.a}-{lk.b} is a veth: no wire to control")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(lk.ctl)
            s.sendall(json.dumps(msg).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                d = s.recv(65536)
                if not d:
                    break
                buf += d
        finally:
            s.close()
        return json.loads(buf)

    def set_link(self, a, b, **params):
        """Changes delay_ms / jitter_ms / loss of the a-b wire while it runs."""
        lk = self.find(a, b)
        lk.params.update(params)
        return self.control(lk, set=params)

    def stats(self, a, b):
        """{"ab": {...}, "ba": {...}}: packets forwarded, lost, cut, held per direction."""
        return self.control(self.find(a, b), stats=True)

    def cut(self, a, b=None, how="drop"):
        """Cuts the link a-b, or every link of host <a> when <b> is None (see module doc)."""
        check(how in ("drop", "stall", "down"), f"bad cut {how!r}")
        for lk in self._links_of(a, b):
            check(how == "down" or lk.kind == "tun", "a veth link cuts only with how='down'")
            if how == "down":
                for h in (lk.a, lk.b):
                    ip("-n", self.ns(h), "link", "set", lk.ifname(h), "down")
            else:
                self.control(lk, set={"state": how})
            lk.state = how

    def restore(self, a, b=None):
        for lk in self._links_of(a, b):
            if lk.state == "down":
                for h in (lk.a, lk.b):
                    ip("-n", self.ns(h), "link", "set", lk.ifname(h), "up")
                lk.state = "up"
                self.route()  # the kernel dropped the routes through that link
            elif lk.state != "up":
                self.control(lk, set={"state": "up"})
                lk.state = "up"

    # ---- the end ----

    def close(self):
        """Stops the topology's servers (checked as the harness does, if not stopped yet),
        every process in its namespaces, its wires, then deletes the namespaces."""
        if self.closed:
            return
        self.closed = True
        first = None
        for srv in self.servers:
            try:
                srv.stop()
            except TestFailure as e:
                first = first or e
        for h in list(self.hosts):
            remove_namespace(self.ns(h))
        for lk in self.links:
            if lk.proc:
                lk.proc.kill(1)
        remove_namespaces(self.prefix)
        try:
            self._reaper.stdin.close()  # the reaper sweeps once more and exits
            self._reaper.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if first:
            raise first

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        except TestFailure:
            if exc[0] is None:
                raise
        return False


# ---- the relay tree (issue 10) --------------------------------------------------------------


TREE_LINKS = {
    # (a, b): link parameters; regional links are long-haul, edge links metro, last mile lossy
    ("origin", "regional1"): dict(delay_ms=40, jitter_ms=5, loss=0.002, rate="20mbit"),
    ("origin", "regional2"): dict(delay_ms=60, jitter_ms=5, loss=0.002, rate="20mbit"),
    ("regional1", "edge1"): dict(delay_ms=10, jitter_ms=2, loss=0.002, rate="10mbit"),
    ("regional1", "edge2"): dict(delay_ms=15, jitter_ms=2, loss=0.002, rate="10mbit"),
    ("regional2", "edge1"): dict(delay_ms=15, jitter_ms=2, loss=0.002, rate="10mbit"),
    ("regional2", "edge2"): dict(delay_ms=10, jitter_ms=2, loss=0.002, rate="10mbit"),
    ("edge1", "lhost1"): dict(delay_ms=20, jitter_ms=5, loss=0.01, rate="4mbit"),
    ("edge2", "lhost2"): dict(delay_ms=30, jitter_ms=5, loss=0.01, rate="4mbit"),
}


class Tree(Topology):
    """The relay tree: origin -> regional1, regional2 -> edge1, edge2 (each edge linked to both
    regionals) -> lhost1 behind edge1, lhost2 behind edge2. See build_tree()."""

    ORIGIN, REGIONALS, EDGES = "origin", ("regional1", "regional2"), ("edge1", "edge2")
    LISTENER_HOSTS = {"edge1": "lhost1", "edge2": "lhost2"}
    UPSTREAMS = {"regional1": ("origin",), "regional2": ("origin",),
                 "edge1": ("regional1", "regional2"), "edge2": ("regional2", "regional1")}

    def upstream(self, *hosts, port=8000):
        """`--upstream` for a relay: the audience URLs of <hosts> by their host addresses."""
        return ",".join(f"http://{self.ip(h)}:{port}" for h in hosts)

    def relay(self, host, upstreams=None, extra=()):
        """`BINARY relay --audience 0.0.0.0:8000 --upstream ...` in <host> (an NsServer: the
        relay must print a `ready audience=HOST:PORT` line first, as serve does; it is stopped
        with SIGTERM and checked like a server at the end). <upstreams>: host names, by default
        UPSTREAMS[host]."""
        ups = self.upstream(*(upstreams or self.UPSTREAMS[host]))
        return self.server(host, command="relay", extra=["--upstream", ups, *extra])


def build_tree(ctx, links=None, kind="tun"):
    """Builds the relay tree of issue 10 and returns it (a Tree, a Topology):

        origin ── regional1 ──┬── edge1 ── lhost1
            └──── regional2 ──┴── edge2 ── lhost2    (each edge linked to both regionals)

    <links> overrides TREE_LINKS' parameters per (a, b) pair (delay_ms, jitter_ms, loss, rate).
    Host addresses: tree.ip(host) (10.77.0.1 origin, .2 regional1, .3 regional2, .4 edge1,
    .5 edge2, .6 lhost1, .7 lhost2); every host reaches every other by static routes along
    shortest paths (lhost1 -> edge1 -> regional1 -> origin). How the relay test will use it
    (`rostrum relay` does not exist in this tree yet):

        tree = netns.build_tree(ctx)                 # Skip with the reason if not possible
        origin = tree.server("origin", extra=["--host-key", KEY])   # serve, :8000 and :8001
        tree.run("origin", ffmpeg_argv + [origin.source_url("/live")], name="source")
        tree.run("origin", [speak, "--stage", "127.0.0.1:8001", ...], name="speak_A")
        r1, r2 = tree.relay("regional1"), tree.relay("regional2")  # --upstream origin
        e1, e2 = tree.relay("edge1"), tree.relay("edge2")          # --upstream both regionals
        lst = tree.listener("lhost1", e1, "/live")   # harness.Listener made inside lhost1
        dec = tree.ffmpeg_listener("lhost2", e2, "/live", 30, "dec2")
        tree.run("edge1", argv)                      # anything else inside a host
        tree.cut("regional1")                        # every link of regional1: a black hole
        time.sleep(5); tree.restore("regional1")
        tree.cut("origin", "regional2", how="stall") # one link, frozen, then delivered
        tree.set_link("edge2", "lhost2", loss=0.05)  # worse last mile while it runs
        r1.crash()                                   # a regional dies (SIGKILL, workers too)
        origin.json()                                # origin's status-json, from inside it
        check_listener_ogg(lst); check_ffmpeg_decode(dec, 30, 40)

    Relays are stopped (SIGTERM, exit 0, no sanitizer report) and the namespaces removed when
    the test ends, whatever happened."""
    params = dict(TREE_LINKS)
    params.update(links or {})
    tree = Tree(ctx)
    for h in ("origin", "regional1", "regional2", "edge1", "edge2", "lhost1", "lhost2"):
        tree.add_host(h)
    for (a, b), p in params.items():
        tree.link(a, b, kind=kind, **p)
    return tree


# ---- the wire (a separate process) ----------------------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
HOLD_MAX = 2000


def open_tun(ns, name):
    """A TUN device <name> made in namespace <ns> (it goes when the descriptor closes)."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(there)
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        _setns(here)
    finally:
        os.close(here)
        os.close(there)
    return fd


def wire_main(conf):
    """Copies packets between two TUN devices with delay, jitter and loss; obeys its control
    socket: {"set": {"delay_ms", "jitter_ms", "loss", "state": up|drop|stall}}, {"stats": 1}."""
    parent = os.getppid()
    fds = {"ab": open_tun(conf["ns_a"], conf["if_a"]), "ba": open_tun(conf["ns_b"], conf["if_b"])}
    out = {"ab": fds["ba"], "ba": fds["ab"]}
    src_of = {fds["ab"]: "ab", fds["ba"]: "ba"}
    p = {k: conf[k] for k in ("delay_ms", "jitter_ms", "loss")}
    p["state"] = "up"
    rng = random.Random(conf["seed"])
    stats = {d: {"in": 0, "out": 0, "lost": 0, "cut": 0, "held": 0, "overflow": 0,
                 "write_errors": 0} for d in ("ab", "ba")}
    queue = []  # (due, n, dir, packet)
    last_due = {"ab": 0.0, "ba": 0.0}
    held = {"ab": deque(), "ba": deque()}
    n = 0
    try:
        os.unlink(conf["ctl"])
    except FileNotFoundError:
        pass
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(conf["ctl"])
    ctl.listen(8)
    print(f"ready {conf['if_a']}@{conf['ns_a']} <-> {conf['if_b']}@{conf['ns_b']} {p}",
          file=sys.stderr, flush=True)

    def schedule(d, pkt, now):
        nonlocal n
        due = now + (p["delay_ms"] + rng.uniform(0, p["jitter_ms"])) / 1000.0
        due = max(due, last_due[d])  # a link does not reorder
        last_due[d] = due
        n += 1
        heapq.heappush(queue, (due, n, d, pkt))

    def deliver(d, pkt):
        try:
            os.write(out[d], pkt)
            stats[d]["out"] += 1
        except OSError:
            stats[d]["write_errors"] += 1  # e.g. the far end is down

    def command(c):
        msg = json.loads(c.recv(65536).decode() or "{}")
        if "set" in msg:
            new = msg["set"]
            was = p["state"]
            p.update({k: v for k, v in new.items() if k in p})
            print(f"set {new} -> {p}", file=sys.stderr, flush=True)
            if was == "stall" and p["state"] != "stall":
                now = time.monotonic()
                for d in ("ab", "ba"):
                    while held[d]:
                        pkt = held[d].popleft()
                        if p["state"] == "up":
                            schedule(d, pkt, now)
            if p["state"] == "drop":
                # packets in flight are lost with the link
                for due, _, d, _pkt in queue:
                    stats[d]["cut"] += 1
                queue.clear()
        c.sendall(json.dumps({"params": p, "stats": stats}).encode() + b"\n")

    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, d, pkt = heapq.heappop(queue)
            deliver(d, pkt)
        timeout = max(0.0, queue[0][0] - now) if queue else 1.0
        r, _, _ = select.select([fds["ab"], fds["ba"], ctl], [], [], timeout)
        if os.getppid() != parent:
            print("the test process is gone: exiting", file=sys.stderr, flush=True)
            return
        now = time.monotonic()
        for fd in r:
            if fd is ctl:
                c, _ = ctl.accept()
                c.settimeout(2)
                try:
                    command(c)
                except (OSError, ValueError) as e:
                    print(f"control: {e!r}", file=sys.stderr, flush=True)
                finally:
                    c.close()
                continue
            d = src_of[fd]
            for _ in range(64):
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError as e:  # the device went with its namespace
                    print(f"read from {d}: {e}: exiting", file=sys.stderr, flush=True)
                    return
                stats[d]["in"] += 1
                if p["state"] == "drop":
                    stats[d]["cut"] += 1
                elif p["state"] == "stall":
                    if len(held[d]) < HOLD_MAX:
                        held[d].append(pkt)
                        stats[d]["held"] += 1
                    else:
                        stats[d]["overflow"] += 1
                elif p["loss"] and rng.random() < p["loss"]:
                    stats[d]["lost"] += 1
                elif not p["delay_ms"] and not p["jitter_ms"] and not queue:
                    deliver(d, pkt)
                else:
                    schedule(d, pkt, now)


def reaper_main(prefix):
    """Waits for EOF on stdin (the test process closed it or is gone), then removes <prefix>'s
    namespaces and whatever still runs in them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    remove_namespaces(prefix)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--link":
        wire_main(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--reap":
        reaper_main(sys.argv[2])
    else:
        print("usage: netns.py --link JSON | --reap PREFIX (used by Topology)", file=sys.stderr)
        sys.exit(2)
