//! Retransmissions of simulcast layers, put back into their layers.
//!
//! A browser publishing simulcast repairs each layer on its own RTX stream
//! (RFC 4588): a retransmitted packet arrives under an SSRC the SDP never
//! declared, with the original sequence number in its first two payload
//! bytes, and names the layer it repairs in the RepairedRtpStreamId header
//! extension (RFC 8852 §3.2) beside the MID. `rtc` 0.21 does not read that
//! extension (`bind_by_rid`: "TODO: Add support of handling repair rtp
//! stream id"), so it never binds the RTX SSRC and its endpoint drops every
//! retransmission as an unknown SSRC. The SFU's NACKs to the publisher were
//! answered, and the answers thrown away: with 5 % loss on a station's
//! uplink, the doctor's picture stood frozen 22-24 s of every 30 and the
//! doctor's browser asked the SFU for packets the SFU never had.
//!
//! This part of the SFU's interceptor ([`crate::interceptor`]) sits
//! wire-ward of the NACK generator and the endpoint: it learns which SSRC
//! carries each layer (by MID and RID, from the layer's own packets) and
//! turns each retransmission back into the packet it repeats — the layer's
//! SSRC and payload type, the original sequence number, the original
//! payload — exactly as `rtc` does for an RTX stream the SDP declared. From
//! there on the NACK generator counts the hole as filled, and the engine
//! forwards the packet like any other (once: forwarding drops duplicates).
//! Padding-only packets on the RTX stream, which a browser sends to probe
//! for bandwidth, carry nothing to recover: they are marked [`Probe`] and
//! go on only as far as the transport-wide feedback, which must count them
//! as arrived ([`crate::interceptor::DropProbes`]).

use bytes::Bytes;
use rtc::interceptor::{Attribute, Packet, StreamInfo, TaggedPacket};
use rtc::sdp::extmap::{SDES_MID_URI, SDES_REPAIR_RTP_STREAM_ID_URI, SDES_RTP_STREAM_ID_URI};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Marks a padding-only packet on a layer's RTX stream: a bandwidth probe,
/// nothing in it for the NACK generator or the endpoint.
#[derive(Debug)]
pub struct Probe;

/// Longest MID or RID kept as a key (RFC 8852 allows 255; browsers use a
/// few characters).
const MAX_ID_LEN: usize = 16;

/// A layer: the SSRC that carries it and the payload type it was last sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layer {
    ssrc: u32,
    payload_type: u8,
}

/// Negotiated ids of the three header extensions that name streams.
#[derive(Debug, Default, Clone, Copy)]
struct ExtensionIds {
    mid: Option<u8>,
    rid: Option<u8>,
    rrid: Option<u8>,
}

/// Maps simulcast RTX packets back onto their layers.
#[derive(Default)]
pub struct LayerRtx {
    ids: ExtensionIds,
    /// SSRCs `rtc` bound (primary, and any RTX or FEC it declared): never rewritten.
    bound: HashMap<u32, u32>,
    /// Layers by (MID, RID); only SSRCs that are bound get an entry.
    layers: HashMap<(Bytes, Bytes), Layer>,
    /// Primaries with a layer entry, to drop it when unbound.
    layer_ssrcs: HashSet<u32>,
    /// Retransmissions put back into their layers.
    repaired: u64,
}

impl LayerRtx {
    /// Retransmissions recovered so far.
    pub fn repaired(&self) -> u64 {
        self.repaired
    }

    fn ext(&self, header: &rtc::rtp::Header, id: Option<u8>) -> Option<Bytes> {
        let id = id?;
        header
            .get_extension(id)
            .filter(|v| !v.is_empty() && v.len() <= MAX_ID_LEN)
    }

