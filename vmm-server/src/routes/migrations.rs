//! Moving VMs between nodes: one VM, or all of a node's for its maintenance. Gated as
//! nodes are: where a VM runs is the operator's business, not its owner's.

use axum::extract::State;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{EndMaintenanceSpec, MaintenanceSpec, MigrateSpec, NodeId, VmId};

use super::vms::TaskAccepted;
use super::{accepted, ApiResult, Json, Path, Problems, Query};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(migrate_vm))
        .routes(routes!(create_node_maintenance, delete_node_maintenance))
}

/// Move a VM to another node: live while it runs (its disk copied too unless storage is
/// shared), offline when it is stopped. Without `node_id` placement chooses, and the task's
/// first step says why. The target's capacity is held from now on; the VM is switched
/// over only once it is whole there, and a failure or a cancel before then leaves it where
/// it was.
#[utoipa::path(post, path = "/api/v1/vms/{id}/migrate", tag = "vms", params(("id" = VmId, Path)),
    request_body(content = MigrateSpec, example = json!({"node_id": "01900000-0000-7000-8000-000000000003", "live": true})),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn migrate_vm(
    State(s): State<AppState>,
    Path(id): Path<VmId>,
    Json(spec): Json<MigrateSpec>,
) -> ApiResult<Response> {
    let task = s.vmm.migrate_vm(id, spec).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Put a node in maintenance: placement stops choosing it at once. With `evacuate`, the
/// task moves each of its VMs, one after another, to the node placement chooses (live
/// when it runs), and its result lists what moved where and what could not move and why;
/// VMs that cannot move fail the task, unless `stop_unmovable` stops them instead.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/maintenance", tag = "nodes", params(("id" = NodeId, Path)),
    request_body(content = MaintenanceSpec, example = json!({"evacuate": true})),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn create_node_maintenance(
    State(s): State<AppState>,
    Path(id): Path<NodeId>,
    Json(spec): Json<MaintenanceSpec>,
) -> ApiResult<Response> {
    let task = s.vmm.start_maintenance(id, spec).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// End a node's maintenance: placement may choose it again at once. With `return_vms`, the
/// task moves back the VMs its last evacuation moved away.
#[utoipa::path(delete, path = "/api/v1/nodes/{id}/maintenance", tag = "nodes",
    params(("id" = NodeId, Path), EndMaintenanceSpec),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn delete_node_maintenance(
    State(s): State<AppState>,
    Path(id): Path<NodeId>,
    Query(spec): Query<EndMaintenanceSpec>,
) -> ApiResult<Response> {
    let task = s.vmm.end_maintenance(id, spec).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}
