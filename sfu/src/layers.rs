//! Simulcast layer selection for one subscriber of one simulcast track.
//!
//! The publisher (a browser that offers simulcast) sends the same video as up
//! to three encodings ("layers"), lowest first. Each subscriber gets the
//! highest layer that fits its downlink estimate, after the audio it also
//! receives (audio is never given up for video). Going down is urgent
//! (the link is congesting now) and happens at the next keyframe of the lower
//! layer; going up waits until the estimate has held for `up_hold`, so a
//! brief 4G recovery does not bounce the picture. Until the target layer's
//! keyframe arrives the current layer keeps flowing, so the picture never
//! freezes during a switch.

use std::time::{Duration, Instant};

/// Tuning of [`LayerSelector`].
#[derive(Debug, Clone)]
pub struct LayerPolicy {
    /// Share of the (estimate − audio) budget video may use. Default 0.85.
    pub headroom: f64,
    /// How long a higher layer must fit before switching up. Default 3 s.
    pub up_hold: Duration,
    /// Bits per second reserved for the audio this subscriber receives. Default 64 kbps.
    pub audio_reserve_bps: u64,
}

impl Default for LayerPolicy {
    fn default() -> Self {
        Self {
            headroom: 0.85,
            up_hold: Duration::from_secs(3),
            audio_reserve_bps: 64_000,
        }
    }
}

/// What to do with one packet of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerDecision {
    /// Forward it; `switched` is true on the first packet of a newly selected layer.
    Forward {
        /// The first packet after a layer switch (the rewriter splices here).
        switched: bool,
    },
    /// Not the selected layer (or waiting for its keyframe): drop it.
    Drop,
}

/// Chooses which simulcast layer one subscriber receives.
#[derive(Debug, Clone)]
pub struct LayerSelector {
    policy: LayerPolicy,
    bitrates: Vec<u64>,
    current: Option<usize>,
    target: usize,
    up_since: Option<(usize, Instant)>,
    switches: u64,
}

impl LayerSelector {
    /// A selector over layers with these nominal bitrates (bps, lowest layer first).
    /// Starts aiming at the lowest layer until an estimate arrives.
    pub fn new(bitrates: Vec<u64>, policy: LayerPolicy) -> Self {
        Self {
            policy,
            bitrates,
            current: None,
            target: 0,
            up_since: None,
            switches: 0,
        }
    }

    /// A selector for a track whose set of layers changed (a simulcast
    /// layer started arriving after the track was published): it keeps
    /// forwarding `current` (the layer being forwarded now, by its new index)
    /// and aims there until the next estimate.
    pub fn resume(bitrates: Vec<u64>, policy: LayerPolicy, current: Option<usize>) -> Self {
        let mut s = Self::new(bitrates, policy);
        s.current = current;
        s.target = current.unwrap_or(0);
        s
    }

    /// Update a layer's measured bitrate (bps). A layer the publisher has
    /// stopped sending (its browser's uplink estimate dropped it) is given
    /// as `u64::MAX`: it never fits.
    pub fn handle_layer_bitrate(&mut self, layer: usize, bps: u64) {
        if let Some(b) = self.bitrates.get_mut(layer) {
            *b = bps;
        }
    }

    /// A new downlink estimate for this subscriber (bps).
    pub fn handle_estimate(&mut self, now: Instant, estimate_bps: u64) {
        let budget = estimate_bps.saturating_sub(self.policy.audio_reserve_bps) as f64 * self.policy.headroom;
        let fits = self
            .bitrates
            .iter()
            .rposition(|&b| (b as f64) <= budget)
            .unwrap_or(0);
        if fits < self.target {
            self.target = fits;
            self.up_since = None;
        } else if fits > self.target {
            match self.up_since {
                Some((layer, since)) if layer <= fits => {
                    if now.saturating_duration_since(since) >= self.policy.up_hold {
                        self.target = layer.max(self.target);
                        self.up_since = None;
                    }
                }
                _ => self.up_since = Some((fits, now)),
            }
        } else {
            self.up_since = None;
        }
    }

    /// Decide about one packet of `layer`; `keyframe_start` if it begins a keyframe.
    pub fn handle_packet(&mut self, layer: usize, keyframe_start: bool) -> LayerDecision {
        if Some(layer) == self.current && self.current == Some(self.target) {
            return LayerDecision::Forward { switched: false };
        }
        if layer == self.target && keyframe_start {
            self.current = Some(layer);
            self.switches += 1;
            return LayerDecision::Forward { switched: true };
        }
        if Some(layer) == self.current {
            // Keep the old layer flowing until the target's keyframe arrives.
            return LayerDecision::Forward { switched: false };
        }
        LayerDecision::Drop
    }

