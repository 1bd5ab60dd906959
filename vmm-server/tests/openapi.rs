//! The committed `openapi.json` is the document the routes produce; `UPDATE_OPENAPI=1`
//! rewrites it.

#[test]
fn committed_openapi_json_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let current = vmm_server::openapi().to_pretty_json().expect("serializes") + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "{} is stale: run `UPDATE_OPENAPI=1 cargo test -p vmm-server --test openapi`",
        path.display()
    );
}

#[test]
fn the_document_is_openapi_3_1_with_every_route() {
    let spec = serde_json::to_value(vmm_server::openapi()).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1",
        "/api/v1/health",
        "/api/v1/nodes",
        "/api/v1/nodes/{id}",
        "/api/v1/ip-pools",
        "/api/v1/ip-pools/{id}",
        "/api/v1/ip-pools/{id}/leases",
        "/api/v1/ip-pools/{id}/leases/{address}",
        "/api/v1/vms",
        "/api/v1/vms/{id}",
        "/api/v1/vms/{id}/{action}",
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/tasks/{id}/wait",
        "/api/v1/tasks/{id}/cancel",
        "/api/v1/images",
        "/api/v1/images/{id}",
        "/api/v1/images/{id}/data",
        "/api/v1/recipes",
        "/api/v1/recipes/{id}",
        "/api/v1/networks",
        "/api/v1/networks/{id}",
        "/api/v1/vms/{id}/reinstall",
        "/api/v1/vms/{id}/clone",
        "/api/v1/vms/{id}/addresses",
        "/api/v1/vms/{id}/addresses/{address}",
        "/api/v1/vms/{id}/console-log",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/users",
        "/api/v1/users/me",
        "/api/v1/users/{id}",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/ssh-keys",
        "/api/v1/ssh-keys/{id}",
        "/api/v1/audit",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is missing");
    }
    assert_eq!(
        spec["paths"]["/api/v1/health"]["get"]["security"],
        serde_json::json!([{}]),
        "health needs no token"
    );
    assert_eq!(
        spec["paths"]["/api/v1/auth/login"]["post"]["security"],
        serde_json::json!([{}]),
        "nor does sign-in"
    );
}

/// Everything an earlier release's document had, this one still has: every operation with
/// its id, every parameter, every schema with every property and enum value. The API only
/// grows; a client generated from an older document keeps working. The one exception is
/// the operationIds renamed to one verb scheme in 0.2 (`openapi-renamed.json`, old to new,
/// listed in the CHANGELOG): the requests and answers are unchanged, only the names a
/// generated client gives its functions.
#[test]
fn the_document_only_grows() {
    let now = serde_json::to_value(vmm_server::openapi()).unwrap();
    let renamed: std::collections::HashMap<String, String> =
        serde_json::from_str(include_str!("openapi-renamed.json")).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut missing = Vec::new();
        for (route, ops) in old["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let new = &now["paths"][route][method];
                if !new.is_object() {
                    missing.push(format!("{method} {route}"));
                    continue;
                }
                let id = op["operationId"].as_str().unwrap_or_default();
                let kept = renamed.get(id).map_or(id, String::as_str);
                if new["operationId"] != kept {
                    missing.push(format!("{method} {route}: operationId {}", op["operationId"]));
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let kept = new["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|q| q["name"] == p["name"] && q["in"] == p["in"]);
                    if !kept {
                        missing.push(format!("{method} {route}: parameter {}", p["name"]));
                    }
                }
                for status in op["responses"].as_object().unwrap().keys() {
                    if !new["responses"][status].is_object() {
                        missing.push(format!("{method} {route}: response {status}"));
                    }
                }
            }
        }
        for (name, schema) in old["components"]["schemas"].as_object().unwrap() {
            let new = &now["components"]["schemas"][name];
            if new.is_null() {
                missing.push(format!("schema {name}"));
                continue;
            }
            for prop in schema["properties"].as_object().into_iter().flatten().map(|(k, _)| k) {
                if new["properties"][prop].is_null() {
                    missing.push(format!("schema {name}: property {prop}"));
                }
            }
            for value in schema["enum"].as_array().into_iter().flatten() {
                if !new["enum"].as_array().is_some_and(|e| e.contains(value)) {
                    missing.push(format!("schema {name}: enum value {value}"));
                }
            }
            for (i, variant) in schema["oneOf"].as_array().into_iter().flatten().enumerate() {
                let tag = &variant["properties"]["type"]["enum"];
                let kept = new["oneOf"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| &v["properties"]["type"]["enum"] == tag);
                if !tag.is_null() && !kept {
                    missing.push(format!("schema {name}: variant {i} {tag}"));
                }
            }
        }
        assert!(missing.is_empty(), "{} lost: {missing:#?}", path.display());
        checked += 1;
    }
    assert!(checked > 0, "no earlier documents in {}", dir.display());
}

