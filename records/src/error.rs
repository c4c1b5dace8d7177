use crate::types::ConsultationState;
use crate::validate::FieldError;

/// Everything the records store can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The input broke one or more rules; nothing was written.
    #[error("invalid input: {0:?}")]
    Invalid(Vec<FieldError>),
    /// No such record (the `&str` names the kind: "patient", "note"…).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is already taken (`field` names it, e.g. `cccd`).
    #[error("duplicate value for {field}")]
    Duplicate { field: &'static str },
    /// The caller edited from an out-of-date version; `current` is the latest.
    #[error("version conflict: current version is {current}")]
    VersionConflict { current: i64 },
    /// A signed note (or another immutable record) was about to change.
    #[error("record is immutable: {0}")]
    Immutable(&'static str),
    /// A consultation cannot go from one state to the other.
    #[error("illegal transition {from} -> {to}")]
    IllegalTransition {
        from: ConsultationState,
        to: ConsultationState,
    },
    /// Another user got there first (e.g. two doctors accepting one request).
    #[error("already taken: {0}")]
    AlreadyTaken(&'static str),
    /// The patient's consent is not on file, or was withdrawn.
    #[error("consent: {0:?}")]
    Consent(crate::consents::ConsentProblem),
    /// The database failed. The cause is for the log, never for the client.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Stored data could not be read back (a bug or manual tampering).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl RecordsError {
    /// A single-field validation error.
    pub fn field(e: FieldError) -> Self {
        RecordsError::Invalid(vec![e])
    }

    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL
    /// `disk_full`): nothing was written; writes work again once space returns.
    pub fn is_storage_full(&self) -> bool {
        match self {
            RecordsError::Database(sqlx::Error::Database(db)) => {
                let code = db.code();
                let code = code.as_deref().unwrap_or("");
                // SQLite's extended codes keep the primary code in the low byte.
                code == "53100" || code.parse::<i32>().is_ok_and(|c| c & 0xff == 13)
            }
            _ => false,
        }
    }

    /// The database could not be reached in time (not the request's fault).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RecordsError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed)
        )
    }
}

pub type Result<T, E = RecordsError> = std::result::Result<T, E>;

/// Turns a unique-constraint failure into [`RecordsError::Duplicate`] naming
/// the field, when the violated constraint mentions one of `fields`
/// (a column name, or `needle=field` for a constraint named differently).
/// SQLite says "UNIQUE constraint failed: patients.cccd"; PostgreSQL names
/// the constraint "patients_cccd_key". Both contain the column name.
pub(crate) fn map_unique(e: sqlx::Error, fields: &[&'static str]) -> RecordsError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            let text = format!("{} {}", db.message(), db.constraint().unwrap_or(""));
            for f in fields {
                let (needle, field) = f.split_once('=').unwrap_or((f, f));
                if text.contains(needle) {
                    // `field` is a suffix of a `&'static str`, so it lives as long.
                    let field: &'static str = &f[f.len() - field.len()..];
                    return RecordsError::Duplicate { field };
                }
            }
        }
        if db.message().contains("signed note is immutable") {
            return RecordsError::Immutable("signed note");
        }
    }
    RecordsError::Database(e)
}
