//! In-memory fakes of every trait: [`MemoryStore`], [`MemoryHypervisor`] and
//! [`MemoryConnector`] (which serves `memory://NAME` URIs). They keep the same rules as the
//! real backends and pass the same conformance suites; they back doctests, unit tests,
//! server tests and Python tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::hypervisor::{
    Connector, DomainInfo, DomainSpec, Hypervisor, HypervisorCapabilities, NodeInfo, PowerState, VolumeInfo,
};
use crate::id::{NodeId, PoolId, TaskId, VmId};
use crate::ipam::{IpAllocator, IpLease, IpPool};
use crate::node::{Capacity, Node, Usage, VirtType};
use crate::page::{Page, PageRequest};
use crate::placement::{self, Demand};
use crate::store::{PlacementRequest, Store};
use crate::task::{Task, TaskFilter, TaskState};
use crate::vm::{Vm, VmAction};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct PoolState {
    pool: IpPool,
    alloc: IpAllocator,
    leases: BTreeMap<IpAddr, IpLease>,
}

#[derive(Debug, Default)]
struct StoreState {
    nodes: BTreeMap<NodeId, Node>,
    pools: BTreeMap<PoolId, PoolState>,
    vms: BTreeMap<VmId, Vm>,
    tasks: BTreeMap<TaskId, Task>,
    /// Tasks that are queued or running.
    active: BTreeSet<TaskId>,
    /// The active task of each VM.
    vm_active: HashMap<VmId, TaskId>,
}

impl StoreState {
    fn usage(&self) -> HashMap<NodeId, Usage> {
        let mut usage: HashMap<NodeId, Usage> = HashMap::new();
        for vm in self.vms.values() {
            let u = usage.entry(vm.node_id).or_default();
            u.vms += 1;
            u.vcpus += u64::from(vm.vcpus);
            u.memory_mib += vm.memory_mib;
            u.storage_gib += vm.disk_gib;
        }
        usage
    }

    fn nodes_with_usage(&self) -> Vec<Node> {
        let usage = self.usage();
        self.nodes
            .values()
            .map(|n| Node { allocated: usage.get(&n.id).copied().unwrap_or_default(), ..n.clone() })
            .collect()
    }

    fn name_taken_by_other_node(&self, node: &Node) -> bool {
        self.nodes.values().any(|n| n.name == node.name && n.id != node.id)
    }

    fn pool_mut(&mut self, id: PoolId) -> Result<&mut PoolState> {
        self.pools.get_mut(&id).ok_or(Error::PoolNotFound { id })
    }

    fn lease(
        &mut self,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease> {
        let ps = self.pool_mut(pool)?;
        let address = match address {
            Some(a) => {
                ps.pool.check_usable(a)?;
                if !ps.alloc.allocate(a) {
                    return Err(Error::AddressInUse { pool, address: a });
                }
                a
            }
            None => ps.alloc.allocate_next().ok_or(Error::PoolExhausted { pool })?,
        };
        let lease = IpLease { pool_id: pool, address, vm_id: vm, created_at: now };
        ps.leases.insert(address, lease.clone());
        Ok(lease)
    }

    fn finish(&mut self, task: &Task) {
        if !task.state.is_active() {
            self.active.remove(&task.id);
            if let Some(vm) = task.vm_id {
                if self.vm_active.get(&vm) == Some(&task.id) {
                    self.vm_active.remove(&vm);
                }
            }
        }
    }
}

/// A [`Store`] in memory. Every method takes one lock, so each is atomic.
///
/// ```
/// # futures::executor::block_on(async {
/// use vmm_core::{memory::MemoryStore, IpPool, IpPoolSpec, Store};
/// let store = MemoryStore::new();
/// let pool = IpPool::from_spec(&IpPoolSpec::new("p", "192.0.2.0/30"), chrono::Utc::now()).unwrap();
/// store.insert_pool(&pool).await.unwrap();
/// let lease = store.allocate_lease(pool.id, None, None, chrono::Utc::now()).await.unwrap();
/// assert_eq!(lease.address.to_string(), "192.0.2.1");
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<StoreState>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert_node(&self, node: &Node) -> Result<()> {
        let mut s = lock(&self.state);
        if s.name_taken_by_other_node(node) || s.nodes.contains_key(&node.id) {
            return Err(Error::conflict(format!("a node named {:?} exists", node.name)));
        }
        s.nodes.insert(node.id, Node { allocated: Usage::default(), ..node.clone() });
        Ok(())
    }

