"""Upgrade without dropping anyone (issue 9, part 3): SIGUSR2 runs the binary now at the path
the server was started from, which takes over every connection. The server runs from a copy of
the binary under test, and the copy is replaced on disk (a new inode, as `make install` or a
package does) before the signal, so the process that takes over is a different file."""

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

from harness import (Server, check, check_ffmpeg_decode, check_listener_ogg, ffmpeg_listener,
                     ffmpeg_source, goertzel_ratio, listen, metric, metrics, pcm_samples, test,
                     wait_for, wait_live)

KEY = "upgrade-host-key"


def installed_copy(ctx):
    """The binary under test, copied to where an operator would have installed it."""
    path = ctx.tmp / "bin" / "rostrum"
    path.parent.mkdir(exist_ok=True)
    shutil.copy2(ctx.binary, path)
    return path


def replace_binary(ctx, path):
    """A new file at <path> (a new inode: the running one is then '(deleted)')."""
    new = path.with_name("rostrum.new")
    shutil.copy2(ctx.binary, new)
    os.replace(new, path)


def speaker(ctx, srv, space, name, tone, seconds):
    binary = Path(ctx.binary).parent / "rostrum-speak"
    argv = [binary, "--stage", f"127.0.0.1:{srv.stage}", "--space", space, "--name", name,
            "--seconds", seconds, "--json", "--key", KEY, "--tone", tone]
    return ctx.spawn(f"speak_{name}", argv, stdout=ctx.tmp / f"speak_{name}.json")


def upgrade(srv):
    def counts():
        t = srv.log_text()
        return len(re.findall(r"took over \d+ spaces", t)), t.count("not upgrading")
    took0, refused0 = counts()
    os.kill(srv.proc.pid, signal.SIGUSR2)
    wait_for(lambda: counts() != (took0, refused0), 15, "the new binary to take over")
    check(counts()[1] == refused0, f"the upgrade was refused:\n{srv.proc.tail()}")


@test(timeout=120, icecast=False)
def test_upgrade_keeps_listeners_speakers_and_sources_issue9(ctx):
    """During an upgrade: an ffmpeg listener decodes the stage's programme, a raw listener's
    Ogg stream stays one stream (page numbers by one, granules by the audio), two speakers
    stay on stage (rostrum-speak exits 0 and hears the other after), a studio source keeps
    /live going and rostrum-load's listeners on it see no disconnect, gap or stall. The pid
    stays the same (systemd's MAINPID), the workers are new processes."""
    exe = installed_copy(ctx)
    srv = Server(ctx, exe, extra=["--host-key", KEY, "--workers", "2"])
    src = ffmpeg_source(ctx, srv, "/live", 550)
    wait_live(srv, "/live", proc=src)
    a = speaker(ctx, srv, "room", "A", 440, 14)
    b = speaker(ctx, srv, "room", "B", 660, 14)
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_stage_speakers", space="room") == 2, 10,
             "two speakers on stage")
    raw = listen(ctx, srv, "/room")
    raw_live = listen(ctx, srv, "/live")
    dec = ffmpeg_listener(ctx, srv, "/room", 9)
    n = 40
    load = ctx.spawn("rostrum_load", [Path(ctx.binary).parent / "rostrum-load", "listen",
                                      "--url", srv.url("/live"), "--listeners", n, "--rate", 200,
                                      "--seconds", 9, "--stall-ms", 4000, "--metrics-url", "none",
                                      "--json"], stdout=ctx.tmp / "load.json")
    time.sleep(3)
    workers_before = {int(p) for p in re.findall(r"worker \d+ \(pid (\d+)\)", srv.log_text())}
    replace_binary(ctx, exe)
    t_up = time.monotonic()
    upgrade(srv)
    wait_for(lambda: srv.log_text().count("handed over and exited") == 2, 15,
             "both old workers to hand over and exit")
    took = time.monotonic() - t_up
    text = srv.log_text()
    m = re.search(r"took over (\d+) spaces, (\d+) members, (\d+) sources", text)
    check(m and m.groups() == ("2", "2", "1"),
          f"the new binary took over {m.groups() if m else None} (spaces, members, sources), "
          f"want 2, 2, 1")
    handed = [int(x) for x in re.findall(r"took over (\d+) of (?:\d+) listeners", text)]
    check(sum(handed) >= n + 3, f"workers took over {handed} listeners, want {n + 3} or more")
    check(srv.proc.alive(), "the server's main process is gone after the upgrade")
    # the programme carries on through the new mixer: both voices, after the upgrade too
    pcm = check_ffmpeg_decode(dec, 9, 30)
    tail = pcm_samples(pcm[-3 * 96000:])
    for f in (440, 660):
        share = goertzel_ratio(tail, f)
        check(share > 0.15, f"{f} Hz has {share:.2f} of the programme's energy in the last 3 s "
                            "(after the upgrade), want > 0.15")
    check(load.wait(40) == 0, f"rostrum-load failed:\n{load.tail()}")
    r = json.loads(load.output().strip().splitlines()[-1])
    check(r["connected"] == n and r["open_at_end"] == n,
          f"rostrum-load: {r['connected']} connected, {r['open_at_end']} open at the end, of {n}")
    for k in ("seq_gaps", "crc_errors", "serial_changes", "sync_losses", "stalls"):
        check(r[k] == 0, f"rostrum-load saw {r[k]} {k} across the upgrade")
    for p, name in ((a, "A"), (b, "B")):
        check(p.wait(30) == 0, f"speaker {name} did not stay connected:\n{p.tail()}")
        res = json.loads(p.output().strip().splitlines()[-1])
        # 14 s of 20 ms return packets is 700; the handover may cost a few
        # its own close at the end (1000 "done") is the only one
        check(res["packets_received"] >= 550 and res.get("close_code", 1000) == 1000,
              f"speaker {name}: {res.get('packets_received')} return packets, close "
              f"{res.get('close_code')} {res.get('close_reason')}")
    raw.close()
    raw_live.close()
    for lst in (raw, raw_live):
        check(lst.end is None or lst.end == "closed", f"listener on {lst.mount} ended: {lst.end}")
        pages = check_listener_ogg(lst)
        check(len(pages) > 20, f"listener on {lst.mount}: only {len(pages)} pages")
    workers_after = {int(p) for p in re.findall(r"pid (\d+) takes over from", srv.log_text())}
    check(workers_after and not workers_after & workers_before,
          f"the workers were not replaced: before {workers_before}, after {workers_after}")
    print(f"upgrade: {took:.2f} s from the signal to both old workers gone")