    /// The layer whose keyframe is awaited, if a switch is pending.
    pub fn poll_keyframe_request(&self) -> Option<usize> {
        (self.current != Some(self.target)).then_some(self.target)
    }

    /// The layer being forwarded now.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The layer the selector is moving to (or on).
    pub fn target(&self) -> usize {
        self.target
    }

    /// Completed switches so far.
    pub fn switches(&self) -> u64 {
        self.switches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(33);

    /// Drives a three-layer publisher at 30 fps (a keyframe on each layer every
    /// `gop` frames, staggered) and returns, per frame, which layers were forwarded.
    struct Sim {
        now: Instant,
        frame: u64,
        gop: u64,
        sel: LayerSelector,
        forwarded: Vec<Vec<usize>>,
    }

    impl Sim {
        fn new() -> Self {
            Self {
                now: Instant::now(),
                frame: 0,
                gop: 30,
                sel: LayerSelector::new(vec![150_000, 500_000, 1_500_000], LayerPolicy::default()),
                forwarded: Vec::new(),
            }
        }

        fn run(&mut self, frames: u64, estimate: u64) {
            for _ in 0..frames {
                self.sel.handle_estimate(self.now, estimate);
                let mut out = Vec::new();
                for layer in 0..3 {
                    let key = (self.frame + layer as u64 * 7).is_multiple_of(self.gop);
                    if let LayerDecision::Forward { .. } = self.sel.handle_packet(layer, key) {
                        out.push(layer);
                    }
                }
                self.forwarded.push(out);
                self.frame += 1;
                self.now += FRAME;
            }
        }
    }

    #[test]
    fn starts_on_the_lowest_layer_at_its_keyframe() {
        let mut s = Sim::new();
        s.run(1, 0);
        assert_eq!(s.forwarded[0], vec![0], "layer 0 keyframe is at frame 0");
        assert_eq!(s.sel.current(), Some(0));
    }

    #[test]
    fn estimate_drop_moves_down_and_recovery_moves_back_up_without_freezing() {
        let mut s = Sim::new();
        // Good link: climbs to the top layer only after the hold time.
        s.run(60, 3_000_000);
        assert_eq!(s.sel.target(), 0, "still holding after 2 s");
        s.run(60, 3_000_000);
        assert_eq!(s.sel.target(), 2);
        s.run(65, 3_000_000);
        assert_eq!(s.sel.current(), Some(2));

        // The 4G link congests (between two keyframes of layer 0): down to the layer that fits at once.
        let before = s.forwarded.len();
        s.run(1, 400_000);
        assert_eq!(s.sel.target(), 0);
        assert_eq!(s.sel.poll_keyframe_request(), Some(0));
        s.run(60, 400_000);
        assert_eq!(s.sel.current(), Some(0));
        assert_eq!(s.sel.poll_keyframe_request(), None);

        // It recovers: back up after the hold, at a keyframe.
        s.run(30, 3_000_000);
        assert_eq!(s.sel.current(), Some(0), "no bounce within the hold time");
        s.run(120, 3_000_000);
        assert_eq!(s.sel.current(), Some(2));

        // No frozen picture: every frame interval forwarded a frame. Two only
        // at a switch (the old layer's last frame, then the new keyframe).
        for (i, layers) in s.forwarded.iter().enumerate() {
            assert!(!layers.is_empty(), "frame {i}: nothing forwarded");
        }
        let doubles = s.forwarded.iter().filter(|l| l.len() > 1).count() as u64;
        assert!(doubles <= s.sel.switches(), "{doubles} double frames");
        assert!(s.forwarded[before..].iter().any(|l| l == &vec![0]));
        assert!(s.sel.switches() >= 4, "0→2 (via 1 or direct), 2→0, 0→2");
    }

    #[test]
    fn audio_is_reserved_before_video() {
        let mut sel = LayerSelector::new(vec![150_000, 500_000], LayerPolicy::default());
        let t0 = Instant::now();
        // 600 kbps minus 64 kbps audio, times 0.85, is 455 kbps: layer 1 does not fit.
        sel.handle_estimate(t0, 600_000);
        sel.handle_estimate(t0 + Duration::from_secs(10), 600_000);
        assert_eq!(sel.target(), 0);
        sel.handle_estimate(t0 + Duration::from_secs(11), 700_000);
        sel.handle_estimate(t0 + Duration::from_secs(15), 700_000);
        assert_eq!(sel.target(), 1);
    }
}
