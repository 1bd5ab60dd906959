//! Snapshots: taken, reverted to and deleted as tasks on the VM (the sagas are in
//! `jobs/snapshots`), listed from the store's mirror.

use super::Vmm;
use crate::error::{Error, Result};
use crate::id::VmId;
use crate::snapshot::{check_snapshot_name, Snapshot, SnapshotSpec};
use crate::task::{Task, TaskKind, TaskParams};
use crate::users::{Access, Actor};
use crate::vm::VmState;

impl Vmm {
    /// Queues a snapshot of a VM `actor` may change: of a stopped VM, its disk; of a running
    /// one, its disk and memory.
    pub async fn create_snapshot(&self, actor: &Actor, vm: VmId, spec: SnapshotSpec) -> Result<Task> {
        spec.validate()?;
        let vm = self.vm_for(actor, vm, Access::Write).await?;
        match (vm.state, spec.memory) {
            (VmState::Running, Some(false)) => {
                return Err(Error::conflict(format!(
                    "VM {} runs: its snapshot keeps its memory; stop it for a disk-only one",
                    vm.id
                )))
            }
            (VmState::Stopped, Some(true)) => {
                return Err(Error::conflict(format!("VM {} is stopped: it has no memory to keep", vm.id)))
            }
            (VmState::Running | VmState::Stopped, _) => {}
            (state, _) => return Err(Error::conflict(format!("VM {} is {state}: no snapshot now", vm.id))),
        }
        if self.inner.store.list_snapshots(vm.id).await?.iter().any(|s| s.name == spec.name) {
            return Err(Error::conflict(format!("VM {} has a snapshot named {}", vm.id, spec.name)));
        }
        let params = TaskParams::Snapshot { name: spec.name, description: spec.description };
        self.queue_on_vm(actor, vm.id, TaskKind::SnapshotVm, params).await
    }

    /// The snapshots of a VM `actor` may see, oldest first.
    pub async fn list_snapshots(&self, actor: &Actor, vm: VmId) -> Result<Vec<Snapshot>> {
        self.vm_for(actor, vm, Access::Read).await?;
        self.inner.store.list_snapshots(vm).await
    }

    /// Queues putting a VM back as it was at snapshot `name`.
    pub async fn revert_snapshot(&self, actor: &Actor, vm: VmId, name: &str) -> Result<Task> {
        self.known_snapshot(actor, vm, name).await?;
        let params = TaskParams::Snapshot { name: name.to_owned(), description: None };
        self.queue_on_vm(actor, vm, TaskKind::RevertSnapshot, params).await
    }

    /// Queues the deletion of snapshot `name`.
    pub async fn delete_snapshot(&self, actor: &Actor, vm: VmId, name: &str) -> Result<Task> {
        self.known_snapshot(actor, vm, name).await?;
        let params = TaskParams::Snapshot { name: name.to_owned(), description: None };
        self.queue_on_vm(actor, vm, TaskKind::DeleteSnapshot, params).await
    }

    async fn known_snapshot(&self, actor: &Actor, vm: VmId, name: &str) -> Result<Snapshot> {
        check_snapshot_name(name)?;
        self.vm_for(actor, vm, Access::Write).await?;
        let found = self.inner.store.list_snapshots(vm).await?.into_iter().find(|s| s.name == name);
        found.ok_or_else(|| Error::SnapshotNotFound { vm, name: name.to_owned() })
    }

    async fn queue_on_vm(&self, actor: &Actor, vm: VmId, kind: TaskKind, params: TaskParams) -> Result<Task> {
        let task = self.acting_for(actor).new_task(kind, Some(vm), params, self.now());
        self.inner.store.enqueue_task(&task, None).await?;
        self.notify();
        Ok(task)
    }
}
