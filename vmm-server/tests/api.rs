//! Every route and every error status, through `app()` with `oneshot` on the in-memory fakes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vmm_core::memory::{Failure, HypervisorCall, InMemoryConnector};
use vmm_core::{NodeSpec, Vmm};
use vmm_server::{app, AdminToken, AppState};

mod common;

use common::*;

#[tokio::test]
async fn health_is_open_and_everything_else_needs_the_token() {
    let api = api().await;
    let r = api.send(Request::get("/api/v1/health").body(Body::empty()).unwrap()).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let r = api.send(Request::get("/api/v1/vms").body(Body::empty()).unwrap()).await;
    problem(&r, 401, "unauthorized");
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    let wrong = Request::get("/api/v1")
        .header(header::AUTHORIZATION, "Bearer not-the-token-at-all")
        .body(Body::empty())
        .unwrap();
    problem(&api.send(wrong).await, 401, "unauthorized");
    let r = api.get("/api/v1").await;
    assert_eq!((r.status, r.body["api"].as_str()), (StatusCode::OK, Some("v1")));
    assert!(r.headers.contains_key("x-request-id"), "every answer carries a request id");
    let spec = api.send(Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(spec.status, StatusCode::OK);
    assert!(spec.body["paths"]["/api/v1/vms"].is_object());
    let docs = api.send(Request::get("/docs/").body(Body::empty()).unwrap()).await;
    assert_eq!(docs.status, StatusCode::OK);
}

#[tokio::test]
async fn nodes() {
    let api = api().await;
    let r = api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1", "virt_type": "qemu"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers[header::LOCATION], format!("/api/v1/nodes/{id}"));
    assert_eq!(r.body["virt_type"], "qemu");
    problem(
        &api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://other"})).await,
        409,
        "conflict",
    );
    let r = api.post("/api/v1/nodes", json!({"name": "n1-again", "uri": "memory://n1"})).await;
    problem(&r, 409, "conflict");
    assert!(r.body["detail"].as_str().unwrap().contains("URI"), "one host counted once: {}", r.body);
    let r = api.post("/api/v1/nodes", json!({"name": "n2", "uri": "nonsense"})).await;
    problem(&r, 422, "invalid");
    assert_eq!(r.body["field"], "uri");
    let r = api.post("/api/v1/nodes", json!({"name": "n2", "uri": "memory://n2", "cpus": 4})).await;
    problem(&r, 422, "invalid");
    assert_eq!(r.body["field"], "cpus", "unknown fields are named");
    api.connector.set_unreachable("memory://down", true);
    problem(
        &api.post("/api/v1/nodes", json!({"name": "down", "uri": "memory://down"})).await,
        503,
        "unavailable",
    );
    assert_eq!(api.get("/api/v1/nodes").await.body["items"].as_array().unwrap().len(), 1);
    api.post("/api/v1/nodes", json!({"name": "n2", "uri": "memory://n2"})).await;
    let first = api.get("/api/v1/nodes?limit=1").await;
    let page = first.body;
    assert_eq!(page["items"][0]["name"], "n2", "newest first");
    // The next page's URL is also in `Link`, relative to this one, the other parameters kept.
    let cursor = page["next_cursor"].as_str().unwrap();
    assert_eq!(
        first.headers["link"].to_str().unwrap(),
        format!("</api/v1/nodes?limit=1&cursor={cursor}>; rel=\"next\"")
    );
    let last = api.get(&format!("/api/v1/nodes?limit=1&cursor={cursor}")).await;
    let next = last.body;
    assert_eq!((next["items"][0]["name"].as_str(), next["next_cursor"].is_null()), (Some("n1"), true));
    assert!(last.headers.get("link").is_none(), "the last page has no next");
    assert_eq!(api.get(&format!("/api/v1/nodes/{id}")).await.body["name"], "n1");
    let r =
        api.call(Method::PATCH, &format!("/api/v1/nodes/{id}"), Some(json!({"state": "maintenance"}))).await;
    assert_eq!((r.status, r.body["state"].as_str()), (StatusCode::OK, Some("maintenance")));
    problem(&api.get("/api/v1/nodes/0190a5b2-0000-7000-8000-00000000abcd").await, 404, "node_not_found");
    problem(&api.get("/api/v1/nodes/not-a-uuid").await, 422, "invalid");
    assert_eq!(
        api.call(Method::DELETE, &format!("/api/v1/nodes/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    problem(&api.call(Method::DELETE, &format!("/api/v1/nodes/{id}"), None).await, 404, "node_not_found");
}

#[tokio::test]
async fn malformed_oversized_and_misdirected_requests() {
    let api = api().await;
    let bad_json = Request::post("/api/v1/nodes")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": "))
        .unwrap();
    problem(&api.send(bad_json).await, 400, "malformed_json");
    let no_type = Request::post("/api/v1/nodes")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from("{}"))
        .unwrap();
    problem(&api.send(no_type).await, 415, "unsupported_media_type");
    let huge = json!({"name": "x".repeat(300_000), "uri": "memory://x"});
    problem(&api.post("/api/v1/nodes", huge).await, 413, "body_too_large");
    problem(&api.get("/api/v1/nowhere").await, 404, "no_route");
    problem(&api.call(Method::PUT, "/api/v1/vms", None).await, 405, "method_not_allowed");
    problem(&api.get("/api/v1/vms?limit=banana").await, 422, "invalid");
    problem(&api.get("/api/v1/vms?limit=0").await, 422, "invalid");
}

#[tokio::test]
async fn a_backend_failure_is_a_500_that_hides_its_cause() {
    let api = api().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    let hv = api.connector.get("memory://n1").unwrap();
    hv.fail_next(HypervisorCall::NodeInfo);
    // A second node on the same fake: its capacity read fails inside the backend.
    let r = api.post("/api/v1/nodes", json!({"name": "n2", "uri": "memory://n1"})).await;
    problem(&r, 500, "internal");
    assert!(!r.body.to_string().contains("injected"), "{}", r.body);
    // What the node does not implement is a 501; a node that does not answer, a 503.
    hv.fail_next_as(HypervisorCall::NodeInfo, Failure::Unsupported);
    problem(
        &api.post("/api/v1/nodes", json!({"name": "n3", "uri": "memory://n1"})).await,
        501,
        "unsupported",
    );
    hv.fail_next_as(HypervisorCall::NodeInfo, Failure::Unavailable);
    problem(
        &api.post("/api/v1/nodes", json!({"name": "n4", "uri": "memory://n1"})).await,
        503,
        "unavailable",
    );
}

#[tokio::test]
async fn ip_pools_and_leases() {
    let api = api().await;
    let r = api
        .post("/api/v1/ip-pools", json!({"name": "public", "cidr": "192.0.2.0/29", "gateway": "192.0.2.1"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let pool = r.body["id"].as_str().unwrap().to_owned();
    let r = api.post("/api/v1/ip-pools", json!({"name": "bad", "cidr": "192.0.2.7/24"})).await;
    problem(&r, 422, "invalid");
    assert_eq!(r.body["field"], "cidr");
    problem(
        &api.post("/api/v1/ip-pools", json!({"name": "public", "cidr": "198.51.100.0/24"})).await,
        409,
        "conflict",
    );
    assert_eq!(api.get("/api/v1/ip-pools").await.body["items"][0]["cidr"], "192.0.2.0/29");
    assert_eq!(api.get(&format!("/api/v1/ip-pools/{pool}")).await.body["gateway"], "192.0.2.1");
    let leases = format!("/api/v1/ip-pools/{pool}/leases");
    let r = api.post(&leases, json!({"address": "192.0.2.5"})).await;
    assert_eq!((r.status, r.body["address"].as_str()), (StatusCode::CREATED, Some("192.0.2.5")));
    let r = api.post(&leases, json!({"address": "192.0.2.5"})).await;
    problem(&r, 409, "address_in_use");
    assert_eq!(r.body["ids"]["address"], "192.0.2.5");
    problem(&api.post(&leases, json!({"address": "192.0.2.1"})).await, 422, "invalid");
    for expected in ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.6"] {
        assert_eq!(api.post(&leases, json!({})).await.body["address"], expected);
    }
    problem(&api.post(&leases, json!({})).await, 409, "pool_exhausted");
    let page = api.get(&format!("{leases}?limit=3")).await.body;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let next =
        api.get(&format!("{leases}?limit=3&cursor={}", page["next_cursor"].as_str().unwrap())).await.body;
    assert_eq!(next["items"].as_array().unwrap().len(), 2);
    assert!(next["next_cursor"].is_null());
    problem(&api.call(Method::DELETE, &format!("/api/v1/ip-pools/{pool}"), None).await, 409, "conflict");
    for a in ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"] {
        assert_eq!(
            api.call(Method::DELETE, &format!("{leases}/{a}"), None).await.status,
            StatusCode::NO_CONTENT
        );
    }
    problem(&api.call(Method::DELETE, &format!("{leases}/192.0.2.2"), None).await, 404, "lease_not_found");
    problem(&api.call(Method::DELETE, &format!("{leases}/not-an-ip"), None).await, 422, "invalid");
    assert_eq!(
        api.call(Method::DELETE, &format!("/api/v1/ip-pools/{pool}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    problem(&api.get(&format!("/api/v1/ip-pools/{pool}")).await, 404, "pool_not_found");
}

#[tokio::test]
async fn a_vm_lives_and_dies_over_http() {
    let api = api().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1?cpus=4&memory_mib=8192"})).await;
    let pool = api.post("/api/v1/ip-pools", json!({"name": "p", "cidr": "198.51.100.0/24"})).await.body["id"]
        .clone();
    let r = api
        .post(
            "/api/v1/vms",
            json!({"name": "web <1>", "vcpus": 1, "memory_mib": 512, "disk_gib": 1, "ip_pool_id": pool}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let (vm, task) = (r.body["vm"].clone(), r.body["task"].clone());
    let id = vm["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers[header::LOCATION], format!("/api/v1/tasks/{}", task["id"].as_str().unwrap()));
    assert_eq!((vm["state"].as_str(), vm["addresses"][0].as_str()), (Some("creating"), Some("198.51.100.1")));
    assert_eq!(api.wait(&task).await["state"], "succeeded");
    assert_eq!(api.get(&format!("/api/v1/vms/{id}")).await.body["state"], "running");

    let r =
        api.post("/api/v1/vms", json!({"name": "big", "vcpus": 64, "memory_mib": 9000, "disk_gib": 1})).await;
    problem(&r, 409, "no_capacity");
    let rejections = r.body["rejections"].as_array().expect("every node's reasons");
    assert_eq!(rejections.len(), 1, "{}", r.body);
    assert_eq!(rejections[0]["node_name"], "n1");
    let reasons: Vec<_> =
        rejections[0]["reasons"].as_array().unwrap().iter().map(|r| r["reason"].clone()).collect();
    assert_eq!(reasons, [json!("cpu"), json!("memory")], "{}", r.body);
    let r = api.post("/api/v1/vms", json!({"name": "", "vcpus": 1, "memory_mib": 512, "disk_gib": 1})).await;
    problem(&r, 422, "invalid");
    assert_eq!(r.body["field"], "name");
    problem(&api.post(&format!("/api/v1/vms/{id}/resume"), json!(null)).await, 409, "invalid_state");
    problem(&api.post(&format!("/api/v1/vms/{id}/explode"), json!(null)).await, 422, "invalid");

    let stop = api.post(&format!("/api/v1/vms/{id}/stop"), json!(null)).await;
    assert_eq!(stop.status, StatusCode::ACCEPTED);
    let busy = api.post(&format!("/api/v1/vms/{id}/start"), json!(null)).await;
    if busy.status == StatusCode::CONFLICT {
        problem(&busy, 409, "active_task");
        assert_eq!(busy.body["ids"]["task_id"], stop.body["task"]["id"]);
    }
    assert_eq!(api.wait(&stop.body["task"]).await["state"], "succeeded");
    assert_eq!(api.get(&format!("/api/v1/vms/{id}")).await.body["state"], "stopped");
    for action in ["start", "suspend", "resume", "reboot", "shutdown"] {
        let r = api.post(&format!("/api/v1/vms/{id}/{action}"), json!(null)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{action}: {}", r.body);
        assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded", "{action}");
    }
    let r = api
        .call(Method::PATCH, &format!("/api/v1/vms/{id}"), Some(json!({"name": "web-2", "memory_mib": 1024})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    api.wait(&r.body["task"]).await;
    let got = api.get(&format!("/api/v1/vms/{id}")).await.body;
    assert_eq!((got["name"].as_str(), got["memory_mib"].as_u64()), (Some("web-2"), Some(1024)));

    let tasks = api.get(&format!("/api/v1/tasks?vm_id={id}&limit=2")).await.body;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 2);
    assert!(tasks["next_cursor"].is_string());
    let done = api.get("/api/v1/tasks?state=succeeded&limit=1000").await.body;
    assert!(done["items"].as_array().unwrap().len() >= 8);
    problem(&api.get("/api/v1/tasks?state=bogus").await, 422, "invalid");
    let first = task["id"].as_str().unwrap();
    assert_eq!(api.get(&format!("/api/v1/tasks/{first}")).await.body["kind"], "create_vm");
    problem(&api.post(&format!("/api/v1/tasks/{first}/cancel"), json!(null)).await, 409, "conflict");
    problem(&api.get(&format!("/api/v1/tasks/{first}/wait?timeout_s=61")).await, 422, "invalid");
    problem(&api.get("/api/v1/tasks/0190a5b2-0000-7000-8000-00000000abcd").await, 404, "task_not_found");

    let vms = api.get("/api/v1/vms?limit=10").await.body;
    assert_eq!(vms["items"].as_array().unwrap().len(), 1);
    // Filters: every one given must match.
    let vm = &vms["items"][0];
    let (state, node, name) =
        (vm["state"].as_str().unwrap(), vm["node_id"].as_str().unwrap(), vm["name"].as_str().unwrap());
    for (query, listed) in [
        (format!("state={state}&node_id={node}&name={name}"), 1),
        (format!("state=paused&node_id={node}"), 0),
        ("node_id=0190a5b2-0000-7000-8000-00000000abcd".to_owned(), 0),
        (format!("name={name}x"), 0),
    ] {
        let page = api.get(&format!("/api/v1/vms?{query}")).await.body;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(listed), "{query}");
    }
    problem(&api.get("/api/v1/vms?state=sleepy").await, 422, "invalid");
    let del = api.call(Method::DELETE, &format!("/api/v1/vms/{id}"), None).await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    assert_eq!(api.wait(&del.body["task"]).await["state"], "succeeded");
    problem(&api.get(&format!("/api/v1/vms/{id}")).await, 404, "vm_not_found");
}

#[tokio::test]
async fn a_queued_create_can_be_cancelled() {
    // No workers here: the task stays queued until cancelled.
    let connector = Arc::new(InMemoryConnector::new());
    let vmm = test_vmm(connector.clone());
    vmm.create_node(NodeSpec::new("n1", "memory://n1")).await.unwrap();
    let api = Api { app: app(AppState::new(vmm, AdminToken::new(TOKEN).unwrap())), connector };
    let r = api.post("/api/v1/vms", json!({"name": "a", "vcpus": 1, "memory_mib": 512, "disk_gib": 1})).await;
    let task = r.body["task"]["id"].as_str().unwrap().to_owned();
    let waited = api.get(&format!("/api/v1/tasks/{task}/wait?timeout_s=0.05")).await;
    assert_eq!(waited.body["state"], "queued", "the wait times out and answers the task as it is");
    let r = api.post(&format!("/api/v1/tasks/{task}/cancel"), json!(null)).await;
    assert_eq!((r.status, r.body["state"].as_str()), (StatusCode::OK, Some("cancelled")));
    assert!(api.get("/api/v1/vms").await.body["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn hostile_node_uris_are_refused_naming_the_part() {
    let api = api().await;
    for (uri, part) in [
        ("qemu+ssh://u@example.invalid/system?command=/tmp/p.sh", "\"command\""),
        ("qemu:///embed?root=/tmp/x", "/embed"),
        ("qemu:///system?socket=/any/path", "\"socket\""),
        ("test:///etc/passwd", "test:///default"),
        ("qemu+ssh://-oProxyCommand=x/system", "host"),
    ] {
        let r = api.post("/api/v1/nodes", json!({"name": "evil", "uri": uri})).await;
        problem(&r, 422, "invalid");
        assert_eq!(r.body["field"], "uri");
        assert!(r.body["detail"].as_str().unwrap().contains(part), "{uri}: {}", r.body);
    }
    assert!(api.get("/api/v1/nodes").await.body["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn test_nodes_need_the_operator() {
    let vmm = Vmm::builder().with_connector(Arc::new(InMemoryConnector::new())).build();
    let api =
        Api { app: app(AppState::new(vmm, AdminToken::new(TOKEN).unwrap())), connector: Default::default() };
    for uri in ["memory://n1", "test:///default"] {
        let r = api.post("/api/v1/nodes", json!({"name": "n1", "uri": uri})).await;
        problem(&r, 422, "invalid");
        assert!(r.body["detail"].as_str().unwrap().contains("test nodes"), "{}", r.body);
    }
}

#[tokio::test]
async fn repeated_bad_tokens_are_throttled_with_retry_after() {
    let api = api().await;
    let bad = || {
        Request::get("/api/v1/vms")
            .header(header::AUTHORIZATION, "Bearer guess-0123456789abcdef")
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..10 {
        problem(&api.send(bad()).await, 401, "unauthorized");
    }
    let r = api.send(bad()).await;
    problem(&r, 429, "too_many_requests");
    let retry: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // While throttled, even the right token waits: guessing gains nothing.
    problem(&api.get("/api/v1/vms").await, 429, "too_many_requests");
    // Health needs no token and stays open.
    assert_eq!(
        api.send(Request::get("/api/v1/health").body(Body::empty()).unwrap()).await.status,
        StatusCode::OK
    );
}

/// A qcow2 header (version 3) of `virtual_size`, with a backing file name or the external
/// data file bit when asked: enough for the in-memory image repo's checks.
fn qcow2(virtual_size: u64, backing: bool, data_file: bool) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    if backing {
        h[8..16].copy_from_slice(&400u64.to_be_bytes());
    }
    h[24..32].copy_from_slice(&virtual_size.to_be_bytes());
    if data_file {
        h[72..80].copy_from_slice(&0b100u64.to_be_bytes());
    }
    h
}

const KEYS: [&str; 3] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz5Q2d5kq2xqk0fZ7J3o1n9Zr1v3p6yX7mWcJmQqG7A alice@example",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0sR3Ugb5pJm1vWcJc5jJ7p1b9n2kqzXc0Jm8c1y4Yb bob@example",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4v0h6Q5Vx1nH4Cq2y1o3Jd9kD3Lw7mN1pZr8sT0uYe carol@example",
];

impl Api {
    async fn put_data(&self, image: &str, data: Vec<u8>) -> Reply {
        let req = Request::put(format!("/api/v1/images/{image}/data"))
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(data))
            .unwrap();
        self.send(req).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, None).await
    }

    async fn count(&self, uri: &str) -> usize {
        self.get(uri).await.body["items"].as_array().map_or(0, Vec::len)
    }
}

/// A second upload of an image while the first is still arriving is refused (409), and
/// the first completes.
async fn one_upload_at_a_time(api: &Api) {
    use futures::SinkExt;
    let spec = json!({"name": "slow", "os": {"family": "debian"}, "format": "qcow2"});
    let id = api.post("/api/v1/images", spec).await.body["id"].as_str().unwrap().to_owned();
    let data = qcow2(1 << 30, false, false);
    let (head, tail) = data.split_at(data.len() / 2);
    // One chunk fits in the channel: the second is accepted once the upload has read the
    // first, that is once the upload is under way.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(0);
    let req = Request::put(format!("/api/v1/images/{id}/data"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(rx))
        .unwrap();
    let app = api.app.clone();
    let first = tokio::spawn(async move {
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let body: Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        (status, body)
    });
    tx.send(Ok(head.to_vec())).await.unwrap();
    tx.send(Ok(tail[..1].to_vec())).await.unwrap();
    let second = api.put_data(&id, data.clone()).await;
    problem(&second, 409, "conflict");
    assert!(second.body["detail"].as_str().unwrap().contains("being uploaded"), "{}", second.body);
    tx.send(Ok(tail[1..].to_vec())).await.unwrap();
    drop(tx);
    let (status, body) = first.await.unwrap();
    assert_eq!((status, body["state"].as_str()), (StatusCode::OK, Some("ready")), "{body}");
    assert_eq!(api.delete(&format!("/api/v1/images/{id}")).await.status, StatusCode::NO_CONTENT);
}

/// Images, recipes, networks, a VM installed from an image with keys, a recipe and two
/// addresses; bad input refused with nothing made; reinstall, addresses, clone; all gone
/// after delete.
#[tokio::test]
async fn servers_from_images_over_http() {
    let api = api().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://img1?cpus=8&memory_mib=16384"})).await;
    let hv = api.connector.get("memory://img1?cpus=8&memory_mib=16384").unwrap();
    let net = api.post("/api/v1/networks", json!({"name": "lab", "kind": "managed"})).await;
    assert_eq!(net.status, StatusCode::CREATED, "{}", net.body);
    let net_id = net.body["id"].as_str().unwrap().to_owned();
    let pool = |name: &str, cidr: &str, gw: &str| json!({"name": name, "cidr": cidr, "gateway": gw, "network_id": net_id, "dns": ["198.51.100.53"]});
    let p1 =
        api.post("/api/v1/ip-pools", pool("p1", "198.51.100.0/24", "198.51.100.1")).await.body["id"].clone();
    let p2 =
        api.post("/api/v1/ip-pools", pool("p2", "203.0.113.0/24", "203.0.113.1")).await.body["id"].clone();
    let ghost_net =
        json!({"name": "px", "cidr": "10.9.0.0/24", "network_id": "0190a5b2-0000-7000-8000-00000000abcd"});
    problem(&api.post("/api/v1/ip-pools", ghost_net).await, 404, "network_not_found");
    let recipe = api
        .post(
            "/api/v1/recipes",
            json!({"name": "hello", "os_families": ["debian"], "script": "echo hi > /tmp/hi"}),
        )
        .await;
    assert_eq!(recipe.status, StatusCode::CREATED, "{}", recipe.body);
    let alpine = api
        .post("/api/v1/recipes", json!({"name": "apk", "os_families": ["alpine"], "script": "true"}))
        .await;

    let image = api
        .post(
            "/api/v1/images",
            json!({"name": "deb", "os": {"family": "debian", "version": "12"}, "format": "qcow2"}),
        )
        .await;
    assert_eq!((image.status, image.body["state"].as_str()), (StatusCode::CREATED, Some("importing")));
    let image_id = image.body["id"].as_str().unwrap().to_owned();
    let r = api.put_data(&image_id, qcow2(1 << 30, false, false)).await;
    assert_eq!((r.status, r.body["state"].as_str()), (StatusCode::OK, Some("ready")), "{}", r.body);
    assert_eq!(r.body["virtual_size_bytes"], 1u64 << 30);
    assert_eq!(r.body["sha256"].as_str().map(str::len), Some(64));
    problem(&api.put_data(&image_id, qcow2(1 << 30, false, false)).await, 409, "conflict");
    for (name, data, format) in [
        ("backed", qcow2(1 << 30, true, false), "qcow2"),
        ("data-file", qcow2(1 << 30, false, true), "qcow2"),
        ("raw-as-qcow2", vec![0u8; 4096], "qcow2"),
        ("huge", qcow2(1 << 50, false, false), "qcow2"),
        ("qcow2-as-raw", qcow2(1 << 30, false, false), "raw"),
    ] {
        let spec = json!({"name": name, "os": {"family": "debian"}, "format": format});
        let id = api.post("/api/v1/images", spec).await.body["id"].as_str().unwrap().to_owned();
        let r = api.put_data(&id, data).await;
        problem(&r, 422, "invalid");
        assert_eq!(
            api.get(&format!("/api/v1/images/{id}")).await.body["state"],
            "importing",
            "{name}: unchanged"
        );
        assert_eq!(api.delete(&format!("/api/v1/images/{id}")).await.status, StatusCode::NO_CONTENT);
    }
    one_upload_at_a_time(&api).await;
    let urls = json!({"name": "far", "os": {"family": "debian"}, "format": "qcow2", "source_url": "http://127.0.0.1/x"});
    problem(&api.post("/api/v1/images", urls).await, 422, "invalid");

    let vm_spec = |name: &str| {
        json!({"name": name, "vcpus": 1, "memory_mib": 512, "disk_gib": 2, "image_id": image_id,
               "hostname": "web-1", "ssh_keys": [KEYS[0], KEYS[1]], "recipe_ids": [recipe.body["id"]],
               "ip_pool_ids": [p1, p2], "password": "correct horse battery staple"})
    };
    let ghost = "0190a5b2-0000-7000-8000-00000000abcd";
    let big_user_data = format!("#!/bin/sh\n{}", "x".repeat(70 * 1024));
    for (patch, status, code, field) in [
        (json!({"hostname": "Bad_Host"}), 422, "invalid", Some("hostname")),
        (json!({"ssh_keys": ["ssh-ed25519 nope"]}), 422, "invalid", Some("ssh_keys")),
        (json!({"user_data": big_user_data}), 422, "invalid", Some("user_data")),
        (json!({"password": "short"}), 422, "invalid", Some("password")),
        (json!({"recipe_ids": [alpine.body["id"]]}), 422, "invalid", Some("recipe_ids")),
        (json!({"disk_gib": 0}), 422, "invalid", Some("disk_gib")),
        (json!({"image_id": ghost}), 404, "image_not_found", None),
        (json!({"recipe_ids": [ghost]}), 404, "recipe_not_found", None),
        (json!({"ip_pool_ids": [ghost]}), 404, "pool_not_found", None),
    ] {
        let mut spec = vm_spec("bad");
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let r = api.post("/api/v1/vms", spec).await;
        problem(&r, status, code);
        if let Some(field) = field {
            assert_eq!(r.body["field"], field, "{}", r.body);
        }
    }
    assert_eq!(api.count("/api/v1/vms").await, 0, "bad input made no VM");
    assert_eq!(
        api.count(&format!("/api/v1/ip-pools/{}/leases", p1.as_str().unwrap())).await,
        0,
        "nor a lease"
    );

    let r = api.post("/api/v1/vms", vm_spec("web 1")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(!r.body.to_string().contains("correct horse"), "the password never comes back");
    let id = r.body["vm"]["id"].as_str().unwrap().to_owned();
    let vm_id: vmm_core::VmId = id.parse().unwrap();
    assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded");
    let vm = api.get(&format!("/api/v1/vms/{id}")).await.body;
    assert_eq!(vm["addresses"], json!(["198.51.100.2", "203.0.113.2"]), "{vm}");
    assert_eq!((vm["hostname"].as_str(), vm["nics"].as_array().map(Vec::len)), (Some("web-1"), Some(2)));
    let seed = vmm_core::guest::read_seed(&hv.seed(vm_id).expect("a seed")).unwrap();
    assert!(seed.meta_data.contains(&id) && seed.meta_data.contains("web-1"));
    assert!(seed.user_data.contains("alice@example") && seed.user_data.contains("echo hi > /tmp/hi"));
    assert!(seed.user_data.contains("$6$") && !seed.user_data.contains("correct horse"));
    assert!(
        seed.network_config.contains("198.51.100.2/24") && seed.network_config.contains("203.0.113.2/24")
    );
    assert_eq!(hv.networks().len(), 1, "the managed network was defined on the node");

    let r = api
        .post(&format!("/api/v1/vms/{id}/reinstall"), json!({"image_id": image_id, "ssh_keys": [KEYS[2]]}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded");
    let seed = vmm_core::guest::read_seed(&hv.seed(vm_id).unwrap()).unwrap();
    assert!(seed.meta_data.contains(&format!("{id}-1")), "a new instance id: {}", seed.meta_data);
    assert!(seed.user_data.contains("carol@example") && !seed.user_data.contains("alice@example"));
    assert!(seed.user_data.contains("$6$"), "the password is kept");
    assert_eq!(
        api.get(&format!("/api/v1/vms/{id}")).await.body["addresses"],
        vm["addresses"],
        "same addresses"
    );

    let r = api
        .post(&format!("/api/v1/vms/{id}/addresses"), json!({"ip_pool_id": p1, "address": "198.51.100.9"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded");
    assert_eq!(hv.live_nics(vm_id).len(), 1, "hot-plugged into the running VM");
    let seed = vmm_core::guest::read_seed(&hv.seed(vm_id).unwrap()).unwrap();
    assert!(seed.network_config.contains("198.51.100.9/24"));
    let taken = api
        .post(&format!("/api/v1/vms/{id}/addresses"), json!({"ip_pool_id": p1, "address": "198.51.100.9"}))
        .await;
    problem(&taken, 409, "address_in_use");
    let r = api.delete(&format!("/api/v1/vms/{id}/addresses/198.51.100.9")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded");
    assert_eq!(api.get(&format!("/api/v1/vms/{id}")).await.body["addresses"], vm["addresses"]);
    problem(&api.delete(&format!("/api/v1/vms/{id}/addresses/198.51.100.77")).await, 422, "invalid");

    hv.print(vm_id, "VMM-GUEST-READY {}\n");
    let log = api.get(&format!("/api/v1/vms/{id}/console-log?tail_bytes=100")).await;
    assert_eq!(log.status, StatusCode::OK);

    problem(
        &api.post(&format!("/api/v1/vms/{id}/clone"), json!({"name": "copy"})).await,
        409,
        "invalid_state",
    );
    api.wait(&api.post(&format!("/api/v1/vms/{id}/stop"), json!(null)).await.body["task"]).await;
    let r = api.post(&format!("/api/v1/vms/{id}/clone"), json!({"name": "copy"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let copy = r.body["vm"]["id"].as_str().unwrap().to_owned();
    assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded");
    let cloned = api.get(&format!("/api/v1/vms/{copy}")).await.body;
    assert_eq!(cloned["addresses"], json!(["198.51.100.3", "203.0.113.3"]), "its own addresses");
    assert_eq!(cloned["state"], "running");

    for vm in [&id, &copy] {
        let r = api.delete(&format!("/api/v1/vms/{vm}")).await;
        assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded");
    }
    assert_eq!(hv.leftovers(), 0, "no domain, volume, seed or disk kept aside");
    for p in [&p1, &p2] {
        assert_eq!(api.count(&format!("/api/v1/ip-pools/{}/leases", p.as_str().unwrap())).await, 0);
        assert_eq!(
            api.delete(&format!("/api/v1/ip-pools/{}", p.as_str().unwrap())).await.status,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(api.delete(&format!("/api/v1/images/{image_id}")).await.status, StatusCode::NO_CONTENT);
    assert!(hv.images().is_empty(), "the node's copy went with the image");
    assert_eq!(api.delete(&format!("/api/v1/networks/{net_id}")).await.status, StatusCode::NO_CONTENT);
    assert!(hv.networks().is_empty());
}
