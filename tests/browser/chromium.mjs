/*
 * chromium.mjs: what every browser test shares: Debian's Chromium, headless, in a fresh
 * profile that is deleted afterwards, with the flags this machine needs (no background
 * networking: the network is closed here, see the README's Tests section).
 */
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

import {chromium} from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BASE_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                   '--disable-background-networking', '--disable-component-update',
                   '--disable-sync'];
/* audio plays without a click; a fake microphone (a beep) is granted without asking */
export const AUTOPLAY = ['--autoplay-policy=no-user-gesture-required'];
export const FAKE_MIC = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

/* The first line of an error's message, for a one-line JSON result. */
export function firstLine(e) {
  return String(e && e.message ? e.message.split('\n')[0] : e);
}

/* Runs <body(context)> in a new headless Chromium (extra flags <args>, <viewport> or the
 * default), and returns what it returns; the browser is closed and its profile deleted on
 * every path. */
export async function withChromium({args = [], viewport} = {}, body) {
  const profile = mkdtempSync(join(tmpdir(), 'rostrum-chromium-'));
  let context = null;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...BASE_ARGS, ...args],
      ...(viewport ? {viewport} : {}),
      timeout: 30000,
    });
    return await body(context);
  } finally {
    if (context)
      await context.close().catch(() => {});
    rmSync(profile, {recursive: true, force: true});
  }
}
