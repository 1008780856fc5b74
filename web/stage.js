/*
 * rostrum stage client: what speak.html and host.html share (an ES module, no build step).
 *
 *   StageClient   one member of a stage space over WebSocket (docs/stage.md): control
 *                 messages, the microphone (WebCodecs Opus, or PCM that the server encodes)
 *                 and the return feed (the mix-minus, decoded with WebCodecs and played
 *                 through a small jitter buffer).
 *   stageAddress  where the stage port is: ?stage=HOST:PORT, or this page's host with the
 *                 audience port + 1.
 *   renderStage   the list of who is on stage (and the host's buttons), updated in place.
 *
 * Audio path, speaking:
 *   getUserMedia (mono, 48 kHz asked, echo cancellation) -> AudioWorklet "rostrum-capture"
 *   (resampled to 48 kHz if the context runs at another rate, cut in 960-sample frames)
 *   -> AudioEncoder (opus, 20 ms) -> one binary WebSocket message per packet;
 *   or, without a usable AudioEncoder, {"type":"format","pcm":true} then s16le frames.
 * Audio path, hearing the stage:
 *   binary messages (Opus, 20 ms, mono) -> AudioDecoder -> AudioWorklet "rostrum-playback"
 *   (ring buffer: starts at 60 ms queued, re-buffers after an underrun, cuts back to 60 ms
 *   when more than 200 ms piles up, so latency stays low).
 *
 * Server text only ever reaches the page through textContent.
 */

import {RATE, FRAME, makeAudioContext, copyPlane} from './audio.js';

export {RATE, FRAME, makeAudioContext};
const JITTER_TARGET = 2880; /* 60 ms */
const JITTER_MAX = 9600; /* 200 ms: past this, cut back to the target */
const SEND_BUFFER_MAX = 64 * 1024; /* bytes waiting in the WebSocket: drop frames past it */
const PING_MS = 20000;
export const STAGE_ROLES = new Set(['host', 'cohost', 'speaker']);
export const ROLE_LABEL = {host: 'Host', cohost: 'Co-host', speaker: 'Speaker',
                           listener: 'Listener'};

/* Both worklets, loaded from a Blob URL so the server needs no extra file. */
const WORKLET_SRC = `
const RATE = ${RATE}, FRAME = ${FRAME};
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / RATE; /* input samples per 48 kHz sample */
    this.t = 0; this.prev = 0;
    this.frame = new Float32Array(FRAME); this.n = 0; this.peak = 0; this.sum = 0;
  }
  push(v) {
    this.frame[this.n++] = v;
    const a = v < 0 ? -v : v;
    if (a > this.peak) this.peak = a;
    this.sum += v * v;
    if (this.n === FRAME) {
      this.port.postMessage({frame: this.frame, peak: this.peak,
                             rms: Math.sqrt(this.sum / FRAME)}, [this.frame.buffer]);
      this.frame = new Float32Array(FRAME); this.n = 0; this.peak = 0; this.sum = 0;
    }
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    if (this.step === 1) {
      for (let i = 0; i < ch.length; i++) this.push(ch[i]);
    } else {
      /* linear interpolation; t is the next output's position in this block (-1 = prev) */
      const n = ch.length;
      let t = this.t;
      while (t < n - 1) {
        const i = Math.floor(t), f = t - i, a = i < 0 ? this.prev : ch[i];
        this.push(a + (ch[i + 1] - a) * f);
        t += this.step;
      }
      this.t = t - n; this.prev = ch[n - 1];
    }
    return true;
  }
}
class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    /* the target grows by 20 ms after an underrun (to 120 ms at most) and shrinks back by
       20 ms after each 10 s without one */
    this.base = o.target || 2880; this.target = this.base; this.max = o.max || 9600;
    this.calm = 0;
    this.step = RATE / sampleRate; /* 48 kHz samples per output sample */
    this.cap = RATE; this.buf = new Float32Array(this.cap);
    this.r = 0; this.count = 0; this.frac = 0; this.playing = false;
    this.underruns = 0; this.dropped = 0; this.played = 0; this.last = 0;
    this.port.onmessage = (e) => {
      const d = e.data;
      if (d && d.pcm) this.write(d.pcm);
      else if (d === 'reset') { this.r = 0; this.count = 0; this.frac = 0; this.playing = false; }
    };
  }
  skip(n) { this.r = (this.r + n) % this.cap; this.count -= n; this.dropped += n; }
  write(pcm) {
    const n = Math.min(pcm.length, this.cap);
    if (this.count + n > this.cap) this.skip(this.count + n - this.cap);
    let w = (this.r + this.count) % this.cap;
    for (let i = 0; i < n; i++) { this.buf[w] = pcm[i]; if (++w === this.cap) w = 0; }
    this.count += n;
  }
  process(inputs, outputs) {
    const out = outputs[0] && outputs[0][0];
    if (!out) return true;
    if (!this.playing && this.count >= this.target) this.playing = true;
    if (this.playing && this.count > Math.max(this.max, this.target + 4 * FRAME))
      this.skip(this.count - this.target);
    let i = 0;
    if (this.playing) {
      for (; i < out.length; i++) {
        if (this.count < 2) {
          this.playing = false; this.underruns++; this.calm = 0;
          this.target = Math.min(this.target + FRAME, 6 * FRAME);
          break;
        }
        const a = this.buf[this.r], b = this.buf[(this.r + 1) % this.cap];
        out[i] = a + (b - a) * this.frac;
        this.frac += this.step;
        while (this.frac >= 1) { this.frac -= 1; this.r = (this.r + 1) % this.cap; this.count--; }
      }
      this.played += i;
      this.calm += out.length;
      if (this.calm >= 10 * sampleRate && this.target > this.base) {
        this.target -= FRAME; this.calm = 0;
      }
    }
    for (; i < out.length; i++) out[i] = 0;
    if (currentTime - this.last >= 0.25) {
      this.last = currentTime;
      this.port.postMessage({buffered: this.count, target: this.target, underruns: this.underruns,
                             dropped: this.dropped, played: this.played});
    }
    return true;
  }
}
registerProcessor('rostrum-capture', Capture);
registerProcessor('rostrum-playback', Playback);
`;

