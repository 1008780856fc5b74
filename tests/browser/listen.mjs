#!/usr/bin/env node
/*
 * listen.mjs: a real browser listens to a space through rostrum's listener page and reports,
 * as it goes, what the page's player says about itself (issue 11).
 *
 *   node tests/browser/listen.mjs URL MOUNT SECONDS
 *   e.g. node tests/browser/listen.mjs 'http://127.0.0.1:8000/?player=web' /live 20
 *
 * Debian's Chromium (headless, fresh profile; with BROWSER=firefox, Debian's Firefox ESR through
 * firefox.mjs) opens URL, waits for the card [data-mount=MOUNT],
 * presses its Listen button, then for SECONDS prints one JSON line every 200 ms:
 *   {"t":ms since the click,"state":data-state,"detail":...,"latency_ms":...,"played_s":...,
 *    "gap":data-gap-samples,"concealed":...,"reconnects":...,"resumes":...,"words":the card's
 *    state text,"tag":"web"|"audio","granule":the position playing,"wall":Date.now()}
 * for the web player (div.webplayer) or the <audio> fallback (audio.player: its currentTime
 * progress stands for played_s). The last line is {"done":true,"ok":...,"first_playing_ms":
 * click to data-state=playing,"page_errors":[...]}. The test that runs it (a Python module in
 * tests/integration) acts on the server meanwhile and judges the lines. first_playing_ms is
 * measured in the page (click event to the data-state mutation); first_audio_ms is the
 * player's own figure (its start() to the worklet's first sound); "browser" says which one ran.
 * Exits 0 unless the browser itself failed.
 */
import {AUTOPLAY, firstLine, withChromium} from './chromium.mjs';

const FIREFOX = process.env.BROWSER === 'firefox';

const [url, mount, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
if (!url || !mount || !mount.startsWith('/') || !(seconds > 0)) {
  console.error('usage: node listen.mjs URL MOUNT SECONDS');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const watchdog = setTimeout(() => {
  console.log(JSON.stringify({done: true, ok: false, reason: 'watchdog'}));
  process.exit(1);
}, (seconds + 60) * 1000);
watchdog.unref();

const attr = (s) => '"' + s.replace(/["\\]/g, '\\$&') + '"';
const cardSel = `[data-mount=${attr(mount)}]`;

function sample(sel) {
  const card = document.querySelector(sel);
  if (!card)
    return {state: 'gone'};
  const p = card.querySelector('.player');
  const words = card.querySelector('.state');
  if (!p)
    return {state: 'none'};
  const d = p.dataset;
  const num = (v) => (v === undefined || v === '' ? null : Number(v));
  const out = {tag: p.tagName === 'AUDIO' ? 'audio' : 'web', state: d.state || '',
               detail: d.detail || '', latency_ms: num(d.latencyMs), played_s: num(d.playedS),
               gap: num(d.gapSamples), concealed: num(d.concealedSamples),
               reconnects: num(d.reconnects), resumes: num(d.resumes),
               buffered_ms: num(d.bufferedMs), granule: num(d.granule),
               words: words ? words.textContent : '', wall: Date.now()};
  if (p.tagName === 'AUDIO') {
    out.current_time = p.currentTime;
    out.error = p.error ? p.error.code : null;
  }
  return out;
}

async function run(page) {
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message ? e.message : e)));
  page.on('console', (m) => {
    const type = m.type(); /* Playwright says 'warning', puppeteer 'warn' */
    if ((type === 'error' || type === 'warning' || type === 'warn') && pageErrors.length < 20)
      pageErrors.push('console: ' + m.text());
  });
  await page.goto(url, {waitUntil: 'domcontentloaded', timeout: 10000});
  await page.waitForSelector(cardSel, {timeout: 10000});
  /* in the page: when the click landed, and when the player first said 'playing' */
  await page.evaluate((sel) => {
    const card = document.querySelector(sel);
    card.querySelector('button.listen').addEventListener('click', () => {
      window.__clickAt = performance.now();
    }, {capture: true});
    const p = card.querySelector('.player');
    new MutationObserver(() => {
      if (p.dataset.state === 'playing' && window.__playingAt === undefined)
        window.__playingAt = performance.now();
    }).observe(p, {attributes: true, attributeFilter: ['data-state']});
  }, cardSel);
  const clicked = Date.now();
  await page.click(`${cardSel} button.listen`); /* the same call in Playwright and puppeteer */
  const end = clicked + seconds * 1000;
  while (Date.now() < end) {
    const s = await page.evaluate(sample, cardSel);
    s.t = Date.now() - clicked;
    console.log(JSON.stringify(s));
    await sleep(200);
  }
  const fa = await page.evaluate((sel) => {
    const p = document.querySelector(sel + ' .player');
    return p && p.dataset.firstAudioMs ? Number(p.dataset.firstAudioMs) : null;
  }, cardSel).catch(() => null);
  const t = await page.evaluate(() => [window.__clickAt, window.__playingAt]);
  const firstPlaying = t[0] !== undefined && t[1] !== undefined ? Math.round(t[1] - t[0]) : null;
  return {first_playing_ms: firstPlaying, first_audio_ms: fa, page_errors: pageErrors};
}

let rc = 0;
try {
  const body = async (context) => {
    const page = await context.newPage();
    const r = await run(page);
    const browser = FIREFOX ? await context.version() : 'chromium';
    console.log(JSON.stringify({done: true, ok: true, browser, ...r}));
  };
  if (FIREFOX) {
    const {withFirefox} = await import('./firefox.mjs'); /* puppeteer-core only when asked */
    await withFirefox(body);
  } else {
    await withChromium({args: AUTOPLAY}, body);
  }
} catch (e) {
  console.log(JSON.stringify({done: true, ok: false, reason: firstLine(e)}));
  rc = 1;
}
process.exit(rc);
