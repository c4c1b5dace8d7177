//! The media plane: rooms, participants, published tracks and subscriptions,
//! relaying RTP between WebRTC peers without decoding it.
//!
//! # Model
//!
//! A [`RoomId`] is one consultation's media session (mediasoup's Router). A
//! participant ([`ParticipantId`]) has one peer connection carrying both what
//! it publishes and what it receives. Every track a participant publishes
//! ([`TrackId`]) is forwarded to every other participant of the room; the SFU
//! renegotiates (sends an [`SfuEvent::Offer`]) when that set changes.
//!
//! # Flow
//!
//! 1. `create_room`, then `join(room, participant, offer_sdp) -> answer_sdp`.
//! 2. Trickle ICE: candidates from the client go to `add_ice_candidate`;
//!    ours come as [`SfuEvent::IceCandidate`] (the answer already carries our
//!    host candidates: every participant shares one UDP port, and one TCP
//!    port for ICE-TCP when [`SfuConfig::tcp_bind`] is set).
//! 3. When the participant's tracks arrive they are published
//!    ([`SfuEvent::TrackPublished`]) and offered to the others; their answers
//!    go to `handle_answer`. A client's own renegotiation goes to `handle_offer`.
//! 4. `leave` / `close_room`, or the connection dying, ends with
//!    [`SfuEvent::ParticipantLeft`] and a [`CloseReason`].
//!
//! # Structure
//!
//! The decisions — when to ask a publisher for a keyframe
//! ([`keyframe::KeyframeRequester`]), which simulcast layer a subscriber gets
//! ([`layers::LayerSelector`], fed with each layer's measured bitrate and the
//! subscriber's send-side estimate: TWCC feedback and GCC, unpaced), how a
//! subscriber's stream stays continuous across switches
//! ([`rewrite::StreamRewriter`]), which packets were already forwarded
//! ([`dedup::SeqWindow`]), where a STUN request or an ICE-TCP connection
//! belongs ([`stun`], [`tcp_framing`]), when to offer and what to do with
//! an offer or answer ([`negotiation`]), whether a subscriber really gets
//! what it should ([`delivery`]), where a participant's packets come from
//! and go to when its address changes ([`path`]) — are plain structs and
//! functions driven by `handle_*(now, …)` / `poll_*`, tested without
//! sockets. One stage of small jobs sits in every connection's interceptor
//! chain ([`interceptor`]): [`feedback`] lets keyframe requests, REMB and
//! receiver reports reach the engine, [`nack_filter`] stops asking for
//! packets RTX already repaired or an outage took, [`fresh_repairs`] stops
//! resending packets too old to help, [`layer_ids`] keeps browsers naming
//! their simulcast layers so that renegotiation does not lose them. The engine (one task) owns the media socket
//! and the ICE-TCP connections' queues, and drives each participant's sans-I/O
//! `rtc::RTCPeerConnection`.
//!
//! # Out of scope
//!
//! HTTP, the database, users' roles: the SFU takes ids and SDP, and emits
//! events. TURN relaying is a separate server (coturn); the SFU only hands
//! its URLs to clients.

pub mod codec;
pub mod config;
pub mod dedup;
pub mod delivery;
mod engine;
pub mod error;
pub mod estimate;
pub mod event;
pub mod feedback;
pub mod fresh_repairs;
#[cfg(test)]
mod fuzz;
pub mod ids;
pub mod interceptor;
pub mod keyframe;
pub mod layer_ids;
pub mod layer_rtx;
pub mod layers;
pub mod nack_filter;
pub mod negotiation;
pub mod path;
pub mod rewrite;
mod rtcp_edit;
pub mod stun;
pub mod tcp_framing;

pub use config::SfuConfig;
pub use engine::EngineCounters;
pub use error::{Result, SfuError};
pub use event::{
    CloseReason, ConnectionState, Direction, IceCandidate, MediaKind, SfuEvent, StatsSample, TrackStats,
    VideoLevel, VideoOff,
};
pub use ids::{ConnectionId, ParticipantId, RoomId, TrackId};

use engine::{Command, Engine, Sockets};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::sync::{mpsc, oneshot};

