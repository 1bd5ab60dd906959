//! Networks VMs' NICs plug into: a host bridge, or a network vmm manages on each node.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Network, NetworkId, NetworkSpec, Page};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_network, list_networks))
        .routes(routes!(get_network, delete_network))
}

/// Add a network: `bridge` names an existing host bridge; `managed` makes vmm define an
/// isolated libvirt network (no DHCP, no forwarding) on each node that needs it.
#[utoipa::path(post, path = "/api/v1/networks", tag = "networks",
    request_body(content = NetworkSpec, example = json!({"name": "public", "kind": "bridge", "bridge": "br0"})),
    responses((status = 201, body = Network), Problems))]
async fn create_network(State(s): State<AppState>, Json(spec): Json<NetworkSpec>) -> ApiResult<Response> {
    let network = s.vmm.create_network(spec).await?;
    Ok(created(format!("/api/v1/networks/{}", network.id), network))
}

/// Networks, newest first.
#[utoipa::path(get, path = "/api/v1/networks", tag = "networks", params(PageQuery), responses((status = 200, body = Page<Network>), Problems))]
async fn list_networks(State(s): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Paged<Network>> {
    Ok(Paged(s.vmm.list_networks(&q.page()).await?))
}

/// One network.
#[utoipa::path(get, path = "/api/v1/networks/{id}", tag = "networks", params(("id" = NetworkId, Path)),
    responses((status = 200, body = Network), Problems))]
async fn get_network(State(s): State<AppState>, Path(id): Path<NetworkId>) -> ApiResult<Json<Network>> {
    Ok(Json(s.vmm.get_network(id).await?))
}

/// Delete a network no pool is on (a managed one is removed from the nodes).
#[utoipa::path(delete, path = "/api/v1/networks/{id}", tag = "networks", params(("id" = NetworkId, Path)),
    responses((status = 204), Problems))]
async fn delete_network(State(s): State<AppState>, Path(id): Path<NetworkId>) -> ApiResult<StatusCode> {
    s.vmm.delete_network(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
