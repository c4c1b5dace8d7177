//! Just enough payload parsing to find keyframes without decoding: the SFU
//! switches layers and releases a new subscriber's video only at a keyframe.

/// Redundant audio (RFC 2198) as SDP names it.
pub const MIME_TYPE_RED: &str = "audio/red";

/// Video/audio codecs the SFU forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus audio.
    Opus,
    /// VP8 video.
    Vp8,
    /// H.264 video.
    H264,
    /// Anything else (forwarded, but never recognised as a keyframe).
    Other,
}

impl Codec {
    /// The codec named by an SDP mime type (`video/VP8`, `audio/opus`...).
    pub fn from_mime(mime: &str) -> Self {
        let m = mime.to_ascii_lowercase();
        if m.ends_with("/opus") {
            Codec::Opus
        } else if m.ends_with("/vp8") {
            Codec::Vp8
        } else if m.ends_with("/h264") {
            Codec::H264
        } else {
            Codec::Other
        }
    }

    /// Whether this RTP payload starts a keyframe.
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            Codec::Vp8 => vp8_is_keyframe_start(payload),
            Codec::H264 => h264_is_keyframe(payload),
            Codec::Opus | Codec::Other => false,
        }
    }
}

/// VP8: the payload descriptor (RFC 7741 §4.2) then, on the first packet of a
/// partition 0, the payload header whose P bit is 0 for a key frame (RFC 6386 §9.1).
pub fn vp8_is_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let start = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !start || pid != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        // X: extension byte with I, L, T, K flags.
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits.
            let Some(&p) = payload.get(i) else {
                return false;
            };
            i += if p & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    match payload.get(i) {
        Some(&h) => h & 0x01 == 0,
        None => false,
    }
}

/// VP8: where the payload descriptor's 15-bit PictureID is (RFC 7741
/// §4.2: X, then I, then M), and its value. `None` without one (a 7-bit
/// PictureID is left alone: browsers send 15 bits).
pub fn vp8_picture_id(payload: &[u8]) -> Option<(usize, u16)> {
    let b0 = *payload.first()?;
    if b0 & 0x80 == 0 || payload.get(1)? & 0x80 == 0 {
        return None;
    }
    let (hi, lo) = (*payload.get(2)?, *payload.get(3)?);
    (hi & 0x80 != 0).then(|| (2, (u16::from(hi & 0x7F) << 8) | u16::from(lo)))
}

/// Writes a 15-bit PictureID where [`vp8_picture_id`] found one.
pub fn vp8_set_picture_id(payload: &mut [u8], at: usize, id: u16) {
    payload[at] = 0x80 | ((id >> 8) as u8 & 0x7F);
    payload[at + 1] = id as u8;
}

/// H.264 (RFC 6184): an IDR slice (type 5) or SPS (type 7) in a single NAL
/// unit, the first NAL of a STAP-A, or the start of an FU-A.
pub fn h264_is_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let is_key = |t: u8| t == 5 || t == 7;
    match b0 & 0x1f {
        24 => {
            // STAP-A: 2-byte size then the NAL header of each unit.
            let mut i = 1;
            while i + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[i], payload[i + 1]]));
                if is_key(payload[i + 2] & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        t => is_key(t),
    }
}

