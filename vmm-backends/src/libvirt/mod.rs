//! libvirt nodes through the `virt` crate. Every libvirt call runs on tokio's blocking pool
//! under a deadline (see `link`): a node that stops answering makes its own calls fail as
//! unavailable, never anyone else's.
//!
//! One [`LibvirtHypervisor`] holds one connection and reopens it after it breaks (libvirtd
//! restarted, the SSH tunnel dropped, a call ran past its deadline): the call that found it
//! broken fails with the retryable [`Error::Unavailable`], the next one reconnects. Disks
//! are volumes in a directory storage pool that the hypervisor creates when it is missing,
//! so a remote node works like the local one. libvirt's own error text goes to the log;
//! what users see are vmm's words.
//!
//! By area: `call` (calls under deadlines, libvirt's errors in vmm's words), `domains`,
//! `storage` (pools, volumes, streams), `networks`, `consoles` (screen and serial),
//! `events` (lifecycle watches) and `ffi` (bulk statistics; these two are the files with
//! `unsafe`), `xml` (every document vmm writes or reads), `link` (the connection),
//! `connector` (nodes by URI). This file holds the [`Hypervisor`] methods.

mod backups;
mod call;
mod connector;
mod consoles;
mod domains;
mod events;
mod ffi;
mod link;
mod migration;
mod networks;
mod snapshots;
mod storage;
mod xml;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use virt::connect::Connect;
use virt::error::ErrorNumber;
use virt::storage_vol::StorageVol;
use vmm_core::hypervisor::VolumeRead;
use vmm_core::snapshot::SnapshotInfo;
use vmm_core::usage::{DomainStats, NodeStats};
use vmm_core::{
    Capacity, ConsoleKind, ConsoleStream, DomainInfo, DomainSpec, Error, Hypervisor, HypervisorCapabilities,
    ImageFormat, ImageId, LifecycleCallback, LifecycleWatch, Network, NetworkKind, NicSpec, NodeInfo,
    PowerState, Result, VirtType, VmId, VolumeInfo,
};

use call::{code_is, LibvirtError};
pub use connector::LibvirtConnector;
use domains::{domain_info, facts, lookup_domain};
pub use link::Deadlines;
use link::Link;
use networks::ensure_network;
use storage::{ensure_pool, lookup_named, lookup_volume, receive, refresh_pool};
pub use xml::{
    domain_facts, domain_xml, interface_macs, interface_xml, named_volume_xml, network_xml, pool_path,
    pool_xml, volume_format, volume_xml, DomainFacts, Placement, LEGACY_METADATA_NS, METADATA_NS,
};

const GIB: u64 = 1024 * 1024 * 1024;

/// How a libvirt node keeps VM disks and networks, and how long its calls may take.
/// Operator settings, never user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// Name of the directory storage pool for VM disks (created when missing).
    pub storage_pool: String,
    /// Its directory on the node.
    pub storage_path: String,
    /// libvirt network for VM interfaces; user-mode networking when `None`.
    pub network: Option<String>,
    /// Deadlines and keepalive of the connection.
    pub deadlines: Deadlines,
}

impl Default for LibvirtConfig {
    fn default() -> Self {
        Self {
            storage_pool: "vmm".into(),
            storage_path: "/var/lib/vmm/images".into(),
            network: None,
            deadlines: Deadlines::default(),
        }
    }
}

/// One libvirt node.
#[derive(Debug)]
pub struct LibvirtHypervisor {
    link: Link,
    virt_type: VirtType,
    config: LibvirtConfig,
    /// The storage pool's directory on the node, once read.
    pool_dir: Mutex<Option<String>>,
    /// Registers lifecycle watches.
    watcher: events::Watcher,
}

/// A fresh VNC password: 8 random letters and digits (VNC's most), about 47 bits.
fn vnc_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // A v4 UUID's bytes but 6 and 8 are wholly random.
    let random = uuid::Uuid::new_v4().into_bytes();
    [0, 1, 2, 3, 4, 5, 10, 11]
        .iter()
        .map(|&i| ALPHABET[usize::from(random[i]) % ALPHABET.len()] as char)
        .collect()
}

/// Rotated console logs virtlogd may keep beside the current one (`.0`, `.1`, …).
const ROTATED_LOGS: usize = 10;

