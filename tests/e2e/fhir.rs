//! The FHIR R4 export (`/fhir`) through the real binary, on data made
//! through the REST API as the pages make it: a patient with CCCD and BHYT,
//! vital signs, an urgent consultation requested, accepted, started and
//! ended, a signed note with ICD-10 codes and its signed amendment, a photo,
//! and a booked consultation. Then every resource type, search, page,
//! `$everything`, the CapabilityStatement and the errors are fetched and
//! checked: content type, mapping, access rules (another station's health
//! worker gets a 403 OperationOutcome, audited), paging and bounds.
//!
//! Run on SQLite and on PostgreSQL. With `TELEHEALTH_FHIR_OUT=<dir>`, every
//! FHIR answer is also written there as `<backend>-NN-name.json`, for the independent validator in `tests/fhir/`
//! (`node tests/fhir/validate.mjs <dir>`; `tests/run.sh` runs both).

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};

const CCCD: &str = "011190012345";
const BHYT: &str = "DN4010123456789";
const CCCD_SYSTEM: &str = "urn:telehealth:vn:cccd";
const BHYT_SYSTEM: &str = "urn:telehealth:vn:bhyt";

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00,
    0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05,
    0x00, 0x02, 0x00, 0xA0, 0xE2, 0xA1, 0xA4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42,
    0x60, 0x82,
];

/// Fetches FHIR answers, checks their status and media type, and keeps
/// them for the validator.
struct Fhir<'a> {
    c: &'a reqwest::Client,
    server: &'a Server,
    out: Option<PathBuf>,
    /// Names the files of this run (the backend).
    tag: &'static str,
    n: usize,
}

impl Fhir<'_> {
    async fn get(&mut self, token: Option<&str>, path: &str, status: u16, name: &str) -> Value {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            self.server.url(path)
        };
        let mut req = self.c.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let got = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "GET {path}: {body}");
        assert!(
            ctype.starts_with("application/fhir+json"),
            "GET {path}: content type {ctype}"
        );
        let expected = if status < 400 {
            body["resourceType"] != "OperationOutcome"
        } else {
            body["resourceType"] == "OperationOutcome"
        };
        assert!(expected, "GET {path}: {body}");
        if let Some(dir) = &self.out {
            self.n += 1;
            std::fs::write(
                dir.join(format!("{}-{:02}-{name}.json", self.tag, self.n)),
                serde_json::to_vec_pretty(&body).unwrap(),
            )
            .unwrap();
        }
        body
    }

    /// Every entry of a search, following `next` links; checks each page
    /// holds at most `count` entries and the pages add up to `total`.
    async fn all_pages(&mut self, token: &str, path: &str, count: usize, name: &str) -> Vec<Value> {
        let mut url = path.to_owned();
        let mut out = Vec::new();
        let mut total = None;
        for page in 0..100 {
            let b = self.get(Some(token), &url, 200, &format!("{name}-p{page}")).await;
            assert_eq!(b["type"], "searchset");
            total = b["total"].as_u64();
            let entries = b["entry"].as_array().cloned().unwrap_or_default();
            assert!(
                entries.len() <= count,
                "{url}: {} entries on a page of {count}",
                entries.len()
            );
            out.extend(entries.into_iter().map(|e| e["resource"].clone()));
            match b["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
            {
                Some(next) => url = next["url"].as_str().unwrap().to_owned(),
                None => break,
            }
        }
        assert_eq!(Some(out.len() as u64), total, "{path}: pages add up to the total");
        out
    }
}

fn issue(outcome: &Value) -> (String, String) {
    let i = &outcome["issue"][0];
    (
        i["code"].as_str().unwrap_or("").to_owned(),
        i["diagnostics"].as_str().unwrap_or("").to_owned(),
    )
}

/// Saves `content` into a draft note (as returned when it was made) and
/// signs it.
async fn write_and_sign(c: &reqwest::Client, s: &Server, doctor: &str, note: &Value, mut content: Value) {
    let id = note["id"].as_str().unwrap();
    content["version"] = note["version"].clone();
    let saved = put(c, s, doctor, &format!("/api/notes/{id}"), content).await;
    post(
        c,
        s,
        doctor,
        &format!("/api/notes/{id}/sign"),
        json!({"version": saved["version"]}),
    )
    .await;
}

