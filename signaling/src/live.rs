//! Live updates: every change to a consultation is published here and pushed
//! to the open pages of the people concerned (its station, its hospital's
//! doctors) within a second.
//!
//! Pushed messages carry ids, states and times only — never a name or a
//! reason — so a page refetches what it shows through the audited REST API.

use serde::Serialize;
use telehealth_records::{
    Consultation, ConsultationId, ConsultationKind, ConsultationState, FacilityId, Role, Timestamp, UserId,
};
use tokio::sync::broadcast;

/// One consultation's new state, as pushed to clients.
#[derive(Clone, Debug, Serialize)]
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

/// The in-process publisher. (Across nodes, PostgreSQL LISTEN/NOTIFY will
/// feed the same hub.)
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<ConsultationChange>,
}

impl Default for Hub {
    fn default() -> Self {
        // A slow page that falls this far behind is told to refetch.
        let (tx, _) = broadcast::channel(1024);
        Self { tx }
    }
}

impl Hub {
    pub fn publish(&self, c: &Consultation) {
        // No subscriber is not an error: nobody has a page open.
        let _ = self.tx.send(c.into());
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ConsultationChange> {
        self.tx.subscribe()
    }
}
