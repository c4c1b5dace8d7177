//! The crate's one error type.

use crate::ids::{ParticipantId, RoomId};

/// What went wrong with a request to the SFU. Every variant concerns one room or
/// one participant; none of them disturbs the others.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The room id is not known (never created, or already closed).
    #[error("unknown room {0}")]
    UnknownRoom(RoomId),
    /// A room with this id already exists.
    #[error("room {0} already exists")]
    RoomExists(RoomId),
    /// The participant is not in this room.
    #[error("unknown participant {participant} in room {room}")]
    UnknownParticipant {
        /// The room asked for.
        room: RoomId,
        /// The participant asked for.
        participant: ParticipantId,
    },
    /// The SDP could not be parsed or negotiated.
    #[error("invalid session description: {0}")]
    InvalidSdp(String),
    /// The ICE candidate could not be parsed or applied.
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    /// The request arrived in the wrong negotiation state (e.g. an answer with no offer out).
    #[error("negotiation state does not allow this: {0}")]
    NegotiationState(String),
    /// A media port could not be bound (in use, or not ours to take).
    #[error("cannot bind the media port {what} {addr}: {source}")]
    Bind {
        /// `UDP` or `TCP`.
        what: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The media socket could not be used.
    #[error("media socket: {0}")]
    Io(#[from] std::io::Error),
    /// The SFU has shut down.
    #[error("the SFU is not running")]
    Stopped,
    /// An internal WebRTC error for this participant.
    #[error("webrtc: {0}")]
    WebRtc(String),
}

impl SfuError {
    /// A stable code for clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            SfuError::UnknownRoom(_) => "unknown_room",
            SfuError::RoomExists(_) => "room_exists",
            SfuError::UnknownParticipant { .. } => "unknown_participant",
            SfuError::InvalidSdp(_) => "invalid_sdp",
            SfuError::InvalidCandidate(_) => "invalid_candidate",
            SfuError::NegotiationState(_) => "negotiation_state",
            SfuError::Bind { .. } => "bind",
            SfuError::Io(_) => "io",
            SfuError::Stopped => "stopped",
            SfuError::WebRtc(_) => "webrtc",
        }
    }
}

/// Result alias for the SFU.
pub type Result<T, E = SfuError> = std::result::Result<T, E>;
