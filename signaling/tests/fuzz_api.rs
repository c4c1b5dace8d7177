//! A fuzz target for the REST API: every operation of our own OpenAPI
//! document (`signaling/openapi.json`), as each role and as nobody, with
//! path ids real or made up, query values and JSON bodies built from the
//! document's field names and from values of every kind (the right ones,
//! wrong types, out-of-range times, control and bidirectional characters,
//! very long text), or raw bytes. The server (the real router, SQLite)
//! must never answer 5xx, and every error is a problem+json naming its
//! code (`common::send` checks that). Under nextest this runs a second of
//! random inputs; see docs/FUZZING.md for longer runs.
//!
//! Left out: `/api/auth/*` and account changes (`POST /api/users`,
//! `PATCH /api/users/{id}`): each valid one costs an argon2 hash, and a
//! fuzzer that logs its own users out or changes their passwords stops
//! reaching everything behind the login. They have their own tests
//! (`api.rs`, `authz_matrix.rs`).

mod common;

use axum::body::Body;
use axum::http::{Method, Request};
use common::*;
use serde_json::{json, Map, Value};
use std::panic::AssertUnwindSafe;

/// One operation of the document: method, path template, query names,
/// and its JSON body's property names and required ones.
struct Operation {
    method: Method,
    path: String,
    query: Vec<String>,
    fields: Vec<String>,
    required: Vec<String>,
}

/// A valid value for a required property, so that bodies get past the
/// parser to the checks behind it.
fn default_for(name: &str, ids: &[String]) -> Value {
    match name {
        "full_name" => json!("Lò Thị Mai"),
        "date_of_birth" => json!("1985-03-27"),
        "sex" => json!("female"),
        "version" => json!(1),
        "patient_id" => json!(ids[0]),
        "kind" => json!("urgent"),
        "reason" => json!("Sốt cao ba ngày"),
        "state" => json!("in_progress"),
        "hours" => json!([{"weekday": 1, "start_minute": 420, "end_minute": 690}]),
        "starts_at" => json!("2027-01-04T01:00:00Z"),
        "ends_at" => json!("2027-01-05T01:00:00Z"),
        "scheduled_start" => json!("2027-01-04T01:00:00Z"),
        "code" => json!("S7"),
        "name" => json!("Trạm y tế xã Thử"),
        "province" => json!("Hà Giang"),
        _ => Value::Null,
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        if path.starts_with("/api/auth") || path == "/api/ws" {
            continue;
        }
        for (m, op) in ops.as_object().expect("operations") {
            let method = match m.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                _ => continue,
            };
            if path.starts_with("/api/users") && (method == Method::POST || method == Method::PATCH) {
                continue;
            }
            let query = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "query")
                        .filter_map(|p| p["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let schema = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .map(|n| &doc["components"]["schemas"][n]);
            let names = |v: Option<&Value>| -> Vec<String> {
                match v {
                    Some(Value::Object(m)) => m.keys().cloned().collect(),
                    Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
                    _ => Vec::new(),
                }
            };
            out.push(Operation {
                method,
                path: path.clone(),
                query,
                fields: names(schema.and_then(|s| s.get("properties"))),
                required: names(schema.and_then(|s| s.get("required"))),
            });
        }
    }
    out
}

