//! The synthetic participant: a real `webrtc`-crate peer that publishes an
//! Opus tone and synthetic VP8 video, subscribes to whatever it is offered,
//! and measures what arrives.

use crate::lossy::{Impairment, LossyRuntime};
use crate::media::{self, FrameInfo};
use crate::report::{ParticipantReport, TrackReport};
use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::interceptor::{Interceptor, Packet as InterceptorPacket, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telehealth_sfu::IceCandidate;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, RTCStatsReportEntry, SettingEngineBuilder, StatsSelector,
};
use webrtc::rtp_transceiver::RtpSender;

/// What the participant sends and how its link behaves.
#[derive(Debug, Clone)]
pub struct ParticipantConfig {
    /// Name, used as stream id and in logs.
    pub name: String,
    /// Frequency of the published tone, Hz.
    pub tone_hz: f64,
    /// Publish audio.
    pub send_audio: bool,
    /// Publish video.
    pub send_video: bool,
    /// Video frames per second.
    pub video_fps: u32,
    /// Bytes per delta frame.
    pub frame_bytes: usize,
    /// Bytes per keyframe.
    pub keyframe_bytes: usize,
    /// Send a keyframe at this interval regardless of requests (None: only the
    /// first frame and on PLI/FIR, so a keyframe proves a request worked).
    pub keyframe_interval: Option<Duration>,
    /// Loss/delay on this participant's link.
    pub impairment: Arc<Impairment>,
    /// Reach the SFU over ICE-TCP only (a station whose UDP is blocked): no
    /// UDP socket at all, TCP candidates only, dialling the SFU's passive one.
    pub tcp_only: bool,
    /// STUN/TURN servers, as the signaling server hands them out (TURN with
    /// a time-limited credential). Default none: host candidates only.
    pub ice_servers: Vec<RTCIceServer>,
    /// Relay candidates only (`iceTransportPolicy: "relay"`): every packet
    /// goes through the TURN server, as for a station behind strict NAT.
    pub relay_only: bool,
    /// The loopback address the participant's sockets bind to (default
    /// 127.0.0.1). Give each participant of a test its own (127.0.0.3,
    /// 127.0.0.4…) and the link emulator tells their traffic apart.
    pub bind_ip: std::net::IpAddr,
    /// Publish the video as simulcast: one layer per entry, lowest first, as
    /// (rid, bytes per delta frame). Every layer carries the same frame
    /// counters, so a subscriber's continuity check holds across layer
    /// switches. Empty: one plain stream of `frame_bytes`.
    pub simulcast: Vec<(String, usize)>,
}

impl ParticipantConfig {
    /// Audio at `tone_hz` and 25 fps video, no impairment.
    pub fn new(name: &str, tone_hz: f64) -> Self {
        Self {
            name: name.to_owned(),
            tone_hz,
            send_audio: true,
            send_video: true,
            video_fps: 25,
            frame_bytes: 1500,
            keyframe_bytes: 5000,
            keyframe_interval: None,
            impairment: Impairment::none(),
            tcp_only: false,
            ice_servers: Vec::new(),
            relay_only: false,
            bind_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            simulcast: Vec::new(),
        }
    }

    /// The same participant, on this loopback address.
    pub fn bind_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.bind_ip = ip;
        self
    }

    /// The same participant, publishing its video as these simulcast layers
    /// (rid, bytes per delta frame; lowest first).
    pub fn simulcast(mut self, layers: &[(&str, usize)]) -> Self {
        self.simulcast = layers.iter().map(|(r, b)| ((*r).to_owned(), *b)).collect();
        self
    }

    /// The same participant, reaching the SFU through these TURN servers
    /// only (relay candidates only).
    pub fn relay_only(mut self, ice_servers: Vec<RTCIceServer>) -> Self {
        self.ice_servers = ice_servers;
        self.relay_only = true;
        self
    }

    /// The same participant, reaching the SFU over ICE-TCP only.
    pub fn tcp_only(mut self) -> Self {
        self.tcp_only = true;
        self
    }
}

#[derive(Default)]
struct Publisher {
    keyframe_requested: AtomicBool,
    plis_received: AtomicU64,
    frames_sent: AtomicU64,
    keyframes_sent: AtomicU64,
    audio_packets_sent: AtomicU64,
}

struct PendingFrame {
    first: Option<(u64, FrameInfo)>,
    last: Option<u64>,
    seqs: BTreeSet<u64>,
    touched: Instant,
}

