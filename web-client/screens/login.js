// @ts-check
/** The login form. */
import { api } from '../api.js';
import { t } from '../i18n.js';
import { busy, clearProblem, field, formAlert, h, input, notice, showProblem } from '../ui.js';

/** @typedef {import('../types.js').User} User */

/**
 * @param {HTMLElement} view
 * @param {{message: string | null, onLogin: (u: User) => void}} opts
 */
export function render(view, { message, onLogin }) {
  const username = input('username', { autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', required: true });
  const password = input('password', { type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, t('login.submit'));
  const form = h('form', { class: 'stack narrow', novalidate: true, id: 'login' },
    h('h2', { tabindex: '-1' }, t('login.title')),
    message ? notice(message, 'warn') : null,
    field('login.username', username),
    field('login.password', password),
    submit,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    if (!username.value.trim() || !password.value) {
      formAlert(form).textContent = t('login.missing');
      (username.value.trim() ? password : username).focus();
      return;
    }
    const body = { username: username.value.trim(), password: password.value };
    const r = await busy(form, () => api('/api/auth/login', { method: 'POST', body }));
    if (!r) return;
    if (r.ok) return onLogin(r.data.user);
    showProblem(form, r.problem);
    if (r.problem.code === 'wrong_credentials') {
      password.value = '';
      password.focus();
    }
  });
  view.append(form);
  username.focus();
}
