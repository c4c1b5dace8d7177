//! Typed ids, text-backed enums, timestamps and the `Pii` wrapper, with their
//! database encodings. Everything is stored as TEXT so that one SQL dialect
//! serves SQLite and PostgreSQL through sqlx's `Any` driver.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

/// Implements sqlx's `Type`, `Encode` and `Decode` for `Any` on a type that
/// round-trips through a `String` with `Display` and `FromStr`.
macro_rules! text_column {
    ($t:ty) => {
        impl Type<Any> for $t {
            fn type_info() -> AnyTypeInfo {
                <String as Type<Any>>::type_info()
            }
            fn compatible(ty: &AnyTypeInfo) -> bool {
                <String as Type<Any>>::compatible(ty)
            }
        }
        impl<'q> Encode<'q, Any> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <String as Encode<'q, Any>>::encode(self.to_string(), buf)
            }
        }
        impl<'r> Decode<'r, Any> for $t {
            fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
                let s = <String as Decode<'r, Any>>::decode(value)?;
                Ok(s.parse::<$t>()?)
            }
        }
    };
}

/// Declares a typed id: a UUID that cannot be mixed up with another kind of id.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new random (v4) id.
            pub fn new() -> Self {
                Self(uuid::Uuid::new_v4())
            }
        }
        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }
        text_column!($name);
    };
}

typed_id!(
    /// A commune station or a hospital.
    FacilityId
);
typed_id!(
    /// A user account.
    UserId
);
typed_id!(
    /// A patient.
    PatientId
);
typed_id!(
    /// A consultation (and its media room).
    ConsultationId
);
typed_id!(
    /// One version of a consultation note.
    NoteId
);
typed_id!(
    /// One set of vital signs.
    VitalsId
);
typed_id!(
    /// A login session (its refresh token).
    AuthSessionId
);
typed_id!(
    /// A still image attached to a consultation.
    AttachmentId
);
typed_id!(
    /// One consent event (granted or withdrawn).
    ConsentId
);

/// Error for a text value that is not one of an enum's names.
#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

/// Declares a closed set of snake_case names stored as TEXT.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stored and serialized name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok($name::$variant),)+ other => Err(UnknownValue(other.to_owned())) }
            }
        }
        text_column!($name);
    };
}

text_enum!(
    /// A consent event: the patient agreed, or took the agreement back.
    ConsentDecision {
        Granted = "granted",
        Withdrawn = "withdrawn",
    }
);

text_enum!(
    /// Who spoke for the patient.
    ConsentGiver {
        Patient = "patient",
        /// A parent or legal guardian (a minor, or a patient who cannot consent).
        Guardian = "guardian",
    }
);

text_enum!(
    /// What a facility is.
    FacilityKind {
        /// Trạm y tế xã: where the patient is.
        CommuneStation = "commune_station",
        /// Bệnh viện huyện / trung tâm y tế huyện: where the doctors are.
        DistrictHospital = "district_hospital",
        /// Bệnh viện tỉnh.
        ProvincialHospital = "provincial_hospital",
    }
);

impl FacilityKind {
    /// Hospitals receive consultations; stations request them.
    pub fn is_hospital(self) -> bool {
        !matches!(self, FacilityKind::CommuneStation)
    }
}

text_enum!(
    /// What a user may do.
    Role {
        HealthWorker = "health_worker",
        Doctor = "doctor",
        Admin = "admin",
    }
);

text_enum!(
    /// A patient's sex as recorded on their papers.
    Sex {
        Male = "male",
        Female = "female",
        Other = "other",
    }
);

text_enum!(
    /// Whether a consultation was booked ahead or asked for now.
    ConsultationKind {
        Urgent = "urgent",
        Scheduled = "scheduled",
    }
);

text_enum!(
    /// The consultation lifecycle (DESIGN.md).
    ConsultationState {
        Requested = "requested",
        Scheduled = "scheduled",
        InProgress = "in_progress",
        Completed = "completed",
        Cancelled = "cancelled",
        NoShow = "no_show",
        Interrupted = "interrupted",
    }
);

text_enum!(
    /// What a session-log entry records (`session_events.kind`).
    EventKind {
        /// The consultation was created or moved (`from`, `to`).
        StateChanged = "state_changed",
        /// A doctor took it from the queue.
        Accepted = "accepted",
        /// A booking moved to another slot.
        Rescheduled = "rescheduled",
        /// A photo was sent.
        Photo = "photo",
        /// A participant joined its call.
        Joined = "joined",
        /// A participant came back after a drop, same seat.
        Reconnected = "reconnected",
        /// A participant's socket dropped; its seat is held.
        Reconnecting = "reconnecting",
        /// Microphone, camera or "audio only" changed.
        Media = "media",
        /// A chat message was sent (its length, not its text).
        Chat = "chat",
        /// A call message was refused.
        Error = "error",
        /// Refusals left out of the log (too many in a row).
        ErrorsSuppressed = "errors_suppressed",
        /// A participant's media connection changed.
        IceState = "ice_state",
        /// A participant started sending a track.
        TrackPublished = "track_published",
        /// A participant stopped sending a track.
        TrackUnpublished = "track_unpublished",
        /// A participant left the call.
        Left = "left",
        /// The call's room closed.
        RoomClosed = "room_closed",
        /// One participant's quality sample ([`crate::SessionStats`]).
        Stats = "stats",
        /// A track's repair (NACK/RTX) was switched on or off.
        MediaRepair = "media_repair",
        /// A participant's media came back after silence.
        MediaResumed = "media_resumed",
        /// A participant's network address changed (a new path).
        AddressChanged = "address_changed",
        /// What one participant receives of another's video changed.
        VideoLevel = "video_level",
        /// A participant was asked to join again (our offer went unanswered).
        RejoinRequested = "rejoin_requested",
        /// The call was placed on a node (another one's died or gave it up).
        CallPlaced = "call_placed",
    }
);

