// Drives Debian's headless Chromium through a local-account sign-in and a first MFA enrolment:
// open the app URL, fill the gateway's username/password form, read the authenticator key on
// the enrolment page, type the TOTP code it yields (RFC 6238, computed here), keep the
// recovery codes, continue to the app.
// Usage: node local_mfa.mjs APP_URL USER PASSWORD SCREENSHOT_PATH
//   → prints {"url", "body", "recovery_codes", "cookies"} as JSON.
import { createHmac } from 'node:crypto';
import { launch } from './chromium.mjs';

const [appUrl, user, password, shot] = process.argv.slice(2);

function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${c}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret, unix) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unix / 30)));
  const mac = createHmac('sha1', secret).update(counter).digest();
  const o = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(o) & 0x7fffffff) % 1000000;
  return n.toString().padStart(6, '0');
}

const context = await launch();
try {
  const page = await context.newPage();
  await page.goto(appUrl);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([
    page.waitForSelector('#totp-secret', { timeout: 20000 }),
    page.click('button[type=submit]'),
  ]);
  const secret = base32((await page.textContent('#totp-secret')).trim());
  // A code with at least 5 s left in its step, so it is still current when it arrives.
  let now = Date.now() / 1000;
  if (30 - (now % 30) < 5) {
    await new Promise((r) => setTimeout(r, (30 - (now % 30) + 0.5) * 1000));
    now = Date.now() / 1000;
  }
  await page.fill('input[name=code]', totp(secret, now));
  await Promise.all([
    page.waitForSelector('#recovery-codes', { timeout: 20000 }),
    page.click('button[type=submit]'),
  ]);
  const recovery = await page.$$eval('#recovery-codes li', (items) => items.map((i) => i.textContent));
  await Promise.all([
    page.waitForURL((u) => u.toString() === appUrl, { timeout: 20000 }),
    page.click('text=Continue'),
  ]);
  const body = await page.textContent('body');
  await page.screenshot({ path: shot });
  const cookies = await context.cookies(appUrl);
  console.log(JSON.stringify({
    url: page.url(),
    body,
    recovery_codes: recovery,
    cookies: cookies.map((c) => ({ name: c.name, secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite })),
  }));
} finally {
  await context.close();
}
