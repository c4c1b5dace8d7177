//! When to ask a publisher for a keyframe.
//!
//! A new subscriber, a subscriber's PLI/FIR, or a simulcast layer switch all
//! want a keyframe from the publisher. Asking too often costs the publisher's
//! uplink (a keyframe is 5-10 times a delta frame, and the station's 4G uplink
//! is the weak one), so requests are merged and rate-limited per published
//! track; asking once and never again freezes a subscriber if the PLI or the
//! keyframe is lost, so a request stays pending, and is repeated each interval,
//! until a keyframe is actually forwarded. RFC 4585 §6.3.1 (PLI), RFC 5104 §4.3.1 (FIR).

use std::time::{Duration, Instant};

/// Default minimum gap between two keyframe requests for one track.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(300);

/// Merges and rate-limits keyframe requests for one published video track.
#[derive(Debug, Clone)]
pub struct KeyframeRequester {
    min_interval: Duration,
    last_sent: Option<Instant>,
    /// Since when a request has been pending (the time it was asked for).
    pending_since: Option<Instant>,
    pending: bool,
    sent: u64,
}

impl Default for KeyframeRequester {
    fn default() -> Self {
        Self::new(DEFAULT_MIN_INTERVAL)
    }
}

impl KeyframeRequester {
    /// A requester sending at most one request per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
            pending_since: None,
            pending: false,
            sent: 0,
        }
    }

    /// Someone needs a keyframe (new subscriber, PLI/FIR from a subscriber, layer switch).
    pub fn handle_request(&mut self, now: Instant) {
        if !self.pending {
            self.pending_since = Some(now);
        }
        self.pending = true;
    }

    /// Someone needs a keyframe now and the last request is known to be lost
    /// (the publisher's path was down when it went): the next poll sends one
    /// at once, whatever the interval.
    pub fn handle_urgent_request(&mut self, now: Instant) {
        self.handle_request(now);
        self.last_sent = None;
    }

    /// A keyframe of this track was forwarded: nothing is pending any more.
    pub fn handle_keyframe(&mut self, _now: Instant) {
        self.pending = false;
        self.pending_since = None;
    }

    /// Whether a request should go to the publisher now. Returns `true` at most
    /// once per interval while a request is pending.
    pub fn poll_request(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < self.min_interval => false,
            _ => {
                self.last_sent = Some(now);
                self.sent += 1;
                true
            }
        }
    }

    /// When [`poll_request`](Self::poll_request) may next return `true`.
    /// Decided by the times it was given, never the clock: a request
    /// never sent is due when it was asked for (an urgent one too).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        match (self.last_sent, self.pending_since) {
            (Some(last), since) => Some((last + self.min_interval).max(since.unwrap_or(last))),
            (None, since) => since,
        }
    }

    /// Whether a keyframe is still awaited.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_goes_out_at_once() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::new(Duration::from_millis(500));
        assert!(!k.poll_request(t0));
        k.handle_request(t0);
        assert_eq!(k.poll_timeout(), Some(t0), "due when asked for");
        assert!(k.poll_request(t0));
        assert_eq!(k.sent(), 1);
    }

    #[test]
    fn a_burst_of_requests_is_merged_and_rate_limited() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::new(Duration::from_millis(500));
        k.handle_request(t0);
        assert!(k.poll_request(t0));
        for ms in [10, 100, 200, 499] {
            let now = t0 + Duration::from_millis(ms);
            k.handle_request(now);
            assert!(!k.poll_request(now), "sent again after {ms} ms");
        }
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        assert!(k.poll_request(t0 + Duration::from_millis(500)));
        assert_eq!(k.sent(), 2);
    }

    #[test]
    fn an_urgent_request_goes_out_at_once() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::new(Duration::from_millis(300));
        k.handle_request(t0);
        assert!(k.poll_request(t0));
        // The path was down: that request is lost. Ask again without waiting.
        k.handle_urgent_request(t0 + Duration::from_millis(10));
        assert!(k
            .poll_timeout()
            .is_some_and(|t| t <= t0 + Duration::from_millis(10)));
        assert!(k.poll_request(t0 + Duration::from_millis(10)));
        assert!(
            !k.poll_request(t0 + Duration::from_millis(20)),
            "then the interval again"
        );
    }

    #[test]
    fn request_repeats_until_a_keyframe_arrives() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::new(Duration::from_millis(300));
        k.handle_request(t0);
        assert!(k.poll_request(t0));
        // The PLI (or the keyframe) was lost: ask again after the interval.
        assert!(k.poll_request(t0 + Duration::from_millis(300)));
        k.handle_keyframe(t0 + Duration::from_millis(350));
        assert!(!k.is_pending());
        assert!(!k.poll_request(t0 + Duration::from_secs(5)));
        assert_eq!(k.poll_timeout(), None);
    }
}
