//! Backups: targets, and backups taken, restored, verified and deleted, each as a task
//! (the sagas are in `jobs/backup_vm`, `jobs/restore_backup`, `jobs/verify_backup` and
//! `jobs/delete_backup`). A backup is its VM owner's: another user's is not found.

use std::sync::Arc;

use super::Vmm;
use crate::backup::manifest::manifest_key;
use crate::backup::{
    Backup, BackupFilter, BackupSpec, BackupState, BackupTarget, BackupTargetConfig, BackupTargetSpec,
    Manifest, RestoreSpec,
};
use crate::error::{Error, Result};
use crate::id::{BackupId, BackupTargetId, NodeId, VmId};
use crate::page::{Page, PageRequest};
use crate::store::PlacementRequest;
use crate::task::{Task, TaskKind, TaskParams};
use crate::users::{sees_all, Access, Actor, Area, Target};
use crate::vm::{validate_name, Vm, VmState};

impl Vmm {
    /// Adds a backup target after checking that it can be written, read and listed.
    pub async fn create_backup_target(
        &self,
        actor: &Actor,
        spec: BackupTargetSpec,
    ) -> Result<BackupTargetConfig> {
        actor.may(Area::Nodes, Access::Write)?;
        spec.validate()?;
        let config = BackupTargetConfig {
            id: BackupTargetId::new(),
            name: spec.name,
            url: spec.url,
            s3: spec.s3,
            created_at: self.now(),
        };
        let target = self.inner.targets.open(&config).await?;
        probe(target.as_ref()).await.map_err(|e| match e {
            Error::Unavailable { reason, .. } => {
                Error::invalid("url", format!("the target cannot be used: {reason}"))
            }
            other => other,
        })?;
        self.inner.store.create_backup_target(&config).await?;
        Ok(config.without_secret())
    }

