//! Simulcast layer selection for one subscriber of one simulcast track.
//!
//! The publisher (a browser that offers simulcast) sends the same video as up
//! to three encodings ("layers"), lowest first. Each subscriber gets the
//! highest layer that fits its downlink estimate, after the audio it also
//! receives (audio is never given up for video). Going down is urgent
//! (the link is congesting now) and happens at the lower layer's next
//! keyframe; going up, one layer at a time, waits until the estimate has
//! held for `up_hold`, so a brief 4G recovery does not bounce the picture,
//! and never happens while the subscriber is losing `OFF_LOSS` more than it
//! usually does (a radio that loses 5 % at random is not a full link). A layer the publisher paused is left at once. The current layer keeps
//! flowing until the new one's keyframe, so the picture does not freeze,
//! except going down a link that is dropping packets (the viewer asks again
//! for `OFF_LOSS` of them): there it stops at once, since more of it only
//! deepens the queue the audio waits in. A step up that has to be taken back
//! within `flap_window` doubles the next wait (up to `on_hold_max`): the
//! estimate climbs with nothing to check it against until the higher layer
//! is sent, so on a link that cannot carry it each try costs a congested
//! moment, and they must grow rare; a try that makes the subscriber lose
//! `OFF_LOSS` more packets than usual within `TRIAL` is taken back at once.
//!
//! Below the lowest layer is the last step of the ladder: no video at all
//! (audio only). It is taken when even the lowest layer has not fitted for
//! `off_hold` while the estimate stayed down and the subscriber kept losing
//! what it is sent all along (it asks again for at least `OFF_LOSS`),
//! counted only once the lowest layer has flowed alone for a whole
//! [`LOSS_WINDOW`], so the loss the layer it came down from leaves behind
//! is not taken for its own. A
//! sudden cap makes the estimator overshoot to its floor and stay there
//! for seconds after the link has drained, while the lowest layer arrives
//! whole: an estimate climbing back, or a link that delivers, keeps the
//! picture. Losing `OFF_LOSS_ALONE` of the lowest layer takes the same step
//! whatever the estimate (which climbs blindly while little is sent, and
//! takes seconds to come down again). It is left when it has fitted again, with `on_margin` to
//! spare, for `on_hold`. While video is off the link carries audio alone,
//! so the estimate climbs whether or not the link has recovered; if video
//! coming back congests it again within `flap_window`, the next `on_hold`
//! is twice as long (up to `on_hold_max`), so a link that cannot carry the
//! lowest layer settles on audio instead of flapping.

use std::time::{Duration, Instant};

/// Losing this share of the packets sent ([`LossWindow`]) is a link that
/// cannot carry what it is sent.
pub const OFF_LOSS: f64 = 0.1;
/// Asking again for this share, whatever the estimate says, is a link that
/// cannot carry even the lowest layer (a random 10 % loss asks for 10-15 %).
pub const OFF_LOSS_ALONE: f64 = 0.3;
/// How far back [`LossWindow`] looks.
pub const LOSS_WINDOW: Duration = Duration::from_millis(1500);

/// What one subscriber lost of one stream, over the last [`LOSS_WINDOW`]:
/// the packets it asked to be sent again (NACK, RFC 4585 §6.2.1; each
/// counted once, a browser asks again until it has the packet) against
/// the packets sent to it. Its reception reports cannot say this: a browser
/// counts a packet repaired by retransmission as received, so over a link
/// dropping half of what it carries, every hole retransmitted, they report
/// nothing lost (measured: 0 % at an 80 kbps cap under 150 kbps of video).
#[derive(Debug, Clone, Default)]
pub struct LossWindow {
    samples: std::collections::VecDeque<(Instant, i64, u64)>,
}

impl LossWindow {
    /// Adds the cumulative counts now (packets asked for again, packets
    /// sent); returns the share lost over the window, or `None` while too
    /// little was sent to say.
    pub fn handle_counts(&mut self, now: Instant, lost: i64, sent: u64) -> Option<f64> {
        self.samples.push_back((now, lost, sent));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _, _)| now.saturating_duration_since(t) >= LOSS_WINDOW)
        {
            self.samples.pop_front();
        }
        let &(_, lost0, sent0) = self.samples.front()?;
        let sent = sent.saturating_sub(sent0);
        (sent >= 20).then(|| ((lost - lost0).max(0) as f64 / sent as f64).min(1.0))
    }
}

