// @ts-check
/**
 * The app shell: who is signed in, the header and navigation for their role, the connection banner, and
 * hash routing. Each screen is an ES module loaded when first visited, so the first page load stays small.
 */
import { api, onSessionExpired } from './api.js';
import { forgetDrafts, saveOpenNotes, setDraftOwner } from './drafts.js';
import { getLang, setLang, t } from './i18n.js';
import { LiveSocket } from './socket.js';
import { h } from './ui.js';

/** @typedef {import('./types.js').User} User */
/** @typedef {import('./types.js').Role} Role */
/** @typedef {import('./types.js').Ctx} Ctx */
/** @typedef {import('./i18n.js').Key} Key */
/** @typedef {(ctx: Ctx, params: string[]) => Promise<void> | void} Render */
/** @typedef {{pattern: RegExp, roles: Role[], load: () => Promise<{render: Render}>}} Route */

/** @type {Route[]} */
const ROUTES = [
  { pattern: /^\/station$/, roles: ['health_worker'], load: () => import('./screens/station.js') },
  { pattern: /^\/patients\/(new)$/, roles: ['health_worker'], load: () => import('./screens/patient.js') },
  { pattern: /^\/patients\/([\w-]+)$/, roles: ['health_worker'], load: () => import('./screens/patient.js') },
  { pattern: /^\/consultations\/([\w-]+)$/, roles: ['health_worker', 'doctor'], load: () => import('./screens/consultation.js') },
  { pattern: /^\/doctor$/, roles: ['doctor'], load: () => import('./screens/doctor.js') },
  { pattern: /^\/doctor\/hours$/, roles: ['doctor'], load: () => import('./screens/hours.js') },
  { pattern: /^\/admin\/sessions\/([\w-]+)$/, roles: ['admin'], load: () => import('./screens/session.js') },
  { pattern: /^\/admin\/sessions$/, roles: ['admin'], load: () => import('./screens/sessions.js') },
  { pattern: /^\/admin\/stations$/, roles: ['admin'], load: () => import('./screens/stations.js') },
  { pattern: /^\/admin\/(users|facilities)$/, roles: ['admin'], load: () => import('./screens/admin.js') },
  { pattern: /^\/admin\/audit$/, roles: ['admin'], load: () => import('./screens/audit.js') },
  { pattern: /^\/device-check$/, roles: ['health_worker', 'doctor', 'admin'], load: () => import('./screens/devicecheck.js') },
];

/** @type {Record<Role, [string, Key][]>} */
const NAV = {
  health_worker: [['#/station', 'nav.station'], ['#/device-check', 'nav.deviceCheck']],
  doctor: [['#/doctor', 'nav.doctor'], ['#/doctor/hours', 'nav.hours'], ['#/device-check', 'nav.deviceCheck']],
  admin: [['#/admin/sessions', 'nav.sessions'], ['#/admin/stations', 'nav.stations'], ['#/admin/users', 'nav.users'], ['#/admin/facilities', 'nav.facilities'], ['#/admin/audit', 'nav.audit']],
};

/** @type {Record<Role, string>} */
const HOME = { health_worker: '#/station', doctor: '#/doctor', admin: '#/admin/sessions' };

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @type {User | null} */
let user = null;
const socket = new LiveSocket();
/** @type {(() => void)[]} */
let cleanups = [];
let renderSeq = 0;
/** @type {string | null} A message for the login form (session ended). */
let loginMessage = null;

/** Runs and forgets the previous screen's cleanups. */
function leaveScreen() {
  for (const fn of cleanups.splice(0)) {
    try {
      fn();
    } catch {
      // A failing cleanup must not block the next screen.
    }
  }
}

/** @param {string} hash */
function go(hash) {
  if (location.hash === hash) void route();
  else location.hash = hash;
}

