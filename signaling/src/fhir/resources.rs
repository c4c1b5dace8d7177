//! Our records as HL7 FHIR R4 resources: pure mappings, no I/O.
//!
//! Each function takes a record and returns the resource as JSON. The
//! resources are built with `json!` rather than typed structs: FHIR's
//! resources are wide and we fill a small part of each; the independent
//! validator in `tests/fhir/` checks every shape we emit against the R4
//! definitions. Personal data (`Pii`) is exposed here and only here, into
//! the response body, never into a log line.

use serde_json::{json, Map, Value};
use telehealth_records::{
    Attachment, Consultation, ConsultationKind, ConsultationState, Disposition, Facility, FacilityKind, Note,
    NoteStatus, Patient, Role, Sex, User, Vitals,
};

/// Identifier system of the 12-digit citizen id (căn cước công dân). No
/// national FHIR naming system exists yet; this server's own URN names it
/// (docs/fhir.md), to be replaced by the Ministry's once published.
pub const CCCD_SYSTEM: &str = "urn:telehealth:vn:cccd";
/// Identifier system of the health insurance card number (mã thẻ BHYT).
pub const BHYT_SYSTEM: &str = "urn:telehealth:vn:bhyt";
/// Identifier system of a facility's code (as the admin entered it).
pub const FACILITY_CODE_SYSTEM: &str = "urn:telehealth:vn:facility-code";
/// Code system of our note sections that LOINC has no narrative code for.
pub const SECTION_SYSTEM: &str = "urn:telehealth:vn:note-section";
/// Code system of a note's disposition.
pub const DISPOSITION_SYSTEM: &str = "urn:telehealth:vn:disposition";
/// Extension carrying the coded disposition on the note's Disposition section.
pub const DISPOSITION_EXTENSION: &str = "urn:telehealth:vn:extension:disposition";
/// Code system of our client error codes (`OperationOutcome.issue.details`).
pub const ERROR_SYSTEM: &str = "urn:telehealth:vn:error";

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const ID_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

fn reference(kind: &str, id: impl std::fmt::Display) -> Value {
    json!({ "reference": format!("{kind}/{id}") })
}

fn named_reference(kind: &str, id: impl std::fmt::Display, display: &str) -> Value {
    json!({ "reference": format!("{kind}/{id}"), "display": display })
}

/// Text as XHTML narrative (escaped), for a `Narrative.div`.
pub fn xhtml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 48);
    out.push_str("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push_str("<br/>");
        }
        for ch in line.chars() {
            match ch {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                // Control characters are not allowed in XHTML.
                c if c.is_control() && c != '\t' => {}
                c => out.push(c),
            }
        }
    }
    out.push_str("</div>");
    out
}

fn identifier(system: &str, type_code: &str, type_display: &str, value: &str) -> Value {
    json!({
        "use": "official",
        "type": { "coding": [{ "system": ID_TYPE, "code": type_code, "display": type_display }] },
        "system": system,
        "value": value,
    })
}

pub fn patient(p: &Patient) -> Value {
    let mut identifiers = Vec::new();
    if let Some(cccd) = &p.cccd {
        identifiers.push(identifier(
            CCCD_SYSTEM,
            "NI",
            "National unique individual identifier",
            cccd.expose(),
        ));
    }
    if let Some(bhyt) = &p.bhyt {
        identifiers.push(identifier(BHYT_SYSTEM, "SN", "Subscriber Number", bhyt.expose()));
    }
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": { "versionId": p.version.to_string(), "lastUpdated": p.updated_at.to_string() },
        "active": true,
        "name": [{ "use": "official", "text": p.full_name.expose() }],
        "gender": match p.sex {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Other => "other",
        },
        "birthDate": p.date_of_birth.expose(),
        "managingOrganization": reference("Organization", p.facility_id),
    });
    let o = obj(&mut r);
    if !identifiers.is_empty() {
        o.insert("identifier".into(), Value::Array(identifiers));
    }
    if let Some(phone) = &p.phone {
        o.insert(
            "telecom".into(),
            json!([{ "system": "phone", "value": phone.expose(), "use": "mobile" }]),
        );
    }
    if let Some(address) = &p.address {
        o.insert(
            "address".into(),
            json!([{ "use": "home", "text": address.expose(), "country": "VN" }]),
        );
    }
    r
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    // Every resource above is built from a `json!` object literal.
    v.as_object_mut().expect("a resource is a JSON object")
}

