//! The event log over HTTP: pages with a cursor that never misses nor repeats, type filters,
//! what each user may read, and the Server-Sent Events stream with `Last-Event-ID`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vmm_core::{Role, Vmm};

mod common;

use common::*;

/// A user of `role` and a token of theirs.
async fn user(vmm: &Vmm, email: &str, role: Role) -> (String, String) {
    let (user, token) = user_with_token(vmm, email, role).await;
    (user.id.to_string(), token)
}

fn types(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

/// A VM made, stopped and deleted as `token`; returns its id.
async fn vm_life(api: &Api, token: &str) -> String {
    let body = json!({"name": "web-1", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let made = api.call_as(token, Method::POST, "/api/v1/vms", Some(body)).await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
    let id = made.body["vm"]["id"].as_str().unwrap().to_owned();
    api.wait(&made.body["task"]).await;
    for action in ["stop", "delete"] {
        let (method, uri) = match action {
            "stop" => (Method::POST, format!("/api/v1/vms/{id}/stop")),
            _ => (Method::DELETE, format!("/api/v1/vms/{id}")),
        };
        let r = api.call_as(token, method, &uri, None).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{action}: {}", r.body);
        api.wait(&r.body["task"]).await;
    }
    id
}

#[tokio::test]
async fn a_vm_life_is_paged_in_order_and_filtered_by_type() {
    let (api, vmm) = api_with_vmm().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    let (ann, token) = user(&vmm, "ann@example.com", Role::User).await;
    let vm = vm_life(&api, &token).await;

    let all = api.get("/api/v1/events?limit=1000").await;
    assert_eq!(all.status, StatusCode::OK);
    let got = types(&all.body);
    let vm_events: Vec<&str> = got.iter().map(String::as_str).filter(|t| t.starts_with("vm.")).collect();
    assert_eq!(vm_events, ["vm.created", "vm.stopped", "vm.deleted"]);
    assert!(got.contains(&"node.created".to_owned()));
    let ids: Vec<u64> =
        all.body["items"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(all.body["next_cursor"], ids.last().unwrap().to_string());
    // The VM's events name it, its owner and, for a task's, the task and who asked.
    let created = all.body["items"].as_array().unwrap().iter().find(|e| e["type"] == "vm.created").unwrap();
    assert_eq!(created["vm_id"], vm.as_str());
    assert_eq!(created["owner_id"], ann.as_str());
    assert_eq!(created["actor_id"], ann.as_str());
    assert_eq!(created["data"]["vm_name"], "web-1");

    // Two at a time with the cursor: the same events, once each.
    let mut paged = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let page = api.get(&format!("/api/v1/events?limit=2&after={after}")).await;
        if page.body["items"].as_array().unwrap().is_empty() {
            assert_eq!(page.body["next_cursor"], after.as_str(), "an empty page keeps the cursor");
            break;
        }
        paged.extend(types(&page.body));
        after = page.body["next_cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(paged, got);

    let tasks = api.get("/api/v1/events?types=task.succeeded,vm.*&limit=1000").await;
    assert!(types(&tasks.body).iter().all(|t| t == "task.succeeded" || t.starts_with("vm.")));
    assert_eq!(types(&tasks.body).iter().filter(|t| *t == "task.succeeded").count(), 3);

    for bad in ["types=vm", "types=nope.*", "limit=0", "limit=1001", "after=-1", "colour=red"] {
        let r = api.get(&format!("/api/v1/events?{bad}")).await;
        problem(&r, 422, "invalid");
    }
}

#[tokio::test]
async fn users_read_only_the_events_of_their_own_objects() {
    let (api, vmm) = api_with_vmm().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    let (a, a_token) = user(&vmm, "a@example.com", Role::User).await;
    let (_, b_token) = user(&vmm, "b@example.com", Role::User).await;
    let (o, operator) = user(&vmm, "o@example.com", Role::Operator).await;
    let (_, readonly) = user(&vmm, "r@example.com", Role::Readonly).await;
    let vm = vm_life(&api, &a_token).await;

    let read = |token: String| {
        let api = &api;
        async move { api.call_as(&token, Method::GET, "/api/v1/events?limit=1000", None).await.body }
    };
    let theirs = read(a_token.clone()).await;
    assert!(types(&theirs).contains(&"vm.deleted".to_owned()));
    for e in theirs["items"].as_array().unwrap() {
        assert_eq!(e["owner_id"], a.as_str(), "A reads only their own: {e}");
    }
    let b = read(b_token).await;
    assert!(!b.to_string().contains(&vm), "B reads A's VM: {b}");
    assert!(!b.to_string().contains(&a), "B reads of A: {b}");
    let op = read(operator).await;
    assert!(op.to_string().contains(&vm), "operators read the fleet");
    assert!(types(&op).contains(&"node.created".to_owned()));
    for e in
        op["items"].as_array().unwrap().iter().filter(|e| e["type"].as_str().unwrap().starts_with("user."))
    {
        assert_eq!(e["owner_id"], o.as_str(), "operators read no other user's events: {e}");
    }
    let ro = read(readonly).await;
    assert!(types(&ro).contains(&"user.created".to_owned()), "read-only reads everything");
}

/// Reads the stream at `uri` (with `last_id` as `Last-Event-ID`) until `n` events came;
/// returns each event's (id, type).
async fn stream(api: &Api, uri: &str, last_id: Option<u64>, n: usize) -> Vec<(u64, String)> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    if let Some(id) = last_id {
        req = req.header("last-event-id", id.to_string());
    }
    let res = api.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = res.into_body();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("an event within 20 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        // Whole events only: each ends with a blank line.
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
            if let (Some(id), Some(kind), Some(data)) = (field("id: "), field("event: "), field("data: ")) {
                let data: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(data["id"].as_u64().unwrap().to_string(), id);
                assert_eq!(data["type"], kind.as_str());
                events.push((id.parse().unwrap(), kind));
            }
        }
    }
    events
}

#[tokio::test]
async fn the_stream_sends_what_happens_and_resumes_from_last_event_id() {
    let (api, _) = api_with_vmm().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    // A reader waits before anything happens: it gets the node, then the VM's life live.
    let reader = {
        let api = Api { app: api.app.clone(), connector: api.connector.clone() };
        tokio::spawn(async move { stream(&api, "/api/v1/events/stream?types=vm.*", None, 3).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    vm_life(&api, TOKEN).await;
    let live = reader.await.unwrap();
    let kinds: Vec<&str> = live.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds, ["vm.created", "vm.stopped", "vm.deleted"]);

    // Everything, then from the middle with Last-Event-ID (which wins over `after`).
    let all: Vec<Value> =
        api.get("/api/v1/events?limit=1000").await.body["items"].as_array().unwrap().clone();
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let streamed = stream(&api, "/api/v1/events/stream", None, ids.len()).await;
    assert_eq!(streamed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    let middle = ids[ids.len() / 2];
    let resumed =
        stream(&api, "/api/v1/events/stream?after=0", Some(middle), ids.len() - ids.len() / 2 - 1).await;
    assert_eq!(resumed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids[ids.len() / 2 + 1..].to_vec());

    let r = api.call(Method::GET, "/api/v1/events/stream?types=bogus", None).await;
    problem(&r, 422, "invalid");
}