@test(timeout=60, icecast=False)
def test_upgrade_refused_by_a_bad_binary_changes_nothing_issue9(ctx):
    """A binary that cannot take over (here one that fails its check) is named in the log and
    nothing changes: the same workers serve, the listener's stream goes on; a good binary
    put in place afterwards then takes over."""
    exe = installed_copy(ctx)
    srv = Server(ctx, exe, extra=["--workers", "1"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = listen(ctx, srv, "/live")
    time.sleep(1)
    bad = exe.with_name("rostrum.bad")
    bad.write_text("#!/bin/sh\necho 'rostrum: pretend the state is unknown' >&2\nexit 3\n")
    bad.chmod(0o755)
    os.replace(bad, exe)
    os.kill(srv.proc.pid, signal.SIGUSR2)
    wait_for(lambda: "not upgrading" in srv.log_text(), 10, "the refusal to be logged")
    check("exit status 3" in srv.log_text(), f"the refusal does not name the exit status:\n"
                                             f"{srv.proc.tail()}")
    time.sleep(1)
    check(lst.end is None, f"the listener ended after a refused upgrade: {lst.end}")
    replace_binary(ctx, exe)
    upgrade(srv)
    wait_for(lambda: "handed over and exited" in srv.log_text(), 15, "the old worker to go")
    time.sleep(1.5)
    lst.close()
    check(lst.end is None or lst.end == "closed", f"the listener ended: {lst.end}")
    check_listener_ogg(lst)


@test(timeout=90, icecast=False)
def test_upgrade_keeps_the_captions_12(ctx):
    """Issue 12, item 4: captions across an upgrade. The cues made under the earlier binary are
    still listed after it (same ids, times and texts, same epoch, so a poller's since= goes
    on), the new binary starts its own recogniser, and its cues continue the ids."""
    import urllib.request
    fake = Path(__file__).resolve().parents[1] / "captions" / "fake-recogniser"
    exe = installed_copy(ctx)
    srv = Server(ctx, exe, extra=["--workers", "1", "--captions", "1", "--captions-cmd",
                                  f"python3 {fake} normal"])
    src = ffmpeg_source(ctx, srv, "/live", 550)
    wait_live(srv, "/live", proc=src)

    def feed():
        with urllib.request.urlopen(srv.url("/live.captions.json"), timeout=5) as r:
            return json.loads(r.read())
    wait_for(lambda: len(feed()["cues"]) >= 3, 20, "three cues before the upgrade")
    before = feed()
    replace_binary(ctx, exe)
    upgrade(srv)
    wait_for(lambda: srv.log_text().count("handed over and exited") == 1, 15,
             "the old worker to hand over and exit")
    wait_for(lambda: "cues of the earlier binary" in srv.log_text(), 5,
             "the new binary to say it took the cues over")
    last = before["cues"][-1]["id"]
    wait_for(lambda: any(c["id"] > last for c in feed()["cues"]), 20,
             "a cue of the new binary's recogniser")
    after = feed()
    check(after["epoch"] == before["epoch"], f"epoch {before['epoch']} -> {after['epoch']}")
    kept = {c["id"]: c for c in after["cues"]}
    check(all(kept.get(c["id"]) == c for c in before["cues"]),
          f"cues before the upgrade {before['cues']}, after {after['cues']}")
    new = [c for c in after["cues"] if c["id"] > last]
    check(new and new[0]["id"] == last + 1, f"the new binary's first cue id {new[:1]}, "
                                            f"want {last + 1}")
    vals, _ = metrics(srv)
    # counters carry over an upgrade: one recogniser before it, one after
    check(metric(vals, "rostrum_captions_starts_total") == 2,
          f"recognisers started: {metric(vals, 'rostrum_captions_starts_total')}, want 2")
