//! `create_vm`: disk, define, start. Placement and the address were taken with the task;
//! a failure, a cancel or a timeout at any step undoes everything (`Vmm::undo_create`).

use super::{domain_spec, Outcome, Run, Vmm};
use crate::error::Result;
use crate::hypervisor::PowerState;
use crate::task::TaskParams;
use crate::vm::VmState;

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let start = matches!(run.task.params, TaskParams::Create { start: true });
    let (mut vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    if vmm.cancel_requested(run).await? {
        return cancelled(vmm, run).await;
    }
    vmm.step(run, 10, format!("creating a {} GiB disk on {}", vm.disk_gib, node.name)).await?;
    if hv.volume(vm.id).await?.is_none() {
        hv.create_volume(vm.id, vm.disk_gib).await?;
    }
    if vmm.cancel_requested(run).await? {
        return cancelled(vmm, run).await;
    }
    vmm.step(run, 40, "defining the domain").await?;
    hv.define_domain(&domain_spec(&vm, &node)).await?;
    if vmm.cancel_requested(run).await? {
        return cancelled(vmm, run).await;
    }
    if start {
        vmm.step(run, 70, "starting").await?;
        let running = hv.domain(vm.id).await?.is_some_and(|d| d.state == PowerState::Running);
        if !running {
            hv.start(vm.id).await?;
        }
    }
    vm.state = if start { VmState::Running } else { VmState::Stopped };
    vmm.inner.store.update_vm(&vm).await?;
    Ok(Outcome::Done)
}

async fn cancelled(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    vmm.step(run, run.task.progress, "cancelled; undoing the earlier steps").await?;
    vmm.undo_create(super::vm_of(run)?).await?;
    Ok(Outcome::Cancelled)
}
