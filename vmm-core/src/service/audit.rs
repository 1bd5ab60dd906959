//! The audit log: `impl Vmm` for recording what was asked and reading it back.

use super::Vmm;
use crate::audit::{AuditEntry, AuditFilter, AuditOutcome};
use crate::error::Result;
use crate::id::AuditId;
use crate::page::{Page, PageRequest};
use crate::users::{sees_all, Access, Actor, Area};

impl Vmm {
    /// Appends `entry`, with a fresh id and the service clock's time; its id, to complete
    /// it with [`complete_audit`](Self::complete_audit).
    pub async fn record_audit(&self, entry: AuditEntry) -> Result<AuditId> {
        let entry = AuditEntry { id: AuditId::new(), at: self.now(), ..entry };
        self.inner.store.append_audit(&entry).await?;
        Ok(entry.id)
    }

    /// Completes an entry with the request's outcome, and the object it made and the user
    /// it turned out to be about (a sign-in), where the entry has none yet.
    pub async fn complete_audit(&self, id: AuditId, outcome: &AuditOutcome) -> Result<()> {
        self.inner.store.complete_audit(id, outcome).await
    }

    /// Entries that pass `filter`, newest first: everyone's for those who see all, else the
    /// actor's own (asking for another actor's finds nothing).
    pub async fn list_audit(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>> {
        actor.may(Area::Audit, Access::Read)?;
        let mut filter = filter.clone();
        if !sees_all(actor.role, Area::Audit) {
            if filter.actor_id.is_some_and(|a| a != actor.user_id) {
                return Ok(Page { items: Vec::new(), next_cursor: None });
            }
            filter.actor_id = Some(actor.user_id);
        }
        self.inner.store.list_audit(&filter, page).await
    }
}
