//! The SFU's own stage in each connection's interceptor chain.
//!
//! `rtc` 0.21's chain hands every packet, in each direction, to every
//! interceptor in turn, and each one takes it into its own queue and gives
//! it back: four moves of a `TaggedPacket` per interceptor per packet. Under
//! load that copying was the largest single cost of the server (13 % of its
//! CPU in `memmove`, docs/BENCHMARKS.md "Where the time goes"), so the SFU's
//! small jobs share one stage instead of taking one each:
//!
//! - [`DeliverFeedback`]: inbound PLI, FIR, REMB, NACK, RR and SR reach the engine;
//! - [`RtxNackFilter`]: packets already repaired over RTX, or not worth
//!   having (an outage's, too old), are struck out of outgoing NACKs;
//! - [`FreshRepairs`]: packets sent too long ago are struck out of inbound
//!   NACKs, so they are not resent;
//! - [`KeepLayerIds`]: simulcast layers stay out of our receiver reports;
//! - [`LayerRtx`]: retransmissions of simulcast layers are put back into
//!   their layers, before the NACK generator and the endpoint see them.
//!
//! The stage sits at slot 3,500, between the pacer (3,000) and the NACK
//! responder (4,000), which is where each job needs to be (reads walk the
//! slots upwards from the wire, writes downwards to it): it edits inbound
//! NACKs before the responder answers them, notes outgoing packets after
//! the responder buffered them, reads RTX before the NACK generator (7,000)
//! would, and sees the generator's NACKs and the receiver-report
//! generator's (10,000) reports on their way out. Inbound feedback marked
//! here passes the NACK responder, the NACK generator, the TWCC receiver and
//! the report interceptors, which forward every packet they read, to the
//! chain's terminus, which delivers what is marked.

use crate::feedback::DeliverFeedback;
use crate::fresh_repairs::FreshRepairs;
use crate::layer_ids::KeepLayerIds;
use crate::layer_rtx::LayerRtx;
use crate::nack_filter::RtxNackFilter;
use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// The registry slot for [`SfuInterceptor`].
pub const SLOT: usize = 3_500;

/// The SFU's jobs inside the chain, as one interceptor.
#[derive(Default)]
pub struct SfuInterceptor {
    /// Marks feedback for the application.
    pub feedback: DeliverFeedback,
    /// Strikes RTX repairs out of NACKs.
    pub nack_filter: RtxNackFilter,
    /// Keeps simulcast layers out of receiver reports.
    pub layer_ids: KeepLayerIds,
    /// Strikes stale packets out of inbound NACKs.
    pub fresh_repairs: FreshRepairs,
    /// Unwraps simulcast layers' retransmissions.
    pub layer_rtx: LayerRtx,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for SfuInterceptor {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if !self.layer_rtx.on_read(&mut msg) {
            return Ok(());
        }
        self.nack_filter.on_read(&msg);
        self.layer_ids.on_read(&msg);
        if !self.fresh_repairs.on_read(&mut msg) {
            return Ok(());
        }
        for mut piece in split_compound(msg) {
            self.feedback.on_read(&mut piece);
            self.read_queue.push_back(piece);
        }
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if self.layer_ids.on_write(&mut msg) && self.nack_filter.on_write(&mut msg) {
            self.fresh_repairs.on_write(&msg);
            self.write_queue.push_back(msg);
        }
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

/// An inbound compound RTCP packet as one message per packet (anything else
/// as it is). `rtc`'s endpoint files a compound under its first packet's
/// stream and drops all of it when that names no stream it knows: a
/// browser's receiver report that begins with a block about our
/// retransmission (RTX) stream — which it has once the SFU has answered its
/// NACKs — took the keyframe request behind it along. Measured with 5 % loss
/// on a station's uplink: the doctor's page sent 5-8 PLIs in 20 s while its
/// picture stood still, and the SFU saw none.
fn split_compound(mut msg: TaggedPacket) -> Vec<TaggedPacket> {
    let Packet::Rtcp(packets) = &mut msg.message.packet else {
        return vec![msg];
    };
    if packets.len() < 2 {
        return vec![msg];
    }
    let rest: Vec<_> = packets.drain(1..).collect();
    let (now, transport) = (msg.now, msg.transport);
    let mut out = Vec::with_capacity(rest.len() + 1);
    // The first piece keeps the attributes the chain put on the compound.
    out.push(msg);
    out.extend(rest.into_iter().map(|p| TaggedPacket {
        now,
        transport,
        message: AttributedPacket::from(Packet::Rtcp(vec![p])),
    }));
    out
}

impl Interceptor for SfuInterceptor {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.fresh_repairs.bind_local_stream(info);
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.fresh_repairs.unbind_local_stream(info);
    }

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.nack_filter.bind_remote_stream(info);
        self.layer_ids.bind_remote_stream(info);
        self.layer_rtx.bind_remote_stream(info);
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.nack_filter.unbind_remote_stream(info);
        self.layer_ids.unbind_remote_stream(info);
        self.layer_rtx.unbind_remote_stream(info);
    }
}