let workletUrl = null;
const workletLoaded = new WeakMap(); /* AudioContext -> Promise */

function loadWorklets(ac) {
  let p = workletLoaded.get(ac);
  if (!p) {
    if (!workletUrl)
      workletUrl = URL.createObjectURL(new Blob([WORKLET_SRC], {type: 'text/javascript'}));
    p = ac.audioWorklet.addModule(workletUrl);
    workletLoaded.set(ac, p);
  }
  return p;
}

/* ---- addresses -------------------------------------------------------------------------- */

/* {http, ws, label}: the stage port's base URLs. <given> is HOST:PORT, or a URL
 * (http, https, ws or wss); empty means this page's host with the audience port + 1. */
export function stageAddress(given) {
  let s = (given || '').trim();
  if (!s) {
    const port = Number(location.port) || (location.protocol === 'https:' ? 443 : 80);
    s = location.hostname + ':' + (port + 1);
  }
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(s))
    s = (location.protocol === 'https:' ? 'https://' : 'http://') + s;
  const u = new URL(s);
  const secure = u.protocol === 'https:' || u.protocol === 'wss:';
  return {
    http: (secure ? 'https://' : 'http://') + u.host,
    ws: (secure ? 'wss://' : 'ws://') + u.host,
    label: u.host,
  };
}

/* What a token says about itself (space, role, expiry), for hints only: the server decides.
 * null if it does not look like one. */
export function tokenInfo(token) {
  try {
    let p = String(token).split('.')[0].replace(/-/g, '+').replace(/_/g, '/');
    while (p.length % 4)
      p += '=';
    const f = atob(p).split('|');
    if (f[0] !== 'v2' || f[1] !== 'stage' || f.length < 7)
      return null;
    return {space: f[2], role: f[3], expires: Number(f[4]) * 1000, reusable: f[6] === 'many'};
  } catch (e) {
    return null;
  }
}

/* ---- the client ------------------------------------------------------------------------- */

/*
 * Events (CustomEvent, detail in brackets):
 *   status   {text, kind: 'connecting'|'open'|'closed'|'error'}
 *   welcome  {id, role, space}
 *   role     {role}
 *   state    {state}
 *   invite   {role, token}
 *   servererror {error}
 *   ended    {}
 *   closed   {code, reason, why}
 *   audio    {}  (encoder, mic or return feed changed: read client.audio)
 *   stats    {}  (a few times a second)
 */
