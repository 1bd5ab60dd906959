//! Tasks: every mutation of a VM is a persisted task (queued → running → succeeded | failed |
//! cancelled) with progress, a step log, the error, attempts, and the lease a worker holds
//! while it runs it.
//!
//! A lease carries a *fence*: a number the store raises at every claim. A run may save the
//! task or renew its lease only while the fence it got is still the task's, so a run whose
//! lease lapsed and whose task was claimed again (by another process or by the same one)
//! can change nothing. Lease expiry is decided by the store's clock, never by a worker's.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{BackupId, ImageId, NodeId, TaskId, UserId, VmId};
use crate::placement::Demand;
use crate::vm::{PowerAction, VmAction, VmPatch};

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TaskKind {
    /// Create a VM: disk, define, start.
    CreateVm,
    /// Delete a VM with its disk and leases.
    DeleteVm,
    /// Start a VM.
    StartVm,
    /// Power a VM off at once.
    StopVm,
    /// Shut a VM down gracefully.
    ShutdownVm,
    /// Reboot a VM.
    RebootVm,
    /// Suspend a VM.
    SuspendVm,
    /// Resume a VM.
    ResumeVm,
    /// Rename and/or resize a VM.
    UpdateVm,
    /// Rewrite a VM's disk from an image, with a new seed.
    ReinstallVm,
    /// Make a VM from a stopped VM's disk.
    CloneVm,
    /// Give a VM another address, with a NIC.
    AddAddress,
    /// Take an address from a VM, with its NIC.
    RemoveAddress,
    /// Fetch an image's data from its URL and check it.
    ImportImage,
    /// Compare every node with the database; report drift and orphans, and remove the
    /// orphans unless it is a dry run.
    Reconcile,
    /// Copy a VM's disk to a backup target.
    BackupVm,
    /// Make a new VM from a backup.
    RestoreBackup,
    /// Re-read a backup and check every chunk against its manifest.
    VerifyBackup,
    /// Remove a backup from its target.
    DeleteBackup,
    /// Take a snapshot of a VM.
    SnapshotVm,
    /// Put a VM back as it was at a snapshot.
    RevertSnapshot,
    /// Delete a snapshot of a VM.
    DeleteSnapshot,
    /// Move a VM to another node: live when it runs, offline when it is stopped.
    MigrateVm,
    /// Put a node in maintenance, moving its VMs away if asked.
    MaintainNode,
    /// End a node's maintenance, moving its VMs back if asked.
    EndMaintenance,
    /// Start a VM of a dead (fenced) node on another node, from its disk on shared storage.
    RecoverVm,
}

impl TaskKind {
    /// The task kind that performs `action`.
    pub fn for_action(action: VmAction) -> Self {
        match action {
            VmAction::Resize | VmAction::Rename => Self::UpdateVm,
            VmAction::Delete => Self::DeleteVm,
            VmAction::Reinstall => Self::ReinstallVm,
            VmAction::ChangeAddresses => Self::AddAddress,
            VmAction::Clone => Self::CloneVm,
            VmAction::Migrate => Self::MigrateVm,
            power => {
                Self::for_power(PowerAction::try_from(power).expect("every other action is a power action"))
            }
        }
    }

    /// The task kind that performs a power action.
    pub fn for_power(action: PowerAction) -> Self {
        match action {
            PowerAction::Start => Self::StartVm,
            PowerAction::Stop => Self::StopVm,
            PowerAction::Shutdown => Self::ShutdownVm,
            PowerAction::Reboot => Self::RebootVm,
            PowerAction::Suspend => Self::SuspendVm,
            PowerAction::Resume => Self::ResumeVm,
        }
    }

