// @ts-check
/**
 * Small read caches for names shown in lists (facilities, doctors, patients), so a live list that refetches
 * every few seconds does not re-read each patient record (every read is audited on the server).
 */
import { api } from './api.js';

/** @typedef {import('./types.js').Facility} Facility */
/** @typedef {import('./types.js').Patient} Patient */
/** @typedef {import('./types.js').DoctorSummary} DoctorSummary */

/** @type {Promise<Facility[]> | null} */
let facilitiesP = null;
/** @type {Map<string, Promise<Patient | null>>} */
const patients = new Map();
/** @type {Map<string, Promise<DoctorSummary[]>>} */
const doctors = new Map();

/** Every facility (readable by all roles). @returns {Promise<Facility[]>} */
export function facilities() {
  facilitiesP ??= api('/api/facilities').then((r) => {
    if (r.ok) return /** @type {Facility[]} */ (r.data);
    facilitiesP = null;
    return [];
  });
  return facilitiesP;
}

/** Forget cached facilities (after an admin change). */
export function forgetFacilities() {
  facilitiesP = null;
}

/** @param {string | null | undefined} id @returns {Promise<Facility | undefined>} */
export async function facility(id) {
  return (await facilities()).find((f) => f.id === id);
}

/** A patient, cached for the page's life. @param {string} id @returns {Promise<Patient | null>} */
export function patient(id) {
  let p = patients.get(id);
  if (!p) {
    p = api(`/api/patients/${id}`).then((r) => {
      if (r.ok) return /** @type {Patient} */ (r.data);
      patients.delete(id);
      return null;
    });
    patients.set(id, p);
  }
  return p;
}

/** @param {Patient} p */
export function rememberPatient(p) {
  patients.set(p.id, Promise.resolve(p));
}

/** The doctors of a hospital. @param {string} hospitalId @returns {Promise<DoctorSummary[]>} */
export function hospitalDoctors(hospitalId) {
  let d = doctors.get(hospitalId);
  if (!d) {
    d = api(`/api/facilities/${hospitalId}/doctors`).then((r) => {
      if (r.ok) return /** @type {DoctorSummary[]} */ (r.data);
      doctors.delete(hospitalId);
      return [];
    });
    doctors.set(hospitalId, d);
  }
  return d;
}

/** A doctor's display name, or null. @param {string} hospitalId @param {string | null} doctorId */
export async function doctorName(hospitalId, doctorId) {
  if (!doctorId) return null;
  return (await hospitalDoctors(hospitalId)).find((d) => d.id === doctorId)?.display_name ?? null;
}
