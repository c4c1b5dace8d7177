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
    /// This node among the others on the same database.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Open sockets per user (bounded: [`SocketCounts::PER_USER`]).
    pub sockets: Arc<SocketCounts>,
}

/// How many sockets each user has open. A user's pages need a few (a queue,
/// a consultation, another tab); one user opening hundreds is an attack on
/// everyone else's memory and file descriptors.
#[derive(Default)]
pub struct SocketCounts(std::sync::Mutex<std::collections::HashMap<telehealth_records::UserId, usize>>);

/// One open socket of a user; its place is given back when dropped.
pub struct SocketSlot {
    counts: Arc<SocketCounts>,
    user: telehealth_records::UserId,
}

impl SocketCounts {
    pub const PER_USER: usize = 8;

    /// Sockets open now, every user's.
    pub fn total(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// A place for one more socket of `user`, or `None` at the limit.
    pub fn open(self: &Arc<Self>, user: telehealth_records::UserId) -> Option<SocketSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(user).or_default();
        if *n >= Self::PER_USER {
            return None;
        }
        *n += 1;
        crate::metrics::global().websocket_opened.inc();
        Some(SocketSlot {
            counts: self.clone(),
            user,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}
