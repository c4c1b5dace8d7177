//! Who may see and change what: every role and facility check lives here.
//!
//! | data | health worker (station S) | doctor (hospital H) | admin |
//! | --- | --- | --- | --- |
//! | patients of S | read, create, update | read, if in a consultation they take part in or queued to H | none |
//! | vitals | read, record (own station's patients) | read (patients they may see) | none |
//! | consultations | request for S's patients, read S's, cancel | read H's queue and their own; accept from H's queue; start, end | none (session logs come with the admin session API) |
//! | notes | read signed notes of S's consultations | write and sign on consultations assigned to them; read all versions of those; read signed notes of patients they may see | none (no note text) |
//! | users, facilities, audit log | read facilities | read facilities | all |
//!
//! A refused access to a patient's data is itself written to the audit log.

use telehealth_records::{
    ConsultationId, FacilityId, NoteId, NoteStatus, Outcome, PatientId, PatientScope, Role,
};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Refuses unless the user has one of `roles`.
pub fn require_role(user: &AuthUser, roles: &[Role]) -> ApiResult<()> {
    if roles.contains(&user.role()) {
        Ok(())
    } else {
        Err(ApiError::forbidden_role())
    }
}

/// The user's facility (every non-admin has one: the database requires it).
pub fn facility(user: &AuthUser) -> ApiResult<FacilityId> {
    user.user.facility_id.ok_or_else(ApiError::forbidden_role)
}

/// The patients this user may search and read.
pub fn patient_scope(user: &AuthUser) -> ApiResult<PatientScope> {
    match user.role() {
        Role::HealthWorker => Ok(PatientScope::Facility(facility(user)?)),
        Role::Doctor => Ok(PatientScope::Doctor {
            doctor: user.user.id,
            hospital: facility(user)?,
        }),
        Role::Admin => Err(ApiError::forbidden_role()),
    }
}

/// Writes a refused access to a patient's data to the audit log (whatever
/// refused it: the role, the facility, a signed note), and returns `answer`.
pub async fn refuse(
    state: &AppState,
    user: &AuthUser,
    action: &str,
    patient: Option<PatientId>,
    resource: Option<String>,
    answer: ApiError,
) -> ApiError {
    if let Err(e) = state
        .store
        .audit(
            &user.actor(),
            action,
            "patient",
            resource,
            patient,
            Outcome::Denied,
        )
        .await
    {
        tracing::error!(error = %e, "could not audit a refused access");
    }
    answer
}

async fn deny(
    state: &AppState,
    user: &AuthUser,
    action: &str,
    patient: Option<PatientId>,
    resource: String,
) -> ApiError {
    refuse(
        state,
        user,
        action,
        patient,
        Some(resource),
        ApiError::other_facility(),
    )
    .await
}

/// Refuses `user` this consultation (their role may not do `action` to it),
/// audited under its patient. A missing consultation is a 404, not a refusal.
pub async fn refuse_consultation(
    state: &AppState,
    user: &AuthUser,
    id: ConsultationId,
    action: &str,
) -> ApiError {
    match state.store.consultation(id).await {
        Ok(c) => {
            refuse(
                state,
                user,
                action,
                Some(c.patient_id),
                Some(id.to_string()),
                ApiError::forbidden_role(),
            )
            .await
        }
        Err(e) => e.into(),
    }
}

/// Refuses `user` a role-limited action on patients' data that names no
/// patient yet (registering one, listing consultations), audited.
pub async fn refuse_role(state: &AppState, user: &AuthUser, action: &str) -> ApiError {
    refuse(state, user, action, None, None, ApiError::forbidden_role()).await
}

/// The patients this user may search, or the refusal, audited.
pub async fn search_scope(state: &AppState, user: &AuthUser) -> ApiResult<PatientScope> {
    match patient_scope(user) {
        Ok(scope) => Ok(scope),
        Err(e) => Err(refuse(state, user, "patient.search", None, None, e).await),
    }
}

/// A store result for a write to a patient's data: a refused change (a signed
/// note) is audited like any other refusal.
pub async fn audited_write<T>(
    state: &AppState,
    user: &AuthUser,
    action: &str,
    patient: PatientId,
    resource: String,
    r: Result<T, telehealth_records::RecordsError>,
) -> ApiResult<T> {
    match r {
        Err(e @ telehealth_records::RecordsError::Immutable(_)) => {
            Err(refuse(state, user, action, Some(patient), Some(resource), e.into()).await)
        }
        r => Ok(r?),
    }
}