fn of_type<'a>(list: &'a [Value], kind: &str) -> Vec<&'a Value> {
    list.iter().filter(|r| r["resourceType"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_export_end_to_end_sqlite() {
    fhir_export_end_to_end("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_export_end_to_end_postgres() {
    fhir_export_end_to_end("postgres").await
}

async fn fhir_export_end_to_end(backend: &'static str) {
    let dir = temp_dir("fhir");
    let db = database_url(backend, &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let out = std::env::var_os("TELEHEALTH_FHIR_OUT").map(PathBuf::from);
    if let Some(o) = &out {
        std::fs::create_dir_all(o).unwrap();
    }
    let id_of = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let doctor_id = id_of(&get(&c, &server, &p.doctor, "/api/auth/me").await);
    let worker_id = id_of(&get(&c, &server, &p.worker, "/api/auth/me").await);
    let admin_id = id_of(&get(&c, &server, &p.admin, "/api/auth/me").await);
    // A second station under the same hospital, with its own health worker.
    let st2 = post(&c, &server, &p.admin, "/api/facilities", json!({"code": "S2", "name": "Trạm y tế xã 2", "kind": "commune_station", "referral_hospital_id": p.hospital_id, "province": "Điện Biên"})).await;
    let w2 = post(&c, &server, &p.admin, "/api/users", json!({"username": "yta2", "display_name": "Y tá 2", "password": PASSWORD, "role": "health_worker", "facility_id": st2["id"]})).await;
    let other_worker = login(&c, &server, "yta2", PASSWORD).await;

    // The patient, their consent and vitals taken at the station.
    let patient = post(
        &c,
        &server,
        &p.worker,
        "/api/patients",
        json!({"full_name": "Lò Thị Xuân", "date_of_birth": "1990-02-03", "sex": "female",
               "phone": "0912345678", "address": "Bản Mường, xã Thanh Nưa", "cccd": CCCD, "bhyt": BHYT}),
    )
    .await;
    let pid = id_of(&patient);
    consent(&c, &server, &p.worker, &pid).await;
    post(
        &c,
        &server,
        &p.worker,
        &format!("/api/patients/{pid}/vitals"),
        json!({"temperature_c": 37.8, "pulse_bpm": 96, "systolic_mmhg": 128, "diastolic_mmhg": 82,
               "respiratory_rate": 20, "spo2_pct": 95, "weight_kg": 52.5}),
    )
    .await;

    // An urgent consultation, with vitals of its own: requested, accepted, started.
    let cons = post(
        &c,
        &server,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": pid, "kind": "urgent", "reason": "Sốt, ho ba ngày",
               "vitals": {"temperature_c": 38.4, "pulse_bpm": 104, "systolic_mmhg": 120, "diastolic_mmhg": 78,
                          "respiratory_rate": 22, "spo2_pct": 94, "weight_kg": 52.0}}),
    )
    .await;
    let cid = id_of(&cons);
    post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{cid}/accept"),
        json!({}),
    )
    .await;
    post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{cid}/state"),
        json!({"state": "in_progress"}),
    )
    .await;

    // A photo from the station's camera.
    let r = c
        .post(server.url(&format!("/api/consultations/{cid}/photos")))
        .bearer_auth(&p.worker)
        .header("content-type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let photo_id = id_of(&r.json::<Value>().await.unwrap());

    // The note: written, signed; the consultation ended; then amended and signed again.
    let note = post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{cid}/notes"),
        json!({}),
    )
    .await;
    let nid = id_of(&note);
    write_and_sign(
        &c,
        &server,
        &p.doctor,
        &note,
        json!({"subjective": "Sốt 3 ngày, ho khan.", "objective": "T 38.4 °C, họng đỏ <không mủ>.",
               "assessment": "Viêm họng cấp & sốt.", "plan": "Paracetamol 500 mg khi sốt.\nTái khám sau 3 ngày.",
               "icd10_codes": ["J02.9", "R50.9"], "disposition": "treat_at_station"}),
    )
    .await;
    post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{cid}/state"),
        json!({"state": "completed"}),
    )
    .await;
    let amendment = post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/notes/{nid}/amend"),
        json!({}),
    )
    .await;
    let aid = id_of(&amendment);
    write_and_sign(
        &c,
        &server,
        &p.doctor,
        &amendment,
        json!({"subjective": "Sốt 3 ngày, ho khan.", "objective": "T 38.4 °C.",
               "assessment": "Viêm họng cấp do liên cầu.", "plan": "Amoxicillin 500 mg x 10 ngày.",
               "icd10_codes": ["J02.0"], "disposition": "follow_up"}),
    )
    .await;

    // A booked consultation: the doctor's hours, tomorrow's first slot.
    put(
        &c,
        &server,
        &p.doctor,
        &format!("/api/doctors/{doctor_id}/hours"),
        json!({"hours": (1..=7).map(|d| json!({"weekday": d, "start_minute": 0, "end_minute": 1440})).collect::<Vec<_>>()}),
    )
    .await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .date_naive();
    let slots = get(
        &c,
        &server,
        &p.worker,
        &format!("/api/facilities/{}/slots?date={tomorrow}", p.hospital_id),
    )
    .await;
    let start = slots[0]["start"].as_str().unwrap().to_owned();
    let booked = post(
        &c,
        &server,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": pid, "kind": "scheduled", "reason": "Tái khám", "scheduled_start": start}),
    )
    .await;
    let bid = id_of(&booked);

    let mut f = Fhir {
        c: &c,
        server: &server,
        out,
        tag: backend,
        n: 0,
    };

    // The CapabilityStatement needs no login.
    let cap = f.get(None, "/fhir/metadata", 200, "metadata").await;
    assert_eq!(cap["resourceType"], "CapabilityStatement");
    assert_eq!(cap["fhirVersion"], "4.0.1");
    let served: Vec<&str> = cap["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    for t in [
        "Patient",
        "Encounter",
        "Observation",
        "Composition",
        "Appointment",
        "DocumentReference",
    ] {
        assert!(served.contains(&t), "{t} in the CapabilityStatement");
    }

    // Without a login: 401, as an OperationOutcome.
    let o = f
        .get(None, &format!("/fhir/Patient/{pid}"), 401, "no-login")
        .await;
    assert_eq!(issue(&o).0, "login");

    // Patient: demographics, CCCD and BHYT as identifiers.
    let pat = f
        .get(Some(&p.worker), &format!("/fhir/Patient/{pid}"), 200, "patient")
        .await;
    assert_eq!(pat["gender"], "female");
    assert_eq!(pat["birthDate"], "1990-02-03");
    assert_eq!(pat["name"][0]["text"], "Lò Thị Xuân");
    assert_eq!(pat["telecom"][0]["value"], "0912345678");
    assert_eq!(
        pat["managingOrganization"]["reference"],
        format!("Organization/{}", p.station_id)
    );
    let ids: Vec<(String, String)> = pat["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["system"].as_str().unwrap().to_owned(),
                i["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        ids.contains(&(CCCD_SYSTEM.to_owned(), CCCD.to_owned())),
        "{ids:?}"
    );
    assert!(
        ids.contains(&(BHYT_SYSTEM.to_owned(), BHYT.to_owned())),
        "{ids:?}"
    );
    for (system, value, name) in [(CCCD_SYSTEM, CCCD, "by-cccd"), (BHYT_SYSTEM, BHYT, "by-bhyt")] {
        let b = f
            .get(
                Some(&p.worker),
                &format!("/fhir/Patient?identifier={system}%7C{value}"),
                200,
                name,
            )
            .await;
        assert_eq!(b["total"], 1, "{name}: {b}");
        assert_eq!(b["entry"][0]["resource"]["id"], pid.as_str());
    }
    // Another station's worker finds nothing by the same number.
    let b = f
        .get(
            Some(&other_worker),
            &format!("/fhir/Patient?identifier={CCCD_SYSTEM}%7C{CCCD}"),
            200,
            "by-cccd-elsewhere",
        )
        .await;
    assert_eq!(b["total"], 0);
    let o = f
        .get(
            Some(&p.worker),
            "/fhir/Patient?identifier=urn:other%7C1",
            400,
            "unknown-system",
        )
        .await;
    assert!(issue(&o).1.contains("urn:other"), "{o}");

    // Encounters: the urgent one finished, the booked one planned.
    let encounters = f
        .all_pages(
            &p.doctor,
            &format!("/fhir/Encounter?patient={pid}"),
            20,
            "encounters",
        )
        .await;
    assert_eq!(encounters.len(), 2);
    let enc = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Encounter/{cid}"),
            200,
            "encounter",
        )
        .await;
    assert_eq!(enc["class"]["code"], "VR");
    assert_eq!(
        enc["class"]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    );
    assert_eq!(enc["status"], "finished");
    assert!(
        enc["period"]["start"].is_string() && enc["period"]["end"].is_string(),
        "{enc}"
    );
    assert_eq!(
        enc["serviceProvider"]["reference"],
        format!("Organization/{}", p.hospital_id)
    );
    let locations: Vec<&str> = enc["location"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["location"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        locations,
        [
            format!("Location/{}", p.hospital_id),
            format!("Location/{}", p.station_id)
        ]
    );
    let parts: Vec<&str> = enc["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["individual"]["reference"].as_str().unwrap())
        .collect();
    assert!(
        parts.contains(&format!("Practitioner/{doctor_id}").as_str()),
        "{parts:?}"
    );
    let planned = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Encounter/{bid}"),
            200,
            "encounter-booked",
        )
        .await;
    assert_eq!(planned["status"], "planned");

    // Appointment: the booking; an urgent request has none.
    let appt = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Appointment/{bid}"),
            200,
            "appointment",
        )
        .await;
    assert_eq!(appt["status"], "booked");
    let instant = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(instant(&appt["start"]), instant(&booked["scheduled_start"]));
    f.get(
        Some(&p.worker),
        &format!("/fhir/Appointment/{cid}"),
        404,
        "appointment-urgent",
    )
    .await;
    let appts = f
        .all_pages(
            &p.worker,
            &format!("/fhir/Appointment?patient={pid}"),
            20,
            "appointments",
        )
        .await;
    assert_eq!(appts.len(), 1);

    // Observations: 2 sets × 6 vital signs, paged 5 at a time.
    let obs = f
        .all_pages(
            &p.worker,
            &format!("/fhir/Observation?patient=Patient/{pid}&category=vital-signs&_count=5"),
            5,
            "observations",
        )
        .await;
    assert_eq!(obs.len(), 12);
    let mut obs_ids: Vec<&str> = obs.iter().map(|o| o["id"].as_str().unwrap()).collect();
    obs_ids.sort();
    obs_ids.dedup();
    assert_eq!(obs_ids.len(), 12, "no entry twice across pages");
    let code_of = |o: &Value| o["code"]["coding"][0]["code"].as_str().unwrap().to_owned();
    let mut codes: Vec<String> = obs.iter().map(code_of).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(
        codes,
        ["2708-6", "29463-7", "8310-5", "85354-9", "8867-4", "9279-1"]
    );
    for o in &obs {
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        match code_of(o).as_str() {
            "85354-9" => {
                assert!(o["valueQuantity"].is_null());
                assert_eq!(o["component"][0]["code"]["coding"][0]["code"], "8480-6");
                assert_eq!(o["component"][1]["code"]["coding"][0]["code"], "8462-4");
                assert_eq!(o["component"][0]["valueQuantity"]["code"], "mm[Hg]");
            }
            "8310-5" => assert_eq!(o["valueQuantity"]["code"], "Cel"),
            "2708-6" => {
                assert_eq!(o["code"]["coding"][1]["code"], "59408-5");
                assert_eq!(o["valueQuantity"]["code"], "%");
            }
            "29463-7" => assert_eq!(o["valueQuantity"]["code"], "kg"),
            _ => assert_eq!(o["valueQuantity"]["code"], "/min"),
        }
    }
    assert!(
        obs.iter()
            .any(|o| o["encounter"]["reference"] == format!("Encounter/{cid}")),
        "the consultation's vitals name it"
    );
    let temps = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Observation?patient={pid}&code=http://loinc.org%7C8310-5"),
            200,
            "observations-temp",
        )
        .await;
    assert_eq!(temps["total"], 2);
    let one = obs[0]["id"].as_str().unwrap();
    f.get(
        Some(&p.doctor),
        &format!("/fhir/Observation/{one}"),
        200,
        "observation",
    )
    .await;
    let labs = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Observation?patient={pid}&category=laboratory"),
            200,
            "observations-lab",
        )
        .await;
    assert_eq!(labs["total"], 0);

    // Compositions: a search gives the latest version (the amendment, which
    // replaces the note); the note it replaced is still read by id.
    let comps = f
        .all_pages(
            &p.worker,
            &format!("/fhir/Composition?patient={pid}"),
            20,
            "compositions",
        )
        .await;
    assert_eq!(comps.len(), 1);
    assert_eq!(comps[0]["id"], aid.as_str());
    let first = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Composition/{nid}"),
            200,
            "composition",
        )
        .await;
    assert_eq!(first["status"], "final");
    assert_eq!(
        first["attester"][0]["party"]["reference"],
        format!("Practitioner/{doctor_id}")
    );
    assert_eq!(first["encounter"]["reference"], format!("Encounter/{cid}"));
    let titles: Vec<&str> = first["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Subjective",
            "Objective",
            "Assessment",
            "Plan",
            "Diagnoses (ICD-10)",
            "Disposition"
        ]
    );
    let dx: Vec<&str> = first["contained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(dx, ["J02.9", "R50.9"]);
    assert!(first["section"][1]["text"]["div"]
        .as_str()
        .unwrap()
        .contains("&lt;không mủ&gt;"));
    let second = f
        .get(
            Some(&p.doctor),
            &format!("/fhir/Composition/{aid}"),
            200,
            "composition-amendment",
        )
        .await;
    assert_eq!(second["status"], "amended");
    assert_eq!(second["relatesTo"][0]["code"], "replaces");
    assert_eq!(
        second["relatesTo"][0]["targetReference"]["reference"],
        format!("Composition/{nid}")
    );

    // The photo: described, and its bytes behind the REST API's rules.
    let docs = f
        .all_pages(
            &p.worker,
            &format!("/fhir/DocumentReference?patient={pid}"),
            20,
            "documents",
        )
        .await;
    assert_eq!(docs.len(), 1);
    let doc = f
        .get(
            Some(&p.doctor),
            &format!("/fhir/DocumentReference/{photo_id}"),
            200,
            "document",
        )
        .await;
    let att = &doc["content"][0]["attachment"];
    assert_eq!(att["contentType"], "image/png");
    assert_eq!(att["size"], PNG.len());
    let url = att["url"].as_str().unwrap();
    assert_eq!(url, server.url(&format!("/api/photos/{photo_id}")));
    let r = c.get(url).bearer_auth(&p.doctor).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), PNG);
    assert_eq!(c.get(url).send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(url)
            .bearer_auth(&other_worker)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // Facilities and people.
    let org = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Organization/{}", p.hospital_id),
            200,
            "organization",
        )
        .await;
    assert_eq!(org["name"], "TTYT huyện");
    let loc = f
        .get(
            Some(&p.doctor),
            &format!("/fhir/Location/{}", p.station_id),
            200,
            "location",
        )
        .await;
    assert_eq!(
        loc["managingOrganization"]["reference"],
        format!("Organization/{}", p.station_id)
    );
    let orgs = f
        .all_pages(&p.worker, "/fhir/Organization", 20, "organizations")
        .await;
    assert_eq!(orgs.len(), 3);
    f.all_pages(&p.worker, "/fhir/Location?_count=2", 2, "locations")
        .await;
    let doc_p = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Practitioner/{doctor_id}"),
            200,
            "practitioner-doctor",
        )
        .await;
    assert_eq!(doc_p["name"][0]["text"], "Bác sĩ");
    f.get(
        Some(&p.doctor),
        &format!("/fhir/Practitioner/{worker_id}"),
        200,
        "practitioner-worker",
    )
    .await;
    f.get(
        Some(&p.doctor),
        &format!("/fhir/Practitioner/{admin_id}"),
        404,
        "practitioner-admin",
    )
    .await;

    // $everything: all of it, paged like a search.
    let all = f
        .all_pages(
            &p.worker,
            &format!("/fhir/Patient/{pid}/$everything?_count=100"),
            100,
            "everything",
        )
        .await;
    for (kind, n) in [
        ("Patient", 1),
        ("Encounter", 2),
        ("Appointment", 1),
        ("Observation", 12),
        ("Composition", 1),
        ("DocumentReference", 1),
        ("Organization", 2),
        ("Location", 2),
        ("Practitioner", 2),
    ] {
        assert_eq!(of_type(&all, kind).len(), n, "{kind} in $everything");
    }
    let paged = f
        .all_pages(
            &p.doctor,
            &format!("/fhir/Patient/{pid}/$everything?_count=7"),
            7,
            "everything-paged",
        )
        .await;
    assert_eq!(paged.len(), all.len());

    // Mistakes: 4xx OperationOutcomes that name the problem.
    let o = f
        .get(Some(&p.worker), "/fhir/MedicationRequest", 404, "unknown-type")
        .await;
    assert_eq!(issue(&o).0, "not-found");
    assert!(issue(&o).1.contains("MedicationRequest"), "{o}");
    f.get(Some(&p.worker), "/fhir/Foo/123", 404, "unknown-type-read")
        .await;
    f.get(Some(&p.worker), "/fhir", 404, "base").await;
    f.get(Some(&p.worker), "/fhir/Patient/1/2/3", 404, "too-deep")
        .await;
    let b = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Encounter?patient={pid}&_count=0"),
            200,
            "count-only",
        )
        .await;
    assert_eq!(
        (b["total"].as_u64(), b["entry"].is_null()),
        (Some(2), true),
        "{b}"
    );
    f.get(Some(&p.worker), "/fhir/Patient/not-an-id", 404, "bad-id")
        .await;
    f.get(
        Some(&p.worker),
        "/fhir/Patient/7d3f8d7e-55a8-4e2a-9a43-6f1f2f0f3b11",
        404,
        "unknown-id",
    )
    .await;
    f.get(
        Some(&p.worker),
        &format!("/fhir/Composition/{}", uuid_like()),
        404,
        "unknown-note",
    )
    .await;
    let o = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Encounter?patinet={pid}"),
            400,
            "misspelt-param",
        )
        .await;
    assert!(issue(&o).1.contains("patinet"), "{o}");
    let o = f.get(Some(&p.worker), "/fhir/Encounter", 400, "no-patient").await;
    assert!(issue(&o).1.contains("patient"), "{o}");
    let o = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Encounter?patient={pid}&_count=abc"),
            400,
            "bad-count",
        )
        .await;
    assert!(issue(&o).1.contains("_count"), "{o}");
    let b = f
        .get(
            Some(&p.worker),
            &format!("/fhir/Observation?patient={pid}&_count=100000"),
            200,
            "big-count",
        )
        .await;
    assert!(
        b["link"][0]["url"].as_str().unwrap().contains("_count=100&"),
        "{b}"
    );
    f.get(
        Some(&p.worker),
        &format!("/fhir/Patient/{pid}/$validate"),
        404,
        "unknown-operation",
    )
    .await;
    f.get(Some(&p.worker), "/fhir/Practitioner", 400, "practitioner-search")
        .await;
    f.get(Some(&p.worker), "/fhir/Organization?_format=xml", 406, "xml")
        .await;
    let r = c
        .post(server.url("/fhir/Patient"))
        .bearer_auth(&p.worker)
        .json(&json!({"resourceType": "Patient"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));

    // Another station's health worker: 403, and the refusal is audited.
    let o = f
        .get(
            Some(&other_worker),
            &format!("/fhir/Patient/{pid}"),
            403,
            "other-station",
        )
        .await;
    assert_eq!(issue(&o).0, "forbidden");
    f.get(
        Some(&other_worker),
        &format!("/fhir/Encounter?patient={pid}"),
        403,
        "other-station-search",
    )
    .await;
    f.get(
        Some(&other_worker),
        &format!("/fhir/Patient/{pid}/$everything"),
        403,
        "other-station-everything",
    )
    .await;
    f.get(
        Some(&other_worker),
        &format!("/fhir/Encounter/{cid}"),
        403,
        "other-station-encounter",
    )
    .await;
    f.get(Some(&p.admin), &format!("/fhir/Patient/{pid}"), 403, "admin")
        .await;
    let w2_id = id_of(&w2);
    let denied = get(
        &c,
        &server,
        &p.admin,
        &format!("/api/audit?patient_id={pid}&actor_id={w2_id}&action=patient.access"),
    )
    .await;
    let denied = denied.as_array().unwrap();
    assert!(denied.len() >= 3, "each refusal audited: {denied:?}");
    assert!(denied.iter().all(|e| e["outcome"] == "denied"), "{denied:?}");
    let looked_up = get(
        &c,
        &server,
        &p.admin,
        &format!("/api/audit?patient_id={pid}&actor_id={w2_id}&action=patient.search"),
    )
    .await;
    assert_eq!(
        looked_up.as_array().unwrap().len(),
        1,
        "a lookup outside the station is audited"
    );

    // Successful reads are audited as the REST API's are.
    for action in [
        "patient.read",
        "consultation.read",
        "note.read",
        "vitals.read",
        "photo.list",
    ] {
        let e = get(
            &c,
            &server,
            &p.admin,
            &format!("/api/audit?patient_id={pid}&action={action}"),
        )
        .await;
        assert!(!e.as_array().unwrap().is_empty(), "{action} audited");
    }

    // Nothing personal in the server's log.
    let log = server.output.lock().unwrap().clone();
    for secret in ["Lò Thị Xuân", CCCD, BHYT, "0912345678", "Viêm họng"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

fn uuid_like() -> &'static str {
    "0b6f8a0e-1c1f-4a0c-8e7e-3b5c7d9e2f10"
}

/// A patient seen at two hospitals: each hospital's doctor finds only their
/// own consultation in searches and `$everything` (and is audited for that
/// one only); a measurement taken for the other hospital's consultation is
/// shown without its reference to it; an amended note is exported once, as
/// its amendment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctor_finds_only_their_own_hospitals_consultations() {
    let dir = temp_dir("fhir-two-hospitals");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let h2 = post(&c, &server, &p.admin, "/api/facilities", json!({"code": "H2", "name": "Bệnh viện tỉnh", "kind": "provincial_hospital", "province": "Điện Biên"})).await;
    post(&c, &server, &p.admin, "/api/users", json!({"username": "bacsi2", "display_name": "Bác sĩ 2", "password": PASSWORD, "role": "doctor", "facility_id": h2["id"]})).await;
    let doctor2 = login(&c, &server, "bacsi2", PASSWORD).await;
    let doctor1_id = get(&c, &server, &p.doctor, "/api/auth/me").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let patient = post(
        &c,
        &server,
        &p.worker,
        "/api/patients",
        json!({"full_name": "Giàng Thị Pà", "date_of_birth": "1985-04-05", "sex": "female"}),
    )
    .await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    consent(&c, &server, &p.worker, &pid).await;
    let mine = post(
        &c,
        &server,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": pid, "kind": "urgent", "reason": "Ho"}),
    )
    .await;
    let mine = mine["id"].as_str().unwrap().to_owned();
    post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{mine}/accept"),
        json!({}),
    )
    .await;
    let theirs = post(
        &c,
        &server,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": pid, "kind": "urgent", "reason": "Đau bụng", "hospital_id": h2["id"],
        "vitals": {"temperature_c": 37.2, "pulse_bpm": 80}}),
    )
    .await;
    let theirs = theirs["id"].as_str().unwrap().to_owned();
    post(
        &c,
        &server,
        &doctor2,
        &format!("/api/consultations/{theirs}/accept"),
        json!({}),
    )
    .await;
    // Doctor 1's note, signed, then amended and signed again.
    post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{mine}/state"),
        json!({"state": "in_progress"}),
    )
    .await;
    let note = post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{mine}/notes"),
        json!({}),
    )
    .await;
    let content = json!({"subjective": "Ho", "objective": "Phổi trong", "assessment": "Viêm họng", "plan": "Theo dõi", "icd10_codes": ["J02.9"], "disposition": "treat_at_station"});
    write_and_sign(&c, &server, &p.doctor, &note, content.clone()).await;
    post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{mine}/state"),
        json!({"state": "completed"}),
    )
    .await;
    let amendment = post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/notes/{}/amend", note["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    let mut amended = content;
    amended["icd10_codes"] = json!(["J02.0"]);
    write_and_sign(&c, &server, &p.doctor, &amendment, amended).await;

    let fhir = |path: String| {
        let (c, url, token) = (c.clone(), server.url(&path), p.doctor.clone());
        async move {
            let r = c.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };
    let ids = |b: &Value, kind: &str| -> Vec<String> {
        b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] == kind)
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let encounters = fhir(format!("/fhir/Encounter?patient={pid}")).await;
    assert_eq!(
        ids(&encounters, "Encounter"),
        std::slice::from_ref(&mine),
        "{encounters}"
    );
    let everything = fhir(format!("/fhir/Patient/{pid}/$everything?_count=100")).await;
    assert_eq!(ids(&everything, "Encounter"), std::slice::from_ref(&mine));
    assert_eq!(
        ids(&everything, "Composition"),
        [amendment["id"].as_str().unwrap().to_owned()],
        "the amendment alone stands for the note"
    );
    let observations = fhir(format!("/fhir/Observation?patient={pid}&category=vital-signs")).await;
    let refs: Vec<&Value> = observations["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"]["encounter"])
        .collect();
    assert!(
        !refs.is_empty(),
        "the other hospital's measurements are the patient's: {observations}"
    );
    assert!(
        refs.iter().all(|r| r.is_null()),
        "no reference to the consultation doctor 1 may not read: {refs:?}"
    );
    // Past the store's bound (200 measurement sets), the answer says it is
    // cut short instead of claiming a total.
    for i in 0..200 {
        post(
            &c,
            &server,
            &p.worker,
            &format!("/api/patients/{pid}/vitals"),
            json!({"pulse_bpm": 70 + i % 20}),
        )
        .await;
    }
    let cut = fhir(format!("/fhir/Observation?patient={pid}&_count=5")).await;
    assert!(cut.get("total").is_none(), "{cut}");
    if let Some(o) = std::env::var_os("TELEHEALTH_FHIR_OUT") {
        // Validated with the others (tests/scripts/fhir.sh).
        std::fs::create_dir_all(&o).unwrap();
        std::fs::write(PathBuf::from(o).join("observations-cut.json"), cut.to_string()).unwrap();
    }
    let outcome: Vec<&Value> = cut["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "outcome")
        .collect();
    assert_eq!(outcome.len(), 1, "{cut}");
    assert_eq!(outcome[0]["resource"]["issue"][0]["severity"], "warning");
    let whole = fhir(format!("/fhir/Encounter?patient={pid}")).await;
    assert_eq!(whole["total"], 1, "an answer within the bounds keeps its total");
    // A number no one holds: nothing found, and the lookup is audited.
    let nobody = fhir("/fhir/Patient?identifier=urn:telehealth:vn:cccd|099999999999".to_owned()).await;
    assert_eq!(nobody["total"], 0);
    let lookups = get(
        &c,
        &server,
        &p.admin,
        &format!("/api/audit?actor_id={doctor1_id}&action=patient.search"),
    )
    .await;
    assert_eq!(lookups.as_array().unwrap().len(), 1, "{lookups}");
    // Doctor 1 is audited for their own consultation only.
    let listed = get(
        &c,
        &server,
        &p.admin,
        &format!("/api/audit?patient_id={pid}&actor_id={doctor1_id}&action=consultation.list"),
    )
    .await;
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource_id"].as_str())
        .collect();
    assert!(listed.contains(&mine.as_str()), "{listed:?}");
    assert!(
        !listed.contains(&theirs.as_str()),
        "not audited as read: {listed:?}"
    );
}
