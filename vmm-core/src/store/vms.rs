//! The VMs area of the [`Store`](super::Store).

use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::guest::GuestSettings;
use crate::id::{NodeId, PoolId, UserId, VmId};
use crate::node::Node;
use crate::page::{Page, PageRequest};
use crate::placement::{Demand, Placement, Strategy};
use crate::placement_group::PlacementGroup;
use crate::reconcile::ObservedState;
use crate::task::Task;
use crate::vm::{Vm, VmState};

/// Which VMs to list: every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmFilter {
    /// Only this user's VMs.
    pub owner_id: Option<UserId>,
    /// Only VMs on this node.
    pub node_id: Option<NodeId>,
    /// Only VMs in this state.
    pub state: Option<VmState>,
    /// Only VMs of this exact name.
    pub name: Option<String>,
}

impl VmFilter {
    /// Whether `vm` passes.
    pub fn matches(&self, vm: &Vm) -> bool {
        self.owner_id.is_none_or(|o| vm.owner_id == Some(o))
            && self.node_id.is_none_or(|n| vm.node_id == n)
            && self.state.is_none_or(|s| vm.state == s)
            && self.name.as_deref().is_none_or(|n| vm.name == n)
    }
}

/// How the store places a new VM inside [`VmStore::create_vm`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementRequest {
    /// Only this node.
    pub pinned: Option<NodeId>,
    /// How to choose.
    pub strategy: Strategy,
    /// Only these nodes (those that have every network the VM needs); any when `None`.
    pub only: Option<Vec<NodeId>>,
    /// The placement group the VM joins (the VM's `placement_group_id`; a store refuses a
    /// request whose group is not the VM's): the store reads where its VMs are in the same
    /// transaction, and placement follows the group's policy.
    pub group: Option<PlacementGroup>,
}

impl PlacementRequest {
    /// Checks that the request's group is `vm`'s own: a VM is never placed under another
    /// group's rule, nor joins one unchecked.
    pub fn check_group_of(&self, vm: &Vm) -> Result<()> {
        if self.group.as_ref().map(|g| g.id) == vm.placement_group_id {
            Ok(())
        } else {
            Err(crate::error::Error::invalid(
                "placement_group_id",
                "the VM's placement group is not the one it is placed by",
            ))
        }
    }

    /// Chooses the node for `demand` among `nodes` (as a store reads them in its
    /// transaction), with this request's pin, strategy and node filter, and the group's
    /// policy given `member_nodes`, the nodes its VMs are on (as the store read them in the
    /// same transaction).
    pub fn place(&self, demand: &Demand, nodes: &[Node], member_nodes: Vec<NodeId>) -> Result<Placement> {
        let rule = self.group.as_ref().map(|g| g.rule(member_nodes));
        crate::placement::place(
            demand,
            nodes,
            self.strategy,
            self.pinned,
            self.only.as_deref(),
            rule.as_ref(),
        )
    }

    /// Places as [`place`](Self::place) does, and returns `task` as the store keeps it:
    /// with placement's explanation (the chosen node, the others that fit, every rejected
    /// node's reasons) as a step.
    pub fn place_task(
        &self,
        demand: &Demand,
        nodes: &[Node],
        member_nodes: Vec<NodeId>,
        task: &Task,
    ) -> Result<(Placement, Task)> {
        let placement = self.place(demand, nodes, member_nodes)?;
        let mut task = task.clone();
        task.log(task.created_at, placement.explanation.to_string());
        Ok((placement, task))
    }

    /// Places as [`place_task`](Self::place_task) does, for a VM that leaves node `from`:
    /// that node is never chosen, and the explanation says why. A request pinned to `from`
    /// is refused.
    pub fn place_move_task(
        &self,
        demand: &Demand,
        nodes: &[Node],
        member_nodes: Vec<NodeId>,
        from: NodeId,
        task: &Task,
    ) -> Result<(Placement, Task)> {
        if self.pinned == Some(from) {
            return Err(crate::error::Error::invalid("node_id", "the VM is on that node already"));
        }
        let allowed: Vec<NodeId> = nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| *id != from && self.only.as_ref().is_none_or(|only| only.contains(id)))
            .collect();
        let moving = Self { only: Some(allowed), ..self.clone() };
        let mut result = moving.place_task(demand, nodes, member_nodes, task);
        // The source is outside `only`, which placement reads as a missing network.
        let name_source = |rejections: &mut Vec<crate::placement::Rejection>| {
            for r in rejections.iter_mut().filter(|r| r.node_id == from) {
                r.reasons = vec![crate::placement::RejectReason::Source];
            }
        };
        match &mut result {
            Ok((placement, task)) => {
                name_source(&mut placement.explanation.rejected);
                if let Some(step) = task.steps.last_mut() {
                    step.message = placement.explanation.to_string();
                }
            }
            Err(crate::error::Error::NoCapacity { rejections }) => name_source(rejections),
            Err(_) => {}
        }
        result
    }
}

