#!/usr/bin/env node
/*
 * captions.mjs: live captions in Chromium (issue 12, item 4).
 *
 *   node tests/browser/captions.mjs URL SPACE [SECONDS]
 *   e.g. node tests/browser/captions.mjs http://127.0.0.1:8000 live 20
 *
 * Debian's Chromium (headless, fresh profile):
 *   1. the listener page: presses Listen on the card of SPACE (the web player) and waits for
 *      its caption line (p.captions) to show cues; records each cue it shows (text, its
 *      start on the programme clock) with what the player then heard (Date.now() minus its
 *      data-latency-ms), so the caller can check the line follows the sound;
 *   2. hls.js plays URL/SPACE.m3u8 (9 s behind live, where the captions are final) with its
 *      subtitles rendition on and collects the WebVTT
 *      cues it puts on the <audio>'s text track, each with the wall time hls.js gives its
 *      start (hls.playingDate minus how far the cue is from currentTime), for the caller to
 *      compare with the cue's own time in /SPACE.captions.json.
 * Prints one line of JSON ({"ok":true,"page":[...],"hls":{...}} or {"ok":false,"reason":...});
 * exits 0 or 1.
 */
import {AUTOPLAY, firstLine, withChromium} from './chromium.mjs';

const [base, space, secondsArg] = process.argv.slice(2);
const seconds = secondsArg === undefined ? 20 : Number(secondsArg);
if (!base || !space || !(seconds > 0)) {
  console.error('usage: node captions.mjs URL SPACE [SECONDS]');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function pageCaptions(page) {
  await page.goto(`${base}/?player=web`, {waitUntil: 'domcontentloaded', timeout: 10000});
  const card = `[data-mount="/${space}"]`;
  await page.waitForSelector(card, {timeout: 10000});
  await page.locator(card).locator('button.listen').click({timeout: 5000});
  const seen = [];
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline && seen.length < 4) {
    const s = await page.evaluate((sel) => {
      const c = document.querySelector(sel);
      const p = c && c.querySelector('p.captions');
      const pl = c && c.querySelector('.player');
      return {text: p && !p.hidden ? p.textContent : null, id: p ? p.dataset.cueId : '',
              start: p ? Number(p.dataset.cueStartMs) : null,
              latency: pl ? Number(pl.dataset.latencyMs || NaN) : null,
              state: pl ? pl.dataset.state : null, now: Date.now()};
    }, card);
    if (s.text && s.id && !seen.some((x) => x.id === s.id))
      seen.push({id: s.id, text: s.text, start_ms: s.start, heard_ms: s.now - s.latency,
                 latency_ms: s.latency, state: s.state});
    await sleep(100);
  }
  await page.locator(card).locator('button.listen').click({timeout: 5000}); /* stop */
  return seen;
}

async function hlsCaptions(page) {
  await page.addScriptTag({url: `${base}/hls.min.js`});
  return page.evaluate(async ({space, seconds}) => {
    const audio = document.createElement('audio');
    document.body.appendChild(audio);
    /* captions are final some seconds after the sound (the recogniser's delay): a player that
     * wants them sits that far behind live, or their segments come after it passed them */
    const hls = new Hls({lowLatencyMode: false, liveSyncDuration: 9, liveMaxLatencyDuration: 20,
                         renderTextTracksNatively: true});
    const errors = [];
    let fatal = null;
    hls.on(Hls.Events.ERROR, (_, d) => {
      errors.push(d.details);
      if (d.fatal)
        fatal = d.details;
    });
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => {
      hls.subtitleTrack = 0;
      hls.subtitleDisplay = true;
    });
    hls.loadSource(`/${space}.m3u8`);
    hls.attachMedia(audio);
    await audio.play().catch(() => {});
    const cues = new Map();
    const deadline = performance.now() + seconds * 1000;
    while (performance.now() < deadline && !fatal && cues.size < 4) {
      for (const tt of audio.textTracks) {
        if (tt.mode === 'disabled')
          tt.mode = 'hidden';
        for (const c of tt.cues || []) {
          const d = hls.playingDate;
          if (!cues.has(c.text) && d && audio.currentTime > 0)
            cues.set(c.text, {text: c.text, start_s: c.startTime, end_s: c.endTime,
                              wall_ms: d.getTime() - (audio.currentTime - c.startTime) * 1000,
                              current_s: audio.currentTime});
        }
      }
      await new Promise((ok) => setTimeout(ok, 200));
    }
    const r = {cues: [...cues.values()], fatal, errors: errors.slice(0, 5),
               tracks: hls.subtitleTracks ? hls.subtitleTracks.length : 0,
               played_s: audio.currentTime, version: Hls.version};
    hls.destroy();
    return r;
  }, {space, seconds});
}

try {
  const res = await withChromium({args: AUTOPLAY}, async (context) => {
    const page = context.pages()[0] || (await context.newPage());
    const thrown = [];
    page.on('pageerror', (e) => thrown.push(firstLine(e)));
    const shown = await pageCaptions(page);
    if (shown.length < 2)
      return {ok: false, reason: 'the listener page showed fewer than 2 cues', page: shown, thrown};
    const hls = await hlsCaptions(page);
    if (hls.fatal || hls.cues.length < 2)
      return {ok: false, reason: 'hls.js gave fewer than 2 WebVTT cues', page: shown, hls, thrown};
    return {ok: thrown.length === 0, reason: thrown.length ? 'page errors' : undefined,
            page: shown, hls, thrown};
  });
  console.log(JSON.stringify(res));
  process.exit(res.ok ? 0 : 1);
} catch (e) {
  console.log(JSON.stringify({ok: false, reason: firstLine(e)}));
  process.exit(1);
}
