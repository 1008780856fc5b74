#!/usr/bin/env node
/*
 * golive.mjs: a scheduled space from the host console, in a real browser (issue 12).
 *
 *   node tests/browser/golive.mjs AUDIENCE_URL STAGE_HOSTPORT HOST_KEY SPACE
 *
 * The host opens host.html, fills in a start an hour ahead and a description, creates the
 * space and is on stage in its lobby: the console shows the lobby with a countdown and the Go
 * live button. The listener page lists the space with "starts in". The host presses Go live:
 * the lobby panel goes, and the state document says live. Prints one line of JSON
 * ({"ok":true,"steps":[...]} or {"ok":false,"reason":...}); exits 0/1.
 */
import {AUTOPLAY, FAKE_MIC, firstLine, withChromium} from './chromium.mjs';

const [audience, stage, hostKey, space] = process.argv.slice(2);
if (!audience || !stage || !hostKey || !space) {
  console.error('usage: node golive.mjs AUDIENCE_URL STAGE_HOSTPORT HOST_KEY SPACE');
  process.exit(2);
}
const base = audience.endsWith('/') ? audience : audience + '/';
const result = {ok: false, space, steps: []};
const t0 = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const watchdog = setTimeout(() => {
  result.reason = 'watchdog: the test itself took too long';
  console.log(JSON.stringify(result));
  process.exit(1);
}, 90000);
watchdog.unref();

async function waitFor(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v)
      return v;
    await sleep(100);
  }
  throw new Error('timed out: ' + what);
}

function step(name, extra) {
  result.steps.push(Object.assign({step: name, ms: Date.now() - t0}, extra || {}));
}

/* datetime-local wants local time, YYYY-MM-DDTHH:MM */
function localIn(ms) {
  const d = new Date(Date.now() + ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:` +
         p(d.getMinutes());
}

async function stateDoc(page) {
  return page.evaluate(async (s) => {
    const r = await fetch('/state/' + s + '.json', {cache: 'no-store'});
    return r.ok ? r.json() : null;
  }, space);
}

async function run(context) {
  const errors = [];
  result.page_errors = errors;
  const host = await context.newPage();
  host.on('pageerror', (e) => errors.push(String(e && e.message ? e.message : e)));
  await host.goto(base + 'host.html?stage=' + encodeURIComponent(stage), {waitUntil: 'load'});
  await host.fill('#key', hostKey);
  await host.fill('#space', space);
  await host.fill('#title', 'Evening talk');
  await host.fill('#starts', localIn(3600 * 1000));
  await host.fill('#description', 'Ask me anything');
  await host.fill('#name', 'Ana');
  await host.click('#create-btn');
  const countdown = await waitFor('the lobby with a countdown', () => host.evaluate(() => {
    const l = document.getElementById('lobby');
    const c = document.getElementById('countdown').textContent;
    return !l.hidden && /Starts in \d+ s/.test(c) ? c : null;
  }));
  const st = await stateDoc(host);
  if (!st || st.live !== false || st.description !== 'Ask me anything')
    throw new Error('state document before Go live: ' + JSON.stringify(st));
  step('lobby', {countdown, starts_in_s: st.starts_in_s});
  /* the listener page lists it with its countdown */
  const lp = await context.newPage();
  lp.on('pageerror', (e) => errors.push(String(e && e.message ? e.message : e)));
  await lp.goto(base, {waitUntil: 'load'});
  const listed = await waitFor('the listener page says "starts in"', () => lp.evaluate(() =>
    [...document.querySelectorAll('.since')].map((e) => e.textContent)
      .find((t) => t.startsWith('starts in'))));
  step('listed', {listed});
  await host.click('#go-live');
  await waitFor('the lobby panel gone', () =>
    host.evaluate(() => document.getElementById('lobby').hidden));
  const st2 = await waitFor('live in the state document', async () => {
    const s = await stateDoc(host);
    return s && s.live === true ? s : null;
  });
  step('live', {lobby: st2.lobby});
  if (errors.length)
    throw new Error('uncaught page error: ' + errors[0]);
}

async function main() {
  try {
    await withChromium({args: [...AUTOPLAY, ...FAKE_MIC], viewport: {width: 1100, height: 800}},
                       run);
    result.ok = true;
  } catch (e) {
    result.reason = firstLine(e);
  }
  result.elapsed_ms = Date.now() - t0;
  console.log(JSON.stringify(result));
  return result.ok ? 0 : 1;
}

process.exitCode = await main();