fn kind_text(k: FacilityKind) -> &'static str {
    match k {
        FacilityKind::CommuneStation => "Trạm y tế xã (commune health station)",
        FacilityKind::DistrictHospital => "Bệnh viện huyện (district hospital)",
        FacilityKind::ProvincialHospital => "Bệnh viện tỉnh (provincial hospital)",
    }
}

pub fn organization(f: &Facility) -> Value {
    json!({
        "resourceType": "Organization",
        "id": f.id.to_string(),
        "meta": { "lastUpdated": f.updated_at.to_string() },
        "identifier": [{ "system": FACILITY_CODE_SYSTEM, "value": f.code }],
        "active": true,
        "type": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                "code": "prov",
                "display": "Healthcare Provider",
            }],
            "text": kind_text(f.kind),
        }],
        "name": f.name,
        "address": [{ "state": f.province, "country": "VN" }],
    })
}

/// A facility as the place where a consultation happens (same id as its
/// Organization).
pub fn location(f: &Facility) -> Value {
    json!({
        "resourceType": "Location",
        "id": f.id.to_string(),
        "meta": { "lastUpdated": f.updated_at.to_string() },
        "identifier": [{ "system": FACILITY_CODE_SYSTEM, "value": f.code }],
        "status": "active",
        "name": f.name,
        "mode": "instance",
        "type": [{ "text": kind_text(f.kind) }],
        "address": { "state": f.province, "country": "VN" },
        "managingOrganization": named_reference("Organization", f.id, &f.name),
    })
}

pub fn practitioner(u: &User) -> Value {
    let role = match u.role {
        Role::Doctor => "Bác sĩ (doctor)",
        Role::HealthWorker => "Nhân viên y tế xã (commune health worker)",
        Role::Admin => "Quản trị (admin)",
    };
    json!({
        "resourceType": "Practitioner",
        "id": u.id.to_string(),
        "meta": { "lastUpdated": u.updated_at.to_string() },
        "active": u.is_active(),
        "name": [{ "text": u.display_name }],
        "qualification": [{ "code": { "text": role } }],
    })
}

/// Encounter.status for a consultation state.
pub fn encounter_status(s: ConsultationState) -> &'static str {
    match s {
        ConsultationState::Requested | ConsultationState::Scheduled => "planned",
        ConsultationState::InProgress => "in-progress",
        ConsultationState::Completed => "finished",
        ConsultationState::Cancelled | ConsultationState::NoShow => "cancelled",
        // Begun, everyone dropped; it may resume or be ended.
        ConsultationState::Interrupted => "onleave",
    }
}

/// Appointment.status for a booked consultation's state.
pub fn appointment_status(s: ConsultationState) -> &'static str {
    match s {
        ConsultationState::Requested => "pending",
        ConsultationState::Scheduled => "booked",
        ConsultationState::InProgress | ConsultationState::Interrupted => "arrived",
        ConsultationState::Completed => "fulfilled",
        ConsultationState::Cancelled => "cancelled",
        ConsultationState::NoShow => "noshow",
    }
}

