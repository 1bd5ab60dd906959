//! The one error type of vmm-core. Variants are categories that carry typed ids; every
//! adapter maps them through [`Error::kind`] (HTTP status, CLI exit code), [`Error::code`]
//! (the stable code and the Python exception) and [`Error::ids`] (the ids involved).

use std::net::IpAddr;

use crate::id::{
    BackupId, BackupTargetId, ImageId, NetworkId, NodeId, PlacementGroupId, PoolId, RecipeId, ScheduleId,
    SshKeyId, TaskId, TokenId, UserId, VmId, WebhookId,
};
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
    /// No backup target with this id.
    #[error("Backup target {id} not found")]
    BackupTargetNotFound {
        /// The target asked for.
        id: BackupTargetId,
    },
    /// No snapshot of this name.
    #[error("VM {vm} has no snapshot named {name}")]
    SnapshotNotFound {
        /// The VM.
        vm: VmId,
        /// The name asked for.
        name: String,
    },
    /// No backup schedule with this id.
    #[error("Backup schedule {id} not found")]
    ScheduleNotFound {
        /// The schedule asked for.
        id: ScheduleId,
    },
    /// No image with this id.
    #[error("Image {id} not found")]
    ImageNotFound {
        /// The image asked for.
        id: ImageId,
    },
    /// No recipe with this id.
    #[error("Recipe {id} not found")]
    RecipeNotFound {
        /// The recipe asked for.
        id: RecipeId,
    },
    /// No placement group with this id.
    #[error("Placement group {id} not found")]
    PlacementGroupNotFound {
        /// The group asked for.
        id: PlacementGroupId,
    },
    /// No network with this id.
    #[error("Network {id} not found")]
    NetworkNotFound {
        /// The network asked for.
        id: NetworkId,
    },
    /// No user with this id (or one the caller may not see).
    #[error("User {id} not found")]
    UserNotFound {
        /// The user asked for.
        id: UserId,
    },
    /// No token with this id (or one the caller may not see).
    #[error("Token {id} not found")]
    TokenNotFound {
        /// The token asked for.
        id: TokenId,
    },
    /// The change would take the VM's owner past a limit of their quota.
    #[error("Quota exceeded: {limit} is {max}, this needs {wanted}")]
    QuotaExceeded {
        /// The limit (`max_vcpus`, …).
        limit: &'static str,
        /// Its value.
        max: u64,
        /// What the change would bring the user to.
        wanted: u64,
    },
    /// No webhook with this id (or one the caller may not see).
    #[error("Webhook {id} not found")]
    WebhookNotFound {
        /// The webhook asked for.
        id: WebhookId,
    },
    /// No SSH key with this id (or one the caller may not see).
    #[error("SSH key {id} not found")]
    SshKeyNotFound {
        /// The key asked for.
        id: SshKeyId,
    },
    /// The caller sees the object but their role may not do this.
    #[error("Forbidden: {reason}")]
    Forbidden {
        /// What was refused, in a sentence.
        reason: String,
    },
    /// A sign-in or a token did not check out. Says nothing of which part was wrong.
    #[error("Not authenticated: {reason}")]
    Unauthenticated {
        /// In a few words, the same for every cause of the same kind.
        reason: &'static str,
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
    /// No node can take the VM; every node's reasons are listed.
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
        /// Why, in a few words of vmm's own (never a backend's message text).
        reason: String,
    },
    /// A wait or a deadline ran out.
    #[error("Timed out after {seconds:.1}s")]
    Timeout {
        /// How long was waited.
        seconds: f64,
    },
    /// A task's lease was lost to another run of it (it expired and was claimed again).
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