    async fn get_node(&self, id: NodeId) -> Result<Node> {
        let s = lock(&self.state);
        s.nodes_with_usage().into_iter().find(|n| n.id == id).ok_or(Error::NodeNotFound { id })
    }

    async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>> {
        let limit = page.limit()?;
        let before: Option<NodeId> = page.cursor()?;
        let mut nodes = lock(&self.state).nodes_with_usage();
        nodes.retain(|n| before.is_none_or(|b| n.id < b));
        let items = nodes.into_iter().rev().take(limit + 1).collect();
        Ok(Page::from_overfetch(items, limit, |n: &Node| n.id.to_string()))
    }

    async fn update_node(&self, node: &Node) -> Result<()> {
        let mut s = lock(&self.state);
        if !s.nodes.contains_key(&node.id) {
            return Err(Error::NodeNotFound { id: node.id });
        }
        if s.name_taken_by_other_node(node) {
            return Err(Error::conflict(format!("a node named {:?} exists", node.name)));
        }
        let stored = s.nodes.get_mut(&node.id).expect("checked above");
        stored.name.clone_from(&node.name);
        stored.cpu_overcommit = node.cpu_overcommit;
        stored.memory_overcommit = node.memory_overcommit;
        stored.state = node.state;
        stored.capacity = node.capacity;
        Ok(())
    }

    async fn delete_node(&self, id: NodeId) -> Result<()> {
        let mut s = lock(&self.state);
        if !s.nodes.contains_key(&id) {
            return Err(Error::NodeNotFound { id });
        }
        let vms = s.vms.values().filter(|v| v.node_id == id).count();
        if vms > 0 {
            return Err(Error::conflict(format!("node {id} still has {vms} VMs")));
        }
        s.nodes.remove(&id);
        Ok(())
    }

    async fn insert_pool(&self, pool: &IpPool) -> Result<()> {
        let mut s = lock(&self.state);
        if s.pools.values().any(|p| p.pool.name == pool.name) || s.pools.contains_key(&pool.id) {
            return Err(Error::conflict(format!("a pool named {:?} exists", pool.name)));
        }
        let state = PoolState { pool: pool.clone(), alloc: IpAllocator::new(pool), leases: BTreeMap::new() };
        s.pools.insert(pool.id, state);
        Ok(())
    }

    async fn get_pool(&self, id: PoolId) -> Result<IpPool> {
        let s = lock(&self.state);
        s.pools.get(&id).map(|p| p.pool.clone()).ok_or(Error::PoolNotFound { id })
    }

