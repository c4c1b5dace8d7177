//! Routing a datagram on the shared media port (or the first packet of an
//! ICE-TCP connection) to its peer connection before ICE has chosen a pair:
//! by the USERNAME of a STUN binding request, whose first half is our ICE
//! ufrag (RFC 8445 §7.2.2, RFC 5389 §15.3) — but only once its
//! MESSAGE-INTEGRITY checks out with that participant's ICE password
//! (RFC 5389 §15.4), so a forged request cannot claim a source address.

use rtc::crypto::{HmacAlgorithm, RTCCrypto};

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const HMAC_SHA1_LEN: usize = 20;

/// Whether the datagram looks like STUN (RFC 7983 demultiplexing: first byte 0..=3).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] < 4 && datagram[4..8] == MAGIC_COOKIE
}

/// The attributes of a STUN message: (type, offset of the attribute header
/// in the message, value). Stops at the first malformed attribute.
fn attributes(datagram: &[u8]) -> impl Iterator<Item = (u16, usize, &[u8])> {
    let body: &[u8] = if is_stun(datagram) {
        let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        datagram.get(20..20 + len).unwrap_or_default()
    } else {
        &[]
    };
    let mut i = 0;
    std::iter::from_fn(move || {
        let header = body.get(i..i + 4)?;
        let typ = u16::from_be_bytes([header[0], header[1]]);
        let alen = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = body.get(i + 4..i + 4 + alen)?;
        let at = 20 + i;
        // Attributes are padded to 4 bytes.
        i += 4 + alen.div_ceil(4) * 4;
        Some((typ, at, value))
    })
}

/// Our ufrag from the USERNAME attribute (`ours:theirs`) of a STUN message, if any.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    let (_, _, value) = attributes(datagram).find(|(t, _, _)| *t == ATTR_USERNAME)?;
    std::str::from_utf8(value).ok()?.split(':').next()
}

/// Whether the message carries a MESSAGE-INTEGRITY made with `password`
/// (the short-term credential: our ICE password for requests sent to us).
pub fn integrity_ok(datagram: &[u8], password: &str, crypto: &dyn RTCCrypto) -> bool {
    let Some((_, at, tag)) = attributes(datagram).find(|(t, _, _)| *t == ATTR_MESSAGE_INTEGRITY) else {
        return false;
    };
    if tag.len() != HMAC_SHA1_LEN {
        return false;
    }
    // The HMAC covers the message up to the attribute, with the header's
    // length field as if MESSAGE-INTEGRITY were the last attribute.
    let Ok(len) = u16::try_from(at + 4 + HMAC_SHA1_LEN - 20) else {
        return false;
    };
    let Some(covered) = datagram.get(4..at) else {
        return false;
    };
    let header = [datagram[0], datagram[1], (len >> 8) as u8, len as u8];
    let Ok(mut mac) = crypto.new_hmac(HmacAlgorithm::Sha1, password.as_bytes()) else {
        return false;
    };
    mac.verify(&[&header, covered], tag).is_ok()
}

/// A binding request as a client's ICE agent builds it: USERNAME,
/// MESSAGE-INTEGRITY with `password`, FINGERPRINT. For tests of the routing
/// above (here and in the test crate, which forges requests with it).
pub fn signed_binding_request(username: &str, password: &str, crypto: &dyn RTCCrypto) -> Vec<u8> {
    use rtc::stun::fingerprint::FINGERPRINT;
    use rtc::stun::integrity::MessageIntegrity;
    use rtc::stun::message::{Message, TransactionId, BINDING_REQUEST};
    use rtc::stun::textattrs::Username;
    let mut m = Message::new();
    m.build(&[
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(Username::new(
            rtc::stun::attributes::ATTR_USERNAME,
            username.to_owned(),
        )),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
            password.to_owned(),
            crypto,
        )),
        Box::new(FINGERPRINT),
    ])
    .expect("a well-formed request");
    m.raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_is_checked_with_our_password() {
        // The default provider exists: `rtc` is built with its `ring` feature.
        let provider = rtc::crypto::default_provider().expect("crypto provider");
        let crypto = provider.crypto();
        let m = signed_binding_request("ours:theirs", "our-password-0123456789", crypto);
        assert_eq!(local_ufrag(&m), Some("ours"));
        assert!(integrity_ok(&m, "our-password-0123456789", crypto));
        assert!(!integrity_ok(&m, "not-our-password-012345", crypto));
        let mut tampered = m.clone();
        tampered[24 + 2] ^= 1; // a byte of the USERNAME
        assert!(!integrity_ok(&tampered, "our-password-0123456789", crypto));
        for cut in [0, 19, 20, 30, m.len() - 9] {
            assert!(
                !integrity_ok(&m[..cut], "our-password-0123456789", crypto),
                "cut at {cut}"
            );
        }
        // No integrity attribute at all.
        assert!(!integrity_ok(&binding_request(b"ours:theirs"), "x", crypto));
    }

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let padded = username.len().div_ceil(4) * 4;
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&(username.len() as u16).to_be_bytes());
        m.extend_from_slice(username);
        m.resize(20 + 4 + padded, 0);
        m
    }

    #[test]
    fn finds_our_ufrag() {
        let m = binding_request(b"abcd:wxyz1");
        assert_eq!(local_ufrag(&m), Some("abcd"));
    }

    #[test]
    fn garbage_is_not_stun() {
        assert_eq!(local_ufrag(b""), None);
        assert_eq!(local_ufrag(&[0u8; 19]), None);
        assert_eq!(local_ufrag(&[0x80; 200]), None);
        let mut m = binding_request(b"abcd:wxyz");
        m[3] = 0xff; // length past the end
        assert_eq!(local_ufrag(&m), None);
        let mut m = binding_request(b"abcd:wxyz");
        m[22] = 0xff; // attribute length past the end
        assert_eq!(local_ufrag(&m), None);
    }
}
