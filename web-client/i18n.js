// @ts-check
/**
 * Every user-visible string, in Vietnamese (the default) and English.
 * `en` is typed as `typeof vi`, so `tsc --checkJs` reports a missing key.
 */

/** @typedef {'vi' | 'en'} Lang */
/** @typedef {{vi: string, en: string}} Msg A sentence in both languages. */

export const vi = {
  'app.title': 'Tư vấn y tế từ xa',
  'app.subtitle': 'Kết nối trạm y tế xã với bác sĩ tuyến huyện',
  'app.loading': 'Đang tải…',
  'lang.label': 'Ngôn ngữ',
  'lang.vi': 'VI',
  'lang.en': 'EN',
  'login.title': 'Đăng nhập',
  'login.username': 'Tên đăng nhập',
  'login.password': 'Mật khẩu',
  'login.submit': 'Đăng nhập',
  'home.greeting': 'Xin chào',
  'home.name': 'Họ tên',
  'home.role': 'Vai trò',
  'home.logout': 'Đăng xuất',
  'role.health_worker': 'Nhân viên y tế',
  'role.doctor': 'Bác sĩ',
  'role.admin': 'Quản trị viên',
  'search.title': 'Tìm bệnh nhân',
  'search.label': 'Tên, số điện thoại hoặc số CCCD',
  'search.submit': 'Tìm',
  'search.none': 'Không tìm thấy bệnh nhân nào.',
  'search.count': 'Tìm thấy {n} bệnh nhân.',
  'patient.dob': 'Ngày sinh',
  'patient.phone': 'Điện thoại',
  'patient.noPhone': 'chưa có',
  'err.missing': 'Vui lòng nhập tên đăng nhập và mật khẩu.',
  'err.wrong_credentials': 'Sai tên đăng nhập hoặc mật khẩu.',
  'err.too_many_attempts': 'Quá nhiều lần thử. Vui lòng thử lại sau ít phút.',
  'err.temporary': 'Đây chỉ là khóa tạm thời; hết thời gian chờ bạn có thể đăng nhập lại.',
  'err.account_disabled': 'Tài khoản đã bị khóa. Vui lòng liên hệ quản trị viên.',
  'err.network': 'Chưa kết nối được với máy chủ. Vui lòng kiểm tra kết nối mạng rồi thử lại.',
  'err.session': 'Phiên đăng nhập đã hết hạn. Vui lòng đăng nhập lại.',
  'err.generic': 'Đã có lỗi xảy ra. Vui lòng thử lại.',
};

/** @type {typeof vi} */
export const en = {
  'app.title': 'Telehealth consultations',
  'app.subtitle': 'Connecting commune health stations with district doctors',
  'app.loading': 'Loading…',
  'lang.label': 'Language',
  'lang.vi': 'VI',
  'lang.en': 'EN',
  'login.title': 'Sign in',
  'login.username': 'Username',
  'login.password': 'Password',
  'login.submit': 'Sign in',
  'home.greeting': 'Welcome',
  'home.name': 'Name',
  'home.role': 'Role',
  'home.logout': 'Sign out',
  'role.health_worker': 'Health worker',
  'role.doctor': 'Doctor',
  'role.admin': 'Administrator',
  'search.title': 'Find a patient',
  'search.label': 'Name, phone number or CCCD number',
  'search.submit': 'Search',
  'search.none': 'No patients found.',
  'search.count': 'Patients found: {n}.',
  'patient.dob': 'Date of birth',
  'patient.phone': 'Phone',
  'patient.noPhone': 'none',
  'err.missing': 'Please enter your username and password.',
  'err.wrong_credentials': 'Wrong username or password.',
  'err.too_many_attempts': 'Too many attempts. Please try again in a few minutes.',
  'err.temporary': 'This is only a temporary lock; you can sign in again after the wait.',
  'err.account_disabled': 'This account is disabled. Please contact an administrator.',
  'err.network': 'Could not reach the server. Please check your connection and try again.',
  'err.session': 'Your session has ended. Please sign in again.',
  'err.generic': 'Something went wrong. Please try again.',
};

const STORAGE_KEY = 'telehealth.lang';

/**
 * The language saved on this device, Vietnamese if none.
 * @returns {Lang}
 */
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

/**
 * Switches language, remembers it and retranslates the static page text.
 * @param {Lang} lang
 * @returns {void}
 */
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
 * @param {Lang} lang
 * @param {string} key
 * @param {Record<string, string | number>} [vars] values for `{name}` slots
 * @returns {string}
 */
function lookup(lang, key, vars) {
  /** @type {Record<string, string>} */
  const dict = lang === 'en' ? en : vi;
  const text = dict[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (slot, name) => (vars && name in vars ? String(vars[name]) : slot));
}

/**
 * The text for `key` in the current language.
 * @param {string} key
 * @param {Record<string, string | number>} [vars]
 * @returns {string}
 */
export function t(key, vars) {
  return lookup(current, key, vars);
}

/**
 * The text for `key` in both languages, for text that must follow a later switch.
 * @param {string} key
 * @param {Record<string, string | number>} [vars]
 * @returns {Msg}
 */
export function msg(key, vars) {
  return { vi: lookup('vi', key, vars), en: lookup('en', key, vars) };
}

/**
 * Fills `data-i18n` (text) and `data-i18n-label` (aria-label) elements and sets `<html lang>`.
 * @returns {void}
 */
export function translatePage() {
  document.documentElement.lang = current;
  for (const el of document.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.getAttribute('data-i18n') ?? '');
  }
  for (const el of document.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.getAttribute('data-i18n-label') ?? ''));
  }
}
