//! The media engine: every peer connection and every forwarding decision,
//! sans-I/O. Its inputs are `handle_datagram`, `handle_tcp_event`,
//! `handle_command` and `handle_timeout`, each with the time it happened;
//! its outputs are `poll_transmit` (datagrams for the UDP socket),
//! [`SfuEvent`]s to subscribers, command replies, and `poll_timeout`. One
//! task runs it (`driver.rs`: the UDP socket, the ICE-TCP tasks' channels,
//! the clock); a test runs it with in-memory peers on a clock of its own
//! (`tests.rs`).
//!
//! Datagrams on the shared port are routed to a peer by their source address
//! once known, before that by the STUN USERNAME (our ufrag) of a request
//! whose integrity checks out; ICE-TCP connections the same way by their
//! first packet (`net.rs`, `tcp.rs`). Each peer connection is driven
//! sans-I/O (`handle_read`/`handle_timeout` in, `poll_write`/`poll_read`/
//! `poll_event` out); media it yields is written into the subscribers'
//! connections (`forward.rs`), with the decisions taken by the plain structs
//! of [`crate::keyframe`], [`crate::layers`] and [`crate::rewrite`].
//! Signaling (`signaling.rs`) and room membership (`room.rs`) change the
//! set of connections. One thread per engine, no locks: the per-packet path
//! is a few hash lookups and the SRTP work the connection does anyway.
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | the engine's state and deadlines |
//! | `driver.rs` | the sockets and the clock: the loop around the engine |
//! | `net.rs` | packets in (routing) and out (UDP or TCP), draining peers |
//! | `arrival.rs` | reading a datagram with the time it reached the host |
//! | `tcp.rs` | the ICE-TCP listener and its connections |
//! | `signaling.rs` | commands: join, offer/answer, candidates, renegotiation |
//! | `room.rs` | publish, subscribe, leave |
//! | `forward.rs` | RTP to subscribers, feedback, keyframe requests |
//! | `stats.rs` | stats samples and the bandwidth estimate |
//! | `peer.rs` | building a participant's connection |
//! | `tests.rs` | the engine with in-memory peers on a test clock |

mod arrival;
pub(crate) mod driver;
mod forward;
mod net;
mod peer;
mod room;
mod signaling;
mod stats;
mod tcp;
#[cfg(test)]
mod tests;

use crate::codec::Codec;
use crate::codec::MIME_TYPE_RED;
use crate::config::SfuConfig;
use crate::error::{Result, SfuError};
use crate::event::{
    CloseReason, ConnectionState, Direction, IceCandidate, MediaKind, SfuEvent, StatsSample, TrackStats,
    VideoLevel, VideoOff,
};
use crate::ids::{ConnectionId, ParticipantId, RoomId, TrackId};
use crate::keyframe::KeyframeRequester;
use crate::layers::{LayerDecision, LayerPolicy, LayerSelector};
use crate::rewrite::StreamRewriter;
use crate::stun;
use bytes::BytesMut;
use net::Net;
use peer::{add_host_candidates, new_peer_connection, prefer_red, webrtc, Counters, Peer, PeerKey};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::peer_connection::event::RTCTrackEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::statistics::StatsSelector;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// How often keyframe needs are re-examined while one is open (a
/// subscriber waits for a picture, a layer switch is pending, a request is
/// held back by the minimum interval).
const KEYFRAME_TICK: Duration = Duration::from_millis(50);
/// How often they are re-examined when none is: every place that opens one
/// asks for a look at once ([`Engine::keyframe_soon`]); this is the net
/// under those.
const KEYFRAME_IDLE: Duration = Duration::from_millis(500);
/// How often simulcast subscribers' layer choice reads the bandwidth estimate.
const ESTIMATE_TICK: Duration = Duration::from_millis(500);
/// How often every subscription is checked for media that should flow and
/// does not ([`crate::delivery`]).
const WATCH_TICK: Duration = Duration::from_millis(500);
/// A loop turn this long is logged: every packet waits meanwhile.
const SLOW_TURN: Duration = Duration::from_millis(100);
/// A publisher's track counts as sending while its last packet is this recent.
const SENDING_WITHIN: Duration = Duration::from_millis(1000);

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// Requests from [`Sfu`](crate::Sfu) handles to the engine task.
pub(crate) enum Command {
    CreateRoom(RoomId, Reply<()>),
    CloseRoom(RoomId, Reply<()>),
    Join {
        room: RoomId,
        participant: ParticipantId,
        offer: String,
        reply: Reply<(String, ConnectionId)>,
    },
    Offer {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
        reply: Reply<Option<String>>,
    },
    Answer {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
        reply: Reply<()>,
    },
    Candidate {
        room: RoomId,
        participant: ParticipantId,
        candidate: IceCandidate,
        reply: Reply<()>,
    },
    Remove {
        room: RoomId,
        participant: ParticipantId,
        reason: CloseReason,
        reply: Reply<()>,
    },
    Reachable {
        room: RoomId,
        participant: ParticipantId,
        reachable: bool,
        reply: Reply<()>,
    },
    WantVideo {
        room: RoomId,
        participant: ParticipantId,
        wanted: bool,
        reply: Reply<()>,
    },
    Participants(RoomId, Reply<Vec<(ParticipantId, ConnectionId)>>),
    Subscribe(mpsc::UnboundedSender<SfuEvent>),
    Counters(oneshot::Sender<EngineCounters>),
    Shutdown(oneshot::Sender<()>),
}

