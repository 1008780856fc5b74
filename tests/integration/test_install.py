"""Installable (issue 9, part 4): `make install` under DESTDIR/PREFIX, the man page renders and
names every global config key, `systemd-analyze verify` accepts the unit, the server tells
systemd READY=1 over NOTIFY_SOCKET, the top-level command line (--version, -h, an unknown
command named), and `--user` dropping privileges after binding while listeners still get audio.
"""

import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness import (PASSWORD, ROOT, Skip, check, check_ffmpeg_decode, ffmpeg_listener,
                     ffmpeg_source, http_request, test, wait_for, wait_live)

INSTALLED = ["bin/rostrum", "bin/rostrum-load", "bin/rostrum-speak", "bin/rostrum-captions",
             "share/man/man1/rostrum.1",
             "share/doc/rostrum/rostrum.conf.example", "lib/systemd/system/rostrum.service"]


def global_keys():
    """The global keys of the config file, read from config.c's key_defs table: each is a
    --KEY option of `rostrum serve`."""
    text = (ROOT / "src/config/config.c").read_text()
    keys = re.findall(r'\[KEY_\w+\]\s*=\s*\{"([a-z-]+)",\s*([A-Z_| ]+),', text)
    out = [k for k, where in keys if "IN_GLOBAL" in where]
    check(len(out) >= 25, f"found only {len(out)} global keys in config.c: {out}")
    return out


def make_install(ctx, destdir, prefix):
    """`make install` of the build the tested binary belongs to (its folder is the O= of the
    Makefile; the sanitizer build links with SAN=1), so nothing is rebuilt."""
    out = Path(ctx.binary).parent
    argv = ["make", "-s", "-C", str(ROOT), "install", f"DESTDIR={destdir}", f"PREFIX={prefix}"]
    try:
        argv.append(f"O={out.relative_to(ROOT)}")
        if "asan" in out.name:
            argv.append("SAN=1")
    except ValueError:
        pass  # a binary outside the tree: the default build folder
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"{' '.join(argv)} exited with {r.returncode}:\n{r.stderr[-2000:]}")


@test(timeout=300, icecast=False)
def test_issue9_install_make_install_destdir_prefix(ctx):
    dest = ctx.tmp / "dest"
    make_install(ctx, dest, "/usr")
    for rel in INSTALLED:
        f = dest / "usr" / rel
        check(f.is_file(), f"make install DESTDIR=... PREFIX=/usr did not install /usr/{rel}")
    for b in ("rostrum", "rostrum-load", "rostrum-speak", "rostrum-captions"):
        f = dest / "usr/bin" / b
        check(os.access(f, os.X_OK), f"/usr/bin/{b} is not executable")
        check(f.read_bytes() == (Path(ctx.binary).parent / b).read_bytes(),
              f"/usr/bin/{b} is not the built {b}")
    r = subprocess.run([dest / "usr/bin/rostrum", "--version"], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.startswith("rostrum "),
          f"installed rostrum --version: {r.returncode} {r.stdout!r}")
    unit = (dest / "usr/lib/systemd/system/rostrum.service").read_text()
    check(re.search(r"^ExecStart=/usr/bin/rostrum serve ", unit, re.M),
          "the installed unit's ExecStart is not /usr/bin/rostrum serve ...")
    check(not any(dest.rglob("etc/rostrum/rostrum.conf")), "make install wrote a live config")
    # Another PREFIX: the unit follows the binary.
    dest2 = ctx.tmp / "dest2"
    make_install(ctx, dest2, "/opt/rostrum")
    check((dest2 / "opt/rostrum/bin/rostrum").is_file(), "PREFIX=/opt/rostrum: no bin/rostrum")
    unit2 = (dest2 / "opt/rostrum/lib/systemd/system/rostrum.service").read_text()
    check(re.search(r"^ExecStart=/opt/rostrum/bin/rostrum serve ", unit2, re.M),
          "PREFIX=/opt/rostrum: the unit's ExecStart does not point at /opt/rostrum/bin/rostrum")


