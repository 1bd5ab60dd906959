//! `update_vm`: rename and/or resize. Capacity is reserved first (one store transaction),
//! then the domain is redefined and the disk grown. The size the VM had when the task was
//! queued is in the task's parameters, so a resumed run knows where it started and compares
//! the disk with the volume's real capacity rather than with the VM record. Cancel is
//! honoured until the disk grows; undo gives back what was reserved.

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::placement::Demand;
use crate::task::TaskParams;
use crate::vm::{Vm, VmAction, VmPatch};

fn params(run: &Run) -> Result<(VmPatch, Option<Demand>)> {
    match &run.task.params {
        TaskParams::Update { patch, before } => Ok((patch.clone(), *before)),
        _ => Err(Error::invalid("task", "update without a patch")),
    }
}

fn sized(vm: &Vm, size: Demand) -> Vm {
    Vm { vcpus: size.vcpus, memory_mib: size.memory_mib, disk_gib: size.disk_gib, ..vm.clone() }
}

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let (patch, before) = params(run)?;
    let (vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    // Tasks queued before `before` was kept start from the VM as it is.
    let original = sized(&vm, before.unwrap_or_else(|| vm.demand()));
    patch.validate(&original)?;
    let target = patch.applied_to(&original);
    if vmm.cancel_requested(run).await? {
        return Ok(Outcome::Cancelled);
    }
    if target.demand() != original.demand() {
        vm.state.apply(vm.id, VmAction::Resize)?;
        vmm.step(run, 20, "reserving capacity").await?;
        vmm.inner.store.resize_vm(vm.id, target.demand()).await?;
        if vmm.cancel_requested(run).await? {
            undo(vmm, run).await?;
            return Ok(Outcome::Cancelled);
        }
        vmm.step(run, 50, "updating the domain").await?;
        hv.define_domain(&vmm.domain_spec(&target, &node, target.image_id.is_some()).await?).await?;
        if vmm.cancel_requested(run).await? {
            undo(vmm, run).await?;
            return Ok(Outcome::Cancelled);
        }
        let volume = hv.volume(vm.id).await?.ok_or(Error::VmNotFound { id: vm.id })?;
        if volume.capacity_gib < target.disk_gib {
            vmm.step(run, 70, format!("growing the disk to {} GiB", target.disk_gib)).await?;
            hv.resize_volume(vm.id, target.disk_gib).await?;
        }
    } else {
        // A rename: the title is in the domain's definition.
        hv.define_domain(&vmm.domain_spec(&target, &node, target.image_id.is_some()).await?).await?;
    }
    if patch.renames(&vm) {
        let mut saved = vmm.inner.store.get_vm(vm.id).await?;
        saved.name = target.name;
        vmm.inner.store.update_vm(&saved).await?;
    }
    Ok(Outcome::Done)
}

/// Gives back what the run reserved and restores the domain's size; a disk that already
/// grew keeps its size (disks only grow), and so does its share of the node.
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let (_, before) = params(run)?;
    let Some(before) = before else { return Ok(()) };
    let (vm, node, hv) = match vmm.vm_and_hypervisor(run).await {
        Err(Error::VmNotFound { .. }) => return Ok(()),
        other => other?,
    };
    let disk = match hv.volume(vm.id).await? {
        Some(v) => v.capacity_gib.max(before.disk_gib),
        None => before.disk_gib,
    };
    let restore = Demand { disk_gib: disk, ..before };
    if vm.demand() != restore {
        vmm.inner.store.resize_vm(vm.id, restore).await?;
    }
    if hv.domain(vm.id).await?.is_some() {
        let restored = sized(&vm, restore);
        hv.define_domain(&vmm.domain_spec(&restored, &node, restored.image_id.is_some()).await?).await?;
    }
    Ok(())
}
