//! The command's one error type and its exit codes.

use vmm_core::ErrorKind;

/// What can go wrong in a `vmm` command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with a problem (`application/problem+json`).
    #[error("{detail} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// What a caller can do about it.
        kind: ErrorKind,
        /// The problem's stable code (`vm_not_found`…).
        code: String,
        /// What went wrong.
        detail: String,
    },
    /// The server could not be reached (or stopped answering).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The server.
        url: String,
        /// Why.
        reason: String,
    },
    /// A task the command waited for did not succeed.
    #[error("task {id} {state}: {reason}")]
    Task {
        /// The task.
        id: String,
        /// `failed` or `cancelled`.
        state: String,
        /// Its error, if it has one.
        reason: String,
    },
    /// `--timeout` ran out while waiting for a task (it goes on).
    #[error("task {id} is still {state} after {seconds} s (it goes on; `vmm task wait {id}` follows it)")]
    WaitTimeout {
        /// The task.
        id: String,
        /// Its state when the wait ended.
        state: String,
        /// How long the command waited.
        seconds: u64,
    },
    /// The command line or the config file is wrong.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written, or the terminal is gone.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The server's answer was not what the API promises.
    #[error("the server's answer is not understood: {0}")]
    Answer(String),
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code of a task the command waited for that failed.
pub const EXIT_TASK_FAILED: u8 = 12;
/// Exit code of a task the command waited for that was cancelled.
pub const EXIT_TASK_CANCELLED: u8 = 13;

impl Error {
    /// The process's exit code: by the error's kind for API errors (see
    /// [`ErrorKind::exit_code`]), 2 for bad usage, 10 when the server cannot be reached,
    /// 11 when a wait timed out, 12 and 13 for a failed or cancelled task, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api { kind, .. } => kind.exit_code(),
            Self::Unreachable { .. } => ErrorKind::Unavailable.exit_code(),
            Self::WaitTimeout { .. } => ErrorKind::Timeout.exit_code(),
            Self::Task { state, .. } if state == "cancelled" => EXIT_TASK_CANCELLED,
            Self::Task { .. } => EXIT_TASK_FAILED,
            Self::Usage(_) => 2,
            Self::Io { .. } | Self::Answer(_) => 1,
        }
    }

    /// An [`Error::Io`] while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
