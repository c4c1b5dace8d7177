//! One participant's peer connection and the bookkeeping the engine keeps beside it.

use crate::config::SfuConfig;
use crate::error::{Result, SfuError};
use crate::ids::{ParticipantId, RoomId, TrackId};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::tcp_type::TcpType;
use rtc::interceptor::{
    CongestionControlBuilder, NackGeneratorBuilder, NackResponderBuilder, Registry, Slot,
};

use crate::estimate::ForwardingEstimate;
use rtc::media_stream::MediaStreamTrackId;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
    configure_twcc_sender_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where each subscriber's downlink estimate starts. GCC climbs from here
/// (8 % a second while nothing congests) or falls at the first sign of
/// queueing; the layer selector still starts on the lowest layer and goes up
/// only once the estimate has held for a few seconds.
const INITIAL_ESTIMATE_BPS: f64 = 1_000_000.0;
/// The estimate never goes below this: audio (and the lowest simulcast layer) must fit.
const MIN_ESTIMATE_BPS: f64 = 100_000.0;
/// Nor above this: more than a consultation's video needs (two top layers
/// of 1.5 Mbps and the audio). The estimate climbs blindly while little is
/// sent, and the higher it has climbed the longer it takes to come down
/// when the link congests (from 20 Mbps: 3.5 s at an 80 kbps cap).
const MAX_ESTIMATE_BPS: f64 = 4_000_000.0;

/// How often the NACK generator looks for holes in what a participant
/// sends (`rtc`'s default is 100 ms). The SFU's stage lets each hole be
/// asked for once per round trip ([`crate::nack_filter`]).
pub(crate) const ASK_INTERVAL: Duration = Duration::from_millis(20);

/// `rtc`'s default interceptors (`register_default_interceptors`: NACK both
/// ways for video, simulcast header extensions, transport-wide feedback to
/// senders, RTCP reports), with the NACK generator looking for holes every
/// [`ASK_INTERVAL`].
fn register_interceptors(registry: Registry, media_engine: &mut MediaEngine) -> Result<Registry> {
    for parameter in ["", "pli"] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let registry = registry
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new().with_interval(ASK_INTERVAL).build(),
        );
    configure_simulcast_extension_headers(media_engine).map_err(webrtc)?;
    let registry = configure_twcc_receiver_only(registry, media_engine).map_err(webrtc)?;
    Ok(configure_rtcp_reports(registry))
}

/// The engine's handle for a peer (cheap, copyable, never reused).
pub(crate) type PeerKey = u64;

/// Packet counters for one direction of one track on one peer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub nacks: u64,
    pub plis: u64,
    /// Values at the last stats sample, for per-interval rates.
    pub last_packets: u64,
    pub last_bytes: u64,
}

pub(crate) struct Peer {
    pub room: RoomId,
    pub id: ParticipantId,
    pub pc: RTCPeerConnection,
    pub ufrag: String,
    pub addrs: Vec<SocketAddr>,
    /// Its next deadline (its connection's timers, or an offer's answer
    /// timeout) as last queued in the engine's deadline heap.
    pub armed: Option<Instant>,
    /// Our side of the offer/answer exchanges with this participant.
    pub negotiation: crate::negotiation::Negotiation,
    /// Where its packets come from; follows it when its address changes.
    pub path: crate::path::Path,
    /// When media from an unknown address was last tried on its connection.
    pub last_probe: Option<Instant>,
    pub state: RTCPeerConnectionState,
    /// The publisher-side rtc track id of each track this peer publishes.
    pub inbound: HashMap<MediaStreamTrackId, TrackId>,
    /// The sender-side rtc track id of each track forwarded to this peer.
    pub outbound: HashMap<MediaStreamTrackId, TrackId>,
    /// The SSRC each track is forwarded to this peer under (for its receiver reports).
    pub outbound_ssrcs: HashMap<u32, TrackId>,
    /// Counter of tracks published, for track ids.
    pub published_count: u64,
    /// Whether a removal is already under way (avoid double removal on Closed).
    pub closing: bool,
    /// It wants video (false: it asked for audio only, and no video is
    /// forwarded to it).
    pub video_wanted: bool,
    /// Our send-side estimate of its downlink, as its connection's
    /// congestion controller last announced it.
    pub send_estimate: crate::interceptor::SendEstimate,
}

impl Peer {
    pub fn connected(&self) -> bool {
        self.state == RTCPeerConnectionState::Connected
    }

