"""bench/benchlib.py: what the benchmarks share (processes, /proc sampling, a quiet machine).

The helpers bench/fanout and bench/tree share: every process is started in its own
session and remembered so that it can be killed on exit; CPU is read from the scheduler's clock
(/proc/PID/task/*/schedstat), memory as the sum of Pss over a process tree. Standard library
only.
"""

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
procs = []            # every Popen started through spawn(), killed by kill_all()
T0 = time.monotonic()
NAME = "bench"        # the prefix of log lines


def log(msg):
    print(f"[{NAME} {time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ---- processes --------------------------------------------------------------------------------


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(argv, stdout=None, stderr=None, **kw):
    """Starts <argv> in its own session (so its whole group can be killed) and remembers it."""
    p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=stdout,
                         stderr=stderr, start_new_session=True, preexec_fn=raise_nofile, **kw)
    procs.append(p)
    return p


def kill(p, grace=5.0, sig=signal.SIGTERM):
    """<sig> to <p>, SIGKILL to its whole process group after <grace> s or once it is gone
    (stragglers: workers, children); reaps it."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass
    if p in procs:
        procs.remove(p)


def kill_all():
    for p in list(procs):
        kill(p, 3.0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(port, path, timeout=5.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def metrics(port, timeout=5.0):
    """rostrum's /metrics as {name{labels}: value}."""
    m = {}
    for line in http_get(port, "/metrics", timeout).splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                m[k] = float(v)
            except ValueError:
                pass
    return m


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - anything means "not yet"
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what} (last error: {last})")


def safe(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a missed sample is reported as null
        return None


# ---- /proc sampling ---------------------------------------------------------------------------


def proc_table():
    """{pid: (ppid, utime+stime ticks, cutime+cstime ticks)} for every process."""
    t = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        t[int(e)] = (int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]))
    return t


def tree(root, table=None):
    """<root> and all its descendants."""
    table = table or proc_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
            todo.extend(kids.get(p, []))
    return out


def task_cpu_ns(pid):
    """CPU time of every thread of <pid> from the scheduler's clock (schedstat, ns): exact, where
    utime/stime are sampled at ticks and miss a worker that wakes for a few ms and sleeps."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def cpu_seconds(root, table=None):
    """CPU seconds of <root>'s tree, plus the tick-sampled time of children it already reaped."""
    table = table or proc_table()
    ns = sum(task_cpu_ns(p) for p in tree(root, table))
    reaped = table[root][2] / CLK_TCK if root in table else 0.0
    return ns / 1e9 + reaped


def memory_bytes(root):
    """Sum of Pss over <root>'s tree, in bytes."""
    total = 0
    for p in tree(root):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def wchar_bytes(root):
    """Bytes <root>'s tree wrote through write-type system calls (/proc/PID/io wchar: sockets
    included; a process gone since is not counted)."""
    total = 0
    for p in tree(root):
        try:
            with open(f"/proc/{p}/io") as f:
                for line in f:
                    if line.startswith("wchar:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def machine_busy_s():
    """Busy CPU seconds over all cores from /proc/stat (tick-sampled)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def wait_quiet(quiet_cores, quiet_wait, what):
    """Waits (up to <quiet_wait> s) until the machine uses at most <quiet_cores> cores: the
    cores are shared with other people's work. Returns the busy cores last seen."""
    deadline = time.monotonic() + quiet_wait
    waited = False
    while True:
        b0, t0 = machine_busy_s(), time.monotonic()
        time.sleep(2)
        busy = (machine_busy_s() - b0) / (time.monotonic() - t0)
        if busy <= quiet_cores:
            if waited:
                log(f"machine quiet ({busy:.2f} cores busy): {what}")
            return busy
        if time.monotonic() > deadline:
            log(f"machine still busy ({busy:.2f} cores) after {quiet_wait} s: running {what} "
                f"anyway")
            return busy
        if not waited:
            log(f"machine busy ({busy:.2f} cores, load average {loadavg()}): waiting before "
                f"{what}")
            waited = True


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return (f"{os.cpu_count()} CPUs ({model}), {mem:,} MiB, Linux {os.uname().release}, "
            f"descriptor limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,}")
