//! The downlink estimate an SFU chooses simulcast layers by.
//!
//! GCC has two halves and its target is the lower of them: the delay-based
//! half (queues growing: the link is full) and the loss-based half, which
//! lowers the target whenever more than 10 % of the packets go missing.
//! For an encoder that is a safe rule; for an SFU choosing layers it takes
//! the picture away from exactly the links this product is for. A commune's
//! 4G cell loses 5-10 % at random without being full, and the viewer gets
//! those packets back by retransmission; the loss half reads that as
//! congestion and walks the target down to its floor (measured in Chromium:
//! 10 % loss each way at 300 ms round trip took it from 2 Mbps to 100 kbps
//! in 12 s with the queues quiet), and the ladder then turns video off on a
//! link that carries it. So [`ForwardingEstimate`] keeps GCC's delay-based
//! half and its own loss-based half, the same as GCC's (5 % more every
//! 200 ms while under 2 % is lost, nothing between, down in proportion above;
//! judged over the last second of feedback, or more until 100 packets)
//! except that it comes down only above [`HEAVY_LOSS`]: a drop-tail
//! bottleneck that a sudden cap overflows loses far more than that (and its
//! queue, full, stops growing, so the delay half does not see it); random
//! radio loss on two legs does not. The ladder ([`crate::layers`]) also
//! judges by what the viewer itself loses.
//!
//! Loss is counted only among the packets the receiver's feedback spoke
//! of ([`FeedbackCoverage`]). `rtc` reports as lost every packet older than
//! the newest acknowledged one that no feedback mentioned, so a feedback
//! packet lost on the viewer's uplink turned every packet it described into
//! a loss: at 10 % random loss each way the estimate read 20-37 % (measured
//! in Chromium, 2026-12-07), above [`HEAVY_LOSS`], and walked the station's
//! downlink to its floor in 16 s; the ladder turned its video off.
//! libwebrtc's feedback adapter counts only what the feedback reports.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport};

/// Loss (averaged, and in the latest feedback) above which the estimate comes down.
pub const HEAVY_LOSS: f64 = 0.2;
/// Loss under which the loss-based half may climb.
const LOW_LOSS: f64 = 0.02;
/// The least time between two changes of the loss-based half.
const LOSS_INTERVAL: Duration = Duration::from_millis(200);
/// Loss is judged over the feedback of the last second...
const LOSS_WINDOW: Duration = Duration::from_secs(1);
/// ...or over more, up to [`LOSS_WINDOW_MAX`], until it counts this many
/// packets: at 10 % random loss, 100 packets read above [`HEAVY_LOSS`] about
/// once in 2,000 judgements, 20 packets one in ten.
const LOSS_PACKETS: u32 = 100;
const LOSS_WINDOW_MAX: Duration = Duration::from_secs(3);
/// Fewer packets than this in [`LOSS_WINDOW_MAX`]: nothing is judged.
const LOSS_PACKETS_MIN: u32 = 20;

/// How many recent feedback packets [`FeedbackCoverage`] remembers: a few
/// seconds of them (a browser sends one every 50-250 ms), far longer than
/// `rtc` holds a report back.
const COVERAGE_KEPT: usize = 64;

/// The transport-wide sequence numbers the receiver's recent feedback
/// spoke of (arrived or not), recorded by the SFU's feedback stage before
/// the congestion controller reads the same feedback.
#[derive(Clone, Debug, Default)]
pub struct FeedbackCoverage(Arc<Mutex<VecDeque<(u16, u16)>>>);

impl FeedbackCoverage {
    /// One feedback packet: `count` sequence numbers from `base`.
    pub fn record(&self, base: u16, count: u16) {
        let mut ranges = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ranges.len() == COVERAGE_KEPT {
            ranges.pop_front();
        }
        ranges.push_back((base, count));
    }

    /// Whether recent feedback spoke of `seq`.
    pub fn covers(&self, seq: u16) -> bool {
        let ranges = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ranges.iter().any(|&(base, count)| seq.wrapping_sub(base) < count)
    }
}

