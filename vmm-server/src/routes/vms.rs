//! Virtual machines; every change is a task.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{
    Access, Actor, AddressSpec, CloneSpec, NodeId, Page, PageRequest, PowerAction, ReinstallSpec, Task, Vm,
    VmFilter, VmId, VmPatch, VmSpec, VmState,
};

use super::{accepted, ApiResult, Json, Paged, Path, Problems, Query};
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
        .routes(routes!(reinstall_vm))
        .routes(routes!(clone_vm))
        .routes(routes!(add_address))
        .routes(routes!(remove_address))
        .routes(routes!(console_log))
}

/// How much of the console log to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// The last this many bytes (default 65536, at most 1048576).
    pub tail_bytes: Option<u64>,
}

/// Most of a console log read at once.
const MAX_TAIL_BYTES: u64 = 1 << 20;

/// Create a VM: placed, leased and queued at once; the task makes the disk (empty, or a
/// copy of `image_id` with a cloud-init seed for the hostname, keys, password, recipes,
/// user-data and addresses), defines and starts it. One NIC per pool, on the pool's network.
#[utoipa::path(post, path = "/api/v1/vms", tag = "vms",
    request_body(content = VmSpec, examples(
        ("empty" = (value = json!({"name": "web-1", "vcpus": 1, "memory_mib": 512, "disk_gib": 1}))),
        ("from an image" = (value = json!({"name": "web-2", "vcpus": 1, "memory_mib": 512, "disk_gib": 10,
            "image_id": "01900000-0000-7000-8000-000000000001", "hostname": "web-2",
            "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx5ZWNR0v1Jbf5Jz1Ubs5YqQ2t4aH1r0WAXLrNQHdCX you@laptop"],
            "ip_pool_ids": ["01900000-0000-7000-8000-000000000002"]}))))),
    responses((status = 202, body = VmAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn create_vm(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<VmSpec>,
) -> ApiResult<Response> {
    let (vm, task) = s.vmm.create_vm_for(&actor, spec).await?;
    Ok(accepted(&task, VmAccepted { vm, task: task.clone() }))
}

/// Which VMs to list: every filter given must match.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VmQuery {
    /// Only VMs in this state.
    pub state: Option<VmState>,
    /// Only VMs on this node.
    pub node_id: Option<NodeId>,
    /// Only the VM of this exact name.
    pub name: Option<String>,
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// VMs, newest first; filtered by state, node or name.
#[utoipa::path(get, path = "/api/v1/vms", tag = "vms", params(VmQuery), responses((status = 200, body = Page<Vm>), Problems))]
async fn list_vms(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<VmQuery>,
) -> ApiResult<Paged<Vm>> {
    let filter = VmFilter { owner_id: None, node_id: q.node_id, state: q.state, name: q.name };
    let page = PageRequest { limit: q.limit, cursor: q.cursor };
    Ok(Paged(s.vmm.list_vms_for(&actor, &filter, &page).await?))
}

/// One VM.
#[utoipa::path(get, path = "/api/v1/vms/{id}", tag = "vms", params(("id" = VmId, Path)), responses((status = 200, body = Vm), Problems))]
async fn get_vm(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
) -> ApiResult<Json<Vm>> {
    Ok(Json(s.vmm.vm_for(&actor, id, Access::Read).await?))
}

/// Rename and/or resize a VM (disks only grow): a task. Or, alone in its patch, give it to
/// another user (`owner_id`, admins): done at once, answered with the VM.
#[utoipa::path(patch, path = "/api/v1/vms/{id}", tag = "vms", params(("id" = VmId, Path)),
    request_body(content = VmPatch, example = json!({"name": "web-2", "memory_mib": 1024})),
    responses((status = 202, body = TaskAccepted), (status = 200, body = Vm, description = "The VM, given to its new owner"), Problems))]