/// Whole-engine counters, for tests and metrics.
#[derive(Debug, Clone, Default)]
pub struct EngineCounters {
    /// Datagrams received on the media port.
    pub datagrams_in: u64,
    /// Datagrams that matched no participant and were dropped.
    pub datagrams_unrouted: u64,
    /// Datagrams a participant's connection rejected.
    pub datagrams_rejected: u64,
    /// RTP packets written to subscribers.
    pub rtp_forwarded: u64,
    /// RTP payload bytes of those packets (headers and SRTP tags not
    /// counted).
    pub rtp_forwarded_bytes: u64,
    /// RTP packets a publisher delivered twice, forwarded only the first time.
    pub rtp_duplicates: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// ICE-TCP connections accepted.
    pub tcp_connections: u64,
    /// ICE-TCP connections open now.
    pub tcp_open: u64,
    /// Packets received over ICE-TCP.
    pub tcp_frames_in: u64,
    /// ICE-TCP connections closed for what the client did: bad framing, an
    /// oversized frame, a first packet that names no participant, silence,
    /// not reading, or one connection over the limit.
    pub tcp_closed_bad: u64,
    /// Packets not sent because an ICE-TCP connection's queue was full.
    pub tcp_send_dropped: u64,
    /// Loop turns whose work took [`SLOW_TURN`] or more (every packet of
    /// the engine waited meanwhile); each is also logged.
    pub slow_turns: u64,
}

impl EngineCounters {
    /// Adds another engine's counters to these.
    pub fn add(&mut self, other: &EngineCounters) {
        let EngineCounters {
            datagrams_in,
            datagrams_unrouted,
            datagrams_rejected,
            rtp_forwarded,
            rtp_forwarded_bytes,
            rtp_duplicates,
            keyframe_requests,
            tcp_connections,
            tcp_open,
            tcp_frames_in,
            tcp_closed_bad,
            tcp_send_dropped,
            slow_turns,
        } = other;
        self.datagrams_in += datagrams_in;
        self.datagrams_unrouted += datagrams_unrouted;
        self.datagrams_rejected += datagrams_rejected;
        self.rtp_forwarded += rtp_forwarded;
        self.rtp_forwarded_bytes += rtp_forwarded_bytes;
        self.rtp_duplicates += rtp_duplicates;
        self.keyframe_requests += keyframe_requests;
        self.tcp_connections += tcp_connections;
        self.tcp_open += tcp_open;
        self.tcp_frames_in += tcp_frames_in;
        self.tcp_closed_bad += tcp_closed_bad;
        self.tcp_send_dropped += tcp_send_dropped;
        self.slow_turns += slow_turns;
    }
}

