//! Not asking again for packets that a retransmission already brought.
//!
//! When the sender retransmits on a separate RTX stream (RFC 4588, which
//! browsers do and the SFU does), the repaired packet arrives under the RTX
//! SSRC with the original sequence number in its first two payload bytes.
//! `rtc` 0.21's NACK generator only records packets by the SSRC they arrive
//! on, so it never learns that an RTX packet repaired the hole: it asks for
//! the same packet again every 100 ms until the packet leaves its window,
//! and every answer is a duplicate. On the SFU's uplink that wastes a
//! station's scarce bandwidth on repeats (and the repeats were forwarded
//! downstream); a receiver with the same generator turned 5 % downlink loss
//! into about 1.4 duplicates per packet received.
//!
//! This part of the SFU's interceptor ([`crate::interceptor`]) sits
//! wire-ward of the generator: it notes the original sequence number of
//! every RTX packet it reads, and strikes those numbers out of the NACKs the
//! generator writes (dropping a NACK left empty).
//!
//! It also stops asking for what is not worth having. The generator asks for
//! every hole in its 512-packet window, every 100 ms, for as long as the
//! hole stays there. After a station's link comes back from an outage that
//! is hundreds of packets, seconds old: the browser answers from its
//! history with retransmissions that its pacer sends *before* new media, so
//! the fresh keyframe the SFU asked for waits behind a second of stale
//! repairs (measured: the picture came back 1.3-4.3 s after a 5 s blackout).
//! A hole left by a silence of [`OUTAGE`] or more is never asked for (the
//! keyframe requested when the path came back repairs the picture), and no
//! hole is asked for once it is older than [`MAX_NACK_AGE`] (a browser's
//! jitter buffer has given up on it by then, as libwebrtc's NACK module does).
//!
//! And it asks once per round trip. The generator is set to look for holes
//! every `ASK_INTERVAL` (`engine/peer.rs`: 20 ms, not `rtc`'s 100 ms), so a
//! hole is asked for about 10 ms after it shows rather than 50; a packet
//! already asked for is asked again only once an answer could have come
//! back ([`RoundTrip`]: the shortest recent time from asking for a packet
//! to its retransmission arriving, measured here), as libwebrtc's NACK
//! module does. At 300 ms round trip the generator alone asked for each
//! hole three times before the first answer could arrive.

