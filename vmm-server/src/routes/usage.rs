//! Usage graphs: a VM's or a node's usage over a range, at a step.

use axum::extract::{Extension, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::usage::UsagePoint;
use vmm_core::{Actor, NodeId, VmId};

use super::{ApiResult, Json, Path, Problems, Query};
use crate::AppState;

pub(super) fn vm_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(vm_stats))
}

pub(super) fn node_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(node_stats))
}

/// The range and step of a usage series.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// From (RFC 3339); an hour before `to` by default.
    pub from: Option<DateTime<Utc>>,
    /// To (RFC 3339); now by default.
    pub to: Option<DateTime<Utc>>,
    /// Seconds per point (default 60); the range may hold at most 10,000 steps.
    #[param(minimum = 1)]
    pub step: Option<u64>,
}

/// A usage series: one point per step that has samples, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// The points.
    pub points: Vec<UsagePoint>,
}

/// A VM's usage: CPU %, memory in use, disk and network rates, sampled by the collector
/// and averaged per step.
#[utoipa::path(get, path = "/api/v1/vms/{id}/stats", operation_id = "get_vm_stats", tag = "vms", params(("id" = VmId, Path), StatsQuery),
    responses((status = 200, body = Stats), Problems))]
async fn vm_stats(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<Stats>> {
    Ok(Json(Stats { points: s.vmm.vm_usage(&actor, id, q.from, q.to, q.step).await? }))
}

/// A node's usage: its CPU %, memory in use, and its VMs' disk and network rates.
#[utoipa::path(get, path = "/api/v1/nodes/{id}/stats", operation_id = "get_node_stats", tag = "nodes", params(("id" = NodeId, Path), StatsQuery),
    responses((status = 200, body = Stats), Problems))]
async fn node_stats(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<NodeId>,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<Stats>> {
    Ok(Json(Stats { points: s.vmm.node_usage(&actor, id, q.from, q.to, q.step).await? }))
}