/// How long after a step up losing packets takes it back at once.
const TRIAL: Duration = Duration::from_secs(5);

/// The most of a viewer's usual loss discounted when judging a try: a link
/// that loses more than this at random is judged as if it lost this.
const MAX_USUAL_LOSS: f64 = 0.15;

/// An estimate this much above its lowest since the lowest layer stopped
/// fitting is climbing back: the wait before video goes off starts again.
const CLIMBING: f64 = 1.15;

/// Tuning of [`LayerSelector`].
#[derive(Debug, Clone)]
pub struct LayerPolicy {
    /// Share of the (estimate − audio) budget video may use. Default 0.85.
    pub headroom: f64,
    /// How long a higher layer must fit before switching up. Default 3 s.
    pub up_hold: Duration,
    /// Bits per second reserved for the audio this subscriber receives. Default 64 kbps.
    pub audio_reserve_bps: u64,
    /// How long the lowest layer must not fit, and the subscriber keep losing
    /// packets, before video stops; counted once the lowest layer has flowed
    /// alone for [`LOSS_WINDOW`] (a step down leaves a second or two of loss
    /// behind it, the queue it found full, that says nothing). Default 1.5 s:
    /// with the window, the lowest layer alone has lost for 3 s.
    pub off_hold: Duration,
    /// How long the lowest layer must fit again before video comes back.
    /// Default 8 s: with audio alone on the link the estimate climbs with
    /// nothing to check it against (from its floor to the lowest layer's
    /// need in about 4 s under an 80 kbps cap), so the first try waits this
    /// long, and each try taken back doubles it.
    pub on_hold: Duration,
    /// The longest `on_hold` grows to when video keeps having to stop. Default 64 s.
    pub on_hold_max: Duration,
    /// Video stopping again this soon after it came back doubles `on_hold`. Default 30 s.
    pub flap_window: Duration,
    /// The lowest layer counts as fitting again only with this much to spare. Default 1.25.
    pub on_margin: f64,
}

