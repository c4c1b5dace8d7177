// @ts-check
/**
 * The consultation note: a read-only view of a signed version, and the doctor's SOAP editor.
 *
 * Nothing typed is lost: every keystroke is copied to localStorage (with the server version it was edited
 * from) before the debounced autosave; the copy is dropped only once the server holds the same text. After a
 * reload, a dropped connection or a crash, the copy is restored; if the server's note moved on meanwhile (another
 * tab), the doctor chooses which text to keep.
 */
import { api } from '../api.js';
import { doctorName } from '../data.js';
import { draftOwner, openEditors, readLocal, storageKey } from '../drafts.js';
import { getLang, t } from '../i18n.js';
import { ICD10_SHAPE, icdLoaded, icdName, loadIcd, searchIcd } from '../icd10.js';
import { busy, clearProblem, dateTime, debounce, field, formAlert, h, input, notice, select, showProblem, time } from '../ui.js';

/** @typedef {import('../types.js').Note} Note */
/** @typedef {import('../types.js').NoteContent} NoteContent */
/** @typedef {import('../types.js').Consultation} Consultation */
/** @typedef {import('../types.js').Disposition} Disposition */
/** @typedef {import('../drafts.js').LocalCopy} LocalCopy */

const SECTIONS = /** @type {const} */ (['subjective', 'objective', 'assessment', 'plan']);
const DISPOSITIONS = /** @type {const} */ (['treat_at_station', 'refer', 'transfer', 'follow_up']);
const AUTOSAVE_MS = 1000;

/** The current version of a note chain: the one no other version amends. @param {Note[]} notes */
export function latest(notes) {
  const amended = new Set(notes.map((n) => n.amends_note_id).filter(Boolean));
  return notes.filter((n) => !amended.has(n.id)).sort((a, b) => b.created_at.localeCompare(a.created_at))[0] ?? null;
}

/** @param {string} code */
const codeLabel = (code) => {
  const found = icdName(code);
  return found ? `${code} — ${getLang() === 'en' ? found[2] : found[1]}` : code;
};

/** Read-only chips for codes, named once WHO's list is loaded (a code outside the common ones has only its code
 * until then). @param {string[]} codes */
function icdChips(codes) {
  const ul = h('ul', { class: 'chips' }, codes.map((c) => h('li', { class: 'chip', 'data-code': c }, codeLabel(c))));
  if (!icdLoaded() && codes.some((c) => !icdName(c))) {
    void loadIcd().then(() => {
      for (const li of ul.querySelectorAll('li[data-code]')) li.textContent = codeLabel(li.getAttribute('data-code') ?? '');
    });
  }
  return ul;
}

/** @type {Record<typeof SECTIONS[number], import('../i18n.js').Key>} */
const SECTION_LABELS = { subjective: 'note.subjective', objective: 'note.objective', assessment: 'note.assessment', plan: 'note.plan' };

/**
 * What an amendment changed against the version it amends: each changed part, before and after.
 * @param {Note} n @param {Note} before @returns {HTMLElement}
 */
function changes(n, before) {
  /** @type {HTMLElement[]} */
  const rows = [];
  /** @param {string} label @param {string} was @param {string} now */
  const row = (label, was, now) => rows.push(h('div', { class: 'change' }, h('h5', {}, label),
    h('p', { class: 'was pre' }, h('span', { class: 'change-tag' }, `${t('note.was')}: `), was || '—'),
    h('p', { class: 'now pre' }, h('span', { class: 'change-tag' }, `${t('note.now')}: `), now || '—')));
  for (const s of SECTIONS) if ((n[s] ?? '') !== (before[s] ?? '')) row(t(SECTION_LABELS[s]), before[s], n[s]);
  const added = n.icd10_codes.filter((c) => !before.icd10_codes.includes(c));
  const removed = before.icd10_codes.filter((c) => !n.icd10_codes.includes(c));
  if (added.length || removed.length) {
    row(t('note.icd'), removed.map(codeLabel).join('; '), added.map(codeLabel).join('; '));
  }
  if (n.disposition !== before.disposition) {
    row(t('note.disposition'), before.disposition ? t(`disp.${before.disposition}`) : '', n.disposition ? t(`disp.${n.disposition}`) : '');
  }
  return h('section', { class: 'changes', 'data-changes': String(rows.length) },
    h('h4', {}, t('note.changesTitle', { when: dateTime(before.signed_at) })),
    rows.length ? rows : h('p', { class: 'muted' }, t('note.noChanges')));
}

