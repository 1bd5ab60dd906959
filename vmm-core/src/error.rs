//! The one error type of vmm-core. Variants are categories that carry typed ids; adapters
//! map each category to one HTTP status or one Python exception.

use std::net::IpAddr;

use crate::id::{BackupId, NodeId, PoolId, ScheduleId, TaskId, VmId};
use crate::placement::Rejection;
use crate::vm::{VmAction, VmState};

/// A result with the vmm-core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The boxed source of a backend error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in vmm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No VM with this id.
    #[error("VM {id} not found")]
    VmNotFound {
        /// The VM asked for.
        id: VmId,
    },
    /// No node with this id.
    #[error("Node {id} not found")]
    NodeNotFound {
        /// The node asked for.
        id: NodeId,
    },
    /// No IP pool with this id.
    #[error("IP pool {id} not found")]
    PoolNotFound {
        /// The pool asked for.
        id: PoolId,
    },
    /// No lease of this address in this pool.
    #[error("Address {address} is not leased in pool {pool}")]
    LeaseNotFound {
        /// The pool.
        pool: PoolId,
        /// The address asked for.
        address: IpAddr,
    },
    /// No task with this id.
    #[error("Task {id} not found")]
    TaskNotFound {
        /// The task asked for.
        id: TaskId,
    },
    /// No backup with this id.
    #[error("Backup {id} not found")]
    BackupNotFound {
        /// The backup asked for.
        id: BackupId,
    },
    /// No backup schedule with this id.
    #[error("Backup schedule {id} not found")]
    ScheduleNotFound {
        /// The schedule asked for.
        id: ScheduleId,
    },
    /// The VM already has a task queued or running; one at a time.
    #[error("VM {vm} already has an active task {task}")]
    ActiveTask {
        /// The VM.
        vm: VmId,
        /// Its active task.
        task: TaskId,
    },
    /// The action is not allowed in the VM's current state.
    #[error("Cannot {action} VM {id} while it is {state}")]
    InvalidState {
        /// The VM.
        id: VmId,
        /// Its state.
        state: VmState,
        /// What was asked.
        action: VmAction,
    },
    /// The request conflicts with what exists (a duplicate name, a pool still in use…).
    #[error("Conflict: {reason}")]
    Conflict {
        /// What conflicts, in a sentence.
        reason: String,
    },
    /// The address is already leased in this pool.
    #[error("Address {address} is already leased in pool {pool}")]
    AddressInUse {
        /// The pool.
        pool: PoolId,
        /// The address.
        address: IpAddr,
    },
    /// The pool has no free address left.
    #[error("IP pool {pool} has no free address")]
    PoolExhausted {
        /// The pool.
        pool: PoolId,
    },
    /// No node can take the VM; every node's reason is listed.
    #[error("No node can take the VM ({} rejected)", rejections.len())]
    NoCapacity {
        /// Why each node was rejected.
        rejections: Vec<Rejection>,
    },
    /// A value in the request is invalid.
    #[error("Invalid {field}: {reason}")]
    Invalid {
        /// The offending field, as the user named it.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The backend does not implement this operation.
    #[error("{backend} does not support {operation}")]
    Unsupported {
        /// The backend (for example `test:///default`).
        backend: String,
        /// The operation.
        operation: String,
    },
    /// The backend cannot be reached now; retrying later may succeed.
    #[error("{backend} is unavailable: {reason}")]
    Unavailable {
        /// The backend.
        backend: String,
        /// Why, in a few words.
        reason: String,
    },
    /// A wait ran out of time.
    #[error("Timed out after {seconds:.1}s")]
    Timeout {
        /// How long was waited.
        seconds: f64,
    },
    /// A task's lease was lost to another worker (it expired).
    #[error("Lease on task {task} was lost")]
    LeaseLost {
        /// The task.
        task: TaskId,
    },
    /// A backend failed.
    #[error("{backend} failed")]
    Backend {
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// An [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// An [`Error::Conflict`].
    pub fn conflict(reason: impl Into<String>) -> Self {
        Self::Conflict { reason: reason.into() }
    }

    /// An [`Error::Unsupported`].
    pub fn unsupported(backend: impl Into<String>, operation: impl Into<String>) -> Self {
        Self::Unsupported { backend: backend.into(), operation: operation.into() }
    }

    /// An [`Error::Backend`] wrapping `source`.
    pub fn backend(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend { backend: backend.into(), source: source.into() }
    }

    /// Whether the same call may succeed if tried again later (the task engine retries these).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }

    /// The error's category as a stable code, the same over HTTP (`code` of a problem),
    /// in Python (the exception class) and in a failed task's `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::VmNotFound { .. } => "vm_not_found",
            Self::NodeNotFound { .. } => "node_not_found",
            Self::PoolNotFound { .. } => "pool_not_found",
            Self::LeaseNotFound { .. } => "lease_not_found",
            Self::TaskNotFound { .. } => "task_not_found",
            Self::BackupNotFound { .. } => "backup_not_found",
            Self::ScheduleNotFound { .. } => "schedule_not_found",
            Self::ActiveTask { .. } => "active_task",
            Self::InvalidState { .. } => "invalid_state",
            Self::Conflict { .. } => "conflict",
            Self::AddressInUse { .. } => "address_in_use",
            Self::PoolExhausted { .. } => "pool_exhausted",
            Self::NoCapacity { .. } => "no_capacity",
            Self::Invalid { .. } => "invalid",
            Self::Unsupported { .. } => "unsupported",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::LeaseLost { .. } | Self::Backend { .. } => "internal",
        }
    }

    /// Whether this error says that something asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::VmNotFound { .. }
                | Self::NodeNotFound { .. }
                | Self::PoolNotFound { .. }
                | Self::LeaseNotFound { .. }
                | Self::TaskNotFound { .. }
                | Self::BackupNotFound { .. }
                | Self::ScheduleNotFound { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_short_and_name_the_ids() {
        let vm = VmId::new();
        let task = TaskId::new();
        let e = Error::ActiveTask { vm, task };
        assert_eq!(e.to_string(), format!("VM {vm} already has an active task {task}"));
        let e = Error::InvalidState { id: vm, state: VmState::Stopped, action: VmAction::Suspend };
        assert_eq!(e.to_string(), format!("Cannot suspend VM {vm} while it is stopped"));
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(Error::Unavailable { backend: "qemu:///system".into(), reason: "down".into() }.is_retryable());
        assert!(!Error::invalid("name", "empty").is_retryable());
        assert!(Error::VmNotFound { id: VmId::new() }.is_not_found());
    }
}
