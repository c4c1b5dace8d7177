//! Does a subscriber get the media it should? The watchdog for one
//! subscription.
//!
//! A subscriber can end up in the room without the other side's media while
//! everything looks fine on the surface: its answer to our renegotiation was
//! lost or its browser refused the offer (our packets then reach a
//! connection that has no place for them and are dropped there), or a
//! keyframe request went unanswered (a video subscription waits for a
//! keyframe and forwards nothing). Two signs, both measured here:
//!
//! - **nothing is forwarded** while the publisher sends and the subscriber is
//!   connected — repaired with a keyframe request first (cheap, fixes a lost
//!   PLI or keyframe), then by renegotiating;
//! - **forwarded, but never confirmed**: the subscriber's RTCP reception
//!   reports (RFC 3550 §6.4, in its RRs or SRs) have never said anything
//!   about the stream — a browser reports every stream it receives (video
//!   about every second, audio every five) and none it has no place for —
//!   so its connection is not taking the packets: repaired by renegotiating.
//!   Once a stream was reported on, a pause in the reports (they slow down
//!   with the bandwidth estimate after an outage) is not taken for this.
//!
//! Repairs repeat with growing pauses while the subscription stays stuck.
//! Plain struct: the engine calls [`DeliveryWatch::poll`] on a tick with the
//! facts and acts on the answer.

use std::time::{Duration, Instant};

/// How long forwarding may stay flat, while it should not, before a repair.
pub const STALL: Duration = Duration::from_secs(2);

/// How long forwarded video may go unconfirmed by the subscriber's reception
/// reports before a repair (browsers report on video about every second).
pub const UNCONFIRMED_VIDEO: Duration = Duration::from_secs(4);
/// The same for audio: browsers report on audio only every 5 s.
pub const UNCONFIRMED_AUDIO: Duration = Duration::from_secs(12);

/// A repair step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Ask the publisher for a keyframe.
    Keyframe,
    /// Offer anew (or, with an offer already out, let its answer timeout
    /// ask the subscriber to rejoin).
    Renegotiate,
}

impl Repair {
    /// A stable code for the session log.
    pub fn code(self) -> &'static str {
        match self {
            Repair::Keyframe => "keyframe",
            Repair::Renegotiate => "renegotiate",
        }
    }
}

/// Watches one subscription.
#[derive(Debug, Clone, Default)]
pub struct DeliveryWatch {
    forwarded: u64,
    confirmed: u64,
    /// Since when nothing was forwarded while it should have been.
    flat_since: Option<Instant>,
    /// Since when forwarded packets went unconfirmed.
    unconfirmed_since: Option<Instant>,
    repairs: u32,
}

impl DeliveryWatch {
    /// A new subscription (nothing forwarded yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The facts at `now`: whether media should be flowing to the subscriber
    /// (its publisher sends, the subscriber is connected and wants it), how
    /// many packets were forwarded so far, how many of the subscriber's
    /// reception reports were about the stream so far, and whether it is
    /// video. Returns a repair to make.
    pub fn poll(
        &mut self,
        now: Instant,
        expected: bool,
        forwarded: u64,
        confirmed: u64,
        video: bool,
    ) -> Option<Repair> {
        let forwarding = forwarded > self.forwarded;
        let confirming = confirmed > self.confirmed;
        self.forwarded = forwarded;
        self.confirmed = confirmed;
        if confirming {
            // The subscriber takes what we send: all is well.
            self.repairs = 0;
            self.flat_since = None;
            self.unconfirmed_since = None;
            return None;
        }
        if !expected {
            self.flat_since = None;
            self.unconfirmed_since = None;
            return None;
        }
        // Each repair gets longer to work before the next: ×1, ×2, ×3, ×4.
        let factor = self.repairs.min(3) + 1;
        if forwarding && confirmed > 0 {
            // Reported on before: the subscriber's connection knows the
            // stream. Reports slow down after an outage (RTCP's share of a
            // collapsed bandwidth estimate); that is no reason to renegotiate.
            self.flat_since = None;
            self.unconfirmed_since = None;
            return None;
        }
        let repair = if forwarding {
            self.flat_since = None;
            let since = *self.unconfirmed_since.get_or_insert(now);
            let patience = if video {
                UNCONFIRMED_VIDEO
            } else {
                UNCONFIRMED_AUDIO
            };
            if now.saturating_duration_since(since) < patience * factor {
                return None;
            }
            self.unconfirmed_since = Some(now);
            Repair::Renegotiate
        } else {
            let since = *self.flat_since.get_or_insert(now);
            if now.saturating_duration_since(since) < STALL * factor {
                return None;
            }
            self.flat_since = Some(now);
            if video && self.repairs == 0 {
                Repair::Keyframe
            } else {
                Repair::Renegotiate
            }
        };
        self.repairs += 1;
        Some(repair)
    }