export class StageClient extends EventTarget {
  constructor(opts) {
    super();
    this.addr = stageAddress(opts.stage);
    this.space = opts.space;
    this.token = opts.token || '';
    this.key = opts.key || '';
    this.name = opts.name || '';
    this.forcePcm = !!opts.forcePcm;
    this.ac = opts.audioContext || null;
    this.ws = null;
    this.id = null;
    this.role = null;
    this.state = null;
    this.muted = false; /* as this page wants it; the state document confirms */
    this.requested = false;
    this.wasOpen = false;
    this.closing = false; /* we asked to leave */
    this.ended = false;
    this.removed = false;
    this.pingTimer = 0;
    this.level = 0; /* microphone peak, 0..1, decaying */
    this.audio = {mic: 'off', encoder: null, feed: 'off', note: ''};
    this.stats = {connected: false, role: null, id: null, encoder: null, sent: 0,
                  sent_bytes: 0, dropped: 0, received: 0, decoded: 0, decode_errors: 0,
                  feed_dropped: 0,
                  played_ms: 0, buffered_ms: 0, underruns: 0, muted: false, state_updates: 0};
    /* audio graph */
    this.stream = null;
    this.source = null;
    this.capture = null;
    this.sink = null;
    this.encoder = null;
    this.encoderTs = 0;
    this.pcmMode = false;
    this.formatSent = false;
    this.decoder = null;
    this.decoderTs = 0;
    this.playback = null;
    this.micStarting = null;
    this.feedStarting = null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail: detail || {}}));
  }

  wsUrl() {
    const q = new URLSearchParams();
    if (this.key)
      q.set('key', this.key);
    else if (this.token)
      q.set('token', this.token);
    if (this.name)
      q.set('name', this.name);
    return this.addr.ws + '/ws/' + encodeURIComponent(this.space) + '?' + q.toString();
  }

  connect() {
    if (this.ws)
      return;
    if (!this.ac)
      this.ac = makeAudioContext();
    this.closing = false;
    this.wasOpen = false;
    this.emit('status', {text: 'Connecting to ' + this.addr.label + '…', kind: 'connecting'});
    let ws;
    try {
      ws = new WebSocket(this.wsUrl());
    } catch (e) {
      this.emit('status', {text: 'Bad stage address: ' + e.message, kind: 'error'});
      this.emit('closed', {code: 0, reason: '', why: 'Bad stage address'});
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.wasOpen = true;
      this.stats.connected = true;
      this.emit('status', {text: 'Connected', kind: 'open'});
      this.pingTimer = setInterval(() => this.send({type: 'ping'}), PING_MS);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string')
        this.onText(ev.data);
      else
        this.onBinary(ev.data);
    };
    ws.onclose = (ev) => this.onClose(ev);
    ws.onerror = () => {}; /* onclose follows and says more */
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  /* ---- control -------------------------------------------------------------------------- */

  setMuted(muted) {
    this.muted = !!muted;
    this.stats.muted = this.muted;
    this.send({type: 'mute', muted: this.muted});
    this.emit('audio');
  }
  requestToSpeak(on) {
    this.requested = !!on;
    this.send({type: on ? 'request' : 'cancel_request'});
  }
  stepDown() { this.send({type: 'demote'}); }
  muteMember(id, muted) { this.send({type: 'mute', id, muted: !!muted}); }
  promote(id, role) { this.send({type: 'promote', id, role}); }
  demote(id) { this.send({type: 'demote', id}); }
  removeMember(id) { this.send({type: 'remove', id}); }
  invite(role) { this.send({type: 'invite', role}); }
  end() { this.send({type: 'end'}); }

  leave() {
    this.closing = true;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN)
      this.ws.close(1000, 'left');
    this.stopAudio();
  }

  onText(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (!m || typeof m.type !== 'string')
      return;
    switch (m.type) {
    case 'welcome':
      this.id = m.id;
      this.stats.id = m.id;
      this.emit('welcome', m);
      this.setRole(m.role);
      break;
    case 'role':
      this.setRole(m.role);
      break;
    case 'state':
      if (m.state && typeof m.state === 'object') {
        this.state = m.state;
        this.stats.state_updates++;
        this.syncFromState();
        this.emit('state', {state: m.state});
      }
      break;
    case 'invite':
      this.emit('invite', {role: m.role, token: m.token});
      break;
    case 'error':
      this.emit('servererror', {error: String(m.error || 'error')});
      break;
    case 'ended':
      this.ended = true;
      this.emit('ended');
      break;
    default:
      break; /* pong, and whatever a newer server adds */
    }
  }

  /* my own entry in the state: muted by the host? asked to speak? */
  syncFromState() {
    const st = this.state;
    if (!st || this.id === null)
      return;
    const me = Array.isArray(st.stage) ? st.stage.find((x) => x && x.id === this.id) : null;
    if (me && typeof me.muted === 'boolean' && me.muted !== this.muted) {
      this.muted = me.muted;
      this.stats.muted = me.muted;
      this.emit('audio');
    }
    if (this.role === 'listener' && Array.isArray(st.requests))
      this.requested = st.requests.some((x) => x && x.id === this.id);
  }

  setRole(role) {
    if (typeof role !== 'string')
      return;
    const was = this.role;
    this.role = role;
    this.stats.role = role;
    if (STAGE_ROLES.has(role)) {
      this.requested = false;
      this.startMic();
      this.startFeed();
    } else {
      this.stopAudio();
    }
    if (was !== role)
      this.emit('role', {role, was});
  }

  onClose(ev) {
    clearInterval(this.pingTimer);
    this.stats.close_code = ev.code;
    this.ws = null;
    this.stats.connected = false;
    this.stopAudio();
    let why;
    if (ev.code === 4001) {
      this.removed = true;
      why = 'You were removed from the stage by the host.';
    } else if (this.ended || ev.code === 1001) {
      this.ended = true;
      why = 'The space has ended.';
    } else if (this.closing) {
      why = 'You left.';
    } else if (!this.wasOpen) {
      why = 'Could not join.';
    } else {
      why = 'Connection lost' + (ev.reason ? ': ' + ev.reason : '') + '.';
    }
    this.emit('status', {text: this.wasOpen ? 'Disconnected' : 'Not connected', kind: 'closed'});
    const detail = {code: ev.code, reason: ev.reason, why, wasOpen: this.wasOpen};
    if (this.wasOpen && !this.closing && !this.ended && !this.removed) {
      /* A close frame can be lost when the server resets the connection: ask whether the
       * space still exists, so an end does not read as a network failure. */
      this.spaceGone().then((gone) => {
        if (gone) {
          this.ended = true;
          detail.why = 'The space has ended.';
        }
        this.emit('closed', detail);
      });
    } else if (!this.wasOpen && !this.closing) {
      /* the browser hides the HTTP refusal: ask the API what is wrong */
      this.diagnose().then((text) => {
        if (text)
          detail.why = text;
        this.emit('closed', detail);
      });
    } else {
      this.emit('closed', detail);
    }
  }

  /* true if the stage server says the space is gone (404); false if it is there or unknown */
  async spaceGone() {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 3000);
    try {
      const r = await fetch(this.addr.http + '/api/spaces/' + encodeURIComponent(this.space),
                            {cache: 'no-store', signal: ctl.signal});
      return r.status === 404;
    } catch (e) {
      return false;
    } finally {
      clearTimeout(t);
    }
  }

  /* Why a join was refused. The WebSocket API never shows the HTTP status, so ask the same
   * address over plain HTTP (no side effects without an upgrade), then the state document. */
  async diagnose() {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 4000);
    try {
      const httpUrl = this.wsUrl().replace(/^ws/, 'http');
      try {
        const r = await fetch(httpUrl, {cache: 'no-store', signal: ctl.signal});
        if (r.status !== 400 && r.status !== 426 && !r.ok) {
          const body = (await r.text()).trim().replace(/^\d+ [^:]*: /, '');
          return 'The server refused: ' + body + ' (' + r.status + ').';
        }
      } catch (e) {
        /* no CORS on the refusal, or nobody there */
      }
      let r;
      try {
        r = await fetch(this.addr.http + '/api/spaces/' + encodeURIComponent(this.space),
                        {cache: 'no-store', signal: ctl.signal});
      } catch (e) {
        return 'Cannot reach the stage server at ' + this.addr.label + '.';
      }
      if (r.status === 404)
        return this.key ? 'Could not join: is the host key right?'
                        : 'There is no space called "' + this.space + '" (or it has ended).';
      if (!r.ok)
        return 'Could not join (the server answered ' + r.status + ').';
      const st = await r.json().catch(() => null);
      const ti = tokenInfo(this.token);
      if (this.key)
        return 'Could not join: the host key was refused, or the stage is full.';
      if (ti && ti.expires && ti.expires < Date.now())
        return 'This invite link has expired.';
      if (ti && ti.space !== this.space)
        return 'This invite is for another space ("' + ti.space + '").';
      if (ti && ti.role === 'host' && st && Array.isArray(st.stage) &&
          st.stage.some((m) => m && m.role === 'host'))
        return 'The host is already on stage (in another tab?).';
      if (ti && STAGE_ROLES.has(ti.role))
        return 'Could not join: the stage may be full, the invite may be in use by someone ' +
               'else (a link seats one person unless the host made it reusable), or you ' +
               'were removed.';
      return 'Could not join: the invite is not valid for this space.';
    } finally {
      clearTimeout(t);
    }
  }

  /* ---- microphone and encoder ------------------------------------------------------------ */

  async startMic() {
    if (this.capture || this.micStarting)
      return this.micStarting;
    this.micStarting = this.doStartMic().catch((e) => {
      this.audio.mic = 'error';
      this.audio.note = micError(e);
      this.emit('audio');
    }).finally(() => {
      this.micStarting = null;
    });
    return this.micStarting;
  }

  async doStartMic() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia)
      throw new Error(window.isSecureContext ? 'no microphone API in this browser'
                                             : 'the microphone needs https (or localhost)');
    if (!this.ac)
      throw new Error('no Web Audio in this browser');
    this.audio.mic = 'starting';
    this.emit('audio');
    const [stream] = await Promise.all([
      navigator.mediaDevices.getUserMedia({audio: {
        channelCount: {ideal: 1}, sampleRate: {ideal: RATE}, echoCancellation: true,
        noiseSuppression: true, autoGainControl: true}}),
      loadWorklets(this.ac),
      this.pickEncoder(),
    ]);
    if (!STAGE_ROLES.has(this.role) || !this.ws) {
      /* demoted or gone while the browser asked */
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    if (this.ac.state === 'suspended')
      await this.ac.resume().catch(() => {});
    this.stream = stream;
    this.source = this.ac.createMediaStreamSource(stream);
    this.capture = new AudioWorkletNode(this.ac, 'rostrum-capture', {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      channelCount: 1, channelCountMode: 'explicit', channelInterpretation: 'speakers'});
    this.capture.port.onmessage = (e) => this.onFrame(e.data);
    /* a silent path to the destination keeps the worklet running in every browser */
    this.sink = this.ac.createGain();
    this.sink.gain.value = 0;
    this.source.connect(this.capture);
    this.capture.connect(this.sink);
    this.sink.connect(this.ac.destination);
    const track = stream.getAudioTracks()[0];
    if (track)
      track.onended = () => {
        this.audio.mic = 'error';
        this.audio.note = 'The microphone stopped (unplugged, or permission withdrawn).';
        this.emit('audio');
      };
    this.audio.mic = 'on';
    this.audio.note = '';
    this.emit('audio');
  }

  /* WebCodecs Opus where it works, else PCM (the server encodes). */
  async pickEncoder() {
    if (this.encoder || this.pcmMode)
      return;
    const cfg = {codec: 'opus', sampleRate: RATE, numberOfChannels: 1, bitrate: 32000,
                 opus: {frameDuration: 20000}};
    let ok = false;
    if (!this.forcePcm && typeof window.AudioEncoder === 'function') {
      try {
        ok = !!(await AudioEncoder.isConfigSupported(cfg)).supported;
      } catch (e) {
        ok = false;
      }
    }
    if (ok) {
      try {
        this.encoder = new AudioEncoder({
          output: (chunk) => this.onChunk(chunk),
          error: (e) => this.encoderFailed(e),
        });
        this.encoder.configure(cfg);
        this.encoderTs = 0;
        this.audio.encoder = 'webcodecs';
      } catch (e) {
        this.encoder = null;
        ok = false;
      }
    }
    if (!ok)
      this.usePcm();
    this.stats.encoder = this.audio.encoder;
  }

  usePcm() {
    this.pcmMode = true;
    this.audio.encoder = 'pcm';
    this.stats.encoder = 'pcm';
    this.formatSent = false;
  }

  encoderFailed(e) {
    console.warn('rostrum: Opus encoder failed, sending PCM instead', e);
    try {
      if (this.encoder && this.encoder.state !== 'closed')
        this.encoder.close();
    } catch (err) { /* closed already */ }
    this.encoder = null;
    this.usePcm();
    this.emit('audio');
  }

  canSend() {
    return this.ws && this.ws.readyState === WebSocket.OPEN && STAGE_ROLES.has(this.role) &&
           !this.muted;
  }

  onFrame(d) {
    if (!d || !d.frame)
      return;
    const p = this.muted ? 0 : d.peak;
    this.level = Math.max(p, this.level * 0.85);
    if (!this.canSend())
      return;
    if (this.ws.bufferedAmount > SEND_BUFFER_MAX) {
      this.stats.dropped++; /* the network is behind: late audio is useless */
      return;
    }
    if (this.encoder && this.encoder.state === 'configured') {
      if (this.encoder.encodeQueueSize > 10) {
        this.stats.dropped++;
        return;
      }
      let ad;
      try {
        ad = new AudioData({format: 'f32-planar', sampleRate: RATE, numberOfFrames: FRAME,
                            numberOfChannels: 1, timestamp: this.encoderTs, data: d.frame});
        this.encoderTs += 20000;
        this.encoder.encode(ad);
      } catch (e) {
        this.encoderFailed(e);
      } finally {
        if (ad)
          ad.close();
      }
    } else if (this.pcmMode) {
      if (!this.formatSent)
        this.formatSent = this.send({type: 'format', pcm: true});
      const f = d.frame, pcm = new Int16Array(FRAME);
      for (let i = 0; i < FRAME; i++) {
        const v = f[i] < -1 ? -1 : f[i] > 1 ? 1 : f[i];
        pcm[i] = v < 0 ? v * 32768 : v * 32767;
      }
      /* little-endian on every platform a browser runs on; make sure anyway */
      if (!LITTLE_ENDIAN) {
        const dv = new DataView(pcm.buffer);
        for (let i = 0; i < FRAME; i++)
          dv.setInt16(i * 2, pcm[i], true);
      }
      this.sendBinary(pcm.buffer);
    }
  }

  onChunk(chunk) {
    if (!this.canSend())
      return;
    const buf = new ArrayBuffer(chunk.byteLength);
    chunk.copyTo(buf);
    this.sendBinary(buf);
  }

  sendBinary(buf) {
    this.ws.send(buf);
    this.stats.sent++;
    this.stats.sent_bytes += buf.byteLength;
  }

  stopMic() {
    if (this.stream)
      this.stream.getTracks().forEach((t) => t.stop());
    for (const n of [this.source, this.capture, this.sink]) {
      try {
        if (n)
          n.disconnect();
      } catch (e) { /* not connected */ }
    }
    if (this.capture)
      this.capture.port.onmessage = null;
    this.stream = this.source = this.capture = this.sink = null;
    if (this.encoder) {
      try {
        if (this.encoder.state !== 'closed')
          this.encoder.close();
      } catch (e) { /* closed already */ }
      this.encoder = null;
    }
    this.pcmMode = false;
    this.formatSent = false;
    this.level = 0;
    if (this.audio.mic !== 'error')
      this.audio.mic = 'off';
  }

  /* ---- the return feed ------------------------------------------------------------------- */

  async startFeed() {
    if (this.playback || this.feedStarting)
      return this.feedStarting;
    this.feedStarting = this.doStartFeed().catch((e) => {
      this.audio.feed = 'unsupported';
      this.audio.note = this.audio.note || 'Cannot play the return feed: ' + e.message;
      this.emit('audio');
    }).finally(() => {
      this.feedStarting = null;
    });
    return this.feedStarting;
  }

  async doStartFeed() {
    const cfg = {codec: 'opus', sampleRate: RATE, numberOfChannels: 1};
    let ok = typeof window.AudioDecoder === 'function' && !!this.ac;
    if (ok) {
      try {
        ok = !!(await AudioDecoder.isConfigSupported(cfg)).supported;
      } catch (e) {
        ok = false;
      }
    }
    if (!ok) {
      this.audio.feed = 'unsupported';
      this.emit('audio');
      return;
    }
    await loadWorklets(this.ac);
    if (!STAGE_ROLES.has(this.role) || !this.ws)
      return;
    this.playback = new AudioWorkletNode(this.ac, 'rostrum-playback', {
      numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: {target: JITTER_TARGET, max: JITTER_MAX}});
    this.playback.port.onmessage = (e) => {
      const d = e.data;
      this.stats.buffered_ms = Math.round(d.buffered / 48);
      this.stats.jitter_target_ms = Math.round(d.target / 48);
      this.stats.underruns = d.underruns;
      this.stats.played_ms = Math.round(d.played / (this.ac.sampleRate / 1000));
      this.emit('stats');
    };
    this.playback.connect(this.ac.destination);
    this.makeDecoder();
    this.audio.feed = 'on';
    this.emit('audio');
  }

  makeDecoder() {
    this.decoder = new AudioDecoder({
      output: (ad) => this.onDecoded(ad),
      error: (e) => {
        this.stats.decode_errors++;
        console.warn('rostrum: Opus decoder error', e);
        this.decoder = null; /* a new one for the next packet */
      },
    });
    this.decoder.configure({codec: 'opus', sampleRate: RATE, numberOfChannels: 1});
    this.decoderTs = 0;
  }

  onBinary(buf) {
    this.stats.received++;
    if (!this.playback)
      return;
    if (!this.decoder || this.decoder.state === 'closed') {
      try {
        this.makeDecoder();
      } catch (e) {
        return;
      }
    }
    if (this.decoder.decodeQueueSize > 10) {
      this.stats.feed_dropped++; /* the decoder is 200 ms behind: skip rather than lag */
      return;
    }
    try {
      this.decoder.decode(new EncodedAudioChunk({type: 'key', timestamp: this.decoderTs,
                                                 data: buf}));
      this.decoderTs += 20000;
    } catch (e) {
      this.stats.decode_errors++;
    }
  }

  onDecoded(ad) {
    try {
      if (!this.playback)
        return;
      const n = ad.numberOfFrames;
      const pcm = new Float32Array(n);
      copyPlane(ad, pcm);
      this.stats.decoded++;
      this.playback.port.postMessage({pcm}, [pcm.buffer]);
    } finally {
      ad.close();
    }
  }

  stopFeed() {
    if (this.playback) {
      this.playback.port.onmessage = null;
      try {
        this.playback.disconnect();
      } catch (e) { /* not connected */ }
      this.playback = null;
    }
    if (this.decoder) {
      try {
        if (this.decoder.state !== 'closed')
          this.decoder.close();
      } catch (e) { /* closed already */ }
      this.decoder = null;
    }
    if (this.audio.feed !== 'unsupported')
      this.audio.feed = 'off';
  }

  stopAudio() {
    this.stopMic();
    this.stopFeed();
    this.emit('audio');
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function micError(e) {
  const name = e && e.name;
  if (name === 'NotAllowedError' || name === 'SecurityError')
    return 'Microphone permission was refused. Allow it in the address bar and join again.';
  if (name === 'NotFoundError' || name === 'OverconstrainedError')
    return 'No microphone found.';
  if (name === 'NotReadableError')
    return 'The microphone is busy in another application.';
  return 'Microphone: ' + (e && e.message ? e.message : String(e));
}

/* ---- DOM helpers ------------------------------------------------------------------------ */

export function h(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false)
        continue;
      if (k === 'class')
        e.className = v;
      else if (k === 'text')
        e.textContent = v;
      else if (k.startsWith('on'))
        e.addEventListener(k.slice(2), v);
      else if (k in e && typeof v !== 'string')
        e[k] = v;
      else
        e.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const c of children)
    if (c !== null && c !== undefined && c !== false)
      e.append(c);
  return e;
}