struct Subscription {
    sender_id: RTCRtpSenderId,
    rewriter: StreamRewriter,
    waiting_keyframe: bool,
    /// The subscriber asked for a keyframe (PLI/FIR) and has not had one since.
    keyframe_wanted: bool,
    selector: Option<LayerSelector>,
    payload_type: Option<u8>,
    /// The publisher sends redundant audio (RED) this subscriber did not
    /// accept: forward the primary Opus block only.
    strip_red: bool,
    counters: Counters,
    /// Is media reaching this subscriber as it should?
    watch: crate::delivery::DeliveryWatch,
    /// Reception reports about this stream from the subscriber.
    confirmed: u64,
    /// The last of them: cumulative packets lost, and jitter in RTP
    /// timestamp units. Read here, not from `rtc`'s stats, which take
    /// reports only from RRs (a subscriber that also publishes reports in
    /// its SRs).
    reported: Option<(i64, u32)>,
    /// What the subscriber lost of this stream lately (simulcast video):
    /// each packet it asked for again, counted once.
    loss: crate::layers::LossWindow,
    nacked: crate::dedup::SeqWindow,
    nacked_packets: u64,
}

impl Subscription {
    /// Feeds the layer selector (simulcast only) a downlink estimate, and
    /// what the subscriber lost lately; returns true when that turned video
    /// off (audio only).
    fn handle_estimate(&mut self, now: Instant, estimate_bps: u64) -> bool {
        let Some(sel) = self.selector.as_mut() else {
            return false;
        };
        // What it lost: what it asked for again. A subscriber that never
        // asked for anything may not ask at all (no NACK): nothing known,
        // and the estimate alone decides.
        let lost = self
            .loss
            .handle_counts(now, self.nacked_packets as i64, self.counters.packets)
            .filter(|_| self.nacked_packets > 0);
        sel.handle_loss(lost);
        tracing::trace!(estimate_bps, ?lost, layer = ?sel.current(), "estimate");
        let was_off = sel.video_off();
        sel.handle_estimate(now, estimate_bps);
        let off = !was_off && sel.video_off();
        if off {
            self.rewriter.splice();
        }
        off
    }
}

struct Published {
    publisher: PeerKey,
    participant: ParticipantId,
    kind: MediaKind,
    codec: Codec,
    rtc_codec: RTCRtpCodec,
    receiver_id: RTCRtpReceiverId,
    /// SSRCs of the layers, lowest first (one entry unless simulcast).
    layers: Vec<u32>,
    /// Simulcast only: each layer's rid, once known. Kept here because the
    /// receiving track forgets an SSRC's rid for a while after a
    /// renegotiation, and a layer can arrive in that window.
    rids: HashMap<u32, String>,
    /// Simulcast only: payload bytes per layer SSRC since the last estimate
    /// tick, and each layer's smoothed bitrate (`None`: nothing arrived in
    /// the last interval, the publisher has paused the layer).
    layer_bytes: HashMap<u32, u64>,
    layer_bps: HashMap<u32, Option<f64>>,
    /// Sequence numbers seen per SSRC: each packet is forwarded once.
    seen: HashMap<u32, crate::dedup::SeqWindow>,
    keyframe: KeyframeRequester,
    subs: HashMap<PeerKey, Subscription>,
    counters: Counters,
    /// When the publisher's last packet of this track arrived.
    last_packet_at: Option<Instant>,
}

struct Room {
    participants: BTreeMap<ParticipantId, PeerKey>,
    tracks: BTreeMap<TrackId, Published>,
}

/// A local ICE ufrag's owner and the password its requests are signed with.
struct Credentials {
    key: PeerKey,
    pwd: String,
}

