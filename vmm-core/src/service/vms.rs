//! VMs: create, read, change, power and delete. Each change is queued as a task; its
//! saga is in `jobs/`.

use super::Vmm;
use crate::error::{Error, Result};
use crate::guest::{GuestRequest, GuestSettings};
use crate::id::{NodeId, PoolId, VmId};
use crate::page::{Page, PageRequest};
use crate::placement;
use crate::store::{PlacementRequest, VmFilter};
use crate::task::{Task, TaskKind, TaskParams};
use crate::users::{Actor, UserUsage};
use crate::vm::{
    validate_name, AddressSpec, CloneSpec, PowerAction, ReinstallSpec, Vm, VmAction, VmNic, VmPatch, VmSpec,
    VmState,
};

impl Vmm {
    /// Places the VM, leases an address for each of its pools and queues its create task,
    /// all in one transaction; the task then makes the disk (from the image, when one is
    /// given, with a cloud-init seed), defines and (if asked) starts it.
    pub async fn create_vm(&self, spec: VmSpec) -> Result<(Vm, Task)> {
        self.create_vm_as(None, spec).await
    }

    /// [`create_vm`](Self::create_vm), with the library keys `actor` (if any) may see.
    pub(crate) async fn create_vm_as(&self, actor: Option<&Actor>, mut spec: VmSpec) -> Result<(Vm, Task)> {
        spec.validate()?;
        if !spec.ssh_key_ids.is_empty() {
            let ids = std::mem::take(&mut spec.ssh_key_ids);
            spec.ssh_keys = self.with_library_keys(actor, &ids, std::mem::take(&mut spec.ssh_keys)).await?;
        }
        if spec.ha && !self.inner.config.shared_storage {
            return Err(Error::invalid("ha", "HA needs storage every node sees (storage_shared)"));
        }
        let now = self.now();
        let id = VmId::new();
        let image = match spec.image_id {
            Some(image_id) => {
                let image = self.inner.store.get_image(image_id).await?;
                image.check_disk(spec.disk_gib)?;
                Some(image)
            }
            None => None,
        };
        let guest = match &image {
            Some(image) => Some(self.guest_settings(&spec.guest(), &spec.name, id, image).await?),
            None => None,
        };
        let pools = spec.pools();
        let only = self.nodes_for_pools(&pools, spec.node_id).await?;
        let group = match spec.placement_group_id {
            Some(id) => Some(self.inner.store.get_placement_group(id).await?),
            None => None,
        };
        let nics = if pools.is_empty() {
            vec![VmNic::new(id, 0, None)]
        } else {
            pools.iter().enumerate().map(|(i, p)| VmNic::new(id, i as u8, Some(*p))).collect()
        };
        let vm = Vm {
            id,
            name: spec.name,
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            disk_gib: spec.disk_gib,
            node_id: NodeId::from_uuid(uuid::Uuid::nil()),
            ip_pool_id: None,
            state: VmState::Creating,
            addresses: Vec::new(),
            created_at: now,
            image_id: spec.image_id,
            hostname: guest.as_ref().map(|g| g.hostname.clone()),
            nics,
            owner_id: spec.owner_id,
            observed_state: None,
            state_reason: None,
            placement_group_id: spec.placement_group_id,
            migrating_to: None,
            ha: spec.ha,
        };
        let params = TaskParams::Create { start: spec.start, image_id: spec.image_id };
        let task = self.new_task(TaskKind::CreateVm, Some(vm.id), params, now);
        let placement =
            PlacementRequest { pinned: spec.node_id, strategy: self.inner.config.strategy, only, group };
        self.create_placed(&vm, &task, &placement, guest.as_ref()).await
    }

    /// Creates `vm` and its `task` in the store (which places it), wakes the workers, and
    /// answers both as stored: the task re-read, with placement's explanation as a step
    /// (should that read fail, the task as queued, without it).
    pub(super) async fn create_placed(
        &self,
        vm: &Vm,
        task: &Task,
        placement: &PlacementRequest,
        guest: Option<&GuestSettings>,
    ) -> Result<(Vm, Task)> {
        let vm = self.inner.store.create_vm(vm, task, placement, guest).await?;
        self.notify();
        // The VM exists now: should the read fail, the task as queued is still a true answer.
        let stored = self.inner.store.get_task(task.id).await.unwrap_or_else(|_| task.clone());
        Ok((vm, stored))
    }

