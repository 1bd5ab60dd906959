//! The backups area of the [`Store`](super::Store): targets (with their S3 secret),
//! backups and schedules.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backup::{Backup, BackupFilter, BackupSchedule, BackupTargetConfig};
use crate::error::Result;
use crate::event::Event;
use crate::id::{BackupId, BackupTargetId, ScheduleId, UserId};
use crate::page::{Page, PageRequest};
use crate::task::Task;

/// Backup targets and the record of every backup.
#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Keeps a new target, its S3 secret included; a name in use is a conflict.
    async fn create_backup_target(&self, target: &BackupTargetConfig) -> Result<()>;
    /// One target, with its S3 secret (for opening it; never for showing).
    async fn get_backup_target(&self, id: BackupTargetId) -> Result<BackupTargetConfig>;
    /// Targets by name; their S3 secrets are left out.
    async fn list_backup_targets(&self, page: &PageRequest) -> Result<Page<BackupTargetConfig>>;
    /// Removes a target; a conflict while any backup record names it.
    async fn delete_backup_target(&self, id: BackupTargetId) -> Result<()>;

    /// Records `backup` and queues `task` (which takes, restores, verifies or deletes it)
    /// in one transaction, under the rules of [`TaskStore::enqueue_task`](super::TaskStore::enqueue_task)
    /// (one active task per VM). A new backup is inserted; a known one has its state
    /// saved.
    async fn enqueue_backup_task(&self, backup: &Backup, task: &Task) -> Result<()>;
    /// One backup.
    async fn get_backup(&self, id: BackupId) -> Result<Backup>;
    /// Backups passing `filter`, newest first.
    async fn list_backups(&self, filter: &BackupFilter, page: &PageRequest) -> Result<Page<Backup>>;
    /// Saves a backup's state, sizes, consistency, verification and error, with `event`
    /// (what the change means) in the same transaction.
    async fn update_backup(&self, backup: &Backup, event: Option<Event>) -> Result<()>;
    /// Forgets a backup (its objects are already gone from the target), with `event`.
    async fn delete_backup(&self, id: BackupId, event: Option<Event>) -> Result<()>;

    /// Keeps a new schedule; its target must exist.
    async fn create_schedule(&self, schedule: &BackupSchedule) -> Result<()>;
    /// One schedule.
    async fn get_schedule(&self, id: ScheduleId) -> Result<BackupSchedule>;
    /// Schedules (of `owner`, if given), newest first.
    async fn list_schedules(&self, owner: Option<UserId>, page: &PageRequest)
        -> Result<Page<BackupSchedule>>;
    /// Saves a schedule's settings and next run.
    async fn update_schedule(&self, schedule: &BackupSchedule) -> Result<()>;
    /// Removes a schedule (its backups stay).
    async fn delete_schedule(&self, id: ScheduleId) -> Result<()>;
    /// Claims one enabled schedule due at `now`: saves it as having run at `now` (its next
    /// run the first after `now`, see [`BackupSchedule::ran`]) and returns it. Of callers
    /// racing for the same run, one gets it.
    async fn claim_due_schedule(&self, now: DateTime<Utc>) -> Result<Option<BackupSchedule>>;
}
