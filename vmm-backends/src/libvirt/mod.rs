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

mod link;
mod xml;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::{ErrorDomain, ErrorNumber};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use vmm_core::memory::InMemoryConnector;
use vmm_core::{
    Capacity, Connector, DomainInfo, DomainSpec, Error, Hypervisor, HypervisorCapabilities, NodeInfo,
    NodeUriPolicy, PowerState, Result, VirtType, VmId, VolumeInfo,
};

pub use link::Deadlines;
use link::Link;
pub use xml::{
    domain_facts, domain_xml, pool_xml, volume_xml, DomainFacts, Placement, LEGACY_METADATA_NS, METADATA_NS,
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
}

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
        Self { link: Link::new(uri, config.deadlines, on_open), virt_type, config }
    }

    /// Opens `uri` and makes sure the storage pool exists and is active.
    pub async fn connect(uri: &str, virt_type: VirtType, config: LibvirtConfig) -> Result<Self> {
        let hv = Self::new(uri, virt_type, config);
        let (name, path) = (hv.config.storage_pool.clone(), hv.config.storage_path.clone());
        hv.call("prepare the storage pool", move |c| ensure_pool(c, &name, &path).map(drop)).await?;
        Ok(hv)
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
        let deadline = self.link.call_deadline();
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

fn lookup_volume(c: &Connect, pool: &str, vm: VmId) -> Result<Option<StorageVol>, LibvirtError> {
    let pool = c.lookup_storage_pool_by_name(pool)?;
    match pool.lookup_storage_vol_by_name(&vm.volume_name()) {
        Ok(v) => Ok(Some(v)),
        Err(e) if code_is(&e, &[ErrorNumber::NoStorageVolume]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn ensure_pool(c: &Connect, name: &str, path: &str) -> Result<StoragePool, LibvirtError> {
    let pool = match c.lookup_storage_pool_by_name(name) {
        Ok(p) => p,
        Err(e) if code_is(&e, &[ErrorNumber::NoStoragePool]) => {
            match c.define_storage_pool_xml(&pool_xml(name, path)?, 0) {
                Ok(pool) => {
                    pool.build(0)?;
                    pool.set_autostart(true)?;
                    pool
                }
                // Defined by a concurrent caller in between.
                Err(_) => c.lookup_storage_pool_by_name(name)?,
            }
        }
        Err(e) => return Err(e.into()),
    };
    if !pool.is_active()? {
        if let Err(e) = pool.create(0) {
            // Started by a concurrent caller in between.
            if !pool.is_active()? {
                return Err(e.into());
            }
        }
    }
    Ok(pool)
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
        let at =
            Placement { storage_pool: &self.config.storage_pool, network: self.config.network.as_deref() };
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