/// Redundant audio (RFC 2198, `audio/red`): where the primary block of a RED
/// payload starts, for a subscriber that takes plain Opus. `None` if the
/// headers run past the payload.
///
/// Each header but the last is 4 bytes (F bit set, payload type, 14-bit
/// timestamp offset, 10-bit length); the last is 1 byte (F clear, payload
/// type). The blocks follow in header order; the primary is the last, and
/// takes the rest of the payload.
pub fn red_primary(payload: &[u8]) -> Option<(u8, usize)> {
    let mut pos = 0usize;
    let mut redundant = 0usize;
    loop {
        let first = *payload.get(pos)?;
        if first & 0x80 == 0 {
            let start = pos + 1 + redundant;
            return (start <= payload.len()).then_some((first & 0x7f, start));
        }
        let hi = usize::from(*payload.get(pos + 2)? & 0x03);
        let lo = usize::from(*payload.get(pos + 3)?);
        redundant += (hi << 8) | lo;
        pos += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_primary_is_the_last_block() {
        // Two redundant blocks (3 and 2 bytes) then the primary (PT 111).
        let payload = [
            0x80 | 111,
            0x03,
            0xC0,
            3, // ts offset 960, length 3
            0x80 | 111,
            0x07,
            0x80,
            2,   // ts offset 1920, length 2
            111, // primary header
            1,
            2,
            3,
            4,
            5, // redundant data
            9,
            9,
            9, // primary data
        ];
        let (pt, start) = red_primary(&payload).expect("parsed");
        assert_eq!((pt, &payload[start..]), (111, &[9u8, 9, 9][..]));
        // No redundancy: one header byte, then the primary.
        assert_eq!(red_primary(&[111, 7, 7]), Some((111, 1)));
        // Headers that promise more than there is.
        assert_eq!(red_primary(&[0x80 | 111, 0, 0, 200, 111, 1]), None);
        assert_eq!(red_primary(&[0x80 | 111, 0]), None);
        assert_eq!(red_primary(&[]), None);
    }

    #[test]
    fn vp8_keyframe_and_delta() {
        // S=1, PID=0, no extension; payload header P=0 → key frame.
        assert!(vp8_is_keyframe_start(&[0x10, 0x00, 0x9d]));
        // P=1 → inter frame.
        assert!(!vp8_is_keyframe_start(&[0x10, 0x01]));
        // Not the start of a partition.
        assert!(!vp8_is_keyframe_start(&[0x00, 0x00]));
        // With X, I (15-bit picture id), L and T.
        assert!(vp8_is_keyframe_start(&[0x90, 0xe0, 0x80, 0x01, 0x00, 0x00, 0x00]));
        assert!(!vp8_is_keyframe_start(&[
            0x90, 0xe0, 0x80, 0x01, 0x00, 0x00, 0x01
        ]));
        // Truncated input never panics.
        assert!(!vp8_is_keyframe_start(&[]));
        assert!(!vp8_is_keyframe_start(&[0x90]));
        assert!(!vp8_is_keyframe_start(&[0x90, 0x80]));
    }

    #[test]
    fn h264_keyframes() {
        assert!(h264_is_keyframe(&[0x65]));
        assert!(!h264_is_keyframe(&[0x41]));
        assert!(h264_is_keyframe(&[0x7c, 0x85]));
        assert!(!h264_is_keyframe(&[0x7c, 0x05]));
        assert!(h264_is_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42]));
        assert!(!h264_is_keyframe(&[0x78, 0xff, 0xff, 0x41]));
        assert!(!h264_is_keyframe(&[]));
    }

    #[test]
    fn vp8_picture_ids_are_found_and_rewritten_in_place() {
        // X, I with M (15 bits: 0x1234), then the VP8 payload header.
        let mut p = vec![0x90, 0x80, 0x80 | 0x12, 0x34, 0x00];
        assert_eq!(vp8_picture_id(&p), Some((2, 0x1234)));
        vp8_set_picture_id(&mut p, 2, 0x7FFE);
        assert_eq!(vp8_picture_id(&p), Some((2, 0x7FFE)));
        assert_eq!(p[4], 0x00, "the rest is untouched");
        assert!(vp8_is_keyframe_start(&p), "still a keyframe start");
        // 7-bit PictureID, no I bit, no X bit, too short: nothing to rewrite.
        assert_eq!(vp8_picture_id(&[0x90, 0x80, 0x12, 0x00]), None);
        assert_eq!(vp8_picture_id(&[0x90, 0x00, 0x00]), None);
        assert_eq!(vp8_picture_id(&[0x10, 0x00]), None);
        assert_eq!(vp8_picture_id(&[0x90, 0x80, 0x92]), None);
    }
}
