// @ts-check
/** Admin: consultations as sessions (times, state, call quality), with filters. */
import { api, query } from '../api.js';
import { facilities } from '../data.js';
import { t } from '../i18n.js';
import { busy, dateTime, dayInput, decimal, dayRange, field, h, heading, numberInput, readNumber, select, showProblem, stateBadge } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').SessionSummary} SessionSummary */
/** @typedef {import('../i18n.js').Key} Key */

const STATES = ['requested', 'scheduled', 'in_progress', 'completed', 'cancelled', 'no_show', 'interrupted'];

/** @param {number | null | undefined} x @param {string} unit @param {number} [digits] */
export const num = (x, unit, digits = 1) => (x === null || x === undefined ? '—' : `${decimal(x, digits)} ${unit}`);
/** @param {number | null | undefined} s seconds */
export const duration = (s) => (s === null || s === undefined ? '—' : `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, '0')}`);

/** @param {Ctx} ctx */
export async function render(ctx) {
  const facs = await facilities();
  const facName = (/** @type {string | null} */ id) => facs.find((f) => f.id === id)?.name ?? '—';
  const from = dayInput('from');
  const to = dayInput('to');
  const minLoss = numberInput('min_worst_loss_pct');
  const form = h('form', { class: 'filters', novalidate: true, id: 'session-filters' },
    field('filter.from', from),
    field('filter.to', to),
    field('filter.facility', select('facility_id', [['', t('filter.all')], ...facs.map((f) => /** @type {[string, string]} */ ([f.id, f.name]))])),
    field('filter.state', select('state', [['', t('filter.all')], ...STATES.map((s) => /** @type {[string, string]} */ ([s, t(/** @type {Key} */ (`state.${s}`))]))])),
    field('filter.minLoss', minLoss),
    h('div', { class: 'row end' }, h('button', { type: 'submit', class: 'primary' }, t('filter.apply'))));
  const list = h('ul', { class: 'list', id: 'sessions' });
  const status = h('p', { class: 'muted', role: 'status' });

  async function load() {
    const d = new FormData(form);
    const days = dayRange(from, to);
    const loss = readNumber(minLoss);
    if (Number.isNaN(loss)) days.errors.push({ field: 'min_worst_loss_pct', code: 'invalid_number', message: t('err.notNumber'), message_en: t('err.notNumber') });
    if (days.errors.length) return showProblem(form, { status: 422, code: 'validation_failed', detail: t('err.checkFields'), errors: days.errors });
    const q = query({
      from: days.from, to: days.to, facility_id: String(d.get('facility_id') ?? ''), state: String(d.get('state') ?? ''),
      min_worst_loss_pct: loss, limit: 200,
    });
    const r = await api(`/api/sessions${q}`);
    if (!r.ok) return showProblem(form, r.problem);
    /** @type {SessionSummary[]} */
    const rows = r.data;
    status.textContent = rows.length ? t('sessions.count', { n: rows.length }) : t('sessions.none');
    list.replaceChildren(...rows.map((s) => h('li', { class: 'item', 'data-session': s.consultation_id },
      h('div', { class: 'item-main' },
        h('a', { href: `#/admin/sessions/${s.consultation_id}`, class: 'item-title' }, `${facName(s.station_id)} → ${facName(s.hospital_id)}`),
        h('div', { class: 'item-meta' }, stateBadge(s.state),
          h('span', { class: `badge kind-${s.kind}` }, t(s.kind === 'urgent' ? 'consult.urgent' : 'consult.scheduled')),
          h('span', { class: 'muted' }, dateTime(s.created_at))),
        h('div', { class: 'item-meta muted' },
          h('span', {}, `${t('quality.duration')}: ${duration(s.quality.duration_secs)}`),
          h('span', { class: lossClass(s.quality.worst_loss_pct) }, `${t('quality.worstLoss')}: ${num(s.quality.worst_loss_pct, '%')}`),
          h('span', {}, `${t('quality.avgRtt')}: ${num(s.quality.avg_rtt_ms, 'ms', 0)}`),
          s.quality.reconnections ? h('span', {}, `${t('quality.reconnections')}: ${s.quality.reconnections}`) : null)))));
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void busy(form, load);
  });
  ctx.view.append(heading(t('nav.sessions')), h('section', { class: 'panel' }, form), h('section', { class: 'panel' }, status, list));
  await load();
}

/** @param {number | null} loss */
export const lossClass = (loss) => (loss === null ? '' : loss >= 10 ? 'bad' : loss >= 3 ? 'warn-text' : '');
