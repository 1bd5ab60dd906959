//! Request bodies and queries from `FIELD=VALUE` arguments, typed by the API's own schema.
//!
//! - `name=web1`: a value, typed as the field's schema says (`vcpus=2` is a number,
//!   `start=true` a boolean, `recipe_ids=a,b` a list); a field the schema does not know
//!   is text.
//! - `ranges:='["198.51.100.10-198.51.100.20"]'`: raw JSON.
//! - `secret_access_key=@FILE`: the file's content (without its last newline), so that a
//!   secret stays out of the process list and the shell's history; `@-` reads stdin.
//! - `s3.bucket=b`: a field of a nested object.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::client::Method;
use crate::error::{Error, Result};

/// The API's OpenAPI document, as the server this CLI was built with describes it.
static OPENAPI: &str = include_str!("../../vmm-server/openapi.json");

fn openapi() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(OPENAPI).expect("the committed openapi.json is JSON"))
}

/// The JSON body of `method path` from `fields`: `None` when there are none and the call
/// takes no body, `{}` when it takes one.
pub fn body(method: Method, path: &str, fields: &[String]) -> Result<Option<Value>> {
    let schema = request_schema(method, path);
    if fields.is_empty() {
        return Ok(schema.map(|_| Value::Object(Map::new())));
    }
    let mut body = Map::new();
    for field in fields {
        let (key, value) = parse(field, |key| schema.and_then(|s| property(s, key)))?;
        insert(&mut body, &key, value)?;
    }
    Ok(Some(Value::Object(body)))
}

/// Query parameters of `method path` from `fields` (`key=value`, as given); a key the
/// call does not take is refused (the server would ignore it).
pub fn query(method: Method, path: &str, fields: &[String]) -> Result<Vec<(String, String)>> {
    let known = query_parameters(method, path);
    fields
        .iter()
        .map(|f| match f.split_once('=') {
            Some((k, v)) if !k.is_empty() => match &known {
                Some(known) if !known.contains(&k) => Err(Error::Usage(format!(
                    "{k} is not a filter of this list; it takes: {}",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ))),
                _ => Ok((k.to_owned(), v.to_owned())),
            },
            _ => Err(Error::Usage(format!("{f:?} is not FIELD=VALUE"))),
        })
        .collect()
}

/// One `FIELD=VALUE` (or `FIELD:=JSON`) as its dotted key and value.
fn parse<'s>(field: &str, schema_of: impl Fn(&str) -> Option<&'s Value>) -> Result<(String, Value)> {
    let Some((key, raw)) = field.split_once('=') else {
        return Err(Error::Usage(format!("{field:?} is not FIELD=VALUE")));
    };
    if let Some(key) = key.strip_suffix(':') {
        let value = serde_json::from_str(raw)
            .map_err(|e| Error::Usage(format!("the value of {key} is not JSON: {e}")))?;
        return Ok((checked(key)?, value));
    }
    let key = checked(key)?;
    let text = match raw.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(Error::io(format!("reading {key} from stdin")))?;
            text
        }
        Some(path) => {
            std::fs::read_to_string(path).map_err(Error::io(format!("reading {key} from {path}")))?
        }
        None => raw.to_owned(),
    };
    let text = if raw.starts_with('@') { text.strip_suffix('\n').unwrap_or(&text).to_owned() } else { text };
    let value = match schema_of(&key).map(shape) {
        Some(Shape::Json) => serde_json::from_str(&text).map_err(|_| {
            Error::Usage(format!("{key} takes a number, a boolean or JSON (FIELD:=JSON), not {text:?}"))
        })?,
        Some(Shape::List) if !text.trim_start().starts_with('[') => {
            Value::Array(text.split(',').map(|s| Value::String(s.trim().to_owned())).collect())
        }
        Some(Shape::List) => serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("the value of {key} is not a JSON list: {e}")))?,
        Some(Shape::Text) | None => Value::String(text),
    };
    Ok((key, value))
}