/// The chunk size of streams to and from a node.
const STREAM_CHUNK: usize = 256 * 1024;

impl LibvirtHypervisor {
    /// A hypervisor for `uri`; the connection opens on the first call.
    pub fn new(uri: &str, virt_type: VirtType, config: LibvirtConfig) -> Self {
        // Every new connection makes sure the storage pool exists and is active (a test
        // driver starts empty; a node may have been reinstalled).
        let (pool, path, at) = (config.storage_pool.clone(), config.storage_path.clone(), uri.to_owned());
        let on_open: link::OnOpen = Arc::new(move |c: &Connect| {
            if let Err(e) = ensure_pool(c, &pool, &path) {
                tracing::warn!(uri = %at, pool = %pool, error = %e, "cannot prepare the storage pool");
            }
        });
        Self {
            link: Link::new(uri, config.deadlines, on_open),
            virt_type,
            config,
            pool_dir: Mutex::new(None),
            watcher: events::Watcher::default(),
        }
    }

    /// Opens `uri` and makes sure the storage pool exists and is active.
    pub async fn connect(uri: &str, virt_type: VirtType, config: LibvirtConfig) -> Result<Self> {
        let hv = Self::new(uri, virt_type, config);
        let (name, path) = (hv.config.storage_pool.clone(), hv.config.storage_path.clone());
        hv.call("prepare the storage pool", move |c| ensure_pool(c, &name, &path).map(drop)).await?;
        Ok(hv)
    }

    /// How long a pool refresh waits for a volume being built or copied: half a call's
    /// deadline, so the call still ends in time to say why.
    fn pool_patience(&self) -> Duration {
        self.link.call_deadline() / 2
    }

    fn is_test_driver(&self) -> bool {
        self.link.uri().starts_with("test:")
    }

    /// The libvirt domain type for this node: `test` on the test driver, else the node's.
    fn domain_type(&self) -> &'static str {
        if self.is_test_driver() {
            "test"
        } else {
            self.virt_type.as_str()
        }
    }
}

#[async_trait]
impl Hypervisor for LibvirtHypervisor {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn migrate(&self, vm: VmId, target: &dyn Hypervisor, copy_storage: bool) -> Result<()> {
        self.migrate_to(vm, target, copy_storage).await
    }

    async fn stored_volume(&self, vm: VmId) -> Result<Option<u64>> {
        self.stored_size(vm).await
    }

    async fn abort_migration(&self, vm: VmId) -> Result<()> {
        self.abort_migrating(vm).await
    }

    fn uri(&self) -> &str {
        self.link.uri()
    }

    fn capabilities(&self) -> HypervisorCapabilities {
        HypervisorCapabilities {
            shutdown: true,
            reboot: true,
            suspend: true,
            resize_volume: !self.is_test_driver(),
            // The test driver has no volume streams, and runs no guest whose console to log.
            images: !self.is_test_driver(),
            hotplug: !self.is_test_driver(),
            console_log: !self.is_test_driver(),
        }
    }

    async fn node_info(&self) -> Result<NodeInfo> {
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        self.call("describe itself", move |c| {
            let info = c.node_info()?;
            let storage = ensure_pool(c, &pool, &path)?.info()?;
            Ok(NodeInfo {
                capacity: Capacity {
                    cpus: info.cpus,
                    memory_mib: info.memory / 1024,
                    storage_gib: storage.capacity / GIB,
                },
                hostname: c.hostname()?,
            })
        })
        .await
    }

