// @ts-check
/**
 * The call view inside the consultation page: the other side's video large, the self view small, mute /
 * camera / audio-only, a network quality line, a "reconnecting" banner, text chat as a fallback, leave, and
 * (doctor) end the consultation; (health worker) send a photo from the camera, (doctor) see it at once.
 */
import { api, refresh } from '../api.js';
import { Call, capturePhoto, chosenDevice, devices, openMedia } from '../call.js';
import { getLang, t } from '../i18n.js';
import { busy, chime, decimal, h, notice, time } from '../ui.js';

/** @typedef {import('../i18n.js').Key} Key */
/** @typedef {import('../call.js').CallEvent} CallEvent */

const PHOTO_MAX = 10 * 1024 * 1024;

/** Remembers, for this tab, that the user is in a consultation's call, so a reload brings them back into it. */
const IN_CALL = 'telehealth.inCall';

/** @param {string} id @returns {'in' | 'left' | null} */
export function callMemory(id) {
  try {
    const v = sessionStorage.getItem(`${IN_CALL}.${id}`);
    return v === 'in' || v === 'left' ? v : null;
  } catch {
    return null;
  }
}

/** @param {string} id @param {'in' | 'left' | null} v */
function remember(id, v) {
  try {
    if (v) sessionStorage.setItem(`${IN_CALL}.${id}`, v);
    else sessionStorage.removeItem(`${IN_CALL}.${id}`);
  } catch {
    // Storage blocked: a reload then shows the join button instead.
  }
}

/** m:ss @param {number} ms */
const clock = (ms) => {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};

/**
 * Mounts the "join the call" button and, once pressed (or at once with `autoJoin`: a reload, or a consultation
 * already under way), the call. Returns a function that stops the call.
 * @param {HTMLElement} box
 * @param {{consultationId: string, role: string, userId: string, autoJoin?: boolean, onEnded: () => void}} opts
 * @returns {() => void}
 */
