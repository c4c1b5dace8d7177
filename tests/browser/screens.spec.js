// @ts-check
/**
 * What a first real use of the screens found (issue 13), each seen again as a user would: dates and decimals in a
 * browser whose language is American English; who signed a note and what an amendment changed, as the station
 * sees it; nothing of a note left in a shared computer's browser after logging out; choosing the camera and the
 * microphone; WHO's whole ICD-10 list in the note's code search.
 */
import { expect, test } from '@playwright/test';
import { join } from 'node:path';
import { SHOTS, password, recordConsent, shoot, signIn } from './helpers.js';

/**
 * A patient of the station and an urgent consultation the doctor has accepted, made through the API with each
 * page's own login (cookies). @param {import('@playwright/test').Page} hw @param {import('@playwright/test').Page} dr
 */
async function acceptedConsultation(hw, dr, name = `Lò Văn Thử ${Date.now().toString().slice(-6)}`) {
  const p = await hw.request.post('/api/patients', { data: { full_name: name, date_of_birth: '1980-03-04', sex: 'male' } });
  expect(p.status()).toBe(201);
  const patient = await p.json();
  await recordConsent(hw.request, patient.id);
  const c = await hw.request.post('/api/consultations', { data: { patient_id: patient.id, kind: 'urgent', reason: 'Ho, sốt' } });
  expect(c.status()).toBe(201);
  const consultation = await c.json();
  const a = await dr.request.post(`/api/consultations/${consultation.id}/accept`, { data: {} });
  expect(a.ok()).toBe(true);
  return { patient, consultation };
}

/** The note keys this browser holds. @param {import('@playwright/test').Page} page */
const noteKeys = (page) => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('telehealth.note.')));

