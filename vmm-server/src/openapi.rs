//! The finishing touches on the OpenAPI document utoipa generates from the routes:
//!
//! * `servers`: the server that serves the document;
//! * page schemas (`Page_Vm`…) refer to their item's schema instead of inlining a copy of it
//!   (utoipa inlines a generic's type argument);
//! * every response has a description (the status's meaning and what the body is) and an
//!   example: a problem made by [`ApiError::example`], or one built from the schema and the
//!   examples its properties give ([`example_of`]);
//! * list answers document their `Link: <…>; rel="next"` header.
//!
//! Each touch works on the document as JSON; `.ci/check-openapi-examples.py` then checks
//! every example against its schema.

use serde_json::{json, Map, Value};
use utoipa::openapi::OpenApi;

use crate::ApiError;

/// How deep [`example_of`] follows nested schemas.
const MAX_DEPTH: usize = 12;

/// The document with the touches above.
pub(crate) fn polish(spec: OpenApi) -> OpenApi {
    let mut doc = serde_json::to_value(&spec).expect("an OpenAPI document serializes");
    doc["servers"] = json!([{ "url": "/", "description": "The vmmd serving this document" }]);
    page_refs(&mut doc);
    let components = doc["components"].clone();
    for op in doc["paths"].as_object_mut().into_iter().flat_map(|p| p.values_mut()) {
        for op in op.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let responses = &mut op["responses"];
            for (status, why) in [
                (
                    "405",
                    "The path does not take this method (the answer to any method a path does not list).",
                ),
                ("500", "The server failed; its log has the details (the answer never has them)."),
            ] {
                if responses.get(status).is_none() {
                    responses[status] = json!({
                        "description": why,
                        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } },
                    });
                }
            }
            for (status, response) in responses.as_object_mut().into_iter().flatten() {
                touch_response(&components, status, response);
            }
        }
    }
    share_problems(&mut doc);
    serde_json::from_value(doc).expect("the polished document is an OpenAPI document")
}

/// The problem answers every operation shares are written once, in `components.responses`,
/// and referred to: an operation whose problem answer differs keeps its own.
fn share_problems(doc: &mut Value) {
    let mut shared = Map::new();
    for op in doc["paths"].as_object_mut().into_iter().flat_map(|p| p.values_mut()) {
        for op in op.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            for (status, response) in op["responses"].as_object_mut().into_iter().flatten() {
                let Some(name) = problem_name(status) else { continue };
                if response["content"].get("application/problem+json").is_none() {
                    continue;
                }
                let kept = shared.entry(name.to_owned()).or_insert_with(|| response.clone());
                if kept == response {
                    *response = json!({ "$ref": format!("#/components/responses/{name}") });
                }
            }
        }
    }
    doc["components"]["responses"] = Value::Object(shared);
}

/// The name of the shared problem answer with `status`.
fn problem_name(status: &str) -> Option<&'static str> {
    Some(match status {
        "400" => "MalformedRequest",
        "401" => "Unauthorized",
        "403" => "Forbidden",
        "404" => "NotFound",
        "405" => "MethodNotAllowed",
        "409" => "Conflict",
        "413" => "PayloadTooLarge",
        "415" => "UnsupportedMediaType",
        "422" => "InvalidRequest",
        "429" => "TooManyRequests",
        "500" => "InternalError",
        "501" => "Unsupported",
        "503" => "Unavailable",
        _ => return None,
    })
}

/// `Page_X.items` refers to `X` where `X` is a component.
fn page_refs(doc: &mut Value) {
    let Some(schemas) = doc["components"]["schemas"].as_object_mut() else { return };
    let names: Vec<String> = schemas.keys().cloned().collect();
    for name in &names {
        let Some(item) = name.strip_prefix("Page_") else { continue };
        if names.iter().any(|n| n == item) {
            schemas[name]["properties"]["items"]["items"] =
                json!({ "$ref": format!("#/components/schemas/{item}") });
        }
    }
}