/// What vmm keeps about a VM's guest: the settings its seed was written from, and those of
/// a reinstall that is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmGuest {
    /// The settings of the current install.
    pub current: Option<GuestSettings>,
    /// The settings a queued reinstall will apply.
    pub next: Option<GuestSettings>,
}

/// VMs. Creating, resizing and deleting one changes its node's usage in the same
/// transaction, so placement reads one row per node, however many VMs there are.
#[async_trait]
pub trait VmStore: Send + Sync {
    /// Creates a VM and its create task in one transaction: places it on a node under the
    /// overcommit ratios, leases an address for each NIC from its pool, inserts both with
    /// the guest settings, and counts the VM in its node's usage. Returns the VM with
    /// `node_id`, its NICs' addresses and `addresses`.
    async fn create_vm(
        &self,
        vm: &Vm,
        task: &Task,
        placement: &PlacementRequest,
        guest: Option<&GuestSettings>,
    ) -> Result<Vm>;
    /// One VM.
    async fn get_vm(&self, id: VmId) -> Result<Vm>;
    /// The VMs `filter` passes, newest first.
    async fn list_vms(&self, filter: &VmFilter, page: &PageRequest) -> Result<Page<Vm>>;
    /// Saves a VM's name, state, image and hostname.
    async fn update_vm(&self, vm: &Vm) -> Result<()>;
    /// Changes a VM's size if its node has room under its ratios
    /// ([`check_resize`](crate::placement::check_resize));
    /// [`NoCapacity`](crate::Error::NoCapacity) otherwise. Setting the size it already has
    /// succeeds and changes nothing.
    async fn resize_vm(&self, id: VmId, target: Demand) -> Result<Vm>;
    /// Gives the VM to `owner` (to no one with `None`) in one transaction: what it holds
    /// must fit in the new owner's quota beside what they hold.
    async fn set_vm_owner(&self, id: VmId, owner: Option<UserId>) -> Result<Vm>;
    /// Removes a VM, releases its leases and gives its node's capacity back (and what a
    /// migration still holds for it on another node).
    async fn delete_vm(&self, id: VmId) -> Result<()>;
    /// What vmm keeps about the VM's guest.
    async fn vm_guest(&self, id: VmId) -> Result<VmGuest>;
    /// Replaces what vmm keeps about the VM's guest.
    async fn set_vm_guest(&self, id: VmId, guest: &VmGuest) -> Result<()>;
    /// Queues `task`, a reinstall of its VM, with the guest settings it will apply (as
    /// `next`), in one transaction: the VM must exist, allow a reinstall in its state and
    /// have no active task; the image the task names must exist.
    async fn queue_reinstall(&self, task: &Task, next: &GuestSettings) -> Result<()>;
    /// Leases `address` (or the lowest free one) from `pool` for a new NIC of the VM on the
    /// pool's network, and queues `task` with the leased address in its parameters, in one
    /// transaction: the VM must exist, allow the change in its state and have no active
    /// task. Returns the VM with the new NIC.
    async fn add_vm_address(
        &self,
        id: VmId,
        pool: PoolId,
        address: Option<IpAddr>,
        task: &Task,
    ) -> Result<Vm>;
    /// Ends the lease of `address` and removes the NIC that held it. Returns the VM.
    async fn remove_vm_address(&self, id: VmId, address: IpAddr) -> Result<Vm>;
    /// The VMs placed on `node`.
    async fn vms_on_node(&self, node: NodeId) -> Result<Vec<Vm>>;
    /// Records what the VM's domain was seen doing, in one transaction with its
    /// `vm.drifted` event when that differs from the VM's state, unless the VM is being
    /// made or removed, a task holds it, or nothing changed. Returns whether it recorded.
    async fn observe_vm(&self, id: VmId, observed: ObservedState, at: DateTime<Utc>) -> Result<bool>;
}
