// @ts-check
/** Admin: the audit trail, newest first, with filters and paging back in time. */
import { api, query } from '../api.js';
import { t } from '../i18n.js';
import { busy, cards, dateTime, field, h, heading, input, notice, showProblem } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').AuditEntry} AuditEntry */
/** @typedef {import('../types.js').User} User */

const PAGE = 100;

/** @param {Ctx} ctx */
export async function render(ctx) {
  const ur = await api('/api/users');
  /** @type {Map<string, string>} */
  const names = new Map((ur.ok ? /** @type {User[]} */ (ur.data) : []).map((u) => [u.id, u.username]));
  const from = input('from', { type: 'date' });
  const to = input('to', { type: 'date' });
  const form = h('form', { class: 'filters', novalidate: true, id: 'audit-filters' },
    field('audit.action', input('action', { placeholder: 'patient.read' })),
    field('audit.patient', input('patient_id', { autocomplete: 'off' })),
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
    const day = (/** @type {string} */ k, /** @type {number} */ add) => {
      const v = String(d.get(k) ?? '');
      if (!v) return undefined;
      const at = new Date(`${v}T00:00:00+07:00`);
      at.setUTCDate(at.getUTCDate() + add);
      return at.toISOString();
    };
    const q = query({
      action: String(d.get('action') ?? '').trim(), patient_id: String(d.get('patient_id') ?? '').trim(),
      from: day('from', 0), to: day('to', 1), before_id: before, limit: PAGE,
    });
    const r = await api(`/api/audit${q}`);
    if (!r.ok) return showProblem(form, r.problem);
    /** @type {AuditEntry[]} */
    const rows = r.data;
    const trs = rows.map((a) => h('tr', { class: a.outcome === 'denied' ? 'denied' : '' },
      h('td', {}, dateTime(a.at)), h('td', {}, a.actor_id ? names.get(a.actor_id) ?? a.actor_id.slice(0, 8) : '—'),
      h('td', {}, h('code', {}, a.action)), h('td', {}, `${a.resource_type}${a.resource_id ? ` ${a.resource_id.slice(0, 8)}` : ''}`),
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
