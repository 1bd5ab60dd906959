//! Webhooks: each user's subscriptions to the event log, and their delivery log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::webhook::{Delivery, Webhook, WebhookPatch, WebhookSpec};
use vmm_core::{Access, Actor, Page, WebhookId};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
}

/// Subscribe a URL to events: each one you may read and that matches `events` is POSTed
/// to it, in order, signed with `secret` (`Vmm-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "events",
    request_body(content = WebhookSpec, example = json!({"url": "https://hooks.example/vmm", "events": ["vm.*", "task.failed"], "secret": "whsec_0123456789abcdef"})),
    responses((status = 201, body = Webhook), Problems))]
async fn create_webhook(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<WebhookSpec>,
) -> ApiResult<Response> {
    let hook = s.vmm.create_webhook(&actor, spec).await?;
    Ok(created(format!("/api/v1/webhooks/{}", hook.id), hook))
}

/// Your subscriptions (everyone's for admins and read-only), newest first.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "events", params(PageQuery), responses((status = 200, body = Page<Webhook>), Problems))]
async fn list_webhooks(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<Webhook>> {
    Ok(Paged(s.vmm.list_webhooks_for(&actor, &q.page()).await?))
}

/// One subscription.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "events", params(("id" = WebhookId, Path)),
    responses((status = 200, body = Webhook), Problems))]
async fn get_webhook(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<WebhookId>,
) -> ApiResult<Json<Webhook>> {
    Ok(Json(s.vmm.webhook_for(&actor, id, Access::Read).await?))
}

/// Change a subscription; `{"enabled": true}` takes up a disabled one where it stopped.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "events", params(("id" = WebhookId, Path)),
    request_body(content = WebhookPatch, example = json!({"enabled": true})),
    responses((status = 200, body = Webhook), Problems))]
async fn update_webhook(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<WebhookId>,
    Json(patch): Json<WebhookPatch>,
) -> ApiResult<Json<Webhook>> {
    Ok(Json(s.vmm.update_webhook_for(&actor, id, patch).await?))
}

/// Remove a subscription and its delivery log.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "events", params(("id" = WebhookId, Path)),
    responses((status = 204), Problems))]
async fn delete_webhook(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<WebhookId>,
) -> ApiResult<StatusCode> {
    s.vmm.delete_webhook_for(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A subscription's delivery attempts, newest first: event, attempt, outcome, the
/// receiver's status and how long it took.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "events", params(("id" = WebhookId, Path), PageQuery),
    responses((status = 200, body = Page<Delivery>), Problems))]
async fn list_deliveries(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<WebhookId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<Delivery>> {
    Ok(Paged(s.vmm.list_deliveries_for(&actor, id, &q.page()).await?))
}
