// @ts-check
/**
 * The call (docs/signaling.md "A call, step by step"): one socket bound to the consultation, one
 * RTCPeerConnection to the server's SFU, audio and video sendrecv. The browser is the POLITE peer of the
 * perfect-negotiation pattern: a server `offer` that collides with our own offer rolls ours back. Trickle ICE
 * both ways. A dropped socket is reopened with backoff and the participant resumed (`join` + `resume` + an
 * ICE-restart offer). No DOM here: the call view (screens/call.js) listens to the events this emits.
 */
import { api } from './api.js';

/** Server → client call messages, mirroring the Rust enum (see docs/signaling.md). */
export const CALL_MESSAGES = /** @type {const} */ ([
  'joined', 'offer', 'answer', 'ice', 'participant_joined', 'participant_reconnected', 'participant_reconnecting',
  'participant_left', 'left', 'participant_media', 'connection_state', 'consultation_state', 'chat', 'ended', 'error',
]);

/** @typedef {{candidate: string, sdp_mid?: string | null, sdp_mline_index?: number | null, username_fragment?: string | null}} WireCandidate */
/** @typedef {{participant_id: string, user_id: string, role: string, audio?: boolean, video?: boolean, connected?: boolean}} Participant */
/** @typedef {{type: string, [k: string]: any}} WireMessage */

/**
 * Applies the server's ICE servers (`hello`, `joined`): `{urls, username?, credential?}` entries.
 * @param {RTCPeerConnection} pc @param {unknown} list
 */
function useIceServers(pc, list) {
  /** @type {RTCIceServer[]} */
  const servers = Array.isArray(list) ? list.filter((s) => s && (typeof s.urls === 'string' || Array.isArray(s.urls))) : [];
  if (!servers.length) return;
  try {
    pc.setConfiguration({ ...pc.getConfiguration(), iceServers: servers });
  } catch {
    // Unusable entries: host candidates still work on the same network.
  }
}

/**
 * What the view is told.
 * @typedef {{kind: 'status', socket: boolean, ice: string, joined: boolean}
 *   | {kind: 'remote', stream: MediaStream}
 *   | {kind: 'message', message: WireMessage}
 *   | {kind: 'quality', lossPct: number | null, rttMs: number | null, level: 'good' | 'fair' | 'poor' | 'unknown'}
 *   | {kind: 'fatal', code: string, message?: string}} CallEvent
 */

/**
 * The camera is published as simulcast layers, lowest first (rid q/h/f): the SFU forwards one of them to each
 * subscriber, chosen from that subscriber's downlink estimate, so a doctor on a weak link gets the small picture
 * instead of a frozen large one (docs/signaling.md "Media"). Phones encode two layers, not three: less CPU.
 * @type {RTCRtpEncodingParameters[]}
 */
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 400_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_000_000 },
];
/** @type {RTCRtpEncodingParameters[]} */
const SIMULCAST_PHONE = [
  { rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 250_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 800_000 },
];

/**
 * Adds the camera's sendrecv transceiver, as simulcast when the browser takes several encodings; a browser that
 * refuses them gets one plain encoding.
 * @param {RTCPeerConnection} pc @param {MediaStreamTrack | 'video'} track @param {RTCRtpTransceiverInit} init
 */
function addCamera(pc, track, init) {
  // Without a camera there is nothing to encode; audio-only keeps the layers for when the camera comes back.
  if (init.direction !== 'sendrecv') return pc.addTransceiver(track, init);
  const phone = globalThis.matchMedia?.('(pointer: coarse)').matches ?? false;
  try {
    return pc.addTransceiver(track, { ...init, sendEncodings: (phone ? SIMULCAST_PHONE : SIMULCAST).map((e) => ({ ...e })) });
  } catch {
    return pc.addTransceiver(track, init);
  }
}

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const PING_MS = 15_000;
const STATS_MS = 2000;

/**
 * Opens the camera and microphone (640×480 is plenty on 4G).
 * @returns {Promise<MediaStream>} rejects with the DOMException (NotAllowedError, NotFoundError, …)
 */
export async function openMedia() {
  if (!navigator.mediaDevices?.getUserMedia) throw new DOMException('no getUserMedia', 'NotSupportedError');
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24, max: 30 } },
    });
  } catch (e) {
    // No camera at all: still join with the microphone.
    if (e instanceof DOMException && (e.name === 'NotFoundError' || e.name === 'OverconstrainedError')) {
      return navigator.mediaDevices.getUserMedia({ audio: true });
    }
    throw e;
  }
}

