// @ts-check
/**
 * Shared steps for the call tests: a consultation made ready through the API, what a page's call receives
 * (from its RTCPeerConnection's getStats, never the DOM), waiting for media both ways with the time it took,
 * keeping both cores busy, and the link emulator's control API (tests/src/bin/linkemu.rs).
 */
import { expect } from '@playwright/test';
import { spawn } from 'node:child_process';
import { recordConsent } from './helpers.js';

/**
 * An urgent consultation at the worker's station, accepted by the doctor, through the API with each page's own
 * login (the pages' contexts hold the cookies). Returns its id.
 * @param {import('@playwright/test').Page} hw @param {import('@playwright/test').Page} dr @param {string} reason
 */
export async function acceptedConsultation(hw, dr, reason) {
  const suffix = `${Date.now()}`.slice(-6);
  const patient = await hw.request.post('/api/patients', {
    data: { full_name: `Bệnh Nhân Thử ${suffix}`, date_of_birth: '1970-05-05', sex: 'female' },
  });
  expect(patient.status(), await patient.text()).toBe(201);
  const patientId = (await patient.json()).id;
  await recordConsent(hw.request, patientId);
  const c = await hw.request.post('/api/consultations', { data: { patient_id: patientId, kind: 'urgent', reason } });
  expect(c.status(), await c.text()).toBe(201);
  const id = (await c.json()).id;
  const a = await dr.request.post(`/api/consultations/${id}/accept`, { data: {} });
  expect(a.ok(), await a.text()).toBeTruthy();
  return id;
}

/** Opens the consultation page and waits for its call panel. @param {import('@playwright/test').Page} page @param {string} id */
export async function openConsultation(page, id) {
  await page.goto(`/#/consultations/${id}`);
  await expect(page.locator('#call')).toBeVisible();
}

/**
 * @typedef {{frames: number, samples: number, audioPackets: number, videoPackets: number, height: number,
 *   ice: string, conn: string, sig: string, pid: string | null, phase: string | null}} Inbound
 */

/**
 * What the page's call receives now (0s when there is no call).
 * @param {import('@playwright/test').Page} page @returns {Promise<Inbound>}
 */
export function inbound(page) {
  return page.evaluate(async () => {
    const call = /** @type {any} */ (window).__thCall;
    /** @type {RTCPeerConnection | null} */
    const pc = call?.pc ?? null;
    const v = { frames: 0, samples: 0, audioPackets: 0, videoPackets: 0, height: 0, ice: 'none', conn: 'none', sig: 'none', pid: call?.participantId ?? null, phase: call?.phase ?? null };
    if (!pc || call.closed) return v;
    v.ice = pc.iceConnectionState;
    v.conn = pc.connectionState;
    v.sig = pc.signalingState;
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') {
        v.frames += s.framesDecoded ?? 0;
        v.videoPackets += s.packetsReceived ?? 0;
        v.height = Math.max(v.height, s.frameHeight ?? 0);
      } else if (s.kind === 'audio') {
        v.samples += s.totalSamplesReceived ?? 0;
        v.audioPackets += s.packetsReceived ?? 0;
      }
    });
    return v;
  });
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A new accepted consultation with both pages in its call (the station's worker presses "join" first, then the
 * doctor), once media flows both ways. Returns its id and the ms each side took.
 * @param {import('@playwright/test').Page} hw @param {import('@playwright/test').Page} dr @param {string} reason
 * @param {number} timeoutMs
 */
export async function inCall(hw, dr, reason, timeoutMs) {
  const id = await acceptedConsultation(hw, dr, reason);
  await Promise.all([openConsultation(hw, id), openConsultation(dr, id)]);
  await hw.locator('#join-call').click();
  await dr.locator('#join-call').click();
  return { id, took: await mediaBothWays(hw, 'station', dr, 'doctor', timeoutMs) };
}

/**
 * Polls every 100 ms until new video frames are decoded AND audio samples rise on the page, compared with the
 * counters when it was called (or `since`). Returns the ms it took, or throws after `timeoutMs`.
 * @param {import('@playwright/test').Page} page @param {string} who @param {number} timeoutMs @param {Inbound} [since]
 */
