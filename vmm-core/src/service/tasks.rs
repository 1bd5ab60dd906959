//! Tasks: read, wait for and cancel them.

use std::time::{Duration, Instant};

use futures::future::select;
use futures_timer::Delay;

use super::Vmm;
use crate::error::Result;
use crate::id::TaskId;
use crate::page::{Page, PageRequest};
use crate::task::{Task, TaskFilter, TaskKind, TaskParams, TaskState};

impl Vmm {
    /// One task.
    pub async fn get_task(&self, id: TaskId) -> Result<Task> {
        self.inner.store.get_task(id).await
    }

    /// Tasks, newest first.
    pub async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
        self.inner.store.list_tasks(filter, page).await
    }

    /// Cancels a queued task, or asks a running one to stop at its next step boundary and
    /// undo what it did. A queued create (or restore as a new VM) gives back its placement
    /// and address at once; a queued backup is recorded failed.
    pub async fn cancel_task(&self, id: TaskId) -> Result<Task> {
        let task = self.inner.store.cancel_task(id, self.now()).await?;
        self.notify();
        if task.state != TaskState::Cancelled {
            return Ok(task);
        }
        let new_vm = match (&task.kind, &task.params) {
            (TaskKind::CreateVm, _) => true,
            (TaskKind::RestoreBackup, TaskParams::Restore { in_place, .. }) => !in_place,
            _ => false,
        };
        if let (true, Some(vm)) = (new_vm, task.vm_id) {
            // Nothing exists on the node yet. Should this fail or the process die here, the VM
            // stays `creating` with no task, and deleting it cleans up.
            self.undo_create(vm).await?;
        }
        if let (TaskParams::Migrate { to, .. }, Some(vm)) = (&task.params, task.vm_id) {
            // Nothing moved yet: the capacity held on the target goes back.
            self.inner.store.end_migration(vm, *to).await?;
        }
        if let (TaskKind::BackupVm, Some(backup)) = (task.kind, task.backup_id()) {
            self.backup_not_taken(backup, "cancelled before it started").await?;
        }
        Ok(task)
    }

    /// Waits until the task ends or `timeout` passes, and returns it as it is then.
    pub async fn wait_task(&self, id: TaskId, timeout: Duration) -> Result<Task> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let listener = self.inner.changed.listen();
            let task = self.inner.store.get_task(id).await?;
            let now = Instant::now();
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
            if !task.state.is_active() || left.is_zero() {
                return Ok(task);
            }
            // Tasks run by another process do not notify us: poll as well.
            let nap = left.min(self.inner.config.poll_interval);
            select(listener, Delay::new(nap)).await;
        }
    }
}
