//! TURN for stations behind carrier NAT and firewalls that block UDP: the
//! ICE servers handed to each page, with per-user, time-limited credentials.
//!
//! The scheme is the "TURN REST API" one that coturn checks with
//! `use-auth-secret` / `static-auth-secret` (draft-uberti-behave-turn-rest-00
//! §2.2): the username is `<expiry as unix seconds>:<user id>` and the
//! password is `base64(HMAC-SHA1(secret, username))`. coturn recomputes the
//! password from the shared secret and refuses a username whose expiry has
//! passed, so a credential copied out of a page stops working on its own and
//! the server never stores one. The secret itself never leaves this process
//! and never reaches a log ([`TurnSecret`] redacts itself).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use telehealth_records::UserId;

/// Shortest shared secret accepted: anything shorter is guessable offline
/// from one captured credential.
pub const MIN_SECRET_LEN: usize = 16;
/// Bounds for the credential lifetime.
pub const MIN_TTL: Duration = Duration::from_secs(60);
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The secret shared with coturn. `Debug` and `Display` print `[redacted]`.
#[derive(Clone)]
pub struct TurnSecret(String);

impl TurnSecret {
    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl FromStr for TurnSecret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() < MIN_SECRET_LEN {
            // Say how long it must be, never what it was.
            return Err(format!(
                "the TURN secret must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(TurnSecret(s.to_owned()))
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One entry of `RTCConfiguration.iceServers`, as the browser takes it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why the TURN settings were refused at start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TurnConfigError {
    #[error("--turn-url {0:?}: must start with turn:, turns: or stun: and name a host (e.g. turn:turn.example.vn:3479?transport=udp)")]
    BadUrl(String),
    #[error("--turn-url is set but --turn-secret (TELEHEALTH_TURN_SECRET) is not: coturn needs the shared secret to check credentials")]
    MissingSecret,
    #[error("--turn-ttl must be between {} and {} seconds", MIN_TTL.as_secs(), MAX_TTL.as_secs())]
    BadTtl,
}

/// The ICE servers this server hands out: STUN URLs as they are, TURN URLs
/// with a fresh credential for each user each time. Cheap to clone.
#[derive(Clone, Default)]
pub struct IceServers {
    stun: Vec<String>,
    turn: Vec<String>,
    secret: Option<TurnSecret>,
    ttl: Duration,
}

impl fmt::Debug for IceServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServers")
            .field("stun", &self.stun)
            .field("turn", &self.turn)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// `turn:host[:port][?transport=udp|tcp]` and the like, checked loosely: the
/// browser parses it for real, but a typo should fail at start, not in a call.
fn check_url(url: &str) -> Result<&'static str, TurnConfigError> {
    let bad = || TurnConfigError::BadUrl(url.to_owned());
    let (scheme, rest) = url.split_once(':').ok_or_else(bad)?;
    let scheme = match scheme {
        "turn" => "turn",
        "turns" => "turns",
        "stun" => "stun",
        _ => return Err(bad()),
    };
    let (host_port, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, _)| h).ok_or_else(bad)?,
        None => host_port.split(':').next().unwrap_or(""),
    };
    if host.is_empty() || host_port.starts_with("//") || url.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(bad());
    }
    if let Some(q) = query {
        if scheme == "stun" || !matches!(q, "transport=udp" | "transport=tcp") {
            return Err(bad());
        }
    }
    Ok(scheme)
}

