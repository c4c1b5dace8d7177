//! The patch on `rtc` (third_party/README.md) changes how packets move, not
//! what comes out: in-place SRTP protects and opens exactly as the
//! allocating path does, and a chain whose interceptors take packets in
//! passing emits the same packets, feedback and reports as one whose
//! interceptors all queue them.

use bytes::{Bytes, BytesMut};
use rtc::interceptor::{
    CongestionControlBuilder, ConstantBitrate, Interceptor, NackGeneratorBuilder, NackResponderBuilder,
    Packet, RTCPFeedback, RTPHeaderExtension, ReceiverReportBuilder, Registry, SenderReportBuilder, Slot,
    StreamInfo, TaggedPacket, TwccReceiverBuilder, TwccSenderBuilder,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::rtp::extension::transport_cc_extension::TransportCcExtension;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::Marshal;
use rtc::shared::TransportContext;
use rtc::srtp::context::Context;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;
use std::time::{Duration, Instant};
use telehealth_sfu::interceptor::{
    DropProbes, SfuInterceptor, WatchFeedback, DROP_PROBES_SLOT, SLOT, WATCH_FEEDBACK_SLOT,
};

const PROFILES: [ProtectionProfile; 4] = [
    ProtectionProfile::AeadAes128Gcm,
    ProtectionProfile::AeadAes256Gcm,
    ProtectionProfile::Aes128CmHmacSha1_80,
    ProtectionProfile::Aes128CmHmacSha1_32,
];

fn context(profile: ProtectionProfile) -> Context {
    let provider = rtc::crypto::default_provider().expect("a crypto provider");
    let key: Vec<u8> = (0..profile.key_len()).map(|i| i as u8 * 7 + 1).collect();
    let salt: Vec<u8> = (0..profile.salt_len()).map(|i| i as u8 * 3 + 2).collect();
    Context::new(
        &key,
        &salt,
        profile,
        Some(srtp_replay_protection(64)),
        Some(srtcp_replay_protection(64)),
        provider.crypto(),
    )
    .expect("an SRTP context")
}

/// A VP8-like packet; with a header extension every other time.
fn rtp(ssrc: u32, seq: u16, extension: bool, len: usize) -> rtc::rtp::Packet {
    let mut p = rtc::rtp::Packet {
        header: rtc::rtp::Header {
            version: 2,
            payload_type: 96,
            sequence_number: seq,
            timestamp: u32::from(seq).wrapping_mul(3000),
            ssrc,
            marker: seq.is_multiple_of(3),
            ..Default::default()
        },
        payload: Bytes::from((0..len).map(|i| (i as u8) ^ (seq as u8)).collect::<Vec<u8>>()),
    };
    if extension {
        let tcc = TransportCcExtension {
            transport_sequence: seq.wrapping_mul(3),
        };
        p.header
            .set_extension(5, tcc.marshal().expect("extension").freeze())
            .expect("set extension");
    }
    p
}

#[test]
fn in_place_srtp_protects_and_opens_as_the_allocating_path_does() {
    for profile in PROFILES {
        let (mut sender, mut in_place) = (context(profile), context(profile));
        let (mut receiver, mut in_place_receiver) = (context(profile), context(profile));
        // Across the sequence number wrap: the rollover counter counts too.
        for i in 0..300u32 {
            let seq = (65_400 + i) as u16;
            let p = rtp(0x1234, seq, i % 2 == 0, 60 + (i as usize * 37) % 1100);
            let plain = p.marshal().expect("marshal");
            let expected = sender.encrypt_rtp(&plain).expect("encrypt");

            let mut buf = vec![0u8; plain.len() + in_place.rtp_protection_overhead()];
            buf[..plain.len()].copy_from_slice(&plain);
            in_place
                .encrypt_rtp_in_place(&mut buf, &p.header)
                .expect("encrypt in place");
            assert_eq!(expected[..], buf[..], "{profile:?}, seq {seq}");

            let mut opened = BytesMut::from(&buf[..]);
            in_place_receiver
                .decrypt_rtp_in_place(&mut opened, &p.header)
                .expect("decrypt in place");
            assert_eq!(plain[..], opened[..], "{profile:?}, seq {seq}");
            let decrypted = receiver.decrypt_rtp(&expected).expect("decrypt");
            assert_eq!(plain[..], decrypted[..], "{profile:?}, seq {seq}");
        }
    }
}

#[test]
fn in_place_srtp_refuses_a_forged_or_replayed_packet() {
    for profile in PROFILES {
        let (mut sender, mut receiver) = (context(profile), context(profile));
        let p = rtp(0x1234, 7, true, 500);
        let protected = sender
            .encrypt_rtp(&p.marshal().expect("marshal"))
            .expect("encrypt");

        let mut forged = BytesMut::from(&protected[..]);
        let at = forged.len() - 30;
        forged[at] ^= 0x01;
        assert!(
            receiver.decrypt_rtp_in_place(&mut forged, &p.header).is_err(),
            "{profile:?}: a changed payload byte is refused"
        );

        let mut good = BytesMut::from(&protected[..]);
        receiver
            .decrypt_rtp_in_place(&mut good, &p.header)
            .expect("the packet as sent opens");
        let mut replayed = BytesMut::from(&protected[..]);
        assert!(
            receiver.decrypt_rtp_in_place(&mut replayed, &p.header).is_err(),
            "{profile:?}: the same packet again is refused"
        );
    }
}

/// An interceptor that declines every packet offered in passing, so that
/// everything goes through its `handle_*` and `poll_*`: the chain as it was
/// before the patch.
struct Declining<I>(I);

impl<I: Interceptor> Protocol<TaggedPacket, TaggedPacket, ()> for Declining<I> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.0.handle_read(msg)
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.0.poll_read()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.0.handle_write(msg)
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.0.poll_write()
    }
    fn handle_event(&mut self, evt: ()) -> Result<(), Error> {
        self.0.handle_event(evt)
    }
    fn poll_event(&mut self) -> Option<()> {
        self.0.poll_event()
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.0.handle_timeout(now)
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn close(&mut self) -> Result<(), Error> {
        self.0.close()
    }
}

