//! Hypervisor nodes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Node, NodeId, NodePatch, NodeSpec, Page};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_node, list_nodes)).routes(routes!(
        get_node,
        update_node,
        delete_node
    ))
}

/// Register a node: vmm checks its URI, connects to it and reads its capacity.
#[utoipa::path(post, path = "/api/v1/nodes", tag = "nodes", operation_id = "create_node",
    request_body(content = NodeSpec, example = json!({"name": "local", "uri": "qemu:///system", "virt_type": "qemu"})),
    responses((status = 201, body = Node), Problems))]
async fn create_node(State(s): State<AppState>, Json(spec): Json<NodeSpec>) -> ApiResult<Response> {
    let node = s.vmm.create_node(spec).await?;
    Ok(created(format!("/api/v1/nodes/{}", node.id), node))
}

/// Nodes, newest first.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", params(PageQuery), responses((status = 200, body = Page<Node>), Problems))]
async fn list_nodes(State(s): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Paged<Node>> {
    Ok(Paged(s.vmm.list_nodes(&q.page()).await?))
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
#[utoipa::path(delete, path = "/api/v1/nodes/{id}", tag = "nodes", operation_id = "delete_node",
    params(("id" = NodeId, Path)), responses((status = 204), Problems))]
async fn delete_node(State(s): State<AppState>, Path(id): Path<NodeId>) -> ApiResult<StatusCode> {
    s.vmm.delete_node(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
