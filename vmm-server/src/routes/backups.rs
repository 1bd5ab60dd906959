//! Backups: the targets they are kept on (admins); backups of VMs taken, listed, restored
//! as new VMs, verified and deleted, each long step as a task; and backup schedules.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::backup::{BackupSchedule, SchedulePatch, ScheduleSpec};
use vmm_core::{
    Access, Actor, Backup, BackupFilter, BackupId, BackupSpec, BackupTargetConfig, BackupTargetId,
    BackupTargetSpec, Page, PageRequest, RestoreSpec, ScheduleId, Task, VmId,
};

use super::vms::{TaskAccepted, VmAccepted};
use super::{accepted, created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::AppState;

/// A backup whose taking was queued, and its task.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupAccepted {
    /// The backup, `pending`.
    pub backup: Backup,
    /// The task that takes it.
    pub task: Task,
}

/// Backup filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    /// Only backups of this VM.
    pub vm_id: Option<VmId>,
    /// Only backups on this target.
    pub target_id: Option<BackupTargetId>,
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// Routes of backup targets (an admin's business).
pub(super) fn target_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_target, list_targets))
        .routes(routes!(get_target, delete_target))
}

/// Routes of backups and schedules (their owner's).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(backup_vm))
        .routes(routes!(list_backups))
        .routes(routes!(get_backup, delete_backup))
        .routes(routes!(restore_backup))
        .routes(routes!(verify_backup))
        .routes(routes!(create_schedule, list_schedules))
        .routes(routes!(get_schedule, update_schedule, delete_schedule))
        .routes(routes!(run_schedule))
}

/// The backup tasks a schedule's run queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleRun {
    /// One backup task per VM (VMs busy with another task are passed over).
    pub tasks: Vec<Task>,
}

/// Make a backup schedule: a cron expression in UTC over chosen VMs (`vm_ids`) or all of
/// yours (`all: true`), a target, a mode and a retention (keep last / daily / weekly /
/// monthly; the newest good backup is never pruned). One scheduler per cluster runs it; a
/// scheduler that was down runs it once, not once per missed time.
#[utoipa::path(post, path = "/api/v1/backup-schedules", operation_id = "create_backup_schedule", tag = "backups",
    request_body(content = ScheduleSpec, example = json!({"name": "nightly", "cron": "0 3 * * *",
        "target_id": "01900000-0000-7000-8000-000000000009", "all": true, "mode": "incremental",
        "retention": {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}})),
    responses((status = 201, body = BackupSchedule), Problems))]
async fn create_schedule(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<ScheduleSpec>,
) -> ApiResult<Response> {
    let schedule = s.vmm.create_schedule(&actor, spec).await?;
    Ok(created(format!("/api/v1/backup-schedules/{}", schedule.id), schedule))
}

/// Backup schedules you may see, newest first.
#[utoipa::path(get, path = "/api/v1/backup-schedules", operation_id = "list_backup_schedules", tag = "backups", params(PageQuery),
    responses((status = 200, body = Page<BackupSchedule>), Problems))]
async fn list_schedules(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<BackupSchedule>> {
    Ok(Paged(s.vmm.list_schedules(&actor, &q.page()).await?))
}

/// One backup schedule.
#[utoipa::path(get, path = "/api/v1/backup-schedules/{id}", operation_id = "get_backup_schedule", tag = "backups", params(("id" = ScheduleId, Path)),
    responses((status = 200, body = BackupSchedule), Problems))]
async fn get_schedule(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<ScheduleId>,
) -> ApiResult<Json<BackupSchedule>> {
    Ok(Json(s.vmm.schedule_for(&actor, id, Access::Read).await?))
}

/// Change a backup schedule (a new cron counts from now).
#[utoipa::path(patch, path = "/api/v1/backup-schedules/{id}", operation_id = "update_backup_schedule", tag = "backups", params(("id" = ScheduleId, Path)),
    request_body(content = SchedulePatch, example = json!({"enabled": false})),
    responses((status = 200, body = BackupSchedule), Problems))]
async fn update_schedule(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<ScheduleId>,
    Json(patch): Json<SchedulePatch>,
) -> ApiResult<Json<BackupSchedule>> {
    Ok(Json(s.vmm.update_schedule(&actor, id, patch).await?))
}

/// Remove a backup schedule; the backups it made stay.
#[utoipa::path(delete, path = "/api/v1/backup-schedules/{id}", operation_id = "delete_backup_schedule", tag = "backups", params(("id" = ScheduleId, Path)),
    responses((status = 204), Problems))]
async fn delete_schedule(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<ScheduleId>,
) -> ApiResult<StatusCode> {
    s.vmm.delete_schedule(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run a backup schedule now (its next run stays as it was).
#[utoipa::path(post, path = "/api/v1/backup-schedules/{id}/run", operation_id = "run_backup_schedule", tag = "backups", params(("id" = ScheduleId, Path)),
    responses((status = 202, body = ScheduleRun), Problems))]
async fn run_schedule(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<ScheduleId>,
) -> ApiResult<Response> {
    let tasks = s.vmm.run_schedule_now(&actor, id).await?;
    Ok((StatusCode::ACCEPTED, Json(ScheduleRun { tasks })).into_response())
}

