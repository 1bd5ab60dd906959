//! `create_vm`: networks, disk (empty, or a copy of the image with a cloud-init seed),
//! define, start. Placement and the addresses were taken with the task; a failure, a cancel
//! or a timeout at any step undoes everything (`Vmm::undo_create`): no domain, volume or
//! seed stays on the node, no lease in the store. An image copied to the node stays there
//! for the next VM.

use super::{remaining, Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::hypervisor::PowerState;
use crate::task::TaskParams;
use crate::vm::VmState;

/// Checkpoint: the disk copied from the image is complete.
const DISK_MADE: &str = "disk_made";

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let (start, image_id) = match run.task.params {
        TaskParams::Create { start, image_id } => (start, image_id),
        _ => return Err(Error::invalid("task", "a create without its parameters")),
    };
    let (mut vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    if vmm.cancel_requested(run).await? {
        return cancelled(vmm, run).await;
    }
    vmm.step(run, 5, "preparing the VM's networks").await?;
    vmm.ensure_networks(hv.as_ref(), &vm).await?;
    match image_id {
        Some(image_id) => {
            let image = vmm.inner.store.get_image(image_id).await?;
            vmm.step(run, 10, format!("copying image {} to {}", image.name, node.name)).await?;
            vmm.ensure_image_on_node(&node, &hv, &image, remaining(vmm, run)).await?;
            if vmm.cancel_requested(run).await? {
                return cancelled(vmm, run).await;
            }
            vmm.step(run, 30, format!("making a {} GiB disk from image {}", vm.disk_gib, image.name)).await?;
            if !run.task.reached(DISK_MADE) {
                // A disk left by an interrupted copy may be partial: it is made again.
                if hv.volume(vm.id).await?.is_some() {
                    hv.delete_volume(vm.id).await?;
                }
                let format = vmm.inner.images.stored_format(&image);
                hv.create_volume_from_image(vm.id, image.id, format, vm.disk_gib).await?;
                vmm.checkpoint(run, DISK_MADE).await?;
            }
            vmm.step(run, 40, "writing the cloud-init seed").await?;
            let guest = vmm.inner.store.vm_guest(vm.id).await?.current.unwrap_or_default();
            vmm.write_seed(hv.as_ref(), &vm, &guest).await?;
        }
        None => {
            vmm.step(run, 10, format!("creating a {} GiB disk on {}", vm.disk_gib, node.name)).await?;
            if hv.volume(vm.id).await?.is_none() {
                hv.create_volume(vm.id, vm.disk_gib).await?;
            }
        }
    }
    if vmm.cancel_requested(run).await? {
        return cancelled(vmm, run).await;
    }
    vmm.step(run, 50, "defining the domain").await?;
    hv.define_domain(&vmm.domain_spec(&vm, &node, image_id.is_some()).await?).await?;
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
