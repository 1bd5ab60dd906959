//! [`InMemoryHypervisor`]: a node in memory, with failures and hangs on demand, and
//! [`InMemoryConnector`], which opens `memory://NAME` URIs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

mod calls;
mod connector;
mod counters;
mod disks;
mod migrate;

pub use calls::{Failure, FakeVolume, HypervisorCall};
pub use connector::InMemoryConnector;

use super::lock;
use super::watch::Watchers;
use crate::console::{ConsoleKind, ConsoleStream};
use crate::error::{Error, Result};
use crate::hypervisor::{
    DomainInfo, DomainSpec, Hypervisor, HypervisorCapabilities, LifecycleCallback, LifecycleWatch, NicSpec,
    NodeInfo, PowerState, VolumeInfo, VolumeRead,
};
use crate::id::{ImageId, VmId};
use crate::image::ImageFormat;
use crate::network::Network;
use crate::node::Capacity;
use crate::snapshot::SnapshotInfo;
use crate::usage::{DomainStats, NodeStats};

#[derive(Debug, Default)]
struct HvState {
    domains: BTreeMap<VmId, (DomainSpec, PowerState)>,
    volumes: BTreeMap<VmId, FakeVolume>,
    /// Snapshots of each VM: their info, and the disk content and power state they hold.
    snapshots: BTreeMap<VmId, Vec<(SnapshotInfo, String, PowerState)>>,
    /// Disks kept aside during a reinstall.
    previous: BTreeMap<VmId, FakeVolume>,
    /// Images the node holds: their format and size.
    images: BTreeMap<ImageId, (ImageFormat, u64)>,
    seeds: BTreeMap<VmId, Vec<u8>>,
    console_logs: BTreeMap<VmId, Vec<u8>>,
    networks: BTreeSet<String>,
    /// NICs plugged into running domains since they started.
    live_nics: BTreeMap<VmId, Vec<NicSpec>>,
    /// Calls that fail: how many more times (`None`: every time), and how.
    failures: HashMap<HypervisorCall, (Option<u32>, Failure)>,
    calls: Vec<HypervisorCall>,
    /// Counters of running domains, and the CPU load each runs at (0 to 1).
    counters: counters::Counters,
    /// Powered off or cut off: every call fails as unavailable.
    unreachable: bool,
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
    watchers: Watchers,
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
        Self {
            uri: uri.into(),
            capacity,
            state: Mutex::new(HvState::default()),
            watchers: Watchers::default(),
        }
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

    /// The VM's disk volume.
    pub fn volume_of(&self, vm: VmId) -> Option<FakeVolume> {
        lock(&self.state).volumes.get(&vm).cloned()
    }

    /// Replaces what the VM's disk volume holds (its bytes for
    /// [`read_volume`](Hypervisor::read_volume)); false if it has none.
    pub fn set_volume_content(&self, vm: VmId, content: impl Into<String>) -> bool {
        match lock(&self.state).volumes.get_mut(&vm) {
            Some(v) => {
                v.content = content.into();
                true
            }
            None => false,
        }
    }

    /// The VM's seed volume.
    pub fn seed(&self, vm: VmId) -> Option<Vec<u8>> {
        lock(&self.state).seeds.get(&vm).cloned()
    }

    /// How many seeds, kept-aside disks and console logs exist.
    pub fn leftovers(&self) -> usize {
        let s = lock(&self.state);
        s.seeds.len() + s.previous.len() + s.console_logs.len()
    }

    /// Images the node holds.
    pub fn images(&self) -> Vec<ImageId> {
        lock(&self.state).images.keys().copied().collect()
    }

    /// Managed networks defined on the node.
    pub fn networks(&self) -> Vec<String> {
        lock(&self.state).networks.iter().cloned().collect()
    }

    /// The domain's definition.
    pub fn domain_spec(&self, vm: VmId) -> Option<DomainSpec> {
        lock(&self.state).domains.get(&vm).map(|(spec, _)| spec.clone())
    }

    /// NICs plugged into the running domain.
    pub fn live_nics(&self, vm: VmId) -> Vec<NicSpec> {
        lock(&self.state).live_nics.get(&vm).cloned().unwrap_or_default()
    }

