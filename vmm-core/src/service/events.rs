//! Events: reading the log as an actor, waiting for what comes next, pruning old entries.

use std::time::{Duration, Instant};

use futures::future::select;
use futures_timer::Delay;

use super::Vmm;
use crate::error::{Error, Result};
use crate::event::{Event, EventFilter, EventPattern};
use crate::page::MAX_LIMIT;
use crate::users::Actor;

impl Vmm {
    /// Up to `limit` events after `after` of `types` (none: all) that `actor` may see, oldest
    /// first. Everyone may read the events of their own objects.
    pub async fn list_events_for(
        &self,
        actor: &Actor,
        after: u64,
        types: Vec<EventPattern>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        let limit = checked_limit(limit)?;
        self.inner.store.list_events(&EventFilter::for_actor(actor, after, types), limit).await
    }

    /// [`list_events_for`](Self::list_events_for), waiting up to `timeout` for an event to
    /// come when there is none yet: an empty answer means none came.
    pub async fn wait_events_for(
        &self,
        actor: &Actor,
        after: u64,
        types: Vec<EventPattern>,
        limit: u32,
        timeout: Duration,
    ) -> Result<Vec<Event>> {
        let limit = checked_limit(limit)?;
        let filter = EventFilter::for_actor(actor, after, types);
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let listener = self.inner.changed.listen();
            let events = self.inner.store.list_events(&filter, limit).await?;
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
            if !events.is_empty() || left.is_zero() {
                return Ok(events);
            }
            // Changes made by another process, and those that are not tasks, do not notify
            // us: poll as well.
            select(listener, Delay::new(left.min(self.inner.config.poll_interval))).await;
        }
    }

    /// Every event after `after` that passes `filter`'s types, for the platform (webhooks,
    /// notifications): no reader's limits.
    pub async fn list_events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>> {
        self.inner.store.list_events(filter, limit).await
    }

    /// The largest event id so far.
    pub async fn last_event_id(&self) -> Result<u64> {
        self.inner.store.last_event_id().await
    }

    /// Removes the events older than `retention`; returns how many.
    pub async fn prune_events(&self, retention: Duration) -> Result<u64> {
        let before = self.now() - super::chrono_duration(retention);
        self.inner.store.prune_events(before).await
    }
}

impl Vmm {
    /// Prunes events older than `retention`, and idempotency keys past their time, now and
    /// every `every` until `stopped` resolves. A failed run is logged and tried again at
    /// the next.
    pub async fn run_pruning(
        &self,
        retention: Duration,
        every: Duration,
        stopped: impl std::future::Future<Output = ()>,
    ) {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            // One process of the cluster prunes.
            let holder = self.inner.config.worker_id.clone();
            match self.inner.store.acquire_singleton("pruning", &holder, every * 3).await {
                Ok(true) => self.prune_once(retention).await,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "the pruning lease could not be taken")
                }
            }
            if let futures::future::Either::Left(_) = select(stopped.as_mut(), Delay::new(every)).await {
                return;
            }
        }
    }

    async fn prune_once(&self, retention: Duration) {
        {
            match self.prune_events(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "old events pruned"),
                Err(e) => tracing::warn!(error = %crate::error_chain(&e), "pruning events failed"),
            }
            match self.inner.store.prune_requests(self.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "expired idempotency keys pruned"),
                Err(e) => tracing::warn!(error = %crate::error_chain(&e), "pruning idempotency keys failed"),
            }
        }
    }
}

fn checked_limit(limit: u32) -> Result<usize> {
    match limit {
        1..=MAX_LIMIT => Ok(limit as usize),
        _ => Err(Error::invalid("limit", format!("must be between 1 and {MAX_LIMIT}"))),
    }
}