async fn update_vm(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Json(patch): Json<VmPatch>,
) -> ApiResult<Response> {
    if let (Some(owner), true) =
        (patch.owner_id, patch == VmPatch { owner_id: patch.owner_id, ..VmPatch::default() })
    {
        let vm = s.vmm.change_vm_owner(&actor, id, Some(owner)).await?;
        return Ok(Json(vm).into_response());
    }
    s.vmm.vm_for(&actor, id, Access::Write).await?;
    let task = s.vmm.acting_for(&actor).update_vm(id, patch).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Delete a VM with its disk and leases (again, if an earlier delete failed half-way).
#[utoipa::path(delete, path = "/api/v1/vms/{id}", tag = "vms", params(("id" = VmId, Path)),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn delete_vm(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
) -> ApiResult<Response> {
    s.vmm.vm_for(&actor, id, Access::Write).await?;
    let task = s.vmm.acting_for(&actor).delete_vm(id).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Start, stop, shut down, reboot, suspend or resume a VM.
#[utoipa::path(post, path = "/api/v1/vms/{id}/{action}", tag = "vms", operation_id = "run_vm_action",
    params(("id" = VmId, Path), ("action" = PowerAction, Path)),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn power_vm(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, action)): Path<(VmId, PowerAction)>,
) -> ApiResult<Response> {
    s.vmm.vm_for(&actor, id, Access::Write).await?;
    let task = s.vmm.acting_for(&actor).power_vm(id, action).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Reinstall a VM from an image (the same or another): new disk, new seed (cloud-init runs
/// again), same id, addresses and MACs; hostname, password and keys are kept unless given.
/// The old disk is put back if the reinstall fails.
#[utoipa::path(post, path = "/api/v1/vms/{id}/reinstall", tag = "vms", params(("id" = VmId, Path)),
    request_body(content = ReinstallSpec, example = json!({"image_id": "01900000-0000-7000-8000-000000000001"})),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn reinstall_vm(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Json(spec): Json<ReinstallSpec>,
) -> ApiResult<Response> {
    let task = s.vmm.reinstall_vm_for(&actor, id, spec).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Clone a stopped VM: a new VM on the same node from a copy of its disk, with new
/// addresses from the same pools and a new seed.
#[utoipa::path(post, path = "/api/v1/vms/{id}/clone", tag = "vms", params(("id" = VmId, Path)),
    request_body(content = CloneSpec, example = json!({"name": "web-1-copy"})),
    responses((status = 202, body = VmAccepted), Problems))]
async fn clone_vm(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Json(spec): Json<CloneSpec>,
) -> ApiResult<Response> {
    let (vm, task) = s.vmm.clone_vm_for(&actor, id, spec).await?;
    Ok(accepted(&task, VmAccepted { vm, task: task.clone() }))
}

/// Add an address: leased now, then a NIC on the pool's network is plugged in (hot-plugged
/// when the VM runs) and the seed rewritten; undone together if a step fails.
#[utoipa::path(post, path = "/api/v1/vms/{id}/addresses", operation_id = "create_vm_address", tag = "vms", params(("id" = VmId, Path)),
    request_body(content = AddressSpec, example = json!({"ip_pool_id": "01900000-0000-7000-8000-000000000002"})),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn add_address(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Json(spec): Json<AddressSpec>,
) -> ApiResult<Response> {
    s.vmm.vm_for(&actor, id, Access::Write).await?;
    let task = s.vmm.acting_for(&actor).add_vm_address(id, spec).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Remove an address with its NIC; the lease ends once the NIC is unplugged.
#[utoipa::path(delete, path = "/api/v1/vms/{id}/addresses/{address}", operation_id = "delete_vm_address", tag = "vms",
    params(("id" = VmId, Path), ("address" = String, Path)),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn remove_address(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, address)): Path<(VmId, IpAddr)>,
) -> ApiResult<Response> {
    s.vmm.vm_for(&actor, id, Access::Write).await?;
    let task = s.vmm.acting_for(&actor).remove_vm_address(id, address).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// What the VM's serial console printed (the end of it), read through libvirt.
#[utoipa::path(get, path = "/api/v1/vms/{id}/console-log", operation_id = "get_console_log", tag = "vms", params(("id" = VmId, Path), TailQuery),
    responses((status = 200, body = String, content_type = "text/plain"), Problems))]
async fn console_log(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Query(q): Query<TailQuery>,
) -> ApiResult<Response> {
    s.vmm.vm_for(&actor, id, Access::Read).await?;
    let tail = q.tail_bytes.unwrap_or(64 * 1024);
    if tail > MAX_TAIL_BYTES {
        return Err(vmm_core::Error::invalid("tail_bytes", format!("at most {MAX_TAIL_BYTES}")).into());
    }
    let log = s.vmm.vm_console_log(id, tail).await?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], String::from_utf8_lossy(&log).into_owned())
        .into_response())
}
