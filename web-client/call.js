// @ts-check
/**
 * The call (media over the signaling socket, docs/signaling.md "A call, step by step") — NOT BUILT YET.
 *
 * This module is a placeholder kept apart from the screens so the call can be written without touching them:
 * it will open `/api/ws?consultation_id=…`, send `join` with an offer, answer server offers (the browser is the
 * polite peer), trickle ICE, resume with an ICE restart after a drop, and expose mute / camera / audio-only.
 * No screen imports it yet, and the UI shows no call button until it exists.
 */

/** Server → client call messages, mirroring the Rust enum (see docs/signaling.md). */
export const CALL_MESSAGES = /** @type {const} */ ([
  'joined', 'offer', 'answer', 'ice', 'participant_joined', 'participant_reconnected', 'participant_reconnecting',
  'participant_left', 'left', 'participant_media', 'connection_state', 'consultation_state', 'chat', 'ended', 'error',
]);

/**
 * @param {string} _consultationId
 * @returns {never}
 */
export function joinCall(_consultationId) {
  throw new Error('call: not implemented yet');
}
