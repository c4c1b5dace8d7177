// @ts-check
import { getLang, msg, setLang, t } from './i18n.js';

/** @typedef {import('./i18n.js').Lang} Lang */
/** @typedef {import('./i18n.js').Msg} Msg */
/** @typedef {{id: string, username: string, display_name: string, role: string, facility_id: string | null}} User */
/** @typedef {{id: string, full_name: string, date_of_birth: string, phone?: string | null}} Patient */
/** @typedef {{field: string, message: string, message_en?: string}} FieldError */
/** @typedef {{status: number, code: string, detail?: string, detail_en?: string, errors: FieldError[]}} Problem */
/** @typedef {{ok: true, status: number, data: unknown} | {ok: false, status: number, problem: Problem}} ApiResult */

/** Problem codes with a sentence of our own (`err.<code>`), for when the server sends no detail. */
const OWN_CODES = ['wrong_credentials', 'too_many_attempts', 'account_disabled'];
const ROLES = ['health_worker', 'doctor', 'admin'];

/** @type {Map<HTMLElement, Msg>} Elements showing a two-language message, rewritten on a switch. */
const shown = new Map();
/** @type {Patient[] | null} */
let results = null;
let alertSeq = 0;

/** @param {string} id @returns {HTMLElement} */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
/** @param {string} id @returns {HTMLFormElement} */
const form = (id) => /** @type {HTMLFormElement} */ ($(id));

/** @param {HTMLFormElement} f @param {string} name @returns {HTMLInputElement | null} */
const input = (f, name) => {
  const field = f.elements.namedItem(name);
  return field instanceof HTMLInputElement ? field : null;
};

/**
 * Calls the JSON API. Never throws: a failure comes back as an RFC 9457 problem, a network failure as code
 * `network_error` with status 0. @param {string} path @param {{method?: string, body?: unknown}} [options]
 * @returns {Promise<ApiResult>}
 */
export async function api(path, { method = 'GET', body } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json, application/problem+json' };
  const json = body === undefined ? undefined : JSON.stringify(body);
  if (json) headers['Content-Type'] = 'application/json';
  // fetch rejects only when the network fails (offline, DNS, dropped link).
  const res = await fetch(path, { method, credentials: 'same-origin', headers, body: json }).catch(() => null);
  if (!res) return { ok: false, status: 0, problem: { status: 0, code: 'network_error', errors: [] } };
  const data = await res.json().catch(() => null); // 204 and non-JSON bodies give null
  if (res.ok) return { ok: true, status: res.status, data };
  const p = /** @type {Partial<Problem>} */ (data && typeof data === 'object' ? data : {});
  const text = (/** @type {unknown} */ v) => (typeof v === 'string' && v ? v : undefined);
  const { status } = res;
  const errors = Array.isArray(p.errors) ? p.errors : [];
  const code = text(p.code) ?? `http_${status}`;
  const problem = { status, code, detail: text(p.detail), detail_en: text(p.detail_en), errors };
  return { ok: false, status, problem };
}

/** @param {Msg} a @param {Msg} b @returns {Msg} */
const join = (a, b) => ({ vi: `${a.vi} ${b.vi}`, en: `${a.en} ${b.en}` });

/** What to say about a failed call: the server's own sentence if any. @param {Problem} p @returns {Msg} */
function problemMsg(p) {
  if (p.code === 'network_error') return msg('err.network');
  const own = msg(OWN_CODES.includes(p.code) ? `err.${p.code}` : 'err.generic');
  const m = { vi: p.detail ?? own.vi, en: p.detail_en ?? own.en };
  return p.code === 'too_many_attempts' ? join(m, msg('err.temporary')) : m;
}

/** Shows `m` in `el` (or clears it), kept for language switches. @param {HTMLElement} el @param {Msg | null} m */
function say(el, m) {
  if (m) shown.set(el, m);
  else shown.delete(el);
  el.textContent = m ? m[getLang()] : '';
}

/** Sets the alert; emptied first so a repeated message is announced again. @param {Msg | null} m */
function showAlert(m) {
  const seq = ++alertSeq;
  say($('alert'), null);
  if (m) setTimeout(() => seq === alertSeq && say($('alert'), m), 60);
}

/** @param {HTMLInputElement} field @param {Msg | null} m */
function setFieldError(field, m) {
  const box = document.getElementById(`${field.id}-error`);
  if (box) say(box, m);
  if (m) field.setAttribute('aria-invalid', 'true');
  else field.removeAttribute('aria-invalid');
}

/** @param {HTMLFormElement} f */
function clearErrors(f) {
  for (const el of f.elements) if (el instanceof HTMLInputElement) setFieldError(el, null);
  showAlert(null);
}

/** Summary in the alert, each field message next to its input. @param {Problem} p @param {HTMLFormElement} [f] */
function showProblem(p, f) {
  let summary = problemMsg(p);
  /** @type {HTMLInputElement | null} */
  let first = null;
  for (const e of p.errors) {
    const m = { vi: e.message, en: e.message_en || e.message };
    const field = f ? input(f, e.field) : null;
    if (field) setFieldError(field, m);
    else summary = join(summary, m);
    first ??= field;
  }
  showAlert(summary);
  first?.focus();
}