test('dates are dd/mm/yyyy and a decimal comma is a decimal, in an American-English browser', async ({ browser }) => {
  const context = await browser.newContext({ locale: 'en-US', timezoneId: 'America/New_York', viewport: { width: 1280, height: 800 } });
  const hw = await context.newPage();
  hw.on('dialog', (d) => void d.accept());
  await hw.goto('/');
  await hw.locator('#login input[name=username]').fill('yta1');
  await hw.locator('#login input[name=password]').fill(password('yta1'));
  await hw.locator('#login button[type=submit]').click();
  await expect(hw.locator('#nav')).toBeVisible();
  await hw.getByRole('link', { name: 'Đăng ký bệnh nhân mới' }).click();
  const form = hw.locator('#register');
  const dob = form.locator('[name=date_of_birth]');
  // A text field in the Vietnamese order, not the browser's mm/dd/yyyy picker.
  await expect(dob).toHaveAttribute('placeholder', 'ngày/tháng/năm');
  expect(await dob.getAttribute('type')).toBeNull();
  const name = `Hà Thị Ngày ${Date.now().toString().slice(-6)}`;
  await form.locator('[name=full_name]').fill(name);
  await form.locator('[name=sex]').selectOption('female');
  // 31/02 is no date: said beside the field, nothing sent.
  await dob.fill('31/02/2019');
  await form.locator('button[type=submit]').click();
  const dobError = form.locator(`#${await dob.getAttribute('id')}-error`);
  await expect(dobError).toContainText('ngày/tháng/năm');
  await dob.fill('05/11/2019');
  await form.locator('button[type=submit]').click();
  await expect(hw.locator('h2')).toHaveText(name);
  // 5 November, not 11 May.
  await expect(hw.locator('dl.facts').first()).toContainText('05/11/2019');
  const patientId = hw.url().split('/').pop();
  const stored = await (await hw.request.get(`/api/patients/${patientId}`)).json();
  expect(stored.date_of_birth).toBe('2019-11-05');

  // A child's fever and weight typed with a decimal comma: 38,5 °C and 5,5 kg (not 385 and 55).
  const vitals = hw.locator('#vitals-form');
  await vitals.locator('[name=temperature_c]').fill('38,5');
  await vitals.locator('[name=weight_kg]').fill('5,5');
  await vitals.locator('[name=pulse_bpm]').fill('1x0');
  await vitals.locator('button[type=submit]').click();
  await expect(vitals.locator('.field-error').filter({ hasText: 'Nhập một con số' })).toHaveCount(1);
  await vitals.locator('[name=pulse_bpm]').fill('120');
  await vitals.locator('button[type=submit]').click();
  await expect(hw.locator('#vitals-latest table')).toContainText('38,5');
  await expect(hw.locator('#vitals-latest table')).toContainText('5,5');
  const list = await (await hw.request.get(`/api/patients/${patientId}/vitals`)).json();
  expect(list[0].temperature_c).toBe(38.5);
  expect(list[0].weight_kg).toBe(5.5);
  await shoot(hw, 'patient-en-us-browser', hw.locator('#vitals-latest'));

  // A booking's day, typed the same way. The first day's slots are slow to come (a weak link): typing another
  // day meanwhile, the late answer must not replace what the page says about the new one (seen in CI).
  /** @type {() => void} */
  let release = () => {};
  const held = new Promise((r) => { release = () => r(null); });
  await hw.route('**/api/facilities/*/slots?*', async (route) => {
    await held;
    await route.continue();
  });
  // A child: a parent or guardian consents, named with their relation, checked in the page first.
  const consent = hw.locator('#consent-form');
  await expect(consent.locator('[name=given_by]')).toHaveValue('guardian');
  await expect(consent).toContainText('Bệnh nhân dưới 16 tuổi');
  await hw.locator('#consent-attest').check();
  await consent.locator('button[type=submit]').click();
  await expect(consent.locator('.field-error').filter({ hasText: 'Nhập họ tên người giám hộ.' })).toHaveCount(1);
  await expect(consent.locator('.field-error').filter({ hasText: 'Nhập quan hệ của người giám hộ' })).toHaveCount(1);
  await consent.locator('[name=guardian_name]').fill('Hà Văn Bảo');
  await consent.locator('[name=guardian_relation]').fill('bố');
  await consent.locator('button[type=submit]').click();
  await expect(hw.locator('#consent-status')).toContainText('Người giám hộ Hà Văn Bảo (bố) đã đồng ý');
  await shoot(hw, 'patient-consent-guardian', hw.locator('#consent'));

  await hw.locator('#request-form button[aria-expanded]').click();
  const day = hw.locator('#request-form [name=date]');
  await expect(day).toHaveValue(/^\d{2}\/\d{2}\/\d{4}$/);
  await day.fill('99/99/2026');
  await day.dispatchEvent('change');
  await expect(hw.locator('#slots')).toContainText('ngày/tháng/năm');
  const late = hw.waitForResponse((r) => r.url().includes('/slots?'));
  release();
  await late;
  await hw.evaluate(() => new Promise((r) => setTimeout(r, 300)));
  await expect(hw.locator('#slots')).toContainText('ngày/tháng/năm');
  await context.close();
});