/// Receive-side state of one remote track.
struct TrackRx {
    kind: RtpCodecKind,
    stream_id: String,
    first_packet_at: Instant,
    first_frame_at: Option<Instant>,
    ended: bool,
    highest_ext: Option<u64>,
    lowest_ext: u64,
    seen: BTreeSet<u64>,
    duplicates: u64,
    delays_ms: Vec<f64>,
    frames: BTreeMap<u32, PendingFrame>,
    complete: BTreeSet<u32>,
    counters_seen: BTreeSet<u32>,
    /// Keyframes among the complete frames.
    keyframes: BTreeSet<u32>,
    /// A decoder's view: the last frame it could show (each frame needs the
    /// one before it, or is a keyframe), how many, and when the last came.
    last_decoded: Option<u32>,
    frames_decoded: u64,
    last_decoded_at: Option<Instant>,
    /// Since when complete frames arrive that cannot be shown (a keyframe is
    /// missing), and when we last asked for one — as a browser's decoder
    /// does, with a PLI (RFC 4585 §6.3.1).
    stalled_since: Option<Instant>,
    last_pli: Option<Instant>,
    /// The last second of audio payloads, decoded only for a report.
    audio: VecDeque<Bytes>,
    /// The last [`HEARD_KEPT`] audio packets with their arrival, for
    /// [`SyntheticParticipant::audio_seconds`].
    heard: VecDeque<(u64, Instant, Bytes)>,
}

impl TrackRx {
    fn new(kind: RtpCodecKind, stream_id: String) -> Self {
        Self {
            kind,
            stream_id,
            first_packet_at: Instant::now(),
            first_frame_at: None,
            ended: false,
            highest_ext: None,
            lowest_ext: 0,
            seen: BTreeSet::new(),
            duplicates: 0,
            delays_ms: Vec::new(),
            frames: BTreeMap::new(),
            complete: BTreeSet::new(),
            counters_seen: BTreeSet::new(),
            keyframes: BTreeSet::new(),
            last_decoded: None,
            frames_decoded: 0,
            last_decoded_at: None,
            stalled_since: None,
            last_pli: None,
            audio: VecDeque::new(),
            heard: VecDeque::new(),
        }
    }

    fn extend(&mut self, seq: u16) -> u64 {
        match self.highest_ext {
            None => {
                // Start well above zero so earlier (reordered) packets still fit.
                let e = (1u64 << 32) + u64::from(seq);
                self.highest_ext = Some(e);
                self.lowest_ext = e;
                e
            }
            Some(h) => {
                let delta = i64::from(seq.wrapping_sub(h as u16) as i16);
                let e = (h as i64 + delta) as u64;
                if e > h {
                    self.highest_ext = Some(e);
                }
                self.lowest_ext = self.lowest_ext.min(e);
                e
            }
        }
    }

    fn on_rtp(&mut self, packet: rtc::rtp::Packet, now: Instant) {
        let ext = self.extend(packet.header.sequence_number);
        if !self.seen.insert(ext) {
            self.duplicates += 1;
            return;
        }
        match self.kind {
            RtpCodecKind::Audio => {
                self.delays_ms.push(media::delay_from_timestamp(
                    packet.header.timestamp,
                    media::SAMPLE_RATE,
                    media::unix_micros(),
                ));
                if self.audio.len() == AUDIO_KEPT {
                    self.audio.pop_front();
                }
                if self.heard.len() == HEARD_KEPT {
                    self.heard.pop_front();
                }
                self.heard.push_back((ext, now, packet.payload.clone()));
                self.audio.push_back(packet.payload);
            }
            _ => self.on_video(ext, packet, now),
        }
    }

    fn on_video(&mut self, ext: u64, packet: rtc::rtp::Packet, now: Instant) {
        let ts = packet.header.timestamp;
        let entry = self.frames.entry(ts).or_insert_with(|| PendingFrame {
            first: None,
            last: None,
            seqs: BTreeSet::new(),
            touched: now,
        });
        entry.seqs.insert(ext);
        entry.touched = now;
        if let Some(info) = media::parse_first_packet(&packet.payload) {
            entry.first = Some((ext, info));
            self.counters_seen.insert(info.counter);
        }
        if packet.header.marker {
            entry.last = Some(ext);
        }
        if let (Some((first, info)), Some(last)) = (entry.first, entry.last) {
            let all = last >= first && (first..=last).all(|s| entry.seqs.contains(&s));
            if all {
                self.frames.remove(&ts);
                self.complete.insert(info.counter);
                if info.keyframe {
                    self.keyframes.insert(info.counter);
                }
                let shown = self.frames_decoded;
                self.decode(now);
                if self.frames_decoded > shown {
                    self.stalled_since = None;
                } else {
                    self.stalled_since.get_or_insert(now);
                }
                self.first_frame_at.get_or_insert(now);
                let delay = (media::unix_micros() as f64 - info.sent_micros as f64) / 1000.0;
                self.delays_ms.push(delay);
            }
        }
        // Forget frames that can no longer complete.
        self.frames
            .retain(|_, f| now.saturating_duration_since(f.touched) < Duration::from_secs(3));
    }

