//! Version, capabilities and health.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{NodeState, PageRequest};

use super::{Json, Problems};
use crate::AppState;

/// Version and what this server can do.
#[derive(Debug, Serialize, ToSchema)]
pub struct About {
    /// vmm's version.
    pub version: &'static str,
    /// The API version.
    pub api: &'static str,
    /// Features this server offers.
    pub capabilities: Vec<&'static str>,
}

/// Health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(about))
}

pub(super) fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

/// Whether this server can serve: the store answers, and every node not known to be down
/// answered once since it started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`; `starting` while a node has not answered yet; `unavailable` while the
    /// store does not answer.
    pub status: &'static str,
    /// Whether the store answered.
    pub store: bool,
    /// Nodes that must answer before the server is ready: all but those the reconciler
    /// found offline (0 once ready: nodes are not probed again, so that one node going
    /// down does not take the API out of service).
    pub nodes: usize,
    /// How many of them answered.
    pub nodes_answering: usize,
}

/// Probes are at most this often; answers in between repeat the last one.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Readiness, for a load balancer or an orchestrator; needs no token. 503 until the store
/// answers and every node not known to be down has answered once.
#[utoipa::path(get, path = "/api/v1/ready", operation_id = "get_readiness", tag = "meta", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn ready(State(s): State<AppState>) -> Response {
    let answer = |r: Readiness| {
        let code = if r.status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        (code, Json(r)).into_response()
    };
    let store_down = Readiness { status: "unavailable", store: false, nodes: 0, nodes_answering: 0 };
    if s.ready.load(Ordering::Acquire) {
        return match s.vmm.list_nodes(&PageRequest::first(1)).await {
            Ok(_) => answer(Readiness { status: "ready", store: true, nodes: 0, nodes_answering: 0 }),
            Err(_) => answer(store_down),
        };
    }
    // One probe at a time, and not more often than PROBE_EVERY: a caller that is not
    // authenticated must not make the server dial every node at will.
    let mut last = s.readiness.lock().await;
    if let Some((at, r)) = last.as_ref() {
        if at.elapsed() < PROBE_EVERY {
            return answer(r.clone());
        }
    }
    let r = match s.vmm.probe_all_nodes(Duration::from_secs(5)).await {
        Err(_) => store_down,
        Ok(probed) => {
            let due: Vec<bool> = probed
                .iter()
                .filter(|(n, _)| n.state != NodeState::Offline)
                .map(|(_, answers)| *answers)
                .collect();
            let answering = due.iter().filter(|a| **a).count();
            let status = if answering == due.len() { "ready" } else { "starting" };
            Readiness { status, store: true, nodes: due.len(), nodes_answering: answering }
        }
    };
    if r.status == "ready" {
        s.ready.store(true, Ordering::Release);
    }
    *last = Some((std::time::Instant::now(), r.clone()));
    answer(r)
}
/// Version and capabilities.
#[utoipa::path(get, path = "/api/v1", operation_id = "get_about", tag = "meta", responses((status = 200, body = About), Problems))]
async fn about() -> Json<About> {
    Json(About {
        version: env!("CARGO_PKG_VERSION"),
        api: "v1",
        capabilities: vec!["nodes", "ip-pools", "vms", "tasks", "long-poll", "cancel"],
    })
}

/// Health; needs no token.
#[utoipa::path(get, path = "/api/v1/health", operation_id = "get_health", tag = "meta", security(()), responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}