@test(timeout=60, icecast=False)
def test_issue9_install_man_page_renders_and_names_every_key(ctx):
    page = ROOT / "docs/rostrum.1"
    check(page.is_file(), "no docs/rostrum.1")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and not r.stderr.strip(),
          f"groff -man -ww warns ({r.returncode}):\n{r.stderr[-2000:]}")
    env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="0")
    r = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                       timeout=30, env=env)
    check(r.returncode == 0 and not r.stderr.strip(),
          f"man -l docs/rostrum.1 ({r.returncode}):\n{r.stderr[-2000:]}")
    # The rendered text, without overstrike and hyphenation at line ends.
    text = re.sub(r".\x08", "", r.stdout)
    text = re.sub(r"[\u2010\-]\n\s*", "", text)
    text = text.replace("\u2010", "-").replace("\u2212", "-")
    missing = [k for k in global_keys() if f"--{k}" not in text]
    check(not missing, f"the man page does not name these options: {missing}")
    for want in ("serve", "--config", "--version", "--help", "SIGTERM", "SIGINT", "SIGHUP",
                 "EXIT STATUS", "FILES", "rostrum.service", "rostrum.conf"):
        check(want in text, f"the man page does not mention {want}")
    # the page is of this version
    r = subprocess.run([ctx.binary, "--version"], capture_output=True, text=True)
    th = re.search(r'^\.TH ROSTRUM 1 "[^"]*" "([^"]*)"', page.read_text(), re.M)
    check(th and th.group(1) == r.stdout.strip(),
          f"the man page's .TH says {th and th.group(1)!r}, rostrum --version {r.stdout!r}")
    # serve --help and the man page describe the same options: each --KEY of --help is here.
    r = subprocess.run([ctx.binary, "serve", "--help"], capture_output=True, text=True)
    for opt in set(re.findall(r"--[a-z][a-z-]+", r.stdout)) - {"--KEY"}:
        check(opt in text, f"serve --help lists {opt}, the man page does not")


@test(timeout=60, icecast=False)
def test_issue9_install_systemd_unit_verifies(ctx):
    unit_src = ROOT / "docs/rostrum.service"
    check(unit_src.is_file(), "no docs/rostrum.service")
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise Skip("systemd-analyze is not installed (scripts/install-deps test installs it)")
    unit = unit_src.read_text()
    for want in (r"^Type=notify$", r"^ExecReload=/bin/kill -HUP \$MAINPID$",
                 r"^LimitNOFILE=\d{5,}$", r"^User=rostrum$", r"^NoNewPrivileges=yes$",
                 r"^ProtectSystem=strict$", r"^ProtectHome=yes$", r"^PrivateTmp=yes$",
                 r"^RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX$",
                 r"^ExecStart=/usr/bin/rostrum serve --config /etc/rostrum/rostrum\.conf$"):
        check(re.search(want, unit, re.M), f"the unit has no line matching {want}")
    # verify a copy that starts the built binary, with the man page where man finds it
    d = ctx.tmp / "unit"
    d.mkdir()
    (d / "rostrum.service").write_text(
        unit.replace("ExecStart=/usr/bin/rostrum ", f"ExecStart={ctx.binary} "))
    (ctx.tmp / "man/man1").mkdir(parents=True)
    shutil.copy(ROOT / "docs/rostrum.1", ctx.tmp / "man/man1/rostrum.1")
    env = dict(os.environ, MANPATH=str(ctx.tmp / "man"), SYSTEMD_LOG_LEVEL="notice")
    r = subprocess.run([tool, "verify", str(d / "rostrum.service")], capture_output=True,
                       text=True, timeout=30, env=env)
    if r.returncode != 0 and re.search(r"(?i)failed to (initialize|connect)|no such file or "
                                       r"directory.*(/run/systemd|bus)", r.stderr):
        raise Skip(f"systemd-analyze cannot run here: {r.stderr.strip()[-300:]}")
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          f"systemd-analyze verify ({r.returncode}):\n{r.stdout}{r.stderr}")
    # and it is not a rubber stamp: a bad value is said (verify still exits 0 for that, hence
    # the empty-output check above), a missing binary fails
    (d / "bad.service").write_text(unit.replace("ProtectHome=yes", "ProtectHome=yess")
                                   .replace("ExecStart=/usr/bin/rostrum ", f"ExecStart={ctx.binary} "))
    r = subprocess.run([tool, "verify", str(d / "bad.service")], capture_output=True, text=True,
                       timeout=30, env=env)
    check("yess" in r.stderr, f"systemd-analyze verify said nothing of ProtectHome=yess: {r.stderr}")
    (d / "bad2.service").write_text(unit.replace("ExecStart=/usr/bin/rostrum ",
                                                 f"ExecStart={ctx.tmp}/no-such-rostrum "))
    r = subprocess.run([tool, "verify", str(d / "bad2.service")], capture_output=True, text=True,
                       timeout=30, env=env)
    check(r.returncode != 0, "systemd-analyze verify accepted a unit whose binary is missing")