    /// The power action this kind performs, if it is one.
    pub fn power_action(self) -> Option<PowerAction> {
        match self {
            Self::StartVm => Some(PowerAction::Start),
            Self::StopVm => Some(PowerAction::Stop),
            Self::ShutdownVm => Some(PowerAction::Shutdown),
            Self::RebootVm => Some(PowerAction::Reboot),
            Self::SuspendVm => Some(PowerAction::Suspend),
            Self::ResumeVm => Some(PowerAction::Resume),
            Self::CreateVm
            | Self::DeleteVm
            | Self::UpdateVm
            | Self::ReinstallVm
            | Self::CloneVm
            | Self::AddAddress
            | Self::RemoveAddress
            | Self::ImportImage
            | Self::Reconcile
            | Self::BackupVm
            | Self::RestoreBackup
            | Self::VerifyBackup
            | Self::DeleteBackup
            | Self::SnapshotVm
            | Self::RevertSnapshot
            | Self::DeleteSnapshot
            | Self::MigrateVm
            | Self::MaintainNode
            | Self::EndMaintenance
            | Self::RecoverVm => None,
        }
    }

    /// The kind's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// How long one attempt of a task of this kind may run before it is stopped, undone
    /// where it can be, and failed (unless [`TaskDeadlines`] says otherwise).
    pub fn default_deadline(self) -> Duration {
        let minutes = match self {
            Self::CreateVm | Self::ReinstallVm | Self::CloneVm => 30,
            Self::ImportImage | Self::BackupVm | Self::RestoreBackup | Self::VerifyBackup => 120,
            Self::MigrateVm => 60,
            Self::RecoverVm => 10,
            // One migration after another.
            Self::MaintainNode | Self::EndMaintenance => 24 * 60,
            Self::DeleteBackup | Self::SnapshotVm | Self::RevertSnapshot | Self::DeleteSnapshot => 30,
            Self::DeleteVm | Self::UpdateVm | Self::AddAddress | Self::RemoveAddress | Self::Reconcile => 10,
            // The guest's own shutdown timeout comes on top (see `TaskDeadlines::of`).
            Self::StartVm | Self::StopVm | Self::RebootVm | Self::SuspendVm | Self::ResumeVm => 5,
            Self::ShutdownVm => 5,
        };
        Duration::from_secs(minutes * 60)
    }
}

/// Overall deadlines per task kind: the defaults of [`TaskKind::default_deadline`], with
/// the operator's overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDeadlines {
    /// Overrides by kind.
    #[serde(default)]
    pub overrides: BTreeMap<TaskKind, Duration>,
}

impl TaskDeadlines {
    /// The deadline of `kind`; a shutdown also gets the guest's `shutdown_timeout`.
    pub fn of(&self, kind: TaskKind, shutdown_timeout: Duration) -> Duration {
        let base = self.overrides.get(&kind).copied().unwrap_or_else(|| kind.default_deadline());
        if kind == TaskKind::ShutdownVm && !self.overrides.contains_key(&kind) {
            base + shutdown_timeout
        } else {
            base
        }
    }

    /// The same deadlines with `kind` set to `deadline`.
    pub fn with(mut self, kind: TaskKind, deadline: Duration) -> Self {
        self.overrides.insert(kind, deadline);
        self
    }

    /// Every kind set to `deadline` (for tests).
    pub fn all(deadline: Duration) -> Self {
        use strum::IntoEnumIterator;
        Self { overrides: TaskKind::iter().map(|k| (k, deadline)).collect() }
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it under a lease.
    Running,
    /// Done.
    Succeeded,
    /// Ended with an error; earlier steps were undone.
    Failed,
    /// Cancelled before it finished; earlier steps were undone.
    Cancelled,
}

impl TaskState {
    /// Queued or running.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }

    /// The state's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One line of a task's step log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskStep {
    /// When.
    pub at: DateTime<Utc>,
    /// What happened.
    pub message: String,
}

/// The lease a worker holds on a running task. Once it expires (by the store's clock),
/// another worker may recover the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskLease {
    /// The worker.
    pub owner: String,
    /// When the lease ends unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Raised at every claim; only the run holding the current fence may save the task.
    #[serde(default)]
    pub fence: u64,
}

