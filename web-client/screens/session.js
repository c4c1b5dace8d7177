// @ts-check
/**
 * Admin: one session's quality summary, charts per participant (loss, RTT, bitrate), the periods someone received
 * no sound or no picture while the other side sent it, and the timeline in words (who, what, when to the second),
 * the technical events and raw fields one click away.
 */
import { api } from '../api.js';
import { lineChart } from '../charts.js';
import { facilities } from '../data.js';
import { t } from '../i18n.js';
import { dateTime, h, heading, link, notice, stateBadge, timeSec } from '../ui.js';
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
  const who = (/** @type {string | null} */ uid) => {
    if (!uid) return t('sessions.server');
    const u = users.get(uid);
    return u ? `${u.display_name} (${t(/** @type {import('../i18n.js').Key} */ (`role.${u.role}`))})` : uid.slice(0, 8);
  };
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
    ['quality.audioOnly', duration(q.audio_only_secs)], ['quality.disconnections', String(q.disconnections ?? 0)],
    ['quality.reconnections', String(q.reconnections)], ['quality.mediaInterruptions', String(q.media_interruptions ?? 0)],
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

  // Who received no sound or no picture while the other side was sending it.
  const gaps = mediaGaps(s.events);
  const gapBox = gaps === null ? null : h('section', { class: 'panel', id: 'media-gaps' }, h('h3', {}, t('sessions.gapsTitle')),
    gaps.length
      ? h('ul', { class: 'list' }, gaps.map((g) => h('li', { class: 'item warn-text', 'data-kind': g.kind, 'data-user': g.user ?? '' },
        t(g.kind === 'audio' ? 'sessions.gapAudio' : 'sessions.gapVideo',
          { who: who(g.user), from: timeSec(g.from), to: timeSec(g.to), s: Math.round((Date.parse(g.to) - Date.parse(g.from)) / 1000) }))))
      : h('p', { class: 'muted' }, t('sessions.noGaps')));
  if (gaps?.length) facts.push(['sessions.gapsFact', t('sessions.gapsCount', { n: gaps.length })]);

  const events = s.events.filter((e) => e.kind !== 'stats');
  const technical = h('input', { type: 'checkbox', id: 'show-technical' });
  const timeline = h('ol', { class: 'timeline', id: 'timeline', 'data-technical': 'false' }, events.map((e) => {
    const [text, tech, cls] = eventText(e, who);
    return h('li', { 'data-kind': e.kind, class: tech ? 'technical' : '' },
      h('time', { datetime: e.at }, timeSec(e.at)), ' ', h('span', { class: cls }, text),
      h('details', { class: 'raw' }, h('summary', {}, t('sessions.raw')), h('code', { class: 'small' }, `${e.kind} ${describe(e)}`)));
  }));
  technical.addEventListener('change', () => {
    timeline.dataset.technical = String(technical.checked);
  });
  ctx.view.append(
    heading(t('sessions.one'), stateBadge(s.state)),
    h('div', { class: 'row' }, back, h('a', { class: 'button secondary', href: `/api/sessions/${s.consultation_id}/events.csv`, download: `session-${s.consultation_id}.csv` }, t('sessions.csv'))),
    h('section', { class: 'panel' }, h('dl', { class: 'facts two', id: 'session-facts' }, facts.map(([k, v]) => [h('dt', {}, t(k)), h('dd', { class: k === 'quality.worstLoss' ? lossClass(q.worst_loss_pct) : '' }, v)]))),
    gapBox ?? '',
    h('section', { class: 'panel' }, h('h3', {}, t('quality.charts')), charts),
    h('section', { class: 'panel' }, h('h3', {}, t('sessions.timeline')),
      h('label', { class: 'check' }, technical, ' ', t('sessions.showTechnical')), timeline),
  );
}

/** Events an admin reading a consultation needs rarely (they stay one tick away). */
const TECHNICAL = new Set(['track_published', 'track_unpublished', 'media_repair', 'error', 'errors_suppressed']);

/**
 * An event as a sentence for a person: [text, technical?, css class].
 * @param {SessionEvent} e @param {(uid: string | null) => string} who @returns {[string, boolean, string]}
 */
