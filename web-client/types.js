// @ts-check
/** Shapes of the REST API's JSON (see /api/openapi.json). Types only: nothing here runs. */

/** @typedef {'health_worker' | 'doctor' | 'admin'} Role */
/**
 * @typedef {{id: string, username: string, display_name: string, role: Role, facility_id: string | null,
 *   active: number, created_at: string, updated_at: string}} User
 */
/**
 * @typedef {{id: string, code: string, name: string, kind: 'commune_station' | 'district_hospital' | 'provincial_hospital',
 *   referral_hospital_id: string | null, province: string}} Facility
 */
/**
 * @typedef {{id: string, facility_id: string, full_name: string, date_of_birth: string, sex: 'male' | 'female' | 'other',
 *   phone: string | null, address: string | null, cccd: string | null, bhyt: string | null, version: number}} Patient
 */
/**
 * @typedef {{temperature_c: number | null, pulse_bpm: number | null, systolic_mmhg: number | null,
 *   diastolic_mmhg: number | null, respiratory_rate: number | null, spo2_pct: number | null, weight_kg: number | null}} Measurements
 */
/** @typedef {Measurements & {id: string, patient_id: string, recorded_at: string, recorded_by: string}} Vitals */
/** @typedef {'open' | 'not_accepted' | 'not_open_yet' | 'closed'} CallState */
/** @typedef {'accept' | 'join' | 'start' | 'complete' | 'no_show' | 'cancel' | 'reschedule'} Action */
/**
 * @typedef {{id: string, patient_id: string, station_id: string, hospital_id: string, doctor_id: string | null,
 *   requested_by: string, kind: 'urgent' | 'scheduled', state: string, reason: string, scheduled_start: string | null,
 *   scheduled_end: string | null, started_at: string | null, ended_at: string | null, created_at: string,
 *   updated_at: string, participant: boolean, joinable: boolean, call: CallState, closed: boolean,
 *   actions: Action[]}} Consultation
 * What the server's lifecycle says a consultation means for this user now (records/src/lifecycle.rs): the pages
 * read it rather than work it out from the state.
 */
/** @typedef {'treat_at_station' | 'refer' | 'transfer' | 'follow_up'} Disposition */
/**
 * @typedef {{subjective: string, objective: string, assessment: string, plan: string, icd10_codes: string[],
 *   disposition: Disposition | null}} NoteContent
 */
/**
 * @typedef {NoteContent & {id: string, consultation_id: string, patient_id: string, author_id: string,
 *   status: 'draft' | 'signed', version: number, amends_note_id: string | null, created_at: string,
 *   updated_at: string, signed_at: string | null}} Note
 */
/**
 * @typedef {{id: string, patient_id: string, decision: 'granted' | 'withdrawn', given_by: 'patient' | 'guardian',
 *   guardian_name: string | null, guardian_relation: string | null, text_version: string, recorded_by: string,
 *   recorded_by_name: string, facility_id: string, recorded_at: string}} Consent
 */
/** @typedef {{version: string, title: string, text: string, title_en: string, text_en: string}} ConsentText */
/** @typedef {{start: string, end: string, start_local: string, doctor_ids: string[]}} Slot */
/** @typedef {{id: string, display_name: string}} DoctorSummary */
/** @typedef {{weekday: number, start_minute: number, end_minute: number}} WorkingHours */
/** @typedef {{id: string, doctor_id: string, starts_at: string, ends_at: string, reason: string}} Leave */
/**
 * @typedef {{duration_secs: number | null, samples: number, avg_loss_pct: number | null, worst_loss_pct: number | null,
 *   avg_rtt_ms: number | null, avg_jitter_ms: number | null, audio_only_secs: number, reconnections: number,
 *   disconnections: number, media_interruptions: number}} Quality
 */
/**
 * @typedef {{consultation_id: string, station_id: string, hospital_id: string, doctor_id: string | null,
 *   kind: string, state: string, created_at: string, started_at: string | null, ended_at: string | null,
 *   quality: Quality}} SessionSummary
 */
/** @typedef {{id: number, at: string, kind: string, user_id: string | null, data: Record<string, any>}} SessionEvent */
/**
 * One commune station's calls over one day or week (`GET /api/stations/connectivity`).
 * @typedef {{station_id: string, station_code: string, station_name: string, bucket_start: string, calls: number,
 *   call_minutes: number, samples: number, avg_loss_pct: number | null, p95_loss_pct: number | null,
 *   worst_loss_pct: number | null, avg_rtt_ms: number | null, avg_jitter_ms: number | null,
 *   avg_bitrate_in_kbps: number | null, avg_bitrate_out_kbps: number | null, reconnections: number,
 *   audio_only_secs: number, join_attempts: number, failed_joins: number, ice_failures: number,
 *   hospital_avg_loss_pct: number | null, hospital_avg_rtt_ms: number | null}} StationConnectivity
 */
/** @typedef {SessionSummary & {events: SessionEvent[], next_after_id: number | null}} SessionDetail */
/**
 * @typedef {{id: number, at: string, actor_id: string | null, actor_role: string | null, action: string,
 *   resource_type: string, resource_id: string | null, patient_id: string | null, client_addr: string | null,
 *   outcome: string}} AuditEntry
 */
/**
 * What a screen gets: the signed-in user, the live socket, its own container, and a way to register cleanup
 * (timers, socket listeners) run when the user leaves the screen.
 * @typedef {{user: User, socket: import('./socket.js').LiveSocket, view: HTMLElement,
 *   cleanup: (fn: () => void) => void, go: (hash: string) => void, rerender: () => void}} Ctx
 */

export {};
