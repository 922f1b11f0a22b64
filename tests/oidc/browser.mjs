// Drives a real headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser)
// through one login: open the app URL, fill the provider's login form, land on the app.
// Usage: node browser.mjs APP_URL USER SCREENSHOT_PATH  → prints {"url", "body"} as JSON.
import { launch } from './chromium.mjs';

const [appUrl, user, shot] = process.argv.slice(2);
const context = await launch();
try {
  const page = await context.newPage();
  await page.goto(appUrl);
  await page.fill('input[name=login]', user);
  await page.fill('input[name=password]', 'any');
  await Promise.all([
    page.waitForURL((u) => u.toString() === appUrl, { timeout: 20000 }),
    page.click('button[type=submit]'),
  ]);
  const body = await page.textContent('body');
  await page.screenshot({ path: shot });
  const cookies = await context.cookies(appUrl);
  console.log(JSON.stringify({ url: page.url(), body, cookies: cookies.map((c) => ({ name: c.name, secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite })) }));
} finally {
  await context.close();
}
