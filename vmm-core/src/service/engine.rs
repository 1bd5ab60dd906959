//! The worker engine: claims tasks, runs each under a fenced lease it renews, stops an
//! attempt at its kind's deadline, gives up after `max_attempts` claims, and undoes what a
//! task that did not succeed left behind.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use futures::future::{select, BoxFuture, Either, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use futures_timer::Delay;
use tracing::Instrument;

use super::{chrono_duration, jobs, Vmm};
use crate::error::{error_chain, Error, Result};
use crate::id::TaskId;
use crate::task::{Task, TaskState};

/// A claimed task being run by this worker, with the fence of its claim.
pub(super) struct Run {
    pub(super) task: Task,
    pub(super) fence: u64,
    /// When this attempt must have ended.
    pub(super) deadline: DateTime<Utc>,
}

/// How a task body ended when it did not fail.
pub(super) enum Outcome {
    Done,
    Cancelled,
}

impl Vmm {
    /// Claims one task and runs it to its end. False when nothing was claimable.
    pub async fn run_next_task(&self) -> Result<bool> {
        match self.claim(1).await?.pop() {
            Some(task) => {
                self.execute(task, None).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Runs tasks one after another until none is claimable; returns how many ran.
    pub async fn run_until_idle(&self) -> Result<usize> {
        let mut n = 0;
        while self.run_next_task().await? {
            n += 1;
        }
        Ok(n)
    }

    /// The worker loop: claims and runs up to `concurrency` tasks at once, recovers tasks
    /// whose lease expired, and returns once `shutdown` completes and the tasks in hand end.
    ///
    /// Claims run in the same set of futures as the tasks, so that a claim waiting for the
    /// database never stops a running task (which may hold the lock it waits for) from being
    /// polled; and no future that touches the store is ever dropped half-way.
    pub async fn run_workers(&self, shutdown: impl Future<Output = ()>) {
        enum Event {
            Claimed(Result<Vec<Task>>),
            Ran,
        }
        let config = &self.inner.config;
        let mut shutdown = pin!(shutdown.fuse());
        let (mut running, mut claiming, mut idle, mut stopping) = (0usize, false, false, false);
        // Whether a slot whose task ended takes the next one as it records the end.
        let chaining = AtomicBool::new(true);
        let mut work: FuturesUnordered<BoxFuture<'_, Event>> = FuturesUnordered::new();
        loop {
            if !stopping && !claiming && !idle && running < config.concurrency.max(1) {
                // Fill every free slot in one claim.
                let free = config.concurrency.max(1) - running;
                work.push(Box::pin(self.claim(free).map(Event::Claimed)));
                claiming = true;
            }
            if stopping && running == 0 && !claiming {
                return;
            }
            let wake = select(self.inner.changed.listen(), Delay::new(config.poll_interval));
            let next = async {
                match work.next().await {
                    Some(event) => event,
                    None => std::future::pending().await,
                }
            };
            // The losers of the race borrow `work`: settle the outcome before touching it.
            let outcome = match select(pin!(next), select(wake, shutdown.as_mut())).await {
                Either::Left((event, _)) => Some(event),
                Either::Right((Either::Left(_), _)) => None,
                Either::Right((Either::Right(_), _)) => {
                    stopping = true;
                    chaining.store(false, Ordering::Relaxed);
                    None
                }
            };
            match outcome {
                Some(Event::Claimed(claimed)) => {
                    claiming = false;
                    match claimed {
                        Ok(tasks) if tasks.is_empty() => idle = true,
                        Ok(tasks) => {
                            for task in tasks {
                                running += 1;
                                work.push(Box::pin(self.execute(task, Some(&chaining)).map(|()| Event::Ran)));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %error_chain(&e), "claiming a task failed");
                            idle = true;
                        }
                    }
                }
                Some(Event::Ran) => {
                    running -= 1;
                    idle = false;
                }
                // Woken: something changed, or it is time to look again.
                None => idle = false,
            }
        }
    }

    async fn claim(&self, max: usize) -> Result<Vec<Task>> {
        let config = &self.inner.config;
        self.inner.store.claim_tasks(&config.worker_id, self.now(), config.lease, max).await
    }

    /// Runs `task` and, while `chaining` says so, the next task each run claims as it ends.
    async fn execute(&self, task: Task, chaining: Option<&AtomicBool>) {
        let mut next = Some(task);
        while let Some(task) = next.take() {
            next = self.execute_one(task, chaining).await;
            // Whoever waits for a task, or for its events, looks again.
            self.notify();
        }
    }

    /// Runs one task under its lease; while `chaining` says so as it ends, returns the
    /// next task claimed then.
    async fn execute_one(&self, task: Task, chaining: Option<&AtomicBool>) -> Option<Task> {
        let span = tracing::info_span!("task", task = %task.id, kind = %task.kind, vm = ?task.vm_id, attempt = task.attempts);
        let (id, fence) = (task.id, task.fence());
        // Each attempt has the kind's deadline, counted from its claim: time the task spent
        // queued, or waiting for a vmmd that was down, does not count against it; with
        // `max_attempts`, the whole task is bounded too.
        let limit = self.inner.config.deadlines.of(task.kind, self.inner.config.shutdown_timeout);
        let run = Run { task, fence, deadline: self.now() + chrono_duration(limit) };
        let work = self.perform(run);
        let ended = match select(pin!(work.instrument(span.clone())), pin!(self.keep_lease(id, fence))).await
        {
            Either::Left((ended, _)) => ended,
            Either::Right((e, _)) => {
                span.in_scope(|| tracing::warn!(error = %e, "lease lost; leaving the task to its new run"));
                None
            }
        };
        // Recording the end (and claiming the next task) is not raced with the lease
        // keeper: a next task claimed must never be dropped half-way.
        let (run, result) = ended?;
        let chain = chaining.is_some_and(|c| c.load(Ordering::Relaxed));
        self.finish(run, result, chain).instrument(span).await
    }

    /// Renews the lease every third of its length; ends only when the lease is lost.
    async fn keep_lease(&self, id: TaskId, fence: u64) -> Error {
        let config = &self.inner.config;
        loop {
            Delay::new(config.lease / 3).await;
            match self.inner.store.renew_lease(id, fence, config.lease).await {
                Ok(()) => {}
                Err(e @ Error::LeaseLost { .. }) => return e,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "renewing a lease failed; retrying")
                }
            }
        }
    }

    /// Runs the task's body (and its undo when it failed); returns the run and how it
    /// ended, or `None` when the lease was lost.
    async fn perform(&self, mut run: Run) -> Option<(Run, Result<Outcome>)> {
        tracing::info!("task started");
        let max = self.inner.config.max_attempts;
        let result = if run.task.attempts > max {
            Err(Error::conflict(format!("gave up after {max} attempts")))
        } else {
            let timeout = self.deadline_error(&run);
            let left = (run.deadline - self.now()).to_std().unwrap_or_default();
            let body = pin!(jobs::run(self, &mut run));
            match select(body, Delay::new(left)).await {
                Either::Left((result, _)) => result,
                // The body is dropped here, wherever it was waiting.
                Either::Right(_) => Err(timeout),
            }
        };
        let result = match result {
            Ok(outcome) => Ok(outcome),
            Err(e @ Error::LeaseLost { .. }) => {
                tracing::warn!(error = %e, "lease lost");
                return None;
            }
            Err(e) => {
                // Undo what can be undone, within the same fence.
                let now = self.now();
                run.task.log(now, format!("undoing the earlier steps after: {e}"));
                match jobs::undo(self, &mut run).await {
                    Ok(()) => Err(e),
                    Err(undo) => {
                        tracing::warn!(error = %error_chain(&undo), "undoing the task failed");
                        Err(Error::conflict(format!(
                            "{}; undoing it failed ({}), the VM is left in state error for a later delete",
                            e.public_message(),
                            undo.public_message()
                        )))
                    }
                }
            }
        };
        Some((run, result))
    }

    fn deadline_error(&self, run: &Run) -> Error {
        let limit = self.inner.config.deadlines.of(run.task.kind, self.inner.config.shutdown_timeout);
        Error::timeout(limit)
    }

    /// Records how the task ended; with `chain`, claims the next task in the same
    /// transaction and returns it. The task's error is the error's public message: a
    /// backend's own text (libvirt's, a database's) goes to the log only.
    async fn finish(&self, mut run: Run, result: Result<Outcome>, chain: bool) -> Option<Task> {
        let now = self.now();
        let (state, error) = match result {
            Ok(Outcome::Done) => (TaskState::Succeeded, None),
            Ok(Outcome::Cancelled) => (TaskState::Cancelled, None),
            Err(e) => (TaskState::Failed, Some(e)),
        };
        if let Some(e) = &error {
            tracing::warn!(error = %error_chain(e), "task failed");
        }
        run.task.state = state;
        if state == TaskState::Succeeded {
            run.task.progress = 100;
        }
        run.task.log(now, state.to_string());
        run.task.error_code = error.as_ref().map(|e| e.code().to_owned());
        run.task.error = error.as_ref().map(Error::public_message);
        run.task.finished_at = Some(now);
        let (config, store) = (&self.inner.config, &self.inner.store);
        let saved = if chain {
            match store
                .finish_and_claim(&run.task, run.fence, &config.worker_id, self.now(), config.lease)
                .await
            {
                // Claiming the next task failed, and the end with it: the end alone.
                Err(e) if !matches!(e, Error::LeaseLost { .. }) => {
                    tracing::warn!(error = %error_chain(&e), "claiming the next task failed");
                    store.save_task(&run.task, run.fence).await.map(|()| None)
                }
                saved => saved,
            }
        } else {
            store.save_task(&run.task, run.fence).await.map(|()| None)
        };
        match saved {
            Ok(next) => {
                tracing::info!(state = %state, error = run.task.error.as_deref(), "task ended");
                next
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "could not record the end of the task");
                None
            }
        }
    }

