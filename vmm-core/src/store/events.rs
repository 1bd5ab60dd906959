//! The events area of the [`Store`](super::Store).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::event::{Event, EventFilter};

/// The event log. Events are appended by the other areas' methods, in the transaction of
/// the change they record; this area reads and prunes them.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Up to `limit` events that pass `filter`, oldest first. Ids only grow: an event
    /// that becomes readable later never has an id at or below one already read.
    async fn list_events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>>;
    /// The largest id given to an event so far (0 for none).
    async fn last_event_id(&self) -> Result<u64>;
    /// Removes the events from before `before`; returns how many.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64>;
}
