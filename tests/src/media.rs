//! The synthetic media: a tone encoded with Opus, and VP8-framed video whose
//! frames carry their counter and send time, plus the receiving side's
//! analysis (dominant frequency, frame reassembly).

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Audio sample rate (Opus always runs at 48 kHz in WebRTC).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per 20 ms Opus frame.
pub const FRAME_SAMPLES: usize = 960;
/// Video RTP clock.
pub const VIDEO_CLOCK: u32 = 90_000;
/// Marks our synthetic frames.
const MAGIC: &[u8; 4] = b"THV1";
/// Largest RTP payload we produce.
const MAX_PAYLOAD: usize = 1100;

/// Microseconds since the Unix epoch (the same clock on every participant of
/// one host, which is what makes one-way delay measurable).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// An RTP timestamp derived from the wall clock, so the receiver can compute
/// one-way delay from the timestamp alone (the SFU forwards it unchanged).
pub fn clock_timestamp(micros: u64, clock_rate: u32) -> u32 {
    (micros as u128 * clock_rate as u128 / 1_000_000) as u32
}

/// One-way delay in ms from a wall-clock RTP timestamp.
pub fn delay_from_timestamp(ts: u32, clock_rate: u32, now_micros: u64) -> f64 {
    let now_ts = clock_timestamp(now_micros, clock_rate);
    f64::from(now_ts.wrapping_sub(ts) as i32) * 1000.0 / f64::from(clock_rate)
}

/// A sine tone generator producing 20 ms frames.
#[derive(Debug, Clone)]
pub struct Tone {
    freq: f64,
    phase: f64,
}

impl Tone {
    /// A tone of `freq` Hz.
    pub fn new(freq: f64) -> Self {
        Self { freq, phase: 0.0 }
    }

    /// The next 20 ms of samples.
    pub fn next_frame(&mut self) -> [i16; FRAME_SAMPLES] {
        let mut out = [0i16; FRAME_SAMPLES];
        let step = 2.0 * std::f64::consts::PI * self.freq / f64::from(SAMPLE_RATE);
        for s in out.iter_mut() {
            *s = (self.phase.sin() * 12_000.0) as i16;
            self.phase = (self.phase + step) % (2.0 * std::f64::consts::PI);
        }
        out
    }
}

/// One second of a tone of `freq` Hz as 50 Opus packets (20 ms each), to
/// be sent in a loop: encoded once per frequency and process, then shared,
/// so that a participant's audio costs no encoding (the load generator runs
/// hundreds of them beside the server). With a whole number of Hz the
/// second holds whole periods, so the loop has no phase jump; the encoder
/// runs two seconds and the second one is kept, so its prediction state at
/// the loop point matches the state the first packet was encoded from.
pub fn encoded_tone(freq: f64) -> Result<Arc<[Bytes]>, opus::Error> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Arc<[Bytes]>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&freq.to_bits()).cloned()) {
        return Ok(hit);
    }
    let frames_per_second = SAMPLE_RATE as usize / FRAME_SAMPLES;
    let mut encoder = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Audio)?;
    let mut tone = Tone::new(freq);
    let mut packets = Vec::with_capacity(frames_per_second);
    for i in 0..2 * frames_per_second {
        let mut buf = [0u8; 400];
        let n = encoder.encode(&tone.next_frame(), &mut buf)?;
        if i >= frames_per_second {
            packets.push(Bytes::copy_from_slice(&buf[..n]));
        }
    }
    let packets: Arc<[Bytes]> = packets.into();
    if let Ok(mut c) = cache.lock() {
        c.insert(freq.to_bits(), packets.clone());
    }
    Ok(packets)
}

/// Decodes consecutive Opus packets (a fresh decoder, the first packet
/// decoded without history) into 48 kHz samples; a packet that does not
/// decode is skipped.
pub fn decode_opus<'a>(packets: impl IntoIterator<Item = &'a Bytes>) -> Vec<i16> {
    let Ok(mut decoder) = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono) else {
        return Vec::new();
    };
    let mut pcm = Vec::new();
    let mut frame = [0i16; FRAME_SAMPLES * 6];
    for p in packets {
        if let Ok(n) = decoder.decode(p, &mut frame, false) {
            pcm.extend_from_slice(&frame[..n]);
        }
    }
    pcm
}

/// One second of received audio as a listener hears it ([`audio_seconds`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AudioSecond {
    /// The dominant frequency of each fifth of the second (200 ms windows),
    /// `None` where there is no sound.
    pub windows_hz: Vec<Option<f64>>,
    /// Share of its 20 ms frames that were not there in time: rebuilt from
    /// the next packet's in-band FEC where it carries some, concealed
    /// (Opus packet-loss concealment) otherwise.
    pub concealed: f64,
}

impl AudioSecond {
    /// Whether every 200 ms of the second sounds at `hz` (within 10 Hz).
    pub fn holds_tone(&self, hz: f64) -> bool {
        self.windows_hz
            .iter()
            .all(|w| w.is_some_and(|f| (f - hz).abs() <= 10.0))
    }
}

