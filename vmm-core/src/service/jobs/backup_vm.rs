//! `backup_vm`: the VM's disk read from its node through the hypervisor (so remote nodes
//! work the same), cut into chunks as it streams, each chunk stored on the target unless
//! it is zeros or (incremental) the same as the parent's; the manifest last, in one atomic
//! put. Nothing of an unfinished backup is restorable, and its chunks are removed when the
//! task is undone or runs again.

use futures::future::{select, Either};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use super::{backup_of, Outcome, Run, Vmm};
use crate::backup::manifest::{
    backup_prefix, chunk_key, disk_digest, is_zero, manifest_key, sha256_hex, Chunker, MANIFEST_VERSION,
};
use crate::backup::{
    Backup, BackupFilter, BackupMode, BackupState, BackupTarget, Chunk, ChunkRef, Manifest, CHUNK_SIZE,
};
use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::page::PageRequest;

/// Pieces of the disk in flight between the node and the chunker.
const IN_FLIGHT: usize = 4;

/// Chunks being written to the target at once.
const PUTS_IN_FLIGHT: usize = 4;

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let mut backup = vmm.inner.store.get_backup(backup_of(run)?).await?;
    if backup.state == BackupState::Completed {
        // Resumed after the manifest was written: the backup is done.
        return Ok(Outcome::Done);
    }
    let (vm, _node, hv) = vmm.vm_and_hypervisor(run).await?;
    let target = vmm.backup_target(backup.target_id).await?;
    if vmm.cancel_requested(run).await? {
        undo(vmm, run).await?;
        return Ok(Outcome::Cancelled);
    }
    let parent = match backup.mode {
        BackupMode::Full => None,
        BackupMode::Incremental => newest_completed(vmm, &backup).await?,
    };
    let parent_manifest = match &parent {
        Some(p) => Some(vmm.read_manifest(p).await?),
        None => None,
    };
    backup.state = BackupState::Running;
    backup.parent_id = parent.as_ref().map(|p| p.id);
    backup.vm = Some(vm.clone());
    vmm.inner.store.update_backup(&backup, None).await?;
    vmm.step(run, 5, "clearing what an earlier try left on the target").await?;
    remove_prefix(target.as_ref(), &backup_prefix(vm.id, backup.id)).await?;

    vmm.step(run, 10, "copying the disk").await?;
    let parent_chunks = parent_manifest.map(|m| m.chunks).unwrap_or_default();
    let (sink, pieces) = futures::channel::mpsc::channel::<Vec<u8>>(IN_FLIGHT);
    let read = hv.read_volume(vm.id, sink);
    // The disk in chunks, each checked for zeros and hashed on a thread of its own, a few
    // at once (hashing is most of the work), in order.
    let mut chunker = Chunker::default();
    let planned = pieces
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .flat_map(move |piece| {
            futures::stream::iter(match piece {
                Some(piece) => chunker.push(piece),
                None => std::mem::take(&mut chunker).finish().0.into_iter().collect(),
            })
        })
        .enumerate()
        .map(|(index, data)| {
            let key = chunk_key(backup.vm_id, backup.id, index);
            let parent = parent_chunks.get(index).cloned();
            on_a_thread(move || plan_chunk(key, parent, data))
        })
        .buffered(hashes_in_flight());
    let store = async {
        let mut planned = std::pin::pin!(planned);
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut stored = 0u64;
        // Puts run while the next chunks are read and hashed, a few at a time.
        let mut puts = FuturesUnordered::new();
        loop {
            // While the next chunk comes, the puts in flight go on.
            let next = loop {
                if puts.is_empty() {
                    break planned.next().await;
                }
                match select(planned.next(), puts.next()).await {
                    Either::Left((next, _)) => break next,
                    Either::Right((Some(Err(e)), _)) => break Some(Err(e)),
                    Either::Right(_) => {}
                }
            };
            let (chunk, put) = match next {
                Some(Ok(next)) => next,
                Some(Err(e)) => {
                    // The others finish before the undo clears the prefix.
                    while puts.next().await.is_some() {}
                    return Err(e);
                }
                None => break,
            };
            chunks.push(chunk);
            if let Some((key, data)) = put {
                stored += data.len() as u64;
                let target = target.clone();
                puts.push(async move { target.put(&key, data).await });
                while puts.len() >= PUTS_IN_FLIGHT {
                    if let Some(Err(e)) = puts.next().await {
                        while puts.next().await.is_some() {}
                        return Err(e);
                    }
                }
            }
        }
        let mut failed = None;
        while let Some(put) = puts.next().await {
            if let Err(e) = put {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok::<_, Error>((chunks, stored)),
        }
    };
    // A store that stops early (the target failed) drops the chunk stream and with it the
    // receiving end, which ends the read instead of leaving it waiting for room; a failed
    // read ends the stream.
    let (read, stored) = futures::join!(read, store);
    let (chunks, mut stored) = stored?;
    let total: u64 = chunks.iter().map(Chunk::len).sum();
    let read = read?;
    let (format, sent) = (read.format, read.bytes);
    if sent != total {
        return Err(Error::conflict(format!("the node sent {sent} bytes but {total} arrived")));
    }

    check_quota(vmm, &backup, stored).await?;
    vmm.step(run, 90, "writing the manifest").await?;
    let guest = vmm.inner.store.vm_guest(vm.id).await?.current;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        backup_id: backup.id,
        parent_id: backup.parent_id,
        created_at: vmm.now(),
        format,
        size: total,
        chunk_size: CHUNK_SIZE as u64,
        sha256: disk_digest(&chunks),
        consistency: read.consistency,
        vm: vm.clone(),
        guest,
        chunks,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::backend("manifest", e))?;
    stored += json.len() as u64;
    target.put(&manifest_key(vm.id, backup.id), json).await?;

    backup.state = BackupState::Completed;
    backup.size_bytes = stored;
    backup.disk_bytes = total;
    backup.consistency = Some(read.consistency);
    backup.completed_at = Some(vmm.now());
    let event = backup_event(EventType::BackupCompleted, &backup, vmm.now())
        .with("mode", backup.mode)
        .with("size_bytes", stored)
        .with("disk_bytes", total);
    vmm.inner.store.update_backup(&backup, Some(event)).await?;
    if backup.schedule_id.is_some() {
        vmm.step(run, 95, "pruning by the schedule's retention").await?;
        // The backup is good whatever happens to the older ones; the next run prunes again.
        if let Err(e) = vmm.prune_after(&backup).await {
            tracing::warn!(backup = %backup.id, error = %crate::error_chain(&e), "pruning after a scheduled backup failed");
        }
    }
    Ok(Outcome::Done)
}

