// @ts-check
/**
 * The live-updates WebSocket (`/api/ws`, docs/signaling.md): one per page, reconnecting with backoff.
 * Screens subscribe to `consultation_changed`; after a reconnect or a server `resync` they get `resync` and
 * refetch what they show (pushes carry ids and states only, never names).
 */
import { api } from './api.js';

/**
 * Server → client messages this module understands (mirrors the Rust enum in signaling's ws module).
 * @typedef {{type: 'hello', protocol: number, user_id: string, role: string}
 *   | {type: 'pong'}
 *   | {type: 'resync'}
 *   | {type: 'error', code: string, message: string, message_en: string}
 *   | ConsultationChanged} ServerMessage
 */
/**
 * @typedef {{type: 'consultation_changed', consultation_id: string, station_id: string, hospital_id: string,
 *   doctor_id: string | null, kind: 'urgent' | 'scheduled', state: string, scheduled_start: string | null,
 *   updated_at: string}} ConsultationChanged
 */
/** @typedef {(m: ConsultationChanged) => void} ChangeListener */
/** @typedef {(online: boolean) => void} StatusListener */

const PING_MS = 25_000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15_000];

export class LiveSocket {
  constructor() {
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {Set<ChangeListener>} */
    this.changeListeners = new Set();
    /** @type {Set<() => void>} */
    this.resyncListeners = new Set();
    /** @type {Set<StatusListener>} */
    this.statusListeners = new Set();
    this.attempt = 0;
    this.online = false;
    this.stopped = true;
    this.everOpened = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.pingTimer = undefined;
    this.wake = () => {
      if (!this.stopped && !this.ws) this.connect();
    };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('online', this.wake);
    this.connect();
  }

  /** Closes for good (logout). */
  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.wake);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    this.setOnline(false);
  }

  /** @param {ChangeListener} fn @returns {() => void} unsubscribe */
  onChange(fn) {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  /** @param {() => void} fn @returns {() => void} unsubscribe */
  onResync(fn) {
    this.resyncListeners.add(fn);
    return () => this.resyncListeners.delete(fn);
  }

  /** @param {StatusListener} fn @returns {() => void} unsubscribe */
  onStatus(fn) {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  /** @param {boolean} online */
  setOnline(online) {
    if (online === this.online) return;
    this.online = online;
    for (const fn of this.statusListeners) fn(online);
  }

  connect() {
    clearTimeout(this.retryTimer);
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/ws`);
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.attempt = 0;
      this.setOnline(true);
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"type":"ping"}'), PING_MS);
      // Anything pushed while we were away was missed: screens refetch.
      if (this.everOpened) for (const fn of this.resyncListeners) fn();
      this.everOpened = true;
    });
    ws.addEventListener('message', (e) => this.handle(e.data));
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      this.setOnline(false);
      if (!this.stopped) this.scheduleRetry();
    });
  }

  scheduleRetry() {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt++;
    this.retryTimer = setTimeout(async () => {
      if (this.stopped) return;
      // The upgrade is refused with 401 once the access token expires: a REST call refreshes it first.
      await api('/api/auth/me');
      if (!this.stopped && !this.ws) this.connect();
    }, base + Math.random() * 500);
  }

  /** @param {unknown} raw */
  handle(raw) {
    if (typeof raw !== 'string') return;
    /** @type {ServerMessage} */
    let m;
    try {
      m = JSON.parse(raw);
    } catch {
      return;
    }
    if (m.type === 'consultation_changed') for (const fn of this.changeListeners) fn(m);
    else if (m.type === 'resync') for (const fn of this.resyncListeners) fn();
  }
}
