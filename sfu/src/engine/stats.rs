//! Stats samples: our own counters per track, plus what RTCP says (RFC 3550
//! §6.4) read out of each connection's `getStats` report.

use super::room::{layer_order, learn_rids, resume_selectors};
use super::*;
use rtc::statistics::report::{RTCStatsReport, RTCStatsReportEntry};

/// Loss and jitter for one SSRC, from the receiver's point of view.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StreamFigures {
    pub packets_lost: i64,
    /// Interarrival jitter in RTP timestamp units, as RTCP carries it
    /// (RFC 3550 §6.4.1). `rtc` 0.21 reports these units under a field
    /// documented as seconds; [`StreamFigures::jitter_s`] converts.
    pub jitter_ticks: Option<f64>,
    pub nacks: u64,
}

impl StreamFigures {
    /// Jitter in seconds, for a stream whose RTP clock runs at `clock_rate` Hz.
    pub fn jitter_s(&self, clock_rate: u32) -> Option<f64> {
        let rate = f64::from(clock_rate);
        self.jitter_ticks.filter(|_| rate > 0.0).map(|t| t / rate)
    }
}

/// Per-SSRC figures and the connection's round-trip time.
#[derive(Debug, Default)]
pub(crate) struct RtcpFigures {
    pub by_ssrc: HashMap<u32, StreamFigures>,
    pub rtt_s: Option<f64>,
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
                            jitter_ticks: Some(r.jitter),
                            nacks: u64::from(s.nack_count),
                        },
                    );
                }
                // What we send to the participant (it reports, in RTCP RR;
                // `rtc` reads reception reports from RRs only, the engine
                // reads them from SRs too, `forward.rs`, and prefers those).
                RTCStatsReportEntry::RemoteInboundRtp(s) => {
                    let r = &s.received_rtp_stream_stats;
                    f.by_ssrc.insert(
                        r.rtp_stream_stats.ssrc,
                        StreamFigures {
                            packets_lost: r.packets_lost,
                            jitter_ticks: Some(r.jitter),
                            nacks: 0,
                        },
                    );
                    if s.round_trip_time > 0.0 {
                        f.rtt_s = Some(s.round_trip_time);
                    }
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
                    jitter_s: figures.jitter_s(published.rtc_codec.clock_rate),
                    nacks: figures.nacks,
                    plis: published.keyframe.sent(),
                    layer: None,
                    codec: published.rtc_codec.mime_type.to_ascii_lowercase(),
                });
                c.last_packets = c.packets;
                c.last_bytes = c.bytes;
                for (sub_key, sub) in published.subs.iter_mut() {
                    let figures = sub
                        .reported
                        .map(|(lost, jitter)| StreamFigures {
                            packets_lost: lost,
                            jitter_ticks: Some(f64::from(jitter)),
                            nacks: 0,
                        })
                        .or_else(|| {
                            rtcp.get(sub_key)
                                .and_then(|f| f.by_ssrc.get(&sub.rewriter.out_ssrc()))
                                .copied()
                        })
                        .unwrap_or_default();
                    let c = &mut sub.counters;
                    samples.entry(*sub_key).or_default().push(TrackStats {
                        track: track_id.clone(),
                        kind: published.kind,
                        direction: Direction::Outbound,
                        packets: c.packets - c.last_packets,
                        bitrate_bps: ((c.bytes - c.last_bytes) as f64 * 8.0 / secs) as u64,
                        packets_lost: figures.packets_lost,
                        jitter_s: figures.jitter_s(published.rtc_codec.clock_rate),
                        nacks: c.nacks,
                        plis: c.plis,
                        layer: sub.selector.as_ref().and_then(|s| s.current()),
                        codec: if sub.strip_red {
                            MIME_TYPE_OPUS.to_ascii_lowercase()
                        } else {
                            published.rtc_codec.mime_type.to_ascii_lowercase()
                        },
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
                interval: self.config.stats_interval,
                rtt_s: rtcp.get(&key).and_then(|f| f.rtt_s),
                send_estimate_bps: peer.send_estimate.get(),
                tracks: samples.remove(&key).unwrap_or_default(),
            };
            self.emit(SfuEvent::Stats(sample));
        }
    }

    /// Every half second: measures each simulcast layer's bitrate, and feeds
    /// every simulcast subscriber's layer selector with those and with the
    /// send-side estimate of its connection (when bandwidth estimation is on;
    /// otherwise REMB feeds it, in `forward.rs`).
    pub(super) fn estimate_tick(&mut self, now: Instant) {
        let secs = now
            .saturating_duration_since(self.last_estimate_at)
            .as_secs_f64()
            .max(0.001);
        self.last_estimate_at = now;
        let mut wanted: Vec<PeerKey> = Vec::new();
        for room in self.rooms.values_mut() {
            for published in room.tracks.values_mut() {
                if published.layers.len() < 2 {
                    continue;
                }
                // Nothing at all from the publisher: its path is down (an
                // outage, a handover), not its layers paused. Choosing a new
                // layer now would only make every subscriber wait for that
                // layer's keyframe once the path is back.
                if published
                    .layers
                    .iter()
                    .all(|s| published.layer_bytes.get(s).is_none_or(|&b| b == 0))
                {
                    continue;
                }
                for &ssrc in &published.layers {
                    let bytes = published.layer_bytes.remove(&ssrc).unwrap_or(0);
                    let measured = bytes as f64 * 8.0 / secs;
                    let smoothed = match published.layer_bps.get(&ssrc) {
                        _ if bytes == 0 => None,
                        Some(Some(prev)) => Some(0.5 * prev + 0.5 * measured),
                        _ => Some(measured),
                    };
                    published.layer_bps.insert(ssrc, smoothed);
                }
                if let Some(peer) = self.peers.get_mut(&published.publisher) {
                    learn_rids(
                        peer,
                        published.receiver_id,
                        &published.layers,
                        &mut published.rids,
                    );
                }
                if let Some(order) = layer_order(&published.layers, &published.rids, &published.layer_bps) {
                    tracing::info!(publisher = %published.participant, from = ?published.layers, to = ?order, "simulcast layers put in order");
                    published.layers = order;
                    resume_selectors(published);
                }
                let rates: Vec<u64> = published
                    .layers
                    .iter()
                    .map(|s| match published.layer_bps.get(s) {
                        Some(Some(bps)) => *bps as u64,
                        // Paused by the publisher: never the one to switch to.
                        _ => u64::MAX,
                    })
                    .collect();
                tracing::trace!(publisher = %published.participant, ?rates, "layer bitrates");
                for (k, sub) in published.subs.iter_mut() {
                    if let Some(sel) = sub.selector.as_mut() {
                        for (layer, &bps) in rates.iter().enumerate() {
                            sel.handle_layer_bitrate(layer, bps);
                        }
                        if !wanted.contains(k) {
                            wanted.push(*k);
                        }
                    }
                }
            }
        }
        if !self.config.bandwidth_estimation {
            return;
        }
        let mut estimates: HashMap<PeerKey, u64> = HashMap::new();
        for k in wanted {
            if let Some(bps) = self.peers.get(&k).and_then(|p| p.send_estimate.get()) {
                estimates.insert(k, bps);
            }
        }
        let mut off: Vec<SfuEvent> = Vec::new();
        for (room_id, room) in self.rooms.iter_mut() {
            for (track_id, published) in room.tracks.iter_mut() {
                for (k, sub) in published.subs.iter_mut() {
                    let (Some(before), Some(&bps)) =
                        (sub.selector.as_ref().map(LayerSelector::target), estimates.get(k))
                    else {
                        continue;
                    };
                    if sub.handle_estimate(now, bps) {
                        tracing::info!(
                            subscriber = k,
                            estimate_bps = bps,
                            "video off: not even the lowest layer fits"
                        );
                        if let Some(p) = self.peers.get(k) {
                            off.push(SfuEvent::VideoLevel {
                                room: room_id.clone(),
                                participant: p.id.clone(),
                                publisher: published.participant.clone(),
                                track: track_id.clone(),
                                level: VideoLevel::Off(VideoOff::Bandwidth),
                            });
                        }
                    }
                    let after = sub.selector.as_ref().map_or(before, LayerSelector::target);
                    if after != before {
                        tracing::debug!(
                            subscriber = k,
                            from = before,
                            to = after,
                            estimate_bps = bps,
                            "simulcast target layer"
                        );
                    }
                }
            }
        }
        for e in off {
            self.emit(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_converted_from_rtp_timestamp_units_to_seconds() {
        let f = StreamFigures {
            packets_lost: 0,
            jitter_ticks: Some(480.0),
            nacks: 0,
        };
        // 480 ticks of a 48 kHz clock (Opus) are 10 ms; of a 90 kHz clock (video) 5.3 ms.
        assert_eq!(f.jitter_s(48_000), Some(0.010));
        assert!((f.jitter_s(90_000).unwrap_or_default() - 0.005_333).abs() < 1e-6);
        assert_eq!(f.jitter_s(0), None, "no clock rate, no jitter");
        assert_eq!(StreamFigures::default().jitter_s(48_000), None);
    }
}
