//! The audit log: every change asked of the API, newest first.

use axum::extract::State;
use axum::Extension;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Actor, AuditEntry, AuditFilter, Page, PageRequest, UserId};

use super::{ApiResult, Paged, Problems, Query};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

/// Which entries, and the page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this user's.
    pub actor_id: Option<UserId>,
    /// Only those naming this object (an id, or for sign-ins the email tried).
    pub target_id: Option<String>,
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// The audit log, newest first: everyone's for admins and read-only, your own for others.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "list_audit_entries", tag = "users", params(AuditQuery), responses((status = 200, body = Page<AuditEntry>), Problems))]
async fn list_audit(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Paged<AuditEntry>> {
    let filter = AuditFilter { actor_id: q.actor_id, target_id: q.target_id };
    Ok(Paged(s.vmm.list_audit(&actor, &filter, &PageRequest { limit: q.limit, cursor: q.cursor }).await?))
}
