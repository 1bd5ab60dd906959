//! Backup schedules: kept per owner, run by one scheduler loop per cluster (a singleton
//! lease), each due run claimed in the store so that it runs once, and a late scheduler
//! catches up with one run. A run queues a backup of each of its VMs; retention prunes
//! after each backup that succeeds (in `jobs/backup_vm`).

use std::future::Future;
use std::time::Duration;

use futures::future::{select, Either};
use futures_timer::Delay;

use super::Vmm;
use crate::backup::{Backup, BackupSchedule, BackupState, SchedulePatch, ScheduleSpec};
use crate::error::{Error, Result};
use crate::id::{ScheduleId, VmId};
use crate::page::{Page, PageRequest};
use crate::task::{Task, TaskKind, TaskParams};
use crate::users::{sees_all, Access, Actor, Area, Target};
use crate::vm::Vm;

/// The singleton lease of the scheduler loop.
const SCHEDULER: &str = "backup-scheduler";

impl Vmm {
    /// Makes a schedule of `actor`'s, over VMs they may change (or all of theirs).
    pub async fn create_schedule(&self, actor: &Actor, spec: ScheduleSpec) -> Result<BackupSchedule> {
        actor.may(Area::Vms, Access::Write)?;
        self.inner.store.get_backup_target(spec.target_id).await?;
        for vm in &spec.vm_ids {
            self.vm_for(actor, *vm, Access::Write).await?;
        }
        // The system actor is no user: its schedules are nobody's, and cover every VM.
        let owner = (actor.user_id != Actor::system().user_id).then_some(actor.user_id);
        let schedule = BackupSchedule::new(spec, owner, self.now())?;
        self.inner.store.create_schedule(&schedule).await?;
        Ok(schedule)
    }

    /// The schedule, if `actor` may have `access` to it.
    pub async fn schedule_for(
        &self,
        actor: &Actor,
        id: ScheduleId,
        access: Access,
    ) -> Result<BackupSchedule> {
        let schedule = self.inner.store.get_schedule(id).await?;
        let whose = schedule.owner_id.map_or(Target::Other, |o| actor.target(o));
        actor.check(Area::Vms, access, whose, || Error::ScheduleNotFound { id })?;
        Ok(schedule)
    }

    /// The schedules `actor` may see, newest first.
    pub async fn list_schedules(&self, actor: &Actor, page: &PageRequest) -> Result<Page<BackupSchedule>> {
        actor.may(Area::Vms, Access::Read)?;
        let owner = (!sees_all(actor.role, Area::Vms)).then_some(actor.user_id);
        self.inner.store.list_schedules(owner, page).await
    }

    /// Changes a schedule.
    pub async fn update_schedule(
        &self,
        actor: &Actor,
        id: ScheduleId,
        patch: SchedulePatch,
    ) -> Result<BackupSchedule> {
        let schedule = self.schedule_for(actor, id, Access::Write).await?.patched(patch, self.now())?;
        self.inner.store.update_schedule(&schedule).await?;
        Ok(schedule)
    }

    /// Removes a schedule; the backups it made stay.
    pub async fn delete_schedule(&self, actor: &Actor, id: ScheduleId) -> Result<()> {
        self.schedule_for(actor, id, Access::Write).await?;
        self.inner.store.delete_schedule(id).await
    }

    /// Runs a schedule now, whatever its next run: queues a backup of each of its VMs.
    pub async fn run_schedule_now(&self, actor: &Actor, id: ScheduleId) -> Result<Vec<Task>> {
        let schedule = self.schedule_for(actor, id, Access::Write).await?;
        self.run_schedule(&schedule).await
    }

    /// Claims every schedule due now and runs it; returns how many ran. VMs an earlier run
    /// found busy with another task are tried again first.
    pub async fn run_due_schedules(&self) -> Result<usize> {
        self.retry_busy().await?;
        let mut ran = 0;
        while let Some(schedule) = self.inner.store.claim_due_schedule(self.now()).await? {
            if let Err(e) = self.run_schedule(&schedule).await {
                tracing::warn!(schedule = %schedule.id, error = %crate::error_chain(&e), "a backup schedule could not run");
            }
            ran += 1;
        }
        Ok(ran)
    }

