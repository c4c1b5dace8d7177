//! Stats samples: our own counters per track, plus what RTCP says (RFC 3550
//! §6.4) read out of each connection's `getStats` report.

use super::*;
use rtc::statistics::report::{RTCStatsReport, RTCStatsReportEntry};

/// Loss and jitter for one SSRC, from the receiver's point of view.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StreamFigures {
    pub packets_lost: i64,
    pub jitter_s: Option<f64>,
    pub nacks: u64,
}

/// Per-SSRC figures and the connection's round-trip time.
#[derive(Debug, Default)]
pub(crate) struct RtcpFigures {
    pub by_ssrc: HashMap<u32, StreamFigures>,
    pub rtt_s: Option<f64>,
    /// Send-side estimate (GCC target) for what we send on this connection.
    pub send_estimate_bps: Option<u64>,
}

impl RtcpFigures {
    pub fn from_report(report: &RTCStatsReport) -> Self {
        let mut f = RtcpFigures::default();
        for entry in report.iter() {
            match entry {
                // What we receive from the participant (we measure).
                RTCStatsReportEntry::InboundRtp(s) => {
                    let r = &s.received_rtp_stream_stats;
                    f.by_ssrc.insert(
                        r.rtp_stream_stats.ssrc,
                        StreamFigures {
                            packets_lost: r.packets_lost,
                            jitter_s: Some(r.jitter),
                            nacks: u64::from(s.nack_count),
                        },
                    );
                }
                // What we send to the participant (it reports, in RTCP RR).
                RTCStatsReportEntry::RemoteInboundRtp(s) => {
                    let r = &s.received_rtp_stream_stats;
                    f.by_ssrc.insert(
                        r.rtp_stream_stats.ssrc,
                        StreamFigures {
                            packets_lost: r.packets_lost,
                            jitter_s: Some(r.jitter),
                            nacks: 0,
                        },
                    );
                    if s.round_trip_time > 0.0 {
                        f.rtt_s = Some(s.round_trip_time);
                    }
                }
                RTCStatsReportEntry::OutboundRtp(s) if s.target_bitrate > 0.0 => {
                    let bps = s.target_bitrate as u64;
                    f.send_estimate_bps = Some(f.send_estimate_bps.unwrap_or(0).max(bps));
                }
                RTCStatsReportEntry::IceCandidatePair(p) if p.current_round_trip_time > 0.0 => {
                    f.rtt_s.get_or_insert(p.current_round_trip_time);
                }
                _ => {}
            }
        }
        f
    }
}

impl Engine {
    // ------------------------------------------------------------------ stats

    pub(super) fn stats_tick(&mut self, now: Instant) {
        let secs = now
            .saturating_duration_since(self.last_stats_at)
            .as_secs_f64()
            .max(0.001);
        self.last_stats_at = now;
        // What each connection's RTCP says (loss, jitter, RTT), by SSRC.
        let mut rtcp: HashMap<PeerKey, RtcpFigures> = HashMap::new();
        for (&key, peer) in self.peers.iter_mut() {
            let report = peer.pc.get_stats(now, StatsSelector::None);
            rtcp.insert(key, RtcpFigures::from_report(&report));
        }
        let mut samples: HashMap<PeerKey, Vec<TrackStats>> = HashMap::new();
        for room in self.rooms.values_mut() {
            for (track_id, published) in room.tracks.iter_mut() {
                let figures = rtcp
                    .get(&published.publisher)
                    .and_then(|f| published.layers.iter().find_map(|s| f.by_ssrc.get(s)))
                    .copied()
                    .unwrap_or_default();
                let c = &mut published.counters;
                samples.entry(published.publisher).or_default().push(TrackStats {
                    track: track_id.clone(),
                    kind: published.kind,
                    direction: Direction::Inbound,
                    packets: c.packets - c.last_packets,
                    bitrate_bps: ((c.bytes - c.last_bytes) as f64 * 8.0 / secs) as u64,
                    packets_lost: figures.packets_lost,
                    jitter_s: figures.jitter_s,
                    nacks: figures.nacks,
                    plis: published.keyframe.sent(),
                    layer: None,
                });
                c.last_packets = c.packets;
                c.last_bytes = c.bytes;
                for (sub_key, sub) in published.subs.iter_mut() {
                    let figures = rtcp
                        .get(sub_key)
                        .and_then(|f| f.by_ssrc.get(&sub.rewriter.out_ssrc()))
                        .copied()
                        .unwrap_or_default();
                    let c = &mut sub.counters;
                    samples.entry(*sub_key).or_default().push(TrackStats {
                        track: track_id.clone(),
                        kind: published.kind,
                        direction: Direction::Outbound,
                        packets: c.packets - c.last_packets,
                        bitrate_bps: ((c.bytes - c.last_bytes) as f64 * 8.0 / secs) as u64,
                        packets_lost: figures.packets_lost,
                        jitter_s: figures.jitter_s,
                        nacks: c.nacks,
                        plis: c.plis,
                        layer: sub.selector.as_ref().and_then(|s| s.current()),
                    });
                    c.last_packets = c.packets;
                    c.last_bytes = c.bytes;
                }
            }
        }
        let at = SystemTime::now();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let Some(peer) = self.peers.get(&key) else {
                continue;
            };
            let sample = StatsSample {
                room: peer.room.clone(),
                participant: peer.id.clone(),
                at,
                rtt_s: rtcp.get(&key).and_then(|f| f.rtt_s),
                send_estimate_bps: rtcp.get(&key).and_then(|f| f.send_estimate_bps),
                tracks: samples.remove(&key).unwrap_or_default(),
            };
            self.emit(SfuEvent::Stats(sample));
        }
    }

    /// Feeds each simulcast subscriber's layer selector with the send-side
    /// estimate of its connection (only when bandwidth estimation is on).
    pub(super) fn estimate_tick(&mut self, now: Instant) {
        let mut wanted: Vec<PeerKey> = Vec::new();
        for room in self.rooms.values() {
            for published in room.tracks.values() {
                for (k, sub) in &published.subs {
                    if sub.selector.is_some() && !wanted.contains(k) {
                        wanted.push(*k);
                    }
                }
            }
        }
        let mut estimates: HashMap<PeerKey, u64> = HashMap::new();
        for k in wanted {
            if let Some(p) = self.peers.get_mut(&k) {
                let report = p.pc.get_stats(now, StatsSelector::None);
                if let Some(bps) = RtcpFigures::from_report(&report).send_estimate_bps {
                    estimates.insert(k, bps);
                }
            }
        }
        for room in self.rooms.values_mut() {
            for published in room.tracks.values_mut() {
                for (k, sub) in published.subs.iter_mut() {
                    if let (Some(sel), Some(&bps)) = (sub.selector.as_mut(), estimates.get(k)) {
                        sel.handle_estimate(now, bps);
                    }
                }
            }
        }
    }
}
