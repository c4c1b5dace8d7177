// @ts-check
/**
 * The consultation summary a station prints or hands over (A4, or an 80 mm thermal printer's narrow roll): the
 * patient, the latest vital signs, the doctor's assessment, the ICD-10 diagnoses, the plan and the disposition
 * (with the receiving hospital for a referral), and who signed it when. Left out on purpose: the doctor's
 * working notes (history and findings, S and O), the chat, call quality, and the patient's identifiers (CCCD,
 * insurance, phone, address) — the sheet goes home with the patient and may be seen by others.
 */
import { api } from '../api.js';
import { consents } from '../consent.js';
import { doctorName, facility, patient } from '../data.js';
import { getLang, t } from '../i18n.js';
import { icdName, loadIcd } from '../icd10.js';
import { age, date, dateTime, h } from '../ui.js';
import { vitalsTable } from '../vitals.js';

/** @typedef {import('../types.js').Consultation} Consultation */
/** @typedef {import('../types.js').Note} Note */

/**
 * Builds the sheet (replacing any earlier one) and opens the browser's print dialog.
 * @param {Consultation} c @param {Note} n the signed note @param {'a4' | 'narrow'} size
 */
export async function printSummary(c, n, size) {
  const [p, station, hospital, signer, vr, , cl] = await Promise.all([
    patient(c.patient_id), facility(c.station_id), facility(c.hospital_id), doctorName(c.hospital_id, n.author_id),
    api(`/api/patients/${c.patient_id}/vitals`), loadIcd(), consents(c.patient_id),
  ]);
  // The consent in force when the consultation was asked for (the record shows it was given, and when).
  const asked = c.created_at;
  const inForce = cl?.find((x) => x.recorded_at <= asked);
  const consent = inForce?.decision === 'granted'
    ? t('print.consentGiven', { when: dateTime(inForce.recorded_at), version: inForce.text_version })
    : null;
  if (!p) return;
  const vitals = vr.ok && Array.isArray(vr.data) ? vr.data.slice(0, 1) : [];
  const en = getLang() === 'en';
  const icd = (/** @type {string} */ code) => {
    const e = icdName(code);
    return e ? `${code} — ${en ? e[2] : e[1]}` : code;
  };
  const referral = n.disposition === 'refer' || n.disposition === 'transfer';
  /** @param {import('../i18n.js').Key} k @param {string | HTMLElement | null} v */
  const row = (k, v) => (v ? [h('dt', {}, t(k)), h('dd', {}, v)] : []);
  const sheet = h('section', { id: 'print-summary', class: size === 'narrow' ? 'narrow' : 'a4', 'aria-hidden': 'true' },
    h('header', {},
      h('p', { class: 'print-org' }, station?.name ?? ''),
      h('h1', {}, t('print.title')),
      h('p', {}, t('print.with', { hospital: hospital?.name ?? '—' }))),
    h('dl', { class: 'print-facts' },
      row('print.patient', p.full_name),
      row('patient.dob', `${date(p.date_of_birth)} (${t('patient.ageShort', { n: age(p.date_of_birth) })})`),
      row('patient.sex', t(`sex.${p.sex}`)),
      row('print.date', dateTime(c.started_at ?? c.created_at)),
      row('consult.reason', c.reason),
      row('print.consent', consent)),
    vitals.length ? [h('h2', {}, t('vitals.title')), vitalsTable(vitals, { dob: p.date_of_birth })] : null,
    h('h2', {}, t('note.assessment')), h('p', { class: 'pre' }, n.assessment || '—'),
    n.icd10_codes.length ? [h('h2', {}, t('print.diagnoses')), h('ul', {}, n.icd10_codes.map((code) => h('li', {}, icd(code))))] : null,
    h('h2', {}, t('note.plan')), h('p', { class: 'pre' }, n.plan || '—'),
    h('h2', {}, t('note.disposition')),
    h('p', {}, n.disposition ? t(`disp.${n.disposition}`) : '—',
      referral ? ` — ${t('print.receiving', { hospital: hospital?.name ?? '—' })}` : ''),
    h('p', { class: 'print-signed' }, t('print.signed', { name: signer ?? '—', when: dateTime(n.signed_at) }),
      n.amends_note_id ? ` (${t('note.isAmendment')})` : ''),
    h('p', { class: 'print-foot' }, t('print.foot'), ' ', t('print.printed', { when: dateTime(new Date().toISOString()) })),
  );
  document.getElementById('print-summary')?.remove();
  document.body.append(sheet);
  window.print();
}