    /// Logs a step and saves progress; fails with `LeaseLost` if another run took over.
    pub(super) async fn step(&self, run: &mut Run, progress: u8, message: impl Into<String>) -> Result<()> {
        let now = self.now();
        let message = message.into();
        tracing::debug!(progress, message = %message, "step");
        run.task.progress = progress;
        run.task.log(now, message);
        self.inner.store.save_task(&run.task, run.fence).await
    }

    /// Saves that `checkpoint` is reached, before the step it guards, so that a resumed run
    /// does not repeat that step.
    pub(super) async fn checkpoint(&self, run: &mut Run, checkpoint: &str) -> Result<()> {
        if !run.task.reached(checkpoint) {
            run.task.checkpoints.push(checkpoint.to_owned());
        }
        self.inner.store.save_task(&run.task, run.fence).await
    }

    /// A step boundary: whether a user asked to cancel the task, and an error once the
    /// task's deadline has passed.
    pub(super) async fn cancel_requested(&self, run: &mut Run) -> Result<bool> {
        if self.now() >= run.deadline {
            return Err(self.deadline_error(run));
        }
        let stored = self.inner.store.get_task(run.task.id).await?;
        run.task.cancel_requested = stored.cancel_requested;
        Ok(stored.cancel_requested)
    }
}
