//! [`TaskStore`] in memory: leases expire by the store's clock.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{InMemoryStore, StoreState};
use crate::error::{Error, Result};
use crate::id::{TaskId, VmId};
use crate::page::{Page, PageRequest};
use crate::store::{Finished, TaskStore};
use crate::task::{Task, TaskFilter, TaskState};
use crate::vm::VmAction;

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Claims up to `max` claimable tasks but `except` in `s` ([`TaskStore::claim_tasks`]).
fn claim_in(
    s: &mut StoreState,
    owner: &str,
    now: DateTime<Utc>,
    store_now: DateTime<Utc>,
    lease: Duration,
    max: usize,
    except: &[TaskId],
) -> Vec<Task> {
    let claimable: Vec<TaskId> = s
        .active
        .iter()
        .copied()
        .filter(|id| !except.contains(id) && s.tasks[id].is_claimable(store_now))
        .take(max)
        .collect();
    let mut claimed = Vec::with_capacity(claimable.len());
    for id in claimable {
        let Some(task) = s.tasks.get_mut(&id) else { continue };
        let before = task.clone();
        task.claim(owner, now, store_now + span(lease));
        let task = task.clone();
        s.task_changed(Some(&before), &task, store_now);
        claimed.push(task);
    }
    claimed
}

/// Saves a run's task in `s` ([`TaskStore::save_task`]).
fn save_in(s: &mut StoreState, task: &Task, fence: u64, store_now: DateTime<Utc>) -> Result<()> {
    let stored = s.tasks.get_mut(&task.id).ok_or(Error::TaskNotFound { id: task.id })?;
    if !stored.is_leased_with(fence, store_now) {
        return Err(Error::LeaseLost { task: task.id });
    }
    let saved = task.saved_over(stored);
    let before = std::mem::replace(stored, saved.clone());
    s.finish(&saved);
    s.task_changed(Some(&before), &saved, store_now);
    Ok(())
}

/// Queues a task in `s` ([`TaskStore::enqueue_task`]).
pub(super) fn enqueue_in(s: &mut StoreState, task: &Task, action: Option<VmAction>) -> Result<()> {
    if s.tasks.contains_key(&task.id) {
        return Err(Error::conflict(format!("task {} exists", task.id)));
    }
    if let Some(id) = task.image_id().filter(|i| !s.images.contains_key(i)) {
        return Err(Error::ImageNotFound { id });
    }
    if let Some(vm_id) = task.vm_id {
        let vm = s.vms.get(&vm_id).ok_or(Error::VmNotFound { id: vm_id })?;
        if let Some(&active) = s.vm_active.get(&vm_id) {
            return Err(Error::ActiveTask { vm: vm_id, task: active });
        }
        if let Some(action) = action {
            vm.state.apply(vm_id, action)?;
        }
        s.vm_active.insert(vm_id, task.id);
    }
    s.insert_task(task);
    s.active.insert(task.id);
    Ok(())
}

#[async_trait]
impl TaskStore for InMemoryStore {
    async fn enqueue_task(&self, task: &Task, action: Option<VmAction>) -> Result<()> {
        enqueue_in(&mut self.state(), task, action)
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        self.state().tasks.get(&id).cloned().ok_or(Error::TaskNotFound { id })
    }

    async fn count_active_tasks(&self) -> Result<Vec<(TaskState, u64)>> {
        let s = self.state();
        let states = s.active.iter().filter_map(|id| s.tasks.get(id)).map(|t| t.state);
        let queued = states.clone().filter(|st| *st == TaskState::Queued).count() as u64;
        let running = states.filter(|st| *st == TaskState::Running).count() as u64;
        Ok(vec![(TaskState::Queued, queued), (TaskState::Running, running)])
    }

    async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
        super::page_of(&self.state().tasks, page, |t| filter.matches(t))
    }

    async fn claim_tasks(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        let store_now = self.clock.now();
        Ok(claim_in(&mut self.state(), owner, now, store_now, lease, max, &[]))
    }

    async fn finish_and_claim(
        &self,
        ends: &[(Task, u64)],
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Finished> {
        let store_now = self.clock.now();
        let mut s = self.state();
        let saved = ends.iter().map(|(task, fence)| save_in(&mut s, task, *fence, store_now)).collect();
        let ended: Vec<TaskId> = ends.iter().map(|(task, _)| task.id).collect();
        let claimed = claim_in(&mut s, owner, now, store_now, lease, max, &ended);
        Ok(Finished { saved, claimed })
    }

    async fn renew_lease(&self, id: TaskId, fence: u64, lease: Duration) -> Result<()> {
        let store_now = self.clock.now();
        let mut s = self.state();
        let task = s.tasks.get_mut(&id).ok_or(Error::TaskNotFound { id })?;
        if !task.is_leased_with(fence, store_now) {
            return Err(Error::LeaseLost { task: id });
        }
        if let Some(l) = task.lease.as_mut() {
            l.expires_at = store_now + span(lease);
        }
        Ok(())
    }

    async fn save_task(&self, task: &Task, fence: u64) -> Result<()> {
        let store_now = self.clock.now();
        save_in(&mut self.state(), task, fence, store_now)
    }

    async fn cancel_task(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
        let mut s = self.state();
        let task = s.tasks.get_mut(&id).ok_or(Error::TaskNotFound { id })?;
        let before = task.clone();
        task.cancel(now)?;
        let task = task.clone();
        s.finish(&task);
        s.task_changed(Some(&before), &task, now);
        Ok(task)
    }
}

impl InMemoryStore {
    /// The active task of `vm`, if any (for tests).
    pub fn active_task_of(&self, vm: VmId) -> Option<TaskId> {
        self.state().vm_active.get(&vm).copied()
    }
}
