//! [`InMemoryHypervisor`]: a node in memory, with failures and hangs on demand, and
//! [`InMemoryConnector`], which opens `memory://NAME` URIs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::lock;
use crate::error::{Error, Result};
use crate::hypervisor::{
    Connector, DomainInfo, DomainSpec, Hypervisor, HypervisorCapabilities, NodeInfo, PowerState, VolumeInfo,
};
use crate::id::VmId;
use crate::node::{Capacity, VirtType};

/// A call on a [`InMemoryHypervisor`], to make it fail on purpose.
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
    /// The call never returns, and does nothing (a node that stopped answering).
    Hang,
    /// The call does what it does, then never returns (a node that stopped answering
    /// before it could say so; or a worker that died right after).
    HangAfter,
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
/// use vmm_core::{memory::{HypervisorCall, InMemoryHypervisor}, Hypervisor, VmId};
/// let hv = InMemoryHypervisor::new("memory://n1");
/// hv.fail_next(HypervisorCall::CreateVolume);
/// assert!(hv.create_volume(VmId::new(), 1).await.is_err());
/// assert!(hv.create_volume(VmId::new(), 1).await.is_ok());
/// # });
/// ```
#[derive(Debug)]
pub struct InMemoryHypervisor {
    uri: String,
    capacity: Capacity,
    state: Mutex<HvState>,
}

/// The capacity a [`InMemoryHypervisor`] reports unless told otherwise.
pub const DEFAULT_MEMORY_CAPACITY: Capacity = Capacity { cpus: 16, memory_mib: 64 * 1024, storage_gib: 1000 };

impl InMemoryHypervisor {
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

    /// Makes every call of `call` fail with a backend error until [`heal`](Self::heal).
    pub fn fail_always(&self, call: HypervisorCall) {
        self.fail_always_as(call, Failure::Backend);
    }

    /// Makes every call of `call` fail as `failure` says until [`heal`](Self::heal).
    pub fn fail_always_as(&self, call: HypervisorCall, failure: Failure) {
        lock(&self.state).failures.insert(call, (None, failure));
    }

    /// Stops injecting failures.
    pub fn heal(&self) {
        lock(&self.state).failures.clear();
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<HypervisorCall> {
        lock(&self.state).calls.clone()
    }

    /// How many times `call` was made.
    pub fn count(&self, call: HypervisorCall) -> usize {
        lock(&self.state).calls.iter().filter(|&&c| c == call).count()
    }

    /// How many domains are defined.
    pub fn domain_count(&self) -> usize {
        lock(&self.state).domains.len()
    }

    /// How many volumes exist.
    pub fn volume_count(&self) -> usize {
        lock(&self.state).volumes.len()
    }

    /// Records `call` and applies an injected failure: an error, a hang, or a hang after
    /// the call's effect ([`Gate::pass`]).
    async fn gate(&self, call: HypervisorCall) -> Result<Gate> {
        let failure = {
            let mut s = lock(&self.state);
            s.calls.push(call);
            match s.failures.get_mut(&call) {
                None => None,
                Some((left, failure)) => {
                    let failure = *failure;
                    match left {
                        Some(1) => {
                            s.failures.remove(&call);
                        }
                        Some(n) => *n -= 1,
                        None => {}
                    }
                    Some(failure)
                }
            }
        };
        let what = || format!("injected failure in {call:?}");
        match failure {
            None => Ok(Gate { hang_after: false }),
            Some(Failure::Backend) => Err(Error::backend(self.uri.clone(), what())),
            Some(Failure::Unavailable) => Err(Error::unavailable(self.uri.clone(), what())),
            Some(Failure::Unsupported) => Err(Error::unsupported(self.uri.clone(), what())),
            Some(Failure::Hang) => std::future::pending().await,
            Some(Failure::HangAfter) => Ok(Gate { hang_after: true }),
        }
    }

    fn state(&self) -> MutexGuard<'_, HvState> {
        lock(&self.state)
    }

