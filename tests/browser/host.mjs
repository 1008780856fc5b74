#!/usr/bin/env node
/*
 * host.mjs: the host console and the speaker page, driven end to end in one real browser.
 *
 *   node tests/browser/host.mjs AUDIENCE_URL STAGE_HOSTPORT HOST_KEY [SPACE]
 *
 * Debian's Chromium (headless, fake microphone) plays four people:
 *   1. the host opens AUDIENCE_URL/host.html?stage=..., creates SPACE (default "console-N")
 *      with the host key and is on stage as host, sending audio;
 *   2. a speaker opens the console's speaker invite link and joins: on stage, sending;
 *   3. an audience member opens the audience link (no token), joins as a listener and
 *      presses "Request to speak"; the host sees the request and brings them on stage;
 *   4. the host mutes the speaker (the speaker page shows it), demotes them (back in the
 *      audience), removes the promoted member (their page says so), and ends the space
 *      (every page shows it ended; GET /api/spaces/SPACE answers 404).
 * Prints one line of JSON ({"ok":true,"steps":[...]} or {"ok":false,"reason":...}); exits 0/1.
 * SCREENSHOTS=DIR saves a screenshot at each step.
 */
import {join} from 'node:path';

import {AUTOPLAY, FAKE_MIC, firstLine, withChromium} from './chromium.mjs';

const STEP_MS = 15000;

const [audience, stage, hostKey, spaceArg] = process.argv.slice(2);
if (!audience || !stage || !hostKey) {
  console.error('usage: node host.mjs AUDIENCE_URL STAGE_HOSTPORT HOST_KEY [SPACE]');
  process.exit(2);
}
const space = spaceArg || 'console-' + (Date.now() % 100000);
const base = audience.endsWith('/') ? audience : audience + '/';
const result = {ok: false, space, steps: []};
const t0 = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const shots = process.env.SCREENSHOTS;

const watchdog = setTimeout(() => {
  result.reason = 'watchdog: the test itself took too long';
  console.log(JSON.stringify(result));
  process.exit(1);
}, 150000);
watchdog.unref();

async function waitFor(what, fn, ms = STEP_MS) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last)
      return last;
    await sleep(100);
  }
  throw new Error('timed out: ' + what);
}

const stats = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.rostrumStats || {})));

async function shot(page, name) {
  if (shots)
    await page.screenshot({path: join(shots, name + '.png'), fullPage: true}).catch(() => {});
}

function step(name, extra) {
  result.steps.push(Object.assign({step: name, ms: Date.now() - t0}, extra || {}));
}

/* the member list entry of <name> on <page>, as {role, muted, talking, buttons} */
function memberOn(page, name) {
  return page.evaluate((n) => {
    for (const li of document.querySelectorAll('.members li.member')) {
      const nm = li.querySelector('.mname').textContent.replace(/ \(you\)$/, '');
      if (nm === n)
        return {role: li.querySelector('.mrole').textContent, muted: li.classList.contains('muted'),
                buttons: [...li.querySelectorAll('.actions button')].map((b) => b.textContent)};
    }
    return null;
  }, name);
}

async function clickMemberButton(page, name, label) {
  const li = page.locator('.members li.member').filter({hasText: name});
  await li.locator('.actions button', {hasText: label}).first().click({timeout: 5000});
}

