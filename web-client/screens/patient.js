// @ts-check
/**
 * A patient at the station: register (new), or see the record, record vitals, and ask for a consultation
 * (urgent, into the hospital's queue; or a booked slot).
 */
import { api } from '../api.js';
import { consentPanel } from '../consent.js';
import { consultationItem } from '../consult.js';
import { facility, hospitalDoctors, patient, rememberPatient } from '../data.js';
import { t } from '../i18n.js';
import {
  age, busy, clearProblem, date, dateTime, dayInput, field, h, heading, input, localDay, notice, numberInput, readDay, readNumber, select,
  showProblem, time,
} from '../ui.js';
import { vitalsTable } from '../vitals.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').Patient} Patient */
/** @typedef {import('../types.js').Vitals} Vitals */
/** @typedef {import('../types.js').Consultation} Consultation */
/** @typedef {import('../types.js').Slot} Slot */

/** @param {Ctx} ctx @param {string[]} params */
export async function render(ctx, [id]) {
  if (id === 'new') return renderNew(ctx);
  const found = await patient(id);
  if (!found) {
    ctx.view.append(heading(t('patient.title')), notice(t('err.patientMissing'), 'error'));
    return;
  }
  const p = found;
  const vitalsBox = h('div', { id: 'vitals-latest' });
  const history = h('ul', { class: 'list', id: 'patient-consultations' });
  // No consultation without the patient's consent: the request form waits for it (the server refuses too).
  const request = await requestForm(ctx, p);
  const needsConsent = h('p', { class: 'notice warn', id: 'request-needs-consent', role: 'status' }, t('request.needsConsent'));
  const consent = consentPanel(p, (granted) => {
    request.hidden = !granted;
    needsConsent.hidden = granted;
    void loadHistory();
  });
  request.hidden = true;
  needsConsent.hidden = true;
  ctx.view.append(
    heading(p.full_name),
    summary(p),
    consent.section,
    h('section', { class: 'panel', 'aria-labelledby': 'req-title' }, h('h3', { id: 'req-title' }, t('request.title')), needsConsent, request),
    h('section', { class: 'panel', 'aria-labelledby': 'vitals-title' },
      h('h3', { id: 'vitals-title' }, t('vitals.title')), vitalsBox, vitalsForm(p, () => void loadVitals())),
    h('section', { class: 'panel', 'aria-labelledby': 'hist-title' }, h('h3', { id: 'hist-title' }, t('patient.history')), history),
  );

  async function loadVitals() {
    const r = await api(`/api/patients/${p.id}/vitals`);
    if (!r.ok) return vitalsBox.replaceChildren(notice(t('err.listFailed'), 'error'));
    /** @type {Vitals[]} */
    const list = r.data;
    vitalsBox.replaceChildren(list.length ? vitalsTable(list.slice(0, 5), { dob: p.date_of_birth }) : h('p', { class: 'muted' }, t('vitals.none')));
  }
  async function loadHistory() {
    const r = await api(`/api/patients/${p.id}/consultations`);
    if (!r.ok) return history.replaceChildren(h('li', {}, notice(t('err.listFailed'), 'error')));
    /** @type {Consultation[]} */
    const list = r.data;
    list.sort((a, b) => b.created_at.localeCompare(a.created_at));
    history.replaceChildren(...(await Promise.all(list.map((c) => consultationItem(c)))));
    if (!list.length) history.replaceChildren(h('li', { class: 'muted' }, t('patient.noHistory')));
  }
  await Promise.all([loadVitals(), consent.loaded]);
}

/** @param {Patient} p */
export function summary(p) {
  /** @type {[import('../i18n.js').Key, string][]} */
  const rows = [
    ['patient.dob', `${date(p.date_of_birth)} (${t('patient.ageShort', { n: age(p.date_of_birth) })})`],
    ['patient.sex', t(`sex.${p.sex}`)],
    ['patient.phone', p.phone || t('patient.none')],
    ['patient.cccd', p.cccd || t('patient.none')],
    ['patient.bhyt', p.bhyt || t('patient.none')],
    ['patient.address', p.address || t('patient.none')],
  ];
  return h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v)]));
}

