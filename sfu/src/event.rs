//! What the SFU tells its owner (signaling): negotiation messages to relay to
//! a participant, and facts for the session log.

use crate::ids::{ConnectionId, ParticipantId, RoomId, TrackId};
use std::time::SystemTime;

/// An ICE candidate as carried by signaling (the fields of `RTCIceCandidateInit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceCandidate {
    /// The `candidate:` line (empty string = end of candidates).
    pub candidate: String,
    /// The media stream id the candidate is for.
    pub sdp_mid: Option<String>,
    /// The m-line index the candidate is for.
    pub sdp_mline_index: Option<u16>,
    /// The ICE ufrag the candidate belongs to.
    pub username_fragment: Option<String>,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

/// Peer connection state, as the browser names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Negotiating.
    New,
    /// ICE/DTLS in progress.
    Connecting,
    /// Media can flow.
    Connected,
    /// Lost for now (ICE may recover).
    Disconnected,
    /// ICE failed (only with [`crate::SfuConfig::ice_failed_timeout`] set);
    /// the participant is removed.
    Failed,
    /// Closed.
    Closed,
}

/// Why a participant left the room. Logged and sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The application removed it (the user left, or was removed).
    Removed,
    /// The room was closed.
    RoomClosed,
    /// ICE failed: the network path died and did not recover.
    ConnectionFailed,
    /// The peer closed its connection (DTLS close).
    PeerClosed,
    /// The SFU shut down.
    Shutdown,
    /// Its seat was held while it was away, and it did not come back in time.
    SeatExpired,
    /// It joined again with a fresh connection, which took over its seat
    /// (never reported in [`SfuEvent::ParticipantLeft`]).
    Replaced,
}

impl CloseReason {
    /// A stable code for logs and clients.
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::Removed => "removed",
            CloseReason::RoomClosed => "room_closed",
            CloseReason::ConnectionFailed => "connection_failed",
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Shutdown => "shutdown",
            CloseReason::SeatExpired => "seat_expired",
            CloseReason::Replaced => "replaced",
        }
    }
}

/// Direction of a track relative to the participant the stats are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Media the participant publishes (SFU receives).
    Inbound,
    /// Media the participant receives (SFU sends).
    Outbound,
}

/// One track's figures over the last stats interval.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackStats {
    /// The published track.
    pub track: TrackId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Inbound (published by this participant) or outbound (received by it).
    pub direction: Direction,
    /// RTP packets in the interval.
    pub packets: u64,
    /// Bitrate over the interval, bits per second.
    pub bitrate_bps: u64,
    /// Packets lost, cumulative, as reported (RTCP RR) or counted.
    pub packets_lost: i64,
    /// Interarrival jitter in seconds, if known.
    pub jitter_s: Option<f64>,
    /// NACKs received (outbound) or sent (inbound), cumulative.
    pub nacks: u64,
    /// PLI/FIR received (outbound) or sent (inbound), cumulative.
    pub plis: u64,
    /// Selected simulcast layer (outbound simulcast only).
    pub layer: Option<usize>,
    /// The codec as SDP names it, lower case (`audio/red`, `audio/opus`,
    /// `video/vp8`): as published (inbound), as this subscriber gets it
    /// (outbound).
    pub codec: String,
}

/// Why a subscriber gets no video of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoOff {
    /// Its downlink cannot carry even the lowest layer next to the audio.
    Bandwidth,
    /// It asked for audio only ([`crate::Sfu::set_video_wanted`]).
    Requested,
}

impl VideoOff {
    /// A stable code for logs and clients.
    pub fn code(self) -> &'static str {
        match self {
            VideoOff::Bandwidth => "bandwidth",
            VideoOff::Requested => "requested",
        }
    }
}

/// What one subscriber gets of one video track: a step of the degradation
/// ladder (top layer, lower layers, audio only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoLevel {
    /// This simulcast layer (0 = lowest) of `layers`.
    Layer {
        /// The layer forwarded now.
        layer: usize,
        /// How many layers the publisher sends.
        layers: usize,
    },
    /// No video: only audio.
    Off(VideoOff),
}

/// A stats sample for one participant.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSample {
    /// The room.
    pub room: RoomId,
    /// The participant.
    pub participant: ParticipantId,
    /// When the sample was taken.
    pub at: SystemTime,
    /// The time its figures cover (`SfuConfig::stats_interval`).
    pub interval: std::time::Duration,
    /// Round-trip time to the participant in seconds, if measured.
    pub rtt_s: Option<f64>,
    /// Send-side bandwidth estimate towards the participant (bps), when
    /// bandwidth estimation is on.
    pub send_estimate_bps: Option<u64>,
    /// Per track figures.
    pub tracks: Vec<TrackStats>,
}

