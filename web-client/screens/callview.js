// @ts-check
/**
 * The call view inside the consultation page: the other side's video large, the self view small, mute /
 * camera / audio-only, a network quality line, a "reconnecting" banner, text chat as a fallback, leave, and
 * (doctor) end the consultation; (health worker) send a photo from the camera, (doctor) see it at once.
 */
import { api, refresh } from '../api.js';
import { Call, capturePhoto, openMedia } from '../call.js';
import { getLang, t } from '../i18n.js';
import { busy, h, notice, time } from '../ui.js';

/** @typedef {import('../i18n.js').Key} Key */
/** @typedef {import('../call.js').CallEvent} CallEvent */

const PHOTO_MAX = 10 * 1024 * 1024;

/**
 * Mounts the "join the call" button and, once pressed, the call. Returns a function that stops the call.
 * @param {HTMLElement} box @param {{consultationId: string, role: string, userId: string, onEnded: () => void}} opts
 * @returns {() => void}
 */
export function mountCall(box, opts) {
  /** @type {Call | null} */
  let call = null;
  const joinBtn = h('button', { type: 'button', class: 'primary', id: 'join-call' }, t('call.join'));
  const intro = h('p', { class: 'muted' }, t('call.intro'));
  const msg = h('div', { id: 'call-msg', 'aria-live': 'polite' });
  box.replaceChildren(h('h3', { id: 'call-title' }, t('call.title')), intro, msg, h('div', { class: 'row' }, joinBtn));

  joinBtn.addEventListener('click', () => void busy(joinBtn, async () => {
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
    call = start(local);
  }));

  /** @param {MediaStream} local @returns {Call} */
  function start(local) {
    const doctor = opts.role === 'doctor';
    const remoteVideo = h('video', { id: 'remote-video', autoplay: true, playsinline: true });
    const selfVideo = h('video', { id: 'self-video', autoplay: true, playsinline: true, muted: true });
    selfVideo.muted = true;
    selfVideo.srcObject = local;
    const remoteLabel = h('p', { class: 'call-placeholder', id: 'remote-wait' }, t('call.waitingOther'));
    const banner = h('p', { class: 'notice warn call-banner', id: 'reconnecting', role: 'status', hidden: true }, t('call.reconnecting'));
    const quality = h('span', { class: 'quality', id: 'call-quality', 'data-level': 'unknown' }, t('call.quality.unknown'));
    const others = h('span', { class: 'muted small', id: 'call-others' });

    const toggle = (/** @type {string} */ id, /** @type {Key} */ label) =>
      h('button', { type: 'button', class: 'secondary', id, 'aria-pressed': 'false' }, t(label));
    const muteBtn = toggle('call-mute', 'call.mute');
    const camBtn = toggle('call-camera', 'call.cameraOff');
    const audioOnlyBtn = toggle('call-audio-only', 'call.audioOnly');
    const leaveBtn = h('button', { type: 'button', class: 'secondary', id: 'call-leave' }, t('call.leave'));
    const endBtn = doctor ? h('button', { type: 'button', class: 'danger', id: 'call-end' }, t('call.end')) : null;
    const photoBtn = doctor ? null : h('button', { type: 'button', class: 'primary', id: 'send-photo', hidden: true }, t('call.sendPhoto'));
    const photoMsg = h('div', { id: 'photo-msg', 'aria-live': 'polite' });
    const photos = h('div', { class: 'call-photos', id: 'call-photos' });

    const chatLog = h('ol', { class: 'chat-log', id: 'chat-log', 'aria-live': 'polite' });
    const chatInput = h('input', { name: 'chat', maxlength: 2000, autocomplete: 'off', 'aria-label': t('call.chatLabel'), placeholder: t('call.chatPlaceholder') });
    const chatForm = h('form', { class: 'row chat-form', id: 'chat-form' }, chatInput, h('button', { type: 'submit', class: 'secondary' }, t('call.chatSend')));

    const stage = h('div', { class: 'call-stage' }, remoteVideo, remoteLabel, selfVideo, banner);
    box.replaceChildren(
      h('div', { class: 'call-head' }, h('h3', { id: 'call-title' }, t('call.title')), quality, others),
      msg, stage,
      h('div', { class: 'row call-controls' }, muteBtn, camBtn, audioOnlyBtn, photoBtn, leaveBtn, endBtn),
      photoMsg, photos,
      h('section', { class: 'chat', 'aria-labelledby': 'chat-title' }, h('h4', { id: 'chat-title' }, t('call.chat')), chatLog, chatForm),
    );

    const c = new Call(opts.consultationId, local, onEvent);
    /** @type {any} */ (window).__thCall = c;
    let ended = false;
    let hadStatus = false;

    /** @param {CallEvent} e */
    function onEvent(e) {
      if (e.kind === 'status') {
        const down = !c.closed && hadStatus && (!e.socket || e.ice === 'disconnected' || e.ice === 'failed');
        if (e.socket) hadStatus = true;
        banner.hidden = !down;
        banner.textContent = navigator.onLine ? t('call.reconnecting') : `${t('call.reconnecting')} ${t('call.offlineHint')}`;
      } else if (e.kind === 'remote') {
        if (remoteVideo.srcObject !== e.stream) remoteVideo.srcObject = e.stream;
        void remoteVideo.play().catch(() => {});
        remoteLabel.hidden = e.stream.getVideoTracks().length > 0;
      } else if (e.kind === 'quality') {
        quality.dataset.level = e.level;
        const parts = [t(/** @type {Key} */ (`call.quality.${e.level}`))];
        if (e.lossPct !== null) parts.push(t('call.loss', { n: e.lossPct.toFixed(1) }));
        if (e.rttMs !== null) parts.push(t('call.rtt', { n: Math.round(e.rttMs) }));
        quality.textContent = parts.join(' · ');
      } else if (e.kind === 'fatal') {
        const key = /** @type {Record<string, Key>} */ ({
          session: 'call.err.session', consultation_closed: 'call.err.closed', not_open_yet: 'call.err.notOpen',
          not_accepted_yet: 'call.err.notAccepted', already_in_call: 'call.err.alreadyIn',
        })[e.code];
        msg.replaceChildren(notice(key ? t(key) : e.message && getLang() === 'vi' ? e.message : t('call.err.generic'), 'error'));
        finish();
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
        case 'participant_left':
          renderOthers();
          if (m.type === 'participant_left') remoteLabel.hidden = false;
          break;
        case 'participant_reconnecting':
          others.textContent = t('call.otherReconnecting');
          break;
        case 'participant_media':
          remoteLabel.textContent = m.video ? t('call.waitingOther') : t('call.otherCameraOff');
          remoteLabel.hidden = Boolean(m.video) && remoteVideo.srcObject !== null;
          if (m.audio) renderOthers();
          else others.textContent = t('call.otherMuted');
          break;
        case 'chat':
          addChat(m);
          break;
        case 'photo_shared':
          void showPhoto(String(m.photo_id));
          break;
        case 'error':
          if (c.joined) msg.replaceChildren(notice(getLang() === 'vi' ? m.message : m.message_en, 'warn'));
          break;
        case 'ended':
        case 'consultation_state':
          if (m.type === 'ended' || ['completed', 'cancelled', 'no_show'].includes(m.state)) {
            msg.replaceChildren(notice(t('call.ended'), 'info'));
            finish();
            opts.onEnded();
          }
          break;
        case 'left':
          msg.replaceChildren(notice(t('call.removed'), 'info'));
          finish();
          break;
        default:
          break;
      }
    }

    function renderOthers() {
      const n = [...c.participants.values()].filter((p) => p.participant_id !== c.participantId).length;
      others.textContent = n ? t('call.othersIn', { n }) : t('call.alone');
    }

    /** @param {import('../call.js').WireMessage} m */
    function addChat(m) {
      const mine = m.participant_id === c.participantId;
      const who = mine ? t('call.you') : t(/** @type {Key} */ (`role.${c.participants.get(m.participant_id)?.role ?? (doctor ? 'health_worker' : 'doctor')}`));
      chatLog.append(h('li', { class: mine ? 'mine' : '' }, h('span', { class: 'muted small' }, `${who} ${time(m.at)}`), h('span', {}, String(m.text ?? ''))));
      chatLog.scrollTop = chatLog.scrollHeight;
    }

    function finish() {
      if (ended) return;
      ended = true;
      c.close(false);
      banner.hidden = true;
      for (const b of [muteBtn, camBtn, audioOnlyBtn, photoBtn, endBtn, leaveBtn]) if (b) b.disabled = true;
      chatInput.disabled = true;
      remoteVideo.srcObject = null;
      selfVideo.srcObject = null;
      box.dataset.ended = 'true';
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
    });
    audioOnlyBtn.addEventListener('click', () => void busy(audioOnlyBtn, async () => {
      await c.setAudioOnly(!c.audioOnly);
      flip(audioOnlyBtn, c.audioOnly, 'call.withVideo', 'call.audioOnly');
      remoteVideo.hidden = c.audioOnly;
      selfVideo.hidden = c.audioOnly || !c.video;
    }));
    leaveBtn.addEventListener('click', () => {
      c.close(true);
      finish();
      msg.replaceChildren(notice(t('call.youLeft'), 'info'));
    });
    endBtn?.addEventListener('click', () => {
      if (!confirm(t('call.confirmEnd'))) return;
      c.end();
    });
    chatForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = chatInput.value.trim();
      if (!text) return;
      if (!c.joined) {
        chatForm.append(notice(t('call.err.chatOffline'), 'warn'));
        return;
      }
      c.chat(text.slice(0, 2000));
      chatInput.value = '';
    });

    // Photos: only when the server has the photo API (GET answers 200).
    void api(`/api/consultations/${opts.consultationId}/photos`).then((r) => {
      if (!r.ok || ended) return;
      if (photoBtn) photoBtn.hidden = false;
      if (doctor && Array.isArray(r.data)) for (const p of r.data) void showPhoto(String(p.id));
    });
    photoBtn?.addEventListener('click', () => void busy(photoBtn, async () => {
      photoMsg.replaceChildren(notice(t('call.photoSending'), 'info'));
      const track = local.getVideoTracks()[0];
      if (!track || track.readyState !== 'live') {
        photoMsg.replaceChildren(notice(t('call.err.noCamera'), 'error'));
        return;
      }
      /** @type {Blob} */
      let blob;
      try {
        blob = await capturePhoto(track, selfVideo);
      } catch {
        photoMsg.replaceChildren(notice(t('call.err.photoCapture'), 'error'));
        return;
      }
      if (blob.size > PHOTO_MAX) {
        photoMsg.replaceChildren(notice(t('call.err.photoTooBig'), 'error'));
        return;
      }
      const status = await uploadPhoto(opts.consultationId, blob);
      photoMsg.replaceChildren(status === 201 || status === 200 ? notice(t('call.photoSent'), 'ok')
        : notice(t(status === 0 ? 'call.err.offline' : status === 401 ? 'call.err.session' : 'call.err.photoUpload'), 'error'));
    }));

    /** @type {Set<string>} */
    const shown = new Set();
    /** @param {string} id */
    async function showPhoto(id) {
      if (shown.has(id)) return;
      shown.add(id);
      const blob = await fetchPhoto(id);
      if (!blob) {
        shown.delete(id);
        return;
      }
      const url = URL.createObjectURL(blob);
      photos.prepend(h('a', { href: url, target: '_blank', rel: 'noopener', class: 'call-photo', 'data-photo': id },
        h('img', { src: url, alt: t('call.photoAlt') })));
    }

    c.start();
    return c;
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
