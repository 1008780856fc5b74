#!/usr/bin/env node
/*
 * hlspage.mjs: the listener page plays HLS (natively or through hls.js) and counts itself by
 * beacons
 * (issue 11: a player behind a cache is counted by web/beacon.js, not by its connection).
 *
 *   node tests/browser/hlspage.mjs URL MOUNT SECONDS WINDOW_S
 *   e.g. node tests/browser/hlspage.mjs 'http://127.0.0.1:8000/?player=hlsjs' /live 6 5
 *
 * Debian's Chromium opens URL (?player=hls: the browser's own HLS where it has it, hls.js
 * else; ?player=hlsjs: hls.js), presses the Listen button of the card [data-mount=MOUNT];
 * then, reading /status-json.xsl from here:
 *   - the card's <audio> plays (currentTime advancing SECONDS; with hlsjs on hls.js's
 *     MediaSource, a blob: source) and hls_listeners of MOUNT is 1 while it does (a session
 *     lapses WINDOW_S after its last beacon: the page beats often enough to keep it);
 *   - after Stop, hls_listeners falls back to 0 within WINDOW_S + 5 s (the beacons stopped)
 *     and stays there, whichever worker answers.
 * Prints one line of JSON ({"ok":true,...} with what it measured, or {"ok":false,"reason":...});
 * exits 0 or 1.
 */
import {AUTOPLAY, firstLine, withChromium} from './chromium.mjs';

const [url, mount, secondsArg, windowArg] = process.argv.slice(2);
const seconds = Number(secondsArg), windowS = Number(windowArg);
if (!url || !mount || !mount.startsWith('/') || !(seconds > 0) || !(windowS > 0)) {
  console.error('usage: node hlspage.mjs URL MOUNT SECONDS WINDOW_S');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const result = {ok: false, url, mount};

async function hlsListeners() {
  const j = await (await fetch(new URL('/status-json.xsl', url))).json();
  let s = j.icestats.source || [];
  if (!Array.isArray(s))
    s = [s];
  const m = s.find((x) => x.listenurl.endsWith(mount));
  return m ? m.hls_listeners : -1;
}

try {
  await withChromium({args: AUTOPLAY}, async (ctx) => {
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(firstLine(e)));
    const beacons = result.beacons_ms = [];
    let t0 = Date.now();
    page.on('request', (r) => {
      if (r.url().includes('/beacon/'))
        beacons.push(Date.now() - t0);
    });
    await page.goto(url);
    const card = page.locator(`[data-mount="${mount}"]`);
    await card.waitFor({timeout: 10000});
    result.mode = await page.evaluate(() => document.documentElement.dataset.player);
    const want = new URL(url).searchParams.get('player');
    if (result.mode !== want)
      throw new Error(`the page chose player ${result.mode}, not ${want}`);
    t0 = Date.now();
    await card.locator('button.listen').click({timeout: 5000});
    const audio = card.locator('audio.player');
    let first = null, counted = null;
    const end = t0 + (seconds + 20) * 1000;
    while (Date.now() < end) {
      const a = await audio.evaluate((el) => ({t: el.currentTime, src: el.currentSrc,
                                               err: el.error ? el.error.code : null,
                                               state: el.dataset.state}));
      result.src = a.src;
      if (a.err)
        throw new Error(`media error ${a.err}`);
      if (first === null && a.t > 0)
        first = {at: Date.now(), t: a.t};
      if (counted === null && first && (await hlsListeners()) === 1)
        counted = Date.now();
      if (first && counted && a.t - first.t >= seconds)
        break;
      await sleep(200);
    }
    if (!first)
      throw new Error('the card\'s <audio> never played');
    result.start_ms = first.at - t0;
    result.counted_ms = counted ? counted - t0 : null;
    result.played_s = (await audio.evaluate((el) => el.currentTime)) - first.t;
    result.hlsjs = result.src.startsWith('blob:');
    if (want === 'hlsjs' && !result.hlsjs)
      throw new Error(`the <audio> plays ${result.src}, not hls.js's MediaSource`);
    if (result.played_s < seconds)
      throw new Error(`played ${result.played_s.toFixed(1)} s of ${seconds}`);
    if (counted === null)
      throw new Error(`hls_listeners ${await hlsListeners()} while playing, want 1`);
    result.at_stop = await hlsListeners();
    if (result.at_stop !== 1)
      throw new Error(`hls_listeners ${result.at_stop} after ${result.played_s.toFixed(1)} s`);
    await card.locator('button.listen').click({timeout: 5000});
    const t1 = Date.now();
    result.stop_ms = t1 - t0;
    const seen = result.after_stop_samples = [];
    while (Date.now() < t1 + (windowS + 5) * 1000) {
      seen.push([Date.now() - t1, await hlsListeners()]);
      if (seen.length > 1 && seen[seen.length - 1][1] === 0 && seen[seen.length - 2][1] === 0)
        break;
      await sleep(250);
    }
    result.after_stop = await hlsListeners();
    result.dropped_ms = (seen.find((x) => x[1] === 0) || [null])[0];
    if (result.after_stop !== 0)
      throw new Error(`still ${result.after_stop} HLS listeners after Stop`);
    /* every worker counts for the same second: once 0, no fetch (whichever worker answers it)
     * may say 1 again */
    const first0 = seen.findIndex((x) => x[1] === 0);
    if (seen.slice(first0).some((x) => x[1] !== 0))
      throw new Error('hls_listeners went back up after it fell to 0: the workers disagree');
    if (errors.length)
      throw new Error(`page errors: ${errors.join('; ')}`);
    result.ok = true;
  });
} catch (e) {
  result.reason = firstLine(e);
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
