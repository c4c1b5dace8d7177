//! The consultation lifecycle, in one place: which state may follow which,
//! who may cause each move, which states are live (hold the patient's
//! request or a doctor's slot), closed, or open to a call and when, and what
//! a given user may do with a consultation now. Every match here is
//! exhaustive: a new state does not compile until each rule has said what
//! it means for it. The pages read the derived facts ([`Facts`]) from the
//! API instead of working them out; the SQL that filters by state uses the
//! lists below ([`sql_list`]).
//!
//! ```text
//! requested ──accept──▶ requested (a doctor) ──start──▶ in_progress ──▶ completed
//!     │                                                  │    ▲
//!     └──▶ cancelled        scheduled ──start────────────┘    │
//!                              │  └──▶ cancelled, no_show    interrupted ──▶ completed
//! ```

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::consultations::Consultation;
use crate::types::{ConsultationState, FacilityId, Role, UserId};

/// How long before a booked slot its call opens.
pub const EARLY_JOIN: Duration = Duration::minutes(15);
/// How long after a booked slot's end its call stays open.
pub const LATE_JOIN: Duration = Duration::minutes(60);

/// The states that hold a doctor's booked slot (a new booking cannot take it).
pub const HOLDS_SLOT: &[ConsultationState] = &[
    ConsultationState::Scheduled,
    ConsultationState::InProgress,
    ConsultationState::Interrupted,
];

/// The states of a consultation that has not started: a withdrawal of the
/// patient's consent cancels those.
pub const NOT_STARTED: &[ConsultationState] = &[ConsultationState::Requested, ConsultationState::Scheduled];

/// `('a', 'b')` for SQL's `state IN …`.
pub fn sql_list(states: &[ConsultationState]) -> String {
    let names: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("({})", names.join(", "))
}

impl ConsultationState {
    /// The transitions the server allows. Everything else is refused.
    pub fn can_become(self, to: ConsultationState) -> bool {
        use ConsultationState::*;
        match self {
            Requested => matches!(to, InProgress | Cancelled),
            Scheduled => matches!(to, InProgress | Cancelled | NoShow),
            InProgress => matches!(to, Completed | Interrupted),
            Interrupted => matches!(to, InProgress | Completed),
            Completed | Cancelled | NoShow => false,
        }
    }

    /// No further transitions from here.
    pub fn is_final(self) -> bool {
        use ConsultationState::*;
        match self {
            Completed | Cancelled | NoShow => true,
            Requested | Scheduled | InProgress | Interrupted => false,
        }
    }

    /// Whether `role` may move a consultation into this state (the
    /// assignment and the lifecycle are checked besides). A health worker
    /// may only withdraw a request; the doctor runs the consultation.
    pub fn may_be_caused_by(self, role: Role) -> bool {
        use ConsultationState::*;
        match (role, self) {
            (Role::HealthWorker, Cancelled) => true,
            (Role::HealthWorker, Requested | Scheduled | InProgress | Completed | NoShow | Interrupted) => {
                false
            }
            (Role::Doctor, InProgress | Completed | Cancelled | NoShow | Interrupted) => true,
            (Role::Doctor, Requested | Scheduled) => false,
            (Role::Admin, _) => false,
        }
    }
}

/// Why a consultation's call cannot be joined now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallClosed {
    /// An urgent request no doctor has accepted yet.
    NotAccepted,
    /// A booking more than [`EARLY_JOIN`] ahead.
    NotOpenYet,
    /// Over: ended, cancelled, a no-show, or [`LATE_JOIN`] past its slot.
    Closed,
}

/// Whether the consultation's call is open now (to its participants).
pub fn call_open(c: &Consultation, now: DateTime<Utc>) -> Result<(), CallClosed> {
    use ConsultationState::*;
    match c.state {
        Completed | Cancelled | NoShow => Err(CallClosed::Closed),
        Requested if c.doctor_id.is_none() => Err(CallClosed::NotAccepted),
        Requested => Ok(()),
        Scheduled => match (c.scheduled_start, c.scheduled_end) {
            (Some(s), _) if now < s.0 - EARLY_JOIN => Err(CallClosed::NotOpenYet),
            (_, Some(e)) if now > e.0 + LATE_JOIN => Err(CallClosed::Closed),
            _ => Ok(()),
        },
        InProgress | Interrupted => Ok(()),
    }
}

/// Whether `user` (of `role`, at `facility`) takes part in the consultation:
/// its assigned doctor, or a health worker of its station.
pub fn is_participant(c: &Consultation, user: UserId, role: Role, facility: Option<FacilityId>) -> bool {
    match role {
        Role::Doctor => c.doctor_id == Some(user),
        Role::HealthWorker => facility == Some(c.station_id),
        Role::Admin => false,
    }
}