pub(crate) struct Engine {
    net: Net,
    config: SfuConfig,
    rooms: HashMap<RoomId, Room>,
    peers: HashMap<PeerKey, Peer>,
    /// Every ICE ufrag we answered with (old ones stay until the peer leaves).
    by_ufrag: HashMap<String, Credentials>,
    /// UDP source addresses whose STUN checked out, and their peer.
    by_addr: HashMap<SocketAddr, PeerKey>,
    /// The SSRCs each peer publishes (to recognise its media from a new address).
    by_ssrc: HashMap<u32, PeerKey>,
    /// HMAC for checking STUN integrity before routing by ufrag.
    crypto: Arc<dyn rtc::crypto::RTCCryptoProvider>,
    listeners: Vec<mpsc::UnboundedSender<SfuEvent>>,
    /// Where connection ids come from: shared by every engine of one
    /// [`crate::Sfu`], so that an id names one connection in the whole node
    /// and a later connection has a larger one wherever its room lives.
    keys: Arc<std::sync::atomic::AtomicU64>,
    /// How many peers this engine holds, for placing new rooms
    /// ([`crate::Sfu::create_room`]); written when commands and timeouts
    /// change it, never per packet.
    load: Arc<std::sync::atomic::AtomicUsize>,
    dirty: Vec<PeerKey>,
    /// The list `dirty` is swapped with while it is worked through.
    dirty_spare: Vec<PeerKey>,
    /// What a peer connection read, between a drain and its processing
    /// (kept for its capacity).
    messages: Vec<rtc::peer_connection::message::TaggedRTCMessage>,
    /// Peers' deadlines, earliest first. An entry whose peer is gone or has
    /// since moved its deadline ([`Peer::armed`]) is stale and skipped, so
    /// that the next deadline is found without looking at every peer.
    deadlines: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    counters: EngineCounters,
    next_keyframe_tick: Instant,
    next_stats: Instant,
    last_stats_at: Instant,
    next_estimate: Instant,
    last_estimate_at: Instant,
    next_watch: Instant,
}

fn kind_of(kind: RtpCodecKind) -> MediaKind {
    match kind {
        RtpCodecKind::Audio => MediaKind::Audio,
        _ => MediaKind::Video,
    }
}

fn connection_state(s: RTCPeerConnectionState) -> ConnectionState {
    match s {
        RTCPeerConnectionState::Connecting => ConnectionState::Connecting,
        RTCPeerConnectionState::Connected => ConnectionState::Connected,
        RTCPeerConnectionState::Disconnected => ConnectionState::Disconnected,
        RTCPeerConnectionState::Failed => ConnectionState::Failed,
        RTCPeerConnectionState::Closed => ConnectionState::Closed,
        _ => ConnectionState::New,
    }
}

/// Our ICE ufrag as written in a local description.
fn sdp_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}

/// Our ICE password as written in a local description.
fn sdp_ice_pwd(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-pwd:"))
        .map(str::trim)
}

fn sdp_error(e: impl std::fmt::Display) -> SfuError {
    SfuError::InvalidSdp(e.to_string())
}

/// Runs `f`, turning a panic inside the WebRTC stack into an error for this
/// participant only, so hostile input can never take down other rooms.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(SfuError::WebRtc("internal panic while handling input".into())),
    }
}

/// The engine's sockets, as bound by [`crate::Sfu::start`], for the driver.
pub(crate) struct Sockets {
    pub udp: UdpSocket,
    /// The ICE-TCP listener and the address in our passive TCP candidate.
    pub tcp: Option<(tokio::net::TcpListener, SocketAddr)>,
}

