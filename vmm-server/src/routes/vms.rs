//! Virtual machines; every change is a task.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Page, PowerAction, Task, Vm, VmId, VmPatch, VmSpec};

use super::{accepted, ApiResult, Json, PageQuery, Path, Problems, Query};
use crate::AppState;

/// A VM whose creation was queued, and its task.
#[derive(Debug, Serialize, ToSchema)]
pub struct VmAccepted {
    /// The VM, in state `creating`.
    pub vm: Vm,
    /// The create task.
    pub task: Task,
}

/// A queued task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskAccepted {
    /// The task.
    pub task: Task,
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_vm, list_vms))
        .routes(routes!(get_vm, update_vm, delete_vm))
        .routes(routes!(power_vm))
}

/// Create a VM: placed, leased and queued at once; the task makes the disk, defines and
/// starts it.
#[utoipa::path(post, path = "/api/v1/vms", tag = "vms",
    request_body(content = VmSpec, example = json!({"name": "web-1", "vcpus": 1, "memory_mib": 512, "disk_gib": 1})),
    responses((status = 202, body = VmAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn create_vm(State(s): State<AppState>, Json(spec): Json<VmSpec>) -> ApiResult<Response> {
    let (vm, task) = s.vmm.create_vm(spec).await?;
    Ok(accepted(&task, VmAccepted { vm, task: task.clone() }))
}

/// VMs, newest first.
#[utoipa::path(get, path = "/api/v1/vms", tag = "vms", params(PageQuery), responses((status = 200, body = Page<Vm>), Problems))]
async fn list_vms(State(s): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Vm>>> {
    Ok(Json(s.vmm.list_vms(&q.page()).await?))
}

/// One VM.
#[utoipa::path(get, path = "/api/v1/vms/{id}", tag = "vms", params(("id" = VmId, Path)), responses((status = 200, body = Vm), Problems))]
async fn get_vm(State(s): State<AppState>, Path(id): Path<VmId>) -> ApiResult<Json<Vm>> {
    Ok(Json(s.vmm.get_vm(id).await?))
}

/// Rename and/or resize a VM (disks only grow).
#[utoipa::path(patch, path = "/api/v1/vms/{id}", tag = "vms", params(("id" = VmId, Path)),
    request_body(content = VmPatch, example = json!({"name": "web-2", "memory_mib": 1024})),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn update_vm(
    State(s): State<AppState>,
    Path(id): Path<VmId>,
    Json(patch): Json<VmPatch>,
) -> ApiResult<Response> {
    let task = s.vmm.update_vm(id, patch).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Delete a VM with its disk and leases (again, if an earlier delete failed half-way).
#[utoipa::path(delete, path = "/api/v1/vms/{id}", tag = "vms", params(("id" = VmId, Path)),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn delete_vm(State(s): State<AppState>, Path(id): Path<VmId>) -> ApiResult<Response> {
    let task = s.vmm.delete_vm(id).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Start, stop, shut down, reboot, suspend or resume a VM.
#[utoipa::path(post, path = "/api/v1/vms/{id}/{action}", tag = "vms", operation_id = "act_on_vm",
    params(("id" = VmId, Path), ("action" = PowerAction, Path)),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn power_vm(
    State(s): State<AppState>,
    Path((id, action)): Path<(VmId, PowerAction)>,
) -> ApiResult<Response> {
    let task = s.vmm.power_vm(id, action).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}
