/*
 * firefox.mjs: Debian's Firefox ESR, headless, for the browser tests that run in it too
 * (issue 11: the listener page must start at once in Firefox as well as in Chromium).
 *
 * Playwright drives only its own patched Firefox, so this uses puppeteer-core over WebDriver
 * BiDi, which stock Firefox speaks. Firefox plays nothing without an audio server (the web
 * player's AudioContext never starts, the page stays "Connecting…"), so each run gets a
 * private PulseAudio with one null sink, in the run's temp dir, killed afterwards; the
 * machine's own sound setup is never touched.
 *
 * The object handed to body() has newPage() like Playwright's context; the pages are
 * puppeteer's, whose goto, waitForSelector, evaluate, click(selector) and on('console'),
 * on('pageerror') are what the scripts here use of either.
 */
import {spawn} from 'node:child_process';
import {existsSync, mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

import puppeteer from 'puppeteer-core';

export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';
const PREFS = {
  /* like Chromium's --autoplay-policy=no-user-gesture-required: sound without asking */
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* A PulseAudio server of our own in <dir>, with a null sink; resolves to {server, stop}. */
async function privatePulse(dir) {
  const socket = join(dir, 'native');
  const env = {...process.env, HOME: dir, XDG_RUNTIME_DIR: dir, XDG_CONFIG_HOME: dir};
  const p = spawn('pulseaudio', ['-n', '--daemonize=no', '--exit-idle-time=-1',
                                 '--use-pid-file=no', '--log-target=stderr', '--log-level=error',
                                 '-L', 'module-null-sink sink_name=rostrum_null',
                                 '-L', `module-native-protocol-unix auth-anonymous=1 socket=${socket}`],
                  {env, stdio: ['ignore', 'ignore', 'pipe']});
  let err = '', exited = null;
  p.stderr.on('data', (d) => { err += d; });
  p.on('exit', (code) => { exited = code; });
  p.on('error', (e) => { exited = e.code || 'error'; });
  const stop = () => { if (exited === null) p.kill('SIGKILL'); };
  for (let i = 0; i < 100 && !existsSync(socket); i++) {
    if (exited !== null)
      throw new Error(`pulseaudio exited (${exited}): ${err.trim().split('\n').pop()}`);
    await sleep(100);
  }
  if (!existsSync(socket)) {
    stop();
    throw new Error('pulseaudio did not open its socket in 10 s');
  }
  /* A null sink wakes on its own latency, up to 2 s: the first stream a browser opens waits
   * that long before it plays (an AudioContext took 1.99 s to run). A desktop's sink is
   * playing already; a silent low-latency stream kept open does the same here. */
  const keep = spawn('pacat', ['--playback', '--raw', '--latency-msec=10', '--rate=48000',
                               '--channels=2', '--format=s16le', '/dev/zero'],
                     {env: {...env, PULSE_SERVER: `unix:${socket}`}, stdio: 'ignore'});
  keep.on('error', () => {});
  return {server: `unix:${socket}`,
          stop: () => { keep.kill('SIGKILL'); stop(); }};
}

/* Runs <body(browser)> in a new headless Firefox ESR (fresh profile, private PulseAudio) and
 * returns what it returns; browser, sound server and profile are gone on every path. */
export async function withFirefox(body) {
  const dir = mkdtempSync(join(tmpdir(), 'rostrum-firefox-'));
  let pulse = null, browser = null;
  try {
    pulse = await privatePulse(dir);
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      headless: true,
      userDataDir: join(dir, 'profile'),
      extraPrefsFirefox: PREFS,
      env: {...process.env, PULSE_SERVER: pulse.server, HOME: dir},
      dumpio: !!process.env.FIREFOX_DUMPIO, /* Firefox's own stderr, to debug a run */
      timeout: 30000,
    });
    return await body({newPage: () => browser.newPage(), version: () => browser.version()});
  } finally {
    if (browser)
      await browser.close().catch(() => {});
    if (pulse)
      pulse.stop();
    rmSync(dir, {recursive: true, force: true});
  }
}
