// @ts-check
/**
 * Device and network check before a call: camera preview, microphone level, a speaker tone, and a connection
 * test against this server, each with a plain verdict and what to do if it fails.
 */
import { chooseDevice, chosenDevice, devices, videoConstraints, withChosenDevices } from '../call.js';
import { t } from '../i18n.js';
import { h, heading, notice } from '../ui.js';

/** @typedef {import('../types.js').Ctx} Ctx */
/** @typedef {'ok' | 'warn' | 'error' | 'info'} Verdict */

/** @param {Ctx} ctx */
export function render(ctx) {
  const video = h('video', { id: 'preview', autoplay: true, muted: true, playsinline: true, class: 'preview' });
  video.muted = true;
  const camVerdict = h('div', { id: 'camera-verdict' }, notice(t('check.asking'), 'info'));
  const meterBar = h('div', { class: 'meter-bar' });
  const meter = h('div', { class: 'meter', id: 'mic-meter', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0', 'aria-label': t('check.micLevel'), 'data-level': '0' }, meterBar);
  const micVerdict = h('div', { id: 'mic-verdict' });
  const speakerBtn = h('button', { type: 'button', class: 'secondary', id: 'speaker-test' }, t('check.playTone'));
  const speakerVerdict = h('div', { id: 'speaker-verdict' }, h('p', { class: 'muted' }, t('check.speakerHint')));
  const netBtn = h('button', { type: 'button', class: 'secondary', id: 'net-test' }, t('check.netRun'));
  const netVerdict = h('div', { id: 'net-verdict' });
  const overall = h('div', { id: 'overall-verdict', role: 'status', 'aria-live': 'polite' });
  const retry = h('button', { type: 'button', class: 'secondary', hidden: true }, t('check.retry'));
  // Which camera and microphone: remembered on this computer for every call.
  const camSelect = h('select', { name: 'camera', id: 'camera-select', disabled: true });
  const micSelect = h('select', { name: 'mic', id: 'mic-select', disabled: true });
  const chooser = (/** @type {HTMLSelectElement} */ sel, /** @type {import('../i18n.js').Key} */ label) =>
    h('div', { class: 'field' }, h('label', { for: sel.id }, t(label)), sel);

  ctx.view.append(
    heading(t('check.title')),
    h('p', { class: 'muted' }, t('check.intro')),
    overall,
    h('div', { class: 'split' },
      h('section', { class: 'panel' }, h('h3', {}, t('check.camera')), chooser(camSelect, 'check.chooseCamera'), h('div', { class: 'preview-wrap' }, video), camVerdict, retry),
      h('div', {},
        h('section', { class: 'panel' }, h('h3', {}, t('check.mic')), chooser(micSelect, 'check.chooseMic'), meter, micVerdict),
        h('section', { class: 'panel' }, h('h3', {}, t('check.speaker')), speakerBtn, speakerVerdict),
        h('section', { class: 'panel' }, h('h3', {}, t('check.network')), netBtn, netVerdict))),
  );

  /** @type {MediaStream | null} */
  let stream = null;
  /** @type {AudioContext | null} */
  let audio = null;
  let raf = 0;
  let peak = 0;
  /** @type {Record<string, Verdict>} */
  const results = {};

  const summarize = () => {
    const vals = Object.values(results);
    if (vals.length < 3) return;
    const worst = vals.includes('error') ? 'error' : vals.includes('warn') ? 'warn' : 'ok';
    overall.replaceChildren(notice(t(worst === 'ok' ? 'check.allGood' : worst === 'warn' ? 'check.someWarn' : 'check.someBad'), worst));
    overall.dataset.verdict = worst;
  };
  /** @param {HTMLElement} box @param {string} name @param {Verdict} v @param {string} text */
  const verdict = (box, name, v, text) => {
    box.replaceChildren(notice(text, v));
    box.dataset.verdict = v;
    results[name] = v;
    summarize();
  };

  /** Fills the lists (device names are given once the page may use them), the ones in use selected. */
  async function listDevices() {
    for (const [sel, kind, track] of /** @type {const} */ ([[camSelect, 'videoinput', stream?.getVideoTracks()[0]], [micSelect, 'audioinput', stream?.getAudioTracks()[0]]])) {
      const list = await devices(kind);
      sel.replaceChildren(...list.map((d, i) => h('option', { value: d.deviceId }, d.label || `${t(kind === 'videoinput' ? 'check.camera' : 'check.mic')} ${i + 1}`)));
      sel.value = track?.getSettings().deviceId ?? chosenDevice(kind) ?? '';
      sel.disabled = list.length < 2;
    }
  }
  for (const [sel, kind] of /** @type {const} */ ([[camSelect, 'videoinput'], [micSelect, 'audioinput']])) {
    sel.addEventListener('change', () => {
      chooseDevice(kind, sel.value);
      stopMedia();
      delete results.camera;
      delete results.mic;
      void startMedia();
    });
  }

  function stopMedia() {
    cancelAnimationFrame(raf);
    peak = 0;
    stream?.getTracks().forEach((tr) => tr.stop());
    stream = null;
  }

  async function startMedia() {
    retry.hidden = true;
    if (!navigator.mediaDevices?.getUserMedia) {
      verdict(camVerdict, 'camera', 'error', t('check.noMediaApi'));
      verdict(micVerdict, 'mic', 'error', t('check.noMediaApi'));
      return;
    }
    try {
      stream = await withChosenDevices((cam, mic, how) => ({
        video: { ...videoConstraints(cam, how), width: { ideal: 640 }, height: { ideal: 480 } },
        audio: mic ? { deviceId: { [how]: mic } } : true,
      }));
    } catch (e) {
      const name = e instanceof DOMException ? e.name : '';
      const text = name === 'NotAllowedError' ? t('check.denied') : name === 'NotFoundError' ? t('check.notFound')
        : name === 'NotReadableError' ? t('check.busy') : t('check.failed');
      verdict(camVerdict, 'camera', 'error', text);
      verdict(micVerdict, 'mic', 'error', text);
      retry.hidden = false;
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => undefined);
    await listDevices();
    const track = stream.getVideoTracks()[0];
    if (!track) verdict(camVerdict, 'camera', 'error', t('check.notFound'));
    else {
      const s = track.getSettings();
      verdict(camVerdict, 'camera', 'ok', t('check.cameraOk', { w: s.width ?? '?', h: s.height ?? '?' }));
    }
    if (!stream.getAudioTracks().length) return verdict(micVerdict, 'mic', 'error', t('check.notFound'));
    micVerdict.replaceChildren(h('p', { class: 'muted' }, t('check.speakNow')));
    audio ??= new AudioContext();
    void audio.resume();
    const analyser = audio.createAnalyser();
    analyser.fftSize = 1024;
    audio.createMediaStreamSource(stream).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    const started = performance.now();
    const draw = () => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const x of buf) sum += x * x;
      // RMS in dBFS mapped onto 0-100 (-60 dB … 0 dB).
      const db = 20 * Math.log10(Math.sqrt(sum / buf.length) || 1e-6);
      const level = Math.round(Math.max(0, Math.min(100, ((db + 60) / 60) * 100)));
      meterBar.style.width = `${level}%`;
      meter.setAttribute('aria-valuenow', String(level));
      meter.dataset.level = String(level);
      peak = Math.max(peak, level);
      if (!results.mic && peak > 25) verdict(micVerdict, 'mic', 'ok', t('check.micOk'));
      else if (!results.mic && performance.now() - started > 8000) verdict(micVerdict, 'mic', 'warn', t('check.micQuiet'));
      raf = requestAnimationFrame(draw);
    };
    draw();
  }

  speakerBtn.addEventListener('click', () => {
    audio ??= new AudioContext();
    void audio.resume();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 440;
    gain.gain.value = 0.2;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 1);
    const yes = h('button', { type: 'button', class: 'primary', onclick: () => verdict(speakerVerdict, 'speaker', 'ok', t('check.speakerOk')) }, t('check.heard'));
    const no = h('button', { type: 'button', class: 'secondary', onclick: () => verdict(speakerVerdict, 'speaker', 'warn', t('check.speakerBad')) }, t('check.notHeard'));
    speakerVerdict.replaceChildren(h('p', {}, t('check.didYouHear')), h('div', { class: 'row' }, yes, no));
  });

  netBtn.addEventListener('click', async () => {
    netBtn.disabled = true;
    netVerdict.replaceChildren(h('p', { class: 'muted' }, t('check.netRunning')));
    /** @type {number[]} */
    const rtts = [];
    let failures = 0;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const ok = await fetch(`/healthz?probe=${i}`, { cache: 'no-store' }).then((r) => r.ok).catch(() => false);
      if (ok) rtts.push(performance.now() - t0);
      else failures++;
    }
    // A 200 KB download gives a rough idea of the downlink (the call needs ~300 kbit/s or more).
    const t0 = performance.now();
    const bytes = await fetch('/api/openapi.json', { cache: 'no-store' }).then((r) => r.arrayBuffer()).then((b) => b.byteLength).catch(() => 0);
    const kbps = bytes ? Math.round((bytes * 8) / (performance.now() - t0)) : 0;
    const rtt = rtts.length ? Math.round(rtts.sort((a, b) => a - b)[Math.floor(rtts.length / 2)]) : null;
    netBtn.disabled = false;
    const detail = t('check.netDetail', { rtt: rtt ?? '—', kbps: kbps > 20_000 ? '> 20000' : kbps, lost: failures });
    if (rtt === null || failures >= 3) verdict(netVerdict, 'network', 'error', `${t('check.netBad')} ${detail}`);
    else if (rtt > 400 || failures > 0 || kbps < 500) verdict(netVerdict, 'network', 'warn', `${t('check.netWeak')} ${detail}`);
    else verdict(netVerdict, 'network', 'ok', `${t('check.netOk')} ${detail}`);
    netVerdict.dataset.rtt = String(rtt ?? '');
  });
  retry.addEventListener('click', () => void startMedia());

  ctx.cleanup(() => {
    stopMedia();
    void audio?.close();
  });
  void startMedia();
}
