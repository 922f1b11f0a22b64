// Launches Debian's headless Chromium (/usr/bin/chromium, never a downloaded browser) with a
// fresh profile, accepting the gateway's self-signed certificate. Shared by the browser scripts.
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function launch(extraArgs = []) {
  const profile = mkdtempSync(join(tmpdir(), 'pc-chromium-'));
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', ...extraArgs],
  });
}