test('a signed note says who signed it; an amendment says what it changed, to the station too', async ({ browser }) => {
  const worker = await signIn(browser, 'yta1');
  const doctor = await signIn(browser, 'bacsi1');
  const hw = worker.page;
  const dr = doctor.page;
  const { consultation } = await acceptedConsultation(hw, dr);
  await dr.goto(`/#/consultations/${consultation.id}`);
  // A first consultation: the panel says there was none before this one (not "none at all" while it runs).
  await expect(dr.locator('#patient-panel #no-earlier')).toHaveText('Chưa có lần tư vấn nào trước ca này.');
  const note = dr.locator('#note-form');
  await note.locator('[name=subjective]').fill('Ho đờm xanh 5 ngày');
  await note.locator('[name=assessment]').fill('Viêm phế quản cấp');
  await note.locator('[name=plan]').fill('Uống nhiều nước, tái khám sau 5 ngày.');
  await note.locator('[name=disposition]').selectOption('treat_at_station');
  await expect(dr.locator('#save-status')).toHaveAttribute('data-state', 'saved');
  await dr.locator('#sign-note').click();
  const signed = dr.locator('.note-view[data-status=signed]');
  await expect(signed.locator('.signed-by')).toContainText('bởi');
  const me = await (await dr.request.get('/api/auth/me')).json();
  await expect(signed.locator('.signed-by')).toContainText(me.display_name);

  // The amendment: the editor says which note it amends.
  await dr.locator('#amend').click();
  await expect(dr.locator('#note-box .notice').filter({ hasText: 'bản sửa đổi cho ghi chú đã ký' })).toBeVisible();
  await note.locator('[name=assessment]').fill('Viêm phổi cộng đồng');
  await note.locator('[name=disposition]').selectOption('refer');
  await expect(dr.locator('#save-status')).toHaveAttribute('data-state', 'saved');
  await dr.locator('#sign-note').click();
  await expect(dr.locator('.note-view[data-status=signed] .changes')).toBeVisible();

  // The station sees the latest note, its signer, and what changed: before and after, for each part.
  await hw.goto(`/#/consultations/${consultation.id}`);
  const shown = hw.locator('#note-box .note-view[data-status=signed]');
  await expect(shown).toContainText('Viêm phổi cộng đồng');
  await expect(shown.locator('.signed-by')).toContainText(me.display_name);
  await expect(shown.locator('.signed-by')).toContainText('bản sửa đổi');
  const changes = shown.locator('.changes');
  await expect(changes).toHaveAttribute('data-changes', '2');
  await expect(changes.locator('.was')).toContainText(['Viêm phế quản cấp', 'Điều trị tại trạm']);
  await expect(changes.locator('.now')).toContainText(['Viêm phổi cộng đồng', 'Chuyển tuyến']);
  await shoot(hw, 'station-amended-note', changes);

  // The summary to hand over: printed alone, with the diagnosis, the plan, where to go, who signed; not the
  // doctor's working notes.
  await hw.evaluate(() => {
    /** @type {any} */ (window).__printed = 0;
    window.print = () => { /** @type {any} */ (window).__printed += 1; };
  });
  await hw.locator('#note-box [data-print=a4]').click();
  await expect.poll(() => hw.evaluate(() => /** @type {any} */ (window).__printed)).toBe(1);
  const sheet = hw.locator('#print-summary');
  await expect(sheet).toBeAttached();
  await hw.emulateMedia({ media: 'print' });
  await expect(sheet).toBeVisible();
  await expect(hw.locator('#main')).toBeHidden();
  await expect(sheet).toContainText('PHIẾU TÓM TẮT TƯ VẤN TỪ XA');
  await expect(sheet).toContainText('Viêm phổi cộng đồng');
  await expect(sheet).toContainText('Chuyển tuyến — nơi tiếp nhận');
  await expect(sheet).toContainText(me.display_name);
  await expect(sheet).toContainText('Đồng ý khám từ xa');
  await expect(sheet).toContainText('nội dung bản 2026-01');
  await expect(sheet).not.toContainText('Ho đờm xanh');
  await hw.screenshot({ path: join(SHOTS, 'print-summary-a4.png'), fullPage: true });
  await hw.emulateMedia({ media: 'screen' });
  await hw.locator('#note-box [data-print=narrow]').click();
  await expect(hw.locator('#print-summary.narrow')).toBeAttached();
  await hw.emulateMedia({ media: 'print' });
  await hw.setViewportSize({ width: 302, height: 800 });
  await hw.screenshot({ path: join(SHOTS, 'print-summary-narrow.png'), fullPage: true });
  await hw.emulateMedia({ media: 'screen' });
  await worker.context.close();
  await doctor.context.close();
});

