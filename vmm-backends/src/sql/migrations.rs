//! [`MigrationStore`] on SQL.

use async_trait::async_trait;
use chrono::Utc;
use vmm_core::event::vm_migrated_event;
use vmm_core::{
    Error, MigrationRequest, MigrationStore, NodeId, Result, Task, TaskParams, TaskStore, Vm, VmAction, VmId,
};

use super::{SqlStore, Tx};

impl SqlStore {
    /// Sets the node the VM is moving to (none: it moves nowhere).
    async fn set_migrating_to(&self, tx: &mut Tx, vm: VmId, to: Option<NodeId>) -> Result<()> {
        sqlx::query("UPDATE vms SET migrating_to = $2 WHERE id = $1")
            .bind(vm.to_string())
            .bind(to.map(|n| n.to_string()))
            .execute(&mut **tx)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Gives back the capacity `vm` holds on `node`.
    async fn release_on(&self, tx: &mut Tx, vm: &Vm, node: NodeId) -> Result<()> {
        let node = self.lock_node(tx, node).await?;
        self.set_usage(tx, node.id, node.allocated.without(&vm.demand())).await
    }
}

#[async_trait]
impl MigrationStore for SqlStore {
    async fn queue_migration(&self, vm_id: VmId, task: &Task, request: &MigrationRequest) -> Result<Task> {
        let mut tx = self.begin().await?;
        // The VM first, then the nodes: the order a resize takes them in.
        let vm = self.vm_in(&mut tx, vm_id).await?;
        let live = request.live_for(&vm)?;
        let placement = &request.placement;
        placement.check_group_of(&vm)?;
        // Every node locked at once, in id order, as a create locks them.
        let mut nodes = self.lock_nodes(&mut tx).await?;
        if let Some(held) = vm.migrating_to {
            // Held by a migration that ended without giving it back (its undo failed, or
            // its process died after a cancel).
            if let Some(node) = nodes.iter_mut().find(|n| n.id == held) {
                node.allocated = node.allocated.without(&vm.demand());
                self.set_usage(&mut tx, node.id, node.allocated).await?;
            }
        }
        let members = match &placement.group {
            Some(group) => self.group_nodes_except(&mut tx, group.id, Some(vm_id)).await?,
            None => Vec::new(),
        };
        let demand = vm.demand();
        let (chosen, mut task) = placement.place_move_task(&demand, &nodes, members, vm.node_id, task)?;
        task.params =
            TaskParams::Migrate { from: vm.node_id, to: chosen.node_id, live, shared: request.shared };
        if !self.enqueue_in(&mut tx, &task, Some(VmAction::Migrate)).await? {
            drop(tx);
            return Err(self.duplicate(&task).await);
        }
        let target = nodes.iter().find(|n| n.id == chosen.node_id).expect("placement chose a listed node");
        self.set_usage(&mut tx, target.id, target.allocated.with(&demand)).await?;
        self.set_migrating_to(&mut tx, vm_id, Some(target.id)).await?;
        self.commit(tx).await?;
        self.get_task(task.id).await
    }

    async fn switch_migration(&self, vm_id: VmId, to: NodeId) -> Result<Vm> {
        let mut tx = self.begin().await?;
        let vm = self.vm_in(&mut tx, vm_id).await?;
        if vm.node_id == to && vm.migrating_to.is_none() {
            return Ok(vm);
        }
        if vm.migrating_to != Some(to) {
            return Err(Error::conflict(format!("VM {vm_id} is not migrating to node {to}")));
        }
        let from = vm.node_id;
        self.release_on(&mut tx, &vm, from).await?;
        sqlx::query("UPDATE vms SET node_id = $2, migrating_to = NULL WHERE id = $1")
            .bind(vm_id.to_string())
            .bind(to.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let moved = Vm { node_id: to, migrating_to: None, ..vm };
        self.emit(&mut tx, vec![vm_migrated_event(&moved, from, Utc::now())]).await?;
        self.commit(tx).await?;
        Ok(moved)
    }

    async fn end_migration(&self, vm_id: VmId, to: NodeId) -> Result<()> {
        let mut tx = self.begin().await?;
        let vm = match self.vm_in(&mut tx, vm_id).await {
            Err(Error::VmNotFound { .. }) => return Ok(()),
            other => other?,
        };
        if vm.migrating_to != Some(to) {
            return Ok(());
        }
        self.release_on(&mut tx, &vm, to).await?;
        self.set_migrating_to(&mut tx, vm_id, None).await?;
        self.commit(tx).await
    }
}
