//! Answering only the NACKs a retransmission still helps.
//!
//! A subscriber whose link comes back from an outage asks for every packet
//! it missed — seconds of them. `rtc`'s NACK responder resends whatever its
//! buffer still holds, and those stale repairs go out on the subscriber's
//! just-recovered (often thin) link ahead of the keyframe that actually
//! brings its picture back; in a debug build they also held the engine for
//! over a second. A packet sent more than [`MAX_REPAIR_AGE`] ago is of no
//! use any more: the receiver's jitter buffer has moved on, and a keyframe
//! (which the SFU asks for when the path comes back) repairs the picture.
//!
//! Nor is a packet sent before the stream's latest keyframe: the receiver
//! decodes from the keyframe on and drops what came before. That matters
//! most when a subscriber's link congests: the SFU steps it down to a lower
//! layer, and the receiver asks for the hundreds of higher-layer packets
//! the congested queue dropped. Answering them all put seconds of stale
//! retransmissions on a link that had just been found too thin (measured:
//! at a 300 kbps cap the subscriber kept asking again for 60-100 % of what
//! it was sent for 3 s after the step down, and lost the lowest layer too).
//!
//! This part of the SFU's interceptor ([`crate::interceptor`]) notes when
//! each outgoing RTP packet left and where each video stream's latest
//! keyframe starts, and strikes the stale ones out of inbound NACKs before
//! the responder reads them (dropping a NACK left empty).

