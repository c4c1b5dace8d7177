// @ts-check
/**
 * The call (docs/signaling.md "A call, step by step"): one socket bound to the consultation, one
 * RTCPeerConnection to the server's SFU, audio and video sendrecv, trickle ICE both ways. No DOM here: the call
 * view (screens/callview.js) listens to the events this emits.
 *
 * Negotiation never wedges:
 * - Every signaling step (a server message, our own offer) runs in one queue, one after the other, so an offer
 *   from the server can never be applied while the answer to our join is still being applied.
 * - The browser is the POLITE peer of the perfect-negotiation pattern and the server the impolite one: a server
 *   `offer` that meets our own rolls ours back (setRemoteDescription does it), we answer, and the browser fires
 *   `negotiationneeded` again for what ours was for (an ICE restart). Answers that come in a state that cannot
 *   take them are stale and dropped. A step that fails anyway makes a fresh connection (a full rejoin).
 *
 * Comes back by itself, in this order (each shown to the user as it happens):
 * 1. The socket: pinged every few seconds; one that goes silent is dropped at once, and a new one opened with
 *    backoff takes the seat back (`join` + `resume`), keeping the peer connection.
 * 2. The media path: ICE that fails, or stays disconnected for a few seconds, is restarted over the socket, and
 *    again while it stays down.
 * 3. A fresh connection: when the server lost our seat, asks us to (`rejoin`), or the connection cannot recover,
 *    a new RTCPeerConnection joins; the server gives the same seat back to the same user.
 * The server holds the seat for minutes (`seat_hold_s` in `joined`).
 */
import { api } from './api.js';

/**
 * Server → client call messages: the Rust `ServerMessage` (signaling/src/protocol.rs) less the live-update socket's
 * own (`consultation_changed`, `resync`); a test there checks this list, the enum and docs/signaling.md agree.
 */
