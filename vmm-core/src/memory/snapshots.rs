//! [`SnapshotStore`] in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::id::VmId;
use crate::snapshot::Snapshot;
use crate::store::SnapshotStore;

#[async_trait]
impl SnapshotStore for InMemoryStore {
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let mut s = self.state();
        if !s.vms.contains_key(&snapshot.vm_id) {
            return Err(Error::VmNotFound { id: snapshot.vm_id });
        }
        let taken = s.snapshots.entry(snapshot.vm_id).or_default();
        taken.retain(|t| t.name != snapshot.name);
        taken.push(snapshot.clone());
        Ok(())
    }

    async fn list_snapshots(&self, vm: VmId) -> Result<Vec<Snapshot>> {
        let s = self.state();
        let mut taken = if s.vms.contains_key(&vm) {
            s.snapshots.get(&vm).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        taken.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        Ok(taken)
    }

    async fn delete_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        if let Some(taken) = self.state().snapshots.get_mut(&vm) {
            taken.retain(|t| t.name != name);
        }
        Ok(())
    }
}
