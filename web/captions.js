/*
 * Live captions under a space's player (issue 12). The server runs a speech recogniser on the
 * programme and publishes its cues at /<space>.captions.json (cacheable for a second); this
 * polls it while the space is being listened to and shows each cue when the listener reaches
 * it: a cue's times are on the programme's wall clock, and the player says how far behind
 * live it is, so a cue is shown at Date.now() - behind >= start_ms. Sound is never waited for:
 * a cue that comes late is shown late, and dropped once it is long past.
 *
 * The element gets data-cue-id and data-cue-start-ms of the cue it shows (for tests) and is
 * an aria-live region. A 404 (the space has no captions) hides it and asks again a minute
 * later. Text goes in with textContent only.
 */
const POLL_MS = 1000;
const NONE_RETRY_MS = 60000;
const HOLD_MS = 2500;      /* a short cue stays up at least this long */
const STALE_MS = 15000;    /* a cue this far behind what is heard is not shown at all */
const KEEP = 64;

export class LiveCaptions {
  /* <parent>: where the line goes; <mount>: "live"; <behindMs>: () => ms behind live, or null
   * while nothing plays. */
  constructor(parent, mount, behindMs) {
    this.mount = mount;
    this.behindMs = behindMs;
    this.el = document.createElement('p');
    this.el.className = 'captions';
    this.el.hidden = true;
    this.el.setAttribute('aria-live', 'polite');
    this.el.setAttribute('aria-label', 'Live captions');
    parent.append(this.el);
    this.cues = [];
    this.since = 0;
    this.epoch = null;
    this.shown = null;
    this.nextPoll = 0;
    this.busy = false;
    this.timer = setInterval(() => this.tick(), 250);
  }

  stop() {
    clearInterval(this.timer);
    this.el.remove();
  }

  async poll() {
    this.busy = true;
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 5000);
    try {
      const url = new URL('./' + encodeURIComponent(this.mount) + '.captions.json', location.href);
      url.searchParams.set('since', String(this.since));
      const res = await fetch(url, {signal: ctl.signal});
      if (res.status === 404) {
        this.el.hidden = true;
        this.nextPoll = performance.now() + NONE_RETRY_MS;
        return;
      }
      if (!res.ok)
        return;
      const doc = await res.json();
      if (!doc || !Array.isArray(doc.cues))
        return;
      if (typeof doc.lang === 'string') /* for screen readers and hyphenation */
        this.el.lang = doc.lang;
      if (doc.epoch !== this.epoch) { /* a new stream: its cues start over */
        this.epoch = doc.epoch;
        this.cues = [];
        if (this.since !== 0) {
          this.since = 0;
          return;
        }
      }
      for (const c of doc.cues)
        if (c && typeof c.text === 'string' && Number.isFinite(c.start_ms) && c.id > this.since)
          this.cues.push(c);
      if (this.cues.length > KEEP)
        this.cues.splice(0, this.cues.length - KEEP);
      if (Number.isFinite(doc.next) && doc.next >= this.since)
        this.since = doc.next;
    } catch (e) {
      /* next time */
    } finally {
      clearTimeout(t);
      this.busy = false;
    }
  }

  tick() {
    const behind = this.behindMs();
    const now = performance.now();
    if (behind === null) {
      this.el.hidden = true;
      return;
    }
    if (!this.busy && now >= this.nextPoll) {
      this.nextPoll = now + POLL_MS;
      this.poll();
    }
    const heard = Date.now() - behind;
    let cue = null;
    for (const c of this.cues)
      if (c.start_ms <= heard && heard - c.start_ms < STALE_MS)
        cue = c; /* the latest one that has begun */
    if (cue && heard > Math.max(cue.end_ms, cue.start_ms + HOLD_MS))
      cue = null;
    if (cue === this.shown) {
      if (!cue)
        this.el.hidden = true;
      return;
    }
    this.shown = cue;
    this.el.hidden = !cue;
    this.el.textContent = cue ? cue.text : '';
    this.el.dataset.cueId = cue ? String(cue.id) : '';
    this.el.dataset.cueStartMs = cue ? String(cue.start_ms) : '';
  }
}
