//! The HA area of the [`Store`](super::Store): each node's lease and HA state.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::event::Event;
use crate::ha::NodeLease;
use crate::id::NodeId;

/// Node leases.
#[async_trait]
pub trait HaStore: Send + Sync {
    /// The node answered at `now`: its lease runs until `until` (its HA state stays as it
    /// is: HA revives a node it had given up on, and records that). Returns the lease.
    async fn renew_node_lease(
        &self,
        node: NodeId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<NodeLease>;
    /// Every node's lease (nodes that never answered have none).
    async fn node_leases(&self) -> Result<Vec<NodeLease>>;
    /// Replaces the lease's HA state (health, fence time and failures) if its expiry is
    /// still `seen.expires_at` (the node did not answer meanwhile), with `event`, in one
    /// transaction. Returns whether it did.
    async fn set_node_health(&self, seen: &NodeLease, next: &NodeLease, event: Option<Event>)
        -> Result<bool>;
}
