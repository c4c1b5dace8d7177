// @ts-check
/**
 * One consultation. The health worker sees its state live (place in the queue, the doctor who took it) and,
 * once signed, the doctor's note and plan. The doctor sees the patient's summary, vitals and earlier
 * consultations, moves the consultation through its states, and writes the note beside it.
 */
import { api } from '../api.js';
import { consents, consentStatus } from '../consent.js';
import { minutesSince, queuePlace } from '../consult.js';
import { doctorName, facility, patient } from '../data.js';
import { t } from '../i18n.js';
import { busy, dateTime, h, heading, notice, stateBadge } from '../ui.js';
import { vitalsTable } from '../vitals.js';
import { latest, mountNoteEditor, printButtons, signedNoteView } from './note.js';
import { summary } from './patient.js';
import { callMemory, mountCall } from './callview.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').Consultation} Consultation */
/** @typedef {import('../types.js').Note} Note */
/** @typedef {import('../types.js').Vitals} Vitals */
/** @typedef {import('../i18n.js').Key} Key */

const NOTE_POLL_MS = 10_000;

/** @param {Ctx} ctx @param {string[]} params */
export async function render(ctx, [id]) {
  const r = await api(`/api/consultations/${id}`);
  if (!r.ok) {
    const text = r.status === 404 ? t('err.consultMissing') : r.status === 403 ? t('err.consultForbidden') : t('err.listFailed');
    ctx.view.append(heading(t('consult.title')), notice(text, 'error'));
    return;
  }
  /** @type {Consultation} */
  let c = r.data;
  const p = await patient(c.patient_id);
  const doctor = ctx.user.role === 'doctor';

  const facts = h('div', { id: 'consult-facts' });
  const statusLine = h('div', { id: 'consult-status', role: 'status', 'aria-live': 'polite' });
  const actions = h('div', { class: 'row', id: 'consult-actions' });
  const noteBox = h('div', { id: 'note-box' });
  const noteTitle = h('h3', { id: 'note-title' }, doctor ? t('note.title') : t('note.fromDoctor'));
  const callBox = h('section', { class: 'panel call', id: 'call', 'aria-labelledby': 'call-title', hidden: true });

  const factsPanel = h('section', { class: 'panel' }, facts, statusLine, actions);
  const notePanel = h('section', { class: 'panel', 'aria-labelledby': 'note-title', id: 'note-panel' }, noteTitle, noteBox);
  ctx.view.append(heading(p ? p.full_name : t('consult.title'), h('span', { id: 'consult-state' })));
  if (doctor && p) {
    // The doctor's desk: on a wide screen the call (and the consultation's facts) on one side, held in view, and
    // the note with the patient's record on the other, so the patient stays in sight while the doctor types; on
    // a narrow one the same in one column, the picture pinned small in a corner once scrolled past.
    ctx.view.append(h('div', { class: 'desk' },
      h('div', { class: 'desk-side' }, callBox, factsPanel),
      h('div', { class: 'desk-main' }, notePanel, await patientPanel(p, c.id))));
    ctx.cleanup(pinWhenScrolledPast(callBox));
  } else {
    ctx.view.append(factsPanel, callBox, notePanel);
  }

  let noteMounted = false;
  /** @type {Note | null} */
  let shownNote = null;

  async function refreshHeader() {
    const [station, hospital, docName] = await Promise.all([facility(c.station_id), facility(c.hospital_id), doctorName(c.hospital_id, c.doctor_id)]);
    /** @type {[Key, string][]} */
    const rows = [
      ['consult.kind', t(c.kind === 'urgent' ? 'consult.urgent' : 'consult.scheduled')],
      ['consult.reason', c.reason],
      ['consult.requested', dateTime(c.created_at)],
    ];
    if (c.scheduled_start) rows.push(['consult.slot', dateTime(c.scheduled_start)]);
    rows.push(['consult.station', station?.name ?? '—'], ['consult.hospital', hospital?.name ?? '—'], ['consult.doctor', docName ?? t('consult.noDoctor')]);
    if (c.started_at) rows.push(['consult.started', dateTime(c.started_at)]);
    if (c.ended_at) rows.push(['consult.ended', dateTime(c.ended_at)]);
    facts.replaceChildren(h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v)])));
    /** @type {HTMLElement} */ (ctx.view.querySelector('#consult-state')).replaceChildren(stateBadge(c.state, Boolean(c.doctor_id)));
    statusLine.replaceChildren(await statusText(c, docName, doctor));
    renderActions();
  }

  function renderActions() {
    actions.replaceChildren();
    /** @param {Key} label @param {string} cls @param {() => Promise<import('../api.js').ApiResult>} call @param {string} name */
    const act = (label, cls, call, name) => {
      const b = h('button', { type: 'button', class: cls, 'data-action': name }, t(label));
      b.addEventListener('click', async () => {
        const res = await busy(b, call);
        if (!res) return;
        if (!res.ok) {
          actions.append(notice(res.problem.code === 'already_taken' ? t('consult.takenByOther') : res.problem.detail ?? t('err.generic'), 'error'));
          return;
        }
        c = res.data;
        await refreshHeader();
        maybeMountCall();
        if (doctor) maybeMountNote();
      });
      actions.append(b);
    };
    const state = (/** @type {string} */ s) => () => api(`/api/consultations/${c.id}/state`, { method: 'POST', body: { state: s } });
    // What this user may do now is the server's lifecycle's answer (records/src/lifecycle.rs).
    const may = (/** @type {import('../types.js').Action} */ a) => c.actions.includes(a);
    if (doctor) {
      if (may('accept')) act('consult.accept', 'primary', () => api(`/api/consultations/${c.id}/accept`, { method: 'POST' }), 'accept');
      // Joining the call starts the consultation (docs/signaling.md): the one way in is the call's join
      // button. The one way to end is here; it ends the call on every page too.
      // When video cannot work at all (a phone call instead), the consultation can still be run and recorded.
      if (may('start')) act('consult.startNoVideo', 'secondary', state('in_progress'), 'start-without-video');
      if (may('complete')) {
        act('call.end', 'danger', async () => {
          if (!confirm(await endQuestion(c.id))) return { ok: true, status: 200, data: c };
          return state('completed')();
        }, 'end');
      }
      if (may('no_show')) act('consult.noShow', 'secondary', state('no_show'), 'no_show');
    } else if (may('cancel')) {
      act('consult.cancel', 'secondary', async () => {
        if (!confirm(t('consult.confirmCancel'))) return { ok: true, status: 200, data: c };
        return api(`/api/consultations/${c.id}/state`, { method: 'POST', body: { state: 'cancelled' } });
      }, 'cancel');
    }
  }

  function maybeMountNote() {
    if (noteMounted) return;
    if (c.doctor_id !== ctx.user.id || c.state === 'cancelled' || c.state === 'no_show') {
      noteBox.replaceChildren(h('p', { class: 'muted' }, t('note.acceptFirst')));
      return;
    }
    noteMounted = true;
    void mountNoteEditor(noteBox, c, { cleanup: ctx.cleanup, onSigned: () => {} });
  }

  /** The health worker's view of the note: the latest signed version, when there is one. */
  async function loadSignedNote() {
    const nr = await api(`/api/consultations/${c.id}/notes`);
    if (!nr.ok) return;
    /** @type {Note[]} */
    const notes = nr.data;
    const n = latest(notes.filter((x) => x.status === 'signed'));
    if (n && n.id === shownNote?.id) return;
    shownNote = n;
    const view = await signedNoteView(notes, c.hospital_id);
    noteBox.replaceChildren(...(view && n ? [view, printButtons(c, n)] : [h('p', { class: 'muted', id: 'no-note' }, t('note.notYet'))]));
  }

  /** @type {(() => void) | null} */
  let stopCall = null;
  /** The call panel, once the consultation can be joined (accepted, booked, in progress, interrupted). */
  function maybeMountCall() {
    // Open now, or a booking whose call opens later (the panel says when); to its participants only.
    if (stopCall || !c.participant || !(c.call === 'open' || c.call === 'not_open_yet')) return;
    callBox.hidden = false;
    // Back in the call by itself after a reload, or when the consultation is already under way.
    const memory = callMemory(c.id);
    const autoJoin = memory === 'in' || (memory !== 'left' && c.state === 'in_progress');
    stopCall = mountCall(callBox, { consultationId: c.id, role: ctx.user.role, userId: ctx.user.id, autoJoin, onEnded: () => void reload() });
  }
  ctx.cleanup(() => stopCall?.());

  await refreshHeader();
  maybeMountCall();
  if (doctor) maybeMountNote();
  else {
    await loadSignedNote();
    // Signing is not pushed over the socket: look again every few seconds while the page is visible.
    const poll = setInterval(() => {
      if (document.visibilityState === 'visible') void loadSignedNote();
    }, NOTE_POLL_MS);
    ctx.cleanup(() => clearInterval(poll));
  }

  const reload = async () => {
    const again = await api(`/api/consultations/${c.id}`);
    if (!again.ok) return;
    c = again.data;
    await refreshHeader();
    maybeMountCall();
    if (doctor) maybeMountNote();
    else void loadSignedNote();
  };
  ctx.cleanup(ctx.socket.onChange((m) => {
    // Another consultation may change this one's place in the queue.
    if (m.consultation_id === c.id || (!doctor && c.state === 'requested')) void reload();
  }));
  ctx.cleanup(ctx.socket.onResync(() => void reload()));
  const tick = setInterval(() => {
    if (c.state === 'requested') void refreshHeader();
  }, 60_000);
  ctx.cleanup(() => clearInterval(tick));
}

