#!/usr/bin/env node
/*
 * hls.mjs: Chromium plays a space's HLS (issue 11): its MSE takes rostrum's fMP4, and hls.js
 * (npm, served by the server as /hls.min.js when it was built with it) plays /<space>.m3u8.
 *
 *   node tests/browser/hls.mjs URL SPACE [SECONDS]
 *   e.g. node tests/browser/hls.mjs http://127.0.0.1:8000 live 6
 *
 * Debian's Chromium (headless, fresh profile) opens URL/ and:
 *   1. MSE: MediaSource.isTypeSupported for audio/mp4 with codecs "opus" (and "Opus", reported),
 *      then a SourceBuffer takes the init segment and the playlist's last part
 *      (appendBuffer, no error) and buffers audio from them;
 *   2. hls.js in low-latency mode plays URL/SPACE.m3u8 in an <audio>: passes once currentTime
 *      has advanced SECONDS (default 6) with no fatal hls.js error and no media error.
 * Prints one line of JSON ({"ok":true,...} with what it measured, or {"ok":false,"reason":...});
 * exits 0 or 1.
 */
import {AUTOPLAY, firstLine, withChromium} from './chromium.mjs';

const [base, space, secondsArg] = process.argv.slice(2);
const seconds = secondsArg === undefined ? 6 : Number(secondsArg);
if (!base || !space || !(seconds > 0)) {
  console.error('usage: node hls.mjs URL SPACE [SECONDS]');
  process.exit(2);
}

async function mseCheck(page) {
  return page.evaluate(async (space) => {
    const type = 'audio/mp4; codecs="opus"';
    const out = {lower: MediaSource.isTypeSupported(type),
                 upper: MediaSource.isTypeSupported('audio/mp4; codecs="Opus"')};
    const text = await (await fetch(`/hls/${space}/o.m3u8`)).text();
    const map = /EXT-X-MAP:URI="([^"]+)"/.exec(text);
    const parts = [...text.matchAll(/EXT-X-PART:[^\n]*URI="([^"]+)"/g)].map((m) => m[1]);
    if (!map || !parts.length)
      return {...out, error: 'no map or part in the playlist'};
    const [init, part] = await Promise.all(
        [map[1], parts[parts.length - 1]].map(async (u) =>
          new Uint8Array(await (await fetch(`/hls/${space}/${u}`)).arrayBuffer())));
    const ms = new MediaSource();
    const audio = document.createElement('audio');
    audio.src = URL.createObjectURL(ms);
    await new Promise((ok) => ms.addEventListener('sourceopen', ok, {once: true}));
    try {
      const sb = ms.addSourceBuffer(type);
      for (const chunk of [init, part]) {
        await new Promise((ok, fail) => {
          sb.addEventListener('updateend', ok, {once: true});
          sb.addEventListener('error', () => fail(new Error('SourceBuffer error')), {once: true});
          sb.appendBuffer(chunk);
        });
      }
      out.buffered = sb.buffered.length ? sb.buffered.end(0) - sb.buffered.start(0) : 0;
    } catch (e) {
      out.error = String(e.message || e);
    }
    out.init_bytes = init.length;
    out.part_bytes = part.length;
    return out;
  }, space);
}

async function hlsPlay(page) {
  await page.addScriptTag({url: `${base}/hls.min.js`});
  return page.evaluate(async ({space, seconds}) => {
    const audio = document.createElement('audio');
    document.body.appendChild(audio);
    const hls = new Hls({lowLatencyMode: true});
    const errors = [];
    let fatal = null;
    hls.on(Hls.Events.ERROR, (_, d) => {
      errors.push(d.details);
      if (d.fatal)
        fatal = d.details;
    });
    const t0 = performance.now();
    hls.loadSource(`/${space}.m3u8`);
    hls.attachMedia(audio);
    let started = null;
    await audio.play().catch(() => {});
    const deadline = t0 + (seconds + 20) * 1000;
    while (performance.now() < deadline && !fatal && !audio.error) {
      if (started === null && audio.currentTime > 0)
        started = {at: performance.now(), time: audio.currentTime};
      if (started && audio.currentTime - started.time >= seconds)
        break;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    const played = started ? audio.currentTime - started.time : 0;
    const r = {played, fatal, media_error: audio.error ? audio.error.code : null,
               start_ms: started ? Math.round(started.at - t0) : null,
               latency_s: hls.latency, errors: errors.slice(0, 5),
               codec: hls.levels && hls.levels[0] ? hls.levels[0].audioCodec : null,
               version: Hls.version};
    hls.destroy();
    return r;
  }, {space, seconds});
}

try {
  const res = await withChromium({args: AUTOPLAY}, async (context) => {
    const page = context.pages()[0] || (await context.newPage());
    const thrown = [];
    page.on('pageerror', (e) => thrown.push(firstLine(e)));
    await page.goto(`${base}/`, {timeout: 10000});
    const mse = await mseCheck(page);
    if (!mse.lower || mse.error || !(mse.buffered > 0))
      return {ok: false, reason: 'MSE refused rostrum\'s fMP4', mse};
    const play = await hlsPlay(page);
    if (play.fatal || play.media_error || play.played < seconds)
      return {ok: false, reason: 'hls.js did not play', mse, play};
    return {ok: true, mse, play, thrown};
  });
  console.log(JSON.stringify(res));
  process.exit(res.ok ? 0 : 1);
} catch (e) {
  console.log(JSON.stringify({ok: false, reason: firstLine(e)}));
  process.exit(1);
}
