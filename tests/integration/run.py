#!/usr/bin/env python3
"""Runs the integration suite: python3 tests/integration/run.py BINARY [-k SUBSTRING] [-j N]

BINARY is build/rostrum (or build/asan/rostrum); `icecast2` runs the suite against Debian's
Icecast 2 instead, skipping the tests of rostrum-only behaviour.

Each test runs in a child process of its own (a new session, so one process group holds all it
starts), with a fresh temp dir as cwd and TMPDIR, and an environment token by which every process
it started can be found and killed afterwards, even one that detached itself. A test that runs
past its timeout is interrupted (SIGALRM, so it still cleans up and reports), then killed.

Prints `ok   NAME (1.2s)`, `skip NAME: REASON` or `FAIL NAME: REASON` (details indented below)
per test, then the lines the test reported with harness.note() (`  | ...`, whatever the
outcome: measured figures, and `skipped part: ...` for a part of a test that could not run),
and last `N passed, N failed` (`, N skipped`, `, N parts skipped` after it if any); exits 1 if
any test failed.
"""

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(HERE))

import harness  # noqa: E402


def discover(pattern):
    tests = []
    for f in sorted(HERE.glob("test_*.py")):
        try:
            mod = importlib.import_module(f.stem)
        except Exception:
            err = traceback.format_exc()

            def broken(ctx, err=err):
                raise harness.TestFailure("module does not import:\n" + err)

            if not pattern or pattern in f.stem:
                tests.append((f"{f.stem}.<import>", broken))
            continue
        for name in sorted(vars(mod)):
            fn = getattr(mod, name)
            if name.startswith("test_") and callable(fn):
                full = f"{f.stem}.{name}"
                if pattern and pattern not in full:
                    continue
                tests.append((full, fn))
    return tests


def child(binary, full, tmp, result_path, timeout):
    """Runs one test in this process and writes {status, reason, details} to <result_path>."""
    modname, fname = full.split(".", 1)
    try:
        fn = getattr(importlib.import_module(modname), fname)
    except Exception:
        Path(result_path).write_text(json.dumps({"status": "fail", "reason": "import error",
                                                 "details": traceback.format_exc()}))
        return
    ctx = harness.Ctx(binary, tmp, os.environ[harness.TOKEN_ENV])

    def on_alarm(signum, frame):
        raise harness.TestFailure(f"timed out after {timeout}s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    status, reason, details = "ok", "", ""
    try:
        fn(ctx)
    except harness.Skip as e:
        status, reason = "skip", str(e)
    except harness.TestFailure as e:
        status, reason = "fail", str(e)
    except Exception:
        status, reason = "fail", traceback.format_exc().strip().split("\n")[-1]
        details = traceback.format_exc()
    signal.alarm(20)  # cleanup must not hang either
    try:
        err = ctx.cleanup()
    except harness.TestFailure as e:
        err = e
    signal.alarm(0)
    if err and status != "fail":
        status, reason = "fail", str(err)
    elif err:  # e.g. a sanitizer report that explains the first failure: show it too
        details = f"and at shutdown: {err}\n{details}"
    if status == "fail":
        details = (details + "\n" + ctx.failure_details()).strip()
    Path(result_path).write_text(json.dumps({"status": status, "reason": reason,
                                             "details": details}))


RUNNING = {}  # child pid -> (token, tmp dir) of tests in progress, for an interrupted run
ABORTING = threading.Event()


def abort_running(signum, frame):
    """The runner itself is stopped: take every running test's processes and files with it."""
    ABORTING.set()  # before any kill, so that no worker thread starts another test
    for pid, (token, tmp) in list(RUNNING.items()):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        harness.kill_token_processes(token)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"interrupted by signal {signum}", flush=True)
    print("0 passed, 1 failed", flush=True)
    os._exit(1)