export function setText(el, text) {
  if (el.textContent !== text)
    el.textContent = text;
}

/* Copies <text>; falls back to selecting it in <input> when the clipboard API is refused. */
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    if (input) {
      input.focus();
      input.select();
      try {
        return document.execCommand('copy');
      } catch (err) {
        return false;
      }
    }
    return false;
  }
}

/*
 * Keeps <list> (a <ul>) showing the stage of <state>: one <li> per member, keyed by id,
 * updated in place so a button under the pointer is not rebuilt by a refresh. With <client>
 * (host or co-host), each member gets the buttons its role allows.
 */
export function renderStage(list, state, client) {
  const members = state && Array.isArray(state.stage) ? state.stage : [];
  const myRole = client ? client.role : null;
  const manager = myRole === 'host' || myRole === 'cohost';
  const seen = new Set();
  let prev = null;
  for (const m of members) {
    if (!m || typeof m.id !== 'number')
      continue;
    seen.add(m.id);
    let li = list.querySelector(`li[data-id="${m.id}"]`);
    if (!li) {
      li = h('li', {class: 'member'},
             h('span', {class: 'avatar', 'aria-hidden': 'true'}),
             h('span', {class: 'who'}, h('span', {class: 'mname'}),
               h('span', {class: 'mrole'})),
             h('span', {class: 'mstate'}),
             h('span', {class: 'actions'}));
      li.dataset.id = String(m.id);
    }
    /* keep the server's order: host, co-hosts, speakers */
    if (prev ? prev.nextSibling !== li : list.firstChild !== li)
      prev ? prev.after(li) : list.prepend(li);
    prev = li;
    const name = typeof m.name === 'string' && m.name ? m.name : 'member ' + m.id;
    const me = client && m.id === client.id;
    setText(li.querySelector('.avatar'), initials(name));
    setText(li.querySelector('.mname'), name + (me ? ' (you)' : ''));
    setText(li.querySelector('.mrole'), ROLE_LABEL[m.role] || String(m.role || ''));
    const talking = !!m.talking && !m.muted;
    setText(li.querySelector('.mstate'), m.muted ? 'muted' : talking ? 'talking' : '');
    li.classList.toggle('talking', talking);
    li.classList.toggle('muted', !!m.muted);
    li.classList.toggle('me', !!me);
    li.setAttribute('aria-label', name + ', ' + (ROLE_LABEL[m.role] || m.role) +
                    (m.muted ? ', muted' : talking ? ', talking' : ''));
    const sig = [manager, myRole, m.role, !!m.muted, !!me].join('|');
    const actions = li.querySelector('.actions');
    if (actions.dataset.sig !== sig) {
      actions.dataset.sig = sig;
      actions.replaceChildren(...memberButtons(m, client, manager, me, name));
    }
  }
  for (const li of [...list.children])
    if (!seen.has(Number(li.dataset.id)))
      li.remove();
}

