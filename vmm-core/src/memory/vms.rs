//! [`VmStore`] in memory.

use async_trait::async_trait;

use std::net::IpAddr;

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::event::{vm_deleted_event, vm_drift_event, vm_owner_event};
use crate::guest::GuestSettings;
use crate::id::{NodeId, PoolId, UserId, VmId};
use crate::page::{Page, PageRequest};
use crate::placement::{self, Demand};
use crate::reconcile::{observes, ObservedState};
use crate::store::{PlacementRequest, VmFilter, VmGuest, VmStore};
use crate::task::{Task, TaskParams};
use crate::users::UserUsage;
use crate::vm::{Vm, VmAction, VmNic};
use chrono::{DateTime, Utc};

#[async_trait]
impl VmStore for InMemoryStore {
    async fn create_vm(
        &self,
        vm: &Vm,
        task: &Task,
        placement: &PlacementRequest,
        guest: Option<&GuestSettings>,
    ) -> Result<Vm> {
        let mut s = self.state();
        if s.vms.contains_key(&vm.id) || s.tasks.contains_key(&task.id) {
            return Err(Error::conflict(format!("VM {} exists", vm.id)));
        }
        if let Some(id) = task.image_id().filter(|i| !s.images.contains_key(i)) {
            return Err(Error::ImageNotFound { id });
        }
        s.check_quota(vm.owner_id, &UserUsage::of_new(vm))?;
        let demand = vm.demand();
        let nodes: Vec<_> = s.nodes.values().cloned().collect();
        placement.check_group_of(vm)?;
        let members = placement.group.as_ref().map(|g| s.group_nodes(g.id)).unwrap_or_default();
        if let Some(group) = &placement.group {
            if !s.placement_groups.contains_key(&group.id) {
                return Err(Error::PlacementGroupNotFound { id: group.id });
            }
        }
        let (chosen, task) = placement.place_task(&demand, &nodes, members, task)?;
        let mut vm = Vm { node_id: chosen.node_id, ..vm.clone() };
        // Last fallible steps: a lease that fails gives back those taken before it.
        s.lease_nics(&mut vm)?;
        let node = s.nodes.get_mut(&vm.node_id).expect("placement chose a known node");
        node.allocated = node.allocated.with(&demand);
        s.vms.insert(vm.id, vm.clone());
        s.guests.insert(vm.id, VmGuest { current: guest.cloned(), next: None });
        s.leases_taken(&vm, &vm.addresses, task.created_at);
        s.insert_task(&task);
        s.active.insert(task.id);
        if let Some(owner) = task.vm_id {
            s.vm_active.insert(owner, task.id);
        }
        Ok(vm)
    }

    async fn get_vm(&self, id: VmId) -> Result<Vm> {
        self.state().vms.get(&id).cloned().ok_or(Error::VmNotFound { id })
    }

    async fn list_vms(&self, filter: &VmFilter, page: &PageRequest) -> Result<Page<Vm>> {
        super::page_of(&self.state().vms, page, |v| filter.matches(v))
    }

    async fn update_vm(&self, vm: &Vm) -> Result<()> {
        let mut s = self.state();
        let stored = s.vms.get_mut(&vm.id).ok_or(Error::VmNotFound { id: vm.id })?;
        stored.name.clone_from(&vm.name);
        if stored.state != vm.state {
            // What was observed under the old state is stale: unknown until looked at again.
            stored.observed_state = None;
            stored.state_reason = None;
        }
        stored.state = vm.state;
        stored.image_id = vm.image_id;
        stored.hostname.clone_from(&vm.hostname);
        Ok(())
    }

    async fn resize_vm(&self, id: VmId, target: Demand) -> Result<Vm> {
        let mut s = self.state();
        let vm = s.vms.get(&id).cloned().ok_or(Error::VmNotFound { id })?;
        let node = s.nodes.get_mut(&vm.node_id).ok_or(Error::NodeNotFound { id: vm.node_id })?;
        let current = vm.demand();
        placement::check_resize(node, &current, &target)?;
        s.check_quota(vm.owner_id, &UserUsage::growth(&current, &target))?;
        let node = s.nodes.get_mut(&vm.node_id).expect("read above");
        node.allocated = node.allocated.without(&current).with(&target);
        let stored = s.vms.get_mut(&id).expect("read above");
        stored.vcpus = target.vcpus;
        stored.memory_mib = target.memory_mib;
        stored.disk_gib = target.disk_gib;
        Ok(stored.clone())
    }

    async fn set_vm_owner(&self, id: VmId, owner: Option<UserId>) -> Result<Vm> {
        let mut s = self.state();
        let vm = s.vms.get(&id).cloned().ok_or(Error::VmNotFound { id })?;
        if owner == vm.owner_id {
            return Ok(vm);
        }
        s.check_quota(owner, &UserUsage::of(&vm))?;
        let previous = vm.owner_id;
        // The VM's tasks go with it.
        for task in s.tasks.values_mut().filter(|t| t.vm_id == Some(id)) {
            task.owner_id = owner;
        }
        let stored = s.vms.get_mut(&id).expect("read above");
        stored.owner_id = owner;
        let vm = stored.clone();
        let at = self.clock.now();
        s.emit(vm_owner_event(&vm, previous, at));
        Ok(vm)
    }

