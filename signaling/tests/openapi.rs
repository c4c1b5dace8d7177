//! The OpenAPI document describes exactly the routes the router serves,
//! with the request and response types their handlers really use.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use telehealth_signaling::api::contract::{self, ResponseBody};
use telehealth_signaling::api::{operations, route_table, system::OPENAPI};

#[test]
fn openapi_document_matches_the_route_table() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is valid JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let served: BTreeSet<String> = route_table().iter().map(|(m, p)| format!("{m} {p}")).collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        phantom.is_empty(),
        "openapi.json documents routes that do not exist: {phantom:?}"
    );
}

#[test]
fn every_schema_reference_resolves() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    fn walk(v: &Value, doc: &Value, bad: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let ptr = r.trim_start_matches('#');
                    if doc.pointer(ptr).is_none() {
                        bad.push(r.clone());
                    }
                }
                m.values().for_each(|x| walk(x, doc, bad));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, doc, bad)),
            _ => {}
        }
    }
    let mut bad = Vec::new();
    walk(&doc, &doc, &mut bad);
    assert!(bad.is_empty(), "dangling $refs: {bad:?}");
}

/// The document's schemas say what the handlers' Rust types say: each
/// operation's JSON request body, query parameters and successful answer
/// are compared, after resolving references on both sides, with the
/// schemas `schemars` derives from those types (the same serde attributes
/// that do the encoding). Descriptions, examples and validation limits
/// (lengths, ranges, formats) are the document's own; the shape (which
/// fields, which of them required, their types, nullability and enum
/// values, whether unknown fields are refused) must agree.
#[test]
fn openapi_schemas_match_the_handlers_types() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut problems = Vec::new();
    let problem = contract::problem();
    let problem = Shape::of(problem.as_value(), problem.as_value());
    for route in operations() {
        let contract = (route.contract)();
        let method = route.method.as_str().to_lowercase();
        let op_name = format!("{} {}", route.method, route.path);
        let Some(op) = doc["paths"][route.path].get(&method) else {
            continue; // reported by openapi_document_matches_the_route_table
        };
        // The request body.
        let doc_body = op.pointer("/requestBody/content/application~1json/schema");
        match (&contract.body, doc_body) {
            (Some(code), Some(doc_schema)) => compare(
                &format!("{op_name} request body"),
                &Shape::of(doc_schema, &doc),
                &Shape::of(code.as_value(), code.as_value()),
                &mut problems,
            ),
            (Some(_), None) => problems.push(format!(
                "{op_name}: the handler reads a JSON body the document does not describe"
            )),
            (None, Some(_)) => problems.push(format!(
                "{op_name}: the document describes a JSON body the handler does not read"
            )),
            (None, None) => {}
        }
        // The query parameters: names and which are required.
        let doc_query: BTreeMap<String, bool> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| (p["name"].as_str().unwrap().to_owned(), p["required"] == true))
            .collect();
        let code_query: BTreeMap<String, bool> = match &contract.query {
            Some(q) => match Shape::of(q.as_value(), q.as_value()) {
                Shape::Object { props, required, .. } => {
                    props.keys().map(|k| (k.clone(), required.contains(k))).collect()
                }
                other => panic!("{op_name}: the query type is not a struct: {other:?}"),
            },
            None => BTreeMap::new(),
        };
        if doc_query != code_query {
            problems.push(format!(
                "{op_name} query parameters (name: required): document {doc_query:?}, handler {code_query:?}"
            ));
        }
        // The successful answers.
        let successes: Vec<(&String, &Value)> = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(status, _)| status.starts_with('2') || *status == "101")
            .collect();
        if successes.is_empty() {
            problems.push(format!("{op_name}: no 2xx answer documented"));
        }
        // Every error answer is a problem.
        for (status, resp) in op["responses"].as_object().unwrap() {
            if status.starts_with('2') || status == "101" {
                continue;
            }
            let resp = resolve(resp, &doc);
            match resp.pointer("/content/application~1problem+json/schema") {
                Some(schema) => compare(
                    &format!("{op_name} {status} problem"),
                    &Shape::of(schema, &doc),
                    &problem,
                    &mut problems,
                ),
                None => problems.push(format!("{op_name} {status}: not described as a problem+json")),
            }
        }
        for (status, resp) in successes {
            let resp = resolve(resp, &doc);
            let json = resp.pointer("/content/application~1json/schema");
            match (&contract.response, json) {
                (ResponseBody::Json(code), Some(doc_schema)) => compare(
                    &format!("{op_name} {status} answer"),
                    &Shape::of(doc_schema, &doc),
                    &Shape::of(code.as_value(), code.as_value()),
                    &mut problems,
                ),
                (ResponseBody::Json(_), None) => problems.push(format!(
                    "{op_name} {status}: the handler answers JSON the document does not describe"
                )),
                (ResponseBody::Empty, _) if resp.get("content").is_some() => problems.push(format!(
                    "{op_name} {status}: the document describes a body; the handler sends none"
                )),
                (ResponseBody::Empty | ResponseBody::Other, _) => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "openapi.json disagrees with the handlers' types:\n  {}",
        problems.join("\n  ")
    );
}