    /// Runs due schedules every `interval` until `stopped`, while this process holds the
    /// cluster's scheduler lease.
    pub async fn run_backup_scheduler(&self, interval: Duration, stopped: impl Future<Output = ()>) {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            let holder = self.inner.config.worker_id.clone();
            match self.inner.store.acquire_singleton(SCHEDULER, &holder, interval * 3).await {
                Ok(true) => {
                    if let Err(e) = self.run_due_schedules().await {
                        tracing::warn!(error = %crate::error_chain(&e), "running backup schedules failed");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "the scheduler's lease could not be taken")
                }
            }
            if let Either::Left(_) = select(stopped.as_mut(), Delay::new(interval)).await {
                return;
            }
        }
    }

    /// Queues a backup of each VM of `schedule` as the schedule's owner; a VM busy with
    /// another task, gone, or no longer the owner's is passed over (and logged).
    async fn run_schedule(&self, schedule: &BackupSchedule) -> Result<Vec<Task>> {
        // A schedule whose owner is gone does not run.
        let owner = match schedule.owner_id {
            Some(o) => Some(self.inner.store.get_user(o).await?),
            None => None,
        };
        let sees_every_vm = owner.as_ref().is_none_or(|u| sees_all(u.role, Area::Vms));
        let vms: Vec<Vm> = if schedule.all {
            self.schedule_vms(if sees_every_vm { None } else { schedule.owner_id }).await?
        } else {
            let mut found = Vec::new();
            for id in &schedule.vm_ids {
                match self.inner.store.get_vm(*id).await {
                    Ok(vm) if sees_every_vm || vm.owner_id == schedule.owner_id => found.push(vm),
                    Ok(_) | Err(Error::VmNotFound { .. }) => {
                        tracing::info!(schedule = %schedule.id, vm = %id, "a scheduled VM is gone or no longer the owner's");
                    }
                    Err(e) => return Err(e),
                }
            }
            found
        };
        let mut tasks = Vec::new();
        let mut busy = Vec::new();
        for vm in vms {
            match self.queue_scheduled_backup(schedule, &vm).await {
                Ok(task) => tasks.push(task),
                Err(Error::ActiveTask { .. }) => busy.push(vm.id),
                Err(e) => {
                    tracing::warn!(schedule = %schedule.id, vm = %vm.id, error = %crate::error_chain(&e), "a scheduled backup was not queued");
                }
            }
        }
        // This run covers what an earlier one left; what is busy now is tried again.
        let mut pending = super::lock(&self.inner.busy);
        if busy.is_empty() {
            pending.remove(&schedule.id);
        } else {
            pending.insert(schedule.id, busy);
        }
        drop(pending);
        self.notify();
        Ok(tasks)
    }

    /// Queues the backups that runs of schedules could not queue because their VMs were
    /// busy, for those no longer busy.
    async fn retry_busy(&self) -> Result<()> {
        let waiting: Vec<(ScheduleId, Vec<VmId>)> = super::lock(&self.inner.busy).drain().collect();
        for (id, vms) in waiting {
            let schedule = match self.inner.store.get_schedule(id).await {
                Ok(s) => s,
                Err(Error::ScheduleNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut still = Vec::new();
            for vm_id in vms {
                let vm = match self.inner.store.get_vm(vm_id).await {
                    Ok(vm) => vm,
                    Err(Error::VmNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                match self.queue_scheduled_backup(&schedule, &vm).await {
                    Ok(_) => {}
                    Err(Error::ActiveTask { .. }) => still.push(vm_id),
                    Err(e) => {
                        tracing::warn!(schedule = %id, vm = %vm_id, error = %crate::error_chain(&e), "a scheduled backup was not queued");
                    }
                }
            }
            if !still.is_empty() {
                super::lock(&self.inner.busy).entry(id).or_insert(still);
            }
        }
        self.notify();
        Ok(())
    }

    async fn schedule_vms(&self, owner: Option<crate::id::UserId>) -> Result<Vec<Vm>> {
        let mut vms = Vec::new();
        let mut page = PageRequest::first(crate::page::MAX_LIMIT);
        loop {
            let filter = crate::store::VmFilter { owner_id: owner, ..Default::default() };
            let found = self.inner.store.list_vms(&filter, &page).await?;
            vms.extend(found.items);
            match found.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(vms),
            }
        }
    }

    async fn queue_scheduled_backup(&self, schedule: &BackupSchedule, vm: &Vm) -> Result<Task> {
        let now = self.now();
        let mut backup = Backup::new(vm.id, schedule.target_id, schedule.mode, now);
        backup.owner_id = vm.owner_id;
        backup.schedule_id = Some(schedule.id);
        let mut task =
            Task::new(TaskKind::BackupVm, Some(vm.id), TaskParams::Backup { backup_id: backup.id }, now);
        task.actor_id = schedule.owner_id;
        backup.task_id = Some(task.id);
        self.inner.store.enqueue_backup_task(&backup, &task).await?;
        Ok(task)
    }

    /// Applies the retention of `backup`'s schedule to the backups it made of the same VM,
    /// removing the pruned ones from the target. Runs inside the backup's task, which holds
    /// the VM, so no other backup of it is being written.
    pub(super) async fn prune_after(&self, backup: &Backup) -> Result<()> {
        let Some(schedule_id) = backup.schedule_id else { return Ok(()) };
        let schedule = match self.inner.store.get_schedule(schedule_id).await {
            Ok(s) => s,
            Err(Error::ScheduleNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let made = self.backups_of(backup.vm_id, Some(schedule_id)).await?;
        for id in crate::backup::prune(&made, &schedule.retention) {
            if let Some(b) = made.iter().find(|b| b.id == id) {
                // Deleting first: should the removal stop half-way, the backup shows it and
                // a delete finishes it.
                let deleting = Backup { state: BackupState::Deleting, ..b.clone() };
                self.inner.store.update_backup(&deleting, None).await?;
                self.remove_backup(&deleting).await?;
            }
        }
        Ok(())
    }

    /// Every backup of `vm` (made by `schedule`, if given).
    pub(super) async fn backups_of(&self, vm: VmId, schedule: Option<ScheduleId>) -> Result<Vec<Backup>> {
        let filter = crate::backup::BackupFilter { vm_id: Some(vm), ..Default::default() };
        let mut out = Vec::new();
        let mut page = PageRequest::first(crate::page::MAX_LIMIT);
        loop {
            let found = self.inner.store.list_backups(&filter, &page).await?;
            out.extend(found.items.into_iter().filter(|b| {
                schedule.is_none_or(|s| b.schedule_id == Some(s)) && b.state != BackupState::Deleting
            }));
            match found.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(out),
            }
        }
    }
}
