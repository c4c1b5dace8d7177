// @ts-check
/** The doctor's own weekly working hours (local time, UTC+7) and leave, which decide the bookable slots. */
import { api } from '../api.js';
import { t } from '../i18n.js';
import { busy, clearProblem, dateTime, field, formAlert, h, heading, input, notice, select, showProblem } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').WorkingHours} WorkingHours */
/** @typedef {import('../types.js').Leave} Leave */

/** @param {number} m minutes after midnight @returns {string} HH:MM */
const hhmm = (m) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
/** @param {string} s HH:MM @returns {number} */
const minutes = (s) => {
  const [hh, mm] = s.split(':').map(Number);
  return (hh ?? 0) * 60 + (mm ?? 0);
};

/** @param {Ctx} ctx */
export async function render(ctx) {
  const id = ctx.user.id;
  const [hr, lr] = await Promise.all([api(`/api/doctors/${id}/hours`), api(`/api/doctors/${id}/leave`)]);
  /** @type {WorkingHours[]} */
  const hours = hr.ok ? hr.data : [];
  const rows = h('div', { class: 'stack', id: 'hours-rows' });
  const days = [1, 2, 3, 4, 5, 6, 7].map((d) => /** @type {[string, string]} */ ([String(d), t(/** @type {import('../i18n.js').Key} */ (`day.${d}`))]));

  /** @param {WorkingHours} w */
  function addRow(w) {
    const row = h('div', { class: 'hours-row' },
      select('weekday', days, String(w.weekday), { 'aria-label': t('hours.day') }),
      input('start', { type: 'time', value: hhmm(w.start_minute), 'aria-label': t('hours.start'), step: '600' }),
      h('span', { 'aria-hidden': 'true' }, '–'),
      input('end', { type: 'time', value: hhmm(w.end_minute), 'aria-label': t('hours.end'), step: '600' }),
      h('button', { type: 'button', class: 'link-button', onclick: () => row.remove() }, t('hours.remove')));
    rows.append(row);
  }
  hours.sort((a, b) => a.weekday - b.weekday || a.start_minute - b.start_minute).forEach(addRow);

  const addBtn = h('button', { type: 'button', class: 'secondary' }, t('hours.add'));
  addBtn.addEventListener('click', () => addRow({ weekday: 1, start_minute: 7 * 60 + 30, end_minute: 11 * 60 + 30 }));
  const form = h('form', { class: 'stack', novalidate: true, id: 'hours-form' },
    h('p', { class: 'muted' }, t('hours.intro')), h('input', { type: 'hidden', name: 'hours' }), rows,
    h('div', { class: 'row' }, addBtn, h('button', { type: 'submit', class: 'primary' }, t('hours.save'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    const body = {
      hours: [...rows.children].map((row) => ({
        weekday: Number(/** @type {HTMLSelectElement} */ (row.querySelector('[name=weekday]')).value),
        start_minute: minutes(/** @type {HTMLInputElement} */ (row.querySelector('[name=start]')).value),
        end_minute: minutes(/** @type {HTMLInputElement} */ (row.querySelector('[name=end]')).value),
      })),
    };
    const r = await busy(form, () => api(`/api/doctors/${id}/hours`, { method: 'PUT', body }));
    if (!r) return;
    if (!r.ok) return showProblem(form, r.problem);
    formAlert(form).replaceChildren(notice(t('hours.saved'), 'ok'));
  });

  /** @type {Leave[]} */
  const leave = lr.ok ? lr.data : [];
  const leaveList = h('ul', { class: 'list', id: 'leave-list' });
  const renderLeave = () => leaveList.replaceChildren(...(leave.length ? leave.map((l) => h('li', { class: 'item' },
    h('div', { class: 'item-main' }, h('span', {}, `${dateTime(l.starts_at)} → ${dateTime(l.ends_at)}`), l.reason ? h('span', { class: 'muted' }, l.reason) : null),
    h('div', { class: 'item-actions' }, h('button', { type: 'button', class: 'link-button', onclick: async () => {
      const r = await api(`/api/doctors/${id}/leave/${l.id}`, { method: 'DELETE' });
      if (r.ok) {
        leave.splice(leave.indexOf(l), 1);
        renderLeave();
      }
    } }, t('hours.remove'))))) : [h('li', { class: 'muted' }, t('leave.none'))]));
  renderLeave();
  const leaveForm = h('form', { class: 'grid-form', novalidate: true, id: 'leave-form' },
    field('leave.from', input('starts_at', { type: 'datetime-local', required: true })),
    field('leave.to', input('ends_at', { type: 'datetime-local', required: true })),
    field('leave.reason', input('reason', { maxlength: '200' }), { wide: true }),
    h('div', { class: 'wide row' }, h('button', { type: 'submit', class: 'primary' }, t('leave.add'))));
  leaveForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(leaveForm);
    const data = new FormData(leaveForm);
    // The form's times are Vietnam local time, whatever the computer's zone.
    const at = (/** @type {string} */ k) => (data.get(k) ? `${data.get(k)}:00+07:00` : '');
    const body = { starts_at: at('starts_at'), ends_at: at('ends_at'), reason: String(data.get('reason') ?? '') };
    const r = await busy(leaveForm, () => api(`/api/doctors/${id}/leave`, { method: 'POST', body }));
    if (!r) return;
    if (!r.ok) return showProblem(leaveForm, r.problem);
    leave.push(r.data);
    leaveForm.reset();
    renderLeave();
  });

  ctx.view.append(
    heading(t('nav.hours')),
    ...(hr.ok ? [] : [notice(t('err.listFailed'), 'error')]),
    h('section', { class: 'panel' }, h('h3', {}, t('hours.title')), form),
    h('section', { class: 'panel' }, h('h3', {}, t('leave.title')), leaveList, leaveForm),
  );
}