/// GCC's delay-based half, and a loss-based half that only heavy loss brings down.
pub struct ForwardingEstimate {
    gcc: Gcc,
    coverage: FeedbackCoverage,
    loss_target: f64,
    min: f64,
    max: f64,
    /// Recent feedback: when, packets lost, packets told of.
    feedback: VecDeque<(Instant, u32, u32)>,
    average_loss: Option<f64>,
    changed: Option<Instant>,
}

impl ForwardingEstimate {
    /// An estimator starting at `initial`, held within `min..=max` (bps),
    /// counting loss among the packets `coverage` says feedback spoke of.
    pub fn new(initial: f64, min: f64, max: f64, coverage: FeedbackCoverage) -> Self {
        Self {
            gcc: Gcc::new(initial, min, max),
            coverage,
            loss_target: initial.clamp(min, max),
            min,
            max,
            feedback: VecDeque::new(),
            average_loss: None,
            changed: None,
        }
    }

    /// One feedback batch: `lost` of `total` packets did not arrive.
    fn handle_loss(&mut self, now: Instant, lost: usize, total: usize) {
        if total > 0 {
            self.feedback.push_back((now, lost as u32, total as u32));
        }
        while self
            .feedback
            .front()
            .is_some_and(|&(at, _, _)| now.saturating_duration_since(at) > LOSS_WINDOW_MAX)
        {
            self.feedback.pop_front();
        }
        // The last second, or longer until it counts enough packets: a
        // viewer on the lowest layer is told of 4-12 packets per feedback,
        // and each such batch alone reads 0-40 % at 10 % random loss. A
        // window in time also forgets a cap's overflow a second after the
        // step down that ended it, whatever the rate since.
        let (mut lost, mut told) = (0u32, 0u32);
        for &(at, l, t) in self.feedback.iter().rev() {
            if now.saturating_duration_since(at) > LOSS_WINDOW && told >= LOSS_PACKETS {
                break;
            }
            lost += l;
            told += t;
        }
        if told < LOSS_PACKETS_MIN {
            return;
        }
        let loss = f64::from(lost) / f64::from(told);
        self.average_loss = Some(loss);
        if self
            .changed
            .is_some_and(|at| now.saturating_duration_since(at) < LOSS_INTERVAL)
        {
            return;
        }
        if loss < LOW_LOSS {
            self.loss_target = (self.loss_target * 1.05).clamp(self.min, self.max);
            self.changed = Some(now);
        } else if loss > HEAVY_LOSS {
            self.loss_target = (self.loss_target * (1.0 - 0.5 * loss)).clamp(self.min, self.max);
            self.changed = Some(now);
            // The next judgement on fresh feedback only: the loss that
            // brought this one must not bring the next (at a low rate the
            // window reaches back seconds, and each 200 ms it would cut
            // again for the same overflow, down to the floor).
            self.feedback.clear();
        }
    }
}

