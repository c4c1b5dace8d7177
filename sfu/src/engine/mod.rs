//! The I/O edge: one task owns the media socket and every peer connection.
//!
//! Datagrams on the shared port are routed to a peer by their source address
//! once known, before that by the STUN USERNAME (our ufrag). Each peer
//! connection is driven sans-I/O (`handle_read`/`handle_timeout` in,
//! `poll_write`/`poll_read`/`poll_event` out); media it yields is written
//! into the subscribers' connections (`forward.rs`), with the decisions taken
//! by the plain structs of [`crate::keyframe`], [`crate::layers`] and
//! [`crate::rewrite`]. One task, no locks: the per-packet path is a few hash
//! lookups and the SRTP work the connection does anyway.

mod forward;
mod peer;
mod room;
mod stats;

use crate::codec::Codec;
use crate::config::SfuConfig;
use crate::error::{Result, SfuError};
use crate::event::{
    CloseReason, ConnectionState, Direction, IceCandidate, MediaKind, SfuEvent, StatsSample, TrackStats,
};
use crate::ids::{ParticipantId, RoomId, TrackId};
use crate::keyframe::KeyframeRequester;
use crate::layers::{LayerDecision, LayerPolicy, LayerSelector};
use crate::rewrite::StreamRewriter;
use crate::stun;
use bytes::BytesMut;
use peer::{add_host_candidate, new_peer_connection, webrtc, Counters, Peer, PeerKey};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::statistics::StatsSelector;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// How often keyframe needs are re-examined.
const KEYFRAME_TICK: Duration = Duration::from_millis(50);
/// How often simulcast subscribers' layer choice reads the bandwidth estimate.
const ESTIMATE_TICK: Duration = Duration::from_millis(500);

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// Requests from [`Sfu`](crate::Sfu) handles to the engine task.
pub(crate) enum Command {
    CreateRoom(RoomId, Reply<()>),
    CloseRoom(RoomId, Reply<()>),
    Join {
        room: RoomId,
        participant: ParticipantId,
        offer: String,
        reply: Reply<String>,
    },
    Offer {
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
        reply: Reply<String>,
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
    Leave {
        room: RoomId,
        participant: ParticipantId,
        reply: Reply<()>,
    },
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
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
}

struct Subscription {
    sender_id: RTCRtpSenderId,
    rewriter: StreamRewriter,
    waiting_keyframe: bool,
    selector: Option<LayerSelector>,
    payload_type: Option<u8>,
    counters: Counters,
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
    keyframe: KeyframeRequester,
    subs: HashMap<PeerKey, Subscription>,
    counters: Counters,
}

struct Room {
    participants: BTreeMap<ParticipantId, PeerKey>,
    tracks: BTreeMap<TrackId, Published>,
}

pub(crate) struct Engine {
    socket: UdpSocket,
    host: SocketAddr,
    config: SfuConfig,
    rooms: HashMap<RoomId, Room>,
    peers: HashMap<PeerKey, Peer>,
    by_ufrag: HashMap<String, PeerKey>,
    by_addr: HashMap<SocketAddr, PeerKey>,
    listeners: Vec<mpsc::UnboundedSender<SfuEvent>>,
    next_key: PeerKey,
    dirty: Vec<PeerKey>,
    counters: EngineCounters,
    next_keyframe_tick: Instant,
    next_stats: Instant,
    last_stats_at: Instant,
    next_estimate: Instant,
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

impl Engine {
    pub(crate) fn new(socket: UdpSocket, host: SocketAddr, config: SfuConfig) -> Self {
        let now = Instant::now();
        Self {
            socket,
            host,
            next_stats: now + config.stats_interval,
            config,
            rooms: HashMap::new(),
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            listeners: Vec::new(),
            next_key: 1,
            dirty: Vec::new(),
            counters: EngineCounters::default(),
            next_keyframe_tick: now,
            last_stats_at: now,
            next_estimate: now + ESTIMATE_TICK,
        }
    }

