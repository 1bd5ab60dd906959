//! [`SnapshotStore`] on SQL: one row per snapshot, going with its VM (a cascading key).

use async_trait::async_trait;
use vmm_core::snapshot::Snapshot;
use vmm_core::{Error, Result, SnapshotStore, VmId};

use super::users::is_foreign_key_violation;
use super::{from_json, to_json, ts, Columns, SqlStore};

#[async_trait]
impl SnapshotStore for SqlStore {
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM vm_snapshots WHERE vm_id = $1 AND name = $2")
            .bind(snapshot.vm_id.to_string())
            .bind(&snapshot.name)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query("INSERT INTO vm_snapshots (vm_id, name, created_at, record) VALUES ($1, $2, $3, $4)")
            .bind(snapshot.vm_id.to_string())
            .bind(&snapshot.name)
            .bind(ts(snapshot.created_at))
            .bind(to_json(snapshot)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::VmNotFound { id: snapshot.vm_id }
                } else {
                    self.err(e)
                }
            })?;
        self.commit(tx).await
    }

    async fn list_snapshots(&self, vm: VmId) -> Result<Vec<Snapshot>> {
        let rows = sqlx::query("SELECT record FROM vm_snapshots WHERE vm_id = $1 ORDER BY created_at, name")
            .bind(vm.to_string())
            .fetch_all(&self.read)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| from_json(&r.text("record")?)).collect()
    }

    async fn delete_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM vm_snapshots WHERE vm_id = $1 AND name = $2")
            .bind(vm.to_string())
            .bind(name)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }
}
