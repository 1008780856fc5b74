"""A slow reader is moved to the live edge (issue 8 item 3).

A listener that reads at half the stream's bitrate is nearly always in the middle of a page when
the server writes to it. It must still be judged by the laggard rule: jumped to the live edge at
a page boundary (a counted stall), its Ogg stream still valid for a player, and what it gets
after the jump near live -- not minutes behind while counted as receiving."""

import socket
import time

from harness import (StreamReader, check, check_listener_ogg, ffmpeg_source, listen, metric, metrics,
                     parse_ogg, test, wait_for, wait_live)

LAG_MS = 2000
BYTES_PER_S = 3000  # the stream is 48 kb/s (6,000 B/s): this reads at half of it


class SlowListener(StreamReader):
    """A raw GET /<mount> with a small receive buffer, read at <rate> bytes a second."""

    def __init__(self, port, mount, rate):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        super().__init__(sock, mount, "127.0.0.1", rate)

    def pages_with_times(self):
        ends, off = [], 0
        for t, c in list(self.chunks):
            off += len(c)
            ends.append((off, t))
        pages, _ = parse_ogg(self.data())
        out, j = [], 0
        for p in pages:
            while ends[j][0] < p.offset + len(p.raw):
                j += 1
            out.append((ends[j][1], p))
        return out



def live_granule_at(ref_pages, t):
    """The newest granule a fast listener had received by time <t>."""
    g = None
    for at, p in ref_pages:
        if at > t:
            break
        if p.granule > 0:
            g = p.granule
    return g


@test(timeout=75, icecast=False)
def test_issue8_slow_reader_jumps_to_live_edge(ctx):
    cfg = ctx.tmp / "slow.conf"
    cfg.write_text(f"lag-ms = {LAG_MS}\nmax-stalls = 100\n")
    srv = ctx.start_server(config=str(cfg), burst_ms=500, extra=["--workers", "1"])
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    ref = listen(ctx, srv, "/live")  # reads at once: the live edge, for comparison
    slow = SlowListener(srv.audience, "/live", BYTES_PER_S)
    ctx.on_cleanup(slow.close)
    vals, _ = metrics(srv)
    stalls0 = metric(vals, "rostrum_stalls_total")

    def stalled():
        v, _ = metrics(srv)
        return metric(v, "rostrum_stalls_total") > stalls0

    wait_for(stalled, 40, "the slow reader to be counted as a stall (jumped to the live edge)")
    t_jump = time.monotonic()
    time.sleep(12)  # what was queued before the jump drains; then pages near live arrive
    t_end = time.monotonic()
    slow.close()
    ref.close()
    check(slow.end is None, f"the slow reader was closed ({slow.end})")

    # The stream it got is one valid Ogg/Opus stream, with jumps only at page boundaries.
    pages = check_listener_ogg(slow, allow_jumps=True)
    jumps = sum(1 for a, b in zip(pages[2:], pages[3:]) if b.seq != a.seq + 1)
    check(jumps >= 1, f"the slow reader's stream has no jump in its {len(pages)} pages")

    # The page it was jumped to was the live edge when the jump was counted.
    ref_pages = ref.pages_with_times()
    audio = [p for p in pages[2:] if p.granule > 0]
    first = next(b for a, b in zip(audio, audio[1:]) if b.seq != a.seq + 1)
    live = live_granule_at(ref_pages, t_jump)
    check(live is not None and abs(live - first.granule) < 1.5 * 48000,
          f"the slow reader was jumped to granule {first.granule}, the live edge was {live} "
          "when the stall was counted")

    # The newest page it received is near live: within lag-ms plus what the sockets held.
    # Without the rule it drifts half a second per second and is never jumped.
    timed = [(t, p) for t, p in slow.pages_with_times() if p.granule > 0]
    t_last, last = timed[-1]
    behind = (live_granule_at(ref_pages, t_last) - last.granule) / 48000.0
    check(behind < 12.0, f"{t_end - ref.t0:.0f} s in, the last page the slow reader got was "
                         f"{behind:.1f} s behind the live edge")
    v, _ = metrics(srv)
    print(f"stalls {metric(v, 'rostrum_stalls_total') - stalls0:.0f}, jumps {jumps}, first jump "
          f"counted {t_jump - ref.t0:.1f} s after joining, to {(live - first.granule) / 48000:.2f} s "
          f"from live; last page received {behind:.1f} s behind live")