function memberButtons(m, client, manager, me, name) {
  if (!manager || me || m.role === 'host')
    return [];
  const b = (text, label, fn, cls) => h('button', {type: 'button', class: 'small ' + (cls || ''),
                                                    text, 'aria-label': label, onclick: fn});
  const out = [];
  out.push(m.muted ? b('Unmute', 'Unmute ' + name, () => client.muteMember(m.id, false))
                   : b('Mute', 'Mute ' + name, () => client.muteMember(m.id, true)));
  if (client.role === 'host' && m.role === 'speaker')
    out.push(b('Make co-host', 'Make ' + name + ' a co-host',
               () => client.promote(m.id, 'cohost')));
  if (client.role === 'host' && m.role === 'cohost')
    out.push(b('Make speaker', 'Make ' + name + ' a speaker',
               () => client.promote(m.id, 'speaker')));
  out.push(b('Demote', 'Move ' + name + ' to the audience', () => client.demote(m.id)));
  out.push(b('Remove', 'Remove ' + name, () => {
    if (confirm('Remove ' + name + ' from the space?'))
      client.removeMember(m.id);
  }, 'danger'));
  return out;
}

/* Requests to speak, with promote buttons for a host or co-host. */
export function renderRequests(list, state, client) {
  const reqs = state && Array.isArray(state.requests) ? state.requests : [];
  const manager = !!client && (client.role === 'host' || client.role === 'cohost');
  const seen = new Set();
  for (const r of reqs) {
    if (!r || typeof r.id !== 'number')
      continue;
    seen.add(r.id);
    let li = list.querySelector(`li[data-id="${r.id}"]`);
    const name = typeof r.name === 'string' && r.name ? r.name : 'listener ' + r.id;
    const sig = manager + '|' + (client && client.role) + '|' + name;
    if (li && li.dataset.sig === sig)
      continue;
    const fresh = h('li', {class: 'request'}, h('span', {class: 'mname', text: name}));
    fresh.dataset.id = String(r.id);
    fresh.dataset.sig = sig;
    if (manager) {
      const acts = h('span', {class: 'actions'},
        h('button', {type: 'button', class: 'small', text: 'Invite as speaker',
                     'aria-label': 'Bring ' + name + ' on stage as a speaker',
                     onclick: () => client.promote(r.id, 'speaker')}));
      if (client.role === 'host')
        acts.append(h('button', {type: 'button', class: 'small', text: 'as co-host',
                                 'aria-label': 'Bring ' + name + ' on stage as a co-host',
                                 onclick: () => client.promote(r.id, 'cohost')}));
      fresh.append(acts);
    }
    if (li)
      li.replaceWith(fresh);
    else
      list.append(fresh);
  }
  for (const li of [...list.children])
    if (!seen.has(Number(li.dataset.id)))
      li.remove();
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return s.toUpperCase();
}

