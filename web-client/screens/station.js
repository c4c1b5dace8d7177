// @ts-check
/** The health worker's home: find or register a patient, and the station's consultations, updating live. */
import { api, query } from '../api.js';
import { consultationItem, queuePlace } from '../consult.js';
import { facility, rememberPatient } from '../data.js';
import { t } from '../i18n.js';
import { age, busy, clearProblem, date, debounce, field, h, heading, input, link, notice, showProblem } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').Patient} Patient */
/** @typedef {import('../types.js').Consultation} Consultation */

/** @param {Ctx} ctx */
export async function render(ctx) {
  const station = await facility(ctx.user.facility_id);
  const q = input('q', { type: 'search', autocomplete: 'off', spellcheck: 'false', minlength: '2' });
  const results = h('ul', { class: 'list', id: 'search-results' });
  const status = h('p', { class: 'muted', role: 'status' });
  const form = h('form', { role: 'search', class: 'stack', novalidate: true },
    h('div', { class: 'row' }, field('search.label', q), h('button', { type: 'submit', class: 'primary' }, t('search.submit'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    const r = await busy(form, () => api(`/api/patients${query({ q: q.value.trim() })}`));
    if (!r) return;
    if (!r.ok) {
      results.replaceChildren();
      status.textContent = '';
      return showProblem(form, r.problem);
    }
    /** @type {Patient[]} */
    const list = r.data;
    list.forEach(rememberPatient);
    status.textContent = list.length ? t('search.count', { n: list.length }) : t('search.none');
    results.replaceChildren(...list.map(patientItem));
  });

  const live = h('ul', { class: 'list', id: 'station-consultations' });
  const liveStatus = h('p', { class: 'muted', role: 'status' });
  const past = h('ul', { class: 'list', id: 'station-past' });

  ctx.view.append(
    heading(station?.name ?? t('nav.station')),
    h('section', { class: 'panel', 'aria-labelledby': 'find-title' },
      h('h3', { id: 'find-title' }, t('search.title')),
      form, status, results,
      h('div', { class: 'row' }, link('#/patients/new', t('patient.registerNew'), 'primary')),
    ),
    h('section', { class: 'panel', 'aria-labelledby': 'open-title' },
      h('h3', { id: 'open-title' }, t('station.open')), liveStatus, live),
    h('section', { class: 'panel', 'aria-labelledby': 'past-title' },
      h('h3', { id: 'past-title' }, t('station.past')), past),
  );

  let seq = 0;
  async function load() {
    const mine = ++seq;
    const r = await api('/api/consultations?limit=200');
    if (mine !== seq) return;
    if (!r.ok) {
      liveStatus.replaceChildren(notice(t('err.listFailed'), 'error'));
      return;
    }
    /** @type {Consultation[]} */
    const list = r.data;
    const open = list.filter((c) => !c.closed).sort(byTime);
    const done = list.filter((c) => c.closed).sort((a, b) => b.updated_at.localeCompare(a.updated_at)).slice(0, 10);
    const openItems = await Promise.all(open.map((c) => consultationItem(c, { place: queuePlace(c, list) })));
    const doneItems = await Promise.all(done.map((c) => consultationItem(c)));
    if (mine !== seq) return;
    live.replaceChildren(...openItems);
    past.replaceChildren(...(doneItems.length ? doneItems : [h('li', { class: 'muted' }, t('station.nonePast'))]));
    liveStatus.textContent = open.length ? '' : t('station.noneOpen');
  }
  const reload = debounce(() => void load(), 250);
  ctx.cleanup(ctx.socket.onChange(reload));
  ctx.cleanup(ctx.socket.onResync(reload));
  ctx.cleanup(reload.cancel);
  await load();
}

/** @param {Consultation} a @param {Consultation} b */
function byTime(a, b) {
  return (a.scheduled_start ?? a.created_at).localeCompare(b.scheduled_start ?? b.created_at);
}

/** @param {Patient} p */
function patientItem(p) {
  return h('li', { class: 'item' },
    h('div', { class: 'item-main' },
      h('a', { href: `#/patients/${p.id}`, class: 'item-title' }, p.full_name),
      h('div', { class: 'item-meta muted' },
        h('span', {}, `${t('patient.dob')}: ${date(p.date_of_birth)} (${t('patient.ageShort', { n: age(p.date_of_birth) })})`),
        h('span', {}, `${t('patient.phone')}: ${p.phone || t('patient.none')}`),
        p.cccd ? h('span', {}, `CCCD: ${p.cccd}`) : null,
      ),
    ),
  );
}