    /// Whether to ask the sender for a keyframe now: frames have been
    /// arriving that cannot be shown for 200 ms, and the last request is
    /// half a second old.
    fn wants_keyframe(&mut self, now: Instant) -> bool {
        let stalled = self
            .stalled_since
            .is_some_and(|t| now.saturating_duration_since(t) >= Duration::from_millis(200));
        let waited = self
            .last_pli
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_millis(500));
        if stalled && waited {
            self.last_pli = Some(now);
            return true;
        }
        false
    }

    /// Shows what a decoder could show now: the frames after the last shown
    /// one, in order, without a hole; after a hole, only from a keyframe on.
    fn decode(&mut self, now: Instant) {
        loop {
            let next = match self.last_decoded {
                Some(d) => {
                    let follows = d.checked_add(1).filter(|n| self.complete.contains(n));
                    follows.or_else(|| self.keyframes.range(d.saturating_add(1)..).next().copied())
                }
                None => self.keyframes.first().copied(),
            };
            let Some(n) = next else { return };
            self.last_decoded = Some(n);
            self.frames_decoded += 1;
            self.last_decoded_at = Some(now);
        }
    }

    fn report(&self, track_id: &str) -> TrackReport {
        let expected = match self.highest_ext {
            Some(h) => h - self.lowest_ext + 1,
            None => 0,
        };
        let received = self.seen.len() as u64;
        let mut delays = self.delays_ms.clone();
        delays.sort_by(f64::total_cmp);
        let pct = |p: f64| -> Option<f64> {
            if delays.is_empty() {
                None
            } else {
                let i = ((delays.len() - 1) as f64 * p).round() as usize;
                Some(delays[i])
            }
        };
        let (frames_expected, max_gap) = match (self.counters_seen.first(), self.counters_seen.last()) {
            (Some(&a), Some(&b)) => {
                let mut gap = 0;
                let mut prev = None;
                for &c in &self.complete {
                    if let Some(p) = prev {
                        gap = gap.max(c - p - 1);
                    }
                    prev = Some(c);
                }
                (u64::from(b - a + 1), gap)
            }
            _ => (0, 0),
        };
        let pcm = media::decode_opus(&self.audio);
        TrackReport {
            track_id: track_id.to_owned(),
            stream_id: self.stream_id.clone(),
            audio: self.kind == RtpCodecKind::Audio,
            ended: self.ended,
            packets_received: received,
            packets_lost: expected.saturating_sub(received),
            duplicates: self.duplicates,
            delay_ms_median: pct(0.5),
            delay_ms_p95: pct(0.95),
            delay_ms_p99: pct(0.99),
            frames_complete: self.complete.len() as u64,
            frames_expected,
            max_frame_gap: u64::from(max_gap),
            first_counter: self.counters_seen.first().copied(),
            last_counter: self.counters_seen.last().copied(),
            first_packet_at: self.first_packet_at,
            first_frame_at: self.first_frame_at,
            frames_decoded: self.frames_decoded,
            last_decoded_at: self.last_decoded_at,
            dominant_frequency_hz: media::dominant_frequency(&pcm),
        }
    }
}

#[derive(Default)]
struct Shared {
    tracks: Mutex<HashMap<String, TrackRx>>,
    publisher: Publisher,
    /// Our SSRCs that a receiver report has acknowledged.
    acked: Arc<Mutex<BTreeSet<u32>>>,
}

/// Where [`ReportWatcher`] sits: nearest the wire.
const REPORT_WATCHER_SLOT: usize = 500;

/// Audio payloads a track keeps for its report's tone check: one second.
const AUDIO_KEPT: usize = (media::SAMPLE_RATE as usize) / media::FRAME_SAMPLES;
/// Audio packets a track keeps for the second-by-second check: 3 minutes.
const HEARD_KEPT: usize = 180 * AUDIO_KEPT;

