//! HA: a node's lease and HA state, and an operator's word that a dead node is off. Gated
//! as nodes are.

use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::ha::NodeLease;
use vmm_core::NodeId;

use super::{ApiResult, Json, Path, Problems};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_node_lease)).routes(routes!(create_node_fence))
}

/// A node's lease (until when it counts as alive) and HA's state of it: `alive`, `expired`
/// (it must be fenced before its HA VMs run elsewhere) or `fenced`. `null` for a node that
/// never answered.
#[utoipa::path(get, path = "/api/v1/nodes/{id}/lease", tag = "nodes", params(("id" = NodeId, Path)),
    responses((status = 200, body = Option<NodeLease>), Problems))]
async fn get_node_lease(
    State(s): State<AppState>,
    Path(id): Path<NodeId>,
) -> ApiResult<Json<Option<NodeLease>>> {
    Ok(Json(s.vmm.node_lease(id).await?))
}

/// Confirm that a dead node is off (powered down, or cut from its disks for good): HA may
/// then start its HA VMs elsewhere. Refused while the node's lease holds. Confirming a node
/// that still runs its VMs would run them twice: be sure.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/fence", tag = "nodes", params(("id" = NodeId, Path)),
    responses((status = 200, body = NodeLease), Problems))]
async fn create_node_fence(State(s): State<AppState>, Path(id): Path<NodeId>) -> ApiResult<Json<NodeLease>> {
    Ok(Json(s.vmm.confirm_fenced(id).await?))
}