/// How a listener with a `playout` jitter buffer hears a stream of Opus
/// packets, `(extended sequence number, arrival, payload)` in any order:
/// each 20 ms frame is played at its place in the sequence, `playout` after
/// the time the least delayed packet sets; a packet later than that (a
/// retransmission that came too late, say) is as good as lost. A lost frame
/// is decoded from the next packet's in-band FEC when that one is in time
/// (Opus conceals it when the packet carries none), and otherwise concealed. Returns one [`AudioSecond`] per whole
/// second of the sequence (50 frames), the first starting at the lowest
/// sequence number.
pub fn audio_seconds(
    packets: &[(u64, std::time::Instant, Bytes)],
    playout: std::time::Duration,
) -> Vec<AudioSecond> {
    let frames_per_second = SAMPLE_RATE as u64 / FRAME_SAMPLES as u64;
    let frame = std::time::Duration::from_millis(20);
    let Some(first) = packets.iter().map(|p| p.0).min() else {
        return Vec::new();
    };
    let last = packets.iter().map(|p| p.0).max().unwrap_or(first);
    // When each frame is due: the least delayed packet sets the clock.
    let Some(zero) = packets
        .iter()
        .filter_map(|(seq, at, _)| at.checked_sub(frame * (seq - first) as u32))
        .min()
    else {
        return Vec::new();
    };
    let due = |seq: u64| zero + frame * (seq - first) as u32 + playout;
    let mut in_time: HashMap<u64, &Bytes> = HashMap::new();
    for (seq, at, payload) in packets {
        if *at <= due(*seq) {
            in_time.entry(*seq).or_insert(payload);
        }
    }
    let Ok(mut decoder) = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono) else {
        return Vec::new();
    };
    let whole = (last - first + 1) / frames_per_second;
    let mut out = Vec::new();
    let mut buf = [0i16; FRAME_SAMPLES * 6];
    for second in 0..whole {
        let mut pcm = Vec::with_capacity(SAMPLE_RATE as usize);
        let mut concealed = 0u32;
        for i in 0..frames_per_second {
            let seq = first + second * frames_per_second + i;
            let n = match (in_time.get(&seq), in_time.get(&(seq + 1))) {
                (Some(p), _) => decoder.decode(p, &mut buf, false),
                (None, Some(next)) => {
                    concealed += 1;
                    decoder.decode(next, &mut buf[..FRAME_SAMPLES], true)
                }
                (None, None) => {
                    concealed += 1;
                    decoder.decode(&[], &mut buf[..FRAME_SAMPLES], false)
                }
            };
            match n {
                Ok(n) => pcm.extend_from_slice(&buf[..n]),
                // Keep the frame's place: a frame that does not decode is silence.
                Err(_) => pcm.extend(std::iter::repeat_n(0i16, FRAME_SAMPLES)),
            }
        }
        let window = SAMPLE_RATE as usize / 5;
        out.push(AudioSecond {
            windows_hz: pcm.chunks(window).map(dominant_frequency).collect(),
            concealed: f64::from(concealed) / frames_per_second as f64,
        });
    }
    out
}

/// The frequency (Hz, 10 Hz resolution, 50-4000 Hz) with the most energy,
/// by the Goertzel algorithm over `samples` at 48 kHz.
pub fn dominant_frequency(samples: &[i16]) -> Option<f64> {
    if samples.len() < 1024 {
        return None;
    }
    let n = samples.len().min(9600);
    let s = &samples[samples.len() - n..];
    let mut best = (0.0, 0.0);
    let mut f = 50.0;
    while f <= 4000.0 {
        let p = goertzel_power(s, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 10.0;
    }
    (best.1 > 0.0).then_some(best.0)
}

fn goertzel_power(s: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(SAMPLE_RATE);
    let coeff = 2.0 * w.cos();
    let (mut q1, mut q2) = (0.0f64, 0.0f64);
    for &x in s {
        let q0 = coeff * q1 - q2 + f64::from(x);
        q2 = q1;
        q1 = q0;
    }
    q1 * q1 + q2 * q2 - coeff * q1 * q2
}

/// Builds the RTP payloads of one synthetic VP8 frame: VP8 payload
/// descriptor (RFC 7741 §4.2) with S=1 on the first packet, the 3-byte VP8
/// frame tag (P bit 0 on a keyframe), then our metadata and filler.
pub fn vp8_frame_payloads(counter: u32, sent_micros: u64, keyframe: bool, size: usize) -> Vec<Vec<u8>> {
    let mut frame = Vec::with_capacity(size.max(32));
    // Frame tag: bit 0 = P (0 = key frame), show_frame bit set.
    frame.extend_from_slice(&[if keyframe { 0x10 } else { 0x11 }, 0x00, 0x00]);
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&counter.to_be_bytes());
    frame.extend_from_slice(&sent_micros.to_be_bytes());
    frame.push(u8::from(keyframe));
    while frame.len() < size {
        frame.push((frame.len() % 251) as u8);
    }
    let chunk = MAX_PAYLOAD - 1;
    frame
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let mut p = Vec::with_capacity(c.len() + 1);
            p.push(if i == 0 { 0x10 } else { 0x00 });
            p.extend_from_slice(c);
            p
        })
        .collect()
}