use crate::rtcp_edit::{edit_in_place, RtcpEdit};
use rtc::interceptor::{Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a repair is remembered: longer than the generator keeps asking.
const REMEMBER: Duration = Duration::from_secs(3);
/// A hole that opened after this long without a packet is an outage's: not
/// asked for.
pub const OUTAGE: Duration = Duration::from_millis(500);
/// A hole older than this is not asked for any more.
pub const MAX_NACK_AGE: Duration = Duration::from_millis(1000);
/// Holes remembered per stream, at most.
const MAX_GAPS: usize = 256;
/// Repairs remembered per stream, at most.
const MAX_REMEMBERED: usize = 4096;
/// Packets asked for remembered per stream, at most.
const MAX_ASKED: usize = 1024;
/// The round trip assumed before any has been measured (what `rtc`'s
/// generator waited between two asks).
const DEFAULT_ROUND_TRIP: Duration = Duration::from_millis(100);
/// Round-trip samples kept (the shortest of them is the estimate).
const ROUND_TRIP_SAMPLES: usize = 16;

/// The time from asking for a packet to its retransmission arriving: the
/// shortest of the last [`ROUND_TRIP_SAMPLES`] (a repair that answered a
/// second ask, the first having been lost, reads long).
#[derive(Default)]
struct RoundTrip {
    samples: VecDeque<Duration>,
}

impl RoundTrip {
    fn add(&mut self, d: Duration) {
        if self.samples.len() == ROUND_TRIP_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(d);
    }

    /// How long to wait before asking again for a packet asked for: a round
    /// trip and an eighth (the answer may be on its way).
    fn resend_after(&self) -> Duration {
        let rtt = self.samples.iter().min().copied().unwrap_or(DEFAULT_ROUND_TRIP);
        rtt + rtt / 8
    }
}

/// The packets of one stream asked for and not yet repaired: when each was
/// first and last asked for.
#[derive(Default)]
struct Asked {
    at: HashMap<u16, (Instant, Instant)>,
}

#[derive(Default)]
struct Repaired {
    order: VecDeque<(u16, Instant)>,
    seqs: HashSet<u16>,
}

impl Repaired {
    fn add(&mut self, now: Instant, seq: u16) {
        while let Some(&(old, at)) = self.order.front() {
            if self.order.len() < MAX_REMEMBERED && now.saturating_duration_since(at) < REMEMBER {
                break;
            }
            self.order.pop_front();
            self.seqs.remove(&old);
        }
        if self.seqs.insert(seq) {
            self.order.push_back((seq, now));
        }
    }
}

/// A run of missing sequence numbers in one received stream.
#[derive(Debug, Clone, Copy)]
struct Gap {
    /// First missing sequence number, and how many are missing.
    first: u16,
    len: u16,
    /// When the packet after the hole arrived.
    opened: Instant,
    /// The hole came with a silence of [`OUTAGE`] or more.
    outage: bool,
}

/// What was received on one stream: where its sequence is, and its holes.
#[derive(Default)]
struct Received {
    highest: Option<u16>,
    last_at: Option<Instant>,
    gaps: VecDeque<Gap>,
}

impl Received {
    fn on_packet(&mut self, now: Instant, seq: u16) {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.last_at = Some(now);
            return;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead == 0 || ahead >= 0x8000 {
            // A duplicate, or a late packet (filling a hole, or too old).
            return;
        }
        if ahead > 1 {
            let silent = self
                .last_at
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            if self.gaps.len() >= MAX_GAPS {
                self.gaps.pop_front();
            }
            self.gaps.push_back(Gap {
                first: highest.wrapping_add(1),
                len: ahead - 1,
                opened: now,
                outage: silent >= OUTAGE,
            });
        }
        self.highest = Some(seq);
        self.last_at = Some(now);
        while self
            .gaps
            .front()
            .is_some_and(|g| now.saturating_duration_since(g.opened) > REMEMBER)
        {
            self.gaps.pop_front();
        }
    }

    /// Whether `seq` is worth asking for at `now`.
    fn worth_asking(&self, now: Instant, seq: u16) -> bool {
        !self.gaps.iter().any(|g| {
            seq.wrapping_sub(g.first) < g.len
                && (g.outage || now.saturating_duration_since(g.opened) > MAX_NACK_AGE)
        })
    }
}

/// Strikes out of outgoing NACKs the packets already repaired over RTX, and
/// those not worth asking for (an outage's, or too old).
#[derive(Default)]
pub struct RtxNackFilter {
    /// RTX SSRC → the SSRC of the stream it repairs.
    rtx_of: HashMap<u32, u32>,
    repaired: HashMap<u32, Repaired>,
    /// Holes of each received primary stream.
    received: HashMap<u32, Received>,
    /// What each primary stream's NACKs asked for, not yet repaired.
    asked: HashMap<u32, Asked>,
    /// From asking to the repair arriving, over all streams.
    round_trip: RoundTrip,
    /// Sequence numbers struck out so far (for tests and stats).
    struck: u64,
}

impl RtxNackFilter {
    /// NACK entries removed so far.
    pub fn struck(&self) -> u64 {
        self.struck
    }

    /// The NACK without the packets not to ask for; `None` if nothing is left.
    fn filter(&mut self, now: Instant, nack: &TransportLayerNack) -> Option<TransportLayerNack> {
        let repaired = self.repaired.get(&nack.media_ssrc);
        let received = self.received.get(&nack.media_ssrc);
        let resend_after = self.round_trip.resend_after();
        let asked = self.asked.entry(nack.media_ssrc).or_default();
        let wanted: Vec<u16> = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
        let left: Vec<u16> = wanted
            .iter()
            .copied()
            .filter(|s| !repaired.is_some_and(|r| r.seqs.contains(s)))
            .filter(|s| received.is_none_or(|r| r.worth_asking(now, *s)))
            .filter(|s| {
                asked
                    .at
                    .get(s)
                    .is_none_or(|&(_, last)| now.saturating_duration_since(last) >= resend_after)
            })
            .collect();
        // Forget what is too old to be asked for again, then note these asks.
        asked
            .at
            .retain(|_, &mut (first, _)| now.saturating_duration_since(first) <= MAX_NACK_AGE);
        for &s in &left {
            if asked.at.len() >= MAX_ASKED && !asked.at.contains_key(&s) {
                break;
            }
            asked.at.entry(s).and_modify(|e| e.1 = now).or_insert((now, now));
        }
        self.struck += (wanted.len() - left.len()) as u64;
        (!left.is_empty()).then(|| TransportLayerNack {
            sender_ssrc: nack.sender_ssrc,
            media_ssrc: nack.media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(&left),
        })
    }
}

impl RtxNackFilter {
    /// An inbound packet: an RTX packet records the packet it repairs; a
    /// media packet records where its stream is, and the holes before it.
    pub fn on_read(&mut self, msg: &TaggedPacket) {
        if let Packet::Rtp(p) = &msg.message.packet {
            match (self.rtx_of.get(&p.header.ssrc), p.payload.get(..2)) {
                (Some(&primary), Some(osn)) => {
                    let seq = u16::from_be_bytes([osn[0], osn[1]]);
                    self.repaired.entry(primary).or_default().add(msg.now, seq);
                    self.on_repair(msg.now, primary, seq);
                }
                (Some(_), None) => {}
                (None, _) => self
                    .received
                    .entry(p.header.ssrc)
                    .or_default()
                    .on_packet(msg.now, p.header.sequence_number),
            }
        }
    }

    /// A retransmission of `seq` on stream `ssrc` arrived (over a declared
    /// RTX stream, or a simulcast layer's put back into its layer): if it was
    /// asked for, the time since the first ask is a round-trip sample.
    pub fn on_repair(&mut self, now: Instant, ssrc: u32, seq: u16) {
        if let Some((first, _)) = self.asked.get_mut(&ssrc).and_then(|a| a.at.remove(&seq)) {
            self.round_trip.add(now.saturating_duration_since(first));
        }
    }

    /// An outbound packet: packets not to ask for are struck out of its
    /// NACKs. `false`: nothing is left of it, do not send it.
    pub fn on_write(&mut self, msg: &mut TaggedPacket) -> bool {
        let now = msg.now;
        edit_in_place::<TransportLayerNack>(msg, |nack| {
            if !self.repaired.contains_key(&nack.media_ssrc) && !self.received.contains_key(&nack.media_ssrc)
            {
                return RtcpEdit::Keep;
            }
            match self.filter(now, nack) {
                Some(n) => RtcpEdit::Replace(Box::new(n)),
                None => RtcpEdit::Drop,
            }
        })
    }

    /// A remote stream was bound: learns its RTX SSRC.
    pub fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_of.insert(rtx, info.ssrc);
        }
    }

    /// A remote stream went away.
    pub fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_of.remove(&rtx);
        }
        self.repaired.remove(&info.ssrc);
        self.received.remove(&info.ssrc);
        self.asked.remove(&info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interceptor::test_packets::tagged;

    fn rtp(ssrc: u32, seq: u16, payload: &[u8]) -> TaggedPacket {
        crate::interceptor::test_packets::rtp(ssrc, seq, None, payload)
    }

    fn nack(media_ssrc: u32, seqs: &[u16]) -> TaggedPacket {
        tagged(Packet::Rtcp(vec![crate::interceptor::test_packets::nack(
            media_ssrc, seqs,
        )]))
    }

    /// What a NACK written through the filter still asks for (`None`: dropped).
    fn asked(f: &mut RtxNackFilter, mut out: TaggedPacket) -> Option<Vec<u16>> {
        if !f.on_write(&mut out) {
            return None;
        }
        let Packet::Rtcp(packets) = &out.message.packet else {
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
    fn a_packet_repaired_over_rtx_is_not_asked_for_again() {
        let mut f = RtxNackFilter::default();
        f.bind_remote_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        // 10 and 11 were lost; the generator asks for both.
        assert_eq!(asked(&mut f, nack(1000, &[10, 11])), Some(vec![10, 11]));
        // 10 comes back on the RTX stream (original sequence number first).
        f.on_read(&rtp(2000, 500, &[0, 10, 0xaa, 0xbb]));
        // The generator, not knowing, asks for both again: only 11 goes out.
        assert_eq!(asked(&mut f, nack(1000, &[10, 11])), Some(vec![11]));
        // 11 is repaired too: the next NACK is dropped altogether.
        f.on_read(&rtp(2000, 501, &[0, 11]));
        assert_eq!(asked(&mut f, nack(1000, &[10, 11])), None);
        assert_eq!(f.struck(), 3);
    }

    fn rtp_at(ssrc: u32, seq: u16, at: Instant) -> TaggedPacket {
        let mut p = rtp(ssrc, seq, &[1]);
        p.now = at;
        p
    }

    fn nack_at(media_ssrc: u32, seqs: &[u16], at: Instant) -> TaggedPacket {
        let mut n = nack(media_ssrc, seqs);
        n.now = at;
        n
    }

    /// After an outage the holes are the outage's: asking for them makes the
    /// browser resend seconds of stale media before the keyframe.
    #[test]
    fn an_outages_hole_is_not_asked_for() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut f = RtxNackFilter::default();
        for (i, seq) in (100u16..110).enumerate() {
            f.on_read(&rtp_at(1000, seq, ms(i as u64 * 20)));
        }
        // A 40 ms hole (two packets lost) is asked for.
        f.on_read(&rtp_at(1000, 112, ms(220)));
        assert_eq!(
            asked(&mut f, nack_at(1000, &[110, 111], ms(230))),
            Some(vec![110, 111])
        );
        // Five seconds of silence, then the stream goes on 250 packets later.
        f.on_read(&rtp_at(1000, 363, ms(5220)));
        let hole: Vec<u16> = (113..363).collect();
        assert_eq!(
            asked(&mut f, nack_at(1000, &hole, ms(5230))),
            None,
            "none of the outage's hole"
        );
        // A small hole after it is asked for again, until it is a second old.
        f.on_read(&rtp_at(1000, 365, ms(5260)));
        assert_eq!(asked(&mut f, nack_at(1000, &[364], ms(5300))), Some(vec![364]));
        assert_eq!(
            asked(&mut f, nack_at(1000, &[364], ms(6300))),
            None,
            "too old by now"
        );
        // Across the sequence wrap too.
        let mut g = RtxNackFilter::default();
        g.on_read(&rtp_at(7, 65_530, ms(0)));
        g.on_read(&rtp_at(7, 4, ms(2000)));
        assert_eq!(asked(&mut g, nack_at(7, &[65_535, 0, 3], ms(2010))), None);
    }

    /// The generator looks for holes every 20 ms; a packet asked for is
    /// asked again only once its answer could have come back: after 100 ms
    /// (and an eighth) until a round trip is measured, then after the
    /// shortest measured one.
    #[test]
    fn a_hole_is_asked_for_once_per_round_trip() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut f = RtxNackFilter::default();
        f.bind_remote_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        f.on_read(&rtp_at(1000, 9, ms(0)));
        f.on_read(&rtp_at(1000, 13, ms(10)));
        assert_eq!(
            asked(&mut f, nack_at(1000, &[10, 11, 12], ms(20))),
            Some(vec![10, 11, 12])
        );
        for t in [40, 60, 80, 100, 120] {
            assert_eq!(
                asked(&mut f, nack_at(1000, &[10, 11, 12], ms(t))),
                None,
                "at {t} ms"
            );
        }
        assert_eq!(
            asked(&mut f, nack_at(1000, &[10, 11, 12], ms(140))),
            Some(vec![10, 11, 12])
        );
        // 10 comes back 300 ms after it was first asked for: the round trip.
        let mut repair = rtp(2000, 500, &[0, 10]);
        repair.now = ms(320);
        f.on_read(&repair);
        // 11 and 12 were last asked for at 140 ms: not again before 140 + 337.
        assert_eq!(asked(&mut f, nack_at(1000, &[11, 12], ms(460))), None);
        assert_eq!(
            asked(&mut f, nack_at(1000, &[11, 12], ms(480))),
            Some(vec![11, 12])
        );
        // A simulcast layer's repair (put back into its layer) counts the same.
        f.on_repair(ms(500), 1000, 11);
        assert_eq!(asked(&mut f, nack_at(1000, &[12], ms(520))), None);
    }

    #[test]
    fn other_streams_and_other_rtcp_pass_untouched() {
        let mut f = RtxNackFilter::default();
        f.bind_remote_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        f.on_read(&rtp(2000, 1, &[0, 10]));
        // A NACK about another stream.
        assert_eq!(asked(&mut f, nack(3000, &[10])), Some(vec![10]));
        // Media on the primary stream is not a repair.
        f.on_read(&rtp(1000, 12, &[0, 12]));
        assert_eq!(asked(&mut f, nack(1000, &[12])), Some(vec![12]));
        // A too-short RTX packet (padding) names nothing.
        f.on_read(&rtp(2000, 2, &[7]));
        assert_eq!(asked(&mut f, nack(1000, &[7])), Some(vec![7]));
    }
}
