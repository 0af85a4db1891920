//! Checks a served JSON answer against the OpenAPI document: the test that the document
//! describes what the node really sends (a field the document lacks, a missing required field,
//! a wrong type or enum value is an error naming its path).
//!
//! A validator for the subset of JSON Schema the generated document uses: `$ref`, `allOf`,
//! `oneOf`, `type` (one or a list), `properties`, `required`, `additionalProperties`, `items`,
//! `enum`, `minimum`. Unlike plain JSON Schema, an object may carry no property that its schema
//! (all `allOf` parts together) does not name, so undocumented fields are caught.

use std::collections::BTreeSet;

use serde_json::Value;

/// Validates `value` as the JSON body of `method path` answered with `status`.
pub fn check_response(doc: &Value, path: &str, method: &str, status: u16, value: &Value) -> Result<(), String> {
    let op = &doc["paths"][path][method];
    if op.is_null() {
        return Err(format!("{method} {path} is not in the document"));
    }
    let response = &op["responses"][status.to_string()];
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        return Err(format!("{method} {path} has no JSON answer with status {status} in the document"));
    };
    check(doc, schema, value, &format!("{method} {path} {status}"))
}

/// Validates `value` against the component schema `name`.
pub fn check_component(doc: &Value, name: &str, value: &Value) -> Result<(), String> {
    let schema = &doc["components"]["schemas"][name];
    if schema.is_null() {
        return Err(format!("no component {name}"));
    }
    check(doc, schema, value, name)
}

pub fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    walk(doc, schema, value, at, true).map(|_| ())
}

/// Validates, returning the property names this schema covers (None: any object goes).
/// `whole`: `value` is checked here as a whole (not as one part of an `allOf`), so its
/// properties must all be covered.
fn walk(doc: &Value, schema: &Value, value: &Value, at: &str, whole: bool) -> Result<Option<BTreeSet<String>>, String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").ok_or_else(|| format!("{at}: unsupported $ref {r}"))?;
        return walk(doc, &doc["components"]["schemas"][name], value, at, whole);
    }
    let mut covered: Option<BTreeSet<String>> = None;
    let mut cover = |names: Option<BTreeSet<String>>| {
        if let Some(n) = names {
            covered.get_or_insert_with(BTreeSet::new).extend(n)
        }
    };
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            cover(walk(doc, part, value, at, false)?);
        }
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let mut matched = vec![];
        let mut why = vec![];
        for option in options {
            match walk(doc, option, value, at, false) {
                Ok(names) => matched.push(names),
                Err(e) => why.push(e),
            }
        }
        match matched.len() {
            1 => cover(matched.pop().flatten()),
            0 => return Err(format!("{at}: matches none of the alternatives ({})", why.join("; "))),
            n => return Err(format!("{at}: matches {n} alternatives, not one")),
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: unsupported type {t}")),
        };
        if !types.iter().any(|t| is_type(value, t)) {
            return Err(format!("{at}: {value} is not {}", types.join(" or ")));
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            return Err(format!("{at}: {value} is not one of {}", Value::Array(options.clone())));
        }
    }
    if let (Some(min), Some(x)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if x < min {
            return Err(format!("{at}: {x} is below the minimum {min}"));
        }
    }
    if let Some(items) = schema.get("items") {
        for (i, item) in value.as_array().into_iter().flatten().enumerate() {
            walk(doc, items, item, &format!("{at}[{i}]"), true)?;
        }
    }
    if let Some(object) = value.as_object() {
        if let Some(props) = schema["properties"].as_object() {
            for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return Err(format!("{at}: the required field {name:?} is missing"));
                }
            }
            for (name, s) in props {
                if let Some(v) = object.get(name) {
                    walk(doc, s, v, &format!("{at}.{name}"), true)?;
                }
            }
            cover(Some(props.keys().cloned().collect()));
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            for (name, v) in object {
                walk(doc, extra, v, &format!("{at}.{name}"), true)?;
            }
            cover(Some(object.keys().cloned().collect()));
        }
        if whole {
            if let Some(names) = &covered {
                if let Some(stray) = object.keys().find(|k| !names.contains(*k)) {
                    return Err(format!("{at}: the field {stray:?} is not in the document"));
                }
            }
        }
    }
    Ok(covered)
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        serde_json::to_value(crate::openapi()).unwrap()
    }

    fn task(state: Value) -> Value {
        let mut t = json!({ "shard": 0, "replica": 1, "check": false, "doubt": null, "cpu_ms": 0 });
        t.as_object_mut().unwrap().extend(state.as_object().unwrap().clone());
        t
    }

    #[test]
    fn what_the_types_serialise_validates() {
        let d = doc();
        let leased = crate::market::Task {
            shard: 2,
            replica: 0,
            check: true,
            state: crate::market::TaskState::Leased {
                provider: "erg1".into(),
                price_per_gmac: 5,
                since: 1,
                deadline: 9,
                blocks_mined: 0,
                burned_by_blocks: 0,
                collateral: 3,
            },
            doubt: None,
            cpu_ms: 12,
        };
        check_component(&d, "Task", &serde_json::to_value(&leased).unwrap()).unwrap();
        let cancelled = task(json!({ "state": "cancelled", "detail": {} }));
        check_component(&d, "Task", &cancelled).unwrap();
    }

    #[test]
    fn undocumented_missing_and_mistyped_fields_are_caught() {
        let d = doc();
        let queued = task(json!({ "state": "queued", "detail": { "why": null } }));
        check_component(&d, "Task", &queued).unwrap();
        let mut stray = queued.clone();
        stray["colour"] = json!("blue");
        assert!(check_component(&d, "Task", &stray).unwrap_err().contains("\"colour\" is not in the document"));
        let mut missing = queued.clone();
        missing.as_object_mut().unwrap().remove("shard");
        assert!(check_component(&d, "Task", &missing).unwrap_err().contains("\"shard\""));
        let mut wrong = queued.clone();
        wrong["shard"] = json!("0");
        assert!(check_component(&d, "Task", &wrong).is_err());
        let unknown_state = task(json!({ "state": "lost", "detail": {} }));
        assert!(check_component(&d, "Task", &unknown_state).unwrap_err().contains("none of the alternatives"));
        let negative = task(json!({ "state": "settled", "detail": { "provider": "p", "result": "r", "paid": -1 } }));
        assert!(check_component(&d, "Task", &negative).is_err());
    }
}
