// @ts-check
/** Shared steps for the browser tests: logging in, screenshots at phone and desktop sizes. */
import { expect } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SHOTS = join(dirname(fileURLToPath(import.meta.url)), 'screenshots');
mkdirSync(SHOTS, { recursive: true });

export const PHONE = { width: 360, height: 740 };
export const DESKTOP = { width: 1280, height: 800 };

/** The demo password printed by the server for `user` (run.sh exports them). @param {string} user */
export function password(user) {
  const pw = process.env[`TH_PW_${user.toUpperCase()}`];
  if (!pw) throw new Error(`no password for ${user} in the environment (TH_PW_${user.toUpperCase()})`);
  return pw;
}

/** A new context and page, signed in as `user`; dialogs (confirmations) are accepted.
 * @param {import('@playwright/test').Browser} browser @param {string} user @param {{width: number, height: number}} [viewport] */
export async function signIn(browser, user, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('dialog', (d) => void d.accept());
  page.on('pageerror', (e) => console.error(`[${user}] page error:`, e.message));
  await page.goto('/');
  await page.locator('#login input[name=username]').fill(user);
  await page.locator('#login input[name=password]').fill(password(user));
  await page.locator('#login button[type=submit]').click();
  await expect(page.locator('#nav')).toBeVisible();
  return { context, page };
}

/**
 * Screenshots the page at 360×740 (asserting no horizontal scrolling) and at 1280×800, then restores the
 * viewport. `ready` is waited for after each resize.
 * @param {import('@playwright/test').Page} page @param {string} name @param {import('@playwright/test').Locator} [ready]
 */
export async function shoot(page, name, ready) {
  const before = page.viewportSize() ?? DESKTOP;
  for (const [label, size] of /** @type {const} */ ([['phone', PHONE], ['desktop', DESKTOP]])) {
    await page.setViewportSize(size);
    if (ready) await expect(ready.first()).toBeVisible();
    // Layout settles on the next frame after a resize.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(null)))));
    if (label === 'phone') {
      const { scrollWidth, clientWidth, wide } = await page.evaluate(() => {
        const el = /** @type {Element} */ (document.scrollingElement);
        // What sticks out, to say which element to mend.
        const wide = [...document.querySelectorAll('body *')].filter((x) => x.getBoundingClientRect().right > el.clientWidth + 1)
          .slice(0, 5).map((x) => `${x.tagName.toLowerCase()}${x.id ? `#${x.id}` : ''}.${[...x.classList].join('.')} → ${Math.round(x.getBoundingClientRect().right)}`);
        return { scrollWidth: el.scrollWidth, clientWidth: el.clientWidth, wide };
      });
      expect(scrollWidth, `${name}: horizontal scrolling at 360 px (${wide.join('; ')})`).toBeLessThanOrEqual(clientWidth);
    }
    await page.screenshot({ path: join(SHOTS, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize(before);
}

/**
 * Records a patient's own consent through the API with the page's login, as a health worker does before a
 * first consultation (the text version is read from the server, as the page does).
 * @param {import('@playwright/test').APIRequestContext} request @param {string} patientId
 */
export async function recordConsent(request, patientId) {
  const text = await (await request.get('/api/consent-text')).json();
  const r = await request.post(`/api/patients/${patientId}/consents`, {
    data: { decision: 'granted', given_by: 'patient', text_version: text.version },
  });
  if (r.status() !== 201) throw new Error(`consent: ${r.status()} ${await r.text()}`);
}

/**
 * On the patient's page: the worker has read the text, ticks that the patient agreed, and records it; the
 * request form then opens. @param {import('@playwright/test').Page} page
 */
export async function consentInPage(page) {
  await page.locator('#consent-attest').check();
  await page.locator('#consent-form button[type=submit]').click();
  await page.locator('#request-form').waitFor({ state: 'visible' });
}
