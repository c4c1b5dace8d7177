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

/** An instant's local (Vietnam) time to the second, HH:MM:SS. @param {string | null | undefined} iso */
export function timeSec(iso) {
  return iso ? fmt({ hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }).format(new Date(iso)) : '—';
}

/**
 * A decimal number as the page's language writes it: 38,5 in Vietnamese, 38.5 in English; with `digits`, that
 * many after the point (13,9).
 * @param {number} n @param {number} [digits]
 */
export const decimal = (n, digits) => {
  const s = digits === undefined ? String(n) : n.toFixed(digits);
  return getLang() === 'en' ? s : s.replace('.', ',');
};

/** `YYYY-MM-DD` as DD/MM/YYYY. @param {string | null | undefined} ymd */
export function date(ymd) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(ymd ?? '');
  return m ? `${m[3]}/${m[2]}/${m[1]}` : ymd ?? '—';
}

/**
 * A day field: typed as Vietnamese write dates, dd/mm/yyyy, whatever the browser's language (a date picker
 * follows the browser's locale: mm/dd/yyyy in an American one). `value` is `YYYY-MM-DD`; read it with `readDay`.
 * @param {string} name @param {Attrs & {value?: string}} [attrs] @returns {HTMLInputElement}
 */
export function dayInput(name, attrs = {}) {
  const { value, ...rest } = attrs;
  const el = input(name, { inputmode: 'numeric', autocomplete: 'off', placeholder: t('date.placeholder'), maxlength: '10', 'data-day': '', ...rest });
  if (value) el.value = date(value);
  return el;
}

/** @param {number} n */
const pad2 = (n) => String(n).padStart(2, '0');

/**
 * The day a day field holds, `YYYY-MM-DD`: '' when empty, null when it is not a real date. Takes dd/mm/yyyy
 * (or with '-', '.' or spaces; or 8 digits ddmmyyyy), and `YYYY-MM-DD`.
 * @param {HTMLInputElement} el @returns {string | null}
 */
export function readDay(el) {
  const v = el.value.trim();
  if (!v) return '';
  let m = /^(\d{1,2})\s*[/.\- ]\s*(\d{1,2})\s*[/.\- ]\s*(\d{4})$/.exec(v) ?? /^(\d{2})(\d{2})(\d{4})$/.exec(v);
  let d, mo, y;
  if (m) [d, mo, y] = [m[1], m[2], m[3]].map(Number);
  else if ((m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v))) [y, mo, d] = [m[1], m[2], m[3]].map(Number);
  else return null;
  const at = new Date(Date.UTC(y, mo - 1, d));
  if (y < 1900 || at.getUTCMonth() !== mo - 1 || at.getUTCDate() !== d) return null;
  return `${y}-${pad2(mo)}-${pad2(d)}`;
}

/**
 * A number as typed, with a decimal comma (38,5) or point: undefined when empty, NaN when it is not a number
 * (never 385 for "38,5"). @param {HTMLInputElement} el @returns {number | undefined}
 */
export function readNumber(el) {
  const v = el.value.trim().replace(/\s/g, '');
  if (!v) return undefined;
  if (!/^[+-]?\d+([.,]\d+)?$/.test(v)) return NaN;
  return Number(v.replace(',', '.'));
}

/**
 * A from/to pair of day fields as instants for a filter: `from` at the start of its day in Vietnam, `to` at the
 * end of its day; or the fields that are not dates, as field errors for `showProblem`.
 * @param {HTMLInputElement} fromEl @param {HTMLInputElement} toEl
 * @returns {{from?: string, to?: string, errors: import('./api.js').FieldError[]}}
 */
export function dayRange(fromEl, toEl) {
  /** @type {import('./api.js').FieldError[]} */
  const errors = [];
  /** @param {HTMLInputElement} el @param {number} add */
  const at = (el, add) => {
    const ymd = readDay(el);
    if (ymd === null) errors.push({ field: el.name, code: 'invalid_date', message: t('date.invalid'), message_en: t('date.invalid') });
    if (!ymd) return undefined;
    const d = new Date(`${ymd}T00:00:00+07:00`);
    d.setUTCDate(d.getUTCDate() + add);
    return d.toISOString();
  };
  return { from: at(fromEl, 0), to: at(toEl, 1), errors };
}

/**
 * A time-of-day field on the 24-hour clock, HH:MM, whatever the browser's language (a time picker shows AM/PM in
 * an American one). @param {string} name @param {Attrs} [attrs] @returns {HTMLInputElement}
 */
export const timeInput = (name, attrs = {}) =>
  input(name, { inputmode: 'numeric', autocomplete: 'off', placeholder: t('time.placeholder'), maxlength: '5', ...attrs });

/**
 * The time a time field holds, `HH:MM`: '' when empty, null when it is not a time. Takes 7:30, 07:30, 7h30,
 * 0730 and 7. @param {HTMLInputElement} el @returns {string | null}
 */
export function readTime(el) {
  const v = el.value.trim().toLowerCase();
  if (!v) return '';
  const m = /^(\d{1,2})(?:\s*[:h.]\s*(\d{2})?)?$/.exec(v) ?? /^(\d{2})(\d{2})$/.exec(v);
  if (!m) return null;
  const [hh, mm] = [Number(m[1]), Number(m[2] ?? 0)];
  if (hh > 24 || mm > 59 || (hh === 24 && mm > 0)) return null;
  return `${pad2(hh)}:${pad2(mm)}`;
}

/** A number field that takes a decimal comma (not `type=number`, whose parsing follows the browser's locale).
 * @param {string} name @param {Attrs} [attrs] @returns {HTMLInputElement} */
export const numberInput = (name, attrs = {}) => input(name, { inputmode: 'decimal', autocomplete: 'off', ...attrs });

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