/** @param {Ctx} ctx */
function renderNew(ctx) {
  const sex = select('sex', [['', t('patient.choose')], ['female', t('sex.female')], ['male', t('sex.male')], ['other', t('sex.other')]]);
  const form = h('form', { class: 'grid-form', novalidate: true, id: 'register' },
    field('patient.fullName', input('full_name', { autocomplete: 'off', required: true, maxlength: '200' }), { wide: true }),
    field('patient.dob', dayInput('date_of_birth', { required: true }), { hint: t('date.hint') }),
    field('patient.sex', sex),
    field('patient.phone', input('phone', { type: 'tel', inputmode: 'tel', autocomplete: 'off' }), { hint: t('patient.phoneHint') }),
    field('patient.cccd', input('cccd', { inputmode: 'numeric', autocomplete: 'off', maxlength: '12' }), { hint: t('patient.cccdHint') }),
    field('patient.bhyt', input('bhyt', { autocomplete: 'off', maxlength: '15' }), { hint: t('patient.bhytHint') }),
    field('patient.address', input('address', { autocomplete: 'off', maxlength: '500' }), { wide: true }),
    h('div', { class: 'wide row' }, h('button', { type: 'submit', class: 'primary' }, t('patient.register'))),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    const data = new FormData(form);
    const text = (/** @type {string} */ k) => String(data.get(k) ?? '').trim();
    const opt = (/** @type {string} */ k) => text(k) || null;
    const dobInput = /** @type {HTMLInputElement} */ (form.querySelector('[name=date_of_birth]'));
    const dob = readDay(dobInput);
    const body = {
      full_name: text('full_name'), date_of_birth: dob ?? '', sex: text('sex') || null,
      phone: opt('phone'), cccd: opt('cccd'), bhyt: opt('bhyt'), address: opt('address'),
    };
    // What the page can tell without the server, all at once and next to each field (the server checks again).
    /** @type {[string, import('../i18n.js').Key][]} */
    const wrong = [];
    if (!body.full_name) wrong.push(['full_name', 'patient.nameMissing']);
    if (dob === null) wrong.push(['date_of_birth', 'patient.dobInvalid']);
    else if (!body.date_of_birth) wrong.push(['date_of_birth', 'patient.dobMissing']);
    else if (body.date_of_birth > localDay()) wrong.push(['date_of_birth', 'patient.dobFuture']);
    if (!body.sex) wrong.push(['sex', 'patient.sexMissing']);
    // The shapes the server checks too (it also checks a CCCD's province, century and sex digits).
    const phone = (body.phone ?? '').replace(/[\s.()-]/g, '').replace(/^\+?84(?=\d{9}$)/, '0');
    if (body.phone && !/^0[1-9]\d{8}$/.test(phone)) wrong.push(['phone', 'patient.phoneInvalid']);
    if (body.cccd && !/^\d{12}$/.test(body.cccd.replace(/\s/g, ''))) wrong.push(['cccd', 'patient.cccdInvalid']);
    const bhyt = (body.bhyt ?? '').replace(/\s/g, '').toUpperCase();
    if (body.bhyt && !/^(\d{10}|[A-Z]{2}[1-5]\d{12})$/.test(bhyt)) wrong.push(['bhyt', 'patient.bhytInvalid']);
    if (wrong.length) {
      return showProblem(form, {
        status: 422, code: 'validation_failed', detail: t('err.checkFields'),
        errors: wrong.map(([f, key]) => ({ field: f, code: key.endsWith('Missing') ? 'required' : 'invalid', message: t(key), message_en: t(key) })),
      });
    }
    const r = await busy(form, () => api('/api/patients', { method: 'POST', body }));
    if (!r) return;
    if (!r.ok) return showProblem(form, r.problem);
    rememberPatient(r.data);
    ctx.go(`#/patients/${r.data.id}`);
  });
  ctx.view.append(heading(t('patient.registerNew')), h('p', { class: 'muted' }, t('patient.registerIntro')), form);
}

/** @param {Patient} p @param {() => void} onSaved */
function vitalsForm(p, onSaved) {
  /** @type {[string, import('../i18n.js').Key, string, string][]} name, label, step, inputmode */
  const fields = [
    ['temperature_c', 'vitals.temperature', '0.1', 'decimal'],
    ['pulse_bpm', 'vitals.pulse', '1', 'numeric'],
    ['systolic_mmhg', 'vitals.systolic', '1', 'numeric'],
    ['diastolic_mmhg', 'vitals.diastolic', '1', 'numeric'],
    ['respiratory_rate', 'vitals.respiratory', '1', 'numeric'],
    ['spo2_pct', 'vitals.spo2', '1', 'numeric'],
    ['weight_kg', 'vitals.weight', '0.1', 'decimal'],
  ];
  const form = h('form', { class: 'grid-form compact', novalidate: true, id: 'vitals-form' },
    fields.map(([name, label, , mode]) => field(label, numberInput(name, { inputmode: mode }))),
    h('div', { class: 'wide row' }, h('button', { type: 'submit', class: 'primary' }, t('vitals.save'))),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    /** @type {Record<string, number>} */
    const body = {};
    /** @type {import('../api.js').FieldError[]} */
    const wrong = [];
    for (const [name] of fields) {
      const n = readNumber(/** @type {HTMLInputElement} */ (form.querySelector(`[name="${name}"]`)));
      if (n === undefined) continue;
      if (Number.isNaN(n)) wrong.push({ field: name, code: 'invalid_number', message: t('err.notNumber'), message_en: t('err.notNumber') });
      else body[name] = n;
    }
    if (wrong.length) return showProblem(form, { status: 422, code: 'validation_failed', detail: t('err.checkFields'), errors: wrong });
    const r = await busy(form, () => api(`/api/patients/${p.id}/vitals`, { method: 'POST', body }));
    if (!r) return;
    if (!r.ok) return showProblem(form, r.problem);
    form.reset();
    onSaved();
  });
  return form;
}