/**
 * The question before ending: says whether the note is signed, so nobody ends a consultation thinking it is.
 * @param {string} id @returns {Promise<string>}
 */
async function endQuestion(id) {
  const r = await api(`/api/consultations/${id}/notes`);
  /** @type {Note[]} */
  const notes = r.ok ? r.data : [];
  if (!notes.length) return t('call.endConfirmNoNote');
  return t(notes.some((n) => n.status === 'signed') ? 'call.endConfirmSigned' : 'call.endConfirmUnsigned');
}

/**
 * One sentence on where the consultation stands.
 * @param {Consultation} c @param {string | null} docName @param {boolean} doctor @returns {Promise<HTMLElement>}
 */
async function statusText(c, docName, doctor) {
  if (c.call === 'not_accepted') {
    const wait = t('consult.waiting', { n: minutesSince(c.created_at) });
    if (doctor) return notice(wait, 'warn');
    const r = await api('/api/consultations?state=requested&limit=500');
    const place = r.ok ? queuePlace(c, r.data) : null;
    return h('div', { class: 'notice warn', 'data-place': place ?? '' },
      h('strong', {}, place ? t('consult.placeLong', { n: place }) : t('consult.inQueue')), ' ', wait, ' ', t('consult.queueHint'));
  }
  if (c.state === 'requested') return notice(t('consult.acceptedBy', { name: docName ?? t('consult.aDoctor') }), 'ok');
  if (c.state === 'scheduled') return notice(t('consult.booked', { when: dateTime(c.scheduled_start) }), 'info');
  if (c.state === 'in_progress') return notice(t('consult.inProgress'), 'ok');
  if (c.state === 'interrupted') return notice(t('consult.interrupted'), 'warn');
  if (c.closed) return notice(t(/** @type {Key} */ (`consult.closed.${c.state}`)), 'info');
  return h('span');
}

