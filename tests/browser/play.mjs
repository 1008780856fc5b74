#!/usr/bin/env node
/*
 * play.mjs: a real browser listens to a space through rostrum's own page.
 *
 *   node tests/browser/play.mjs URL MOUNT [SECONDS [MIN_LISTENERS]]
 *   e.g. node tests/browser/play.mjs http://127.0.0.1:8000/ /live 15
 *
 * Debian's Chromium (headless, fresh profile) opens URL, waits up to 10 s for the card
 * [data-mount=MOUNT], presses its Listen button and passes when, within SECONDS (default 15):
 *   - the card's player has played >= 2 s with no media error: <audio class="player">
 *     (currentTime advancing steadily; URL?player=audio forces it) or the web player
 *     (div.player, player.js: its data-played-s advancing steadily, data-state=playing),
 *   - and then, within 10 s more, the card's .listeners count shows a number >= MIN_LISTENERS
 *     (default 1; a relay tree's test asks for the tree's count) after a
 *     page refresh of the status, with the same player element still in place (the page must
 *     not rebuild a playing player), and the page threw no uncaught exception.
 * Prints one line of JSON ({"ok":true,...} or {"ok":false,"reason":...}); exits 0 or 1.
 * SCREENSHOT=path.png saves a screenshot of the page at the end, pass or fail.
 */
import {AUTOPLAY, FAKE_MIC, firstLine, withChromium} from './chromium.mjs';

const CARD_TIMEOUT_MS = 10000;
const COUNT_TIMEOUT_MS = 10000;
const MIN_PLAYED_S = 2;

const [url, mount, secondsArg, minArg] = process.argv.slice(2);
const seconds = secondsArg === undefined ? 15 : Number(secondsArg);
const minListeners = minArg === undefined ? 1 : Number(minArg);
if (!url || !mount || !mount.startsWith('/') || !(seconds > 0) || !(minListeners >= 1)) {
  console.error('usage: node play.mjs URL MOUNT [SECONDS [MIN_LISTENERS]]   (MOUNT like /live)');
  process.exit(2);
}

const result = {ok: false, url, mount, seconds};
const t0 = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function finish(ok, reason) {
  result.ok = ok;
  if (reason)
    result.reason = reason;
  result.elapsed_ms = Date.now() - t0;
  console.log(JSON.stringify(result));
  return ok ? 0 : 1;
}

/* A browser that hangs must not hang the test run. */
const watchdog = setTimeout(() => {
  process.exitCode = finish(false, 'watchdog: the test itself took too long');
  process.exit();
}, (seconds + CARD_TIMEOUT_MS / 1000 + COUNT_TIMEOUT_MS / 1000 + 45) * 1000);
watchdog.unref();