/// Kernel buffer asked for on the media socket, each direction. Every
/// participant's packets share this one socket, so its receive queue must
/// absorb the engine's pauses for all of them at once: at the default
/// 208 KiB (about 90 full-size datagrams) 40 consultations on the benchmark
/// machine overflowed it (up to 0.7 % of packets dropped by the kernel,
/// 2.5 % on the worst track, frames late by their retransmission). The kernel caps the request at
/// `net.core.rmem_max` / `wmem_max` (deploy/README.md raises them).
pub const MEDIA_SOCKET_BUFFER: usize = 8 << 20;
/// Below this, the receive buffer we got is reported at start-up.
const MEDIA_SOCKET_BUFFER_WARN: usize = 2 << 20;

/// Asks for [`MEDIA_SOCKET_BUFFER`] on the media socket; returns the
/// receive buffer the kernel granted.
fn size_media_buffers(socket: &tokio::net::UdpSocket) -> std::io::Result<usize> {
    let s = socket2::SockRef::from(socket);
    // Best effort: an unprivileged request above the sysctl cap is clamped,
    // not refused, and a smaller buffer still works.
    let _ = s.set_recv_buffer_size(MEDIA_SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(MEDIA_SOCKET_BUFFER);
    s.recv_buffer_size()
}

/// A handle to the running SFU. Cheap to clone; the engine stops on
/// [`Sfu::shutdown`] or when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Sfu {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    local_tcp_addr: Option<SocketAddr>,
}

/// The address to announce for a socket bound to `bound`.
fn announced(config: &SfuConfig, bound: SocketAddr) -> SocketAddr {
    let ip = match config.public_ip {
        Some(ip) => ip,
        None if bound.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => bound.ip(),
    };
    SocketAddr::new(ip, bound.port())
}