pub fn encounter(c: &Consultation) -> Value {
    let mut participants = vec![json!({
        "type": [{ "coding": [{ "system": PARTICIPATION, "code": "REF", "display": "referrer" }] }],
        "individual": reference("Practitioner", c.requested_by),
    })];
    if let Some(d) = c.doctor_id {
        participants.push(json!({
            "type": [{ "coding": [{ "system": PARTICIPATION, "code": "PPRF", "display": "primary performer" }] }],
            "individual": reference("Practitioner", d),
        }));
    }
    let mut r = json!({
        "resourceType": "Encounter",
        "id": c.id.to_string(),
        "meta": { "lastUpdated": c.updated_at.to_string() },
        "status": encounter_status(c.state),
        "class": { "system": ACT_CODE, "code": "VR", "display": "virtual" },
        "priority": match c.kind {
            ConsultationKind::Urgent => json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority", "code": "UR", "display": "urgent" }] }),
            ConsultationKind::Scheduled => json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority", "code": "R", "display": "routine" }] }),
        },
        "subject": reference("Patient", c.patient_id),
        "participant": participants,
        "reasonCode": [{ "text": c.reason.expose() }],
        "serviceProvider": reference("Organization", c.hospital_id),
        "location": [
            { "location": reference("Location", c.hospital_id), "status": "active" },
            { "location": reference("Location", c.station_id), "status": "active" },
        ],
    });
    let o = obj(&mut r);
    if let Some(start) = c.started_at {
        let mut period = json!({ "start": start.to_string() });
        if let Some(end) = c.ended_at {
            obj(&mut period).insert("end".into(), json!(end.to_string()));
        }
        o.insert("period".into(), period);
    }
    if c.kind == ConsultationKind::Scheduled && c.scheduled_start.is_some() {
        o.insert("appointment".into(), json!([reference("Appointment", c.id)]));
    }
    r
}

/// A booked consultation as an Appointment (same id as its Encounter);
/// `None` for an urgent request, which has no booking.
pub fn appointment(c: &Consultation) -> Option<Value> {
    let (Some(start), ConsultationKind::Scheduled) = (c.scheduled_start, c.kind) else {
        return None;
    };
    let end = c.scheduled_end.unwrap_or(start);
    let mut participants = vec![
        json!({ "actor": reference("Patient", c.patient_id), "required": "required", "status": "accepted" }),
        json!({ "actor": reference("Location", c.hospital_id), "required": "information-only", "status": "accepted" }),
        json!({ "actor": reference("Location", c.station_id), "required": "information-only", "status": "accepted" }),
    ];
    if let Some(d) = c.doctor_id {
        participants.push(
            json!({ "actor": reference("Practitioner", d), "required": "required", "status": "accepted" }),
        );
    }
    Some(json!({
        "resourceType": "Appointment",
        "id": c.id.to_string(),
        "meta": { "lastUpdated": c.updated_at.to_string() },
        "status": appointment_status(c.state),
        "serviceCategory": [{ "text": "Telehealth consultation" }],
        "reasonCode": [{ "text": c.reason.expose() }],
        "start": start.to_string(),
        "end": end.to_string(),
        "created": c.created_at.0.format("%Y-%m-%d").to_string(),
        "participant": participants,
    }))
}

/// The vital signs one measurement set holds: (id suffix, profile, LOINC
/// code, display).
pub const VITALS: [(&str, &str, &str, &str); 6] = [
    ("temp", "bodytemp", "8310-5", "Body temperature"),
    ("hr", "heartrate", "8867-4", "Heart rate"),
    (
        "bp",
        "bp",
        "85354-9",
        "Blood pressure panel with all children optional",
    ),
    ("rr", "resprate", "9279-1", "Respiratory rate"),
    (
        "spo2",
        "oxygensat",
        "2708-6",
        "Oxygen saturation in Arterial blood",
    ),
    ("wt", "bodyweight", "29463-7", "Body weight"),
];

fn quantity(value: f64, unit: &str, code: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": UCUM, "code": code })
}

fn int_quantity(value: i64, unit: &str, code: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": UCUM, "code": code })
}

/// The observations of one measurement set, in [`VITALS`] order.
pub fn observations(v: &Vitals) -> Vec<Value> {
    VITALS
        .iter()
        .filter_map(|(suffix, _, _, _)| observation(v, suffix))
        .collect()
}