use crate::codec::Codec;
use crate::rtcp_edit::{edit_in_place, RtcpEdit};
use rtc::interceptor::{Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A packet sent longer ago than this is not resent.
pub const MAX_REPAIR_AGE: Duration = Duration::from_millis(1000);
/// Send times remembered per stream: more than a second of a 1.5 Mbps layer.
const LOG: usize = 1024;

/// When each of one stream's recent packets left.
struct SentLog {
    /// Indexed by sequence number modulo [`LOG`]: the number and its send time.
    slots: Box<[(u16, Option<Instant>)]>,
    /// Where the latest keyframe sent starts (video).
    keyframe: Option<u16>,
}

impl SentLog {
    fn new() -> Self {
        Self {
            slots: vec![(0, None); LOG].into_boxed_slice(),
            keyframe: None,
        }
    }

    /// Sent before the latest keyframe: of no use to the receiver.
    fn before_keyframe(&self, seq: u16) -> bool {
        self.keyframe.is_some_and(|k| (seq.wrapping_sub(k) as i16) < 0)
    }

    fn record(&mut self, seq: u16, at: Instant) {
        self.slots[usize::from(seq) % LOG] = (seq, Some(at));
    }

    fn sent_at(&self, seq: u16) -> Option<Instant> {
        match self.slots[usize::from(seq) % LOG] {
            (s, at) if s == seq => at,
            _ => None,
        }
    }
}

/// Strikes stale packets out of inbound NACKs.
#[derive(Default)]
pub struct FreshRepairs {
    sent: HashMap<u32, SentLog>,
    /// The codec of each stream we send, to find its keyframes.
    codecs: HashMap<u32, Codec>,
    /// Sequence numbers struck out so far (for tests and stats).
    struck: u64,
}

impl FreshRepairs {
    /// NACK entries not answered so far.
    pub fn struck(&self) -> u64 {
        self.struck
    }

    /// A stream we send.
    pub fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.codecs.insert(info.ssrc, Codec::from_mime(&info.mime_type));
    }

    /// A stream we no longer send.
    pub fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.codecs.remove(&info.ssrc);
        self.sent.remove(&info.ssrc);
    }

    /// An outbound packet: an RTP packet's send time is noted, and where a
    /// keyframe starts.
    pub fn on_write(&mut self, msg: &TaggedPacket) {
        if let Packet::Rtp(p) = &msg.message.packet {
            let log = self.sent.entry(p.header.ssrc).or_insert_with(SentLog::new);
            log.record(p.header.sequence_number, msg.now);
            let codec = self.codecs.get(&p.header.ssrc).copied().unwrap_or(Codec::Other);
            if codec.is_keyframe_start(&p.payload) {
                log.keyframe = Some(p.header.sequence_number);
            }
        }
    }

    /// An inbound packet: stale packets are struck out of its NACKs.
    /// `false`: nothing is left of it, pass nothing on.
    pub fn on_read(&mut self, msg: &mut TaggedPacket) -> bool {
        let now = msg.now;
        edit_in_place::<TransportLayerNack>(msg, |nack| {
            let Some(log) = self.sent.get(&nack.media_ssrc) else {
                // Not a stream of ours (or nothing sent yet): the responder decides.
                return RtcpEdit::Keep;
            };
            let wanted: Vec<u16> = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
            let fresh: Vec<u16> = wanted
                .iter()
                .copied()
                .filter(|&s| {
                    !log.before_keyframe(s)
                        && log
                            .sent_at(s)
                            .is_some_and(|t| now.saturating_duration_since(t) <= MAX_REPAIR_AGE)
                })
                .collect();
            if fresh.len() == wanted.len() {
                return RtcpEdit::Keep;
            }
            self.struck += (wanted.len() - fresh.len()) as u64;
            if fresh.is_empty() {
                return RtcpEdit::Drop;
            }
            RtcpEdit::Replace(Box::new(TransportLayerNack {
                sender_ssrc: nack.sender_ssrc,
                media_ssrc: nack.media_ssrc,
                nacks: nack_pairs_from_sequence_numbers(&fresh),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interceptor::test_packets::{nack, rtp, tagged};

    fn at(mut p: TaggedPacket, t: Instant) -> TaggedPacket {
        p.now = t;
        p
    }

    /// What an inbound NACK still asks for after the filter (`None`: dropped).
    fn asked(f: &mut FreshRepairs, mut msg: TaggedPacket) -> Option<Vec<u16>> {
        if !f.on_read(&mut msg) {
            return None;
        }
        let Packet::Rtcp(packets) = &msg.message.packet else {
            return None;
        };
        Some(
            packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
                .flat_map(|n| n.nacks.iter().flat_map(|p| p.packet_list()))
                .collect(),
        )
    }

    #[test]
    fn only_recent_packets_are_resent() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut f = FreshRepairs::default();
        // 10..=19 went out 20 ms apart, from t0.
        for (i, seq) in (10u16..20).enumerate() {
            f.on_write(&at(rtp(500, seq, None, &[1]), ms(i as u64 * 20)));
        }
        // Shortly after: all are worth resending.
        let n = at(tagged(Packet::Rtcp(vec![nack(500, &[10, 15, 19])])), ms(300));
        assert_eq!(asked(&mut f, n), Some(vec![10, 15, 19]));
        // 1.1 s after t0: 10..=14 (sent by 80 ms) are stale, 15..=19 are not.
        let n = at(
            tagged(Packet::Rtcp(vec![nack(500, &[10, 14, 15, 19])])),
            ms(1_090),
        );
        assert_eq!(asked(&mut f, n), Some(vec![15, 19]));
        // Much later: nothing is; the NACK is not passed on at all.
        let n = at(tagged(Packet::Rtcp(vec![nack(500, &[15, 19])])), ms(5_000));
        assert_eq!(asked(&mut f, n), None);
        // Numbers never sent are not resent either.
        let n = at(tagged(Packet::Rtcp(vec![nack(500, &[900])])), ms(100));
        assert_eq!(asked(&mut f, n), None);
        assert_eq!(f.struck(), 2 + 2 + 1);
    }

    #[test]
    fn nacks_for_other_streams_and_other_rtcp_pass() {
        let mut f = FreshRepairs::default();
        f.on_write(&rtp(500, 1, None, &[1]));
        let n = tagged(Packet::Rtcp(vec![nack(777, &[1, 2])]));
        assert_eq!(asked(&mut f, n), Some(vec![1, 2]));
        let mut media = rtp(500, 2, None, &[1]);
        assert!(f.on_read(&mut media));
    }

    #[test]
    fn nothing_sent_before_the_latest_keyframe_is_resent() {
        let mut f = FreshRepairs::default();
        f.bind_local_stream(&StreamInfo {
            ssrc: 500,
            mime_type: "video/VP8".into(),
            ..Default::default()
        });
        // 10..=19 a higher layer's frames, 20 the start of the lower layer's keyframe, then its frames.
        for seq in 10u16..20 {
            f.on_write(&rtp(500, seq, None, &[0x10, 0x01]));
        }
        f.on_write(&rtp(500, 20, None, &[0x10, 0x00]));
        for seq in 21u16..25 {
            f.on_write(&rtp(500, seq, None, &[0x00, 0x01]));
        }
        let n = tagged(Packet::Rtcp(vec![nack(500, &[12, 19, 20, 23])]));
        assert_eq!(
            asked(&mut f, n),
            Some(vec![20, 23]),
            "the keyframe and after, only"
        );
        // Across the wrap of sequence numbers too.
        for seq in [65534u16, 65535] {
            f.on_write(&rtp(500, seq, None, &[0x10, 0x01]));
        }
        f.on_write(&rtp(500, 65535u16.wrapping_add(1), None, &[0x10, 0x00]));
        f.on_write(&rtp(500, 1, None, &[0x00, 0x01]));
        let n = tagged(Packet::Rtcp(vec![nack(500, &[65535, 0, 1])]));
        assert_eq!(asked(&mut f, n), Some(vec![0, 1]));
        // Audio has no keyframes: nothing is struck for that.
        f.bind_local_stream(&StreamInfo {
            ssrc: 600,
            mime_type: "audio/opus".into(),
            ..Default::default()
        });
        for seq in 1u16..4 {
            f.on_write(&rtp(600, seq, None, &[0x10, 0x00]));
        }
        let n = tagged(Packet::Rtcp(vec![nack(600, &[1, 2])]));
        assert_eq!(asked(&mut f, n), Some(vec![1, 2]));
    }
}