    async fn list_pools(&self, page: &PageRequest) -> Result<Page<IpPool>> {
        let limit = page.limit()?;
        let before: Option<PoolId> = page.cursor()?;
        let s = lock(&self.state);
        let pools = match before {
            Some(b) => s.pools.range(..b),
            None => s.pools.range(..),
        };
        let items = pools.rev().take(limit + 1).map(|(_, p)| p.pool.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |p: &IpPool| p.id.to_string()))
    }

    async fn delete_pool(&self, id: PoolId) -> Result<()> {
        let mut s = lock(&self.state);
        let ps = s.pool_mut(id)?;
        if !ps.leases.is_empty() {
            return Err(Error::conflict(format!("pool {id} still has {} leases", ps.leases.len())));
        }
        s.pools.remove(&id);
        Ok(())
    }

    async fn allocate_lease(
        &self,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease> {
        lock(&self.state).lease(pool, address, vm, now)
    }

    async fn release_lease(&self, pool: PoolId, address: IpAddr) -> Result<()> {
        let mut s = lock(&self.state);
        let ps = s.pool_mut(pool)?;
        match ps.leases.get(&address) {
            None => Err(Error::LeaseNotFound { pool, address }),
            Some(IpLease { vm_id: Some(vm), .. }) => {
                Err(Error::conflict(format!("{address} is held by VM {vm}")))
            }
            Some(_) => {
                ps.leases.remove(&address);
                ps.alloc.release(address);
                Ok(())
            }
        }
    }

    async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>> {
        let limit = page.limit()?;
        let after: Option<IpAddr> = page.cursor()?;
        let s = lock(&self.state);
        let ps = s.pools.get(&pool).ok_or(Error::PoolNotFound { id: pool })?;
        let range = match after {
            Some(a) => ps.leases.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => ps.leases.range(..),
        };
        let items = range.take(limit + 1).map(|(_, l)| l.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |l| l.address.to_string()))
    }

    async fn create_vm(&self, vm: &Vm, task: &Task, placement: PlacementRequest) -> Result<Vm> {
        let mut s = lock(&self.state);
        if s.vms.contains_key(&vm.id) || s.tasks.contains_key(&task.id) {
            return Err(Error::conflict(format!("VM {} exists", vm.id)));
        }
        let demand = Demand { vcpus: vm.vcpus, memory_mib: vm.memory_mib, disk_gib: vm.disk_gib };
        let nodes = s.nodes_with_usage();
        let chosen = placement::place(&demand, &nodes, placement.strategy, placement.pinned)?;
        let mut vm = Vm { node_id: chosen.node_id, addresses: Vec::new(), ..vm.clone() };
        if let Some(pool) = vm.ip_pool_id {
            // Last fallible step: nothing to undo if it fails.
            let lease = s.lease(pool, None, Some(vm.id), vm.created_at)?;
            vm.addresses.push(lease.address);
        }
        s.vms.insert(vm.id, vm.clone());
        s.tasks.insert(task.id, task.clone());
        s.active.insert(task.id);
        s.vm_active.insert(vm.id, task.id);
        Ok(vm)
    }

    async fn get_vm(&self, id: VmId) -> Result<Vm> {
        lock(&self.state).vms.get(&id).cloned().ok_or(Error::VmNotFound { id })
    }

    async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>> {
        let limit = page.limit()?;
        let before: Option<VmId> = page.cursor()?;
        let s = lock(&self.state);
        let items = match before {
            Some(b) => s.vms.range(..b).rev().take(limit + 1).map(|(_, v)| v.clone()).collect(),
            None => s.vms.values().rev().take(limit + 1).cloned().collect(),
        };
        Ok(Page::from_overfetch(items, limit, |v: &Vm| v.id.to_string()))
    }

    async fn update_vm(&self, vm: &Vm) -> Result<()> {
        let mut s = lock(&self.state);
        let stored = s.vms.get_mut(&vm.id).ok_or(Error::VmNotFound { id: vm.id })?;
        stored.name.clone_from(&vm.name);
        stored.state = vm.state;
        Ok(())
    }

    async fn resize_vm(&self, id: VmId, vcpus: u32, memory_mib: u64, disk_gib: u64) -> Result<Vm> {
        let mut s = lock(&self.state);
        let vm = s.vms.get(&id).cloned().ok_or(Error::VmNotFound { id })?;
        let mut node = s
            .nodes_with_usage()
            .into_iter()
            .find(|n| n.id == vm.node_id)
            .ok_or(Error::NodeNotFound { id: vm.node_id })?;
        node.allocated.vcpus -= u64::from(vm.vcpus);
        node.allocated.memory_mib -= vm.memory_mib;
        node.allocated.storage_gib -= vm.disk_gib;
        // A node in maintenance still lets its VMs resize; only capacity counts here.
        node.state = crate::node::NodeState::Online;
        if let Some(reason) = placement::check(&node, &Demand { vcpus, memory_mib, disk_gib }) {
            let rejection = placement::Rejection { node_id: node.id, node_name: node.name, reason };
            return Err(Error::NoCapacity { rejections: vec![rejection] });
        }
        let stored = s.vms.get_mut(&id).expect("read above");
        stored.vcpus = vcpus;
        stored.memory_mib = memory_mib;
        stored.disk_gib = disk_gib;
        Ok(stored.clone())
    }

    async fn delete_vm(&self, id: VmId) -> Result<()> {
        let mut s = lock(&self.state);
        let vm = s.vms.remove(&id).ok_or(Error::VmNotFound { id })?;
        for ps in s.pools.values_mut() {
            let held: Vec<IpAddr> =
                ps.leases.values().filter(|l| l.vm_id == Some(id)).map(|l| l.address).collect();
            for a in held {
                ps.leases.remove(&a);
                ps.alloc.release(a);
            }
        }
        drop(vm);
        Ok(())
    }

    async fn enqueue_task(&self, task: &Task, action: Option<VmAction>) -> Result<()> {
        let mut s = lock(&self.state);
        if s.tasks.contains_key(&task.id) {
            return Err(Error::conflict(format!("task {} exists", task.id)));
        }
        if let Some(vm_id) = task.vm_id {
            let vm = s.vms.get(&vm_id).ok_or(Error::VmNotFound { id: vm_id })?;
            if let Some(&active) = s.vm_active.get(&vm_id) {
                return Err(Error::ActiveTask { vm: vm_id, task: active });
            }
            if let Some(action) = action {
                vm.state.apply(vm_id, action)?;
            }
            s.vm_active.insert(vm_id, task.id);
        }
        s.tasks.insert(task.id, task.clone());
        s.active.insert(task.id);
        Ok(())
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        lock(&self.state).tasks.get(&id).cloned().ok_or(Error::TaskNotFound { id })
    }

    async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
        let limit = page.limit()?;
        let before: Option<TaskId> = page.cursor()?;
        let s = lock(&self.state);
        let all = match before {
            Some(b) => s.tasks.range(..b),
            None => s.tasks.range(..),
        };
        let items =
            all.rev().map(|(_, t)| t).filter(|t| filter.matches(t)).take(limit + 1).cloned().collect();
        Ok(Page::from_overfetch(items, limit, |t: &Task| t.id.to_string()))
    }

    async fn claim_task(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Task>> {
        let mut s = lock(&self.state);
        let claimable = s.active.iter().copied().find(|id| s.tasks[id].is_claimable(now));
        let Some(task) = claimable.and_then(|id| s.tasks.get_mut(&id)) else {
            return Ok(None);
        };
        task.claim(owner, now, until);
        Ok(Some(task.clone()))
    }

    async fn renew_lease(
        &self,
        id: TaskId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let mut s = lock(&self.state);
        let task = s.tasks.get_mut(&id).ok_or(Error::TaskNotFound { id })?;
        match &mut task.lease {
            Some(lease)
                if task.state == TaskState::Running && lease.owner == owner && lease.expires_at > now =>
            {
                lease.expires_at = until;
                Ok(())
            }
            _ => Err(Error::LeaseLost { task: id }),
        }
    }

    async fn save_task(&self, task: &Task, owner: &str, now: DateTime<Utc>) -> Result<()> {
        let mut s = lock(&self.state);
        let stored = s.tasks.get_mut(&task.id).ok_or(Error::TaskNotFound { id: task.id })?;
        if !stored.is_leased_by(owner, now) {
            return Err(Error::LeaseLost { task: task.id });
        }
        let mut saved = task.clone();
        saved.cancel_requested |= stored.cancel_requested;
        if !saved.state.is_active() {
            saved.lease = None;
        } else {
            saved.lease.clone_from(&stored.lease);
        }
        *stored = saved.clone();
        s.finish(&saved);
        Ok(())
    }

    async fn cancel_task(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
        let mut s = lock(&self.state);
        let task = s.tasks.get_mut(&id).ok_or(Error::TaskNotFound { id })?;
        match task.state {
            TaskState::Queued => {
                task.state = TaskState::Cancelled;
                task.finished_at = Some(now);
                task.log(now, "cancelled before it started");
            }
            TaskState::Running => {
                if !task.cancel_requested {
                    task.cancel_requested = true;
                    task.log(now, "cancel requested");
                }
            }
            state => return Err(Error::conflict(format!("task {id} has already {state}"))),
        }
        let task = task.clone();
        s.finish(&task);
        Ok(task)
    }
}