impl<I: Interceptor> Interceptor for Declining<I> {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.0.bind_local_stream(info)
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.0.unbind_local_stream(info)
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.0.bind_remote_stream(info)
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.0.unbind_remote_stream(info)
    }
}

/// The interceptors of a subscriber's connection on this server
/// (`engine/peer.rs`), each wrapped in [`Declining`] when `declining`.
fn chain(declining: bool) -> impl Interceptor {
    fn add<I: Interceptor + 'static>(r: Registry, slot: Slot, i: I, declining: bool) -> Registry {
        if declining {
            r.with(slot, Declining(i))
        } else {
            r.with(slot, i)
        }
    }
    let mut r = Registry::new();
    r = add(
        r,
        Slot::from(WATCH_FEEDBACK_SLOT),
        WatchFeedback::default(),
        declining,
    );
    r = add(r, Slot::from(SLOT), SfuInterceptor::default(), declining);
    r = add(r, Slot::from(DROP_PROBES_SLOT), DropProbes::default(), declining);
    r = add(
        r,
        Slot::NackResponder,
        NackResponderBuilder::new().build(),
        declining,
    );
    r = add(
        r,
        Slot::NackGenerator,
        NackGeneratorBuilder::new()
            .with_interval(Duration::from_millis(20))
            .build(),
        declining,
    );
    r = add(r, Slot::TwccSender, TwccSenderBuilder::new().build(), declining);
    r = add(
        r,
        Slot::TwccReceiver,
        TwccReceiverBuilder::new().build(),
        declining,
    );
    r = add(
        r,
        Slot::SenderReport,
        SenderReportBuilder::new().build(),
        declining,
    );
    r = add(
        r,
        Slot::ReceiverReport,
        ReceiverReportBuilder::new().build(),
        declining,
    );
    r = add(
        r,
        Slot::CongestionControl,
        CongestionControlBuilder::new(ConstantBitrate::new(1_000_000.0)).build(),
        declining,
    );
    r.build()
}

fn stream(ssrc: u32) -> StreamInfo {
    StreamInfo {
        ssrc,
        payload_type: 96,
        mime_type: "video/VP8".to_owned(),
        clock_rate: 90_000,
        rtp_header_extensions: vec![RTPHeaderExtension {
            uri: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01".to_owned(),
            id: 5,
        }],
        rtcp_feedback: ["nack", "transport-cc"]
            .into_iter()
            .map(|typ| RTCPFeedback {
                typ: typ.to_owned(),
                parameter: String::new(),
            })
            .chain(std::iter::once(RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: "pli".to_owned(),
            }))
            .collect(),
        ..Default::default()
    }
}

