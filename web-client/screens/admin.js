// @ts-check
/** Admin: user accounts (create, disable, reset password) and facilities (create, edit). */
import { api } from '../api.js';
import { facilities, forgetFacilities } from '../data.js';
import { t } from '../i18n.js';
import { busy, cards, clearProblem, field, formAlert, h, heading, input, notice, select, showProblem } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').User} User */
/** @typedef {import('../types.js').Facility} Facility */
/** @typedef {import('../i18n.js').Key} Key */

/** @param {Ctx} ctx @param {string[]} params */
export async function render(ctx, [page]) {
  if (page === 'facilities') return renderFacilities(ctx);
  return renderUsers(ctx);
}

/** @param {Ctx} ctx */
async function renderUsers(ctx) {
  const list = h('div', { id: 'users' });
  const facs = await facilities();
  const facName = (/** @type {string | null} */ id) => facs.find((f) => f.id === id)?.name ?? '—';
  const roles = /** @type {[string, string][]} */ (['health_worker', 'doctor', 'admin'].map((r) => [r, t(/** @type {Key} */ (`role.${r}`))]));
  const facOptions = /** @type {[string, string][]} */ ([['', t('admin.noFacility')], ...facs.map((f) => [f.id, f.name])]);

  const form = h('form', { class: 'grid-form', novalidate: true, id: 'user-form' },
    field('admin.username', input('username', { autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' }), { hint: t('admin.usernameHint') }),
    field('admin.displayName', input('display_name', { autocomplete: 'off' })),
    field('admin.password', input('password', { type: 'password', autocomplete: 'new-password' }), { hint: t('admin.passwordHint') }),
    field('admin.role', select('role', roles, 'health_worker')),
    field('admin.facility', select('facility_id', facOptions), { wide: true }),
    h('div', { class: 'wide row' }, h('button', { type: 'submit', class: 'primary' }, t('admin.createUser'))));
  // An admin works for the whole province: no facility to choose.
  const roleSelect = /** @type {HTMLSelectElement} */ (form.querySelector('[name=role]'));
  const facilitySelect = /** @type {HTMLSelectElement} */ (form.querySelector('[name=facility_id]'));
  const adminHasNoFacility = () => {
    const admin = roleSelect.value === 'admin';
    if (admin) facilitySelect.value = '';
    facilitySelect.disabled = admin;
  };
  roleSelect.addEventListener('change', adminHasNoFacility);
  form.addEventListener('reset', () => setTimeout(adminHasNoFacility));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    const d = new FormData(form);
    const body = {
      username: String(d.get('username') ?? '').trim(), display_name: String(d.get('display_name') ?? '').trim(),
      password: String(d.get('password') ?? ''), role: String(d.get('role')), facility_id: String(d.get('facility_id') ?? '') || null,
    };
    const r = await busy(form, () => api('/api/users', { method: 'POST', body }));
    if (!r) return;
    if (!r.ok) return showProblem(form, r.problem);
    form.reset();
    formAlert(form).replaceChildren(notice(t('admin.userCreated', { name: r.data.username }), 'ok'));
    await load();
  });

  async function load() {
    const r = await api('/api/users');
    if (!r.ok) return list.replaceChildren(notice(t('err.listFailed'), 'error'));
    /** @type {User[]} */
    const users = r.data;
    users.sort((a, b) => a.username.localeCompare(b.username));
    list.replaceChildren(cards(h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, [t('admin.username'), t('admin.displayName'), t('admin.role'), t('admin.facility'), t('admin.status'), ''].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, users.map((u) => userRow(u)))))));
  }

  /** @param {User} u */
  function userRow(u) {
    const msg = h('div', { class: 'row-msg', role: 'status' });
    const toggle = h('button', { type: 'button', class: 'link-button' }, u.active ? t('admin.disable') : t('admin.enable'));
    toggle.addEventListener('click', async () => {
      if (u.active && !confirm(t('admin.confirmDisable', { name: u.username }))) return;
      const r = await busy(toggle, () => api(`/api/users/${u.id}`, { method: 'PATCH', body: { active: !u.active } }));
      if (!r) return;
      if (!r.ok) return msg.replaceChildren(notice(r.problem.detail ?? t('err.generic'), 'error'));
      await load();
    });
    const reset = h('button', { type: 'button', class: 'link-button' }, t('admin.resetPassword'));
    reset.addEventListener('click', () => {
      const pw = input('password', { type: 'password', autocomplete: 'new-password', 'aria-label': t('admin.newPassword'), placeholder: t('admin.newPassword') });
      // One's own password changes only with the current one (a borrowed session must not keep the account).
      const own = u.id === ctx.user.id;
      const current = input('current_password', { type: 'password', autocomplete: 'current-password', 'aria-label': t('admin.currentPassword'), placeholder: t('admin.currentPassword') });
      const f = h('form', { class: 'row', novalidate: true }, own ? current : null, pw, h('button', { type: 'submit', class: 'primary small' }, t('admin.setPassword')));
      f.addEventListener('submit', async (e) => {
        e.preventDefault();
        const body = own ? { password: pw.value, current_password: current.value } : { password: pw.value };
        const r = await busy(f, () => api(`/api/users/${u.id}`, { method: 'PATCH', body }));
        if (!r) return;
        if (!r.ok) return showProblem(f, r.problem);
        msg.replaceChildren(notice(t('admin.passwordSet'), 'ok'));
      });
      msg.replaceChildren(f);
      (own ? current : pw).focus();
    });
    return h('tr', { 'data-user': u.username },
      h('td', {}, u.username), h('td', {}, u.display_name), h('td', {}, t(/** @type {Key} */ (`role.${u.role}`))),
      h('td', {}, facName(u.facility_id)),
      h('td', {}, h('span', { class: u.active ? 'badge state-completed' : 'badge state-cancelled' }, u.active ? t('admin.active') : t('admin.disabled'))),
      h('td', { class: 'actions' }, toggle, reset, msg));
  }

  ctx.view.append(heading(t('nav.users')),
    h('section', { class: 'panel' }, h('h3', {}, t('admin.newUser')), form),
    h('section', { class: 'panel' }, h('h3', {}, t('admin.allUsers')), list));
  await load();
}