/**
 * A signed (or draft) note, read-only: who signed it and when; for an amendment, what it changed.
 * @param {Note} n @param {{author?: string | null, amends?: Note | null}} [about] the signer's name; the version
 * this one amends
 */
export function noteView(n, about = {}) {
  const by = about.author ? ` ${t('note.by', { name: about.author })}` : '';
  return h('article', { class: 'note-view', 'data-note': n.id, 'data-status': n.status },
    h('p', { class: 'muted signed-by' },
      n.status === 'signed' ? `${t('note.signedAt', { when: dateTime(n.signed_at) })}${by}` : t('note.draftShort'),
      n.amends_note_id ? ` · ${t('note.isAmendment')}` : ''),
    n.disposition ? h('p', { class: 'disposition' }, h('strong', {}, `${t('note.disposition')}: `), t(`disp.${n.disposition}`)) : null,
    n.icd10_codes.length ? icdChips(n.icd10_codes) : null,
    SECTIONS.filter((s) => n[s]).map((s) => h('section', { class: 'soap' }, h('h4', {}, t(SECTION_LABELS[s])), h('p', { class: 'pre' }, n[s]))),
    n.amends_note_id && about.amends ? changes(n, about.amends) : null,
  );
}

/**
 * The two print buttons for a signed note: the summary on A4, or on an 80 mm thermal printer's roll.
 * @param {Consultation} c @param {Note} n
 */
export function printButtons(c, n) {
  const btn = (/** @type {'a4' | 'narrow'} */ size) => h('button', { type: 'button', class: 'secondary', 'data-print': size,
    onclick: () => void import('./summary.js').then((m) => m.printSummary(c, n, size)) }, t(size === 'a4' ? 'print.a4' : 'print.narrow'));
  return h('div', { class: 'row print-buttons' }, btn('a4'), btn('narrow'));
}

/**
 * The latest signed version of a consultation's note, shown with its signer and, for an amendment, its changes.
 * @param {Note[]} notes @param {string} hospitalId @returns {Promise<HTMLElement | null>}
 */
export async function signedNoteView(notes, hospitalId) {
  const signed = notes.filter((x) => x.status === 'signed');
  const n = latest(signed);
  if (!n) return null;
  const author = await doctorName(hospitalId, n.author_id);
  return noteView(n, { author, amends: signed.find((x) => x.id === n.amends_note_id) ?? null });
}

/** @param {NoteContent} a @param {NoteContent} b */
const same = (a, b) => JSON.stringify(normal(a)) === JSON.stringify(normal(b));
/** @param {Partial<NoteContent>} c @returns {NoteContent} */
const normal = (c) => ({
  subjective: c.subjective ?? '', objective: c.objective ?? '', assessment: c.assessment ?? '', plan: c.plan ?? '',
  icd10_codes: [...(c.icd10_codes ?? [])], disposition: c.disposition ?? null,
});

/**
 * Mounts the note area for the assigned doctor: the editor for a draft (or a new note), the signed view with an
 * "amend" button otherwise. @param {HTMLElement} box @param {Consultation} c
 * @param {{cleanup: (fn: () => void) => void, onSigned: () => void}} hooks
 */
