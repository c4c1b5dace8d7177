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
//!   their layers, before the NACK generator and the endpoint see them;
//!   bandwidth probes (padding) are marked, and a second stage,
//!   [`DropProbes`], takes them out after the TWCC receiver has counted them.
//!
//! A third stage, [`WatchFeedback`], sits nearest the wire (slot 500) and
//! notes which packets each transport-wide feedback speaks of, before the
//! congestion controller (1,000) reads it ([`FeedbackCoverage`]).
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

use crate::estimate::FeedbackCoverage;
use crate::feedback::DeliverFeedback;
use crate::fresh_repairs::FreshRepairs;
use crate::layer_ids::KeepLayerIds;
use crate::layer_rtx::{LayerRtx, Probe};
use crate::nack_filter::RtxNackFilter;
use rtc::interceptor::{
    Attribute, AttributedPacket, InPassing, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket,
};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The registry slot for [`SfuInterceptor`].
pub const SLOT: usize = 3_500;
/// The registry slot for [`DropProbes`]: after the TWCC receiver (8,000),
/// before the receiver reports (10,000).
pub const DROP_PROBES_SLOT: usize = 8_500;
/// The registry slot for [`WatchFeedback`]: before the congestion
/// controller (1,000) reads the feedback.
pub const WATCH_FEEDBACK_SLOT: usize = 500;

/// `registry` with the SFU's stages in their slots, the handle on the
/// connection's send-side estimate that the first stage keeps, and the
/// feedback coverage the estimator counts loss by.
pub fn with_sfu_stages(registry: Registry) -> (Registry, SendEstimate, FeedbackCoverage) {
    let stage = SfuInterceptor::default();
    let estimate = stage.send_estimate.clone();
    let watch = WatchFeedback::default();
    let coverage = watch.hook.coverage.clone();
    let registry = registry
        .with(Slot::from(WATCH_FEEDBACK_SLOT), watch)
        .with(Slot::from(SLOT), stage)
        .with(Slot::from(DROP_PROBES_SLOT), DropProbes::default());
    (registry, estimate, coverage)
}

/// A connection's latest send-side bandwidth estimate, as its congestion
/// controller announced it ([`Attribute::TargetBitrateChanged`], on the
/// feedback packet that changed it, on its way up the chain).
///
/// Read by the engine for layer choice. `rtc` also copies each change into
/// the `target_bitrate` of the outbound streams that exist at that moment,
/// but only then: a stream created after the estimate settled never had one,
/// and a subscriber whose streams all came after it got no estimate at all —
/// its layer selector kept the lowest layer for the whole call (the doctor
/// at 320×180 on a clean link while the station sent 720p).
#[derive(Clone, Debug, Default)]
pub struct SendEstimate(Arc<AtomicU64>);

impl SendEstimate {
    /// The latest estimate in bps; `None` before the first.
    pub fn get(&self) -> Option<u64> {
        let v = self.0.load(Ordering::Relaxed);
        (v > 0).then_some(v)
    }

    fn set(&self, bps: f64) {
        if bps.is_finite() && bps >= 1.0 {
            self.0.store(bps as u64, Ordering::Relaxed);
        }
    }
}

/// Takes inbound bandwidth probes ([`Probe`]) out of the chain once the
/// TWCC receiver has recorded them. The sender's congestion control reads
/// a probe that the feedback does not list as lost: dropped before the
/// receiver (as this server did), each probe cluster a browser sent read as
/// 15-25 % loss, its loss-based estimate held it at 150-300 kbps for the
/// rest of the call, and its camera on its lowest layer, in one call in
/// five on a clean link.
#[derive(Default)]
pub struct ProbeFilter;

impl ReadHook for ProbeFilter {
    fn on_read(&mut self, msg: &TaggedPacket) -> bool {
        msg.message.custom::<Probe>().is_none()
    }
}

/// Takes inbound bandwidth probes out of the chain ([`ProbeFilter`]).
pub type DropProbes = ReadStage<ProbeFilter>;

/// Records the sequence numbers each inbound transport-wide feedback packet
/// speaks of ([`FeedbackCoverage`]), and passes everything on unchanged.
#[derive(Default)]
pub struct FeedbackWatch {
    /// Shared with the connection's estimator.
    pub coverage: FeedbackCoverage,
}

impl ReadHook for FeedbackWatch {
    fn on_read(&mut self, msg: &TaggedPacket) -> bool {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(cc) = p.as_any().downcast_ref::<TransportLayerCc>() {
                    self.coverage
                        .record(cc.base_sequence_number, cc.packet_status_count);
                }
            }
        }
        true
    }
}

/// Notes transport-wide feedback before the congestion controller reads it ([`FeedbackWatch`]).
pub type WatchFeedback = ReadStage<FeedbackWatch>;

/// What a [`ReadStage`] does with each inbound packet: `false` drops it.
pub trait ReadHook: Send + Sync {
    fn on_read(&mut self, msg: &TaggedPacket) -> bool;
}