export async function newMedia(page, who, timeoutMs, since) {
  const t0 = Date.now();
  const base = since ?? (await inbound(page));
  /** @type {Inbound} */
  let now = base;
  let gotFrames = 0;
  while (Date.now() - t0 < timeoutMs) {
    now = await inbound(page);
    // Frames and samples count per connection: a new connection starts again from zero.
    const frames = now.pid === base.pid && now.frames >= base.frames ? now.frames - base.frames : now.frames;
    const samples = now.pid === base.pid && now.samples >= base.samples ? now.samples - base.samples : now.samples;
    if (frames > 0 && !gotFrames) gotFrames = Date.now() - t0;
    if (frames > 0 && samples > 0) return { ms: Date.now() - t0, framesMs: gotFrames, now };
    await sleep(100);
  }
  throw new Error(`${who}: no new video frames and audio within ${timeoutMs} ms (last: ${JSON.stringify(now)}, before: ${JSON.stringify(base)})`);
}

/**
 * Waits for video frames and audio samples to rise on both pages; returns the ms until each had them.
 * @param {import('@playwright/test').Page} a @param {string} aName @param {import('@playwright/test').Page} b @param {string} bName
 * @param {number} timeoutMs @param {[Inbound, Inbound]} [since]
 */
export async function mediaBothWays(a, aName, b, bName, timeoutMs, since) {
  const [ra, rb] = await Promise.all([newMedia(a, aName, timeoutMs, since?.[0]), newMedia(b, bName, timeoutMs, since?.[1])]);
  return { [aName]: ra.ms, [bName]: rb.ms, max: Math.max(ra.ms, rb.ms), firstFrame: { [aName]: ra.framesMs, [bName]: rb.framesMs } };
}

/**
 * Keeps `n` cores busy with spinning processes until the returned function is called.
 * @param {number} n @returns {() => void}
 */
export function busyCores(n) {
  const procs = Array.from({ length: n }, () =>
    spawn(process.execPath, ['-e', 'for(;;){Math.sqrt(Math.random())}'], { stdio: 'ignore' }));
  return () => {
    for (const p of procs) p.kill('SIGKILL');
  };
}

/** p50 and p95 of a list of numbers. @param {number[]} xs */
export function percentiles(xs) {
  const s = [...xs].sort((x, y) => x - y);
  const at = (/** @type {number} */ p) => s[Math.min(s.length - 1, Math.round((s.length - 1) * p))];
  return { n: s.length, p50: at(0.5), p95: at(0.95), max: s[s.length - 1] };
}

/**
 * The link emulator's control API (TH_LINKEMU, started by run.sh): shapes, blackouts and handovers of the
 * traffic from one client IP.
 * @param {string} ip
 */
