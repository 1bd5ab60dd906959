//! Notification channels: each user's email addresses and Telegram chats that get short
//! messages about the events they may read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::webhook::{ChannelSpec, NotificationChannel};
use vmm_core::{Access, Actor, Page, WebhookId};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_channel, list_channels))
        .routes(routes!(get_channel, delete_channel))
}

/// Send a short message about each event of `events` you may read to an email address (the
/// operator's `[smtp]`) or a Telegram chat (the operator's `[telegram]` bot).
#[utoipa::path(post, path = "/api/v1/notification-channels", operation_id = "create_notification_channel", tag = "events",
    request_body(content = ChannelSpec, example = json!({"kind": "email", "to": "ops@example.com", "events": ["vm.drifted", "task.failed", "node.offline"]})),
    responses((status = 201, body = NotificationChannel), Problems))]
async fn create_channel(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<ChannelSpec>,
) -> ApiResult<Response> {
    let channel = s.vmm.create_channel(&actor, spec).await?;
    Ok(created(format!("/api/v1/notification-channels/{}", channel.id), channel))
}

/// Your channels (everyone's for admins and read-only), newest first.
#[utoipa::path(get, path = "/api/v1/notification-channels", operation_id = "list_notification_channels", tag = "events", params(PageQuery),
    responses((status = 200, body = Page<NotificationChannel>), Problems))]
async fn list_channels(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<NotificationChannel>> {
    Ok(Paged(s.vmm.list_channels_for(&actor, &q.page()).await?))
}

/// One channel.
#[utoipa::path(get, path = "/api/v1/notification-channels/{id}", operation_id = "get_notification_channel", tag = "events", params(("id" = WebhookId, Path)),
    responses((status = 200, body = NotificationChannel), Problems))]
async fn get_channel(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<WebhookId>,
) -> ApiResult<Json<NotificationChannel>> {
    Ok(Json(s.vmm.channel_for(&actor, id, Access::Read).await?))
}

/// Remove a channel.
#[utoipa::path(delete, path = "/api/v1/notification-channels/{id}", operation_id = "delete_notification_channel", tag = "events", params(("id" = WebhookId, Path)),
    responses((status = 204), Problems))]
async fn delete_channel(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<WebhookId>,
) -> ApiResult<StatusCode> {
    s.vmm.delete_channel_for(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