def run_one(args, full, fn):
    """Runs test <full> in a child process; returns (status, reason, details, seconds)."""
    timeout = getattr(fn, "timeout", 60)
    token = uuid.uuid4().hex
    # under the repository's build/ rather than /tmp: nothing else on a shared machine
    # sweeps it while a test runs
    base = Path(__file__).resolve().parents[2] / "build" / "itest"
    base.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="rostrum-it-", dir=base)
    result = Path(tmp) / "result.json"
    env = dict(os.environ)
    env[harness.TOKEN_ENV] = token
    env["TMPDIR"] = tmp
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    t0 = time.monotonic()
    with open(Path(tmp) / "child.out", "wb") as out:
        if ABORTING.is_set():
            shutil.rmtree(tmp, ignore_errors=True)
            return "fail", "interrupted", "", 0.0, []
        p = subprocess.Popen([sys.executable, __file__, "--child", args.binary, full, tmp,
                              str(result), str(timeout)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             cwd=tmp, env=env, start_new_session=True)
        RUNNING[p.pid] = (token, tmp)
        if ABORTING.is_set():  # stopped between the check above and now
            os.killpg(p.pid, signal.SIGKILL)
        try:
            p.wait(timeout + 40)
        except subprocess.TimeoutExpired:
            pass
    secs = time.monotonic() - t0
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()
    left = harness.kill_token_processes(token)
    RUNNING.pop(p.pid, None)
    try:
        r = json.loads(result.read_text())
        status, reason, details = r["status"], r["reason"], r["details"]
    except (OSError, ValueError, KeyError):
        status, reason = "fail", f"test process died (exit {p.returncode}) without a result"
        details = harness.tail(Path(tmp) / "child.out", 40)
    if left:
        status, reason = "fail", f"processes survived the test: {left}"
    extra = harness.tail(Path(tmp) / "child.out", 40)
    try:  # what the test reported with harness.note(), shown whatever the outcome
        notes = [line[len(harness.NOTE):] for line in
                 (Path(tmp) / "child.out").read_text(errors="replace").splitlines()
                 if line.startswith(harness.NOTE)]
    except OSError:
        notes = []
    if status == "fail" and extra:
        details = (details + "\n--- test output:\n" + extra).strip()
    if args.keep or (args.keep_failed and status == "fail"):
        details += f"\n(temp dir kept: {tmp})"
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return status, reason, details, secs, notes


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        binary, full, tmp, result, timeout = sys.argv[2:7]
        child(binary, full, tmp, result, int(timeout))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("-k", dest="pattern", default="", help="run tests whose name has SUBSTRING")
    ap.add_argument("-j", dest="jobs", type=int, default=2, help="tests run at once (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep every test's temp dir")
    ap.add_argument("--keep-failed", action="store_true", help="keep failed tests' temp dirs")
    ap.add_argument("--no-skip", action="store_true",
                    help="against icecast2, also run the tests of rostrum-only behaviour")
    args = ap.parse_args()
    if args.binary.startswith("icecast"):
        args.binary = shutil.which(args.binary) or args.binary
    else:
        args.binary = str(Path(args.binary).resolve())
    if not os.access(args.binary, os.X_OK):
        print(f"not an executable: {args.binary}")
        print("0 passed, 1 failed")
        return 1
    icecast = Path(args.binary).name.startswith("icecast")
    tests = discover(args.pattern)
    if not tests:
        print(f"no test matches {args.pattern!r}")
        print("0 passed, 1 failed")
        return 1

    signal.signal(signal.SIGINT, abort_running)
    signal.signal(signal.SIGTERM, abort_running)
    counts = {"ok": 0, "fail": 0, "skip": 0, "parts": 0}
    lock = threading.Lock()
    running = [0]
    exclusive_running = [False]
    cond = threading.Condition(lock)
    queue = list(tests)

    def report(full, status, reason, details, secs, notes=()):
        if ABORTING.is_set():
            return
        with lock:
            counts[status] += 1
            if status == "ok":
                print(f"ok   {full} ({secs:.1f}s)", flush=True)
            elif status == "skip":
                print(f"skip {full}: {reason}", flush=True)
            else:
                print(f"FAIL {full}: {reason.splitlines()[0] if reason else '?'}", flush=True)
                body = "\n".join(reason.splitlines()[1:]) + "\n" + details
                for line in body.strip().split("\n"):
                    print(f"    {line}", flush=True)
            for line in notes:
                counts["parts"] += line.startswith(harness.PART_SKIPPED)
                print(f"  | {line}", flush=True)

    def worker():
        while True:
            with cond:
                while True:
                    if not queue or ABORTING.is_set():
                        return
                    full, fn = queue[0]
                    excl = getattr(fn, "exclusive", False)
                    if exclusive_running[0] or (excl and running[0] > 0):
                        cond.wait()
                        continue
                    queue.pop(0)
                    running[0] += 1
                    exclusive_running[0] = excl
                    break
            if icecast and not args.no_skip and not getattr(fn, "icecast", True):
                result = ("skip", "rostrum-only behaviour", "", 0.0, [])
            else:
                result = run_one(args, full, fn)
            report(full, *result)
            with cond:
                running[0] -= 1
                if excl:
                    exclusive_running[0] = False
                cond.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    skipped = f", {counts['skip']} skipped" if counts["skip"] else ""
    if counts["parts"]:
        skipped += f", {counts['parts']} part{'s' if counts['parts'] > 1 else ''} skipped"
    print(f"{counts['ok']} passed, {counts['fail']} failed{skipped}", flush=True)
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
