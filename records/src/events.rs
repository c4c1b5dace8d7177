//! The session log: everything that happened in a consultation, in order.

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{Any, FromRow};

use crate::error::Result;
use crate::session_entry::SessionEntry;
use crate::types::{ConsultationId, EventKind, Timestamp, UserId};
use crate::Store;

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SessionEvent {
    pub id: i64,
    pub consultation_id: ConsultationId,
    pub at: Timestamp,
    /// An [`EventKind`]'s name (kept as text: a log written by an older
    /// version may name a kind this one no longer writes).
    pub kind: String,
    pub user_id: Option<UserId>,
    /// The entry's fields (a [`crate::SessionEntry`] written as an object).
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub data: serde_json::Value,
}

#[derive(FromRow)]
struct Row {
    id: i64,
    consultation_id: ConsultationId,
    at: Timestamp,
    kind: String,
    user_id: Option<UserId>,
    data: String,
}

pub(crate) async fn append_event(
    tx: &mut PoolConnection<Any>,
    consultation: ConsultationId,
    user: Option<UserId>,
    entry: SessionEntry,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO session_events (consultation_id, at, kind, user_id, data) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(consultation)
    .bind(Timestamp::now())
    .bind(entry.kind())
    .bind(user)
    .bind(entry.data().to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Appends one event to a consultation's session log.
    pub async fn append_session_event(
        &self,
        consultation: ConsultationId,
        user: Option<UserId>,
        entry: SessionEntry,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        append_event(&mut w, consultation, user, entry).await?;
        w.commit().await
    }

    /// A consultation's session log, oldest first.
    pub async fn session_events(&self, consultation: ConsultationId) -> Result<Vec<SessionEvent>> {
        let rows = sqlx::query_as::<_, Row>(
            "SELECT id, consultation_id, at, kind, user_id, data FROM session_events WHERE consultation_id = $1 ORDER BY id",
        )
        .bind(consultation)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Row::event).collect()
    }

    /// The events of these kinds of several consultations, each oldest
    /// first, in one query (a list of sessions summarises fifty at a time;
    /// a query each cost a pool round trip each).
    pub(crate) async fn session_events_of(
        &self,
        consultations: &[ConsultationId],
        kinds: &[EventKind],
    ) -> Result<std::collections::HashMap<ConsultationId, Vec<SessionEvent>>> {
        let mut out: std::collections::HashMap<ConsultationId, Vec<SessionEvent>> = Default::default();
        let rows: Vec<Row> = self
            .session_rows_of(
                "id, consultation_id, at, kind, user_id, data",
                consultations,
                kinds,
            )
            .await?;
        for r in rows {
            let e = r.event()?;
            out.entry(e.consultation_id).or_default().push(e);
        }
        Ok(out)
    }

    /// These `columns` of the stored rows of these kinds of several
    /// consultations, in the order written, as `R` (a reader of many
    /// samples takes only the columns it needs and parses their data
    /// straight into its type).
    pub(crate) async fn session_rows_of<R>(
        &self,
        columns: &str,
        consultations: &[ConsultationId],
        kinds: &[EventKind],
    ) -> Result<Vec<R>>
    where
        R: for<'r> FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        if consultations.is_empty() {
            return Ok(Vec::new());
        }
        let ids = (1..=consultations.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let kind_list = (0..kinds.len())
            .map(|i| format!("${}", consultations.len() + 1 + i))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM session_events
             WHERE consultation_id IN ({ids}) AND kind IN ({kind_list}) ORDER BY id"
        );
        let mut q = sqlx::query_as::<_, R>(&sql);
        for c in consultations {
            q = q.bind(*c);
        }
        for k in kinds {
            q = q.bind(*k);
        }
        Ok(q.fetch_all(&self.pool).await?)
    }
}

impl Row {
    fn event(self) -> Result<SessionEvent> {
        Ok(SessionEvent {
            id: self.id,
            consultation_id: self.consultation_id,
            at: self.at,
            kind: self.kind,
            user_id: self.user_id,
            data: serde_json::from_str(&self.data)
                .map_err(|e| crate::RecordsError::Corrupt(format!("session event {}: {e}", self.id)))?,
        })
    }
}