    /// When it next needs [`crate::engine::Engine::handle_timeout`]: its
    /// connection's timers, or the answer to our offer overdue.
    pub fn deadline(&mut self) -> Option<Instant> {
        match (
            rtc::sansio::Protocol::poll_timeout(&mut self.pc),
            self.negotiation.poll_timeout(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether media sent to it now arrives: connected, or marked
    /// disconnected by ICE while its packets already arrive again (the ICE
    /// agent learns that only from its next consent check, up to a keepalive
    /// interval later; the path knows at the first packet).
    pub fn can_receive(&self, now: Instant) -> bool {
        self.connected()
            || (self.state == RTCPeerConnectionState::Disconnected
                && self.path.heard_within(now, crate::path::RESUME_SILENCE))
    }

    /// Offer/answer settled: neither side has an offer out.
    pub fn is_stable(&self) -> bool {
        self.pc.pending_local_description().is_none() && self.pc.pending_remote_description().is_none()
    }
}

pub(crate) fn webrtc(e: impl std::fmt::Display) -> SfuError {
    SfuError::WebRtc(e.to_string())
}

/// Builds a participant's peer connection (ICE credentials are generated by
/// `rtc`, fresh again on every ICE restart; the engine reads our ufrag from
/// each local description to route STUN by it).
pub(crate) fn new_peer_connection(
    now: Instant,
    config: &SfuConfig,
) -> Result<(RTCPeerConnection, crate::interceptor::SendEstimate)> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().map_err(webrtc)?;
    // Redundant audio (RFC 2198): each packet also carries the previous
    // one's Opus frame, so one lost packet costs no audio. Forwarded as it
    // comes to subscribers that accept it; the others get the primary
    // block (`forward.rs`).
    media_engine
        .register_codec(red_codec(), RtpCodecKind::Audio)
        .map_err(webrtc)?;
    let (stages, send_estimate, coverage) = crate::interceptor::with_sfu_stages(Registry::new());
    let mut registry = register_interceptors(stages, &mut media_engine)?;
    if config.bandwidth_estimation {
        // GCC over TWCC feedback (RFC 8888 is the alternative; browsers
        // speak TWCC), its loss half held back until the loss is heavy
        // (`ForwardingEstimate`: random radio loss is not a full link),
        // without a pacer. `rtc`'s `configure_congestion_control`
        // also installs a pacer that releases packets at exactly the GCC
        // target. A sender that encodes can slow its encoder to that target;
        // an SFU cannot slow the publisher whose packets it forwards, so
        // whenever the forwarded rate is above the target (always at the
        // start: GCC begins low and climbs 8 % a second) the pacer holds a
        // standing queue — measured at 80-110 ms added delay on loopback.
        // The packets are already paced by the publisher's own sender, and
        // the estimate acts where an SFU can act: the simulcast layer each
        // subscriber gets. (mediasoup and LiveKit's default forward unpaced
        // for the same reason.)
        registry = configure_twcc_sender_only(registry, &mut media_engine)
            .map_err(webrtc)?
            .with(
                Slot::CongestionControl,
                CongestionControlBuilder::new(ForwardingEstimate::new(
                    INITIAL_ESTIMATE_BPS,
                    MIN_ESTIMATE_BPS,
                    MAX_ESTIMATE_BPS,
                    coverage,
                ))
                .build(),
            );
    }
    let setting_engine = SettingEngineBuilder::new()
        // A client's `.local` candidate must not make the SFU send multicast queries.
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_ice_timeouts(
            Some(config.ice_disconnected_timeout),
            // Zero: the agent never gives up on its own. A participant's seat
            // is held by its owner for minutes; the path comes back, or the
            // client restarts ICE, or it rejoins.
            Some(config.ice_failed_timeout.unwrap_or(Duration::ZERO)),
            Some(config.ice_keepalive_interval),
        )
        .build();
    let pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(now)
        .map_err(webrtc)?;
    Ok((pc, send_estimate))
}

/// Adds our host candidates to a peer connection: the shared UDP port, and
/// the ICE-TCP port as a passive candidate (RFC 6544 §4.5: we only accept
/// connections) when there is one. Clients that can use UDP prefer it: a TCP
/// candidate's priority is lower.
pub(crate) fn add_host_candidates(
    pc: &mut RTCPeerConnection,
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
) -> Result<()> {
    let mut configs = vec![CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: udp.ip().to_string(),
            port: udp.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }];
    if let Some(tcp) = tcp {
        configs.push(CandidateHostConfig {
            base_config: CandidateConfig {
                network: "tcp".to_owned(),
                address: tcp.ip().to_string(),
                port: tcp.port(),
                component: 1,
                ..Default::default()
            },
            tcp_type: TcpType::Passive,
        });
    }
    for config in configs {
        let candidate = config.new_candidate_host().map_err(webrtc)?;
        let init = RTCIceCandidate::from(&candidate).to_json().map_err(webrtc)?;
        pc.add_local_candidate(init).map_err(webrtc)?;
    }
    Ok(())
}

/// `red/48000/2` over Opus at its default payload type, as Chromium offers it.
fn red_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: crate::codec::MIME_TYPE_RED.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "111/111".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 63,
    }
}

/// Asks a publisher for redundant audio: RED first, then Opus (which RED
/// carries), in the audio sections of the answer about to be made — a
/// browser sends the first codec of the answer. Where the offer had no RED
/// the preference is refused and the answer is left as it was; video
/// sections refuse it too.
pub(crate) fn prefer_red(pc: &mut RTCPeerConnection) {
    let opus = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
    };
    let ids: Vec<_> = pc.get_transceivers().collect();
    for id in ids {
        if let Some(mut t) = pc.rtp_transceiver(id) {
            let _ = t.set_codec_preferences(vec![red_codec(), opus.clone()]);
        }
    }
}
