//! `GET /fhir/metadata`: what this server serves, as a CapabilityStatement
//! (<https://hl7.org/fhir/R4/capabilitystatement.html>).

use serde_json::{json, Value};

use super::resources::{BHYT_SYSTEM, CCCD_SYSTEM};
use super::{DEFAULT_COUNT, MAX_COUNT};

fn param(name: &str, kind: &str, doc: &str) -> Value {
    json!({ "name": name, "type": kind, "documentation": doc })
}

fn resource(kind: &str, search: Vec<Value>, searchable: bool) -> Value {
    let mut interaction = vec![json!({ "code": "read" })];
    if searchable {
        interaction.push(json!({ "code": "search-type" }));
    }
    let mut r = json!({
        "type": kind,
        "profile": format!("http://hl7.org/fhir/StructureDefinition/{kind}"),
        "interaction": interaction,
        "versioning": "no-version",
        "readHistory": false,
        "updateCreate": false,
    });
    if !search.is_empty() {
        r["searchParam"] = Value::Array(search);
    }
    r
}

/// The statement, with `base` (this server's `/fhir` URL) as its address.
pub fn statement(base: &str) -> Value {
    let patient = || {
        param(
            "patient",
            "reference",
            "The patient (Patient/{id} or the id); required.",
        )
    };
    let mut pat = resource(
        "Patient",
        vec![param(
            "identifier",
            "token",
            &format!("system|value, system {CCCD_SYSTEM} (CCCD) or {BHYT_SYSTEM} (BHYT); required."),
        )],
        true,
    );
    pat["operation"] = json!([{
        "name": "everything",
        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        "documentation": "Everything about one patient that the caller may see, paged like a search.",
    }]);
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-08",
        "publisher": "telehealth",
        "kind": "instance",
        "software": { "name": "telehealth", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": "Telehealth consultations (commune stations and district hospitals): read-only FHIR R4 export",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": format!(
                "Read-only. Searches answer searchset Bundles paged with _count (default {DEFAULT_COUNT}, at most {MAX_COUNT}) and _offset; unknown search parameters are refused (400)."
            ),
            "security": {
                "cors": false,
                "description": "Log in at POST /api/auth/login and send the access token as `Authorization: Bearer …` (or the session cookie). The same roles and facility rules as the REST API; every read is audited.",
            },
            "resource": [
                pat,
                resource("Organization", vec![], true),
                resource("Location", vec![], true),
                resource("Practitioner", vec![], false),
                resource("Encounter", vec![patient()], true),
                resource("Appointment", vec![patient()], true),
                resource("Observation", vec![
                    patient(),
                    param("category", "token", "vital-signs (the only category held)."),
                    param("code", "token", "LOINC code, or http://loinc.org|code; comma for any of several."),
                ], true),
                resource("Composition", vec![patient()], true),
                resource("DocumentReference", vec![patient()], true),
            ],
        }],
    })
}
