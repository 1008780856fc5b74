#!/usr/bin/env node
/*
 * beacon.mjs: a real browser counts as HLS listeners through rostrum's web/beacon.js.
 *
 *   node tests/browser/beacon.mjs URL MOUNT N WINDOW_S
 *
 * Debian's Chromium opens URL (rostrum's page), imports /beacon.js and starts N beacons for
 * MOUNT, one a second each; then, reading /status-json.xsl and /metrics from here:
 *   - hls_listeners of MOUNT reaches N within 10 s,
 *   - after WINDOW_S + 2 s of beacons it is still N and rostrum issued N sessions in all (the
 *     beacons renewed their sessions, they did not start new ones),
 *   - after stop(), it falls to 0, not sooner than WINDOW_S - 1 s.
 * Prints one line of JSON ({"ok":true,...} or {"ok":false,"reason":...}); exits 0 or 1.
 */
import {firstLine, withChromium} from './chromium.mjs';

const [url, mount, nArg, windowArg] = process.argv.slice(2);
const n = Number(nArg), windowS = Number(windowArg);
if (!url || !mount || !mount.startsWith('/') || !(n >= 1) || !(windowS > 0)) {
  console.error('usage: node beacon.mjs URL MOUNT N WINDOW_S');
  process.exit(2);
}
const space = mount.slice(1);
const result = {ok: false, url, mount, n};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function hls() {
  const j = await (await fetch(new URL('/status-json.xsl', url))).json();
  let s = j.icestats.source || [];
  if (!Array.isArray(s))
    s = [s];
  const m = s.find((x) => x.listenurl.endsWith(mount));
  return m ? m.hls_listeners : -1;
}

async function sessions() {
  const t = await (await fetch(new URL('/metrics', url))).text();
  const m = t.match(/^rostrum_beacon_sessions_total (\d+)/m);
  return m ? Number(m[1]) : -1;
}

async function waitFor(pred, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred())
      return true;
    await sleep(200);
  }
  return false;
}

try {
  await withChromium({}, async (ctx) => {
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(firstLine(e)));
    await page.goto(url);
    await page.evaluate(async ([sp, k]) => {
      const {startBeacon} = await import('/beacon.js');
      window.stops = [];
      for (let i = 0; i < k; i++)
        window.stops.push(startBeacon(sp, {everyMs: 1000}));
    }, [space, n]);
    const t0 = Date.now();
    if (!await waitFor(async () => (await hls()) === n, 10000))
      throw new Error(`hls_listeners ${await hls()}, want ${n}`);
    result.counted_ms = Date.now() - t0;
    await sleep((windowS + 2) * 1000);
    result.after_window = await hls();
    result.sessions = await sessions();
    if (result.after_window !== n || result.sessions !== n)
      throw new Error(`after the window: hls_listeners ${result.after_window}, sessions ` +
                      `${result.sessions}, want ${n} and ${n}`);
    await page.evaluate(() => window.stops.forEach((s) => s()));
    const t1 = Date.now();
    if (!await waitFor(async () => (await hls()) === 0, (windowS + 5) * 1000))
      throw new Error(`still ${await hls()} HLS listeners after stop()`);
    result.dropped_ms = Date.now() - t1;
    if (result.dropped_ms < (windowS - 1) * 1000)
      throw new Error(`dropped out after ${result.dropped_ms} ms, before the window`);
    if (errors.length)
      throw new Error(`page errors: ${errors.join('; ')}`);
    result.ok = true;
  });
} catch (e) {
  result.reason = firstLine(e);
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