export function link(ip) {
  const base = process.env.TH_LINKEMU;
  if (!base) throw new Error('TH_LINKEMU is not set: run the tests through tests/browser/run.sh');
  /** @param {string} path @param {unknown} [body] */
  const post = async (path, body) => {
    const r = await fetch(`${base}/links/${ip}/${path}`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}),
    });
    if (!r.ok) throw new Error(`linkemu ${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  return {
    /** @param {number} ms */
    blackout: (ms) => post('blackout', { ms }),
    handover: () => post('handover'),
    /** @param {unknown} up @param {unknown} down */
    shape: (up, down) => post('shape', { up, down }),
    /** A named profile (GET /profiles on the emulator lists them). @param {string} name */
    profile: (name) => post('profile', { name }),
    stats: async () => (await fetch(`${base}/links/${ip}`)).json(),
  };
}

/**
 * Polls every 100 ms until video frames and audio samples have risen at each of the last three polls (media
 * flowing steadily again, not one late frame); returns the ms that took.
 * @param {import('@playwright/test').Page} page @param {string} who @param {number} timeoutMs
 */
export async function flowing(page, who, timeoutMs) {
  const t0 = Date.now();
  let prev = await inbound(page);
  let run = 0;
  while (Date.now() - t0 < timeoutMs) {
    await sleep(100);
    const now = await inbound(page);
    const fresh = now.pid !== prev.pid || now.frames < prev.frames;
    run = !fresh && now.frames > prev.frames && now.samples > prev.samples ? run + 1 : 0;
    prev = now;
    if (run >= 3) return Date.now() - t0;
  }
  throw new Error(`${who}: media not flowing steadily within ${timeoutMs} ms (last: ${JSON.stringify(prev)})`);
}

/**
 * A worker signed in from the station's own browser, in its network namespace (run.sh), so that everything it
 * sends crosses the link emulator. Close `browser` at the end. `at` signs in elsewhere: another server (`url`,
 * the account's `password` there), with a script run in every page before its own (`init`).
 * @param {string} user @param {{url?: string, password?: string, init?: Function, arg?: unknown, args?: string[]}} [at]
 */
export async function stationSignIn(user, at = {}) {
  const stationUrl = at.url ?? process.env.TH_STATION_URL;
  if (!stationUrl) throw new Error('TH_STATION_URL is not set: run the tests through tests/browser/run.sh as root');
  const { fileURLToPath } = await import('node:url');
  return signInAt(user, stationUrl, { ...at, executablePath: fileURLToPath(new URL('./netns-chromium.sh', import.meta.url)) });
}

/**
 * A browser of its own signed in at `url` (treated as a secure origin, as HTTPS would be). Close `browser` at
 * the end.
 * @param {string} user @param {string} url
 * @param {{password?: string, init?: Function, arg?: unknown, args?: string[], executablePath?: string}} [at]
 */
export async function signInAt(user, url, at = {}) {
  const { chromium } = await import('@playwright/test');
  const config = (await import('./playwright.config.js')).default;
  const args = [...(config.use?.launchOptions?.args ?? []), `--unsafely-treat-insecure-origin-as-secure=${url}`, ...(at.args ?? [])];
  const browser = await chromium.launch({ executablePath: at.executablePath ?? process.env.CHROMIUM ?? '/usr/bin/chromium', args });
  const context = await browser.newContext({
    baseURL: url, permissions: ['camera', 'microphone'], locale: 'vi-VN', timezoneId: 'Asia/Ho_Chi_Minh',
    viewport: { width: 1280, height: 800 },
  });
  if (at.init) await context.addInitScript(/** @type {any} */ (at.init), at.arg);
  const page = await context.newPage();
  page.on('dialog', (d) => void d.accept());
  page.on('pageerror', (e) => console.error(`[${user}] page error:`, e.message));
  await page.goto('/');
  await page.locator('#login input[name=username]').fill(user);
  const { password } = await import('./helpers.js');
  await page.locator('#login input[name=password]').fill(at.password ?? password(user));
  await page.locator('#login button[type=submit]').click();
  await expect(page.locator('#nav')).toBeVisible();
  return { browser, page };
}

/**
 * The path the page's media takes now: the selected ICE candidate pair's local candidate (type, transport, and
 * for a relay candidate the transport to the TURN server) and the remote candidate. `null` before one is chosen.
 * @param {import('@playwright/test').Page} page
 */
export function mediaPath(page) {
  return page.evaluate(async () => {
    /** @type {RTCPeerConnection | null} */
    const pc = /** @type {any} */ (window).__thCall?.pc ?? null;
    if (!pc) return null;
    const stats = await pc.getStats();
    /** @type {string | null} */
    let pairId = null;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    const pair = pairId ? stats.get(pairId) : null;
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return {
      local: /** @type {string} */ (local?.candidateType), protocol: /** @type {string} */ (local?.protocol),
      relayProtocol: /** @type {string | null} */ (local?.relayProtocol ?? null),
      remote: `${remote?.protocol} ${remote?.address}:${remote?.port}`,
    };
  });
}

/**
 * @typedef {{at: number, frames: number, freezes: number, freezeSec: number, width: number, height: number,
 *   videoLost: number, videoPackets: number, nacks: number, plis: number, samples: number, concealed: number,
 *   audioLost: number, audioPackets: number, audioCodec: string, videoCodec: string,
 *   sentNacks: number, retransmitted: number, videoStreams: number, jbDelay: number, jbEmitted: number,
 *   rttMs: number | null, sendingLayers: number, limited: string}} Quality
 */

/**
 * The page's call quality counters, summed over its streams, from getStats (cumulative; take differences).
 * Received video and audio, the repairs it asked for, and the retransmissions it sent.
 * @param {import('@playwright/test').Page} page @returns {Promise<Quality>}
 */
export function quality(page) {
  return page.evaluate(async () => {
    /** @type {RTCPeerConnection | null} */
    const pc = /** @type {any} */ (window).__thCall?.pc ?? null;
    const q = { at: Date.now(), frames: 0, freezes: 0, freezeSec: 0, width: 0, height: 0, videoLost: 0, videoPackets: 0,
      nacks: 0, plis: 0, samples: 0, concealed: 0, audioLost: 0, audioPackets: 0, audioCodec: '', videoCodec: '',
      sentNacks: 0, retransmitted: 0, videoStreams: 0, jbDelay: 0, jbEmitted: 0, rttMs: /** @type {number | null} */ (null),
      sendingLayers: 0, limited: '' };
    if (!pc) return q;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        q.frames += s.framesDecoded ?? 0;
        q.freezes += s.freezeCount ?? 0;
        q.freezeSec += s.totalFreezesDuration ?? 0;
        q.width = Math.max(q.width, s.frameWidth ?? 0);
        q.height = Math.max(q.height, s.frameHeight ?? 0);
        q.videoLost += s.packetsLost ?? 0;
        q.videoPackets += s.packetsReceived ?? 0;
        q.nacks += s.nackCount ?? 0;
        q.plis += s.pliCount ?? 0;
        q.videoStreams += 1;
        q.videoCodec = stats.get(s.codecId)?.mimeType ?? q.videoCodec;
      } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        q.samples += s.totalSamplesReceived ?? 0;
        q.concealed += s.concealedSamples ?? 0;
        q.audioLost += s.packetsLost ?? 0;
        q.audioPackets += s.packetsReceived ?? 0;
        q.audioCodec = stats.get(s.codecId)?.mimeType ?? q.audioCodec;
        q.jbDelay += s.jitterBufferDelay ?? 0;
        q.jbEmitted += s.jitterBufferEmittedCount ?? 0;
      } else if (s.type === 'transport' && s.selectedCandidatePairId) {
        const rtt = stats.get(s.selectedCandidatePairId)?.currentRoundTripTime;
        if (typeof rtt === 'number') q.rttMs = Math.round(rtt * 1000);
      } else if (s.type === 'outbound-rtp') {
        if (s.kind === 'video') {
          // What this page's camera sends: the layers encoding now, and why the browser holds any back.
          if ((s.framesPerSecond ?? 0) > 0) q.sendingLayers += 1;
          if (s.qualityLimitationReason && s.qualityLimitationReason !== 'none') q.limited = s.qualityLimitationReason;
        }
        q.sentNacks += s.nackCount ?? 0;
        q.retransmitted += s.retransmittedPacketsSent ?? 0;
      }
    });
    return q;
  });
}

/**
 * What a page received between two quality snapshots: video frames per second, freezes and their seconds, the
 * share of audio samples concealed, packets lost after repair, the repairs asked, and the resolution at the end.
 * @param {Quality} a @param {Quality} b
 */
export function received(a, b) {
  const sec = Math.max(0.001, (b.at - a.at) / 1000);
  const samples = b.samples - a.samples;
  return {
    sec: Math.round(sec * 10) / 10,
    fps: Math.round(((b.frames - a.frames) / sec) * 10) / 10,
    freezes: b.freezes - a.freezes,
    freezeSec: Math.round((b.freezeSec - a.freezeSec) * 10) / 10,
    concealedPct: samples > 0 ? Math.round(((b.concealed - a.concealed) / samples) * 1000) / 10 : 100,
    audioLost: b.audioLost - a.audioLost,
    videoLost: b.videoLost - a.videoLost,
    nacks: b.nacks - a.nacks,
    plis: b.plis - a.plis,
    retransmitted: b.retransmitted - a.retransmitted,
    resolution: `${b.width}x${b.height}`,
    codecs: `${b.audioCodec} ${b.videoCodec}`,
    // The audio's average wait in this page's jitter buffer, and the round trip to the server at the end.
    audioBufferMs: b.jbEmitted > a.jbEmitted ? Math.round(((b.jbDelay - a.jbDelay) / (b.jbEmitted - a.jbEmitted)) * 1000) : null,
    rttMs: b.rttMs,
  };
}

/** @typedef {{name: string, profile?: string, up?: object, down?: object, warmup_s?: number, measure_s?: number}} Profile */

/**
 * Puts the station's link through each profile in turn (a named one of the emulator's, or a shape each way): after
 * `warmup_s` (default 10), `measure_s` (default 30) seconds of what each page received, the frames the doctor
 * decoded in each second (where a freeze falls) and the emulator's counts; then a clean link for 3 s. Each row also
 * has when the profile started and ended (ms since the epoch), each side's `settle_s` (the second, from the
 * profile's start, after which the resolution it received no longer changed) and `mouth_to_ear_ms`, the network's and the jitter buffer's part of the audio's delay as far as `getStats` can
 * tell: half of each page's round trip to the server plus the receiving page's jitter buffer (capture, encoding,
 * decoding and playout add some tens of ms). Returns a row per profile, each also logged as `link profile: {...}`.
 * @param {import('@playwright/test').Page} hw @param {import('@playwright/test').Page} dr
 * @param {ReturnType<typeof link>} stationLink @param {Profile[]} profiles
 */
export async function throughProfiles(hw, dr, stationLink, profiles) {
  /** @type {Record<string, any>[]} */
  const rows = [];
  for (const p of profiles) {
    const from = Date.now();
    if (p.profile) await stationLink.profile(p.profile);
    else await stationLink.shape(p.up, p.down);
    // Each second until the end: what each side receives (its resolution, for when it settles), and the frames
    // the doctor decoded (where a freeze falls).
    const warmupEnd = from + (p.warmup_s ?? 10) * 1000;
    const end = warmupEnd + (p.measure_s ?? 30) * 1000;
    /** @type {Quality[]} */
    let before = [];
    /** @type {Quality[][]} */
    const seconds = [];
    /** @type {number[]} */
    const perSecond = [];
    while (Date.now() < end) {
      await sleep(Math.min(1000, end - Date.now()));
      const now = await Promise.all([quality(hw), quality(dr)]);
      if (!before.length && Date.now() >= warmupEnd) before = now;
      else if (before.length) perSecond.push(now[1].frames - (seconds.at(-1) ?? now)[1].frames);
      seconds.push(now);
    }
    const [after, emu] = await Promise.all([Promise.all([quality(hw), quality(dr)]), stationLink.stats()]);
    if (!before.length) before = after;
    /** The second, from the profile's start, of the last change in the resolution `side` received. @param {number} side */
    const settle = (side) => {
      const res = seconds.map((q) => `${q[side].width}x${q[side].height}`);
      const i = res.findLastIndex((r, k) => k > 0 && r !== res[k - 1]);
      return i > 0 ? Math.round((seconds[i][side].at - from) / 1000) : 0;
    };
    const doctorGets = received(before[1], after[1]);
    const stationGets = received(before[0], after[0]);
    const halfRtts = ((after[0].rttMs ?? 0) + (after[1].rttMs ?? 0)) / 2;
    const row = {
      profile: p.name,
      from,
      to: Date.now(),
      doctor_receives: { ...doctorGets, settle_s: settle(1), mouth_to_ear_ms: doctorGets.audioBufferMs === null ? null : Math.round(halfRtts + doctorGets.audioBufferMs) },
      doctor_frames_per_second: perSecond.join(' '),
      station_receives: { ...stationGets, settle_s: settle(0), mouth_to_ear_ms: stationGets.audioBufferMs === null ? null : Math.round(halfRtts + stationGets.audioBufferMs) },
      // What each camera was sending at the end: a browser short of CPU or uplink sends fewer layers.
      sending: { doctor: { layers: after[1].sendingLayers, limited: after[1].limited }, station: { layers: after[0].sendingLayers, limited: after[0].limited } },
      link: { up: emu.up, down: emu.down },
    };
    console.log(`link profile: ${JSON.stringify(row)}`);
    rows.push(row);
    await stationLink.shape({}, {});
    await sleep(3000);
  }
  return rows;
}

/**
 * Starts a process and waits until its output matches `ready`; returns its output so far and a stop.
 * @param {string} what @param {string} cmd @param {string[]} args @param {RegExp} ready @param {NodeJS.ProcessEnv} [env]
 */
export async function started(what, cmd, args, ready, env) {
  const child = spawn(cmd, args, { env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise((r) => child.once('exit', r));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not ready in 120 s:\n${out.slice(-3000)}`)), 120_000);
    const onData = (/** @type {Buffer} */ d) => {
      out += d.toString();
      if (ready.test(out)) { clearTimeout(timer); resolve(null); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited (${code}):\n${out.slice(-3000)}`)); });
  });
  return {
    output: () => out,
    stop: async () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); await exited; },
    /** Kills it without warning (SIGKILL): no shutdown, no flush. */
    kill: async () => { child.kill('SIGKILL'); await exited; },
  };
}