/** The consultation request: a reason, then urgent now or a booked slot. @param {Ctx} ctx @param {Patient} p */
async function requestForm(ctx, p) {
  const station = await facility(p.facility_id);
  const hospitalId = station?.referral_hospital_id ?? null;
  const hospital = await facility(hospitalId);
  const reason = h('textarea', { name: 'reason', rows: '3', maxlength: '2000', required: true });
  const slotDate = dayInput('date', { value: localDay() });
  const slots = h('div', { class: 'slots', id: 'slots' });
  const booking = h('div', { class: 'stack', hidden: true }, field('request.date', slotDate), slots);
  const urgent = h('button', { type: 'submit', class: 'danger', value: 'urgent', id: 'ask-urgent' }, t('request.urgent'));
  const book = h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false' }, t('request.book'));
  const form = h('form', { class: 'stack', novalidate: true, id: 'request-form' },
    hospital ? h('p', { class: 'muted' }, t('request.to', { hospital: hospital.name })) : null,
    field('request.reason', reason, { hint: t('request.reasonHint') }),
    h('div', { class: 'row' }, urgent, book),
    booking,
  );

  /** @param {{kind: 'urgent' | 'scheduled', scheduled_start?: string}} extra */
  async function send(extra) {
    clearProblem(form);
    const body = { patient_id: p.id, reason: reason.value.trim(), ...extra };
    const r = await busy(form, () => api('/api/consultations', { method: 'POST', body }));
    if (!r) return;
    if (!r.ok) return showProblem(form, r.problem);
    ctx.go(`#/consultations/${r.data.id}`);
  }

  /** Each load's number: an answer for a day the user has since changed is dropped, not shown over the newer one. */
  let loads = 0;
  async function loadSlots() {
    if (!hospitalId) return;
    const mine = ++loads;
    const day = readDay(slotDate);
    if (!day) return slots.replaceChildren(notice(t('date.invalid'), 'error'));
    slots.replaceChildren(h('p', { class: 'muted' }, t('app.loading')));
    const [r, doctors] = await Promise.all([api(`/api/facilities/${hospitalId}/slots?date=${encodeURIComponent(day)}`), hospitalDoctors(hospitalId)]);
    if (mine !== loads) return;
    if (!r.ok) return slots.replaceChildren(notice(r.problem.errors[0]?.message ?? t('err.listFailed'), 'error'));
    /** @type {Slot[]} */
    const list = r.data;
    const now = Date.now();
    const free = list.filter((s) => new Date(s.start).getTime() > now);
    if (!free.length) return slots.replaceChildren(h('p', { class: 'muted' }, t('request.noSlots')));
    const names = (/** @type {Slot} */ s) =>
      s.doctor_ids.map((d) => doctors.find((x) => x.id === d)?.display_name).filter(Boolean).join(', ');
    slots.replaceChildren(
      h('p', { class: 'muted' }, t('request.slotsHint')),
      h('div', { class: 'slot-grid' }, free.map((s) => h('button', {
        type: 'button', class: 'slot', title: names(s),
        onclick: () => {
          if (confirm(t('request.confirmSlot', { when: dateTime(s.start) }))) void send({ kind: 'scheduled', scheduled_start: s.start });
        },
      }, time(s.start)))),
    );
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void send({ kind: 'urgent' });
  });
  book.addEventListener('click', () => {
    booking.hidden = !booking.hidden;
    book.setAttribute('aria-expanded', String(!booking.hidden));
    if (!booking.hidden) void loadSlots();
  });
  slotDate.addEventListener('change', () => void loadSlots());
  return form;
}
