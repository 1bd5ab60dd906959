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

mod events;
mod link;
mod storage;

use storage::{ensure_pool, lookup_named, lookup_volume, pool_is_busy, receive, refresh_pool, send};
mod xml;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::{ErrorDomain, ErrorNumber};
use virt::storage_vol::StorageVol;
use vmm_core::memory::InMemoryConnector;
use vmm_core::{
    Capacity, Connector, DomainInfo, DomainSpec, Error, Hypervisor, HypervisorCapabilities, ImageFormat,
    ImageId, LifecycleCallback, LifecycleWatch, Network, NetworkKind, NicSpec, NodeInfo, NodeUriPolicy,
    PowerState, Result, VirtType, VmId, VolumeInfo,
};

pub use link::Deadlines;
use link::Link;
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

/// libvirt failures, before they become [`vmm_core::Error`]s.
#[derive(Debug, thiserror::Error)]
enum LibvirtError {
    #[error(transparent)]
    Virt(#[from] virt::error::Error),
    #[error("Cannot serialize XML")]
    Xml(#[from] quick_xml::SeError),
    #[error("Unreadable domain XML: {0}")]
    Parse(String),
    #[error("The blocking call was lost")]
    Join(#[from] tokio::task::JoinError),
    #[error("Cannot read the data to send")]
    Io(#[from] std::io::Error),
}

fn is_connection_error(e: &virt::error::Error) -> bool {
    let code = e.code();
    let broken_code =
        [ErrorNumber::NoConnect, ErrorNumber::InvalidConn, ErrorNumber::SystemError, ErrorNumber::AuthFailed];
    broken_code.iter().any(|&c| code.is_known_and(|k| k == c))
        || e.domain().is_known_and(|d| matches!(d, ErrorDomain::Rpc | ErrorDomain::Remote))
}

fn code_is(e: &virt::error::Error, codes: &[ErrorNumber]) -> bool {
    codes.iter().any(|&c| e.code().is_known_and(|k| k == c))
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

/// Transfers (uploads, copies, downloads) get the call deadline plus one second for each
/// this many bytes: a node that moves data slower than this is treated as gone.
const SLOWEST_TRANSFER_BYTES_PER_SEC: u64 = 4 * 1024 * 1024;

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

    /// Runs `f` (which does `op`) on the blocking pool with the connection, under the call
    /// deadline. A call past it, or on a broken connection, drops the connection (the next
    /// call reopens it) and is reported as unavailable.
    async fn call<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    {
        self.call_moving(op, 0, f).await
    }

    /// [`call`](Self::call) for a call that moves `bytes` of data: its deadline grows with
    /// them.
    async fn call_moving<T, F>(&self, op: &'static str, bytes: u64, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    {
        let conn = self.link.connection().await?;
        let running = tokio::task::spawn_blocking({
            let conn = conn.clone();
            move || {
                let result = f(&conn);
                let broken = matches!(&result, Err(LibvirtError::Virt(e)) if is_connection_error(e))
                    && !conn.is_alive().unwrap_or(false);
                (result, broken)
            }
        });
        let deadline =
            self.link.call_deadline() + Duration::from_secs(bytes / SLOWEST_TRANSFER_BYTES_PER_SEC);
        match tokio::time::timeout(deadline, running).await {
            Err(_) => {
                tracing::warn!(uri = %self.link.uri(), op, "libvirt call ran past its deadline; dropping the connection");
                self.link.drop_connection(conn);
                Err(Error::unavailable(
                    self.link.uri(),
                    format!("the node did not {op} within {}s", deadline.as_secs()),
                ))
            }
            Ok(Err(join)) => Err(self.to_error(op, LibvirtError::Join(join))),
            Ok(Ok((result, broken))) => {
                if broken {
                    tracing::warn!(uri = %self.link.uri(), "libvirt connection lost; reopening on the next call");
                    self.link.drop_connection(conn);
                }
                result.map_err(|e| self.to_error(op, e))
            }
        }
    }

    /// A libvirt failure in vmm's terms. libvirt's message is logged here and kept only as
    /// the source of internal errors (which reach the log, never users).
    fn to_error(&self, op: &'static str, e: LibvirtError) -> Error {
        let uri = self.link.uri();
        if let LibvirtError::Virt(v) = &e {
            tracing::info!(uri = %uri, op, error = %v, "libvirt refused a call");
        }
        match e {
            LibvirtError::Virt(v) if is_connection_error(&v) => {
                Error::unavailable(uri, format!("the connection broke while trying to {op}"))
            }
            LibvirtError::Virt(v)
                if code_is(&v, &[ErrorNumber::NoSupport, ErrorNumber::OperationUnsupported]) =>
            {
                Error::unsupported(uri, op)
            }
            LibvirtError::Virt(v) if pool_is_busy(&v) => Error::unavailable(
                uri,
                format!("the storage pool stayed busy building or copying a volume; could not {op}"),
            ),
            LibvirtError::Virt(v) if code_is(&v, &[ErrorNumber::OperationInvalid]) => {
                Error::conflict(format!("the node cannot {op} in the domain's current state"))
            }
            other => Error::backend(uri, other),
        }
    }

    /// Runs `f` on the VM's domain; a missing domain is [`Error::VmNotFound`].
    async fn on_domain<T, F>(&self, op: &'static str, vm: VmId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Domain) -> Result<T, virt::error::Error> + Send + 'static,
    {
        self.call(op, move |c| match lookup_domain(c, vm)? {
            Some(d) => Ok(Some(f(&d)?)),
            None => Ok(None),
        })
        .await?
        .ok_or(Error::VmNotFound { id: vm })
    }

    /// Runs `f` on the VM's volume; a missing volume is [`Error::VmNotFound`].
    async fn on_volume<T, F>(&self, op: &'static str, vm: VmId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&StorageVol) -> Result<T, virt::error::Error> + Send + 'static,
    {
        let pool = self.config.storage_pool.clone();
        self.call(op, move |c| match lookup_volume(c, &pool, vm)? {
            Some(v) => Ok(Some(f(&v)?)),
            None => Ok(None),
        })
        .await?
        .ok_or(Error::VmNotFound { id: vm })
    }

    /// The path of the VM's volume on the node, if it exists.
    pub async fn volume_path(&self, vm: VmId) -> Result<Option<String>> {
        match self.on_volume("read a volume", vm, |v| v.path()).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::VmNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The storage pool's directory on the node (read once).
    async fn pool_dir(&self) -> Result<String> {
        if let Some(dir) = self.pool_dir.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(dir);
        }
        let (name, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let dir = self
            .call("read the storage pool", move |c| {
                pool_path(&ensure_pool(c, &name, &path)?.xml_desc(0)?).map_err(LibvirtError::Parse)
            })
            .await?;
        *self.pool_dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.clone());
        Ok(dir)
    }

    /// Where domains are placed: the operator's settings, and the pool's directory for the
    /// console log on nodes that keep one.
    async fn placement(&self) -> Result<(String, Option<String>, Option<String>)> {
        let log_dir = if self.capabilities().console_log { Some(self.pool_dir().await?) } else { None };
        Ok((self.config.storage_pool.clone(), self.config.network.clone(), log_dir))
    }

    /// Writes `data` (`size` bytes) as volume `name` of `format`, replacing one of that name.
    async fn upload_volume(
        &self,
        op: &'static str,
        name: String,
        format: &'static str,
        data: Box<dyn Read + Send>,
        size: u64,
    ) -> Result<()> {
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let xml = named_volume_xml(&name, size.max(512), format).map_err(|e| self.to_error(op, e.into()))?;
        self.call_moving(op, size, move |c| {
            let p = ensure_pool(c, &pool, &path)?;
            if let Some(old) = lookup_named(&p, &name)? {
                old.delete(0)?;
            }
            let vol = StorageVol::create_xml(&p, &xml, 0)?;
            let sent = send(c, &vol, data, size);
            if sent.is_err() {
                // No partial volume stays behind.
                vol.delete(0).ok();
            }
            sent
        })
        .await
    }

    /// Deletes volume `name` if it exists.
    async fn delete_named(&self, op: &'static str, name: String) -> Result<()> {
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        self.call(op, move |c| {
            let p = ensure_pool(c, &pool, &path)?;
            if let Some(v) = lookup_named(&p, &name)? {
                v.delete(0)?;
            }
            Ok(())
        })
        .await
    }

    /// Makes volume `to` (qcow2, at least `size_gib`) a copy of volume `from`; `to` must not
    /// exist. Returns its size in GiB.
    async fn copy_named(
        &self,
        op: &'static str,
        from: String,
        to: String,
        size_gib: Option<u64>,
    ) -> Result<u64> {
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let bytes = size_gib.unwrap_or(1) * GIB;
        let copied = self
            .call_moving(op, bytes, move |c| {
                let p = ensure_pool(c, &pool, &path)?;
                let Some(source) = lookup_named(&p, &from)? else { return Ok(Err(from)) };
                if lookup_named(&p, &to)?.is_some() {
                    return Ok(Err(to));
                }
                let capacity = source.info()?.capacity.max(size_gib.unwrap_or(0) * GIB);
                let vol =
                    StorageVol::create_xml_from(&p, &named_volume_xml(&to, capacity, "qcow2")?, &source, 0)?;
                // libvirt copies at the source's size; grow the copy to the size asked for.
                if vol.info()?.capacity < capacity {
                    if let Err(e) = vol.resize(capacity, 0) {
                        vol.delete(0).ok();
                        return Err(e.into());
                    }
                }
                Ok(Ok(vol.info()?.capacity.div_ceil(GIB)))
            })
            .await?;
        copied.map_err(|name| Error::conflict(format!("volume {name} is missing or already exists")))
    }

    async fn power_state(&self, vm: VmId) -> Result<PowerState> {
        self.on_domain("read a domain", vm, |d| {
            d.info().map(|i| power_state(i.state.unwrap_or(DomainState::NoState)))
        })
        .await
    }
}

fn power_state(s: DomainState) -> PowerState {
    match s {
        DomainState::Running | DomainState::Blocked => PowerState::Running,
        DomainState::Paused => PowerState::Paused,
        DomainState::Shutoff => PowerState::Shutoff,
        DomainState::Crashed => PowerState::Crashed,
        _ => PowerState::Other,
    }
}

fn lookup_domain(c: &Connect, vm: VmId) -> Result<Option<Domain>, LibvirtError> {
    match c.lookup_domain_by_uuid_string(&vm.to_string()) {
        Ok(d) => Ok(Some(d)),
        Err(e) if code_is(&e, &[ErrorNumber::NoDomain]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn ensure_network(c: &Connect, network: &Network) -> Result<(), LibvirtError> {
    let name = network.libvirt_name();
    let net = match c.lookup_network_by_name(&name) {
        Ok(n) => n,
        Err(e) if code_is(&e, &[ErrorNumber::NoNetwork]) => {
            match c.define_network_xml(&network_xml(network)?) {
                Ok(n) => {
                    n.set_autostart(true)?;
                    n
                }
                // Defined by a concurrent caller in between.
                Err(_) => c.lookup_network_by_name(&name)?,
            }
        }
        Err(e) => return Err(e.into()),
    };
    if !net.is_active()? {
        if let Err(e) = net.create() {
            if !net.is_active()? {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

fn facts(d: &Domain) -> Result<DomainFacts, LibvirtError> {
    domain_facts(&d.xml_desc(sys_inactive())?).map_err(LibvirtError::Parse)
}

/// Read the persistent (inactive) definition: what the next boot will use.
fn sys_inactive() -> u32 {
    virt::sys::VIR_DOMAIN_XML_INACTIVE
}

fn domain_info(d: &Domain) -> Result<DomainInfo, LibvirtError> {
    let f = facts(d)?;
    let state = power_state(d.info()?.state.unwrap_or(DomainState::NoState));
    Ok(DomainInfo { vm_id: f.vm_id, title: f.title, state, vcpus: f.vcpus, memory_mib: f.memory_mib })
}

#[async_trait]
impl Hypervisor for LibvirtHypervisor {
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
        let at = Placement {
            storage_pool: &pool,
            network: network.as_deref(),
            console_log_dir: log_dir.as_deref(),
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
                    d.undefine().map(|()| true)
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
}

impl LibvirtHypervisor {
    /// The MACs of the running domain's NICs.
    async fn live_macs(&self, vm: VmId) -> Result<Vec<String>> {
        let xml = self.on_domain("read a domain", vm, |d| d.xml_desc(0)).await?;
        interface_macs(&xml).map_err(|e| self.to_error("read a domain", LibvirtError::Parse(e)))
    }

    fn images_supported(&self) -> Result<()> {
        if self.capabilities().images {
            Ok(())
        } else {
            Err(Error::unsupported(self.link.uri(), "installing from images"))
        }
    }

    fn nic_xml(&self, nic: &NicSpec) -> Result<String> {
        let at = Placement {
            storage_pool: &self.config.storage_pool,
            network: self.config.network.as_deref(),
            console_log_dir: None,
        };
        interface_xml(nic, &at).map_err(|e| self.to_error("plug in a NIC", e.into()))
    }
}

/// Opens nodes by URI: libvirt URIs (`test:///default`, `qemu:///system`, `qemu+ssh://…`,
/// `qemu+tcp://…`) through [`LibvirtHypervisor`], `memory://` through the in-memory fake.
/// One hypervisor per URI is kept, so that every caller shares its connection. Opening
/// does no IO (the connection opens on the first call), so no lock is ever held across a
/// connect. URIs are checked again here against the node URI policy, so that nothing the
/// policy refuses reaches libvirt, whoever calls.
#[derive(Debug)]
pub struct LibvirtConnector {
    config: LibvirtConfig,
    policy: NodeUriPolicy,
    memory: InMemoryConnector,
    open: Mutex<HashMap<String, Arc<LibvirtHypervisor>>>,
}

impl Default for LibvirtConnector {
    fn default() -> Self {
        Self::new(LibvirtConfig::default())
    }
}

impl LibvirtConnector {
    /// A connector whose nodes use `config`, accepting the URIs of
    /// [`NodeUriPolicy::for_tests`] (test nodes, no query parameters).
    pub fn new(config: LibvirtConfig) -> Self {
        Self::with_policy(config, NodeUriPolicy::for_tests())
    }

    /// A connector accepting the URIs `policy` accepts.
    pub fn with_policy(config: LibvirtConfig, policy: NodeUriPolicy) -> Self {
        Self { config, policy, memory: InMemoryConnector::new(), open: Mutex::new(HashMap::new()) }
    }

    /// The in-memory connector serving `memory://` URIs.
    pub fn memory(&self) -> &InMemoryConnector {
        &self.memory
    }
}

#[async_trait]
impl Connector for LibvirtConnector {
    async fn connect(&self, uri: &str, virt_type: VirtType) -> Result<Arc<dyn Hypervisor>> {
        self.policy.check(uri)?;
        if uri.starts_with("memory://") {
            return self.memory.connect(uri, virt_type).await;
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let hv = open
            .entry(uri.to_owned())
            .or_insert_with(|| Arc::new(LibvirtHypervisor::new(uri, virt_type, self.config.clone())))
            .clone();
        Ok(hv)
    }
}
