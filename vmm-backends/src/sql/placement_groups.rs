//! [`PlacementGroupStore`] on SQL.

use async_trait::async_trait;
use vmm_core::{
    Error, NodeId, Page, PageRequest, PlacementGroup, PlacementGroupId, PlacementGroupStore, Result, VmId,
};

use super::{from_json, is_unique_violation, to_json, Columns, SqlStore, Tx};

impl SqlStore {
    /// The nodes the group's VMs are on, each once, read in `tx`; the group must exist (a
    /// create whose group was deleted meanwhile is refused), and is locked where the
    /// database locks rows, so that it cannot be deleted before `tx` ends.
    pub(super) async fn group_nodes(&self, tx: &mut Tx, id: PlacementGroupId) -> Result<Vec<NodeId>> {
        self.group_nodes_except(tx, id, None).await
    }

    /// [`group_nodes`](Self::group_nodes) of the group's VMs but `except`.
    pub(super) async fn group_nodes_except(
        &self,
        tx: &mut Tx,
        id: PlacementGroupId,
        except: Option<VmId>,
    ) -> Result<Vec<NodeId>> {
        let sql = format!("SELECT id FROM placement_groups WHERE id = $1{}", self.dialect.lock());
        self.row(sqlx::query(&sql).bind(id.to_string()), &mut **tx, Error::PlacementGroupNotFound { id })
            .await?;
        self.member_nodes(&mut **tx, id, except).await
    }

    /// The nodes the group's VMs (but `except`) are on, each once, in id order, read
    /// through `executor`.
    async fn member_nodes<'c, E>(
        &self,
        executor: E,
        id: PlacementGroupId,
        except: Option<VmId>,
    ) -> Result<Vec<NodeId>>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        let rows = sqlx::query(
            "SELECT DISTINCT node_id FROM vms WHERE placement_group_id = $1 AND id <> $2 ORDER BY node_id",
        )
        .bind(id.to_string())
        .bind(except.map(|v| v.to_string()).unwrap_or_default())
        .fetch_all(executor)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(|r| r.parsed("node_id")).collect()
    }
}

#[async_trait]
impl PlacementGroupStore for SqlStore {
    async fn create_placement_group(&self, group: &PlacementGroup) -> Result<()> {
        sqlx::query("INSERT INTO placement_groups (id, name, record) VALUES ($1, $2, $3)")
            .bind(group.id.to_string())
            .bind(&group.name)
            .bind(to_json(group)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("a placement group named {:?} exists", group.name))
                } else {
                    self.err(e)
                }
            })
    }

    async fn get_placement_group(&self, id: PlacementGroupId) -> Result<PlacementGroup> {
        let query = sqlx::query("SELECT record FROM placement_groups WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::PlacementGroupNotFound { id }).await?;
        from_json(&row.text("record")?)
    }

    async fn list_placement_groups(&self, page: &PageRequest) -> Result<Page<PlacementGroup>> {
        self.records("placement_groups", &[], page).await
    }

    async fn placement_group_nodes(&self, id: PlacementGroupId) -> Result<Vec<NodeId>> {
        self.get_placement_group(id).await?;
        self.member_nodes(&self.read, id, None).await
    }

    async fn delete_placement_group(&self, id: PlacementGroupId) -> Result<()> {
        let mut tx = self.begin().await?;
        // Locks the group first: a create that joins it finishes before the count.
        let members = self.group_nodes(&mut tx, id).await?;
        let count = sqlx::query("SELECT COUNT(*) AS n FROM vms WHERE placement_group_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .int("n")?;
        if count > 0 || !members.is_empty() {
            return Err(Error::conflict(format!(
                "the placement group still has {count} VM{}",
                if count == 1 { "" } else { "s" }
            )));
        }
        sqlx::query("DELETE FROM placement_groups WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await
    }
}
