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
//!    host candidates: every participant of the room's engine shares one UDP
//!    port, and one TCP port for ICE-TCP when [`SfuConfig::tcp_bind`] is set).
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
//! their simulcast layers so that renegotiation does not lose them.
//!
//! # Engines
//!
//! A node runs one engine per core ([`SfuConfig::engines`]), each on a
//! thread of its own with a single-threaded runtime: it owns its media
//! socket, its ICE-TCP listener and connections' queues, its timers, and
//! drives its participants' sans-I/O `rtc::RTCPeerConnection`s. A room
//! lives on one engine, placed on the least loaded when it is created
//! (`placement.rs`); its participants reach that engine through the ports in
//! its candidates (engine `i` binds the configured ports plus `i`). Nothing
//! on the packet path is shared between engines: the [`Sfu`] handle routes
//! each command to the room's engine and merges their events.
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
mod placement;
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

use engine::{Command, Engine, Reply, Sockets};
use placement::Placement;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
fn size_media_buffers(socket: &std::net::UdpSocket) -> std::io::Result<usize> {
    let s = socket2::SockRef::from(socket);
    // Best effort: an unprivileged request above the sysctl cap is clamped,
    // not refused, and a smaller buffer still works.
    let _ = s.set_recv_buffer_size(MEDIA_SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(MEDIA_SOCKET_BUFFER);
    s.recv_buffer_size()
}

/// A handle to the running SFU. Cheap to clone; the engines stop on
/// [`Sfu::shutdown`] or when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Sfu {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    engines: Vec<EngineHandle>,
    /// Which engine hosts each room. Taken on room creation and on every
    /// command (to find the engine), never on the packet path.
    placement: Mutex<Placement>,
}

/// One engine as the handles see it: its command queue, its addresses, and
/// how many peers it holds.
#[derive(Debug)]
struct EngineHandle {
    commands: mpsc::Sender<Command>,
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
    load: Arc<AtomicUsize>,
}

/// What one engine hosts now ([`Sfu::engines`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineLoad {
    /// Its media port, as in its UDP ICE candidates.
    pub udp: SocketAddr,
    /// Its ICE-TCP port, as in its passive TCP candidates.
    pub tcp: Option<SocketAddr>,
    /// Rooms placed on it.
    pub rooms: usize,
    /// Participants' connections it holds.
    pub participants: usize,
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

/// Engine `i`'s address: the first engine's port plus `i`, or a free port
/// for each when the first is 0.
fn nth_port(first: SocketAddr, i: usize, what: &'static str) -> Result<SocketAddr> {
    if first.port() == 0 {
        return Ok(first);
    }
    let port = u16::try_from(i)
        .ok()
        .and_then(|i| first.port().checked_add(i))
        .ok_or_else(|| SfuError::Bind {
            what,
            addr: first,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "one port per engine runs past 65535: choose a lower first port or fewer engines",
            ),
        })?;
    Ok(SocketAddr::new(first.ip(), port))
}

/// One engine's sockets, bound and sized, before its thread starts.
struct Bound {
    udp: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
}

fn bind_engine(config: &SfuConfig, i: usize) -> Result<Bound> {
    let addr = nth_port(config.udp_bind, i, "UDP")?;
    let udp = std::net::UdpSocket::bind(addr).map_err(|source| SfuError::Bind {
        what: "UDP",
        addr,
        source,
    })?;
    udp.set_nonblocking(true)?;
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
        Some(first) => {
            let addr = nth_port(first, i, "TCP")?;
            let listener = std::net::TcpListener::bind(addr).map_err(|source| SfuError::Bind {
                what: "TCP",
                addr,
                source,
            })?;
            listener.set_nonblocking(true)?;
            Some(listener)
        }
        None => None,
    };
    Ok(Bound { udp, tcp })
}

impl Sfu {
    /// Binds every engine's media socket (and ICE-TCP listener, if
    /// configured), then starts each engine on a thread of its own with its
    /// own single-threaded runtime: a room's packets are handled start to
    /// end on one thread, and engines share nothing on the packet path.
    pub async fn start(config: SfuConfig) -> Result<Sfu> {
        let count = config.engine_count();
        // Bind everything first, so that a port in use fails the start
        // before any engine runs.
        let bound = (0..count)
            .map(|i| bind_engine(&config, i))
            .collect::<Result<Vec<_>>>()?;
        let keys = Arc::new(AtomicU64::new(0));
        let mut engine_config = config.clone();
        engine_config.tcp_max_connections = config.tcp_max_connections.div_ceil(count).max(1);
        let mut engines = Vec::with_capacity(count);
        for (i, Bound { udp, tcp }) in bound.into_iter().enumerate() {
            let udp_host = announced(&config, udp.local_addr()?);
            let tcp_host = match &tcp {
                Some(l) => Some(announced(&config, l.local_addr()?)),
                None => None,
            };
            let load = Arc::new(AtomicUsize::new(0));
            let engine = Engine::new(
                std::time::Instant::now(),
                udp_host,
                tcp_host,
                engine_config.clone(),
                keys.clone(),
                load.clone(),
            )?;
            let (tx, rx) = mpsc::channel(1024);
            let (ready, started) = oneshot::channel::<Result<()>>();
            std::thread::Builder::new()
                .name(format!("media-engine-{i}"))
                .spawn(move || run_engine(engine, udp, tcp.zip(tcp_host), rx, ready))?;
            started.await.map_err(|_| SfuError::Stopped)??;
            engines.push(EngineHandle {
                commands: tx,
                udp: udp_host,
                tcp: tcp_host,
                load,
            });
        }
        tracing::debug!(engines = count, "media engines started");
        Ok(Sfu {
            shared: Arc::new(Shared {
                placement: Mutex::new(Placement::new(count)),
                engines,
            }),
        })
    }