/// Something a user may do with a consultation now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Take an urgent request from the hospital's queue.
    Accept,
    /// Join its call.
    Join,
    /// Start it (or start again after an interruption), with or without video.
    Start,
    /// End it.
    Complete,
    /// Record that the patient did not come to a booking.
    NoShow,
    /// Withdraw the request or the booking.
    Cancel,
    /// Move the booking to another slot.
    Reschedule,
}

/// The call of a consultation, as a page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Open,
    NotAccepted,
    NotOpenYet,
    Closed,
}

/// What the pages need to know about a consultation, worked out here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Facts {
    /// The user takes part in it: its assigned doctor, or a health worker
    /// of its station.
    pub participant: bool,
    /// The user takes part and its call is open now.
    pub joinable: bool,
    /// Its call, whoever asks: open, or why not.
    pub call: CallState,
    /// It is over: no state follows.
    pub closed: bool,
    /// What the user who asked may do now, in the order the page offers it.
    pub actions: Vec<Action>,
}

/// The facts for `user` (of `role`, at `facility`, a doctor's hospital or
/// a worker's station) at `now`.
pub fn facts(
    c: &Consultation,
    user: UserId,
    role: Role,
    facility: Option<FacilityId>,
    now: DateTime<Utc>,
) -> Facts {
    use ConsultationState::*;
    let joinable = call_open(c, now).is_ok();
    let participant = is_participant(c, user, role, facility);
    let mut actions = Vec::new();
    let may = |to: ConsultationState| c.state.can_become(to) && to.may_be_caused_by(role);
    match role {
        Role::Doctor => {
            if c.state == Requested && c.doctor_id.is_none() && facility == Some(c.hospital_id) {
                actions.push(Action::Accept);
            }
            if participant {
                if joinable {
                    actions.push(Action::Join);
                }
                // An urgent request is started once accepted; a booking at any time.
                if may(InProgress) && (c.state != Requested || c.doctor_id.is_some()) {
                    actions.push(Action::Start);
                }
                if may(Completed) {
                    actions.push(Action::Complete);
                }
                if may(NoShow) {
                    actions.push(Action::NoShow);
                }
                if c.state == Scheduled {
                    actions.push(Action::Reschedule);
                }
            }
        }
        Role::HealthWorker => {
            if participant {
                if joinable {
                    actions.push(Action::Join);
                }
                if may(Cancelled) {
                    actions.push(Action::Cancel);
                }
                if c.state == Scheduled {
                    actions.push(Action::Reschedule);
                }
            }
        }
        Role::Admin => {}
    }
    Facts {
        participant,
        joinable: participant && joinable,
        call: match call_open(c, now) {
            Ok(()) => CallState::Open,
            Err(CallClosed::NotAccepted) => CallState::NotAccepted,
            Err(CallClosed::NotOpenYet) => CallState::NotOpenYet,
            Err(CallClosed::Closed) => CallState::Closed,
        },
        closed: c.state.is_final(),
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ConsultationId, ConsultationKind, FacilityId, PatientId, Pii, Timestamp};
    use ConsultationState::*;

    const ALL: [ConsultationState; 7] = [
        Requested,
        Scheduled,
        InProgress,
        Completed,
        Cancelled,
        NoShow,
        Interrupted,
    ];

    #[test]
    fn transitions_as_a_table() {
        // from → the states it may become, in ALL's order.
        let table = [
            (Requested, vec![InProgress, Cancelled]),
            (Scheduled, vec![InProgress, Cancelled, NoShow]),
            (InProgress, vec![Completed, Interrupted]),
            (Completed, vec![]),
            (Cancelled, vec![]),
            (NoShow, vec![]),
            (Interrupted, vec![InProgress, Completed]),
        ];
        for (from, to) in table {
            let allowed: Vec<_> = ALL.into_iter().filter(|t| from.can_become(*t)).collect();
            assert_eq!(allowed, to, "from {from}");
            assert_eq!(
                from.is_final(),
                to.is_empty(),
                "{from} is final exactly when nothing follows"
            );
        }
        assert_eq!(ConsultationState::ALL, ALL, "every state is in the table");
    }

    #[test]
    fn who_may_cause_each_state() {
        let by = |role| {
            ALL.into_iter()
                .filter(|s| s.may_be_caused_by(role))
                .collect::<Vec<_>>()
        };
        assert_eq!(by(Role::HealthWorker), [Cancelled]);
        assert_eq!(
            by(Role::Doctor),
            [InProgress, Completed, Cancelled, NoShow, Interrupted]
        );
        assert_eq!(by(Role::Admin), []);
    }

    #[test]
    fn the_sql_lists_match_the_states() {
        assert_eq!(
            sql_list(HOLDS_SLOT),
            "('scheduled', 'in_progress', 'interrupted')"
        );
        assert_eq!(sql_list(NOT_STARTED), "('requested', 'scheduled')");
        // The database's own CHECK and the slot index name the same states.
        for file in [
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/postgres/0001_init.sql"),
        ] {
            assert!(file.contains(&format!("CHECK (state IN {})", sql_list(ConsultationState::ALL))));
        }
        for file in [
            include_str!("../migrations/sqlite/0002_scheduling.sql"),
            include_str!("../migrations/postgres/0002_scheduling.sql"),
        ] {
            assert!(file.contains(&format!("AND state IN {};", sql_list(HOLDS_SLOT))));
        }
    }

    fn consultation(
        state: ConsultationState,
        doctor: Option<UserId>,
        start: Option<DateTime<Utc>>,
    ) -> Consultation {
        let now = Timestamp::now();
        Consultation {
            id: ConsultationId::new(),
            patient_id: PatientId::new(),
            station_id: FacilityId::new(),
            hospital_id: FacilityId::new(),
            doctor_id: doctor,
            requested_by: UserId::new(),
            kind: if start.is_some() {
                ConsultationKind::Scheduled
            } else {
                ConsultationKind::Urgent
            },
            state,
            reason: Pii("Sốt".into()),
            scheduled_start: start.map(Timestamp),
            scheduled_end: start.map(|s| Timestamp(s + Duration::minutes(20))),
            started_at: None,
            ended_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn what_each_user_may_do() {
        let now = Utc::now();
        let doc = UserId::new();
        let other_doc = UserId::new();
        let hw = UserId::new();
        let queued = consultation(Requested, None, None);
        let as_doctor = |c: &Consultation, d: UserId| facts(c, d, Role::Doctor, Some(c.hospital_id), now);
        let as_worker = |c: &Consultation| facts(c, hw, Role::HealthWorker, Some(c.station_id), now);
        // The queue: any doctor of the hospital may accept; nobody may join yet.
        assert_eq!(as_doctor(&queued, doc).actions, [Action::Accept]);
        assert_eq!(as_worker(&queued).actions, [Action::Cancel]);
        assert!(!as_worker(&queued).joinable);
        // Accepted: the doctor joins or starts without video; another doctor has nothing to do.
        let accepted = Consultation {
            doctor_id: Some(doc),
            ..queued.clone()
        };
        assert_eq!(as_doctor(&accepted, doc).actions, [Action::Join, Action::Start]);
        assert_eq!(as_doctor(&accepted, other_doc).actions, []);
        assert_eq!(as_worker(&accepted).actions, [Action::Join, Action::Cancel]);
        // Under way, interrupted, over.
        let live = Consultation {
            state: InProgress,
            ..accepted.clone()
        };
        assert_eq!(as_doctor(&live, doc).actions, [Action::Join, Action::Complete]);
        assert_eq!(as_worker(&live).actions, [Action::Join]);
        let cut = Consultation {
            state: Interrupted,
            ..accepted.clone()
        };
        assert_eq!(
            as_doctor(&cut, doc).actions,
            [Action::Join, Action::Start, Action::Complete]
        );
        let done = Consultation {
            state: Completed,
            ..accepted.clone()
        };
        assert_eq!(
            as_doctor(&done, doc),
            Facts {
                participant: true,
                joinable: false,
                call: CallState::Closed,
                closed: true,
                actions: vec![]
            }
        );
        // A booking opens its call 15 minutes ahead; the worker may move or cancel it.
        let later = consultation(Scheduled, Some(doc), Some(now + Duration::hours(2)));
        assert_eq!(
            as_doctor(&later, doc).actions,
            [Action::Start, Action::NoShow, Action::Reschedule]
        );
        assert_eq!(as_worker(&later).actions, [Action::Cancel, Action::Reschedule]);
        assert_eq!(call_open(&later, now), Err(CallClosed::NotOpenYet));
        let soon = consultation(Scheduled, Some(doc), Some(now + Duration::minutes(10)));
        assert!(as_worker(&soon).joinable);
        let long_ago = consultation(Scheduled, Some(doc), Some(now - Duration::hours(2)));
        assert_eq!(call_open(&long_ago, now), Err(CallClosed::Closed));
        // An admin does nothing with a consultation.
        assert_eq!(facts(&live, UserId::new(), Role::Admin, None, now).actions, []);
    }
}
