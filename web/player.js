/*
 * rostrum web player: a space's Ogg/Opus stream, fetched, decoded and played by the page
 * itself, so that it starts at once and stays about a second behind live (issue 11).
 * An ES module, no build step.
 *
 *   fetch() (streaming body) -> OggReader (pages, lacing, packets, granule, page number)
 *   -> AudioDecoder (WebCodecs, Opus, description = the stream's OpusHead)
 *   -> AudioWorklet "rostrum-listener" (player-worklet.js: adaptive jitter buffer, gentle
 *   catch-up) -> speakers
 *
 * Reconnecting. The server names the ring page each response starts at (X-Rostrum-Seq) and
 * the page's Ogg page number differs from its ring seq by a constant of the stream, so the
 * player knows the ring seq of every page it has. When the connection drops (a worker killed,
 * a relay failing over, a network cut) it reconnects after a short jittered back-off with
 * ?from=<the next page it lacks>: the server sends the header pages again, then that page,
 * and the audio is continuous as long as the buffer (about a second) outlasts the cut. If the
 * page is gone the server starts at its burst and says so (X-Rostrum-Gap: 1); if the stream's
 * serial changed (a new stream), the player starts over with a fresh decoder.
 *
 * State, on the element given to the constructor (and as a 'state' event):
 *   data-state       connecting | playing | stalled | ended   (and data-detail: reconnecting,
 *                    refused, error, or empty)
 *   data-latency-ms  how far behind live the sound is (estimated from when pages arrived)
 *   data-played-s    seconds of the stream played
 *   data-gap-samples samples of the stream it never got (pages skipped), data-concealed-samples
 *                    silence it had to play for want of audio, data-reconnects, data-resumes,
 *                    data-src (the address of its current connection), data-granule (the
 *                    stream position now playing, 48 kHz samples)
 */
import {RATE, copyPlane, makeAudioContext, opusConfig} from './audio.js';

/* Firefox and its kin (see outputLatencyMs) */
const GECKO = /\bGecko\/\d/.test(navigator.userAgent) && !/like Gecko/.test(navigator.userAgent);

const START_MS = 1200; /* buffered before playing (player-worklet.js says why) */
const MARGIN_MS = 250; /* the least it holds buffered; the worklet adapts it */
const BURST_MS = 2000; /* asked of the server (?burst=): the start plays its newest 1.2 s */
const REPORT_MS = 250;
const LIVE_WINDOW_MS = 10000; /* the live edge is estimated from the pages of the last 10 s */
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 5000;
const MAX_PAGE = 65307; /* RFC 3533: 27 + 255 + 255 * 255 */

/* The number of 48 kHz samples in Opus packet <p> (RFC 6716 3.1 and 3.2), 0 if malformed. */
export function opusSamples(p) {
  if (!p.length)
    return 0;
  const toc = p[0], config = toc >> 3;
  let frame;
  if (config < 12)
    frame = [480, 960, 1920, 2880][config & 3];
  else if (config < 16)
    frame = (config & 1) ? 960 : 480;
  else
    frame = [120, 240, 480, 960][config & 3];
  const code = toc & 3;
  let frames = 1;
  if (code === 1 || code === 2)
    frames = 2;
  else if (code === 3)
    frames = p.length > 1 ? p[1] & 0x3f : 0;
  const n = frame * frames;
  return n > 5760 ? 0 : n;
}

/*
 * OggReader: Ogg pages (RFC 3533) out of a byte stream that comes in pieces of any size.
 * push(bytes) then next() until it returns null. A page is {serial, pageno, granule (a Number;
 * -1 if none), bos, eos, continued, packets: [Uint8Array] (those that end on this page, a
 * packet continued from the page before included), len}. The CRC is not checked (TCP's
 * checksum and the server's own pages); anything that is not a page is skipped up to the next
 * "OggS" and counted in <resyncs>.
 */
export class OggReader {
  constructor() {
    this.buf = new Uint8Array(1 << 16);
    this.start = 0;
    this.end = 0;
    this.partial = []; /* pieces of a packet continued on the next page */
    this.resyncs = 0;
  }

