/*
 * chromium.mjs: what every browser test shares: Debian's Chromium, headless, in a fresh
 * profile that is deleted afterwards, with the flags this machine needs (no background
 * networking: the network is closed here, see the README's Tests section).
 *
 * Environment, for every test script:
 *   TLS_SPKI=BASE64     trust a server whose certificate carries this key: the base64 SHA-256
 *                       of its SubjectPublicKeyInfo (--ignore-certificate-errors-spki-list, a
 *                       pin on one key, not a blanket ignore; honoured with a profile dir,
 *                       which we always have). For https:// and wss:// to a test server.
 *   FAKE_AUDIO=FILE.wav the fake microphone plays this file (looped) instead of its beep.
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
  const env = [];
  if (process.env.TLS_SPKI)
    env.push(`--ignore-certificate-errors-spki-list=${process.env.TLS_SPKI}`);
  if (process.env.FAKE_AUDIO)
    env.push(`--use-file-for-fake-audio-capture=${process.env.FAKE_AUDIO}`);
  const profile = mkdtempSync(join(tmpdir(), 'rostrum-chromium-'));
  let context = null;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...BASE_ARGS, ...args, ...env],
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
