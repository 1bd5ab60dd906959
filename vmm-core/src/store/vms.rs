//! The VMs area of the [`Store`](super::Store).

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{NodeId, VmId};
use crate::page::{Page, PageRequest};
use crate::placement::{Demand, Strategy};
use crate::task::Task;
use crate::vm::Vm;

/// How the store places a new VM inside [`VmStore::create_vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementRequest {
    /// Only this node.
    pub pinned: Option<NodeId>,
    /// How to choose.
    pub strategy: Strategy,
}

/// VMs. Creating, resizing and deleting one changes its node's usage in the same
/// transaction, so placement reads one row per node, however many VMs there are.
#[async_trait]
pub trait VmStore: Send + Sync {
    /// Creates a VM and its create task in one transaction: places it on a node under the
    /// overcommit ratios, leases an address from `vm.ip_pool_id` if set, inserts both, and
    /// counts the VM in its node's usage. Returns the VM with `node_id` and `addresses`.
    async fn create_vm(&self, vm: &Vm, task: &Task, placement: PlacementRequest) -> Result<Vm>;
    /// One VM.
    async fn get_vm(&self, id: VmId) -> Result<Vm>;
    /// VMs, newest first.
    async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>>;
    /// Saves a VM's name and state.
    async fn update_vm(&self, vm: &Vm) -> Result<()>;
    /// Changes a VM's size if its node has room under its ratios
    /// ([`check_resize`](crate::placement::check_resize));
    /// [`NoCapacity`](crate::Error::NoCapacity) otherwise. Setting the size it already has
    /// succeeds and changes nothing.
    async fn resize_vm(&self, id: VmId, target: Demand) -> Result<Vm>;
    /// Removes a VM, releases its leases and gives its node's capacity back.
    async fn delete_vm(&self, id: VmId) -> Result<()>;
}
