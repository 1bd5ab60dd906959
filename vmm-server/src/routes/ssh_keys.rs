//! SSH keys: each user's library of public keys, given to VMs by id.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Actor, Page, SshKey, SshKeyId, SshKeySpec};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_ssh_key, list_ssh_keys))
        .routes(routes!(get_ssh_key, delete_ssh_key))
}

/// Add a public key to your library.
#[utoipa::path(post, path = "/api/v1/ssh-keys", tag = "users",
    request_body(content = SshKeySpec, example = json!({"name": "laptop", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx5ZWNR0v1Jbf5Jz1Ubs5YqQ2t4aH1r0WAXLrNQHdCX you@laptop"})),
    responses((status = 201, body = SshKey), Problems))]
async fn create_ssh_key(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<SshKeySpec>,
) -> ApiResult<Response> {
    let key = s.vmm.create_ssh_key(&actor, spec).await?;
    Ok(created(format!("/api/v1/ssh-keys/{}", key.id), key))
}

/// Your keys (everyone's for admins and read-only), newest first.
#[utoipa::path(get, path = "/api/v1/ssh-keys", tag = "users", params(PageQuery), responses((status = 200, body = Page<SshKey>), Problems))]
async fn list_ssh_keys(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<SshKey>> {
    Ok(Paged(s.vmm.list_ssh_keys(&actor, &q.page()).await?))
}

/// One key.
#[utoipa::path(get, path = "/api/v1/ssh-keys/{id}", tag = "users", params(("id" = SshKeyId, Path)),
    responses((status = 200, body = SshKey), Problems))]
async fn get_ssh_key(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<SshKeyId>,
) -> ApiResult<Json<SshKey>> {
    Ok(Json(s.vmm.get_ssh_key(&actor, id).await?))
}

/// Remove a key from the library (VMs given it keep it).
#[utoipa::path(delete, path = "/api/v1/ssh-keys/{id}", tag = "users", params(("id" = SshKeyId, Path)),
    responses((status = 204), Problems))]
async fn delete_ssh_key(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<SshKeyId>,
) -> ApiResult<StatusCode> {
    s.vmm.delete_ssh_key(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
