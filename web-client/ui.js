// @ts-check
/** Small DOM helpers shared by the screens. Server data only ever goes in through text nodes and attributes. */
import { getLang, t } from './i18n.js';

/** @typedef {import('./api.js').Problem} Problem */
/** @typedef {import('./i18n.js').Key} Key */
/** @typedef {string | Node | null | undefined | false} Child */
/** @typedef {Child | Child[] | (Child | Child[])[]} Children */
/** @typedef {Record<string, string | number | boolean | null | undefined | EventListener>} Attrs */

export const TZ = 'Asia/Ho_Chi_Minh';

/**
 * Creates an element. Attributes: `on<event>` functions become listeners, `true` becomes an empty attribute,
 * `false`/null/undefined are skipped; children strings become text nodes.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag @param {Attrs} [attrs] @param {...Children} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** @param {Element} el @param {Children[]} children */
function append(el, children) {
  for (const c of /** @type {Child[]} */ (children.flat(Infinity))) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
}

let seq = 0;
/** A unique element id. @param {string} prefix @returns {string} */
export const uid = (prefix) => `${prefix}-${++seq}`;

/**
 * A labelled form field with its error line (filled from the API's field errors by `showProblem`).
 * @param {Key} label @param {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} control
 * @param {{hint?: string, wide?: boolean}} [opts] @returns {HTMLDivElement}
 */
export function field(label, control, opts = {}) {
  control.id ||= uid(control.name || 'f');
  const err = h('p', { class: 'field-error', id: `${control.id}-error`, 'aria-live': 'polite' });
  const ids = [err.id];
  /** @type {HTMLElement | null} */
  let hint = null;
  if (opts.hint) {
    hint = h('p', { class: 'hint', id: `${control.id}-hint` }, opts.hint);
    ids.unshift(hint.id);
  }
  control.setAttribute('aria-describedby', ids.join(' '));
  return h('div', { class: opts.wide ? 'field wide' : 'field' }, h('label', { for: control.id }, t(label)), control, hint, err);
}

/** @param {string} name @param {Attrs} [attrs] @returns {HTMLInputElement} */
export const input = (name, attrs = {}) => h('input', { name, ...attrs });

/**
 * A select with options given as [value, label] pairs.
 * @param {string} name @param {[string, string][]} options @param {string} [value] @param {Attrs} [attrs]
 * @returns {HTMLSelectElement}
 */
export function select(name, options, value = '', attrs = {}) {
  const s = h('select', { name, ...attrs }, options.map(([v, label]) => h('option', { value: v }, label)));
  s.value = value;
  return s;
}

/** The 401 codes that mean the login is over (see signaling/src/auth.rs). */
const SESSION_OVER = ['not_logged_in', 'session_ended', 'token_expired', 'invalid_token'];

/** The user's sentence for a failed call, in the current language. @param {Problem} p @returns {string} */
export function problemText(p) {
  if (p.code === 'network_error') return t('err.network');
  // A 401 means the session is over only when the server says so; a wrong password is a 401 too, and says that.
  if (p.status === 401 && (SESSION_OVER.includes(p.code) || !p.detail)) return t('err.session');
  const en = getLang() === 'en';
  return (en ? p.detail_en ?? p.detail : p.detail ?? p.detail_en) ?? t('err.generic');
}

/** @param {import('./api.js').FieldError} e @returns {string} */
const fieldText = (e) => (getLang() === 'en' ? e.message_en || e.message : e.message);

/**
 * Clears a form's field errors and alert. @param {HTMLElement} form
 */
export function clearProblem(form) {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  const alert = form.querySelector(':scope > .form-alert');
  if (alert) alert.textContent = '';
}

/**
 * Shows a problem on a form: each field error under its field (by `name`; `icd10_codes[2]` goes to
 * `icd10_codes`), the summary (and errors for fields not on the form) in the form's alert.
 * @param {HTMLElement} form @param {Problem} p
 */
export function showProblem(form, p) {
  clearProblem(form);
  const lines = [problemText(p)];
  /** @type {HTMLElement | null} */
  let first = null;
  for (const e of p.errors) {
    const name = e.field.replace(/\[\d+\]$/, '');
    const control = /** @type {HTMLElement | null} */ (form.querySelector(`[name="${CSS.escape(name)}"]`));
    const box = control ? document.getElementById(`${control.id}-error`) : null;
    if (control && box) {
      box.textContent = box.textContent ? `${box.textContent} ${fieldText(e)}` : fieldText(e);
      control.setAttribute('aria-invalid', 'true');
      first ??= control;
    } else lines.push(fieldText(e));
  }
  formAlert(form).textContent = lines.join(' ');
  first?.focus();
}

