//! `snapshot_vm`, `revert_snapshot` and `delete_snapshot`: libvirt keeps the snapshot on the
//! node, the store mirrors it. Each step is idempotent: a resumed run finds what an earlier
//! one did.

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::hypervisor::PowerState;
use crate::snapshot::Snapshot;
use crate::task::TaskParams;
use crate::vm::VmState;

fn named(run: &Run) -> Result<(String, Option<String>)> {
    match &run.task.params {
        TaskParams::Snapshot { name, description } => Ok((name.clone(), description.clone())),
        _ => Err(Error::invalid("task", "a snapshot task without its name")),
    }
}

/// Takes the snapshot (unless an earlier run did) and records it.
pub(super) async fn take(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let (name, description) = named(run)?;
    let (vm, _node, hv) = vmm.vm_and_hypervisor(run).await?;
    vmm.step(run, 10, format!("taking snapshot {name}")).await?;
    let info = match hv.list_snapshots(vm.id).await?.into_iter().find(|s| s.name == name) {
        Some(info) => info,
        None => hv.create_snapshot(vm.id, &name, description.as_deref()).await?,
    };
    let snapshot = Snapshot {
        vm_id: vm.id,
        name,
        description,
        memory: info.memory,
        parent: info.parent,
        created_at: vmm.now(),
    };
    vmm.inner.store.put_snapshot(&snapshot).await?;
    Ok(Outcome::Done)
}

/// A snapshot that was taken but not recorded is removed from the node.
pub(super) async fn undo_take(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let (name, _) = named(run)?;
    let (vm, _node, hv) = match vmm.vm_and_hypervisor(run).await {
        Err(Error::VmNotFound { .. }) => return Ok(()),
        other => other?,
    };
    let recorded = vmm.inner.store.list_snapshots(vm.id).await?.iter().any(|s| s.name == name);
    if !recorded {
        hv.delete_snapshot(vm.id, &name).await?;
    }
    Ok(())
}

/// Puts the VM back as it was at the snapshot: running if it held the memory, stopped if
/// not.
pub(super) async fn revert(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let (name, _) = named(run)?;
    let (mut vm, _node, hv) = vmm.vm_and_hypervisor(run).await?;
    vmm.step(run, 10, format!("reverting to snapshot {name}")).await?;
    hv.revert_snapshot(vm.id, &name).await?;
    let running = hv.domain(vm.id).await?.is_some_and(|d| d.state == PowerState::Running);
    vm.state = if running { VmState::Running } else { VmState::Stopped };
    vmm.inner.store.update_vm(&vm).await?;
    Ok(Outcome::Done)
}

/// Deletes the snapshot on the node, then its record.
pub(super) async fn delete(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let (name, _) = named(run)?;
    let (vm, _node, hv) = vmm.vm_and_hypervisor(run).await?;
    hv.delete_snapshot(vm.id, &name).await?;
    vmm.inner.store.delete_snapshot(vm.id, &name).await?;
    Ok(Outcome::Done)
}
