//! [`AuditStore`] on SQL.

use async_trait::async_trait;
use vmm_core::{AuditEntry, AuditFilter, AuditId, AuditOutcome, AuditStore, Page, PageRequest, Result};

use super::{from_json, to_json, Columns, SqlStore};

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        sqlx::query("INSERT INTO audit (id, actor_id, target_id, record) VALUES ($1, $2, $3, $4)")
            .bind(entry.id.to_string())
            .bind(entry.actor_id.map(|a| a.to_string()))
            .bind(entry.target_id.clone())
            .bind(to_json(entry)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    async fn complete_audit(&self, id: AuditId, outcome: &AuditOutcome) -> Result<()> {
        // The record is JSON beside its columns: read, changed and written back in one
        // transaction.
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT record FROM audit WHERE id = $1")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = rows.first() else { return self.commit(tx).await };
        let mut entry: AuditEntry = from_json(&row.text("record")?)?;
        entry.complete(outcome);
        sqlx::query("UPDATE audit SET target_id = $2, actor_id = $3, record = $4 WHERE id = $1")
            .bind(id.to_string())
            .bind(entry.target_id.clone())
            .bind(entry.actor_id.map(|a| a.to_string()))
            .bind(to_json(&entry)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<AuditEntry>> {
        let mut only = Vec::new();
        if let Some(a) = filter.actor_id {
            only.push(("actor_id", a.to_string()));
        }
        if let Some(t) = &filter.target_id {
            only.push(("target_id", t.clone()));
        }
        self.records("audit", &only, page).await
    }
}
