//! The audit area of the [`Store`](super::Store).

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditFilter, AuditOutcome};
use crate::error::Result;
use crate::id::AuditId;
use crate::page::{Page, PageRequest};

/// The audit log: appended to, never changed.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// Completes an entry with the outcome and, where the entry has none yet, the object
    /// and the actor (a sign-in learns who it was about only once it succeeds).
    async fn complete_audit(&self, id: AuditId, outcome: &AuditOutcome) -> Result<()>;
    /// Entries that pass `filter`, newest first.
    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<AuditEntry>>;
}