/// What a task needs to know beyond its kind and VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskParams {
    /// Nothing.
    #[default]
    None,
    /// Create: whether to start the VM once defined, and the image it is installed from.
    Create {
        /// Start after define.
        start: bool,
        /// The image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_id: Option<ImageId>,
    },
    /// Reinstall from an image (the guest settings are kept with the VM).
    Reinstall {
        /// The image.
        image_id: ImageId,
    },
    /// Clone: the VM whose disk is copied.
    Clone {
        /// The source VM.
        source: VmId,
        /// Start the new VM once made.
        #[serde(default)]
        start: bool,
    },
    /// A new address (already leased) and its NIC.
    AddAddress {
        /// The address.
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        address: IpAddr,
    },
    /// An address to take away, with its NIC.
    RemoveAddress {
        /// The address.
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        address: IpAddr,
    },
    /// Import an image from its URL.
    ImportImage {
        /// The image.
        image_id: ImageId,
    },
    /// Reconcile: whether to leave the orphans found in place.
    Reconcile {
        /// Report only.
        dry_run: bool,
    },
    /// A backup to take, verify or delete.
    Backup {
        /// The backup.
        backup_id: BackupId,
    },
    /// A restore: the backup the new VM (the task's) is made from.
    Restore {
        /// The backup.
        backup_id: BackupId,
        /// Start the VM once restored.
        #[serde(default)]
        start: bool,
        /// Into the backup's own VM (its disk replaced), not a new one.
        #[serde(default)]
        in_place: bool,
    },
    /// A snapshot to take, revert to or delete.
    Snapshot {
        /// Its name.
        name: String,
        /// The note given when it is taken.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// A migration: where from, where to, and how.
    Migrate {
        /// The node the VM leaves.
        from: NodeId,
        /// The node it moves to (chosen by placement when the task was queued).
        to: NodeId,
        /// Live (the VM keeps running) or offline (it stays stopped).
        live: bool,
        /// Both nodes see the same disk (`storage_shared` when the task was queued): no
        /// disk moves, none is removed.
        #[serde(default)]
        shared: bool,
    },
    /// Maintenance of a node: what to do with its VMs.
    Maintenance {
        /// The node.
        node_id: NodeId,
        /// Move its VMs away (entering) or back (ending).
        #[serde(default)]
        move_vms: bool,
        /// Stop the VMs that cannot move.
        #[serde(default)]
        stop_unmovable: bool,
    },
    /// Update: the patch to apply.
    Update {
        /// The change.
        patch: VmPatch,
        /// The VM's size when the update was queued, so that a resumed run knows what it
        /// started from and can give back what it reserved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Demand>,
    },
}

/// A persisted unit of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    /// The id.
    pub id: TaskId,
    /// What it does.
    pub kind: TaskKind,
    /// Where it is.
    pub state: TaskState,
    /// The VM it works on.
    pub vm_id: Option<VmId>,
    /// 0 to 100.
    pub progress: u8,
    /// What has happened so far.
    pub steps: Vec<TaskStep>,
    /// Why it failed.
    pub error: Option<String>,
    /// The failure's category ([`Error::code`](crate::Error::code)): `unsupported`,
    /// `unavailable`, `no_capacity`…
    #[serde(default)]
    pub error_code: Option<String>,
    /// How many times a worker has claimed it.
    pub attempts: u32,
    /// The worker's lease while it runs.
    pub lease: Option<TaskLease>,
    /// A user asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// Its parameters.
    pub params: TaskParams,
    /// Steps done that must not be done again when the task is resumed after a crash
    /// (such as `reboot_sent`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker first took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Whose it is: the owner of its VM when it was queued (so that it stays theirs after
    /// the VM is gone). Set by the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
    /// Who asked for it, when a user did (its events name them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<UserId>,
    /// What it found, for tasks that report (a reconcile's report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<serde_json::Value>,
}

impl Task {
    /// A queued task.
    pub fn new(kind: TaskKind, vm_id: Option<VmId>, params: TaskParams, now: DateTime<Utc>) -> Self {
        Self {
            id: TaskId::new(),
            kind,
            state: TaskState::Queued,
            vm_id,
            progress: 0,
            steps: Vec::new(),
            error: None,
            error_code: None,
            attempts: 0,
            lease: None,
            cancel_requested: false,
            params,
            checkpoints: Vec::new(),
            created_at: now,
            started_at: None,
            finished_at: None,
            owner_id: None,
            actor_id: None,
            result: None,
        }
    }