/// A stage that only looks at inbound packets (and may drop them), and
/// passes everything else through unchanged.
#[derive(Default)]
pub struct ReadStage<H> {
    /// What it does to each inbound packet.
    pub hook: H,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl<H: ReadHook> Protocol<TaggedPacket, TaggedPacket, ()> for ReadStage<H> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if self.hook.on_read(&msg) {
            self.read_queue.push_back(msg);
        }
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
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

impl<H: ReadHook> Interceptor for ReadStage<H> {
    fn read_in_passing(&mut self, msg: &mut TaggedPacket) -> InPassing {
        if !self.read_queue.is_empty() {
            return InPassing::Declined;
        }
        if self.hook.on_read(msg) {
            InPassing::Passed
        } else {
            InPassing::Consumed
        }
    }

    fn write_in_passing(&mut self, _msg: &mut TaggedPacket) -> InPassing {
        if self.write_queue.is_empty() {
            InPassing::Passed
        } else {
            InPassing::Declined
        }
    }

    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

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
    /// The connection's send-side estimate, for the engine.
    pub send_estimate: SendEstimate,
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
        if matches!(msg.message.packet, Packet::Rtp(_)) {
            if self.read_one(&mut msg) {
                self.read_queue.push_back(msg);
            }
            return Ok(());
        }
        if !self.read_one(&mut msg) {
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
        if self.write_one(&mut msg) {
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

impl SfuInterceptor {
    /// What `handle_read` does to a packet before queueing it (RTCP is
    /// then split and marked, [`split_compound`]): false when it ends here.
    fn read_one(&mut self, msg: &mut TaggedPacket) -> bool {
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) = msg
            .message
            .get(&Attribute::TargetBitrateChanged { bits_per_second: 0.0 })
        {
            self.send_estimate.set(*bits_per_second);
        }
        let arrived_on = match &msg.message.packet {
            Packet::Rtp(p) => Some(p.header.ssrc),
            _ => None,
        };
        if !self.layer_rtx.on_read(msg) {
            // A probe: on to the transport-wide feedback, and no further.
            return true;
        }
        if let Packet::Rtp(p) = &msg.message.packet {
            if arrived_on != Some(p.header.ssrc) {
                // A simulcast layer's retransmission, put back into its layer.
                self.nack_filter
                    .on_repair(msg.now, p.header.ssrc, p.header.sequence_number);
            }
        }
        self.nack_filter.on_read(msg);
        self.layer_ids.on_read(msg);
        if !self.fresh_repairs.on_read(msg) {
            return false;
        }
        if matches!(msg.message.packet, Packet::Rtp(_)) {
            self.feedback.on_read(msg);
        }
        true
    }

    /// What `handle_write` does to a packet before queueing it: false when
    /// it ends here.
    fn write_one(&mut self, msg: &mut TaggedPacket) -> bool {
        if self.layer_ids.on_write(msg) && self.nack_filter.on_write(msg) {
            self.fresh_repairs.on_write(msg);
            return true;
        }
        false
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
    fn read_in_passing(&mut self, msg: &mut TaggedPacket) -> InPassing {
        if !self.read_queue.is_empty() || !matches!(msg.message.packet, Packet::Rtp(_)) {
            return InPassing::Declined;
        }
        if self.read_one(msg) {
            InPassing::Passed
        } else {
            InPassing::Consumed
        }
    }

    fn write_in_passing(&mut self, msg: &mut TaggedPacket) -> InPassing {
        if !self.write_queue.is_empty() {
            return InPassing::Declined;
        }
        if self.write_one(msg) {
            InPassing::Passed
        } else {
            InPassing::Consumed
        }
    }

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

#[cfg(test)]
mod chain_tests {
    use super::*;
    use bytes::Bytes;
    use rtc::interceptor::RTPHeaderExtension;
    use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
    use rtc::peer_connection::configuration::media_engine::MediaEngine;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
    };
    use rtc::rtp::extension::transport_cc_extension::TransportCcExtension;
    use rtc::sdp::extmap::{
        SDES_MID_URI, SDES_REPAIR_RTP_STREAM_ID_URI, SDES_RTP_STREAM_ID_URI, TRANSPORT_CC_URI,
    };
    use rtc::shared::marshal::Marshal;
    use std::time::Duration;

    const MID: u8 = 1;
    const RID: u8 = 3;
    const RRID: u8 = 4;
    const TWCC: u8 = 5;

    fn packet(now: Instant, ssrc: u32, twcc: u16, ext: &[(u8, &str)], payload: &[u8]) -> TaggedPacket {
        let mut header = rtc::rtp::Header {
            version: 2,
            ssrc,
            payload_type: 96,
            sequence_number: twcc,
            padding: payload.is_empty(),
            ..Default::default()
        };
        for &(id, value) in ext {
            header
                .set_extension(id, Bytes::copy_from_slice(value.as_bytes()))
                .expect("a valid extension");
        }
        let seq = TransportCcExtension {
            transport_sequence: twcc,
        }
        .marshal()
        .expect("marshal");
        header
            .set_extension(TWCC, seq.freeze())
            .expect("a valid extension");
        TaggedPacket {
            now,
            transport: Default::default(),
            message: AttributedPacket::from(Packet::Rtp(rtc::rtp::Packet {
                header,
                payload: Bytes::copy_from_slice(payload),
            })),
        }
    }

    /// What the transport-wide feedback says of each sequence number it
    /// covers: received or not.
    fn statuses(fb: &TransportLayerCc) -> Vec<bool> {
        let mut out = Vec::new();
        for chunk in &fb.packet_chunks {
            match chunk {
                PacketStatusChunk::RunLengthChunk(r) => out.extend(std::iter::repeat_n(
                    r.packet_status_symbol != SymbolTypeTcc::PacketNotReceived,
                    r.run_length as usize,
                )),
                PacketStatusChunk::StatusVectorChunk(v) => out.extend(
                    v.symbol_list
                        .iter()
                        .map(|s| *s != SymbolTypeTcc::PacketNotReceived),
                ),
            }
        }
        out.truncate(fb.packet_status_count as usize);
        out
    }

    /// Every estimate the congestion controller announces reaches the
    /// engine's handle, whether or not any outbound stream existed to take it.
    #[test]
    fn the_send_estimate_is_kept_for_the_engine() {
        let (registry, estimate, _) = with_sfu_stages(Registry::new());
        let mut chain = registry.build();
        assert_eq!(estimate.get(), None);
        for bps in [300_000.0, 1_250_000.0] {
            let mut carrier = AttributedPacket::from(Packet::Rtcp(vec![]));
            carrier.add(Attribute::TargetBitrateChanged { bits_per_second: bps });
            chain
                .handle_read(TaggedPacket {
                    now: Instant::now(),
                    transport: Default::default(),
                    message: carrier,
                })
                .unwrap();
            while chain.poll_read().is_some() {}
            assert_eq!(estimate.get(), Some(bps as u64));
        }
    }

    /// The sequence numbers a transport-wide feedback speaks of are noted
    /// for the estimator.
    #[test]
    fn transport_feedback_coverage_is_noted() {
        let (registry, _, coverage) = with_sfu_stages(Registry::new());
        let mut chain = registry.build();
        let fb = TransportLayerCc {
            base_sequence_number: 100,
            packet_status_count: 5,
            ..Default::default()
        };
        chain
            .handle_read(TaggedPacket {
                now: Instant::now(),
                transport: Default::default(),
                message: AttributedPacket::from(Packet::Rtcp(vec![Box::new(fb)])),
            })
            .unwrap();
        assert!(coverage.covers(100) && coverage.covers(104));
        assert!(!coverage.covers(99) && !coverage.covers(105));
    }

    /// A browser's bandwidth probe (padding on a simulcast layer's RTX
    /// stream) is reported as arrived in the transport-wide feedback, and
    /// goes no further than that.
    #[test]
    fn a_probe_is_acknowledged_to_the_sender_and_not_delivered() {
        let registry =
            register_default_interceptors(with_sfu_stages(Registry::new()).0, &mut MediaEngine::default())
                .expect("registry");
        let mut chain = registry.build();
        chain.bind_remote_stream(&StreamInfo {
            ssrc: 20,
            payload_type: 96,
            clock_rate: 90_000,
            rtp_header_extensions: [
                (SDES_MID_URI, MID),
                (SDES_RTP_STREAM_ID_URI, RID),
                (SDES_REPAIR_RTP_STREAM_ID_URI, RRID),
                (TRANSPORT_CC_URI, TWCC),
            ]
            .into_iter()
            .map(|(uri, id)| RTPHeaderExtension {
                uri: uri.to_owned(),
                id: id.into(),
            })
            .collect(),
            ..Default::default()
        });
        let t0 = Instant::now();
        // The layer's own packet, two probes on its RTX stream, the layer again.
        chain
            .handle_read(packet(t0, 20, 1, &[(MID, "1"), (RID, "h")], &[1, 2, 3]))
            .unwrap();
        for twcc in [2, 3] {
            chain
                .handle_read(packet(t0, 21, twcc, &[(MID, "1"), (RRID, "h")], &[]))
                .unwrap();
        }
        chain
            .handle_read(packet(t0, 20, 4, &[(MID, "1"), (RID, "h")], &[4, 5, 6]))
            .unwrap();

        let mut delivered = Vec::new();
        while let Some(p) = chain.poll_read() {
            if let Packet::Rtp(r) = &p.message.packet {
                delivered.push(r.header.ssrc);
            }
        }
        assert_eq!(delivered, vec![20, 20], "the probes go no further");

        chain.handle_timeout(t0 + Duration::from_millis(500)).unwrap();
        let mut feedback = Vec::new();
        while let Some(p) = chain.poll_write() {
            if let Packet::Rtcp(packets) = &p.message.packet {
                for r in packets {
                    if let Some(fb) = r.as_any().downcast_ref::<TransportLayerCc>() {
                        feedback.push((fb.base_sequence_number, statuses(fb)));
                    }
                }
            }
        }
        assert_eq!(
            feedback,
            vec![(1, vec![true, true, true, true])],
            "every packet, the probes too, arrived"
        );
    }
}
