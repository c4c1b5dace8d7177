//! Forwarding each packet once. A publisher may deliver a packet twice (a
//! retransmission racing the late original, or one answering a repeated
//! NACK); the subscriber's leg has its own retransmissions, so a second copy
//! forwarded is only wasted downlink.

/// Packets remembered behind the highest sequence number seen.
const WINDOW: u64 = 1024;

/// Which sequence numbers of one RTP stream have been seen, over a sliding
/// window of the last 1,024 numbers.
#[derive(Debug, Clone)]
pub struct SeqWindow {
    /// Highest extended sequence number seen (wraps counted).
    highest: Option<u64>,
    bits: [u64; (WINDOW / 64) as usize],
}

impl Default for SeqWindow {
    fn default() -> Self {
        Self {
            highest: None,
            bits: [0; (WINDOW / 64) as usize],
        }
    }
}

impl SeqWindow {
    fn bit(&mut self, ext: u64) -> (&mut u64, u64) {
        let i = ext % WINDOW;
        (&mut self.bits[(i / 64) as usize], 1u64 << (i % 64))
    }

    /// Records `seq`; false if it was seen already (a duplicate) or is too
    /// old to tell (further back than the window: treated as a duplicate,
    /// it is too late to be useful anyway).
    pub fn first_time(&mut self, seq: u16) -> bool {
        let Some(highest) = self.highest else {
            // Start well above zero so that earlier packets still fit.
            let ext = (1u64 << 32) + u64::from(seq);
            self.highest = Some(ext);
            let (word, mask) = self.bit(ext);
            *word |= mask;
            return true;
        };
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        let ext = highest.wrapping_add_signed(delta);
        if ext > highest {
            // Forget the numbers the window slides past.
            for e in highest + 1..=ext.min(highest + WINDOW) {
                let (word, mask) = self.bit(e);
                *word &= !mask;
            }
            self.highest = Some(ext);
        } else if highest - ext >= WINDOW {
            return false;
        }
        let (word, mask) = self.bit(ext);
        let first = *word & mask == 0;
        *word |= mask;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_passes_once_across_wraparound_and_reordering() {
        let mut w = SeqWindow::default();
        let start = 65_000u16;
        let mut passed = 0;
        for i in 0..2000u16 {
            let seq = start.wrapping_add(i);
            assert!(w.first_time(seq), "{seq} is new");
            assert!(!w.first_time(seq), "{seq} again is a duplicate");
            passed += 1;
            // A late copy of a recent packet is still caught.
            if i >= 5 {
                assert!(!w.first_time(seq.wrapping_sub(5)));
            }
        }
        assert_eq!(passed, 2000);
    }

    #[test]
    fn a_late_original_after_a_gap_passes_once() {
        let mut w = SeqWindow::default();
        assert!(w.first_time(100));
        assert!(w.first_time(103)); // 101 and 102 lost for now
        assert!(w.first_time(102)); // retransmitted
        assert!(!w.first_time(102)); // and the late original
        assert!(w.first_time(101));
        // Far older than the window: too late, not forwarded.
        assert!(w.first_time(103 + 2000));
        assert!(!w.first_time(104));
    }
}