impl Default for LayerPolicy {
    fn default() -> Self {
        Self {
            headroom: 0.85,
            up_hold: Duration::from_secs(3),
            audio_reserve_bps: 64_000,
            off_hold: Duration::from_millis(1500),
            on_hold: Duration::from_secs(8),
            on_hold_max: Duration::from_secs(64),
            flap_window: Duration::from_secs(30),
            on_margin: 1.25,
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
    /// Video is off: the link cannot carry even the lowest layer.
    off: bool,
    /// Since when the lowest layer has not fitted (video on) or has fitted
    /// again (video off).
    edge_since: Option<Instant>,
    /// The lowest estimate since `edge_since` (video on).
    edge_low: u64,
    /// The share of what it is sent that the subscriber lost lately, if known.
    lost: Option<f64>,
    /// What it usually loses while nothing is being tried (averaged over
    /// some seconds): a 4G radio loses 5-10 % at random whatever it carries.
    usual_loss: f64,
    /// How long the lowest layer must fit before video comes back, now.
    on_hold: Duration,
    /// When video last came back.
    on_at: Option<Instant>,
    /// How long a higher layer must fit before switching up, now.
    up_hold: Duration,
    /// When the target last went up (or video came back).
    up_at: Option<Instant>,
    /// Since when the lowest layer has been the one forwarded (video on).
    settled_at: Option<Instant>,
    /// When the target last went down.
    down_at: Option<Instant>,
}

impl LayerSelector {
    /// A selector over layers with these nominal bitrates (bps, lowest layer first).
    /// Starts aiming at the lowest layer until an estimate arrives.
    pub fn new(bitrates: Vec<u64>, policy: LayerPolicy) -> Self {
        Self {
            on_hold: policy.on_hold,
            up_hold: policy.up_hold,
            policy,
            bitrates,
            current: None,
            target: 0,
            up_since: None,
            switches: 0,
            off: false,
            edge_since: None,
            edge_low: 0,
            lost: None,
            usual_loss: 0.0,
            on_at: None,
            up_at: None,
            settled_at: None,
            down_at: None,
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
        // The lowest layer the publisher is sending (a paused one never fits).
        let lowest_layer = (0..self.bitrates.len())
            .filter(|&l| self.bitrates[l] != u64::MAX)
            .min_by_key(|&l| self.bitrates[l]);
        let lowest = lowest_layer.map(|l| self.bitrates[l]);
        if self.off {
            let fits_again = lowest.is_some_and(|l| budget >= l as f64 * self.policy.on_margin);
            if !fits_again {
                self.edge_since = None;
            } else if now.saturating_duration_since(*self.edge_since.get_or_insert(now)) >= self.on_hold {
                self.off = false;
                self.edge_since = None;
                self.on_at = Some(now);
                self.up_at = Some(now);
                self.target = 0;
                self.up_since = None;
            }
            return;
        }
        // Starved: the lowest layer does not fit, or is losing heavily; and
        // losing all along (when the subscriber's losses are known). What is
        // lost counts only once the lowest layer has flowed alone for a
        // whole loss window: until then the window holds the layer it came
        // down from (a 300 ms queue of it, its retransmissions), whose loss
        // says nothing about this one.
        if self.current.is_some() && self.current == lowest_layer {
            self.settled_at.get_or_insert(now);
        } else {
            self.settled_at = None;
        }
        let settled = self
            .settled_at
            .is_some_and(|at| now.saturating_duration_since(at) >= LOSS_WINDOW);
        let heavy_loss = self.lost.is_some_and(|l| l >= OFF_LOSS_ALONE) && Some(self.target) == lowest_layer;
        let losing = self.lost.is_none_or(|l| l >= OFF_LOSS);
        if settled && losing && (heavy_loss || lowest.is_some_and(|l| budget < l as f64)) {
            let climbing =
                self.edge_since.is_some() && estimate_bps as f64 >= self.edge_low as f64 * CLIMBING;
            if self.edge_since.is_none() || climbing {
                self.edge_since = Some(now);
                self.edge_low = estimate_bps;
            }
            self.edge_low = self.edge_low.min(estimate_bps);
            if now.saturating_duration_since(*self.edge_since.get_or_insert(now)) >= self.policy.off_hold {
                self.on_hold = self.backoff(now, self.on_at, self.on_hold, self.policy.on_hold);
                self.off = true;
                self.edge_since = None;
                self.current = None;
                self.settled_at = None;
                self.target = 0;
                self.up_since = None;
                return;
            }
        } else {
            self.edge_since = None;
        }
        let mut fits = self
            .bitrates
            .iter()
            .rposition(|&b| (b as f64) <= budget)
            .or(lowest_layer)
            .unwrap_or(0);
        // A step up that makes the link lose what it carries is taken back
        // at once, not seconds later when the estimate catches up: the
        // queue it fills delays and drops the audio too.
        // "Losing" here is losing `OFF_LOSS` more than usual: on a link that
        // loses at random, what a try adds, not what the radio takes anyway.
        let trying = self
            .up_at
            .is_some_and(|at| now.saturating_duration_since(at) < TRIAL);
        let unusual = OFF_LOSS + self.usual_loss.min(MAX_USUAL_LOSS);
        let losing_more = self.lost.is_some_and(|l| l >= unusual);
        if !trying {
            if let Some(l) = self.lost {
                self.usual_loss = 0.9 * self.usual_loss + 0.1 * l;
            }
        }
        if trying && self.target > 0 && losing_more {
            fits = fits.min(self.target - 1);
        }
        if fits < self.target {
            self.up_hold = self.backoff(now, self.up_at, self.up_hold, self.policy.up_hold);
            self.target = fits;
            self.up_since = None;
            self.down_at = Some(now);
        } else if fits > self.target && self.bitrates.get(self.target) == Some(&u64::MAX) {
            // The publisher paused the layer aimed at: the lowest it sends, at once.
            self.target = fits;
            self.up_since = None;
        } else if fits > self.target {
            // Down for longer than the window: past tries are forgotten.
            if self
                .down_at
                .is_some_and(|at| now.saturating_duration_since(at) >= self.policy.flap_window)
            {
                self.up_hold = self.policy.up_hold;
            }
            match self.up_since {
                // A link losing what it carries now cannot take more: a try
                // would only be taken back (below), at the cost of a
                // congested moment.
                _ if losing_more => self.up_since = None,
                Some((layer, since)) if layer <= fits => {
                    if now.saturating_duration_since(since) >= self.up_hold {
                        self.target = layer.max(self.target);
                        self.up_since = None;
                        self.up_at = Some(now);
                    }
                }
                // One layer at a time: a try costs the link a keyframe and
                // a higher rate, and the smaller the step the smaller both.
                _ => self.up_since = Some((self.target + 1, now)),
            }
        } else {
            self.up_since = None;
        }
    }

    /// The share of its packets the subscriber lost lately ([`LossWindow`]);
    /// `None`: not known.
    pub fn handle_loss(&mut self, lost: Option<f64>) {
        self.lost = lost;
    }

    /// The wait before the next step up, now that the last one (taken at
    /// `stepped`) had to be taken back: twice `hold` if that was within the
    /// flap window (up to `on_hold_max`), else `base`.
    fn backoff(&self, now: Instant, stepped: Option<Instant>, hold: Duration, base: Duration) -> Duration {
        if stepped.is_some_and(|at| now.saturating_duration_since(at) < self.policy.flap_window) {
            (hold * 2).min(self.policy.on_hold_max)
        } else {
            base
        }
    }

    /// Video is off for this subscriber: its link cannot carry even the
    /// lowest layer (audio only).
    pub fn video_off(&self) -> bool {
        self.off
    }

    /// Forwarding stopped for another reason (the subscriber asked for audio
    /// only): when it starts again, it starts at the target layer's next
    /// keyframe.
    pub fn restart(&mut self) {
        self.current = None;
    }

    /// Decide about one packet of `layer`; `keyframe_start` if it begins a keyframe.
    pub fn handle_packet(&mut self, layer: usize, keyframe_start: bool) -> LayerDecision {
        if self.off {
            return LayerDecision::Drop;
        }
        if Some(layer) == self.current && self.current == Some(self.target) {
            return LayerDecision::Forward { switched: false };
        }
        if layer == self.target && keyframe_start {
            self.current = Some(layer);
            self.switches += 1;
            return LayerDecision::Forward { switched: true };
        }
        // The old layer flows until the target's keyframe, so the picture
        // does not stop; but not down a link that is dropping packets: more
        // of it only deepens the queue the audio waits in.
        let dropping = self.lost.is_some_and(|l| l >= OFF_LOSS);
        if Some(layer) == self.current && (self.target > layer || !dropping) {
            return LayerDecision::Forward { switched: false };
        }
        LayerDecision::Drop
    }

    /// The layer whose keyframe is awaited, if a switch is pending.
    pub fn poll_keyframe_request(&self) -> Option<usize> {
        (!self.off && self.current != Some(self.target)).then_some(self.target)
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
        // Good link: climbs one layer per hold time.
        s.run(60, 3_000_000);
        assert_eq!(s.sel.target(), 0, "still holding after 2 s");
        s.run(60, 3_000_000);
        assert_eq!(
            s.sel.target(),
            1,
            "one layer up after the hold, not straight to the top"
        );
        s.run(100, 3_000_000);
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

        // It recovers: back up after the hold, at a keyframe, a layer at a
        // time. The hold is twice the first (the step up was taken back
        // within the window).
        s.run(30, 3_000_000);
        assert_eq!(s.sel.current(), Some(0), "no bounce within the hold time");
        s.run(200, 3_000_000);
        assert_eq!(s.sel.current(), Some(1));
        s.run(220, 3_000_000);
        assert_eq!(s.sel.current(), Some(2));

        // No frozen picture: every frame interval forwarded a frame. Two only
        // at a switch (the old layer's last frame, then the new keyframe).
        for (i, layers) in s.forwarded.iter().enumerate() {
            assert!(!layers.is_empty(), "frame {i}: nothing forwarded");
        }
        let doubles = s.forwarded.iter().filter(|l| l.len() > 1).count() as u64;
        assert!(doubles <= s.sel.switches(), "{doubles} double frames");
        assert!(s.forwarded[before..].iter().any(|l| l == &vec![0]));
        assert!(s.sel.switches() >= 5, "0→1→2, 2→0, 0→1→2");
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

    /// The estimate each half second for `secs` seconds, as the engine
    /// feeds it, each followed by a keyframe of every layer the publisher
    /// sends (switches complete at once).
    fn feed(sel: &mut LayerSelector, now: &mut Instant, secs: f64, estimate: u64) {
        for _ in 0..(secs * 2.0) as u32 {
            *now += Duration::from_millis(500);
            sel.handle_estimate(*now, estimate);
            for layer in 0..sel.bitrates.len() {
                if sel.bitrates[layer] != u64::MAX {
                    sel.handle_packet(layer, true);
                }
            }
        }
    }

    /// Feeds `estimate` half a second at a time until `done`; returns the seconds it took.
    fn seconds_until(
        sel: &mut LayerSelector,
        now: &mut Instant,
        estimate: u64,
        done: impl Fn(&LayerSelector) -> bool,
    ) -> f64 {
        let mut waited = 0.0;
        while !done(sel) {
            feed(sel, now, 0.5, estimate);
            waited += 0.5;
        }
        waited
    }

    #[test]
    fn a_link_that_cannot_carry_the_lowest_layer_goes_audio_only_and_comes_back() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![100_000, 500_000, 1_500_000], LayerPolicy::default());
        feed(&mut sel, &mut t, 10.0, 3_000_000);
        assert_eq!(sel.target(), 2);
        // 150 kbps leaves (150 - 64) * 0.85 = 73 kbps for video: not even layer 0.
        feed(&mut sel, &mut t, 2.5, 150_000);
        assert!(!sel.video_off(), "a dip shorter than the hold keeps video");
        assert_eq!(sel.target(), 0, "but goes down to the lowest layer at once");
        feed(&mut sel, &mut t, 1.0, 150_000);
        assert!(
            !sel.video_off(),
            "the lowest layer has not yet lost alone for 3 s"
        );
        feed(&mut sel, &mut t, 0.5, 150_000);
        assert!(
            sel.video_off(),
            "the lowest layer alone not fitting for 3 s: audio only"
        );
        assert_eq!(sel.handle_packet(0, true), LayerDecision::Drop);
        assert_eq!(
            sel.poll_keyframe_request(),
            None,
            "no keyframes asked for a picture nobody gets"
        );
        assert_eq!(sel.current(), None);
        // Just fitting is not enough to come back: 1.25 times the lowest layer is needed.
        feed(&mut sel, &mut t, 10.0, 190_000);
        assert!(sel.video_off());
        feed(&mut sel, &mut t, 7.5, 300_000);
        assert!(sel.video_off(), "back only after the hold");
        for _ in 0..2 {
            t += Duration::from_millis(500);
            sel.handle_estimate(t, 300_000);
        }
        assert!(!sel.video_off());
        assert_eq!(
            sel.poll_keyframe_request(),
            Some(0),
            "back on the lowest layer, from its keyframe"
        );
        assert_eq!(sel.handle_packet(0, false), LayerDecision::Drop);
        assert_eq!(
            sel.handle_packet(0, true),
            LayerDecision::Forward { switched: true }
        );
    }

    #[test]
    fn video_that_keeps_congesting_the_link_waits_longer_each_time() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![100_000, 500_000], LayerPolicy::default());
        let mut holds = Vec::new();
        for _ in 0..5 {
            feed(&mut sel, &mut t, 4.0, 120_000);
            assert!(sel.video_off());
            // Audio alone: the estimate climbs as if the link had recovered.
            let waited = seconds_until(&mut sel, &mut t, 400_000, |s| !s.video_off());
            holds.push(waited);
        }
        // The hold counts from the first estimate that fits (half a second in).
        assert_eq!(holds, vec![8.5, 16.5, 32.5, 64.5, 64.5]);
        // Once video has stayed on past the window, the next stop starts from the short hold again.
        feed(&mut sel, &mut t, 40.0, 400_000);
        feed(&mut sel, &mut t, 4.0, 120_000);
        assert!(sel.video_off());
        let waited = seconds_until(&mut sel, &mut t, 400_000, |s| !s.video_off());
        assert_eq!(waited, 8.5);
    }

