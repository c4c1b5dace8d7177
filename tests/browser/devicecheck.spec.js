// @ts-check
/** The device check with Chromium's fake camera and microphone: a live preview and a moving level meter. */
import { expect, test } from '@playwright/test';
import { shoot, signIn } from './helpers.js';

test('device check shows the camera and a moving microphone level', async ({ browser }) => {
  const { context, page } = await signIn(browser, 'yta2');
  await page.goto('/#/device-check');
  await expect(page.locator('#camera-verdict')).toHaveAttribute('data-verdict', 'ok');
  await expect.poll(() => page.locator('#preview').evaluate((v) => /** @type {HTMLVideoElement} */ (v).videoWidth)).toBeGreaterThan(0);
  // The fake microphone beeps: the level must move (several distinct values, some clearly above silence).
  /** @type {Set<string>} */
  const seen = new Set();
  await expect.poll(async () => {
    seen.add((await page.locator('#mic-meter').getAttribute('data-level')) ?? '0');
    return seen.size >= 3 && [...seen].some((v) => Number(v) > 10);
  }, { intervals: [100], timeout: 30_000 }).toBe(true);
  await expect(page.locator('#mic-verdict')).toHaveAttribute('data-verdict', 'ok');
  await page.locator('#net-test').click();
  await expect(page.locator('#net-verdict')).toHaveAttribute('data-verdict', /ok|warn/);
  await page.locator('#speaker-test').click();
  await page.getByRole('button', { name: 'Có, nghe rõ' }).click();
  await expect(page.locator('#overall-verdict')).toHaveAttribute('data-verdict', /ok|warn/);
  await shoot(page, 'device-check', page.locator('#preview'));
  await context.close();
});