test('logging out leaves no note text in the browser, and saves what was typed first', async ({ browser }) => {
  const worker = await signIn(browser, 'yta1');
  const doctor = await signIn(browser, 'bacsi1');
  const dr = doctor.page;
  const { consultation } = await acceptedConsultation(worker.page, dr);
  await dr.goto(`/#/consultations/${consultation.id}`);
  const subjective = dr.locator('#note-form [name=subjective]');
  await subjective.fill('Ho 3 ngày');
  await expect(dr.locator('#save-status')).toHaveAttribute('data-state', 'saved');
  // Typed, and logged out at once (before the autosave's pause): it is saved first, then dropped from here.
  await subjective.pressSequentially(', sốt về chiều');
  expect(await noteKeys(dr)).toHaveLength(1);
  await dr.locator('#logout').click();
  await expect(dr.locator('#login')).toBeVisible();
  expect(await noteKeys(dr), 'no note copy left after logging out').toHaveLength(0);
  // Another user's copy (or an old one) found at sign-in is dropped too.
  await dr.evaluate(() => localStorage.setItem('telehealth.note.00000000-0000-4000-8000-000000000000',
    JSON.stringify({ note_id: null, version: 0, content: { subjective: 'của người khác' }, at: new Date().toISOString(), user: 'someone-else' })));
  await dr.locator('#login input[name=username]').fill('bacsi1');
  await dr.locator('#login input[name=password]').fill(password('bacsi1'));
  await dr.locator('#login button[type=submit]').click();
  await expect(dr.locator('#nav')).toBeVisible();
  expect(await noteKeys(dr)).toHaveLength(0);
  await dr.goto(`/#/consultations/${consultation.id}`);
  await expect(subjective).toHaveValue('Ho 3 ngày, sốt về chiều');
  await worker.context.close();
  await doctor.context.close();
});

test('the camera and the microphone can be chosen, before and during a call', async ({ browser }) => {
  const doctor = await signIn(browser, 'bacsi1');
  const dr = doctor.page;
  await dr.goto('/#/device-check');
  const mic = dr.locator('#mic-select');
  await expect(dr.locator('#camera-verdict')).toHaveAttribute('data-verdict', 'ok');
  // Chromium's fake devices: one camera, several microphones.
  await expect(mic).toBeEnabled();
  const options = await mic.locator('option').evaluateAll((os) => os.map((o) => /** @type {HTMLOptionElement} */ (o).value));
  expect(options.length).toBeGreaterThan(1);
  const pick = options[options.length - 1];
  await mic.selectOption(pick);
  await expect(dr.locator('#camera-verdict')).toHaveAttribute('data-verdict', 'ok');
  await expect(mic).toHaveValue(pick);
  await shoot(dr, 'device-check-choose', dr.locator('#mic-select'));
  // Remembered for the next visit.
  await dr.reload();
  await expect(dr.locator('#camera-verdict')).toHaveAttribute('data-verdict', 'ok');
  await expect(mic).toHaveValue(pick);
  await doctor.context.close();
});

test("WHO's whole ICD-10 list in the note's code search; other codes refused", async ({ browser }) => {
  const worker = await signIn(browser, 'yta1');
  const doctor = await signIn(browser, 'bacsi1');
  const dr = doctor.page;
  const { consultation } = await acceptedConsultation(worker.page, dr);
  await dr.goto(`/#/consultations/${consultation.id}`);
  const icd = dr.locator('#note-form [name=icd10_codes]');
  await icd.focus();
  await icd.fill('J1');
  // Every J1x code, not the two the first list knew.
  await expect(dr.locator('#icd-suggestions li')).toHaveCount(8);
  // By name, without accents, words in any order.
  await icd.fill('lobar pneumonia');
  await expect(dr.locator('#icd-suggestions button').filter({ hasText: 'J18.1' })).toBeVisible();
  await icd.fill('viem phoi');
  await expect(dr.locator('#icd-suggestions button').filter({ hasText: 'J18.9' })).toBeVisible();
  await icd.fill('A00.1');
  await icd.press('Enter');
  await expect(dr.locator('#icd-chips [data-code="A00.1"]')).toContainText('Cholera');
  // The right shape, but no WHO code: refused in the page and by the server.
  await icd.fill('J18.7');
  await icd.press('Enter');
  await expect(dr.locator('#note-form .field-error').filter({ hasText: 'không có trong danh mục ICD-10' })).toBeVisible();
  await expect(dr.locator('#save-status')).toHaveAttribute('data-state', 'saved');
  const [draft] = await (await dr.request.get(`/api/consultations/${consultation.id}/notes`)).json();
  expect(draft.icd10_codes).toEqual(['A00.1']);
  const r = await dr.request.put(`/api/notes/${draft.id}`, { data: { version: draft.version, icd10_codes: ['A00.1', 'J18.7'] } });
  expect(r.status()).toBe(422);
  expect((await r.json()).errors[0].code).toBe('unknown_icd10');
  await shoot(dr, 'note-icd-who', dr.locator('#icd-chips'));
  await worker.context.close();
  await doctor.context.close();
});