    async fn delete_vm(&self, id: VmId) -> Result<()> {
        let mut s = self.state();
        let vm = s.vms.remove(&id).ok_or(Error::VmNotFound { id })?;
        let at = self.clock.now();
        s.leases_released(&vm, &vm.addresses, at);
        s.release_vm_leases(id);
        s.emit(vm_deleted_event(&vm, at));
        s.guests.remove(&id);
        s.snapshots.remove(&id);
        if let Some(node) = s.nodes.get_mut(&vm.node_id) {
            node.allocated = node.allocated.without(&vm.demand());
        }
        // Capacity a migration that did not end cleanly still holds.
        if let Some(node) = vm.migrating_to.filter(|h| *h != vm.node_id).and_then(|h| s.nodes.get_mut(&h)) {
            node.allocated = node.allocated.without(&vm.demand());
        }
        Ok(())
    }

    async fn vm_guest(&self, id: VmId) -> Result<VmGuest> {
        let s = self.state();
        if !s.vms.contains_key(&id) {
            return Err(Error::VmNotFound { id });
        }
        Ok(s.guests.get(&id).cloned().unwrap_or_default())
    }

    async fn set_vm_guest(&self, id: VmId, guest: &VmGuest) -> Result<()> {
        let mut s = self.state();
        if !s.vms.contains_key(&id) {
            return Err(Error::VmNotFound { id });
        }
        s.guests.insert(id, guest.clone());
        Ok(())
    }

    async fn queue_reinstall(&self, task: &Task, next: &GuestSettings) -> Result<()> {
        let id = task.vm_id.ok_or_else(|| Error::invalid("task", "a reinstall names its VM"))?;
        let mut s = self.state();
        if s.tasks.contains_key(&task.id) {
            return Err(Error::conflict(format!("task {} exists", task.id)));
        }
        if let Some(image) = task.image_id().filter(|i| !s.images.contains_key(i)) {
            return Err(Error::ImageNotFound { id: image });
        }
        let vm = s.vms.get(&id).ok_or(Error::VmNotFound { id })?;
        if let Some(&active) = s.vm_active.get(&id) {
            return Err(Error::ActiveTask { vm: id, task: active });
        }
        vm.state.apply(id, VmAction::Reinstall)?;
        s.guests.entry(id).or_default().next = Some(next.clone());
        s.insert_task(task);
        s.active.insert(task.id);
        s.vm_active.insert(id, task.id);
        Ok(())
    }

    async fn add_vm_address(
        &self,
        id: VmId,
        pool: PoolId,
        address: Option<IpAddr>,
        task: &Task,
    ) -> Result<Vm> {
        let mut s = self.state();
        let vm = s.vms.get(&id).cloned().ok_or(Error::VmNotFound { id })?;
        if let Some(&active) = s.vm_active.get(&id) {
            return Err(Error::ActiveTask { vm: id, task: active });
        }
        vm.state.apply(id, VmAction::ChangeAddresses)?;
        let index = crate::vm::free_nic_index(&vm)?;
        s.check_quota(vm.owner_id, &UserUsage::address())?;
        let network = s.pools.get(&pool).ok_or(Error::PoolNotFound { id: pool })?.pool.network_id;
        let lease = s.lease(pool, address, Some(id), task.created_at)?;
        let mut nic = VmNic::new(id, index, Some(pool));
        nic.network_id = network;
        nic.addresses.push(lease.address);
        let stored = s.vms.get_mut(&id).expect("read above");
        stored.nics.push(nic);
        stored.refresh_addresses();
        let vm = stored.clone();
        s.leases_taken(&vm, &[lease.address], task.created_at);
        let mut task = task.clone();
        task.params = TaskParams::AddAddress { address: lease.address };
        s.insert_task(&task);
        s.active.insert(task.id);
        s.vm_active.insert(id, task.id);
        Ok(vm)
    }

    async fn vms_on_node(&self, node: NodeId) -> Result<Vec<Vm>> {
        Ok(self.state().vms.values().filter(|v| v.node_id == node).cloned().collect())
    }

    async fn observe_vm(&self, id: VmId, observed: ObservedState, at: DateTime<Utc>) -> Result<bool> {
        let mut s = self.state();
        let busy = s.vm_active.contains_key(&id);
        let Some(vm) = s.vms.get_mut(&id) else { return Ok(false) };
        if busy || !observes(vm.state) || vm.observed_state == Some(observed) {
            return Ok(false);
        }
        vm.observed_state = Some(observed);
        vm.state_reason = observed.reason(vm.state);
        let event = vm_drift_event(vm, observed, at);
        if let Some(e) = event {
            s.emit(e);
        }
        Ok(true)
    }

    async fn remove_vm_address(&self, id: VmId, address: IpAddr) -> Result<Vm> {
        let mut s = self.state();
        let vm = s.vms.get(&id).cloned().ok_or(Error::VmNotFound { id })?;
        let nic = vm
            .nics
            .iter()
            .find(|n| n.addresses.contains(&address))
            .ok_or(Error::invalid("address", format!("VM {id} does not hold {address}")))?;
        if let Some(pool) = nic.pool_id {
            if let Some(ps) = s.pools.get_mut(&pool) {
                ps.leases.remove(&address);
                ps.alloc.release(address);
            }
            if let Some(held) = s.vm_leases.get_mut(&id) {
                held.retain(|(p, a)| !(*p == pool && *a == address));
            }
        }
        let at = self.clock.now();
        s.leases_released(&vm, &[address], at);
        let stored = s.vms.get_mut(&id).expect("read above");
        for n in &mut stored.nics {
            n.addresses.retain(|a| *a != address);
        }
        stored.nics.retain(|n| !n.addresses.is_empty() || n.pool_id.is_none());
        stored.refresh_addresses();
        Ok(stored.clone())
    }
}
