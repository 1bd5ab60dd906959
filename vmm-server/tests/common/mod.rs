//! What the route tests share: the app over the in-memory fakes, requests with a token,
//! and problem+json checks.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vmm_core::memory::InMemoryConnector;
use vmm_core::{Actor, AuthSource, NodeUriPolicy, Quota, Role, TokenSpec, User, UserSpec, Vmm, VmmConfig};
use vmm_server::{app, AdminToken, AppState, PROBLEM_TYPE_PREFIX};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Api {
    pub app: Router,
    pub connector: Arc<InMemoryConnector>,
}

pub fn test_vmm(connector: Arc<InMemoryConnector>) -> Vmm {
    let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    Vmm::builder().with_connector(connector).with_config(config).build()
}

pub async fn api() -> Api {
    api_with_vmm().await.0
}

/// [`api`], and the service under it (with its workers running).
pub async fn api_with_vmm() -> (Api, Vmm) {
    let connector = Arc::new(InMemoryConnector::new());
    let vmm = test_vmm(connector.clone());
    tokio::spawn({
        let vmm = vmm.clone();
        async move { vmm.run_workers(std::future::pending()).await }
    });
    let state = AppState::new(vmm.clone(), AdminToken::new(TOKEN).unwrap());
    (Api { app: app(state), connector }, vmm)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Api {
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Reply { status, headers, body }
    }

    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call_as(TOKEN, method, uri, body).await
    }

    /// A request with `token`.
    pub async fn call_as(&self, token: &str, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    /// Waits for the task and returns it.
    pub async fn wait(&self, task: &Value) -> Value {
        let r = self.get(&format!("/api/v1/tasks/{}/wait?timeout_s=30", task["id"].as_str().unwrap())).await;
        assert_eq!(r.status, StatusCode::OK);
        r.body
    }
}

/// A problem+json answer with this status and code.
#[track_caller]
pub fn problem(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(r.body["code"], code, "{}", r.body);
    assert_eq!(r.body["status"], status);
    assert_eq!(r.body["type"], format!("{PROBLEM_TYPE_PREFIX}{}", code.replace('_', "-")));
}

/// A directory user of `role` (no password to hash), made by the first admin, and an API
/// token of theirs.
pub async fn user_with_token(vmm: &Vmm, email: &str, role: Role) -> (User, String) {
    let admin = vmm.bootstrap_admin("admin@localhost").await.unwrap();
    let admin = Actor::new(&admin, None).unwrap();
    let spec = UserSpec {
        email: email.into(),
        password: None,
        role,
        auth: AuthSource::Ldap,
        quota: Quota::default(),
    };
    let user = vmm.create_user(&admin, spec).await.unwrap();
    let actor = Actor::new(&user, None).unwrap();
    let spec = TokenSpec { name: "session".into(), role: None, expires_at: None };
    let (_, token) = vmm.create_token(&actor, spec).await.unwrap();
    (user, token.expose().to_owned())
}
