//! Editing a compound RTCP packet inside an interceptor, in either
//! direction: one packet type is kept, replaced or dropped, every other
//! packet passes unchanged. Shared by [`crate::layer_ids`],
//! [`crate::nack_filter`] and [`crate::fresh_repairs`].

use rtc::interceptor::{Packet as ChainPacket, TaggedPacket};
use rtc::rtcp::Packet;

/// What to do with one RTCP packet of the edited type.
pub(crate) enum RtcpEdit {
    Keep,
    Replace(Box<dyn Packet>),
    Drop,
}

/// Applies `edit` to every packet of type `P` in `packets`. `None` when all
/// were kept (nothing is copied then: the common case costs one downcast per
/// packet); otherwise the packets to send instead, possibly none.
pub(crate) fn edit_rtcp<P: 'static>(
    packets: &[Box<dyn Packet>],
    mut edit: impl FnMut(&P) -> RtcpEdit,
) -> Option<Vec<Box<dyn Packet>>> {
    let mut out: Option<Vec<Box<dyn Packet>>> = None;
    for (i, p) in packets.iter().enumerate() {
        let e = match p.as_any().downcast_ref::<P>() {
            Some(typed) => edit(typed),
            None => RtcpEdit::Keep,
        };
        match (e, &mut out) {
            (RtcpEdit::Keep, None) => {}
            (RtcpEdit::Keep, Some(v)) => v.push(p.clone()),
            (changed, out) => {
                let v = out.get_or_insert_with(|| packets[..i].to_vec());
                if let RtcpEdit::Replace(new) = changed {
                    v.push(new);
                }
            }
        }
    }
    out
}

/// [`edit_rtcp`] on a packet in the chain, in place (RTP passes
/// untouched). `false`: nothing is left of it, pass nothing on.
pub(crate) fn edit_in_place<P: 'static>(msg: &mut TaggedPacket, edit: impl FnMut(&P) -> RtcpEdit) -> bool {
    let ChainPacket::Rtcp(packets) = &msg.message.packet else {
        return true;
    };
    match edit_rtcp(packets, edit) {
        None => true,
        Some(kept) if kept.is_empty() => false,
        Some(kept) => {
            msg.message.packet = ChainPacket::Rtcp(kept);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc::rtcp::receiver_report::ReceiverReport;

    fn compound() -> Vec<Box<dyn Packet>> {
        vec![
            Box::new(ReceiverReport {
                ssrc: 1,
                ..Default::default()
            }),
            Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: 7,
            }),
            Box::new(ReceiverReport {
                ssrc: 2,
                ..Default::default()
            }),
        ]
    }

    fn rr_ssrcs(packets: &[Box<dyn Packet>]) -> Vec<u32> {
        packets
            .iter()
            .filter_map(|p| p.as_any().downcast_ref::<ReceiverReport>().map(|r| r.ssrc))
            .collect()
    }

    #[test]
    fn nothing_changed_is_none() {
        assert!(edit_rtcp::<ReceiverReport>(&compound(), |_| RtcpEdit::Keep).is_none());
    }

    #[test]
    fn drops_and_replaces_only_the_edited_type_in_order() {
        let out = edit_rtcp::<ReceiverReport>(&compound(), |rr| match rr.ssrc {
            1 => RtcpEdit::Drop,
            _ => RtcpEdit::Replace(Box::new(ReceiverReport {
                ssrc: 20,
                ..Default::default()
            })),
        })
        .expect("edited");
        assert_eq!(out.len(), 2);
        assert!(out[0].as_any().downcast_ref::<PictureLossIndication>().is_some());
        assert_eq!(rr_ssrcs(&out), vec![20]);
    }

    #[test]
    fn dropping_everything_leaves_an_empty_list() {
        let only_rr: Vec<Box<dyn Packet>> = vec![Box::new(ReceiverReport {
            ssrc: 1,
            ..Default::default()
        })];
        let out = edit_rtcp::<ReceiverReport>(&only_rr, |_| RtcpEdit::Drop).expect("edited");
        assert!(out.is_empty());
    }
}