export class Call {
  /**
   * @param {string} consultationId @param {MediaStream} local @param {(e: CallEvent) => void} emit
   */
  constructor(consultationId, local, emit) {
    this.consultationId = consultationId;
    this.local = local;
    this.emit = emit;
    /** @type {WebSocket | null} */
    this.socket = null;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {string | null} */
    this.participantId = null;
    this.joined = false;
    this.closed = false;
    this.attempt = 0;
    this.makingOffer = false;
    /** @type {WireCandidate[]} candidates gathered before `joined` */
    this.pendingIce = [];
    /** @type {Map<string, Participant>} */
    this.participants = new Map();
    this.audio = local.getAudioTracks().length > 0;
    this.video = local.getVideoTracks().length > 0;
    this.audioOnly = false;
    this.remote = new MediaStream();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.pingTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.statsTimer = undefined;
    /** @type {{lost: number, received: number} | null} */
    this.lastCounts = null;
  }

  start() {
    this.newPeer();
    this.connect();
    this.statsTimer = setInterval(() => void this.sampleStats(), STATS_MS);
  }

  /** A fresh RTCPeerConnection with the local tracks on sendrecv transceivers. @param {RTCIceServer[]} [iceServers] */
  newPeer(iceServers = []) {
    this.pc?.close();
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    const a = this.local.getAudioTracks()[0];
    const v = this.local.getVideoTracks()[0];
    pc.addTransceiver(a ?? 'audio', { direction: a ? 'sendrecv' : 'recvonly', streams: [this.local] });
    addCamera(pc, v && !this.audioOnly ? v : 'video', { direction: v ? 'sendrecv' : 'recvonly', streams: [this.local] });
    pc.addEventListener('icecandidate', (e) => {
      if (pc !== this.pc || !e.candidate || !e.candidate.candidate) return;
      const c = e.candidate;
      const wire = { candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex, username_fragment: c.usernameFragment };
      if (this.joined) this.send({ type: 'ice', candidate: wire });
      else this.pendingIce.push(wire);
    });
    pc.addEventListener('track', (e) => {
      if (pc !== this.pc) return;
      const track = e.track;
      // One remote participant at a time: a new track of a kind replaces the old one.
      for (const old of this.remote.getTracks()) if (old.kind === track.kind && old !== track) this.remote.removeTrack(old);
      this.remote.addTrack(track);
      track.addEventListener('ended', () => this.remote.removeTrack(track));
      this.emit({ kind: 'remote', stream: this.remote });
    });
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc !== this.pc) return;
      this.status();
      // The socket is fine but the media path broke (a network change): restart ICE over the socket.
      if (pc.iceConnectionState === 'failed' && this.joined && this.socket?.readyState === WebSocket.OPEN) void this.restartIce();
    });
    pc.addEventListener('connectionstatechange', () => pc === this.pc && this.status());
    this.lastCounts = null;
  }

  /** Tells the view where the socket and the media path stand. */
  status() {
    this.emit({ kind: 'status', socket: this.socket?.readyState === WebSocket.OPEN && this.joined, ice: this.pc?.iceConnectionState ?? 'new', joined: this.joined });
  }

  connect() {
    clearTimeout(this.retryTimer);
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/ws?consultation_id=${encodeURIComponent(this.consultationId)}`);
    this.socket = ws;
    let opened = false;
    ws.addEventListener('open', () => {
      opened = true;
      this.attempt = 0;
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: 'ping' }), PING_MS);
    });
    ws.addEventListener('message', (e) => {
      if (ws !== this.socket || typeof e.data !== 'string') return;
      /** @type {WireMessage} */
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      void this.handle(m);
    });
    ws.addEventListener('close', () => {
      if (ws !== this.socket) return;
      this.socket = null;
      this.joined = false;
      clearInterval(this.pingTimer);
      this.status();
      if (!this.closed) void this.retry(opened);
    });
  }

  /** Reopens the socket after a drop, with backoff; stops when the session or the consultation is over. @param {boolean} wasOpen */
  async retry(wasOpen) {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt++;
    await new Promise((r) => {
      this.retryTimer = setTimeout(r, base + Math.random() * 300);
    });
    if (this.closed) return;
    if (!wasOpen) {
      // The upgrade itself was refused: find out why (session expired, consultation closed) through REST.
      const me = await api('/api/auth/me');
      if (this.closed) return;
      if (!me.ok && me.status === 401) return this.fail('session');
      if (me.ok) {
        const c = await api(`/api/consultations/${this.consultationId}`);
        if (c.ok && ['completed', 'cancelled', 'no_show'].includes(c.data.state)) return this.fail('consultation_closed');
      }
    }
    if (!this.closed && !this.socket) this.connect();
  }

  /** @param {Record<string, unknown>} m */
  send(m) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(m));
  }

  /** Sends `join` (a fresh offer, or an ICE-restart offer with `resume`). */
  async join() {
    const pc = /** @type {RTCPeerConnection} */ (this.pc);
    const resume = this.participantId;
    if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
    this.makingOffer = true;
    try {
      const offer = await pc.createOffer(resume ? { iceRestart: true } : {});
      await pc.setLocalDescription(offer);
    } finally {
      this.makingOffer = false;
    }
    /** @type {Record<string, unknown>} */
    const msg = { type: 'join', consultation_id: this.consultationId, sdp: pc.localDescription?.sdp };
    if (resume) msg.resume = resume;
    this.send(msg);
  }

  async restartIce() {
    const pc = /** @type {RTCPeerConnection} */ (this.pc);
    if (pc.signalingState !== 'stable') return;
    this.makingOffer = true;
    try {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
    } finally {
      this.makingOffer = false;
    }
    this.send({ type: 'offer', sdp: pc.localDescription?.sdp });
  }

  /** @param {WireMessage} m */
  async handle(m) {
    const pc = /** @type {RTCPeerConnection} */ (this.pc);
    switch (m.type) {
      case 'hello':
        // TURN (with this user's time-limited credential) before the offer, so it gathers relay candidates.
        useIceServers(pc, m.ice_servers);
        await this.join();
        break;
      case 'joined': {
        useIceServers(pc, m.ice_servers);
        this.participantId = m.participant_id;
        this.participants.clear();
        for (const p of m.participants ?? []) this.participants.set(p.participant_id, p);
        if (pc.signalingState === 'have-local-offer') await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
        this.joined = true;
        for (const c of this.pendingIce.splice(0)) this.send({ type: 'ice', candidate: c });
        this.announce();
        this.status();
        break;
      }
      case 'offer': {
        // Polite peer: setRemoteDescription(offer) rolls back our own pending offer.
        if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
        await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
        await pc.setLocalDescription(await pc.createAnswer());
        this.send({ type: 'answer', sdp: pc.localDescription?.sdp });
        break;
      }
      case 'answer':
        if (pc.signalingState === 'have-local-offer') await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
        break;
      case 'ice': {
        const c = m.candidate ?? {};
        try {
          await pc.addIceCandidate({
            candidate: c.candidate, sdpMid: c.sdp_mid ?? c.sdpMid ?? null,
            sdpMLineIndex: c.sdp_mline_index ?? c.sdpMLineIndex ?? null, usernameFragment: c.username_fragment ?? c.usernameFragment ?? null,
          });
        } catch {
          // A candidate for an offer we rolled back: harmless.
        }
        break;
      }
      case 'error':
        if (m.code === 'cannot_resume') {
          // Our place in the room expired: join again as a new participant.
          this.participantId = null;
          this.joined = false;
          this.pendingIce = [];
          this.newPeer(pc.getConfiguration().iceServers ?? []);
          await this.join();
          return;
        }
        if (['consultation_closed', 'not_a_participant', 'not_accepted_yet', 'not_open_yet', 'already_in_call', 'media_error'].includes(m.code) && !this.joined) {
          this.fail(m.code, m.message);
          return;
        }
        break;
      case 'participant_joined':
      case 'participant_reconnected':
        this.participants.set(m.participant_id, { participant_id: m.participant_id, user_id: m.user_id, role: m.role, connected: true });
        break;
      case 'participant_left':
        this.participants.delete(m.participant_id);
        break;
      case 'left':
      case 'ended':
        break;
      default:
        break;
    }
    this.emit({ kind: 'message', message: m });
    if (m.type === 'ended' || (m.type === 'consultation_state' && ['completed', 'cancelled', 'no_show'].includes(m.state)) || m.type === 'left') {
      this.close(false);
    }
  }

  /** @param {string} code @param {string} [message] */
  fail(code, message) {
    this.close(false);
    this.emit({ kind: 'fatal', code, message });
  }

  /** Tells the others whether the microphone and the camera are on. */
  announce() {
    this.send({ type: 'media', audio: this.audio, video: this.video && !this.audioOnly });
  }

  /** @param {boolean} on */
  setAudio(on) {
    this.audio = on;
    for (const t of this.local.getAudioTracks()) t.enabled = on;
    this.announce();
  }

  /** @param {boolean} on */
  setVideo(on) {
    this.video = on;
    for (const t of this.local.getVideoTracks()) t.enabled = on;
    this.announce();
  }

  /** Audio only (a weak link): stop sending video altogether, keep the microphone. @param {boolean} on */
  async setAudioOnly(on) {
    this.audioOnly = on;
    const sender = this.pc?.getTransceivers().find((t) => t.receiver.track.kind === 'video')?.sender;
    const v = this.local.getVideoTracks()[0];
    if (sender) await sender.replaceTrack(on ? null : v ?? null).catch(() => {});
    this.announce();
  }

  /** @param {string} text */
  chat(text) {
    this.send({ type: 'chat', text });
  }

  /** The doctor ends the consultation for everyone. */
  end() {
    this.send({ type: 'end' });
  }

  /** Packet loss and round-trip time over the last interval, from getStats. */
  async sampleStats() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    let lost = 0;
    let received = 0;
    /** @type {number | null} */
    let rtt = null;
    try {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === 'inbound-rtp') {
          lost += s.packetsLost ?? 0;
          received += s.packetsReceived ?? 0;
        } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && typeof s.currentRoundTripTime === 'number') {
          rtt = s.currentRoundTripTime * 1000;
        } else if (s.type === 'remote-inbound-rtp' && rtt === null && typeof s.roundTripTime === 'number') {
          rtt = s.roundTripTime * 1000;
        }
      });
    } catch {
      return;
    }
    const prev = this.lastCounts;
    this.lastCounts = { lost, received };
    /** @type {number | null} */
    let lossPct = null;
    if (prev) {
      const dl = Math.max(0, lost - prev.lost);
      const dr = Math.max(0, received - prev.received);
      lossPct = dl + dr > 0 ? (100 * dl) / (dl + dr) : null;
    }
    const r = /** @type {number | null} */ (rtt);
    /** @type {'good' | 'fair' | 'poor' | 'unknown'} */
    let level = 'unknown';
    if (lossPct !== null || r !== null) {
      const l = lossPct ?? 0;
      const t = r ?? 0;
      level = l > 8 || t > 600 ? 'poor' : l > 2 || t > 300 ? 'fair' : 'good';
    }
    this.emit({ kind: 'quality', lossPct, rttMs: r, level });
  }

  /** Leaves: `leave` unless the call is over anyway, then stops the camera and closes everything. @param {boolean} [sayLeave] */
  close(sayLeave = true) {
    if (this.closed) return;
    if (sayLeave) this.send({ type: 'leave' });
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    clearInterval(this.statsTimer);
    const ws = this.socket;
    this.socket = null;
    this.joined = false;
    ws?.close(1000);
    this.pc?.close();
    for (const t of this.local.getTracks()) t.stop();
    this.status();
  }
}

/**
 * A full-resolution still from the local camera: ImageCapture.takePhoto when the browser has it, else the
 * current video frame drawn on a canvas (JPEG, quality 0.92).
 * @param {MediaStreamTrack} track @param {HTMLVideoElement} video @returns {Promise<Blob>}
 */
export async function capturePhoto(track, video) {
  const IC = /** @type {any} */ (globalThis).ImageCapture;
  if (IC) {
    try {
      const blob = /** @type {Blob} */ (await new IC(track).takePhoto());
      if (blob.size > 0) return blob;
    } catch {
      // Fake or busy cameras refuse takePhoto: fall back to the frame on screen.
    }
  }
  const s = track.getSettings();
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth || s.width || 640;
  canvas.height = video.videoHeight || s.height || 480;
  const g = canvas.getContext('2d');
  if (!g) throw new Error('no canvas');
  g.drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('toBlob'))), 'image/jpeg', 0.92));
}
