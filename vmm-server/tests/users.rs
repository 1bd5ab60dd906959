//! Users, sign-in, tokens and roles through `app()` on the in-memory fakes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use vmm_core::memory::InMemoryConnector;
use vmm_core::{Clock, ManualClock, NodeUriPolicy, Vmm, VmmConfig};
use vmm_server::{app, AdminToken, AppState};

mod common;

use common::*;

impl Api {
    /// Adds a user as the admin; their id.
    async fn add_user(&self, email: &str, role: &str) -> String {
        let r = self
            .post("/api/v1/users", json!({"email": email, "password": "correct horse battery", "role": role}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    async fn login(&self, email: &str, password: &str) -> Reply {
        let req = Request::post("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"email": email, "password": password}).to_string()))
            .unwrap();
        self.send(req).await
    }

    /// Signs in; the session token.
    async fn session(&self, email: &str) -> String {
        let r = self.login(email, "correct horse battery").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    async fn get_as(&self, token: &str, uri: &str) -> Reply {
        self.call_as(token, Method::GET, uri, None).await
    }

    async fn post_as(&self, token: &str, uri: &str, body: Value) -> Reply {
        self.call_as(token, Method::POST, uri, Some(body)).await
    }
}

#[tokio::test]
async fn users_are_checked_and_sign_in_alike_for_every_wrong_answer() {
    let api = api().await;
    let me = api.get("/api/v1/users/me").await;
    assert_eq!(
        (me.status, me.body["email"].as_str(), me.body["role"].as_str()),
        (StatusCode::OK, Some("admin@localhost"), Some("admin"))
    );
    api.add_user("Ann@Example.com", "user").await;
    let users = api.get("/api/v1/users").await;
    assert_eq!(users.body["items"][0]["email"], "ann@example.com", "emails are kept lower-cased");
    assert!(users.body.to_string().find("correct horse").is_none(), "no password comes back");
    for (body, status, code) in [
        (
            json!({"email": "ann@example.com", "password": "correct horse battery", "role": "user"}),
            409,
            "conflict",
        ),
        (json!({"email": "bob@example.com", "password": "short", "role": "user"}), 422, "invalid"),
        (
            json!({"email": "not-an-email", "password": "correct horse battery", "role": "user"}),
            422,
            "invalid",
        ),
        (json!({"email": "bob@example.com", "role": "user"}), 422, "invalid"),
        (
            json!({"email": "bob@example.com", "password": "correct horse battery", "role": "god"}),
            422,
            "invalid",
        ),
        (
            json!({"email": "bob@example.com", "password": "correct horse battery", "role": "user", "is_admin": true}),
            422,
            "invalid",
        ),
    ] {
        problem(&api.post("/api/v1/users", body.clone()).await, status, code);
    }
    assert_eq!(
        api.get("/api/v1/users").await.body["items"].as_array().unwrap().len(),
        2,
        "nothing was added"
    );

    let wrong = api.login("ann@example.com", "wrong horse battery").await;
    let unknown = api.login("nobody@example.com", "correct horse battery").await;
    problem(&wrong, 401, "unauthorized");
    problem(&unknown, 401, "unauthorized");
    assert_eq!(wrong.body["detail"], unknown.body["detail"], "the same answer for both");
    let ok = api.login("ANN@example.com", "correct horse battery").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body["token"].as_str().unwrap().starts_with("vmm_"));
    assert!(ok.body["expires_at"].is_string());
    assert_eq!(ok.body["user"]["role"], "user");
}

#[tokio::test]
async fn each_role_reaches_what_its_rules_allow() {
    let api = api().await;
    for (email, role) in
        [("u@example.com", "user"), ("o@example.com", "operator"), ("r@example.com", "readonly")]
    {
        api.add_user(email, role).await;
    }
    let (user, operator, readonly) = (
        api.session("u@example.com").await,
        api.session("o@example.com").await,
        api.session("r@example.com").await,
    );

    // A user: themselves, their VMs, images and recipes; no nodes, no users list.
    assert_eq!(api.get_as(&user, "/api/v1/users/me").await.body["email"], "u@example.com");
    assert_eq!(api.get_as(&user, "/api/v1/images").await.status, StatusCode::OK);
    assert_eq!(api.get_as(&user, "/api/v1/recipes").await.status, StatusCode::OK);
    problem(&api.get_as(&user, "/api/v1/nodes").await, 403, "forbidden");
    problem(&api.get_as(&user, "/api/v1/users").await, 403, "forbidden");
    assert_eq!(api.get_as(&user, "/api/v1/vms").await.body["items"], json!([]));
    problem(
        &api.post_as(
            &user,
            "/api/v1/recipes",
            json!({"name": "r", "os_families": ["debian"], "script": "true"}),
        )
        .await,
        403,
        "forbidden",
    );

    // An operator: the fleet, not users.
    let node = api.post_as(&operator, "/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    assert_eq!(node.status, StatusCode::CREATED, "{}", node.body);
    assert_eq!(api.get_as(&operator, "/api/v1/vms").await.status, StatusCode::OK);
    problem(&api.get_as(&operator, "/api/v1/users").await, 403, "forbidden");
    problem(
        &api.post_as(
            &operator,
            "/api/v1/users",
            json!({"email": "x@example.com", "password": "correct horse battery", "role": "admin"}),
        )
        .await,
        403,
        "forbidden",
    );

    // Read-only: reads what an admin reads, changes nothing.
    assert_eq!(api.get_as(&readonly, "/api/v1/nodes").await.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(api.get_as(&readonly, "/api/v1/users").await.status, StatusCode::OK);
    problem(
        &api.post_as(&readonly, "/api/v1/nodes", json!({"name": "n2", "uri": "memory://n2"})).await,
        403,
        "forbidden",
    );
    let id = node.body["id"].as_str().unwrap();
    problem(
        &api.call_as(&readonly, Method::DELETE, &format!("/api/v1/nodes/{id}"), None).await,
        403,
        "forbidden",
    );
    assert_eq!(api.get("/api/v1/nodes").await.body["items"].as_array().unwrap().len(), 1, "nothing changed");

    // Another user's token is not found for a user; an admin sees it.
    let other = api.get("/api/v1/tokens").await;
    let admin_sees: Vec<&str> =
        other.body["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(admin_sees.len(), 3, "three sessions: {admin_sees:?}");
    let mine = api.get_as(&user, "/api/v1/tokens").await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1, "a user lists only their own");
    let operators =
        api.get_as(&operator, "/api/v1/tokens").await.body["items"][0]["id"].as_str().unwrap().to_owned();
    problem(
        &api.call_as(&user, Method::DELETE, &format!("/api/v1/tokens/{operators}"), None).await,
        404,
        "token_not_found",
    );
    assert_eq!(api.get_as(&operator, "/api/v1/users/me").await.status, StatusCode::OK, "still works");
}

#[tokio::test]
async fn tokens_are_narrower_revocable_and_die_with_their_user() {
    let api = api().await;
    let ann = api.add_user("ann@example.com", "operator").await;
    let session = api.session("ann@example.com").await;
    let made = api.post_as(&session, "/api/v1/tokens", json!({"name": "ci", "role": "user"})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let ci = made.body["token"].as_str().unwrap().to_owned();
    assert_eq!(made.body["role"], "user");
    // Narrower: the user token cannot reach nodes, the session can.
    problem(&api.get_as(&ci, "/api/v1/nodes").await, 403, "forbidden");
    assert_eq!(api.get_as(&session, "/api/v1/nodes").await.status, StatusCode::OK);
    // Never more than the holder.
    problem(
        &api.post_as(&session, "/api/v1/tokens", json!({"name": "up", "role": "admin"})).await,
        422,
        "invalid",
    );
    problem(
        &api.post_as(&ci, "/api/v1/tokens", json!({"name": "up", "role": "operator"})).await,
        422,
        "invalid",
    );
    let child = api.post_as(&ci, "/api/v1/tokens", json!({"name": "child"})).await;
    assert_eq!(child.body["role"], "user", "a token made with a narrow token is as narrow");
    problem(
        &api.post_as(
            &session,
            "/api/v1/tokens",
            json!({"name": "past", "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await,
        422,
        "invalid",
    );
    problem(&api.post_as(&session, "/api/v1/tokens", json!({"name": " padded"})).await, 422, "invalid");

    // The token itself is never listed.
    let listed = api.get_as(&session, "/api/v1/tokens").await;
    assert!(!listed.body.to_string().contains(&ci[4..]), "{}", listed.body);

    // Revoked: refused on the next request.
    let id = made.body["id"].as_str().unwrap();
    let r = api.call_as(&session, Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    problem(&api.get_as(&ci, "/api/v1/users/me").await, 401, "unauthorized");

    // Logout ends the session.
    let second = api.session("ann@example.com").await;
    assert_eq!(api.post_as(&second, "/api/v1/auth/logout", json!({})).await.status, StatusCode::NO_CONTENT);
    problem(&api.get_as(&second, "/api/v1/users/me").await, 401, "unauthorized");

    // Disabled: every token stops, sign-in is refused; enabled again, the session works.
    let r =
        api.call(Method::PATCH, &format!("/api/v1/users/{ann}"), Some(json!({"state": "disabled"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    problem(&api.get_as(&session, "/api/v1/users/me").await, 401, "unauthorized");
    problem(&api.login("ann@example.com", "correct horse battery").await, 401, "unauthorized");
    api.call(Method::PATCH, &format!("/api/v1/users/{ann}"), Some(json!({"state": "active"}))).await;
    assert_eq!(api.get_as(&session, "/api/v1/users/me").await.status, StatusCode::OK);

    // Demoted below a token's role: the token stops rather than outrank its user.
    let op = api.post_as(&session, "/api/v1/tokens", json!({"name": "op", "role": "operator"})).await;
    let op = op.body["token"].as_str().unwrap().to_owned();
    api.call(Method::PATCH, &format!("/api/v1/users/{ann}"), Some(json!({"role": "user"}))).await;
    problem(&api.get_as(&op, "/api/v1/users/me").await, 401, "unauthorized");
    assert_eq!(
        api.get_as(&session, "/api/v1/users/me").await.body["role"],
        "user",
        "the session follows the user"
    );

    // Deleted: their tokens go with them.
    assert_eq!(
        api.call(Method::DELETE, &format!("/api/v1/users/{ann}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    problem(&api.get_as(&session, "/api/v1/users/me").await, 401, "unauthorized");
    assert!(api.get("/api/v1/tokens").await.body["items"].as_array().unwrap().is_empty());
    // The first admin cannot lock themselves out.
    let me = api.get("/api/v1/users/me").await.body["id"].as_str().unwrap().to_owned();
    problem(
        &api.call(Method::PATCH, &format!("/api/v1/users/{me}"), Some(json!({"role": "user"}))).await,
        409,
        "conflict",
    );
    problem(&api.call(Method::DELETE, &format!("/api/v1/users/{me}"), None).await, 409, "conflict");
    // Nor can another admin take away the one the admin token acts as.
    api.add_user("second@example.com", "admin").await;
    let second = api.session("second@example.com").await;
    for (method, body) in [(Method::DELETE, None), (Method::PATCH, Some(json!({"state": "disabled"})))] {
        problem(&api.call_as(&second, method, &format!("/api/v1/users/{me}"), body).await, 409, "conflict");
    }
    assert_eq!(api.get("/api/v1/users/me").await.status, StatusCode::OK, "the admin token still works");
}

#[tokio::test]
async fn sessions_and_tokens_expire_by_the_clock() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let config = VmmConfig {
        node_uris: NodeUriPolicy::for_tests(),
        session_ttl: std::time::Duration::from_secs(3600),
        ..VmmConfig::default()
    };
    let vmm = Vmm::builder()
        .with_connector(Arc::new(InMemoryConnector::new()))
        .with_clock(clock.clone())
        .with_config(config)
        .build();
    let api =
        Api { app: app(AppState::new(vmm, AdminToken::new(TOKEN).unwrap())), connector: Default::default() };
    api.add_user("ann@example.com", "user").await;
    let session = api.session("ann@example.com").await;
    let soon = (clock.now() + chrono::Duration::minutes(10)).to_rfc3339();
    let short = api.post_as(&session, "/api/v1/tokens", json!({"name": "short", "expires_at": soon})).await;
    let short = short.body["token"].as_str().unwrap().to_owned();
    assert_eq!(api.get_as(&short, "/api/v1/users/me").await.status, StatusCode::OK);
    clock.advance(chrono::Duration::minutes(11));
    problem(&api.get_as(&short, "/api/v1/users/me").await, 401, "unauthorized");
    assert_eq!(api.get_as(&session, "/api/v1/users/me").await.status, StatusCode::OK);
    clock.advance(chrono::Duration::minutes(50));
    problem(&api.get_as(&session, "/api/v1/users/me").await, 401, "unauthorized");
}

#[tokio::test]
async fn the_fifth_failed_sign_in_shuts_the_account_out_whether_it_exists_or_not() {
    for email in ["ann@example.com", "nobody@example.com"] {
        let api = api().await;
        api.add_user("ann@example.com", "user").await;
        let statuses: Vec<u16> =
            sign_ins(&api, email, "wrong horse battery", 5).await.iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(statuses, [401, 401, 401, 401, 429], "{email}");
        let r = api.login(email, "correct horse battery").await;
        problem(&r, 429, "too_many_requests");
        assert!(r.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() > 200);
    }
}

/// `n` sign-ins of `email` one after the other.
async fn sign_ins(api: &Api, email: &str, password: &str, n: usize) -> Vec<Reply> {
    let mut replies = Vec::new();
    for _ in 0..n {
        replies.push(api.login(email, password).await);
    }
    replies
}

#[tokio::test]
async fn another_users_vms_and_tasks_are_not_found_anywhere() {
    let api = api().await;
    assert_eq!(
        api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await.status,
        StatusCode::CREATED
    );
    let a_id = api.add_user("a@example.com", "user").await;
    let b_id = api.add_user("b@example.com", "user").await;
    api.add_user("o@example.com", "operator").await;
    api.add_user("r@example.com", "readonly").await;
    let (a, b) = (api.session("a@example.com").await, api.session("b@example.com").await);
    let (operator, readonly) = (api.session("o@example.com").await, api.session("r@example.com").await);

    let spec = json!({"name": "a-vm", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let made = api.post_as(&a, "/api/v1/vms", spec.clone()).await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
    assert_eq!(made.body["vm"]["owner_id"], a_id.as_str(), "a user's VM is theirs");
    let vm = made.body["vm"]["id"].as_str().unwrap().to_owned();
    let task = made.body["task"]["id"].as_str().unwrap().to_owned();
    let done = api.get_as(&a, &format!("/api/v1/tasks/{task}/wait?timeout_s=30")).await;
    assert_eq!(done.body["state"], "succeeded", "{}", done.body);

    // B: nothing of A's, anywhere, and the same answer as for what does not exist.
    assert!(api.get_as(&b, "/api/v1/vms").await.body["items"].as_array().unwrap().is_empty());
    assert!(api.get_as(&b, "/api/v1/tasks").await.body["items"].as_array().unwrap().is_empty());
    assert!(api.get_as(&b, &format!("/api/v1/tasks?vm_id={vm}")).await.body["items"]
        .as_array()
        .unwrap()
        .is_empty());
    for (method, uri, body) in [
        (Method::GET, format!("/api/v1/vms/{vm}"), None),
        (Method::GET, format!("/api/v1/vms/{vm}/console-log"), None),
        (Method::PATCH, format!("/api/v1/vms/{vm}"), Some(json!({"name": "mine now"}))),
        (Method::POST, format!("/api/v1/vms/{vm}/stop"), None),
        (Method::POST, format!("/api/v1/vms/{vm}/clone"), Some(json!({"name": "copy"}))),
        (Method::DELETE, format!("/api/v1/vms/{vm}"), None),
    ] {
        let r = api.call_as(&b, method.clone(), &uri, body.clone()).await;
        problem(&r, 404, "vm_not_found");
        let missing = uri.replace(&vm, "01900000-0000-7000-8000-000000000009");
        let r2 = api.call_as(&b, method, &missing, body).await;
        assert_eq!(r2.status, r.status, "{uri}: the same as for a VM that does not exist");
    }
    for (method, uri) in [
        (Method::GET, format!("/api/v1/tasks/{task}")),
        (Method::GET, format!("/api/v1/tasks/{task}/wait?timeout_s=0")),
        (Method::POST, format!("/api/v1/tasks/{task}/cancel")),
    ] {
        problem(&api.call_as(&b, method, &uri, None).await, 404, "task_not_found");
    }

    // A sees their own; an operator sees and acts on everyone's; read-only sees, cannot act.
    assert_eq!(api.get_as(&a, "/api/v1/vms").await.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(api.get_as(&a, &format!("/api/v1/tasks/{task}")).await.status, StatusCode::OK);
    assert_eq!(api.get_as(&readonly, &format!("/api/v1/vms/{vm}")).await.status, StatusCode::OK);
    problem(
        &api.call_as(&readonly, Method::POST, &format!("/api/v1/vms/{vm}/stop"), None).await,
        403,
        "forbidden",
    );
    let stop = api.call_as(&operator, Method::POST, &format!("/api/v1/vms/{vm}/stop"), None).await;
    assert_eq!(stop.status, StatusCode::ACCEPTED, "{}", stop.body);
    let stopped = stop.body["task"]["id"].as_str().unwrap();
    api.get_as(&operator, &format!("/api/v1/tasks/{stopped}/wait?timeout_s=30")).await;
    assert_eq!(
        api.get_as(&a, "/api/v1/tasks").await.body["items"].as_array().unwrap().len(),
        2,
        "A sees the operator's task on their VM"
    );

    // Owners: a user makes VMs for themselves only; an admin for anyone who exists.
    let for_b = json!({"name": "b-vm", "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "owner_id": b_id});
    problem(&api.post_as(&a, "/api/v1/vms", for_b.clone()).await, 403, "forbidden");
    let by_admin = api.post("/api/v1/vms", for_b).await;
    assert_eq!(by_admin.body["vm"]["owner_id"], b_id.as_str(), "{}", by_admin.body);
    let nobody = json!({"name": "x", "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "owner_id": "01900000-0000-7000-8000-000000000009"});
    problem(&api.post("/api/v1/vms", nobody).await, 422, "invalid");
    assert_eq!(api.get_as(&b, "/api/v1/vms").await.body["items"].as_array().unwrap().len(), 1);

    // A user who owns VMs is not deleted from under them.
    problem(&api.call(Method::DELETE, &format!("/api/v1/users/{a_id}"), None).await, 409, "conflict");

    // An admin gives A's VM to B, alone in its patch; nobody else may.
    let give = json!({"owner_id": b_id});
    problem(
        &api.call_as(&a, Method::PATCH, &format!("/api/v1/vms/{vm}"), Some(give.clone())).await,
        403,
        "forbidden",
    );
    problem(
        &api.call_as(&operator, Method::PATCH, &format!("/api/v1/vms/{vm}"), Some(give.clone())).await,
        403,
        "forbidden",
    );
    problem(
        &api.call(Method::PATCH, &format!("/api/v1/vms/{vm}"), Some(json!({"owner_id": b_id, "name": "x"})))
            .await,
        422,
        "invalid",
    );
    problem(
        &api.call(
            Method::PATCH,
            &format!("/api/v1/vms/{vm}"),
            Some(json!({"owner_id": "01900000-0000-7000-8000-000000000009"})),
        )
        .await,
        422,
        "invalid",
    );
    let given = api.call(Method::PATCH, &format!("/api/v1/vms/{vm}"), Some(give)).await;
    assert_eq!(
        (given.status, given.body["owner_id"].as_str()),
        (StatusCode::OK, Some(b_id.as_str())),
        "{}",
        given.body
    );
    assert_eq!(api.get_as(&b, &format!("/api/v1/vms/{vm}")).await.status, StatusCode::OK);
    problem(&api.get_as(&a, &format!("/api/v1/vms/{vm}")).await, 404, "vm_not_found");
    // B deletes it and follows the delete to its end: the task stays B's once the VM is gone.
    let gone = api.call_as(&b, Method::DELETE, &format!("/api/v1/vms/{vm}"), None).await;
    let gone = gone.body["task"]["id"].as_str().unwrap().to_owned();
    let done = api.get_as(&b, &format!("/api/v1/tasks/{gone}/wait?timeout_s=30")).await;
    assert_eq!(
        (done.status, done.body["state"].as_str()),
        (StatusCode::OK, Some("succeeded")),
        "{}",
        done.body
    );
    problem(&api.get_as(&a, &format!("/api/v1/tasks/{gone}")).await, 404, "task_not_found");
    assert_eq!(
        api.call(Method::DELETE, &format!("/api/v1/users/{a_id}"), None).await.status,
        StatusCode::NO_CONTENT,
        "A owns nothing now"
    );
}

#[tokio::test]
async fn quotas_refuse_what_does_not_fit_and_cannot_drop_below_usage() {
    let api = api().await;
    api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await;
    let r = api
        .post(
            "/api/v1/users",
            json!({"email": "q@example.com", "password": "correct horse battery", "role": "user", "quota": {"max_vms": 1, "max_memory_mib": 256}}),
        )
        .await;
    assert_eq!(r.body["quota"], json!({"max_vms": 1, "max_memory_mib": 256}), "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    problem(
        &api.call(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({"quota": {"max_vms": 1, "disk": 2}})),
        )
        .await,
        422,
        "invalid",
    );
    let q = api.session("q@example.com").await;
    let big = api
        .post_as(&q, "/api/v1/vms", json!({"name": "big", "vcpus": 1, "memory_mib": 512, "disk_gib": 1}))
        .await;
    problem(&big, 409, "quota_exceeded");
    assert_eq!(big.body["field"], "max_memory_mib");
    assert!(big.body["detail"].as_str().unwrap().contains("max_memory_mib is 256"), "{}", big.body);
    let ok = api
        .post_as(&q, "/api/v1/vms", json!({"name": "ok", "vcpus": 1, "memory_mib": 256, "disk_gib": 1}))
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let task = ok.body["task"]["id"].as_str().unwrap();
    api.get_as(&q, &format!("/api/v1/tasks/{task}/wait?timeout_s=30")).await;
    let vm = ok.body["vm"]["id"].as_str().unwrap();
    let grow =
        api.call_as(&q, Method::PATCH, &format!("/api/v1/vms/{vm}"), Some(json!({"memory_mib": 512}))).await;
    problem(&grow, 409, "quota_exceeded");
    problem(
        &api.post_as(&q, "/api/v1/vms", json!({"name": "two", "vcpus": 1, "memory_mib": 128, "disk_gib": 1}))
            .await,
        409,
        "quota_exceeded",
    );
    // Below what the user holds: refused, nothing changed.
    let lower = api
        .call(Method::PATCH, &format!("/api/v1/users/{id}"), Some(json!({"quota": {"max_memory_mib": 128}})))
        .await;
    problem(&lower, 422, "invalid");
    assert_eq!(api.get(&format!("/api/v1/users/{id}")).await.body["quota"]["max_memory_mib"], 256);
    let raised =
        api.call(Method::PATCH, &format!("/api/v1/users/{id}"), Some(json!({"quota": {"max_vms": 2}}))).await;
    assert_eq!(raised.status, StatusCode::OK, "{}", raised.body);
    let two = api
        .post_as(&q, "/api/v1/vms", json!({"name": "two", "vcpus": 1, "memory_mib": 128, "disk_gib": 1}))
        .await;
    assert_eq!(two.status, StatusCode::ACCEPTED, "{}", two.body);
}

#[tokio::test]
async fn ssh_keys_are_each_users_own() {
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx5ZWNR0v1Jbf5Jz1Ubs5YqQ2t4aH1r0WAXLrNQHdCX you@laptop";
    let api = api().await;
    api.add_user("a@example.com", "user").await;
    api.add_user("b@example.com", "user").await;
    api.add_user("r@example.com", "readonly").await;
    let (a, b, r) = (
        api.session("a@example.com").await,
        api.session("b@example.com").await,
        api.session("r@example.com").await,
    );
    let made = api.post_as(&a, "/api/v1/ssh-keys", json!({"name": "laptop", "public_key": KEY})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert!(made.body["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    let id = made.body["id"].as_str().unwrap().to_owned();
    problem(
        &api.post_as(&a, "/api/v1/ssh-keys", json!({"name": "again", "public_key": KEY})).await,
        409,
        "conflict",
    );
    for bad in [
        json!({"name": "two", "public_key": format!("{KEY}\n{KEY}")}),
        json!({"name": "junk", "public_key": "ssh-rsa nope"}),
        json!({"name": "x", "public_key": KEY, "extra": 1}),
    ] {
        problem(&api.post_as(&a, "/api/v1/ssh-keys", bad).await, 422, "invalid");
    }
    assert_eq!(
        api.post_as(&b, "/api/v1/ssh-keys", json!({"name": "mine too", "public_key": KEY})).await.status,
        StatusCode::CREATED,
        "another library may hold it"
    );
    assert_eq!(api.get_as(&a, "/api/v1/ssh-keys").await.body["items"].as_array().unwrap().len(), 1);
    problem(&api.get_as(&b, &format!("/api/v1/ssh-keys/{id}")).await, 404, "ssh_key_not_found");
    problem(
        &api.call_as(&b, Method::DELETE, &format!("/api/v1/ssh-keys/{id}"), None).await,
        404,
        "ssh_key_not_found",
    );
    assert_eq!(
        api.get_as(&r, "/api/v1/ssh-keys").await.body["items"].as_array().unwrap().len(),
        2,
        "read-only reads all"
    );
    problem(
        &api.post_as(&r, "/api/v1/ssh-keys", json!({"name": "ro", "public_key": KEY})).await,
        403,
        "forbidden",
    );
    assert_eq!(
        api.call_as(&a, Method::DELETE, &format!("/api/v1/ssh-keys/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn every_change_and_sign_in_is_audited_and_users_read_only_their_own() {
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx5ZWNR0v1Jbf5Jz1Ubs5YqQ2t4aH1r0WAXLrNQHdCX you@laptop";
    let api = api().await;
    let admin = api.get("/api/v1/users/me").await.body["id"].as_str().unwrap().to_owned();
    let ann = api.add_user("ann@example.com", "user").await;
    problem(&api.login("Ann@example.com", "wrong horse battery").await, 401, "unauthorized");
    let session = api.session("ann@example.com").await;
    let key = api.post_as(&session, "/api/v1/ssh-keys", json!({"name": "k", "public_key": KEY})).await;
    problem(
        &api.post_as(&session, "/api/v1/nodes", json!({"name": "n", "uri": "memory://n"})).await,
        403,
        "forbidden",
    );

    let all = api.get("/api/v1/audit").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let rows = all.body["items"].as_array().unwrap();
    let summary: Vec<(String, u64)> = rows
        .iter()
        .map(|r| (r["action"].as_str().unwrap().to_owned(), r["outcome"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("POST /api/v1/nodes".to_owned(), 403),
            ("POST /api/v1/ssh-keys".to_owned(), 201),
            ("POST /api/v1/auth/login".to_owned(), 200),
            ("POST /api/v1/auth/login".to_owned(), 401),
            ("POST /api/v1/users".to_owned(), 201),
        ],
        "newest first"
    );
    assert_eq!(rows[4]["actor_id"], admin.as_str());
    assert_eq!(rows[4]["target_id"], ann.as_str(), "the user made");
    assert!(rows[4]["request_id"].is_string() && rows[4]["client"].is_string());
    assert_eq!(
        (rows[3]["actor_id"].is_null(), rows[3]["target_id"].as_str()),
        (true, Some("ann@example.com"))
    );
    assert_eq!(rows[1]["target_id"], key.body["id"]);
    assert!(rows[1]["token_id"].is_string(), "the session token that made it");
    assert!(!all.body.to_string().contains("horse"), "no password in the log");

    let own = api.get_as(&session, "/api/v1/audit").await.body["items"].as_array().unwrap().len();
    assert_eq!(own, 3, "ann reads her own: her sign-in, her key, her refused node");
    let others = api.get_as(&session, &format!("/api/v1/audit?actor_id={admin}")).await;
    assert_eq!(others.body["items"], json!([]));
    let on_key = api.get(&format!("/api/v1/audit?target_id={}", key.body["id"].as_str().unwrap())).await;
    assert_eq!(on_key.body["items"].as_array().unwrap().len(), 1);
    let paged = api.get("/api/v1/audit?limit=2").await;
    assert_eq!(paged.body["items"].as_array().unwrap().len(), 2);
    assert!(paged.body["next_cursor"].is_string());
}
