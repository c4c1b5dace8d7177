//! What a search or `$everything` finds for one caller: the store's audited
//! reads (as the REST API makes them), filtered by the caller's rights, then
//! mapped to resources. The caller has checked access to the patient.
//!
//! A search is evaluated whole and then paged (the store's lists are
//! bounded: 200 vitals, [`CONSULTATIONS`] consultations), so every page's
//! audit entries cover what the store read to make it.

use std::collections::BTreeSet;

use serde_json::Value;
use telehealth_records::{Consultation, ConsultationScope, FacilityId, Outcome, PatientId, Role, UserId};

use super::{resources, FhirError, FhirResult};
use crate::access;
use crate::auth::AuthUser;
use crate::state::AppState;

/// Most consultations of one patient a search looks at.
const CONSULTATIONS: i64 = 200;
/// Most alternatives in an Observation search's `code`.
const MAX_CODES: usize = 20;

/// Most vital-sign sets of one patient the store reads (its bound).
const VITALS: usize = 200;

pub struct Gather<'a> {
    pub s: &'a AppState,
    pub user: &'a AuthUser,
    pub base: &'a str,
    /// Set when a bound cut what was read: the answer is not the whole.
    pub cut: std::sync::atomic::AtomicBool,
}

impl Gather<'_> {
    /// `Patient?identifier=system|value`: the patient holding a CCCD or BHYT
    /// number, if the caller may see them. One outside the caller's scope is
    /// not shown (nor said to exist), and the attempt is audited.
    pub async fn patients_by_identifier(&self, identifier: Option<&str>) -> FhirResult<Vec<Value>> {
        let Some(identifier) = identifier else {
            return Err(FhirError::bad(
                "identifier_required",
                format!(
                    "Tìm bệnh nhân cần tham số “identifier” (ví dụ {}|012345678901).",
                    resources::CCCD_SYSTEM
                ),
                format!(
                    "A Patient search needs `identifier` (e.g. {}|012345678901).",
                    resources::CCCD_SYSTEM
                ),
            ));
        };
        let scope = access::search_scope(self.s, self.user).await?;
        let (system, value) = match identifier.split_once('|') {
            Some((s, v)) => (Some(s), v),
            None => (None, identifier),
        };
        let mut holders = Vec::new();
        match system {
            Some(resources::CCCD_SYSTEM) => holders.extend(self.s.store.cccd_holder(value).await?),
            Some(resources::BHYT_SYSTEM) => holders.extend(self.s.store.bhyt_holder(value).await?),
            None | Some("") => {
                holders.extend(self.s.store.cccd_holder(value).await?);
                holders.extend(self.s.store.bhyt_holder(value).await?);
            }
            Some(other) => {
                let other: String = other.chars().take(100).collect();
                return Err(FhirError::bad(
                    "unknown_identifier_system",
                    format!(
                        "Hệ định danh “{other}” không được hỗ trợ. Dùng {} (CCCD) hoặc {} (BHYT).",
                        resources::CCCD_SYSTEM,
                        resources::BHYT_SYSTEM
                    ),
                    format!(
                        "Identifier system `{other}` is not known here. Use {} (CCCD) or {} (BHYT).",
                        resources::CCCD_SYSTEM,
                        resources::BHYT_SYSTEM
                    ),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (pid, _) in holders {
            if !seen.insert(pid) {
                continue;
            }
            if self.s.store.patient_in_scope(pid, &scope).await? {
                out.push(resources::patient(
                    &self.s.store.read_patient(&self.user.actor(), pid).await?,
                ));
            } else {
                // As the REST API's "registered elsewhere": an inspector sees
                // who looked up whom.
                self.s
                    .store
                    .audit(
                        &self.user.actor(),
                        "patient.search",
                        "patient",
                        Some(pid.to_string()),
                        Some(pid),
                        Outcome::Denied,
                    )
                    .await?;
            }
        }
        if seen.is_empty() {
            // A number no one holds is a lookup too: audited, and answered
            // in the time a lookup of someone elsewhere takes.
            self.s
                .store
                .audit(
                    &self.user.actor(),
                    "patient.search",
                    "patient",
                    None,
                    None,
                    Outcome::Ok,
                )
                .await?;
        }
        Ok(out)
    }

    /// Every facility (directory data: any signed-in user), audited once.
    pub async fn facilities(&self, kind: &str) -> FhirResult<Vec<Value>> {
        let list = self.s.store.facilities().await?;
        self.s
            .store
            .audit(
                &self.user.actor(),
                "facility.list",
                "facility",
                None,
                None,
                Outcome::Ok,
            )
            .await?;
        Ok(list
            .iter()
            .map(|f| match kind {
                "Organization" => resources::organization(f),
                _ => resources::location(f),
            })
            .collect())
    }

    /// The patient's consultations the caller may see, newest first.
    pub async fn consultations(&self, pid: PatientId) -> FhirResult<Vec<Consultation>> {
        // Only what the caller may see is kept, and only that is audited.
        let kept = self
            .s
            .store
            .consultations_kept(
                &self.user.actor(),
                &ConsultationScope::Patient(pid),
                None,
                CONSULTATIONS,
                |c| access::may_read_consultation(self.user, c),
            )
            .await?;
        if kept.len() as i64 >= CONSULTATIONS {
            self.mark_cut();
        }
        Ok(kept)
    }

    fn mark_cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a bound cut the answer short.
    pub fn was_cut(&self) -> bool {
        self.cut.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes out of Observations the `encounter` references the caller may
    /// not follow (a measurement taken for another hospital's consultation):
    /// a platform resolving them would only be refused.
    async fn hide_unreadable_encounters(
        &self,
        observations: &mut [Value],
        readable: Option<&[Consultation]>,
    ) {
        let mut verdicts: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        for o in observations.iter_mut() {
            let Some(reference) = o["encounter"]["reference"].as_str().map(str::to_owned) else {
                continue;
            };
            let id = reference.trim_start_matches("Encounter/").to_owned();
            let ok = match verdicts.get(&id) {
                Some(ok) => *ok,
                None => {
                    let ok = match readable {
                        Some(list) => list.iter().any(|c| c.id.to_string() == id),
                        None => match id.parse() {
                            Ok(cid) => self
                                .s
                                .store
                                .consultation(cid)
                                .await
                                .is_ok_and(|c| access::may_read_consultation(self.user, &c)),
                            Err(_) => false,
                        },
                    };
                    verdicts.insert(id, ok);
                    ok
                }
            };
            if !ok {
                if let Some(m) = o.as_object_mut() {
                    m.remove("encounter");
                }
            }
        }
    }

    /// Of a consultation's signed notes, the latest of each amendment chain
    /// (an amended note is replaced by its amendment: a consumer that does
    /// not follow `relatesTo` must not count both versions' diagnoses). The
    /// older versions stay readable by id.
    fn latest_versions(notes: Vec<telehealth_records::Note>) -> Vec<telehealth_records::Note> {
        let replaced: BTreeSet<_> = notes.iter().filter_map(|n| n.amends_note_id).collect();
        notes.into_iter().filter(|n| !replaced.contains(&n.id)).collect()
    }

    /// The signed notes of these consultations as Compositions.
    pub async fn compositions(&self, cons: &[Consultation]) -> FhirResult<Vec<Value>> {
        let mut out = Vec::new();
        for c in cons {
            let notes = self
                .s
                .store
                .consultation_notes(&self.user.actor(), c.id, true)
                .await?;
            for n in Self::latest_versions(notes) {
                out.extend(resources::composition(&n, c));
            }
        }
        Ok(out)
    }

    /// The photos of these consultations as DocumentReferences.
    pub async fn documents(&self, cons: &[Consultation]) -> FhirResult<Vec<Value>> {
        let mut out = Vec::new();
        for c in cons {
            for a in self.s.store.photos(&self.user.actor(), c.id).await? {
                out.push(resources::document_reference(&a, self.base));
            }
        }
        Ok(out)
    }

    /// The patient's vital signs as Observations, newest first, filtered
    /// by `category` and `code` (comma-separated alternatives, each `code`
    /// or `system|code`).
    pub async fn observations(
        &self,
        pid: PatientId,
        category: Option<&str>,
        code: Option<&str>,
    ) -> FhirResult<Vec<Value>> {
        if let Some(cat) = category {
            let vital = cat
                .split(',')
                .any(|c| matches!(c.rsplit('|').next(), Some("vital-signs")));
            if !vital {
                // We hold vital signs only.
                return Ok(Vec::new());
            }
        }
        let wanted: Option<Vec<&str>> =
            code.map(|c| c.split(',').map(|c| c.rsplit('|').next().unwrap_or(c)).collect());
        if wanted.as_ref().is_some_and(|w| w.len() > MAX_CODES) {
            return Err(FhirError::bad(
                "too_many_codes",
                format!("Tìm theo “code” nhận tối đa {MAX_CODES} mã."),
                format!("A `code` search takes at most {MAX_CODES} codes."),
            ));
        }
        let list = self.s.store.patient_vitals(&self.user.actor(), pid).await?;
        if list.len() >= VITALS {
            self.mark_cut();
        }
        let mut found: Vec<Value> = list
            .iter()
            .flat_map(resources::observations)
            .filter(|o| match &wanted {
                None => true,
                Some(codes) => o["code"]["coding"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| codes.iter().any(|w| c["code"] == *w))),
            })
            .collect();
        self.hide_unreadable_encounters(&mut found, None).await;
        Ok(found)
    }

    /// `Patient/{id}/$everything`: the patient, their encounters and
    /// appointments, vital signs, signed notes and photos the caller may
    /// see, and the organizations, locations and practitioners these name.
    pub async fn everything(&self, pid: PatientId) -> FhirResult<Vec<Value>> {
        let store = &self.s.store;
        let patient = store.read_patient(&self.user.actor(), pid).await?;
        let cons = self.consultations(pid).await?;
        let mut facilities: BTreeSet<FacilityId> = BTreeSet::from([patient.facility_id]);
        let mut people: BTreeSet<UserId> = BTreeSet::new();
        for c in &cons {
            facilities.extend([c.station_id, c.hospital_id]);
            people.insert(c.requested_by);
            people.extend(c.doctor_id);
        }
        let mut out = vec![resources::patient(&patient)];
        out.extend(cons.iter().map(resources::encounter));
        out.extend(cons.iter().filter_map(resources::appointment));
        let vitals = store.patient_vitals(&self.user.actor(), pid).await?;
        if vitals.len() >= VITALS {
            self.mark_cut();
        }
        people.extend(vitals.iter().map(|v| v.recorded_by));
        let mut observations: Vec<Value> = vitals.iter().flat_map(resources::observations).collect();
        self.hide_unreadable_encounters(&mut observations, Some(&cons))
            .await;
        out.extend(observations);
        for c in &cons {
            let notes = store.consultation_notes(&self.user.actor(), c.id, true).await?;
            for n in Self::latest_versions(notes) {
                people.insert(n.author_id);
                out.extend(resources::composition(&n, c));
            }
            for a in store.photos(&self.user.actor(), c.id).await? {
                people.insert(a.uploaded_by);
                out.push(resources::document_reference(&a, self.base));
            }
        }
        for f in facilities {
            let f = store.facility(f).await?;
            out.push(resources::organization(&f));
            out.push(resources::location(&f));
        }
        for u in people {
            let u = store.user(u).await?;
            if u.role != Role::Admin {
                out.push(resources::practitioner(&u));
            }
        }
        Ok(out)
    }
}