/// A call on a [`MemoryHypervisor`], to make it fail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HypervisorCall {
    /// [`Hypervisor::node_info`].
    NodeInfo,
    /// [`Hypervisor::list_domains`].
    ListDomains,
    /// [`Hypervisor::domain`].
    Domain,
    /// [`Hypervisor::define_domain`].
    DefineDomain,
    /// [`Hypervisor::undefine_domain`].
    UndefineDomain,
    /// [`Hypervisor::start`].
    Start,
    /// [`Hypervisor::stop`].
    Stop,
    /// [`Hypervisor::shutdown`].
    Shutdown,
    /// [`Hypervisor::reboot`].
    Reboot,
    /// [`Hypervisor::suspend`].
    Suspend,
    /// [`Hypervisor::resume`].
    Resume,
    /// [`Hypervisor::create_volume`].
    CreateVolume,
    /// [`Hypervisor::volume`].
    Volume,
    /// [`Hypervisor::resize_volume`].
    ResizeVolume,
    /// [`Hypervisor::delete_volume`].
    DeleteVolume,
}

/// What an injected failure looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// [`Error::Backend`]: the call failed.
    Backend,
    /// [`Error::Unavailable`]: the node did not answer (retryable).
    Unavailable,
    /// [`Error::Unsupported`]: the node does not implement the call.
    Unsupported,
}