    /// Adds a line to the step log.
    pub fn log(&mut self, at: DateTime<Utc>, message: impl Into<String>) {
        self.steps.push(TaskStep { at, message: message.into() });
    }

    /// Whether a worker may claim it at `now` (the store's clock): queued, or running
    /// under an expired lease.
    pub fn is_claimable(&self, now: DateTime<Utc>) -> bool {
        match self.state {
            TaskState::Queued => true,
            TaskState::Running => self.lease.as_ref().is_none_or(|l| l.expires_at <= now),
            _ => false,
        }
    }

    /// Marks it claimed by `owner` until `until`, raising the fence; returns the new fence.
    pub fn claim(&mut self, owner: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
        let recovered = self.state == TaskState::Running;
        self.state = TaskState::Running;
        self.attempts += 1;
        // Claims are serialized per task by the store, so the attempt count is a fence that
        // only ever rises.
        let fence = u64::from(self.attempts);
        self.started_at.get_or_insert(now);
        self.lease = Some(TaskLease { owner: owner.to_owned(), expires_at: until, fence });
        let message = if recovered {
            format!("recovered by {owner} after its lease expired (attempt {})", self.attempts)
        } else {
            format!("claimed by {owner}")
        };
        self.log(now, message);
        fence
    }

    /// The fence of its current lease (0 when it has none).
    pub fn fence(&self) -> u64 {
        self.lease.as_ref().map_or(0, |l| l.fence)
    }

    /// Whether the run holding `fence` still holds a live lease at `now` (the store's clock).
    pub fn is_leased_with(&self, fence: u64, now: DateTime<Utc>) -> bool {
        self.state == TaskState::Running
            && self.lease.as_ref().is_some_and(|l| l.fence == fence && l.expires_at > now)
    }

    /// What a store keeps when a run saves `self` over `stored`: the run's progress, steps,
    /// state and error; the stored cancel request (a user may have asked meanwhile) and
    /// owner (the VM may have been given to another user meanwhile); the stored lease while
    /// the task runs, none once it has ended. The one rule of saving, shared by every store.
    pub fn saved_over(&self, stored: &Task) -> Task {
        let mut saved = self.clone();
        saved.cancel_requested |= stored.cancel_requested;
        saved.owner_id = stored.owner_id;
        saved.lease = if saved.state.is_active() { stored.lease.clone() } else { None };
        saved
    }

    /// Cancels the task: a queued one ends now, a running one is asked to stop at its next
    /// step boundary and undo what it did. A conflict for a task that has ended. The one
    /// rule of cancelling, shared by every store.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<()> {
        match self.state {
            TaskState::Queued => {
                self.state = TaskState::Cancelled;
                self.finished_at = Some(now);
                self.lease = None;
                self.log(now, "cancelled before it started");
            }
            TaskState::Running => {
                if !self.cancel_requested {
                    self.cancel_requested = true;
                    self.log(now, "cancel requested");
                }
            }
            state => return Err(Error::conflict(format!("task {} has already {state}", self.id))),
        }
        Ok(())
    }

    /// Whether `checkpoint` was reached by an earlier run.
    pub fn reached(&self, checkpoint: &str) -> bool {
        self.checkpoints.iter().any(|c| c == checkpoint)
    }

    /// The image the task installs from or imports, if any: such an image may not be
    /// deleted while the task is active.
    pub fn image_id(&self) -> Option<ImageId> {
        match &self.params {
            TaskParams::Create { image_id, .. } => *image_id,
            TaskParams::Reinstall { image_id } | TaskParams::ImportImage { image_id } => Some(*image_id),
            _ => None,
        }
    }

    /// The backup the task works on, if any.
    pub fn backup_id(&self) -> Option<BackupId> {
        match &self.params {
            TaskParams::Backup { backup_id } | TaskParams::Restore { backup_id, .. } => Some(*backup_id),
            _ => None,
        }
    }
}

/// Which tasks to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    /// Only tasks of this VM.
    pub vm_id: Option<VmId>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks of this kind.
    #[serde(default)]
    pub kind: Option<TaskKind>,
    /// Only this user's tasks (those of their VMs).
    #[serde(default)]
    pub owner_id: Option<UserId>,
}

