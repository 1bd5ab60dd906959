//! `restore_backup`: a new VM (placed and leased when the task was queued) whose disk is
//! streamed back from a backup, each chunk checked against the manifest before it is handed
//! over; then a new seed, define and start,
//! as for a clone. A bad chunk fails the write, so the node keeps no volume, and the task
//! is undone like a create.

use std::io::Read;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use super::{Outcome, Run, Vmm};
use crate::backup::manifest::sha256_hex;
use crate::backup::{BackupTarget, Chunk, Manifest};
use crate::error::{Error, Result};
use crate::hypervisor::PowerState;
use crate::task::TaskParams;
use crate::vm::VmState;

/// Checkpoint: the disk is restored and checked.
const DISK_MADE: &str = "disk_made";

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let TaskParams::Restore { backup_id, start } = run.task.params else {
        return Err(Error::invalid("task", "a restore without its backup"));
    };
    let (mut vm, node, hv) = vmm.vm_and_hypervisor(run).await?;
    if vmm.cancel_requested(run).await? {
        vmm.undo_create(vm.id).await?;
        return Ok(Outcome::Cancelled);
    }
    if !run.task.reached(DISK_MADE) {
        let backup = vmm.inner.store.get_backup(backup_id).await?;
        let target = vmm.backup_target(backup.target_id).await?;
        let manifest = vmm.read_manifest(&backup).await?;
        vmm.step(run, 10, format!("restoring the disk from backup {backup_id}")).await?;
        // A disk left by an interrupted run may be partial: it is made again.
        if hv.volume(vm.id).await?.is_some() {
            hv.delete_volume(vm.id).await?;
        }
        let (tx, rx) = mpsc::channel(4);
        let reader = Box::new(ChannelReader { rx, piece: Vec::new(), at: 0 });
        let write = hv.write_volume(vm.id, manifest.format, reader, manifest.size);
        let (written, fed) = futures::join!(write, feed(target.as_ref(), &manifest, tx));
        // The feed's error names the chunk; the write's then only says the data stopped.
        fed?;
        written?;
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

/// A blocking reader of the chunks the feed sends (the hypervisor reads it on a thread of
/// its own); an error sent by the feed is a read error.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.piece.len() {
            match futures::executor::block_on(self.rx.next()) {
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
