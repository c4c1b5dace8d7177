// @ts-check
/** A compact table of vital-sign measurements, newest first. */
import { t } from './i18n.js';
import { cards, dateTime, h } from './ui.js';

/** @typedef {import('./types.js').Vitals} Vitals */

/** @param {Vitals[]} list */
export function vitalsTable(list) {
  const v = (/** @type {number | null} */ x, /** @type {string} */ unit) => (x === null || x === undefined ? '—' : `${x} ${unit}`);
  const bp = (/** @type {Vitals} */ m) => (m.systolic_mmhg ? `${m.systolic_mmhg}/${m.diastolic_mmhg} mmHg` : '—');
  return cards(h('div', { class: 'table-wrap' }, h('table', { class: 'table vitals' },
    h('thead', {}, h('tr', {},
      [t('vitals.when'), t('vitals.temperatureShort'), t('vitals.pulseShort'), t('vitals.bp'), t('vitals.respiratoryShort'), 'SpO₂', t('vitals.weightShort')]
        .map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, list.map((m) => h('tr', {},
      h('td', {}, dateTime(m.recorded_at)), h('td', {}, v(m.temperature_c, '°C')), h('td', {}, v(m.pulse_bpm, t('unit.perMin'))),
      h('td', {}, bp(m)), h('td', {}, v(m.respiratory_rate, t('unit.perMin'))), h('td', {}, v(m.spo2_pct, '%')), h('td', {}, v(m.weight_kg, 'kg'))))),
  )));
}
