//! [`HaStore`] on SQL: one row per node that ever answered, its expiry a column (so a
//! change of state can be made only if the node did not answer meanwhile), the rest JSON.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::ha::NodeLease;
use vmm_core::{Event, HaStore, NodeId, Result};

use super::{from_json, to_json, Columns, SqlStore};

#[async_trait]
impl HaStore for SqlStore {
    async fn renew_node_lease(
        &self,
        node: NodeId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<NodeLease> {
        let mut tx = self.begin().await?;
        self.lock_node(&mut tx, node).await?;
        let row = sqlx::query("SELECT record FROM node_leases WHERE node_id = $1")
            .bind(node.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let mut lease = match row {
            Some(r) => from_json::<NodeLease>(&r.text("record")?)?,
            None => NodeLease::renewed(node, now, Default::default()),
        };
        lease.expires_at = until;
        sqlx::query("DELETE FROM node_leases WHERE node_id = $1")
            .bind(node.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query("INSERT INTO node_leases (node_id, expires_us, record) VALUES ($1, $2, $3)")
            .bind(node.to_string())
            .bind(until.timestamp_micros())
            .bind(to_json(&lease)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await?;
        Ok(lease)
    }

    async fn node_leases(&self) -> Result<Vec<NodeLease>> {
        let rows = sqlx::query("SELECT record FROM node_leases ORDER BY node_id")
            .fetch_all(&self.read)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| from_json(&r.text("record")?)).collect()
    }

    async fn set_node_health(
        &self,
        seen: &NodeLease,
        next: &NodeLease,
        event: Option<Event>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let next = NodeLease { expires_at: seen.expires_at, ..next.clone() };
        let done = sqlx::query("UPDATE node_leases SET record = $3 WHERE node_id = $1 AND expires_us = $2")
            .bind(seen.node_id.to_string())
            .bind(seen.expires_at.timestamp_micros())
            .bind(to_json(&next)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .rows_affected()
            == 1;
        if !done {
            return Ok(false);
        }
        if let Some(event) = event {
            self.emit(&mut tx, vec![event]).await?;
        }
        self.commit(tx).await?;
        Ok(true)
    }
}

impl SqlStore {
    /// Forgets a node's lease (the node is being removed), in `tx`.
    pub(super) async fn forget_node_lease(&self, tx: &mut super::Tx, node: NodeId) -> Result<()> {
        sqlx::query("DELETE FROM node_leases WHERE node_id = $1")
            .bind(node.to_string())
            .execute(&mut **tx)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }
}
