//! Reconciling the database with the nodes on demand.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Actor, Task};

use super::{accepted, ApiResult, Json, Problems};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(reconcile))
}

/// What to reconcile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSpec {
    /// Report the orphans found without removing them.
    pub dry_run: bool,
}

/// The task that reconciles.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileAccepted {
    /// Its `result`, once it has succeeded, is the report: per node, the VMs whose observed
    /// state differs from their state, the orphan domains and volumes, and what was removed.
    pub task: Task,
}

/// Compare every node with the database: record each VM's observed state, report drift,
/// and report (or, without `dry_run`, remove) the domains and volumes vmm made that belong
/// to no VM. Foreign domains are never touched.
#[utoipa::path(post, path = "/api/v1/reconcile", tag = "nodes",
    request_body(content = ReconcileSpec, example = json!({"dry_run": true})),
    responses((status = 202, body = ReconcileAccepted), Problems))]
async fn reconcile(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<ReconcileSpec>,
) -> ApiResult<Response> {
    let task = s.vmm.reconcile_for(&actor, spec.dry_run).await?;
    Ok(accepted(&task, ReconcileAccepted { task: task.clone() }))
}
