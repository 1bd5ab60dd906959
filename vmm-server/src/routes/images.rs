//! OS images: added by JSON, their data uploaded as a stream or fetched from a URL.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::TryStreamExt;
use serde::Serialize;
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Image, ImageId, ImageSpec, Page, Task};

use super::{accepted, created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

/// An image whose data a task fetches, and the task.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageAccepted {
    /// The image, in state `importing`.
    pub image: Image,
    /// The import task.
    pub task: Task,
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_image, list_images))
        .routes(routes!(get_image, delete_image))
        // The data is streamed to disk: no body limit here but the image size limit.
        .merge(OpenApiRouter::new().routes(routes!(upload_image)).layer(DefaultBodyLimit::disable()))
}

/// Add an image. Without `source_url` it waits for its data (`PUT /images/{id}/data`,
/// 201); with one, an `import_image` task fetches it (202). The URL must be allowed by the
/// server and is checked (and tried) before anything is stored.
#[utoipa::path(post, path = "/api/v1/images", tag = "images",
    request_body(content = ImageSpec, example = json!({"name": "debian-12", "os": {"family": "debian", "version": "12"}, "format": "qcow2"})),
    responses((status = 201, body = Image), (status = 202, body = ImageAccepted), Problems))]
async fn create_image(State(s): State<AppState>, Json(spec): Json<ImageSpec>) -> ApiResult<Response> {
    match s.vmm.create_image(spec).await? {
        (image, Some(task)) => Ok(accepted(&task, ImageAccepted { image, task: task.clone() })),
        (image, None) => Ok(created(format!("/api/v1/images/{}", image.id), image)),
    }
}

/// Images, newest first.
#[utoipa::path(get, path = "/api/v1/images", tag = "images", params(PageQuery), responses((status = 200, body = Page<Image>), Problems))]
async fn list_images(State(s): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Paged<Image>> {
    Ok(Paged(s.vmm.list_images(&q.page()).await?))
}

/// One image.
#[utoipa::path(get, path = "/api/v1/images/{id}", tag = "images", params(("id" = ImageId, Path)),
    responses((status = 200, body = Image), Problems))]
async fn get_image(State(s): State<AppState>, Path(id): Path<ImageId>) -> ApiResult<Json<Image>> {
    Ok(Json(s.vmm.get_image(id).await?))
}

/// Delete an image, its data and the nodes' copies; refused (409) while a VM is being
/// installed from it.
#[utoipa::path(delete, path = "/api/v1/images/{id}", tag = "images", params(("id" = ImageId, Path)),
    responses((status = 204), Problems))]
async fn delete_image(State(s): State<AppState>, Path(id): Path<ImageId>) -> ApiResult<StatusCode> {
    s.vmm.delete_image(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Upload an image's data: the body is the file, streamed to disk (never held in memory)
/// while its SHA-256 is computed, then checked with `qemu-img info` under the declared
/// format. Bad data (another format, a backing or data file, over the size limits) is a
/// 422 and leaves the image waiting for its data.
#[utoipa::path(put, path = "/api/v1/images/{id}/data", tag = "images", params(("id" = ImageId, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = Image), Problems))]
async fn upload_image(
    State(s): State<AppState>,
    Path(id): Path<ImageId>,
    body: Body,
) -> ApiResult<Json<Image>> {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    // Read on the blocking pool by the image repo.
    let data = SyncIoBridge::new(StreamReader::new(stream));
    Ok(Json(s.vmm.upload_image(id, Box::new(data)).await?))
}
