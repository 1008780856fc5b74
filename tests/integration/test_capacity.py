"""tools/capacity and tools/capacity-figures (issue 10, item 7): the plan's arithmetic.

No server here: a small figures file with round numbers (made up for the test, not measured)
goes through tools/capacity, and the plan must scale the way the arithmetic says it does:
twice the listeners twice the edges, bandwidth = listeners x bitrate, join time = joins /
admit rate at the bottleneck tier, a doubled CPU cost twice the edges (so the figures really
are read from the file). tools/capacity-figures must pick its figures from clean runs only
and keep where each came from."""

import json
import subprocess
import sys

from harness import ROOT, TestFailure, check, test

CAPACITY = ROOT / "tools" / "capacity"
FIGURES_TOOL = ROOT / "tools" / "capacity-figures"


def figures(cpu_us=10.0, admit=1000, cores=2, demonstrated=20000):
    src = {"bench": "test", "command": "none", "date": "test", "commit": "test", "file": "-"}
    box = {"box_cores": cores, "listeners_demonstrated": demonstrated,
           "cpu_us_per_listener_s": cpu_us, "mem_bytes_per_listener": 0.0,
           "admit_rate_per_box": admit}
    server = {"retry_after_min_s": 1, "retry_after_max_s": 5, "waiting_room_rate": 500,
              "joins_per_second": 20000, "page_ms": 200, "burst_ms": 1000,
              "send_buffer_cap_bytes": 0, "web_retries_max": 8, "web_backoff_base_ms": 1000,
              "web_backoff_cap_ms": 30000, "web_backoff_jitter_lo": 0.5,
              "waiting_room_jitter_ms": 500, "backlog_window_min_s": 5,
              "backlog_window_max_s": 60, "backlog_decay_ms": 5000}
    return {"schema": "rostrum-capacity-figures/1",
            "box": {k: {"value": v, "kind": "test", "source": src} for k, v in box.items()},
            "server": {k: {"value": v, "kind": "test",
                           "source": {"file": "-", "line": 0, "commit": "test"}}
                       for k, v in server.items()}}