    /// The backup targets, by age (secrets left out).
    pub async fn list_backup_targets(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Page<BackupTargetConfig>> {
        actor.may(Area::Nodes, Access::Read)?;
        self.inner.store.list_backup_targets(page).await
    }

    /// One backup target (its secret left out).
    pub async fn get_backup_target(&self, actor: &Actor, id: BackupTargetId) -> Result<BackupTargetConfig> {
        actor.may(Area::Nodes, Access::Read)?;
        self.inner.store.get_backup_target(id).await.map(BackupTargetConfig::without_secret)
    }

    /// Removes a backup target that holds no backups (its files stay where they are).
    pub async fn delete_backup_target(&self, actor: &Actor, id: BackupTargetId) -> Result<()> {
        actor.may(Area::Nodes, Access::Write)?;
        self.inner.store.delete_backup_target(id).await
    }

    /// Queues a backup of a VM `actor` may change, to `spec.target_id`.
    pub async fn backup_vm(&self, actor: &Actor, vm: VmId, spec: BackupSpec) -> Result<(Backup, Task)> {
        let vm = self.vm_for(actor, vm, Access::Write).await?;
        self.inner.store.get_backup_target(spec.target_id).await?;
        let now = self.now();
        let mut backup = Backup::new(vm.id, spec.target_id, spec.mode, now);
        backup.owner_id = vm.owner_id;
        let task = self.acting_for(actor).new_task(
            TaskKind::BackupVm,
            Some(vm.id),
            TaskParams::Backup { backup_id: backup.id },
            now,
        );
        backup.task_id = Some(task.id);
        self.inner.store.enqueue_backup_task(&backup, &task).await?;
        self.notify();
        Ok((backup, task))
    }

    /// The backup, if `actor` may have `access` to it (as to its VM).
    pub async fn backup_for(&self, actor: &Actor, id: BackupId, access: Access) -> Result<Backup> {
        let backup = self.inner.store.get_backup(id).await?;
        let whose = backup.owner_id.map_or(Target::Other, |o| actor.target(o));
        actor.check(Area::Vms, access, whose, || Error::BackupNotFound { id })?;
        Ok(backup)
    }

    /// The backups `actor` may see that pass `filter`, newest first.
    pub async fn list_backups(
        &self,
        actor: &Actor,
        filter: &BackupFilter,
        page: &PageRequest,
    ) -> Result<Page<Backup>> {
        actor.may(Area::Vms, Access::Read)?;
        let mut filter = *filter;
        if !sees_all(actor.role, Area::Vms) {
            filter.owner_id = Some(actor.user_id);
        }
        self.inner.store.list_backups(&filter, page).await
    }

    /// Queues a check of every chunk of a completed backup against its manifest.
    pub async fn verify_backup(&self, actor: &Actor, id: BackupId) -> Result<Task> {
        let backup = self.backup_for(actor, id, Access::Write).await?;
        if backup.state != BackupState::Completed {
            return Err(Error::conflict(format!("backup {id} is {}, not completed", backup.state)));
        }
        self.queue_on_backup(actor, backup, TaskKind::VerifyBackup, None).await
    }

    /// Queues the removal of a backup from its target. Chunks a newer backup of the chain
    /// uses stay until that one goes too.
    pub async fn delete_backup(&self, actor: &Actor, id: BackupId) -> Result<Task> {
        let backup = self.backup_for(actor, id, Access::Write).await?;
        if matches!(backup.state, BackupState::Pending | BackupState::Running) {
            return Err(Error::conflict(format!("backup {id} is being taken")));
        }
        // Queued on the VM while it exists, so it never runs beside a backup of the same
        // VM that may be choosing this one as its parent.
        let vm = match self.inner.store.get_vm(backup.vm_id).await {
            Ok(vm) => Some(vm.id),
            Err(Error::VmNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let deleting = Backup { state: BackupState::Deleting, ..backup };
        self.queue_on_backup(actor, deleting, TaskKind::DeleteBackup, vm).await
    }

    async fn queue_on_backup(
        &self,
        actor: &Actor,
        backup: Backup,
        kind: TaskKind,
        vm: Option<VmId>,
    ) -> Result<Task> {
        let mut task = self.acting_for(actor).new_task(
            kind,
            vm,
            TaskParams::Backup { backup_id: backup.id },
            self.now(),
        );
        task.owner_id = backup.owner_id;
        self.inner.store.enqueue_backup_task(&backup, &task).await?;
        self.notify();
        Ok(task)
    }

    /// Makes a new VM from a completed backup: the settings it was taken with, a new id,
    /// new addresses from the same pools and a new seed, placed like a create (on
    /// `node_id` if given). The disk is streamed back and checked chunk by chunk.
    pub async fn restore_backup(&self, actor: &Actor, id: BackupId, spec: RestoreSpec) -> Result<(Vm, Task)> {
        let backup = self.backup_for(actor, id, Access::Write).await?;
        actor.may(Area::Vms, Access::Write)?;
        let new = match (spec.new_vm, spec.vm_id) {
            (Some(new), None) => new,
            (None, Some(vm)) => return self.restore_in_place(actor, backup, vm).await,
            _ => return Err(Error::invalid("new_vm", "give either new_vm or vm_id")),
        };
        validate_name(&new.name)?;
        if backup.state != BackupState::Completed {
            return Err(Error::conflict(format!("backup {id} is {}, not completed", backup.state)));
        }
        let manifest = self.read_manifest(&backup).await?;
        let from = manifest.vm;
        let now = self.now();
        let vm_id = VmId::new();
        // The guest keeps its keys and password; what ran once at its first boot (recipes,
        // user-data) is on the disk already and does not run again.
        let guest = manifest.guest.map(|mut g| {
            g.hostname = crate::guest::default_hostname(&new.name, vm_id);
            g.generation = 0;
            g.recipes.clear();
            g.user_data = None;
            g
        });
        let pools: Vec<_> = from.nics.iter().filter_map(|n| n.pool_id).collect();
        let only = self.nodes_for_pools(&pools, new.node_id).await?;
        let hostname = guest.as_ref().map(|g| g.hostname.clone());
        let nil = NodeId::from_uuid(uuid::Uuid::nil());
        let vm = Vm {
            owner_id: backup.owner_id,
            ..super::vms::copy_of(&from, vm_id, new.name, nil, hostname, now)
        };
        let task = self.acting_for(actor).new_task(
            TaskKind::RestoreBackup,
            Some(vm_id),
            TaskParams::Restore { backup_id: id, start: new.start, in_place: false },
            now,
        );
        let placement =
            PlacementRequest { pinned: new.node_id, strategy: self.inner.config.strategy, only, group: None };
        self.create_placed(&vm, &task, &placement, guest.as_ref()).await
    }

    /// Queues the restore of `backup` into its own VM, which must be stopped and have the
    /// disk size it had then.
    async fn restore_in_place(&self, actor: &Actor, backup: Backup, vm: VmId) -> Result<(Vm, Task)> {
        if vm != backup.vm_id {
            return Err(Error::invalid("vm_id", "a backup restores into its own VM, or as a new one"));
        }
        let current = self.vm_for(actor, vm, Access::Write).await?;
        if backup.state != BackupState::Completed {
            return Err(Error::conflict(format!("backup {} is {}, not completed", backup.id, backup.state)));
        }
        if current.state != VmState::Stopped {
            return Err(Error::conflict(format!("VM {vm} must be stopped for a restore into it")));
        }
        if !self.inner.store.list_snapshots(vm).await?.is_empty() {
            return Err(Error::conflict(format!(
                "VM {vm} has snapshots, which its disk from the backup would not hold; delete them first"
            )));
        }
        if backup.vm.as_ref().is_some_and(|then| then.disk_gib != current.disk_gib) {
            return Err(Error::conflict(format!(
                "VM {vm}'s disk was resized since backup {}; restore it as a new VM",
                backup.id
            )));
        }
        let params = TaskParams::Restore { backup_id: backup.id, start: false, in_place: true };
        let task = self.acting_for(actor).new_task(TaskKind::RestoreBackup, Some(vm), params, self.now());
        self.inner.store.enqueue_task(&task, None).await?;
        self.notify();
        Ok((current, task))
    }

    /// The target a backup is on, opened.
    pub(super) async fn backup_target(&self, id: BackupTargetId) -> Result<Arc<dyn BackupTarget>> {
        let config = self.inner.store.get_backup_target(id).await?;
        self.inner.targets.open(&config).await
    }

    /// A completed backup's manifest, read from its target.
    pub(super) async fn read_manifest(&self, backup: &Backup) -> Result<Manifest> {
        let target = self.backup_target(backup.target_id).await?;
        let key = manifest_key(backup.vm_id, backup.id);
        match target.get(&key).await? {
            Some(data) => Manifest::from_json(&data),
            None => Err(Error::conflict(format!("backup {} has no manifest on its target", backup.id))),
        }
    }
}

/// Writes, reads, lists and removes a small object, so that a target that cannot hold
/// backups is refused when it is added, not at the first backup.
async fn probe(target: &dyn BackupTarget) -> Result<()> {
    let key = format!("probe/{}", uuid::Uuid::new_v4().simple());
    let data = b"vmm".to_vec();
    target.put(&key, data.clone()).await?;
    let read = target.get(&key).await?;
    let listed = target.list("probe/").await?;
    target.delete(&key).await?;
    if read.as_deref() != Some(&data[..]) || !listed.contains(&key) {
        return Err(Error::unavailable(target.describe(), "what was written could not be read back"));
    }
    Ok(())
}
