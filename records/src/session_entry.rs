//! What each session-log entry records, as a type.
//!
//! A row of `session_events` is a kind ([`EventKind`]) and a JSON object;
//! [`SessionEntry`] is both at once, one variant per kind, so a writer cannot
//! pair a kind with the wrong fields and the summary ([`crate::sessions`])
//! reads fields, not keys. The JSON written is what the admin's session page
//! has always read (`data` of each event).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::sessions::SessionStats;
use crate::types::{AttachmentId, ConsultationState, EventKind, Role, Timestamp, UserId};

/// One entry of a consultation's session log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum SessionEntry {
    /// The consultation was created (`from` absent) or moved.
    StateChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<ConsultationState>,
        to: ConsultationState,
    },
    /// A doctor took it from the queue.
    Accepted {},
    /// A booking moved to another slot.
    Rescheduled {
        from: Option<Timestamp>,
        to: Timestamp,
        doctor_id: UserId,
    },
    /// A photo was sent.
    Photo { photo_id: AttachmentId, bytes: u64 },
    /// A participant joined its call.
    Joined(Joining),
    /// A participant came back after a drop, same seat.
    Reconnected(Joining),
    /// A participant's socket dropped; its seat is held.
    Reconnecting { participant_id: String, socket: String },
    /// Microphone, camera or "audio only" changed.
    Media {
        participant_id: String,
        audio: bool,
        video: bool,
        receive_video: bool,
    },
    /// A chat message was sent: its length, never its text.
    Chat { participant_id: String, chars: usize },
    /// A call message was refused.
    Error { code: String },
    /// Refusals left out of the log (too many in a row).
    ErrorsSuppressed { count: u64 },
    /// A participant's media connection changed (`connected`,
    /// `disconnected`, `failed`...).
    IceState { participant_id: String, state: String },
    /// A participant started sending a track (`audio` or `video`).
    TrackPublished {
        participant_id: String,
        track: String,
        kind: String,
    },
    /// A participant stopped sending a track.
    TrackUnpublished { participant_id: String, track: String },
    /// A participant left the call, and why.
    Left { participant_id: String, reason: String },
    /// The call's room closed.
    RoomClosed {},
    /// One participant's quality sample.
    Stats(SessionStats),
    /// A track's repair (NACK/RTX) was switched on or off.
    MediaRepair {
        participant_id: String,
        track: String,
        repair: String,
    },
    /// A participant's media came back after `silent_ms` of silence.
    MediaResumed { participant_id: String, silent_ms: u64 },
    /// A participant's network address changed (a new path).
    AddressChanged { participant_id: String },
    /// What one participant receives of another's video: a layer of
    /// `layers`, or nothing (`off` says why).
    VideoLevel {
        participant_id: String,
        publisher_id: String,
        track: String,
        layer: Option<usize>,
        layers: Option<usize>,
        off: Option<String>,
    },
    /// A participant was asked to join again, and why.
    RejoinRequested { participant_id: String, why: String },
    /// The call was placed on a node (`from`: the node it was on before,
    /// which died or gave it up), with its new epoch.
    CallPlaced {
        node: String,
        epoch: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
}

/// Who joined a call (or came back to it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Joining {
    pub participant_id: String,
    pub role: Role,
    /// It came with a new media connection (not a resumed one).
    pub new_connection: bool,
}

