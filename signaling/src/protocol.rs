//! Every message of the signaling socket (`/api/ws`), both directions, as
//! types: JSON text frames tagged by `type`, version [`PROTOCOL`]. Nothing
//! on the socket is built by hand. `docs/signaling.md` documents each one
//! and the browser lists the ones it handles (`web-client/call.js`,
//! `CALL_MESSAGES`); a test checks all three name the same messages.

use serde::{Deserialize, Serialize};
use telehealth_records::{ConsultationId, ConsultationState, Role, Timestamp, UserId};

use crate::live::ConsultationChange;
use crate::turn::IceServer;

/// Version of the socket protocol; bumped on incompatible changes.
pub const PROTOCOL: u32 = 1;

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Application-level keepalive (browsers cannot send WebSocket pings).
    Ping {},
    /// Join a consultation's call with an SDP offer (a user already in the
    /// call takes its seat back with the new connection); or, with `resume`
    /// and no offer, take over this user's participant from a dropped socket
    /// with the same connection.
    Join {
        consultation_id: String,
        /// The offer of a fresh peer connection. May be left out only with
        /// `resume`, when the page kept its connection.
        #[serde(default)]
        sdp: Option<String>,
        #[serde(default)]
        resume: Option<String>,
    },
    /// A renegotiation offer from the client (e.g. an ICE restart).
    Offer { sdp: String },
    /// The answer to a server `offer`.
    Answer { sdp: String },
    /// A trickled ICE candidate (`candidate` empty = end of candidates).
    Ice { candidate: WireCandidate },
    /// Microphone / camera on or off, announced to the others; and whether
    /// the page wants the others' video (`false`: audio only, on a weak
    /// link; the server then stops forwarding video to it). Default true.
    Media {
        audio: bool,
        video: bool,
        #[serde(default)]
        receive_video: Option<bool>,
    },
    /// Text chat, the fallback when video fails.
    Chat { text: String },
    /// Leave the call.
    Leave {},
    /// End the consultation (its doctor only).
    End {},
}

impl ClientMessage {
    /// Every `type` a client may send, as the wire spells it.
    pub const TYPES: &'static [&'static str] = &[
        "ping", "join", "offer", "answer", "ice", "media", "chat", "leave", "end",
    ];
}

/// An ICE candidate as sent by browsers (`RTCIceCandidateInit`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireCandidate {
    pub candidate: String,
    #[serde(default, alias = "sdpMid")]
    pub sdp_mid: Option<String>,
    #[serde(default, alias = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    #[serde(default, alias = "usernameFragment")]
    pub username_fragment: Option<String>,
}

/// A server ICE candidate, as sent to the page.
#[derive(Clone, Debug, Serialize)]
pub struct ServerCandidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
    pub username_fragment: Option<String>,
}

/// One participant of a call, in `joined`.
#[derive(Clone, Debug, Serialize)]
pub struct RosterEntry {
    pub participant_id: String,
    pub user_id: UserId,
    pub role: Role,
    pub audio: bool,
    pub video: bool,
    /// Its socket is there (not dropped and within its seat's hold).
    pub connected: bool,
}

/// Everything the server sends.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// On open.
    Hello {
        protocol: u32,
        user_id: UserId,
        role: Role,
        /// On a socket opened for a consultation: the ICE servers for its
        /// call (TURN with this user's time-limited credential), so the page
        /// can configure its peer connection before it makes the offer.
        #[serde(skip_serializing_if = "Option::is_none")]
        ice_servers: Option<Vec<IceServer>>,
    },
    /// After `ping`.
    Pong,
    /// A consultation the user may see changed.
    ConsultationChanged(ConsultationChange),
    /// Updates were missed (the page was too slow): refetch lists.
    Resync,
    /// The answer to `join`.
    Joined {
        consultation_id: ConsultationId,
        participant_id: String,
        /// The SDP answer; `None` for a resume without an offer.
        sdp: Option<String>,
        resumed: bool,
        state: ConsultationState,
        seat_hold_s: u64,
        ice_servers: Vec<IceServer>,
        participants: Vec<RosterEntry>,
    },
    /// A server offer (the tracks to receive changed), to answer.
    Offer { sdp: String },
    /// The answer to a client `offer`.
    Answer { sdp: String },
    /// A server ICE candidate.
    Ice { candidate: ServerCandidate },
    /// Our offer went unanswered: join again with a fresh connection.
    Rejoin { reason: &'static str },
    /// Someone joined.
    ParticipantJoined {
        participant_id: String,
        user_id: UserId,
        role: Role,
    },
    /// Someone came back after a drop, same participant.
    ParticipantReconnected {
        participant_id: String,
        user_id: UserId,
        role: Role,
    },
    /// Someone's socket dropped; their seat is held.
    ParticipantReconnecting {
        participant_id: String,
        user_id: UserId,
        seat_hold_s: u64,
    },
    /// Someone left.
    ParticipantLeft {
        participant_id: String,
        user_id: Option<UserId>,
        reason: &'static str,
    },
    /// This socket is out of the call.
    Left {
        participant_id: String,
        reason: &'static str,
    },
    /// Someone's microphone or camera went on or off.
    ParticipantMedia {
        participant_id: String,
        audio: bool,
        video: bool,
    },
    /// What one participant receives of another's camera changed.
    VideoLevel {
        participant_id: String,
        publisher_id: String,
        layer: Option<usize>,
        layers: Option<usize>,
        off: Option<&'static str>,
    },
    /// A participant's media connection changed.
    ConnectionState {
        participant_id: String,
        state: &'static str,
    },
    /// The consultation moved.
    ConsultationState {
        consultation_id: ConsultationId,
        state: ConsultationState,
    },
    /// A chat message.
    Chat {
        participant_id: String,
        user_id: UserId,
        text: String,
        at: Timestamp,
    },
    /// A full-resolution photo was sent in the call.
    PhotoShared {
        photo_id: telehealth_records::AttachmentId,
        consultation_id: ConsultationId,
        uploaded_by: UserId,
    },
    /// The answer to `end`.
    Ended { consultation_id: ConsultationId },
    /// A message could not be handled.
    Error {
        code: &'static str,
        message: &'static str,
        message_en: &'static str,
    },
}