/** @param {Ctx} ctx */
async function renderFacilities(ctx) {
  const list = h('div', { id: 'facilities' });
  /** @type {Facility | null} */
  let editing = null;
  const kinds = /** @type {[string, string][]} */ (['commune_station', 'district_hospital', 'provincial_hospital'].map((k) => [k, t(/** @type {Key} */ (`kind.${k}`))]));
  const referral = select('referral_hospital_id', []);
  const kind = select('kind', kinds, 'commune_station');
  const title = h('h3', {}, t('admin.newFacility'));
  const submit = h('button', { type: 'submit', class: 'primary' }, t('admin.createFacility'));
  const cancel = h('button', { type: 'button', class: 'secondary', hidden: true }, t('admin.cancelEdit'));
  const form = h('form', { class: 'grid-form', novalidate: true, id: 'facility-form' },
    field('admin.code', input('code', { autocomplete: 'off', maxlength: '32' })),
    field('admin.facilityName', input('name', { autocomplete: 'off', maxlength: '200' })),
    field('admin.kind', kind),
    field('admin.referral', referral),
    field('admin.province', input('province', { autocomplete: 'off', maxlength: '100' })),
    h('div', { class: 'wide row' }, submit, cancel));
  const syncReferral = () => {
    /** @type {HTMLElement} */ (referral.closest('.field')).hidden = kind.value !== 'commune_station';
  };
  kind.addEventListener('change', syncReferral);

  /** @param {Facility | null} f */
  function edit(f) {
    editing = f;
    form.reset();
    clearProblem(form);
    title.textContent = f ? t('admin.editFacility', { name: f.name }) : t('admin.newFacility');
    submit.textContent = f ? t('admin.saveFacility') : t('admin.createFacility');
    cancel.hidden = !f;
    if (f) {
      for (const k of /** @type {const} */ (['code', 'name', 'kind', 'province'])) {
        /** @type {HTMLInputElement} */ (form.querySelector(`[name=${k}]`)).value = f[k];
      }
      referral.value = f.referral_hospital_id ?? '';
      form.scrollIntoView({ block: 'start' });
    }
    syncReferral();
  }
  cancel.addEventListener('click', () => edit(null));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    const d = new FormData(form);
    const body = {
      code: String(d.get('code') ?? '').trim(), name: String(d.get('name') ?? '').trim(), kind: String(d.get('kind')),
      province: String(d.get('province') ?? '').trim(),
      referral_hospital_id: d.get('kind') === 'commune_station' ? String(d.get('referral_hospital_id') ?? '') || null : null,
    };
    const r = await busy(form, () => api(editing ? `/api/facilities/${editing.id}` : '/api/facilities', { method: editing ? 'PUT' : 'POST', body }));
    if (!r) return;
    if (!r.ok) return showProblem(form, r.problem);
    forgetFacilities();
    edit(null);
    formAlert(form).replaceChildren(notice(t('admin.facilitySaved'), 'ok'));
    await load();
  });

  async function load() {
    forgetFacilities();
    const facs = await facilities();
    const hospitals = facs.filter((f) => f.kind !== 'commune_station');
    referral.replaceChildren(h('option', { value: '' }, t('admin.chooseHospital')), ...hospitals.map((f) => h('option', { value: f.id }, f.name)));
    const name = (/** @type {string | null} */ id) => facs.find((f) => f.id === id)?.name ?? '—';
    facs.sort((a, b) => a.code.localeCompare(b.code));
    list.replaceChildren(cards(h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, [t('admin.code'), t('admin.facilityName'), t('admin.kind'), t('admin.referral'), t('admin.province'), ''].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, facs.map((f) => h('tr', {},
        h('td', {}, f.code), h('td', {}, f.name), h('td', {}, t(/** @type {Key} */ (`kind.${f.kind}`))),
        h('td', {}, f.referral_hospital_id ? name(f.referral_hospital_id) : '—'), h('td', {}, f.province),
        h('td', {}, h('button', { type: 'button', class: 'link-button', onclick: () => edit(f) }, t('admin.edit'))))))))));
  }

  ctx.view.append(heading(t('nav.facilities')), h('section', { class: 'panel' }, title, form), h('section', { class: 'panel' }, h('h3', {}, t('admin.allFacilities')), list));
  await load();
  syncReferral();
}
