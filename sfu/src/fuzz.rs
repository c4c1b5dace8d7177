//! Fuzz targets for everything the SFU reads off the network before any
//! peer connection has judged it: STUN routing, ICE-TCP framing, the
//! interceptor stage's RTP and RTCP editing, the stream rewriter and the
//! codec parsers that pick keyframes and PictureIDs.
//!
//! Each target is a bolero test. Under `cargo test` / nextest (and so in
//! `.ci/run`) it replays the checked-in corpus (`src/__fuzz__/<target>/corpus`)
//! and then a few thousand random inputs, in a second or two. The same
//! target runs coverage-guided under libFuzzer for as long as wanted:
//!
//! ```text
//! cargo install cargo-bolero
//! cargo +nightly bolero test -p telehealth-sfu fuzz::stun_datagram -T 10min
//! ```
//!
//! (docs/FUZZING.md lists every target and what the long runs found.)
//! A target fails on a panic, and on any property it states being broken.

use crate::codec::{
    h264_is_keyframe, red_primary, vp8_is_keyframe_start, vp8_picture_id, vp8_set_picture_id,
};
use crate::interceptor::SfuInterceptor;
use crate::rewrite::StreamRewriter;
use crate::stun::{integrity_ok, is_stun, local_ufrag, signed_binding_request};
use crate::tcp_framing::{encode_into, FrameDecoder};
use bytes::BytesMut;
use rtc::interceptor::{AttributedPacket, Interceptor, Packet, RTPHeaderExtension, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::marshal::Unmarshal;
use std::time::{Duration, Instant};

/// A datagram on the media port, as the engine reads it before routing:
/// whatever it is, reading it must not panic, and a ufrag is only ever
/// found in something that is STUN.
#[test]
fn stun_datagram() {
    let provider = rtc::crypto::default_provider().expect("crypto provider");
    // The provider is shared, read-only, by every input.
    let crypto = std::panic::AssertUnwindSafe(provider.crypto());
    bolero::check!().for_each(|data: &[u8]| {
        let stun = is_stun(data);
        if local_ufrag(data).is_some() {
            assert!(stun, "a ufrag read out of something that is not STUN");
        }
        if integrity_ok(data, "our-password-0123456789", *crypto) {
            assert!(stun, "integrity accepted on something that is not STUN");
        }
    });
}

/// Any username and password: the request we sign is STUN, names the
/// ufrag before the colon, and checks out with its password only.
#[test]
fn stun_signed_request_round_trip() {
    let provider = rtc::crypto::default_provider().expect("crypto provider");
    let crypto = std::panic::AssertUnwindSafe(provider.crypto());
    bolero::check!()
        .with_type::<(String, String)>()
        .for_each(|(username, password)| {
            if username.len() > 500 || password.is_empty() {
                return;
            }
            let m = signed_binding_request(username, password, *crypto);
            assert!(is_stun(&m));
            assert_eq!(local_ufrag(&m), username.split(':').next());
            assert!(integrity_ok(&m, password, *crypto));
            let other = format!("{password}x");
            assert!(!integrity_ok(&m, &other, *crypto));
        });
}

/// An ICE-TCP byte stream, cut anywhere: frames never exceed the limit,
/// nothing is buffered past one frame and its prefix, and an error is
/// final. The stream is built of pieces: a random length prefix and
/// bytes, a whole frame of about the limit's length (just under, at, just
/// over), or bytes alone.
#[test]
fn tcp_stream() {
    bolero::check!()
        .with_type::<(Vec<(u8, u16, Vec<u8>)>, Vec<u8>)>()
        .for_each(|(pieces, cuts)| {
            const MAX: usize = 1500;
            let mut stream = Vec::new();
            for (mode, len, body) in pieces {
                match mode % 3 {
                    0 => {
                        stream.extend_from_slice(&len.to_be_bytes());
                        stream.extend_from_slice(body);
                    }
                    1 => {
                        let len = MAX - 2 + usize::from(len % 5);
                        stream.extend_from_slice(&(len as u16).to_be_bytes());
                        stream.resize(stream.len() + len, 0xab);
                    }
                    _ => stream.extend_from_slice(body),
                }
            }
            let mut d = FrameDecoder::new(MAX);
            let mut at = 0;
            let mut cuts = cuts.iter().map(|&c| usize::from(c) * 8 + 1).cycle();
            while at < stream.len() {
                let n = cuts.next().unwrap_or(stream.len()).min(stream.len() - at);
                d.extend(&stream[at..at + n]);
                at += n;
                loop {
                    match d.next_frame() {
                        Ok(Some(frame)) => assert!(
                            !frame.is_empty() && frame.len() <= MAX,
                            "a frame of {}",
                            frame.len()
                        ),
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                assert!(d.buffered() <= MAX + 2, "{} bytes buffered", d.buffered());
            }
        });
}

/// Packets framed and read back, the stream cut anywhere, are the packets.
#[test]
fn tcp_round_trip() {
    bolero::check!()
        .with_type::<(Vec<Vec<u8>>, Vec<u8>)>()
        .for_each(|(packets, cuts)| {
            let mut wire = BytesMut::new();
            let mut sent = Vec::new();
            for p in packets {
                if encode_into(p, &mut wire) {
                    sent.push(p.clone());
                } else {
                    assert!(p.is_empty() || p.len() > usize::from(u16::MAX));
                }
            }
            let mut d = FrameDecoder::new(usize::from(u16::MAX));
            let mut got = Vec::new();
            let mut cuts = cuts.iter().map(|&c| usize::from(c) + 1).cycle();
            let mut at = 0;
            while at < wire.len() {
                let n = cuts.next().unwrap_or(wire.len()).min(wire.len() - at);
                d.extend(&wire[at..at + n]);
                at += n;
                while let Some(frame) = d.next_frame().expect("our own framing") {
                    got.push(frame.to_vec());
                }
            }
            assert_eq!(got, sent);
            assert_eq!(d.buffered(), 0);
        });
}

/// One packet for [`interceptor_stage`]: `kind` picks RTP on a known
/// stream (with its rid, or its repair rid on RTX), RTX padding (a
/// bandwidth probe), a NACK, a PLI, a receiver report, or raw bytes read as
/// RTCP or RTP; `ssrc` picks one of the streams the stage knows, or one
/// it does not.
type StagePacket = (u8, bool, u8, u16, Vec<u16>, Vec<u8>);

const STREAMS: [u32; 6] = [1000, 2000, 10, 11, 500, 4242];

fn stage_packet((kind, _, ssrc, seq, seqs, bytes): &StagePacket) -> Option<Packet> {
    use bytes::Bytes;
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::rtcp::reception_report::ReceptionReport;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
        nack_pairs_from_sequence_numbers, TransportLayerNack,
    };
    let ssrc = STREAMS[usize::from(*ssrc) % STREAMS.len()];
    Some(match kind % 7 {
        0 | 1 => {
            let mut header = rtc::rtp::Header {
                version: 2,
                ssrc,
                payload_type: 96,
                sequence_number: *seq,
                padding: kind % 7 == 1 && bytes.is_empty(),
                ..Default::default()
            };
            let rid = ["q", "h", "f", ""][usize::from(*seq % 4)];
            if !rid.is_empty() {
                let id = if ssrc == 11 { 4 } else { 3 };
                header
                    .set_extension(id, Bytes::copy_from_slice(rid.as_bytes()))
                    .ok()?;
            }
            Packet::Rtp(rtc::rtp::Packet {
                header,
                payload: Bytes::copy_from_slice(bytes),
            })
        }
        2 => Packet::Rtcp(vec![Box::new(TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: ssrc,
            nacks: nack_pairs_from_sequence_numbers(seqs),
        })]),
        3 => Packet::Rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: ssrc,
        })]),
        4 => Packet::Rtcp(vec![Box::new(ReceiverReport {
            ssrc: 1,
            reports: seqs
                .iter()
                .take(31)
                .map(|&s| ReceptionReport {
                    ssrc: STREAMS[usize::from(s) % STREAMS.len()],
                    last_sequence_number: u32::from(s),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })]),
        5 => Packet::Rtcp(rtc::rtcp::packet::unmarshal(&mut &bytes[..]).ok()?),
        _ => Packet::Rtp(rtc::rtp::Packet::unmarshal(&mut &bytes[..]).ok()?),
    })
}