export function mountCall(box, opts) {
  /** @type {Call | null} */
  let call = null;
  /** @type {(() => void) | null} */
  let unmountCall = null;
  const joinBtn = h('button', { type: 'button', class: 'primary', id: 'join-call' }, t('call.join'));
  const intro = h('p', { class: 'muted' }, t('call.intro'));
  const msg = h('div', { id: 'call-msg', 'aria-live': 'polite' });
  box.replaceChildren(h('h3', { id: 'call-title' }, t('call.title')), intro, msg, h('div', { class: 'row' }, joinBtn));

  async function join() {
    msg.replaceChildren();
    if (!navigator.onLine) {
      msg.replaceChildren(notice(t('call.err.offline'), 'error'));
      return;
    }
    /** @type {MediaStream} */
    let local;
    try {
      local = await openMedia();
    } catch (e) {
      const name = e instanceof DOMException ? e.name : '';
      const key = name === 'NotAllowedError' || name === 'SecurityError' ? 'call.err.cameraDenied'
        : name === 'NotReadableError' ? 'call.err.cameraBusy' : 'call.err.noDevice';
      msg.replaceChildren(notice(t(key), 'error'));
      return;
    }
    remember(opts.consultationId, 'in');
    [call, unmountCall] = start(local);
  }
  joinBtn.addEventListener('click', () => void busy(joinBtn, join));
  if (opts.autoJoin) void busy(joinBtn, join);

  /** @param {MediaStream} local @returns {[Call, () => void]} */
  function start(local) {
    const remoteVideo = h('video', { id: 'remote-video', autoplay: true, playsinline: true });
    const selfVideo = h('video', { id: 'self-video', autoplay: true, playsinline: true, muted: true });
    // The attribute does not mute a video whose source is set from script; the property does.
    selfVideo.muted = true;
    selfVideo.playsInline = true;
    selfVideo.srcObject = local;
    /** The self view must always play: a health worker aims the camera at a wound by it. */
    const playSelf = () => {
      if (selfVideo.srcObject && selfVideo.paused && !selfVideo.hidden) void selfVideo.play().catch(() => {});
    };
    selfVideo.addEventListener('pause', playSelf);
    selfVideo.addEventListener('loadedmetadata', playSelf);
    playSelf();
    const remoteLabel = h('p', { class: 'call-placeholder', id: 'remote-wait' }, t('call.waitingOther'));
    const frozen = h('p', { class: 'notice warn call-frozen', id: 'remote-frozen', role: 'status', hidden: true }, t('call.remoteFrozen'));
    const banner = h('p', { class: 'notice warn call-banner', id: 'reconnecting', role: 'status', hidden: true }, t('call.reconnecting'));
    // The degradation ladder's last step, told on both pages: this page gets no video (`video-off`), or the other
    // side does not get this page's (`other-video-off`).
    const videoOff = h('p', { class: 'notice info', id: 'video-off', role: 'status', hidden: true });
    const otherVideoOff = h('p', { class: 'notice info', id: 'other-video-off', role: 'status', hidden: true });
    const quality = h('span', { class: 'quality', id: 'call-quality', 'data-level': 'unknown' }, t('call.quality.unknown'));
    const others = h('span', { class: 'muted small', id: 'call-others' });

    const toggle = (/** @type {string} */ id, /** @type {Key} */ label) =>
      h('button', { type: 'button', class: 'secondary', id, 'aria-pressed': 'false' }, t(label));
    const muteBtn = toggle('call-mute', 'call.mute');
    const camBtn = toggle('call-camera', 'call.cameraOff');
    const audioOnlyBtn = toggle('call-audio-only', 'call.audioOnly');
    const leaveBtn = h('button', { type: 'button', class: 'secondary', id: 'call-leave' }, t('call.leave'));
    const rejoinBtn = h('button', { type: 'button', class: 'primary', id: 'rejoin-call', hidden: true }, t('call.rejoin'));
    const doctor = opts.role === 'doctor';
    const photoBtn = doctor ? null : h('button', { type: 'button', class: 'primary', id: 'send-photo', hidden: true }, t('call.sendPhoto'));
    // A picture taken earlier (a lab sheet, a wound yesterday): from the computer's files or the phone's gallery.
    const photoFile = doctor ? null : h('input', { type: 'file', accept: 'image/jpeg,image/png,image/webp', id: 'photo-file', hidden: true });
    const pickBtn = doctor ? null : h('button', { type: 'button', class: 'secondary', id: 'pick-photo', hidden: true }, t('call.pickPhoto'));
    // A station with a USB camera and a built-in one, or a headset: which one the call uses.
    const camSelect = h('select', { name: 'camera', id: 'call-camera-select' });
    const micSelect = h('select', { name: 'mic', id: 'call-mic-select' });
    const deviceMsg = h('div', { 'aria-live': 'polite' });
    const deviceBox = h('details', { class: 'call-devices', id: 'call-devices' },
      h('summary', {}, t('call.devices')),
      h('div', { class: 'grid-form compact' },
        h('div', { class: 'field' }, h('label', { for: camSelect.id }, t('check.chooseCamera')), camSelect),
        h('div', { class: 'field' }, h('label', { for: micSelect.id }, t('check.chooseMic')), micSelect)),
      deviceMsg);
    const photoMsg = h('div', { id: 'photo-msg', 'aria-live': 'polite' });
    // What is about to be sent, to look at first: send it, or take another.
    const photoPreview = h('div', { class: 'photo-preview', id: 'photo-preview', hidden: true });
    const photos = h('div', { class: 'call-photos', id: 'call-photos' });

    const chatLog = h('ol', { class: 'chat-log', id: 'chat-log', 'aria-live': 'polite' });
    const chatInput = h('input', { name: 'chat', maxlength: 2000, autocomplete: 'off', 'aria-label': t('call.chatLabel'), placeholder: t('call.chatPlaceholder') });
    const chatSend = h('button', { type: 'submit', class: 'secondary' }, t('call.chatSend'));
    const chatForm = h('form', { class: 'row chat-form', id: 'chat-form' }, chatInput, chatSend);

    const stage = h('div', { class: 'call-stage' }, remoteVideo, remoteLabel, selfVideo, frozen, banner);
    box.replaceChildren(
      h('div', { class: 'call-head' }, h('h3', { id: 'call-title' }, t('call.title')), quality, others),
      msg, stage, videoOff, otherVideoOff,
      h('div', { class: 'row call-controls' }, muteBtn, camBtn, audioOnlyBtn, photoBtn, pickBtn, photoFile, leaveBtn, rejoinBtn),
      deviceBox, photoMsg, photoPreview, photos,
      h('section', { class: 'chat', 'aria-labelledby': 'chat-title' }, h('h4', { id: 'chat-title' }, t('call.chat')), chatLog, chatForm),
    );
    box.dataset.ended = 'false';
    box.dataset.phase = 'connecting';

    const c = new Call(opts.consultationId, local, onEvent);
    /** @type {any} */ (window).__thCall = c;
    let finished = false;
    /** @type {import('../call.js').CallEvent & {kind: 'status'} | null} */
    let lastStatus = null;
    /** When the other side's seat expires, while it is away. @type {number | null} */
    let otherAwayUntil = null;
    /** Consecutive stats samples with the other side's picture not moving. */
    let stillSamples = 0;
    /** The other side turned its camera off (or chose audio only): no picture to expect. */
    let otherCameraOff = false;
    /** Why this page gets no video now (`video_level`): 'bandwidth', 'requested', or null. */
    let myVideoOff = /** @type {string | null} */ (null);

    /** The picture area: the other side's video, or a line saying why there is none. */
    function renderRemote() {
      const none = otherCameraOff || myVideoOff !== null;
      remoteVideo.hidden = none;
      remoteLabel.textContent = t(myVideoOff ? 'call.audioOnlyNow' : otherCameraOff ? 'call.otherCameraOff' : 'call.waitingOther');
      remoteLabel.hidden = !none && remoteVideo.srcObject !== null;
      // No picture is expected: it is not "interrupted".
      if (none) frozen.hidden = true;
    }

    /** The banner's text for where the recovery stands, with its countdowns. */
    function renderBanner() {
      const st = lastStatus;
      const down = !finished && st?.phase === 'reconnecting';
      banner.hidden = !down;
      if (!down || !st) return;
      const now = Date.now();
      const parts = [];
      if (st.step === 'socket') {
        parts.push(navigator.onLine ? t('call.rc.socket') : t('call.rc.offline'));
        if (st.retryAt && st.retryAt > now) parts.push(t('call.rc.retryIn', { s: Math.ceil((st.retryAt - now) / 1000) }));
        else if (st.attempt > 0) parts.push(t('call.rc.trying', { n: st.attempt }));
      } else if (st.step === 'rejoin') {
        parts.push(t('call.rc.rejoin'));
      } else {
        parts.push(t('call.rc.media'));
      }
      if (st.seatUntil) parts.push(t('call.rc.seat', { t: clock(st.seatUntil - now) }));
      banner.textContent = parts.join(' ');
    }

    function renderOthers() {
      if (finished) {
        others.textContent = '';
        return;
      }
      const list = [...c.participants.values()].filter((p) => p.participant_id !== c.participantId);
      const away = list.filter((p) => p.connected === false);
      if (away.length && otherAwayUntil) {
        others.textContent = t('call.otherAway', { t: clock(otherAwayUntil - Date.now()) });
        return;
      }
      others.textContent = list.length ? t('call.othersIn', { n: list.length }) : t('call.alone');
    }
    const ticker = setInterval(() => {
      renderBanner();
      if (otherAwayUntil) renderOthers();
      playSelf();
    }, 1000);

    /** @param {import('../call.js').CallEvent} e */
    function onEvent(e) {
      if (e.kind === 'status') {
        lastStatus = e;
        box.dataset.phase = e.phase;
        renderBanner();
        if (e.phase === 'out' && !finished) showOut();
      } else if (e.kind === 'remote') {
        if (remoteVideo.srcObject !== e.stream) remoteVideo.srcObject = e.stream;
        void remoteVideo.play().catch(() => {});
        renderRemote();
        if (e.stream.getVideoTracks().length === 0) remoteLabel.hidden = false;
        playSelf();
      } else if (e.kind === 'quality') {
        if (finished) return;
        quality.dataset.level = e.level;
        quality.hidden = e.level === 'alone';
        const parts = [t(/** @type {Key} */ (`call.quality.${e.level === 'alone' ? 'unknown' : e.level}`))];
        if (e.level !== 'down' && e.lossPct !== null) parts.push(t('call.loss', { n: decimal(e.lossPct, 1) }));
        if (e.level !== 'down' && e.rttMs !== null) parts.push(t('call.rtt', { n: Math.round(e.rttMs) }));
        quality.textContent = parts.join(' · ');
        // The other side's picture stopped: say so at once, from what this page receives.
        const otherThere = [...c.participants.values()].some((p) => p.participant_id !== c.participantId);
        const expected = otherThere && remoteVideo.srcObject && !otherCameraOff && myVideoOff === null;
        stillSamples = e.videoFlowing === false && expected ? stillSamples + 1 : 0;
        // Our own line down says more (and takes the same place): then only the banner shows.
        frozen.hidden = stillSamples < 1 || !banner.hidden;
        remoteVideo.dataset.height = String(e.frameHeight ?? '');
      } else if (e.kind === 'fatal') {
        const key = /** @type {Record<string, Key>} */ ({
          session: 'call.err.session', consultation_closed: 'call.err.closed', not_open_yet: 'call.err.notOpen',
          not_accepted_yet: 'call.err.notAccepted',
        })[e.code];
        msg.replaceChildren(notice(key ? t(key) : e.message && getLang() === 'vi' ? e.message : t('call.err.generic'), 'error'));
        if (e.code === 'consultation_closed' || e.code === 'session') finish(true);
        else showOut();
      } else if (e.kind === 'message') onMessage(e.message);
    }

    /** @param {import('../call.js').WireMessage} m */
    function onMessage(m) {
      switch (m.type) {
        case 'joined':
          msg.replaceChildren();
          renderOthers();
          break;
        case 'participant_joined':
        case 'participant_reconnected':
          otherAwayUntil = null;
          renderOthers();
          break;
        case 'participant_left':
          otherAwayUntil = null;
          otherCameraOff = false;
          renderOthers();
          renderRemote();
          remoteLabel.hidden = false;
          break;
        case 'participant_reconnecting':
          otherAwayUntil = Date.now() + Number(m.seat_hold_s ?? 180) * 1000;
          renderOthers();
          break;
        case 'participant_media':
          otherCameraOff = !m.video;
          renderRemote();
          if (m.audio) renderOthers();
          else others.textContent = t('call.otherMuted');
          break;
        case 'video_level': {
          const off = /** @type {string | null} */ (m.off ?? null);
          if (m.participant_id === c.participantId) {
            videoOff.hidden = off === null;
            if (off) videoOff.textContent = t(off === 'bandwidth' ? 'call.videoOffWeak' : 'call.videoOffAsked');
            myVideoOff = off;
            renderRemote();
          } else if (m.publisher_id === c.participantId) {
            otherVideoOff.hidden = off === null;
            if (off) otherVideoOff.textContent = t(off === 'bandwidth' ? 'call.otherVideoOffWeak' : 'call.otherVideoOffAsked');
          }
          break;
        }
        case 'chat':
          addChat(m);
          break;
        case 'photo_shared':
          // Announced to the doctor; the station's own picture is not news to it.
          void showPhoto(String(m.photo_id), doctor);
          break;
        case 'error':
          if (c.joined) msg.replaceChildren(notice(getLang() === 'vi' ? m.message : m.message_en, 'warn'));
          break;
        case 'ended':
        case 'consultation_state':
          if (m.type === 'ended' || ['completed', 'cancelled', 'no_show'].includes(m.state)) {
            msg.replaceChildren(notice(t('call.ended'), 'info'));
            remember(opts.consultationId, null);
            finish(true);
            opts.onEnded();
          }
          break;
        case 'left':
          msg.replaceChildren(notice(t(m.reason === 'replaced' ? 'call.replaced' : 'call.removed'), 'info'));
          showOut();
          break;
        default:
          break;
      }
    }

    /** @param {import('../call.js').WireMessage} m */
    function addChat(m) {
      const mine = m.participant_id === c.participantId;
      const who = mine ? t('call.you') : t(/** @type {Key} */ (`role.${c.participants.get(m.participant_id)?.role ?? (doctor ? 'health_worker' : 'doctor')}`));
      chatLog.append(h('li', { class: mine ? 'mine' : '' }, h('span', { class: 'muted small' }, `${who} ${time(m.at)}`), h('span', {}, String(m.text ?? ''))));
      chatLog.scrollTop = chatLog.scrollHeight;
    }

    /** Media and every call control stop. @param {boolean} ended the consultation is over (no way back in) */
    function finish(ended) {
      if (finished) return;
      finished = true;
      clearInterval(ticker);
      c.close(false, ended ? 'ended' : 'out');
      banner.hidden = true;
      frozen.hidden = true;
      for (const b of [muteBtn, camBtn, audioOnlyBtn, photoBtn, leaveBtn, chatSend]) if (b) b.disabled = true;
      chatInput.disabled = true;
      remoteVideo.srcObject = null;
      selfVideo.srcObject = null;
      // Nothing left that looks like a call going on: no picture, no line quality.
      stage.hidden = true;
      quality.hidden = true;
      quality.textContent = '';
      quality.dataset.level = 'none';
      others.textContent = '';
      box.dataset.ended = String(ended);
      box.dataset.phase = ended ? 'ended' : 'out';
      rejoinBtn.hidden = ended;
    }

    /** Out of the call, the consultation still open: a way back in. */
    function showOut() {
      finish(false);
      rejoinBtn.hidden = false;
    }

    /** @param {HTMLButtonElement} b @param {boolean} on @param {Key} onLabel @param {Key} offLabel */
    const flip = (b, on, onLabel, offLabel) => {
      b.setAttribute('aria-pressed', String(on));
      b.textContent = t(on ? onLabel : offLabel);
    };
    muteBtn.addEventListener('click', () => {
      c.setAudio(!c.audio);
      flip(muteBtn, !c.audio, 'call.unmute', 'call.mute');
    });
    camBtn.addEventListener('click', () => {
      c.setVideo(!c.video);
      flip(camBtn, !c.video, 'call.cameraOn', 'call.cameraOff');
      selfVideo.hidden = !c.video;
      playSelf();
    });
    audioOnlyBtn.addEventListener('click', () => void busy(audioOnlyBtn, async () => {
      await c.setAudioOnly(!c.audioOnly);
      flip(audioOnlyBtn, c.audioOnly, 'call.withVideo', 'call.audioOnly');
      selfVideo.hidden = c.audioOnly || !c.video;
      playSelf();
    }));
    /** Fills the two lists with this computer's devices, the ones in use selected. */
    async function listDevices() {
      for (const [sel, kind, track] of /** @type {const} */ ([[camSelect, 'videoinput', local.getVideoTracks()[0]], [micSelect, 'audioinput', local.getAudioTracks()[0]]])) {
        const list = await devices(kind);
        const current = track?.getSettings().deviceId ?? chosenDevice(kind) ?? '';
        sel.replaceChildren(...list.map((d, i) => h('option', { value: d.deviceId }, d.label || `${t(kind === 'videoinput' ? 'check.camera' : 'check.mic')} ${i + 1}`)));
        sel.value = current;
        sel.disabled = list.length < 2;
      }
    }
    for (const [sel, kind] of /** @type {const} */ ([[camSelect, 'videoinput'], [micSelect, 'audioinput']])) {
      sel.addEventListener('change', () => void busy(sel, async () => {
        try {
          await c.useDevice(kind, sel.value);
          deviceMsg.replaceChildren(notice(t('call.deviceChanged'), 'ok'));
          if (kind === 'videoinput') playSelf();
        } catch {
          deviceMsg.replaceChildren(notice(t('call.err.device'), 'error'));
          await listDevices();
        }
      }));
    }
    void listDevices();
    navigator.mediaDevices?.addEventListener?.('devicechange', listDevices);
    leaveBtn.addEventListener('click', () => {
      remember(opts.consultationId, 'left');
      c.close(true, 'out');
      msg.replaceChildren(notice(t('call.youLeft'), 'info'));
      showOut();
    });
    rejoinBtn.addEventListener('click', () => void busy(rejoinBtn, async () => {
      unmountCall?.();
      await join();
    }));
    chatForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = chatInput.value.trim();
      if (!text || finished) return;
      if (!c.joined) {
        chatForm.append(notice(t('call.err.chatOffline'), 'warn'));
        return;
      }
      c.chat(text.slice(0, 2000));
      chatInput.value = '';
    });

    // Photos: only when the server has the photo API (GET answers 200).
    void api(`/api/consultations/${opts.consultationId}/photos`).then((r) => {
      if (!r.ok || finished) return;
      if (photoBtn) photoBtn.hidden = false;
      if (pickBtn) pickBtn.hidden = false;
      if (doctor && Array.isArray(r.data)) for (const p of r.data) void showPhoto(String(p.id), false);
    });

    /** @type {string | null} */
    let previewUrl = null;
    const closePreview = () => {
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = null;
      photoPreview.hidden = true;
      photoPreview.replaceChildren();
    };
    /** Shows the picture with "send" and "cancel"; nothing leaves the station before "send". @param {Blob} blob */
    function preview(blob) {
      closePreview();
      if (!['image/jpeg', 'image/png', 'image/webp'].includes(blob.type)) {
        photoMsg.replaceChildren(notice(t('call.err.photoType'), 'error'));
        return;
      }
      if (blob.size > PHOTO_MAX) {
        photoMsg.replaceChildren(notice(t('call.err.photoTooBig'), 'error'));
        return;
      }
      photoMsg.replaceChildren();
      previewUrl = URL.createObjectURL(blob);
      const send = h('button', { type: 'button', class: 'primary', id: 'photo-send' }, t('call.photoSendThis'));
      const cancel = h('button', { type: 'button', class: 'secondary', id: 'photo-cancel' }, t('call.photoCancel'));
      send.addEventListener('click', () => void busy(send, async () => {
        photoMsg.replaceChildren(notice(t('call.photoSending'), 'info'));
        const status = await uploadPhoto(opts.consultationId, blob);
        const ok = status === 201 || status === 200;
        if (ok) closePreview();
        photoMsg.replaceChildren(ok ? notice(t('call.photoSent'), 'ok')
          : notice(t(status === 0 ? 'call.err.offline' : status === 401 ? 'call.err.session' : 'call.err.photoUpload'), 'error'));
      }));
      cancel.addEventListener('click', () => {
        closePreview();
        photoMsg.replaceChildren();
      });
      photoPreview.replaceChildren(
        h('p', {}, h('strong', {}, t('call.photoCheck'))),
        h('img', { src: previewUrl, alt: t('call.photoPreviewAlt') }),
        h('div', { class: 'row' }, send, cancel));
      photoPreview.hidden = false;
      send.focus();
    }
    photoBtn?.addEventListener('click', () => void busy(photoBtn, async () => {
      const track = local.getVideoTracks()[0];
      if (!track || track.readyState !== 'live') {
        photoMsg.replaceChildren(notice(t('call.err.noCamera'), 'error'));
        return;
      }
      try {
        preview(await capturePhoto(track, selfVideo));
      } catch {
        photoMsg.replaceChildren(notice(t('call.err.photoCapture'), 'error'));
      }
    }));
    pickBtn?.addEventListener('click', () => photoFile?.click());
    photoFile?.addEventListener('change', () => {
      const f = photoFile.files?.[0];
      photoFile.value = '';
      if (f) preview(f);
    });

    /** @type {Set<string>} */
    const shown = new Set();
    /** A photo from the station; one that arrives during the call is announced (words and a chime).
     * @param {string} id @param {boolean} arrived */
    async function showPhoto(id, arrived) {
      if (shown.has(id)) return;
      shown.add(id);
      const blob = await fetchPhoto(id);
      if (!blob) {
        shown.delete(id);
        return;
      }
      const url = URL.createObjectURL(blob);
      for (const old of photos.querySelectorAll('.call-photo.new')) old.classList.remove('new');
      photos.prepend(h('a', { href: url, target: '_blank', rel: 'noopener', class: arrived ? 'call-photo new' : 'call-photo', 'data-photo': id },
        h('img', { src: url, alt: t('call.photoAlt') })));
      if (arrived) {
        photoMsg.replaceChildren(notice(t('call.photoArrived', { time: time(new Date().toISOString()) }), 'info'));
        chime();
      }
    }

    c.start();
    return [c, () => {
      navigator.mediaDevices?.removeEventListener?.('devicechange', listDevices);
      clearInterval(ticker);
      c.close(false);
    }];
  }

  return () => {
    call?.close(true);
    if (/** @type {any} */ (window).__thCall === call) /** @type {any} */ (window).__thCall = null;
  };
}

/** POSTs the image bytes; refreshes the session once on 401. @param {string} id @param {Blob} blob @returns {Promise<number>} status (0: network) */
async function uploadPhoto(id, blob) {
  const type = ['image/jpeg', 'image/png', 'image/webp'].includes(blob.type) ? blob.type : 'image/jpeg';
  const post = () => fetch(`/api/consultations/${id}/photos`, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': type }, body: blob })
    .then((r) => r.status).catch(() => 0);
  let s = await post();
  if (s === 401 && (await refresh())) s = await post();
  return s;
}

/** @param {string} id @returns {Promise<Blob | null>} */
async function fetchPhoto(id) {
  const get = () => fetch(`/api/photos/${encodeURIComponent(id)}`, { credentials: 'same-origin' }).catch(() => null);
  let r = await get();
  if (r?.status === 401 && (await refresh())) r = await get();
  return r?.ok ? r.blob() : null;
}