impl Engine {
    /// An engine whose UDP host candidate is `udp_host` and whose ICE-TCP
    /// candidate, if any, is `tcp_host`. It owns no socket: the driver
    /// (`driver.rs`) or a test hands it what arrives and sends what it polls.
    pub(crate) fn new(
        now: Instant,
        udp_host: SocketAddr,
        tcp_host: Option<SocketAddr>,
        config: SfuConfig,
        keys: Arc<std::sync::atomic::AtomicU64>,
        load: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<Self> {
        let crypto = rtc::crypto::default_provider().map_err(webrtc)?;
        Ok(Self {
            net: Net {
                udp_host,
                tcp: tcp_host.map(tcp::TcpConns::new),
                transmits: Default::default(),
            },
            next_stats: now + config.stats_interval,
            config,
            rooms: HashMap::new(),
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_ssrc: HashMap::new(),
            crypto,
            listeners: Vec::new(),
            keys,
            load,
            dirty: Vec::new(),
            dirty_spare: Vec::new(),
            messages: Vec::new(),
            counters: EngineCounters::default(),
            deadlines: BinaryHeap::new(),
            next_keyframe_tick: now,
            last_stats_at: now,
            next_estimate: now + ESTIMATE_TICK,
            last_estimate_at: now,
            next_watch: now + WATCH_TICK,
        })
    }

    /// Makes the number of peers visible to room placement.
    pub(crate) fn publish_load(&self) {
        self.load
            .store(self.peers.len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// When [`Self::handle_timeout`] is next due.
    pub(crate) fn poll_timeout(&mut self) -> Instant {
        let ticks = self
            .next_keyframe_tick
            .min(self.next_stats)
            .min(self.next_estimate)
            .min(self.next_watch);
        match self.next_peer_deadline() {
            Some(t) => ticks.min(t),
            None => ticks,
        }
    }

    /// The earliest current entry of the deadline heap, stale ones dropped.
    fn next_peer_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, key))) = self.deadlines.peek() {
            if self.peers.get(&key).is_some_and(|p| p.armed == Some(t)) {
                return Some(t);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Queues a peer's deadline if it moved (after its connection was
    /// drained: every input to a connection marks it, and draining is where
    /// offers go out).
    fn rearm(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let d = p.deadline();
        if d != p.armed {
            p.armed = d;
            if let Some(t) = d {
                self.deadlines.push(Reverse((t, key)));
            }
            // Stale entries leave as they reach the top; a deadline that keeps
            // moving earlier leaves later ones behind, so keep the heap small.
            if self.deadlines.len() > 4 * self.peers.len() + 64 {
                self.deadlines = self
                    .peers
                    .iter()
                    .filter_map(|(&k, p)| p.armed.map(|t| Reverse((t, k))))
                    .collect();
            }
        }
    }

    fn emit(&mut self, event: SfuEvent) {
        self.listeners.retain(|l| l.send(event.clone()).is_ok());
    }

    fn mark(&mut self, key: PeerKey) {
        if !self.dirty.contains(&key) {
            self.dirty.push(key);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while self.next_peer_deadline().is_some_and(|t| t <= now) {
            let Some(Reverse((_, key))) = self.deadlines.pop() else {
                break;
            };
            if let Some(p) = self.peers.get_mut(&key) {
                p.armed = None;
                if p.pc.poll_timeout().is_some_and(|d| d <= now) {
                    if let Err(e) = guarded(|| p.pc.handle_timeout(now).map_err(webrtc)) {
                        tracing::debug!(participant = %p.id, error = %e, "timeout handling failed");
                    }
                }
                // Draining re-arms it, and sends again an offer whose
                // answer is overdue.
                self.mark(key);
            }
        }
        if now >= self.next_watch {
            self.next_watch = now + WATCH_TICK;
            self.watch_tick(now);
        }
        if now >= self.next_estimate {
            self.next_estimate = now + ESTIMATE_TICK;
            self.estimate_tick(now);
            // Layer targets may have moved: a switch waits for a keyframe.
            self.keyframe_soon(now);
        }
        if now >= self.next_stats {
            self.next_stats = now + self.config.stats_interval;
            self.stats_tick(now);
            self.keyframe_soon(now);
        }
        // Last, so that what the ticks above opened is acted on in this turn.
        if now >= self.next_keyframe_tick {
            let open = self.keyframe_tick(now);
            self.next_keyframe_tick = now + if open { KEYFRAME_TICK } else { KEYFRAME_IDLE };
        }
    }

    /// Something may need a keyframe: look at once, not at the next idle tick.
    pub(super) fn keyframe_soon(&mut self, now: Instant) {
        self.next_keyframe_tick = self.next_keyframe_tick.min(now);
    }
}
