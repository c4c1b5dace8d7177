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
//! This interceptor keeps the browser announcing its layers: it notes the
//! SSRCs whose packets carry a RID, and takes their report blocks out of
//! the receiver reports the SFU sends. The cost: the publisher gets no
//! RTCP-RR loss and RTT figures for its simulcast layers (its bandwidth
//! estimate runs on transport-wide feedback, which is unaffected), the SFU's
//! own loss and jitter figures for those layers are not updated, and each
//! packet carries about 8 more header bytes.

use crate::rtcp_edit::{edit_rtcp, RtcpEdit};
use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

/// The registry slot for [`KeepLayerIds`]: wire-ward of the receiver-report
/// generator (10,000), so it sees the reports on their way out.
pub const SLOT: usize = 9_500;

/// Keeps RID-identified SSRCs unacknowledged in receiver reports.
#[derive(Default)]
pub struct KeepLayerIds {
    /// Negotiated id of the RID header extension, per remote SSRC.
    rid_ext: HashMap<u32, u8>,
    /// SSRCs seen carrying a RID.
    layers: HashSet<u32>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl KeepLayerIds {
    /// Whether packets of `ssrc` have named a simulcast layer.
    pub fn is_layer(&self, ssrc: u32) -> bool {
        self.layers.contains(&ssrc)
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeepLayerIds {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
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
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let layers = &self.layers;
            let edited = edit_rtcp::<ReceiverReport>(packets, |rr| {
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

impl Interceptor for KeepLayerIds {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        let rid = info
            .rtp_header_extensions
            .iter()
            .find(|e| e.uri == rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI)
            .and_then(|e| u8::try_from(e.id).ok());
        if let Some(id) = rid {
            self.rid_ext.insert(info.ssrc, id);
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.rid_ext.remove(&info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc::interceptor::{AttributedPacket, RTPHeaderExtension};
    use rtc::rtcp::reception_report::ReceptionReport;

    fn tagged(packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: AttributedPacket::from(packet),
        }
    }

    fn rtp(ssrc: u32, rid: Option<&str>) -> TaggedPacket {
        let mut header = rtc::rtp::Header {
            version: 2,
            ssrc,
            ..Default::default()
        };
        if let Some(rid) = rid {
            header
                .set_extension(3, Bytes::copy_from_slice(rid.as_bytes()))
                .expect("a valid extension");
        }
        tagged(Packet::Rtp(rtc::rtp::Packet {
            header,
            payload: Bytes::from_static(&[1, 2, 3]),
        }))
    }

    fn rr(ssrcs: &[u32]) -> TaggedPacket {
        tagged(Packet::Rtcp(vec![Box::new(ReceiverReport {
            ssrc: 1,
            reports: ssrcs
                .iter()
                .map(|&ssrc| ReceptionReport {
                    ssrc,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })]))
    }

    fn reported(k: &mut KeepLayerIds) -> Option<Vec<u32>> {
        let out = k.poll_write()?;
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
        k.handle_read(rtp(10, Some("q"))).expect("read");
        k.handle_read(rtp(20, Some("h"))).expect("read");
        k.handle_read(rtp(30, None)).expect("read");
        assert!(k.is_layer(10) && k.is_layer(20) && !k.is_layer(30));
        k.handle_write(rr(&[10, 20, 30])).expect("write");
        assert_eq!(
            reported(&mut k),
            Some(vec![30]),
            "only the plain stream is acknowledged"
        );
        // A report about layers only is not sent at all.
        k.handle_write(rr(&[10, 20])).expect("write");
        assert_eq!(reported(&mut k), None);
        // Later packets without the extension do not make a layer plain again.
        k.handle_read(rtp(10, None)).expect("read");
        assert!(k.is_layer(10));
    }
}