#[derive(Debug, Default)]
struct HvState {
    domains: BTreeMap<VmId, (DomainSpec, PowerState)>,
    volumes: BTreeMap<VmId, u64>,
    /// Calls that fail: how many more times (`None`: every time), and how.
    failures: HashMap<HypervisorCall, (Option<u32>, Failure)>,
    calls: Vec<HypervisorCall>,
}

/// A [`Hypervisor`] in memory, with failures on demand.
///
/// ```
/// # futures::executor::block_on(async {
/// use vmm_core::{memory::{HypervisorCall, MemoryHypervisor}, Hypervisor, VmId};
/// let hv = MemoryHypervisor::new("memory://n1");
/// hv.fail_next(HypervisorCall::CreateVolume);
/// assert!(hv.create_volume(VmId::new(), 1).await.is_err());
/// assert!(hv.create_volume(VmId::new(), 1).await.is_ok());
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryHypervisor {
    uri: String,
    capacity: Capacity,
    state: Mutex<HvState>,
}

/// The capacity a [`MemoryHypervisor`] reports unless told otherwise.
pub const DEFAULT_MEMORY_CAPACITY: Capacity = Capacity { cpus: 16, memory_mib: 64 * 1024, storage_gib: 1000 };

impl MemoryHypervisor {
    /// A node at `uri` with [`DEFAULT_MEMORY_CAPACITY`].
    pub fn new(uri: impl Into<String>) -> Self {
        Self::with_capacity(uri, DEFAULT_MEMORY_CAPACITY)
    }

    /// A node at `uri` with `capacity`.
    pub fn with_capacity(uri: impl Into<String>, capacity: Capacity) -> Self {
        Self { uri: uri.into(), capacity, state: Mutex::new(HvState::default()) }
    }

    /// Makes the next call of `call` fail with a backend error.
    pub fn fail_next(&self, call: HypervisorCall) {
        self.fail_next_as(call, Failure::Backend);
    }

    /// Makes the next call of `call` fail as `failure` says.
    pub fn fail_next_as(&self, call: HypervisorCall, failure: Failure) {
        lock(&self.state).failures.insert(call, (Some(1), failure));
    }

    /// Makes every call of `call` fail until [`heal`](Self::heal).
    pub fn fail_always(&self, call: HypervisorCall) {
        lock(&self.state).failures.insert(call, (None, Failure::Backend));
    }

