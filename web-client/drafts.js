// @ts-check
/**
 * The doctor's unsaved note text, kept in this browser (localStorage) so that nothing typed is lost to a reload,
 * a dropped link or a crash, and kept no longer than needed: the browser is often a station's shared computer.
 * A copy belongs to the user who typed it; signing in as someone else, a login session's time passing (12 hours)
 * or logging out removes it. Small on purpose: the app shell loads it before any screen.
 */

/** @typedef {import('./types.js').NoteContent} NoteContent */
/** @typedef {{note_id: string | null, version: number, content: NoteContent, at: string, user?: string}} LocalCopy */

const PREFIX = 'telehealth.note.';

/** A copy outlives neither its login session nor a change of user. */
const MAX_AGE_MS = 12 * 3600 * 1000;

/** The signed-in user, whose copies are written. @type {string | null} */
let owner = null;

/** The open note editors' "save what is on screen now; is it saved?" @type {Set<() => Promise<boolean>>} */
export const openEditors = new Set();

/** @param {string} consultationId */
export const storageKey = (consultationId) => `${PREFIX}${consultationId}`;

/** @returns {string | null} */
export const draftOwner = () => owner;

/** @param {string} key @returns {LocalCopy | null} */
export function readLocal(key) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

/** Signing in: drops every copy that is another user's or older than a login session. @param {string} userId */
export function setDraftOwner(userId) {
  owner = userId;
  for (const key of Object.keys(localStorage)) {
    if (!key.startsWith(PREFIX)) continue;
    const copy = readLocal(key);
    const age = copy ? Date.now() - Date.parse(copy.at) : Infinity;
    if (!copy || copy.user !== userId || !(age < MAX_AGE_MS)) localStorage.removeItem(key);
  }
}

/** Saves every open note to the server; whether all of them are saved. @returns {Promise<boolean>} */
export async function saveOpenNotes() {
  const results = await Promise.all([...openEditors].map((f) => f()));
  return results.every(Boolean);
}

/** Logging out: no note text, and no call state, stays in this browser. */
export function forgetDrafts() {
  owner = null;
  for (const key of Object.keys(localStorage)) if (key.startsWith(PREFIX)) localStorage.removeItem(key);
  sessionStorage.clear();
}