fn touch_response(components: &Value, status: &str, response: &mut Value) {
    let schema = response["content"]
        .as_object()
        .and_then(|c| c.values().next())
        .map(|media| media["schema"].clone())
        .unwrap_or(Value::Null);
    let target = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()).unwrap_or_default().to_owned();
    if response["description"].as_str().is_none_or(str::is_empty) {
        let what = components["schemas"][&target]["description"].as_str().map(first_sentence);
        response["description"] = Value::String(match what {
            Some(what) => format!("{}: {what}", meaning(status)),
            None => format!("{}.", meaning(status)),
        });
    }
    if target.starts_with("Page_") {
        response["headers"]["Link"] = json!({
            "description": "`<URL>; rel=\"next\"`: this request with the next page's cursor, when there is one (RFC 8288).",
            "schema": { "type": "string" },
            "example": "</api/v1/vms?limit=50&cursor=01900000-0000-7000-8000-000000000001>; rel=\"next\"",
        });
    }
    let problem = status.parse().ok().and_then(ApiError::example);
    // `get_mut`: indexing a missing key with `[]` would add it as null.
    let content = response.get_mut("content").and_then(Value::as_object_mut);
    for (media_type, media) in content.into_iter().flatten() {
        if media.get("example").is_some() || media.get("examples").is_some() {
            continue;
        }
        let example = match (&problem, media_type.as_str()) {
            (Some(problem), "application/problem+json") => serde_json::to_value(problem).expect("a problem serializes"),
            (_, "text/plain") => Value::String("[    0.000000] Linux version 6.1.0 …\n".into()),
            (_, "text/event-stream") => Value::String(
                "id: 42\nevent: vm.created\ndata: {\"id\":42,\"type\":\"vm.created\",\"at\":\"2026-01-01T00:00:00Z\"}\n\n".into(),
            ),
            _ => example_of(components, &media["schema"], 0),
        };
        media["example"] = example;
    }
}

/// What an HTTP status means in this API.
fn meaning(status: &str) -> &'static str {
    match status {
        "101" => "Switching protocols",
        "200" => "OK",
        "201" => "Created; `Location` is its URL",
        "202" => "Accepted: the work is queued as a task; `Location` is the task's URL",
        "204" => "Done",
        _ => "The answer",
    }
}