/** The patient's record for the doctor: demographics, vitals, earlier consultations and their signed notes.
 * @param {import('../types.js').Patient} p @param {string} currentId */
async function patientPanel(p, currentId) {
  const [vr, cr, consent] = await Promise.all([
    api(`/api/patients/${p.id}/vitals`), api(`/api/patients/${p.id}/consultations`), consents(p.id)]);
  /** @type {Vitals[]} */
  const vitals = vr.ok ? vr.data : [];
  /** @type {Consultation[]} */
  const earlier = cr.ok ? /** @type {Consultation[]} */ (cr.data).filter((x) => x.id !== currentId).sort((a, b) => b.created_at.localeCompare(a.created_at)) : [];
  const notes = await Promise.all(earlier.slice(0, 5).map(async (x) => {
    const nr = await api(`/api/consultations/${x.id}/notes`);
    return nr.ok ? signedNoteView(/** @type {Note[]} */ (nr.data), x.hospital_id) : null;
  }));
  return h('section', { class: 'panel', 'aria-labelledby': 'patient-title', id: 'patient-panel' },
    h('h3', { id: 'patient-title' }, t('patient.summary')),
    summary(p),
    consentStatus(consent),
    h('h4', {}, t('vitals.title')),
    vitals.length ? vitalsTable(vitals.slice(0, 5), { dob: p.date_of_birth }) : h('p', { class: 'muted' }, t('vitals.none')),
    h('h4', {}, t('patient.history')),
    earlier.length
      ? h('ul', { class: 'list' }, earlier.slice(0, 5).map((x, i) => h('li', { class: 'item column' },
        h('div', { class: 'item-meta' }, stateBadge(x.state), h('span', { class: 'muted' }, dateTime(x.created_at))),
        h('p', { class: 'reason' }, x.reason),
        notes[i] ? h('details', {}, h('summary', {}, t('note.signedNote')), notes[i]) : null)))
      : h('p', { class: 'muted', id: 'no-earlier' }, t('patient.noEarlier')),
  );
}

/**
 * On a narrow screen, pins the call's picture small in a corner while its panel is scrolled out of view (the
 * doctor writing the note below it keeps seeing the patient). Returns the cleanup.
 * @param {HTMLElement} callBox
 */
function pinWhenScrolledPast(callBox) {
  const narrow = window.matchMedia('(max-width: 999px)');
  let out = false;
  const update = () => {
    const stage = callBox.querySelector('.call-stage');
    if (!stage) return;
    const pin = out && narrow.matches && !callBox.hidden;
    if (pin && !stage.classList.contains('pinned')) {
      // Keep the panel's height while the picture is elsewhere, so the page does not jump.
      /** @type {HTMLElement} */ (stage.parentElement).style.setProperty('--stage-height', `${stage.getBoundingClientRect().height}px`);
    }
    stage.classList.toggle('pinned', pin);
    callBox.classList.toggle('stage-pinned', pin);
  };
  const seen = new IntersectionObserver(([e]) => {
    // Out of view once less than a tenth of the panel shows, and only when it left upwards.
    out = !e.isIntersecting && e.boundingClientRect.top < 0;
    update();
  }, { threshold: [0, 0.1] });
  seen.observe(callBox);
  narrow.addEventListener('change', update);
  return () => {
    seen.disconnect();
    narrow.removeEventListener('change', update);
  };
}
