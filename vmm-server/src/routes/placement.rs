//! Placement: what-if questions, and the groups that keep VMs apart or together.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{
    Access, Actor, Area, Explanation, Page, PlacementGroup, PlacementGroupId, PlacementGroupSpec, WhatIf,
};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

/// Not gated by method: asking is a read of the nodes, though it is a POST.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(explain_placement))
}

/// Placement groups, gated as nodes are (platform objects an operator arranges).
pub(super) fn group_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_placement_group, list_placement_groups))
        .routes(routes!(get_placement_group, delete_placement_group))
}

/// Make a placement group: VMs that join it (`placement_group_id` on create) are kept each
/// on its own node (`anti_affinity`) or all on one (`affinity`).
#[utoipa::path(post, path = "/api/v1/placement-groups", tag = "placement",
    request_body(content = PlacementGroupSpec, example = json!({"name": "db-replicas", "policy": "anti_affinity"})),
    responses((status = 201, body = PlacementGroup), Problems))]
async fn create_placement_group(
    State(s): State<AppState>,
    Json(spec): Json<PlacementGroupSpec>,
) -> ApiResult<Response> {
    let group = s.vmm.create_placement_group(&spec).await?;
    Ok(created(format!("/api/v1/placement-groups/{}", group.id), group))
}

/// Placement groups, newest first.
#[utoipa::path(get, path = "/api/v1/placement-groups", tag = "placement", params(PageQuery),
    responses((status = 200, body = Page<PlacementGroup>), Problems))]
async fn list_placement_groups(
    State(s): State<AppState>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<PlacementGroup>> {
    Ok(Paged(s.vmm.list_placement_groups(&q.page()).await?))
}

/// One placement group.
#[utoipa::path(get, path = "/api/v1/placement-groups/{id}", tag = "placement", params(("id" = PlacementGroupId, Path)),
    responses((status = 200, body = PlacementGroup), Problems))]
async fn get_placement_group(
    State(s): State<AppState>,
    Path(id): Path<PlacementGroupId>,
) -> ApiResult<Json<PlacementGroup>> {
    Ok(Json(s.vmm.get_placement_group(id).await?))
}

/// Delete a placement group that has no VMs.
#[utoipa::path(delete, path = "/api/v1/placement-groups/{id}", tag = "placement", params(("id" = PlacementGroupId, Path)),
    responses((status = 204), Problems))]
async fn delete_placement_group(
    State(s): State<AppState>,
    Path(id): Path<PlacementGroupId>,
) -> ApiResult<StatusCode> {
    s.vmm.delete_placement_group(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which node would take a VM of this size, every node that could with its score, and
/// every node that could not with all its reasons; nothing is reserved. Anyone who may
/// read nodes may ask.
#[utoipa::path(post, path = "/api/v1/placement/what-if", tag = "placement", operation_id = "explain_placement",
    request_body(content = WhatIf, example = json!({"vcpus": 2, "memory_mib": 2048, "disk_gib": 20})),
    responses((status = 200, body = Explanation), Problems))]
async fn explain_placement(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(question): Json<WhatIf>,
) -> ApiResult<Json<Explanation>> {
    actor.may(Area::Nodes, Access::Read)?;
    Ok(Json(s.vmm.what_if(&question).await?))
}