/* ---- the stage view: you, who is on stage, requests, notices ----------------------------- */

const ENCODER_LABEL = {webcodecs: 'Opus (WebCodecs)', pcm: 'PCM (the server encodes)'};

/*
 * Builds the stage panel into <root> and keeps it in step with <client>.
 * opts.listenUrl: the programme's address on the audience port, played while this member is
 * a listener (listeners get no audio on the WebSocket).
 */
export class StageView {
  constructor(root, client, opts) {
    this.client = client;
    this.opts = opts || {};
    this.root = root;
    this.build();
    const on = (t, f) => client.addEventListener(t, (e) => f(e.detail));
    on('welcome', () => this.update());
    on('role', (d) => this.onRole(d));
    on('state', () => this.update());
    on('audio', () => this.update());
    on('servererror', (d) => this.notice('The server said: ' + d.error, 'error'));
    on('invite', (d) => this.opts.onInvite && this.opts.onInvite(d));
    on('ended', () => this.notice('The host ended the space.', 'ended'));
    on('closed', () => this.onClosed());
    this.raf = requestAnimationFrame(() => this.tick());
    this.statsTimer = setInterval(() => this.updateStats(), 500);
    this.update();
  }

  build() {
    const c = this.client;
    this.roleEl = h('span', {class: 'role-badge'});
    this.meterFill = h('span', {class: 'meter-fill'});
    this.meter = h('span', {class: 'meter', role: 'meter', 'aria-label': 'Microphone level',
                            'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0'},
                   this.meterFill);
    this.micLabel = h('span', {class: 'mic-label'});
    this.noteEl = h('p', {class: 'audio-note', role: 'status'});
    this.feedEl = h('p', {class: 'feed-note'});
    this.muteBtn = h('button', {type: 'button', class: 'primary', onclick: () =>
      c.setMuted(!c.muted)});
    this.requestBtn = h('button', {type: 'button', class: 'primary', onclick: () => {
      c.requestToSpeak(!c.requested);
      this.update();
    }});
    this.stepDownBtn = h('button', {type: 'button', text: 'Step down',
                                    title: 'Leave the stage and keep listening',
                                    onclick: () => c.stepDown()});
    this.endBtn = h('button', {type: 'button', class: 'danger', text: 'End space',
                               onclick: () => {
                                 if (confirm('End the space for everyone?'))
                                   c.end();
                               }});
    this.leaveBtn = h('button', {type: 'button', text: 'Leave', onclick: () => c.leave()});
    this.statsEl = h('p', {class: 'stats'});
    this.programme = h('audio', {class: 'programme', controls: true, preload: 'none'});
    this.programme.hidden = true;
    this.you = h('section', {class: 'panel you', 'aria-label': 'You'},
      h('div', {class: 'panel-head'}, h('h2', {text: 'You'}), this.roleEl),
      h('div', {class: 'mic'}, this.micLabel, this.meter),
      this.noteEl, this.feedEl, this.programme,
      h('div', {class: 'buttons'}, this.muteBtn, this.requestBtn, this.stepDownBtn,
        this.leaveBtn, this.endBtn),
      this.statsEl);
    this.countEl = h('span', {class: 'count'});
    this.members = h('ul', {class: 'members', 'aria-label': 'On stage'});
    this.stageEmpty = h('p', {class: 'empty-small', text: 'Nobody is on stage yet.'});
    this.listenersEl = h('p', {class: 'listeners-note'});
    this.stagePanel = h('section', {class: 'panel stage', 'aria-label': 'On stage'},
      h('div', {class: 'panel-head'}, h('h2', {text: 'On stage'}), this.countEl),
      this.members, this.stageEmpty, this.listenersEl);
    this.requests = h('ul', {class: 'requests', 'aria-label': 'Requests to speak'});
    this.reqPanel = h('section', {class: 'panel req', 'aria-label': 'Requests to speak'},
      h('div', {class: 'panel-head'}, h('h2', {text: 'Requests to speak'})), this.requests);
    this.notices = h('ul', {class: 'notices', 'aria-live': 'polite'});
    this.root.replaceChildren(this.notices, this.you, this.stagePanel, this.reqPanel);
  }