    /// Stops injecting failures.
    pub fn heal(&self) {
        lock(&self.state).failures.clear();
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<HypervisorCall> {
        lock(&self.state).calls.clone()
    }

    /// How many domains are defined.
    pub fn domain_count(&self) -> usize {
        lock(&self.state).domains.len()
    }

    /// How many volumes exist.
    pub fn volume_count(&self) -> usize {
        lock(&self.state).volumes.len()
    }

    /// Records `call` and fails it if a failure was injected; returns the state.
    fn enter(&self, call: HypervisorCall) -> Result<MutexGuard<'_, HvState>> {
        let mut s = lock(&self.state);
        s.calls.push(call);
        let Some((left, failure)) = s.failures.get_mut(&call) else { return Ok(s) };
        let failure = *failure;
        match left {
            Some(1) => {
                s.failures.remove(&call);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        let what = format!("injected failure in {call:?}");
        Err(match failure {
            Failure::Backend => Error::backend(self.uri.clone(), what),
            Failure::Unavailable => Error::Unavailable { backend: self.uri.clone(), reason: what },
            Failure::Unsupported => Error::unsupported(self.uri.clone(), what),
        })
    }

    fn power(&self, call: HypervisorCall, vm: VmId, from: &[PowerState], to: PowerState) -> Result<()> {
        let mut s = self.enter(call)?;
        let (_, state) = s.domains.get_mut(&vm).ok_or(Error::VmNotFound { id: vm })?;
        if !from.contains(state) {
            return Err(Error::conflict(format!("domain {} is {state:?}", vm.domain_name())));
        }
        *state = to;
        Ok(())
    }
}

fn info(vm: VmId, spec: &DomainSpec, state: PowerState) -> DomainInfo {
    DomainInfo { vm_id: vm, title: spec.title.clone(), state, vcpus: spec.vcpus, memory_mib: spec.memory_mib }
}

#[async_trait]
impl Hypervisor for MemoryHypervisor {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn capabilities(&self) -> HypervisorCapabilities {
        HypervisorCapabilities { shutdown: true, reboot: true, suspend: true, resize_volume: true }
    }

    async fn node_info(&self) -> Result<NodeInfo> {
        drop(self.enter(HypervisorCall::NodeInfo)?);
        let hostname = self.uri.trim_start_matches("memory://").to_owned();
        Ok(NodeInfo { capacity: self.capacity, hostname })
    }

    async fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        let s = self.enter(HypervisorCall::ListDomains)?;
        Ok(s.domains.iter().map(|(id, (spec, st))| info(*id, spec, *st)).collect())
    }

    async fn domain(&self, vm: VmId) -> Result<Option<DomainInfo>> {
        let s = self.enter(HypervisorCall::Domain)?;
        Ok(s.domains.get(&vm).map(|(spec, st)| info(vm, spec, *st)))
    }

    async fn define_domain(&self, spec: &DomainSpec) -> Result<()> {
        let mut s = self.enter(HypervisorCall::DefineDomain)?;
        if !s.volumes.contains_key(&spec.vm_id) {
            return Err(Error::invalid(
                "disk",
                format!("volume {} does not exist", spec.vm_id.volume_name()),
            ));
        }
        let state = s.domains.get(&spec.vm_id).map_or(PowerState::Shutoff, |(_, st)| *st);
        s.domains.insert(spec.vm_id, (spec.clone(), state));
        Ok(())
    }

    async fn undefine_domain(&self, vm: VmId) -> Result<()> {
        let mut s = self.enter(HypervisorCall::UndefineDomain)?;
        match s.domains.get(&vm) {
            None => Err(Error::VmNotFound { id: vm }),
            Some((_, PowerState::Shutoff | PowerState::Crashed)) => {
                s.domains.remove(&vm);
                Ok(())
            }
            Some((_, st)) => Err(Error::conflict(format!("domain {} is {st:?}", vm.domain_name()))),
        }
    }

    async fn start(&self, vm: VmId) -> Result<()> {
        self.power(
            HypervisorCall::Start,
            vm,
            &[PowerState::Shutoff, PowerState::Crashed],
            PowerState::Running,
        )
    }

    async fn stop(&self, vm: VmId) -> Result<()> {
        self.power(
            HypervisorCall::Stop,
            vm,
            &[PowerState::Running, PowerState::Paused, PowerState::Other],
            PowerState::Shutoff,
        )
    }

    async fn shutdown(&self, vm: VmId, _timeout: Duration) -> Result<()> {
        self.power(HypervisorCall::Shutdown, vm, &[PowerState::Running], PowerState::Shutoff)
    }

    async fn reboot(&self, vm: VmId) -> Result<()> {
        self.power(HypervisorCall::Reboot, vm, &[PowerState::Running], PowerState::Running)
    }

    async fn suspend(&self, vm: VmId) -> Result<()> {
        self.power(HypervisorCall::Suspend, vm, &[PowerState::Running], PowerState::Paused)
    }

    async fn resume(&self, vm: VmId) -> Result<()> {
        self.power(HypervisorCall::Resume, vm, &[PowerState::Paused], PowerState::Running)
    }

    async fn create_volume(&self, vm: VmId, size_gib: u64) -> Result<VolumeInfo> {
        let mut s = self.enter(HypervisorCall::CreateVolume)?;
        if s.volumes.contains_key(&vm) {
            return Err(Error::conflict(format!("volume {} exists", vm.volume_name())));
        }
        s.volumes.insert(vm, size_gib);
        Ok(VolumeInfo { name: vm.volume_name(), capacity_gib: size_gib })
    }

    async fn volume(&self, vm: VmId) -> Result<Option<VolumeInfo>> {
        let s = self.enter(HypervisorCall::Volume)?;
        Ok(s.volumes.get(&vm).map(|&gib| VolumeInfo { name: vm.volume_name(), capacity_gib: gib }))
    }

    async fn resize_volume(&self, vm: VmId, size_gib: u64) -> Result<()> {
        let mut s = self.enter(HypervisorCall::ResizeVolume)?;
        let size = s.volumes.get_mut(&vm).ok_or(Error::VmNotFound { id: vm })?;
        if size_gib < *size {
            return Err(Error::invalid("disk_gib", "volumes only grow"));
        }
        *size = size_gib;
        Ok(())
    }

    async fn delete_volume(&self, vm: VmId) -> Result<()> {
        let mut s = self.enter(HypervisorCall::DeleteVolume)?;
        if s.domains.contains_key(&vm) {
            return Err(Error::conflict(format!("volume {} is in use", vm.volume_name())));
        }
        s.volumes.remove(&vm).map(drop).ok_or(Error::VmNotFound { id: vm })
    }
}

/// Opens `memory://NAME[?cpus=N&memory_mib=N&storage_gib=N]` URIs: one [`MemoryHypervisor`]
/// per URI, kept so that tests can reach it with [`get`](Self::get).
#[derive(Debug, Default)]
pub struct MemoryConnector {
    nodes: Mutex<HashMap<String, Arc<MemoryHypervisor>>>,
    unreachable: Mutex<BTreeSet<String>>,
}

impl MemoryConnector {
    /// A connector with no nodes opened yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node opened at `uri`, if any.
    pub fn get(&self, uri: &str) -> Option<Arc<MemoryHypervisor>> {
        lock(&self.nodes).get(uri).cloned()
    }