/// One vital sign of a measurement set (`suffix` from [`VITALS`]), if it
/// was measured.
pub fn observation(v: &Vitals, suffix: &str) -> Option<Value> {
    let (_, profile, code, display) = VITALS.iter().find(|(s, ..)| *s == suffix)?;
    let m = &v.measurements;
    let mut codings = vec![json!({ "system": LOINC, "code": code, "display": display })];
    let value = match suffix {
        "temp" => Some(quantity(m.temperature_c?, "°C", "Cel")),
        "hr" => Some(int_quantity(m.pulse_bpm?, "beats/minute", "/min")),
        "rr" => Some(int_quantity(m.respiratory_rate?, "breaths/minute", "/min")),
        "spo2" => {
            codings.push(json!({ "system": LOINC, "code": "59408-5", "display": "Oxygen saturation in Arterial blood by Pulse oximetry" }));
            Some(int_quantity(m.spo2_pct?, "%", "%"))
        }
        "wt" => Some(quantity(m.weight_kg?, "kg", "kg")),
        "bp" => {
            m.systolic_mmhg?;
            m.diastolic_mmhg?;
            None
        }
        _ => return None,
    };
    let mut r = json!({
        "resourceType": "Observation",
        "id": format!("{}-{suffix}", v.id),
        "meta": { "profile": [format!("http://hl7.org/fhir/StructureDefinition/{profile}")] },
        "status": "final",
        "category": [{
            "coding": [{ "system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs" }],
            "text": "Vital Signs",
        }],
        "code": { "coding": codings, "text": display },
        "subject": reference("Patient", v.patient_id),
        "effectiveDateTime": v.recorded_at.to_string(),
        "issued": v.recorded_at.to_string(),
        "performer": [reference("Practitioner", v.recorded_by)],
    });
    let o = obj(&mut r);
    if let Some(c) = v.consultation_id {
        o.insert("encounter".into(), reference("Encounter", c));
    }
    match value {
        Some(q) => {
            o.insert("valueQuantity".into(), q);
        }
        None => {
            // Both present: checked above.
            let (s, d) = (m.systolic_mmhg?, m.diastolic_mmhg?);
            o.insert(
                "component".into(),
                json!([
                    {
                        "code": { "coding": [{ "system": LOINC, "code": "8480-6", "display": "Systolic blood pressure" }] },
                        "valueQuantity": int_quantity(s, "mmHg", "mm[Hg]"),
                    },
                    {
                        "code": { "coding": [{ "system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure" }] },
                        "valueQuantity": int_quantity(d, "mmHg", "mm[Hg]"),
                    },
                ]),
            );
        }
    }
    Some(r)
}

fn disposition_text(d: Disposition) -> (&'static str, &'static str) {
    match d {
        Disposition::TreatAtStation => ("treat_at_station", "Điều trị tại trạm (treat at the station)"),
        Disposition::Refer => ("refer", "Chuyển tuyến (refer)"),
        Disposition::Transfer => ("transfer", "Chuyển viện cấp cứu (transfer)"),
        Disposition::FollowUp => ("follow_up", "Tái khám (follow up)"),
    }
}

