//! [`HaStore`] in memory.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ha::NodeLease;
use crate::id::NodeId;
use crate::store::HaStore;

#[async_trait]
impl HaStore for InMemoryStore {
    async fn renew_node_lease(
        &self,
        node: NodeId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<NodeLease> {
        let mut s = self.state();
        if !s.nodes.contains_key(&node) {
            return Err(Error::NodeNotFound { id: node });
        }
        let lease =
            s.node_leases.entry(node).or_insert_with(|| NodeLease::renewed(node, now, Default::default()));
        lease.expires_at = until;
        Ok(lease.clone())
    }

    async fn node_leases(&self) -> Result<Vec<NodeLease>> {
        Ok(self.state().node_leases.values().cloned().collect())
    }

    async fn set_node_health(
        &self,
        seen: &NodeLease,
        next: &NodeLease,
        event: Option<Event>,
    ) -> Result<bool> {
        let mut s = self.state();
        let Some(lease) = s.node_leases.get_mut(&seen.node_id) else { return Ok(false) };
        if lease.expires_at != seen.expires_at {
            return Ok(false);
        }
        *lease = NodeLease { expires_at: lease.expires_at, ..next.clone() };
        if let Some(event) = event {
            s.emit(event);
        }
        Ok(true)
    }
}