    /// An inbound packet. `false`: it is a retransmission with nothing to
    /// recover (padding, a bandwidth probe). It is marked [`Probe`] and
    /// must still reach the transport-wide feedback, which tells the sender
    /// it arrived, before [`crate::interceptor::DropProbes`] takes it out:
    /// taken out here, a browser read every probe it sent as lost.
    pub fn on_read(&mut self, msg: &mut TaggedPacket) -> bool {
        let Packet::Rtp(p) = &mut msg.message.packet else {
            return true;
        };
        if !p.header.extension {
            return true;
        }
        let ssrc = p.header.ssrc;
        if let Some(&primary) = self.bound.get(&ssrc) {
            // A bound primary naming its layer: remember where the layer is.
            if primary == ssrc {
                if let Some(rid) = self.ext(&p.header, self.ids.rid) {
                    let mid = self.ext(&p.header, self.ids.mid).unwrap_or_default();
                    let layer = Layer {
                        ssrc,
                        payload_type: p.header.payload_type,
                    };
                    if self.layers.get(&(mid.clone(), rid.clone())) != Some(&layer) {
                        self.layers.insert((mid, rid), layer);
                        self.layer_ssrcs.insert(ssrc);
                    }
                }
            }
            return true;
        }
        let Some(rrid) = self.ext(&p.header, self.ids.rrid) else {
            return true;
        };
        let mid = self.ext(&p.header, self.ids.mid).unwrap_or_default();
        let Some(layer) = self.layers.get(&(mid, rrid)).copied() else {
            // A repair of a layer not seen yet: `rtc` drops it.
            return true;
        };
        if p.payload.len() < 2 {
            msg.message.add(Attribute::Custom(Arc::new(Probe)));
            return false;
        }
        p.header.sequence_number = u16::from_be_bytes([p.payload[0], p.payload[1]]);
        p.header.ssrc = layer.ssrc;
        p.header.payload_type = layer.payload_type;
        p.header.padding = false;
        p.payload = p.payload.slice(2..);
        self.repaired += 1;
        true
    }

    /// A remote stream was bound: its SSRCs are `rtc`'s, and its header
    /// extensions give the ids to read.
    pub fn bind_remote_stream(&mut self, info: &StreamInfo) {
        for e in &info.rtp_header_extensions {
            let id = u8::try_from(e.id).ok();
            match e.uri.as_str() {
                SDES_MID_URI => self.ids.mid = id,
                SDES_RTP_STREAM_ID_URI => self.ids.rid = id,
                SDES_REPAIR_RTP_STREAM_ID_URI => self.ids.rrid = id,
                _ => {}
            }
        }
        self.bound.insert(info.ssrc, info.ssrc);
        for repair in [info.ssrc_rtx, info.ssrc_fec].into_iter().flatten() {
            self.bound.entry(repair).or_insert(info.ssrc);
        }
    }

