#!/usr/bin/env node
/*
 * vod.mjs: Chromium plays a recording's HLS VOD (issue 12, item 2) with hls.js, from the
 * start to the end.
 *
 *   node tests/browser/vod.mjs URL ID
 *
 * Opens URL/, loads URL/hls.min.js, plays /recordings/ID.m3u8 in an <audio> at 4x speed
 * (playbackRate) and waits for "ended". Prints one line of JSON: {"ok":true, played,
 * duration, ...} or {"ok":false, reason, ...}; exits 0 or 1.
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
    return {ok: true, play: r, thrown};
  });
  console.log(JSON.stringify(res));
  process.exit(res.ok ? 0 : 1);
} catch (e) {
  console.log(JSON.stringify({ok: false, reason: firstLine(e)}));
  process.exit(1);
}
