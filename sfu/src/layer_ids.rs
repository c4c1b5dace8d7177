//! Keeping simulcast layers recognisable across renegotiations.
//!
//! A browser publishing simulcast does not declare its layers' SSRCs in SDP:
//! each layer's packets name their m-section and layer in the MID and RID
//! header extensions (RFC 8843, RFC 8852), and the receiver binds the new
//! SSRC to its layer from those. A browser stops adding the two extensions
//! once a receiver report acknowledges the SSRC (libwebrtc:
//! `OnReceivedAckOnSsrc`). `rtc` 0.21, however, forgets every such binding
//! whenever a remote description is applied (`start_rtp` resets the
//! receiver's track), so after the first renegotiation — an ICE restart when
//! a station's network changes, a participant leaving or rejoining — the
//! publisher's video would be dropped as an unknown SSRC for the rest of the
//! call.
//!
//! This part of the SFU's interceptor ([`crate::interceptor`]) keeps the
//! browser announcing its layers: it notes the
//! SSRCs whose packets carry a RID, and takes their report blocks out of
//! the receiver reports the SFU sends. The cost: the publisher gets no
//! RTCP-RR loss and RTT figures for its simulcast layers (its bandwidth
//! estimate runs on transport-wide feedback, which is unaffected), the SFU's
//! own loss and jitter figures for those layers are not updated, and each
//! packet carries about 8 more header bytes.

use crate::rtcp_edit::{edit_in_place, RtcpEdit};
use rtc::interceptor::{Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use std::collections::{HashMap, HashSet};

/// Keeps RID-identified SSRCs unacknowledged in receiver reports.
#[derive(Default)]
pub struct KeepLayerIds {
    /// Negotiated id of the RID header extension, per remote SSRC.
    rid_ext: HashMap<u32, u8>,
    /// SSRCs seen carrying a RID.
    layers: HashSet<u32>,
}

impl KeepLayerIds {
    /// Whether packets of `ssrc` have named a simulcast layer.
    pub fn is_layer(&self, ssrc: u32) -> bool {
        self.layers.contains(&ssrc)
    }
}

impl KeepLayerIds {
    /// An inbound packet: an RTP packet with a RID marks its SSRC a layer.
    pub fn on_read(&mut self, msg: &TaggedPacket) {
        if let Packet::Rtp(p) = &msg.message.packet {
            let ssrc = p.header.ssrc;
            if !self.layers.contains(&ssrc) {
                if let Some(&id) = self.rid_ext.get(&ssrc) {
                    if p.header.get_extension(id).is_some_and(|rid| !rid.is_empty()) {
                        self.layers.insert(ssrc);
                    }
                }
            }
        }
    }

    /// An outbound packet: layers' blocks are taken out of its receiver
    /// reports. `false`: nothing is left of it, do not send it.
    pub fn on_write(&mut self, msg: &mut TaggedPacket) -> bool {
        let layers = &self.layers;
        edit_in_place::<ReceiverReport>(msg, |rr| {
            if !rr.reports.iter().any(|r| layers.contains(&r.ssrc)) {
                return RtcpEdit::Keep;
            }
            let mut rr = rr.clone();
            rr.reports.retain(|r| !layers.contains(&r.ssrc));
            if rr.reports.is_empty() {
                RtcpEdit::Drop
            } else {
                RtcpEdit::Replace(Box::new(rr))
            }
        })
    }

    /// A remote stream was bound: learns its RID extension id.
    pub fn bind_remote_stream(&mut self, info: &StreamInfo) {
        let rid = info
            .rtp_header_extensions
            .iter()
            .find(|e| e.uri == rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI)
            .and_then(|e| u8::try_from(e.id).ok());
        if let Some(id) = rid {
            self.rid_ext.insert(info.ssrc, id);
        }
    }

    /// A remote stream went away.
    pub fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.rid_ext.remove(&info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interceptor::test_packets::{receiver_report, tagged};
    use rtc::interceptor::RTPHeaderExtension;

    fn rtp(ssrc: u32, rid: Option<&str>) -> TaggedPacket {
        crate::interceptor::test_packets::rtp(ssrc, 0, rid, &[1, 2, 3])
    }

    fn rr(ssrcs: &[u32]) -> TaggedPacket {
        tagged(Packet::Rtcp(vec![receiver_report(ssrcs)]))
    }

    /// The SSRCs a receiver report written through `k` still reports on
    /// (`None`: dropped).
    fn reported(k: &mut KeepLayerIds, mut out: TaggedPacket) -> Option<Vec<u32>> {
        if !k.on_write(&mut out) {
            return None;
        }
        let Packet::Rtcp(packets) = &out.message.packet else {
            return None;
        };
        Some(
            packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<ReceiverReport>())
                .flat_map(|rr| rr.reports.iter().map(|r| r.ssrc))
                .collect(),
        )
    }

    #[test]
    fn layers_named_by_rid_are_left_out_of_receiver_reports() {
        let mut k = KeepLayerIds::default();
        for ssrc in [10, 20, 30] {
            k.bind_remote_stream(&StreamInfo {
                ssrc,
                rtp_header_extensions: vec![RTPHeaderExtension {
                    uri: rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI.to_owned(),
                    id: 3,
                }],
                ..Default::default()
            });
        }
        // 10 and 20 are simulcast layers; 30 is a plain stream (no RID).
        k.on_read(&rtp(10, Some("q")));
        k.on_read(&rtp(20, Some("h")));
        k.on_read(&rtp(30, None));
        assert!(k.is_layer(10) && k.is_layer(20) && !k.is_layer(30));
        assert_eq!(
            reported(&mut k, rr(&[10, 20, 30])),
            Some(vec![30]),
            "only the plain stream is acknowledged"
        );
        // A report about layers only is not sent at all.
        assert_eq!(reported(&mut k, rr(&[10, 20])), None);
        // Later packets without the extension do not make a layer plain again.
        k.on_read(&rtp(10, None));
        assert!(k.is_layer(10));
    }
}
