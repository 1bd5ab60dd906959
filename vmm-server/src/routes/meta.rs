//! Version, capabilities and health.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

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
    OpenApiRouter::new().routes(routes!(health))
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