    async fn power(&self, call: HypervisorCall, vm: VmId, from: &[PowerState], to: PowerState) -> Result<()> {
        let gate = self.gate(call).await?;
        let result = {
            let mut s = self.state();
            match s.domains.get_mut(&vm) {
                None => Err(Error::VmNotFound { id: vm }),
                Some((_, state)) if !from.contains(state) => {
                    Err(Error::conflict(format!("domain {} is {state:?}", vm.domain_name())))
                }
                Some((_, state)) => {
                    *state = to;
                    Ok(())
                }
            }
        };
        gate.pass().await;
        result
    }
}

/// What [`InMemoryHypervisor::gate`] decided: pass after the call's effect, or hang there.
struct Gate {
    hang_after: bool,
}

impl Gate {
    async fn pass(self) {
        if self.hang_after {
            std::future::pending::<()>().await;
        }
    }
}

fn info(vm: VmId, spec: &DomainSpec, state: PowerState) -> DomainInfo {
    DomainInfo { vm_id: vm, title: spec.title.clone(), state, vcpus: spec.vcpus, memory_mib: spec.memory_mib }
}

#[async_trait]
impl Hypervisor for InMemoryHypervisor {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn capabilities(&self) -> HypervisorCapabilities {
        HypervisorCapabilities { shutdown: true, reboot: true, suspend: true, resize_volume: true }
    }

    async fn node_info(&self) -> Result<NodeInfo> {
        let gate = self.gate(HypervisorCall::NodeInfo).await?;
        let hostname = self.uri.trim_start_matches("memory://").to_owned();
        gate.pass().await;
        Ok(NodeInfo { capacity: self.capacity, hostname })
    }