export const CALL_MESSAGES = /** @type {const} */ ([
  'hello', 'pong', 'joined', 'offer', 'answer', 'ice', 'participant_joined', 'participant_reconnected',
  'participant_reconnecting', 'participant_left', 'left', 'participant_media', 'connection_state', 'consultation_state',
  'chat', 'ended', 'photo_shared', 'rejoin', 'video_level', 'error',
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
 * Where the call stands, for the view.
 * - `connecting`: joining for the first time.
 * - `live`: in the call, the socket and the media path are up.
 * - `reconnecting`: something broke and the page is bringing it back (`step` says what it is doing).
 * - `out`: not in the call (left, replaced by another page, or the seat is gone and joining failed).
 * - `ended`: the consultation is over.
 * @typedef {'connecting' | 'live' | 'reconnecting' | 'out' | 'ended'} Phase
 */

/**
 * What the view is told.
 * @typedef {{kind: 'status', phase: Phase, step: 'socket' | 'media' | 'rejoin' | null, attempt: number, retryAt: number | null,
 *     seatUntil: number | null, socket: boolean, ice: string, joined: boolean}
 *   | {kind: 'remote', stream: MediaStream}
 *   | {kind: 'message', message: WireMessage}
 *   | {kind: 'quality', lossPct: number | null, rttMs: number | null, level: 'good' | 'fair' | 'poor' | 'down' | 'alone' | 'unknown',
 *       videoFlowing: boolean | null, audioFlowing: boolean | null, frameHeight: number | null}
 *   | {kind: 'fatal', code: string, message?: string}} CallEvent
 */

/**
 * The camera is published as simulcast layers, lowest first (rid q/h/f): the SFU forwards one of them to each
 * subscriber, chosen from that subscriber's downlink estimate, so a doctor on a weak link gets the small picture
 * instead of a frozen large one (docs/signaling.md "Media"). From a 1280×720 camera: 320×180, 640×360, 1280×720.
 * Phones encode two layers, not three: less CPU.
 * @type {RTCRtpEncodingParameters[]}
 */
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];
/** @type {RTCRtpEncodingParameters[]} */
const SIMULCAST_PHONE = [
  { rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 300_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_000_000 },
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

/** Socket reconnect delays while in a call (short: the call is waiting); the last one repeats. */
const BACKOFF_MS = [250, 500, 1000, 2000, 3000];
/** App-level ping (browsers cannot send WebSocket pings); a socket silent this long is dead. */
const PING_MS = 3000;
const SILENT_SOCKET_MS = 8000;
/** ICE disconnected this long is restarted (a short outage heals by itself, faster), and again this often. */
const ICE_RESTART_AFTER_MS = 4000;
/** A connection that stays down this long after restarts is replaced by a fresh one. */
const REJOIN_AFTER_MS = 20_000;
const STATS_MS = 1000;

/** Where the chosen camera and microphone are remembered (device ids: nothing about a patient). */
const DEVICE_KEYS = { audioinput: 'telehealth.device.mic', videoinput: 'telehealth.device.camera' };

/** The camera or microphone chosen on this computer, if any. @param {'audioinput' | 'videoinput'} kind */
export function chosenDevice(kind) {
  try {
    return localStorage.getItem(DEVICE_KEYS[kind]) || null;
  } catch {
    return null;
  }
}

/** Remembers the camera or microphone for the next calls. @param {'audioinput' | 'videoinput'} kind @param {string} id */
export function chooseDevice(kind, id) {
  try {
    localStorage.setItem(DEVICE_KEYS[kind], id);
  } catch {
    // Storage blocked: the choice holds for this call only.
  }
}

/** The cameras or microphones this computer has (names once the page may use them). @param {'audioinput' | 'videoinput'} kind
 * @returns {Promise<MediaDeviceInfo[]>} */
export async function devices(kind) {
  const all = await navigator.mediaDevices?.enumerateDevices?.().catch(() => []) ?? [];
  return all.filter((d) => d.kind === kind && d.deviceId);
}

/** @param {string | null} id @param {'ideal' | 'exact'} how @returns {MediaTrackConstraints} */
const audioConstraints = (id, how) => ({ echoCancellation: true, noiseSuppression: true, ...(id ? { deviceId: { [how]: id } } : {}) });
/** @param {string | null} id @param {'ideal' | 'exact'} how @returns {MediaTrackConstraints} */
export const videoConstraints = (id, how) =>
  ({ width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24, max: 30 }, ...(id ? { deviceId: { [how]: id } } : {}) });

/**
 * getUserMedia with the devices chosen on this computer; when one of them is gone (unplugged), with whatever the
 * browser offers. @param {(cam: string | null, mic: string | null, how: 'exact') => MediaStreamConstraints} make
 * @returns {Promise<MediaStream>}
 */
export async function withChosenDevices(make) {
  const [cam, mic] = [chosenDevice('videoinput'), chosenDevice('audioinput')];
  if (cam || mic) {
    try {
      // Exact: Chromium may answer an "ideal" device with the default one.
      return await navigator.mediaDevices.getUserMedia(make(cam, mic, 'exact'));
    } catch (e) {
      const name = e instanceof DOMException ? e.name : '';
      if (name !== 'OverconstrainedError' && name !== 'NotFoundError') throw e;
    }
  }
  return navigator.mediaDevices.getUserMedia(make(null, null, 'exact'));
}

/**
 * Opens the camera and microphone (the ones chosen on this computer, when they are there): 1280×720 where the
 * camera allows (a doctor judges skin, eyes and wounds on it), whatever it offers below that otherwise.
 * @returns {Promise<MediaStream>} rejects with the DOMException (NotAllowedError, NotFoundError, …)
 */
export async function openMedia() {
  if (!navigator.mediaDevices?.getUserMedia) throw new DOMException('no getUserMedia', 'NotSupportedError');
  const audio = audioConstraints(null, 'exact');
  try {
    return await withChosenDevices((cam, mic, how) => ({ audio: audioConstraints(mic, how), video: videoConstraints(cam, how) }));
  } catch (e) {
    const name = e instanceof DOMException ? e.name : '';
    // A camera that cannot do it at all: any size it can.
    if (name === 'OverconstrainedError') return navigator.mediaDevices.getUserMedia({ audio, video: true });
    // No camera at all: still join with the microphone.
    if (name === 'NotFoundError') return navigator.mediaDevices.getUserMedia({ audio: true });
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
    /** @type {Phase} */
    this.phase = 'connecting';
    /** Whether the call was ever up (then a break is `reconnecting`, not `connecting`). */
    this.everLive = false;
    /** A fresh connection is on its way in. */
    this.rejoining = false;
    /** @type {'socket' | 'media' | 'rejoin' | null} */
    this.step = null;
    this.attempt = 0;
    /** @type {number | null} when the next socket attempt starts (ms since epoch) */
    this.retryAt = null;
    /** Seconds the server holds our seat while we are away, and since when we are away. */
    this.seatHoldS = 180;
    /** @type {number | null} */
    this.awaySince = null;
    /** @type {number | null} */
    this.iceDownSince = null;
    /** @type {number | null} */
    this.lastRestartAt = null;
    /** ICE restarts since media last flowed, and when the socket last (re)joined. */
    this.restarts = 0;
    this.joinedAt = 0;
    /** The signaling queue: each step starts when the one before has finished. */
    /** @type {Promise<void>} */
    this.queue = Promise.resolve();
    /** @type {WireCandidate[]} candidates gathered before `joined` */
    this.pendingIce = [];
    /** @type {Map<string, Participant>} */
    this.participants = new Map();
    this.audio = local.getAudioTracks().length > 0;
    this.video = local.getVideoTracks().length > 0;
    this.audioOnly = false;
    this.remote = new MediaStream();
    this.lastHeard = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.pingTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.watchTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.statsTimer = undefined;
    /** @type {{lost: number, received: number, frames: number, audio: number} | null} */
    this.lastCounts = null;
    /** What the recovery did, with when (for tests and the session's record). @type {{at: number, what: string}[]} */
    this.log = [];
  }

  start() {
    this.newPeer();
    this.connect();
    this.statsTimer = setInterval(() => void this.sampleStats(), STATS_MS);
    this.watchTimer = setInterval(() => this.watchMedia(), 500);
  }

  /** @param {string} what */
  note(what) {
    this.log.push({ at: Date.now(), what });
    if (this.log.length > 200) this.log.shift();
  }

  /**
   * Runs a signaling step after the ones before it. A step that throws leaves the connection in a state we do
   * not trust: a fresh one replaces it.
   * @param {() => Promise<void>} step
   */
  enqueue(step) {
    this.queue = this.queue.then(step).catch((e) => {
      this.note(`step failed: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)} (signaling ${this.pc?.signalingState})`);
      if (!this.closed) this.rejoin('negotiation');
    });
    return this.queue;
  }

  /** A fresh RTCPeerConnection with the local tracks on sendrecv transceivers. @param {RTCIceServer[]} [iceServers] */
  newPeer(iceServers = []) {
    this.pc?.close();
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    this.joined = false;
    this.pendingIce = [];
    this.iceDownSince = null;
    this.lastRestartAt = null;
    this.restarts = 0;
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
    // After join, only an ICE restart makes the browser want to offer (our tracks never change).
    pc.addEventListener('negotiationneeded', () => {
      if (pc !== this.pc) return;
      void this.enqueue(async () => {
        if (pc !== this.pc || !this.joined || !this.socketOpen() || pc.signalingState !== 'stable') return;
        await pc.setLocalDescription();
        this.send({ type: 'offer', sdp: pc.localDescription?.sdp });
      });
    });
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc !== this.pc) return;
      this.note(`ice ${pc.iceConnectionState}`);
      this.watchMedia();
      this.status();
    });
    pc.addEventListener('connectionstatechange', () => pc === this.pc && this.status());
    this.lastCounts = null;
  }

  socketOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  mediaUp() {
    const s = this.pc?.iceConnectionState;
    return s === 'connected' || s === 'completed';
  }

  /** Tells the view where the call stands. */
  status() {
    if (!this.closed) {
      if (this.joined && this.socketOpen() && this.mediaUp()) {
        this.phase = 'live';
        this.everLive = true;
        this.rejoining = false;
        this.awaySince = null;
      } else if (this.everLive) {
        this.phase = 'reconnecting';
        if (this.awaySince === null) this.awaySince = Date.now();
      }
      this.step = this.phase !== 'reconnecting' ? null
        : this.rejoining ? 'rejoin' : !this.socketOpen() || !this.joined ? 'socket' : 'media';
    }
    this.emit({
      kind: 'status', phase: this.phase, step: this.step, attempt: this.attempt, retryAt: this.retryAt,
      seatUntil: this.awaySince === null ? null : this.awaySince + this.seatHoldS * 1000,
      socket: this.socketOpen() && this.joined, ice: this.pc?.iceConnectionState ?? 'new', joined: this.joined,
    });
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryAt = null;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/ws?consultation_id=${encodeURIComponent(this.consultationId)}`);
    this.socket = ws;
    let opened = false;
    ws.addEventListener('open', () => {
      if (ws !== this.socket) return;
      opened = true;
      this.lastHeard = Date.now();
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.ping(ws), PING_MS);
    });
    ws.addEventListener('message', (e) => {
      if (ws !== this.socket || typeof e.data !== 'string') return;
      this.lastHeard = Date.now();
      /** @type {WireMessage} */
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      if (m.type === 'pong') return;
      void this.enqueue(() => this.handle(m));
    });
    ws.addEventListener('close', () => {
      if (ws !== this.socket) return;
      this.socketLost(opened);
    });
  }

  /** Pings; a socket that has said nothing for too long is dead (a TCP stall never closes by itself). @param {WebSocket} ws */
  ping(ws) {
    if (ws !== this.socket) return;
    if (Date.now() - this.lastHeard > SILENT_SOCKET_MS) {
      this.note('socket silent: dropped');
      ws.close();
      this.socketLost(true);
      return;
    }
    this.send({ type: 'ping' });
  }

  /** The socket is gone: the seat waits on the server; reopen with backoff. @param {boolean} wasOpen */
  socketLost(wasOpen) {
    this.socket = null;
    this.joined = false;
    clearInterval(this.pingTimer);
    if (this.closed) return;
    this.status();
    void this.retry(wasOpen);
  }

  /** Reopens the socket after a drop, with backoff; stops when the session or the consultation is over. @param {boolean} wasOpen */
  async retry(wasOpen) {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt++;
    const wait = base + Math.random() * 200;
    this.retryAt = Date.now() + wait;
    this.status();
    await new Promise((r) => {
      this.retryTimer = setTimeout(r, wait);
    });
    if (this.closed) return;
    if (!wasOpen && this.attempt > 2) {
      // The upgrade itself keeps failing: find out why (session expired, consultation closed) through REST.
      const me = await api('/api/auth/me');
      if (this.closed) return;
      if (!me.ok && me.status === 401) return this.fail('session');
      if (me.ok) {
        const c = await api(`/api/consultations/${this.consultationId}`);
        if (c.ok && ['completed', 'cancelled', 'no_show'].includes(c.data.state)) return this.fail('consultation_closed');
      }
    }
    if (!this.closed && !this.socket) {
      this.note(`socket attempt ${this.attempt}`);
      this.connect();
    }
  }

  /** @param {Record<string, unknown>} m */
  send(m) {
    if (this.socketOpen()) /** @type {WebSocket} */ (this.socket).send(JSON.stringify(m));
  }

  /** Sends `join`: with a fresh offer, or (the socket dropped, the connection carries on) `resume` without one. */
  async join() {
    const pc = /** @type {RTCPeerConnection} */ (this.pc);
    const keep = this.participantId && pc.connectionState !== 'closed' && pc.signalingState !== 'closed' && pc.remoteDescription;
    if (keep) {
      this.note('resume');
      this.send({ type: 'join', consultation_id: this.consultationId, resume: this.participantId });
      return;
    }
    if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
    await pc.setLocalDescription(await pc.createOffer());
    this.note('join');
    this.send({ type: 'join', consultation_id: this.consultationId, sdp: pc.localDescription?.sdp });
  }

  /** Replaces the peer connection with a fresh one and joins with it (the server gives our seat back). @param {string} why */
  rejoin(why) {
    if (this.closed) return;
    this.note(`rejoin (${why})`);
    const servers = this.pc?.getConfiguration().iceServers ?? [];
    this.newPeer(servers);
    this.rejoining = this.everLive;
    this.status();
    if (this.socketOpen()) void this.enqueue(() => this.join());
    // Without a socket, the next one joins fresh (`join` sees no remote description).
  }

  /** Restarts ICE over the socket: the browser offers with fresh credentials (negotiationneeded). */
  restartIce() {
    const pc = this.pc;
    if (!pc || !this.joined || !this.socketOpen()) return;
    this.lastRestartAt = Date.now();
    this.restarts++;
    this.note('ice restart');
    pc.restartIce();
  }

  /** Keeps the media path honest: restart ICE when it fails or stays down, a fresh connection when that does not help. */
  watchMedia() {
    const pc = this.pc;
    // Nothing can be negotiated without the socket: it comes back first.
    if (!pc || this.closed || !this.joined || !this.socketOpen()) return;
    if (this.mediaUp()) {
      this.iceDownSince = null;
      this.restarts = 0;
      return;
    }
    const s = pc.iceConnectionState;
    if (s !== 'disconnected' && s !== 'failed' && s !== 'closed') return;
    const now = Date.now();
    // Counted from when we could act on it: the break, or the socket's return after it.
    const since = Math.max(this.iceDownSince ??= now, this.joinedAt);
    if (s === 'closed' || (this.restarts >= 2 && now - since > REJOIN_AFTER_MS)) {
      this.rejoin(s === 'closed' ? 'connection closed' : 'media did not come back');
      return;
    }
    const due = s === 'failed' || now - since >= ICE_RESTART_AFTER_MS;
    const waited = this.lastRestartAt === null || now - this.lastRestartAt >= ICE_RESTART_AFTER_MS;
    if (due && waited) this.restartIce();
  }

  /** One server message, in queue order. @param {WireMessage} m */
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
        if (typeof m.seat_hold_s === 'number') this.seatHoldS = m.seat_hold_s;
        this.participants.clear();
        for (const p of m.participants ?? []) this.participants.set(p.participant_id, p);
        if (m.sdp && pc.signalingState === 'have-local-offer') await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
        this.joined = true;
        this.joinedAt = Date.now();
        this.attempt = 0;
        this.retryAt = null;
        for (const c of this.pendingIce.splice(0)) this.send({ type: 'ice', candidate: c });
        this.announce();
        if (!m.sdp && pc.signalingState === 'have-local-offer') {
          // Back on a new socket with an offer of ours that went down with the old one: send it again.
          this.send({ type: 'offer', sdp: pc.localDescription?.sdp });
        } else if (!m.sdp && !this.mediaUp()) {
          // Back on a new socket with the same connection: its path broke meanwhile, restart ICE now.
          this.restartIce();
        }
        this.status();
        break;
      }
      case 'offer':
        // Polite: an offer of ours still out is rolled back first (explicitly: Chromium refuses an offer in
        // have-local-offer when ours restarts ICE); `negotiationneeded` makes ours again afterwards.
        if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
        await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
        await pc.setLocalDescription();
        this.send({ type: 'answer', sdp: pc.localDescription?.sdp });
        break;
      case 'answer':
        // Only an answer to an offer we have out; anything else is stale (our offer was rolled back).
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
          // A candidate for a description we rolled back or replaced: harmless.
        }
        break;
      }
      case 'rejoin':
        this.rejoin('asked by the server');
        return;
      case 'error':
        if (m.code === 'call_elsewhere') {
          // The call moved to another server: a new socket is placed where it is now.
          this.note('call elsewhere: reconnecting');
          this.socket?.close();
          return;
        }
        if (m.code === 'cannot_resume') {
          // Our seat expired while we were away: join again with a fresh connection.
          this.participantId = null;
          this.rejoin('seat expired');
          return;
        }
        if (['consultation_closed', 'not_a_participant', 'not_accepted_yet', 'not_open_yet', 'media_error', 'bad_sdp'].includes(m.code) && !this.joined) {
          this.fail(m.code, m.message);
          return;
        }
        break;
      case 'participant_joined':
      case 'participant_reconnected':
        this.participants.set(m.participant_id, { participant_id: m.participant_id, user_id: m.user_id, role: m.role, connected: true });
        break;
      case 'participant_reconnecting': {
        const p = this.participants.get(m.participant_id);
        if (p) p.connected = false;
        break;
      }
      case 'participant_left':
        this.participants.delete(m.participant_id);
        break;
      default:
        break;
    }
    this.emit({ kind: 'message', message: m });
    if (m.type === 'ended' || (m.type === 'consultation_state' && ['completed', 'cancelled', 'no_show'].includes(m.state))) {
      this.close(false, 'ended');
    } else if (m.type === 'left') {
      // Replaced by this user's newer page, or removed: out of the call, with a way back in.
      this.close(false, 'out');
    }
  }

  /** @param {string} code @param {string} [message] */
  fail(code, message) {
    this.close(false, 'out');
    this.emit({ kind: 'fatal', code, message });
  }

  /** Tells the others whether the microphone and the camera are on. */
  announce() {
    this.send({ type: 'media', audio: this.audio, video: this.video && !this.audioOnly, receive_video: !this.audioOnly });
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

  /**
   * Audio only (a weak link): stop sending video altogether, keep the microphone; the server stops sending this
   * page video too. @param {boolean} on
   */
  async setAudioOnly(on) {
    this.audioOnly = on;
    const sender = this.pc?.getTransceivers().find((t) => t.receiver.track.kind === 'video')?.sender;
    const v = this.local.getVideoTracks()[0];
    if (sender) await sender.replaceTrack(on ? null : v ?? null).catch(() => {});
    this.announce();
  }

  /**
   * Changes camera or microphone during the call: the new device's track replaces the old one on the connection
   * (no renegotiation), the choice is remembered for the next calls.
   * @param {'audioinput' | 'videoinput'} kind @param {string} deviceId
   */
  async useDevice(kind, deviceId) {
    const audio = kind === 'audioinput';
    const s = await navigator.mediaDevices.getUserMedia(audio ? { audio: audioConstraints(deviceId, 'exact') } : { video: videoConstraints(deviceId, 'exact') });
    const track = audio ? s.getAudioTracks()[0] : s.getVideoTracks()[0];
    if (!track) throw new DOMException('no track', 'NotFoundError');
    const old = audio ? this.local.getAudioTracks()[0] : this.local.getVideoTracks()[0];
    track.enabled = audio ? this.audio : this.video;
    const transceivers = this.pc?.getTransceivers() ?? [];
    const tr = transceivers.find((t) => old && t.sender.track === old)
      ?? transceivers.find((t) => t.receiver.track.kind === track.kind && t.direction !== 'recvonly' && t.direction !== 'inactive');
    // Audio only: the camera's sender stays empty until video is wanted again (it then takes the new camera).
    if (tr && !(!audio && this.audioOnly)) await tr.sender.replaceTrack(track);
    if (old) {
      this.local.removeTrack(old);
      old.stop();
    }
    this.local.addTrack(track);
    chooseDevice(kind, deviceId);
  }

  /** @param {string} text */
  chat(text) {
    this.send({ type: 'chat', text });
  }

  /**
   * What arrives, from getStats: loss and round-trip time over the last second, whether video frames and audio
   * are still coming in (a frozen picture is noticed here, by the page itself), and the received picture's height.
   */
  async sampleStats() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    let lost = 0;
    let received = 0;
    let frames = 0;
    let audio = 0;
    let hasVideo = false;
    let hasAudio = false;
    /** @type {number | null} */
    let frameHeight = null;
    /** @type {number | null} */
    let rtt = null;
    try {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === 'inbound-rtp') {
          lost += s.packetsLost ?? 0;
          received += s.packetsReceived ?? 0;
          if (s.kind === 'video') {
            hasVideo = true;
            frames += s.framesDecoded ?? 0;
            if (s.frameHeight) frameHeight = s.frameHeight;
          } else if (s.kind === 'audio') {
            hasAudio = true;
            audio += s.totalSamplesReceived ?? 0;
          }
        } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && typeof s.currentRoundTripTime === 'number') {
          rtt = s.currentRoundTripTime * 1000;
        } else if (s.type === 'remote-inbound-rtp' && rtt === null && typeof s.roundTripTime === 'number') {
          rtt = s.roundTripTime * 1000;
        }
      });
    } catch {
      return;
    }
    if (pc !== this.pc) return;
    const prev = this.lastCounts;
    this.lastCounts = { lost, received, frames, audio };
    /** @type {number | null} */
    let lossPct = null;
    /** @type {boolean | null} */
    let videoFlowing = null;
    /** @type {boolean | null} */
    let audioFlowing = null;
    if (prev) {
      const dl = Math.max(0, lost - prev.lost);
      const dr = Math.max(0, received - prev.received);
      lossPct = dl + dr > 0 ? (100 * dl) / (dl + dr) : null;
      if (hasVideo) videoFlowing = frames > prev.frames;
      if (hasAudio) audioFlowing = audio > prev.audio;
    }
    const r = /** @type {number | null} */ (rtt);
    /** @type {'good' | 'fair' | 'poor' | 'down' | 'alone' | 'unknown'} */
    let level = 'unknown';
    if (this.joined && this.mediaUp() && !this.othersPresent()) {
      // Nobody to receive from: no quality to speak of (and none to call good).
      level = 'alone';
    } else if (!this.mediaUp() || (this.joined && prev && received === prev.received && this.othersPresent())) {
      // Nothing arrives although someone is there: never call that a good line.
      level = this.joined || this.phase === 'reconnecting' ? 'down' : 'unknown';
    } else if (lossPct !== null || r !== null) {
      const l = lossPct ?? 0;
      const t = r ?? 0;
      level = l > 8 || t > 600 ? 'poor' : l > 2 || t > 300 ? 'fair' : 'good';
    }
    this.emit({ kind: 'quality', lossPct, rttMs: r, level, videoFlowing, audioFlowing, frameHeight });
  }

  /** Whether anyone else is in the call now (connected). */
  othersPresent() {
    return [...this.participants.values()].some((p) => p.participant_id !== this.participantId && p.connected !== false);
  }

  /**
   * Leaves: `leave` unless the call is over anyway, then stops the camera and closes everything.
   * @param {boolean} [sayLeave] @param {Phase} [phase]
   */
  close(sayLeave = true, phase = 'out') {
    if (this.closed) return;
    if (sayLeave) this.send({ type: 'leave' });
    this.closed = true;
    this.phase = phase;
    this.step = null;
    this.awaySince = null;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    clearInterval(this.statsTimer);
    clearInterval(this.watchTimer);
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
