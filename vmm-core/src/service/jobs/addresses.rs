//! `add_address` and `remove_address`: an address and its NIC change together with the
//! VM's definition and its seed. The lease of an added address is taken with the task; a
//! removed one is given back once its NIC is gone.

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::hypervisor::PowerState;
use crate::task::TaskParams;

fn address_of(run: &Run) -> Result<std::net::IpAddr> {
    match run.task.params {
        TaskParams::AddAddress { address } | TaskParams::RemoveAddress { address } => Ok(address),
        _ => Err(Error::invalid("task", "an address change without its address")),
    }
}

pub(super) async fn add(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let address = address_of(run)?;
    let (vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    if vmm.cancel_requested(run).await? {
        undo_add(vmm, run).await?;
        return Ok(Outcome::Cancelled);
    }
    let nic = vm
        .nics
        .iter()
        .find(|n| n.addresses.contains(&address))
        .ok_or_else(|| Error::conflict(format!("VM {} has no NIC for {address}", vm.id)))?;
    vmm.step(run, 20, format!("adding a NIC for {address}")).await?;
    vmm.ensure_networks(hv.as_ref(), &vm).await?;
    let seed = vm.image_id.is_some();
    hv.define_domain(&vmm.domain_spec(&vm, &node, seed).await?).await?;
    if hv.domain(vm.id).await?.is_some_and(|d| d.state == PowerState::Running) {
        match hv.attach_nic(vm.id, &vmm.nic_spec(nic).await?).await {
            Ok(()) => {}
            Err(Error::Unsupported { .. }) => {
                vmm.step(
                    run,
                    40,
                    "the node cannot plug NICs in while the VM runs; it appears at the next boot",
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
    }
    if seed {
        vmm.step(run, 60, "writing the seed").await?;
        let guest = vmm.inner.store.vm_guest(vm.id).await?.current.unwrap_or_default();
        vmm.write_seed(hv.as_ref(), &vm, &guest).await?;
    }
    Ok(Outcome::Done)
}

/// Unplugs the NIC if it was plugged, gives the lease back, and writes the definition and
/// seed without it.
pub(super) async fn undo_add(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let address = address_of(run)?;
    let (mut vm, node, hv) = match vmm.vm_and_hypervisor(run).await {
        Err(Error::VmNotFound { .. }) => return Ok(()),
        other => other?,
    };
    // An earlier run of this undo may have taken the address away already.
    if let Some(nic) = vm.nics.iter().find(|n| n.addresses.contains(&address)) {
        if hv.domain(vm.id).await?.is_some_and(|d| d.state == PowerState::Running) {
            match hv.detach_nic(vm.id, &vmm.nic_spec(nic).await?).await {
                Ok(()) | Err(Error::Unsupported { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        vm = vmm.inner.store.remove_vm_address(vm.id, address).await?;
    }
    redefine(vmm, &vm, &node, hv.as_ref()).await
}

pub(super) async fn remove(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let address = address_of(run)?;
    let (mut vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    if vmm.cancel_requested(run).await? {
        return Ok(Outcome::Cancelled);
    }
    // Without the NIC, an earlier run unplugged it and ended the lease; the definition and
    // the seed are written again all the same.
    if let Some(nic) = vm.nics.iter().find(|n| n.addresses.contains(&address)) {
        vmm.step(run, 20, format!("removing the NIC of {address}")).await?;
        let running = hv.domain(vm.id).await?.is_some_and(|d| d.state == PowerState::Running);
        if nic.addresses.len() == 1 && running {
            match hv.detach_nic(vm.id, &vmm.nic_spec(nic).await?).await {
                Ok(()) => {}
                Err(Error::Unsupported { .. }) => {
                    vmm.step(
                        run,
                        40,
                        "the node cannot unplug NICs while the VM runs; it goes at the next boot",
                    )
                    .await?;
                }
                Err(e) => return Err(e),
            }
        }
        vm = vmm.inner.store.remove_vm_address(vm.id, address).await?;
    }
    vmm.step(run, 60, "writing the definition and the seed").await?;
    redefine(vmm, &vm, &node, hv.as_ref()).await?;
    Ok(Outcome::Done)
}

/// Writes the VM's definition, and its seed when it has one, from its NICs as they are.
async fn redefine(
    vmm: &Vmm,
    vm: &crate::vm::Vm,
    node: &crate::node::Node,
    hv: &dyn crate::hypervisor::Hypervisor,
) -> Result<()> {
    let seed = vm.image_id.is_some();
    hv.define_domain(&vmm.domain_spec(vm, node, seed).await?).await?;
    if seed {
        let guest = vmm.inner.store.vm_guest(vm.id).await?.current.unwrap_or_default();
        vmm.write_seed(hv, vm, &guest).await?;
    }
    Ok(())
}
