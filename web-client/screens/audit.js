// @ts-check
/** Admin: the audit trail, newest first, with filters and paging back in time. */
import { api, query } from '../api.js';
import { t } from '../i18n.js';
import { busy, cards, dateTime, dayInput, dayRange, field, h, heading, input, notice, select, showProblem } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').AuditEntry} AuditEntry */
/** @typedef {import('../types.js').User} User */

const PAGE = 100;

/** The actions the server writes, for the filter (each with its words in lang/*.js as `act.<action>`). */
export const ACTIONS = /** @type {const} */ ([
  'patient.read',
  'patient.create',
  'patient.update',
  'patient.search',
  'patient.access',
  'patient.cccd_elsewhere',
  'vitals.create',
  'vitals.read',
  'consent.grant',
  'consent.withdraw',
  'consent.read',
  'consultation.create',
  'consultation.read',
  'consultation.accept',
  'consultation.transition',
  'consultation.reschedule',
  'consultation.access',
  'note.create',
  'note.update',
  'note.read',
  'note.sign',
  'note.amend',
  'note.access',
  'photo.create',
  'photo.read',
  'photo.list',
  'call.join',
  'auth.login',
  'auth.logout',
  'auth.refresh_reused',
  'auth.refresh_ahead_of_clock',
  'user.create',
  'user.update',
  'user.password_confirm',
  'facility.create',
  'facility.update',
  'schedule.hours',
  'schedule.leave',
  'schedule.leave_delete',
  'audit.verify',
]);

/** An action in words (its code when it is not one we know). @param {string} a */
const actionText = (a) => (ACTIONS.includes(/** @type {any} */ (a)) ? t(/** @type {import('../i18n.js').Key} */ (`act.${a}`)) : a);

/** @param {Ctx} ctx */
export async function render(ctx) {
  const ur = await api('/api/users');
  /** @type {User[]} */
  const people = ur.ok ? ur.data : [];
  /** @type {Map<string, string>} */
  const names = new Map(people.map((u) => [u.id, `${u.display_name} (${u.username})`]));
  const from = dayInput('from');
  const to = dayInput('to');
  // Pickers with names, not codes and ids nobody knows.
  const actionSelect = select('action', [['', t('audit.anyAction')],
    ...ACTIONS.map((a) => /** @type {[string, string]} */ ([a, actionText(a)])).sort((x, y) => x[1].localeCompare(y[1]))]);
  const actorSelect = select('actor_id', [['', t('audit.anyone')],
    ...people.map((u) => /** @type {[string, string]} */ ([u.id, `${u.display_name} (${u.username}, ${t(/** @type {import('../i18n.js').Key} */ (`role.${u.role}`))})`]))
      .sort((x, y) => x[1].localeCompare(y[1]))]);
  const form = h('form', { class: 'filters', novalidate: true, id: 'audit-filters' },
    field('audit.actor', actorSelect),
    field('audit.action', actionSelect),
    field('audit.patient', input('patient_id', { autocomplete: 'off' }), { hint: t('audit.patientHint') }),
    field('filter.from', from), field('filter.to', to),
    h('div', { class: 'row end' }, h('button', { type: 'submit', class: 'primary' }, t('filter.apply'))));
  const body = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, t('audit.more'));
  const status = h('p', { class: 'muted', role: 'status' });
  /** @type {number | null} */
  let before = null;

  /** @param {boolean} reset */
  async function load(reset) {
    if (reset) before = null;
    const d = new FormData(form);
    const days = dayRange(from, to);
    if (days.errors.length) return showProblem(form, { status: 422, code: 'validation_failed', detail: t('err.checkFields'), errors: days.errors });
    const q = query({
      action: String(d.get('action') ?? ''), actor_id: String(d.get('actor_id') ?? ''), patient_id: String(d.get('patient_id') ?? '').trim(),
      from: days.from, to: days.to, before_id: before, limit: PAGE,
    });
    const r = await api(`/api/audit${q}`);
    if (!r.ok) return showProblem(form, r.problem);
    /** @type {AuditEntry[]} */
    const rows = r.data;
    const trs = rows.map((a) => h('tr', { class: a.outcome === 'denied' ? 'denied' : '' },
      h('td', {}, dateTime(a.at)), h('td', {}, a.actor_id ? names.get(a.actor_id) ?? a.actor_id.slice(0, 8) : '—'),
      h('td', { 'data-action': a.action }, actionText(a.action)), h('td', {}, `${a.resource_type}${a.resource_id ? ` ${a.resource_id.slice(0, 8)}` : ''}`),
      h('td', {}, a.patient_id ? a.patient_id.slice(0, 8) : '—'), h('td', {}, a.client_addr ?? '—'),
      h('td', {}, a.outcome === 'ok' ? t('audit.ok') : t('audit.denied'))));
    if (reset) body.replaceChildren(...trs);
    else body.append(...trs);
    before = rows.length ? rows[rows.length - 1].id : before;
    more.hidden = rows.length < PAGE;
    status.textContent = body.children.length ? '' : t('audit.none');
    cards(/** @type {HTMLElement} */ (body.closest('.table-wrap')));
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void busy(form, () => load(true));
  });
  more.addEventListener('click', () => void busy(more, () => load(false)));

  ctx.view.append(heading(t('nav.audit')),
    h('section', { class: 'panel' }, form),
    h('section', { class: 'panel' }, status,
      h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'audit' },
        h('thead', {}, h('tr', {}, [t('audit.at'), t('audit.actor'), t('audit.action'), t('audit.resource'), t('audit.patient'), t('audit.addr'), t('audit.outcome')].map((x) => h('th', { scope: 'col' }, x)))),
        body)), more));
  if (!ur.ok) ctx.view.append(notice(t('err.listFailed'), 'error'));
  await load(true);
}
