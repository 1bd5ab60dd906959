//! Placement questions.

use axum::extract::State;
use axum::Extension;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Access, Actor, Area, Explanation, WhatIf};

use super::{ApiResult, Json, Problems};
use crate::AppState;

/// Not gated by method: asking is a read of the nodes, though it is a POST.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(explain_placement))
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
