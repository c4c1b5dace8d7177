// @ts-check
/**
 * A compact table of vital-sign measurements, newest first, with values outside the usual range for the
 * patient's age marked (an arrow and a word, not colour alone): the figures that decide a referral or a dose must
 * be seen without scrolling, and an abnormal one must stand out.
 */
import { t } from './i18n.js';
import { cards, date, decimal, h, localDay, time } from './ui.js';

/** @typedef {import('./types.js').Vitals} Vitals */
/** @typedef {'high' | 'low' | null} Flag */

/**
 * The usual range of each measurement at an age (months), for flagging only: a prompt to look, not a diagnosis.
 * Adults: fever from 37.5 °C; pulse 50-100; systolic 90-139 and diastolic under 90 mmHg; breathing 10-20 a
 * minute; SpO₂ from 95 %. Children: WHO's fast-breathing thresholds (60 under 2 months, 50 under a year, 40 under
 * five years, 30 under twelve) and the usual pulse for the age; blood pressure is not flagged under 18.
 * @param {number | null} months
 */
function ranges(months) {
  const m = months ?? 18 * 12;
  const breathing = m < 2 ? 59 : m < 12 ? 49 : m < 60 ? 39 : m < 144 ? 29 : 20;
  const pulse = m < 12 ? [100, 160] : m < 60 ? [80, 140] : m < 144 ? [70, 120] : [50, 100];
  const adult = m >= 18 * 12;
  return {
    temperature_c: [35.5, 37.4],
    pulse_bpm: pulse,
    systolic_mmhg: adult ? [90, 139] : null,
    diastolic_mmhg: adult ? [0, 89] : null,
    respiratory_rate: [m < 144 ? 0 : 10, breathing],
    spo2_pct: [95, 100],
  };
}

/**
 * Whether `value` is above or below its usual range. @param {number | null | undefined} value
 * @param {number[] | null} range @returns {Flag}
 */
function flag(value, range) {
  if (value === null || value === undefined || !range) return null;
  if (value > range[1]) return 'high';
  if (value < range[0]) return 'low';
  return null;
}

/** Age in whole months at `when` (YYYY-MM-DD), or null. @param {string | undefined} dob @param {string} when */
function monthsAt(dob, when) {
  if (!dob) return null;
  const [y, m, d] = dob.split('-').map(Number);
  const at = new Date(when);
  let months = (at.getFullYear() - y) * 12 + (at.getMonth() + 1 - m);
  if (at.getDate() < d) months -= 1;
  return Math.max(0, months);
}

/** A cell: the value, and when it is out of range an arrow and a word. @param {string} text @param {Flag} f */
function cell(text, f) {
  if (!f) return h('td', {}, text);
  return h('td', { class: `abnormal ${f}` }, h('strong', {}, text), ' ', h('span', { class: 'flag' }, f === 'high' ? `▲ ${t('vitals.high')}` : `▼ ${t('vitals.low')}`));
}

/** @param {Vitals[]} list @param {{dob?: string}} [patient] the patient's date of birth, for the ranges of a child */
export function vitalsTable(list, patient = {}) {
  const num = (/** @type {number | null | undefined} */ x) => (x === null || x === undefined ? '—' : decimal(x));
  let flagged = false;
  const rows = list.map((m) => {
    const r = ranges(monthsAt(patient.dob, m.recorded_at));
    const f = {
      temperature_c: flag(m.temperature_c, r.temperature_c),
      pulse_bpm: flag(m.pulse_bpm, r.pulse_bpm),
      bp: flag(m.systolic_mmhg, r.systolic_mmhg) ?? flag(m.diastolic_mmhg, r.diastolic_mmhg),
      respiratory_rate: flag(m.respiratory_rate, r.respiratory_rate),
      spo2_pct: flag(m.spo2_pct, r.spo2_pct),
    };
    if (Object.values(f).some(Boolean)) flagged = true;
    return h('tr', {},
      // Time, then the day: the column may wrap between them instead of widening the table.
      h('td', { class: 'when' }, h('span', {}, time(m.recorded_at)), ' ', h('span', { class: 'muted' }, date(localDay(new Date(m.recorded_at))))),
      cell(num(m.temperature_c), f.temperature_c),
      cell(num(m.pulse_bpm), f.pulse_bpm),
      cell(m.systolic_mmhg ? `${m.systolic_mmhg}/${m.diastolic_mmhg ?? '—'}` : '—', f.bp),
      cell(num(m.respiratory_rate), f.respiratory_rate),
      cell(num(m.spo2_pct), f.spo2_pct),
      h('td', {}, num(m.weight_kg)));
  });
  /** @type {[string, string][]} column, unit */
  const columns = [
    [t('vitals.when'), ''], [t('vitals.temperatureShort'), '°C'], [t('vitals.pulseShort'), t('unit.perMin')],
    [t('vitals.bp'), 'mmHg'], [t('vitals.respiratoryShort'), t('unit.perMin')], ['SpO₂', '%'], [t('vitals.weightShort'), 'kg'],
  ];
  const table = cards(h('div', { class: 'table-wrap' }, h('table', { class: 'table vitals' },
    h('thead', {}, h('tr', {}, columns.map(([name, unit]) => h('th', { scope: 'col' }, unit ? `${name} (${unit})` : name)))),
    h('tbody', {}, rows),
  )));
  return flagged ? h('div', { class: 'vitals-box' }, table, h('p', { class: 'hint' }, t('vitals.flagHint'))) : table;
}