    #[test]
    fn a_layer_the_publisher_paused_never_turns_video_off() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![100_000, 500_000], LayerPolicy::default());
        sel.handle_layer_bitrate(0, u64::MAX);
        sel.handle_layer_bitrate(1, 500_000);
        feed(&mut sel, &mut t, 5.0, 300_000);
        assert!(sel.video_off(), "layer 1 is the lowest sent, and it does not fit");
        let mut sel = LayerSelector::new(vec![100_000, 500_000], LayerPolicy::default());
        for l in 0..2 {
            sel.handle_layer_bitrate(l, u64::MAX);
        }
        feed(&mut sel, &mut t, 5.0, 100_000);
        assert!(!sel.video_off(), "nothing measured: nothing to judge by");
    }

    #[test]
    fn an_estimate_climbing_back_from_its_floor_keeps_video() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![145_000, 500_000], LayerPolicy::default());
        feed(&mut sel, &mut t, 6.0, 1_000_000);
        // A cap: the estimate overshoots down to its floor, then climbs 10 % a tick back to what fits.
        let mut e = 100_000.0;
        while e < 260_000.0 {
            t += Duration::from_millis(500);
            sel.handle_estimate(t, e as u64);
            assert!(!sel.video_off(), "climbing at {e}");
            e *= 1.1;
        }
        // Stuck at the floor: off after the hold (the switch to the lowest
        // layer, its loss window, then the hold).
        feed(&mut sel, &mut t, 3.5, 100_000);
        assert!(!sel.video_off());
        feed(&mut sel, &mut t, 0.5, 100_000);
        assert!(sel.video_off());
    }

    #[test]
    fn a_step_up_taken_back_soon_waits_longer_next_time() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![145_000, 500_000], LayerPolicy::default());
        let mut waits = Vec::new();
        for _ in 0..3 {
            // The estimate says layer 1 fits; it does not, and the estimate falls when it is tried.
            let waited = seconds_until(&mut sel, &mut t, 1_000_000, |s| s.target() != 0);
            waits.push(waited);
            feed(&mut sel, &mut t, 2.0, 300_000);
            assert_eq!(sel.target(), 0);
        }
        assert_eq!(waits, vec![3.5, 6.5, 12.5]);
        // Staying down longer than the window: the next step up waits the usual time.
        feed(&mut sel, &mut t, 31.0, 300_000);
        let waited = seconds_until(&mut sel, &mut t, 1_000_000, |s| s.target() != 0);
        assert_eq!(waited, 3.5);
    }

    #[test]
    fn a_link_that_delivers_the_lowest_layer_keeps_it_whatever_the_estimate() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![145_000, 500_000], LayerPolicy::default());
        sel.handle_loss(Some(0.01));
        feed(&mut sel, &mut t, 10.0, 100_000);
        assert!(!sel.video_off(), "1 % lost: the picture arrives");
        sel.handle_loss(Some(0.3));
        feed(&mut sel, &mut t, 1.0, 100_000);
        assert!(
            !sel.video_off(),
            "a moment of loss is not a link that cannot carry it"
        );
        feed(&mut sel, &mut t, 1.0, 100_000);
        assert!(sel.video_off(), "30 % lost all through the hold: audio only");
    }

    #[test]
    fn the_loss_window_counts_only_the_last_moments() {
        let t0 = Instant::now();
        let mut w = LossWindow::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(w.handle_counts(at(0), 0, 0), None);
        assert_eq!(w.handle_counts(at(500), 0, 10), None, "too little sent to say");
        assert_eq!(w.handle_counts(at(1000), 10, 100), Some(0.1));
        // A burst of loss long ago leaves the window.
        w.handle_counts(at(1500), 40, 150);
        assert_eq!(w.handle_counts(at(4000), 40, 400), Some(0.0));
        // A count that went back (a new connection) is nothing lost, not less.
        assert_eq!(w.handle_counts(at(4500), 38, 450), Some(0.0));
    }

    #[test]
    fn a_step_up_that_makes_the_link_lose_is_taken_back_at_once() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![145_000, 500_000], LayerPolicy::default());
        sel.handle_loss(Some(0.0));
        feed(&mut sel, &mut t, 4.0, 1_000_000);
        assert_eq!(sel.target(), 1);
        // The estimate has not noticed yet, the subscriber's NACKs have.
        sel.handle_loss(Some(0.3));
        feed(&mut sel, &mut t, 0.5, 1_000_000);
        assert_eq!(sel.target(), 0);
        // Long after a step up, loss alone (a lossy, not a full, link) moves nothing.
        sel.handle_loss(Some(0.0));
        feed(&mut sel, &mut t, 60.0, 1_000_000);
        assert_eq!(sel.target(), 1);
        sel.handle_loss(Some(0.3));
        feed(&mut sel, &mut t, 1.0, 1_000_000);
        assert_eq!(sel.target(), 1);
    }

    #[test]
    fn a_link_that_loses_at_random_still_steps_up() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![145_000, 500_000, 1_500_000], LayerPolicy::default());
        // A radio that loses at random: the viewer asks again for 8-14 % of
        // what it gets, whatever it gets.
        let mut i = 0u32;
        let mut feed_lossy = |sel: &mut LayerSelector, t: &mut Instant, secs: f64| {
            for _ in 0..(secs * 2.0) as u32 {
                i += 1;
                sel.handle_loss(Some(if i.is_multiple_of(3) { 0.14 } else { 0.08 }));
                feed(sel, t, 0.5, 3_000_000);
            }
        };
        feed_lossy(&mut sel, &mut t, 20.0);
        assert_eq!(
            sel.target(),
            2,
            "the top layer, whose tries lose no more than usual"
        );
        // A try that makes it lose a fifth more than usual is taken back.
        let mut sel = LayerSelector::new(vec![145_000, 500_000], LayerPolicy::default());
        sel.handle_loss(Some(0.08));
        feed(&mut sel, &mut t, 3.5, 3_000_000);
        assert_eq!(sel.target(), 1);
        sel.handle_loss(Some(0.3));
        feed(&mut sel, &mut t, 0.5, 3_000_000);
        assert_eq!(sel.target(), 0);
    }

    #[test]
    fn losing_a_third_of_the_lowest_layer_turns_video_off_whatever_the_estimate() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![145_000, 500_000], LayerPolicy::default());
        sel.handle_loss(Some(0.15));
        feed(&mut sel, &mut t, 10.0, 5_000_000);
        assert!(
            !sel.video_off(),
            "15 %: a lossy link, the picture is worth having"
        );
        let mut sel = LayerSelector::new(vec![145_000, 500_000], LayerPolicy::default());
        sel.handle_loss(Some(0.5));
        feed(&mut sel, &mut t, 3.5, 5_000_000);
        assert!(!sel.video_off());
        feed(&mut sel, &mut t, 0.5, 5_000_000);
        assert!(sel.video_off());
    }

    #[test]
    fn the_loss_a_step_down_leaves_behind_does_not_turn_video_off() {
        let mut t = Instant::now();
        let mut sel = LayerSelector::new(vec![145_000, 500_000, 1_500_000], LayerPolicy::default());
        sel.handle_loss(Some(0.0));
        feed(&mut sel, &mut t, 10.0, 3_000_000);
        assert_eq!(sel.current(), Some(2));
        // A cap: the estimate falls to its floor, and for 3.5 s the viewer
        // asks again for half of what it gets (the top layer's queue, then
        // the lowest layer's keyframe through what is left of it).
        sel.handle_loss(Some(0.5));
        feed(&mut sel, &mut t, 3.5, 100_000);
        assert_eq!(sel.current(), Some(0));
        // Then the lowest layer arrives whole: the picture stays.
        sel.handle_loss(Some(0.0));
        feed(&mut sel, &mut t, 10.0, 100_000);
        assert!(!sel.video_off(), "the loss was the old layer's");
    }

    #[test]
    fn stepping_down_a_link_that_drops_packets_stops_the_old_layer_at_once() {
        let mut s = Sim::new();
        s.sel.handle_loss(Some(0.0));
        s.run(200, 3_000_000);
        assert_eq!(s.sel.current(), Some(2));
        // The viewer is losing a fifth of what it gets, and the estimate falls.
        s.sel.handle_loss(Some(0.2));
        let before = s.forwarded.len();
        s.run(40, 400_000);
        assert_eq!(s.sel.current(), Some(0));
        let gaps = s.forwarded[before..].iter().filter(|l| l.is_empty()).count();
        assert!(gaps > 0, "layer 2 stopped before layer 0's keyframe");
        assert!(
            s.forwarded[before..].iter().all(|l| !l.contains(&2)),
            "nothing more of the layer that congests"
        );
    }
}