  notice(text, kind) {
    const li = h('li', {class: 'notice ' + (kind || '')}, h('span', {text}),
                 h('button', {type: 'button', class: 'small link', text: 'Dismiss',
                              onclick: () => li.remove()}));
    this.notices.append(li);
    while (this.notices.children.length > 4)
      this.notices.firstChild.remove();
    if (kind === 'error')
      setTimeout(() => li.remove(), 15000);
  }

  onRole(d) {
    const was = d.was, now = d.role;
    if (was && was !== now) {
      if (STAGE_ROLES.has(now) && !STAGE_ROLES.has(was))
        this.notice('You are on stage as ' + ROLE_LABEL[now].toLowerCase() + '.', 'ok');
      else if (!STAGE_ROLES.has(now))
        this.notice('You are back in the audience.', 'ok');
      else
        this.notice('You are now ' + (ROLE_LABEL[now] || now).toLowerCase() + '.', 'ok');
    }
    this.syncProgramme();
    this.update();
  }

  /* listeners hear the programme from the audience port; on stage, the return feed instead */
  syncProgramme() {
    const a = this.programme, url = this.opts.listenUrl;
    const listen = this.client.role === 'listener' && this.client.ws && url;
    a.hidden = !listen;
    if (listen) {
      if (a.getAttribute('src') !== url)
        a.setAttribute('src', url);
      const p = a.play();
      if (p && p.catch)
        p.catch(() => {}); /* blocked: the controls are there */
    } else if (a.getAttribute('src')) {
      a.pause();
      a.removeAttribute('src');
      a.load();
    }
  }

