//! Migrations: queueing a VM's move to another node (the saga is `jobs::migrate_vm`).

use super::Vmm;
use crate::error::Result;
use crate::id::{NodeId, VmId};
use crate::migration::MigrateSpec;
use crate::store::{MigrationRequest, PlacementRequest};
use crate::task::{Task, TaskKind, TaskParams};
use crate::vm::Vm;

impl Vmm {
    /// Queues the VM's move to `spec.node_id`, or to the node placement chooses among
    /// those that have its networks, under its placement group's policy. The target's
    /// capacity is held for the VM from now on; the task's first step is placement's
    /// explanation.
    pub async fn migrate_vm(&self, id: VmId, spec: MigrateSpec) -> Result<Task> {
        let vm = self.inner.store.get_vm(id).await?;
        if let Some(node) = spec.node_id {
            self.inner.store.get_node(node).await?;
        }
        let group = match vm.placement_group_id {
            Some(group) => Some(self.inner.store.get_placement_group(group).await?),
            None => None,
        };
        let placement = PlacementRequest {
            pinned: spec.node_id,
            strategy: self.inner.config.strategy,
            only: self.nodes_with_networks_of(&vm).await?,
            group,
        };
        let shared = self.inner.config.shared_storage;
        // The store fills in the target it chooses.
        let params = TaskParams::Migrate {
            from: vm.node_id,
            to: vm.node_id,
            live: spec.live.unwrap_or(false),
            shared,
        };
        let task = self.new_task(TaskKind::MigrateVm, Some(id), params, self.now());
        let task = self
            .inner
            .store
            .queue_migration(
                id,
                &task,
                &MigrationRequest { placement, live: spec.live, recover: false, shared },
            )
            .await?;
        self.notify();
        Ok(task)
    }

    /// The nodes that have every network the VM's NICs plug into (`None`: any node).
    pub(super) async fn nodes_with_networks_of(&self, vm: &Vm) -> Result<Option<Vec<NodeId>>> {
        let mut only: Option<Vec<NodeId>> = None;
        for network_id in vm.nics.iter().filter_map(|n| n.network_id) {
            let network = self.inner.store.get_network(network_id).await?;
            if network.node_ids.is_empty() {
                continue;
            }
            only = Some(match only {
                None => network.node_ids.clone(),
                Some(nodes) => nodes.into_iter().filter(|n| network.reaches(*n)).collect(),
            });
        }
        Ok(only)
    }
}
