// @ts-check
/**
 * A whole consultation without the call: the health worker registers a patient and asks for an urgent
 * consultation; the doctor (second context) sees it arrive live and accepts; writes the note, reloads in the
 * middle and loses nothing, signs; the health worker sees the signed note; the admin finds the session.
 * Every screen on the way is screenshotted at phone and desktop sizes.
 */
import { expect, test } from '@playwright/test';
import { shoot, signIn } from './helpers.js';

test('urgent consultation from registration to signed note', async ({ browser }) => {
  const worker = await signIn(browser, 'yta1');
  const doctor = await signIn(browser, 'bacsi1');
  const hw = worker.page;
  const dr = doctor.page;
  const suffix = Date.now().toString().slice(-6);
  const name = `Nguyễn Thị Thử ${suffix}`;
  /** @type {string} */
  let consultationId = '';

  await test.step('doctor waits on the queue page', async () => {
    await expect(dr.locator('#queue-title')).toBeVisible();
    await expect(dr.locator('#nav a[aria-current=page]')).toBeVisible();
    await shoot(dr, 'doctor-queue-empty', dr.locator('#queue-title'));
  });

  await test.step('health worker: station page and Vietnamese validation beside each field', async () => {
    await expect(hw.locator('#open-title')).toBeVisible();
    await shoot(hw, 'station-home', hw.locator('#open-title'));
    await hw.getByRole('link', { name: 'Đăng ký bệnh nhân mới' }).click();
    const form = hw.locator('#register');
    const errorOf = async (/** @type {string} */ field) =>
      form.locator('#' + (await form.locator(`[name=${field}]`).getAttribute('id')) + '-error');
    // Sent empty: every missing field is named at once, beside it, in plain words (no parser message), and the
    // page sends nothing.
    let posted = 0;
    const countPosts = (/** @type {import('@playwright/test').Request} */ r) => {
      if (r.method() === 'POST' && r.url().endsWith('/api/patients')) posted += 1;
    };
    hw.on('request', countPosts);
    await form.locator('button[type=submit]').click();
    await expect(await errorOf('full_name')).toHaveText('Nhập họ tên của bệnh nhân.');
    await expect(await errorOf('date_of_birth')).toHaveText('Nhập ngày sinh của bệnh nhân.');
    await expect(await errorOf('sex')).toHaveText('Chọn giới tính của bệnh nhân.');
    for (const f of ['full_name', 'date_of_birth', 'sex']) await expect(form.locator(`[name=${f}]`)).toHaveAttribute('aria-invalid', 'true');
    await expect(form.locator('.form-alert')).toHaveText('Một số thông tin chưa hợp lệ: sửa các ô có viền đỏ rồi gửi lại.');
    await expect(form.locator('[name=full_name]')).toBeFocused();
    await shoot(hw, 'patient-register-empty', form);
    // One field mended: the others are still named, the mended one is not.
    await form.locator('[name=sex]').selectOption('female');
    await form.locator('button[type=submit]').click();
    await expect(await errorOf('sex')).toHaveText('');
    await expect(await errorOf('full_name')).toHaveText('Nhập họ tên của bệnh nhân.');
    hw.off('request', countPosts);
    expect(posted, 'an incomplete form is not sent').toBe(0);
    await form.locator('[name=full_name]').fill(name);
    await form.locator('[name=date_of_birth]').fill('12/04/1985');
    await form.locator('[name=sex]').selectOption('female');
    await form.locator('[name=phone]').fill('12345');
    await form.locator('[name=cccd]').fill('0011');
    hw.on('request', countPosts);
    await form.locator('button[type=submit]').click();
    await expect(await errorOf('phone')).toContainText('Số điện thoại gồm 10 chữ số');
    await expect(await errorOf('cccd')).toHaveText('Số CCCD phải gồm đúng 12 chữ số.');
    await expect(form.locator('.form-alert')).toContainText('Một số thông tin chưa hợp lệ');
    expect(posted, 'a wrongly shaped phone or CCCD is not sent').toBe(0);
    await shoot(hw, 'patient-register-errors', form);
    // What only the server knows (the CCCD's province code) comes back beside its field too.
    await form.locator('[name=phone]').fill('0912345678');
    await form.locator('[name=cccd]').fill('003185123456');
    await form.locator('button[type=submit]').click();
    await expect(await errorOf('cccd')).toContainText('Mã tỉnh 003');
    await expect(await errorOf('phone')).toHaveText('');
    expect(posted, 'sent once the page found nothing').toBe(1);
    hw.off('request', countPosts);
    await form.locator('[name=cccd]').fill(`001185${suffix}`);
    await form.locator('button[type=submit]').click();
    await expect(hw.locator('h2')).toHaveText(name);
  });

  await test.step('health worker records vitals', async () => {
    const vitals = hw.locator('#vitals-form');
    await vitals.locator('[name=temperature_c]').fill('38.6');
    await vitals.locator('[name=pulse_bpm]').fill('104');
    await vitals.locator('[name=systolic_mmhg]').fill('128');
    await vitals.locator('[name=diastolic_mmhg]').fill('82');
    await vitals.locator('[name=spo2_pct]').fill('96');
    await vitals.locator('[name=respiratory_rate]').fill('24');
    await vitals.locator('[name=weight_kg]').fill('52.5');
    await vitals.locator('button[type=submit]').click();
    // Written as Vietnamese write decimals: 38,6.
    await expect(hw.locator('#vitals-latest table')).toContainText('38,6');
    await expect(hw.locator('#vitals-latest table')).toContainText('52,5');
    // Out-of-range values are marked with an arrow and a word (not colour alone); normal ones are not.
    const flagged = hw.locator('#vitals-latest td.abnormal');
    await expect(flagged).toHaveText(['38,6 ▲ cao', '104 ▲ cao', '24 ▲ cao']);
    await expect(hw.locator('#vitals-latest')).toContainText('ngoài khoảng thường gặp');
    await shoot(hw, 'patient-page', hw.locator('#consent-form'));
  });

  await test.step('health worker reads the consent text to the patient and records her agreement', async () => {
    // No consultation before consent: the request form waits, and says why.
    await expect(hw.locator('#request-form')).toBeHidden();
    await expect(hw.locator('#request-needs-consent')).toContainText('Cần ghi nhận sự đồng ý');
    await expect(hw.locator('#consent-status')).toContainText('Chưa ghi nhận sự đồng ý');
    await expect(hw.locator('#consent-text')).toContainText('Tôi đồng ý');
    await expect(hw.locator('#consent-text')).toContainText('rút lại sự đồng ý bất cứ lúc nào');
    // The worker must attest having read it: without the tick nothing is sent.
    let posted = 0;
    const countPosts = (/** @type {import('@playwright/test').Request} */ r) => {
      if (r.method() === 'POST' && r.url().endsWith('/consents')) posted += 1;
    };
    hw.on('request', countPosts);
    await hw.locator('#consent-form button[type=submit]').click();
    await expect(hw.locator('#consent-attest-error')).toContainText('đánh dấu vào ô này');
    expect(posted).toBe(0);
    await hw.locator('#consent-attest').check();
    await hw.locator('#consent-form button[type=submit]').click();
    await expect(hw.locator('#consent-status')).toContainText('Bệnh nhân đã đồng ý khám từ xa');
    await expect(hw.locator('#consent-status')).toContainText('nội dung bản 2026-01');
    expect(posted).toBe(1);
    hw.off('request', countPosts);
    await expect(hw.locator('#request-form')).toBeVisible();
    await expect(hw.locator('#request-needs-consent')).toBeHidden();
    await shoot(hw, 'patient-consent-recorded', hw.locator('#request-form'));
  });

  await test.step('health worker asks for an urgent consultation and sees its place in the queue', async () => {
    await hw.locator('#request-form [name=reason]').fill('Sốt cao 3 ngày, ho, đau họng');
    await hw.locator('#ask-urgent').click();
    await expect(hw).toHaveURL(/#\/consultations\/[0-9a-f-]{36}$/);
    consultationId = hw.url().split('/').pop() ?? '';
    await expect(hw.locator('#consult-status [data-place]')).toHaveAttribute('data-place', /^[1-9]\d*$/);
    await expect(hw.locator('#consult-state [data-state]')).toHaveAttribute('data-state', 'requested');
    await shoot(hw, 'consultation-waiting', hw.locator('#consult-status'));
  });

  await test.step('doctor sees the request appear live, without a reload, and accepts it', async () => {
    const item = dr.locator(`#queue li[data-consultation="${consultationId}"]`);
    await expect(item).toBeVisible();
    await expect(item).toHaveClass(/\bnew\b/);
    await expect(dr.locator('#new-alert')).toContainText('yêu cầu khẩn mới');
    await shoot(dr, 'doctor-queue-new', item);
    await item.locator('[data-action=accept]').click();
    await expect(dr).toHaveURL(new RegExp(`#/consultations/${consultationId}$`));
    await expect(dr.locator('#note-form')).toBeVisible();
    await expect(dr.locator('#patient-panel')).toContainText('38,6');
    // The doctor sees that the patient consented, when, and who attested it.
    await expect(dr.locator('#patient-panel #consent-status')).toContainText('Bệnh nhân đã đồng ý khám từ xa');
  });

  await test.step('health worker sees the acceptance live', async () => {
    await expect(hw.locator('#consult-status')).toContainText('đã nhận ca này');
  });

  await test.step('doctor writes the note, reloads in the middle, loses nothing', async () => {
    const subjective = 'Sốt 39 độ từ 3 ngày nay, ho khan, đau họng, không khó thở.';
    const objective = 'Họng đỏ, amidan sưng, phổi không ran.';
    await dr.locator('#note-form [name=subjective]').fill(subjective);
    await dr.locator('#note-form [name=objective]').pressSequentially(objective.slice(0, 20));
    // Reload at once: whatever the autosave did or not, nothing typed is lost.
    await dr.reload();
    await expect(dr.locator('#note-form [name=subjective]')).toHaveValue(subjective);
    await expect(dr.locator('#note-form [name=objective]')).toHaveValue(objective.slice(0, 20));
    await dr.locator('#note-form [name=objective]').fill(objective);
    await dr.locator('#note-form [name=assessment]').fill('Viêm họng cấp do virus');
    await dr.locator('#note-form [name=plan]').fill('Hạ sốt paracetamol 500 mg khi sốt trên 38,5 độ; uống nhiều nước; tái khám sau 3 ngày.');
    // Every vital sign fits its panel beside the note: SpO₂ and weight are not cut off; the abnormal ones marked.
    const wrap = dr.locator('#patient-panel .table-wrap');
    expect(await wrap.evaluate((el) => el.scrollWidth <= el.clientWidth + 1), 'the vitals table fits its panel').toBe(true);
    await expect(dr.locator('#patient-panel td.abnormal')).toHaveCount(3);
    await dr.locator('#note-form [name=icd10_codes]').fill('viem hong');
    await dr.locator('#icd-suggestions button').filter({ hasText: 'J02.9' }).click();
    await expect(dr.locator('#icd-chips [data-code="J02.9"]')).toBeVisible();
    await dr.locator('#note-form [name=icd10_codes]').fill('not-a-code');
    await dr.locator('#note-form [name=icd10_codes]').press('Enter');
    await expect(dr.locator('#note-form .field-error').filter({ hasText: 'không phải mã ICD-10' })).toBeVisible();
    await dr.locator('#note-form [name=icd10_codes]').fill('');
    await dr.locator('#note-form [name=disposition]').selectOption('treat_at_station');
    await expect(dr.locator('#save-status')).toHaveAttribute('data-state', 'saved');
    await shoot(dr, 'doctor-consultation-note', dr.locator('#note-form'));
    // And a reload after the save brings back the server's draft.
    await dr.reload();
    await expect(dr.locator('#note-form [name=assessment]')).toHaveValue('Viêm họng cấp do virus');
    await expect(dr.locator('#icd-chips [data-code="J02.9"]')).toBeVisible();
  });

  await test.step('doctor starts, signs and ends', async () => {
    await dr.locator('[data-action=start-without-video]').click();
    await expect(dr.locator('#consult-state [data-state]')).toHaveAttribute('data-state', 'in_progress');
    await dr.locator('#sign-note').click();
    await expect(dr.locator('.note-view[data-status=signed]')).toBeVisible();
    await dr.locator('#consult-actions [data-action=end]').click();
    await expect(dr.locator('#consult-state [data-state]')).toHaveAttribute('data-state', 'completed');
    await shoot(dr, 'doctor-consultation-signed', dr.locator('.note-view'));
  });

  await test.step('health worker sees the signed note and plan', async () => {
    const note = hw.locator('#note-box .note-view[data-status=signed]');
    await expect(note).toBeVisible({ timeout: 60_000 });
    await expect(note).toContainText('Viêm họng cấp do virus');
    await expect(note).toContainText('Điều trị tại trạm');
    await expect(hw.locator('#consult-state [data-state]')).toHaveAttribute('data-state', 'completed');
    await shoot(hw, 'consultation-signed-note', note);
  });

  await test.step('doctor: working hours page', async () => {
    await dr.goto('/#/doctor/hours');
    await dr.locator('#hours-form button.secondary').click();
    await dr.locator('#hours-form button[type=submit]').click();
    await expect(dr.locator('#hours-form .notice.ok')).toBeVisible();
    await shoot(dr, 'doctor-hours', dr.locator('#hours-form'));
  });

  await test.step('admin finds the session, its timeline, and the other admin screens', async () => {
    const admin = await signIn(browser, 'admin');
    const ad = admin.page;
    const row = ad.locator(`#sessions li[data-session="${consultationId}"]`);
    await expect(row).toBeVisible();
    await shoot(ad, 'admin-sessions', row);
    await ad.locator('#session-filters [name=state]').selectOption('completed');
    await ad.locator('#session-filters button[type=submit]').click();
    await expect(row).toBeVisible();
    await row.locator('a').click();
    await expect(ad.locator('#timeline li[data-kind=accepted]')).toBeVisible();
    await expect(ad.locator('#no-stats')).toBeVisible();
    await shoot(ad, 'admin-session-detail', ad.locator('#timeline'));

    // No call has run (the call is not built yet), so the quality samples are added to the real answer here:
    // the page must draw one line per participant in the loss and RTT charts.
    await ad.route(`**/api/sessions/${consultationId}`, async (route) => {
      const real = await (await route.fetch()).json();
      const t0 = Date.parse(real.started_at ?? real.created_at);
      const users = [real.doctor_id, 'f3c1a8e2-0000-4000-8000-000000000001'];
      const stats = [];
      for (let i = 0; i < 24; i++) {
        for (const [k, user_id] of users.entries()) {
          stats.push({ id: 1000 + i * 2 + k, consultation_id: consultationId, at: new Date(t0 + i * 5000).toISOString(), kind: 'stats', user_id,
            data: { user_id, loss_pct: k ? 2 + 6 * Math.abs(Math.sin(i / 3)) : 0.5 * (i % 3), rtt_ms: k ? 180 + 90 * Math.sin(i / 4) : 45 + i,
              jitter_ms: 8 + (i % 5), bitrate_in_kbps: 600 + 40 * (i % 7), bitrate_out_kbps: 550, audio_only: false } });
        }
      }
      await route.fulfill({ json: { ...real, events: [...real.events, ...stats] } });
    });
    await ad.reload();
    await expect(ad.locator('#chart-loss polyline')).toHaveCount(2);
    await expect(ad.locator('#chart-rtt polyline')).toHaveCount(2);
    await shoot(ad, 'admin-session-charts', ad.locator('#charts svg'));
    await ad.unroute(`**/api/sessions/${consultationId}`);
    for (const [hash, ready, shot] of [['#/admin/users', '#users table', 'admin-users'], ['#/admin/facilities', '#facilities table', 'admin-facilities'], ['#/admin/audit', '#audit tbody tr', 'admin-audit']]) {
      await ad.goto(`/${hash}`);
      await expect(ad.locator(ready).first()).toBeVisible();
      await shoot(ad, shot, ad.locator(ready));
    }
    await admin.context.close();
  });

  await worker.context.close();
  await doctor.context.close();
});

test('login page: small first load, validation, English switch', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('#login')).toBeVisible();
  // Everything the first page load fetched (document, styles, modules), headers included.
  const bytes = await page.evaluate(() => performance.getEntries()
    .filter((e) => e.entryType === 'navigation' || e.entryType === 'resource')
    .reduce((sum, e) => sum + /** @type {PerformanceResourceTiming} */ (e).transferSize, 0));
  console.log(`first page load: ${bytes} bytes transferred`);
  expect(bytes).toBeGreaterThan(10_000);
  expect(bytes).toBeLessThan(200 * 1024);
  await shoot(page, 'login', page.locator('#login'));
  await page.locator('#login button[type=submit]').click();
  await expect(page.locator('#login .form-alert')).toContainText('Vui lòng nhập');
  // A wrong password is reported as such, not as an expired session.
  await page.locator('#login input[name=username]').fill('yta1');
  await page.locator('#login input[name=password]').fill('khong-phai-mat-khau');
  await page.locator('#login button[type=submit]').click();
  await expect(page.locator('#login .form-alert')).toHaveText('Sai tên đăng nhập hoặc mật khẩu.');
  await page.locator('#login input[name=username]').fill('');
  await page.locator('[data-lang=en]').click();
  await expect(page.locator('#login h2')).toHaveText('Sign in');
  await shoot(page, 'login-en', page.locator('#login'));
  await page.locator('[data-lang=vi]').click();
  await expect(page.locator('#login h2')).toHaveText('Đăng nhập');
});