    /// The nodes that have every network of `pools` (`None`: any node); a pinned node that
    /// lacks one is refused, naming the pool.
    pub(super) async fn nodes_for_pools(
        &self,
        pools: &[PoolId],
        pinned: Option<NodeId>,
    ) -> Result<Option<Vec<NodeId>>> {
        let mut only: Option<Vec<NodeId>> = None;
        for pool_id in pools {
            let pool = self.inner.store.get_pool(*pool_id).await?;
            let Some(network_id) = pool.network_id else { continue };
            let network = self.inner.store.get_network(network_id).await?;
            if network.node_ids.is_empty() {
                continue;
            }
            if let Some(node) = pinned {
                if !network.reaches(node) {
                    return Err(Error::invalid(
                        "ip_pool_ids",
                        format!(
                            "pool {} is on network {}, which node {node} does not have",
                            pool.name, network.name
                        ),
                    ));
                }
            }
            only = Some(match only {
                None => network.node_ids.clone(),
                Some(nodes) => nodes.into_iter().filter(|n| network.node_ids.contains(n)).collect(),
            });
        }
        if only.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::invalid("ip_pool_ids", "no node has every network of these pools"));
        }
        Ok(only)
    }

    /// Queues a reinstall: the disk is rewritten from `spec.image_id`, the guest set up
    /// again (new instance id), the VM's id, addresses and MACs kept.
    pub async fn reinstall_vm(&self, id: VmId, spec: ReinstallSpec) -> Result<Task> {
        self.reinstall_vm_as(None, id, spec).await
    }

    /// [`reinstall_vm`](Self::reinstall_vm), with the library keys `actor` (if any) may see.
    pub(crate) async fn reinstall_vm_as(
        &self,
        actor: Option<&Actor>,
        id: VmId,
        mut spec: ReinstallSpec,
    ) -> Result<Task> {
        if !spec.ssh_key_ids.is_empty() {
            let ids = std::mem::take(&mut spec.ssh_key_ids);
            spec.ssh_keys = self.with_library_keys(actor, &ids, std::mem::take(&mut spec.ssh_keys)).await?;
        }
        if spec.recipe_ids.len() > crate::vm::MAX_RECIPES {
            return Err(Error::invalid("recipe_ids", format!("at most {} recipes", crate::vm::MAX_RECIPES)));
        }
        let vm = self.inner.store.get_vm(id).await?;
        vm.state.apply(id, VmAction::Reinstall)?;
        let image = self.inner.store.get_image(spec.image_id).await?;
        image.check_disk(vm.disk_gib)?;
        let current = self.inner.store.vm_guest(id).await?.current.unwrap_or_default();
        let request = GuestRequest {
            hostname: spec.hostname.clone().or(vm.hostname.clone()),
            password: spec.password.clone(),
            ssh_keys: spec.ssh_keys.clone(),
            user_data: spec.user_data.clone(),
            recipe_ids: spec.recipe_ids.clone(),
        };
        let mut next = self.guest_settings(&request, &vm.name, id, &image).await?;
        if spec.password.is_none() {
            next.password_hash = current.password_hash.clone();
        }
        if spec.ssh_keys.is_empty() {
            next.ssh_keys = current.ssh_keys.clone();
        }
        next.generation = current.generation + 1;
        // The settings are kept with the task, in one transaction: a refused reinstall
        // changes nothing, and no other request's settings can reach this task's worker.
        let params = TaskParams::Reinstall { image_id: image.id };
        let task = self.new_task(TaskKind::ReinstallVm, Some(id), params, self.now());
        self.inner.store.queue_reinstall(&task, &next).await?;
        self.notify();
        Ok(task)
    }

    /// Places a new VM on the same node as `source` (stopped), with new addresses from the
    /// same pools, and queues its making from `source`'s disk with a new seed.
    pub async fn clone_vm(&self, source: VmId, spec: CloneSpec) -> Result<(Vm, Task)> {
        validate_name(&spec.name)?;
        let from = self.inner.store.get_vm(source).await?;
        from.state.apply(source, VmAction::Clone)?;
        let now = self.now();
        let id = VmId::new();
        let guest = self.inner.store.vm_guest(source).await?.current.map(|mut g| {
            g.hostname = crate::guest::default_hostname(&spec.name, id);
            g.generation = 0;
            g
        });
        let hostname = guest.as_ref().map(|g| g.hostname.clone());
        let vm = copy_of(&from, id, spec.name, from.node_id, hostname, now);
        let task =
            self.new_task(TaskKind::CloneVm, Some(id), TaskParams::Clone { source, start: spec.start }, now);
        let placement = PlacementRequest {
            pinned: Some(from.node_id),
            strategy: self.inner.config.strategy,
            only: None,
            group: None,
        };
        self.create_placed(&vm, &task, &placement, guest.as_ref()).await
    }

    /// Leases an address from `spec.ip_pool_id` and queues plugging it in: a NIC on the
    /// pool's network (hot-plugged when the VM runs) and a new seed.
    pub async fn add_vm_address(&self, id: VmId, spec: AddressSpec) -> Result<Task> {
        let vm = self.inner.store.get_vm(id).await?;
        let pool = self.inner.store.get_pool(spec.ip_pool_id).await?;
        if let Some(network_id) = pool.network_id {
            let network = self.inner.store.get_network(network_id).await?;
            if !network.reaches(vm.node_id) {
                return Err(Error::invalid(
                    "ip_pool_id",
                    format!(
                        "pool {} is on network {}, which the VM's node does not have",
                        pool.name, network.name
                    ),
                ));
            }
        }
        let now = self.now();
        // The address is known once leased: the store puts it in the task's parameters.
        let unknown = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let task =
            self.new_task(TaskKind::AddAddress, Some(id), TaskParams::AddAddress { address: unknown }, now);
        self.inner.store.add_vm_address(id, spec.ip_pool_id, spec.address, &task).await?;
        self.notify();
        self.inner.store.get_task(task.id).await
    }

    /// Queues taking `address` from the VM with its NIC; the lease ends once it is unplugged.
    pub async fn remove_vm_address(&self, id: VmId, address: std::net::IpAddr) -> Result<Task> {
        let vm = self.inner.store.get_vm(id).await?;
        if !vm.addresses.contains(&address) {
            return Err(Error::invalid("address", format!("VM {id} does not hold {address}")));
        }
        self.enqueue(
            id,
            VmAction::ChangeAddresses,
            TaskKind::RemoveAddress,
            TaskParams::RemoveAddress { address },
        )
        .await
    }

    /// The last `tail_bytes` of what the VM's serial console printed.
    pub async fn vm_console_log(&self, id: VmId, tail_bytes: u64) -> Result<Vec<u8>> {
        let vm = self.inner.store.get_vm(id).await?;
        let node = self.inner.store.get_node(vm.node_id).await?;
        self.hypervisor(&node).await?.console_log(id, tail_bytes).await
    }

    /// One VM.
    pub async fn get_vm(&self, id: VmId) -> Result<Vm> {
        self.inner.store.get_vm(id).await
    }

    /// The VMs `filter` passes, newest first.
    pub async fn list_vms(&self, filter: &VmFilter, page: &PageRequest) -> Result<Page<Vm>> {
        self.inner.store.list_vms(filter, page).await
    }

    /// Queues a rename and/or resize. Disks only grow; the node must have room.
    pub async fn update_vm(&self, id: VmId, patch: VmPatch) -> Result<Task> {
        let vm = self.inner.store.get_vm(id).await?;
        patch.validate(&vm)?;
        let action = if patch.resizes(&vm) {
            VmAction::Resize
        } else if patch.renames(&vm) {
            VmAction::Rename
        } else {
            return Err(Error::invalid("patch", "changes nothing"));
        };
        if action == VmAction::Resize {
            // An early answer; the task checks again in one transaction.
            vm.state.apply(id, action)?;
            let node = self.inner.store.get_node(vm.node_id).await?;
            let target = patch.applied_to(&vm).demand();
            placement::check_resize(&node, &vm.demand(), &target)?;
            if let Some(owner) = vm.owner_id {
                let quota = self.inner.store.get_user(owner).await?.quota;
                let usage = self.inner.store.user_usage(owner).await?;
                quota.check(&usage, &UserUsage::growth(&vm.demand(), &target))?;
            }
        }
        let params = TaskParams::Update { patch, before: Some(vm.demand()) };
        self.enqueue(id, action, TaskKind::UpdateVm, params).await
    }

    /// Queues the VM's deletion with its disk and leases. A VM left `deleting` by a
    /// failed delete may be deleted again.
    pub async fn delete_vm(&self, id: VmId) -> Result<Task> {
        self.enqueue(id, VmAction::Delete, TaskKind::DeleteVm, TaskParams::None).await
    }

    /// Queues a power action.
    pub async fn power_vm(&self, id: VmId, action: PowerAction) -> Result<Task> {
        self.enqueue(id, action.into(), TaskKind::for_power(action), TaskParams::None).await
    }

    /// Queues a start.
    pub async fn start_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Start).await
    }

    /// Queues a forced power-off.
    pub async fn stop_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Stop).await
    }

    /// Queues a graceful shutdown (forced after the configured timeout).
    pub async fn shutdown_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Shutdown).await
    }

    /// Queues a reboot.
    pub async fn reboot_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Reboot).await
    }

    /// Queues a suspend.
    pub async fn suspend_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Suspend).await
    }

    /// Queues a resume.
    pub async fn resume_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Resume).await
    }

    async fn enqueue(&self, id: VmId, action: VmAction, kind: TaskKind, params: TaskParams) -> Result<Task> {
        let task = self.new_task(kind, Some(id), params, self.now());
        self.inner.store.enqueue_task(&task, Some(action)).await?;
        self.notify();
        Ok(task)
    }
}

/// A new VM `id` with `from`'s size, image, owner and pools (one NIC per pool, new MACs, no
/// addresses yet), to be placed on `node_id` (nil: placement chooses) and made by a task.
pub(super) fn copy_of(
    from: &Vm,
    id: VmId,
    name: String,
    node_id: NodeId,
    hostname: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vm {
    let nics = if from.nics.is_empty() {
        vec![VmNic::new(id, 0, None)]
    } else {
        from.nics.iter().enumerate().map(|(i, n)| VmNic::new(id, i as u8, n.pool_id)).collect()
    };
    Vm {
        id,
        name,
        node_id,
        ip_pool_id: None,
        state: VmState::Creating,
        addresses: Vec::new(),
        created_at: now,
        hostname,
        nics,
        observed_state: None,
        state_reason: None,
        // A copy joins no group: a clone stays on its source's node, which an
        // anti-affinity group would refuse, and the group of a backup may be gone.
        placement_group_id: None,
        migrating_to: None,
        ha: false,
        ..from.clone()
    }
}
