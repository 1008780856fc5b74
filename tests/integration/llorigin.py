"""A stand-in low-latency HLS origin for the tests of rostrum-load hls and of the cache
configurations while rostrum's own HLS is not in this build (issue 11). It follows the
delivery rules of draft-pantos-hls-rfc8216bis as rostrum's must: parts of PART s (4 to a
segment), blocking playlist reload (_HLS_msn/_HLS_part; 400 for more than 2 segments ahead,
503 past 3 target durations), delta updates (_HLS_skip=YES, CAN-SKIP-UNTIL), a preload hint
whose request is held until the part is whole, program date time, and the low-latency cache
headers (blocking playlists and parts: 6 target durations; the plain playlist: half of one).
It counts the requests it answers per path and per client address (`hits`, `by_client`), so a
test can see what reached the origin. It is not a media server: the parts are filler bytes."""

import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PART = 0.5
PARTS = 4                 # per segment
TARGET = PART * PARTS     # 2 s
KEEP = 10                 # segments listed
SKIP_UNTIL = 12.0         # s: CAN-SKIP-UNTIL
PART_BYTES = 3000


class Origin:
    def __init__(self):
        self.t0 = time.time()
        self.lock = threading.Lock()
        self.hits = {}
        self.by_client = {}
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.srv.handle_error = lambda request, addr: None  # players leave mid-answer
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()

    # the stream: part k overall (from 0) is whole at t0 + (k + 1) * PART
    def parts_done(self, now=None):
        return int(((now or time.time()) - self.t0) / PART)

    def exists(self, msn, part):
        return msn * PARTS + part < self.parts_done()

    def pdt(self, msn):
        t = self.t0 + msn * TARGET
        return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds") \
            .replace("+00:00", "Z")

    def playlist(self, skip):
        done = self.parts_done()
        cur, inprog = divmod(done, PARTS)          # segments whole: 0..cur-1
        first = max(0, cur - KEEP)
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", f"#EXT-X-TARGETDURATION:{int(TARGET)}",
                 f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * PART},"
                 f"CAN-SKIP-UNTIL={SKIP_UNTIL}",
                 f"#EXT-X-PART-INF:PART-TARGET={PART}", f"#EXT-X-MEDIA-SEQUENCE:{first}",
                 '#EXT-X-MAP:URI="init.mp4"']
        skipped = 0
        if skip:
            # segments ending more than SKIP_UNTIL before the playlist's end are left out
            end = cur * TARGET + inprog * PART
            while first + skipped < cur and (first + skipped + 1) * TARGET < end - SKIP_UNTIL:
                skipped += 1
            if skipped:
                lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        for s in range(first + skipped, cur):
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{self.pdt(s)}")
            if s >= cur - 2:  # parts of the last two segments
                lines += [f'#EXT-X-PART:DURATION={PART},URI="p-{s}-{k}.m4s",INDEPENDENT=YES'
                          for k in range(PARTS)]
            lines += [f"#EXTINF:{TARGET:.3f},", f"s-{s}.m4s"]
        if cur == first + skipped:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{self.pdt(cur)}")
        lines += [f'#EXT-X-PART:DURATION={PART},URI="p-{cur}-{k}.m4s",INDEPENDENT=YES'
                  for k in range(inprog)]
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p-{cur}-{inprog}.m4s"')
        return "\n".join(lines) + "\n"

    def wait_for(self, msn, part):
        """Holds until part (msn, part) is whole; a part index past the segment's last is
        part 0 of the next. Returns None, or the refusal status."""
        if part >= PARTS:
            msn, part = msn + 1, 0
        done = self.parts_done()
        if msn > done // PARTS + 2:
            return 400
        deadline = time.time() + 3 * TARGET
        while not self.exists(msn, part):
            if time.time() > deadline:
                return 503
            time.sleep(0.01)
        return None

    def _handler(self):
        origin = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self, status, body, cc, ctype="application/vnd.apple.mpegurl"):
                b = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(b)))
                if cc:
                    self.send_header("Cache-Control", cc)
                self.end_headers()
                try:
                    self.wfile.write(b)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a player that left at the end of its run

            def do_GET(self):
                u = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                with origin.lock:
                    origin.hits[self.path] = origin.hits.get(self.path, 0) + 1
                    origin.by_client.setdefault(self.client_address[0], []).append(self.path)
                six = f"max-age={int(6 * TARGET)}"
                if u.path == "/ll.m3u8":
                    return self.answer(200, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000,"
                                       'CODECS="opus"\nll/media.m3u8\n', "max-age=60")
                if u.path == "/ll/media.m3u8":
                    if "_HLS_msn" in q:
                        try:
                            msn, part = int(q["_HLS_msn"]), int(q.get("_HLS_part", 0))
                        except ValueError:
                            return self.answer(400, "bad directive\n", None, "text/plain")
                        why = origin.wait_for(msn, part)
                        if why:
                            return self.answer(why, "refused\n", None, "text/plain")
                        return self.answer(200, origin.playlist(q.get("_HLS_skip") == "YES"),
                                           six)
                    return self.answer(200, origin.playlist(False), f"max-age={int(TARGET / 2)}")
                if u.path == "/ll/init.mp4":
                    return self.answer(200, b"\0" * 800, "max-age=3600", "video/mp4")
                name = u.path.rsplit("/", 1)[-1]
                if name.startswith("p-") and name.endswith(".m4s"):
                    msn, part = (int(x) for x in name[2:-4].split("-"))
                    why = origin.wait_for(msn, part)
                    if why:
                        return self.answer(why, "refused\n", None, "text/plain")
                    return self.answer(200, b"\1" * PART_BYTES, six, "video/iso.segment")
                if name.startswith("s-") and name.endswith(".m4s"):
                    msn = int(name[2:-4])
                    if not origin.exists(msn, PARTS - 1):
                        return self.answer(404, "not yet\n", None, "text/plain")
                    return self.answer(200, b"\1" * PART_BYTES * PARTS, "max-age=3600",
                                       "video/iso.segment")
                return self.answer(404, "no\n", None, "text/plain")

        return H
