// @ts-check
/**
 * Admin: each commune station's connectivity over days or weeks, for a provincial IT officer deciding which
 * station needs a better link. A table ranks the stations worst first, each with advice in plain words; for a
 * chosen station, charts over time and the same numbers as a table; the range as CSV.
 */
import { api, query } from '../api.js';
import { lineChart } from '../charts.js';
import { facilities } from '../data.js';
import { t } from '../i18n.js';
import { busy, cards, date, dayInput, decimal, field, h, heading, localDay, notice, readDay, select, showProblem } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {import('../types.js').Facility} Facility */
/** @typedef {import('../types.js').StationConnectivity} Row */
/** @typedef {import('../i18n.js').Key} Key */
/** @typedef {import('../charts.js').Series} Series */

/** Thresholds of the advice: a bucket's loss is high from these (%), a delay from this (ms). */
export const HIGH_AVG_LOSS = 5;
export const HIGH_P95_LOSS = 15;
export const HIGH_RTT = 300;

/**
 * One station's range summed from its buckets: averages weighted by samples.
 * @typedef {{station: Facility, rows: Row[], calls: number, minutes: number, samples: number, avgLoss: number | null,
 *   p95Loss: number | null, avgRtt: number | null, bitrateIn: number | null, bitrateOut: number | null,
 *   reconnections: number, attempts: number, failedJoins: number, audioOnlySecs: number, hospitalLoss: number | null,
 *   badBuckets: number, level: number, tips: string[]}} Summary
 */

/** @param {Row[]} rows @param {(r: Row) => number | null} f weighted by samples */
function weighted(rows, f) {
  let sum = 0;
  let n = 0;
  for (const r of rows) {
    const v = f(r);
    if (v === null || !r.samples) continue;
    sum += v * r.samples;
    n += r.samples;
  }
  return n ? sum / n : null;
}

/** A bucket whose loss was high. @param {Row} r */
export const highLoss = (r) => (r.avg_loss_pct ?? 0) >= HIGH_AVG_LOSS || (r.p95_loss_pct ?? 0) >= HIGH_P95_LOSS;

/**
 * A station's summary and advice; `level` 3 act, 2 watch, 1 no calls, 0 good.
 * @param {Facility} station @param {Row[]} rows @param {'day' | 'week'} bucket @returns {Summary}
 */
export function summarise(station, rows, bucket) {
  const sum = (/** @type {(r: Row) => number} */ f) => rows.reduce((a, r) => a + f(r), 0);
  /** @type {Summary} */
  const s = {
    station, rows, calls: sum((r) => r.calls), minutes: sum((r) => r.call_minutes), samples: sum((r) => r.samples),
    avgLoss: weighted(rows, (r) => r.avg_loss_pct), avgRtt: weighted(rows, (r) => r.avg_rtt_ms),
    p95Loss: rows.reduce((/** @type {number | null} */ a, r) => (r.p95_loss_pct === null ? a : Math.max(a ?? 0, r.p95_loss_pct)), null),
    bitrateIn: weighted(rows, (r) => r.avg_bitrate_in_kbps), bitrateOut: weighted(rows, (r) => r.avg_bitrate_out_kbps),
    reconnections: sum((r) => r.reconnections), attempts: sum((r) => r.join_attempts), failedJoins: sum((r) => r.failed_joins),
    audioOnlySecs: sum((r) => r.audio_only_secs), hospitalLoss: weighted(rows, (r) => r.hospital_avg_loss_pct),
    badBuckets: rows.filter(highLoss).length, level: 0, tips: [],
  };
  const unit = t(bucket === 'week' ? 'stations.unitWeek' : 'stations.unitDay');
  /** @param {number} level @param {Key} key @param {Record<string, string | number>} [vars] */
  const tip = (level, key, vars) => {
    s.level = Math.max(s.level, level);
    s.tips.push(t(key, vars));
  };
  if (!s.calls && !s.attempts) tip(1, 'stations.tip.noCalls');
  if (s.badBuckets >= 2) tip(3, 'stations.tip.lossMany', { n: s.badBuckets, unit });
  else if (s.badBuckets === 1) tip(2, 'stations.tip.lossOnce', { n: 1, unit });
  if (s.failedJoins >= 2 && s.failedJoins / Math.max(1, s.attempts) >= 0.2) tip(3, 'stations.tip.failedJoins', { n: s.failedJoins, of: s.attempts });
  else if (s.failedJoins) tip(2, 'stations.tip.failedJoins', { n: s.failedJoins, of: s.attempts });
  if ((s.avgRtt ?? 0) >= HIGH_RTT) tip(2, 'stations.tip.rtt', { ms: Math.round(s.avgRtt ?? 0) });
  if (s.calls && s.reconnections / s.calls >= 1) tip(2, 'stations.tip.reconnect', { n: s.reconnections });
  const pct = s.minutes ? Math.round((100 * s.audioOnlySecs) / 60 / s.minutes) : 0;
  if (pct >= 20) tip(2, 'stations.tip.audioOnly', { pct });
  if ((s.hospitalLoss ?? 0) >= HIGH_AVG_LOSS) tip(Math.max(s.level, 2), 'stations.tip.hospital');
  if (!s.tips.length) s.tips.push(t('stations.tip.good'));
  return s;
}