    /// The engine loop: until shutdown, wait for a datagram, a command or a deadline.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2048];
        // One timer, re-armed only when the deadline moves: creating a fresh
        // `Sleep` per datagram costs a timer-wheel insert and removal each time.
        let mut armed = self.next_deadline();
        let sleep = tokio::time::sleep_until(armed.into());
        tokio::pin!(sleep);
        loop {
            let deadline = self.next_deadline();
            if deadline != armed {
                armed = deadline;
                sleep.as_mut().reset(armed.into());
            }
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.handle_datagram(Instant::now(), from, &buf[..n]);
                        // Drain what else is queued before the bookkeeping below.
                        for _ in 0..64 {
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => self.handle_datagram(Instant::now(), from, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                    }
                }
                cmd = commands.recv() => {
                    match cmd {
                        Some(Command::Shutdown(done)) => {
                            self.shutdown();
                            let _ = done.send(());
                            return;
                        }
                        Some(cmd) => self.handle_command(Instant::now(), cmd),
                        None => {
                            self.shutdown();
                            return;
                        }
                    }
                }
                _ = &mut sleep => {
                    self.handle_timeout(Instant::now());
                    // Re-arm even if the next deadline equals the last one.
                    armed = self.next_deadline();
                    sleep.as_mut().reset(armed.into());
                }
            }
            self.flush(Instant::now());
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut d = self
            .next_keyframe_tick
            .min(self.next_stats)
            .min(self.next_estimate);
        for p in self.peers.values() {
            if let Some(t) = p.next_timeout {
                d = d.min(t);
            }
        }
        d
    }

    fn emit(&mut self, event: SfuEvent) {
        self.listeners.retain(|l| l.send(event.clone()).is_ok());
    }

    fn mark(&mut self, key: PeerKey) {
        if !self.dirty.contains(&key) {
            self.dirty.push(key);
        }
    }

