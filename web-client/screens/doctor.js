// @ts-check
/**
 * The doctor's desk: the hospital's urgent queue and today's schedule, live. A new urgent request is shown
 * with a highlight and a short chime (WebAudio), and counted in the tab title.
 */
import { api } from '../api.js';
import { consultationItem, minutesSince, queued } from '../consult.js';
import { facility } from '../data.js';
import { t } from '../i18n.js';
import { busy, chime, debounce, h, heading, localDay, notice } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').Consultation} Consultation */

/** @param {Ctx} ctx */
export async function render(ctx) {
  const hospital = await facility(ctx.user.facility_id);
  const queue = h('ul', { class: 'list', id: 'queue' });
  const queueStatus = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const mine = h('ul', { class: 'list', id: 'mine' });
  const today = h('ul', { class: 'list', id: 'today' });
  const alert = h('div', { id: 'new-alert', role: 'alert' });
  ctx.view.append(
    heading(hospital?.name ?? t('nav.doctor')),
    alert,
    h('div', { class: 'split' },
      h('section', { class: 'panel', 'aria-labelledby': 'queue-title' }, h('h3', { id: 'queue-title' }, t('doctor.queue')), queueStatus, queue),
      h('div', {},
        h('section', { class: 'panel', 'aria-labelledby': 'mine-title' }, h('h3', { id: 'mine-title' }, t('doctor.mine')), mine),
        h('section', { class: 'panel', 'aria-labelledby': 'today-title' }, h('h3', { id: 'today-title' }, t('doctor.today')), today))),
  );

  /** @type {Set<string> | null} ids seen in the queue; null before the first load (no chime for those) */
  let seen = null;
  const title = document.title;
  ctx.cleanup(() => (document.title = title));
  let seq = 0;

  async function load() {
    const my = ++seq;
    const r = await api('/api/consultations?limit=500');
    if (my !== seq) return;
    if (!r.ok) return queueStatus.replaceChildren(notice(t('err.listFailed'), 'error'));
    /** @type {Consultation[]} */
    const list = r.data;
    const waiting = list.filter(queued).sort((a, b) => a.created_at.localeCompare(b.created_at));
    const fresh = seen ? waiting.filter((c) => !(/** @type {Set<string>} */ (seen)).has(c.id)) : [];
    seen = new Set(waiting.map((c) => c.id));
    const day = localDay();
    // Mine and open, bookings aside (they are in the day's schedule below).
    const active = list.filter((c) => c.participant && !c.closed && c.kind !== 'scheduled');
    const scheduled = list
      .filter((c) => c.kind === 'scheduled' && c.scheduled_start && localDay(new Date(c.scheduled_start)) === day && (!c.doctor_id || c.doctor_id === ctx.user.id))
      .sort((a, b) => String(a.scheduled_start).localeCompare(String(b.scheduled_start)));

    const queueItems = await Promise.all(waiting.map((c, i) => consultationItem(c, {
      place: i + 1,
      extra: [h('p', { class: 'muted' }, t('consult.waiting', { n: minutesSince(c.created_at) }))],
      actions: [acceptButton(ctx, c)],
    })));
    const mineItems = await Promise.all(active.map((c) => consultationItem(c)));
    const todayItems = await Promise.all(scheduled.map((c) => consultationItem(c)));
    if (my !== seq) return;
    for (const li of queueItems) if (fresh.some((c) => c.id === li.dataset.consultation)) li.classList.add('new');
    queue.replaceChildren(...queueItems);
    mine.replaceChildren(...(mineItems.length ? mineItems : [h('li', { class: 'muted' }, t('doctor.noneMine'))]));
    today.replaceChildren(...(todayItems.length ? todayItems : [h('li', { class: 'muted' }, t('doctor.noneToday'))]));
    queueStatus.textContent = waiting.length ? t('doctor.queueCount', { n: waiting.length }) : t('doctor.queueEmpty');
    document.title = waiting.length ? `(${waiting.length}) ${title}` : title;
    if (fresh.length) {
      chime();
      alert.replaceChildren(notice(t('doctor.newUrgent', { n: fresh.length }), 'warn'));
    }
  }

  const reload = debounce(() => void load(), 200);
  ctx.cleanup(ctx.socket.onChange(reload));
  ctx.cleanup(ctx.socket.onResync(reload));
  // Waiting times move on even when nothing is pushed.
  const tick = setInterval(reload, 60_000);
  ctx.cleanup(() => {
    clearInterval(tick);
    reload.cancel();
  });
  await load();
}

/** @param {Ctx} ctx @param {Consultation} c */
function acceptButton(ctx, c) {
  const b = h('button', { type: 'button', class: 'primary', 'data-action': 'accept' }, t('consult.accept'));
  b.addEventListener('click', async () => {
    const r = await busy(b, () => api(`/api/consultations/${c.id}/accept`, { method: 'POST' }));
    if (!r) return;
    if (r.ok) return ctx.go(`#/consultations/${c.id}`);
    b.replaceWith(notice(r.problem.code === 'already_taken' ? t('consult.takenByOther') : r.problem.detail ?? t('err.generic'), 'error'));
  });
  return b;
}
