//! [`MigrationStore`] in memory.

use async_trait::async_trait;

use super::tasks::enqueue_in;
use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::event::vm_migrated_event;
use crate::id::{NodeId, VmId};
use crate::store::{MigrationRequest, MigrationStore};
use crate::task::{Task, TaskParams};
use crate::vm::{Vm, VmAction};

#[async_trait]
impl MigrationStore for InMemoryStore {
    async fn queue_migration(&self, vm_id: VmId, task: &Task, request: &MigrationRequest) -> Result<Task> {
        let mut s = self.state();
        let vm = s.vms.get(&vm_id).cloned().ok_or(Error::VmNotFound { id: vm_id })?;
        if let Some(&active) = s.vm_active.get(&vm_id) {
            return Err(Error::ActiveTask { vm: vm_id, task: active });
        }
        vm.state.apply(vm_id, VmAction::Migrate)?;
        let live = request.live_for(&vm)?;
        let placement = &request.placement;
        placement.check_group_of(&vm)?;
        let members =
            placement.group.as_ref().map(|g| s.group_nodes_except(g.id, Some(vm_id))).unwrap_or_default();
        let demand = vm.demand();
        // A hold left by a migration that ended without giving it back (its undo failed,
        // or its process died after a cancel) is given back first.
        let mut nodes: Vec<_> = s.nodes.values().cloned().collect();
        for node in nodes.iter_mut().filter(|n| Some(n.id) == vm.migrating_to) {
            node.allocated = node.allocated.without(&demand);
        }
        let (chosen, mut task) = placement.place_move_task(&demand, &nodes, members, vm.node_id, task)?;
        task.params =
            TaskParams::Migrate { from: vm.node_id, to: chosen.node_id, live, shared: request.shared };
        enqueue_in(&mut s, &task, Some(VmAction::Migrate))?;
        for node in nodes.into_iter().filter(|n| n.id == chosen.node_id || Some(n.id) == vm.migrating_to) {
            let allocated =
                if node.id == chosen.node_id { node.allocated.with(&demand) } else { node.allocated };
            s.nodes.get_mut(&node.id).expect("listed above").allocated = allocated;
        }
        s.vms.get_mut(&vm_id).expect("read above").migrating_to = Some(chosen.node_id);
        Ok(s.tasks[&task.id].clone())
    }

    async fn switch_migration(&self, vm_id: VmId, to: NodeId) -> Result<Vm> {
        let mut s = self.state();
        let vm = s.vms.get(&vm_id).cloned().ok_or(Error::VmNotFound { id: vm_id })?;
        if vm.node_id == to && vm.migrating_to.is_none() {
            return Ok(vm);
        }
        if vm.migrating_to != Some(to) {
            return Err(Error::conflict(format!("VM {vm_id} is not migrating to node {to}")));
        }
        let from = vm.node_id;
        if let Some(node) = s.nodes.get_mut(&from) {
            node.allocated = node.allocated.without(&vm.demand());
        }
        let moved = Vm { node_id: to, migrating_to: None, ..vm };
        s.vms.insert(vm_id, moved.clone());
        let now = self.clock.now();
        s.emit(vm_migrated_event(&moved, from, now));
        Ok(moved)
    }

    async fn end_migration(&self, vm_id: VmId, to: NodeId) -> Result<()> {
        let mut s = self.state();
        let Some(vm) = s.vms.get_mut(&vm_id) else { return Ok(()) };
        if vm.migrating_to != Some(to) {
            return Ok(());
        }
        vm.migrating_to = None;
        let demand = vm.demand();
        if let Some(node) = s.nodes.get_mut(&to) {
            node.allocated = node.allocated.without(&demand);
        }
        Ok(())
    }
}
