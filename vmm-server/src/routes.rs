//! The v1 routes. Each handler extracts, makes one `Vmm` call and answers JSON.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{header::LOCATION, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{
    IpLease, IpPool, IpPoolSpec, Node, NodeId, NodePatch, NodeSpec, Page, PageRequest, PoolId, Task,
    TaskFilter, TaskId, TaskState, Vm, VmAction, VmId, VmPatch, VmSpec,
};

use crate::{ApiError, AppState, Problem};

/// JSON in and out; a bad body is problem+json (400, 413, 415 or 422).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a malformed one is a 422.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a malformed one is a 422.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

type ApiResult<T> = Result<T, ApiError>;

/// The problems any route may answer with.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Problems {
    /// Malformed JSON.
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// No or a wrong bearer token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// No such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Conflicts with the current state: an active task, an illegal state, a duplicate.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is too large.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    MediaType(Problem),
    /// Invalid values, unknown fields included.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// The backend does not support this.
    #[response(status = 501, content_type = "application/problem+json")]
    Unsupported(Problem),
    /// A node or the database is unreachable.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

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

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    fn page(self) -> PageRequest {
        PageRequest { limit: self.limit, cursor: self.cursor }
    }
}

/// Task filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks of this VM.
    pub vm_id: Option<VmId>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Items per page, 1 to 1000 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// How long to wait.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds, 0 to 60 (default 30).
    pub timeout_s: Option<f64>,
}

/// A lease asked for by hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// This address; the lowest free one when absent.
    #[schema(value_type = Option<String>, example = "192.0.2.50")]
    pub address: Option<IpAddr>,
}

/// Power actions.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    /// Power on.
    Start,
    /// Power off at once.
    Stop,
    /// Ask the guest to shut down (forced after a timeout).
    Shutdown,
    /// Reboot.
    Reboot,
    /// Pause.
    Suspend,
    /// Continue after a pause.
    Resume,
}

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

fn accepted<T: Serialize>(task: &Task, body: T) -> Response {
    (StatusCode::ACCEPTED, [(LOCATION, format!("/api/v1/tasks/{}", task.id))], Json(body)).into_response()
}

fn created<T: Serialize>(location: String, body: T) -> Response {
    (StatusCode::CREATED, [(LOCATION, location)], Json(body)).into_response()
}

/// Routes behind the bearer token.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(about))
        .routes(routes!(add_node, list_nodes))
        .routes(routes!(get_node, update_node, remove_node))
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(get_pool, delete_pool))
        .routes(routes!(list_leases, allocate_lease))
        .routes(routes!(release_lease))
        .routes(routes!(create_vm, list_vms))
        .routes(routes!(get_vm, update_vm, delete_vm))
        .routes(routes!(act_on_vm))
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(wait_task))
        .routes(routes!(cancel_task))
}

/// Routes open to all (health).
pub fn public() -> OpenApiRouter<AppState> {
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

/// Register a node: vmm connects to it and reads its capacity.
#[utoipa::path(post, path = "/api/v1/nodes", tag = "nodes",
    request_body(content = NodeSpec, example = json!({"name": "local", "uri": "qemu:///system", "virt_type": "qemu"})),
    responses((status = 201, body = Node), Problems))]
async fn add_node(State(s): State<AppState>, Json(spec): Json<NodeSpec>) -> ApiResult<Response> {
    let node = s.vmm.add_node(spec).await?;
    Ok(created(format!("/api/v1/nodes/{}", node.id), node))
}

/// Nodes, newest first.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", params(PageQuery), responses((status = 200, body = Page<Node>), Problems))]
async fn list_nodes(State(s): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Node>>> {
    Ok(Json(s.vmm.list_nodes(&q.page()).await?))
}

/// One node, with what its VMs have taken.
#[utoipa::path(get, path = "/api/v1/nodes/{id}", tag = "nodes", params(("id" = NodeId, Path)),
    responses((status = 200, body = Node), Problems))]
async fn get_node(State(s): State<AppState>, Path(id): Path<NodeId>) -> ApiResult<Json<Node>> {
    Ok(Json(s.vmm.get_node(id).await?))
}

/// Rename a node, change its ratios, or put it in or out of maintenance.
#[utoipa::path(patch, path = "/api/v1/nodes/{id}", tag = "nodes", params(("id" = NodeId, Path)),
    request_body(content = NodePatch, example = json!({"state": "maintenance"})),
    responses((status = 200, body = Node), Problems))]
async fn update_node(
    State(s): State<AppState>,
    Path(id): Path<NodeId>,
    Json(patch): Json<NodePatch>,
) -> ApiResult<Json<Node>> {
    Ok(Json(s.vmm.update_node(id, patch).await?))
}

/// Unregister a node that has no VMs.
#[utoipa::path(delete, path = "/api/v1/nodes/{id}", tag = "nodes", params(("id" = NodeId, Path)),
    responses((status = 204), Problems))]
async fn remove_node(State(s): State<AppState>, Path(id): Path<NodeId>) -> ApiResult<StatusCode> {
    s.vmm.remove_node(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an IP pool.
#[utoipa::path(post, path = "/api/v1/ip-pools", tag = "ip-pools",
    request_body(content = IpPoolSpec, example = json!({"name": "public", "cidr": "192.0.2.0/24", "gateway": "192.0.2.1"})),
    responses((status = 201, body = IpPool), Problems))]
async fn create_pool(State(s): State<AppState>, Json(spec): Json<IpPoolSpec>) -> ApiResult<Response> {
    let pool = s.vmm.create_ip_pool(spec).await?;
    Ok(created(format!("/api/v1/ip-pools/{}", pool.id), pool))
}

