// Drives a real headless Chromium (Debian's /usr/bin/chromium) through the MFA pages with
// Chromium's DevTools virtual authenticators (CTAP2, user verification on):
//   1. alice signs in, is sent to the MFA page, enrols a passkey, sees recovery codes, lands on the app;
//   2. right after, adds a second credential (a USB security key) with its own label;
//   3. in a new session, steps up with the key;
//   4. in another new session, posts forged assertions (tampered clientDataJSON, a stale
//      challenge, a corrupted signature) and checks that no step-up was recorded;
//   5. presents a cloned key (same private key, counter reset) and is refused;
//   6. bob enrols TOTP on a TOTP-only route (secret read from the page, code computed here).
// Usage: node webauthn.mjs BASE_URL  → prints the facts as JSON (the Rust test asserts on them).
import { createHmac, randomBytes } from 'node:crypto';
import { launch } from './chromium.mjs';

const [base] = process.argv.slice(2);
const facts = { csp_errors: [] };
// Chromium may refuse WebAuthn on pages with certificate errors; this flag lifts that check.
const context = await launch(['--ignore-certificate-errors']);

function totp(secretB32, unix) {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0; let buf = 0; const out = [];
  for (const c of secretB32) {
    buf = (buf << 5) | A.indexOf(c); bits += 5;
    if (bits >= 8) { bits -= 8; out.push((buf >> bits) & 0xff); }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unix / 30)));
  const mac = createHmac('sha1', Buffer.from(out)).update(counter).digest();
  const o = mac[19] & 0x0f;
  const bin = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3];
  return String(bin % 1000000).padStart(6, '0');
}

