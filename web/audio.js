/*
 * rostrum audio helpers: what the stage client (stage.js) and the listener's web player
 * (player.js) share. An ES module, no build step.
 *
 *   makeAudioContext  an AudioContext at 48 kHz where the browser allows it
 *   copyPlane         one channel of a WebCodecs AudioData as float32, whatever its format
 *   opusConfig        the AudioDecoder config for an Opus stream (with its OpusHead)
 */

export const RATE = 48000;
export const FRAME = 960; /* 20 ms at 48 kHz */

/* An AudioContext at 48 kHz where the browser allows it. Call it from a click: a context
 * made in a user gesture may play sound. */
export function makeAudioContext() {
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC)
    return null;
  let ac;
  try {
    ac = new AC({sampleRate: RATE, latencyHint: 'interactive'});
  } catch (e) {
    ac = new AC({latencyHint: 'interactive'});
  }
  if (ac.state === 'suspended')
    ac.resume().catch(() => {});
  return ac;
}

/* Copies channel <ch> of <ad> into <out> (Float32Array of ad.numberOfFrames), converting
 * from the decoder's own format where copyTo cannot. */
export function copyPlane(ad, out, ch = 0) {
  const n = ad.numberOfFrames, nch = ad.numberOfChannels;
  if (ch >= nch)
    ch = nch - 1;
  try {
    ad.copyTo(out, {planeIndex: ch, format: 'f32-planar'});
    return;
  } catch (e) {
    /* a browser that cannot convert: take its own format */
  }
  switch (ad.format) {
  case 'f32-planar':
    ad.copyTo(out, {planeIndex: ch});
    return;
  case 'f32': {
    const all = new Float32Array(n * nch);
    ad.copyTo(all, {planeIndex: 0});
    for (let i = 0; i < n; i++)
      out[i] = all[i * nch + ch];
    return;
  }
  case 's16': case 's16-planar': {
    const planar = ad.format === 's16-planar';
    const all = new Int16Array(planar ? n : n * nch);
    ad.copyTo(all, {planeIndex: planar ? ch : 0});
    for (let i = 0; i < n; i++)
      out[i] = all[planar ? i : i * nch + ch] / 32768;
    return;
  }
  default:
    out.fill(0);
  }
}

/* The AudioDecoder config for Opus at 48 kHz with <channels>; with <head> (the OpusHead
 * packet) as its description, so the decoder applies its pre-skip, gain and mapping. Falls
 * back to no description where the browser refuses one. Resolves to a config, or null if the
 * browser cannot decode Opus with WebCodecs. */
export async function opusConfig(channels, head) {
  if (typeof window.AudioDecoder !== 'function')
    return null;
  const base = {codec: 'opus', sampleRate: RATE, numberOfChannels: channels};
  const tries = head ? [{...base, description: head}, base] : [base];
  for (const cfg of tries) {
    try {
      if ((await AudioDecoder.isConfigSupported(cfg)).supported)
        return cfg;
    } catch (e) {
      /* try the next */
    }
  }
  return null;
}
