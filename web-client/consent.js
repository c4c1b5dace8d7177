// @ts-check
/**
 * The patient's consent to remote consultation and to the processing of their health data (Law 91/2025):
 * the health worker reads the text to the patient (or a guardian), records the answer, and can record a
 * withdrawal; the doctor sees whether it was given. Without a current consent the server refuses a
 * consultation, and the station's request form waits for it.
 */
import { api } from './api.js';
import { getLang, t } from './i18n.js';
import { age, busy, clearProblem, dateTime, field, h, input, notice, select, showProblem } from './ui.js';

/** @typedef {import('./types.js').Patient} Patient */
/** @typedef {import('./types.js').Consent} Consent */
/** @typedef {import('./types.js').ConsentText} ConsentText */

/** Below this age a parent or guardian answers (the server checks it too). */
export const GUARDIAN_BELOW_AGE = 16;

/** A patient's consent events, newest first; null when they could not be read. @param {string} patientId */
export async function consents(patientId) {
  const r = await api(`/api/patients/${patientId}/consents`);
  return r.ok ? /** @type {Consent[]} */ (r.data) : null;
}

/** Who answered, in words. @param {Consent} c */
function giver(c) {
  return c.given_by === 'guardian'
    ? t('consent.byGuardian', { name: c.guardian_name ?? '', relation: c.guardian_relation ?? '' })
    : t('consent.byPatient');
}

/** One event in a sentence: what, who answered, when, who attested it. @param {Consent} c */
function eventText(c) {
  return t(c.decision === 'granted' ? 'consent.grantedLine' : 'consent.withdrawnLine',
    { who: giver(c), when: dateTime(c.recorded_at), by: c.recorded_by_name, version: c.text_version });
}

/**
 * The consent as the doctor (or anyone reading the record) sees it: one line, marked when missing or withdrawn.
 * @param {Consent[] | null} list
 */
export function consentStatus(list) {
  const newest = list?.[0];
  if (!list) return notice(t('consent.unreadable'), 'error');
  const box = !newest
    ? notice(t('consent.missing'), 'warn')
    : newest.decision === 'granted'
      ? notice(eventText(newest), 'ok')
      : notice(t('consent.withdrawnNow', { line: eventText(newest) }), 'error');
  box.id = 'consent-status';
  return box;
}

/**
 * The station's consent panel: the current decision; when none is in force, the text to read and the form to
 * record the answer; when one is, a way to record a withdrawal. `onChange(granted)` runs after each load;
 * `loaded` settles after the first.
 * @param {Patient} p @param {(granted: boolean) => void} onChange
 */