/// The stage every connection's packets cross, fed media, repairs, probes
/// and feedback (and raw bytes that parse as either) in both directions,
/// for a plain stream with RTX and a simulcast layer named by rid: it
/// edits and passes on, never panics, and gives back at most what it took
/// (a compound RTCP packet goes on one packet at a time).
#[test]
fn interceptor_stage() {
    bolero::check!()
        .with_type::<Vec<StagePacket>>()
        .for_each(|packets| {
            let mut s = SfuInterceptor::default();
            s.bind_remote_stream(&StreamInfo {
                ssrc: 1000,
                ssrc_rtx: Some(2000),
                ..Default::default()
            });
            s.bind_remote_stream(&StreamInfo {
                ssrc: 10,
                ssrc_rtx: Some(11),
                rtp_header_extensions: vec![
                    RTPHeaderExtension {
                        uri: rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI.to_owned(),
                        id: 3,
                    },
                    RTPHeaderExtension {
                        uri: rtc::sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI.to_owned(),
                        id: 4,
                    },
                ],
                ..Default::default()
            });
            s.bind_local_stream(&StreamInfo {
                ssrc: 500,
                ..Default::default()
            });
            let start = Instant::now();
            for (i, p) in packets.iter().enumerate() {
                let Some(packet) = stage_packet(p) else {
                    continue;
                };
                let pieces = if let Packet::Rtcp(v) = &packet {
                    v.len().max(1)
                } else {
                    1
                };
                let msg = TaggedPacket {
                    now: start + Duration::from_millis(i as u64 * 7),
                    transport: Default::default(),
                    message: AttributedPacket::from(packet),
                };
                let mut out = 0;
                if p.1 {
                    s.handle_read(msg).expect("reads are not refused");
                } else {
                    s.handle_write(msg).expect("writes are not refused");
                }
                while s.poll_read().is_some() {
                    out += 1;
                }
                while s.poll_write().is_some() {
                    out += 1;
                }
                assert!(out <= pieces, "{out} packets out of {pieces}");
            }
        });
}

