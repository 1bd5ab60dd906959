//! The [`Store`] trait: persistence, with the atomic operations correctness needs. Each
//! method is one transaction. Implementations: the in-memory
//! [`MemoryStore`](crate::memory::MemoryStore) here, SQLite and PostgreSQL in `vmm-backends`.

use std::fmt::Debug;
use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::id::{NodeId, PoolId, TaskId, VmId};
use crate::ipam::{IpLease, IpPool};
use crate::node::Node;
use crate::page::{Page, PageRequest};
use crate::placement::Strategy;
use crate::task::{Task, TaskFilter};
use crate::vm::{Vm, VmAction};

/// How the store places a new VM inside [`Store::create_vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementRequest {
    /// Only this node.
    pub pinned: Option<NodeId>,
    /// How to choose.
    pub strategy: Strategy,
}

/// Persistence for vmm. Every method is atomic: it happens whole or not at all.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Adds a node. A duplicate name is a [`Conflict`](crate::Error::Conflict).
    async fn insert_node(&self, node: &Node) -> Result<()>;
    /// One node, with `allocated` computed from its VMs.
    async fn get_node(&self, id: NodeId) -> Result<Node>;
    /// Nodes, newest first, with `allocated` computed.
    async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>>;
    /// Replaces a node's name, ratios and state. A duplicate name is a conflict.
    async fn update_node(&self, node: &Node) -> Result<()>;
    /// Removes a node; a conflict while VMs live on it.
    async fn delete_node(&self, id: NodeId) -> Result<()>;

    /// Adds a pool. A duplicate name is a conflict.
    async fn insert_pool(&self, pool: &IpPool) -> Result<()>;
    /// One pool.
    async fn get_pool(&self, id: PoolId) -> Result<IpPool>;
    /// Pools, newest first.
    async fn list_pools(&self, page: &PageRequest) -> Result<Page<IpPool>>;
    /// Removes a pool; a conflict while it has leases.
    async fn delete_pool(&self, id: PoolId) -> Result<()>;
    /// Leases `address`, or the lowest free address when `None`, to `vm` (or to nobody).
    /// [`PoolExhausted`](crate::Error::PoolExhausted) when none is free,
    /// [`AddressInUse`](crate::Error::AddressInUse) when `address` is taken,
    /// [`Invalid`](crate::Error::Invalid) when it is not leasable from the pool.
    async fn allocate_lease(
        &self,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease>;
    /// Ends a lease held by nobody; a conflict when a VM holds it.
    async fn release_lease(&self, pool: PoolId, address: IpAddr) -> Result<()>;
    /// A pool's leases in address order (the cursor is the last address).
    async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>>;

    /// Creates a VM and its create task in one transaction: places it on a node under the
    /// overcommit ratios, leases an address from `vm.ip_pool_id` if set, inserts both.
    /// Returns the VM with `node_id` and `addresses` filled in.
    async fn create_vm(&self, vm: &Vm, task: &Task, placement: PlacementRequest) -> Result<Vm>;
    /// One VM.
    async fn get_vm(&self, id: VmId) -> Result<Vm>;
    /// VMs, newest first.
    async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>>;
    /// Saves a VM's name and state.
    async fn update_vm(&self, vm: &Vm) -> Result<()>;
    /// Changes a VM's size if its node has room under its ratios (the VM's own share
    /// counted as free); [`NoCapacity`](crate::Error::NoCapacity) otherwise.
    async fn resize_vm(&self, id: VmId, vcpus: u32, memory_mib: u64, disk_gib: u64) -> Result<Vm>;
    /// Removes a VM and releases its leases.
    async fn delete_vm(&self, id: VmId) -> Result<()>;

    /// Queues a task. When it targets a VM: the VM must exist, `action` (if given) must be
    /// legal in its state, and the VM must have no other active task
    /// ([`ActiveTask`](crate::Error::ActiveTask) naming it otherwise).
    async fn enqueue_task(&self, task: &Task, action: Option<VmAction>) -> Result<()>;
    /// One task.
    async fn get_task(&self, id: TaskId) -> Result<Task>;
    /// Tasks, newest first.
    async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>>;
    /// Claims the oldest claimable task (queued, or running under a lease expired at `now`)
    /// for `owner` until `until`. Two workers never claim the same task.
    async fn claim_task(&self, owner: &str, now: DateTime<Utc>, until: DateTime<Utc>)
        -> Result<Option<Task>>;
    /// Extends `owner`'s lease; [`LeaseLost`](crate::Error::LeaseLost) if it no longer holds it.
    async fn renew_lease(
        &self,
        id: TaskId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<()>;
    /// Saves a running task's progress, steps, state, error and end (clearing the lease once
    /// it has ended), if `owner` still holds it; `LeaseLost` otherwise.
    async fn save_task(&self, task: &Task, owner: &str, now: DateTime<Utc>) -> Result<()>;
    /// Cancels a queued task at once, or asks a running one to stop; returns the task.
    /// A conflict for a task that has ended.
    async fn cancel_task(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task>;
}
