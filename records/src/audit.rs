//! The audit trail: who did what to which patient's data, when, from where.
//!
//! Entries are written inside the same transaction as the read or write they
//! describe, so there is never a change without its entry. The table is
//! append-only (database triggers refuse UPDATE and DELETE).

use serde::Serialize;
use sqlx::{Any, FromRow, Transaction};

use crate::error::Result;
use crate::types::{PatientId, Role, Timestamp, UserId};
use crate::Store;

/// The person (or the system) acting, and from which address.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: Option<UserId>,
    pub role: Option<Role>,
    pub client_addr: Option<String>,
}

impl Actor {
    pub fn user(user_id: UserId, role: Role, client_addr: Option<String>) -> Self {
        Self {
            user_id: Some(user_id),
            role: Some(role),
            client_addr,
        }
    }

    /// The server itself (startup, seeding, restart recovery).
    pub fn system() -> Self {
        Self {
            user_id: None,
            role: None,
            client_addr: None,
        }
    }
}

/// Whether the audited action was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
        }
    }
}

/// One line of the audit trail.
#[derive(Clone, Debug, Serialize, FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor_id: Option<UserId>,
    pub actor_role: Option<Role>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<PatientId>,
    pub client_addr: Option<String>,
    pub outcome: String,
}

/// What to look for in the audit trail.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub patient_id: Option<PatientId>,
    pub actor_id: Option<UserId>,
    pub action: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Entries with an id below this (for paging back in time).
    pub before_id: Option<i64>,
    pub limit: i64,
}

pub(crate) async fn record(
    tx: &mut Transaction<'static, Any>,
    actor: &Actor,
    action: &str,
    resource_type: &str,
    resource_id: Option<String>,
    patient_id: Option<PatientId>,
    outcome: Outcome,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor_role, action, resource_type, resource_id, patient_id, client_addr, outcome)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Timestamp::now())
    .bind(actor.user_id)
    .bind(actor.role)
    .bind(action)
    .bind(resource_type)
    .bind(resource_id)
    .bind(patient_id)
    .bind(actor.client_addr.clone())
    .bind(outcome.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Writes one audit entry on its own (e.g. a refused access, a login).
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        resource_type: &str,
        resource_id: Option<String>,
        patient_id: Option<PatientId>,
        outcome: Outcome,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        record(
            &mut w.tx,
            actor,
            action,
            resource_type,
            resource_id,
            patient_id,
            outcome,
        )
        .await?;
        w.commit().await
    }

    /// Reads the audit trail, newest first.
    pub async fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query_as::<_, AuditEntry>(
            "SELECT id, at, actor_id, actor_role, action, resource_type, resource_id, patient_id, client_addr, outcome
             FROM audit_log
             WHERE ($1 IS NULL OR patient_id = $1)
               AND ($2 IS NULL OR actor_id = $2)
               AND ($3 IS NULL OR action = $3)
               AND ($4 IS NULL OR at >= $4)
               AND ($5 IS NULL OR at < $5)
               AND ($6 IS NULL OR id < $6)
             ORDER BY id DESC
             LIMIT $7",
        )
        .bind(q.patient_id)
        .bind(q.actor_id)
        .bind(q.action.clone())
        .bind(q.from)
        .bind(q.to)
        .bind(q.before_id)
        .bind(q.limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}