test("the admin's session page speaks in words, counts right, and flags who received nothing", async ({ browser }) => {
  const worker = await signIn(browser, 'yta1');
  const doctor = await signIn(browser, 'bacsi1');
  const { consultation } = await acceptedConsultation(worker.page, doctor.page);
  const me = await (await doctor.page.request.get('/api/auth/me')).json();
  const admin = await signIn(browser, 'admin');
  const ad = admin.page;
  // The real log (accepted, …) plus what a call writes, added to the server's answer: the doctor's page dropped
  // once and came back; for 15 s the SFU forwarded the doctor no audio while the station sent it.
  await ad.route(`**/api/sessions/${consultation.id}`, async (route) => {
    const real = await (await route.fetch()).json();
    const t0 = Date.parse(real.created_at) + 1000;
    const at = (/** @type {number} */ s) => new Date(t0 + s * 1000).toISOString();
    const station = 'f3c1a8e2-0000-4000-8000-000000000001';
    const ev = (/** @type {number} */ id, /** @type {number} */ s, /** @type {string} */ kind, /** @type {string | null} */ user_id, /** @type {object} */ data) =>
      ({ id, consultation_id: consultation.id, at: at(s), kind, user_id, data });
    const events = [
      ev(9001, 1, 'joined', me.id, { participant_id: 'pd', role: 'doctor' }),
      ev(9002, 2, 'joined', station, { participant_id: 'ps', role: 'health_worker' }),
      ev(9003, 3, 'ice_state', me.id, { participant_id: 'pd', state: 'checking' }),
      ev(9004, 4, 'reconnecting', me.id, { participant_id: 'pd', socket: 'closed' }),
      ev(9005, 6, 'reconnected', me.id, { participant_id: 'pd' }),
    ];
    for (let i = 0; i < 8; i++) {
      const silent = i >= 2 && i < 5;
      events.push(ev(9100 + i * 2, 10 + i * 5, 'stats', me.id, { participant_id: 'pd', user_id: me.id, loss_pct: 0, rtt_ms: 40,
        received_audio_packets: silent ? 0 : 250, received_video_packets: 600, sent_audio_packets: 250, sent_video_packets: 600 }));
      events.push(ev(9101 + i * 2, 10 + i * 5, 'stats', station, { participant_id: 'ps', user_id: station, loss_pct: 1, rtt_ms: 90,
        received_audio_packets: 250, received_video_packets: 600, sent_audio_packets: 250, sent_video_packets: 600 }));
    }
    const quality = { ...real.quality, disconnections: 1, reconnections: 1 };
    await route.fulfill({ json: { ...real, quality, events: [...real.events, ...events] } });
  });
  await ad.goto(`/#/admin/sessions/${consultation.id}`);
  const timeline = ad.locator('#timeline');
  // Who and what in words, to the second.
  await expect(timeline.locator('li[data-kind=accepted]')).toContainText(`${me.display_name} (Bác sĩ) nhận ca tư vấn.`);
  await expect(timeline.locator('li[data-kind=accepted] time')).toHaveText(/^\d{2}:\d{2}:\d{2}$/);
  await expect(timeline.locator('li[data-kind=reconnecting]')).toContainText('mất kết nối với máy chủ');
  await expect(timeline.locator('li[data-kind=reconnected]')).toContainText('tự vào lại cuộc gọi');
  // The raw fields and the technical events are one click away, not in the way.
  await expect(timeline.locator('li[data-kind=ice_state]')).toBeHidden();
  await expect(timeline.locator('li[data-kind=accepted] code')).toBeHidden();
  await ad.locator('#show-technical').check();
  await expect(timeline.locator('li[data-kind=ice_state]')).toBeVisible();
  // The counts match the timeline.
  const facts = ad.locator('#session-facts');
  await expect(facts).toContainText('Số lần mất kết nối với máy chủ1');
  await expect(facts).toContainText('Số lần kết nối lại1');
  // The doctor heard nothing for 15 s while the station sent: flagged, with the time.
  const gap = ad.locator('#media-gaps li[data-kind=audio]');
  await expect(gap).toHaveCount(1);
  await expect(gap).toContainText(`${me.display_name} (Bác sĩ) không nghe được tiếng bên kia`);
  await expect(gap).toContainText('(15 giây)');
  await expect(ad.locator('#media-gaps li[data-kind=video]')).toHaveCount(0);
  await shoot(ad, 'admin-session-words', ad.locator('#media-gaps'));
  await ad.unroute(`**/api/sessions/${consultation.id}`);

  // The audit log: filters by names, not codes.
  await ad.goto('/#/admin/audit');
  const filters = ad.locator('#audit-filters');
  await filters.locator('[name=action]').selectOption({ label: 'Nhận ca tư vấn' });
  await filters.locator('[name=actor_id]').selectOption(me.id);
  await Promise.all([
    ad.waitForResponse((r) => r.url().includes('/api/audit?') && r.url().includes('action=consultation.accept') && r.url().includes(`actor_id=${me.id}`)),
    filters.locator('button[type=submit]').click(),
  ]);
  const rows = ad.locator('#audit tbody tr');
  await expect(rows.first()).toContainText(me.display_name);
  const actions = await ad.locator('#audit tbody td[data-action]').evaluateAll((tds) => tds.map((td) => td.textContent));
  expect(actions.length).toBeGreaterThan(0);
  expect(new Set(actions)).toEqual(new Set(['Nhận ca tư vấn']));
  await shoot(ad, 'admin-audit-pickers', filters);
  await admin.context.close();
  await worker.context.close();
  await doctor.context.close();
});