/// Records which of our SSRCs the other side's receiver reports mention,
/// as a browser's sender does: it stops naming a simulcast layer (MID and
/// RID header extensions) once the layer's SSRC has been acknowledged.
#[derive(Default)]
struct ReportWatcher {
    acked: Arc<Mutex<BTreeSet<u32>>>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for ReportWatcher {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if let InterceptorPacket::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(rr) = p.as_any().downcast_ref::<ReceiverReport>() {
                    if let Ok(mut acked) = self.acked.lock() {
                        acked.extend(rr.reports.iter().map(|r| r.ssrc));
                    }
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }
    fn handle_timeout(&mut self, _now: Instant) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for ReportWatcher {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

struct Handler {
    shared: Arc<Shared>,
    candidates: mpsc::UnboundedSender<IceCandidate>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            let _ = self.candidates.send(IceCandidate {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_mline_index,
                username_fragment: c.username_fragment,
            });
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            let id = track.track_id().await.to_string();
            let stream = track.stream_id().await.to_string();
            if let Ok(mut t) = shared.tracks.lock() {
                t.insert(id.clone(), TrackRx::new(kind, stream));
            }
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let now = Instant::now();
                        let ssrc = p.header.ssrc;
                        let pli = match shared.tracks.lock() {
                            Ok(mut t) => t.get_mut(&id).is_some_and(|rx| {
                                rx.on_rtp(p, now);
                                rx.wants_keyframe(now)
                            }),
                            Err(_) => false,
                        };
                        if pli {
                            let _ = track
                                .write_rtcp(vec![Box::new(PictureLossIndication {
                                    sender_ssrc: 0,
                                    media_ssrc: ssrc,
                                })])
                                .await;
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
            if let Ok(mut t) = shared.tracks.lock() {
                if let Some(rx) = t.get_mut(&id) {
                    rx.ended = true;
                }
            }
        });
    }
}

struct Outgoing {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    mime: &'static str,
    /// Simulcast layers: (rid, SSRC, bytes per delta frame), lowest first.
    layers: Vec<(String, u32, usize)>,
}

/// A synthetic participant. Drop or [`close`](Self::close) it to leave.
pub struct SyntheticParticipant {
    config: ParticipantConfig,
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    state: watch::Receiver<RTCPeerConnectionState>,
    candidates: Mutex<Option<mpsc::UnboundedReceiver<IceCandidate>>>,
    audio: Option<Outgoing>,
    video: Option<Outgoing>,
    media_started: AtomicBool,
    /// Passive TCP candidates (address and port) already handed to the
    /// connection: the `webrtc` crate dials each one it is given, again.
    tcp_dialled: Mutex<BTreeSet<String>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn codec(mime: &str) -> RTCRtpCodec {
    if mime == MIME_TYPE_OPUS {
        RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        }
    } else {
        RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        }
    }
}

/// The address and port of a passive TCP candidate (`candidate:…` line), if it is one.
fn passive_tcp_address(candidate: &str) -> Option<String> {
    let c = candidate.trim().strip_prefix("a=").unwrap_or(candidate.trim());
    let f: Vec<&str> = c.split_whitespace().collect();
    let passive = c.starts_with("candidate:")
        && f.get(2).is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
        && c.contains("tcptype passive");
    if !passive {
        return None;
    }
    Some(format!("{} {}", f.get(4)?, f.get(5)?))
}

/// The passive TCP candidates of a session description, with the mid of the
/// m-section each is in.
fn passive_tcp_candidates(sdp: &str) -> Vec<(String, Option<String>)> {
    let mut mid: Option<String> = None;
    let mut found = Vec::new();
    for line in sdp.lines() {
        let line = line.trim();
        if line.starts_with("m=") {
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_owned());
        } else if let Some(c) = line.strip_prefix("a=") {
            if passive_tcp_address(c).is_some() {
                found.push((c.to_owned(), mid.clone()));
            }
        }
    }
    found
}

/// The ICE servers and transport policy the participant was configured with.
fn rtc_configuration(config: &ParticipantConfig) -> webrtc::peer_connection::RTCConfiguration {
    let builder = RTCConfigurationBuilder::new().with_ice_servers(config.ice_servers.clone());
    if config.relay_only {
        builder
            .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
            .build()
    } else {
        builder.build()
    }
}

/// The mid of the (first) video m-section of a session description.
fn video_mid(sdp: &str) -> Option<String> {
    let mut in_video = false;
    for line in sdp.lines() {
        let line = line.trim();
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        } else if let (true, Some(mid)) = (in_video, line.strip_prefix("a=mid:")) {
            return Some(mid.to_owned());
        }
    }
    None
}