/// One subscriber's stream across switches between three sources, in
/// any order, with any numbers: packets of one source keep their
/// spacing, the first packet after a switch follows the last one sent,
/// and the SSRC is always the subscriber's.
#[test]
fn rewriter() {
    bolero::check!()
        .with_type::<Vec<(u8, u16, u32, u16, bool)>>()
        .for_each(|packets| {
            let mut rw = StreamRewriter::new(7777, 90_000);
            let mut now = Instant::now();
            let mut last: Option<(u32, u16, u16)> = None;
            let mut highest: Option<u16> = None;
            for &(source, seq, ts, advance_ms, splice) in packets {
                if splice {
                    rw.splice();
                    last = None;
                }
                now += Duration::from_millis(u64::from(advance_ms % 200));
                let ssrc = 100 + u32::from(source % 3);
                let out = rw.rewrite(now, ssrc, seq, ts);
                assert_eq!(out.ssrc, 7777);
                match last {
                    Some((s, in_seq, out_seq)) if s == ssrc => {
                        assert_eq!(
                            out.sequence_number.wrapping_sub(out_seq),
                            seq.wrapping_sub(in_seq),
                            "spacing within one source"
                        );
                    }
                    _ => {
                        if let Some(h) = highest {
                            assert_eq!(
                                out.sequence_number,
                                h.wrapping_add(1),
                                "a splice follows the last sent"
                            );
                        }
                    }
                }
                let newer = highest.is_none_or(|h| {
                    let d = out.sequence_number.wrapping_sub(h);
                    d != 0 && d < 0x8000
                });
                if newer {
                    highest = Some(out.sequence_number);
                }
                last = Some((ssrc, seq, out.sequence_number));
            }
        });
}

/// Payloads as a publisher may send them: keyframe detection and the
/// RED and VP8 descriptor readers stay inside the payload, and a
/// PictureID written where one was found reads back.
#[test]
fn codec_payload() {
    bolero::check!()
        .with_type::<(Vec<u8>, u16)>()
        .for_each(|(payload, id)| {
            let _ = vp8_is_keyframe_start(payload);
            let _ = h264_is_keyframe(payload);
            if let Some((_, start)) = red_primary(payload) {
                assert!(start <= payload.len());
            }
            if let Some((at, _)) = vp8_picture_id(payload) {
                assert!(at + 1 < payload.len());
                let mut p = payload.clone();
                vp8_set_picture_id(&mut p, at, *id);
                assert_eq!(vp8_picture_id(&p), Some((at, id & 0x7FFF)));
            }
        });
}
