#!/usr/bin/env node
/*
 * speak.mjs: a real browser speaks on a stage through rostrum's own speaker page.
 *
 *   node tests/browser/speak.mjs AUDIENCE_URL STAGE_HOSTPORT SPACE TOKEN [SECONDS]
 *   e.g. node tests/browser/speak.mjs http://127.0.0.1:8000/ 127.0.0.1:8001 room eyJ... 10
 *
 * Debian's Chromium (headless, fresh profile, fake microphone: a ~1 kHz beep with pauses)
 * opens AUDIENCE_URL/speak.html?stage=STAGE_HOSTPORT&space=SPACE&token=TOKEN&name=browser,
 * presses Join, waits up to 15 s until the page is on stage (role host, cohost or speaker)
 * and has sent audio, keeps it running SECONDS (default 10), then prints one line of JSON:
 *   {"ok":..., "sent":N, "received":N, "role":"...", "encoder":"webcodecs"|"pcm", ...}
 * and exits 0 if sent > 0 and received > 0 (and the page threw nothing), else 1.
 *
 * TOKEN may be "key=HOST_KEY" to join with the host key instead.
 * ENCODER=pcm forces the page's PCM path (the server encodes).
 * SCREENSHOT=path.png saves a screenshot of the page at the end, pass or fail.
 */
import {AUTOPLAY, FAKE_MIC, firstLine, withChromium} from './chromium.mjs';

const ON_STAGE_TIMEOUT_MS = 15000;
const STAGE_ROLES = new Set(['host', 'cohost', 'speaker']);

const [audience, stage, space, token, secondsArg] = process.argv.slice(2);
const seconds = secondsArg === undefined ? 10 : Number(secondsArg);
if (!audience || !stage || !space || !token || !(seconds > 0)) {
  console.error('usage: node speak.mjs AUDIENCE_URL STAGE_HOSTPORT SPACE TOKEN [SECONDS]');
  process.exit(2);
}

const result = {ok: false, sent: 0, received: 0, role: null, encoder: null, seconds};
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

const watchdog = setTimeout(() => {
  process.exitCode = finish(false, 'watchdog: the test itself took too long');
  process.exit();
}, (seconds + ON_STAGE_TIMEOUT_MS / 1000 + 60) * 1000);
watchdog.unref();

function pageUrl() {
  const u = new URL('speak.html', audience.endsWith('/') ? audience : audience + '/');
  u.searchParams.set('stage', stage);
  u.searchParams.set('space', space);
  if (token.startsWith('key='))
    u.searchParams.set('key', token.slice(4));
  else
    u.searchParams.set('token', token);
  u.searchParams.set('name', 'browser');
  if (process.env.ENCODER)
    u.searchParams.set('encoder', process.env.ENCODER);
  return u.href;
}

const stats = (page) => page.evaluate(() => {
  const s = window.rostrumStats || {};
  return JSON.parse(JSON.stringify(s));
});

function copyStats(s) {
  for (const k of ['sent', 'received', 'role', 'encoder', 'decoded', 'played_ms', 'buffered_ms',
                   'underruns', 'jitter_target_ms', 'dropped', 'feed_dropped', 'decode_errors', 'sent_bytes', 'connected', 'muted',
                   'state_updates'])
    if (s[k] !== undefined)
      result[k] = s[k];
}

async function run(page) {
  const pageErrors = [];
  const consoleErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message ? e.message : e)));
  page.on('console', (m) => {
    if ((m.type() === 'error' || m.type() === 'warning') && consoleErrors.length < 10)
      consoleErrors.push(m.text());
  });
  result.page_errors = pageErrors;
  result.console_errors = consoleErrors;

  result.url = pageUrl().replace(/([?&](token|key)=)[^&]*/, '$1…');
  await page.goto(pageUrl(), {waitUntil: 'load', timeout: 10000});
  await page.locator('#join-btn').click({timeout: 5000});
  const clicked = Date.now();

  /* 1. on stage and sending */
  let s = {};
  while (Date.now() - clicked < ON_STAGE_TIMEOUT_MS) {
    s = await stats(page);
    if (STAGE_ROLES.has(s.role) && s.sent > 0)
      break;
    const err = await page.locator('#join-error').textContent().catch(() => '');
    if (err && !(await page.locator('#join-error').isHidden()))
      return [false, 'the page could not join: ' + err];
    await sleep(100);
  }
  copyStats(s);
  if (!STAGE_ROLES.has(s.role))
    return [false, `not on stage within ${ON_STAGE_TIMEOUT_MS / 1000} s (role ${s.role})`];
  if (!(s.sent > 0))
    return [false, `on stage but sent nothing within ${ON_STAGE_TIMEOUT_MS / 1000} s ` +
                   `(microphone: ${await page.locator('.mic-label').textContent()})`];
  result.on_stage_ms = Date.now() - clicked;

  /* 2. keep talking */
  await sleep(seconds * 1000);
  s = await stats(page);
  copyStats(s);
  if (pageErrors.length)
    return [false, `uncaught page error: ${pageErrors[0]}`];
  if (!(s.sent > 0) || !(s.received > 0))
    return [false, `sent ${s.sent}, received ${s.received}`];
  return [true, null];
}

async function main() {
  try {
    return await withChromium({args: [...AUTOPLAY, ...FAKE_MIC], viewport: {width: 1100, height: 800}}, async (context) => {
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
      /* leave cleanly, so the server sees a close rather than a dropped socket */
      await page.evaluate(() => {
        const b = [...document.querySelectorAll('button')].find((x) => x.textContent === 'Leave');
        if (b && !b.hidden)
          b.click();
      }).catch(() => {});
      await sleep(200);
      return finish(ok, reason);
    });
  } catch (e) {
    return finish(false, 'browser: ' + firstLine(e));
  }
}

process.exitCode = await main();