impl Sfu {
    /// Binds the media socket (and the ICE-TCP listener, if configured) and
    /// starts the engine on the current tokio runtime.
    pub async fn start(config: SfuConfig) -> Result<Sfu> {
        let udp = tokio::net::UdpSocket::bind(config.udp_bind)
            .await
            .map_err(|source| SfuError::Bind {
                what: "UDP",
                addr: config.udp_bind,
                source,
            })?;
        let udp_host = announced(&config, udp.local_addr()?);
        let granted = size_media_buffers(&udp)?;
        if granted < MEDIA_SOCKET_BUFFER_WARN {
            tracing::warn!(
                granted_kib = granted / 1024,
                wanted_kib = MEDIA_SOCKET_BUFFER / 1024,
                "media socket receive buffer is small: packets will be dropped under load; \
                 raise net.core.rmem_max and net.core.wmem_max (deploy/README.md)"
            );
        } else {
            tracing::debug!(granted_kib = granted / 1024, "media socket receive buffer");
        }
        let tcp = match config.tcp_bind {
            Some(addr) => {
                let listener =
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|source| SfuError::Bind {
                            what: "TCP",
                            addr,
                            source,
                        })?;
                let host = announced(&config, listener.local_addr()?);
                Some((listener, host))
            }
            None => None,
        };
        let local_tcp_addr = tcp.as_ref().map(|(_, host)| *host);
        let engine = Engine::new(std::time::Instant::now(), udp_host, local_tcp_addr, config)?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(engine::driver::run(engine, Sockets { udp, tcp }, rx));
        Ok(Sfu {
            commands: tx,
            local_addr: udp_host,
            local_tcp_addr,
        })
    }

    /// The address of the shared media port, as put in our UDP ICE candidate.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the ICE-TCP port, as put in our passive TCP candidate
    /// (`None` when ICE-TCP is off).
    pub fn local_tcp_addr(&self) -> Option<SocketAddr> {
        self.local_tcp_addr
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// A new stream of every event from now on.
    pub async fn events(&self) -> Result<mpsc::UnboundedReceiver<SfuEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Subscribe(tx))
            .await
            .map_err(|_| SfuError::Stopped)?;
        Ok(rx)
    }

    /// Creates an empty room.
    pub async fn create_room(&self, room: RoomId) -> Result<()> {
        self.call(|r| Command::CreateRoom(room, r)).await
    }

    /// Closes a room: every participant leaves with [`CloseReason::RoomClosed`].
    pub async fn close_room(&self, room: RoomId) -> Result<()> {
        self.call(|r| Command::CloseRoom(room, r)).await
    }

    /// Adds a participant from its offer; returns the SDP answer. A
    /// participant already in the room comes back with a fresh connection:
    /// it takes over its seat (the old connection closes, its tracks are
    /// replaced by the new one's), and no [`SfuEvent::ParticipantLeft`] is
    /// sent for it.
    pub async fn join(&self, room: RoomId, participant: ParticipantId, offer_sdp: String) -> Result<String> {
        self.join_connection(room, participant, offer_sdp)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`Self::join`], also naming the connection it made: the one a later
    /// [`SfuEvent::ParticipantLeft`] names when it ends.
    pub async fn join_connection(
        &self,
        room: RoomId,
        participant: ParticipantId,
        offer_sdp: String,
    ) -> Result<(String, ConnectionId)> {
        self.call(|reply| Command::Join {
            room,
            participant,
            offer: offer_sdp,
            reply,
        })
        .await
    }

    /// The participants a room has now, each with its current connection.
    pub async fn participants(&self, room: RoomId) -> Result<Vec<(ParticipantId, ConnectionId)>> {
        self.call(|reply| Command::Participants(room, reply)).await
    }

    /// A renegotiation offer from the participant (an ICE restart, new
    /// tracks); returns the SDP answer, or `None` when it crossed an offer of
    /// ours: the SFU is the impolite peer and ignores it, and the client
    /// answers ours first (see [`negotiation`]).
    pub async fn handle_offer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<Option<String>> {
        self.call(|reply| Command::Offer {
            room,
            participant,
            sdp,
            reply,
        })
        .await
    }

    /// The participant's answer to an [`SfuEvent::Offer`].
    pub async fn handle_answer(&self, room: RoomId, participant: ParticipantId, sdp: String) -> Result<()> {
        self.call(|reply| Command::Answer {
            room,
            participant,
            sdp,
            reply,
        })
        .await
    }

    /// A trickled ICE candidate from the participant.
    pub async fn add_ice_candidate(
        &self,
        room: RoomId,
        participant: ParticipantId,
        candidate: IceCandidate,
    ) -> Result<()> {
        self.call(|reply| Command::Candidate {
            room,
            participant,
            candidate,
            reply,
        })
        .await
    }

    /// Removes a participant ([`CloseReason::Removed`]).
    pub async fn leave(&self, room: RoomId, participant: ParticipantId) -> Result<()> {
        self.remove(room, participant, CloseReason::Removed).await
    }

    /// Removes a participant for this reason.
    pub async fn remove(&self, room: RoomId, participant: ParticipantId, reason: CloseReason) -> Result<()> {
        self.call(|reply| Command::Remove {
            room,
            participant,
            reason,
            reply,
        })
        .await
    }

    /// Whether a signaling socket can carry messages to the participant now.
    /// While it cannot, no offer is sent; when it can again, an offer still
    /// waiting for its answer is sent again at once (it may have been lost
    /// with the old socket).
    pub async fn set_reachable(
        &self,
        room: RoomId,
        participant: ParticipantId,
        reachable: bool,
    ) -> Result<()> {
        self.call(|reply| Command::Reachable {
            room,
            participant,
            reachable,
            reply,
        })
        .await
    }

    /// Whether the participant wants video. `false` (it chose audio only, on
    /// a weak link) stops forwarding every video track to it; `true` starts
    /// again from each track's next keyframe. Each change is reported as
    /// [`SfuEvent::VideoLevel`].
    pub async fn set_video_wanted(
        &self,
        room: RoomId,
        participant: ParticipantId,
        wanted: bool,
    ) -> Result<()> {
        self.call(|reply| Command::WantVideo {
            room,
            participant,
            wanted,
            reply,
        })
        .await
    }

    /// Whole-engine counters (datagrams, forwarded packets, keyframe requests).
    pub async fn counters(&self) -> Result<EngineCounters> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Counters(tx))
            .await
            .map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)
    }

    /// Closes every room ([`CloseReason::Shutdown`]) and stops the engine.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_media_socket_gets_the_large_buffer_the_system_allows() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let default = socket2::SockRef::from(&socket).recv_buffer_size().expect("size");
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .expect("rmem_max")
            .trim()
            .parse()
            .expect("a number");
        let granted = size_media_buffers(&socket).expect("sized");
        // Linux reports twice what it reserves for bookkeeping; at least the
        // request or the cap, whichever is smaller, must have been granted.
        assert!(
            granted >= MEDIA_SOCKET_BUFFER.min(cap),
            "granted {granted}, cap {cap}"
        );
        if cap > default {
            assert!(granted > default, "the default {default} was left in place");
        }
    }
}
