#!/usr/bin/env node
/*
 * dashboard.mjs: headless Chromium opens rostrum's live dashboard (issue 9) and says whether
 * its charts show data.
 *
 *   node tests/browser/dashboard.mjs DASHBOARD_URL SCREENSHOT.png [MIN_POINTS]
 *
 * Debian's Chromium (headless, fresh profile) loads DASHBOARD_URL (with ?key= if the server
 * has an admin key), waits until the page has drawn twice and every chart has drawn at least
 * MIN_POINTS points (default 3; each chart reports them in data-points), takes a full-page
 * screenshot, then prints one line of JSON:
 *   {"ok":..., "updates":N, "samples":N, "charts":{"listeners":{"points":N,"series":N,
 *    "legend":"..."}, ...}, "status":"...", "screenshot":"..."}
 * and exits 0 if the charts were drawn with data and the page raised no error, else 1.
 */
import {AUTOPLAY, FAKE_MIC, firstLine, withChromium} from './chromium.mjs';

const [url, shot, minArg] = process.argv.slice(2);
const minPoints = minArg === undefined ? 3 : Number(minArg);
if (!url || !shot || !(minPoints > 0)) {
  console.error('usage: node dashboard.mjs DASHBOARD_URL SCREENSHOT.png [MIN_POINTS]');
  process.exit(2);
}
const result = {ok: false, updates: 0, samples: 0, charts: {}};

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
}, 90000);
watchdog.unref();

async function read(page) {
  return page.evaluate(() => {
    const root = document.getElementById('charts');
    const charts = {};
    for (const s of document.querySelectorAll('section.chart'))
      charts[s.id.replace(/^chart-/, '')] = {
        points: Number(s.dataset.points || 0),
        series: Number(s.dataset.series || 0),
        paths: s.querySelectorAll('svg path').length,
        legend: s.querySelector('.legend').textContent,
      };
    return {updates: Number(root.dataset.updates || 0), samples: Number(root.dataset.samples || 0),
            charts, status: document.getElementById('status').textContent};
  });
}

async function run(page) {
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message ? e.message : e)));
  const resp = await page.goto(url, {waitUntil: 'load', timeout: 10000});
  if (!resp || resp.status() !== 200)
    return [false, `GET ${url} -> ${resp ? resp.status() : 'no response'}`];
  const ready = (r) => r.updates >= 2 && Object.keys(r.charts).length > 0 &&
                       Object.values(r.charts).every((c) => c.points >= minPoints && c.paths > 0);
  const deadline = Date.now() + 30000;
  let r = await read(page);
  while (!ready(r) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 250));
    r = await read(page);
  }
  Object.assign(result, r);
  if (pageErrors.length)
    return [false, `uncaught page error: ${pageErrors[0]}`];
  if (!ready(r))
    return [false, 'the charts did not fill in 30 s'];
  return [true, null];
}

async function main() {
  try {
    return await withChromium({args: [], viewport: {width: 1300, height: 900}}, async (context) => {
      const page = context.pages()[0] || await context.newPage();
      let ok = false, reason = null;
      try {
        [ok, reason] = await run(page);
      } catch (e) {
        reason = firstLine(e);
      }
      try {
        await page.screenshot({path: shot, fullPage: true});
        result.screenshot = shot;
      } catch (e) {
        result.screenshot_error = firstLine(e);
        ok = false;
        reason = reason || 'no screenshot';
      }
      return finish(ok, reason);
    });
  } catch (e) {
    return finish(false, 'browser: ' + firstLine(e));
  }
}

process.exitCode = await main();
