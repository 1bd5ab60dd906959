//! Moving VMs between nodes. Gated as nodes are: where a VM runs is the operator's
//! business, not its owner's.

use axum::extract::State;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{MigrateSpec, VmId};

use super::vms::TaskAccepted;
use super::{accepted, ApiResult, Json, Path, Problems};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(migrate_vm))
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