/** Worst first: the level, then failed joins, loss and delay. @param {Summary} a @param {Summary} b */
export const worstFirst = (a, b) => b.level - a.level || b.badBuckets - a.badBuckets || b.failedJoins - a.failedJoins
  || (b.avgLoss ?? -1) - (a.avgLoss ?? -1) || (b.avgRtt ?? -1) - (a.avgRtt ?? -1) || a.station.name.localeCompare(b.station.name);

const VERDICT = /** @type {const} */ (['good', 'none', 'watch', 'act']);

/** @param {number | null} x @param {string} unit @param {number} [digits] */
const num = (x, unit, digits = 1) => (x === null ? '—' : `${decimal(x, digits)} ${unit}`);
/** @param {number} secs */
const minutes = (secs) => `${decimal(secs / 60, secs && secs < 600 ? 1 : 0)} ${t('stations.unitMinutes')}`;
/** Midnight of a local day, epoch ms. @param {string} ymd */
const dayMs = (ymd) => Date.parse(`${ymd}T00:00:00+07:00`);
/** @param {number} x */
const round = (x) => Math.round(x * 10) / 10;

/** @param {Ctx} ctx */
export async function render(ctx) {
  const stations = (await facilities()).filter((f) => f.kind === 'commune_station');
  const today = localDay();
  const monthAgo = localDay(new Date(Date.now() - 29 * 86400000));
  const from = dayInput('from', { value: monthAgo });
  const to = dayInput('to', { value: today });
  const bucket = select('bucket', [['day', t('stations.byDay')], ['week', t('stations.byWeek')]], 'day');
  const pick = select('station', stations.map((f) => /** @type {[string, string]} */ ([f.id, f.name])));
  const csvLink = h('a', { class: 'button secondary', id: 'stations-csv', href: '/api/stations/connectivity.csv' }, t('stations.csv'));
  const form = h('form', { class: 'filters', novalidate: true, id: 'station-filters' },
    field('filter.from', from), field('filter.to', to), field('stations.bucket', bucket),
    h('div', { class: 'row end' }, h('button', { type: 'submit', class: 'primary' }, t('stations.show')), csvLink));
  const ranking = h('div', { class: 'table-wrap', id: 'station-ranking' });
  const detail = h('section', { class: 'panel', id: 'station-detail', 'aria-live': 'polite' });
  /** @type {Summary[]} */
  let summaries = [];
  let unit = /** @type {'day' | 'week'} */ ('day');
  /** The range the server read. */
  let range = { from: monthAgo, to: today };

  function showStation() {
    const s = summaries.find((x) => x.station.id === pick.value);
    if (!s) {
      detail.replaceChildren();
      return;
    }
    detail.replaceChildren(h('h3', { id: 'station-detail-title' }, t('stations.chartsOf', { name: s.station.name })), field('stations.pick', pick));
    if (!s.rows.length) {
      detail.append(h('p', { class: 'muted', id: 'station-no-data' }, t('stations.noData')));
      return;
    }
    // The whole range on the time axis (its first bucket to its last), so days without calls show as gaps.
    const t0 = Math.min(dayMs(range.from), dayMs(s.rows[0].bucket_start));
    const t1 = Math.max(dayMs(range.to), dayMs(s.rows[s.rows.length - 1].bucket_start));
    const tick = (/** @type {number} */ ms) => date(localDay(new Date(ms))).slice(0, 5);
    /** @param {Key} name @param {(r: Row) => number | null} f @returns {Series} */
    const line = (name, f) => ({
      name: t(name),
      points: s.rows.flatMap((r) => {
        const v = f(r);
        return v === null ? [] : [/** @type {[number, number]} */ ([dayMs(r.bucket_start), round(v)])];
      }),
    });
    // Neighbouring buckets are joined; a day (or week) without calls between two leaves a gap.
    const gap = (unit === 'week' ? 7 : 1) * 86_400_000 * 1.5;
    const chart = (/** @type {string} */ id, /** @type {Key} */ title, /** @type {string} */ u, /** @type {Series[]} */ series) =>
      lineChart({ title: t(title), unit: u, series, t0, t1, id, tick, gap });
    detail.append(h('div', { class: 'charts', id: 'station-charts' },
      chart('station-chart-loss', 'stations.chartLoss', '%', [
        line('stations.series.avgLoss', (r) => r.avg_loss_pct), line('stations.series.p95Loss', (r) => r.p95_loss_pct),
        line('stations.series.hospitalLoss', (r) => r.hospital_avg_loss_pct)]),
      chart('station-chart-rtt', 'stations.chartRtt', 'ms', [
        line('stations.series.rtt', (r) => r.avg_rtt_ms), line('stations.series.hospitalRtt', (r) => r.hospital_avg_rtt_ms)]),
      chart('station-chart-bitrate', 'stations.chartBitrate', 'kbit/s', [
        line('stations.series.in', (r) => r.avg_bitrate_in_kbps), line('stations.series.out', (r) => r.avg_bitrate_out_kbps)]),
      chart('station-chart-trouble', 'stations.chartTrouble', t('stations.unitTimes'), [
        line('stations.series.reconnections', (r) => r.reconnections), line('stations.series.failedJoins', (r) => r.failed_joins)]),
      chart('station-chart-audio', 'stations.chartAudioOnly', t('stations.unitMinutes'), [
        line('stations.series.audioOnly', (r) => r.audio_only_secs / 60)]),
    ));
    // The same numbers as a table: what a screen reader reads instead of the charts.
    const heads = /** @type {Key[]} */ ([unit === 'week' ? 'stations.bucketWeek' : 'stations.bucketDay', 'stations.calls',
      'stations.minutes', 'stations.avgLoss', 'stations.p95LossBucket', 'stations.avgRtt', 'stations.bitrate', 'stations.reconnections',
      'stations.failedJoins', 'stations.audioOnly']);
    detail.append(cards(h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'station-buckets' },
      h('caption', {}, t('stations.tableCaption', { name: s.station.name, unit: t(unit === 'week' ? 'stations.unitWeek' : 'stations.unitDay') })),
      h('thead', {}, h('tr', {}, heads.map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, s.rows.map((r) => h('tr', { 'data-bucket': r.bucket_start, class: highLoss(r) ? 'warn-row' : '' },
        h('th', { scope: 'row' }, date(r.bucket_start)), h('td', {}, String(r.calls)), h('td', {}, minutes(r.call_minutes * 60)),
        h('td', {}, num(r.avg_loss_pct, '%')), h('td', {}, num(r.p95_loss_pct, '%')), h('td', {}, num(r.avg_rtt_ms, 'ms', 0)),
        h('td', {}, `${r.avg_bitrate_in_kbps === null ? '—' : decimal(r.avg_bitrate_in_kbps, 0)}/${num(r.avg_bitrate_out_kbps, 'kbit/s', 0)}`),
        h('td', {}, String(r.reconnections)), h('td', {}, `${r.failed_joins}/${r.join_attempts}`),
        h('td', {}, minutes(r.audio_only_secs)))))))));
  }

  async function load() {
    const f = readDay(from);
    const tt = readDay(to);
    /** @type {import('../api.js').FieldError[]} */
    const errors = [];
    for (const [el, v] of /** @type {[HTMLInputElement, string | null][]} */ ([[from, f], [to, tt]])) {
      if (v === null) errors.push({ field: el.name, code: 'invalid_date', message: t('date.invalid'), message_en: t('date.invalid') });
    }
    if (errors.length) return showProblem(form, { status: 400, code: 'invalid_date', detail: t('err.checkFields'), errors });
    const q = query({ from: f ?? '', to: tt ?? '', bucket: bucket.value });
    csvLink.setAttribute('href', `/api/stations/connectivity.csv${q}`);
    csvLink.setAttribute('download', `station-connectivity-${f || 'from'}-${tt || today}-${bucket.value}.csv`);
    const r = await api(`/api/stations/connectivity${q}`);
    if (!r.ok) return showProblem(form, r.problem);
    /** @type {Row[]} */
    const rows = r.data.rows;
    unit = r.data.bucket;
    range = { from: r.data.from, to: r.data.to };
    summaries = stations.map((st) => summarise(st, rows.filter((x) => x.station_id === st.id), unit)).sort(worstFirst);
    if (!summaries.length) {
      ranking.replaceChildren(notice(t('stations.none')));
      return;
    }
    const heads = /** @type {Key[]} */ (['stations.station', 'stations.calls', 'stations.avgLoss', 'stations.p95Loss',
      'stations.avgRtt', 'stations.reconnections', 'stations.failedJoins', 'stations.audioOnly', 'stations.advice']);
    ranking.replaceChildren(h('table', { class: 'table', id: 'station-table' },
      h('caption', {}, t('stations.rankCaption')),
      h('thead', {}, h('tr', {}, heads.map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, summaries.map((s) => h('tr', { 'data-station': s.station.id, 'data-level': String(s.level) },
        h('th', { scope: 'row' }, h('span', { class: 'station-name' }, s.station.name), ' ',
          h('span', { class: `badge verdict-${VERDICT[s.level]}` }, t(/** @type {Key} */ (`stations.verdict.${VERDICT[s.level]}`)))),
        h('td', {}, h('span', {}, String(s.calls), h('span', { class: 'muted small' }, ` · ${minutes(s.minutes * 60)}`))),
        h('td', {}, num(s.avgLoss, '%')), h('td', {}, num(s.p95Loss, '%')), h('td', {}, num(s.avgRtt, 'ms', 0)),
        h('td', {}, String(s.reconnections)), h('td', {}, `${s.failedJoins}/${s.attempts}`), h('td', {}, minutes(s.audioOnlySecs)),
        h('td', { class: 'advice' }, h('div', {}, h('ul', { class: 'tips' }, s.tips.map((x) => h('li', {}, x))),
          h('button', {
            type: 'button', class: 'secondary small', 'data-chart': s.station.id,
            'aria-label': `${t('stations.chartsFor')}: ${s.station.name}`,
            onclick: () => {
              pick.value = s.station.id;
              showStation();
              detail.scrollIntoView({ block: 'start' });
            },
          }, t('stations.chartsFor')))))))));
    cards(ranking);
    if (!summaries.some((s) => s.station.id === pick.value)) pick.value = summaries[0].station.id;
    showStation();
  }
  pick.addEventListener('change', showStation);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void busy(form, load);
  });
  ctx.view.append(heading(t('stations.title')), h('p', { class: 'muted' }, t('stations.intro')),
    h('section', { class: 'panel' }, form), h('section', { class: 'panel' }, ranking), detail);
  await load();
}
