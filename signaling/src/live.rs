//! Live updates: every change to a consultation is published here and pushed
//! to the open pages of the people concerned (its station, its hospital's
//! doctors) within a second.
//!
//! Pushed messages carry ids, states and times only — never a name or a
//! reason — so a page refetches what it shows through the audited REST API.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use telehealth_records::{
    Consultation, ConsultationId, ConsultationKind, ConsultationState, FacilityId, Role, Timestamp, UserId,
};
use tokio::sync::{broadcast, mpsc};

/// One consultation's new state, as pushed to clients.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsultationChange {
    pub consultation_id: ConsultationId,
    pub station_id: FacilityId,
    pub hospital_id: FacilityId,
    pub doctor_id: Option<UserId>,
    pub kind: ConsultationKind,
    pub state: ConsultationState,
    pub scheduled_start: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl From<&Consultation> for ConsultationChange {
    fn from(c: &Consultation) -> Self {
        Self {
            consultation_id: c.id,
            station_id: c.station_id,
            hospital_id: c.hospital_id,
            doctor_id: c.doctor_id,
            kind: c.kind,
            state: c.state,
            scheduled_start: c.scheduled_start,
            updated_at: c.updated_at,
        }
    }
}

impl ConsultationChange {
    /// Whether a user with this role and facility should hear of it.
    pub fn concerns(&self, role: Role, facility: Option<FacilityId>, user: UserId) -> bool {
        match role {
            Role::HealthWorker => facility == Some(self.station_id),
            Role::Doctor => facility == Some(self.hospital_id) || self.doctor_id == Some(user),
            Role::Admin => false,
        }
    }
}

/// What the hub hands to open pages.
#[derive(Clone, Debug)]
pub enum HubEvent {
    /// A consultation changed on this node.
    Change(ConsultationChange),
    /// A consultation changed on another node.
    Remote(ConsultationChange),
    /// Changes may have been missed: pages refetch what they show.
    Resync,
}

/// The publisher: every change reaches this node's open pages at once and,
/// with several nodes on PostgreSQL, the other nodes' through `NOTIFY` on
/// [`telehealth_records::CHANGES_CHANNEL`] ([`Hub::join_cluster`]).
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<HubEvent>,
    /// To the other nodes, once [`Hub::join_cluster`] has run.
    out: Arc<OnceLock<mpsc::UnboundedSender<ConsultationChange>>>,
}

impl Default for Hub {
    fn default() -> Self {
        // A slow page that falls this far behind is told to refetch.
        let (tx, _) = broadcast::channel(1024);
        Self {
            tx,
            out: Arc::default(),
        }
    }
}

/// A change as it travels between nodes: which node published it.
#[derive(Serialize, Deserialize)]
struct Wire {
    node: String,
    change: ConsultationChange,
}

impl Hub {
    pub fn publish(&self, c: &Consultation) {
        let change = ConsultationChange::from(c);
        if let Some(out) = self.out.get() {
            let _ = out.send(change.clone());
        }
        // No subscriber is not an error: nobody has a page open.
        let _ = self.tx.send(HubEvent::Change(change));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.tx.subscribe()
    }

    /// Tells this node's pages to refetch (changes may have been missed).
    pub fn resync(&self) {
        let _ = self.tx.send(HubEvent::Resync);
    }

    /// Sends this node's changes to the other nodes and hands theirs to
    /// this node's pages, through PostgreSQL (`url`); a no-op for SQLite.
    /// Whenever the listening connection is made again, this node's pages
    /// are told to refetch, since what was sent meanwhile was missed.
    pub fn join_cluster(&self, store: telehealth_records::Store, url: String, node: String) {
        if store.backend() != telehealth_records::Backend::Postgres {
            return;
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ConsultationChange>();
        if self.out.set(out_tx).is_err() {
            return;
        }
        let me = node.clone();
        tokio::spawn(async move {
            while let Some(change) = out_rx.recv().await {
                let wire = Wire {
                    node: me.clone(),
                    change,
                };
                let Ok(payload) = serde_json::to_string(&wire) else {
                    continue;
                };
                if let Err(e) = store.notify(telehealth_records::CHANGES_CHANNEL, &payload).await {
                    tracing::warn!(error = %e, "a live update could not reach the other nodes");
                }
            }
        });
        let hub = self.clone();
        tokio::spawn(async move { hub.listen(url, node).await });
    }

    async fn listen(self, url: String, me: String) {
        let mut first = true;
        loop {
            let mut listener = match telehealth_records::ChangeListener::connect(
                &url,
                telehealth_records::CHANGES_CHANNEL,
            )
            .await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for the other nodes' updates; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if !first {
                tracing::info!(
                    "listening for the other nodes' updates again; pages refetch what they missed"
                );
                self.resync();
            }
            first = false;
            loop {
                match listener.recv().await {
                    Ok(Some(payload)) => match serde_json::from_str::<Wire>(&payload) {
                        Ok(w) if w.node != me => {
                            let _ = self.tx.send(HubEvent::Remote(w.change));
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "an update from another node does not read"),
                    },
                    Ok(None) | Err(_) => {
                        tracing::warn!("the connection that listens for the other nodes' updates was lost");
                        break;
                    }
                }
            }
        }
    }
}