@test(timeout=60, icecast=False)
def test_issue9_install_sd_notify_ready_once_ports_listen(ctx):
    """Type=notify: with NOTIFY_SOCKET set, READY=1 arrives once both ports accept, and
    STOPPING=1 when SIGTERM is taken."""
    path = ctx.tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    ctx.on_cleanup(sock.close)
    out = ctx.tmp / "notified.stdout"
    p = ctx.spawn("notified", [ctx.binary, "serve", "--audience", "127.0.0.1:0", "--stage",
                               "127.0.0.1:0", "--source-password", PASSWORD, "--workers", "1"],
                  stdout=out, env={"NOTIFY_SOCKET": str(path)})
    sock.settimeout(15)
    try:
        msg = sock.recv(4096).decode()
    except socket.timeout:
        raise AssertionError(f"no sd_notify message within 15 s\n{p.tail()}")
    check("READY=1" in msg.split("\n"), f"sd_notify sent {msg!r}, not READY=1")
    m = re.match(r"ready audience=127\.0\.0\.1:(\d+) stage=127\.0\.0\.1:(\d+)",
                 out.read_text())
    check(m, f"READY=1 came before the ready line: {out.read_text()!r}")
    for port in m.groups():  # both ports accept when systemd hears READY
        socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
    check(http_request(int(m.group(1)), "GET", "/status-json.xsl").status == 200,
          "audience port does not answer after READY=1")
    p.signal(15)
    try:
        msg = sock.recv(4096).decode()
    except socket.timeout:
        raise AssertionError(f"no STOPPING=1 after SIGTERM\n{p.tail()}")
    check("STOPPING=1" in msg.split("\n"), f"on SIGTERM sd_notify sent {msg!r}, not STOPPING=1")
    rc = p.wait(20)
    check(rc == 0, f"exit {rc} on SIGTERM\n{p.tail()}")


@test(timeout=30, icecast=False)
def test_issue9_install_version_help_unknown_command(ctx):
    def run(*args):
        return subprocess.run([ctx.binary, *args], capture_output=True, text=True, timeout=10)

    r = run("--version")
    check(r.returncode == 0 and re.fullmatch(r"rostrum \d+\.\d+\S*\n", r.stdout),
          f"--version: exit {r.returncode}, {r.stdout!r} {r.stderr!r}")
    for h in ("-h", "--help"):
        r = run(h)
        check(r.returncode == 0, f"{h}: exit {r.returncode}")
        check(re.search(r"^\s+serve\b", r.stdout, re.M), f"{h} does not list serve: {r.stdout!r}")
    r = run("frobnicate")
    check(r.returncode == 2, f"an unknown command exits {r.returncode}, not 2")
    check("rostrum: unknown command 'frobnicate'" in r.stderr,
          f"the unknown command is not named: {r.stderr!r}")
    r = run("--frobnicate")
    check(r.returncode == 2 and "'--frobnicate'" in r.stderr,
          f"an unknown option: exit {r.returncode}, {r.stderr!r}")
    r = run()
    check(r.returncode == 2 and "serve" in r.stderr, f"no command: exit {r.returncode}")
    r = run("serve", "--help")
    check(r.returncode == 0 and "--user" in r.stdout, "serve --help does not list --user")


def uids(pid):
    """The real, effective, saved and filesystem uids of <pid>."""
    for line in Path(f"/proc/{pid}/status").read_text().split("\n"):
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    return []


def child_pids(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(x) for x in out.split()]