    async fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        let gate = self.gate(HypervisorCall::ListDomains).await?;
        let out = self.state().domains.iter().map(|(id, (spec, st))| info(*id, spec, *st)).collect();
        gate.pass().await;
        Ok(out)
    }

    async fn domain(&self, vm: VmId) -> Result<Option<DomainInfo>> {
        let gate = self.gate(HypervisorCall::Domain).await?;
        let out = self.state().domains.get(&vm).map(|(spec, st)| info(vm, spec, *st));
        gate.pass().await;
        Ok(out)
    }

    async fn define_domain(&self, spec: &DomainSpec) -> Result<()> {
        let gate = self.gate(HypervisorCall::DefineDomain).await?;
        let result = {
            let mut s = self.state();
            if s.volumes.contains_key(&spec.vm_id) {
                let state = s.domains.get(&spec.vm_id).map_or(PowerState::Shutoff, |(_, st)| *st);
                s.domains.insert(spec.vm_id, (spec.clone(), state));
                Ok(())
            } else {
                Err(Error::invalid("disk", format!("volume {} does not exist", spec.vm_id.volume_name())))
            }
        };
        gate.pass().await;
        result
    }

    async fn undefine_domain(&self, vm: VmId) -> Result<()> {
        let gate = self.gate(HypervisorCall::UndefineDomain).await?;
        let result = {
            let mut s = self.state();
            match s.domains.get(&vm) {
                None => Err(Error::VmNotFound { id: vm }),
                Some((_, PowerState::Shutoff | PowerState::Crashed)) => {
                    s.domains.remove(&vm);
                    Ok(())
                }
                Some((_, st)) => Err(Error::conflict(format!("domain {} is {st:?}", vm.domain_name()))),
            }
        };
        gate.pass().await;
        result
    }

    async fn start(&self, vm: VmId) -> Result<()> {
        self.power(
            HypervisorCall::Start,
            vm,
            &[PowerState::Shutoff, PowerState::Crashed],
            PowerState::Running,
        )
        .await
    }

    async fn stop(&self, vm: VmId) -> Result<()> {
        let from = [PowerState::Running, PowerState::Paused, PowerState::Other];
        self.power(HypervisorCall::Stop, vm, &from, PowerState::Shutoff).await
    }

    async fn shutdown(&self, vm: VmId, _timeout: Duration) -> Result<()> {
        self.power(HypervisorCall::Shutdown, vm, &[PowerState::Running], PowerState::Shutoff).await
    }

    async fn reboot(&self, vm: VmId) -> Result<()> {
        self.power(HypervisorCall::Reboot, vm, &[PowerState::Running], PowerState::Running).await
    }

    async fn suspend(&self, vm: VmId) -> Result<()> {
        self.power(HypervisorCall::Suspend, vm, &[PowerState::Running], PowerState::Paused).await
    }

    async fn resume(&self, vm: VmId) -> Result<()> {
        self.power(HypervisorCall::Resume, vm, &[PowerState::Paused], PowerState::Running).await
    }

    async fn create_volume(&self, vm: VmId, size_gib: u64) -> Result<VolumeInfo> {
        let gate = self.gate(HypervisorCall::CreateVolume).await?;
        let result = {
            match self.state().volumes.entry(vm) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    Err(Error::conflict(format!("volume {} exists", vm.volume_name())))
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(size_gib);
                    Ok(VolumeInfo { name: vm.volume_name(), capacity_gib: size_gib })
                }
            }
        };
        gate.pass().await;
        result
    }

    async fn volume(&self, vm: VmId) -> Result<Option<VolumeInfo>> {
        let gate = self.gate(HypervisorCall::Volume).await?;
        let out = self
            .state()
            .volumes
            .get(&vm)
            .map(|&gib| VolumeInfo { name: vm.volume_name(), capacity_gib: gib });
        gate.pass().await;
        Ok(out)
    }

    async fn resize_volume(&self, vm: VmId, size_gib: u64) -> Result<()> {
        let gate = self.gate(HypervisorCall::ResizeVolume).await?;
        let result = {
            let mut s = self.state();
            match s.volumes.get_mut(&vm) {
                None => Err(Error::VmNotFound { id: vm }),
                Some(size) if size_gib < *size => Err(Error::invalid("disk_gib", "volumes only grow")),
                Some(size) => {
                    *size = size_gib;
                    Ok(())
                }
            }
        };
        gate.pass().await;
        result
    }

    async fn delete_volume(&self, vm: VmId) -> Result<()> {
        let gate = self.gate(HypervisorCall::DeleteVolume).await?;
        let result = {
            let mut s = self.state();
            if s.domains.contains_key(&vm) {
                Err(Error::conflict(format!("volume {} is in use", vm.volume_name())))
            } else {
                s.volumes.remove(&vm).map(drop).ok_or(Error::VmNotFound { id: vm })
            }
        };
        gate.pass().await;
        result
    }
}
/// Opens `memory://NAME[?cpus=N&memory_mib=N&storage_gib=N]` URIs: one [`InMemoryHypervisor`]
/// per URI, kept so that tests can reach it with [`get`](Self::get).
#[derive(Debug, Default)]
pub struct InMemoryConnector {
    nodes: Mutex<HashMap<String, Arc<InMemoryHypervisor>>>,
    unreachable: Mutex<BTreeSet<String>>,
}

impl InMemoryConnector {
    /// A connector with no nodes opened yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node opened at `uri`, if any.
    pub fn get(&self, uri: &str) -> Option<Arc<InMemoryHypervisor>> {
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
impl Connector for InMemoryConnector {
    async fn connect(&self, uri: &str, _virt_type: VirtType) -> Result<Arc<dyn Hypervisor>> {
        let capacity = Self::parse(uri)?;
        if lock(&self.unreachable).contains(uri) {
            return Err(Error::Unavailable { backend: uri.to_owned(), reason: "connection refused".into() });
        }
        let mut nodes = lock(&self.nodes);
        let hv = nodes
            .entry(uri.to_owned())
            .or_insert_with(|| Arc::new(InMemoryHypervisor::with_capacity(uri, capacity)))
            .clone();
        Ok(hv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_uris_are_parsed() {
        assert_eq!(InMemoryConnector::parse("memory://n1").unwrap(), DEFAULT_MEMORY_CAPACITY);
        let cap = InMemoryConnector::parse("memory://n1?cpus=2&memory_mib=4096&storage_gib=50").unwrap();
        assert_eq!(cap, Capacity { cpus: 2, memory_mib: 4096, storage_gib: 50 });
        for bad in ["qemu:///system", "memory://", "memory://a b", "memory://n?cpus=x", "memory://n?gpus=1"] {
            assert!(InMemoryConnector::parse(bad).is_err(), "{bad}");
        }
    }
}
