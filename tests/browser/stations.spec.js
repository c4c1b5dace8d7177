// @ts-check
/**
 * Station connectivity: a real call between the station's worker (yta1) and the doctor (bacsi1) in two Chromium
 * pages records the SFU's quality samples; the admin then opens "Kết nối của các trạm" from the navigation, finds
 * the station in the ranking with its samples, charts it over days, and downloads the CSV.
 */
import { expect, test } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { inCall } from './calls.js';
import { shoot, signIn } from './helpers.js';

/** Today in Vietnam, YYYY-MM-DD. */
const today = () => new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Ho_Chi_Minh', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());

test('admin sees a station\'s connectivity from a real call, its charts and the CSV', async ({ browser }) => {
  const worker = await signIn(browser, 'yta1');
  const doctor = await signIn(browser, 'bacsi1');
  const admin = await signIn(browser, 'admin');
  const ad = admin.page;
  let stationId = '';

  await test.step('a real call: media both ways, then the station side\'s samples are logged', async () => {
    const { id, took } = await inCall(worker.page, doctor.page, 'Kiểm tra đường truyền của trạm', 90_000);
    console.log(`media both ways after ${took.max} ms`);
    const session = await ad.request.get(`/api/sessions/${id}`);
    expect(session.status()).toBe(200);
    stationId = (await session.json()).station_id;
    // Each participant is sampled every few seconds: wait for the station's samples in the report itself.
    await expect.poll(async () => {
      const r = await ad.request.get(`/api/stations/connectivity?facility_id=${stationId}`);
      const rows = (await r.json()).rows ?? [];
      return rows.find((/** @type {any} */ x) => x.bucket_start === today())?.samples ?? 0;
    }, { message: 'station-side samples in the report', timeout: 60_000, intervals: [2000] }).toBeGreaterThanOrEqual(2);
  });

  await test.step('the admin opens the page from the navigation and finds the station ranked, with samples', async () => {
    await ad.locator('#nav').getByRole('link', { name: 'Kết nối của các trạm' }).click();
    await expect(ad).toHaveURL(/#\/admin\/stations$/);
    const row = ad.locator(`#station-table tbody tr[data-station="${stationId}"]`);
    await expect(row).toBeVisible();
    // Calls made: not "no calls"; its numbers read in cells labelled by their columns.
    await expect(row).not.toHaveAttribute('data-level', '1');
    await expect(row.locator('td[data-label="Mất gói TB"]')).toHaveText(/\d+,\d %/);
    await expect(row.locator('td[data-label="RTT TB"]')).toHaveText(/\d+ ms/);
    await expect(row.locator('td.advice li').first()).not.toBeEmpty();
    await expect(row.locator('th[scope=row] .badge')).not.toBeEmpty();
    await expect(ad.locator('#station-table th[scope=col]').first()).toHaveText('Trạm');
  });

  await test.step('the station\'s charts over days, and its day in the table under them', async () => {
    await ad.locator(`button[data-chart="${stationId}"]`).click();
    await expect(ad.locator('#station-detail select[name=station]')).toHaveValue(stationId);
    for (const id of ['station-chart-loss', 'station-chart-rtt', 'station-chart-bitrate', 'station-chart-trouble', 'station-chart-audio']) {
      await expect(ad.locator(`#${id} svg circle`).first()).toBeAttached();
    }
    const day = ad.locator(`#station-buckets tbody tr[data-bucket="${today()}"]`);
    await expect(day).toBeVisible();
    await expect(day.locator('td').first()).not.toHaveText('0');
    await shoot(ad, 'station-connectivity', ad.locator('#station-charts'));
  });

  await test.step('a chart leaves a gap over days without calls instead of drawing across them', async () => {
    const lines = await ad.evaluate(async () => {
      const { lineChart } = await import('/charts.js');
      const day = 86_400_000;
      // Calls on days 0, 1, 3 and 4: nothing on day 2.
      const series = [{ name: 'loss', points: /** @type {[number, number][]} */ ([[0, 1], [day, 2], [3 * day, 1], [4 * day, 2]]) }];
      const count = (/** @type {number | undefined} */ gap) =>
        lineChart({ title: 't', unit: '%', series, t0: 0, t1: 4 * day, gap }).querySelectorAll('polyline').length;
      return { daily: count(1.5 * day), joined: count(undefined) };
    });
    expect(lines).toEqual({ daily: 2, joined: 1 });
  });

  await test.step('by week: one row per week, the bucket a Monday', async () => {
    await ad.locator('#station-filters select[name=bucket]').selectOption('week');
    await ad.locator('#station-filters button[type=submit]').click();
    await expect(ad.locator('#station-buckets thead th').first()).toHaveText('Tuần từ');
    const monday = await ad.locator('#station-buckets tbody tr').last().getAttribute('data-bucket');
    expect(new Date(`${monday}T00:00:00Z`).getUTCDay()).toBe(1);
  });

  await test.step('the CSV download holds the station\'s rows', async () => {
    await ad.locator('#station-filters select[name=bucket]').selectOption('day');
    await ad.locator('#station-filters button[type=submit]').click();
    await expect(ad.locator('#station-buckets thead th').first()).toHaveText('Ngày');
    const [download] = await Promise.all([ad.waitForEvent('download'), ad.locator('#stations-csv').click()]);
    expect(download.suggestedFilename()).toMatch(/^station-connectivity-.*-day\.csv$/);
    const text = readFileSync(/** @type {string} */ (await download.path()), 'utf8');
    const lines = text.split('\r\n').filter(Boolean);
    expect(lines[0]).toMatch(/^station_id,station_code,station_name,bucket_start,calls,call_minutes,samples,avg_loss_pct,/);
    const mine = lines.find((l) => l.startsWith(`${stationId},`) && l.includes(`,${today()},`));
    expect(mine, text).toBeTruthy();
    const cells = /** @type {string} */ (mine).split(',');
    expect(Number(cells[6])).toBeGreaterThanOrEqual(2);
  });

  for (const c of [worker, doctor, admin]) await c.context.close();
});