@test(timeout=90, icecast=False)
def test_issue9_install_user_drops_privileges_after_binding(ctx):
    if os.geteuid() != 0:
        raise Skip("--user needs the test to run as root")
    nobody = pwd.getpwnam("nobody").pw_uid
    srv = ctx.start_server(extra=["--user", "nobody", "--workers", "2"])
    pids = [srv.proc.pid] + child_pids(srv.proc.pid)
    check(len(pids) == 3, f"main and 2 workers expected, found {pids}")
    for pid in pids:
        check(uids(pid) == [nobody] * 4, f"pid {pid} runs with uids {uids(pid)}, not nobody's")
    check(re.search(r"running as user nobody", srv.log_text()), "no log line for the drop")
    # the shared memory still carries audio from the main process to the workers
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = ffmpeg_listener(ctx, srv, "/live", "3")
    check_ffmpeg_decode(lst, 3, 20)
    # a worker restarted after the drop is nobody too, and listens
    os.kill(pids[1], 9)
    wait_for(lambda: len([p for p in child_pids(srv.proc.pid) if p not in pids]) == 1, 10,
             "the killed worker to be restarted")
    new = [p for p in child_pids(srv.proc.pid) if p not in pids][0]
    check(uids(new) == [nobody] * 4, f"restarted worker runs with uids {uids(new)}")
    # one process (--workers 0): dropped after the audience port too
    srv0 = ctx.start_server(extra=["--user", "nobody", "--workers", "0"])
    check(uids(srv0.proc.pid) == [nobody] * 4, f"--workers 0: uids {uids(srv0.proc.pid)}")
    check(http_request(srv0.audience, "GET", "/status-json.xsl").status == 200,
          "--workers 0 as nobody: status-json does not answer")


@test(timeout=30, icecast=False)
def test_issue9_install_user_unknown_refuses_to_start(ctx):
    r = subprocess.run([ctx.binary, "serve", "--audience", "127.0.0.1:0", "--stage",
                        "127.0.0.1:0", "--source-password", PASSWORD, "--workers", "1",
                        "--user", "no-such-user-rostrum"], capture_output=True, text=True,
                       timeout=20)
    check(r.returncode == 1, f"an unknown user: exit {r.returncode}, not 1:\n{r.stderr[-800:]}")
    check("user 'no-such-user-rostrum': no such user" in r.stderr,
          f"no clear message for an unknown user: {r.stderr[-800:]!r}")
    check("ready" not in r.stdout, "the server said ready although it cannot drop privileges")
    if os.geteuid() == 0:
        # not root (here: nobody) and asked to become another user: refused, not ignored
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            ctx.binary, "serve", "--audience", "127.0.0.1:0", "--stage",
                            "127.0.0.1:0", "--source-password", PASSWORD, "--workers", "1",
                            "--user", "daemon"], capture_output=True, text=True, timeout=20,
                           cwd="/")
        check(r.returncode == 1 and "cannot become user 'daemon'" in r.stderr,
              f"a failed drop: exit {r.returncode}, {r.stderr[-800:]!r}")
        check("ready" not in r.stdout, "the server said ready after a failed drop")


def unit_syscall_filter(unit, tool):
    """The system calls the unit's SystemCallFilter= lines allow (an allow-list, minus the
    ~ lines), groups expanded with `systemd-analyze syscall-filter`."""
    out = subprocess.run([tool, "syscall-filter"], capture_output=True, text=True,
                         timeout=30).stdout
    groups, cur = {}, None
    for line in out.split("\n"):
        m = re.match(r"^(@[\w-]+)$", line)
        if m:
            cur = groups.setdefault(m.group(1), [])
            continue
        m = re.match(r"^\s+([@\w-]+)$", line)
        if m and cur is not None:
            cur.append(m.group(1))

    def expand(items):
        r = set()
        for x in items:
            r |= expand(groups.get(x, [])) if x.startswith("@") else {x}
        return r

    allowed = set()
    for line in re.findall(r"^SystemCallFilter=(.*)$", unit, re.M):
        if line.startswith("~"):
            allowed -= expand(line[1:].split())
        else:
            allowed |= expand(line.split())
    check(len(allowed) > 100, f"could not read the unit's filter ({len(allowed)} calls)")
    return allowed