/// Packets for the unit tests of the stage and its parts.
#[cfg(test)]
pub(crate) mod test_packets {
    use bytes::Bytes;
    use rtc::interceptor::{AttributedPacket, Packet, TaggedPacket};
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::rtcp::reception_report::ReceptionReport;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
        nack_pairs_from_sequence_numbers, TransportLayerNack,
    };
    use std::time::Instant;

    /// `packet`, as the chain carries it.
    pub fn tagged(packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: AttributedPacket::from(packet),
        }
    }

    /// A receiver report with a block for each of `ssrcs`.
    pub fn receiver_report(ssrcs: &[u32]) -> Box<ReceiverReport> {
        Box::new(ReceiverReport {
            ssrc: 1,
            reports: ssrcs
                .iter()
                .map(|&ssrc| ReceptionReport {
                    ssrc,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    /// A NACK for `seqs` of `media_ssrc`.
    pub fn nack(media_ssrc: u32, seqs: &[u16]) -> Box<TransportLayerNack> {
        Box::new(TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc,
            nacks: nack_pairs_from_sequence_numbers(seqs),
        })
    }

    /// An RTP packet; with `rid`, carrying it in header extension 3.
    pub fn rtp(ssrc: u32, seq: u16, rid: Option<&str>, payload: &[u8]) -> TaggedPacket {
        let mut header = rtc::rtp::Header {
            version: 2,
            ssrc,
            sequence_number: seq,
            ..Default::default()
        };
        if let Some(rid) = rid {
            header
                .set_extension(3, Bytes::copy_from_slice(rid.as_bytes()))
                .expect("a valid extension");
        }
        tagged(Packet::Rtp(rtc::rtp::Packet {
            header,
            payload: Bytes::copy_from_slice(payload),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::test_packets::{nack, receiver_report, rtp, tagged};
    use super::*;
    use rtc::interceptor::{Attribute, Packet, RTPHeaderExtension};
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

    fn stage() -> SfuInterceptor {
        let mut s = SfuInterceptor::default();
        // 1000: a plain stream repaired over RTX 2000; 10: a simulcast layer.
        s.bind_remote_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        s.bind_remote_stream(&StreamInfo {
            ssrc: 10,
            rtp_header_extensions: vec![RTPHeaderExtension {
                uri: rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI.to_owned(),
                id: 3,
            }],
            ..Default::default()
        });
        s
    }

    #[test]
    fn every_read_packet_goes_on_and_only_feedback_is_marked_for_the_application() {
        let mut s = stage();
        s.handle_read(rtp(1000, 1, None, &[1])).expect("read");
        s.handle_read(rtp(2000, 2, None, &[0, 9])).expect("read");
        s.handle_read(rtp(10, 3, Some("q"), &[1])).expect("read");
        s.handle_read(tagged(Packet::Rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 1000,
        })])))
        .expect("read");
        s.handle_read(tagged(Packet::Rtcp(vec![Box::new(ReceiverReport::default())])))
            .expect("read");
        let mut marked = Vec::new();
        while let Some(p) = s.poll_read() {
            marked.push(p.message.has(&Attribute::DeliverToApplication));
        }
        // PLI for the engine to relay; RR for the engine to see its streams arrive.
        assert_eq!(marked, vec![false, false, false, true, true]);
        // Each job saw what it needs from the reads above.
        assert!(s.layer_ids.is_layer(10) && !s.layer_ids.is_layer(1000));
    }

    #[test]
    fn a_compound_goes_on_packet_by_packet_and_its_keyframe_request_reaches_the_application() {
        let mut s = stage();
        // As a browser sends it once the SFU has answered its NACKs: a
        // receiver report whose first block is about our RTX stream (a
        // stream `rtc` files nothing under), then the keyframe request.
        s.handle_read(tagged(Packet::Rtcp(vec![
            receiver_report(&[4242, 1000]),
            Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: 1000,
            }),
        ])))
        .expect("read");
        let mut out = Vec::new();
        while let Some(p) = s.poll_read() {
            let Packet::Rtcp(packets) = &p.message.packet else {
                panic!("RTCP in, RTCP out");
            };
            out.push((
                packets.len(),
                packets[0].as_any().is::<PictureLossIndication>(),
                p.message.has(&Attribute::DeliverToApplication),
            ));
        }
        // Two messages of one packet each; the PLI marked for the engine.
        assert_eq!(out, vec![(1, false, true), (1, true, true)]);
    }

    #[test]
    fn writes_pass_through_both_edits_and_an_emptied_packet_is_not_sent() {
        let mut s = stage();
        s.handle_read(rtp(10, 1, Some("q"), &[1])).expect("read");
        s.handle_read(rtp(2000, 2, None, &[0, 7])).expect("read");
        while s.poll_read().is_some() {}
        // Media passes untouched.
        s.handle_write(rtp(1000, 5, None, &[5])).expect("write");
        assert!(matches!(
            s.poll_write().map(|p| p.message.packet),
            Some(Packet::Rtp(_))
        ));
        // A compound report: the layer's block goes, and the NACK for the
        // repaired packet 7 keeps only 8.
        s.handle_write(tagged(Packet::Rtcp(vec![
            receiver_report(&[10, 1000]),
            nack(1000, &[7, 8]),
        ])))
        .expect("write");
        let Some(Packet::Rtcp(out)) = s.poll_write().map(|p| p.message.packet) else {
            panic!("the report goes out");
        };
        let rr = out[0].as_any().downcast_ref::<ReceiverReport>().expect("an RR");
        assert_eq!(rr.reports.iter().map(|r| r.ssrc).collect::<Vec<_>>(), vec![1000]);
        let left = out[1]
            .as_any()
            .downcast_ref::<TransportLayerNack>()
            .expect("a NACK");
        assert_eq!(
            left.nacks
                .iter()
                .flat_map(|p| p.packet_list())
                .collect::<Vec<_>>(),
            vec![8]
        );
        // A report only about the layer and a NACK only for repaired packets: nothing goes out.
        s.handle_write(tagged(Packet::Rtcp(vec![
            receiver_report(&[10]),
            nack(1000, &[7]),
        ])))
        .expect("write");
        assert!(s.poll_write().is_none());
    }
}