/// A signed note as a Composition: SOAP sections, diagnoses as contained
/// ICD-10 Conditions, the disposition, the signer as attester, and the note
/// it amends through `relatesTo` (`replaces`). `None` for a draft.
pub fn composition(n: &Note, c: &Consultation) -> Option<Value> {
    if n.status != NoteStatus::Signed {
        return None;
    }
    let signed = n.signed_at.unwrap_or(n.updated_at).to_string();
    let mut sections = Vec::new();
    let narrative = |title: &str, system: &str, code: &str, display: &str, text: &str| {
        json!({
            "title": title,
            "code": { "coding": [{ "system": system, "code": code, "display": display }] },
            "text": { "status": "generated", "div": xhtml(text) },
        })
    };
    for (title, code, display, text) in [
        (
            "Subjective",
            "61150-9",
            "Subjective Narrative",
            &n.content.subjective,
        ),
        (
            "Objective",
            "61149-1",
            "Objective Narrative",
            &n.content.objective,
        ),
        ("Assessment", "51848-0", "Evaluation note", &n.content.assessment),
        ("Plan", "18776-5", "Plan of care note", &n.content.plan),
    ] {
        if !text.expose().trim().is_empty() {
            sections.push(narrative(title, LOINC, code, display, text.expose()));
        }
    }
    let mut contained = Vec::new();
    if !n.content.icd10_codes.is_empty() {
        let mut entries = Vec::new();
        for (i, code) in n.content.icd10_codes.iter().enumerate() {
            let id = format!("dx{}", i + 1);
            contained.push(json!({
                "resourceType": "Condition",
                "id": id,
                "category": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                    "code": "encounter-diagnosis",
                    "display": "Encounter Diagnosis",
                }] }],
                "code": { "coding": [{ "system": ICD10, "code": code }], "text": code },
                "subject": reference("Patient", n.patient_id),
                "encounter": reference("Encounter", n.consultation_id),
                "recordedDate": signed,
                "recorder": reference("Practitioner", n.author_id),
            }));
            entries.push(json!({ "reference": format!("#{id}") }));
        }
        let mut s = narrative(
            "Diagnoses (ICD-10)",
            LOINC,
            "29548-5",
            "Diagnosis Narrative",
            &n.content.icd10_codes.join(", "),
        );
        obj(&mut s).insert("entry".into(), Value::Array(entries));
        sections.push(s);
    }
    if let Some(d) = n.content.disposition {
        let (code, text) = disposition_text(d);
        let mut s = narrative("Disposition", SECTION_SYSTEM, "disposition", "Disposition", text);
        // The coded value rides on an extension: a section's entries are
        // references, and the disposition is not a resource of its own.
        obj(&mut s).insert(
            "extension".into(),
            json!([{
                "url": DISPOSITION_EXTENSION,
                "valueCoding": { "system": DISPOSITION_SYSTEM, "code": code },
            }]),
        );
        sections.push(s);
    }
    let mut r = json!({
        "resourceType": "Composition",
        "id": n.id.to_string(),
        "meta": { "versionId": n.version.to_string(), "lastUpdated": n.updated_at.to_string() },
        "identifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", n.id) },
        "status": if n.amends_note_id.is_some() { "amended" } else { "final" },
        "type": { "coding": [{ "system": LOINC, "code": "11488-4", "display": "Consult note" }] },
        "subject": reference("Patient", n.patient_id),
        "encounter": reference("Encounter", n.consultation_id),
        "date": signed,
        "author": [reference("Practitioner", n.author_id)],
        "title": "Phiếu tư vấn từ xa (telehealth consultation note)",
        "attester": [{ "mode": "legal", "time": signed, "party": reference("Practitioner", n.author_id) }],
        "custodian": reference("Organization", c.hospital_id),
    });
    let o = obj(&mut r);
    if !contained.is_empty() {
        o.insert("contained".into(), Value::Array(contained));
    }
    if let Some(prev) = n.amends_note_id {
        o.insert(
            "relatesTo".into(),
            json!([{ "code": "replaces", "targetReference": reference("Composition", prev) }]),
        );
    }
    if !sections.is_empty() {
        o.insert("section".into(), Value::Array(sections));
    }
    Some(r)
}

/// A photo's description and a link to its bytes (the REST API's photo
/// route, under the same access rules).
pub fn document_reference(a: &Attachment, base: &str) -> Value {
    // `base` ends in `/fhir`; the photo lives under the REST API.
    let origin = base.strip_suffix("/fhir").unwrap_or(base);
    json!({
        "resourceType": "DocumentReference",
        "id": a.id.to_string(),
        "status": "current",
        "type": { "coding": [{ "system": LOINC, "code": "72170-4", "display": "Photographic image" }] },
        "subject": reference("Patient", a.patient_id),
        "date": a.created_at.to_string(),
        "author": [reference("Practitioner", a.uploaded_by)],
        "content": [{
            "attachment": {
                "contentType": a.content_type,
                "url": format!("{origin}/api/photos/{}", a.id),
                "size": a.size_bytes,
                "creation": a.created_at.to_string(),
                "title": "Ảnh chụp tại trạm (photo from the station)",
            },
        }],
        "context": { "encounter": [reference("Encounter", a.consultation_id)] },
    })
}

#[cfg(test)]
mod tests {
    use super::xhtml;

    #[test]
    fn narrative_is_escaped() {
        assert_eq!(
            xhtml("a<b & \"c\"\nd\u{0}"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">a&lt;b &amp; &quot;c&quot;<br/>d</div>"
        );
    }
}