fn tagged(now: Instant, packet: Packet) -> TaggedPacket {
    TaggedPacket {
        now,
        transport: TransportContext::default(),
        message: packet.into(),
    }
}

/// What came out of a chain, in order, with what differs by design between
/// two runs (the random sender SSRCs of generated RTCP) left out.
fn describe(direction: &str, msg: &TaggedPacket) -> String {
    let packet = match &msg.message.packet {
        Packet::Rtp(p) => format!(
            "rtp {} {} {} {} {:?} {:?}",
            p.header.ssrc,
            p.header.sequence_number,
            p.header.timestamp,
            p.header.payload_type,
            p.header.extensions,
            p.payload
        ),
        Packet::Rtcp(packets) => packets
            .iter()
            .map(|p| {
                let mut text = format!("{p:?}");
                // `sender_ssrc: 123` → `sender_ssrc: _`; the same for the report's own
                // SSRC and the wall clock a sender report carries.
                for field in ["sender_ssrc: ", "ReceiverReport { ssrc: ", "ntp_time: "] {
                    text = mask_number_after(&text, field);
                }
                text
            })
            .collect::<Vec<_>>()
            .join(" | "),
        other => format!("{other:?}"),
    };
    format!(
        "{direction} at {:?}: {packet} {:?}",
        msg.now, msg.message.attributes
    )
}

/// `text` with the number after each `field` replaced by `_`.
fn mask_number_after(text: &str, field: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(field) {
        out.push_str(&rest[..i + field.len()]);
        rest = rest[i + field.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('_');
    }
    out.push_str(rest);
    out
}

/// Drives a chain through a call's worth of traffic and returns what it emitted.
fn run(mut chain: impl Interceptor, start: Instant) -> Vec<String> {
    chain.bind_local_stream(&stream(1111));
    chain.bind_remote_stream(&stream(2222));
    let mut out = Vec::new();
    let drain = |chain: &mut dyn Interceptor, out: &mut Vec<String>| {
        while let Some(m) = chain.poll_write() {
            out.push(describe("out", &m));
        }
        while let Some(m) = chain.poll_read() {
            out.push(describe("in", &m));
        }
    };
    for i in 0..600u16 {
        let now = start + Duration::from_millis(5 * u64::from(i));
        // Forwarded to the subscriber.
        chain
            .handle_write(tagged(now, Packet::Rtp(rtp(1111, i, false, 200))))
            .expect("write");
        drain(&mut chain, &mut out);
        // From the subscriber, every seventh lost: NACKs and feedback go back.
        if i % 7 != 3 {
            chain
                .handle_read(tagged(now, Packet::Rtp(rtp(2222, i, true, 100))))
                .expect("read");
            drain(&mut chain, &mut out);
        }
        // The subscriber asks for a packet again: the responder resends it.
        if i % 50 == 49 {
            let nack = TransportLayerNack {
                sender_ssrc: 9,
                media_ssrc: 1111,
                nacks: vec![NackPair {
                    packet_id: i - 10,
                    lost_packets: 0b101,
                }],
            };
            chain
                .handle_read(tagged(now, Packet::Rtcp(vec![Box::new(nack)])))
                .expect("nack");
            drain(&mut chain, &mut out);
        }
        chain.handle_timeout(now).expect("timeout");
        drain(&mut chain, &mut out);
    }
    out
}

#[test]
fn interceptors_taking_packets_in_passing_emit_what_queueing_them_emits() {
    let start = Instant::now();
    let queued = run(chain(true), start);
    let passed = run(chain(false), start);
    assert!(
        queued
            .iter()
            .any(|l| l.starts_with("out") && l.contains("TransportLayerNack")),
        "the run makes the chain ask for lost packets"
    );
    assert!(
        queued.iter().filter(|l| l.contains("rtp 1111")).count() > 600,
        "the run makes the chain resend packets"
    );
    assert!(
        queued.iter().any(|l| l.contains("SenderReport")),
        "the run makes the chain send reports"
    );
    assert_eq!(queued.len(), passed.len(), "as many packets out of each chain");
    for (i, (q, p)) in queued.iter().zip(&passed).enumerate() {
        assert_eq!(q, p, "packet {i} differs");
    }
}