export async function mountNoteEditor(box, c, hooks) {
  const key = storageKey(c.id);
  const r = await api(`/api/consultations/${c.id}/notes`);
  if (!r.ok) {
    box.replaceChildren(notice(t('err.noteLoad'), 'error'));
    return;
  }
  /** @type {Note[]} */
  const notes = r.data;
  const current = latest(notes);
  const author = current ? await doctorName(c.hospital_id, current.author_id) : null;
  const amended = current?.amends_note_id ? notes.find((x) => x.id === current.amends_note_id) ?? null : null;
  if (current?.status === 'signed') {
    localStorage.removeItem(key);
    const amend = h('button', { type: 'button', class: 'secondary', id: 'amend' }, t('note.amend'));
    amend.addEventListener('click', async () => {
      const a = await busy(amend, () => api(`/api/notes/${current.id}/amend`, { method: 'POST' }));
      if (!a) return;
      if (!a.ok) return box.append(notice(a.problem.detail ?? t('err.generic'), 'error'));
      void mountNoteEditor(box, c, hooks);
    });
    box.replaceChildren(noteView(current, { author, amends: amended }), h('div', { class: 'row' }, amend), printButtons(c, current));
    return;
  }
  editor(box, c, current, key, hooks);
  if (amended) {
    // An amendment's editor says which signed note it amends, and that the station will see what changed.
    box.prepend(notice(t('note.amending', { when: dateTime(amended.signed_at), name: author ?? '—' }), 'info'));
  }
}

/**
 * @param {HTMLElement} box @param {Consultation} c @param {Note | null} serverNote @param {string} key
 * @param {{cleanup: (fn: () => void) => void, onSigned: () => void}} hooks
 */
