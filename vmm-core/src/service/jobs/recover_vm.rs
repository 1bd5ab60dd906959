//! `recover_vm`: HA starts a VM of a dead, fenced node on the node placement chose (whose
//! capacity has been held for it since the task was queued), from its disk on shared
//! storage: networks, definition, switch-over, start. Nothing is done on the dead node;
//! HA removes the stale definition there if the node comes back.
//!
//! The saga refuses to run unless the node is still fenced, and unless the target sees
//! the VM's disk: a VM never runs twice, and never without its disk.

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::hypervisor::PowerState;
use crate::task::TaskParams;
use crate::vm::VmState;

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let TaskParams::Migrate { from, to, .. } = run.task.params else {
        return Err(Error::invalid("task", "a recovery without its nodes"));
    };
    let vm = vmm.inner.store.get_vm(super::vm_of(run)?).await?;
    let target = vmm.inner.store.get_node(to).await?;
    let dst = vmm.hypervisor(&target).await?;
    if vm.node_id == from {
        if !super::super::ha::node_is_fenced(vmm, from).await? {
            return Err(Error::conflict(format!(
                "node {from} is not fenced: VM {} is not started elsewhere",
                vm.id
            )));
        }
        if !vmm.inner.config.shared_storage || dst.stored_volume(vm.id).await?.is_none() {
            return Err(Error::conflict(format!(
                "node {} does not see the disk of VM {}: HA needs shared storage",
                target.name, vm.id
            )));
        }
        if let Some(elsewhere) = runs_elsewhere(vmm, vm.id, from).await? {
            return Err(Error::conflict(format!(
                "VM {} runs on node {elsewhere}: it is not started again; left for an operator",
                vm.id
            )));
        }
        vmm.step(run, 20, format!("defining the VM on {}", target.name)).await?;
        vmm.ensure_networks(dst.as_ref(), &vm).await?;
        vmm.write_current_seed(dst.as_ref(), &vm).await?;
        dst.define_domain(&vmm.domain_spec(&vm, &target, vm.image_id.is_some()).await?).await?;
        vmm.step(run, 60, format!("switching over to {}", target.name)).await?;
        vmm.inner.store.switch_migration(vm.id, to).await?;
    }
    if vm.state == VmState::Running {
        vmm.step(run, 80, format!("starting on {}", target.name)).await?;
        if dst.domain(vm.id).await?.is_none_or(|d| d.state != PowerState::Running) {
            dst.start(vm.id).await?;
        }
    }
    Ok(Outcome::Done)
}

/// A node other than `from` that answers and runs the VM (a migration that finished in
/// libvirt as its source died), if any.
async fn runs_elsewhere(vmm: &Vmm, vm: crate::id::VmId, from: crate::id::NodeId) -> Result<Option<String>> {
    for node in vmm.all_nodes().await? {
        if node.id == from {
            continue;
        }
        let Ok(hv) = vmm.hypervisor(&node).await else { continue };
        if let Ok(Some(d)) = hv.domain(vm).await {
            if d.state == PowerState::Running {
                return Ok(Some(node.name));
            }
        }
    }
    Ok(None)
}

/// Before the switch-over: the target's definition goes (the disk is shared and stays),
/// and so does the capacity held there.
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let TaskParams::Migrate { to, .. } = run.task.params else { return Ok(()) };
    let vm = match vmm.inner.store.get_vm(super::vm_of(run)?).await {
        Err(Error::VmNotFound { .. }) => return Ok(()),
        other => other?,
    };
    if vm.node_id == to {
        return Ok(()); // switched: it is the target's now, started or not
    }
    let dst = vmm.hypervisor(&vmm.inner.store.get_node(to).await?).await?;
    if let Some(d) = dst.domain(vm.id).await? {
        if !matches!(d.state, PowerState::Shutoff | PowerState::Crashed) {
            dst.stop(vm.id).await?;
        }
        dst.undefine_domain(vm.id).await?;
    }
    vmm.inner.store.end_migration(vm.id, to).await
}
