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
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is missing");
    }
    assert_eq!(
        spec["paths"]["/api/v1/health"]["get"]["security"],
        serde_json::json!([{}]),
        "health needs no token"
    );
}
