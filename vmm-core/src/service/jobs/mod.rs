//! One saga per task kind: what a task does (`run`) and how what it did is undone when it
//! fails, times out or is given up (`undo`). Every step is idempotent, so that a task
//! resumed after a crash may run again from the start.

mod addresses;
mod backup_vm;
mod clone_vm;
mod create_vm;
mod delete_vm;
mod import_image;
mod maintenance;
mod migrate_vm;
mod power;
mod reconcile;
mod recover_vm;
mod reinstall_vm;
mod restore_backup;
mod snapshots;
mod update_vm;
mod verify_backup;

use std::sync::Arc;

use super::engine::{Outcome, Run};
use super::Vmm;
use crate::error::{Error, Result};
use crate::hypervisor::{Hypervisor, PowerState};
use crate::id::VmId;
use crate::node::Node;
use crate::task::TaskKind;
use crate::vm::Vm;

/// Runs the task's saga.
pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    match run.task.kind {
        TaskKind::CreateVm => create_vm::run(vmm, run).await,
        TaskKind::DeleteVm => delete_vm::run(vmm, run).await,
        TaskKind::UpdateVm => update_vm::run(vmm, run).await,
        TaskKind::ReinstallVm => reinstall_vm::run(vmm, run).await,
        TaskKind::CloneVm => clone_vm::run(vmm, run).await,
        TaskKind::AddAddress => addresses::add(vmm, run).await,
        TaskKind::RemoveAddress => addresses::remove(vmm, run).await,
        TaskKind::ImportImage => import_image::run(vmm, run).await,
        TaskKind::Reconcile => reconcile::run(vmm, run).await,
        TaskKind::BackupVm => backup_vm::run(vmm, run).await,
        TaskKind::RestoreBackup => restore_backup::run(vmm, run).await,
        TaskKind::VerifyBackup => verify_backup::verify(vmm, run).await,
        TaskKind::DeleteBackup => verify_backup::delete(vmm, run).await,
        TaskKind::SnapshotVm => snapshots::take(vmm, run).await,
        TaskKind::RevertSnapshot => snapshots::revert(vmm, run).await,
        TaskKind::DeleteSnapshot => snapshots::delete(vmm, run).await,
        TaskKind::MigrateVm => migrate_vm::run(vmm, run).await,
        TaskKind::MaintainNode | TaskKind::EndMaintenance => maintenance::run(vmm, run).await,
        TaskKind::RecoverVm => recover_vm::run(vmm, run).await,
        kind => power::run(vmm, run, kind.power_action().expect("the other kinds are power actions")).await,
    }
}

/// Undoes what the task did, as far as it can be undone.
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    match run.task.kind {
        TaskKind::RestoreBackup => restore_backup::undo(vmm, run).await,
        TaskKind::CreateVm | TaskKind::CloneVm => vmm.undo_create(vm_of(run)?).await,
        TaskKind::DeleteVm | TaskKind::RemoveAddress | TaskKind::Reconcile | TaskKind::VerifyBackup => Ok(()),
        TaskKind::BackupVm => backup_vm::undo(vmm, run).await,
        TaskKind::DeleteBackup => verify_backup::undo_delete(vmm, run).await,
        TaskKind::SnapshotVm => snapshots::undo_take(vmm, run).await,
        TaskKind::RevertSnapshot | TaskKind::DeleteSnapshot => Ok(()),
        TaskKind::UpdateVm => update_vm::undo(vmm, run).await,
        TaskKind::ReinstallVm => reinstall_vm::undo(vmm, run).await,
        TaskKind::AddAddress => addresses::undo_add(vmm, run).await,
        TaskKind::ImportImage => import_image::undo(vmm, run).await,
        TaskKind::MigrateVm => migrate_vm::undo(vmm, run).await,
        TaskKind::MaintainNode | TaskKind::EndMaintenance => maintenance::undo(),
        TaskKind::RecoverVm => recover_vm::undo(vmm, run).await,
        _ => power::undo(vmm, run).await,
    }
}

fn vm_of(run: &Run) -> Result<VmId> {
    run.task.vm_id.ok_or_else(|| Error::invalid("task", "has no VM"))
}

fn backup_of(run: &Run) -> Result<crate::id::BackupId> {
    run.task.backup_id().ok_or_else(|| Error::invalid("task", "a backup task without its backup"))
}

impl Vmm {
    async fn vm_and_hypervisor(&self, run: &Run) -> Result<(Vm, Node, Arc<dyn Hypervisor>)> {
        let vm = self.inner.store.get_vm(vm_of(run)?).await?;
        let node = self.inner.store.get_node(vm.node_id).await?;
        let hv = self.hypervisor(&node).await?;
        Ok((vm, node, hv))
    }

    /// Removes whatever a create made: domain, volume, then the VM record and its leases.
    /// If the hypervisor part fails, the VM stays recorded in state `error` with its leases,
    /// so that nothing is orphaned and a later delete can finish the job.
    pub(super) async fn undo_create(&self, vm_id: VmId) -> Result<()> {
        let mut vm = match self.inner.store.get_vm(vm_id).await {
            Ok(vm) => vm,
            Err(Error::VmNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let cleanup = async {
            let node = self.inner.store.get_node(vm.node_id).await?;
            let hv = self.hypervisor(&node).await?;
            remove_from_hypervisor(hv.as_ref(), vm_id).await
        };
        match cleanup.await {
            Ok(()) => self.inner.store.delete_vm(vm_id).await,
            Err(e) => {
                vm.state = crate::vm::VmState::Error;
                self.inner.store.update_vm(&vm).await?;
                Err(e)
            }
        }
    }
}

/// Forces the domain off, undefines it, deletes its volume, its seed, its console log and
/// any disk kept aside; each only if present.
pub(super) async fn remove_from_hypervisor(hv: &dyn Hypervisor, vm: VmId) -> Result<()> {
    if let Some(domain) = hv.domain(vm).await? {
        if !matches!(domain.state, PowerState::Shutoff | PowerState::Crashed) {
            hv.stop(vm).await?;
        }
        hv.undefine_domain(vm).await?;
    }
    remove_volume_files(hv, vm).await
}

/// Deletes the VM's volume, its seed, its console log and any disk kept aside from the
/// node; each only if present.
pub(super) async fn remove_volume_files(hv: &dyn Hypervisor, vm: VmId) -> Result<()> {
    if hv.volume(vm).await?.is_some() {
        hv.delete_volume(vm).await?;
    }
    hv.delete_seed(vm).await?;
    hv.delete_previous_volume(vm).await?;
    // A node that keeps no console log says so; nothing to remove then.
    match hv.delete_console_log(vm).await {
        Ok(()) | Err(Error::Unsupported { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// How long an upload of an image to a node may wait for another one: the rest of the run.
fn remaining(vmm: &Vmm, run: &Run) -> std::time::Duration {
    (run.deadline - vmm.now()).to_std().unwrap_or_default()
}

/// A blocking reader of the pieces a stream sends (a hypervisor reads it on a thread of
/// its own); an error the stream sends is a read error, its end the end of the data.
struct StreamReader {
    pieces: futures::stream::BoxStream<'static, std::io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
}

impl StreamReader {
    fn new(pieces: impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static) -> Self {
        use futures::StreamExt;
        Self { pieces: pieces.boxed(), piece: Vec::new(), at: 0 }
    }
}

impl std::io::Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use futures::StreamExt;
        while self.at == self.piece.len() {
            match futures::executor::block_on(self.pieces.next()) {
                Some(Ok(piece)) => {
                    self.piece = piece;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