/// Follows `$ref`s (within `root`) until a schema that is not only a reference.
fn resolve<'a>(mut v: &'a Value, root: &'a Value) -> &'a Value {
    for _ in 0..32 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                v = root
                    .pointer(r.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("dangling $ref {r}"));
            }
            None => return v,
        }
    }
    panic!("a $ref cycle");
}

/// The shape of a JSON schema: what a value may look like, with references
/// resolved and everything that does not change the shape left out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Any,
    Null,
    Bool,
    Integer,
    Number,
    /// A string, of one of these values if listed.
    String(Option<BTreeSet<String>>),
    Array(Box<Shape>),
    Object {
        props: BTreeMap<String, Shape>,
        required: BTreeSet<String>,
        /// Unknown fields refused (`additionalProperties: false`).
        closed: bool,
        /// The type of the values of a map.
        values: Option<Box<Shape>>,
    },
    /// One of several (nullable values, tagged unions).
    OneOf(BTreeSet<Shape>),
}

impl Shape {
    fn of(v: &Value, root: &Value) -> Shape {
        let v = resolve(v, root);
        let Some(obj) = v.as_object() else {
            return Shape::Any; // `true`
        };
        let mut alternatives = Vec::new();
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = obj.get(key).and_then(Value::as_array) {
                alternatives.extend(list.iter().map(|s| Shape::of(s, root)));
            }
        }
        if let Some(parts) = obj.get("allOf").and_then(Value::as_array) {
            alternatives.push(Shape::all_of(parts.iter().map(|p| Shape::of(p, root))));
        }
        let enum_strings = obj
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect::<BTreeSet<_>>()
            })
            .or_else(|| {
                obj.get("const")
                    .and_then(Value::as_str)
                    .map(|c| BTreeSet::from([c.to_owned()]))
            });
        let enum_null = obj
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e.contains(&Value::Null))
            || obj.get("const") == Some(&Value::Null);
        let types: Vec<&str> = match obj.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ if obj.contains_key("properties") => vec!["object"],
            _ if enum_strings.is_some() => vec!["string"],
            _ => vec![],
        };
        for t in types {
            alternatives.push(match t {
                "null" => Shape::Null,
                "boolean" => Shape::Bool,
                "integer" => Shape::Integer,
                "number" => Shape::Number,
                "string" => Shape::String(enum_strings.clone()),
                "array" => Shape::Array(Box::new(
                    obj.get("items").map_or(Shape::Any, |i| Shape::of(i, root)),
                )),
                "object" => Shape::Object {
                    props: obj
                        .get("properties")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                        .map(|(k, s)| (k.clone(), Shape::of(s, root)))
                        .collect(),
                    required: obj
                        .get("required")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect(),
                    closed: obj.get("additionalProperties") == Some(&Value::Bool(false)),
                    values: obj
                        .get("additionalProperties")
                        .filter(|a| a.is_object())
                        .map(|a| Box::new(Shape::of(a, root))),
                },
                other => panic!("unknown JSON schema type {other}"),
            });
        }
        if enum_null {
            alternatives.push(Shape::Null);
        }
        Shape::union(alternatives)
    }

    /// All of several shapes at once: objects merged (serde's `flatten`
    /// written as `allOf`), anything else must be alone.
    fn all_of(parts: impl Iterator<Item = Shape>) -> Shape {
        parts
            .reduce(|a, b| match (a, b) {
                (
                    Shape::Object {
                        mut props,
                        mut required,
                        closed,
                        values,
                    },
                    Shape::Object {
                        props: p,
                        required: r,
                        closed: c,
                        values: v,
                    },
                ) => {
                    props.extend(p);
                    required.extend(r);
                    Shape::Object {
                        props,
                        required,
                        closed: closed || c,
                        values: values.or(v),
                    }
                }
                (a, b) => panic!("allOf of non-objects: {a:?}, {b:?}"),
            })
            .unwrap_or(Shape::Any)
    }

    /// One shape for several alternatives: nested unions flattened, string
    /// enums merged, a single alternative unwrapped.
    fn union(alternatives: Vec<Shape>) -> Shape {
        let mut set = BTreeSet::new();
        let mut strings: Option<Option<BTreeSet<String>>> = None;
        let mut stack = alternatives;
        while let Some(s) = stack.pop() {
            match s {
                Shape::OneOf(inner) => stack.extend(inner),
                Shape::String(values) => {
                    strings = Some(match (strings, values) {
                        (Some(Some(mut a)), Some(b)) => {
                            a.extend(b);
                            Some(a)
                        }
                        (None, v) => v,
                        _ => None,
                    });
                }
                other => {
                    set.insert(other);
                }
            }
        }
        if let Some(s) = strings {
            set.insert(Shape::String(s));
        }
        if set.contains(&Shape::Any) || set.is_empty() {
            return Shape::Any;
        }
        if set.len() == 1 {
            return set.pop_first().unwrap();
        }
        Shape::OneOf(set)
    }
}

