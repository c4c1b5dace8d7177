//! The forwarding path, one publisher to N subscribers: for each incoming
//! RTP packet, per subscriber: rewrite the header (`StreamRewriter`), write
//! it into that subscriber's peer connection (interceptors, NACK buffer,
//! SRTP encryption) and send the datagram on a loopback UDP socket — the
//! same work the engine does per outgoing packet. The subscribers' peer
//! connections are real `rtc` connections, handshaken (ICE, DTLS) in memory
//! against in-memory clients, so no time is spent waiting on a network.
//!
//! Throughput is reported in outgoing packets per second on one core; after
//! each size, the heap allocations per outgoing packet on that path (a
//! counting allocator), the figure "no allocation per forwarded packet"
//! is judged by.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use telehealth_sfu::rewrite::StreamRewriter;

/// The system allocator, counting allocations (not frees) and their bytes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
struct Leg {
    sfu: RTCPeerConnection,
    client: RTCPeerConnection,
    sender: RTCRtpSenderId,
    rewriter: StreamRewriter,
    pt: u8,
}

fn leg(i: u16) -> Leg {
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

fn forwarding(c: &mut Criterion) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    sink.set_nonblocking(true).expect("nonblocking");
    let sink_addr = sink.local_addr().expect("addr");
    socket.set_nonblocking(true).expect("nonblocking");
    let mut group = c.benchmark_group("forward_one_to_n");
    for n in [1u16, 3, 10] {
        let mut legs: Vec<Leg> = (0..n).map(leg).collect();
        let mut seq: u16 = 0;
        let mut ts: u32 = 0;
        let payload = Bytes::from(vec![0x10u8; 1100]);
        let mut buf = [0u8; 2048];
        group.throughput(Throughput::Elements(u64::from(n)));
        let mut forward = |legs: &mut Vec<Leg>| {
            let now = Instant::now();
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(3000);
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
                    let _ = socket.send_to(&m.message, sink_addr);
                }
            }
            // Keep the sink from filling (not part of the SFU's cost, but cheap).
            while sink.recv_from(&mut buf).is_ok() {}
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| forward(&mut legs))
        });
        // The same path, counted: steady state, after criterion's runs.
        const PACKETS: u64 = 10_000;
        let (a0, b0) = (
            ALLOCATIONS.load(Ordering::Relaxed),
            ALLOCATED_BYTES.load(Ordering::Relaxed),
        );
        for _ in 0..PACKETS {
            forward(&mut legs);
        }
        let outgoing = PACKETS * u64::from(n);
        let (a, bytes) = (
            ALLOCATIONS.load(Ordering::Relaxed) - a0,
            ALLOCATED_BYTES.load(Ordering::Relaxed) - b0,
        );
        println!(
            "forward_one_to_n/{n}: {:.1} heap allocations ({:.0} bytes) per outgoing packet",
            a as f64 / outgoing as f64,
            bytes as f64 / outgoing as f64
        );
        // Keep the clients' state alive until the end of the measurement.
        for leg in legs.iter_mut() {
            while leg.client.poll_write().is_some() {}
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = forwarding
}
criterion_main!(benches);