const attr = (s) => '"' + s.replace(/["\\]/g, '\\$&') + '"';
const cardSel = `[data-mount=${attr(mount)}]`;

async function playerState(page) {
  return page.evaluate((sel) => {
    const card = document.querySelector(sel);
    const a = card && card.querySelector('.player');
    if (!a)
      return {present: false};
    const count = card.querySelector('.listeners');
    const digits = count ? count.textContent.replace(/[^0-9]/g, '') : '';
    const listeners = digits === '' ? null : Number(digits);
    if (a.tagName !== 'AUDIO') /* the web player (player.js): its data-* state */
      return {present: true, same: a.__rostrumProbe === true, web: true,
              currentTime: Number(a.dataset.playedS || 0), paused: a.dataset.state !== 'playing',
              readyState: a.dataset.state, networkState: a.dataset.detail || '',
              error: null, src: a.dataset.src || '', listeners};
    return {
      present: true,
      same: a.__rostrumProbe === true,
      currentTime: a.currentTime,
      paused: a.paused,
      readyState: a.readyState,
      networkState: a.networkState,
      error: a.error ? {code: a.error.code, message: a.error.message} : null,
      src: a.currentSrc,
      listeners,
    };
  }, cardSel);
}

async function run(page) {
  const pageErrors = [];
  const consoleErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message ? e.message : e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && consoleErrors.length < 10)
      consoleErrors.push(m.text());
  });
  result.page_errors = pageErrors;
  result.console_errors = consoleErrors;

  await page.goto(url, {waitUntil: 'domcontentloaded', timeout: CARD_TIMEOUT_MS});
  try {
    await page.waitForSelector(cardSel, {timeout: CARD_TIMEOUT_MS});
  } catch (e) {
    const status = await page.locator('#status').textContent().catch(() => null);
    return [false, `no card ${cardSel} within ${CARD_TIMEOUT_MS / 1000} s (page status: ` +
                   `${JSON.stringify(status)})`];
  }
  result.card_ms = Date.now() - t0;
  /* mark the element (a rebuilt player would not carry the mark) and time its first 'playing' */
  await page.evaluate((sel) => {
    const a = document.querySelector(sel).querySelector('.player');
    a.__rostrumProbe = true;
    const playing = () => {
      if (window.__rostrumPlayingAt === undefined)
        window.__rostrumPlayingAt = performance.now();
    };
    a.addEventListener('playing', playing);
    new MutationObserver(() => {
      if (a.tagName !== 'AUDIO' && a.dataset.state === 'playing')
        playing();
    }).observe(a, {attributes: true, attributeFilter: ['data-state']});
    window.__rostrumClickAt = performance.now();
  }, cardSel);

  const clicked = Date.now();
  await page.locator(cardSel).locator('button.listen').click({timeout: 5000});

  /* 1. audio plays. currentTime follows the stream's own timestamps, so a player that joins
   * a running stream may start at 6.0 rather than 0: count only steady progress (steps no
   * larger than the wall time that passed) towards MIN_PLAYED_S, never a jump. */
  let st = null, prev = null, prevAt = 0, played = 0;
  const deadline = clicked + seconds * 1000;
  while (Date.now() < deadline) {
    st = await playerState(page);
    const now = Date.now();
    if (!st.present)
      return [false, 'the card or its player disappeared while playing'];
    if (st.error)
      return [false, `media error ${st.error.code}: ${st.error.message}`];
    if (prev !== null && !st.paused) {
      const step = st.currentTime - prev;
      if (step > 0 && step <= (now - prevAt) / 1000 + 0.25)
        played += step;
    }
    prev = st.currentTime;
    prevAt = now;
    if (played >= MIN_PLAYED_S)
      break;
    await sleep(100);
  }
  const t = await page.evaluate(() => [window.__rostrumClickAt, window.__rostrumPlayingAt]);
  if (t[1] !== undefined)
    result.first_audio_ms = Math.round(t[1] - t[0]);
  result.played_s = Number(played.toFixed(3));
  result.current_time = st ? Number(st.currentTime.toFixed(3)) : null;
  result.src = st ? st.src : null;
  if (played < MIN_PLAYED_S)
    return [false, `played only ${result.played_s} s in ${seconds} s ` +
                   `(currentTime=${result.current_time}, paused=${st && st.paused}, ` +
                   `readyState=${st && st.readyState}, networkState=${st && st.networkState})`];
  result.played_ms = Date.now() - clicked;

  /* 2. the page counts us (after one of its own refreshes), same player, still playing */
  const countDeadline = Date.now() + COUNT_TIMEOUT_MS;
  while (Date.now() < countDeadline) {
    st = await playerState(page);
    if (st.present && st.listeners !== null && st.listeners >= minListeners)
      break;
    await sleep(250);
  }
  result.listeners = st.present ? st.listeners : null;
  if (!st.present || st.listeners === null || st.listeners < minListeners)
    return [false, `listener count ${result.listeners} (want >= ${minListeners}) within ` +
                   `${COUNT_TIMEOUT_MS / 1000} s`];
  if (!st.same)
    return [false, 'the player element was rebuilt by a refresh'];
  if (st.error)
    return [false, `media error ${st.error.code}: ${st.error.message}`];
  if (st.paused)
    return [false, 'the player stopped after a refresh'];
  result.current_time = Number(st.currentTime.toFixed(3));
  if (pageErrors.length)
    return [false, `uncaught page error: ${pageErrors[0]}`];
  return [true, null];
}

async function main() {
  try {
    return await withChromium({args: AUTOPLAY, viewport: {width: 1100, height: 700}}, async (context) => {
      result.browser = context.browser() ? context.browser().version() : null;
      const page = context.pages()[0] || await context.newPage();
      let ok = false, reason = null;
      try {
        [ok, reason] = await run(page);
      } catch (e) {
        reason = firstLine(e);
      }
      if (process.env.SCREENSHOT) {
        try {
          await page.screenshot({path: process.env.SCREENSHOT, fullPage: true});
          result.screenshot = process.env.SCREENSHOT;
        } catch (e) {
          result.screenshot_error = firstLine(e);
        }
      }
      return finish(ok, reason);
    });
  } catch (e) {
    return finish(false, 'browser: ' + firstLine(e));
  }
}

process.exitCode = await main();