/// An event from the SFU.
#[derive(Debug, Clone)]
pub enum SfuEvent {
    /// Send this offer to the participant (the SFU renegotiates when the set of
    /// tracks it forwards to them changes); answer with `Sfu::handle_answer`.
    Offer {
        /// The room.
        room: RoomId,
        /// The participant to send it to.
        participant: ParticipantId,
        /// The SDP.
        sdp: String,
    },
    /// A local ICE candidate to trickle to the participant.
    IceCandidate {
        /// The room.
        room: RoomId,
        /// The participant to send it to.
        participant: ParticipantId,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// The participant's connection state changed.
    ConnectionState {
        /// The room.
        room: RoomId,
        /// The participant.
        participant: ParticipantId,
        /// The new state.
        state: ConnectionState,
    },
    /// The participant started publishing a track; it is being forwarded to the others.
    TrackPublished {
        /// The room.
        room: RoomId,
        /// The publisher.
        participant: ParticipantId,
        /// The track.
        track: TrackId,
        /// Audio or video.
        kind: MediaKind,
    },
    /// A track is gone (its publisher left); subscribers are renegotiated without it.
    TrackUnpublished {
        /// The room.
        room: RoomId,
        /// The publisher.
        participant: ParticipantId,
        /// The track.
        track: TrackId,
    },
    /// The participant left the room.
    ParticipantLeft {
        /// The room.
        room: RoomId,
        /// The participant.
        participant: ParticipantId,
        /// Which of its connections ended (the one [`crate::Sfu::join_connection`]
        /// returned): a leave that crossed a rejoin is about the old one.
        connection: ConnectionId,
        /// Why.
        reason: CloseReason,
    },
    /// The room was closed.
    RoomClosed {
        /// The room.
        room: RoomId,
    },
    /// A periodic stats sample.
    Stats(StatsSample),
    /// A subscriber was not getting media it should have; the SFU repaired
    /// it this way.
    Repaired {
        /// The room.
        room: RoomId,
        /// The subscriber.
        participant: ParticipantId,
        /// The track it was missing.
        track: TrackId,
        /// What was done.
        repair: crate::delivery::Repair,
    },
    /// The participant's packets arrive again after a silence (its path
    /// came back); keyframes were asked for on both directions.
    PathResumed {
        /// The room.
        room: RoomId,
        /// The participant.
        participant: ParticipantId,
        /// How long nothing had arrived.
        silent_for: std::time::Duration,
    },
    /// The participant's packets come from a new address (a handover, or its
    /// NAT gave it a new port); media follows it without an ICE restart.
    PathMoved {
        /// The room.
        room: RoomId,
        /// The participant.
        participant: ParticipantId,
    },
    /// What a subscriber gets of a video track changed: another simulcast
    /// layer, video off (audio only), or video back.
    VideoLevel {
        /// The room.
        room: RoomId,
        /// The subscriber.
        participant: ParticipantId,
        /// The publisher of the track.
        publisher: ParticipantId,
        /// The track.
        track: TrackId,
        /// What it gets now.
        level: VideoLevel,
    },
    /// The participant did not answer our offer after every resend: its
    /// connection is broken. It should rejoin with a fresh one (`join` again:
    /// it takes back its seat).
    RejoinNeeded {
        /// The room.
        room: RoomId,
        /// The participant.
        participant: ParticipantId,
    },
}

impl SfuEvent {
    /// The room the event is about.
    pub fn room(&self) -> &RoomId {
        match self {
            SfuEvent::Offer { room, .. }
            | SfuEvent::IceCandidate { room, .. }
            | SfuEvent::ConnectionState { room, .. }
            | SfuEvent::TrackPublished { room, .. }
            | SfuEvent::TrackUnpublished { room, .. }
            | SfuEvent::ParticipantLeft { room, .. }
            | SfuEvent::RoomClosed { room }
            | SfuEvent::Repaired { room, .. }
            | SfuEvent::PathResumed { room, .. }
            | SfuEvent::PathMoved { room, .. }
            | SfuEvent::VideoLevel { room, .. }
            | SfuEvent::RejoinNeeded { room, .. } => room,
            SfuEvent::Stats(s) => &s.room,
        }
    }
}
