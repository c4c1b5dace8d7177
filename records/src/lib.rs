//! The records store: facilities, users, patients, consultations, notes,
//! vitals, session events and the audit log, on SQLite (default, a file) or
//! PostgreSQL (several nodes).
//!
//! # Model
//! A commune station registers [`Patient`]s and asks its referral hospital
//! for a [`Consultation`]; a doctor writes its [`Note`], versioned: drafts are
//! saved with optimistic concurrency, a signed note never changes, and an
//! amendment is a new version pointing to the one it replaces.
//!
//! # Flow
//! [`Store::open`] connects and migrates. Every method that reads or writes a
//! patient's data takes an [`Actor`] and writes an audit entry in the same
//! transaction as the write, so there is no change without its entry.
//!
//! # One dialect
//! Queries go through sqlx's `Any` driver with `$n` placeholders, which both
//! SQLite and PostgreSQL accept; ids and times are TEXT (UUID, RFC 3339 UTC
//! with milliseconds), integers BIGINT, reals DOUBLE. Migrations are kept per
//! backend in `migrations/{sqlite,postgres}`, numbered and never edited.
//!
//! # Out of scope
//! HTTP, WebSocket, media and who may see what: the caller (signaling)
//! decides access and passes a scope; this crate enforces data rules.
//!
//! Personal data travels in [`Pii`], whose `Debug`/`Display` redact it.
//!
//! [`Store::station_connectivity`] sums the session logs per commune station
//! and day or week, for the admins' station connectivity page.
//!
//! [`backup`] makes online copies of the SQLite file and restores them.

mod attachments;
mod audit;
pub mod backup;
mod cluster;
mod connectivity;
mod consents;
mod consultations;
mod error;
mod events;
mod facilities;
pub mod lifecycle;
mod notes;
mod patients;
mod schedule;
mod session_entry;
mod sessions;
mod store;
mod types;
mod users;
pub mod validate;
mod vitals;

pub use attachments::{sniff_image, Attachment, MAX_PHOTO_BYTES};
pub use audit::{Actor, AuditEntry, AuditQuery, ChainReport, Outcome};
pub use cluster::{
    ChangeListener, HeartbeatError, NodeHeartbeat, NodeRow, Placement, PlacementRow, ThrottleRules,
    ThrottleStart, CHANGES_CHANNEL,
};
pub use connectivity::{
    local_day, Bucket, ConnectivityQuery, StationConnectivity, MAX_CONSULTATIONS, MAX_RANGE_DAYS,
};
pub use consents::{
    current_consent_text, Consent, ConsentInput, ConsentProblem, ConsentText, CONSENT_TEXTS,
    GUARDIAN_BELOW_AGE,
};
pub use consultations::{Consultation, ConsultationInput, ConsultationScope};
pub use error::{Contested, RecordsError, Result, Unique};
pub use events::SessionEvent;
pub use facilities::{Facility, FacilityInput};
pub use notes::{Note, NoteContent};
pub use patients::{Patient, PatientInput, PatientScope};
pub use schedule::{local_offset, Leave, Slot, WorkingHours, SLOT_MINUTES};
pub use session_entry::{Joining, SessionEntry};
pub use sessions::{quality, Quality, SessionQuery, SessionStats, SessionSummary, STATS_INTERVAL_SECS};
pub use store::{Backend, Store, StoreOptions};
pub use types::*;
pub use users::{AuthSession, NewUser, User, UserChanges, UserCredentials};
pub use validate::FieldError;
pub use vitals::{Measurements, Vitals};
