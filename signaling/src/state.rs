use std::sync::Arc;

use telehealth_records::Store;

use crate::auth::{AuthKeys, LoginThrottle};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Arc<AuthKeys>,
    pub throttle: Arc<LoginThrottle>,
    /// Take client addresses from `X-Forwarded-For`.
    pub trust_proxy: bool,
    /// Mark cookies `Secure` (served over HTTPS, directly or by a proxy).
    pub secure_cookies: bool,
}