    async fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        self.call("list domains", |c| {
            let mut out = Vec::new();
            for d in c.list_all_domains(0)? {
                let info = d.name().map_err(LibvirtError::from).and_then(|name| {
                    if !name.starts_with("vmm-") || !facts(&d)?.ours {
                        return Ok(None);
                    }
                    domain_info(&d).map(Some)
                });
                match info {
                    Ok(info) => out.extend(info),
                    // Undefined by someone else while we listed.
                    Err(LibvirtError::Virt(e)) if code_is(&e, &[ErrorNumber::NoDomain]) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn domain(&self, vm: VmId) -> Result<Option<DomainInfo>> {
        self.call("read a domain", move |c| lookup_domain(c, vm)?.map(|d| domain_info(&d)).transpose()).await
    }

    async fn define_domain(&self, spec: &DomainSpec) -> Result<()> {
        let (pool, network, log_dir) = self.placement().await?;
        let password = vnc_password();
        let at = Placement {
            storage_pool: &pool,
            network: network.as_deref(),
            console_log_dir: log_dir.as_deref(),
            vnc_password: Some(&password),
        };
        let xml = domain_xml(spec, self.domain_type(), &at)
            .map_err(|e| self.to_error("define a domain", e.into()))?;
        self.call("define a domain", move |c| c.define_domain_xml(&xml).map(drop).map_err(Into::into))
            .await?;
        // The persistent definition is what counts; a running guest also gets the new size
        // now where libvirt allows it (memory up to its maximum, vCPUs up to theirs).
        let (vm, vcpus, memory_kib) = (spec.vm_id, spec.vcpus, spec.memory_mib * 1024);
        let live = self
            .call("resize a running domain", move |c| {
                let Some(d) = lookup_domain(c, vm)? else { return Ok(()) };
                if !d.is_active()? {
                    return Ok(());
                }
                let now = d.info()?;
                if now.memory != memory_kib {
                    d.set_memory_flags(memory_kib, virt::sys::VIR_DOMAIN_MEM_LIVE)?;
                }
                if now.nr_virt_cpu != vcpus {
                    d.set_vcpus_flags(vcpus, virt::sys::VIR_DOMAIN_VCPU_LIVE)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = live {
            tracing::info!(vm = %vm, error = %e, "the new size applies at the next boot");
        }
        Ok(())
    }

    async fn undefine_domain(&self, vm: VmId) -> Result<()> {
        let undefined = self
            .on_domain("undefine a domain", vm, |d| {
                if d.is_active()? {
                    Ok(false)
                } else {
                    // Its snapshots' metadata goes with it (their data is in the disk).
                    d.undefine_flags(virt_sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA).map(|()| true)
                }
            })
            .await?;
        if undefined {
            Ok(())
        } else {
            Err(Error::conflict(format!("domain {} is running", vm.domain_name())))
        }
    }

    async fn start(&self, vm: VmId) -> Result<()> {
        self.on_domain("start a domain", vm, |d| d.create().map(drop)).await
    }

    async fn stop(&self, vm: VmId) -> Result<()> {
        self.on_domain("stop a domain", vm, |d| d.destroy()).await
    }

    async fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()> {
        self.on_domain("shut a domain down", vm, |d| d.shutdown().map(drop)).await?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.power_state(vm).await? == PowerState::Shutoff {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::info!(vm = %vm, "guest ignored the shutdown request; forcing it off");
        match self.stop(vm).await {
            Err(Error::Conflict { .. }) if self.power_state(vm).await? == PowerState::Shutoff => Ok(()),
            other => other,
        }
    }

    async fn reboot(&self, vm: VmId) -> Result<()> {
        self.on_domain("reboot a domain", vm, |d| d.reboot(0)).await
    }

    async fn suspend(&self, vm: VmId) -> Result<()> {
        self.on_domain("suspend a domain", vm, |d| d.suspend().map(drop)).await
    }

    async fn resume(&self, vm: VmId) -> Result<()> {
        self.on_domain("resume a domain", vm, |d| d.resume().map(drop)).await
    }

    async fn create_volume(&self, vm: VmId, size_gib: u64) -> Result<VolumeInfo> {
        let (name, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let xml = volume_xml(vm, size_gib).map_err(|e| self.to_error("create a volume", e.into()))?;
        let exists = self
            .call("create a volume", move |c| {
                let pool = ensure_pool(c, &name, &path)?;
                if lookup_volume(c, &name, vm)?.is_some() {
                    return Ok(true);
                }
                StorageVol::create_xml(&pool, &xml, 0)?;
                Ok(false)
            })
            .await?;
        if exists {
            return Err(Error::conflict(format!("volume {} exists", vm.volume_name())));
        }
        Ok(VolumeInfo { name: vm.volume_name(), capacity_gib: size_gib })
    }

    async fn volume(&self, vm: VmId) -> Result<Option<VolumeInfo>> {
        match self.on_volume("read a volume", vm, |v| v.info()).await {
            Ok(info) => {
                Ok(Some(VolumeInfo { name: vm.volume_name(), capacity_gib: info.capacity.div_ceil(GIB) }))
            }
            Err(Error::VmNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn resize_volume(&self, vm: VmId, size_gib: u64) -> Result<()> {
        if !self.capabilities().resize_volume {
            return Err(Error::unsupported(self.link.uri(), "grow volumes"));
        }
        self.on_volume("grow a volume", vm, move |v| v.resize(size_gib * GIB, 0)).await
    }

    async fn delete_volume(&self, vm: VmId) -> Result<()> {
        self.on_volume("delete a volume", vm, |v| v.delete(0)).await
    }

    async fn upload_image(
        &self,
        image: ImageId,
        format: ImageFormat,
        data: Box<dyn Read + Send>,
        size: u64,
    ) -> Result<()> {
        self.images_supported()?;
        self.upload_volume("upload an image", image.volume_name(format), volume_format(format), data, size)
            .await
    }

    async fn has_image(&self, image: ImageId, format: ImageFormat) -> Result<bool> {
        self.images_supported()?;
        let (pool, path, name) =
            (self.config.storage_pool.clone(), self.config.storage_path.clone(), image.volume_name(format));
        self.call("look for an image", move |c| {
            Ok(lookup_named(&ensure_pool(c, &pool, &path)?, &name)?.is_some())
        })
        .await
    }

    async fn delete_image(&self, image: ImageId, format: ImageFormat) -> Result<()> {
        self.delete_named("delete an image", image.volume_name(format)).await
    }

    async fn create_volume_from_image(
        &self,
        vm: VmId,
        image: ImageId,
        format: ImageFormat,
        size_gib: u64,
    ) -> Result<VolumeInfo> {
        self.images_supported()?;
        let capacity_gib = self
            .copy_named(
                "make a disk from an image",
                image.volume_name(format),
                vm.volume_name(),
                Some(size_gib),
            )
            .await?;
        Ok(VolumeInfo { name: vm.volume_name(), capacity_gib })
    }

    async fn copy_volume(&self, from: VmId, to: VmId) -> Result<VolumeInfo> {
        self.images_supported()?;
        let size = self.volume(from).await?.ok_or(Error::VmNotFound { id: from })?.capacity_gib;
        let capacity_gib =
            self.copy_named("copy a disk", from.volume_name(), to.volume_name(), Some(size)).await?;
        Ok(VolumeInfo { name: to.volume_name(), capacity_gib })
    }

    async fn read_volume(&self, vm: VmId, sink: vmm_core::hypervisor::DataSink) -> Result<VolumeRead> {
        self.images_supported()?;
        if self.domain(vm).await?.is_some_and(|d| d.state != PowerState::Shutoff) {
            return self.read_running_volume(vm, sink).await;
        }
        let capacity = self.volume(vm).await?.ok_or(Error::VmNotFound { id: vm })?.capacity_gib * GIB;
        let (pool, local) = (self.config.storage_pool.clone(), self.is_local());
        let bytes = self
            .call_moving("read a disk", capacity, move |c| {
                let vol = lookup_volume(c, &pool, vm)?
                    .ok_or(LibvirtError::Parse(format!("volume of {vm} is gone")))?;
                storage::stream_out(c, &vol, sink, local)
            })
            .await?;
        // vmm makes every VM disk as qcow2.
        Ok(VolumeRead {
            format: ImageFormat::Qcow2,
            bytes,
            consistency: vmm_core::backup::Consistency::Stopped,
        })
    }

    async fn write_volume(
        &self,
        vm: VmId,
        format: ImageFormat,
        data: Box<dyn Read + Send>,
        size: u64,
    ) -> Result<VolumeInfo> {
        self.images_supported()?;
        if self.volume(vm).await?.is_some() {
            return Err(Error::conflict(format!("volume {} exists", vm.volume_name())));
        }
        self.upload_volume("write a disk", vm.volume_name(), volume_format(format), data, size).await?;
        self.volume(vm).await?.ok_or(Error::VmNotFound { id: vm })
    }

    async fn create_snapshot(&self, vm: VmId, name: &str, description: Option<&str>) -> Result<SnapshotInfo> {
        self.take_snapshot(vm, name, description).await
    }

    async fn list_snapshots(&self, vm: VmId) -> Result<Vec<SnapshotInfo>> {
        self.snapshots_of(vm).await
    }

    async fn revert_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        self.revert_to(vm, name).await
    }

    async fn delete_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        self.remove_snapshot(vm, name).await
    }

    async fn save_previous_volume(&self, vm: VmId) -> Result<()> {
        self.images_supported()?;
        let size = self.volume(vm).await?.ok_or(Error::VmNotFound { id: vm })?.capacity_gib;
        // A copy left by an interrupted save is incomplete: start again.
        self.delete_named("keep a disk aside", vm.previous_volume_name()).await?;
        self.copy_named("keep a disk aside", vm.volume_name(), vm.previous_volume_name(), Some(size))
            .await
            .map(drop)
    }

    async fn restore_previous_volume(&self, vm: VmId) -> Result<()> {
        self.images_supported()?;
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let (prev, disk) = (vm.previous_volume_name(), vm.volume_name());
        let kept = self
            .call("put a disk back", move |c| {
                let p = ensure_pool(c, &pool, &path)?;
                if lookup_named(&p, &prev)?.is_none() {
                    return Ok(false);
                }
                if let Some(d) = lookup_named(&p, &disk)? {
                    d.delete(0)?;
                }
                Ok(true)
            })
            .await?;
        if !kept {
            return Err(Error::conflict(format!("VM {vm} has no disk kept aside")));
        }
        self.copy_named("put a disk back", vm.previous_volume_name(), vm.volume_name(), None).await?;
        self.delete_previous_volume(vm).await
    }

    async fn delete_previous_volume(&self, vm: VmId) -> Result<()> {
        self.delete_named("delete a disk kept aside", vm.previous_volume_name()).await
    }

    async fn write_seed(&self, vm: VmId, data: Vec<u8>) -> Result<()> {
        self.images_supported()?;
        let size = data.len() as u64;
        self.upload_volume(
            "write a cloud-init seed",
            vm.seed_volume_name(),
            "raw",
            Box::new(std::io::Cursor::new(data)),
            size,
        )
        .await
    }

    async fn delete_seed(&self, vm: VmId) -> Result<()> {
        self.delete_named("delete a cloud-init seed", vm.seed_volume_name()).await
    }

    async fn console_log(&self, vm: VmId, tail_bytes: u64) -> Result<Vec<u8>> {
        if self.is_test_driver() {
            // The test driver runs no guest: its consoles never print anything.
            return Ok(Vec::new());
        }
        let (pool, path, name) =
            (self.config.storage_pool.clone(), self.config.storage_path.clone(), vm.console_log_name());
        let patience = self.pool_patience();
        self.call_moving("read a console log", tail_bytes, move |c| {
            let p = ensure_pool(c, &pool, &path)?;
            // virtlogd writes the log, not libvirt: the pool learns of it on a refresh.
            let vol = match lookup_named(&p, &name)? {
                Some(vol) => vol,
                None => {
                    refresh_pool(&p, patience)?;
                    let Some(vol) = lookup_named(&p, &name)? else { return Ok(Vec::new()) };
                    vol
                }
            };
            // The file's length: the guest writes the log, so libvirt's guess of a format
            // (and of a capacity) from its first bytes means nothing.
            let size = vol.info_flags(virt::sys::VIR_STORAGE_VOL_GET_PHYSICAL)?.allocation;
            let offset = size.saturating_sub(tail_bytes);
            if size == offset {
                return Ok(Vec::new());
            }
            receive(c, &vol, offset, size - offset)
        })
        .await
    }

    async fn delete_console_log(&self, vm: VmId) -> Result<()> {
        if !self.capabilities().console_log {
            return Ok(());
        }
        let (pool, path, name) =
            (self.config.storage_pool.clone(), self.config.storage_path.clone(), vm.console_log_name());
        let patience = self.pool_patience();
        self.call("delete a console log", move |c| {
            let p = ensure_pool(c, &pool, &path)?;
            // Rotated logs are virtlogd's: only a refresh shows them to libvirt.
            refresh_pool(&p, patience)?;
            let rotated = (0..ROTATED_LOGS).map(|n| format!("{name}.{n}"));
            for log in std::iter::once(name.clone()).chain(rotated) {
                if let Some(v) = lookup_named(&p, &log)? {
                    v.delete(0)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn watch_lifecycle(&self, wake: LifecycleCallback) -> Result<Option<Box<dyn LifecycleWatch>>> {
        Ok(Some(Box::new(self.watcher.watch(&self.link, wake).await?)))
    }

    async fn list_volumes(&self) -> Result<Vec<String>> {
        let (pool, path, patience) =
            (self.config.storage_pool.clone(), self.config.storage_path.clone(), self.pool_patience());
        self.call("list volumes", move |c| {
            let p = ensure_pool(c, &pool, &path)?;
            refresh_pool(&p, patience)?;
            Ok(p.list_volumes()?)
        })
        .await
    }

    async fn ensure_network(&self, network: &Network) -> Result<()> {
        if network.kind != NetworkKind::Managed {
            return Ok(());
        }
        let network = network.clone();
        self.call("prepare a network", move |c| ensure_network(c, &network)).await
    }

    async fn remove_network(&self, network: &Network) -> Result<()> {
        if network.kind != NetworkKind::Managed {
            return Ok(());
        }
        let name = network.libvirt_name();
        self.call("remove a network", move |c| {
            let net = match c.lookup_network_by_name(&name) {
                Ok(n) => n,
                Err(e) if code_is(&e, &[ErrorNumber::NoNetwork]) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if net.is_active()? {
                net.destroy()?;
            }
            net.undefine()?;
            Ok(())
        })
        .await
    }

    async fn attach_nic(&self, vm: VmId, nic: &NicSpec) -> Result<()> {
        let xml = self.nic_xml(nic)?;
        let mac = nic.mac.to_ascii_lowercase();
        // Plugged in already (by an earlier run of the task): nothing to do.
        if self.live_macs(vm).await?.contains(&mac) {
            return Ok(());
        }
        self.on_domain("plug in a NIC", vm, move |d| {
            d.attach_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
        })
        .await
    }

    async fn detach_nic(&self, vm: VmId, nic: &NicSpec) -> Result<()> {
        let xml = self.nic_xml(nic)?;
        let mac = nic.mac.to_ascii_lowercase();
        if !self.live_macs(vm).await?.contains(&mac) {
            return Ok(());
        }
        self.on_domain("unplug a NIC", vm, move |d| {
            d.detach_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
        })
        .await?;
        // QEMU unplugs when the guest lets go of the device, which libvirt may not wait
        // for: the NIC is gone only once the running domain no longer shows it.
        let deadline = Instant::now() + self.config.deadlines.unplug;
        while self.live_macs(vm).await?.contains(&mac) {
            if Instant::now() > deadline {
                return Err(Error::conflict(format!("the guest of VM {vm} did not release NIC {mac}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    async fn domain_stats(&self) -> Result<Vec<DomainStats>> {
        // The test driver knows no NOWAIT.
        let nowait = !self.is_test_driver();
        self.call("read domain statistics", move |c| ffi::domain_stats(c, nowait).map_err(Into::into)).await
    }

    async fn node_stats(&self) -> Result<NodeStats> {
        self.call("read node statistics", |c| ffi::node_stats(c).map_err(Into::into)).await
    }

    async fn open_console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleStream> {
        if self.power_state(vm).await? != PowerState::Running {
            return Err(Error::conflict(format!("domain {} is not running", vm.domain_name())));
        }
        match kind {
            ConsoleKind::Vnc => self.open_screen(vm).await,
            ConsoleKind::Serial => self.open_serial(vm).await,
        }
    }
}

impl LibvirtHypervisor {
    /// Whether the node is this host (`qemu:///…`): its volumes' files can then be read
    /// directly, several times faster than through a libvirt stream.
    fn is_local(&self) -> bool {
        self.link.uri().starts_with("qemu:///")
    }

    fn images_supported(&self) -> Result<()> {
        if self.capabilities().images {
            Ok(())
        } else {
            Err(Error::unsupported(self.link.uri(), "installing from images"))
        }
    }
}
