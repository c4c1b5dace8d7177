// @ts-check
/** A small SVG line chart (no chart library): time on x, one line per series, a legend under it. */

const NS = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 220;
const PAD = { l: 48, r: 12, t: 12, b: 28 };
export const COLORS = ['#0b5f66', '#b4530b', '#6a3d9a', '#1f78b4', '#33a02c', '#e31a1c'];

/** @typedef {{name: string, points: [number, number][]}} Series points are [epoch ms, value] */

/**
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag @param {Record<string, string | number>} attrs @param {string} [text]
 * @returns {SVGElementTagNameMap[K]}
 */
function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A round upper bound for the y axis. @param {number} max */
function niceMax(max) {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/** mm:ss from the start. @param {number} ms */
const clock = (ms) => `${Math.floor(ms / 60000)}:${String(Math.floor((ms % 60000) / 1000)).padStart(2, '0')}`;

/**
 * Splits points into runs whose neighbours are at most `gap` ms apart: a line is drawn along each run only, so a
 * stretch with no data (a day without calls) shows as a gap, not as a line across it.
 * @param {[number, number][]} points @param {number} gap @returns {[number, number][][]}
 */
export function runs(points, gap) {
  /** @type {[number, number][][]} */
  const out = [];
  for (const p of points) {
    const last = out[out.length - 1];
    if (last && p[0] - last[last.length - 1][0] <= gap) last.push(p);
    else out.push([p]);
  }
  return out;
}

/**
 * `tick` labels a time on the x axis and in a point's tooltip (default: minutes:seconds from `t0`); points farther
 * apart than `gap` ms are not joined (default: all are).
 * @param {{title: string, unit: string, series: Series[], t0: number, t1: number, id?: string, tick?: (ms: number) => string, gap?: number}} opts
 * @returns {HTMLElement}
 */
export function lineChart({ title, unit, series, t0, t1, id, tick = (ms) => clock(ms - t0), gap = Infinity }) {
  const fig = document.createElement('figure');
  fig.className = 'chart';
  if (id) fig.id = id;
  const cap = document.createElement('figcaption');
  cap.textContent = `${title} (${unit})`;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title} (${unit})`, preserveAspectRatio: 'none' });
  const all = series.flatMap((x) => x.points.map((p) => p[1]));
  const ymax = niceMax(Math.max(0, ...all));
  const span = Math.max(1, t1 - t0);
  const x = (/** @type {number} */ tm) => PAD.l + ((tm - t0) / span) * (W - PAD.l - PAD.r);
  const y = (/** @type {number} */ v) => H - PAD.b - (v / ymax) * (H - PAD.t - PAD.b);

  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, String(Math.round(v * 10) / 10)));
  }
  for (let i = 0; i <= 4; i++) {
    const tm = t0 + (span * i) / 4;
    svg.append(s('text', { x: x(tm), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle', class: 'tick' }, tick(tm)));
  }
  series.forEach((ser, i) => {
    const color = COLORS[i % COLORS.length];
    for (const run of runs(ser.points, gap)) {
      if (run.length < 2) continue;
      const pts = run.map(([tm, v]) => `${x(tm).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      svg.append(s('polyline', { points: pts, fill: 'none', stroke: color, 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke', class: 'line' }));
    }
    for (const [tm, v] of ser.points) {
      const dot = s('circle', { cx: x(tm), cy: y(v), r: 2.5, fill: color });
      dot.append(s('title', {}, `${ser.name}: ${v} ${unit} @ ${tick(tm)}`));
      svg.append(dot);
    }
  });
  const legend = document.createElement('ul');
  legend.className = 'legend';
  series.forEach((ser, i) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = COLORS[i % COLORS.length];
    li.append(sw, ser.name);
    legend.append(li);
  });
  fig.append(cap, svg, legend);
  return fig;
}