async function run(context) {
  const errors = [];
  result.page_errors = errors;
  const open = async (url) => {
    const p = await context.newPage();
    p.on('pageerror', (e) => errors.push(String(e && e.message ? e.message : e)));
    p.on('dialog', (d) => d.accept()); /* confirm() for remove and end */
    await p.goto(url, {waitUntil: 'load', timeout: 10000});
    return p;
  };

  /* 1. the host creates the space and is on stage */
  const host = await open(base + 'host.html?stage=' + encodeURIComponent(stage));
  await shot(host, '1-host-form');
  await host.fill('#key', hostKey);
  await host.fill('#space', space);
  await host.fill('#title', 'Console test');
  await host.fill('#name', 'Ana');
  await host.click('#create-btn');
  await waitFor('host on stage and sending', async () => {
    const s = await stats(host);
    return s.role === 'host' && s.sent > 0;
  });
  const links = await host.evaluate(() => ({
    host: document.getElementById('host-link').value,
    speaker: document.getElementById('speaker-link').value,
    listen: document.getElementById('listen-link').value,
    audience: document.getElementById('audience-link').value,
  }));
  if (!links.speaker.includes('token='))
    throw new Error('no speaker invite link: ' + JSON.stringify(links));
  step('host on stage', {encoder: (await stats(host)).encoder});

  /* 2. a speaker joins by the invite link */
  const spk = await open(links.speaker + '&name=Ben');
  await spk.click('#join-btn');
  await waitFor('speaker on stage and sending', async () => {
    const s = await stats(spk);
    return s.role === 'speaker' && s.sent > 0 && s.received > 0;
  });
  await waitFor('the host sees the speaker', () => memberOn(host, 'Ben'));
  step('speaker on stage');

  /* 3. an audience member asks to speak; the host brings them up */
  const aud = await open(links.audience + '&name=Cy');
  await aud.click('#join-btn');
  await waitFor('listener joined', async () => (await stats(aud)).role === 'listener');
  await shot(aud, '2-listener');
  await aud.getByRole('button', {name: 'Request to speak'}).click();
  await waitFor('the host sees the request', () => host.evaluate(() =>
    [...document.querySelectorAll('.requests li.request')].some((li) =>
      li.textContent.includes('Cy'))));
  await shot(host, '3-host-request');
  await host.locator('.requests li.request', {hasText: 'Cy'})
            .getByRole('button', {name: /as a speaker/}).click();
  await waitFor('the listener is on stage and sending', async () => {
    const s = await stats(aud);
    return s.role === 'speaker' && s.sent > 0;
  });
  step('request promoted');

  /* 4. mute, demote, remove */
  await clickMemberButton(host, 'Ben', 'Mute');
  await waitFor('the speaker page shows muted', () => spk.evaluate(() =>
    window.rostrumStats.muted === true &&
    document.querySelector('.mic-label').textContent.startsWith('Muted')));
  const sentAtMute = (await stats(spk)).sent;
  await sleep(600);
  const sentLater = (await stats(spk)).sent;
  if (sentLater > sentAtMute + 2)
    throw new Error(`a muted page kept sending (${sentAtMute} -> ${sentLater})`);
  await shot(host, '4-host-muted');
  step('muted');

  await clickMemberButton(host, 'Ben', 'Demote');
  await waitFor('the speaker is back in the audience', async () =>
    (await stats(spk)).role === 'listener');
  await shot(spk, '5-speaker-demoted');
  step('demoted');

  await clickMemberButton(host, 'Cy', 'Remove');
  await waitFor('the removed page says so', () => aud.evaluate(() =>
    /removed/.test(document.getElementById('join-error').textContent)))
    .catch(async (e) => {
      throw new Error(e.message + ' (page: ' + JSON.stringify(await aud.evaluate(() =>
        [document.getElementById('join-error').textContent, window.rostrumStats])) + ')');
    });
  await shot(aud, '6-removed');
  step('removed');

  /* 5. the host ends the space */
  await host.getByRole('button', {name: 'End space'}).click();
  await waitFor('the speaker page shows the end', () => spk.evaluate(() =>
    !document.getElementById('ended').hidden));
  await waitFor('the host console shows the end', () => host.evaluate(() =>
    /has ended/.test(document.getElementById('create-error').textContent)));
  await shot(host, '7-host-ended');
  await shot(spk, '8-speaker-ended');
  const status = await host.evaluate(async ([s, name]) => {
    /* the stage port the page itself uses: https beside an https page */
    const r = await fetch(location.protocol + '//' + s + '/api/spaces/' + name,
                          {cache: 'no-store'});
    return r.status;
  }, [stage, space]);
  if (status !== 404)
    throw new Error('the space still answers ' + status + ' after end');
  step('ended');
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
