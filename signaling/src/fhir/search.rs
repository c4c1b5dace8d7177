//! A search's parameters and its answer: a `searchset` Bundle, one page of
//! it, with links to the others
//! (<https://hl7.org/fhir/R4/http.html#paging>).

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{FhirError, FhirResult, DEFAULT_COUNT, MAX_COUNT, MAX_OFFSET};

/// A search's parameters, checked: the filters, and the page asked for.
pub struct SearchParams {
    /// The filters as given (name, value), in order, without the paging ones.
    pub filters: Vec<(String, String)>,
    pub count: usize,
    pub offset: usize,
}

impl SearchParams {
    /// Reads `raw` for a search that knows the filters `allowed`.
    pub fn parse(raw: Vec<(String, String)>, allowed: &[&str]) -> FhirResult<Self> {
        let mut filters: Vec<(String, String)> = Vec::new();
        let mut count = DEFAULT_COUNT;
        let mut offset = 0;
        let mut seen = BTreeSet::new();
        for (name, value) in raw {
            if !seen.insert(name.clone()) {
                return Err(FhirError::bad(
                    "repeated_search_parameter",
                    format!("Tham số “{}” chỉ được dùng một lần.", clip(&name)),
                    format!("Search parameter `{}` may be given once.", clip(&name)),
                ));
            }
            match name.as_str() {
                "_count" => {
                    count = value.parse::<usize>().map_err(|_| {
                        FhirError::bad(
                            "invalid_count",
                            "“_count” phải là số nguyên không âm.",
                            "`_count` must be a non-negative integer.",
                        )
                    })?;
                    // Bounded: a client cannot make one page cost more.
                    count = count.min(MAX_COUNT);
                }
                "_offset" => {
                    offset = value
                        .parse::<usize>()
                        .ok()
                        .filter(|o| *o <= MAX_OFFSET)
                        .ok_or_else(|| {
                            FhirError::bad(
                                "invalid_offset",
                                format!("“_offset” phải là số nguyên từ 0 đến {MAX_OFFSET}."),
                                format!("`_offset` must be an integer from 0 to {MAX_OFFSET}."),
                            )
                        })?;
                }
                "_format" => {
                    if !matches!(
                        value.as_str(),
                        "json" | "application/json" | "application/fhir+json"
                    ) {
                        return Err(FhirError::client(
                            StatusCode::NOT_ACCEPTABLE,
                            "unsupported_format",
                            "Máy chủ chỉ trả về JSON (_format=json).",
                            "This server answers in JSON only (_format=json).",
                        ));
                    }
                }
                n if allowed.contains(&n) => filters.push((name, value)),
                _ => {
                    return Err(FhirError::bad(
                        "unknown_search_parameter",
                        format!(
                            "Tham số tìm kiếm “{}” không được hỗ trợ ở đây. Dùng: {}.",
                            clip(&name),
                            known(allowed)
                        ),
                        format!(
                            "Search parameter `{}` is not supported here. Supported: {}.",
                            clip(&name),
                            known(allowed)
                        ),
                    ))
                }
            }
        }
        Ok(Self {
            filters,
            count,
            offset,
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn known(allowed: &[&str]) -> String {
    let mut all: Vec<&str> = allowed.to_vec();
    all.extend(["_count", "_offset"]);
    all.join(", ")
}

pub(super) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Percent-encodes a query component (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One page of `all` as a `searchset` Bundle, with `self`, `first`,
/// `previous` and `next` links (`path` is relative to the base, e.g.
/// `Encounter` or `Patient/{id}/$everything`).
pub fn bundle(base: &str, path: &str, p: &SearchParams, all: Vec<Value>) -> Value {
    let total = all.len();
    let link = |offset: usize| {
        let mut q: Vec<String> = p
            .filters
            .iter()
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .collect();
        q.push(format!("_count={}", p.count));
        q.push(format!("_offset={offset}"));
        format!("{base}/{path}?{}", q.join("&"))
    };
    let mut links = vec![
        json!({ "relation": "self", "url": link(p.offset) }),
        json!({ "relation": "first", "url": link(0) }),
    ];
    if p.offset > 0 {
        links.push(json!({ "relation": "previous", "url": link(p.offset.saturating_sub(p.count.max(1))) }));
    }
    if p.count > 0 && p.offset + p.count < total {
        links.push(json!({ "relation": "next", "url": link(p.offset + p.count) }));
    }
    let entries: Vec<Value> = all
        .into_iter()
        .skip(p.offset)
        .take(p.count)
        .map(|r| {
            let full = format!(
                "{base}/{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            );
            json!({ "fullUrl": full, "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": telehealth_records::Timestamp::now().to_string(),
        "total": total,
        "link": links,
    });
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

/// Marks a search's Bundle as cut short: a patient with more than the
/// store's bounds (consultations, measurement sets) gets the newest only,
/// and is told so by an OperationOutcome entry (`search.mode` `outcome`);
/// `total` goes, since it would claim a count that is not the whole.
pub fn mark_cut(b: &mut Value) {
    if let Some(m) = b.as_object_mut() {
        m.remove("total");
    }
    let warning = json!({
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "warning",
                "code": "too-costly",
                "details": {
                    "coding": [{ "system": super::resources::ERROR_SYSTEM, "code": "results_cut" }],
                    "text": "Chỉ có 200 ca tư vấn và 200 lần đo mới nhất của bệnh nhân; các bản cũ hơn không có ở đây.",
                },
                "diagnostics": "Only the patient's newest 200 consultations and 200 measurement sets are searched; older ones are not in this result.",
            }],
        },
        "search": { "mode": "outcome" },
    });
    match b.get_mut("entry").and_then(Value::as_array_mut) {
        Some(entries) => entries.push(warning),
        None => b["entry"] = json!([warning]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(q: &[(&str, &str)], allowed: &[&str]) -> FhirResult<SearchParams> {
        SearchParams::parse(
            q.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            allowed,
        )
    }

    #[test]
    fn count_is_bounded_and_unknown_parameters_refused() {
        let p = params(&[("_count", "100000")], &[]).unwrap();
        assert_eq!(p.count, MAX_COUNT);
        assert_eq!(params(&[], &[]).unwrap().count, DEFAULT_COUNT);
        assert!(params(&[("patinet", "x")], &["patient"]).is_err());
        assert!(params(&[("_count", "-1")], &[]).is_err());
        assert!(params(&[("_offset", "100001")], &[]).is_err());
        assert!(params(&[("patient", "a"), ("patient", "b")], &["patient"]).is_err());
    }

    #[test]
    fn pages_link_to_the_next_one() {
        let p = params(&[("patient", "Patient/1"), ("_count", "2")], &["patient"]).unwrap();
        let all = (0..5)
            .map(|i| json!({"resourceType": "Encounter", "id": i.to_string()}))
            .collect();
        let b = bundle("http://h/fhir", "Encounter", &p, all);
        assert_eq!(b["total"], 5);
        assert_eq!(b["entry"].as_array().unwrap().len(), 2);
        let next = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .unwrap();
        assert_eq!(
            next["url"],
            "http://h/fhir/Encounter?patient=Patient%2F1&_count=2&_offset=2"
        );
    }
}