  push(bytes) {
    if (this.end + bytes.length > this.buf.length) {
      const live = this.end - this.start;
      if (live + bytes.length <= this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        let cap = this.buf.length;
        while (cap < live + bytes.length)
          cap *= 2;
        const nb = new Uint8Array(cap);
        nb.set(this.buf.subarray(this.start, this.end), 0);
        this.buf = nb;
      }
      this.start = 0;
      this.end = live;
    }
    this.buf.set(bytes, this.end);
    this.end += bytes.length;
    /* a page is at most MAX_PAGE bytes: more than that waiting is not a stream of pages */
    if (this.end - this.start > 4 * MAX_PAGE + bytes.length)
      this.resync();
  }

  next() {
    for (;;) {
      const b = this.buf, s = this.start, avail = this.end - s;
      if (avail < 27)
        return null;
      if (b[s] !== 0x4f || b[s + 1] !== 0x67 || b[s + 2] !== 0x67 || b[s + 3] !== 0x53 ||
          b[s + 4] !== 0) {
        this.resync();
        continue;
      }
      const nseg = b[s + 26];
      if (avail < 27 + nseg)
        return null;
      let body = 0;
      for (let i = 0; i < nseg; i++)
        body += b[s + 27 + i];
      const len = 27 + nseg + body;
      if (avail < len)
        return null;
      const dv = new DataView(b.buffer, b.byteOffset + s, 27);
      const type = b[s + 5];
      const lo = dv.getUint32(6, true), hi = dv.getInt32(10, true);
      const page = {
        continued: !!(type & 1), bos: !!(type & 2), eos: !!(type & 4),
        granule: hi === -1 && lo === 0xffffffff ? -1 : hi * 4294967296 + lo,
        serial: dv.getUint32(14, true), pageno: dv.getUint32(18, true),
        packets: [], len,
      };
      /* packets: lacing values of 255 continue, anything less ends one */
      let off = s + 27 + nseg, run = 0, from = off;
      if (!page.continued)
        this.partial = [];
      for (let i = 0; i < nseg; i++) {
        const v = b[s + 27 + i];
        run += v;
        if (v < 255) {
          let pkt = b.slice(from, from + run);
          if (this.partial.length) {
            this.partial.push(pkt);
            pkt = concat(this.partial);
            this.partial = [];
          }
          page.packets.push(pkt);
          from += run;
          run = 0;
        }
      }
      if (run > 0)
        this.partial.push(b.slice(from, from + run));
      off += body;
      this.start = s + len;
      if (this.start === this.end)
        this.start = this.end = 0;
      return page;
    }
  }

  resync() {
    this.resyncs++;
    const b = this.buf;
    let i = this.start + 1;
    for (; i + 3 < this.end; i++) {
      if (b[i] === 0x4f && b[i + 1] === 0x67 && b[i + 2] === 0x67 && b[i + 3] === 0x53)
        break;
    }
    this.start = Math.min(i, this.end);
    this.partial = [];
  }
}