    // ---------------------------------------------------------------- input

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.counters.datagrams_in += 1;
        let key = match self.by_addr.get(&from) {
            Some(&k) => Some(k),
            None => stun::local_ufrag(data).and_then(|u| self.by_ufrag.get(u).copied()),
        };
        let Some(key) = key else {
            self.counters.datagrams_unrouted += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            self.counters.datagrams_unrouted += 1;
            return;
        };
        if !peer.addrs.contains(&from) && stun::is_stun(data) {
            peer.addrs.push(from);
            self.by_addr.insert(from, key);
        }
        let host = self.host;
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: host,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        let r = guarded(|| peer.pc.handle_read(msg).map_err(webrtc));
        if let Err(e) = r {
            self.counters.datagrams_rejected += 1;
            tracing::debug!(participant = %peer.id, error = %e, "datagram rejected");
        }
        self.mark(key);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.next_timeout.is_some_and(|t| t <= now))
            .map(|(&k, _)| k)
            .collect();
        for key in due {
            if let Some(p) = self.peers.get_mut(&key) {
                p.next_timeout = None;
                if let Err(e) = guarded(|| p.pc.handle_timeout(now).map_err(webrtc)) {
                    tracing::debug!(participant = %p.id, error = %e, "timeout handling failed");
                }
                self.mark(key);
            }
        }
        if now >= self.next_keyframe_tick {
            self.next_keyframe_tick = now + KEYFRAME_TICK;
            self.keyframe_tick(now);
        }
        if now >= self.next_estimate {
            self.next_estimate = now + ESTIMATE_TICK;
            if self.config.bandwidth_estimation {
                self.estimate_tick(now);
            }
        }
        if now >= self.next_stats {
            self.next_stats = now + self.config.stats_interval;
            self.stats_tick(now);
        }
    }

    fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::CreateRoom(room, reply) => {
                let r = match self.rooms.entry(room) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        Err(SfuError::RoomExists(e.key().clone()))
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(Room {
                            participants: BTreeMap::new(),
                            tracks: BTreeMap::new(),
                        });
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Command::CloseRoom(room, reply) => {
                let r = self.close_room(&room, CloseReason::RoomClosed);
                let _ = reply.send(r);
            }
            Command::Join {
                room,
                participant,
                offer,
                reply,
            } => {
                let r = self.join(now, room, participant, offer);
                let _ = reply.send(r);
            }
            Command::Offer {
                room,
                participant,
                sdp,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .and_then(|k| self.handle_offer(now, k, sdp));
                let _ = reply.send(r);
            }
            Command::Answer {
                room,
                participant,
                sdp,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .and_then(|k| self.handle_answer(now, k, sdp));
                let _ = reply.send(r);
            }
            Command::Candidate {
                room,
                participant,
                candidate,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .and_then(|k| self.add_candidate(k, candidate));
                let _ = reply.send(r);
            }
            Command::Leave {
                room,
                participant,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .map(|k| self.remove_peer(k, CloseReason::Removed));
                let _ = reply.send(r);
            }
            Command::Subscribe(tx) => self.listeners.push(tx),
            Command::Counters(tx) => {
                let _ = tx.send(self.counters.clone());
            }
            Command::Shutdown(_) => {}
        }
    }

    fn peer_key(&self, room: &RoomId, participant: &ParticipantId) -> Result<PeerKey> {
        let r = self
            .rooms
            .get(room)
            .ok_or_else(|| SfuError::UnknownRoom(room.clone()))?;
        r.participants
            .get(participant)
            .copied()
            .ok_or_else(|| SfuError::UnknownParticipant {
                room: room.clone(),
                participant: participant.clone(),
            })
    }

    fn join(
        &mut self,
        now: Instant,
        room_id: RoomId,
        participant: ParticipantId,
        offer: String,
    ) -> Result<String> {
        let room = self
            .rooms
            .get(&room_id)
            .ok_or_else(|| SfuError::UnknownRoom(room_id.clone()))?;
        if room.participants.contains_key(&participant) {
            return Err(SfuError::ParticipantExists {
                room: room_id,
                participant,
            });
        }
        let host = self.host;
        let mut pc = new_peer_connection(now, &self.config)?;
        let answer = guarded(|| {
            let offer = RTCSessionDescription::offer(offer).map_err(sdp_error)?;
            pc.set_remote_description(now, offer).map_err(sdp_error)?;
            add_host_candidate(&mut pc, host)?;
            let answer = pc.create_answer(None).map_err(sdp_error)?;
            pc.set_local_description(now, answer.clone()).map_err(sdp_error)?;
            Ok(answer.sdp)
        })?;
        let ufrag = sdp_ufrag(&answer)
            .ok_or_else(|| SfuError::WebRtc("our answer has no ICE ufrag".into()))?
            .to_owned();
        let key = self.next_key;
        self.next_key += 1;
        self.by_ufrag.insert(ufrag.clone(), key);
        self.peers.insert(
            key,
            Peer {
                room: room_id.clone(),
                id: participant.clone(),
                pc,
                ufrag,
                addrs: Vec::new(),
                next_timeout: None,
                negotiation_needed: false,
                state: RTCPeerConnectionState::New,
                inbound: HashMap::new(),
                outbound: HashMap::new(),
                published_count: 0,
                closing: false,
            },
        );
        let existing: Vec<TrackId> = match self.rooms.get_mut(&room_id) {
            Some(room) => {
                room.participants.insert(participant, key);
                room.tracks.keys().cloned().collect()
            }
            None => Vec::new(),
        };
        for track in existing {
            self.subscribe(&room_id, &track, key);
        }
        self.mark(key);
        Ok(answer)
    }

    fn handle_offer(&mut self, now: Instant, key: PeerKey, sdp: String) -> Result<String> {
        let peer = self.peers.get_mut(&key).ok_or(SfuError::Stopped)?;
        let answer = guarded(|| {
            if peer.pc.pending_local_description().is_some() {
                // Glare: the client's offer wins; ours is rolled back and made again later.
                let rollback = RTCSessionDescription::rollback(None).map_err(sdp_error)?;
                peer.pc.set_local_description(now, rollback).map_err(sdp_error)?;
                peer.negotiation_needed = true;
            }
            let offer = RTCSessionDescription::offer(sdp).map_err(sdp_error)?;
            peer.pc.set_remote_description(now, offer).map_err(sdp_error)?;
            let answer = peer.pc.create_answer(None).map_err(sdp_error)?;
            peer.pc
                .set_local_description(now, answer.clone())
                .map_err(sdp_error)?;
            Ok(answer.sdp)
        });
        // An ICE restart gives us new credentials: route by the new ufrag too.
        if let Ok(sdp) = &answer {
            if let Some(ufrag) = sdp_ufrag(sdp) {
                if ufrag != peer.ufrag {
                    tracing::info!(participant = %peer.id, "ICE restart");
                    peer.ufrag = ufrag.to_owned();
                    self.by_ufrag.insert(ufrag.to_owned(), key);
                }
            }
        }
        self.mark(key);
        answer
    }

    fn handle_answer(&mut self, now: Instant, key: PeerKey, sdp: String) -> Result<()> {
        let peer = self.peers.get_mut(&key).ok_or(SfuError::Stopped)?;
        if peer.pc.pending_local_description().is_none() {
            return Err(SfuError::NegotiationState("no offer is outstanding".into()));
        }
        tracing::debug!(participant = %peer.id, "answer received");
        let r = guarded(|| {
            let answer = RTCSessionDescription::answer(sdp).map_err(sdp_error)?;
            peer.pc.set_remote_description(now, answer).map_err(sdp_error)
        });
        self.mark(key);
        r
    }

    fn add_candidate(&mut self, key: PeerKey, c: IceCandidate) -> Result<()> {
        let peer = self.peers.get_mut(&key).ok_or(SfuError::Stopped)?;
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        let r = guarded(|| {
            peer.pc
                .add_remote_candidate(init)
                .map_err(|e| SfuError::InvalidCandidate(e.to_string()))
        });
        self.mark(key);
        r
    }

    // --------------------------------------------------------------- output

    /// Drains every peer that may have output, until none has.
    fn flush(&mut self, now: Instant) {
        // Bounded: each round only re-marks peers that received forwarded media.
        for _ in 0..64 {
            if self.dirty.is_empty() {
                return;
            }
            let keys = std::mem::take(&mut self.dirty);
            for key in keys {
                self.drain(now, key);
            }
        }
    }

    fn drain(&mut self, now: Instant, key: PeerKey) {
        let (events, messages) = {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            while let Some(msg) = peer.pc.poll_write() {
                // UDP: a full socket buffer is loss, which RTP and ICE recover from.
                let _ = self.socket.try_send_to(&msg.message, msg.transport.peer_addr);
            }
            let mut events = Vec::new();
            while let Some(e) = peer.pc.poll_event() {
                events.push(e);
            }
            let mut messages = Vec::new();
            while let Some(m) = peer.pc.poll_read() {
                messages.push(m);
            }
            (events, messages)
        };
        for e in events {
            self.handle_event(key, e);
        }
        for TaggedRTCMessage { now: at, message } in messages {
            match message {
                RTCMessage::RtpPacket(track, packet) => self.forward_rtp(at, key, &track, packet),
                RTCMessage::RtcpPacket(track, packets) => self.handle_rtcp(at, key, &track, &packets),
                _ => {}
            }
        }
        self.negotiate(now, key);
        if let Some(peer) = self.peers.get_mut(&key) {
            while let Some(msg) = peer.pc.poll_write() {
                let _ = self.socket.try_send_to(&msg.message, msg.transport.peer_addr);
            }
            peer.next_timeout = peer.pc.poll_timeout();
        }
    }

    fn negotiate(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.negotiation_needed || !peer.is_stable() || peer.closing {
            return;
        }
        peer.negotiation_needed = false;
        let offer = guarded(|| {
            let offer = peer.pc.create_offer(None).map_err(webrtc)?;
            peer.pc
                .set_local_description(now, offer.clone())
                .map_err(webrtc)?;
            Ok(offer.sdp)
        });
        match offer {
            Ok(sdp) => {
                let (room, participant) = (peer.room.clone(), peer.id.clone());
                tracing::debug!(%participant, "renegotiation offer sent");
                self.emit(SfuEvent::Offer {
                    room,
                    participant,
                    sdp,
                });
            }
            Err(e) => tracing::warn!(participant = %peer.id, error = %e, "cannot create offer"),
        }
    }

    fn handle_event(&mut self, key: PeerKey, event: RTCPeerConnectionEvent) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let (room, participant) = (peer.room.clone(), peer.id.clone());
        match event {
            RTCPeerConnectionEvent::OnNegotiationNeededEvent => peer.negotiation_needed = true,
            RTCPeerConnectionEvent::OnIceCandidateEvent(ev) => {
                if let Ok(init) = ev.candidate.to_json() {
                    self.emit(SfuEvent::IceCandidate {
                        room,
                        participant,
                        candidate: IceCandidate {
                            candidate: init.candidate,
                            sdp_mid: init.sdp_mid,
                            sdp_mline_index: init.sdp_mline_index,
                            username_fragment: init.username_fragment,
                        },
                    });
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                peer.state = state;
                self.emit(SfuEvent::ConnectionState {
                    room,
                    participant,
                    state: connection_state(state),
                });
                match state {
                    RTCPeerConnectionState::Failed => self.remove_peer(key, CloseReason::ConnectionFailed),
                    RTCPeerConnectionState::Closed => self.remove_peer(key, CloseReason::PeerClosed),
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                self.publish(key, init.track_id, init.receiver_id, init.ssrc);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(rtc_track_id)) => {
                if let Some(track) = peer.inbound.get(&rtc_track_id).cloned() {
                    self.unpublish(&room, &track);
                }
            }
            _ => {}
        }
    }
}

/// Orders simulcast layers lowest first by their rid (`q`/`h`/`f`, or `0`/`1`/`2`
/// in the order the browser listed them); non-simulcast tracks have one layer.
fn sort_layers(peer: &mut Peer, receiver_id: RTCRtpReceiverId, layers: &mut [u32]) {
    if layers.len() < 2 {
        return;
    }
    let Some(receiver) = peer.pc.rtp_receiver(receiver_id) else {
        return;
    };
    let track = receiver.track();
    let rank = |ssrc: u32| -> (u8, String) {
        let rid = track.rid(ssrc).cloned().unwrap_or_default();
        let r = match rid.as_str() {
            "q" | "l" | "low" => 0,
            "h" | "m" | "mid" => 1,
            "f" | "hi" | "high" => 2,
            _ => 3,
        };
        (r, rid)
    };
    layers.sort_by_key(|&s| rank(s));
}
