#!/usr/bin/env node
/*
 * stage_watch.mjs: a real browser stays on a stage while others join, through rostrum's own
 * speaker page, and says whether its WebSocket ever dropped (issue 8: a text frame that is not
 * UTF-8 makes Chromium fail the connection, and every reconnect gets the same frame again).
 *
 *   node tests/browser/stage_watch.mjs AUDIENCE_URL STAGE_HOSTPORT SPACE HOST_KEY [SECONDS]
 *
 * Debian's Chromium (headless, fresh profile, fake microphone) opens speak.html with the host
 * key, presses Join, and once it is the host prints a line "joined" (the test then lets other
 * clients in). It waits up to SECONDS (default 15) for a request to speak to show in the
 * page's stage view, watches 2 s more, then prints one line of JSON:
 *   {"ok":..., "opened":N, "closed":N, "requests":["name", ...], "members":[...], ...}
 * and exits 0 if exactly one WebSocket opened, none closed, the page is still connected and
 * shows the host and a request, else 1.
 */
import {AUTOPLAY, FAKE_MIC, firstLine, withChromium} from './chromium.mjs';

const [audience, stage, space, key, secondsArg] = process.argv.slice(2);
const seconds = secondsArg === undefined ? 15 : Number(secondsArg);
if (!audience || !stage || !space || !key || !(seconds > 0)) {
  console.error('usage: node stage_watch.mjs AUDIENCE_URL STAGE_HOSTPORT SPACE HOST_KEY [SECONDS]');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const result = {ok: false, opened: 0, closed: 0, frame_errors: [], requests: [], members: []};

function finish(ok, reason) {
  result.ok = ok;
  if (reason)
    result.reason = reason;
  console.log(JSON.stringify(result));
  return ok ? 0 : 1;
}

const watchdog = setTimeout(() => {
  process.exitCode = finish(false, 'watchdog: the test itself took too long');
  process.exit();
}, (seconds + 60) * 1000);
watchdog.unref();

async function run(page) {
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message ? e.message : e)));
  page.on('websocket', (ws) => {
    result.opened++;
    ws.on('socketerror', (e) => result.frame_errors.push(String(e)));
    ws.on('close', () => result.closed++);
  });
  const u = new URL('speak.html', audience.endsWith('/') ? audience : audience + '/');
  u.searchParams.set('stage', stage);
  u.searchParams.set('space', space);
  u.searchParams.set('key', key);
  u.searchParams.set('name', 'browser');
  await page.goto(u.href, {waitUntil: 'load', timeout: 10000});
  await page.locator('#join-btn').click({timeout: 5000});
  const stats = () => page.evaluate(() => JSON.parse(JSON.stringify(window.rostrumStats || {})));
  let s = {};
  for (const t0 = Date.now(); Date.now() - t0 < 15000; await sleep(100)) {
    s = await stats();
    if (s.role === 'host' && s.connected)
      break;
  }
  if (s.role !== 'host')
    return [false, `not the host within 15 s (role ${s.role})`];
  console.log('joined');
  const texts = (sel) => page.locator(sel).allTextContents();
  for (const t0 = Date.now(); Date.now() - t0 < seconds * 1000; await sleep(200)) {
    result.requests = await texts('#stage-view li.request .mname');
    if (result.requests.length || result.closed)
      break;
  }
  await sleep(2000); /* more state updates: the bad name is in every one */
  s = await stats();
  result.requests = await texts('#stage-view li.request .mname');
  result.members = await texts('#stage-view li.member .mname');
  result.connected = s.connected;
  result.state_updates = s.state_updates;
  if (pageErrors.length)
    return [false, `uncaught page error: ${pageErrors[0]}`];
  if (result.closed || result.opened !== 1 || !s.connected)
    return [false, `the page's WebSocket dropped (opened ${result.opened}, closed ${result.closed})`];
  if (!result.requests.length)
    return [false, 'the request to speak never showed'];
  if (!result.members.some((m) => m.startsWith('browser')))
    return [false, 'the stage view does not show the host'];
  return [true, null];
}

async function main() {
  try {
    return await withChromium({args: [...AUTOPLAY, ...FAKE_MIC]}, async (context) => {
      const page = context.pages()[0] || await context.newPage();
      let ok = false, reason = null;
      try {
        [ok, reason] = await run(page);
      } catch (e) {
        reason = firstLine(e);
      }
      return finish(ok, reason);
    });
  } catch (e) {
    return finish(false, 'browser: ' + firstLine(e));
  }
}

process.exitCode = await main();