/// operationIds are `verb_noun`: the five verbs of a resource (`list`, `get`, `create`,
/// `update`, `delete`) with the method each stands for, or the verb of an action.
#[test]
fn operation_ids_follow_one_verb_scheme() {
    let spec = serde_json::to_value(vmm_server::openapi()).unwrap();
    let actions = [
        "cancel",
        "clone",
        "explain",
        "log",
        "migrate",
        "open",
        "reconcile",
        "reinstall",
        "restore",
        "revert",
        "run",
        "stream",
        "upload",
        "verify",
        "wait",
    ];
    let mut wrong = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            let verb = id.split('_').next().unwrap();
            let method_of_verb = match verb {
                "list" | "get" => Some("get"),
                "create" => Some("post"),
                "update" => Some("patch"),
                "delete" => Some("delete"),
                _ => None,
            };
            let fits = match method_of_verb {
                Some(m) => m == method && (verb != "list" || id.ends_with('s')),
                None => actions.contains(&verb),
            };
            if !fits {
                wrong.push(format!("{method} {path}: {id}"));
            }
        }
    }
    assert!(wrong.is_empty(), "operationIds off the scheme: {wrong:#?}");
}

/// The limits the document states are the ones the code checks (so that a client, or
/// schemathesis, can keep to them): each is read here from its constant.
#[test]
fn stated_limits_are_the_checked_ones() {
    use vmm_core::{guest, names, node, page, recipe, vm};
    let spec = serde_json::to_value(vmm_server::openapi()).unwrap();
    let schema = |name: &str, field: &str| spec["components"]["schemas"][name]["properties"][field].clone();
    let max = |name: &str, field: &str, key: &str| schema(name, field)[key].as_f64();
    let name_chars = names::MAX_NAME_CHARS as f64;
    for (name, field) in [
        ("VmSpec", "name"),
        ("CloneSpec", "name"),
        ("ImageSpec", "name"),
        ("RecipeSpec", "name"),
        ("PlacementGroupSpec", "name"),
    ] {
        assert_eq!(max(name, field, "maxLength"), Some(name_chars), "{name}.{field}");
        assert_eq!(max(name, field, "minLength"), Some(1.0), "{name}.{field}");
    }
    assert_eq!(vm::MAX_NAME_CHARS, names::MAX_NAME_CHARS);
    for name in ["VmSpec", "VmPatch", "WhatIf"] {
        assert_eq!(max(name, "vcpus", "maximum"), Some(f64::from(vm::MAX_VCPUS)), "{name}");
        assert_eq!(max(name, "memory_mib", "maximum"), Some(vm::MAX_MEMORY_MIB as f64), "{name}");
        assert_eq!(max(name, "disk_gib", "maximum"), Some(vm::MAX_DISK_GIB as f64), "{name}");
    }
    assert_eq!(max("ImageSpec", "min_disk_gib", "maximum"), Some(vm::MAX_DISK_GIB as f64));
    assert_eq!(max("VmSpec", "ip_pool_ids", "maxItems"), Some(vm::MAX_NICS as f64));
    assert_eq!(max("WhatIf", "ip_pool_ids", "maxItems"), Some(vm::MAX_NICS as f64));
    assert_eq!(max("VmSpec", "recipe_ids", "maxItems"), Some(vm::MAX_RECIPES as f64));
    assert_eq!(max("VmSpec", "user_data", "maxLength"), Some(guest::MAX_USER_DATA_BYTES as f64));
    assert_eq!(max("RecipeSpec", "script", "maxLength"), Some(recipe::MAX_SCRIPT_BYTES as f64));
    for name in ["NodeSpec", "NodePatch"] {
        assert_eq!(max(name, "cpu_overcommit", "maximum"), Some(node::MAX_OVERCOMMIT), "{name}");
        assert_eq!(max(name, "memory_overcommit", "maximum"), Some(node::MAX_OVERCOMMIT), "{name}");
    }
    let limit = spec["paths"]["/api/v1/vms"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"]["maximum"]
        .as_f64();
    assert_eq!(limit, Some(f64::from(page::MAX_LIMIT)));
}
