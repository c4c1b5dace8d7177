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

use crate::rtcp_edit::{edit_outgoing, RtcpEdit};
use rtc::interceptor::{Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a repair is remembered: longer than the generator keeps asking.
const REMEMBER: Duration = Duration::from_secs(3);
/// Repairs remembered per stream, at most.
const MAX_REMEMBERED: usize = 4096;

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

/// Strikes packets already repaired over RTX out of outgoing NACKs.
#[derive(Default)]
pub struct RtxNackFilter {
    /// RTX SSRC → the SSRC of the stream it repairs.
    rtx_of: HashMap<u32, u32>,
    repaired: HashMap<u32, Repaired>,
    /// Sequence numbers struck out so far (for tests and stats).
    struck: u64,
}

impl RtxNackFilter {
    /// NACK entries removed so far.
    pub fn struck(&self) -> u64 {
        self.struck
    }

    /// The NACK without the repaired packets; `None` if nothing is left to ask for.
    fn filter(&mut self, nack: &TransportLayerNack) -> Option<TransportLayerNack> {
        let repaired = self.repaired.get(&nack.media_ssrc)?;
        let wanted: Vec<u16> = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
        let left: Vec<u16> = wanted
            .iter()
            .copied()
            .filter(|s| !repaired.seqs.contains(s))
            .collect();
        self.struck += (wanted.len() - left.len()) as u64;
        (!left.is_empty()).then(|| TransportLayerNack {
            sender_ssrc: nack.sender_ssrc,
            media_ssrc: nack.media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(&left),
        })
    }
}

impl RtxNackFilter {
    /// An inbound packet: an RTX packet records the packet it repairs.
    pub fn on_read(&mut self, msg: &TaggedPacket) {
        if let Packet::Rtp(p) = &msg.message.packet {
            if let (Some(&primary), Some(osn)) = (self.rtx_of.get(&p.header.ssrc), p.payload.get(..2)) {
                let seq = u16::from_be_bytes([osn[0], osn[1]]);
                self.repaired.entry(primary).or_default().add(msg.now, seq);
            }
        }
    }

    /// An outbound packet: repaired packets are struck out of its NACKs.
    /// `false`: nothing is left of it, do not send it.
    pub fn on_write(&mut self, msg: &mut TaggedPacket) -> bool {
        edit_outgoing::<TransportLayerNack>(msg, |nack| {
            if !self.repaired.contains_key(&nack.media_ssrc) {
                return RtcpEdit::Keep;
            }
            match self.filter(nack) {
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