fn checked(key: &str) -> Result<String> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(Error::Usage(format!("{key:?} is not a field name")));
    }
    Ok(key.to_owned())
}

/// Puts `value` at the dotted `key` of `body`.
fn insert(body: &mut Map<String, Value>, key: &str, value: Value) -> Result<()> {
    match key.split_once('.') {
        None => {
            if body.insert(key.to_owned(), value).is_some() {
                return Err(Error::Usage(format!("{key} is given twice")));
            }
            Ok(())
        }
        Some((head, rest)) => match body.entry(head).or_insert_with(|| Value::Object(Map::new())) {
            Value::Object(inner) => insert(inner, rest, value),
            _ => Err(Error::Usage(format!("{head} is given both as a value and as an object"))),
        },
    }
}

/// How a value given as text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Text, as given.
    Text,
    /// A list: `a,b,c` or JSON.
    List,
    /// A number, boolean or object: parsed as JSON.
    Json,
}

fn shape(schema: &Value) -> Shape {
    let schema = resolve(schema);
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => Vec::new(),
    };
    match types.first() {
        Some(&"string") | None => Shape::Text,
        Some(&"array") => Shape::List,
        Some(_) => Shape::Json,
    }
}

/// `schema` with `$ref`s followed and a nullable `oneOf` reduced to its one other choice.
fn resolve(schema: &Value) -> &Value {
    if let Some(Value::String(r)) = schema.get("$ref") {
        let name = r.trim_start_matches("#/components/schemas/");
        return openapi().pointer(&format!("/components/schemas/{name}")).map_or(schema, resolve);
    }
    for choice in ["oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = schema.get(choice) {
            let real: Vec<&Value> =
                options.iter().filter(|o| o.get("type") != Some(&Value::from("null"))).collect();
            if let [one] = real[..] {
                return resolve(one);
            }
        }
    }
    schema
}

/// The schema of the dotted `key` inside `schema`.
fn property<'s>(schema: &'s Value, key: &str) -> Option<&'s Value> {
    let mut at = schema;
    for part in key.split('.') {
        let here = resolve(at);
        at = here.pointer(&format!("/properties/{part}")).or_else(|| {
            // `allOf` parts (a record and its extra fields).
            here.get("allOf")?
                .as_array()?
                .iter()
                .find_map(|p| resolve(p).pointer(&format!("/properties/{part}")))
        })?;
    }
    Some(at)
}

/// The API's operation `method path` (`path` under `/api/v1`, placeholders as `{…}` or
/// given values): of the paths that fit, the one with the most literal segments in common
/// (`/vms/{id}/backups` before `/vms/{id}/{action}`). A given value fits a placeholder when
/// the parameter's schema allows it (`start` fits `{action}`, `strat` does not).
pub fn operation(method: Method, path: &str) -> Option<&'static Value> {
    let method = method.as_str().to_ascii_lowercase();
    let wanted: Vec<&str> = path.split('/').collect();
    openapi()["paths"]
        .as_object()?
        .iter()
        .filter_map(|(p, item)| {
            let have: Vec<&str> = p.strip_prefix("/api/v1")?.split('/').collect();
            let op = item.get(&method)?;
            if have.len() != wanted.len() {
                return None;
            }
            let mut literal = 0;
            for (h, w) in have.iter().zip(&wanted) {
                if h == w {
                    literal += 1;
                } else if !fits(op, h, w) {
                    return None;
                }
            }
            Some((literal, op))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, op)| op)
}

/// Whether the path segment `given` fits the placeholder `segment` of `op`: any value, unless
/// the parameter's schema lists the values it takes.
fn fits(op: &Value, segment: &str, given: &str) -> bool {
    let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else { return false };
    if given.is_empty() {
        return false;
    }
    let params = op["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
    let schema = params.iter().find(|p| p["name"] == name).map(|p| resolve(&p["schema"]));
    match schema.and_then(|s| s["enum"].as_array()) {
        // A placeholder of the catalog (`{vm}`) stands for any value.
        Some(values) => given.starts_with('{') || values.iter().any(|v| v == given),
        None => true,
    }
}

/// The request body's schema of `method path`, if the call takes a JSON body.
fn request_schema(method: Method, path: &str) -> Option<&'static Value> {
    operation(method, path)?.pointer("/requestBody/content/application~1json/schema")
}

