//! Letting RTCP feedback reach the application.
//!
//! In `rtc` 0.21 inbound RTCP is consumed by the interceptor chain (reports,
//! NACK responder) and stops at its terminus unless an interceptor marks it
//! `DeliverToApplication`. An SFU must see keyframe requests (PLI/FIR, to
//! relay upstream), REMB (for layer choice), NACKs (for stats) and receiver
//! reports (a subscriber's proof that our packets reach it, for
//! [`crate::delivery`]), so this part of the SFU's interceptor marks exactly
//! those and leaves the rest to the chain.

use rtc::interceptor::{Attribute, Packet, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

/// Marks inbound PLI, FIR, REMB, NACK, RR and SR for delivery to the application
/// (one part of [`crate::interceptor::SfuInterceptor`]).
#[derive(Default)]
pub struct DeliverFeedback;

/// Whether an RTCP packet is feedback the application acts on.
pub fn is_feedback(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<ReceiverEstimatedMaximumBitrate>()
        || any.is::<TransportLayerNack>()
        || any.is::<ReceiverReport>()
        // A participant that also sends media reports what it receives in
        // its sender reports' blocks.
        || any.is::<SenderReport>()
}

impl DeliverFeedback {
    /// An inbound packet: marks it if it carries feedback.
    pub fn on_read(&mut self, msg: &mut TaggedPacket) {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if packets.iter().any(|p| is_feedback(p.as_ref())) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
    }
}
