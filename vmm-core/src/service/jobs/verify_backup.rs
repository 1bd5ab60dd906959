//! `verify_backup` and `delete_backup`: re-reading a backup against its manifest, and
//! removing it from its target without breaking the backups that share its chunks.

use std::collections::HashSet;

use super::backup_vm::backup_event;
use super::restore_backup::read_chunk;
use super::{backup_of, Outcome, Run, Vmm};
use crate::backup::manifest::manifest_key;
use crate::backup::{Backup, BackupState, Manifest, Verification};
use crate::error::{Error, Result};
use crate::event::EventType;

/// Reads every chunk and checks it, then the whole disk; records the result on the backup
/// with a `backup.verified` event, and fails naming the first bad chunk.
pub(super) async fn verify(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let mut backup = vmm.inner.store.get_backup(backup_of(run)?).await?;
    vmm.step(run, 5, "reading the manifest").await?;
    let checked = check(vmm, run, &backup).await;
    let verification = Verification {
        at: vmm.now(),
        ok: checked.is_ok(),
        error: checked.as_ref().err().map(Error::public_message),
    };
    let event = backup_event(EventType::BackupVerified, &backup, vmm.now())
        .with("ok", verification.ok)
        .with("error", &verification.error);
    // Only the verification is written, over the backup as it is now: a delete that began
    // meanwhile keeps its state.
    backup = vmm.inner.store.get_backup(backup.id).await?;
    backup.verified = Some(verification);
    vmm.inner.store.update_backup(&backup, Some(event)).await?;
    checked.map(|()| Outcome::Done)
}

async fn check(vmm: &Vmm, run: &mut Run, backup: &Backup) -> Result<()> {
    let manifest = vmm.read_manifest(backup).await?;
    let target = vmm.backup_target(backup.target_id).await?;
    let count = manifest.chunks.len().max(1);
    for (index, chunk) in manifest.chunks.iter().enumerate() {
        // Zero chunks are not stored: nothing to read.
        if let crate::backup::Chunk::Stored(_) = chunk {
            read_chunk(target.as_ref(), index, chunk).await?;
        }
        if index % 64 == 63 {
            let progress = u8::try_from(5 + index * 90 / count).unwrap_or(95);
            vmm.step(run, progress, format!("checked {} of {} chunks", index + 1, manifest.chunks.len()))
                .await?;
        }
    }
    // The chunk list's own checksum was checked as the manifest was read.
    Ok(())
}

/// Removes the backup from its target and forgets it ([`Vmm::remove_backup`]).
pub(super) async fn delete(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let backup = match vmm.inner.store.get_backup(backup_of(run)?).await {
        Ok(b) => b,
        Err(Error::BackupNotFound { .. }) => return Ok(Outcome::Done),
        Err(e) => return Err(e),
    };
    vmm.step(run, 10, "removing its manifest and the chunks no other backup uses").await?;
    vmm.remove_backup(&backup).await?;
    Ok(Outcome::Done)
}

impl Vmm {
    /// Removes the backup's manifest (it stops being restorable at once), then every object
    /// under the VM's prefix that no remaining manifest names: this backup's chunks that no
    /// newer backup shares, and chunks of earlier deleted backups that only this one still
    /// used; then its record, with a `backup.deleted` event. The caller holds the VM (while
    /// it exists), so no backup of it is being written.
    pub(in crate::service) async fn remove_backup(&self, backup: &Backup) -> Result<()> {
        let target = self.backup_target(backup.target_id).await?;
        target.delete(&manifest_key(backup.vm_id, backup.id)).await?;
        let keys = target.list(&format!("vms/{}/", backup.vm_id)).await?;
        let mut used: HashSet<String> = HashSet::new();
        for key in keys.iter().filter(|k| k.ends_with("/manifest.json")) {
            if let Some(data) = target.get(key).await? {
                used.extend(Manifest::from_json(&data)?.keys().map(str::to_owned));
            }
        }
        for key in keys.iter().filter(|k| !k.ends_with("/manifest.json") && !used.contains(*k)) {
            target.delete(key).await?;
        }
        let event = backup_event(EventType::BackupDeleted, backup, self.now());
        self.inner.store.delete_backup(backup.id, Some(event)).await
    }
}

/// A delete that failed leaves the backup `deleting`; asking again finishes it. Its
/// manifest may be gone already, so it is no longer restorable.
pub(super) async fn undo_delete(vmm: &Vmm, run: &mut Run) -> Result<()> {
    if let Ok(mut backup) = vmm.inner.store.get_backup(backup_of(run)?).await {
        backup.state = BackupState::Deleting;
        vmm.inner.store.update_backup(&backup, None).await?;
    }
    Ok(())
}