  onClosed() {
    this.syncProgramme();
    this.update();
  }

  update() {
    const c = this.client;
    const role = c.role;
    const onStage = STAGE_ROLES.has(role);
    const connected = !!c.ws;
    const manager = role === 'host' || role === 'cohost';
    setText(this.roleEl, role ? ROLE_LABEL[role] || role : '—');
    this.roleEl.dataset.role = role || '';
    this.root.classList.toggle('on-stage', onStage);
    this.root.classList.toggle('muted', onStage && c.muted);
    this.root.classList.toggle('live', onStage && !c.muted && c.audio.mic === 'on');

    this.muteBtn.hidden = !onStage || !connected;
    setText(this.muteBtn, c.muted ? 'Unmute' : 'Mute');
    this.muteBtn.setAttribute('aria-pressed', c.muted ? 'true' : 'false');
    this.requestBtn.hidden = role !== 'listener' || !connected;
    setText(this.requestBtn, c.requested ? 'Cancel request' : 'Request to speak');
    this.stepDownBtn.hidden = !connected || !(role === 'speaker' || role === 'cohost');
    this.endBtn.hidden = !connected || !manager;
    this.leaveBtn.hidden = !connected;

    let mic;
    if (!onStage)
      mic = role === 'listener' ? 'Listening. Your microphone is off.' : 'Microphone off';
    else if (c.audio.mic === 'starting')
      mic = 'Starting the microphone…';
    else if (c.audio.mic === 'on')
      mic = c.muted ? 'Muted: nobody hears you' : 'Microphone on: you are live';
    else if (c.audio.mic === 'error')
      mic = 'Microphone unavailable';
    else
      mic = 'Microphone off';
    setText(this.micLabel, mic);
    this.meter.hidden = !onStage;
    setText(this.noteEl, c.audio.note || '');
    this.noteEl.hidden = !c.audio.note;
    let feed = '';
    if (onStage && c.audio.feed === 'unsupported')
      feed = 'Cannot play the return feed in this browser (no WebCodecs AudioDecoder). ' +
             'You are still heard; listen on another device if you need to.';
    setText(this.feedEl, feed);
    this.feedEl.hidden = !feed;

    const st = c.state;
    if (st) {
      renderStage(this.members, st, c);
      renderRequests(this.requests, st, c);
      const n = Array.isArray(st.stage) ? st.stage.length : 0;
      setText(this.countEl, n ? String(n) : '');
      this.stageEmpty.hidden = n > 0;
      const nl = Number(st.control_listeners);
      /* the document lists a bounded number of requests and counts the rest in "more" */
      const more = Number.isInteger(st.more) && st.more > 0 ? st.more : 0;
      const reqs = (Array.isArray(st.requests) ? st.requests.length : 0) + more;
      let txt = Number.isFinite(nl) && nl > 0
        ? nl + (nl === 1 ? ' person' : ' people') + ' in the audience here' : '';
      if (!manager && reqs)
        txt += (txt ? ' · ' : '') + reqs + (reqs === 1 ? ' request' : ' requests') + ' to speak';
      setText(this.listenersEl, txt);
      this.listenersEl.hidden = !txt;
      this.reqPanel.hidden = !manager;
      if (manager && !reqs && !this.requests.querySelector('.empty-small'))
        this.requests.append(h('li', {class: 'empty-small', text: 'No requests.'}));
      else if (reqs)
        this.requests.querySelectorAll('.empty-small').forEach((e) => e.remove());
      let moreEl = this.requests.querySelector('.more');
      if (manager && more) {
        if (!moreEl) {
          moreEl = h('li', {class: 'empty-small more'});
          this.requests.append(moreEl);
        }
        setText(moreEl, 'and ' + more + ' more');
      } else if (moreEl) {
        moreEl.remove();
      }
    } else {
      this.reqPanel.hidden = true;
    }
    this.updateStats();
  }

  updateStats() {
    const c = this.client, s = c.stats;
    if (!STAGE_ROLES.has(c.role)) {
      setText(this.statsEl, '');
      return;
    }
    const parts = [];
    if (c.audio.encoder)
      parts.push('sending ' + ENCODER_LABEL[c.audio.encoder]);
    parts.push(s.sent + ' sent', s.received + ' received');
    if (c.audio.feed === 'on')
      parts.push('buffer ' + s.buffered_ms + ' ms');
    if (s.dropped)
      parts.push(s.dropped + ' not sent (network behind)');
    if (s.feed_dropped)
      parts.push(s.feed_dropped + ' skipped (decoder behind)');
    setText(this.statsEl, parts.join(' · '));
  }

  tick() {
    const c = this.client;
    const v = Math.min(1, c.level);
    /* a dB-ish scale: -60 dBFS .. 0 */
    const pct = v > 0.001 ? Math.max(0, Math.min(100, (20 * Math.log10(v) + 60) / 60 * 100)) : 0;
    const w = pct.toFixed(0) + '%';
    if (this.meterFill.style.width !== w) {
      this.meterFill.style.width = w;
      this.meter.setAttribute('aria-valuenow', pct.toFixed(0));
    }
    this.meter.classList.toggle('hot', pct > 92);
    this.raf = requestAnimationFrame(() => this.tick());
  }

  destroy() {
    cancelAnimationFrame(this.raf);
    clearInterval(this.statsTimer);
  }
}