/// Every property name the document's schemas use.
fn field_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                for k in props.keys() {
                    if !out.contains(k) {
                        out.push(k.clone());
                    }
                }
            }
            for x in m.values() {
                field_names(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| field_names(x, out)),
        _ => {}
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A value of the kind `kind` picks, from `n` and `s`, or one of `good`.
fn value(kind: u8, n: i64, s: &str, good: &[Value]) -> Value {
    match kind % 10 {
        0 => Value::Null,
        1 => Value::Bool(n & 1 == 1),
        2 => json!(n),
        3 => json!([f64::MAX, -0.0, 1e-300, n as f64 / 7.0][(n as usize) % 4]),
        4 => Value::String(s.to_owned()),
        5 | 6 => good[(n.unsigned_abs() as usize) % good.len()].clone(),
        7 => json!([s, n]),
        8 => Value::String(s.repeat(64).chars().take(20_000).collect()),
        _ => json!({ s: n }),
    }
}

type Field = (u8, u8, i64, String);
type Input = (u8, u8, Vec<String>, Vec<(u8, String)>, u8, Vec<Field>, Vec<u8>);

#[test]
fn every_operation_with_any_input() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let doc: Value = serde_json::from_str(include_str!("../openapi.json")).expect("our document");
    let ops = operations(&doc);
    assert!(ops.len() > 30, "{} operations", ops.len());
    let mut names = Vec::new();
    field_names(&doc, &mut names);
    let (w, ids, good) = rt.block_on(async {
        let w = world(sqlite().await).await;
        let p = call(
            &w.app,
            Method::POST,
            "/api/patients",
            Some(&w.t_hw1),
            Some(patient_json("Lò Văn Thử")),
        )
        .await;
        let patient = p.body["id"].as_str().expect("patient").to_owned();
        w.consent(&patient).await;
        let c = call(
            &w.app,
            Method::POST,
            "/api/consultations",
            Some(&w.t_hw1),
            Some(json!({"patient_id": patient, "kind": "urgent", "reason": "Sốt cao"})),
        )
        .await;
        let consultation = c.body["id"].as_str().unwrap_or_default().to_owned();
        let ids: Vec<String> = vec![
            patient.clone(),
            consultation.clone(),
            w.doc1.id.to_string(),
            w.hw1.id.to_string(),
            w.s1.id.to_string(),
            w.h1.id.to_string(),
            w.doc2.id.to_string(),
            "1".into(),
        ];
        let good: Vec<Value> = [
            json!(patient),
            json!(consultation),
            json!(w.doc1.id.to_string()),
            json!(w.h1.id.to_string()),
            json!("2026-12-08T08:00:00Z"),
            json!("1985-03-27"),
            json!("-0001-01-01T00:00:00Z"),
            json!("+262142-12-31T23:59:59Z"),
            json!("female"),
            json!("urgent"),
            json!("scheduled"),
            json!("commune_station"),
            json!("in_progress"),
            json!("completed"),
            json!("granted"),
            json!("withdrawn"),
            json!("guardian"),
            json!(telehealth_records::current_consent_text().version),
            json!("0912 345 678"),
            json!("001085012345"),
            json!("\u{202e}kcatta"),
            json!("\u{200b}\u{200b}"),
            json!("\u{0}x"),
            json!("          "),
            json!(["J18.9", "R50.9"]),
            json!({"temperature_c": 38.5, "pulse_bpm": 104}),
            json!(i64::MAX),
            json!(-1),
            json!(480),
        ]
        .into();
        (w, ids, good)
    });
    let tokens = [
        Some(w.t_hw1.clone()),
        Some(w.t_doc1.clone()),
        Some(w.t_admin.clone()),
        Some(w.t_doc2.clone()),
        None,
    ];
    let state = AssertUnwindSafe((&rt, &w.app, &ops, &names, &ids, &good, &tokens));
    bolero::check!()
        .with_type::<Input>()
        .for_each(move |(op, role, params, query, mode, fields, raw)| {
            let (rt, app, ops, names, ids, good, tokens) = *state;
            let op = &ops[usize::from(*op) % ops.len()];
            // Path: each {param} a real id, or whatever the fuzzer made.
            let mut params = params.iter();
            let mut path = String::new();
            let mut rest = op.path.as_str();
            while let Some(open) = rest.find('{') {
                path.push_str(&rest[..open]);
                let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
                let made = params.next();
                match made {
                    Some(s) if s.len() % 5 == 0 => path.push_str(&encode(s)),
                    Some(s) => path.push_str(&ids[s.len() % ids.len()]),
                    None => path.push_str(&ids[0]),
                }
                rest = &rest[close..];
            }
            path.push_str(rest);
            if !query.is_empty() && !op.query.is_empty() {
                // Each name once, unless the fuzzer asks for a repeat (a 400 of its own).
                let mut seen = Vec::new();
                let q: Vec<String> = query
                    .iter()
                    .filter_map(|(k, v)| {
                        let name = &op.query[usize::from(*k) % op.query.len()];
                        if seen.contains(&name) && *k < 240 {
                            return None;
                        }
                        seen.push(name);
                        Some(format!("{name}={}", encode(v)))
                    })
                    .collect();
                path = format!("{path}?{}", q.join("&"));
            }
            let body: Option<Vec<u8>> = match mode % 8 {
                _ if op.method == Method::GET || op.method == Method::DELETE => None,
                0 => Some(raw.clone()),
                1 => Some(
                    Value::Array(fields.iter().map(|(_, k, n, s)| value(*k, *n, s, good)).collect())
                        .to_string()
                        .into_bytes(),
                ),
                2 => None,
                m => {
                    // Mostly the operation's own fields, over valid
                    // required ones (or without them); now and then any
                    // field the document names.
                    let mut obj = Map::new();
                    if m % 8 != 3 {
                        for r in &op.required {
                            obj.insert(r.clone(), default_for(r, ids));
                        }
                    }
                    for (name, kind, n, s) in fields {
                        let name = if *name < 220 && !op.fields.is_empty() {
                            &op.fields[usize::from(*name) % op.fields.len()]
                        } else {
                            &names[usize::from(*name) % names.len()]
                        };
                        obj.insert(name.clone(), value(*kind, *n, s, good));
                    }
                    Some(Value::Object(obj).to_string().into_bytes())
                }
            };
            let mut req = Request::builder().method(op.method.clone()).uri(&path);
            if let Some(t) = &tokens[usize::from(*role) % tokens.len()] {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let req = match body {
                Some(b) => req.header("content-type", "application/json").body(Body::from(b)),
                None => req.body(Body::empty()),
            };
            let Ok(req) = req else {
                return;
            };
            let r = rt.block_on(send(app, req));
            assert!(
                !r.status.is_server_error(),
                "{} {path}: {} {}",
                op.method,
                r.status,
                r.body
            );
        });
}
