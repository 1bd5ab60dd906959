//! `reinstall_vm`: the disk rewritten from an image, a new seed (a new instance id, so
//! cloud-init runs again), the VM started; its id, addresses and MACs stay. The old disk is
//! kept aside until the new one runs: a failure puts it back, with the old seed.

use super::{remaining, Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::hypervisor::PowerState;
use crate::store::VmGuest;
use crate::task::TaskParams;
use crate::vm::VmState;

/// Checkpoint: the old disk is kept aside.
const DISK_SAVED: &str = "disk_saved";
/// Checkpoint: the disk was rewritten from the image.
const DISK_REPLACED: &str = "disk_replaced";
/// Checkpoint: the new install runs; only its records and the cleanup are left.
const INSTALLED: &str = "installed";

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let TaskParams::Reinstall { image_id } = run.task.params else {
        return Err(Error::invalid("task", "a reinstall without its image"));
    };
    let (mut vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    if !run.task.reached(INSTALLED) {
        let guest = vmm.inner.store.vm_guest(vm.id).await?;
        let Some(next) = guest.next.clone() else {
            return Err(Error::conflict(format!("VM {} has no settings queued for a reinstall", vm.id)));
        };
        let image = vmm.inner.store.get_image(image_id).await?;
        if vmm.cancel_requested(run).await? {
            // A resumed run may have set the old disk aside already: undo puts it back.
            undo(vmm, run).await?;
            return Ok(Outcome::Cancelled);
        }
        vmm.step(run, 5, "stopping the VM").await?;
        if hv
            .domain(vm.id)
            .await?
            .is_some_and(|d| !matches!(d.state, PowerState::Shutoff | PowerState::Crashed))
        {
            hv.stop(vm.id).await?;
        }
        if !run.task.reached(DISK_SAVED) {
            vmm.step(run, 10, "keeping the old disk aside").await?;
            hv.save_previous_volume(vm.id).await?;
            vmm.checkpoint(run, DISK_SAVED).await?;
        }
        if vmm.cancel_requested(run).await? {
            undo(vmm, run).await?;
            return Ok(Outcome::Cancelled);
        }
        vmm.step(run, 20, format!("copying image {} to {}", image.name, node.name)).await?;
        vmm.ensure_image_on_node(&node, &hv, &image, remaining(vmm, run)).await?;
        if !run.task.reached(DISK_REPLACED) {
            vmm.step(run, 40, format!("rewriting the disk from image {}", image.name)).await?;
            // A disk left by an interrupted copy is remade.
            if hv.volume(vm.id).await?.is_some() {
                hv.delete_volume(vm.id).await?;
            }
            let format = vmm.inner.images.stored_format(&image);
            hv.create_volume_from_image(vm.id, image.id, format, vm.disk_gib).await?;
            vmm.checkpoint(run, DISK_REPLACED).await?;
        }
        vmm.step(run, 60, "writing the new seed").await?;
        vm.image_id = Some(image.id);
        vm.hostname = Some(next.hostname.clone());
        vmm.ensure_networks(hv.as_ref(), &vm).await?;
        vmm.write_seed(hv.as_ref(), &vm, &next).await?;
        hv.define_domain(&vmm.domain_spec(&vm, &node, true).await?).await?;
        vmm.step(run, 80, "starting").await?;
        if hv.domain(vm.id).await?.is_none_or(|d| d.state != PowerState::Running) {
            hv.start(vm.id).await?;
        }
        // The new install counts from here: a crash after this line finishes the task
        // without installing again, and a failure after it undoes nothing.
        vmm.checkpoint(run, INSTALLED).await?;
    }
    keep_install(vmm, vm.clone(), image_id).await?;
    if let Err(e) = hv.delete_previous_volume(vm.id).await {
        tracing::warn!(vm = %vm.id, error = %crate::error::error_chain(&e), "the disk kept aside stays; a delete of the VM removes it");
    }
    Ok(Outcome::Done)
}

/// Records the new install, which runs: its settings become the current ones, the VM shows
/// its image and hostname. Idempotent, so a run resumed after [`INSTALLED`] (or an undo
/// after it) does the same.
async fn keep_install(vmm: &Vmm, mut vm: crate::vm::Vm, image_id: crate::id::ImageId) -> Result<()> {
    let mut guest = vmm.inner.store.vm_guest(vm.id).await?;
    if let Some(next) = guest.next.take() {
        guest.current = Some(next);
        vmm.inner.store.set_vm_guest(vm.id, &guest).await?;
    }
    vm.image_id = Some(image_id);
    vm.hostname = guest.current.map(|g| g.hostname);
    vm.state = VmState::Running;
    vmm.inner.store.update_vm(&vm).await
}

async fn forget_next(vmm: &Vmm, guest: &VmGuest, vm: crate::id::VmId) -> Result<()> {
    let kept = VmGuest { current: guest.current.clone(), next: None };
    vmm.inner.store.set_vm_guest(vm, &kept).await
}

/// Puts the old disk and seed back (the VM stays stopped, as the reinstall left it) and
/// forgets the settings of the reinstall.
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let (mut vm, node, hv) = match vmm.vm_and_hypervisor(run).await {
        Err(Error::VmNotFound { .. }) => return Ok(()),
        other => other?,
    };
    if run.task.reached(INSTALLED) {
        // The new install runs: it stays, with its settings.
        let TaskParams::Reinstall { image_id } = run.task.params else {
            return Err(Error::invalid("task", "a reinstall without its image"));
        };
        return keep_install(vmm, vm, image_id).await;
    }
    let guest = vmm.inner.store.vm_guest(vm.id).await?;
    if run.task.reached(DISK_SAVED) {
        if hv
            .domain(vm.id)
            .await?
            .is_some_and(|d| !matches!(d.state, PowerState::Shutoff | PowerState::Crashed))
        {
            hv.stop(vm.id).await?;
        }
        match hv.restore_previous_volume(vm.id).await {
            // Put back by an earlier run of this undo.
            Err(Error::Conflict { .. }) if hv.volume(vm.id).await?.is_some() => {}
            other => other?,
        }
        if let Some(current) = &guest.current {
            vmm.write_seed(hv.as_ref(), &vm, current).await?;
        }
        hv.define_domain(&vmm.domain_spec(&vm, &node, guest.current.is_some()).await?).await?;
    }
    // The reinstall stopped the VM before it failed; the record says what the node shows.
    let running = hv.domain(vm.id).await?.is_some_and(|d| d.state == PowerState::Running);
    vm.state = if running { VmState::Running } else { VmState::Stopped };
    vmm.inner.store.update_vm(&vm).await?;
    forget_next(vmm, &guest, vm.id).await
}
