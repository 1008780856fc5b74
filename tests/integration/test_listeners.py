"""Many listeners, some vanishing or stalling: the rest carry on, and the counts are honest."""

import socket
import time

from harness import (TestFailure, check, check_listener_ogg, ffmpeg_source, listen, metric,
                     metrics, mount_status, test, wait_for, wait_live)


def counts(ctx, srv):
    """(status-json listeners of /live, rostrum_listeners, rostrum_listener_connections)."""
    st = mount_status(srv, "/live")
    n = st.get("listeners") if st else None
    if ctx.icecast:
        return n, n, n
    vals, _ = metrics(srv)
    return n, metric(vals, "rostrum_listeners"), metric(vals, "rostrum_listener_connections")


@test(timeout=60)
def test_listeners_cut_mid_stream(ctx):
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    lsts = [listen(ctx, srv, "/live", bind=f"127.0.0.{2 + i % 3}") for i in range(20)]
    for i, lst in enumerate(lsts):
        check(lst.resp.status == 200, f"listener {i}: GET /live -> {lst.resp.status}")
    wait_for(lambda: all(lst.nbytes() > 8000 for lst in lsts), 10, "all 20 to receive audio")
    wait_for(lambda: counts(ctx, srv) == (20, 20, 20), 6, "counts of 20 listeners")

    gone, kept = lsts[::2], lsts[1::2]
    for lst in gone:
        lst.close(abrupt=True)  # RST, as from a phone that lost its network
    t_cut = time.monotonic()
    last = [None]

    def dropped():
        last[0] = counts(ctx, srv)
        return last[0] == (10, 10, 10)

    try:
        wait_for(dropped, 6, "listener counts to drop to 10")
    except TestFailure:
        raise TestFailure(f"6 s after 10 of 20 listeners vanished, counts (status, "
                             f"rostrum_listeners, connections) are {last[0]}")
    time.sleep(max(0.0, t_cut + 4 - time.monotonic()))
    for i, lst in enumerate(kept):
        check(lst.end is None, f"kept listener {i} was cut ({lst.end})")
        gap = lst.max_gap(start=lst.t0 + 1)
        check(gap < 1.6, f"kept listener {i} got nothing for {gap:.1f} s")
        check(lst.last_time() > t_cut + 2.5, f"kept listener {i} got nothing after the cut")
    for lst in kept:
        lst.close()
    for lst in kept[:3]:
        check_listener_ogg(lst)


@test(timeout=45, icecast=False)
def test_stalled_reader_not_counted(ctx):
    """A listener is a connection that received audio in the last few seconds (DESIGN.md): a
    client that stopped reading (its TCP window is shut) is a connection, not a listener, even
    while the server can still push bytes into the kernel's send buffer for it."""
    srv = ctx.start_server()
    src = ffmpeg_source(ctx, srv, "/live", 440)
    wait_live(srv, "/live", proc=src)
    reader = listen(ctx, srv, "/live")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", srv.audience))
    ctx.on_cleanup(stalled.close)
    stalled.sendall(b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
    # Its few KB of receive buffer take the first pages: it counts as a listener, at first.
    wait_for(lambda: counts(ctx, srv) == (2, 2, 2), 10, "2 listeners receiving audio")
    last = [None]

    def honest():
        last[0] = counts(ctx, srv)
        return last[0] == (1, 1, 2)

    try:
        wait_for(honest, 20, "the stalled reader to drop out of the listener counts")
    except TestFailure:
        raise TestFailure(f"20 s after a client stopped reading (its window shut after a few KB), "
                          f"counts (status listeners, rostrum_listeners, connections) are "
                          f"{last[0]}, want (1, 1, 2)")
    check(reader.end is None and reader.max_gap(start=reader.t0 + 1) < 1.6,
          "the reading listener suffered from the stalled one")