text_enum!(
    /// A note is edited as a draft, then signed once and for all.
    NoteStatus {
        Draft = "draft",
        Signed = "signed",
    }
);

text_enum!(
    /// What happens to the patient after the consultation.
    Disposition {
        /// Điều trị tại trạm.
        TreatAtStation = "treat_at_station",
        /// Chuyển tuyến (referral, patient travels).
        Refer = "refer",
        /// Chuyển viện cấp cứu (emergency transfer).
        Transfer = "transfer",
        /// Hẹn tái khám.
        FollowUp = "follow_up",
    }
);

/// A point in time, stored as RFC 3339 UTC with milliseconds so that text
/// order is time order on both databases. Read from text (a request, a
/// query, the database), only years 1900 to 2999 are accepted: beyond 9999
/// and before 0000 text order is not time order (`-0001`, `+262142`), and no
/// consultation, leave or audit entry lies outside them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Timestamp(pub DateTime<Utc>);

/// Why text is not a [`Timestamp`].
#[derive(Debug)]
pub enum TimestampError {
    /// Not RFC 3339.
    Syntax(chrono::ParseError),
    /// A year before 1900 or after 2999.
    OutOfRange,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) => write!(f, "not an RFC 3339 timestamp: {e}"),
            Self::OutOfRange => f.write_str("timestamp out of range: years 1900 to 2999"),
        }
    }
}

impl std::error::Error for TimestampError {}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Timestamp {
    /// The current time, truncated to milliseconds (what the database keeps).
    pub fn now() -> Self {
        let now = Utc::now();
        let ms = now.timestamp_millis();
        // A millisecond count taken from a valid DateTime is always in range.
        Self(DateTime::from_timestamp_millis(ms).unwrap_or(now))
    }
}
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = DateTime::parse_from_rfc3339(s)
            .map_err(TimestampError::Syntax)?
            .with_timezone(&Utc);
        if !(1900..=2999).contains(&t.year()) {
            return Err(TimestampError::OutOfRange);
        }
        Ok(Self(t))
    }
}
text_column!(Timestamp);

/// Personal data (a patient's name, phone, citizen id, note text…).
///
/// `Debug` and `Display` print `[redacted]`, so a value that strays into a
/// log line or an error message leaks nothing; serialization (to the API
/// client that is allowed to see it) and the database see the real value.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Pii<T>(pub T);

impl<T> Pii<T> {
    /// The value itself; the caller takes responsibility for where it goes.
    pub fn expose(&self) -> &T {
        &self.0
    }
}
impl<T> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
impl<T> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
impl<T: Type<Any>> Type<Any> for Pii<T> {
    fn type_info() -> AnyTypeInfo {
        T::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        T::compatible(ty)
    }
}
impl<'q, T: Encode<'q, Any>> Encode<'q, Any> for Pii<T> {
    fn encode_by_ref(&self, buf: &mut <Any as Database>::ArgumentBuffer<'q>) -> Result<IsNull, BoxDynError> {
        self.0.encode_by_ref(buf)
    }
}
impl<'r, T: Decode<'r, Any>> Decode<'r, Any> for Pii<T> {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        T::decode(value).map(Pii)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pii_never_prints_its_value() {
        let name = Pii("Nguyễn Văn An".to_owned());
        assert_eq!(format!("{name} {name:?}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"Nguyễn Văn An\"");
    }

    #[test]
    fn timestamps_sort_as_text() {
        let a: Timestamp = "2026-01-02T03:04:05.006Z".parse().unwrap();
        let b: Timestamp = "2026-01-02T03:04:05.100Z".parse().unwrap();
        assert!(a < b && a.to_string() < b.to_string());
        assert_eq!(a.to_string(), "2026-01-02T03:04:05.006Z");
    }

    #[test]
    fn consultation_transitions() {
        use ConsultationState::*;
        assert!(Requested.can_become(InProgress));
        assert!(InProgress.can_become(Completed));
        assert!(!Completed.can_become(InProgress));
        assert!(!Requested.can_become(Completed));
        assert!(!Cancelled.can_become(Requested));
    }
}
