//! [`NodeStore`] on SQL. A node row carries what its VMs have taken (`used_*`), changed by
//! the VM operations in their transactions.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::any::AnyRow;
use vmm_core::event::node_events;
use vmm_core::{Capacity, Error, Node, NodeId, NodeStore, Page, PageRequest, Result, Usage};

use super::{from_json, is_unique_violation, parse_ts, signed, to_json, ts, unsigned, Columns, SqlStore, Tx};

const COLUMNS: &str = "id, name, uri, virt_type, cpus, memory_mib, storage_gib, cpu_overcommit, \
    memory_overcommit, state, created_at, used_vms, used_vcpus, used_memory_mib, used_storage_gib, fence";

pub(super) fn node(r: &AnyRow) -> Result<Node> {
    Ok(Node {
        id: r.parsed("id")?,
        name: r.text("name")?,
        uri: r.text("uri")?,
        virt_type: r.parsed("virt_type")?,
        capacity: Capacity {
            cpus: u32::try_from(r.int("cpus")?).map_err(|e| Error::backend("sql", e))?,
            memory_mib: unsigned(r, "memory_mib")?,
            storage_gib: unsigned(r, "storage_gib")?,
        },
        cpu_overcommit: r.float("cpu_overcommit")?,
        memory_overcommit: r.float("memory_overcommit")?,
        state: r.parsed("state")?,
        allocated: Usage {
            vms: unsigned(r, "used_vms")?,
            vcpus: unsigned(r, "used_vcpus")?,
            memory_mib: unsigned(r, "used_memory_mib")?,
            storage_gib: unsigned(r, "used_storage_gib")?,
        },
        created_at: parse_ts(&r.text("created_at")?)?,
        fence: r.opt_text("fence")?.map(|f| from_json(&f)).transpose()?.unwrap_or_default(),
    })
}

impl SqlStore {
    /// Every node, locked for the transaction (two creates must not both take the last room
    /// on a node). O(nodes), whatever the number of VMs.
    pub(super) async fn lock_nodes(&self, tx: &mut Tx) -> Result<Vec<Node>> {
        let sql = format!("SELECT {COLUMNS} FROM nodes ORDER BY id{}", self.dialect.lock());
        let rows = sqlx::query(&sql).fetch_all(&mut **tx).await.map_err(|e| self.err(e))?;
        rows.iter().map(node).collect()
    }

    /// One node, locked for the transaction.
    pub(super) async fn lock_node(&self, tx: &mut Tx, id: NodeId) -> Result<Node> {
        let sql = format!("SELECT {COLUMNS} FROM nodes WHERE id = $1{}", self.dialect.lock());
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &mut **tx, Error::NodeNotFound { id }).await?;
        node(&row)
    }

    /// Writes a node's usage.
    pub(super) async fn set_usage(&self, tx: &mut Tx, id: NodeId, usage: Usage) -> Result<()> {
        sqlx::query(
            "UPDATE nodes SET used_vms = $2, used_vcpus = $3, used_memory_mib = $4, used_storage_gib = $5 \
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(signed(usage.vms))
        .bind(signed(usage.vcpus))
        .bind(signed(usage.memory_mib))
        .bind(signed(usage.storage_gib))
        .execute(&mut **tx)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[async_trait]
impl NodeStore for SqlStore {
    async fn create_node(&self, node: &Node) -> Result<()> {
        let mut tx = self.begin().await?;
        let taken = sqlx::query("SELECT name FROM nodes WHERE name = $1 OR uri = $2")
            .bind(&node.name)
            .bind(&node.uri)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if let Some(other) = taken.first() {
            let other = other.text("name")?;
            return Err(if other == node.name {
                Error::conflict(format!("a node named {other:?} exists"))
            } else {
                Error::conflict(format!("node {other:?} already has this URI"))
            });
        }
        sqlx::query(
            "INSERT INTO nodes (id, name, uri, virt_type, cpus, memory_mib, storage_gib, cpu_overcommit, \
             memory_overcommit, state, created_at, fence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(node.id.to_string())
        .bind(&node.name)
        .bind(&node.uri)
        .bind(node.virt_type.as_str())
        .bind(i64::from(node.capacity.cpus))
        .bind(signed(node.capacity.memory_mib))
        .bind(signed(node.capacity.storage_gib))
        .bind(node.cpu_overcommit)
        .bind(node.memory_overcommit)
        .bind(node.state.as_str())
        .bind(ts(node.created_at))
        .bind(to_json(&node.fence)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("a node named {:?} or with this URI exists", node.name))
            } else {
                self.err(e)
            }
        })?;
        self.emit(&mut tx, node_events(None, Some(node), Utc::now())).await?;
        self.commit(tx).await
    }

    async fn get_node(&self, id: NodeId) -> Result<Node> {
        let sql = format!("SELECT {COLUMNS} FROM nodes WHERE id = $1");
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &self.read, Error::NodeNotFound { id }).await?;
        node(&row)
    }

    async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>> {
        let limit = page.limit()?;
        let before: Option<NodeId> = page.cursor()?;
        let rows = match before {
            Some(b) => {
                let sql = format!("SELECT {COLUMNS} FROM nodes WHERE id < $1 ORDER BY id DESC LIMIT $2");
                sqlx::query(&sql)
                    .bind(b.to_string())
                    .bind(signed(limit as u64 + 1))
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM nodes ORDER BY id DESC LIMIT $1");
                sqlx::query(&sql).bind(signed(limit as u64 + 1)).fetch_all(&self.read).await
            }
        }
        .map_err(|e| self.err(e))?;
        let items = rows.iter().map(node).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |n| n.id.to_string()))
    }

    async fn update_node(&self, node: &Node) -> Result<()> {
        let mut tx = self.begin().await?;
        let before = self.lock_node(&mut tx, node.id).await?;
        sqlx::query(
            "UPDATE nodes SET name = $2, cpu_overcommit = $3, memory_overcommit = $4, state = $5, cpus = $6, \
             memory_mib = $7, storage_gib = $8, fence = $9 WHERE id = $1",
        )
        .bind(node.id.to_string())
        .bind(&node.name)
        .bind(node.cpu_overcommit)
        .bind(node.memory_overcommit)
        .bind(node.state.as_str())
        .bind(i64::from(node.capacity.cpus))
        .bind(signed(node.capacity.memory_mib))
        .bind(signed(node.capacity.storage_gib))
        .bind(to_json(&node.fence)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("a node named {:?} exists", node.name))
            } else {
                self.err(e)
            }
        })?;
        self.emit(&mut tx, node_events(Some(&before), Some(node), Utc::now())).await?;
        self.commit(tx).await
    }

    async fn delete_node(&self, id: NodeId) -> Result<()> {
        let mut tx = self.begin().await?;
        let node = self.lock_node(&mut tx, id).await?;
        if node.allocated.vms > 0 {
            return Err(Error::conflict(format!("node {id} still has {} VMs", node.allocated.vms)));
        }
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.forget_node_lease(&mut tx, id).await?;
        self.emit(&mut tx, node_events(Some(&node), None, Utc::now())).await?;
        self.commit(tx).await
    }
}