/** Shows the screen for the current hash. */
async function route() {
  const seq = ++renderSeq;
  leaveScreen();
  const path = location.hash.replace(/^#/, '') || '/';
  const main = $('main');
  const view = h('div', { class: 'view' });
  if (!user) {
    const { render } = await import('./screens/login.js');
    if (seq !== renderSeq) return;
    main.replaceChildren(view);
    render(view, { message: loginMessage, onLogin: signedIn });
    return;
  }
  if (path === '/' || path === '/login') return go(HOME[user.role]);
  const found = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m && x.r.roles.includes(/** @type {User} */ (user).role));
  markNav(path);
  if (!found || !found.m) {
    main.replaceChildren(h('div', { class: 'view' }, h('h2', {}, t('err.notFoundTitle')), h('p', {}, t('err.notFoundPage')), h('a', { href: '#/' }, t('nav.home'))));
    return;
  }
  const mod = await found.r.load().catch(() => null);
  if (seq !== renderSeq) return;
  if (!mod) {
    main.replaceChildren(h('p', { class: 'notice error', role: 'alert' }, t('err.network')));
    return;
  }
  main.replaceChildren(view);
  /** @type {Ctx} */
  const ctx = {
    user,
    socket,
    view,
    cleanup: (fn) => (seq === renderSeq ? cleanups.push(fn) : fn()),
    go,
    rerender: () => void route(),
  };
  await mod.render(ctx, found.m.slice(1));
  if (seq === renderSeq) /** @type {HTMLElement | null} */ (view.querySelector('h2'))?.focus({ preventScroll: true });
}

/** @param {string} path */
function markNav(path) {
  for (const a of $('nav').querySelectorAll('a')) {
    const href = (a.getAttribute('href') ?? '').slice(1);
    if (path === href || path.startsWith(`${href}/`)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function renderHeader() {
  const nav = $('nav');
  const who = $('who');
  if (!user) {
    nav.hidden = true;
    who.hidden = true;
    $('logout').hidden = true;
    nav.replaceChildren();
    return;
  }
  nav.replaceChildren(...NAV[user.role].map(([href, key]) => h('a', { href }, t(key))));
  nav.hidden = false;
  who.replaceChildren(h('span', { class: 'who-name' }, user.display_name), ' · ', t(/** @type {Key} */ (`role.${user.role}`)));
  who.hidden = false;
  $('logout').hidden = false;
}

/** @param {User} u */
function signedIn(u) {
  user = u;
  setDraftOwner(u.id);
  loginMessage = null;
  renderHeader();
  socket.start();
  const path = location.hash.replace(/^#/, '');
  if (!path || path === '/' || path === '/login') go(HOME[u.role]);
  else void route();
}

/** @param {string | null} message */
function signedOut(message) {
  user = null;
  loginMessage = message;
  socket.stop();
  renderHeader();
  void route();
}

/** Saves the open note first; what cannot be saved is said before it would be dropped from this browser. */
async function logout() {
  if (!(await saveOpenNotes()) && !confirm(t('logout.unsaved'))) return;
  await api('/api/auth/logout', { method: 'POST' });
  forgetDrafts();
  signedOut(null);
}

/** The banner when the live connection is down for more than a moment (it clears itself). */
function watchConnection() {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const banner = $('conn');
  socket.onStatus((online) => {
    clearTimeout(timer);
    if (online) {
      banner.hidden = true;
      return;
    }
    timer = setTimeout(() => {
      if (!user || socket.online) return;
      banner.textContent = t('conn.lost');
      banner.hidden = false;
    }, 2500);
  });
}

/** @param {'vi' | 'en'} lang */
function markLang(lang) {
  setLang(lang);
  for (const b of document.querySelectorAll('[data-lang]')) b.setAttribute('aria-pressed', String(b.getAttribute('data-lang') === lang));
}

/** @param {'vi' | 'en'} lang */
function switchLang(lang) {
  markLang(lang);
  if (!$('conn').hidden) $('conn').textContent = t('conn.lost');
  renderHeader();
  void route();
}

async function start() {
  markLang(getLang());
  for (const b of document.querySelectorAll('[data-lang]')) {
    b.addEventListener('click', () => switchLang(b.getAttribute('data-lang') === 'en' ? 'en' : 'vi'));
  }
  $('logout').addEventListener('click', () => void logout());
  window.addEventListener('hashchange', () => void route());
  onSessionExpired(() => {
    if (user) signedOut(t('err.session'));
  });
  watchConnection();
  const me = await api('/api/auth/me');
  if (me.ok) signedIn(me.data);
  else signedOut(me.status === 0 ? t('err.network') : null);
}

void start();