/** Runs `work` for `el` unless one is under way (double taps on slow links).
 * @template T @param {HTMLElement} el @param {() => Promise<T>} work @returns {Promise<T | undefined>} */
async function busy(el, work) {
  if (el.hasAttribute('aria-busy')) return undefined;
  el.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    el.removeAttribute('aria-busy');
  }
}

/** @param {'loading' | 'login' | 'home'} view */
const show = (view) => ['loading', 'login', 'home'].forEach((id) => ($(id).hidden = id !== view));

/** @param {User} user */
function showHome(user) {
  $('user-name').textContent = user.display_name;
  say($('user-role'), ROLES.includes(user.role) ? msg(`role.${user.role}`) : { vi: user.role, en: user.role });
  $('search-box').hidden = user.role !== 'health_worker';
  show('home');
}

/** The login form; patient data on screen is forgotten. @param {Msg | null} [m] */
function showLogin(m = null) {
  form('search').reset();
  clearErrors(form('search'));
  renderResults(null);
  showAlert(m);
  show('login');
}

/** A signed-in GET: on 401 refreshes the session once and retries; null (login shown) when the session is over.
 * @param {string} path @param {Msg | null} [expired] said on the login form @returns {Promise<ApiResult | null>} */
async function authed(path, expired = msg('err.session')) {
  let r = await api(path);
  if (r.status !== 401) return r;
  const refreshed = await api('/api/auth/refresh', { method: 'POST' });
  if (refreshed.status === 0) return refreshed;
  if (refreshed.ok) r = await api(path);
  if (r.status !== 401) return r;
  showLogin(expired);
  return null;
}

/** `YYYY-MM-DD` as DD/MM/YYYY in Vietnamese, unchanged in English. @param {string} iso @returns {string} */
function formatDate(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso);
  return m && getLang() === 'vi' ? `${m[3]}/${m[2]}/${m[1]}` : iso;
}

/** @param {string} tag @param {string} text @returns {HTMLElement} */
const el = (tag, text) => Object.assign(document.createElement(tag), { textContent: text });

/** @param {Patient} p @returns {HTMLLIElement} */
function patientItem(p) {
  const li = document.createElement('li');
  li.append(
    el('strong', p.full_name),
    el('span', `${t('patient.dob')}: ${formatDate(p.date_of_birth)}`),
    el('span', `${t('patient.phone')}: ${p.phone || t('patient.noPhone')}`),
  );
  return li;
}

/** @param {Patient[] | null} list null clears the results */
function renderResults(list) {
  results = list;
  $('results').replaceChildren(...(list ?? []).map(patientItem));
  const count = list?.length ? msg('search.count', { n: list.length }) : msg('search.none');
  say($('results-status'), list ? count : null);
}

/** @param {Event} e */
async function onLogin(e) {
  e.preventDefault();
  const f = form('login');
  const user = /** @type {HTMLInputElement} */ (input(f, 'username'));
  const pass = /** @type {HTMLInputElement} */ (input(f, 'password'));
  clearErrors(f);
  if (!user.value.trim() || !pass.value) {
    showAlert(msg('err.missing'));
    return (user.value.trim() ? pass : user).focus();
  }
  const body = { username: user.value.trim(), password: pass.value };
  const r = await busy(f, () => api('/api/auth/login', { method: 'POST', body }));
  if (!r) return;
  if (r.ok) {
    f.reset();
    showHome(/** @type {{user: User}} */ (r.data).user);
    return $('home-title').focus();
  }
  showProblem(r.problem, f);
  if (r.problem.code === 'wrong_credentials') pass.focus();
}

async function onLogout() {
  const r = await busy($('logout'), () => api('/api/auth/logout', { method: 'POST' }));
  if (!r) return;
  if (!r.ok && r.status !== 401) return showProblem(r.problem);
  showLogin();
  $('username').focus();
}

/** @param {Event} e */
async function onSearch(e) {
  e.preventDefault();
  const f = form('search');
  const q = /** @type {HTMLInputElement} */ (input(f, 'q'));
  clearErrors(f);
  const r = await busy(f, () => authed(`/api/patients?q=${encodeURIComponent(q.value.trim())}`));
  if (!r) return;
  if (r.ok) return renderResults(/** @type {Patient[]} */ (r.data));
  renderResults(null);
  showProblem(r.problem, f);
}

const langButtons = () => document.querySelectorAll('[data-lang]');
/** @param {Element} b @returns {Lang} */
const langOf = (b) => (b.getAttribute('data-lang') === 'en' ? 'en' : 'vi');

/** @param {Lang} lang */
function switchLang(lang) {
  setLang(lang);
  for (const [box, m] of shown) box.textContent = m[lang];
  if (results) renderResults(results);
  for (const b of langButtons()) b.setAttribute('aria-pressed', String(langOf(b) === lang));
}

/** Wires the page, then asks who is signed in (refreshing the session once). */
async function start() {
  switchLang(getLang());
  for (const b of langButtons()) b.addEventListener('click', () => switchLang(langOf(b)));
  form('login').addEventListener('submit', onLogin);
  form('search').addEventListener('submit', onSearch);
  $('logout').addEventListener('click', onLogout);

  const me = await authed('/api/auth/me', null);
  if (me?.ok) showHome(/** @type {User} */ (me.data));
  else if (me) showLogin(problemMsg(me.problem));
}

start();