    /// The first engine's media port, as put in its UDP ICE candidates
    /// ([`Self::engines`] has every engine's).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.engines[0].udp
    }

    /// The first engine's ICE-TCP port, as put in its passive TCP candidates
    /// (`None` when ICE-TCP is off).
    pub fn local_tcp_addr(&self) -> Option<SocketAddr> {
        self.shared.engines[0].tcp
    }

    /// Every engine's addresses and what it hosts now.
    pub fn engines(&self) -> Vec<EngineLoad> {
        let placement = self.placement();
        self.shared
            .engines
            .iter()
            .zip(placement.rooms_per_engine())
            .map(|(e, &rooms)| EngineLoad {
                udp: e.udp,
                tcp: e.tcp,
                rooms,
                participants: e.load.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        // The map stays consistent whatever panicked while it was held.
        self.shared
            .placement
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The engine hosting `room`.
    fn engine_of(&self, room: &RoomId) -> Result<&EngineHandle> {
        let i = self
            .placement()
            .engine_of(room)
            .ok_or_else(|| SfuError::UnknownRoom(room.clone()))?;
        Ok(&self.shared.engines[i])
    }

    async fn call<T>(
        &self,
        engine: &EngineHandle,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        engine
            .commands
            .send(make(tx))
            .await
            .map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// A command about a room, to the engine hosting it.
    async fn call_room<T>(
        &self,
        room: &RoomId,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let engine = self.engine_of(room)?;
        self.call(engine, make).await
    }

    /// A new stream of every event from now on.
    ///
    /// Every engine's events go to the one stream; a room's come from one
    /// engine, in the order it emitted them.
    pub async fn events(&self) -> Result<mpsc::UnboundedReceiver<SfuEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        for engine in &self.shared.engines {
            engine
                .commands
                .send(Command::Subscribe(tx.clone()))
                .await
                .map_err(|_| SfuError::Stopped)?;
        }
        Ok(rx)
    }

    /// Creates an empty room on the least loaded engine (`placement.rs`).
    pub async fn create_room(&self, room: RoomId) -> Result<()> {
        let r = self
            .placed(
                |placement| {
                    if placement.engine_of(&room).is_some() {
                        return Err(SfuError::RoomExists(room.clone()));
                    }
                    let participants: Vec<usize> = self
                        .shared
                        .engines
                        .iter()
                        .map(|e| e.load.load(Ordering::Relaxed))
                        .collect();
                    Ok(placement.choose(&participants))
                },
                |placement, i| placement.insert(room.clone(), i),
                |reply| Command::CreateRoom(room.clone(), reply),
            )
            .await?;
        // The engine refused: forget the place taken for it.
        if r.is_err() {
            self.placement().remove(&room);
        }
        r
    }

    /// Closes a room: every participant leaves with [`CloseReason::RoomClosed`].
    pub async fn close_room(&self, room: RoomId) -> Result<()> {
        // Forgotten with its closing queued: the same id created again is a
        // new room, queued behind the closing.
        self.placed(
            |placement| {
                placement
                    .engine_of(&room)
                    .ok_or_else(|| SfuError::UnknownRoom(room.clone()))
            },
            |placement, _| {
                placement.remove(&room);
            },
            |reply| Command::CloseRoom(room.clone(), reply),
        )
        .await?
    }

    /// Queues `make`'s command on the engine `decide` picks in one step with
    /// `apply`'s change to the placement: a room becomes known (or
    /// forgotten) only with its creation (or closing) queued on its engine,
    /// so that a command about it from another task (a second page joining
    /// at the same moment) is queued behind, never ahead. When that
    /// engine's queue is full, waits for room in it and decides again.
    /// The outer error: nothing was queued; the inner result: the engine's.
    async fn placed<T>(
        &self,
        decide: impl Fn(&Placement) -> Result<usize>,
        apply: impl FnOnce(&mut Placement, usize),
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Result<T>> {
        let (reply, answer) = oneshot::channel();
        loop {
            let i = {
                let mut placement = self.placement();
                let i = decide(&placement)?;
                match self.shared.engines[i].commands.try_reserve() {
                    Ok(permit) => {
                        apply(&mut placement, i);
                        permit.send(make(reply));
                        break;
                    }
                    Err(mpsc::error::TrySendError::Full(())) => i,
                    Err(mpsc::error::TrySendError::Closed(())) => return Err(SfuError::Stopped),
                }
            };
            drop(
                self.shared.engines[i]
                    .commands
                    .reserve()
                    .await
                    .map_err(|_| SfuError::Stopped)?,
            );
        }
        answer.await.map_err(|_| SfuError::Stopped)
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
        self.call_room(&room.clone(), |reply| Command::Join {
            room,
            participant,
            offer: offer_sdp,
            reply,
        })
        .await
    }

    /// The participants a room has now, each with its current connection.
    pub async fn participants(&self, room: RoomId) -> Result<Vec<(ParticipantId, ConnectionId)>> {
        self.call_room(&room.clone(), |reply| Command::Participants(room, reply))
            .await
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
        self.call_room(&room.clone(), |reply| Command::Offer {
            room,
            participant,
            sdp,
            reply,
        })
        .await
    }

    /// The participant's answer to an [`SfuEvent::Offer`].
    pub async fn handle_answer(&self, room: RoomId, participant: ParticipantId, sdp: String) -> Result<()> {
        self.call_room(&room.clone(), |reply| Command::Answer {
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
        self.call_room(&room.clone(), |reply| Command::Candidate {
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
        self.call_room(&room.clone(), |reply| Command::Remove {
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
        self.call_room(&room.clone(), |reply| Command::Reachable {
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
        self.call_room(&room.clone(), |reply| Command::WantVideo {
            room,
            participant,
            wanted,
            reply,
        })
        .await
    }

    /// Counters (datagrams, forwarded packets, keyframe requests) summed
    /// over every engine.
    pub async fn counters(&self) -> Result<EngineCounters> {
        let mut sum = EngineCounters::default();
        for c in self.engine_counters().await? {
            sum.add(&c);
        }
        Ok(sum)
    }

    /// Each engine's counters, in the order of [`Self::engines`].
    pub async fn engine_counters(&self) -> Result<Vec<EngineCounters>> {
        let mut all = Vec::with_capacity(self.shared.engines.len());
        for engine in &self.shared.engines {
            let (tx, rx) = oneshot::channel();
            engine
                .commands
                .send(Command::Counters(tx))
                .await
                .map_err(|_| SfuError::Stopped)?;
            all.push(rx.await.map_err(|_| SfuError::Stopped)?);
        }
        Ok(all)
    }

    /// Closes every room ([`CloseReason::Shutdown`]) and stops the engines.
    pub async fn shutdown(&self) {
        let mut stopped = Vec::new();
        for engine in &self.shared.engines {
            let (tx, rx) = oneshot::channel();
            if engine.commands.send(Command::Shutdown(tx)).await.is_ok() {
                stopped.push(rx);
            }
        }
        for rx in stopped {
            let _ = rx.await;
        }
    }
}

/// An engine's thread: a single-threaded runtime for its sockets, timers
/// and ICE-TCP tasks, until the engine stops.
fn run_engine(
    engine: Engine,
    udp: std::net::UdpSocket,
    tcp: Option<(std::net::TcpListener, SocketAddr)>,
    commands: mpsc::Receiver<Command>,
    ready: oneshot::Sender<Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    runtime.block_on(async move {
        // Registered with this thread's runtime, so they must be made here.
        let sockets = (|| {
            let udp = tokio::net::UdpSocket::from_std(udp)?;
            let tcp = match tcp {
                Some((l, host)) => Some((tokio::net::TcpListener::from_std(l)?, host)),
                None => None,
            };
            Ok::<_, std::io::Error>(Sockets { udp, tcp })
        })();
        match sockets {
            Ok(sockets) => {
                let _ = ready.send(Ok(()));
                engine::driver::run(engine, sockets, commands).await;
            }
            Err(e) => {
                let _ = ready.send(Err(e.into()));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_engine_counts_no_slow_turn_for_the_time_it_waited() {
        let sfu = Sfu::start(SfuConfig::loopback()).await.expect("started");
        sfu.create_room(RoomId::new("idle")).await.expect("a room");
        // Idle engines wake every half second at most: a few waits of
        // 500 ms each, none of them work.
        tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
        let counters = sfu.counters().await.expect("counters");
        assert_eq!(counters.slow_turns, 0, "{counters:?}");
        sfu.shutdown().await;
    }

    #[tokio::test]
    async fn the_media_socket_gets_the_large_buffer_the_system_allows() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
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
