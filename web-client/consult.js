// @ts-check
/** Consultation helpers shared by the station's and the doctor's lists. */
import { patient } from './data.js';
import { t } from './i18n.js';
import { age, dateTime, h, stateBadge, time } from './ui.js';

/** @typedef {import('./types.js').Consultation} Consultation */

/** Waiting in a hospital's queue: urgent, not yet taken by a doctor (as the server says). @param {Consultation} c */
export const queued = (c) => c.call === 'not_accepted';

/**
 * 1-based place of `c` in its hospital's queue among the consultations in `list` (oldest first), or null.
 * @param {Consultation} c @param {Consultation[]} list
 */
export function queuePlace(c, list) {
  if (!queued(c)) return null;
  const ahead = list.filter((o) => queued(o) && o.hospital_id === c.hospital_id && o.created_at < c.created_at);
  return ahead.length + 1;
}

/** Minutes since an instant, for "waiting 12 min". @param {string} iso */
export const minutesSince = (iso) => Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 60000));

/**
 * One consultation as a list item linking to its page.
 * @param {Consultation} c @param {{place?: number | null, extra?: (Node | string | null)[], actions?: Node[]}} [opts]
 * @returns {Promise<HTMLLIElement>}
 */
export async function consultationItem(c, opts = {}) {
  const p = await patient(c.patient_id);
  const name = p ? `${p.full_name} (${t('patient.ageShort', { n: age(p.date_of_birth) })})` : t('patient.unknown');
  const when = c.kind === 'scheduled' && c.scheduled_start
    ? t('consult.at', { when: dateTime(c.scheduled_start) })
    : t('consult.requestedAt', { when: time(c.created_at) });
  return h('li', { class: 'item', 'data-consultation': c.id, 'data-state': c.state },
    h('div', { class: 'item-main' },
      h('a', { href: `#/consultations/${c.id}`, class: 'item-title' }, name),
      h('div', { class: 'item-meta' },
        stateBadge(c.state, Boolean(c.doctor_id)),
        h('span', { class: `badge kind-${c.kind}` }, t(c.kind === 'urgent' ? 'consult.urgent' : 'consult.scheduled')),
        opts.place ? h('span', { class: 'badge place', 'data-place': opts.place }, t('consult.place', { n: opts.place })) : null,
        h('span', { class: 'muted' }, when),
      ),
      h('p', { class: 'reason' }, c.reason),
      ...(opts.extra ?? []),
    ),
    opts.actions?.length ? h('div', { class: 'item-actions' }, ...opts.actions) : null,
  );
}