/// The category of an [`Error`]: what a caller can do about it. HTTP statuses, CLI exit
/// codes and the base classes of Python exceptions follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// What was asked for does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409).
    Conflict,
    /// The caller's role may not do this (HTTP 403).
    Forbidden,
    /// No valid credentials (HTTP 401).
    Unauthenticated,
    /// The request is invalid (HTTP 422).
    Invalid,
    /// The backend cannot do this (HTTP 501).
    Unsupported,
    /// A backend cannot be reached now; try again later (HTTP 503).
    Unavailable,
    /// A deadline ran out (HTTP 503).
    Timeout,
    /// vmm or a backend failed (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status of the kind (the one mapping: the server answers with it, clients
    /// read it back with [`from_http_status`](Self::from_http_status)).
    ///
    /// ```
    /// use vmm_core::ErrorKind;
    /// assert_eq!(ErrorKind::NotFound.http_status(), 404);
    /// assert_eq!(ErrorKind::from_http_status(404), ErrorKind::NotFound);
    /// ```
    pub fn http_status(self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Forbidden => 403,
            Self::Unauthenticated => 401,
            Self::Invalid => 422,
            Self::Unsupported => 501,
            Self::Unavailable | Self::Timeout => 503,
            Self::Internal => 500,
        }
    }

    /// The kind an HTTP error status stands for (503 is [`Unavailable`](Self::Unavailable);
    /// a problem's `code` of `timeout` says [`Timeout`](Self::Timeout)). Statuses the API
    /// does not give for a kind map to the nearest: other 4xx to `Invalid` (429 and 408 to
    /// `Unavailable`), other 5xx to `Internal`.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            404 | 410 => Self::NotFound,
            409 | 412 => Self::Conflict,
            403 => Self::Forbidden,
            401 => Self::Unauthenticated,
            501 => Self::Unsupported,
            408 | 429 | 502 | 503 => Self::Unavailable,
            504 => Self::Timeout,
            400..=499 => Self::Invalid,
            _ => Self::Internal,
        }
    }

    /// The exit code of the `vmm` command when a call fails with this kind (0 is success,
    /// 1 an error of the command itself, 2 bad usage).
    ///
    /// | kind | exit code |
    /// |---|---|
    /// | `internal` | 3 |
    /// | `not_found` | 4 |
    /// | `conflict` | 5 |
    /// | `forbidden` | 6 |
    /// | `unauthenticated` | 7 |
    /// | `invalid` | 8 |
    /// | `unsupported` | 9 |
    /// | `unavailable` | 10 |
    /// | `timeout` | 11 |
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Internal => 3,
            Self::NotFound => 4,
            Self::Conflict => 5,
            Self::Forbidden => 6,
            Self::Unauthenticated => 7,
            Self::Invalid => 8,
            Self::Unsupported => 9,
            Self::Unavailable => 10,
            Self::Timeout => 11,
        }
    }
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

    /// An [`Error::Unavailable`].
    pub fn unavailable(backend: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Unavailable { backend: backend.into(), reason: reason.into() }
    }

    /// An [`Error::Backend`] wrapping `source`.
    pub fn backend(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend { backend: backend.into(), source: source.into() }
    }

    /// An [`Error::Timeout`] after `waited`.
    pub fn timeout(waited: std::time::Duration) -> Self {
        Self::Timeout { seconds: waited.as_secs_f64() }
    }

    /// Whether the same call may succeed if tried again later (the task engine retries these).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// The error's category.
    ///
    /// ```
    /// use vmm_core::{Error, ErrorKind, VmId};
    /// assert_eq!(Error::VmNotFound { id: VmId::new() }.kind(), ErrorKind::NotFound);
    /// assert_eq!(Error::invalid("name", "empty").kind(), ErrorKind::Invalid);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::VmNotFound { .. }
            | Self::NodeNotFound { .. }
            | Self::PoolNotFound { .. }
            | Self::LeaseNotFound { .. }
            | Self::TaskNotFound { .. }
            | Self::BackupNotFound { .. }
            | Self::BackupTargetNotFound { .. }
            | Self::SnapshotNotFound { .. }
            | Self::ScheduleNotFound { .. }
            | Self::ImageNotFound { .. }
            | Self::RecipeNotFound { .. }
            | Self::PlacementGroupNotFound { .. }
            | Self::NetworkNotFound { .. }
            | Self::UserNotFound { .. }
            | Self::TokenNotFound { .. }
            | Self::SshKeyNotFound { .. }
            | Self::WebhookNotFound { .. } => ErrorKind::NotFound,
            Self::Forbidden { .. } => ErrorKind::Forbidden,
            Self::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            Self::ActiveTask { .. }
            | Self::InvalidState { .. }
            | Self::Conflict { .. }
            | Self::AddressInUse { .. }
            | Self::PoolExhausted { .. }
            | Self::NoCapacity { .. }
            | Self::QuotaExceeded { .. } => ErrorKind::Conflict,
            Self::Invalid { .. } => ErrorKind::Invalid,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::LeaseLost { .. } | Self::Backend { .. } => ErrorKind::Internal,
        }
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
            Self::BackupTargetNotFound { .. } => "backup_target_not_found",
            Self::SnapshotNotFound { .. } => "snapshot_not_found",
            Self::ScheduleNotFound { .. } => "schedule_not_found",
            Self::ImageNotFound { .. } => "image_not_found",
            Self::RecipeNotFound { .. } => "recipe_not_found",
            Self::PlacementGroupNotFound { .. } => "placement_group_not_found",
            Self::NetworkNotFound { .. } => "network_not_found",
            Self::UserNotFound { .. } => "user_not_found",
            Self::TokenNotFound { .. } => "token_not_found",
            Self::SshKeyNotFound { .. } => "ssh_key_not_found",
            Self::WebhookNotFound { .. } => "webhook_not_found",
            Self::Forbidden { .. } => "forbidden",
            Self::Unauthenticated { .. } => "unauthorized",
            Self::ActiveTask { .. } => "active_task",
            Self::InvalidState { .. } => "invalid_state",
            Self::Conflict { .. } => "conflict",
            Self::AddressInUse { .. } => "address_in_use",
            Self::PoolExhausted { .. } => "pool_exhausted",
            Self::NoCapacity { .. } => "no_capacity",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::Invalid { .. } => "invalid",
            Self::Unsupported { .. } => "unsupported",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::LeaseLost { .. } | Self::Backend { .. } => "internal",
        }
    }

    /// The ids the error names, as `(key, value)` pairs: `vm_id`, `task_id`, `pool_id`,
    /// `address`… The same keys over HTTP (`ids` of a problem) and in Python (`err.ids`).
    ///
    /// ```
    /// use vmm_core::{Error, TaskId, VmId};
    /// let (vm, task) = (VmId::new(), TaskId::new());
    /// let ids = Error::ActiveTask { vm, task }.ids();
    /// assert_eq!(ids, [("vm_id", vm.to_string()), ("task_id", task.to_string())]);
    /// ```
    pub fn ids(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::VmNotFound { id } | Self::InvalidState { id, .. } => vec![("vm_id", id.to_string())],
            Self::NodeNotFound { id } => vec![("node_id", id.to_string())],
            Self::PoolNotFound { id } => vec![("pool_id", id.to_string())],
            Self::PoolExhausted { pool } => vec![("pool_id", pool.to_string())],
            Self::TaskNotFound { id } | Self::LeaseLost { task: id } => vec![("task_id", id.to_string())],
            Self::BackupNotFound { id } => vec![("backup_id", id.to_string())],
            Self::BackupTargetNotFound { id } => vec![("target_id", id.to_string())],
            Self::SnapshotNotFound { vm, .. } => vec![("vm_id", vm.to_string())],
            Self::ScheduleNotFound { id } => vec![("schedule_id", id.to_string())],
            Self::ImageNotFound { id } => vec![("image_id", id.to_string())],
            Self::RecipeNotFound { id } => vec![("recipe_id", id.to_string())],
            Self::PlacementGroupNotFound { id } => vec![("placement_group_id", id.to_string())],
            Self::NetworkNotFound { id } => vec![("network_id", id.to_string())],
            Self::UserNotFound { id } => vec![("user_id", id.to_string())],
            Self::TokenNotFound { id } => vec![("token_id", id.to_string())],
            Self::SshKeyNotFound { id } => vec![("ssh_key_id", id.to_string())],
            Self::WebhookNotFound { id } => vec![("webhook_id", id.to_string())],
            Self::LeaseNotFound { pool, address } | Self::AddressInUse { pool, address } => {
                vec![("pool_id", pool.to_string()), ("address", address.to_string())]
            }
            Self::ActiveTask { vm, task } => vec![("vm_id", vm.to_string()), ("task_id", task.to_string())],
            _ => Vec::new(),
        }
    }

    /// The request field at fault, for [`Error::Invalid`] and [`Error::AddressInUse`].
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::AddressInUse { .. } => Some("address"),
            Self::QuotaExceeded { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// Whether this error says that something asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// The message shown to users: the error's own text, without its sources. A backend
    /// error's source (a library's message, which may name hosts, paths or internals) is
    /// for the log only: see [`error_chain`].
    pub fn public_message(&self) -> String {
        self.to_string()
    }
}

/// An error with its sources, joined by `: `, for logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
        assert_eq!(e.ids(), [("vm_id", vm.to_string())]);
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(Error::unavailable("qemu:///system", "down").is_retryable());
        assert!(Error::timeout(std::time::Duration::from_secs(1)).is_retryable());
        assert!(!Error::invalid("name", "empty").is_retryable());
        assert!(Error::VmNotFound { id: VmId::new() }.is_not_found());
    }

    #[test]
    fn codes_agree_with_kinds() {
        let not_found = Error::TaskNotFound { id: TaskId::new() };
        assert!(not_found.code().ends_with("_not_found") && not_found.kind() == ErrorKind::NotFound);
        let backend = Error::backend("sql", "disk on fire");
        assert_eq!((backend.kind(), backend.code()), (ErrorKind::Internal, "internal"));
        assert_eq!(backend.public_message(), "sql failed", "the source stays out of what users see");
        assert_eq!(error_chain(&backend), "sql failed: disk on fire");
    }
}
