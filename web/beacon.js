/*
 * beacon.js: counts a player rostrum cannot see, one that plays HLS through a cache (issue 11;
 * README, "Counting listeners behind caches"). While it plays, call
 *
 *   import {startBeacon} from '/beacon.js';
 *   const stop = startBeacon('live');          // {base: 'https://origin.example'} from elsewhere
 *   ...
 *   stop();                                    // when playback stops
 *
 * It posts to /beacon/<space> at once and then every every_s seconds (the server says: 30; half
 * the server's window_s if that is shorter),
 * each time with the session id of the last answer; an id refused (403: expired after a long
 * pause, or from a new address) starts a new session. With hls.js, a small hook does it:
 *
 *   hls.on(Hls.Events.FRAG_BUFFERED, () => { stop = stop || startBeacon(space); });
 *   audio.addEventListener('pause', () => { if (stop) stop(); stop = null; });
 *
 * The request is a simple POST (no body, no custom header: no CORS preflight), uncached.
 */
export function startBeacon(space, {base = '', everyMs = 0} = {}) {
  let sid = null;
  let timer = null;
  let stopped = false;
  const url = () => `${base}/beacon/${encodeURIComponent(space)}` +
                    (sid ? `?sid=${encodeURIComponent(sid)}` : '');
  async function beat() {
    if (stopped)
      return;
    let wait = everyMs || 30000;
    try {
      const r = await fetch(url(), {method: 'POST', cache: 'no-store', keepalive: true});
      if (r.ok) {
        const j = await r.json();
        sid = j.sid;
        if (!everyMs && j.every_s > 0) /* and within the window, whatever it is set to */
          wait = 1000 * (j.window_s > 0 ? Math.min(j.every_s, j.window_s / 2) : j.every_s);
      } else if (r.status === 403) {
        sid = null; /* a new session, soon */
        wait = 1000;
      } else {
        const ra = Number(r.headers.get('Retry-After'));
        if (ra > 0)
          wait = Math.max(wait, ra * 1000);
      }
    } catch (e) {
      /* the network: again at the next beat */
    }
    if (!stopped)
      timer = setTimeout(beat, wait);
  }
  beat();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
