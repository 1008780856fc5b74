#!/usr/bin/env node
/*
 * hands.mjs: reactions and a raised hand from the listener page, seen and answered in the
 * host console (issue 12, item 3), in one real browser.
 *
 *   node tests/browser/hands.mjs AUDIENCE_URL STAGE_HOSTPORT HOST_KEY [SPACE]
 *
 *   1. the host opens host.html, creates SPACE with the key and is on stage;
 *   2. a listener opens the listener page (index.html), finds the space's card, sends a
 *      reaction and raises a hand;
 *   3. the host console lists the hand and the reaction totals; the host presses Invite;
 *   4. the listener page gets its stage token, shows "Join the stage" and lowers the hand (it
 *      leaves the host's list); that link seats the
 *      listener on stage as a speaker (speak.html).
 * Prints one line of JSON ({"ok":true,"steps":[...]} or {"ok":false,"reason":...}); exits 0/1.
 */
import {AUTOPLAY, FAKE_MIC, firstLine, withChromium} from './chromium.mjs';

const STEP_MS = 15000;
const [audience, stage, hostKey, spaceArg] = process.argv.slice(2);
if (!audience || !stage || !hostKey) {
  console.error('usage: node hands.mjs AUDIENCE_URL STAGE_HOSTPORT HOST_KEY [SPACE]');
  process.exit(2);
}
const space = spaceArg || 'hands-' + (Date.now() % 100000);
const base = audience.endsWith('/') ? audience : audience + '/';
const result = {ok: false, space, steps: []};
const t0 = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const watchdog = setTimeout(() => {
  result.reason = 'watchdog: the test itself took too long';
  console.log(JSON.stringify(result));
  process.exit(1);
}, 110000);
watchdog.unref();

async function waitFor(what, fn, ms = STEP_MS) {
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

async function run(context) {
  const errors = [];
  result.page_errors = errors;
  const open = async (url) => {
    const p = await context.newPage();
    p.on('pageerror', (e) => errors.push(String(e && e.message ? e.message : e)));
    await p.goto(url, {waitUntil: 'load', timeout: 10000});
    return p;
  };
  const host = await open(base + 'host.html?stage=' + encodeURIComponent(stage));
  await host.fill('#key', hostKey);
  await host.fill('#space', space);
  await host.fill('#title', 'Hands test');
  await host.fill('#name', 'Ana');
  await host.click('#create-btn');
  await waitFor('host on stage', () => host.evaluate(() =>
    window.rostrumStats && window.rostrumStats.role === 'host'));
  step('host on stage');

  const lis = await open(base + '?stage=' + encodeURIComponent(stage));
  const card = lis.locator(`li.card[data-mount="/${space}"]`);
  await waitFor('the stage card with its hand button', async () =>
    (await card.locator('button.hand').count()) > 0);
  await card.locator('button.react[data-reaction="clap"]').click();
  await card.locator('button.react[data-reaction="heart"]').click();
  await card.locator('input.hand-name-input').fill('Dee Ö');
  await card.locator('button.hand').click();
  await waitFor('the listener page says the hand is up', async () =>
    /Hand raised/.test(await card.locator('.hand-status').textContent()));
  step('hand raised on the listener page');

  await waitFor('the host console lists the hand, with its name', async () =>
    (await host.locator('.hands-list li.hand-item[data-hand]').count()) === 1 &&
    (await host.locator('.hands-list .hand-name').first().textContent()) === 'Dee Ö');
  const totals = await waitFor('the host sees the reactions', async () => {
    const t = await host.locator('.reaction-totals').textContent();
    return /\u{1F44F} 1/u.test(t) && /\u2764\uFE0F 1/u.test(t) ? t : null;
  });
  step('the host sees the hand and the reactions', {totals});
  await host.locator('.hands-list li.hand-item').getByRole('button', {name: 'Invite'}).click();
  const href = await waitFor('the listener page offers the stage', async () => {
    const a = card.locator('a.hand-join');
    return (await a.isVisible()) ? a.getAttribute('href') : null;
  });
  if (!href.includes('token='))
    throw new Error('the join link has no token: ' + href);
  await waitFor('the invited hand leaves the host\'s list', async () =>
    (await host.locator('.hands-list li.hand-item[data-hand]').count()) === 0);
  step('invited');

  const spk = await open(href + '&name=Dee');
  await spk.click('#join-btn');
  await waitFor('the invited listener is on stage', () => spk.evaluate(() =>
    window.rostrumStats && window.rostrumStats.role === 'speaker'));
  step('on stage from the hand');
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
