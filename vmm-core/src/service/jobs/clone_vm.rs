//! `clone_vm`: a new VM made from a stopped VM's disk on the same node, with its own
//! addresses (taken with the task) and a new seed. Undone like a create.

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::hypervisor::PowerState;
use crate::task::TaskParams;
use crate::vm::VmState;

/// Checkpoint: the copy of the source's disk is complete.
const DISK_MADE: &str = "disk_made";

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let (source, start) = match run.task.params {
        TaskParams::Clone { source, start } => (source, start),
        _ => return Err(Error::invalid("task", "a clone without its source")),
    };
    let (mut vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    if vmm.cancel_requested(run).await? {
        vmm.undo_create(vm.id).await?;
        return Ok(Outcome::Cancelled);
    }
    if !run.task.reached(DISK_MADE) {
        // The source must stay off while its disk is read.
        let observed = hv.domain(source).await?.map(|d| d.state);
        if observed != Some(PowerState::Shutoff) {
            return Err(Error::conflict(format!("VM {source} must be stopped to be cloned")));
        }
        vmm.step(run, 20, "copying the disk").await?;
        // A copy left by an interrupted run may be partial: it is made again.
        if hv.volume(vm.id).await?.is_some() {
            hv.delete_volume(vm.id).await?;
        }
        hv.copy_volume(source, vm.id).await?;
        vmm.checkpoint(run, DISK_MADE).await?;
    }
    vmm.step(run, 50, "preparing networks and the seed").await?;
    vmm.ensure_networks(hv.as_ref(), &vm).await?;
    let guest = vmm.inner.store.vm_guest(vm.id).await?.current;
    if let Some(guest) = &guest {
        vmm.write_seed(hv.as_ref(), &vm, guest).await?;
    }
    vmm.step(run, 60, "defining the domain").await?;
    hv.define_domain(&vmm.domain_spec(&vm, &node, guest.is_some()).await?).await?;
    if vmm.cancel_requested(run).await? {
        vmm.undo_create(vm.id).await?;
        return Ok(Outcome::Cancelled);
    }
    if start {
        vmm.step(run, 80, "starting").await?;
        if hv.domain(vm.id).await?.is_none_or(|d| d.state != PowerState::Running) {
            hv.start(vm.id).await?;
        }
    }
    vm.state = if start { VmState::Running } else { VmState::Stopped };
    vmm.inner.store.update_vm(&vm).await?;
    Ok(Outcome::Done)
}
