//! Long operations.

use std::time::Duration;

use axum::extract::State;
use axum::Extension;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Access, Actor, Page, PageRequest, Task, TaskFilter, TaskId, TaskKind, TaskState, VmId};

use super::{ApiResult, Json, Paged, Path, Problems, Query};
use crate::{ApiError, AppState};

/// Task filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks of this VM.
    pub vm_id: Option<VmId>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks of this kind.
    pub kind: Option<TaskKind>,
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// How long to wait.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds, 0 to 60 (default 30).
    pub timeout_s: Option<f64>,
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(wait_task))
        .routes(routes!(cancel_task))
}

/// Tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TaskQuery), responses((status = 200, body = Page<Task>), Problems))]
async fn list_tasks(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Paged<Task>> {
    let filter = TaskFilter { vm_id: q.vm_id, state: q.state, kind: q.kind, owner_id: None };
    Ok(Paged(s.vmm.list_tasks_for(&actor, &filter, &PageRequest { limit: q.limit, cursor: q.cursor }).await?))
}

/// One task.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = TaskId, Path)), responses((status = 200, body = Task), Problems))]
async fn get_task(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<TaskId>,
) -> ApiResult<Json<Task>> {
    Ok(Json(s.vmm.task_for(&actor, id, Access::Read).await?))
}

/// Wait until the task ends or the timeout passes; answers the task as it is then.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/wait", tag = "tasks", params(("id" = TaskId, Path), WaitQuery),
    responses((status = 200, body = Task), Problems))]
async fn wait_task(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<TaskId>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<Task>> {
    s.vmm.task_for(&actor, id, Access::Read).await?;
    let seconds = q.timeout_s.unwrap_or(30.0);
    if !(0.0..=60.0).contains(&seconds) {
        return Err(ApiError::invalid("timeout_s", "must be between 0 and 60"));
    }
    Ok(Json(s.vmm.wait_task(id, Duration::from_secs_f64(seconds)).await?))
}

/// Cancel a queued task, or ask a running one to stop and undo what it did.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = TaskId, Path)),
    responses((status = 200, body = Task), Problems))]
async fn cancel_task(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<TaskId>,
) -> ApiResult<Json<Task>> {
    s.vmm.task_for(&actor, id, Access::Write).await?;
    Ok(Json(s.vmm.cancel_task(id).await?))
}
