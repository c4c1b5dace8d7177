//! The audit trail: who did what to which patient's data, when, from where.
//!
//! Entries are written inside the same transaction as the read or write they
//! describe, so there is never a change without its entry. The table is
//! append-only (database triggers refuse UPDATE and DELETE), and chained:
//! each entry holds the hash of the one before and its own hash over both,
//! so whoever holds the database file or a superuser login cannot edit,
//! remove or insert an entry without breaking the chain from there on
//! ([`Store::verify_audit_chain`]). Rewriting the whole chain from the broken
//! entry on is caught by an anchor kept outside the database: a head the
//! server signed earlier (logged every hour, downloadable by admins).

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{Any, FromRow};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "snake_case")]
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
#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
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
    /// What [`Outcome::as_str`] wrote.
    #[schemars(with = "Outcome")]
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
    tx: &mut PoolConnection<Any>,
    actor: &Actor,
    action: &str,
    resource_type: &str,
    resource_id: Option<String>,
    patient_id: Option<PatientId>,
    outcome: Outcome,
) -> Result<()> {
    // Taking the head's row first makes audit writes take turns (PostgreSQL
    // holds the row lock to commit; SQLite has one writer anyway), so two
    // entries never chain to the same predecessor.
    let (prev,): (String,) =
        sqlx::query_as("UPDATE audit_chain SET entries = entries + 1 WHERE id = 1 RETURNING hash")
            .fetch_one(&mut **tx)
            .await?;
    let entry = ChainedFields {
        at: Timestamp::now(),
        actor_id: actor.user_id,
        actor_role: actor.role,
        action: action.to_owned(),
        resource_type: resource_type.to_owned(),
        resource_id,
        patient_id,
        client_addr: actor.client_addr.clone(),
        outcome: outcome.as_str().to_owned(),
    };
    let hash = entry.hash(&prev);
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor_role, action, resource_type, resource_id, patient_id, client_addr, outcome, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(entry.at)
    .bind(entry.actor_id)
    .bind(entry.actor_role)
    .bind(&entry.action)
    .bind(&entry.resource_type)
    .bind(&entry.resource_id)
    .bind(entry.patient_id)
    .bind(&entry.client_addr)
    .bind(&entry.outcome)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_chain SET hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What an entry's hash covers: every field but its row id (the order is
/// the chain's own), and the hash of the entry before it.
#[derive(Debug, FromRow)]
struct ChainedFields {
    at: Timestamp,
    actor_id: Option<UserId>,
    actor_role: Option<Role>,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    patient_id: Option<PatientId>,
    client_addr: Option<String>,
    outcome: String,
}

impl ChainedFields {
    /// SHA-256 over the previous hash and the fields as one JSON array (so
    /// that no field's text can run into the next one's), in hex.
    fn hash(&self, prev: &str) -> String {
        use sha2::{Digest, Sha256};
        let fields = serde_json::json!([
            prev,
            self.at.to_string(),
            self.actor_id.map(|u| u.to_string()),
            self.actor_role.map(|r| r.as_str()),
            self.action,
            self.resource_type,
            self.resource_id,
            self.patient_id.map(|p| p.to_string()),
            self.client_addr,
            self.outcome,
        ]);
        hex::encode(Sha256::digest(fields.to_string().as_bytes()))
    }
}

/// The first hash of a chain (what the first chained entry follows).
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What checking the audit chain found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, JsonSchema)]
pub struct ChainReport {
    /// Entries checked (chained ones).
    pub checked: i64,
    /// Entries written before the chain existed (not covered).
    pub unchained: i64,
    /// The newest chained entry, as the chain says: `(id, hash)`.
    pub head_id: Option<i64>,
    pub head_hash: String,
    /// The first entry where the chain does not hold, and why; `None` when whole.
    pub broken_at: Option<i64>,
    pub problem: Option<String>,
}

#[derive(FromRow)]
struct ChainRow {
    id: i64,
    prev_hash: Option<String>,
    hash: Option<String>,
    #[sqlx(flatten)]
    fields: ChainedFields,
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
            &mut w,
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

    /// How many entries of `action` by `actor` since `since`.
    pub async fn count_audit(&self, actor: UserId, action: &str, since: Timestamp) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE actor_id = $1 AND action = $2 AND at >= $3",
        )
        .bind(actor)
        .bind(action)
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The newest chained entry: `(id, hash)`.
    pub async fn audit_chain_head(&self) -> Result<Option<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT id, hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Walks the whole audit trail and checks its chain: each entry follows
    /// the one before, its hash is what its fields give, and the newest is the
    /// head the database records (entries removed from the end show there).
    /// With `anchor` (an id and hash kept outside the database), also that
    /// this entry is still there with that hash.
    pub async fn verify_audit_chain(&self, anchor: Option<(i64, &str)>) -> Result<ChainReport> {
        let (head, entries): (String, i64) =
            sqlx::query_as("SELECT hash, entries FROM audit_chain WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        let mut report = ChainReport {
            checked: 0,
            unchained: 0,
            head_id: None,
            head_hash: GENESIS.to_owned(),
            broken_at: None,
            problem: None,
        };
        let mut anchor_seen = false;
        let mut after = 0i64;
        'pages: loop {
            let rows = sqlx::query_as::<_, ChainRow>(
                "SELECT id, prev_hash, hash, at, actor_id, actor_role, action, resource_type, resource_id, patient_id, client_addr, outcome
                 FROM audit_log WHERE id > $1 ORDER BY id LIMIT 1000",
            )
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            for r in rows {
                let mut broken = |why: String| {
                    report.broken_at = Some(r.id);
                    report.problem = Some(why);
                };
                match (&r.prev_hash, &r.hash) {
                    (None, None) if report.checked == 0 => {
                        report.unchained += 1;
                        continue;
                    }
                    (Some(prev), Some(hash)) => {
                        if *prev != report.head_hash {
                            broken(format!("entry {} does not follow the entry before it", r.id));
                        } else if r.fields.hash(prev) != *hash {
                            broken(format!("entry {} was changed after it was written", r.id));
                        }
                    }
                    _ => broken(format!("entry {} has no place in the chain", r.id)),
                }
                if report.broken_at.is_some() {
                    break 'pages;
                }
                if let Some((id, h)) = anchor.filter(|(id, _)| *id == r.id) {
                    anchor_seen = true;
                    if r.hash.as_deref() != Some(h) {
                        report.broken_at = Some(id);
                        report.problem = Some(format!(
                            "entry {id} is not the one anchored: the chain was rewritten"
                        ));
                        break 'pages;
                    }
                }
                report.checked += 1;
                report.head_id = Some(r.id);
                report.head_hash = r.hash.unwrap_or_default();
            }
        }
        if report.broken_at.is_none() {
            if report.head_hash != head || report.checked != entries {
                report.problem = Some(format!(
                    "the chain ends at entry {} but the database recorded {entries} entries ending in another one: entries were removed from the end",
                    report.head_id.unwrap_or(0)
                ));
                report.broken_at = report.head_id.map(|i| i + 1).or(Some(1));
            } else if let Some((id, _)) = anchor.filter(|_| !anchor_seen) {
                report.broken_at = Some(id);
                report.problem = Some(format!("the anchored entry {id} is missing"));
            }
        }
        Ok(report)
    }
}
