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
    /// A unique value is already taken.
    #[error("duplicate value for {}", .0.field())]
    Duplicate(Unique),
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
    #[error("already taken: {0:?}")]
    AlreadyTaken(Contested),
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

/// A value that only one record may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unique {
    /// A patient's citizen id.
    Cccd,
    /// A user's login name.
    Username,
    /// A facility's code.
    FacilityCode,
    /// A consultation's original note (one per consultation).
    ConsultationNote,
    /// A note's amendment (one per note version).
    NoteAmendment,
    /// A doctor's booked slot.
    Slot,
    /// A patient's consent event number.
    ConsentSeq,
}

impl Unique {
    /// The input field that holds the value, as the API names it.
    pub fn field(self) -> &'static str {
        match self {
            Unique::Cccd => "cccd",
            Unique::Username => "username",
            Unique::FacilityCode => "code",
            Unique::ConsultationNote => "consultation_id",
            Unique::NoteAmendment => "amends_note_id",
            Unique::Slot => "scheduled_start",
            Unique::ConsentSeq => "seq",
        }
    }
}

/// What another user got first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contested {
    /// A consultation changed (accepted, moved on) under the caller.
    Consultation,
    /// A note version already has its amendment.
    NoteAmendment,
    /// A slot was booked meanwhile, or is not free.
    Slot,
    /// A consent event was recorded at the same moment.
    Consent,
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

/// Turns a unique-constraint failure into [`RecordsError::Duplicate`] for
/// the first of `values` whose needle (a column or constraint name) the
/// violation mentions. SQLite says "UNIQUE constraint failed:
/// patients.cccd"; PostgreSQL names the constraint "patients_cccd_key".
/// Both contain the column name.
pub(crate) fn map_unique(e: sqlx::Error, values: &[(&str, Unique)]) -> RecordsError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            let text = format!("{} {}", db.message(), db.constraint().unwrap_or(""));
            for (needle, value) in values {
                if text.contains(needle) {
                    return RecordsError::Duplicate(*value);
                }
            }
        }
        if db.message().contains("signed note is immutable") {
            return RecordsError::Immutable("signed note");
        }
    }
    RecordsError::Database(e)
}