/// Whether keeping `adding` more bytes of backups fits the owner's disk quota, beside their
/// VMs' disks and their backups kept so far.
async fn check_quota(vmm: &Vmm, backup: &Backup, adding: u64) -> Result<()> {
    const GIB: u64 = 1 << 30;
    let Some(owner) = backup.owner_id else { return Ok(()) };
    let user = match vmm.inner.store.get_user(owner).await {
        Ok(user) => user,
        Err(Error::UserNotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some(max_gib) = user.quota.max_disk_gib else { return Ok(()) };
    let disks = vmm.inner.store.user_usage(owner).await?.disk_gib * GIB;
    let filter = BackupFilter { owner_id: Some(owner), ..BackupFilter::default() };
    let mut kept = 0u64;
    let mut page = PageRequest::first(crate::page::MAX_LIMIT);
    loop {
        let found = vmm.inner.store.list_backups(&filter, &page).await?;
        kept += found
            .items
            .iter()
            .filter(|b| b.state == BackupState::Completed)
            .map(|b| b.size_bytes)
            .sum::<u64>();
        match found.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    let wanted = disks + kept + adding;
    if wanted > max_gib * GIB {
        return Err(Error::QuotaExceeded {
            limit: "max_disk_gib",
            max: max_gib,
            wanted: wanted.div_ceil(GIB),
        });
    }
    Ok(())
}

/// What to do with a chunk: nothing stored when it is zeros or the same as the parent's
/// chunk at the same place (named instead), otherwise stored under `key`.
fn plan_chunk(key: String, parent: Option<Chunk>, data: Vec<u8>) -> (Chunk, Option<(String, Vec<u8>)>) {
    let len = data.len() as u64;
    if is_zero(&data) {
        return (Chunk::Zero { zero: len }, None);
    }
    let sha256 = sha256_hex(&data);
    if let Some(Chunk::Stored(same)) = parent {
        if same.sha256 == sha256 && same.len == len {
            return (Chunk::Stored(same), None);
        }
    }
    (Chunk::Stored(ChunkRef { key: key.clone(), sha256, len }), Some((key, data)))
}

/// How many chunks are hashed at once: one per core, at least two.
fn hashes_in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
}

/// Runs `work` on a thread of its own (core has no runtime to lend one) and waits for it
/// without blocking.
async fn on_a_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (done, result) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("vmm-backup-hash".into())
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(|e| Error::backend("backup", e))?;
    result.await.map_err(|_| Error::backend("backup", "a hashing thread died"))
}

/// The newest completed backup of the VM on the same target: an incremental one's parent.
async fn newest_completed(vmm: &Vmm, backup: &Backup) -> Result<Option<Backup>> {
    let filter =
        BackupFilter { vm_id: Some(backup.vm_id), target_id: Some(backup.target_id), owner_id: None };
    let mut page = PageRequest::default();
    loop {
        let found = vmm.inner.store.list_backups(&filter, &page).await?;
        if let Some(b) =
            found.items.into_iter().find(|b| b.state == BackupState::Completed && b.id != backup.id)
        {
            return Ok(Some(b));
        }
        match found.next_cursor {
            Some(cursor) => page = PageRequest { cursor: Some(cursor), ..page },
            None => return Ok(None),
        }
    }
}

/// Removes every object under `prefix`.
pub(super) async fn remove_prefix(target: &dyn BackupTarget, prefix: &str) -> Result<()> {
    target.delete_prefix(prefix).await
}

/// The event of something that happened to `backup`.
pub(super) fn backup_event(kind: EventType, backup: &Backup, at: chrono::DateTime<chrono::Utc>) -> Event {
    Event::new(kind, at).vm(Some(backup.vm_id)).owner(backup.owner_id).with("backup_id", backup.id)
}

/// Records the backup failed (a completed one stays), then removes what it wrote, as far
/// as the target lets it: what stays is removed by the next delete of a backup of the VM.
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let why = format!("task {} did not finish it", run.task.id);
    vmm.backup_not_taken(backup_of(run)?, &why).await
}

impl Vmm {
    /// Records backup `id` failed for `why` (unless it completed), and removes its objects
    /// from its target as far as it can.
    pub(in crate::service) async fn backup_not_taken(
        &self,
        id: crate::id::BackupId,
        why: &str,
    ) -> Result<()> {
        let mut backup = match self.inner.store.get_backup(id).await {
            Ok(b) => b,
            Err(Error::BackupNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if backup.state == BackupState::Completed {
            return Ok(());
        }
        backup.state = BackupState::Failed;
        backup.size_bytes = 0;
        backup.error = Some(why.to_owned());
        self.inner.store.update_backup(&backup, None).await?;
        let cleared = async {
            let target = self.backup_target(backup.target_id).await?;
            remove_prefix(target.as_ref(), &backup_prefix(backup.vm_id, backup.id)).await
        };
        if let Err(e) = cleared.await {
            tracing::warn!(backup = %backup.id, error = %crate::error_chain(&e), "what a failed backup wrote stays on its target until the next delete of one of the VM's backups");
        }
        Ok(())
    }
}