/// The query parameters `method path` takes (`None` when the call is not in the API).
pub fn query_parameters(method: Method, path: &str) -> Option<Vec<&'static str>> {
    let op = operation(method, path)?;
    let params = op.get("parameters").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Some(params.iter().filter(|p| p["in"] == "query").filter_map(|p| p["name"].as_str()).collect())
}

/// Whether the body of `method path` has the (dotted) field `key` (the catalog's test asks).
#[cfg(test)]
pub fn takes_field(method: Method, path: &str, key: &str) -> bool {
    request_schema(method, path).and_then(|s| property(s, key)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_typed_by_the_api_schema() {
        let fields =
            ["name=web1", "vcpus=2", "memory_mib=512", "disk_gib=5", "start=false", "recipe_ids=a,b"]
                .map(String::from);
        let body = body(Method::Post, "/vms", &fields).unwrap().unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "web1", "vcpus": 2, "memory_mib": 512, "disk_gib": 5, "start": false, "recipe_ids": ["a", "b"]})
        );
        // A name that looks like a number stays text.
        let body = super::body(Method::Post, "/vms", &["name=1234".into()]).unwrap().unwrap();
        assert_eq!(body["name"], "1234");
    }

    #[test]
    fn raw_json_nested_fields_and_bad_input() {
        let fields = ["name=t", "url=s3://b/p", "s3.endpoint=http://127.0.0.1:9000", "ranges:=[1,2]"]
            .map(String::from);
        let body = body(Method::Post, "/backup-targets", &fields).unwrap().unwrap();
        assert_eq!(body["s3"]["endpoint"], "http://127.0.0.1:9000");
        assert_eq!(body["ranges"], serde_json::json!([1, 2]));
        for bad in ["novalue", "=x", "a..b=1", "vcpus=two", "x:={"] {
            assert!(super::body(Method::Post, "/vms", &[bad.to_owned()]).is_err(), "{bad}");
        }
        let twice = ["name=a", "name=b"].map(String::from);
        assert!(super::body(Method::Post, "/vms", &twice).is_err());
    }

    #[test]
    fn raw_paths_find_their_operation_and_filters_are_checked() {
        let body = body(Method::Patch, "/vms/0191e3d0-0000-7000-8000-000000000000", &["vcpus=4".into()]);
        assert_eq!(body.unwrap().unwrap()["vcpus"], 4, "a given id fits {{id}}");
        let backup = super::body(Method::Post, "/vms/x/backups", &["target_id=t".into()]).unwrap().unwrap();
        assert_eq!(backup["target_id"], "t");
        assert_eq!(super::body(Method::Post, "/reconcile", &[]).unwrap(), Some(serde_json::json!({})));
        assert_eq!(super::body(Method::Post, "/vms/x/start", &[]).unwrap(), None);
        assert!(query(Method::Get, "/tasks", &["state=running".into()]).is_ok());
        assert!(query(Method::Get, "/vms", &["state=running".into(), "node_id=n".into()]).is_ok());
        let err = query(Method::Get, "/vms", &["vm_id=x".into()]).unwrap_err().to_string();
        assert!(err.contains("not a filter"), "{err}");
    }

    #[test]
    fn a_value_from_a_file_loses_its_last_newline() {
        let path = std::env::temp_dir().join(format!("vmm-cli-field-{}", std::process::id()));
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let body =
            body(Method::Post, "/backup-targets", &[format!("s3.secret_access_key=@{}", path.display())])
                .unwrap()
                .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(body["s3"]["secret_access_key"], "s3cr3t");
    }
}
