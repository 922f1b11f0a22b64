// Drives a real headless Chromium through one SAML sign-in: open the app URL, the gateway sends
// it to the pysaml2 IdP (HTTP-Redirect), whose page auto-posts the signed response back across
// sites to the gateway's ACS; land on the app.
// Usage: node saml_browser.mjs APP_URL SCREENSHOT_PATH  → prints {"url", "body", "cookies"}.
import { launch } from './chromium.mjs';

const [appUrl, shot] = process.argv.slice(2);
const context = await launch();
try {
  const page = await context.newPage();
  await page.goto(appUrl);
  await page.waitForURL((u) => u.toString() === appUrl, { timeout: 20000 });
  const body = await page.textContent('body');
  await page.screenshot({ path: shot });
  const cookies = await context.cookies(appUrl);
  console.log(JSON.stringify({ url: page.url(), body, cookies: cookies.map((c) => ({ name: c.name, secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite })) }));
} finally {
  await context.close();
}