impl ServerMessage {
    /// Every `type` the server sends, as the wire spells it.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "pong",
        "consultation_changed",
        "resync",
        "joined",
        "offer",
        "answer",
        "ice",
        "rejoin",
        "participant_joined",
        "participant_reconnected",
        "participant_reconnecting",
        "participant_left",
        "left",
        "participant_media",
        "video_level",
        "connection_state",
        "consultation_state",
        "chat",
        "photo_shared",
        "ended",
        "error",
    ];

    /// Its `type` on the wire (the match has no wildcard: a new message
    /// does not compile until it is named here, and the test below checks
    /// serde writes the same name).
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerMessage::Hello { .. } => "hello",
            ServerMessage::Pong => "pong",
            ServerMessage::ConsultationChanged(_) => "consultation_changed",
            ServerMessage::Resync => "resync",
            ServerMessage::Joined { .. } => "joined",
            ServerMessage::Offer { .. } => "offer",
            ServerMessage::Answer { .. } => "answer",
            ServerMessage::Ice { .. } => "ice",
            ServerMessage::Rejoin { .. } => "rejoin",
            ServerMessage::ParticipantJoined { .. } => "participant_joined",
            ServerMessage::ParticipantReconnected { .. } => "participant_reconnected",
            ServerMessage::ParticipantReconnecting { .. } => "participant_reconnecting",
            ServerMessage::ParticipantLeft { .. } => "participant_left",
            ServerMessage::Left { .. } => "left",
            ServerMessage::ParticipantMedia { .. } => "participant_media",
            ServerMessage::VideoLevel { .. } => "video_level",
            ServerMessage::ConnectionState { .. } => "connection_state",
            ServerMessage::ConsultationState { .. } => "consultation_state",
            ServerMessage::Chat { .. } => "chat",
            ServerMessage::PhotoShared { .. } => "photo_shared",
            ServerMessage::Ended { .. } => "ended",
            ServerMessage::Error { .. } => "error",
        }
    }

    /// A refusal, in the user's two languages.
    pub fn error(code: &'static str, message: &'static str, message_en: &'static str) -> Self {
        ServerMessage::Error {
            code,
            message,
            message_en,
        }
    }

    /// The JSON text frame.
    pub fn to_text(&self) -> String {
        // Every field serializes (no maps with non-string keys, no floats).
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// One of each message (the match in `type_name` makes a new one fail to
    /// compile there; add its sample here).
    fn samples() -> Vec<ServerMessage> {
        let (c, u) = (ConsultationId::new(), UserId::new());
        let pid = || "p1".to_owned();
        vec![
            ServerMessage::Hello {
                protocol: PROTOCOL,
                user_id: u,
                role: Role::Doctor,
                ice_servers: None,
            },
            ServerMessage::Pong,
            ServerMessage::ConsultationChanged(ConsultationChange {
                consultation_id: c,
                station_id: telehealth_records::FacilityId::new(),
                hospital_id: telehealth_records::FacilityId::new(),
                doctor_id: None,
                kind: telehealth_records::ConsultationKind::Urgent,
                state: ConsultationState::Requested,
                scheduled_start: None,
                updated_at: Timestamp::now(),
            }),
            ServerMessage::Resync,
            ServerMessage::Joined {
                consultation_id: c,
                participant_id: pid(),
                sdp: None,
                resumed: true,
                state: ConsultationState::InProgress,
                seat_hold_s: 180,
                ice_servers: vec![],
                participants: vec![],
            },
            ServerMessage::Offer { sdp: "v=0".into() },
            ServerMessage::Answer { sdp: "v=0".into() },
            ServerMessage::Ice {
                candidate: ServerCandidate {
                    candidate: String::new(),
                    sdp_mid: None,
                    sdp_mline_index: None,
                    username_fragment: None,
                },
            },
            ServerMessage::Rejoin {
                reason: "offer_unanswered",
            },
            ServerMessage::ParticipantJoined {
                participant_id: pid(),
                user_id: u,
                role: Role::HealthWorker,
            },
            ServerMessage::ParticipantReconnected {
                participant_id: pid(),
                user_id: u,
                role: Role::HealthWorker,
            },
            ServerMessage::ParticipantReconnecting {
                participant_id: pid(),
                user_id: u,
                seat_hold_s: 180,
            },
            ServerMessage::ParticipantLeft {
                participant_id: pid(),
                user_id: None,
                reason: "removed",
            },
            ServerMessage::Left {
                participant_id: pid(),
                reason: "replaced",
            },
            ServerMessage::ParticipantMedia {
                participant_id: pid(),
                audio: true,
                video: false,
            },
            ServerMessage::VideoLevel {
                participant_id: pid(),
                publisher_id: pid(),
                layer: None,
                layers: None,
                off: Some("bandwidth"),
            },
            ServerMessage::ConnectionState {
                participant_id: pid(),
                state: "connected",
            },
            ServerMessage::ConsultationState {
                consultation_id: c,
                state: ConsultationState::Completed,
            },
            ServerMessage::Chat {
                participant_id: pid(),
                user_id: u,
                text: "Chào".into(),
                at: Timestamp::now(),
            },
            ServerMessage::PhotoShared {
                photo_id: telehealth_records::AttachmentId::new(),
                consultation_id: c,
                uploaded_by: u,
            },
            ServerMessage::Ended { consultation_id: c },
            ServerMessage::error("bad_message", "Sai", "Wrong"),
        ]
    }

    #[test]
    fn every_message_is_tagged_with_its_name() {
        let mut seen = BTreeSet::new();
        for m in samples() {
            let v: serde_json::Value = serde_json::from_str(&m.to_text()).expect("JSON");
            assert_eq!(v["type"], m.type_name(), "{v}");
            seen.insert(m.type_name());
        }
        let all: BTreeSet<_> = ServerMessage::TYPES.iter().copied().collect();
        assert_eq!(seen, all, "one sample of each message, and TYPES names them all");
    }

    /// The `type`s in a markdown table of docs/signaling.md under `heading`
    /// (first column; `a` / `b` rows name two).
    fn documented(heading: &str) -> BTreeSet<String> {
        let doc = include_str!("../../docs/signaling.md");
        let start = doc
            .find(heading)
            .unwrap_or_else(|| panic!("no {heading:?} in docs/signaling.md"));
        doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .flat_map(|l| {
                let first = l.split('|').nth(1).unwrap_or("");
                first
                    .split('/')
                    .map(|t| t.trim().trim_matches('`').to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_documentation_and_the_browser_name_the_same_messages() {
        let client: BTreeSet<String> = ClientMessage::TYPES.iter().map(|s| s.to_string()).collect();
        let server: BTreeSet<String> = ServerMessage::TYPES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            documented("## Client → server"),
            client,
            "docs/signaling.md, client → server"
        );
        assert_eq!(
            documented("## Server → client"),
            server,
            "docs/signaling.md, server → client"
        );
        // The browser's list: every message a call page handles (the rest
        // are the live-update socket's, handled in web-client/socket.js).
        let js = include_str!("../../web-client/call.js");
        let start = js
            .find("export const CALL_MESSAGES")
            .expect("CALL_MESSAGES in call.js");
        let list = &js[start..start + js[start..].find("]);").expect("end of CALL_MESSAGES")];
        let browser: BTreeSet<String> = list.split('\'').skip(1).step_by(2).map(str::to_owned).collect();
        let live: BTreeSet<String> = ["consultation_changed", "resync"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let call: BTreeSet<String> = server.difference(&live).cloned().collect();
        assert_eq!(browser, call, "web-client/call.js CALL_MESSAGES");
    }

    #[test]
    fn every_client_type_parses() {
        for t in ClientMessage::TYPES {
            let body = match *t {
                "join" => r#","consultation_id":"x","sdp":"v=0""#,
                "offer" | "answer" => r#","sdp":"v=0""#,
                "ice" => r#","candidate":{"candidate":""}"#,
                "media" => r#","audio":true,"video":true"#,
                "chat" => r#","text":"hi""#,
                _ => "",
            };
            let text = format!(r#"{{"type":"{t}"{body}}}"#);
            assert!(serde_json::from_str::<ClientMessage>(&text).is_ok(), "{text}");
        }
    }
}