    /// Appends to the VM's console log, as its guest would print.
    pub fn print(&self, vm: VmId, text: &str) {
        lock(&self.state).console_logs.entry(vm).or_default().extend_from_slice(text.as_bytes());
    }

    /// Records `call` and applies an injected failure: an error, a hang, or a hang after
    /// the call's effect ([`Gate::pass`]).
    async fn gate(&self, call: HypervisorCall) -> Result<Gate> {
        let failure = {
            let mut s = lock(&self.state);
            s.calls.push(call);
            if s.unreachable {
                return Err(Error::unavailable(self.uri.clone(), "the node does not answer"));
            }
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
        if result.is_ok() {
            self.watchers.wake_all();
        }
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
        HypervisorCapabilities {
            shutdown: true,
            reboot: true,
            suspend: true,
            resize_volume: true,
            images: true,
            hotplug: true,
            console_log: true,
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn migrate(&self, vm: VmId, target: &dyn Hypervisor, copy_storage: bool) -> Result<()> {
        self.migrate_to(vm, target, copy_storage).await
    }

    async fn stored_volume(&self, vm: VmId) -> Result<Option<u64>> {
        let gate = self.gate(HypervisorCall::Volume).await?;
        let out = self.state().volumes.get(&vm).map(|v| v.content.len() as u64);
        gate.pass().await;
        Ok(out)
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
        if result.is_ok() {
            self.watchers.wake_all();
        }
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
                    // Its snapshots go with it, as libvirt's metadata does.
                    s.domains.remove(&vm);
                    s.snapshots.remove(&vm);
                    Ok(())
                }
                Some((_, st)) => Err(Error::conflict(format!("domain {} is {st:?}", vm.domain_name()))),
            }
        };
        if result.is_ok() {
            self.watchers.wake_all();
        }
        gate.pass().await;
        result
    }

    async fn start(&self, vm: VmId) -> Result<()> {
        lock(&self.state).live_nics.remove(&vm);
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
                    slot.insert(FakeVolume { size_gib, content: "empty".into() });
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
            .map(|v| VolumeInfo { name: vm.volume_name(), capacity_gib: v.size_gib });
        gate.pass().await;
        Ok(out)
    }