/// What a user wants to do with a patient's record.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PatientAccess {
    Read,
    /// Change demographics or record vitals: the patient's own station only.
    Write,
}

pub async fn patient(state: &AppState, user: &AuthUser, id: PatientId, want: PatientAccess) -> ApiResult<()> {
    // 404 first: a missing patient is a mistake, not an intrusion.
    state.store.patient_facility(id).await?;
    let scope = match patient_scope(user) {
        Ok(scope) if want == PatientAccess::Read || user.role() == Role::HealthWorker => scope,
        _ => {
            let refused = ApiError::forbidden_role();
            return Err(refuse(
                state,
                user,
                "patient.access",
                Some(id),
                Some(id.to_string()),
                refused,
            )
            .await);
        }
    };
    if state.store.patient_in_scope(id, &scope).await? {
        Ok(())
    } else {
        Err(deny(state, user, "patient.access", Some(id), id.to_string()).await)
    }
}

/// What a user wants to do with a consultation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ConsultationAccess {
    /// See it (and its signed notes).
    Read,
    /// Accept it from the queue (doctors of its hospital).
    Accept,
    /// Write its note, start and end it (the assigned doctor).
    Treat,
    /// Cancel it (its station's health workers).
    Request,
}

/// Whether `user` may see consultation `c` (the rule of
/// [`ConsultationAccess::Read`]), without auditing: lists (the FHIR export's
/// searches) leave out what this refuses instead of failing.
pub fn may_read_consultation(user: &AuthUser, c: &telehealth_records::Consultation) -> bool {
    let fac = user.user.facility_id;
    match user.role() {
        Role::HealthWorker => fac == Some(c.station_id),
        Role::Doctor => {
            c.doctor_id == Some(user.user.id) || (fac == Some(c.hospital_id) && c.doctor_id.is_none())
        }
        Role::Admin => false,
    }
}

pub async fn consultation(
    state: &AppState,
    user: &AuthUser,
    id: ConsultationId,
    want: ConsultationAccess,
) -> ApiResult<telehealth_records::Consultation> {
    let c = state.store.consultation(id).await?;
    let me = user.user.id;
    let fac = user.user.facility_id;
    let allowed = match (user.role(), want) {
        (Role::Admin, _)
        | (Role::HealthWorker, ConsultationAccess::Accept | ConsultationAccess::Treat)
        | (Role::Doctor, ConsultationAccess::Request) => {
            let refused = ApiError::forbidden_role();
            return Err(refuse(
                state,
                user,
                "consultation.access",
                Some(c.patient_id),
                Some(id.to_string()),
                refused,
            )
            .await);
        }
        (Role::HealthWorker, ConsultationAccess::Request) => fac == Some(c.station_id),
        (Role::HealthWorker | Role::Doctor, ConsultationAccess::Read) => may_read_consultation(user, &c),
        (Role::Doctor, ConsultationAccess::Accept) => fac == Some(c.hospital_id),
        (Role::Doctor, ConsultationAccess::Treat) => c.doctor_id == Some(me),
    };
    if allowed {
        Ok(c)
    } else {
        Err(deny(
            state,
            user,
            "consultation.access",
            Some(c.patient_id),
            id.to_string(),
        )
        .await)
    }
}

/// Whether the user may read this note; returns its consultation.
pub async fn note(
    state: &AppState,
    user: &AuthUser,
    id: NoteId,
    write: bool,
) -> ApiResult<telehealth_records::Consultation> {
    let (consultation_id, patient_id, author, status) = state.store.note_meta(id).await?;
    let want = if write {
        ConsultationAccess::Treat
    } else {
        ConsultationAccess::Read
    };
    let c = consultation(state, user, consultation_id, want).await?;
    let ok = match user.role() {
        // Health workers see the doctor's note once it is signed.
        Role::HealthWorker => status == NoteStatus::Signed,
        Role::Doctor if write => author == user.user.id,
        Role::Doctor => c.doctor_id == Some(user.user.id) || status == NoteStatus::Signed,
        Role::Admin => false,
    };
    if ok {
        Ok(c)
    } else {
        Err(deny(state, user, "note.access", Some(patient_id), id.to_string()).await)
    }
}
