// @ts-check
/**
 * Language choice and lookup. Every user-visible string lives in `lang/vi.js` (the default) and `lang/en.js`;
 * `en` is typed as `typeof vi`, so `tsc --checkJs` reports a missing key, and `t()` takes only known keys.
 */
import { vi } from './lang/vi.js';
import { en } from './lang/en.js';

/** @typedef {'vi' | 'en'} Lang */
/** @typedef {keyof typeof vi} Key */

const STORAGE_KEY = 'telehealth.lang';

/** The language saved on this device, Vietnamese if none. @returns {Lang} */
function storedLang() {
  try {
    return localStorage.getItem(STORAGE_KEY) === 'en' ? 'en' : 'vi';
  } catch {
    return 'vi';
  }
}

/** @type {Lang} */
let current = storedLang();

/** @returns {Lang} */
export function getLang() {
  return current;
}

/** Switches language, remembers it and retranslates the static page text. @param {Lang} lang */
export function setLang(lang) {
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Storage blocked (private mode): the choice lasts for this page only.
  }
  translatePage();
}

/**
 * The text for `key` in the current language, `{name}` slots filled from `vars`.
 * @param {Key} key @param {Record<string, string | number>} [vars] @returns {string}
 */
export function t(key, vars) {
  /** @type {Record<string, string>} */
  const dict = current === 'en' ? en : vi;
  const text = dict[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (slot, name) => (vars && name in vars ? String(vars[name]) : slot));
}

/** Fills `data-i18n` (text) and `data-i18n-label` (aria-label) elements and sets `<html lang>`. */
export function translatePage() {
  document.documentElement.lang = current;
  for (const el of document.querySelectorAll('[data-i18n]')) {
    el.textContent = t(/** @type {Key} */ (el.getAttribute('data-i18n') ?? ''));
  }
  for (const el of document.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(/** @type {Key} */ (el.getAttribute('data-i18n-label') ?? '')));
  }
}