impl SessionEntry {
    /// Its kind, as stored in `session_events.kind`.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::StateChanged { .. } => EventKind::StateChanged,
            Self::Accepted {} => EventKind::Accepted,
            Self::Rescheduled { .. } => EventKind::Rescheduled,
            Self::Photo { .. } => EventKind::Photo,
            Self::Joined(_) => EventKind::Joined,
            Self::Reconnected(_) => EventKind::Reconnected,
            Self::Reconnecting { .. } => EventKind::Reconnecting,
            Self::Media { .. } => EventKind::Media,
            Self::Chat { .. } => EventKind::Chat,
            Self::Error { .. } => EventKind::Error,
            Self::ErrorsSuppressed { .. } => EventKind::ErrorsSuppressed,
            Self::IceState { .. } => EventKind::IceState,
            Self::TrackPublished { .. } => EventKind::TrackPublished,
            Self::TrackUnpublished { .. } => EventKind::TrackUnpublished,
            Self::Left { .. } => EventKind::Left,
            Self::RoomClosed {} => EventKind::RoomClosed,
            Self::Stats(_) => EventKind::Stats,
            Self::MediaRepair { .. } => EventKind::MediaRepair,
            Self::MediaResumed { .. } => EventKind::MediaResumed,
            Self::AddressChanged { .. } => EventKind::AddressChanged,
            Self::VideoLevel { .. } => EventKind::VideoLevel,
            Self::RejoinRequested { .. } => EventKind::RejoinRequested,
            Self::CallPlaced { .. } => EventKind::CallPlaced,
        }
    }

    /// What is stored in `session_events.data`.
    pub fn data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => m.remove("data").unwrap_or_else(|| serde_json::json!({})),
            _ => serde_json::json!({}),
        }
    }

    /// A stored row read back; `None` for a kind this version does not
    /// write, or data that does not read as its kind (an older log).
    pub fn read(kind: &str, data: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(serde_json::json!({"kind": kind, "data": data})).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn one_of_each() -> Vec<SessionEntry> {
        let p = || "p1".to_owned();
        let joining = Joining {
            participant_id: p(),
            role: Role::Doctor,
            new_connection: true,
        };
        vec![
            SessionEntry::StateChanged {
                from: Some(ConsultationState::Requested),
                to: ConsultationState::InProgress,
            },
            SessionEntry::Accepted {},
            SessionEntry::Rescheduled {
                from: None,
                to: Timestamp::now(),
                doctor_id: UserId::new(),
            },
            SessionEntry::Photo {
                photo_id: AttachmentId::new(),
                bytes: 10,
            },
            SessionEntry::Joined(joining.clone()),
            SessionEntry::Reconnected(joining),
            SessionEntry::Reconnecting {
                participant_id: p(),
                socket: "gone".into(),
            },
            SessionEntry::Media {
                participant_id: p(),
                audio: true,
                video: false,
                receive_video: true,
            },
            SessionEntry::Chat {
                participant_id: p(),
                chars: 12,
            },
            SessionEntry::Error {
                code: "bad_sdp".into(),
            },
            SessionEntry::ErrorsSuppressed { count: 3 },
            SessionEntry::IceState {
                participant_id: p(),
                state: "connected".into(),
            },
            SessionEntry::TrackPublished {
                participant_id: p(),
                track: "t".into(),
                kind: "video".into(),
            },
            SessionEntry::TrackUnpublished {
                participant_id: p(),
                track: "t".into(),
            },
            SessionEntry::Left {
                participant_id: p(),
                reason: "removed".into(),
            },
            SessionEntry::RoomClosed {},
            SessionEntry::Stats(SessionStats::default()),
            SessionEntry::MediaRepair {
                participant_id: p(),
                track: "t".into(),
                repair: "keyframe".into(),
            },
            SessionEntry::MediaResumed {
                participant_id: p(),
                silent_ms: 1500,
            },
            SessionEntry::AddressChanged { participant_id: p() },
            SessionEntry::VideoLevel {
                participant_id: p(),
                publisher_id: "p2".into(),
                track: "t".into(),
                layer: None,
                layers: None,
                off: Some("bandwidth".into()),
            },
            SessionEntry::RejoinRequested {
                participant_id: p(),
                why: "offer_unanswered".into(),
            },
            SessionEntry::CallPlaced {
                node: "n2".into(),
                epoch: 2,
                from: Some("n1".into()),
            },
        ]
    }

    /// Every kind has its entry, named as the column stores it, and each
    /// reads back as written.
    #[test]
    fn every_kind_is_an_entry_that_reads_back() {
        let entries = one_of_each();
        let kinds: std::collections::HashSet<&str> = entries.iter().map(|e| e.kind().as_str()).collect();
        assert_eq!(kinds.len(), EventKind::ALL.len(), "one entry per kind");
        for e in entries {
            let tag = serde_json::to_value(&e).expect("json")["kind"]
                .as_str()
                .expect("tag")
                .to_owned();
            assert_eq!(tag, e.kind().as_str(), "serde names {e:?} as its kind");
            assert!(EventKind::from_str(&tag).is_ok());
            let data = e.data();
            assert!(data.is_object(), "{e:?}: data is an object");
            assert_eq!(SessionEntry::read(&tag, &data), Some(e));
        }
    }

    /// The JSON is what the admin's page reads: the same keys as before.
    #[test]
    fn data_keeps_the_keys_the_pages_read() {
        let e = SessionEntry::StateChanged {
            from: None,
            to: ConsultationState::Scheduled,
        };
        assert_eq!(e.data(), serde_json::json!({"to": "scheduled"}));
        let e = SessionEntry::VideoLevel {
            participant_id: "a".into(),
            publisher_id: "b".into(),
            track: "t".into(),
            layer: Some(1),
            layers: Some(3),
            off: None,
        };
        assert_eq!(
            e.data(),
            serde_json::json!({"participant_id": "a", "publisher_id": "b", "track": "t", "layer": 1, "layers": 3, "off": null})
        );
        assert_eq!(SessionEntry::RoomClosed {}.data(), serde_json::json!({}));
        // An older row missing a field is not this kind's entry.
        assert_eq!(
            SessionEntry::read("ice_state", &serde_json::json!({"state": "failed"})),
            None
        );
    }
}
