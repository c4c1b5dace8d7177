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
//! 200 ms while under 2 % is lost, nothing between, down in proportion above)
//! except that it comes down only above [`HEAVY_LOSS`]: a drop-tail
//! bottleneck that a sudden cap overflows loses far more than that (and its
//! queue, full, stops growing, so the delay half does not see it); random
//! radio loss on two legs does not. The ladder ([`crate::layers`]) also
//! judges by what the viewer itself loses.

use std::time::{Duration, Instant};

use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport};

/// Loss (averaged, and in the latest feedback) above which the estimate comes down.
pub const HEAVY_LOSS: f64 = 0.2;
/// Loss under which the loss-based half may climb.
const LOW_LOSS: f64 = 0.02;
/// The least time between two changes of the loss-based half.
const LOSS_INTERVAL: Duration = Duration::from_millis(200);

/// GCC's delay-based half, and a loss-based half that only heavy loss brings down.
pub struct ForwardingEstimate {
    gcc: Gcc,
    loss_target: f64,
    min: f64,
    max: f64,
    average_loss: Option<f64>,
    changed: Option<Instant>,
}

impl ForwardingEstimate {
    /// An estimator starting at `initial`, held within `min..=max` (bps).
    pub fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            gcc: Gcc::new(initial, min, max),
            loss_target: initial.clamp(min, max),
            min,
            max,
            average_loss: None,
            changed: None,
        }
    }

    /// One feedback batch: `lost` of `total` packets did not arrive.
    fn handle_loss(&mut self, now: Instant, lost: usize, total: usize) {
        if total == 0 {
            return;
        }
        let sample = lost as f64 / total as f64;
        let average = self.average_loss.map_or(sample, |a| 0.8 * a + 0.2 * sample);
        self.average_loss = Some(average);
        if self
            .changed
            .is_some_and(|at| now.saturating_duration_since(at) < LOSS_INTERVAL)
        {
            return;
        }
        if average.max(sample) < LOW_LOSS {
            self.loss_target = (self.loss_target * 1.05).clamp(self.min, self.max);
            self.changed = Some(now);
        } else if average.min(sample) > HEAVY_LOSS {
            self.loss_target = (self.loss_target * (1.0 - 0.5 * average)).clamp(self.min, self.max);
            self.changed = Some(now);
        }
    }
}

impl BandwidthEstimator for ForwardingEstimate {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        self.gcc.on_reports(now, reports);
        let lost = reports.iter().filter(|r| !r.arrived).count();
        self.handle_loss(now, lost, reports.len());
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

    /// 200 ms feedback batches of 20 packets of 1,200 bytes sent 10 ms apart
    /// (about 1 Mbps), each arriving 50 ms later unless `lost(id)`; `clock`
    /// counts the batches so far.
    fn feed(
        e: &mut impl BandwidthEstimator,
        clock: &mut (Instant, u64),
        secs: u64,
        lost: impl Fn(u64) -> bool,
    ) {
        let epoch = clock.0;
        for batch in clock.1..clock.1 + secs * 5 {
            let at = epoch + Duration::from_millis(batch * 200);
            let reports: Vec<PacketReport> = (0..20)
                .map(|i| {
                    let id = batch * 20 + i;
                    let sent_ms = batch * 200 + i * 10;
                    PacketReport {
                        ssrc: 1,
                        id,
                        rtp_sequence_number: id as u16,
                        is_twcc: true,
                        twcc_sequence_number: id as u16,
                        size: 1200,
                        arrived: !lost(id),
                        departure: epoch + Duration::from_millis(sent_ms),
                        arrival: (!lost(id)).then(|| Duration::from_millis(sent_ms + 50)),
                        ecn: Ecn::default(),
                    }
                })
                .collect();
            e.on_reports(at + Duration::from_millis(250), &reports);
        }
        clock.1 += secs * 5;
    }

    /// One packet in `n`, spread evenly (random loss without the randomness).
    fn every(n: u64) -> impl Fn(u64) -> bool {
        move |id| id % n == n / 2
    }

    #[test]
    fn random_loss_on_a_quiet_link_keeps_the_estimate() {
        // Plain GCC walks down on 12.5 % loss with the queues quiet...
        let mut gcc = Gcc::new(1_000_000.0, 100_000.0, 4_000_000.0);
        feed(&mut gcc, &mut (Instant::now(), 0), 15, every(8));
        assert!(gcc.target_bitrate() < 500_000.0, "GCC: {}", gcc.target_bitrate());
        // ...the forwarding estimate does not.
        let mut e = ForwardingEstimate::new(1_000_000.0, 100_000.0, 4_000_000.0);
        feed(&mut e, &mut (Instant::now(), 0), 15, every(8));
        assert!(
            e.target_bitrate() >= 1_000_000.0,
            "forwarding: {}",
            e.target_bitrate()
        );
    }

    #[test]
    fn heavy_loss_still_brings_it_down() {
        let mut e = ForwardingEstimate::new(1_000_000.0, 100_000.0, 4_000_000.0);
        let clock = &mut (Instant::now(), 0);
        feed(&mut e, clock, 15, every(3));
        let low = e.target_bitrate();
        assert!(low < 500_000.0, "a third lost: {low}");
        // Then 5 % lost: where the heavy loss left it, neither down nor up.
        feed(&mut e, clock, 10, every(20));
        assert_eq!(e.target_bitrate(), low);
        // A clean link: it climbs again.
        feed(&mut e, clock, 5, |_| false);
        assert!(e.target_bitrate() > low * 2.0, "{}", e.target_bitrate());
    }
}