/// Records where `doc` and `code` differ, field by field.
fn compare(at: &str, doc: &Shape, code: &Shape, problems: &mut Vec<String>) {
    if doc == code {
        return;
    }
    match (doc, code) {
        (
            Shape::Object {
                props: dp,
                required: dr,
                closed: dc,
                values: dv,
            },
            Shape::Object {
                props: cp,
                required: cr,
                closed: cc,
                values: cv,
            },
        ) => {
            for k in dp.keys().filter(|k| !cp.contains_key(*k)) {
                problems.push(format!("{at}: the document has a field `{k}` the type does not"));
            }
            for k in cp.keys().filter(|k| !dp.contains_key(*k)) {
                problems.push(format!("{at}: the type has a field `{k}` the document does not"));
            }
            if dr != cr {
                problems.push(format!("{at}: required fields: document {dr:?}, type {cr:?}"));
            }
            if dc != cc {
                problems.push(format!("{at}: unknown fields refused: document {dc}, type {cc}"));
            }
            match (dv, cv) {
                (Some(d), Some(c)) => compare(&format!("{at}.*"), d, c, problems),
                (None, None) => {}
                _ => problems.push(format!("{at}: map values: document {dv:?}, type {cv:?}")),
            }
            for (k, d) in dp {
                if let Some(c) = cp.get(k) {
                    compare(&format!("{at}.{k}"), d, c, problems);
                }
            }
        }
        (Shape::Array(d), Shape::Array(c)) => compare(&format!("{at}[]"), d, c, problems),
        _ => problems.push(format!("{at}: document {doc:?}, type {code:?}")),
    }
}
