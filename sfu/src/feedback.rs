//! Letting RTCP feedback reach the application.
//!
//! In `rtc` 0.21 inbound RTCP is consumed by the interceptor chain (reports,
//! NACK responder) and stops at its terminus unless an interceptor marks it
//! `DeliverToApplication`. An SFU must see keyframe requests (PLI/FIR, to
//! relay upstream), REMB (for layer choice) and NACKs (for stats), so this
//! interceptor marks exactly those and leaves the rest to the chain.

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// The registry slot for [`DeliverFeedback`]: next to the application.
pub const SLOT: usize = 14_000;

/// Marks inbound PLI, FIR, REMB and NACK for delivery to the application.
#[derive(Default)]
pub struct DeliverFeedback {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

/// Whether an RTCP packet is feedback the application acts on.
pub fn is_feedback(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<ReceiverEstimatedMaximumBitrate>()
        || any.is::<TransportLayerNack>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if packets.iter().any(|p| is_feedback(p.as_ref())) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
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

impl Interceptor for DeliverFeedback {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