function eventText(e, who) {
  const d = /** @type {Record<string, any>} */ (e.data ?? {});
  const name = who(e.user_id);
  /** @param {string} k @param {Record<string, string | number>} [p] */
  const say = (k, p = {}) => t(/** @type {import('../i18n.js').Key} */ (`ev.${k}`), { who: name, ...p });
  const state = (/** @type {unknown} */ v) => (typeof v === 'string' ? t(/** @type {import('../i18n.js').Key} */ (`state.${v}`)) : '—');
  switch (e.kind) {
    case 'accepted': return [say('accepted'), false, ''];
    case 'state_changed': return [d.from ? say('state', { from: state(d.from), to: state(d.to) }) : say('created', { to: state(d.to) }), false, ''];
    case 'joined': return [say('joined'), false, ''];
    case 'reconnected': return [say('reconnected'), false, 'ok-text'];
    case 'reconnecting': return [say('reconnecting'), false, 'warn-text'];
    case 'left': return [say(d.reason === 'connection_failed' ? 'leftFailed' : 'left'), false, d.reason === 'connection_failed' ? 'warn-text' : ''];
    case 'ice_state': {
      const bad = d.state === 'disconnected' || d.state === 'failed';
      const k = d.state === 'connected' ? 'iceConnected' : d.state === 'disconnected' ? 'iceDisconnected' : d.state === 'failed' ? 'iceFailed' : 'iceOther';
      return [say(k, { state: String(d.state ?? '') }), !bad && d.state !== 'connected', bad ? 'warn-text' : ''];
    }
    case 'video_level': {
      const text = d.off === 'bandwidth' ? say('videoOffBandwidth') : d.off === 'requested' ? say('videoOffRequested')
        : say('videoLayer', { n: Number(d.layer ?? 0) + 1, of: Number(d.layers ?? 1) });
      return [text, false, d.off ? 'warn-text' : ''];
    }
    case 'media_resumed': return [say('mediaResumed', { s: Math.round(Number(d.silent_ms ?? 0) / 1000) }), false, ''];
    case 'address_changed': return [say('addressChanged'), false, ''];
    case 'rejoin_requested': return [say('rejoinRequested'), false, 'warn-text'];
    case 'call_placed': return d.from
      ? [say('callMoved', { node: String(d.node ?? ''), from: String(d.from) }), false, 'warn-text']
      : [say('callPlaced', { node: String(d.node ?? '') }), true, ''];
    case 'room_closed': return [say('roomClosed'), false, ''];
    case 'chat': return [say('chat'), false, ''];
    case 'media': return [say('media', { mic: t(d.audio ? 'ev.on' : 'ev.off'), cam: t(d.video ? 'ev.on' : 'ev.off') }), false, ''];
    case 'track_published': return [say(d.kind === 'audio' ? 'sendsAudio' : 'sendsVideo'), true, ''];
    default: return [`${e.kind} · ${name}`, TECHNICAL.has(e.kind), ''];
  }
}

/** @typedef {{user: string | null, participant: string, kind: 'audio' | 'video', from: string, to: string}} Gap */

/**
 * Periods a participant received no audio (or no video) while another participant was sending it, from the SFU's
 * samples (every 5 s). Video turned off on purpose (audio only, by choice or for a weak link) is not a gap. Null for
 * a session logged before the samples counted packets. @param {SessionEvent[]} events @returns {Gap[] | null}
 */
function mediaGaps(events) {
  const stats = events.filter((e) => e.kind === 'stats' && typeof e.data?.received_audio_packets === 'number');
  if (!stats.length) return null;
  /** When each participant's video was off on purpose: [participant, from, to][]. */
  /** @type {Map<string, number>} */
  const offSince = new Map();
  /** @type {[string, number, number][]} */
  const off = [];
  for (const e of events) {
    if (e.kind !== 'video_level') continue;
    const p = String(e.data?.participant_id ?? '');
    const at = Date.parse(e.at);
    if (e.data?.off && !offSince.has(p)) offSince.set(p, at);
    else if (!e.data?.off && offSince.has(p)) {
      off.push([p, /** @type {number} */ (offSince.get(p)), at]);
      offSince.delete(p);
    }
  }
  for (const [p, from] of offSince) off.push([p, from, Infinity]);
  const HALF = 3000;
  /** @type {Gap[]} */
  const gaps = [];
  /** @type {Map<string, Gap>} the open gap per participant and kind */
  const open = new Map();
  for (const e of stats) {
    const p = String(e.data.participant_id ?? '');
    const at = Date.parse(e.at);
    for (const kind of /** @type {const} */ (['audio', 'video'])) {
      const others = stats.some((o) => String(o.data.participant_id ?? '') !== p && Math.abs(Date.parse(o.at) - at) <= HALF
        && Number(o.data[`sent_${kind}_packets`] ?? 0) > 0);
      const meant = kind === 'video' && off.some(([q, a, b]) => q === p && at >= a && at <= b + HALF);
      const missing = others && !meant && Number(e.data[`received_${kind}_packets`]) === 0;
      const key = `${p}/${kind}`;
      const g = open.get(key);
      if (missing && g && at - Date.parse(g.to) <= 2 * 5000 + HALF) g.to = e.at;
      else if (missing) {
        // A sample covers the 5 s before it.
        const ng = { user: e.user_id, participant: p, kind, from: new Date(at - 5000).toISOString(), to: e.at };
        gaps.push(ng);
        open.set(key, ng);
      } else open.delete(key);
    }
  }
  return gaps;
}

/** The event's data as short `key=value` pairs. @param {SessionEvent} e */
function describe(e) {
  return Object.entries(e.data ?? {}).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ');
}