impl BandwidthEstimator for ForwardingEstimate {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        self.gcc.on_reports(now, reports);
        // A packet no feedback mentioned is not known lost: the feedback
        // about it may have been.
        let (mut lost, mut told) = (0, 0);
        for r in reports {
            if r.arrived {
                told += 1;
            } else if !r.is_twcc || self.coverage.covers(r.twcc_sequence_number) {
                told += 1;
                lost += 1;
            }
        }
        let before = self.target_bitrate();
        self.handle_loss(now, lost, told);
        if (self.target_bitrate() - before).abs() > before * 0.03 {
            tracing::debug!(
                before,
                after = self.target_bitrate(),
                delay_based = self.gcc.delay_based_bitrate(),
                lost,
                told,
                reported = reports.len(),
                average_loss = ?self.average_loss,
                "estimate moved by loss"
            );
        }
    }

    fn target_bitrate(&self) -> f64 {
        self.gcc
            .delay_based_bitrate()
            .min(self.loss_target)
            .clamp(self.min, self.max)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        let mut stats = self.gcc.stats();
        stats.loss_based_bitrate = Some(self.loss_target);
        stats.packet_loss = self.average_loss;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;
    use std::time::Duration;

    /// Packet `id` (its transport-wide number too) of 1,200 bytes, sent
    /// `sent_ms` after `epoch` and arriving `delay_ms` later unless `lost`.
    fn report(id: u64, epoch: Instant, sent_ms: u64, delay_ms: u64, lost: bool) -> PacketReport {
        PacketReport {
            ssrc: 1,
            id,
            rtp_sequence_number: id as u16,
            is_twcc: true,
            twcc_sequence_number: id as u16,
            size: 1200,
            arrived: !lost,
            departure: epoch + Duration::from_millis(sent_ms),
            arrival: (!lost).then(|| Duration::from_millis(sent_ms + delay_ms)),
            ecn: Ecn::default(),
        }
    }

    /// 200 ms feedback batches of 20 packets of 1,200 bytes sent 10 ms apart
    /// (about 1 Mbps), each arriving 50 ms later unless `lost(id)`; `clock`
    /// counts the batches so far. The feedback for a batch reaches the
    /// estimator unless `feedback_lost(batch)`; then, as in `rtc`, its
    /// packets come with the next batch, as not arrived, and no feedback
    /// spoke of them. `coverage` is what the feedback stage records.
    fn feed_with(
        e: &mut impl BandwidthEstimator,
        coverage: &FeedbackCoverage,
        clock: &mut (Instant, u64),
        secs: u64,
        lost: impl Fn(u64) -> bool,
        feedback_lost: impl Fn(u64) -> bool,
    ) {
        let epoch = clock.0;
        let mut held: Vec<PacketReport> = Vec::new();
        for batch in clock.1..clock.1 + secs * 5 {
            let at = epoch + Duration::from_millis(batch * 200);
            let reports = (0..20).map(|i| {
                let id = batch * 20 + i;
                let sent_ms = batch * 200 + i * 10;
                report(id, epoch, sent_ms, 50, lost(id))
            });
            if feedback_lost(batch) {
                held.extend(reports.map(|r| PacketReport {
                    arrived: false,
                    arrival: None,
                    ..r
                }));
                continue;
            }
            coverage.record((batch * 20) as u16, 20);
            held.extend(reports);
            e.on_reports(at + Duration::from_millis(250), &std::mem::take(&mut held));
        }
        clock.1 += secs * 5;
    }

    /// [`feed_with`], every feedback arriving.
    fn feed(
        e: &mut impl BandwidthEstimator,
        coverage: &FeedbackCoverage,
        clock: &mut (Instant, u64),
        secs: u64,
        lost: impl Fn(u64) -> bool,
    ) {
        feed_with(e, coverage, clock, secs, lost, |_| false);
    }

    fn estimate(coverage: &FeedbackCoverage) -> ForwardingEstimate {
        ForwardingEstimate::new(1_000_000.0, 100_000.0, 4_000_000.0, coverage.clone())
    }

    /// One packet in `n`, spread evenly (random loss without the randomness).
    fn every(n: u64) -> impl Fn(u64) -> bool {
        move |id| id % n == n / 2
    }

    #[test]
    fn random_loss_on_a_quiet_link_keeps_the_estimate() {
        // Plain GCC walks down on 12.5 % loss with the queues quiet...
        let coverage = FeedbackCoverage::default();
        let mut gcc = Gcc::new(1_000_000.0, 100_000.0, 4_000_000.0);
        feed(&mut gcc, &coverage, &mut (Instant::now(), 0), 15, every(8));
        assert!(gcc.target_bitrate() < 500_000.0, "GCC: {}", gcc.target_bitrate());
        // ...the forwarding estimate does not.
        let coverage = FeedbackCoverage::default();
        let mut e = estimate(&coverage);
        feed(&mut e, &coverage, &mut (Instant::now(), 0), 15, every(8));
        assert!(
            e.target_bitrate() >= 1_000_000.0,
            "forwarding: {}",
            e.target_bitrate()
        );
    }

    #[test]
    fn heavy_loss_still_brings_it_down() {
        let coverage = FeedbackCoverage::default();
        let mut e = estimate(&coverage);
        let clock = &mut (Instant::now(), 0);
        feed(&mut e, &coverage, clock, 15, every(3));
        let low = e.target_bitrate();
        assert!(low < 500_000.0, "a third lost: {low}");
        // Then 5 % lost: where the heavy loss left it, neither down nor up.
        feed(&mut e, &coverage, clock, 10, every(20));
        assert_eq!(e.target_bitrate(), low);
        // A clean link: it climbs again.
        feed(&mut e, &coverage, clock, 5, |_| false);
        assert!(e.target_bitrate() > low * 2.0, "{}", e.target_bitrate());
    }

    #[test]
    fn lost_feedback_is_not_lost_packets() {
        // 10 % of the packets lost, and the feedback about one batch in
        // five lost on the way back (a 10 % lossy uplink drops about that
        // share of a browser's feedback packets): counting the packets no
        // feedback spoke of, 28 % reads as lost, over HEAVY_LOSS...
        let data_lost = every(10);
        let feedback_lost = |batch: u64| batch % 5 == 2;
        let unreported = (0..100u64).filter(|&b| feedback_lost(b)).count() * 20;
        let reported_lost = (0..2000u64)
            .filter(|&id| data_lost(id) && !feedback_lost(id / 20))
            .count();
        assert!((unreported + reported_lost) as f64 / 2000.0 > HEAVY_LOSS);
        // ...but only a tenth of what the feedback told is, and the
        // estimate holds.
        let coverage = FeedbackCoverage::default();
        let mut e = estimate(&coverage);
        feed_with(
            &mut e,
            &coverage,
            &mut (Instant::now(), 0),
            20,
            data_lost,
            feedback_lost,
        );
        assert!(e.target_bitrate() >= 1_000_000.0, "{}", e.target_bitrate());
        let loss = e.stats().packet_loss.expect("loss measured");
        assert!((0.05..0.15).contains(&loss), "loss read {loss}");
    }

    /// A cap overflowed by a top layer: heavy loss cuts the estimate; then
    /// the lowest layer (a few packets a second) arrives whole. The overflow's
    /// loss, still within the window at that low rate, must not cut again.
    #[test]
    fn one_overflow_cuts_once_per_fresh_evidence_not_to_the_floor() {
        let coverage = FeedbackCoverage::default();
        let mut e = estimate(&coverage);
        let t0 = Instant::now();
        let mut id = 0u64;
        let mut batch = |e: &mut ForwardingEstimate, ms: u64, n: u64, lost: &dyn Fn(u64) -> bool| {
            let reports: Vec<PacketReport> = (0..n)
                .map(|_| {
                    id += 1;
                    report(id, t0, ms, 20, lost(id))
                })
                .collect();
            coverage.record(reports[0].twcc_sequence_number, n as u16);
            e.on_reports(t0 + Duration::from_millis(ms + 40), &reports);
        };
        // One second of half the packets lost, 100 a second.
        for b in 0..5 {
            batch(&mut e, b * 200, 20, &|id| id % 2 == 0);
        }
        let cut = e.target_bitrate();
        assert!(cut < 800_000.0, "the overflow cuts: {cut}");
        // Then 20 packets a second, none lost, for two seconds.
        for b in 5..15 {
            batch(&mut e, b * 200, 4, &|_| false);
        }
        assert!(e.target_bitrate() >= cut, "{} after {cut}", e.target_bitrate());
    }

    #[test]
    fn coverage_reads_ranges_across_the_wrap() {
        let c = FeedbackCoverage::default();
        c.record(65_530, 10);
        assert!(c.covers(65_535) && c.covers(0) && c.covers(3));
        assert!(!c.covers(4) && !c.covers(65_529));
        for i in 0..COVERAGE_KEPT as u16 {
            c.record(1_000 + i * 10, 10);
        }
        assert!(!c.covers(65_535), "the oldest ranges are forgotten");
        assert!(c.covers(1_000 + 10 * COVERAGE_KEPT as u16 - 1));
    }
}
