//! `restore_backup`: a new VM (placed and leased when the task was queued) whose disk is
//! streamed back from a backup, each chunk checked against the manifest before it is handed
//! over; then a new seed, define and start,
//! as for a clone. A bad chunk fails the write, so the node keeps no volume, and the task
//! is undone like a create. A restore into the VM itself keeps its disk aside until the
//! new one is whole, and puts it back if the restore fails.

use futures::channel::mpsc;
use futures::SinkExt;

use super::{Outcome, Run, StreamReader, Vmm};
use crate::backup::manifest::sha256_hex;
use crate::backup::{BackupTarget, Chunk, Manifest};
use crate::error::{Error, Result};
use crate::hypervisor::{Hypervisor, PowerState};
use crate::id::{BackupId, VmId};
use crate::task::TaskParams;
use crate::vm::VmState;

/// Checkpoint: the disk is restored and checked.
const DISK_MADE: &str = "disk_made";
/// Checkpoint (into the VM itself): its disk is kept aside.
const DISK_SAVED: &str = "disk_saved";

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let TaskParams::Restore { backup_id, start, in_place } = run.task.params else {
        return Err(Error::invalid("task", "a restore without its backup"));
    };
    if in_place {
        return run_in_place(vmm, run, backup_id).await;
    }
    let (mut vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    if vmm.cancel_requested(run).await? {
        vmm.undo_create(vm.id).await?;
        return Ok(Outcome::Cancelled);
    }
    if !run.task.reached(DISK_MADE) {
        vmm.step(run, 10, format!("restoring the disk from backup {backup_id}")).await?;
        stream_back(vmm, hv.as_ref(), vm.id, backup_id).await?;
        vmm.checkpoint(run, DISK_MADE).await?;
    }
    vmm.step(run, 70, "preparing networks and the seed").await?;
    vmm.ensure_networks(hv.as_ref(), &vm).await?;
    let guest = vmm.inner.store.vm_guest(vm.id).await?.current;
    if let Some(guest) = &guest {
        vmm.write_seed(hv.as_ref(), &vm, guest).await?;
    }
    vmm.step(run, 80, "defining the domain").await?;
    hv.define_domain(&vmm.domain_spec(&vm, &node, guest.is_some()).await?).await?;
    if start {
        vmm.step(run, 90, "starting").await?;
        if hv.domain(vm.id).await?.is_none_or(|d| d.state != PowerState::Running) {
            hv.start(vm.id).await?;
        }
    }
    vm.state = if start { VmState::Running } else { VmState::Stopped };
    vmm.inner.store.update_vm(&vm).await?;
    Ok(Outcome::Done)
}

/// Makes the VM's disk from the backup (a partial disk of an interrupted run is made again).
async fn stream_back(vmm: &Vmm, hv: &dyn Hypervisor, vm: VmId, backup_id: BackupId) -> Result<()> {
    let backup = vmm.inner.store.get_backup(backup_id).await?;
    let target = vmm.backup_target(backup.target_id).await?;
    let manifest = vmm.read_manifest(&backup).await?;
    if hv.volume(vm).await?.is_some() {
        hv.delete_volume(vm).await?;
    }
    let (tx, rx) = mpsc::channel(4);
    let reader = Box::new(StreamReader::new(rx));
    let write = hv.write_volume(vm, manifest.format, reader, manifest.size);
    let (written, fed) = futures::join!(write, feed(target.as_ref(), &manifest, tx));
    // The feed's error names the chunk; the write's then only says the data stopped.
    fed?;
    written.map(drop)
}

/// Into the VM itself: its disk kept aside, the backup's written in its place, the kept one
/// removed once the new one is whole. The VM stays stopped.
async fn run_in_place(vmm: &Vmm, run: &mut Run, backup_id: BackupId) -> Result<Outcome> {
    let (mut vm, _node, hv) = vmm.vm_and_hypervisor(run).await?;
    if !run.task.reached(DISK_MADE) {
        if vmm.cancel_requested(run).await? {
            undo(vmm, run).await?;
            return Ok(Outcome::Cancelled);
        }
        if hv.domain(vm.id).await?.is_some_and(|d| d.state != PowerState::Shutoff) {
            return Err(Error::conflict(format!("VM {} must stay stopped for a restore into it", vm.id)));
        }
        if !run.task.reached(DISK_SAVED) {
            vmm.step(run, 5, "keeping the current disk aside").await?;
            hv.save_previous_volume(vm.id).await?;
            vmm.checkpoint(run, DISK_SAVED).await?;
        }
        vmm.step(run, 20, format!("restoring the disk from backup {backup_id}")).await?;
        stream_back(vmm, hv.as_ref(), vm.id, backup_id).await?;
        vmm.checkpoint(run, DISK_MADE).await?;
    }
    if let Err(e) = hv.delete_previous_volume(vm.id).await {
        tracing::warn!(vm = %vm.id, error = %crate::error_chain(&e), "the disk kept aside stays; a delete of the VM removes it");
    }
    vm.state = VmState::Stopped;
    vmm.inner.store.update_vm(&vm).await?;
    Ok(Outcome::Done)
}

/// A restore as a new VM is undone like a create. One into the VM itself puts the disk kept
/// aside back, unless the new disk was whole already.
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let in_place = matches!(run.task.params, TaskParams::Restore { in_place: true, .. });
    let vm = super::vm_of(run)?;
    if !in_place {
        return vmm.undo_create(vm).await;
    }
    if run.task.reached(DISK_MADE) || !run.task.reached(DISK_SAVED) {
        return Ok(());
    }
    let (_, _, hv) = match vmm.vm_and_hypervisor(run).await {
        Err(Error::VmNotFound { .. }) => return Ok(()),
        other => other?,
    };
    match hv.restore_previous_volume(vm).await {
        // Put back by an earlier run of this undo.
        Err(Error::Conflict { .. }) if hv.volume(vm).await?.is_some() => Ok(()),
        other => other,
    }
}

/// Sends the disk's bytes chunk by chunk, each checked before it goes (the manifest, whose
/// chunk list matches the disk's checksum, was checked when read). On a bad chunk it sends
/// an error, so the write fails rather than keep a short disk, and returns it.
async fn feed(
    target: &dyn BackupTarget,
    manifest: &Manifest,
    mut tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
) -> Result<()> {
    for (index, chunk) in manifest.chunks.iter().enumerate() {
        match read_chunk(target, index, chunk).await {
            Ok(data) => {
                if tx.send(Ok(data)).await.is_err() {
                    return Err(Error::conflict("the node stopped taking the disk"));
                }
            }
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Chunk `index`'s bytes, checked against the manifest: a missing or changed chunk is an
/// error naming it.
pub(super) async fn read_chunk(target: &dyn BackupTarget, index: usize, chunk: &Chunk) -> Result<Vec<u8>> {
    match chunk {
        Chunk::Zero { zero } => Ok(vec![0; usize::try_from(*zero).unwrap_or(0)]),
        Chunk::Stored(c) => {
            let Some(data) = target.get(&c.key).await? else {
                return Err(Error::conflict(format!("chunk {index} ({}) is missing from the target", c.key)));
            };
            if data.len() as u64 != c.len || sha256_hex(&data) != c.sha256 {
                return Err(Error::conflict(format!(
                    "chunk {index} ({}) does not match its checksum",
                    c.key
                )));
            }
            Ok(data)
        }
    }
}
