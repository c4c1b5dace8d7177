// @ts-check
/** Admin: one session's quality summary, charts per participant (loss, RTT, bitrate), and its event timeline. */
import { api } from '../api.js';
import { lineChart } from '../charts.js';
import { facilities } from '../data.js';
import { t } from '../i18n.js';
import { dateTime, h, heading, link, notice, stateBadge, time } from '../ui.js';
import { duration, lossClass, num } from './sessions.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').SessionDetail} SessionDetail */
/** @typedef {import('../types.js').SessionEvent} SessionEvent */
/** @typedef {import('../types.js').User} User */
/** @typedef {import('../charts.js').Series} Series */

/** @param {Ctx} ctx @param {string[]} params */
export async function render(ctx, [id]) {
  const [r, ur, facs] = await Promise.all([api(`/api/sessions/${id}`), api('/api/users'), facilities()]);
  const back = link('#/admin/sessions', t('sessions.back'));
  if (!r.ok) {
    ctx.view.append(heading(t('sessions.one')), notice(r.problem.detail ?? t('err.listFailed'), 'error'), back);
    return;
  }
  /** @type {SessionDetail} */
  const s = r.data;
  // A long call's log comes a page at a time.
  for (let next = s.next_after_id; next !== null && next !== undefined;) {
    const more = await api(`/api/sessions/${id}?after_id=${next}`);
    if (!more.ok) break;
    s.events.push(...more.data.events);
    next = more.data.next_after_id;
  }
  /** @type {Map<string, User>} */
  const users = new Map((ur.ok ? /** @type {User[]} */ (ur.data) : []).map((u) => [u.id, u]));
  const who = (/** @type {string | null} */ uid) => (uid ? users.get(uid)?.username ?? uid.slice(0, 8) : t('sessions.server'));
  const facName = (/** @type {string} */ fid) => facs.find((f) => f.id === fid)?.name ?? '—';
  const q = s.quality;

  /** @type {[import('../i18n.js').Key, string][]} */
  const facts = [
    ['consult.station', facName(s.station_id)], ['consult.hospital', facName(s.hospital_id)],
    ['consult.doctor', s.doctor_id ? who(s.doctor_id) : '—'], ['consult.requested', dateTime(s.created_at)],
    ['consult.started', dateTime(s.started_at)], ['consult.ended', dateTime(s.ended_at)],
    ['quality.duration', duration(q.duration_secs)], ['quality.samples', String(q.samples)],
    ['quality.avgLoss', num(q.avg_loss_pct, '%')], ['quality.worstLoss', num(q.worst_loss_pct, '%')],
    ['quality.avgRtt', num(q.avg_rtt_ms, 'ms', 0)], ['quality.avgJitter', num(q.avg_jitter_ms, 'ms', 0)],
    ['quality.audioOnly', duration(q.audio_only_secs)], ['quality.reconnections', String(q.reconnections)],
  ];

  const stats = s.events.filter((e) => e.kind === 'stats');
  const charts = h('div', { class: 'charts', id: 'charts' });
  if (stats.length) {
    const t0 = new Date(stats[0].at).getTime();
    const t1 = new Date(stats[stats.length - 1].at).getTime();
    /** @param {string} key @returns {Series[]} */
    const series = (key) => {
      /** @type {Map<string, [number, number][]>} */
      const by = new Map();
      for (const e of stats) {
        const v = e.data[key];
        if (typeof v !== 'number') continue;
        const uid = String(e.data.user_id ?? e.user_id ?? '?');
        if (!by.has(uid)) by.set(uid, []);
        by.get(uid)?.push([new Date(e.at).getTime(), v]);
      }
      return [...by].map(([uid, points]) => ({ name: who(uid), points }));
    };
    charts.append(
      lineChart({ title: t('quality.chartLoss'), unit: '%', series: series('loss_pct'), t0, t1, id: 'chart-loss' }),
      lineChart({ title: t('quality.chartRtt'), unit: 'ms', series: series('rtt_ms'), t0, t1, id: 'chart-rtt' }),
      lineChart({ title: t('quality.chartBitrateIn'), unit: 'kbit/s', series: series('bitrate_in_kbps'), t0, t1, id: 'chart-bitrate' }),
      lineChart({ title: t('quality.chartJitter'), unit: 'ms', series: series('jitter_ms'), t0, t1, id: 'chart-jitter' }),
    );
  } else charts.append(h('p', { class: 'muted', id: 'no-stats' }, t('quality.noStats')));

  const events = s.events.filter((e) => e.kind !== 'stats');
  ctx.view.append(
    heading(t('sessions.one'), stateBadge(s.state)),
    h('div', { class: 'row' }, back, h('a', { class: 'button secondary', href: `/api/sessions/${s.consultation_id}/events.csv`, download: `session-${s.consultation_id}.csv` }, t('sessions.csv'))),
    h('section', { class: 'panel' }, h('dl', { class: 'facts two', id: 'session-facts' }, facts.map(([k, v]) => [h('dt', {}, t(k)), h('dd', { class: k === 'quality.worstLoss' ? lossClass(q.worst_loss_pct) : '' }, v)]))),
    h('section', { class: 'panel' }, h('h3', {}, t('quality.charts')), charts),
    h('section', { class: 'panel' }, h('h3', {}, t('sessions.timeline')),
      h('ol', { class: 'timeline', id: 'timeline' }, events.map((e) => h('li', { 'data-kind': e.kind },
        h('time', { datetime: e.at }, time(e.at)), ' ', h('strong', {}, e.kind), ' ', h('span', { class: 'muted' }, who(e.user_id)), ' ',
        ...summary(e), h('code', { class: 'small' }, describe(e)))))),
  );
}

/** A step of the degradation ladder in words, before its raw fields. @param {SessionEvent} e */
function summary(e) {
  if (e.kind !== 'video_level') return [];
  const d = /** @type {Record<string, any>} */ (e.data ?? {});
  const text = d.off === 'bandwidth' ? t('sessions.videoOffBandwidth')
    : d.off === 'requested' ? t('sessions.videoOffRequested')
      : t('sessions.videoLayer', { n: Number(d.layer ?? 0) + 1, of: Number(d.layers ?? 1) });
  return [h('span', { class: d.off ? 'warn-text' : '' }, text), ' '];
}

/** The event's data as short `key=value` pairs. @param {SessionEvent} e */
function describe(e) {
  return Object.entries(e.data ?? {}).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ');
}