/// Track ids (from `a=msid`) of the m-sections in which the offerer sends.
fn sending_track_ids(sdp: &str) -> Vec<String> {
    let mut live = Vec::new();
    let mut flush = |track: &mut Option<String>, sending: bool| {
        if let (Some(t), true) = (track.take(), sending) {
            live.push(t);
        }
    };
    let (mut track, mut sending) = (None, false);
    for line in sdp.lines() {
        let line = line.trim();
        if line.starts_with("m=") {
            flush(&mut track, sending);
            sending = false;
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            track = msid.split_whitespace().nth(1).map(str::to_owned);
        } else if line == "a=sendrecv" || line == "a=sendonly" {
            sending = true;
        }
    }
    flush(&mut track, sending);
    live
}

async fn add_outgoing(
    pc: &Arc<dyn PeerConnection>,
    name: &str,
    kind: RtpCodecKind,
    mime: &'static str,
    simulcast: &[(String, usize)],
) -> Result<Outgoing> {
    let ssrc = rand::random::<u32>();
    let layers: Vec<(String, u32, usize)> = simulcast
        .iter()
        .map(|(rid, bytes)| (rid.clone(), rand::random::<u32>(), *bytes))
        .collect();
    let encodings = if layers.is_empty() {
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec(mime),
            ..Default::default()
        }]
    } else {
        layers
            .iter()
            .map(|(rid, ssrc, _)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: rid.clone(),
                    ssrc: Some(*ssrc),
                    ..Default::default()
                },
                codec: codec(mime),
                ..Default::default()
            })
            .collect()
    };
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        name.to_owned(),
        format!("{name}-{kind}"),
        format!("{name}-{kind}"),
        kind,
        encodings,
    )));
    let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
    Ok(Outgoing {
        track,
        sender,
        ssrc,
        mime,
        layers,
    })
}

