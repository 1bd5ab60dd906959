//! The snapshots area of the [`Store`](super::Store): each VM's snapshots as mirrored from
//! its node.

use async_trait::async_trait;

use crate::error::Result;
use crate::id::VmId;
use crate::snapshot::Snapshot;

/// The record of each VM's snapshots (they go with the VM).
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Keeps a snapshot of a VM, replacing one of the same name.
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()>;
    /// A VM's snapshots, oldest first.
    async fn list_snapshots(&self, vm: VmId) -> Result<Vec<Snapshot>>;
    /// Forgets a VM's snapshot (nothing happens if there is none).
    async fn delete_snapshot(&self, vm: VmId, name: &str) -> Result<()>;
}
