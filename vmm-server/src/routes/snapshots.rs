//! Snapshots of a VM: taken, reverted to and deleted as tasks; listed from vmm's record.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::snapshot::{Snapshot, SnapshotSpec};
use vmm_core::{Actor, Page, VmId};

use super::vms::TaskAccepted;
use super::{accepted, ApiResult, Json, Paged, Path, Problems};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_snapshot, list_snapshots))
        .routes(routes!(delete_snapshot))
        .routes(routes!(revert_snapshot))
}

/// Take a snapshot: of a stopped VM, its disk; of a running one, its disk and memory (a
/// revert resumes it where it was). Kept by libvirt on the node, inside the disk.
#[utoipa::path(post, path = "/api/v1/vms/{id}/snapshots", tag = "backups", params(("id" = VmId, Path)),
    request_body(content = SnapshotSpec, example = json!({"name": "before-upgrade", "description": "kernel 6.1"})),
    responses((status = 202, body = TaskAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn create_snapshot(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Json(spec): Json<SnapshotSpec>,
) -> ApiResult<Response> {
    let task = s.vmm.create_snapshot(&actor, id, spec).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// A VM's snapshots, oldest first (one page: a VM has few).
#[utoipa::path(get, path = "/api/v1/vms/{id}/snapshots", tag = "backups", params(("id" = VmId, Path)),
    responses((status = 200, body = Page<Snapshot>), Problems))]
async fn list_snapshots(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
) -> ApiResult<Paged<Snapshot>> {
    let items = s.vmm.list_snapshots(&actor, id).await?;
    Ok(Paged(Page { items, next_cursor: None }))
}

/// Put the VM back as it was at the snapshot: running, if it held the memory.
#[utoipa::path(post, path = "/api/v1/vms/{id}/snapshots/{name}/revert", tag = "backups",
    params(("id" = VmId, Path), ("name" = String, Path, description = "The snapshot")),
    responses((status = 202, body = TaskAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn revert_snapshot(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, name)): Path<(VmId, String)>,
) -> ApiResult<Response> {
    let task = s.vmm.revert_snapshot(&actor, id, &name).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Delete a snapshot.
#[utoipa::path(delete, path = "/api/v1/vms/{id}/snapshots/{name}", tag = "backups",
    params(("id" = VmId, Path), ("name" = String, Path, description = "The snapshot")),
    responses((status = 202, body = TaskAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn delete_snapshot(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, name)): Path<(VmId, String)>,
) -> ApiResult<Response> {
    let task = s.vmm.delete_snapshot(&actor, id, &name).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}
