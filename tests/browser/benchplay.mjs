#!/usr/bin/env node
/*
 * benchplay.mjs: used only by bench/player (issue 11). A real browser plays a stream in an
 * <audio> element and reports, as it goes, where its play head is.
 *
 *   node tests/browser/benchplay.mjs page URL MOUNT SECONDS   the listener page at URL (e.g.
 *        'http://127.0.0.1:8000/?player=hlsjs'): presses the Listen button of [data-mount=MOUNT]
 *   node tests/browser/benchplay.mjs bare STREAM_URL SECONDS   a blank page with one <audio>
 *        and a button that sets its src to STREAM_URL and plays it (e.g. an Icecast mount)
 *
 * Debian's Chromium (headless, fresh profile). Every 200 ms one JSON line:
 *   {"t":ms since the click,"wall":Date.now(),"paused":...,"current_time":...,
 *    "playing_date":hls.js's hls.playingDate in ms (EXT-X-PROGRAM-DATE-TIME at the play head)
 *    or null,"hls_latency_ms":hls.js's own hls.latency or null}
 * hls.js is seen by wrapping window.Hls as the page loads it (the page itself is not changed).
 * The last line is {"done":true,"ok":...,"first_playing_ms":click to the <audio>'s first
 * 'playing' event, measured in the page,"hls_errors":hls.js's error events' details}. Exits 0 unless the browser itself failed.
 */
import {AUTOPLAY, firstLine, withChromium} from './chromium.mjs';

const [mode, url, a3, a4] = process.argv.slice(2);
const mount = mode === 'page' ? a3 : null;
const seconds = Number(mode === 'page' ? a4 : a3);
if ((mode !== 'page' && mode !== 'bare') || !url || !(seconds > 0) ||
    (mode === 'page' && !(mount && mount.startsWith('/')))) {
  console.error('usage: node benchplay.mjs page URL MOUNT SECONDS | bare STREAM_URL SECONDS');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const watchdog = setTimeout(() => {
  console.log(JSON.stringify({done: true, ok: false, reason: 'watchdog'}));
  process.exit(1);
}, (seconds + 60) * 1000);
watchdog.unref();

/* in the page, before its scripts: keep the hls.js instance the page makes */
function wrapHls() {
  let cls;
  Object.defineProperty(window, 'Hls', {
    configurable: true,
    get() { return cls; },
    set(v) {
      cls = class extends v {
        constructor(c) {
          super(c);
          window.__benchHls = this;
          window.__benchHlsErrors = [];
          this.on('hlsError', (_, d) => window.__benchHlsErrors.push(d.details));
        }
      };
    },
  });
}

const attr = (s) => '"' + s.replace(/["\\]/g, '\\$&') + '"';
const sel = mode === 'page' ? `[data-mount=${attr(mount)}]` : 'body';

function sample(sel) {
  const a = document.querySelector(sel + ' audio');
  const h = window.__benchHls;
  const pd = h && h.playingDate ? h.playingDate.getTime() : null;
  const lat = h && typeof h.latency === 'number' && isFinite(h.latency) ? h.latency * 1000 : null;
  return {wall: Date.now(), paused: a ? a.paused : null, current_time: a ? a.currentTime : null,
          error: a && a.error ? a.error.code : null, playing_date: pd, hls_latency_ms: lat};
}

async function run(page) {
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message ? e.message : e)));
  await page.addInitScript(wrapHls);
  if (mode === 'page') {
    await page.goto(url, {waitUntil: 'domcontentloaded', timeout: 10000});
    await page.waitForSelector(sel, {timeout: 10000});
  } else {
    await page.setContent('<button class="listen">Listen</button><audio preload="none"></audio>');
    await page.evaluate((u) => {
      const a = document.querySelector('audio');
      document.querySelector('button.listen').addEventListener('click', () => {
        a.src = u;
        a.play().catch(() => {});
      });
    }, url);
  }
  await page.evaluate((sel) => {
    const card = document.querySelector(sel);
    card.querySelector('button.listen').addEventListener('click', () => {
      window.__clickAt = performance.now();
    }, {capture: true});
    card.querySelector('audio').addEventListener('playing', () => {
      if (window.__playingAt === undefined)
        window.__playingAt = performance.now();
    });
  }, sel);
  const clicked = Date.now();
  await page.locator(sel).locator('button.listen').click({timeout: 5000});
  const end = clicked + seconds * 1000;
  while (Date.now() < end) {
    const s = await page.evaluate(sample, sel);
    s.t = Date.now() - clicked;
    console.log(JSON.stringify(s));
    await sleep(200);
  }
  const t = await page.evaluate(() => [window.__clickAt, window.__playingAt,
                                       window.__benchHlsErrors || []]);
  const firstPlaying = t[0] !== undefined && t[1] !== undefined ? Math.round(t[1] - t[0]) : null;
  return {first_playing_ms: firstPlaying, hls_errors: t[2], page_errors: pageErrors};
}

let rc = 0;
try {
  await withChromium({args: AUTOPLAY}, async (context) => {
    const page = context.pages()[0] || await context.newPage();
    const r = await run(page);
    console.log(JSON.stringify({done: true, ok: true, ...r}));
  });
} catch (e) {
  console.log(JSON.stringify({done: true, ok: false, reason: firstLine(e)}));
  rc = 1;
}
process.exit(rc);