    /// Repairs made since media last got through.
    pub fn repairs(&self) -> u32 {
        self.repairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn confirmed_media_needs_no_repair() {
        let t0 = Instant::now();
        let mut w = DeliveryWatch::new();
        for i in 0..40u64 {
            // Reports come about once a second: confirmation rises every other tick.
            assert_eq!(w.poll(at(t0, i * 500), true, i * 25 + 1, i / 2, true), None);
        }
    }

    #[test]
    fn nothing_is_repaired_while_nothing_is_expected() {
        let t0 = Instant::now();
        let mut w = DeliveryWatch::new();
        // The publisher is silent, or the subscriber is disconnected.
        for i in 0..40u64 {
            assert_eq!(w.poll(at(t0, i * 500), false, 0, 0, true), None);
        }
    }

    #[test]
    fn nothing_forwarded_gets_a_keyframe_then_renegotiation_with_growing_pauses() {
        let t0 = Instant::now();
        let mut w = DeliveryWatch::new();
        assert_eq!(w.poll(t0, true, 0, 0, true), None);
        assert_eq!(w.poll(at(t0, 1999), true, 0, 0, true), None);
        assert_eq!(w.poll(at(t0, 2000), true, 0, 0, true), Some(Repair::Keyframe));
        // The next one after 4 s more, then 6 s.
        assert_eq!(w.poll(at(t0, 5999), true, 0, 0, true), None);
        assert_eq!(w.poll(at(t0, 6000), true, 0, 0, true), Some(Repair::Renegotiate));
        assert_eq!(w.poll(at(t0, 11_999), true, 0, 0, true), None);
        assert_eq!(
            w.poll(at(t0, 12_000), true, 0, 0, true),
            Some(Repair::Renegotiate)
        );
        assert_eq!(w.repairs(), 3);
        // The subscriber confirms again: the ladder starts over.
        assert_eq!(w.poll(at(t0, 12_500), true, 10, 1, true), None);
        assert_eq!(w.repairs(), 0);
    }

    /// The failure users saw: packets go out to a connection that never
    /// answered our offer; it drops them, and sends no report about them.
    #[test]
    fn forwarded_but_unconfirmed_is_renegotiated() {
        let t0 = Instant::now();
        let mut w = DeliveryWatch::new();
        for i in 0..8u64 {
            assert_eq!(
                w.poll(at(t0, i * 500), true, i * 25 + 1, 0, true),
                None,
                "tick {i}"
            );
        }
        assert_eq!(
            w.poll(at(t0, 4000), true, 201, 0, true),
            Some(Repair::Renegotiate)
        );
        // Then 8 s later, not at once.
        assert_eq!(w.poll(at(t0, 4500), true, 226, 0, true), None);
        assert_eq!(
            w.poll(at(t0, 12_000), true, 600, 0, true),
            Some(Repair::Renegotiate)
        );
    }

    #[test]
    fn a_stream_reported_on_once_is_not_renegotiated_when_reports_pause() {
        let t0 = Instant::now();
        let mut w = DeliveryWatch::new();
        assert_eq!(w.poll(t0, true, 10, 1, true), None);
        for i in 1..60u64 {
            assert_eq!(
                w.poll(at(t0, i * 500), true, 10 + i * 25, 1, true),
                None,
                "tick {i}"
            );
        }
    }

    #[test]
    fn audio_is_given_longer_to_be_confirmed() {
        let t0 = Instant::now();
        let mut w = DeliveryWatch::new();
        for i in 0..24u64 {
            assert_eq!(
                w.poll(at(t0, i * 500), true, i * 25 + 1, 0, false),
                None,
                "tick {i}"
            );
        }
        assert_eq!(
            w.poll(at(t0, 12_000), true, 601, 0, false),
            Some(Repair::Renegotiate)
        );
    }

    #[test]
    fn a_stuck_audio_subscription_is_renegotiated_at_once() {
        let t0 = Instant::now();
        let mut w = DeliveryWatch::new();
        assert_eq!(w.poll(t0, true, 0, 0, false), None);
        assert_eq!(w.poll(at(t0, 2000), true, 0, 0, false), Some(Repair::Renegotiate));
    }

    #[test]
    fn a_pause_in_expectation_restarts_the_clock() {
        let t0 = Instant::now();
        let mut w = DeliveryWatch::new();
        assert_eq!(w.poll(t0, true, 0, 0, true), None);
        assert_eq!(w.poll(at(t0, 1500), false, 0, 0, true), None);
        assert_eq!(w.poll(at(t0, 2000), true, 0, 0, true), None);
        assert_eq!(w.poll(at(t0, 3999), true, 0, 0, true), None);
        assert_eq!(w.poll(at(t0, 4000), true, 0, 0, true), Some(Repair::Keyframe));
    }
}