    async fn resize_volume(&self, vm: VmId, size_gib: u64) -> Result<()> {
        let gate = self.gate(HypervisorCall::ResizeVolume).await?;
        let result = {
            let mut s = self.state();
            match s.volumes.get_mut(&vm) {
                None => Err(Error::VmNotFound { id: vm }),
                Some(v) if size_gib < v.size_gib => Err(Error::invalid("disk_gib", "volumes only grow")),
                Some(v) => {
                    v.size_gib = size_gib;
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
            if s.domains
                .get(&vm)
                .is_some_and(|(_, st)| matches!(st, PowerState::Running | PowerState::Paused))
            {
                Err(Error::conflict(format!("volume {} is in use", vm.volume_name())))
            } else {
                s.volumes.remove(&vm).map(drop).ok_or(Error::VmNotFound { id: vm })
            }
        };
        gate.pass().await;
        result
    }

    async fn upload_image(
        &self,
        image: ImageId,
        format: ImageFormat,
        mut data: Box<dyn std::io::Read + Send>,
        size: u64,
    ) -> Result<()> {
        let gate = self.gate(HypervisorCall::UploadImage).await?;
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).map_err(|e| Error::backend(self.uri.clone(), e))?;
        let result = if bytes.len() as u64 == size {
            self.state().images.insert(image, (format, size));
            Ok(())
        } else {
            Err(Error::invalid("data", format!("{} bytes arrived of {size}", bytes.len())))
        };
        gate.pass().await;
        result
    }

    async fn has_image(&self, image: ImageId, format: ImageFormat) -> Result<bool> {
        let gate = self.gate(HypervisorCall::HasImage).await?;
        let out = self.state().images.get(&image).is_some_and(|(f, _)| *f == format);
        gate.pass().await;
        Ok(out)
    }

    async fn delete_image(&self, image: ImageId, _format: ImageFormat) -> Result<()> {
        let gate = self.gate(HypervisorCall::DeleteImage).await?;
        self.state().images.remove(&image);
        gate.pass().await;
        Ok(())
    }

    async fn create_volume_from_image(
        &self,
        vm: VmId,
        image: ImageId,
        _format: ImageFormat,
        size_gib: u64,
    ) -> Result<VolumeInfo> {
        let gate = self.gate(HypervisorCall::CreateVolumeFromImage).await?;
        let result = {
            let mut s = self.state();
            if s.images.contains_key(&image) {
                match s.volumes.entry(vm) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        Err(Error::conflict(format!("volume {} exists", vm.volume_name())))
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(FakeVolume { size_gib, content: format!("image:{image}") });
                        Ok(VolumeInfo { name: vm.volume_name(), capacity_gib: size_gib })
                    }
                }
            } else {
                Err(Error::invalid("image_id", format!("the node has no copy of image {image}")))
            }
        };
        gate.pass().await;
        result
    }

    async fn copy_volume(&self, from: VmId, to: VmId) -> Result<VolumeInfo> {
        let gate = self.gate(HypervisorCall::CopyVolume).await?;
        let result = {
            let mut s = self.state();
            match (s.volumes.get(&from).cloned(), s.volumes.contains_key(&to)) {
                (None, _) => Err(Error::VmNotFound { id: from }),
                (Some(_), true) => Err(Error::conflict(format!("volume {} exists", to.volume_name()))),
                (Some(v), false) => {
                    let info = VolumeInfo { name: to.volume_name(), capacity_gib: v.size_gib };
                    s.volumes.insert(to, v);
                    Ok(info)
                }
            }
        };
        gate.pass().await;
        result
    }

    async fn read_volume(&self, vm: VmId, sink: crate::hypervisor::DataSink) -> Result<VolumeRead> {
        self.read_disk(vm, sink).await
    }

    async fn write_volume(
        &self,
        vm: VmId,
        format: ImageFormat,
        data: Box<dyn std::io::Read + Send>,
        size: u64,
    ) -> Result<VolumeInfo> {
        self.write_disk(vm, format, data, size).await
    }

    async fn create_snapshot(
        &self,
        vm: VmId,
        name: &str,
        _description: Option<&str>,
    ) -> Result<SnapshotInfo> {
        self.take_snapshot(vm, name).await
    }

    async fn list_snapshots(&self, vm: VmId) -> Result<Vec<SnapshotInfo>> {
        Ok(self.snapshots_of(vm))
    }

    async fn revert_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        self.revert_to(vm, name).await
    }

    async fn delete_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        self.remove_snapshot(vm, name).await
    }

    async fn save_previous_volume(&self, vm: VmId) -> Result<()> {
        let gate = self.gate(HypervisorCall::SavePreviousVolume).await?;
        let result = {
            let mut s = self.state();
            match s.volumes.get(&vm).cloned() {
                Some(v) => {
                    s.previous.insert(vm, v);
                    Ok(())
                }
                None => Err(Error::VmNotFound { id: vm }),
            }
        };
        gate.pass().await;
        result
    }

    async fn restore_previous_volume(&self, vm: VmId) -> Result<()> {
        let gate = self.gate(HypervisorCall::RestorePreviousVolume).await?;
        let result = {
            let mut s = self.state();
            match s.previous.remove(&vm) {
                Some(v) => {
                    s.volumes.insert(vm, v);
                    Ok(())
                }
                None => Err(Error::conflict(format!("VM {vm} has no disk kept aside"))),
            }
        };
        gate.pass().await;
        result
    }

    async fn delete_previous_volume(&self, vm: VmId) -> Result<()> {
        let gate = self.gate(HypervisorCall::DeletePreviousVolume).await?;
        self.state().previous.remove(&vm);
        gate.pass().await;
        Ok(())
    }

    async fn write_seed(&self, vm: VmId, data: Vec<u8>) -> Result<()> {
        let gate = self.gate(HypervisorCall::WriteSeed).await?;
        self.state().seeds.insert(vm, data);
        gate.pass().await;
        Ok(())
    }

    async fn delete_seed(&self, vm: VmId) -> Result<()> {
        let gate = self.gate(HypervisorCall::DeleteSeed).await?;
        self.state().seeds.remove(&vm);
        gate.pass().await;
        Ok(())
    }

    async fn console_log(&self, vm: VmId, tail_bytes: u64) -> Result<Vec<u8>> {
        let gate = self.gate(HypervisorCall::ConsoleLog).await?;
        let log = self.state().console_logs.get(&vm).cloned().unwrap_or_default();
        gate.pass().await;
        let from = log.len().saturating_sub(usize::try_from(tail_bytes).unwrap_or(usize::MAX));
        Ok(log[from..].to_vec())
    }

    async fn delete_console_log(&self, vm: VmId) -> Result<()> {
        let gate = self.gate(HypervisorCall::DeleteConsoleLog).await?;
        self.state().console_logs.remove(&vm);
        gate.pass().await;
        Ok(())
    }

    async fn watch_lifecycle(&self, wake: LifecycleCallback) -> Result<Option<Box<dyn LifecycleWatch>>> {
        Ok(Some(Box::new(self.watchers.add(wake))))
    }

    async fn list_volumes(&self) -> Result<Vec<String>> {
        let s = self.state();
        let mut names: Vec<String> = s.volumes.keys().map(VmId::volume_name).collect();
        names.extend(s.previous.keys().map(VmId::previous_volume_name));
        names.extend(s.seeds.keys().map(VmId::seed_volume_name));
        names.extend(s.console_logs.keys().map(VmId::console_log_name));
        names.extend(s.images.iter().map(|(id, (format, _))| id.volume_name(*format)));
        Ok(names)
    }

    async fn ensure_network(&self, network: &Network) -> Result<()> {
        let gate = self.gate(HypervisorCall::EnsureNetwork).await?;
        if network.kind == crate::network::NetworkKind::Managed {
            self.state().networks.insert(network.libvirt_name());
        }
        gate.pass().await;
        Ok(())
    }

    async fn remove_network(&self, network: &Network) -> Result<()> {
        let gate = self.gate(HypervisorCall::RemoveNetwork).await?;
        self.state().networks.remove(&network.libvirt_name());
        gate.pass().await;
        Ok(())
    }

    async fn attach_nic(&self, vm: VmId, nic: &NicSpec) -> Result<()> {
        let gate = self.gate(HypervisorCall::AttachNic).await?;
        let result = {
            let mut s = self.state();
            match s.domains.get(&vm) {
                Some((_, PowerState::Running | PowerState::Paused)) => {
                    // Like libvirt's: attaching a NIC the domain already has changes nothing.
                    let live = s.live_nics.entry(vm).or_default();
                    if !live.iter().any(|n| n.mac == nic.mac) {
                        live.push(nic.clone());
                    }
                    Ok(())
                }
                Some(_) => Err(Error::conflict(format!("domain {} is not running", vm.domain_name()))),
                None => Err(Error::VmNotFound { id: vm }),
            }
        };
        gate.pass().await;
        result
    }

    async fn detach_nic(&self, vm: VmId, nic: &NicSpec) -> Result<()> {
        let gate = self.gate(HypervisorCall::DetachNic).await?;
        if let Some(live) = self.state().live_nics.get_mut(&vm) {
            live.retain(|n| n.mac != nic.mac);
        }
        gate.pass().await;
        Ok(())
    }

    async fn domain_stats(&self) -> Result<Vec<DomainStats>> {
        let gate = self.gate(HypervisorCall::DomainStats).await?;
        let stats = self.next_stats();
        gate.pass().await;
        Ok(stats)
    }

    async fn node_stats(&self) -> Result<NodeStats> {
        let gate = self.gate(HypervisorCall::NodeStats).await?;
        let stats = self.next_node_stats();
        gate.pass().await;
        Ok(stats)
    }

    async fn open_console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleStream> {
        let gate = self.gate(HypervisorCall::OpenConsole).await?;
        let console = self.echo_console(vm, kind);
        gate.pass().await;
        console
    }
}