impl SyntheticParticipant {
    /// Builds the peer connection on 127.0.0.1 (no STUN server) with its tracks.
    pub async fn new(config: ParticipantConfig) -> Result<Arc<Self>> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let registry = register_default_interceptors(
            // The SFU's own stages: feedback reaches us and, like a
            // browser, we do not ask again for what RTX repaired (`rtc`'s
            // NACK generator would, every 100 ms).
            telehealth_sfu::interceptor::with_sfu_stages(Registry::new())
                .0
                // Wire-most: sees every receiver report that arrives.
                .with(
                    Slot::from(REPORT_WATCHER_SLOT),
                    ReportWatcher {
                        acked: acked.clone(),
                        ..Default::default()
                    },
                ),
            &mut media_engine,
        )?;
        let shared = Arc::new(Shared {
            acked,
            ..Default::default()
        });
        let (cand_tx, cand_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let runtime = webrtc::runtime::default_runtime().ok_or_else(|| anyhow!("no runtime"))?;
        // No mDNS: tests send nothing to any non-loopback address.
        let mut settings = SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled);
        let (udp, tcp) = if config.tcp_only {
            // A TCP listener gives the active candidate its address; the
            // connection to the SFU is dialled from an ephemeral port.
            settings = settings.with_network_types(vec![NetworkType::Tcp4]);
            (vec![], vec![format!("{}:0", config.bind_ip)])
        } else {
            (vec![format!("{}:0", config.bind_ip)], vec![])
        };
        let pc = PeerConnectionBuilder::new()
            .with_configuration(rtc_configuration(&config))
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings.build())
            .with_runtime(Arc::new(LossyRuntime::new(runtime, config.impairment.clone())))
            .with_handler(Arc::new(Handler {
                shared: shared.clone(),
                candidates: cand_tx,
                state: state_tx,
            }))
            .with_udp_addrs(udp)
            .with_tcp_addrs(tcp)
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let audio = if config.send_audio {
            Some(add_outgoing(&pc, &config.name, RtpCodecKind::Audio, MIME_TYPE_OPUS, &[]).await?)
        } else {
            None
        };
        let video = if config.send_video {
            Some(
                add_outgoing(
                    &pc,
                    &config.name,
                    RtpCodecKind::Video,
                    MIME_TYPE_VP8,
                    &config.simulcast,
                )
                .await?,
            )
        } else {
            None
        };
        Ok(Arc::new(Self {
            config,
            pc,
            shared,
            state: state_rx,
            candidates: Mutex::new(Some(cand_rx)),
            audio,
            video,
            media_started: AtomicBool::new(false),
            tcp_dialled: Mutex::new(BTreeSet::new()),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// The participant's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The loopback address its sockets are bound to.
    pub fn bind_ip(&self) -> std::net::IpAddr {
        self.config.bind_ip
    }

    /// The link impairment, adjustable during the call.
    pub fn impairment(&self) -> &Arc<Impairment> {
        &self.config.impairment
    }

    /// The stream of local ICE candidates to trickle (can be taken once).
    pub fn take_local_candidates(&self) -> Option<mpsc::UnboundedReceiver<IceCandidate>> {
        self.candidates.lock().ok().and_then(|mut c| c.take())
    }

    /// Creates the offer (and sets it locally).
    pub async fn create_offer(&self) -> Result<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        let desc = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("no local description"))?;
        Ok(desc.sdp)
    }

    /// Restarts ICE: the returned offer carries fresh ICE credentials.
    pub async fn restart_ice_offer(&self) -> Result<String> {
        self.pc.restart_ice().await?;
        self.create_offer().await
    }

    /// Whether an offer of ours waits for its answer.
    pub async fn offer_outstanding(&self) -> bool {
        self.pc.pending_local_description().await.is_some()
    }

    /// Our offer that waits for its answer, if any.
    pub async fn pending_offer(&self) -> Option<String> {
        self.pc.pending_local_description().await.map(|d| d.sdp)
    }

    /// Applies the answer to our offer.
    pub async fn apply_answer(self: &Arc<Self>, sdp: String) -> Result<()> {
        let passive = passive_tcp_candidates(&sdp);
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp)?)
            .await?;
        if self.config.tcp_only {
            // The `webrtc` crate dials a passive TCP candidate only when it is
            // trickled, not when it comes in the description (browsers dial
            // both): hand the answer's ones in again as trickled candidates.
            for (candidate, sdp_mid) in passive {
                self.add_remote_candidate(IceCandidate {
                    candidate,
                    sdp_mid,
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                })
                .await?;
            }
        }
        self.start_media_when_connected();
        Ok(())
    }

    /// Answers an offer from the other side (renegotiation). Remote tracks
    /// the offer no longer sends are marked ended. Polite, as a browser: an
    /// offer of ours still waiting for its answer is rolled back first.
    pub async fn handle_offer(self: &Arc<Self>, sdp: String) -> Result<String> {
        if self.pc.pending_local_description().await.is_some() {
            self.pc
                .set_local_description(RTCSessionDescription::rollback(None)?)
                .await?;
        }
        let live = sending_track_ids(&sdp);
        if let Ok(mut tracks) = self.shared.tracks.lock() {
            for (id, rx) in tracks.iter_mut() {
                // A track may start arriving before the offer that names it
                // (an older offer then did not): whatever the latest offer says.
                rx.ended = !live.iter().any(|l| l == id);
            }
        }
        self.pc
            .set_remote_description(RTCSessionDescription::offer(sdp)?)
            .await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        let desc = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("no local description"))?;
        self.start_media_when_connected();
        Ok(desc.sdp)
    }

    /// Adds a candidate trickled by the other side.
    pub async fn add_remote_candidate(&self, c: IceCandidate) -> Result<()> {
        if let Some(addr) = passive_tcp_address(&c.candidate) {
            // The `webrtc` crate dials every passive TCP candidate it is
            // given, whether it has a TCP candidate to pair it with or not:
            // a UDP participant must not, and a TCP one only once per
            // address (a bundled description repeats the candidate per
            // m-section, and trickle repeats it too).
            let first = self
                .tcp_dialled
                .lock()
                .map(|mut d| d.insert(addr))
                .unwrap_or(true);
            if !self.config.tcp_only || !first {
                return Ok(());
            }
        }
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_mline_index,
                username_fragment: c.username_fragment,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Waits until the connection is up.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let mut state = self.state.clone();
        tokio::time::timeout(timeout, async {
            loop {
                if *state.borrow_and_update() == RTCPeerConnectionState::Connected {
                    return Ok(());
                }
                if state.changed().await.is_err() {
                    return Err(anyhow!("connection dropped"));
                }
            }
        })
        .await
        .context("timed out waiting for the connection")?
    }

    /// The current connection state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// The type (`host`, `srflx`, `prflx`, `relay`) of the local candidate
    /// of the pair ICE selected, once there is one.
    pub async fn selected_local_candidate_type(&self) -> Option<String> {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let pair_id = report.transport()?.selected_candidate_pair_id.clone();
        let pair = report.candidate_pairs().find(|p| p.stats.id == pair_id)?;
        // The pair names the candidate by its ICE id; the report keys the
        // candidate's own entry with a prefix (rtc 0.21).
        let id = &pair.local_candidate_id;
        let entry = report
            .get(id)
            .or_else(|| report.get(&format!("RTCLocalIceCandidate_{id}")))?;
        match entry {
            RTCStatsReportEntry::LocalCandidate(c) => Some(c.candidate_type.to_string()),
            _ => None,
        }
    }

    fn start_media_when_connected(self: &Arc<Self>) {
        if self.media_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        let task = tokio::spawn(async move {
            if me.wait_connected(Duration::from_secs(30)).await.is_err() {
                return;
            }
            me.run_media().await;
        });
        if let Ok(mut t) = self.tasks.lock() {
            t.push(task);
        }
    }

    async fn payload_type(out: &Outgoing) -> Option<u8> {
        let params = out.sender.get_parameters().await.ok()?;
        params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(out.mime))
            .map(|c| c.payload_type)
    }

    async fn run_media(self: Arc<Self>) {
        // Keyframe requests (PLI/FIR) from the SFU.
        if let Some(video) = &self.video {
            let track = video.track.clone();
            let shared = self.shared.clone();
            let t = tokio::spawn(async move {
                loop {
                    // `poll` yields None until the track is bound to its sender.
                    let Some(ev) = track.poll().await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
                        continue;
                    };
                    for p in packets {
                        let any = p.as_any();
                        if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                            shared.publisher.plis_received.fetch_add(1, Ordering::Relaxed);
                            shared.publisher.keyframe_requested.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
            if let Ok(mut tasks) = self.tasks.lock() {
                tasks.push(t);
            }
        }
        let audio_pt = match &self.audio {
            Some(a) => Self::payload_type(a).await,
            None => None,
        };
        let video_pt = match &self.video {
            Some(v) => Self::payload_type(v).await,
            None => None,
        };
        // The tone, encoded once per process and frequency, sent in a loop.
        let tone = media::encoded_tone(self.config.tone_hz).ok();
        let mut tone_at = 0usize;
        // One RTP stream per simulcast layer (or just the one): (rid, SSRC,
        // bytes per delta frame, next sequence number).
        let mut video_streams: Vec<(Option<String>, u32, usize, u16)> = match &self.video {
            Some(v) if !v.layers.is_empty() => v
                .layers
                .iter()
                .map(|(rid, ssrc, bytes)| (Some(rid.clone()), *ssrc, *bytes, rand::random::<u16>()))
                .collect(),
            Some(v) => vec![(None, v.ssrc, self.config.frame_bytes, rand::random::<u16>())],
            None => Vec::new(),
        };
        // Simulcast packets name their m-section and their layer in the MID
        // and RTP stream id header extensions (RFC 8843, RFC 8852), as
        // browsers do: that is how a receiver learns which undeclared SSRC
        // is which layer.
        let mut rid_extension = None;
        if let Some(v) = self.video.as_ref().filter(|v| !v.layers.is_empty()) {
            let ids = v
                .sender
                .get_parameters()
                .await
                .ok()
                .map(|p| p.rtp_parameters.header_extensions);
            let id = |uri: &str| {
                ids.iter()
                    .flatten()
                    .find(|e| e.uri == uri)
                    .and_then(|e| u8::try_from(e.id).ok())
            };
            let mid = self.pc.local_description().await.and_then(|d| video_mid(&d.sdp));
            if let (Some(rid_id), Some(mid_id), Some(mid)) = (
                id(rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI),
                id(rtc::sdp::extmap::SDES_MID_URI),
                mid,
            ) {
                rid_extension = Some((rid_id, mid_id, Bytes::from(mid.into_bytes())));
            }
        }
        let mut audio_seq = rand::random::<u16>();
        let mut counter: u32 = 0;
        let frame_every = Duration::from_secs(1) / self.config.video_fps.max(1);
        let start = tokio::time::Instant::now();
        let mut next_video = start;
        let mut last_keyframe: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tick.tick().await;
            if let (Some(a), Some(pt), Some(tone)) = (&self.audio, audio_pt, tone.as_ref()) {
                let payload = tone[tone_at % tone.len()].clone();
                tone_at += 1;
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::Header {
                        version: 2,
                        payload_type: pt,
                        sequence_number: audio_seq,
                        timestamp: media::clock_timestamp(media::unix_micros(), media::SAMPLE_RATE),
                        ssrc: a.ssrc,
                        ..Default::default()
                    },
                    payload,
                };
                audio_seq = audio_seq.wrapping_add(1);
                if a.track.write_rtp(packet).await.is_ok() {
                    self.shared
                        .publisher
                        .audio_packets_sent
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            let now = tokio::time::Instant::now();
            if let (Some(v), Some(pt)) = (&self.video, video_pt) {
                while next_video <= now {
                    next_video += frame_every;
                    let requested = self
                        .shared
                        .publisher
                        .keyframe_requested
                        .swap(false, Ordering::Relaxed);
                    let periodic = match (self.config.keyframe_interval, last_keyframe) {
                        (Some(i), Some(l)) => l.elapsed() >= i,
                        _ => false,
                    };
                    let key = counter == 0 || requested || periodic;
                    if key {
                        last_keyframe = Some(Instant::now());
                        self.shared
                            .publisher
                            .keyframes_sent
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    let sent = media::unix_micros();
                    let ts = media::clock_timestamp(sent, media::VIDEO_CLOCK);
                    for (rid, ssrc, bytes, seq) in video_streams.iter_mut() {
                        let size = match (key, rid.is_some()) {
                            (false, _) => *bytes,
                            (true, false) => self.config.keyframe_bytes,
                            // A simulcast layer's keyframe: a few delta frames' worth.
                            (true, true) => *bytes * 3,
                        };
                        let payloads = media::vp8_frame_payloads(counter, sent, key, size);
                        let n = payloads.len();
                        for (i, p) in payloads.into_iter().enumerate() {
                            let mut packet = rtc::rtp::Packet {
                                header: rtc::rtp::Header {
                                    version: 2,
                                    payload_type: pt,
                                    sequence_number: *seq,
                                    timestamp: ts,
                                    ssrc: *ssrc,
                                    marker: i + 1 == n,
                                    ..Default::default()
                                },
                                payload: Bytes::from(p),
                            };
                            // Like libwebrtc: name the layer until a receiver
                            // report has acknowledged its SSRC.
                            let acked = self
                                .shared
                                .acked
                                .lock()
                                .map(|a| a.contains(ssrc))
                                .unwrap_or(false);
                            if let (false, Some(rid), Some((rid_id, mid_id, mid))) =
                                (acked, rid.as_ref(), &rid_extension)
                            {
                                let h = &mut packet.header;
                                let _ = h.set_extension(*mid_id, mid.clone());
                                let _ = h.set_extension(*rid_id, Bytes::copy_from_slice(rid.as_bytes()));
                            }
                            *seq = seq.wrapping_add(1);
                            let _ = v.track.write_rtp(packet).await;
                        }
                    }
                    counter += 1;
                    self.shared.publisher.frames_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            if matches!(
                self.connection_state(),
                RTCPeerConnectionState::Closed | RTCPeerConnectionState::Failed
            ) {
                return;
            }
        }
    }

    /// Forgets the delay samples received so far, so that later reports'
    /// delay percentiles cover only what arrives from now on (the load
    /// generator's warm-up is not part of its figures).
    pub fn reset_delays(&self) {
        if let Ok(mut t) = self.shared.tracks.lock() {
            for rx in t.values_mut() {
                rx.delays_ms.clear();
            }
        }
    }

    /// The audio heard from `publisher` (its live track) since `since`,
    /// second by second, by a listener with a `playout` jitter buffer
    /// ([`media::audio_seconds`]).
    pub fn audio_seconds(
        &self,
        publisher: &str,
        since: Instant,
        playout: Duration,
    ) -> Vec<media::AudioSecond> {
        let Ok(tracks) = self.shared.tracks.lock() else {
            return Vec::new();
        };
        let Some(rx) = tracks
            .values()
            .filter(|t| t.kind == RtpCodecKind::Audio && t.stream_id == publisher)
            .max_by_key(|t| (!t.ended, t.first_packet_at))
        else {
            return Vec::new();
        };
        let packets: Vec<_> = rx.heard.iter().filter(|p| p.1 >= since).cloned().collect();
        drop(tracks);
        media::audio_seconds(&packets, playout)
    }

    /// What has been received so far, per remote track, and what was sent.
    pub fn report(&self) -> ParticipantReport {
        let tracks = match self.shared.tracks.lock() {
            Ok(t) => {
                let mut v: Vec<TrackReport> = t.iter().map(|(id, rx)| rx.report(id)).collect();
                v.sort_by(|a, b| a.track_id.cmp(&b.track_id));
                v
            }
            Err(_) => Vec::new(),
        };
        let p = &self.shared.publisher;
        ParticipantReport {
            name: self.config.name.clone(),
            tracks,
            frames_sent: p.frames_sent.load(Ordering::Relaxed),
            keyframes_sent: p.keyframes_sent.load(Ordering::Relaxed),
            plis_received: p.plis_received.load(Ordering::Relaxed),
            audio_packets_sent: p.audio_packets_sent.load(Ordering::Relaxed),
            dropped: self.config.impairment.dropped(),
        }
    }

    /// Closes the connection (the SFU sees a DTLS close) and stops sending.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

impl Drop for SyntheticParticipant {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}
