//! Records every change asked of the API in the audit log: who (the actor and token), what
//! (the method and route), which object (the first id in the path, or the one made), from
//! where, the request id and the status answered. The entry is written before the request
//! runs and completed after, so that a change is never made unrecorded; if the entry
//! cannot be written, the change is not made (503). Reads are not recorded.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::LOCATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vmm_core::{Actor, AuditEntry, AuditId, AuditOutcome};

use crate::auth::client_ip;
use crate::{ApiError, AppState};

/// The first UUID in `path`: the object a route names.
fn first_id(path: &str) -> Option<String> {
    path.split('/').find(|s| uuid::Uuid::parse_str(s).is_ok()).map(str::to_owned)
}

/// The audit middleware: records the request, runs it, then records its outcome.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let actor = request.extensions().get::<Actor>().copied();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |m| m.as_str().to_owned());
    let entry = AuditEntry {
        id: AuditId::new(),
        at: chrono::Utc::now(),
        actor_id: actor.map(|a| a.user_id),
        token_id: actor.and_then(|a| a.token_id),
        action: format!("{} {route}", request.method()),
        target_id: first_id(request.uri().path()),
        request_id: request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned),
        client: Some(client_ip(&request).to_string()),
        outcome: 0,
    };
    let id = match begin(&state, entry).await {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let response = next.run(request).await;
    let made = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).and_then(first_id);
    if let Err(e) = state
        .vmm
        .complete_audit(
            id,
            &AuditOutcome { status: response.status().as_u16(), target_id: made, actor_id: None },
        )
        .await
    {
        tracing::error!(error = %vmm_core::error_chain(&e), audit = %id, "could not complete an audit entry");
    }
    response
}

/// Writes `entry` before what it records is done; 503 if it cannot be written, so that
/// nothing is done unrecorded.
pub(crate) async fn begin(state: &AppState, entry: AuditEntry) -> Result<AuditId, ApiError> {
    state.vmm.record_audit(entry).await.map_err(|e| {
        tracing::error!(error = %vmm_core::error_chain(&e), "could not write an audit entry; the request is refused");
        ApiError::Core(vmm_core::Error::unavailable("audit log", "cannot record the request"))
    })
}

/// Completes the entry with the status answered and the user it was about, if now known.
pub(crate) async fn finish(state: &AppState, id: AuditId, outcome: u16, actor: Option<vmm_core::UserId>) {
    if let Err(e) = state
        .vmm
        .complete_audit(id, &AuditOutcome { status: outcome, target_id: None, actor_id: actor })
        .await
    {
        tracing::error!(error = %vmm_core::error_chain(&e), audit = %id, "could not complete an audit entry");
    }
}
