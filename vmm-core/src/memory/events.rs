//! [`EventStore`] in memory.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::InMemoryStore;
use crate::error::Result;
use crate::event::{Event, EventFilter};
use crate::store::EventStore;

#[async_trait]
impl EventStore for InMemoryStore {
    async fn list_events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>> {
        let s = self.state();
        let after = filter.after.saturating_add(1);
        Ok(s.events
            .range(after..)
            .map(|(_, e)| e)
            .filter(|e| filter.matches(e))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn last_event_id(&self) -> Result<u64> {
        Ok(self.state().last_event)
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut s = self.state();
        // Events are appended in time order: the old ones are a prefix.
        let old: Vec<u64> = s.events.iter().take_while(|(_, e)| e.at < before).map(|(id, _)| *id).collect();
        for id in &old {
            s.events.remove(id);
        }
        Ok(old.len() as u64)
    }
}
