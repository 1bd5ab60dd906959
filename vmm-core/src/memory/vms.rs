//! [`VmStore`] in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::id::VmId;
use crate::page::{Page, PageRequest};
use crate::placement::{self, Demand};
use crate::store::{PlacementRequest, VmStore};
use crate::task::Task;
use crate::vm::Vm;

#[async_trait]
impl VmStore for InMemoryStore {
    async fn create_vm(&self, vm: &Vm, task: &Task, placement: PlacementRequest) -> Result<Vm> {
        let mut s = self.state();
        if s.vms.contains_key(&vm.id) || s.tasks.contains_key(&task.id) {
            return Err(Error::conflict(format!("VM {} exists", vm.id)));
        }
        let demand = vm.demand();
        let nodes: Vec<_> = s.nodes.values().cloned().collect();
        let chosen = placement::place(&demand, &nodes, placement.strategy, placement.pinned)?;
        let mut vm = Vm { node_id: chosen.node_id, addresses: Vec::new(), ..vm.clone() };
        if let Some(pool) = vm.ip_pool_id {
            // Last fallible step: nothing to undo if it fails.
            let lease = s.lease(pool, None, Some(vm.id), vm.created_at)?;
            vm.addresses.push(lease.address);
        }
        let node = s.nodes.get_mut(&vm.node_id).expect("placement chose a known node");
        node.allocated = node.allocated.with(&demand);
        s.vms.insert(vm.id, vm.clone());
        s.tasks.insert(task.id, task.clone());
        s.active.insert(task.id);
        s.vm_active.insert(vm.id, task.id);
        Ok(vm)
    }

    async fn get_vm(&self, id: VmId) -> Result<Vm> {
        self.state().vms.get(&id).cloned().ok_or(Error::VmNotFound { id })
    }

    async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>> {
        let limit = page.limit()?;
        let before: Option<VmId> = page.cursor()?;
        let s = self.state();
        let vms = match before {
            Some(b) => s.vms.range(..b),
            None => s.vms.range(..),
        };
        let items = vms.rev().take(limit + 1).map(|(_, v)| v.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |v: &Vm| v.id.to_string()))
    }

    async fn update_vm(&self, vm: &Vm) -> Result<()> {
        let mut s = self.state();
        let stored = s.vms.get_mut(&vm.id).ok_or(Error::VmNotFound { id: vm.id })?;
        stored.name.clone_from(&vm.name);
        stored.state = vm.state;
        Ok(())
    }

    async fn resize_vm(&self, id: VmId, target: Demand) -> Result<Vm> {
        let mut s = self.state();
        let vm = s.vms.get(&id).cloned().ok_or(Error::VmNotFound { id })?;
        let node = s.nodes.get_mut(&vm.node_id).ok_or(Error::NodeNotFound { id: vm.node_id })?;
        let current = vm.demand();
        placement::check_resize(node, &current, &target)?;
        node.allocated = node.allocated.without(&current).with(&target);
        let stored = s.vms.get_mut(&id).expect("read above");
        stored.vcpus = target.vcpus;
        stored.memory_mib = target.memory_mib;
        stored.disk_gib = target.disk_gib;
        Ok(stored.clone())
    }

    async fn delete_vm(&self, id: VmId) -> Result<()> {
        let mut s = self.state();
        let vm = s.vms.remove(&id).ok_or(Error::VmNotFound { id })?;
        s.release_vm_leases(id);
        if let Some(node) = s.nodes.get_mut(&vm.node_id) {
            node.allocated = node.allocated.without(&vm.demand());
        }
        Ok(())
    }
}