/// Add a backup target: a directory on the vmmd host (`dir:///srv/backups`, local or
/// NFS-mounted; it must exist) or S3-compatible storage (`s3://bucket/prefix` with `s3`).
/// It is written, read and listed once before it is kept. The S3 secret is never shown
/// again.
#[utoipa::path(post, path = "/api/v1/backup-targets", operation_id = "create_backup_target", tag = "backups",
    request_body(content = BackupTargetSpec, examples(
        ("directory" = (value = json!({"name": "local", "url": "dir:///srv/vmm-backups"}))),
        ("s3" = (value = json!({"name": "offsite", "url": "s3://vmm-backups/site-a",
            "s3": {"endpoint": "https://s3.example.net", "region": "eu-1", "access_key_id": "AKIAEXAMPLE",
                   "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}))))),
    responses((status = 201, body = BackupTargetConfig), Problems))]
async fn create_target(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<BackupTargetSpec>,
) -> ApiResult<Response> {
    let target = s.vmm.create_backup_target(&actor, spec).await?;
    Ok(created(format!("/api/v1/backup-targets/{}", target.id), target))
}

/// Backup targets, newest first.
#[utoipa::path(get, path = "/api/v1/backup-targets", operation_id = "list_backup_targets", tag = "backups", params(PageQuery),
    responses((status = 200, body = Page<BackupTargetConfig>), Problems))]
async fn list_targets(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<BackupTargetConfig>> {
    Ok(Paged(s.vmm.list_backup_targets(&actor, &q.page()).await?))
}

/// One backup target.
#[utoipa::path(get, path = "/api/v1/backup-targets/{id}", operation_id = "get_backup_target", tag = "backups", params(("id" = BackupTargetId, Path)),
    responses((status = 200, body = BackupTargetConfig), Problems))]
async fn get_target(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<BackupTargetId>,
) -> ApiResult<Json<BackupTargetConfig>> {
    Ok(Json(s.vmm.get_backup_target(&actor, id).await?))
}

/// Remove a backup target that holds no backups (409 while it does).
#[utoipa::path(delete, path = "/api/v1/backup-targets/{id}", operation_id = "delete_backup_target", tag = "backups", params(("id" = BackupTargetId, Path)),
    responses((status = 204), Problems))]
async fn delete_target(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<BackupTargetId>,
) -> ApiResult<StatusCode> {
    s.vmm.delete_backup_target(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Back a VM up to a target: its disk in checked chunks, then a manifest; `incremental`
/// stores only the chunks that changed since the VM's newest backup on that target. A
/// running VM's disk is copied at one instant (`consistency`: `fs_frozen` with a guest
/// agent, else `crash_consistent`).
#[utoipa::path(post, path = "/api/v1/vms/{id}/backups", operation_id = "create_vm_backup", tag = "backups", params(("id" = VmId, Path)),
    request_body(content = BackupSpec, example = json!({"target_id": "01900000-0000-7000-8000-000000000009", "mode": "full"})),
    responses((status = 202, body = BackupAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn backup_vm(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Json(spec): Json<BackupSpec>,
) -> ApiResult<Response> {
    let (backup, task) = s.vmm.backup_vm(&actor, id, spec).await?;
    Ok(accepted(&task, BackupAccepted { backup, task: task.clone() }))
}

/// Backups you may see, newest first.
#[utoipa::path(get, path = "/api/v1/backups", tag = "backups", params(BackupQuery),
    responses((status = 200, body = Page<Backup>), Problems))]
async fn list_backups(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<BackupQuery>,
) -> ApiResult<Paged<Backup>> {
    let filter = BackupFilter { vm_id: q.vm_id, target_id: q.target_id, owner_id: None };
    let page = PageRequest { limit: q.limit, cursor: q.cursor };
    Ok(Paged(s.vmm.list_backups(&actor, &filter, &page).await?))
}

/// One backup.
#[utoipa::path(get, path = "/api/v1/backups/{id}", tag = "backups", params(("id" = BackupId, Path)),
    responses((status = 200, body = Backup), Problems))]
async fn get_backup(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<BackupId>,
) -> ApiResult<Json<Backup>> {
    Ok(Json(s.vmm.backup_for(&actor, id, Access::Read).await?))
}

/// Delete a backup from its target (a task). Chunks a newer incremental backup shares stay
/// until it goes too.
#[utoipa::path(delete, path = "/api/v1/backups/{id}", tag = "backups", params(("id" = BackupId, Path)),
    responses((status = 202, body = TaskAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn delete_backup(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<BackupId>,
) -> ApiResult<Response> {
    let task = s.vmm.delete_backup(&actor, id).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}

/// Restore a backup as a new VM (`new_vm`: the settings it was taken with, a new id, new
/// addresses from the same pools, a new seed; placed like a create), or into its own VM
/// (`vm_id`, stopped: its disk is kept aside until the backup's is whole, and put back if
/// the restore fails). Every chunk is checked as it streams; a bad one fails the task,
/// naming it, and leaves nothing behind.
#[utoipa::path(post, path = "/api/v1/backups/{id}/restore", tag = "backups", params(("id" = BackupId, Path)),
    request_body(content = RestoreSpec, examples(
        ("as a new VM" = (value = json!({"new_vm": {"name": "web-1-restored"}}))),
        ("into its VM" = (value = json!({"vm_id": "01900000-0000-7000-8000-000000000003"}))))),
    responses((status = 202, body = VmAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn restore_backup(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<BackupId>,
    Json(spec): Json<RestoreSpec>,
) -> ApiResult<Response> {
    let (vm, task) = s.vmm.restore_backup(&actor, id, spec).await?;
    Ok(accepted(&task, VmAccepted { vm, task: task.clone() }))
}

/// Re-read a backup and check every chunk against its manifest; the result is kept on the
/// backup (`verified`) and recorded as a `backup.verified` event.
#[utoipa::path(post, path = "/api/v1/backups/{id}/verify", tag = "backups", params(("id" = BackupId, Path)),
    responses((status = 202, body = TaskAccepted, headers(("Location" = String, description = "The task"))), Problems))]
async fn verify_backup(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<BackupId>,
) -> ApiResult<Response> {
    let task = s.vmm.verify_backup(&actor, id).await?;
    Ok(accepted(&task, TaskAccepted { task: task.clone() }))
}
