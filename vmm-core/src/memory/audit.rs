//! [`AuditStore`] in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::audit::{AuditEntry, AuditFilter, AuditOutcome};
use crate::error::Result;
use crate::id::AuditId;
use crate::page::{Page, PageRequest};
use crate::store::AuditStore;

#[async_trait]
impl AuditStore for InMemoryStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        self.state().audit.insert(entry.id, entry.clone());
        Ok(())
    }

    async fn complete_audit(&self, id: AuditId, outcome: &AuditOutcome) -> Result<()> {
        if let Some(entry) = self.state().audit.get_mut(&id) {
            entry.complete(outcome);
        }
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<AuditEntry>> {
        super::page_of(&self.state().audit, page, |e| {
            filter.actor_id.is_none_or(|a| e.actor_id == Some(a))
                && filter.target_id.as_ref().is_none_or(|t| e.target_id.as_ref() == Some(t))
        })
    }
}
