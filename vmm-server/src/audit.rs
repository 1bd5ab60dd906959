//! Records every change asked of the API in the audit log: who (the actor and token), what
//! (the method and route), which object (the first id in the path, or the one made), from
//! where, the request id and the status answered. Reads are not recorded.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::LOCATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use vmm_core::{Actor, AuditEntry, AuditId};

use crate::auth::client_ip;
use crate::AppState;

/// The first UUID in `path`: the object a route names.
fn first_id(path: &str) -> Option<String> {
    path.split('/').find(|s| uuid::Uuid::parse_str(s).is_ok()).map(str::to_owned)
}

/// The audit middleware: runs the request, then records it if it asked for a change.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let actor = request.extensions().get::<Actor>().copied();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |m| m.as_str().to_owned());
    let action = format!("{} {route}", request.method());
    let named = first_id(request.uri().path());
    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let client = client_ip(&request).to_string();
    let response = next.run(request).await;
    let made = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).and_then(first_id);
    let entry = AuditEntry {
        id: AuditId::new(),
        at: chrono::Utc::now(),
        actor_id: actor.map(|a| a.user_id),
        token_id: actor.and_then(|a| a.token_id),
        action,
        target_id: named.or(made),
        request_id,
        client: Some(client),
        outcome: response.status().as_u16(),
    };
    write(&state, entry).await;
    response
}

/// Appends `entry`; a failure is logged, never turned into the request's answer.
pub(crate) async fn write(state: &AppState, entry: AuditEntry) {
    if let Err(e) = state.vmm.record_audit(entry).await {
        tracing::error!(error = %vmm_core::error_chain(&e), "could not write an audit entry");
    }
}