fn first_sentence(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    let cut = line.find(". ").map_or(line, |i| &line[..=i]);
    let mut s = cut.to_owned();
    if let Some(first) = s.get(..1) {
        s.replace_range(..1, &first.to_lowercase());
    }
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// An example of `schema`: its own example where it gives one, else one built from its
/// parts (properties, items, the first enum value or variant) and, for plain strings, from
/// their format.
pub(crate) fn example_of(components: &Value, schema: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(e) = schema.get("example") {
        return e.clone();
    }
    if let Some(e) = schema.get("examples").and_then(Value::as_array).and_then(|a| a.first()) {
        return e.clone();
    }
    if let Some(name) =
        schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        return example_of(components, &components["schemas"][name], depth + 1);
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(e) =
        schema.get("enum").and_then(Value::as_array).and_then(|a| a.iter().find(|v| !v.is_null()))
    {
        return e.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema.get(key).and_then(Value::as_array) {
            let chosen = variants.iter().find(|v| v.get("type") != Some(&json!("null"))).or(variants.first());
            return chosen.map_or(Value::Null, |v| example_of(components, v, depth + 1));
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in parts {
            match example_of(components, part, depth + 1) {
                Value::Object(o) => merged.extend(o),
                other if parts.len() == 1 => return other,
                _ => {}
            }
        }
        return Value::Object(merged);
    }
    let kind = match schema.get("type") {
        Some(Value::Array(types)) => {
            types.iter().find(|t| *t != "null").and_then(Value::as_str).unwrap_or("null")
        }
        Some(Value::String(t)) => t.as_str(),
        _ if schema.get("properties").is_some() => "object",
        _ => return json!({}),
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                out.insert(name.clone(), example_of(components, property, depth + 1));
            }
            Value::Object(out)
        }
        "array" => {
            let item = example_of(components, &schema["items"], depth + 1);
            let min = schema["minItems"].as_u64().unwrap_or(0).max(1);
            Value::Array(vec![item; usize::try_from(min).unwrap_or(1)])
        }
        "string" => string_example(schema),
        "integer" => json!(schema["minimum"]
            .as_i64()
            .unwrap_or(0)
            .max(schema["exclusiveMinimum"].as_i64().map_or(0, |m| m + 1))),
        "number" => json!(schema["minimum"].as_f64().unwrap_or(1.0)),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}

fn string_example(schema: &Value) -> Value {
    let text = match schema["format"].as_str() {
        Some("uuid") => "01900000-0000-7000-8000-000000000001",
        Some("date-time") => "2026-01-01T00:00:00Z",
        Some("date") => "2026-01-01",
        Some("ipv4") => "192.0.2.10",
        Some("ipv6") => "2001:db8::10",
        Some("ip") => "192.0.2.10",
        Some("uri" | "url") => "https://example.com/",
        Some("email") => "ann@example.com",
        Some("byte" | "binary") => "",
        _ => "example",
    };
    let min = schema["minLength"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    if text.len() >= min {
        Value::String(text.to_owned())
    } else {
        Value::String(text.repeat(min.div_ceil(text.len().max(1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_follow_refs_enums_variants_and_formats() {
        let components = json!({ "schemas": {
            "Vm": { "type": "object", "properties": {
                "id": { "type": "string", "format": "uuid" },
                "state": { "type": "string", "enum": ["creating", "running"] },
                "addresses": { "type": "array", "items": { "type": "string" }, "example": ["192.0.2.10"] },
                "vcpus": { "type": "integer", "minimum": 1 },
                "image_id": { "type": ["string", "null"], "format": "uuid" },
                "owner": { "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/Owner" }] },
            }},
            "Owner": { "type": "object", "properties": { "email": { "type": "string", "format": "email" } } },
        }});
        let got = example_of(&components, &json!({ "$ref": "#/components/schemas/Vm" }), 0);
        assert_eq!(
            got,
            json!({
                "id": "01900000-0000-7000-8000-000000000001",
                "state": "creating",
                "addresses": ["192.0.2.10"],
                "vcpus": 1,
                "image_id": "01900000-0000-7000-8000-000000000001",
                "owner": { "email": "ann@example.com" },
            })
        );
    }

    #[test]
    fn every_response_has_a_description_and_an_example_and_pages_refer_to_their_items() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        assert_eq!(doc["servers"][0]["url"], "/");
        let mut missing = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    let response = match response["$ref"].as_str() {
                        Some(r) => {
                            &doc["components"]["responses"][r.trim_start_matches("#/components/responses/")]
                        }
                        None => response,
                    };
                    if response["description"].as_str().is_none_or(str::is_empty) {
                        missing.push(format!("{method} {path} {status}: description"));
                    }
                    for (media_type, media) in response["content"].as_object().into_iter().flatten() {
                        if media.get("example").is_none() {
                            missing.push(format!("{method} {path} {status} {media_type}: example"));
                        }
                    }
                }
                // 429: a bad token from an address too often; the public routes take none.
                let guarded = op["security"] != json!([{}]);
                for status in ["405", "429", "500"] {
                    if op["responses"][status].is_null() && (guarded || status != "429") {
                        missing.push(format!("{method} {path}: {status} undocumented"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
        assert_eq!(
            doc["components"]["schemas"]["Page_Vm"]["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/Vm"
        );
        assert!(doc["paths"]["/api/v1/vms"]["get"]["responses"]["200"]["headers"]["Link"].is_object());
    }
}