/// Pools, newest first.
#[utoipa::path(get, path = "/api/v1/ip-pools", tag = "ip-pools", params(PageQuery), responses((status = 200, body = Page<IpPool>), Problems))]
async fn list_pools(State(s): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<IpPool>>> {
    Ok(Json(s.vmm.list_ip_pools(&q.page()).await?))
}

/// One pool.
#[utoipa::path(get, path = "/api/v1/ip-pools/{id}", tag = "ip-pools", params(("id" = PoolId, Path)),
    responses((status = 200, body = IpPool), Problems))]
async fn get_pool(State(s): State<AppState>, Path(id): Path<PoolId>) -> ApiResult<Json<IpPool>> {
    Ok(Json(s.vmm.get_ip_pool(id).await?))
}

/// Delete a pool that has no leases.
#[utoipa::path(delete, path = "/api/v1/ip-pools/{id}", tag = "ip-pools", params(("id" = PoolId, Path)),
    responses((status = 204), Problems))]
async fn delete_pool(State(s): State<AppState>, Path(id): Path<PoolId>) -> ApiResult<StatusCode> {
    s.vmm.delete_ip_pool(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A pool's leases, in address order.
#[utoipa::path(get, path = "/api/v1/ip-pools/{id}/leases", tag = "ip-pools", params(("id" = PoolId, Path), PageQuery),
    responses((status = 200, body = Page<IpLease>), Problems))]
async fn list_leases(
    State(s): State<AppState>,
    Path(id): Path<PoolId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<IpLease>>> {
    Ok(Json(s.vmm.list_leases(id, &q.page()).await?))
}

/// Lease an address by hand: the one asked for, or the lowest free one.
#[utoipa::path(post, path = "/api/v1/ip-pools/{id}/leases", tag = "ip-pools", params(("id" = PoolId, Path)),
    request_body(content = LeaseRequest, example = json!({"address": "192.0.2.50"})),
    responses((status = 201, body = IpLease), Problems))]
async fn allocate_lease(
    State(s): State<AppState>,
    Path(id): Path<PoolId>,
    Json(req): Json<LeaseRequest>,
) -> ApiResult<Response> {
    let lease = s.vmm.allocate_ip(id, req.address).await?;
    Ok(created(format!("/api/v1/ip-pools/{id}/leases/{}", lease.address), lease))
}

/// End a lease held by hand.
#[utoipa::path(delete, path = "/api/v1/ip-pools/{id}/leases/{address}", tag = "ip-pools",
    params(("id" = PoolId, Path), ("address" = String, Path, description = "An IPv4 or IPv6 address")),
    responses((status = 204), Problems))]
async fn release_lease(
    State(s): State<AppState>,
    Path((id, address)): Path<(PoolId, IpAddr)>,
) -> ApiResult<StatusCode> {
    s.vmm.release_ip(id, address).await?;
    Ok(StatusCode::NO_CONTENT)
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

/// Delete a VM with its disk and leases.
#[utoipa::path(delete, path = "/api/v1/vms/{id}", tag = "vms", params(("id" = VmId, Path)),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn delete_vm(State(s): State<AppState>, Path(id): Path<VmId>) -> ApiResult<Response> {
    let task = s.vmm.delete_vm(id).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Start, stop, shut down, reboot, suspend or resume a VM.
#[utoipa::path(post, path = "/api/v1/vms/{id}/{action}", tag = "vms", params(("id" = VmId, Path), ("action" = PowerAction, Path)),
    responses((status = 202, body = TaskAccepted), Problems))]
async fn act_on_vm(
    State(s): State<AppState>,
    Path((id, action)): Path<(VmId, PowerAction)>,
) -> ApiResult<Response> {
    let action = match action {
        PowerAction::Start => VmAction::Start,
        PowerAction::Stop => VmAction::Stop,
        PowerAction::Shutdown => VmAction::Shutdown,
        PowerAction::Reboot => VmAction::Reboot,
        PowerAction::Suspend => VmAction::Suspend,
        PowerAction::Resume => VmAction::Resume,
    };
    let task = s.vmm.act(id, action).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TaskQuery), responses((status = 200, body = Page<Task>), Problems))]
async fn list_tasks(State(s): State<AppState>, Query(q): Query<TaskQuery>) -> ApiResult<Json<Page<Task>>> {
    let filter = TaskFilter { vm_id: q.vm_id, state: q.state };
    Ok(Json(s.vmm.list_tasks(&filter, &PageRequest { limit: q.limit, cursor: q.cursor }).await?))
}

/// One task.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = TaskId, Path)), responses((status = 200, body = Task), Problems))]
async fn get_task(State(s): State<AppState>, Path(id): Path<TaskId>) -> ApiResult<Json<Task>> {
    Ok(Json(s.vmm.get_task(id).await?))
}

/// Wait until the task ends or the timeout passes; answers the task as it is then.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/wait", tag = "tasks", params(("id" = TaskId, Path), WaitQuery),
    responses((status = 200, body = Task), Problems))]
async fn wait_task(
    State(s): State<AppState>,
    Path(id): Path<TaskId>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<Task>> {
    let seconds = q.timeout_s.unwrap_or(30.0);
    if !(0.0..=60.0).contains(&seconds) {
        return Err(ApiError::invalid("timeout_s", "must be between 0 and 60"));
    }
    Ok(Json(s.vmm.wait_task(id, Duration::from_secs_f64(seconds)).await?))
}

/// Cancel a queued task, or ask a running one to stop and undo what it did.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = TaskId, Path)),
    responses((status = 200, body = Task), Problems))]
async fn cancel_task(State(s): State<AppState>, Path(id): Path<TaskId>) -> ApiResult<Json<Task>> {
    Ok(Json(s.vmm.cancel_task(id).await?))
}
