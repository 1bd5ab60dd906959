//! Version, capabilities and health.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{NodeId, PageRequest};

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

/// Whether this server can serve: the store answers, and every node answered once since
/// it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `starting` while a node has not answered yet, or `unavailable` while the
    /// store does not answer.
    pub status: &'static str,
    /// Whether the store answered.
    pub store: bool,
    /// Each node and whether it answered now (empty once ready: nodes are not probed
    /// again, so that one node down does not take the API out of service).
    pub nodes: Vec<NodeReadiness>,
}

/// One node's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeReadiness {
    /// The node.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Whether it answered.
    pub answers: bool,
}

/// Readiness, for a load balancer or an orchestrator; needs no token. 503 until the store
/// answers and every registered node has answered once.
#[utoipa::path(get, path = "/api/v1/ready", tag = "meta", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn ready(State(s): State<AppState>) -> Response {
    let ready = s.ready.load(Ordering::Acquire);
    let answer = |code: StatusCode, r: Readiness| (code, Json(r)).into_response();
    if ready {
        return match s.vmm.list_nodes(&PageRequest::first(1)).await {
            Ok(_) => answer(StatusCode::OK, Readiness { status: "ready", store: true, nodes: Vec::new() }),
            Err(_) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Readiness { status: "unavailable", store: false, nodes: Vec::new() },
            ),
        };
    }
    match s.vmm.probe_all_nodes(Duration::from_secs(5)).await {
        Err(_) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            Readiness { status: "unavailable", store: false, nodes: Vec::new() },
        ),
        Ok(probed) => {
            let all = probed.iter().all(|(_, answers)| *answers);
            let nodes = probed
                .into_iter()
                .map(|(n, answers)| NodeReadiness { id: n.id, name: n.name, answers })
                .collect();
            if all {
                s.ready.store(true, Ordering::Release);
                answer(StatusCode::OK, Readiness { status: "ready", store: true, nodes })
            } else {
                answer(StatusCode::SERVICE_UNAVAILABLE, Readiness { status: "starting", store: true, nodes })
            }
        }
    }
}

/// Version and capabilities.
#[utoipa::path(get, path = "/api/v1", tag = "meta", responses((status = 200, body = About), Problems))]
async fn about() -> Json<About> {
    Json(About {
        version: env!("CARGO_PKG_VERSION"),
        api: "v1",
        capabilities: vec!["nodes", "ip-pools", "vms", "tasks", "long-poll", "cancel"],
    })
}

/// Health; needs no token.
#[utoipa::path(get, path = "/api/v1/health", tag = "meta", security(()), responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}
