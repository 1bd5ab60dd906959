//! IP pools and leases.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{IpLease, IpPool, IpPoolSpec, Page, PageRequest, PoolId};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

/// A lease asked for by hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// This address; the lowest free one when absent.
    #[schema(value_type = Option<String>, example = "192.0.2.50")]
    pub address: Option<IpAddr>,
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(get_pool, delete_pool))
        .routes(routes!(list_leases, create_lease))
        .routes(routes!(delete_lease))
}

/// Create an IP pool.
#[utoipa::path(post, path = "/api/v1/ip-pools", operation_id = "create_ip_pool", tag = "ip-pools",
    request_body(content = IpPoolSpec, example = json!({"name": "public", "cidr": "192.0.2.0/24", "gateway": "192.0.2.1"})),
    responses((status = 201, body = IpPool), Problems))]
async fn create_pool(State(s): State<AppState>, Json(spec): Json<IpPoolSpec>) -> ApiResult<Response> {
    let pool = s.vmm.create_ip_pool(spec).await?;
    Ok(created(format!("/api/v1/ip-pools/{}", pool.id), pool))
}

/// Pools, newest first.
#[utoipa::path(get, path = "/api/v1/ip-pools", operation_id = "list_ip_pools", tag = "ip-pools", params(PageQuery), responses((status = 200, body = Page<IpPool>), Problems))]
async fn list_pools(State(s): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Paged<IpPool>> {
    Ok(Paged(s.vmm.list_ip_pools(&q.page()).await?))
}

/// One pool.
#[utoipa::path(get, path = "/api/v1/ip-pools/{id}", operation_id = "get_ip_pool", tag = "ip-pools", params(("id" = PoolId, Path)),
    responses((status = 200, body = IpPool), Problems))]
async fn get_pool(State(s): State<AppState>, Path(id): Path<PoolId>) -> ApiResult<Json<IpPool>> {
    Ok(Json(s.vmm.get_ip_pool(id).await?))
}

/// Delete a pool that has no leases.
#[utoipa::path(delete, path = "/api/v1/ip-pools/{id}", operation_id = "delete_ip_pool", tag = "ip-pools", params(("id" = PoolId, Path)),
    responses((status = 204), Problems))]
async fn delete_pool(State(s): State<AppState>, Path(id): Path<PoolId>) -> ApiResult<StatusCode> {
    s.vmm.delete_ip_pool(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging through a pool's leases: the cursor is an address.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaseQuery {
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: the last address it listed.
    pub cursor: Option<String>,
}

/// A pool's leases, in address order.
#[utoipa::path(get, path = "/api/v1/ip-pools/{id}/leases", tag = "ip-pools", params(("id" = PoolId, Path), LeaseQuery),
    responses((status = 200, body = Page<IpLease>), Problems))]
async fn list_leases(
    State(s): State<AppState>,
    Path(id): Path<PoolId>,
    Query(q): Query<LeaseQuery>,
) -> ApiResult<Paged<IpLease>> {
    Ok(Paged(s.vmm.list_leases(id, &PageRequest { limit: q.limit, cursor: q.cursor }).await?))
}

/// Lease an address by hand: the one asked for, or the lowest free one.
#[utoipa::path(post, path = "/api/v1/ip-pools/{id}/leases", tag = "ip-pools", operation_id = "create_lease",
    params(("id" = PoolId, Path)),
    request_body(content = LeaseRequest, example = json!({"address": "192.0.2.50"})),
    responses((status = 201, body = IpLease), Problems))]
async fn create_lease(
    State(s): State<AppState>,
    Path(id): Path<PoolId>,
    Json(req): Json<LeaseRequest>,
) -> ApiResult<Response> {
    let lease = s.vmm.create_lease(id, req.address).await?;
    Ok(created(format!("/api/v1/ip-pools/{id}/leases/{}", lease.address), lease))
}

/// End a lease held by hand.
#[utoipa::path(delete, path = "/api/v1/ip-pools/{id}/leases/{address}", tag = "ip-pools", operation_id = "delete_lease",
    params(("id" = PoolId, Path), ("address" = String, Path, description = "An IPv4 or IPv6 address")),
    responses((status = 204), Problems))]
async fn delete_lease(
    State(s): State<AppState>,
    Path((id, address)): Path<(PoolId, IpAddr)>,
) -> ApiResult<StatusCode> {
    s.vmm.delete_lease(id, address).await?;
    Ok(StatusCode::NO_CONTENT)
}
