//! Consultations: requested (urgent) or scheduled, then in progress, then
//! completed — or cancelled, no-show, interrupted. Every transition is
//! checked here and written to the session log.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::error::{Contested, Result};
use crate::events::append_event;
use crate::types::{
    ConsultationId, ConsultationKind, ConsultationState, FacilityId, PatientId, Pii, Timestamp, UserId,
};
use crate::validate::{self, FieldError};
use crate::{RecordsError, Store};

#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
pub struct Consultation {
    pub id: ConsultationId,
    pub patient_id: PatientId,
    pub station_id: FacilityId,
    pub hospital_id: FacilityId,
    pub doctor_id: Option<UserId>,
    pub requested_by: UserId,
    pub kind: ConsultationKind,
    pub state: ConsultationState,
    /// Why the patient needs a doctor (personal data).
    pub reason: Pii<String>,
    pub scheduled_start: Option<Timestamp>,
    pub scheduled_end: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A request for a consultation, made by a health worker.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsultationInput {
    pub patient_id: PatientId,
    pub kind: ConsultationKind,
    pub reason: Pii<String>,
    /// Defaults to the station's referral hospital.
    #[serde(default)]
    pub hospital_id: Option<FacilityId>,
    /// For a scheduled consultation: the slot's start (UTC).
    #[serde(default)]
    pub scheduled_start: Option<Timestamp>,
    /// For a scheduled consultation: a named doctor, or any free doctor.
    #[serde(default)]
    pub doctor_id: Option<UserId>,
    /// Vital signs taken for this consultation, stored with it.
    #[serde(default)]
    pub vitals: Option<crate::vitals::Measurements>,
}

/// Which consultations a caller may list.
#[derive(Clone, Copy, Debug)]
pub enum ConsultationScope {
    Station(FacilityId),
    /// A doctor's own consultations and the hospital's open queue.
    Doctor {
        doctor: UserId,
        hospital: FacilityId,
    },
    Patient(PatientId),
}

pub(crate) const COLUMNS: &str = "id, patient_id, station_id, hospital_id, doctor_id, requested_by, kind, state, reason, scheduled_start, scheduled_end, started_at, ended_at, created_at, updated_at";

impl Store {
    /// Creates a consultation for a patient of `station`, addressed to
    /// `hospital` (already checked by the caller to be one the station may use).
    pub async fn create_consultation(
        &self,
        actor: &Actor,
        station: FacilityId,
        hospital: FacilityId,
        input: &ConsultationInput,
    ) -> Result<Consultation> {
        let reason = validate::text("reason", &input.reason.0, 2000).map_err(RecordsError::field)?;
        if let Some(m) = &input.vitals {
            crate::vitals::check(m)?;
        }
        if input.kind == ConsultationKind::Scheduled {
            // A booking checks its slot before it writes: consent first, so
            // that it is what the worker hears about before any slot
            // problem (checked again inside the write that books).
            let mut conn = self.pool.acquire().await?;
            crate::consents::require_granted(&mut conn, input.patient_id).await?;
            drop(conn);
            return self.book(actor, station, hospital, input, reason).await;
        }
        if input.scheduled_start.is_some() || input.doctor_id.is_some() {
            return Err(RecordsError::field(FieldError::new(
                "scheduled_start",
                "not_for_urgent",
                "Ca khẩn cấp vào hàng chờ của bệnh viện; không chọn giờ hay bác sĩ.",
                "An urgent request joins the hospital's queue; it takes no time or doctor.",
            )));
        }
        let state = ConsultationState::Requested;
        let id = ConsultationId::new();
        let now = Timestamp::now();
        let requested_by = actor.user_id.ok_or(RecordsError::NotFound("user"))?;
        let mut w = self.begin_write().await?;
        crate::consents::require_granted(&mut w, input.patient_id).await?;
        let c = sqlx::query_as::<_, Consultation>(&format!(
            "INSERT INTO consultations (id, patient_id, station_id, hospital_id, doctor_id, requested_by, kind, state, reason,
                 scheduled_start, scheduled_end, created_at, updated_at)
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(input.patient_id)
        .bind(station)
        .bind(hospital)
        .bind(requested_by)
        .bind(input.kind)
        .bind(state)
        .bind(reason)
        .bind(None::<Timestamp>)
        .bind(None::<Timestamp>)
        .bind(now)
        .fetch_one(&mut **w)
        .await?;
        if let Some(m) = &input.vitals {
            crate::vitals::insert_vitals(&mut w, actor, input.patient_id, Some(id), m).await?;
        }
        append_event(
            &mut w,
            id,
            actor.user_id,
            crate::SessionEntry::StateChanged {
                from: None,
                to: state,
            },
        )
        .await?;
        record(
            &mut w,
            actor,
            "consultation.create",
            "consultation",
            Some(id.to_string()),
            Some(input.patient_id),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(c)
    }

    /// A consultation's record, without an audit entry: for access checks
    /// and for code that does not show it to a person.
    pub async fn consultation(&self, id: ConsultationId) -> Result<Consultation> {
        sqlx::query_as::<_, Consultation>(&format!("SELECT {COLUMNS} FROM consultations WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RecordsError::NotFound("consultation"))
    }

    /// How many consultations are in each state (every state listed, zero
    /// included), for the metrics: counts only, nothing about anyone.
    pub async fn consultation_counts(&self) -> Result<Vec<(ConsultationState, i64)>> {
        let rows: Vec<(ConsultationState, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM consultations GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        Ok(ConsultationState::ALL
            .iter()
            .map(|s| (*s, rows.iter().find(|(r, _)| r == s).map_or(0, |(_, n)| *n)))
            .collect())
    }

    /// Reads a consultation for display, with an audit entry.
    pub async fn read_consultation(&self, actor: &Actor, id: ConsultationId) -> Result<Consultation> {
        let c = self.consultation(id).await?;
        self.audit(
            actor,
            "consultation.read",
            "consultation",
            Some(id.to_string()),
            Some(c.patient_id),
            Outcome::Ok,
        )
        .await?;
        Ok(c)
    }

    /// Lists consultations in a scope, newest first, optionally in one state.
    pub async fn consultations(
        &self,
        actor: &Actor,
        scope: &ConsultationScope,
        state: Option<ConsultationState>,
        limit: i64,
    ) -> Result<Vec<Consultation>> {
        self.consultations_kept(actor, scope, state, limit, |_| true)
            .await
    }

    /// [`Self::consultations`], keeping only those `keep` lets through (the
    /// caller's own rule): only what is kept is audited as read.
    pub async fn consultations_kept(
        &self,
        actor: &Actor,
        scope: &ConsultationScope,
        state: Option<ConsultationState>,
        limit: i64,
        keep: impl Fn(&Consultation) -> bool,
    ) -> Result<Vec<Consultation>> {
        let (cond, a, b) = match scope {
            ConsultationScope::Station(f) => ("station_id = $1 AND $2 IS NULL", f.to_string(), None),
            ConsultationScope::Doctor { doctor, hospital } => (
                "(doctor_id = $1 OR (hospital_id = $2 AND state = 'requested' AND doctor_id IS NULL))",
                doctor.to_string(),
                Some(hospital.to_string()),
            ),
            ConsultationScope::Patient(p) => ("patient_id = $1 AND $2 IS NULL", p.to_string(), None),
        };
        let rows = sqlx::query_as::<_, Consultation>(&format!(
            "SELECT {COLUMNS} FROM consultations WHERE {cond} AND ($3 IS NULL OR state = $3)
             ORDER BY created_at DESC LIMIT $4"
        ))
        .bind(a)
        .bind(b)
        .bind(state)
        .bind(limit.clamp(1, 500))
        .fetch_all(&self.pool)
        .await?;
        let rows: Vec<Consultation> = rows.into_iter().filter(|c| keep(c)).collect();
        if rows.is_empty() {
            // Nothing read, nothing to write: no turn at the writer.
            return Ok(rows);
        }
        let mut w = self.begin_write().await?;
        for c in &rows {
            record(
                &mut w,
                actor,
                "consultation.list",
                "consultation",
                Some(c.id.to_string()),
                Some(c.patient_id),
                Outcome::Ok,
            )
            .await?;
        }
        w.commit().await?;
        Ok(rows)
    }

    /// A doctor takes an urgent request from the hospital queue. Exactly one
    /// of several doctors accepting at once wins; the others get
    /// [`RecordsError::AlreadyTaken`].
    pub async fn accept_consultation(
        &self,
        actor: &Actor,
        id: ConsultationId,
        doctor: UserId,
    ) -> Result<Consultation> {
        let mut w = self.begin_write().await?;
        let taken = sqlx::query_as::<_, Consultation>(&format!(
            "UPDATE consultations SET doctor_id = $2, updated_at = $3
             WHERE id = $1 AND state = 'requested' AND doctor_id IS NULL RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(doctor)
        .bind(Timestamp::now())
        .fetch_optional(&mut **w)
        .await?;
        let Some(c) = taken else {
            drop(w);
            let c = self.consultation(id).await?;
            return Err(
                if c.state == ConsultationState::Requested || c.state == ConsultationState::Scheduled {
                    RecordsError::AlreadyTaken(Contested::Consultation)
                } else {
                    RecordsError::IllegalTransition {
                        from: c.state,
                        to: ConsultationState::InProgress,
                    }
                },
            );
        };
        append_event(&mut w, id, Some(doctor), crate::SessionEntry::Accepted {}).await?;
        record(
            &mut w,
            actor,
            "consultation.accept",
            "consultation",
            Some(id.to_string()),
            Some(c.patient_id),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(c)
    }

    /// Moves a consultation to `to`, if the lifecycle allows it from the
    /// state it is in now (checked atomically against concurrent changes).
    pub async fn transition_consultation(
        &self,
        actor: &Actor,
        id: ConsultationId,
        to: ConsultationState,
    ) -> Result<Consultation> {
        let mut w = self.begin_write().await?;
        let c = transition_in(&mut w, actor, id, to).await?;
        w.commit().await?;
        Ok(c)
    }
}

/// Moves a consultation to `to` inside a write transaction, if the
/// lifecycle allows it from the state it is in now (read in the same
/// transaction), with its session event and audit entry.
pub(crate) async fn transition_in(
    tx: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    actor: &Actor,
    id: ConsultationId,
    to: ConsultationState,
) -> Result<Consultation> {
    let current =
        sqlx::query_as::<_, Consultation>(&format!("SELECT {COLUMNS} FROM consultations WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(RecordsError::NotFound("consultation"))?;
    if !current.state.can_become(to) {
        return Err(RecordsError::IllegalTransition {
            from: current.state,
            to,
        });
    }
    let now = Timestamp::now();
    let started = if to == ConsultationState::InProgress && current.started_at.is_none() {
        Some(now)
    } else {
        current.started_at
    };
    let ended = if to.is_final() {
        Some(now)
    } else {
        current.ended_at
    };
    let c = sqlx::query_as::<_, Consultation>(&format!(
        "UPDATE consultations SET state = $3, started_at = $4, ended_at = $5, updated_at = $6
             WHERE id = $1 AND state = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(current.state)
    .bind(to)
    .bind(started)
    .bind(ended)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(RecordsError::AlreadyTaken(Contested::Consultation))?;
    append_event(
        tx,
        id,
        actor.user_id,
        crate::SessionEntry::StateChanged {
            from: Some(current.state),
            to,
        },
    )
    .await?;
    record(
        tx,
        actor,
        "consultation.transition",
        "consultation",
        Some(id.to_string()),
        Some(c.patient_id),
        Outcome::Ok,
    )
    .await?;
    Ok(c)
}