def run_plan(ctx, fig, *args):
    path = ctx.tmp / f"figures-{len(list(ctx.tmp.glob('figures-*')))}.json"
    path.write_text(json.dumps(fig))
    # 2 cores x 0.5 / 10 µs = 100,000 listeners per edge from the CPU; NIC and memory far away
    argv = [sys.executable, str(CAPACITY), "--figures", str(path), "--nic-gbps", "1000",
            "--ram-gib", "1000", "--overhead", "1.0", "--spare", "0", "--json", "-", *args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise TestFailure(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def near(a, b, rel=1e-9, what=""):
    check(abs(a - b) <= rel * max(abs(a), abs(b), 1e-12), f"{what}: {a} != {b}")


@test(timeout=120, icecast=False)
def test_capacity_arithmetic(ctx):
    fig = figures()
    one = run_plan(ctx, fig, "--listeners", "1000000", "--kbps", "48")
    two = run_plan(ctx, fig, "--listeners", "2000000", "--kbps", "48")
    check(one["binding"] == "cpu", f"binding limit {one['binding']}, expected cpu")
    check(one["capacity_per_edge"]["cpu"] == 100000,
          f"CPU capacity {one['capacity_per_edge']['cpu']}, expected 2 x 0.5 / 10 µs = 100,000")
    e1, e2 = one["tiers"]["edge"]["boxes"], two["tiers"]["edge"]["boxes"]
    check(e1 == 10 and e2 == 20, f"edges {e1} and {e2}, expected 10 and 20")
    # bandwidth = listeners x bitrate (overhead 1.0), for the tier and per box
    for p, n in ((one, 1e6), (two, 2e6)):
        near(p["tiers"]["edge"]["egress_gbps_total"], n * 48e3 / 1e9, what="edge tier egress")
        near(p["tiers"]["edge"]["audio_gbps_total"], n * 48e3 / 1e9, what="audio total")
        near(p["tiers"]["edge"]["egress_gbps_per_box"] * p["tiers"]["edge"]["boxes"],
             p["tiers"]["edge"]["egress_gbps_total"], what="per box x boxes")
        # a regional feeds its edges: one stream each
        near(p["tiers"]["regional"]["egress_gbps_total"], p["tiers"]["edge"]["boxes"] * 48e3 / 1e9,
             what="regional tier egress")
    # the bitrate: twice the bitrate, twice the egress (the CPU cost is per write, not per byte)
    hi = run_plan(ctx, fig, "--listeners", "1000000", "--kbps", "96")
    near(hi["tiers"]["edge"]["egress_gbps_total"], 2 * one["tiers"]["edge"]["egress_gbps_total"],
         what="96 kb/s egress")
    # join time = listeners / (edges x admit rate) at the bottleneck tier
    s = one["join_storm"]
    check(s["bottleneck"] == "edge", f"bottleneck {s['bottleneck']}, expected edge")
    near(s["fluid_join_s"], 1e6 / (10 * 1000), what="fluid join time")
    near(two["join_storm"]["fluid_join_s"], 2e6 / (20 * 1000), what="fluid join time at 2M")
    # the simulation cannot beat the fluid bound (less the 1 s bucket it starts with) and, with
    # clients that always come back, admits everyone
    m = s["simulated_edge"]
    check(m["all_s"] is not None and m["all_s"] >= 100.0 - 1.0 - 0.05,
          f"simulated join {m['all_s']} s, faster than 100,000 / 1,000/s allows")
    ra = run_plan(ctx, fig, "--listeners", "1000000", "--client", "retry-after")
    near(ra["join_storm"]["simulated_edge"]["admitted"], 100000, rel=1e-5,
         what="retry-after clients all admitted")
    check(ra["join_storm"]["simulated_edge"]["gave_up"] == 0, "a retry-after client gave up")
    # the server spreads a refusal's Retry-After over its refused backlog (1..W s, W = refused
    # / rate, 5-60 s): fewer refusals than a fixed 1-5 s (W held at 5), and never later than
    # the backlog's time plus the longest W
    fixed = figures()
    fixed["server"]["backlog_window_max_s"]["value"] = 5
    f5 = run_plan(ctx, fixed, "--listeners", "1000000", "--client", "retry-after")
    spread, lockstep = ra["join_storm"]["simulated_edge"], f5["join_storm"]["simulated_edge"]
    near(lockstep["admitted"], 100000, rel=1e-5, what="fixed 1-5 s: all admitted")
    check(spread["refusals"] < 0.8 * lockstep["refusals"],
          f"spread Retry-After: {spread['refusals']:.0f} refusals, fixed 1-5 s "
          f"{lockstep['refusals']:.0f}")
    check(spread["all_s"] <= 100.0 + 60.0 + 1.0, f"spread: all in at {spread['all_s']} s")
    # the waiting room paces at its own rate: 100,000 / 500/s = 200 s, + up to 0.5 s jitter
    wr = run_plan(ctx, fig, "--listeners", "1000000", "--waiting-room")
    w = wr["join_storm"]
    check(w["tiers"][0]["admit_rate_per_box"] == 500, "the waiting room's rate is not used")
    near(w["fluid_join_s"], 200.0, what="waiting-room fluid time")
    t = w["simulated_edge"]["all_s"]
    check(t is not None and 200.0 - 0.1 <= t <= 200.5 + 0.1,
          f"waiting room: all in at {t} s, expected 200-200.5 s")
    check(w["simulated_edge"]["refusals"] < 1.0, "the waiting room below the admit rate refused")
    # entry through an origin's redirect: that origin sees every listener
    rd = run_plan(ctx, fig, "--listeners", "1000000", "--entry", "redirect", "--origins", "1")
    check(rd["join_storm"]["bottleneck"] == "origin (redirects)",
          f"redirect bottleneck {rd['join_storm']['bottleneck']}")
    near(rd["join_storm"]["fluid_join_s"], 1e6 / 1000, what="redirect fluid time")
    # an edge dies: its listeners are shared by the survivors of its regional (10 edges under
    # the 2 regionals a tree has at least: 5 each, so 4 survivors)
    d = one["edge_death"]
    near(d["joins_per_survivor"] * d["survivors"], d["listeners_cut"], what="reconnects")
    near(d["listeners_cut"], 100000, what="listeners on the dead edge")
    check(one["tiers"]["regional"]["boxes"] == 2, "a tree of 10 edges has 2 regionals")
    check(d["survivors"] == 4, f"survivors {d['survivors']}, expected 4")
    every = run_plan(ctx, fig, "--listeners", "1000000", "--reconnect-pool", "all")
    check(every["edge_death"]["survivors"] == 9, "with --reconnect-pool all, 9 survivors")
    # the figures are read from the file: twice the CPU per listener, twice the edges
    slow = run_plan(ctx, figures(cpu_us=20.0), "--listeners", "1000000")
    check(slow["tiers"]["edge"]["boxes"] == 20,
          f"edges at 20 µs per listener-s: {slow['tiers']['edge']['boxes']}, expected 20")
    fast_admit = run_plan(ctx, figures(admit=2000), "--listeners", "1000000")
    near(fast_admit["join_storm"]["fluid_join_s"], 50.0, what="join time at 2,000/s")
    # what is not measured says so
    for k in ("relay_cpu_factor", "cpu_target", "admit_burst_s"):
        check(one["inputs"][k]["kind"].startswith("assumed, not measured"),
              f"input {k} is '{one['inputs'][k]['kind']}', not labelled assumed")
    check(one["inputs"]["nic_gbps"]["kind"] == "given", "a flag given is not labelled given")
    check(one["inputs"]["cpu_us_per_listener_s"]["kind"] == "measured",
          "the CPU figure is not labelled measured")
    relay = run_plan(ctx, fig, "--listeners", "1000000", "--relay-cpu-factor", "2")
    check(relay["tiers"]["edge"]["boxes"] == 20 and relay["inputs"]["relay_cpu_factor"]["kind"]
          == "given", "a relay costing twice an origin does not double the edges")
    # a relay factor in the figures file (bench/tree's) is used and labelled measured
    tf = figures()
    tf["box"]["relay_cpu_factor"] = {"value": 2.0, "kind": "measured",
                                     "source": {"bench": "bench/tree", "command": "none",
                                                "date": "test", "commit": "test", "file": "-"}}
    mt = run_plan(ctx, tf, "--listeners", "1000000")
    check(mt["tiers"]["edge"]["boxes"] == 20 and mt["inputs"]["relay_cpu_factor"]["kind"]
          == "measured", f"the measured relay factor is not used: {mt['inputs']['relay_cpu_factor']}")
    gv = run_plan(ctx, tf, "--listeners", "1000000", "--relay-cpu-factor", "1")
    check(gv["tiers"]["edge"]["boxes"] == 10 and gv["inputs"]["relay_cpu_factor"]["kind"]
          == "given", "--relay-cpu-factor does not override the measured factor")


def fanout_result(listeners, rate, got, stalls=0, refused=0, cpu=11.0):
    return {"listeners": listeners, "rostrum": {
        "tool": {"listeners": listeners, "rate": rate, "first_audio_ms": {"count": got, "p99": 5},
                 "listeners_with_stalls": stalls, "held_bitrate_pct": 100.0, "bytes": 6000 * 60,
                 "duration_s": 60.0, "open_at_end": got},
        "workers": 2, "admission": {"refused_overload": refused, "refused_join_rate": 0,
                                    "refused_capacity": 0},
        "cpu_us_per_listener_s": cpu, "mem_per_listener": 300.0, "writes_per_listener_s": 1.0,
        "server_cores": 0.2, "other_cores": 0.1}}


@test(timeout=60, icecast=False)
def test_capacity_figures_pick_clean_runs(ctx):
    doc = {"machine": "2 CPUs (test), 1 MiB", "build": {"commit": "abc1234"},
           "started": "2026-12-02 00:00:00 UTC", "finished": "2026-12-02 00:01:00 UTC",
           "argv": ["bench/fanout", "--loads", "5000,40000"],
           "results": [fanout_result(5000, 5000, 5000, cpu=12.0),
                       fanout_result(40000, 20000, 39000, refused=1000, cpu=8.0)]}
    f = ctx.tmp / "fanout.json"
    f.write_text(json.dumps(doc))
    p = subprocess.run([sys.executable, str(FIGURES_TOOL), str(f)], capture_output=True,
                       text=True, timeout=30)
    check(p.returncode == 0, f"capacity-figures exited {p.returncode}: {p.stderr.strip()}")
    out = json.loads(p.stdout)
    box = out["box"]
    # the 40,000 run refused joins: its figures must not be used
    check(box["listeners_demonstrated"]["value"] == 5000,
          f"listeners demonstrated {box['listeners_demonstrated']['value']}, expected 5000")
    check(box["cpu_us_per_listener_s"]["value"] == 12.0, "CPU figure not from the clean run")
    check(box["admit_rate_per_box"]["value"] == 5000, "admit rate not from the clean run")
    s = box["cpu_us_per_listener_s"]["source"]
    check(s["command"] == "bench/fanout --loads 5000,40000" and s["commit"] == "abc1234"
          and s["date"].startswith("2026-12-02"), f"source not kept: {s}")
    check([r["clean"] for r in out["runs"]] == [True, False], "runs' clean flags")
    # the code's behaviour is read from the tree, with its line
    ra = out["server"]["retry_after_max_s"]
    check(ra["source"]["file"] == "src/audience/audience.c" and ra["source"]["line"] > 0,
          f"retry-after source {ra['source']}")
    # bench/tree's JSON: the relay factor, the mean over the clean origin/relay pairs
    def side(us, clean=True):
        return {"cpu_us_per_listener_s": us, "other_cores": 0.1, "clean": clean}
    tdoc = {"bench": "bench/tree", "machine": "2 CPUs (test)", "build": {"commit": "abc1234"},
            "started": "2026-12-02 01:00:00 UTC", "argv": ["bench/tree", "--loads", "1,2,3"],
            "equal": [{"listeners": 1000, "origin": side(10.0), "relay": side(10.5),
                       "cpu_ratio": 1.05},
                      {"listeners": 2000, "origin": side(10.0), "relay": side(11.0),
                       "cpu_ratio": 1.1},
                      {"listeners": 3000, "origin": side(10.0), "relay": side(30.0, False),
                       "cpu_ratio": 3.0}]}
    tf = ctx.tmp / "tree.json"
    tf.write_text(json.dumps(tdoc))
    p = subprocess.run([sys.executable, str(FIGURES_TOOL), str(f), "--tree", str(tf)],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, f"capacity-figures --tree exited {p.returncode}: {p.stderr.strip()}")
    rf = json.loads(p.stdout)["box"]["relay_cpu_factor"]
    check(abs(rf["value"] - 1.075) < 1e-9 and rf["kind"] == "measured"
          and rf["source"]["bench"] == "bench/tree" and rf["source"]["commit"] == "abc1234",
          f"relay factor not the mean of the clean pairs (1.05, 1.1): {rf}")
    # no clean run at all: an error, never a made-up figure
    doc["results"] = doc["results"][1:]
    f.write_text(json.dumps(doc))
    p = subprocess.run([sys.executable, str(FIGURES_TOOL), str(f)], capture_output=True,
                       text=True, timeout=30)
    check(p.returncode != 0 and "no clean" in p.stderr,
          f"no clean run: exit {p.returncode}, stderr {p.stderr.strip()!r}")