function editor(box, c, serverNote, key, hooks) {
  /** @type {Note | null} */
  let note = serverNote;
  let version = note?.version ?? 0;
  /** @type {string[]} */
  let codes = [...(note?.icd10_codes ?? [])];
  /** @type {Promise<void> | null} */
  let saving = null;
  let again = false;
  let blocked = false; // a version conflict waits for the doctor's choice
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let retryTimer;

  const status = h('p', { class: 'save-status', role: 'status', id: 'save-status', 'data-state': 'saved' });
  const conflictBox = h('div', { class: 'conflict', id: 'note-conflict' });
  /** @type {Record<string, HTMLTextAreaElement>} */
  const areas = {};
  /** @type {Record<typeof SECTIONS[number], import('../i18n.js').Key>} */
  const labels = { subjective: 'note.subjectiveLong', objective: 'note.objectiveLong', assessment: 'note.assessmentLong', plan: 'note.planLong' };
  for (const s of SECTIONS) {
    areas[s] = h('textarea', { name: s, rows: s === 'plan' || s === 'subjective' ? '4' : '3', maxlength: '20000', spellcheck: 'true' });
  }
  const disposition = select('disposition', [['', t('note.chooseDisposition')], ...DISPOSITIONS.map((d) => /** @type {[string, string]} */ ([d, t(`disp.${d}`)]))]);

  // ICD-10 entry: a search box with suggestions from the embedded list, chips for the chosen codes.
  const icdInput = input('icd10_codes', { autocomplete: 'off', spellcheck: 'false', placeholder: t('note.icdPlaceholder'), 'aria-autocomplete': 'list' });
  const suggestions = h('ul', { class: 'suggestions', role: 'listbox', id: 'icd-suggestions' });
  icdInput.setAttribute('aria-controls', suggestions.id);
  const chips = h('ul', { class: 'chips', id: 'icd-chips' });
  const addBtn = h('button', { type: 'button', class: 'secondary small' }, t('note.icdAdd'));

  const signBtn = h('button', { type: 'submit', class: 'primary', id: 'sign-note' }, t('note.sign'));
  const form = h('form', { class: 'stack note-editor', novalidate: true, id: 'note-form' },
    status, conflictBox,
    SECTIONS.map((s) => field(labels[s], areas[s], { wide: true })),
    h('div', { class: 'field wide' },
      h('label', { for: icdInput.id || (icdInput.id = 'icd-input') }, t('note.icd')),
      h('div', { class: 'row' }, icdInput, addBtn),
      h('p', { class: 'field-error', id: `${icdInput.id}-error`, 'aria-live': 'polite' }),
      suggestions, chips),
    field('note.disposition', disposition),
    h('p', { class: 'hint' }, t('note.signHint')),
    h('div', { class: 'row' }, signBtn),
  );
  icdInput.setAttribute('aria-describedby', `${icdInput.id}-error`);

  /** @returns {NoteContent} */
  const read = () => ({
    subjective: areas.subjective.value, objective: areas.objective.value, assessment: areas.assessment.value,
    plan: areas.plan.value, icd10_codes: [...codes], disposition: /** @type {Disposition | null} */ (disposition.value || null),
  });
  /** @param {NoteContent} content */
  const fill = (content) => {
    for (const s of SECTIONS) areas[s].value = content[s];
    codes = [...content.icd10_codes];
    disposition.value = content.disposition ?? '';
    renderChips();
  };
  /** @param {'saved' | 'dirty' | 'saving' | 'offline' | 'error' | 'conflict'} state @param {string} text */
  const setStatus = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };
  const writeLocal = () => {
    /** @type {LocalCopy} */
    const copy = { note_id: note?.id ?? null, version, content: read(), at: new Date().toISOString(), user: draftOwner() ?? undefined };
    try {
      localStorage.setItem(key, JSON.stringify(copy));
    } catch {
      // Storage full or blocked: the autosave still runs; say so only if it fails too.
    }
  };

  function renderChips() {
    chips.replaceChildren(...codes.map((code) => h('li', { class: 'chip', 'data-code': code }, codeLabel(code),
      h('button', { type: 'button', class: 'chip-x', 'aria-label': t('note.icdRemove', { code }),
        onclick: () => {
          codes = codes.filter((x) => x !== code);
          renderChips();
          changed();
        } }, '×'))));
  }
  /** @param {string} raw */
  function addCode(raw) {
    const code = raw.trim().toUpperCase().split(/\s/)[0] ?? '';
    const err = /** @type {HTMLElement} */ (form.querySelector(`#${icdInput.id}-error`));
    if (!ICD10_SHAPE.test(code) || (icdLoaded() && !icdName(code))) {
      err.textContent = t(ICD10_SHAPE.test(code) ? 'note.icdUnknown' : 'note.icdInvalid', { code: raw.trim() });
      icdInput.setAttribute('aria-invalid', 'true');
      return;
    }
    err.textContent = '';
    icdInput.removeAttribute('aria-invalid');
    if (!codes.includes(code)) codes.push(code);
    if (codes.length > 20) codes = codes.slice(0, 20);
    icdInput.value = '';
    suggestions.replaceChildren();
    renderChips();
    changed();
  }
  const suggest = () => {
    suggestions.replaceChildren(...searchIcd(icdInput.value).map(([code, vi, en]) =>
      h('li', { role: 'option' }, h('button', { type: 'button', class: 'suggestion', onclick: () => addCode(code) },
        h('strong', {}, code), ` ${getLang() === 'en' ? en : vi}`))));
  };
  icdInput.addEventListener('input', suggest);
  // WHO's whole list comes when the doctor reaches for a code; the common codes are offered meanwhile.
  icdInput.addEventListener('focus', () => {
    if (icdLoaded()) return;
    void loadIcd().then((ok) => {
      if (!ok) return;
      if (icdInput.value.trim()) suggest();
      renderChips();
    });
  });
  icdInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      const first = searchIcd(icdInput.value, 1)[0];
      addCode(ICD10_SHAPE.test(icdInput.value.trim().toUpperCase()) || !first ? icdInput.value : first[0]);
    }
  });
  addBtn.addEventListener('click', () => addCode(icdInput.value));

  const autosave = debounce(() => void save(), AUTOSAVE_MS);
  function changed() {
    writeLocal();
    if (blocked) return;
    setStatus('dirty', t('note.unsaved'));
    autosave();
  }
  for (const s of SECTIONS) areas[s].addEventListener('input', changed);
  disposition.addEventListener('change', changed);

  /** Saves until the server holds what is on screen (or a conflict or error stops it). */
  async function save() {
    if (blocked) return;
    if (saving) {
      again = true;
      return saving;
    }
    clearTimeout(retryTimer);
    saving = (async () => {
      const content = read();
      setStatus('saving', t('note.saving'));
      const r = note
        ? await api(`/api/notes/${note.id}`, { method: 'PUT', body: { version, ...content } })
        : await api(`/api/consultations/${c.id}/notes`, { method: 'POST', body: content });
      if (r.ok) {
        note = /** @type {Note} */ (r.data);
        version = note.version;
        clearProblem(form);
        if (same(read(), content)) {
          localStorage.removeItem(key);
          box.querySelector('.restored')?.remove();
          setStatus('saved', t('note.savedAt', { time: time(note.updated_at) }));
        } else {
          writeLocal();
          again = true;
        }
        return;
      }
      const p = r.problem;
      if (p.status === 0) {
        setStatus('offline', t('note.offline'));
        retryTimer = setTimeout(() => void save(), 5000);
      } else if (p.code === 'version_conflict' || (p.code === 'duplicate' && !note)) {
        conflict();
      } else {
        showProblem(form, p);
        setStatus('error', t('note.notSaved'));
      }
    })();
    try {
      await saving;
    } finally {
      saving = null;
    }
    if (again && !blocked) {
      again = false;
      return save();
    }
  }

  /** The server's note moved on (another tab or device): the doctor chooses. */
  function conflict() {
    blocked = true;
    autosave.cancel();
    writeLocal();
    setStatus('conflict', t('note.conflictShort'));
    const reload = h('button', { type: 'button', class: 'secondary' }, t('note.useServer'));
    const keep = h('button', { type: 'button', class: 'primary' }, t('note.keepMine'));
    reload.addEventListener('click', async () => {
      localStorage.removeItem(key);
      conflictBox.replaceChildren();
      blocked = false;
      await mountNoteEditor(box, c, hooks);
    });
    keep.addEventListener('click', async () => {
      // Overwrite the server's version with what is on screen.
      const r = await api(`/api/consultations/${c.id}/notes`);
      const server = r.ok ? latest(/** @type {Note[]} */ (r.data)) : null;
      if (!server || server.status === 'signed') return void mountNoteEditor(box, c, hooks);
      note = server;
      version = server.version;
      blocked = false;
      conflictBox.replaceChildren();
      writeLocal();
      void save();
    });
    conflictBox.replaceChildren(notice(t('note.conflict'), 'warn'), h('div', { class: 'row' }, keep, reload));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (blocked) return;
    await busy(signBtn, async () => {
      autosave.cancel();
      await save();
      if (blocked || !note || status.dataset.state !== 'saved') {
        if (!note && !blocked) formAlert(form).textContent = t('note.emptySign');
        return;
      }
      if (!confirmSign()) return;
      const r = await api(`/api/notes/${note.id}/sign`, { method: 'POST', body: { version } });
      if (!r.ok) {
        if (r.problem.code === 'version_conflict') return conflict();
        return showProblem(form, r.problem);
      }
      localStorage.removeItem(key);
      hooks.onSigned();
      await mountNoteEditor(box, c, hooks);
    });
  });

  // Start from the server's draft, or from this device's unsaved copy.
  fill(normal(note ?? {}));
  const local = readLocal(key);
  box.replaceChildren(form);
  if (local && !same(local.content, read())) {
    if (local.note_id === (note?.id ?? null) && local.version === version) {
      fill(normal(local.content));
      const restored = notice(t('note.restored'), 'info');
      restored.classList.add('restored');
      box.prepend(restored);
      setStatus('dirty', t('note.unsaved'));
      void save();
    } else {
      fill(normal(local.content));
      conflict();
    }
  } else {
    if (local) localStorage.removeItem(key);
    setStatus('saved', note ? t('note.savedAt', { time: time(note.updated_at) }) : t('note.new'));
  }

  const flush = () => {
    if (status.dataset.state === 'dirty') void save();
  };
  window.addEventListener('online', flush);
  /** Saves now what is on screen; whether the server holds it. */
  const saveNow = async () => {
    autosave.cancel();
    if (status.dataset.state !== 'saved') await save();
    return status.dataset.state === 'saved';
  };
  openEditors.add(saveNow);
  hooks.cleanup(() => {
    openEditors.delete(saveNow);
    window.removeEventListener('online', flush);
    clearTimeout(retryTimer);
    autosave.cancel();
    flush();
  });
}

/** Signing is final: a plain confirmation. */
function confirmSign() {
  return confirm(t('note.confirmSign'));
}
