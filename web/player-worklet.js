/*
 * rostrum listener player: the AudioWorklet processor "rostrum-listener" (player.js loads it).
 *
 * A jitter buffer of decoded 48 kHz PCM (one ring per channel, 20 s) played out at the
 * context's rate. The main thread posts {pcm: [Float32Array per channel], granule}; the
 * processor reports its state four times a second.
 *
 *   start      once <start> samples are buffered (1.2 s: a source that sends a second of audio
 *              at a time, as ffmpeg does, must not run it dry before its next page); on the
 *              first start, older audio is dropped (the burst plays from its newest part)
 *   trough     what matters is the least buffered just before new pages come (the trough,
 *              measured over 3 s: pages come in bursts); the player holds it near <margin>
 *              (250 ms), so latency ends up as low as the source's cadence allows
 *   underrun   play silence (counted as concealed) and wait for margin + 350 ms again; the
 *              margin grows by 200 ms (to 3 s at most) and shrinks back by 50 ms each 20 s
 *              without one
 *   too much   a trough over margin + 150 ms: play 3% fast until it is back under margin +
 *              50 ms (a gentle catch-up, no jump); over margin + 2 s (after a long stall), or
 *              over margin + 300 ms in the first 8 s (the start's safety), drop the excess
 *              with a 10 ms cross-fade, so it does not click
 */
const RATE = 48000;
const CAP = RATE * 20;
const FADE = 480; /* 10 ms at 48 kHz */

class Listener extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.nch = o.channels === 2 ? 2 : 1;
    this.startAt = o.start || 1.2 * RATE;
    this.base = o.margin || 0.25 * RATE;
    this.target = this.base; /* the trough to hold */
    this.max = o.max || 3 * RATE;
    this.buf = [new Float32Array(CAP), new Float32Array(CAP)];
    this.step = RATE / sampleRate; /* 48 kHz samples per output sample, at speed 1 */
    this.reset();
    this.underruns = 0; this.concealed = 0; this.dropped = 0; this.played = 0;
    this.catchups = 0; this.burstCut = 0;
    this.last = 0;
    this.port.onmessage = (e) => {
      const d = e.data;
      if (d && d.pcm)
        this.write(d.pcm, d.granule);
      else if (d && d.reset)
        this.reset();
    };
  }

  reset() {
    this.r = 0; this.count = 0; this.frac = 0;
    this.playing = false; this.started = false; this.speed = 1; this.fadeIn = 0;
    this.granule = -1; /* granule of the sample after the last one written */
    this.winMin = Infinity; this.winStart = currentTime; this.lastMin = 0; this.calm = 0;
  }

  write(pcm, granule) {
    const n = Math.min(pcm[0].length, CAP);
    if (this.count + n > CAP)
      this.skip(this.count + n - CAP);
    let w = (this.r + this.count) % CAP;
    for (let c = 0; c < 2; c++) {
      const src = pcm[Math.min(c, pcm.length - 1)], dst = this.buf[c];
      let k = w;
      for (let i = 0; i < n; i++) {
        dst[k] = src[i];
        if (++k === CAP)
          k = 0;
      }
    }
    this.count += n;
    this.granule = granule + n;
  }

  /* drops the <n> oldest samples; counted in <dropped> unless <burst> (the start's cut) */
  skip(n, burst) {
    n = Math.min(n, this.count);
    this.r = (this.r + n) % CAP;
    this.count -= n;
    if (burst)
      this.burstCut += n;
    else
      this.dropped += n;
  }

  /* the trough: the least buffered over a 3 s window, which the catch-up rules judge */
  measure() {
    if (this.count < this.winMin)
      this.winMin = this.count;
    if (currentTime - this.winStart >= 3) {
      this.lastMin = this.winMin;
      this.winMin = this.count;
      this.winStart = currentTime;
      const excess = this.lastMin - this.target;
      /* just after the start, before anyone is used to the sound, a cut is the quick way
       * down to the trough the source allows; later only a long stall's backlog is cut */
      const early = this.played < 8 * RATE;
      if (excess > 2 * RATE || (early && excess > 0.3 * RATE)) {
        this.crossfadeSkip(excess);
        this.catchups++;
      } else if (excess > 0.15 * RATE) {
        if (this.speed === 1)
          this.catchups++;
        this.speed = 1.03;
      }
    }
    if (this.speed !== 1 && this.winMin < this.target + 0.05 * RATE)
      this.speed = 1;
  }

  /* drops <n> samples, fading from the old position into the new over FADE samples */
  crossfadeSkip(n) {
    if (n + FADE >= this.count)
      return;
    for (let c = 0; c < 2; c++) {
      const b = this.buf[c];
      for (let i = 0; i < FADE; i++) {
        const a = (this.r + i) % CAP, z = (this.r + n + i) % CAP, w = i / FADE;
        b[z] = b[a] * (1 - w) + b[z] * w;
      }
    }
    this.skip(n);
  }

  process(inputs, outputs) {
    const out = outputs[0];
    if (!out || !out[0])
      return true;
    const L = out[0], R = out[1] || null, len = L.length;
    const need = this.started ? this.target + 0.35 * RATE : this.startAt;
    if (!this.playing && this.count >= need) {
      if (!this.started && this.count > need)
        this.skip(this.count - need, true); /* the burst: play its newest part */
      this.winMin = this.count;
      this.winStart = currentTime;
      this.playing = true;
      this.started = true;
      this.fadeIn = FADE;
    }
    let i = 0;
    if (this.playing) {
      this.measure();
      const step = this.step * this.speed;
      const b0 = this.buf[0], b1 = this.buf[this.nch === 2 ? 1 : 0];
      for (; i < len; i++) {
        if (this.count < 2) {
          this.playing = false;
          this.underruns++;
          this.calm = 0;
          this.target = Math.min(this.target + 0.2 * RATE, this.max);
          break;
        }
        const r1 = this.r + 1 === CAP ? 0 : this.r + 1, f = this.frac;
        let g = 1;
        if (this.fadeIn > 0)
          g = 1 - this.fadeIn-- / FADE;
        L[i] = g * (b0[this.r] + (b0[r1] - b0[this.r]) * f);
        if (R)
          R[i] = g * (b1[this.r] + (b1[r1] - b1[this.r]) * f);
        this.frac += step;
        while (this.frac >= 1) {
          this.frac -= 1;
          this.r = this.r + 1 === CAP ? 0 : this.r + 1;
          this.count--;
          this.played++;
        }
      }
      this.calm += i;
      if (this.calm >= 20 * sampleRate && this.target > this.base) {
        this.target = Math.max(this.base, this.target - 0.05 * RATE);
        this.calm = 0;
      }
    }
    if (i < len && this.started)
      this.concealed += Math.round((len - i) * this.step);
    for (; i < len; i++) {
      L[i] = 0;
      if (R)
        R[i] = 0;
    }
    const changed = this.playing !== this.wasPlaying;
    this.wasPlaying = this.playing;
    if (changed || currentTime - this.last >= 0.25) { /* at once when it starts or stops */
      this.last = currentTime;
      this.port.postMessage({
        buffered: this.count, target: this.target, playing: this.playing,
        started: this.started, underruns: this.underruns, concealed: this.concealed,
        dropped: this.dropped, burst_cut: this.burstCut, played: this.played,
        catchups: this.catchups,
        speed: this.speed,
        /* the granule now playing */
        granule: this.granule >= 0 ? this.granule - this.count : -1,
        at: currentTime,
      });
    }
    return true;
  }
}

registerProcessor('rostrum-listener', Listener);