impl TaskFilter {
    /// Whether `task` passes.
    pub fn matches(&self, task: &Task) -> bool {
        self.vm_id.is_none_or(|v| task.vm_id == Some(v))
            && self.state.is_none_or(|s| task.state == s)
            && self.kind.is_none_or(|k| task.kind == k)
            && self.owner_id.is_none_or(|o| task.owner_id == Some(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Span;

    #[test]
    fn claims_raise_the_fence_and_expired_leases_are_claimable() {
        let t0 = Utc::now();
        let mut task = Task::new(TaskKind::StartVm, Some(VmId::new()), TaskParams::None, t0);
        assert!(task.is_claimable(t0));
        let first = task.claim("w1", t0, t0 + Span::seconds(30));
        assert!(task.is_leased_with(first, t0 + Span::seconds(29)));
        assert!(!task.is_claimable(t0 + Span::seconds(29)));
        assert!(task.is_claimable(t0 + Span::seconds(30)));
        // The same worker claims it again: the first run's fence no longer holds.
        let second = task.claim("w1", t0 + Span::seconds(31), t0 + Span::seconds(61));
        assert!(second > first);
        assert!(!task.is_leased_with(first, t0 + Span::seconds(32)));
        assert!(task.is_leased_with(second, t0 + Span::seconds(32)));
        assert_eq!(task.attempts, 2);
        assert_eq!(task.started_at, Some(t0));
        assert!(task.steps[1].message.contains("recovered by w1"));
    }

    #[test]
    fn cancel_and_save_follow_one_rule() {
        let now = Utc::now();
        let mut queued = Task::new(TaskKind::StopVm, None, TaskParams::None, now);
        queued.cancel(now).unwrap();
        assert_eq!(queued.state, TaskState::Cancelled);
        assert!(queued.cancel(now).is_err(), "an ended task cannot be cancelled");
        let mut running = Task::new(TaskKind::StopVm, None, TaskParams::None, now);
        running.claim("w", now, now + Span::seconds(30));
        let run_copy = running.clone();
        running.cancel(now).unwrap();
        running.cancel(now).unwrap();
        assert_eq!(running.steps.iter().filter(|s| s.message == "cancel requested").count(), 1);
        let saved = run_copy.saved_over(&running);
        assert!(saved.cancel_requested, "a save never loses a cancel request");
        let mut ended = run_copy.clone();
        ended.state = TaskState::Succeeded;
        assert_eq!(ended.saved_over(&running).lease, None);
    }

    #[test]
    fn a_save_keeps_the_owner_the_store_has() {
        let now = Utc::now();
        let mut run = Task::new(TaskKind::StopVm, None, TaskParams::None, now);
        run.owner_id = Some(UserId::new());
        // The VM was given to someone else while the task ran.
        let stored = Task { owner_id: Some(UserId::new()), ..run.clone() };
        assert_eq!(run.saved_over(&stored).owner_id, stored.owner_id);
    }

    #[test]
    fn params_round_trip_and_old_ones_still_read() {
        let p = TaskParams::Update {
            patch: VmPatch { vcpus: Some(2), ..Default::default() },
            before: Some(Demand { vcpus: 1, memory_mib: 512, disk_gib: 10 }),
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<TaskParams>(&json).unwrap(), p);
        let old: TaskParams = serde_json::from_str(r#"{"type":"update","patch":{"vcpus":2}}"#).unwrap();
        assert!(matches!(old, TaskParams::Update { before: None, .. }));
    }

    #[test]
    fn deadlines_have_defaults_and_overrides() {
        let d = TaskDeadlines::default();
        let shutdown = Duration::from_secs(60);
        assert_eq!(d.of(TaskKind::ShutdownVm, shutdown), TaskKind::ShutdownVm.default_deadline() + shutdown);
        let d = d.with(TaskKind::CreateVm, Duration::from_secs(5));
        assert_eq!(d.of(TaskKind::CreateVm, shutdown), Duration::from_secs(5));
        assert_eq!("create_vm".parse::<TaskKind>().unwrap(), TaskKind::CreateVm);
    }
}