@test(timeout=90, icecast=False)
def test_issue9_install_unit_sandbox_allows_what_rostrum_does(ctx):
    """The unit's seccomp filter kills (or here: fails) any other call, so every system call a
    live server makes -- start-up, workers, a source, a listener, a stage speaker, metrics,
    SIGTERM -- must be in it; sockets only of the allowed families; no W+X memory
    (MemoryDenyWriteExecute). Measured with strace on the binary under test."""
    tool, strace = shutil.which("systemd-analyze"), shutil.which("strace")
    if not tool or not strace:
        raise Skip("needs systemd-analyze and strace (scripts/install-deps test installs them)")
    unit = (ROOT / "docs/rostrum.service").read_text()
    allowed = unit_syscall_filter(unit, tool)
    trace, out = ctx.tmp / "strace.txt", ctx.tmp / "traced.stdout"
    p = ctx.spawn("traced", [strace, "-f", "-qq", "-o", trace, ctx.binary, "serve",
                             "--audience", "127.0.0.1:0", "--stage", "127.0.0.1:0",
                             "--source-password", PASSWORD, "--workers", "2",
                             "--host-key", "hk-install"], stdout=out,
                  env={"ASAN_OPTIONS": "detect_leaks=0"})  # LeakSanitizer cannot run traced

    class Traced:  # what the harness helpers need of a server
        password = PASSWORD

        def url(self, path):
            return f"http://127.0.0.1:{self.audience}{path}"

        def source_url(self, mount):
            return f"icecast://source:{PASSWORD}@127.0.0.1:{self.stage}{mount}"

    srv = Traced()
    m = wait_for(lambda: re.match(r"ready audience=127\.0\.0\.1:(\d+) stage=127\.0\.0\.1:(\d+)",
                                  out.read_text()), 30, "the traced server's ready line")
    srv.audience, srv.stage = int(m.group(1)), int(m.group(2))
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = ffmpeg_listener(ctx, srv, "/live", "2")
    # issue 11: the AAC and MP3 encoders (libavcodec, libmp3lame) run inside the sandbox too
    wait_for(lambda: http_request(srv.audience, "HEAD", "/live.mp3").status == 200, 5,
             "the renditions' slots")
    renditions = [ffmpeg_listener(ctx, srv, f"/live.{ext}", "2", name=f"listener_{ext}")
                  for ext in ("aac", "mp3")]
    spk = ctx.spawn("speaker", [Path(ctx.binary).parent / "rostrum-speak", "--stage",
                                f"127.0.0.1:{srv.stage}", "--space", "room", "--key",
                                "hk-install", "--tone", "330", "--seconds", "2"])
    check_ffmpeg_decode(lst, 2, 30)
    for r in renditions:
        check_ffmpeg_decode(r, 2, 30)
    check(spk.wait(30) == 0, f"rostrum-speak failed:\n{spk.tail()}")
    for path in ("/metrics", "/status-json.xsl", "/"):
        check(http_request(srv.audience, "GET", path).status == 200, f"GET {path}")
    main = [int(x) for x in subprocess.run(["ps", "-o", "pid=", "--ppid", str(p.pid)],
                                           capture_output=True, text=True).stdout.split()]
    check(len(main) == 1, f"strace's child: {main}")
    os.kill(main[0], 15)
    check(p.wait(30) == 0, f"the traced server did not stop cleanly:\n{p.tail()}")
    text = trace.read_text(errors="replace")
    calls = set(re.findall(r"^\d+ +(\w+)\(", text, re.M))
    check(len(calls) > 30, f"strace saw only {sorted(calls)}")
    denied = sorted(calls - allowed - {"execve"})  # execve: systemd's own, before the filter
    check(not denied, f"rostrum makes calls the unit's SystemCallFilter= refuses: {denied}")
    fams = set(re.findall(r"\bsocket\((AF_\w+)", text))
    check(fams <= {"AF_INET", "AF_INET6", "AF_UNIX"},
          f"sockets of families RestrictAddressFamilies= refuses: {sorted(fams)}")
    wx = re.findall(r"^\d+ +(?:mmap|mprotect|pkey_mprotect)\(.*PROT_WRITE\|PROT_EXEC.*$", text,
                    re.M)
    check(not wx, f"writable and executable memory (MemoryDenyWriteExecute=): {wx[:3]}")
