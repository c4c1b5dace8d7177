use std::sync::Arc;

use telehealth_records::Store;

use crate::auth::{AuthKeys, LoginThrottle};
use crate::call::Calls;
use crate::live::Hub;

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
    /// Live updates to open pages.
    pub hub: Hub,
    /// Live calls and the SFU.
    pub calls: Calls,
    /// Turns true when the server is shutting down (sockets close cleanly).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
