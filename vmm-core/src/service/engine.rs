//! The worker engine: claims tasks, runs each under a fenced lease it renews, stops an
//! attempt at its kind's deadline, gives up after `max_attempts` claims, and undoes what a
//! task that did not succeed left behind.

use std::future::Future;
use std::pin::pin;

use chrono::{DateTime, Utc};
use futures::channel::oneshot;
use futures::future::{join_all, select, BoxFuture, Either, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use futures_timer::Delay;
use tracing::Instrument;

use super::{chrono_duration, jobs, Vmm};
use crate::error::{error_chain, Error, Result};
use crate::id::TaskId;
use crate::store::Finished;
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

/// A run that ended, with its task as it is to be recorded.
struct Ended {
    task: Task,
    fence: u64,
    span: tracing::Span,
    /// Dropped with the end once it is recorded: its lease, renewed while the end waits
    /// for its store call, is let go then.
    _held: Option<oneshot::Sender<()>>,
}

impl Ended {
    /// Logs whether the end was recorded.
    fn recorded(&self, saved: Result<()>) {
        let _in = self.span.enter();
        match saved {
            Ok(()) => {
                tracing::info!(state = %self.task.state, error = self.task.error.as_deref(), "task ended")
            }
            Err(e) => tracing::warn!(error = %error_chain(&e), "could not record the end of the task"),
        }
    }
}

impl Vmm {
    /// Claims one task and runs it to its end. False when nothing was claimable.
    pub async fn run_next_task(&self) -> Result<bool> {
        let config = &self.inner.config;
        match self.inner.store.claim_task(&config.worker_id, self.now(), config.lease).await? {
            Some(task) => {
                if let Some(ended) = self.execute(task).await {
                    self.record_alone(&ended).await;
                }
                self.notify();
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

    /// The worker loop: runs up to `concurrency` tasks at once, recovers tasks whose lease
    /// expired, and returns once `shutdown` completes and the tasks in hand have ended.
    ///
    /// One store call at a time records every run that has ended and fills every free slot,
    /// in one transaction: a group commit (the ends that come while a call is on its way go
    /// together in the next; more calls at once made smaller groups, and measured slower).
    /// Store calls run in the same set of futures as the tasks, so that a call waiting for
    /// the database never stops a running task (which may hold the lock it waits for) from
    /// being polled; and no future that touches the store is ever dropped half-way.
    pub async fn run_workers(&self, shutdown: impl Future<Output = ()>) {
        enum Event {
            /// The store call ended: the tasks it claimed (none when it failed), and how
            /// many it asked for.
            Recorded(Option<Vec<Task>>, usize),
            Ran(Option<Box<Ended>>),
            /// An end's lease is no longer renewed.
            Released,
        }
        let slots = self.inner.config.concurrency.max(1);
        let mut shutdown = pin!(shutdown.fuse());
        // Task bodies running; runs ended and not yet recorded; whether the store call is on
        // its way; whether the last claim found less than it asked for (a run that ends
        // frees a slot, and is a reason to look again); whether to stop.
        let (mut running, mut ended, mut recording, mut idle, mut stopping) =
            (0, Vec::new(), false, false, false);
        // Ends whose leases are still renewed (they wait for, or are in, a store call).
        let mut holding = 0usize;
        let mut work: FuturesUnordered<BoxFuture<'_, Event>> = FuturesUnordered::new();
        loop {
            // The slots of the runs a call records are freed by that call.
            let free = if stopping { 0 } else { slots - running };
            if !recording && (!ended.is_empty() || (free > 0 && !idle)) {
                let ends = std::mem::take(&mut ended);
                work.push(Box::pin(
                    self.record(ends, free).map(move |claimed| Event::Recorded(claimed, free)),
                ));
                recording = true;
            }
            if stopping && running == 0 && !recording && holding == 0 {
                return;
            }
            let wake = select(self.inner.changed.listen(), Delay::new(self.inner.config.poll_interval));
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
                    None
                }
            };
            match outcome {
                Some(Event::Recorded(claimed, asked)) => {
                    recording = false;
                    let claimed = claimed.unwrap_or_default();
                    idle = claimed.len() < asked;
                    for task in claimed {
                        running += 1;
                        work.push(Box::pin(self.execute(task).map(|end| Event::Ran(end.map(Box::new)))));
                    }
                }
                Some(Event::Ran(end)) => {
                    (running, idle) = (running - 1, false);
                    if let Some(mut end) = end {
                        // The lease is renewed until the end is recorded, however long
                        // the store calls take.
                        let (held, recorded) = oneshot::channel();
                        end._held = Some(held);
                        holding += 1;
                        work.push(Box::pin(
                            self.hold_lease(end.task.id, end.fence, recorded).map(|()| Event::Released),
                        ));
                        ended.push(*end);
                    }
                }
                Some(Event::Released) => holding -= 1,
                // Woken: something changed, or it is time to look again.
                None => idle = false,
            }
        }
    }

    /// Records `ends` and claims up to `max` tasks in one store call; returns the tasks
    /// claimed, or `None` when the call failed (each end is then recorded alone).
    async fn record(&self, ends: Vec<Ended>, max: usize) -> Option<Vec<Task>> {
        let (config, store) = (&self.inner.config, &self.inner.store);
        let runs: Vec<(Task, u64)> = ends.iter().map(|e| (e.task.clone(), e.fence)).collect();
        let finished = store.finish_and_claim(&runs, &config.worker_id, self.now(), config.lease, max).await;
        let claimed = match finished {
            Ok(Finished { saved, claimed }) => {
                for (end, saved) in ends.iter().zip(saved) {
                    match saved {
                        Err(e) if !matches!(e, Error::LeaseLost { .. } | Error::TaskNotFound { .. }) => {
                            tracing::warn!(error = %error_chain(&e), "recording the end failed; trying again alone");
                            self.record_alone(end).await;
                        }
                        saved => end.recorded(saved),
                    }
                }
                Some(claimed)
            }
            Err(e) if ends.is_empty() => {
                tracing::warn!(error = %error_chain(&e), "claiming a task failed");
                None
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "recording the ends of tasks failed; recording each alone");
                join_all(ends.iter().map(|end| self.record_alone(end))).await;
                None
            }
        };
        if !runs.is_empty() {
            // Whoever waits for a task, or for its events, looks again.
            self.notify();
        }
        claimed
    }

    /// Records one run's end alone.
    async fn record_alone(&self, end: &Ended) {
        end.recorded(self.inner.store.save_task(&end.task, end.fence).await);
    }

    /// Runs one task under its lease; returns its end, or `None` when the lease was lost.
    async fn execute(&self, task: Task) -> Option<Ended> {
        let span = tracing::info_span!("task", task = %task.id, kind = %task.kind, vm = ?task.vm_id, attempt = task.attempts);
        let (id, fence) = (task.id, task.fence());
        // Each attempt has the kind's deadline, counted from its claim: time the task spent
        // queued, or waiting for a vmmd that was down, does not count against it; with
        // `max_attempts`, the whole task is bounded too.
        let limit = self.inner.config.deadlines.of(task.kind, self.inner.config.shutdown_timeout);
        let began = self.now();
        let (metrics, kind) = (&self.inner.metrics, task.kind);
        metrics.started(&task, seconds(began - task.created_at));
        let run = Run { task, fence, deadline: began + chrono_duration(limit) };
        let work = self.perform(run);
        let (work, lease) = (pin!(work.instrument(span.clone())), pin!(self.keep_lease(id, fence)));
        let ended = select(work, lease).await;
        let ran = seconds(self.now() - began);
        match ended {
            Either::Left((Some((run, result)), _)) => {
                let task = span.in_scope(|| self.conclude(run.task, result));
                metrics.ended(kind, task.state.into(), ran);
                Some(Ended { task, fence, span, _held: None })
            }
            Either::Left((None, _)) => {
                metrics.ended(kind, "lease_lost", ran);
                None
            }
            Either::Right((e, _)) => {
                metrics.ended(kind, "lease_lost", ran);
                span.in_scope(|| tracing::warn!(error = %e, "lease lost; leaving the task to its new run"));
                None
            }
        }
    }

    /// Renews a run's lease while its end waits to be recorded: until `recorded` is
    /// dropped, or the lease is lost (the end will say so).
    async fn hold_lease(&self, id: TaskId, fence: u64, recorded: oneshot::Receiver<()>) {
        select(pin!(self.keep_lease(id, fence)), recorded).await;
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

    /// The task as its end is to be recorded. Its error is the error's public message: a
    /// backend's own text (libvirt's, a database's) goes to the log only.
    fn conclude(&self, mut task: Task, result: Result<Outcome>) -> Task {
        let now = self.now();
        let (state, error) = match result {
            Ok(Outcome::Done) => (TaskState::Succeeded, None),
            Ok(Outcome::Cancelled) => (TaskState::Cancelled, None),
            Err(e) => (TaskState::Failed, Some(e)),
        };
        if let Some(e) = &error {
            tracing::warn!(error = %error_chain(e), "task failed");
        }
        task.state = state;
        if state == TaskState::Succeeded {
            task.progress = 100;
        }
        task.log(now, state.to_string());
        task.error_code = error.as_ref().map(|e| e.code().to_owned());
        task.error = error.as_ref().map(Error::public_message);
        task.finished_at = Some(now);
        task
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

/// A duration in seconds, for metrics.
fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}