/// What the first packet of a synthetic frame says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// The frame counter.
    pub counter: u32,
    /// Send time, µs since the epoch.
    pub sent_micros: u64,
    /// Keyframe or not.
    pub keyframe: bool,
}

/// Parses the first packet of a synthetic frame (S bit set).
pub fn parse_first_packet(payload: &[u8]) -> Option<FrameInfo> {
    if payload.first()? & 0x10 == 0 {
        return None;
    }
    let body = payload.get(1..)?;
    if body.get(3..7)? != MAGIC {
        return None;
    }
    let counter = u32::from_be_bytes(body.get(7..11)?.try_into().ok()?);
    let sent_micros = u64::from_be_bytes(body.get(11..19)?.try_into().ok()?);
    let keyframe = *body.get(19)? == 1;
    Some(FrameInfo {
        counter,
        sent_micros,
        keyframe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_survives_opus_round_trip() {
        let mut tone = Tone::new(660.0);
        let mut enc =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Audio).expect("encoder");
        let mut dec = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).expect("decoder");
        let mut pcm = Vec::new();
        for _ in 0..50 {
            let frame = tone.next_frame();
            let mut out = [0u8; 400];
            let n = enc.encode(&frame, &mut out).expect("encode");
            let mut decoded = [0i16; FRAME_SAMPLES];
            let m = dec.decode(&out[..n], &mut decoded, false).expect("decode");
            pcm.extend_from_slice(&decoded[..m]);
        }
        let f = dominant_frequency(&pcm).expect("a frequency");
        assert!((f - 660.0).abs() <= 10.0, "got {f}");
    }

    #[test]
    fn encoded_tone_loops_and_decodes_to_its_frequency() {
        let second = encoded_tone(440.0).expect("encode");
        assert_eq!(second.len(), 50);
        assert!(Arc::ptr_eq(&second, &encoded_tone(440.0).expect("cached")));
        // Three times round the loop decodes to the tone throughout.
        let pcm = decode_opus(second.iter().chain(second.iter()).chain(second.iter()));
        assert_eq!(pcm.len(), 3 * SAMPLE_RATE as usize);
        for window in pcm.chunks(SAMPLE_RATE as usize / 2).skip(1) {
            let f = dominant_frequency(window).expect("a frequency");
            assert!((f - 440.0).abs() <= 10.0, "got {f}");
        }
        let other = encoded_tone(660.0).expect("encode");
        let f = dominant_frequency(&decode_opus(other.iter())).expect("a frequency");
        assert!((f - 660.0).abs() <= 10.0, "got {f}");
    }

    #[test]
    fn a_listener_hears_the_tone_through_scattered_loss_but_not_through_a_gap() {
        let second = encoded_tone(440.0).expect("encode");
        let t0 = std::time::Instant::now();
        let at = |seq: u64, extra_ms: u64| t0 + std::time::Duration::from_millis(seq * 20 + extra_ms);
        let playout = std::time::Duration::from_millis(200);
        // Four seconds, every 10th packet lost and every 7th a late repair.
        let mut packets: Vec<_> = (0..200u64)
            .filter(|s| s % 10 != 3)
            .map(|s| {
                (
                    s,
                    at(s, if s % 7 == 0 { 400 } else { 30 }),
                    second[s as usize % 50].clone(),
                )
            })
            .collect();
        let heard = audio_seconds(&packets, playout);
        assert_eq!(heard.len(), 4);
        for s in &heard[1..] {
            assert!(s.holds_tone(440.0), "{s:?}");
            // 5 lost outright and 7 or 8 too late: about a quarter.
            assert!(s.concealed > 0.1 && s.concealed < 0.35, "{s:?}");
        }
        // A second with nothing at all in it (the link died) is not the tone.
        packets.retain(|p| !(100..150).contains(&p.0));
        let heard = audio_seconds(&packets, playout);
        assert!(!heard[2].holds_tone(440.0), "{:?}", heard[2]);
        assert_eq!(heard[2].concealed, 1.0);
        assert!(heard[3].windows_hz.len() == 5);
    }

    #[test]
    fn frames_round_trip() {
        let p = vp8_frame_payloads(7, 123_456, true, 3000);
        assert_eq!(p.len(), 3);
        assert_eq!(
            parse_first_packet(&p[0]),
            Some(FrameInfo {
                counter: 7,
                sent_micros: 123_456,
                keyframe: true
            })
        );
        assert!(telehealth_sfu::codec::vp8_is_keyframe_start(&p[0]));
        assert!(!telehealth_sfu::codec::vp8_is_keyframe_start(&p[1]));
        let d = vp8_frame_payloads(8, 1, false, 500);
        assert!(!telehealth_sfu::codec::vp8_is_keyframe_start(&d[0]));
        assert_eq!(parse_first_packet(&p[1]), None);
    }
}