test("a patient's withdrawal of consent is recorded, cancels the waiting request and stops new ones", async ({ browser }) => {
  const { context, page: hw } = await signIn(browser, 'yta1');
  const p = await hw.request.post('/api/patients', {
    data: { full_name: `Thào Thị Rút ${Date.now().toString().slice(-6)}`, date_of_birth: '1975-08-09', sex: 'female' },
  });
  expect(p.status()).toBe(201);
  const patient = await p.json();
  await recordConsent(hw.request, patient.id);
  const c = await hw.request.post('/api/consultations', { data: { patient_id: patient.id, kind: 'urgent', reason: 'Đau khớp' } });
  expect(c.status()).toBe(201);
  const waiting = await c.json();

  await hw.goto(`/#/patients/${patient.id}`);
  await expect(hw.locator('#consent-status')).toContainText('Bệnh nhân đã đồng ý khám từ xa');
  await expect(hw.locator('#request-form')).toBeVisible();
  await hw.locator('#consent-withdraw').click();
  const form = hw.locator('#consent-withdraw-form');
  await expect(form).toContainText('các yêu cầu tư vấn chưa bắt đầu của bệnh nhân sẽ bị hủy');
  await form.locator('button[type=submit]').click();

  // Said plainly, the request form closed, the waiting request cancelled, the text ready to be read again.
  await expect(hw.locator('#consent-status')).toContainText('Bệnh nhân đã rút lại sự đồng ý');
  await expect(hw.locator('#consent-status')).toContainText('Không thể yêu cầu tư vấn từ xa');
  await expect(hw.locator('#request-form')).toBeHidden();
  await expect(hw.locator('#request-needs-consent')).toBeVisible();
  await expect(hw.locator('#patient-consultations')).toContainText('Đã hủy');
  await expect(hw.locator('#consent-form')).toContainText('trở lại');
  await expect(hw.locator('#consent-history summary')).toContainText('2 lần ghi nhận');
  expect((await (await hw.request.get(`/api/consultations/${waiting.id}`)).json()).state).toBe('cancelled');
  // The server refuses a request made anyway (an old tab, another device).
  const again = await hw.request.post('/api/consultations', { data: { patient_id: patient.id, kind: 'urgent', reason: 'Đau khớp' } });
  expect(again.status()).toBe(409);
  expect((await again.json()).code).toBe('consent_withdrawn');
  await shoot(hw, 'patient-consent-withdrawn', hw.locator('#consent'));
  await context.close();
});