    /// Makes `uri` refuse connections (or accept them again).
    pub fn set_unreachable(&self, uri: &str, unreachable: bool) {
        let mut set = lock(&self.unreachable);
        if unreachable {
            set.insert(uri.to_owned());
        } else {
            set.remove(uri);
        }
    }

    fn parse(uri: &str) -> Result<Capacity> {
        let bad = |why: &str| Error::invalid("uri", format!("{uri:?}: {why}"));
        let rest = uri.strip_prefix("memory://").ok_or_else(|| bad("not a memory:// URI"))?;
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(bad("the name may hold only letters, digits, '-', '_' and '.'"));
        }
        let mut cap = DEFAULT_MEMORY_CAPACITY;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| bad("query is not key=value"))?;
            let n: u64 = v.parse().map_err(|_| bad("query values must be numbers"))?;
            match k {
                "cpus" => cap.cpus = u32::try_from(n).map_err(|_| bad("too many cpus"))?,
                "memory_mib" => cap.memory_mib = n,
                "storage_gib" => cap.storage_gib = n,
                _ => return Err(bad("unknown query key")),
            }
        }
        Ok(cap)
    }
}

#[async_trait]
impl Connector for MemoryConnector {
    async fn connect(&self, uri: &str, _virt_type: VirtType) -> Result<Arc<dyn Hypervisor>> {
        let capacity = Self::parse(uri)?;
        if lock(&self.unreachable).contains(uri) {
            return Err(Error::Unavailable { backend: uri.to_owned(), reason: "connection refused".into() });
        }
        let mut nodes = lock(&self.nodes);
        let hv = nodes
            .entry(uri.to_owned())
            .or_insert_with(|| Arc::new(MemoryHypervisor::with_capacity(uri, capacity)))
            .clone();
        Ok(hv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_uris_are_parsed() {
        assert_eq!(MemoryConnector::parse("memory://n1").unwrap(), DEFAULT_MEMORY_CAPACITY);
        let cap = MemoryConnector::parse("memory://n1?cpus=2&memory_mib=4096&storage_gib=50").unwrap();
        assert_eq!(cap, Capacity { cpus: 2, memory_mib: 4096, storage_gib: 50 });
        for bad in ["qemu:///system", "memory://", "memory://a b", "memory://n?cpus=x", "memory://n?gpus=1"] {
            assert!(MemoryConnector::parse(bad).is_err(), "{bad}");
        }
    }
}