/** The form's own alert line (created on first use, at the end of the form). @param {HTMLElement} form */
export function formAlert(form) {
  let alert = form.querySelector(':scope > .form-alert');
  if (!alert) {
    alert = h('p', { class: 'form-alert', role: 'alert' });
    form.append(alert);
  }
  return /** @type {HTMLElement} */ (alert);
}

/**
 * Runs `work` for `el` unless one is under way (double taps on slow links).
 * @template T @param {HTMLElement} el @param {() => Promise<T>} work @returns {Promise<T | undefined>}
 */
export async function busy(el, work) {
  if (el.hasAttribute('aria-busy')) return undefined;
  el.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    el.removeAttribute('aria-busy');
  }
}

/** A status message box. @param {string} text @param {'info' | 'error' | 'ok' | 'warn'} [kind] */
export const notice = (text, kind = 'info') =>
  h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);

/** @param {Intl.DateTimeFormatOptions} o */
const fmt = (o) => new Intl.DateTimeFormat(getLang() === 'en' ? 'en-GB' : 'vi-VN', { timeZone: TZ, ...o });

/** An RFC 3339 instant as a local (Vietnam) date and time. @param {string | null | undefined} iso */
export function dateTime(iso) {
  if (!iso) return '—';
  return fmt({ day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit' }).format(new Date(iso));
}

/** An instant as local HH:MM. @param {string | null | undefined} iso */
export function time(iso) {
  return iso ? fmt({ hour: '2-digit', minute: '2-digit', hour12: false }).format(new Date(iso)) : '—';
}

/** `YYYY-MM-DD` as DD/MM/YYYY. @param {string | null | undefined} ymd */
export function date(ymd) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(ymd ?? '');
  return m ? `${m[3]}/${m[2]}/${m[1]}` : ymd ?? '—';
}

/** The local (Vietnam) calendar date of an instant, `YYYY-MM-DD`. @param {Date} [d] */
export function localDay(d = new Date()) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit' }).format(d);
}

/** Age in whole years from a `YYYY-MM-DD` birth date. @param {string} dob */
export function age(dob) {
  const b = new Date(`${dob}T00:00:00Z`);
  const n = new Date();
  let a = n.getUTCFullYear() - b.getUTCFullYear();
  if (n.getUTCMonth() < b.getUTCMonth() || (n.getUTCMonth() === b.getUTCMonth() && n.getUTCDate() < b.getUTCDate())) a--;
  return a;
}

/**
 * Makes the tables under `root` turn into one card per row on a phone, each cell labelled with its column
 * (call after filling the table). @template {HTMLElement} E @param {E} root @returns {E}
 */
export function cards(root) {
  for (const tbl of root.querySelectorAll('table')) {
    tbl.classList.add('cards');
    const heads = [...tbl.querySelectorAll('thead th')].map((th) => th.textContent ?? '');
    for (const tr of tbl.querySelectorAll('tbody tr')) {
      [...tr.children].forEach((td, i) => {
        if (heads[i]) td.setAttribute('data-label', heads[i]);
        else td.classList.add('actions');
      });
    }
  }
  return root;
}

/** A coloured badge for a consultation state. @param {string} state @param {boolean} [accepted] a doctor has taken it */
export const stateBadge = (state, accepted = false) => accepted && state === 'requested'
  ? h('span', { class: 'badge state-accepted', 'data-state': state }, t('state.accepted'))
  : h('span', { class: `badge state-${state}`, 'data-state': state }, t(/** @type {Key} */ (`state.${state}`)));

/** The page's heading row. @param {string} title @param {...Child} extra */
export const heading = (title, ...extra) => h('div', { class: 'heading' }, h('h2', { tabindex: '-1' }, title), ...extra);

/** A link styled as a button. @param {string} href @param {string} text @param {string} [cls] */
export const link = (href, text, cls = 'secondary') => h('a', { href, class: `button ${cls}` }, text);

/** @type {AudioContext | null} */
let audio = null;
/** Two short rising beeps, made with WebAudio (no sound file to download). */
export function chime() {
  try {
    audio ??= new AudioContext();
    void audio.resume();
    const now = audio.currentTime;
    [0, 0.22].forEach((at, i) => {
      const ctx = /** @type {AudioContext} */ (audio);
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = i ? 1046 : 784;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.25, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.2);
    });
  } catch {
    // No audio output: the visual cue is still there.
  }
}

/** Calls `fn` at most once per `ms` after the last call. @param {() => void} fn @param {number} ms */
export function debounce(fn, ms) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const run = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
  run.cancel = () => clearTimeout(timer);
  return run;
}