function concat(parts) {
  let n = 0;
  for (const p of parts)
    n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/* True where this player can work: WebCodecs' AudioDecoder and an AudioWorklet. */
export function webPlayerSupported() {
  const AC = window.AudioContext || window.webkitAudioContext;
  return typeof window.AudioDecoder === 'function' && typeof window.EncodedAudioChunk === 'function' &&
         !!AC && !!(AC.prototype && 'audioWorklet' in AC.prototype) &&
         typeof ReadableStream === 'function';
}

/*
 * WebPlayer: plays one space. new WebPlayer(element, getUrl): <getUrl()> resolves to the
 * stream's address for each connection (the page asks the waiting room each time); <element>
 * gets the data-* state. start() from a click (it makes the AudioContext), stop() to end.
 */
export class WebPlayer extends EventTarget {
  constructor(element, getUrl) {
    super();
    this.el = element;
    this.getUrl = getUrl;
    this.ac = null;
    this.node = null;
    this.decoder = null;
    this.wanted = false;
    this.ctl = null;
    this.run = null;
    this.gen = 0;
    this.stats = {state: 'connecting', detail: '', latency_ms: null, played_s: 0,
                  gap_samples: 0, concealed_samples: 0, dropped_samples: 0, reconnects: 0,
                  resumes: 0, resume_gaps: 0, restarts: 0, underruns: 0, catchups: 0,
                  buffered_ms: 0, target_ms: MARGIN_MS, decode_errors: 0, first_audio_ms: null};
    this.reset();
  }

  /* forget the stream (a new one, or a new start) */
  reset() {
    this.serial = null;
    this.head = null;     /* OpusHead packet */
    this.channels = 0;
    this.seqOffset = null; /* Ogg page number - ring seq, for this stream */
    this.lastSeq = null;  /* ring seq of the newest page it has */
    this.nextGranule = null;
    this.live = [];       /* [arrival ms, granule - arrival * 48] of recent pages */
    this.worklet = null;  /* its last report */
    this.pending = null;  /* decoded audio waiting for the worklet */
  }

  setState(state, detail = '') {
    const s = this.stats;
    s.state = state;
    s.detail = detail;
    this.publish();
  }

  publish() {
    const s = this.stats, d = this.el.dataset;
    d.state = s.state;
    d.detail = s.detail;
    d.latencyMs = s.latency_ms === null ? '' : String(Math.round(s.latency_ms));
    d.playedS = s.played_s.toFixed(2);
    d.gapSamples = String(s.gap_samples);
    d.concealedSamples = String(s.concealed_samples);
    d.reconnects = String(s.reconnects);
    d.resumes = String(s.resumes);
    d.bufferedMs = String(s.buffered_ms);
    d.granule = this.worklet && this.worklet.granule >= 0 ? String(this.worklet.granule) : '';
    if (s.first_audio_ms !== null)
      d.firstAudioMs = String(Math.round(s.first_audio_ms));
    this.dispatchEvent(new Event('state'));
  }

  get playing() {
    return this.wanted;
  }

  async start() {
    if (this.wanted)
      return;
    this.wanted = true;
    this.t0 = performance.now();
    this.stats.first_audio_ms = null;
    this.setState('connecting');
    this.reset();
    this.run = this.loop(++this.gen);
  }

  /* The AudioContext and the worklet, made once the stream's request is out: making a context
   * can take a tenth of a second, better spent while the request travels. Still within the
   * click's user activation, so the context may play. */
  ensureAudio() {
    if (!this.ac) {
      this.ac = makeAudioContext();
      this.workletReady = this.ac.audioWorklet.addModule(
          new URL('player-worklet.js', import.meta.url).href);
    } else if (this.ac.state === 'suspended') {
      this.ac.resume().catch(() => {});
    }
  }

  stop() {
    this.wanted = false;
    this.gen++;
    if (this.ctl)
      this.ctl.abort();
    this.closeAudio();
    if (this.ac)
      this.ac.suspend().catch(() => {});
    this.setState('ended', 'stopped');
  }

  closeAudio() {
    this.pending = null;
    if (this.decoder) {
      try {
        if (this.decoder.state !== 'closed')
          this.decoder.close();
      } catch (e) { /* closed already */ }
      this.decoder = null;
    }
    if (this.node) {
      this.node.port.onmessage = null;
      try {
        this.node.disconnect();
      } catch (e) { /* not connected */ }
      this.node = null;
    }
  }

  /* Connections, one after another, until stopped or the space ends. */
  async loop(gen) {
    const alive = () => this.wanted && this.gen === gen;
    let attempt = 0;
    while (alive()) {
      let outcome;
      try {
        outcome = await this.connect(alive);
      } catch (e) {
        outcome = {retry: true, why: 'error', error: e};
      }
      if (!alive())
        return;
      if (outcome.ended) {
        this.closeAudio();
        this.wanted = false;
        this.setState('ended', outcome.why || '');
        return;
      }
      if (outcome.gotAudio)
        attempt = 0;
      attempt++;
      this.stats.reconnects++;
      const base = outcome.retryAfterMs ||
                   Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (attempt - 1));
      const delay = base * (0.5 + Math.random()); /* a crowd cut at once comes back spread */
      this.setState(this.stats.state, 'reconnecting');
      await sleep(delay);
    }
  }

  /* One connection: resolves to {ended} or {retry, gotAudio, retryAfterMs}. */
  async connect(alive) {
    const url = new URL(await this.getUrl());
    if (!alive())
      return {retry: true};
    const resuming = this.lastSeq !== null;
    if (resuming)
      url.searchParams.set('from', String(this.lastSeq + 1));
    else
      url.searchParams.set('burst', String(BURST_MS));
    this.el.dataset.src = url.href;
    this.ctl = new AbortController();
    const req = fetch(url.href, {cache: 'no-store', signal: this.ctl.signal});
    this.ensureAudio();
    const res = await req;
    if (res.status === 404 || res.status === 410)
      return {ended: true, why: 'the space has ended'};
    if (!res.ok) {
      const ra = Number(res.headers.get('Retry-After'));
      try {
        await res.body.cancel();
      } catch (e) { /* gone */ }
      this.setState(this.stats.state, 'refused');
      return {retry: true, retryAfterMs: ra > 0 ? ra * 1000 : 0};
    }
    const firstSeq = Number(res.headers.get('X-Rostrum-Seq'));
    const gap = res.headers.get('X-Rostrum-Gap') === '1';
    if (resuming) {
      if (gap)
        this.stats.resume_gaps++;
      else
        this.stats.resumes++;
    }
    const reader = new OggReader();
    const body = res.body.getReader();
    const conn = {firstSeq: Number.isFinite(firstSeq) ? firstSeq : null, offset: null,
                  gotAudio: false, serial: null, alive, skipBefore: -1};
    try {
      for (;;) {
        const {value, done} = await body.read();
        if (done)
          break;
        if (!alive())
          return {retry: false};
        reader.push(value);
        const pages = [];
        let page, newest = -1;
        while ((page = reader.next()) !== null) {
          pages.push(page);
          if (!page.bos && page.granule > newest)
            newest = page.granule;
        }
        /* before the start, only the burst's newest part will play: the rest need not be
         * decoded (a few packets more warm the decoder up) */
        conn.skipBefore = this.stats.first_audio_ms === null && newest >= 0
                              ? newest - (START_MS + 300) * (RATE / 1000) : -1;
        for (const p of pages)
          await this.onPage(p, conn);
      }
    } catch (e) {
      if (!alive())
        return {retry: false};
      /* cut: reconnect below */
    } finally {
      try {
        body.releaseLock();
      } catch (e) { /* released */ }
    }
    return {retry: true, gotAudio: conn.gotAudio};
  }

  async onPage(page, conn) {
    if (page.bos) {
      const head = page.packets[0];
      if (!head || head.length < 19 || String.fromCharCode(...head.subarray(0, 8)) !== 'OpusHead')
        throw new Error('not an Opus stream');
      conn.serial = page.serial;
      if (this.serial !== null && this.serial !== page.serial) {
        /* a new stream: start over, the old one's audio is let play out no further */
        this.stats.restarts++;
        this.closeAudio();
        this.reset();
      }
      if (this.serial === null) {
        this.serial = page.serial;
        this.head = head;
        this.channels = head[9] === 2 ? 2 : 1;
        await this.openAudio(conn.alive);
      }
      return;
    }
    if (page.serial !== this.serial || !this.decoder)
      return; /* another logical stream, or not set up */
    if (page.packets.length && page.packets[0].length >= 8 &&
        String.fromCharCode(...page.packets[0].subarray(0, 8)) === 'OpusTags')
      return;
    if (conn.offset === null)
      conn.offset = conn.firstSeq !== null ? page.pageno - conn.firstSeq : null;
    if (conn.offset !== null) {
      if (this.seqOffset !== null && this.seqOffset !== conn.offset)
        console.warn('rostrum: page numbering moved', this.seqOffset, conn.offset);
      this.seqOffset = conn.offset;
      const seq = page.pageno - conn.offset;
      if (this.lastSeq !== null && seq <= this.lastSeq)
        return; /* had it already (a resume a little behind) */
      this.lastSeq = seq;
    }
    if (!conn.gotAudio) {
      conn.gotAudio = true;
      if (this.stats.detail === 'reconnecting' || this.stats.detail === 'refused')
        this.stats.detail = '';
    }
    if (page.granule < 0)
      return;
    const now = performance.now();
    this.live.push([now, page.granule - now * (RATE / 1000)]);
    while (this.live.length && this.live[0][0] < now - LIVE_WINDOW_MS)
      this.live.shift();
    /* the packets' own granules: the page's is where its last packet ends */
    let total = 0;
    const lens = page.packets.map((p) => {
      const n = opusSamples(p);
      total += n;
      return n;
    });
    let g = page.granule - total;
    for (let i = 0; i < page.packets.length; i++) {
      const n = lens[i];
      if (n === 0)
        continue;
      if (this.nextGranule !== null) {
        if (g + n <= this.nextGranule) {
          g += n;
          continue; /* a packet it decoded already */
        }
        if (g > this.nextGranule)
          this.stats.gap_samples += g - this.nextGranule;
      }
      if (g + n > conn.skipBefore)
        this.decode(page.packets[i], g);
      g += n;
      this.nextGranule = g;
    }
  }

  /* The decoder at once, the worklet when it has loaded: decoded audio waits for it. */
  async openAudio(alive) {
    const cfg = await opusConfig(this.channels, this.head);
    if (!cfg)
      throw new Error('this browser cannot decode Opus');
    if (!alive())
      return;
    this.pending = [];
    this.decoder = new AudioDecoder({
      output: (ad) => this.onDecoded(ad),
      error: (e) => {
        this.stats.decode_errors++;
        console.warn('rostrum: Opus decoder error', e);
      },
    });
    this.decoder.configure(cfg);
    const decoder = this.decoder;
    this.workletReady.then(() => {
      if (this.decoder !== decoder || !alive())
        return;
      this.node = new AudioWorkletNode(this.ac, 'rostrum-listener', {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [2],
        processorOptions: {channels: this.channels, start: START_MS * RATE / 1000,
                           margin: MARGIN_MS * RATE / 1000}});
      this.node.port.onmessage = (e) => this.onReport(e.data);
      this.node.connect(this.ac.destination);
      for (const m of this.pending)
        this.node.port.postMessage(m, m.pcm.map((p) => p.buffer));
      this.pending = null;
    }, (e) => {
      console.warn('rostrum: the player worklet did not load', e);
      this.wanted = false;
      this.setState('ended', 'error');
    });
  }

  decode(pkt, granule) {
    const d = this.decoder;
    if (!d || d.state !== 'configured')
      return;
    try {
      d.decode(new EncodedAudioChunk({type: 'key', timestamp: Math.round(granule * 1e6 / RATE),
                                      data: pkt}));
    } catch (e) {
      this.stats.decode_errors++;
    }
  }

  onDecoded(ad) {
    try {
      if (!this.node && !this.pending)
        return;
      const n = ad.numberOfFrames, pcm = [];
      for (let c = 0; c < this.channels; c++) {
        const p = new Float32Array(n);
        copyPlane(ad, p, c);
        pcm.push(p);
      }
      const granule = Math.round(ad.timestamp * RATE / 1e6);
      if (this.node)
        this.node.port.postMessage({pcm, granule}, pcm.map((p) => p.buffer));
      else
        this.pending.push({pcm, granule});
    } finally {
      ad.close();
    }
  }

  /* The device's output latency, read once sound has flowed a second, then every 10 s.
   * Not in Firefox: there (ESR 153 on PulseAudio) outputLatency now and then blocks the main
   * thread for good, at the start or seconds into playing, which froze the whole page in
   * about one run in three; its baseLatency (a constant) stands in. */
  outputLatencyMs(w) {
    const now = performance.now();
    if (!w.playing) {
      this.playingSince = null;
    } else if (this.playingSince == null) {
      this.playingSince = now;
    } else if (!GECKO && now - this.playingSince >= 1000 &&
               (this.outLatencyAt == null || now - this.outLatencyAt >= 10000)) {
      this.outLatencyAt = now;
      this.outLatency = (this.ac.outputLatency || 0) * 1000;
    }
    return this.outLatency || (this.ac.baseLatency || 0) * 1000;
  }

  onReport(w) {
    const s = this.stats;
    this.worklet = w;
    s.played_s = w.played / RATE;
    s.concealed_samples = w.concealed;
    s.dropped_samples = w.dropped;
    s.underruns = w.underruns;
    s.catchups = w.catchups;
    s.buffered_ms = Math.round(w.buffered / (RATE / 1000));
    s.target_ms = Math.round(w.target / (RATE / 1000));
    if (this.live.length && w.granule >= 0) {
      let best = -Infinity;
      for (const [, v] of this.live)
        best = Math.max(best, v);
      const live = performance.now() * (RATE / 1000) + best;
      s.latency_ms = Math.max(0, (live - w.granule) / (RATE / 1000) + this.outputLatencyMs(w));
    }
    if (w.playing && s.first_audio_ms === null)
      s.first_audio_ms = performance.now() - this.t0;
    let state = s.state;
    if (state !== 'ended')
      state = w.playing ? 'playing' : w.started ? 'stalled' : 'connecting';
    s.state = state;
    this.publish();
  }
}