    /// A remote stream was unbound: forgets it and its layer.
    pub fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.bound
            .retain(|s, primary| *s != info.ssrc && *primary != info.ssrc);
        if self.layer_ssrcs.remove(&info.ssrc) {
            self.layers.retain(|_, l| l.ssrc != info.ssrc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interceptor::test_packets::tagged;
    use rtc::interceptor::RTPHeaderExtension;

    const MID: u8 = 1;
    const RID: u8 = 3;
    const RRID: u8 = 4;

    fn extensions() -> Vec<RTPHeaderExtension> {
        [
            (SDES_MID_URI, MID),
            (SDES_RTP_STREAM_ID_URI, RID),
            (SDES_REPAIR_RTP_STREAM_ID_URI, RRID),
        ]
        .into_iter()
        .map(|(uri, id)| RTPHeaderExtension {
            uri: uri.to_owned(),
            id: id.into(),
        })
        .collect()
    }

    fn bound(ssrc: u32) -> StreamInfo {
        StreamInfo {
            ssrc,
            payload_type: 96,
            rtp_header_extensions: extensions(),
            ..Default::default()
        }
    }

    /// A packet with `ext` header extensions set.
    fn packet(ssrc: u32, pt: u8, seq: u16, ext: &[(u8, &str)], payload: &[u8]) -> TaggedPacket {
        let mut header = rtc::rtp::Header {
            version: 2,
            ssrc,
            payload_type: pt,
            sequence_number: seq,
            timestamp: 9000,
            ..Default::default()
        };
        for &(id, value) in ext {
            header
                .set_extension(id, Bytes::copy_from_slice(value.as_bytes()))
                .expect("a valid extension");
        }
        tagged(Packet::Rtp(rtc::rtp::Packet {
            header,
            payload: Bytes::copy_from_slice(payload),
        }))
    }

    fn rtp(msg: &TaggedPacket) -> &rtc::rtp::Packet {
        match &msg.message.packet {
            Packet::Rtp(p) => p,
            _ => panic!("RTP expected"),
        }
    }

    /// Two layers of mid 1 seen, "q" on 10 and "h" on 20.
    fn with_layers() -> LayerRtx {
        let mut l = LayerRtx::default();
        l.bind_remote_stream(&bound(10));
        l.bind_remote_stream(&bound(20));
        for (ssrc, rid) in [(10, "q"), (20, "h")] {
            let mut p = packet(ssrc, 96, 500, &[(MID, "1"), (RID, rid)], &[1, 2, 3]);
            assert!(l.on_read(&mut p));
        }
        l
    }

    #[test]
    fn a_retransmission_becomes_the_packet_it_repeats_in_its_own_layer() {
        let mut l = with_layers();
        // RTX SSRC 21 (never bound), PT 97, its own sequence 7; OSN 499.
        let mut p = packet(21, 97, 7, &[(MID, "1"), (RRID, "h")], &[0x01, 0xF3, 0xAA, 0xBB]);
        assert!(l.on_read(&mut p));
        let r = rtp(&p);
        assert_eq!(
            (r.header.ssrc, r.header.payload_type, r.header.sequence_number),
            (20, 96, 499)
        );
        assert_eq!(&r.payload[..], &[0xAA, 0xBB]);
        assert_eq!(r.header.timestamp, 9000, "the timestamp is the original's");
        assert_eq!(l.repaired(), 1);
        // The other layer's repair goes to the other layer.
        let mut q = packet(11, 97, 8, &[(MID, "1"), (RRID, "q")], &[0x00, 0x05, 0xCC]);
        assert!(l.on_read(&mut q));
        assert_eq!(rtp(&q).header.ssrc, 10);
    }

    #[test]
    fn padding_is_marked_a_probe_and_unknown_or_bound_streams_pass_untouched() {
        let mut l = with_layers();
        // A bandwidth probe: padding only.
        let mut probe = packet(21, 97, 9, &[(MID, "1"), (RRID, "h")], &[]);
        assert!(!l.on_read(&mut probe));
        assert!(probe.message.custom::<Probe>().is_some());
        // A repair of a layer never seen, or of another m-section: left for `rtc`.
        for (mid, rrid) in [("1", "f"), ("2", "h")] {
            let mut p = packet(31, 97, 9, &[(MID, mid), (RRID, rrid)], &[0, 1, 2]);
            assert!(l.on_read(&mut p));
            assert_eq!(rtp(&p).header.ssrc, 31);
        }
        // A declared RTX stream is `rtc`'s to unwrap.
        l.bind_remote_stream(&StreamInfo {
            ssrc_rtx: Some(41),
            ..bound(40)
        });
        let mut p = packet(41, 97, 9, &[(MID, "1"), (RRID, "h")], &[0, 1, 2]);
        assert!(l.on_read(&mut p));
        assert_eq!(rtp(&p).header.ssrc, 41);
        assert_eq!(l.repaired(), 0);
    }

    #[test]
    fn an_unbound_layer_is_forgotten_and_a_layer_that_moved_is_followed() {
        let mut l = with_layers();
        l.unbind_remote_stream(&bound(20));
        let mut p = packet(21, 97, 7, &[(MID, "1"), (RRID, "h")], &[0, 1, 2]);
        assert!(l.on_read(&mut p));
        assert_eq!(rtp(&p).header.ssrc, 21, "no layer h any more");
        // After a renegotiation "h" comes back on a new SSRC with another codec.
        l.bind_remote_stream(&bound(30));
        let mut h = packet(30, 98, 1, &[(MID, "1"), (RID, "h")], &[1]);
        assert!(l.on_read(&mut h));
        let mut p = packet(21, 99, 8, &[(MID, "1"), (RRID, "h")], &[0, 1, 2]);
        assert!(l.on_read(&mut p));
        assert_eq!((rtp(&p).header.ssrc, rtp(&p).header.payload_type), (30, 98));
    }
}
