//! Subscriber legs for the forwarding path, shared by the forwarding bench and
//! the allocation test (`sfu/tests/forward_allocations.rs`): real `rtc` peer
//! connections, handshaken (ICE, DTLS) in memory against in-memory clients.

use bytes::{Bytes, BytesMut};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_VP8};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use telehealth_sfu::rewrite::StreamRewriter;

fn pc(now: Instant) -> RTCPeerConnection {
    let mut me = MediaEngine::default();
    me.register_default_codecs().expect("default codecs register");
    let registry = register_default_interceptors(Registry::new(), &mut me).expect("interceptors");
    RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .build(now)
        .expect("peer connection")
}

fn add_candidate(pc: &mut RTCPeerConnection, addr: SocketAddr) {
    let c = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("host candidate");
    pc.add_local_candidate(RTCIceCandidate::from(&c).to_json().expect("json"))
        .expect("candidate");
}

/// Moves every datagram `from` wants to send into `to`.
fn pump(now: Instant, from: &mut RTCPeerConnection, to: &mut RTCPeerConnection) -> bool {
    let mut moved = false;
    while let Some(m) = from.poll_write() {
        moved = true;
        let _ = to.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: m.transport.peer_addr,
                peer_addr: m.transport.local_addr,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(&m.message[..]),
        });
    }
    moved
}

fn connected(pc: &mut RTCPeerConnection, state: &mut bool) {
    while let Some(e) = pc.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
            *state = s == RTCPeerConnectionState::Connected;
        }
    }
    while pc.poll_read().is_some() {}
}

/// One SFU-side subscriber connection, handshaken with an in-memory client.
pub struct Leg {
    pub sfu: RTCPeerConnection,
    pub client: RTCPeerConnection,
    pub sender: RTCRtpSenderId,
    pub rewriter: StreamRewriter,
    pub pt: u8,
}

pub fn leg(i: u16) -> Leg {
    let mut now = Instant::now();
    let sfu_addr: SocketAddr = ([127, 0, 0, 1], 40000 + i).into();
    let client_addr: SocketAddr = ([127, 0, 0, 1], 50000 + i).into();
    let mut sfu = pc(now);
    let mut client = pc(now);
    let ssrc = 1000 + u32::from(i);
    let codec = RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    };
    let sender = sfu
        .add_track(MediaStreamTrack::new(
            "publisher".into(),
            format!("video-{i}"),
            "video".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        ))
        .expect("track");
    let offer = sfu.create_offer(None).expect("offer");
    sfu.set_local_description(now, offer.clone())
        .expect("local offer");
    add_candidate(&mut sfu, sfu_addr);
    client
        .set_remote_description(
            now,
            RTCSessionDescription::offer(sfu.local_description().expect("offer").sdp).expect("sdp"),
        )
        .expect("remote offer");
    add_candidate(&mut client, client_addr);
    let answer = client.create_answer(None).expect("answer");
    client.set_local_description(now, answer).expect("local answer");
    sfu.set_remote_description(
        now,
        RTCSessionDescription::answer(client.local_description().expect("answer").sdp).expect("sdp"),
    )
    .expect("remote answer");
    let (mut a, mut b) = (false, false);
    let deadline = now + Duration::from_secs(30);
    while !(a && b) {
        assert!(now < deadline, "in-memory handshake did not complete");
        let m1 = pump(now, &mut sfu, &mut client);
        let m2 = pump(now, &mut client, &mut sfu);
        connected(&mut sfu, &mut a);
        connected(&mut client, &mut b);
        if !m1 && !m2 {
            now += Duration::from_millis(5);
            let _ = sfu.handle_timeout(now);
            let _ = client.handle_timeout(now);
        }
    }
    let pt = {
        let mut s = sfu.rtp_sender(sender).expect("sender");
        s.get_parameters()
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP8))
            .map(|c| c.payload_type)
            .expect("VP8 negotiated")
    };
    Leg {
        sfu,
        client,
        sender,
        rewriter: StreamRewriter::new(ssrc, 90_000),
        pt,
    }
}

/// One incoming packet (sequence number `seq`, timestamp `ts`) forwarded to
/// every leg as the engine forwards it: its header rewritten for the leg,
/// written into the leg's peer connection (interceptors, NACK buffer, SRTP),
/// and each datagram that produces handed to `send`.
pub fn forward(
    legs: &mut [Leg],
    now: Instant,
    seq: u16,
    ts: u32,
    payload: &Bytes,
    mut send: impl FnMut(&[u8]),
) {
    let incoming = rtc::rtp::Packet {
        header: rtc::rtp::Header {
            version: 2,
            payload_type: 96,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 42,
            marker: true,
            ..Default::default()
        },
        payload: payload.clone(),
    };
    for leg in legs.iter_mut() {
        let rw = leg.rewriter.rewrite(now, 42, seq, ts);
        let mut out = incoming.clone();
        out.header.ssrc = rw.ssrc;
        out.header.sequence_number = rw.sequence_number;
        out.header.timestamp = rw.timestamp;
        out.header.payload_type = leg.pt;
        if let Some(mut s) = leg.sfu.rtp_sender(leg.sender) {
            let _ = s.write_rtp(now, out);
        }
        while let Some(m) = leg.sfu.poll_write() {
            send(&m.message);
        }
    }
}
