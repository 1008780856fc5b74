"""/metrics: valid Prometheus text (promtool agrees) with values that match what is going on."""

import subprocess
import time

from harness import (check, ffmpeg_source, http_request, listen, metric, metrics, parse_metrics,
                     test, wait_for, wait_live)

REQUIRED = {
    "rostrum_listeners": "gauge",
    "rostrum_listener_connections": "gauge",
    "rostrum_joins_total": "counter",
    "rostrum_stalls_total": "counter",
    "rostrum_bytes_sent_total": "counter",
    "rostrum_sources_connected": "gauge",
    "rostrum_pages_published_total": "counter",
}


def promtool(ctx, text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=20)
    out = (p.stdout + p.stderr).decode(errors="replace").strip()
    check(p.returncode == 0, f"promtool check metrics failed ({p.returncode}):\n{out}")


def types(text):
    out = {}
    for line in text.split("\n"):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            out[name] = kind.strip()
    return out


@test(timeout=40, icecast=False)
def test_metrics_promtool_and_values(ctx):
    srv = ctx.start_server()
    vals, text = metrics(srv)
    promtool(ctx, text)  # also valid when nothing is live
    check(metric(vals, "rostrum_listeners") == 0, "rostrum_listeners != 0 with no listener")
    check(metric(vals, "rostrum_sources_connected") == 0, "sources_connected != 0 with no source")

    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lst = listen(ctx, srv, "/live")
    check(lst.resp.status == 200, f"GET /live -> {lst.resp.status}")
    wait_for(lambda: lst.nbytes() > 10000, 10, "the listener to receive audio")
    time.sleep(1)
    vals, text = metrics(srv)
    promtool(ctx, text)
    kinds = types(text)
    for name, kind in REQUIRED.items():
        check(name in kinds, f"no # TYPE line for {name}")
        check(kinds[name] == kind, f"{name} is a {kinds[name]}, want {kind}")
        check(metric(vals, name) is not None, f"no sample of {name}")
    check(metric(vals, "rostrum_listeners") == 1,
          f"rostrum_listeners = {metric(vals, 'rostrum_listeners')} with one listener")
    check(metric(vals, "rostrum_listener_connections") == 1,
          f"rostrum_listener_connections = {metric(vals, 'rostrum_listener_connections')}")
    check(metric(vals, "rostrum_sources_connected") == 1,
          f"rostrum_sources_connected = {metric(vals, 'rostrum_sources_connected')}")
    joins = {dict(labels).get("outcome"): v for (n, labels), v in vals.items()
             if n == "rostrum_joins_total"}
    check(None not in joins, f"rostrum_joins_total without an outcome label: {joins}")
    check(sum(joins.values()) >= 1, f"rostrum_joins_total sums to {sum(joins.values())}")
    sent1 = metric(vals, "rostrum_bytes_sent_total")
    pages1 = metric(vals, "rostrum_pages_published_total")
    check(sent1 >= lst.nbytes() * 0.5, f"bytes_sent_total {sent1} but the listener got "
                                       f"{lst.nbytes()}")
    check(pages1 > 0, "rostrum_pages_published_total is 0 with a live source")

    # Over an interval: what the counter gained is what the listener received, plus the one
    # response in between (the /metrics answer that gave sent1, counted once it was written;
    # responses count as bytes written to clients too)
    got1 = lst.nbytes()
    r1 = http_request(srv.audience, "GET", "/metrics")
    base = metric(parse_metrics(r1.body.decode()), "rostrum_bytes_sent_total")
    resp1 = len(r1.head_raw) + len(r1.body)
    time.sleep(2.5)
    vals, _ = metrics(srv)
    check(metric(vals, "rostrum_bytes_sent_total") > sent1, "bytes_sent_total did not grow")
    check(metric(vals, "rostrum_pages_published_total") > pages1, "pages_published did not grow")
    got = lst.nbytes() - got1
    sent = metric(vals, "rostrum_bytes_sent_total") - base - resp1
    check(got > 8000, f"the listener received only {got} bytes in 2.5 s")
    # bytes in flight between the server's count and the reader: a few KB, never a page's worth
    # of each write twice (a double count would be off by all of <got>)
    check(abs(sent - got) < max(6000, 0.25 * got),
          f"bytes_sent_total grew by {sent:.0f} (the /metrics answer "
                                   f"of {resp1} bytes aside) while the only listener received "
                                   f"{got}")

    lst.close()
    src.kill()
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_listener_connections") == 0, 6,
             "rostrum_listener_connections to drop to 0")
    wait_for(lambda: metric(metrics(srv)[0], "rostrum_sources_connected") == 0, 6,
             "rostrum_sources_connected to drop to 0")
