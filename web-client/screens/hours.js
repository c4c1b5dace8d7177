// @ts-check
/** The doctor's own weekly working hours (local time, UTC+7) and leave, which decide the bookable slots. */
import { api } from '../api.js';
import { t } from '../i18n.js';
import {
  busy, clearProblem, dateTime, dayInput, field, formAlert, h, heading, input, notice, readDay, readTime, select, showProblem, timeInput,
} from '../ui.js';

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
      timeInput('start', { value: hhmm(w.start_minute), 'aria-label': t('hours.start') }),
      h('span', { 'aria-hidden': 'true' }, '–'),
      timeInput('end', { value: hhmm(w.end_minute), 'aria-label': t('hours.end') }),
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
    let wrongTime = false;
    const body = {
      hours: [...rows.children].map((row) => {
        /** @param {string} name */
        const at = (name) => {
          const el = /** @type {HTMLInputElement} */ (row.querySelector(`[name=${name}]`));
          const v = readTime(el);
          if (!v) {
            wrongTime = true;
            el.setAttribute('aria-invalid', 'true');
          }
          return minutes(v ?? '');
        };
        return {
          weekday: Number(/** @type {HTMLSelectElement} */ (row.querySelector('[name=weekday]')).value),
          start_minute: at('start'),
          end_minute: at('end'),
        };
      }),
    };
    if (wrongTime) return void (formAlert(form).textContent = t('time.invalid'));
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
    field('leave.from', dayInput('starts_day', { required: true }), { hint: t('date.hint') }),
    field('leave.fromTime', timeInput('starts_time', { value: '00:00' })),
    field('leave.to', dayInput('ends_day', { required: true })),
    field('leave.toTime', timeInput('ends_time', { value: '24:00' })),
    field('leave.reason', input('reason', { maxlength: '200' }), { wide: true }),
    h('div', { class: 'wide row' }, h('button', { type: 'submit', class: 'primary' }, t('leave.add'))));
  leaveForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(leaveForm);
    const data = new FormData(leaveForm);
    /** @type {import('../api.js').FieldError[]} */
    const errors = [];
    // The form's times are Vietnam local time, whatever the computer's zone; 24:00 is the end of that day.
    /** @param {'starts' | 'ends'} k @returns {string} */
    const at = (k) => {
      const dayEl = /** @type {HTMLInputElement} */ (leaveForm.querySelector(`[name=${k}_day]`));
      const timeEl = /** @type {HTMLInputElement} */ (leaveForm.querySelector(`[name=${k}_time]`));
      const day = readDay(dayEl);
      const time = readTime(timeEl);
      if (!day) errors.push({ field: dayEl.name, code: day === '' ? 'required' : 'invalid_date', message: t(day === '' ? 'date.missing' : 'date.invalid') });
      if (time === null) errors.push({ field: timeEl.name, code: 'invalid_time', message: t('time.invalid') });
      if (!day || time === null) return '';
      const d = new Date(`${day}T${time === '24:00' || !time ? '00:00' : time}:00+07:00`);
      if (time === '24:00' || (!time && k === 'ends')) d.setUTCDate(d.getUTCDate() + 1);
      return d.toISOString();
    };
    const body = { starts_at: at('starts'), ends_at: at('ends'), reason: String(data.get('reason') ?? '') };
    if (errors.length) return showProblem(leaveForm, { status: 422, code: 'validation_failed', detail: t('err.checkFields'), errors });
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
