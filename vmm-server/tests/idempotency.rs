//! `Idempotency-Key` on POST: a retry answers as the first try did, another request with
//! the key is refused, a retry while the first try runs is a conflict, and 16 concurrent
//! tries make one VM.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use vmm_core::Role;

mod common;

use common::*;

async fn post_with_key(api: &Api, token: &str, uri: &str, key: &str, body: &Value) -> Reply {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    api.send(req).await
}

fn vm_spec(name: &str) -> Value {
    json!({"name": name, "vcpus": 1, "memory_mib": 128, "disk_gib": 1})
}

async fn vm_count(api: &Api) -> usize {
    api.get("/api/v1/vms?limit=1000").await.body["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_and_another_request_is_refused() {
    let api = api().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    let first = post_with_key(&api, TOKEN, "/api/v1/vms", "create-web-1", &vm_spec("web-1")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = post_with_key(&api, TOKEN, "/api/v1/vms", "\"create-web-1\"", &vm_spec("web-1")).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body, "the same VM and task");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers[header::LOCATION], first.headers[header::LOCATION]);
    assert_eq!(again.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(vm_count(&api).await, 1);

    let other = post_with_key(&api, TOKEN, "/api/v1/vms", "create-web-1", &vm_spec("web-2")).await;
    problem(&other, 422, "invalid");
    assert_eq!(other.body["field"], "Idempotency-Key");
    let elsewhere = post_with_key(&api, TOKEN, "/api/v1/ip-pools", "create-web-1", &vm_spec("web-1")).await;
    problem(&elsewhere, 422, "invalid");
    assert_eq!(vm_count(&api).await, 1);

    // A refused first try is an answer too, and is kept.
    let bad = json!({"name": "x", "vcpus": 0, "memory_mib": 128, "disk_gib": 1});
    let refused = post_with_key(&api, TOKEN, "/api/v1/vms", "bad-one", &bad).await;
    problem(&refused, 422, "invalid");
    let refused_again = post_with_key(&api, TOKEN, "/api/v1/vms", "bad-one", &bad).await;
    assert_eq!((refused_again.status, &refused_again.body), (refused.status, &refused.body));
    assert_eq!(refused_again.headers[header::CONTENT_TYPE], "application/problem+json");

    for key in ["", "has space", &"k".repeat(256)] {
        let r = post_with_key(&api, TOKEN, "/api/v1/vms", key, &vm_spec("web-3")).await;
        problem(&r, 422, "invalid");
    }
    assert_eq!(vm_count(&api).await, 1);
}

#[tokio::test]
async fn sixteen_concurrent_tries_make_one_vm_and_one_lease() {
    let api = api().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    let pool = api.post("/api/v1/ip-pools", json!({"name": "p", "cidr": "198.51.100.0/24"})).await.body;
    let spec = json!({"name": "web", "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "ip_pool_id": pool["id"]});
    let tries = (0..16).map(|_| post_with_key(&api, TOKEN, "/api/v1/vms", "one-web", &spec));
    let answers = futures::future::join_all(tries).await;
    let made: Vec<&Reply> = answers.iter().filter(|r| r.status == StatusCode::ACCEPTED).collect();
    assert!(!made.is_empty());
    for r in &answers {
        assert!(matches!(r.status.as_u16(), 202 | 409), "{} {}", r.status, r.body);
    }
    for r in &made {
        assert_eq!(r.body["vm"]["id"], made[0].body["vm"]["id"]);
    }
    assert_eq!(vm_count(&api).await, 1);
    let leases = api.get(&format!("/api/v1/ip-pools/{}/leases", pool["id"].as_str().unwrap())).await;
    assert_eq!(leases.body["items"].as_array().unwrap().len(), 1, "{}", leases.body);
}

#[tokio::test]
async fn keys_are_each_users_own() {
    let (api, vmm) = api_with_vmm().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    let (_, a) = user_with_token(&vmm, "a@example.com", Role::User).await;
    let (_, b) = user_with_token(&vmm, "b@example.com", Role::User).await;
    let ra = post_with_key(&api, &a, "/api/v1/vms", "same-key", &vm_spec("web")).await;
    let rb = post_with_key(&api, &b, "/api/v1/vms", "same-key", &vm_spec("web")).await;
    assert_eq!((ra.status, rb.status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_ne!(ra.body["vm"]["id"], rb.body["vm"]["id"], "B never gets A's answer");
    assert_eq!(vm_count(&api).await, 2);
}

#[tokio::test]
async fn a_new_tokens_secret_is_not_kept_and_keys_are_each_tokens() {
    let (api, vmm) = api_with_vmm().await;
    let (user, first) = user_with_token(&vmm, "c@example.com", Role::User).await;
    let made = post_with_key(&api, &first, "/api/v1/tokens", "new-token", &json!({"name": "ci"})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert!(made.body["token"].is_string());
    let replay = post_with_key(&api, &first, "/api/v1/tokens", "new-token", &json!({"name": "ci"})).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body["id"], made.body["id"], "the same token");
    assert!(replay.body["token"].is_null(), "a token is shown once: {}", replay.body);
    // Another token of the same user has keys of its own.
    let actor = vmm_core::Actor::new(&user, None).unwrap();
    let spec = vmm_core::TokenSpec { name: "second".into(), role: None, expires_at: None };
    let (_, second) = vmm.create_token(&actor, spec).await.unwrap();
    let other =
        post_with_key(&api, second.expose(), "/api/v1/tokens", "new-token", &json!({"name": "ci"})).await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert!(other.headers.get("idempotent-replayed").is_none());
    assert_ne!(other.body["id"], made.body["id"]);
}