try {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) facts.csp_errors.push(m.text());
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const authenticator = async (transport, resident) => (await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport, hasResidentKey: resident, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  })).authenticatorId;

  // Opens `url`; signs in as `user` at the provider when its form shows; waits to be back on
  // the gateway (the app, or the MFA page).
  async function visit(url, user) {
    await page.goto(url);
    if (await page.locator('input[name=login]').count()) {
      await page.fill('input[name=login]', user);
      await page.fill('input[name=password]', 'any');
      await Promise.all([
        page.waitForURL((u) => u.toString().startsWith(base), { timeout: 20000 }),
        page.click('button[type=submit]'),
      ]);
    }
    await page.waitForLoadState();
  }
  const body = async () => page.textContent('body');
  const sessionCookie = async () => (await context.cookies(base)).find((c) => c.name === '__Host-portcullis') || null;

  // 1. First visit to a WebAuthn route: sign in, enrol a passkey on the real page.
  const passkey = await authenticator('internal', true);
  const admin = `${base}/admin/page?x=1`;
  await visit(admin, 'alice');
  facts.enrol_page = page.url();
  facts.enrol_page_scripts = await page.evaluate(() => [...document.scripts].map((s) => s.getAttribute('src')));
  await page.fill('#webauthn-label', 'Laptop passkey');
  await page.click('#webauthn-register-button');
  await page.waitForSelector('#recovery-codes', { timeout: 15000 });
  const codes = await page.locator('#recovery-codes li').count();
  await Promise.all([page.waitForURL(admin, { timeout: 15000 }), page.click('#continue')]);
  facts.enrol = { url: page.url(), body: await body(), recovery_codes: codes, cookie: await sessionCookie() };

  // 2. A second credential (a USB key) right after: the page offers it to a freshly verified
  // session. The passkey authenticator is removed first (it would answer for excluded ids).
  facts.passkey_credentials = (await cdp.send('WebAuthn.getCredentials', { authenticatorId: passkey })).credentials.length;
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: passkey });
  const usb = await authenticator('usb', false);
  const second = `${base}/admin/second`;
  await visit(`${base}/.portcullis/mfa?return=${encodeURIComponent('/admin/second')}&methods=webauthn`, 'alice');
  await page.fill('#webauthn-label', 'Backup key');
  await Promise.all([page.waitForURL(second, { timeout: 15000 }), page.click('#webauthn-register-button')]);
  facts.second = { url: page.url(), body: await body() };

  // 3. Later, in a new session: step up with the key.
  await context.clearCookies();
  const later = `${base}/admin/later`;
  await visit(later, 'alice');
  facts.later_page = page.url();
  facts.later_offers_register = await page.locator('#webauthn-register').count();
  facts.later_keys = await page.locator('#webauthn-keys li').allTextContents();
  await Promise.all([page.waitForURL(later, { timeout: 15000 }), page.click('#webauthn-authenticate-button')]);
  facts.later = { url: page.url(), body: await body(), cookie: await sessionCookie() };

  // 3b. Freshly verified, the page lists both keys with "Remove": remove the passkey; the
  // last remaining key cannot be removed.
  await page.goto(`${base}/.portcullis/mfa`);
  facts.manage_before = await page.locator('#factors li').count();
  const ids = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#factors li')]
    .map((li) => [li.firstChild.textContent.trim().split(' (')[0], li.querySelector('input[name=factor]').value])));
  await Promise.all([page.waitForLoadState(), page.locator('#factors li', { hasText: 'Laptop passkey' }).locator('button').click()]);
  facts.manage_after_keys = await page.locator('#webauthn-keys li').allTextContents();
  facts.manage_after_list = await page.locator('#factors').count();
  facts.remove_last = await page.evaluate(async (id) => {
    const csrf = document.querySelector('#webauthn-authenticate').elements.csrf.value;
    const r = await fetch('/.portcullis/mfa/factors/remove', {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, factor: id }),
    });
    return r.status;
  }, ids['Backup key']);
  facts.removed_passkey_id = ids['Laptop passkey'];

  // 4. Forged assertions in a new session, from the page's own origin (CSRF token and cookies
  // are genuine: only the WebAuthn data is wrong).
  await context.clearCookies();
  const forged = `${base}/admin/forged`;
  await visit(forged, 'alice');
  facts.forged_page = page.url();
  facts.forged = await page.evaluate(async ({ other, removable }) => {
    const W = window.portcullisWebauthn;
    const form = document.querySelector('#webauthn-authenticate');
    const csrf = form.elements.csrf.value;
    const ret = form.elements.return.value;
    const b64 = (s) => s.replace(/-/g, '+').replace(/_/g, '/');
    const unb64 = (s) => s.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    const assertion = async () => {
      const options = await W.post('/.portcullis/mfa/webauthn/authenticate/begin', { csrf });
      return W.encodeAssertion(await navigator.credentials.get({ publicKey: W.requestOptions(options) }));
    };
    const finish = async (credential) => {
      const r = await fetch('/.portcullis/mfa/webauthn/authenticate/finish', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ csrf, return: ret, credential }),
      });
      return { status: r.status, body: await r.json().catch(() => null) };
    };
    const out = {};
    // a) clientDataJSON rewritten to carry another challenge.
    let c = await assertion();
    const cd = JSON.parse(atob(b64(c.response.clientDataJSON)));
    cd.challenge = other;
    c.response.clientDataJSON = unb64(btoa(JSON.stringify(cd)));
    out.tampered_client_data = await finish(c);
    // b) a genuine assertion for a challenge the server no longer holds (a newer begin replaced it).
    c = await assertion();
    await W.post('/.portcullis/mfa/webauthn/authenticate/begin', { csrf });
    out.stale_challenge = await finish(c);
    // c) a corrupted signature.
    c = await assertion();
    const sig = atob(b64(c.response.signature)).split('');
    sig[sig.length - 1] = String.fromCharCode(sig[sig.length - 1].charCodeAt(0) ^ 1);
    c.response.signature = unb64(btoa(sig.join('')));
    out.bad_signature = await finish(c);
    // d) without the CSRF token.
    c = await assertion();
    const r = await fetch('/.portcullis/mfa/webauthn/authenticate/finish', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ csrf: 'x', return: ret, credential: c }),
    });
    out.no_csrf = { status: r.status };
    // e) adding a key in a session that has not passed a second factor.
    const reg = await fetch('/.portcullis/mfa/webauthn/register/begin', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ csrf, label: 'attacker key' }),
    });
    out.register_unverified = { status: reg.status };
    // f) removing a key in a session that has not passed a second factor.
    const rm = await fetch('/.portcullis/mfa/factors/remove', {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, factor: removable }),
    });
    out.remove_unverified = { status: rm.status };
    return out;
  }, { other: randomBytes(32).toString('base64url'), removable: ids['Backup key'] });
  await visit(forged, 'alice');
  facts.forged_after = page.url();

  // 5. A cloned key: same private key, signature counter reset to 0.
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId: usb });
  facts.usb_sign_count = credentials[0].signCount;
  await cdp.send('WebAuthn.removeCredential', { authenticatorId: usb, credentialId: credentials[0].credentialId });
  await cdp.send('WebAuthn.addCredential', { authenticatorId: usb, credential: { ...credentials[0], signCount: 0 } });
  await page.click('#webauthn-authenticate-button');
  await page.waitForSelector('#webauthn-authenticate-error:not([hidden])', { timeout: 15000 });
  facts.clone = { error: await page.textContent('#webauthn-authenticate-error'), url: page.url() };
  await visit(forged, 'alice');
  facts.clone_after = page.url();

  // 6. TOTP through the real pages: bob on a TOTP-only route.
  await context.clearCookies();
  const totpApp = `${base}/totp/x`;
  await visit(totpApp, 'bob');
  facts.totp_page = page.url();
  facts.totp_page_scripts = await page.evaluate(() => document.scripts.length);
  const secret = (await page.textContent('#totp-secret')).trim();
  // Not in the last seconds of a step (the code must still be valid when it arrives).
  while (30 - (Math.floor(Date.now() / 1000) % 30) < 4) await new Promise((r) => setTimeout(r, 250));
  await page.fill('#code', totp(secret, Date.now() / 1000));
  await Promise.all([page.waitForLoadState(), page.click('form[action="/.portcullis/mfa/enrol"] button')]);
  await page.waitForSelector('#recovery-codes');
  await Promise.all([page.waitForURL(totpApp, { timeout: 15000 }), page.click('text=Continue')]);
  facts.totp = { url: page.url(), body: await body(), cookie: await sessionCookie() };
  console.log(JSON.stringify(facts));
} catch (e) {
  console.log(JSON.stringify({ ...facts, error: String(e && e.stack || e) }));
  process.exitCode = 1;
} finally {
  await context.close();
}
