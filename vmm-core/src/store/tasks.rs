//! The tasks area of the [`Store`](super::Store).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::id::TaskId;
use crate::page::{Page, PageRequest};
use crate::task::{Task, TaskFilter};
use crate::vm::VmAction;

/// What [`TaskStore::finish_and_claim`] did.
#[derive(Debug)]
pub struct Finished {
    /// Whether each end was recorded, in the order given: `LeaseLost` for a run that no
    /// longer holds its lease, `TaskNotFound` for a task that is gone; where the store saves
    /// each end on its own (the default), whatever else failed.
    pub saved: Vec<Result<()>>,
    /// The tasks claimed, oldest first.
    pub claimed: Vec<Task>,
}

/// Durable tasks and their leases. Lease expiry is judged by the store's own clock (the
/// database's, for SQL stores), so workers on hosts whose clocks disagree still agree on
/// who holds a task. Every run holds a fence ([`Task::claim`]): renewing and saving check
/// it, so a run that lost its lease changes nothing.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Queues a task. When it targets a VM: the VM must exist, `action` (if given) must be
    /// legal in its state, and the VM must have no other active task
    /// ([`ActiveTask`](crate::Error::ActiveTask) naming it otherwise).
    async fn enqueue_task(&self, task: &Task, action: Option<VmAction>) -> Result<()>;
    /// One task.
    async fn get_task(&self, id: TaskId) -> Result<Task>;
    /// Tasks, newest first.
    async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>>;
    /// Claims up to `max` of the oldest claimable tasks (queued, or running under a lease
    /// expired by the store's clock) for `owner`, each with a lease of `lease` from the
    /// store's now and a new fence, oldest first. Two workers never claim the same task.
    /// `now` stamps the step log. One claim for several tasks lets a worker with several
    /// free slots fill them in one round trip.
    async fn claim_tasks(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>>;
    /// Claims the oldest claimable task, as [`claim_tasks`](Self::claim_tasks) does.
    async fn claim_task(&self, owner: &str, now: DateTime<Utc>, lease: Duration) -> Result<Option<Task>> {
        Ok(self.claim_tasks(owner, now, lease, 1).await?.pop())
    }
    /// Extends the lease of the run holding `fence` to `lease` from the store's now;
    /// [`LeaseLost`](crate::Error::LeaseLost) if that run no longer holds it.
    async fn renew_lease(&self, id: TaskId, fence: u64, lease: Duration) -> Result<()>;
    /// Saves a task's progress, steps, checkpoints, state, error and end
    /// ([`Task::saved_over`]) if the run holding `fence` still holds its live lease;
    /// `LeaseLost` otherwise.
    async fn save_task(&self, task: &Task, fence: u64) -> Result<()>;
    /// Records the ends of several runs, each `(task, fence)` as
    /// [`save_task`](Self::save_task) saves it, and claims up to `max` of the oldest
    /// claimable tasks for `owner` as [`claim_tasks`](Self::claim_tasks) does: a worker
    /// whose runs ended records them and fills the freed slots in one go. A run that lost
    /// its lease, or whose task is gone, fails alone, in [`Finished::saved`]. The stores
    /// here do it all in one transaction (the memory store under its lock): an error means
    /// nothing was recorded and nothing claimed, and a task ended in the call is never
    /// claimed by it. The default claims first, then saves each end on its own.
    async fn finish_and_claim(
        &self,
        ends: &[(Task, u64)],
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Finished> {
        // Claiming first: a task still running under its live lease is not claimable, and
        // a failed claim has recorded nothing yet.
        let claimed = self.claim_tasks(owner, now, lease, max).await?;
        let mut saved = Vec::with_capacity(ends.len());
        for (task, fence) in ends {
            saved.push(self.save_task(task, *fence).await);
        }
        Ok(Finished { saved, claimed })
    }
    /// Cancels a queued task at once, or asks a running one to stop ([`Task::cancel`]);
    /// returns the task. A conflict for a task that has ended.
    async fn cancel_task(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task>;

    /// How many tasks are queued and how many run (for metrics).
    async fn count_active_tasks(&self) -> Result<Vec<(crate::task::TaskState, u64)>>;
}
