//! Tasks: every mutation of a VM is a persisted task (queued → running → succeeded | failed |
//! cancelled) with progress, a step log, the error, attempts, and the lease a worker holds
//! while it runs it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{TaskId, VmId};
use crate::vm::{VmAction, VmPatch};

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
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
}

impl TaskKind {
    /// The task kind that performs `action`.
    pub fn for_action(action: VmAction) -> Self {
        match action {
            VmAction::Start => Self::StartVm,
            VmAction::Stop => Self::StopVm,
            VmAction::Shutdown => Self::ShutdownVm,
            VmAction::Reboot => Self::RebootVm,
            VmAction::Suspend => Self::SuspendVm,
            VmAction::Resume => Self::ResumeVm,
            VmAction::Resize | VmAction::Rename => Self::UpdateVm,
            VmAction::Delete => Self::DeleteVm,
        }
    }

    /// The kind's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateVm => "create_vm",
            Self::DeleteVm => "delete_vm",
            Self::StartVm => "start_vm",
            Self::StopVm => "stop_vm",
            Self::ShutdownVm => "shutdown_vm",
            Self::RebootVm => "reboot_vm",
            Self::SuspendVm => "suspend_vm",
            Self::ResumeVm => "resume_vm",
            Self::UpdateVm => "update_vm",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
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
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// The lease a worker holds on a running task. Once it expires, another worker may recover
/// the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskLease {
    /// The worker.
    pub owner: String,
    /// When the lease ends unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// What a task needs to know beyond its kind and VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskParams {
    /// Nothing.
    #[default]
    None,
    /// Create: whether to start the VM once defined.
    Create {
        /// Start after define.
        start: bool,
    },
    /// Update: the patch to apply.
    Update {
        /// The change.
        patch: VmPatch,
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
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker first took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
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
            created_at: now,
            started_at: None,
            finished_at: None,
        }
    }

    /// Adds a line to the step log.
    pub fn log(&mut self, at: DateTime<Utc>, message: impl Into<String>) {
        self.steps.push(TaskStep { at, message: message.into() });
    }

    /// Whether a worker may claim it at `now`: queued, or running under an expired lease.
    pub fn is_claimable(&self, now: DateTime<Utc>) -> bool {
        match self.state {
            TaskState::Queued => true,
            TaskState::Running => self.lease.as_ref().is_none_or(|l| l.expires_at <= now),
            _ => false,
        }
    }

    /// Marks it claimed by `owner` until `until`.
    pub fn claim(&mut self, owner: &str, now: DateTime<Utc>, until: DateTime<Utc>) {
        let recovered = self.state == TaskState::Running;
        self.state = TaskState::Running;
        self.attempts += 1;
        self.started_at.get_or_insert(now);
        self.lease = Some(TaskLease { owner: owner.to_owned(), expires_at: until });
        let message = if recovered {
            format!("recovered by {owner} after its lease expired (attempt {})", self.attempts)
        } else {
            format!("claimed by {owner}")
        };
        self.log(now, message);
    }

    /// Whether `owner` holds a live lease on it at `now`.
    pub fn is_leased_by(&self, owner: &str, now: DateTime<Utc>) -> bool {
        self.state == TaskState::Running
            && self.lease.as_ref().is_some_and(|l| l.owner == owner && l.expires_at > now)
    }
}

/// Which tasks to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    /// Only tasks of this VM.
    pub vm_id: Option<VmId>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
}

impl TaskFilter {
    /// Whether `task` passes.
    pub fn matches(&self, task: &Task) -> bool {
        self.vm_id.is_none_or(|v| task.vm_id == Some(v)) && self.state.is_none_or(|s| task.state == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn claims_and_expired_leases() {
        let t0 = Utc::now();
        let mut task = Task::new(TaskKind::StartVm, Some(VmId::new()), TaskParams::None, t0);
        assert!(task.is_claimable(t0));
        task.claim("w1", t0, t0 + Duration::seconds(30));
        assert!(task.is_leased_by("w1", t0 + Duration::seconds(29)));
        assert!(!task.is_claimable(t0 + Duration::seconds(29)));
        assert!(task.is_claimable(t0 + Duration::seconds(30)));
        task.claim("w2", t0 + Duration::seconds(31), t0 + Duration::seconds(61));
        assert_eq!(task.attempts, 2);
        assert_eq!(task.started_at, Some(t0));
        assert!(task.steps[1].message.contains("recovered by w2"));
    }

    #[test]
    fn params_round_trip() {
        let p = TaskParams::Update { patch: VmPatch { vcpus: Some(2), ..Default::default() } };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"type":"update","patch":{"vcpus":2}}"#);
        assert_eq!(serde_json::from_str::<TaskParams>(&json).unwrap(), p);
    }
}