export function consentPanel(p, onChange) {
  const body = h('div', { class: 'stack', id: 'consent-body' });
  const section = h('section', { class: 'panel', 'aria-labelledby': 'consent-title', id: 'consent' },
    h('h3', { id: 'consent-title' }, t('consent.title')), body);
  /** @type {ConsentText | null} */
  let text = null;

  async function load() {
    const [list, tr] = await Promise.all([consents(p.id), text ? null : api('/api/consent-text')]);
    if (tr?.ok) text = tr.data;
    if (!list || !text) {
      body.replaceChildren(notice(t('consent.unreadable'), 'error'));
      onChange(false);
      return;
    }
    const granted = list[0]?.decision === 'granted';
    body.replaceChildren(
      consentStatus(list),
      granted ? withdrawForm(text) : grantForm(text, list.length > 0),
      ...(list.length ? [h('details', { id: 'consent-history' }, h('summary', {}, t('consent.history', { n: list.length })),
        h('ul', { class: 'list' }, list.map((c) => h('li', { class: 'item' }, eventText(c)))))] : []),
    );
    onChange(granted);
  }

  /** The text as read to the patient: in the page's language, Vietnamese under it in English. @param {ConsentText} ct */
  function textBox(ct) {
    const en = getLang() === 'en';
    return h('div', { class: 'consent-text', id: 'consent-text' },
      h('h4', {}, en ? ct.title_en : ct.title),
      h('p', { class: 'pre' }, en ? ct.text_en : ct.text),
      en ? h('details', {}, h('summary', {}, t('consent.vietnameseText')), h('p', { class: 'pre', lang: 'vi' }, ct.text)) : null,
      h('p', { class: 'muted small' }, t('consent.version', { v: ct.version })));
  }

  /** Who answers: the patient, or a parent or guardian (named). @param {HTMLFormElement} form */
  function whoFields(form) {
    const minor = age(p.date_of_birth) < GUARDIAN_BELOW_AGE;
    const who = select('given_by', [['patient', t('consent.givenByPatient')], ['guardian', t('consent.givenByGuardian')]], minor ? 'guardian' : 'patient');
    const name = input('guardian_name', { autocomplete: 'off', maxlength: '200' });
    const relation = input('guardian_relation', { autocomplete: 'off', maxlength: '100', placeholder: t('consent.relationExample') });
    const guardian = h('div', { class: 'grid-form compact' }, field('consent.guardianName', name), field('consent.guardianRelation', relation));
    const sync = () => { guardian.hidden = who.value !== 'guardian'; };
    who.addEventListener('change', sync);
    sync();
    form.append(field('consent.givenBy', who, { hint: minor ? t('consent.minorHint', { n: GUARDIAN_BELOW_AGE }) : undefined }), guardian);
  }

  /** What the form says, checked in the page first (the server checks again). @param {HTMLFormElement} form */
  function read(form) {
    const data = new FormData(form);
    const s = (/** @type {string} */ k) => String(data.get(k) ?? '').trim();
    const body = { given_by: s('given_by'), guardian_name: s('guardian_name') || null, guardian_relation: s('guardian_relation') || null };
    if (body.given_by !== 'guardian') Object.assign(body, { guardian_name: null, guardian_relation: null });
    /** @type {import('./api.js').FieldError[]} */
    const wrong = [];
    const miss = (/** @type {string} */ f, /** @type {import('./i18n.js').Key} */ k) =>
      wrong.push({ field: f, code: 'required', message: t(k), message_en: t(k) });
    if (body.given_by === 'guardian' && !body.guardian_name) miss('guardian_name', 'consent.guardianNameMissing');
    if (body.given_by === 'guardian' && !body.guardian_relation) miss('guardian_relation', 'consent.guardianRelationMissing');
    return { body, wrong };
  }

  /** @param {ConsentText} ct @param {boolean} before whether an earlier decision exists */
  function grantForm(ct, before) {
    const attest = h('input', { type: 'checkbox', name: 'attest', id: 'consent-attest' });
    const attestError = h('p', { class: 'field-error', id: 'consent-attest-error', 'aria-live': 'polite' });
    const form = /** @type {HTMLFormElement} */ (h('form', { class: 'stack', novalidate: true, id: 'consent-form' },
      h('p', {}, before ? t('consent.askAgain') : t('consent.ask')),
      textBox(ct)));
    whoFields(form);
    form.append(
      h('label', { class: 'check', for: 'consent-attest' }, attest, t('consent.attest')), attestError,
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, t('consent.record'))));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearProblem(form);
      const { body, wrong } = read(form);
      if (wrong.length || !attest.checked) {
        // The tick alone missing is said beside it; other fields get the form's summary too.
        if (wrong.length) showProblem(form, { status: 422, code: 'validation_failed', detail: t('err.checkFields'), errors: wrong });
        if (!attest.checked) {
          attestError.textContent = t('consent.attestMissing');
          attest.setAttribute('aria-invalid', 'true');
          if (!wrong.length) attest.focus();
        }
        return;
      }
      const r = await busy(form, () => api(`/api/patients/${p.id}/consents`, {
        method: 'POST', body: { decision: 'granted', text_version: ct.version, ...body },
      }));
      if (!r) return;
      if (!r.ok) return showProblem(form, r.problem);
      await load();
    });
    return form;
  }

  /** @param {ConsentText} ct */
  function withdrawForm(ct) {
    const open = h('button', { type: 'button', class: 'secondary', id: 'consent-withdraw', 'aria-expanded': 'false' }, t('consent.withdraw'));
    const form = /** @type {HTMLFormElement} */ (h('form', { class: 'stack', novalidate: true, id: 'consent-withdraw-form', hidden: true },
      notice(t('consent.withdrawWarning'), 'warn')));
    whoFields(form);
    /** @type {HTMLSelectElement} */ (form.querySelector('[name=given_by]')).value = 'patient';
    form.querySelector('[name=given_by]')?.dispatchEvent(new Event('change'));
    form.append(h('div', { class: 'row' }, h('button', { type: 'submit', class: 'danger' }, t('consent.withdrawConfirm'))));
    open.addEventListener('click', () => {
      form.hidden = !form.hidden;
      open.setAttribute('aria-expanded', String(!form.hidden));
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearProblem(form);
      const { body, wrong } = read(form);
      if (wrong.length) return showProblem(form, { status: 422, code: 'validation_failed', detail: t('err.checkFields'), errors: wrong });
      const r = await busy(form, () => api(`/api/patients/${p.id}/consents`, {
        method: 'POST', body: { decision: 'withdrawn', text_version: ct.version, ...body },
      }));
      if (!r) return;
      if (!r.ok) return showProblem(form, r.problem);
      await load();
    });
    return h('div', { class: 'stack' }, h('details', {}, h('summary', {}, t('consent.showText')), textBox(ct)), h('div', { class: 'row' }, open), form);
  }

  return { section, loaded: load() };
}
