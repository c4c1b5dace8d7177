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
//! This interceptor sits wire-ward of the generator: it notes the original
//! sequence number of every RTX packet it reads, and strikes those numbers
//! out of the NACKs the generator writes (dropping a NACK left empty).

use crate::rtcp_edit::{edit_rtcp, RtcpEdit};
use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The registry slot for [`RtxNackFilter`]: between the FEC decoder (6000)
/// and the NACK generator (7000), so it reads RTX before the generator would
/// and sees the generator's NACKs on their way out.
pub const SLOT: usize = 6_500;

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
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
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

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtxNackFilter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(p) = &msg.message.packet {
            if let (Some(&primary), Some(osn)) = (self.rtx_of.get(&p.header.ssrc), p.payload.get(..2)) {
                let seq = u16::from_be_bytes([osn[0], osn[1]]);
                self.repaired.entry(primary).or_default().add(msg.now, seq);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let edited = edit_rtcp::<TransportLayerNack>(packets, |nack| {
                if !self.repaired.contains_key(&nack.media_ssrc) {
                    return RtcpEdit::Keep;
                }
                match self.filter(nack) {
                    Some(n) => RtcpEdit::Replace(Box::new(n)),
                    None => RtcpEdit::Drop,
                }
            });
            if let Some(kept) = edited {
                if kept.is_empty() {
                    return Ok(());
                }
                msg.message.packet = Packet::Rtcp(kept);
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for RtxNackFilter {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_of.insert(rtx, info.ssrc);
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_of.remove(&rtx);
        }
        self.repaired.remove(&info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc::interceptor::AttributedPacket;

    fn rtp(ssrc: u32, seq: u16, payload: &[u8]) -> TaggedPacket {
        let p = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                ssrc,
                sequence_number: seq,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        tagged(Packet::Rtp(p))
    }

    fn tagged(packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: AttributedPacket::from(packet),
        }
    }

    fn nack(media_ssrc: u32, seqs: &[u16]) -> TaggedPacket {
        tagged(Packet::Rtcp(vec![Box::new(TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(seqs),
        })]))
    }

    fn asked(f: &mut RtxNackFilter) -> Option<Vec<u16>> {
        let out = f.poll_write()?;
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
        f.handle_write(nack(1000, &[10, 11])).expect("write");
        assert_eq!(asked(&mut f), Some(vec![10, 11]));
        // 10 comes back on the RTX stream (original sequence number first).
        f.handle_read(rtp(2000, 500, &[0, 10, 0xaa, 0xbb])).expect("read");
        assert!(f.poll_read().is_some(), "the RTX packet itself goes on");
        // The generator, not knowing, asks for both again: only 11 goes out.
        f.handle_write(nack(1000, &[10, 11])).expect("write");
        assert_eq!(asked(&mut f), Some(vec![11]));
        // 11 is repaired too: the next NACK is dropped altogether.
        f.handle_read(rtp(2000, 501, &[0, 11])).expect("read");
        f.handle_write(nack(1000, &[10, 11])).expect("write");
        assert_eq!(asked(&mut f), None);
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
        f.handle_read(rtp(2000, 1, &[0, 10])).expect("read");
        // A NACK about another stream.
        f.handle_write(nack(3000, &[10])).expect("write");
        assert_eq!(asked(&mut f), Some(vec![10]));
        // Media on the primary stream is not a repair.
        f.handle_read(rtp(1000, 12, &[0, 12])).expect("read");
        f.handle_write(nack(1000, &[12])).expect("write");
        assert_eq!(asked(&mut f), Some(vec![12]));
        // A too-short RTX packet (padding) names nothing.
        f.handle_read(rtp(2000, 2, &[7])).expect("read");
        f.handle_write(nack(1000, &[7])).expect("write");
        assert_eq!(asked(&mut f), Some(vec![7]));
    }
}
