#!/usr/bin/env node
/*
 * vod.mjs: Chromium plays a recording's HLS VOD (issue 12, item 2) with hls.js, from the
 * start to the end.
 *
 *   node tests/browser/vod.mjs URL ID
 *
 * Opens URL/, loads URL/hls.min.js, plays /recordings/ID.m3u8 in an <audio> at 4x speed
 * (playbackRate) and waits for "ended". Then the listener page's "Past spaces": the card of
 * ID must be listed; its player is started, seeked to 3 s (the browser asks Range) and must
 * play on from there to "ended". Prints one line of JSON: {"ok":true, play, page} or
 * {"ok":false, reason, ...}; exits 0 or 1.
 */
import {AUTOPLAY, firstLine, withChromium} from './chromium.mjs';

const [base, id] = process.argv.slice(2);
if (!base || !id) {
  console.error('usage: node vod.mjs URL ID');
  process.exit(2);
}

try {
  const res = await withChromium({args: AUTOPLAY}, async (context) => {
    const page = context.pages()[0] || (await context.newPage());
    const thrown = [];
    page.on('pageerror', (e) => thrown.push(firstLine(e)));
    await page.goto(`${base}/`, {timeout: 10000});
    await page.addScriptTag({url: `${base}/hls.min.js`});
    const r = await page.evaluate(async (rid) => {
      const audio = document.createElement('audio');
      document.body.appendChild(audio);
      const hls = new Hls();
      const errors = [];
      let fatal = null;
      let playlistType = null;
      hls.on(Hls.Events.ERROR, (_, d) => {
        errors.push(d.details);
        if (d.fatal)
          fatal = d.details;
      });
      hls.on(Hls.Events.LEVEL_LOADED, (_, d) => {
        playlistType = d.details.type;
      });
      hls.loadSource(`/recordings/${rid}.m3u8`);
      hls.attachMedia(audio);
      audio.playbackRate = 4;
      await audio.play().catch(() => {});
      const t0 = performance.now();
      let maxTime = 0;
      while (performance.now() - t0 < 60000 && !fatal && !audio.error && !audio.ended) {
        maxTime = Math.max(maxTime, audio.currentTime);
        await new Promise((ok) => setTimeout(ok, 100));
      }
      const out = {ended: audio.ended, played: Math.max(maxTime, audio.currentTime),
                   duration: audio.duration, fatal, playlist_type: playlistType,
                   media_error: audio.error ? audio.error.code : null,
                   errors: errors.slice(0, 5), version: Hls.version,
                   codec: hls.levels && hls.levels[0] ? hls.levels[0].audioCodec : null};
      hls.destroy();
      return out;
    }, id);
    if (!r.ended || r.fatal || r.media_error)
      return {ok: false, reason: 'hls.js did not play the recording to its end', play: r, thrown};
    await page.goto(`${base}/`, {timeout: 10000});
    const sel = `#past li[data-id="${id}"] audio`;
    await page.waitForSelector(sel, {timeout: 10000});
    const pg = await page.evaluate(async (s) => {
      const audio = document.querySelector(s);
      await audio.play().catch(() => {});
      const t0 = performance.now();
      while (performance.now() - t0 < 10000 && !(audio.currentTime > 0))
        await new Promise((ok) => setTimeout(ok, 50));
      audio.currentTime = 3;
      await new Promise((ok) => {
        audio.addEventListener('seeked', ok, {once: true});
        setTimeout(ok, 5000);
      });
      const seekedTo = audio.currentTime;
      audio.playbackRate = 4;
      while (performance.now() - t0 < 40000 && !audio.ended && !audio.error)
        await new Promise((ok) => setTimeout(ok, 100));
      return {seeked_to: seekedTo, ended: audio.ended, duration: audio.duration,
              error: audio.error ? audio.error.code : null,
              title: audio.closest('li').querySelector('h2').textContent};
    }, sel);
    if (!pg.ended || pg.error || !(pg.seeked_to >= 2.9))
      return {ok: false, reason: 'the page\'s replay player did not seek and play', play: r, page: pg};
    return {ok: true, play: r, page: pg, thrown};
  });
  console.log(JSON.stringify(res));
  process.exit(res.ok ? 0 : 1);
} catch (e) {
  console.log(JSON.stringify({ok: false, reason: firstLine(e)}));
  process.exit(1);
}