impl IceServers {
    /// Checks the settings. `urls` may mix `stun:` and `turn:`/`turns:`
    /// URLs; TURN URLs need the secret.
    pub fn new(urls: &[String], secret: Option<TurnSecret>, ttl: Duration) -> Result<Self, TurnConfigError> {
        if ttl < MIN_TTL || ttl > MAX_TTL {
            return Err(TurnConfigError::BadTtl);
        }
        let mut stun = Vec::new();
        let mut turn = Vec::new();
        for url in urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            match check_url(url)? {
                "stun" => stun.push(url.to_owned()),
                _ => turn.push(url.to_owned()),
            }
        }
        if !turn.is_empty() && secret.is_none() {
            return Err(TurnConfigError::MissingSecret);
        }
        Ok(Self {
            stun,
            turn,
            secret,
            ttl,
        })
    }

    /// How many TURN URLs are configured.
    pub fn turn_urls(&self) -> usize {
        self.turn.len()
    }

    /// How long each credential stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The list for one user's page, with a TURN credential that expires
    /// `ttl` after `now`. Empty when nothing is configured.
    pub fn for_user(&self, user: UserId, now: SystemTime) -> Vec<IceServer> {
        let mut out = Vec::new();
        if !self.stun.is_empty() {
            out.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.turn.is_empty(), &self.secret) {
            let expiry = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(self.ttl)
                .as_secs();
            let username = format!("{expiry}:{user}");
            let credential = rest_credential(secret, &username);
            out.push(IceServer {
                urls: self.turn.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        out
    }
}

/// `base64(HMAC-SHA1(secret, username))`: the password coturn expects for a
/// REST-API username (its `static-auth-secret` mode).
pub fn rest_credential(secret: &TurnSecret, username: &str) -> String {
    // HMAC takes a key of any length, so `new_from_slice` cannot fail.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.bytes()).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> TurnSecret {
        "north-wind-0123456789".parse().unwrap()
    }

    #[test]
    fn credential_matches_the_rest_scheme() {
        // Computed independently:
        // printf %s '1700000000:alice' | openssl dgst -sha1 -hmac north-wind-0123456789 -binary | base64
        assert_eq!(
            rest_credential(&secret(), "1700000000:alice"),
            "7ptuE9fffwJIOx+OdO4tvVsLYlg="
        );
    }

    #[test]
    fn username_carries_expiry_and_user() {
        let ice = IceServers::new(
            &[
                "turn:127.0.0.1:3479?transport=udp".into(),
                "stun:127.0.0.1:3479".into(),
            ],
            Some(secret()),
            Duration::from_secs(600),
        )
        .unwrap();
        let user = UserId::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let list = ice.for_user(user, now);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].urls, ["stun:127.0.0.1:3479"]);
        assert_eq!(list[0].credential, None);
        let turn = &list[1];
        assert_eq!(turn.urls, ["turn:127.0.0.1:3479?transport=udp"]);
        let username = turn.username.clone().unwrap();
        assert_eq!(username, format!("1700000600:{user}"));
        assert_eq!(
            turn.credential.clone().unwrap(),
            rest_credential(&secret(), &username)
        );
    }

    #[test]
    fn secret_never_prints() {
        let s = secret();
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        let ice = IceServers::new(&["turn:h:1".into()], Some(s), Duration::from_secs(600)).unwrap();
        assert!(!format!("{ice:?}").contains("north-wind"));
        let list = ice.for_user(UserId::new(), SystemTime::now());
        let printed = format!("{list:?}");
        assert!(!printed.contains(list[0].credential.as_deref().unwrap()));
    }

    #[test]
    fn bad_settings_are_refused() {
        let ttl = Duration::from_secs(600);
        assert_eq!(
            IceServers::new(&["turn:h:3479".into()], None, ttl).unwrap_err(),
            TurnConfigError::MissingSecret
        );
        for bad in [
            "http://h",
            "turn:",
            "turn://h",
            "turn:h?transport=sctp",
            "turn:user@h",
            "stun:h?transport=udp",
        ] {
            assert!(
                matches!(
                    IceServers::new(&[bad.into()], Some(secret()), ttl),
                    Err(TurnConfigError::BadUrl(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            IceServers::new(&[], Some(secret()), Duration::from_secs(5)).unwrap_err(),
            TurnConfigError::BadTtl
        );
        assert!("short".parse::<TurnSecret>().is_err());
        for good in [
            "turn:[::1]:3479?transport=tcp",
            "turns:turn.example.vn:5349?transport=tcp",
            "stun:h",
        ] {
            assert!(
                IceServers::new(&[good.into()], Some(secret()), ttl).is_ok(),
                "{good}"
            );
        }
        // Nothing configured: nothing handed out.
        assert!(IceServers::new(&[], None, ttl)
            .unwrap()
            .for_user(UserId::new(), SystemTime::now())
            .is_empty());
    }
}
