//! libvirt nodes through the `virt` crate. Every libvirt call runs on tokio's blocking pool.
//!
//! One [`LibvirtHypervisor`] holds one connection and reopens it after it breaks (libvirtd
//! restarted, the SSH tunnel dropped): the call that found it broken fails with the
//! retryable [`Error::Unavailable`], the next one reconnects. Disks are volumes in a
//! directory storage pool that the hypervisor creates when it is missing, so a remote node
//! works like the local one.

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
use vmm_core::memory::MemoryConnector;
use vmm_core::{
    Capacity, Connector, DomainInfo, DomainSpec, Error, Hypervisor, HypervisorCapabilities, NodeInfo,
    PowerState, Result, VirtType, VmId, VolumeInfo,
};

pub use xml::{domain_facts, domain_xml, pool_xml, volume_xml, DomainFacts, Placement, METADATA_NS};

const GIB: u64 = 1024 * 1024 * 1024;

/// How a libvirt node keeps VM disks and networks. Operator settings, never user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// Name of the directory storage pool for VM disks (created when missing).
    pub storage_pool: String,
    /// Its directory on the node.
    pub storage_path: String,
    /// libvirt network for VM interfaces; user-mode networking when `None`.
    pub network: Option<String>,
}

impl Default for LibvirtConfig {
    fn default() -> Self {
        Self { storage_pool: "vmm".into(), storage_path: "/var/lib/vmm/images".into(), network: None }
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
    uri: String,
    virt_type: VirtType,
    config: LibvirtConfig,
    conn: Arc<Mutex<Option<Connect>>>,
}

impl LibvirtHypervisor {
    /// Opens `uri` and makes sure the storage pool exists and is active.
    pub async fn connect(uri: &str, virt_type: VirtType, config: LibvirtConfig) -> Result<Self> {
        let hv = Self { uri: uri.to_owned(), virt_type, config, conn: Arc::new(Mutex::new(None)) };
        let (name, path) = (hv.config.storage_pool.clone(), hv.config.storage_path.clone());
        hv.call(move |c| ensure_pool(c, &name, &path).map(drop)).await?;
        Ok(hv)
    }

    fn is_test_driver(&self) -> bool {
        self.uri.starts_with("test:")
    }

    /// The libvirt domain type for this node: `test` on the test driver, else the node's.
    fn domain_type(&self) -> &'static str {
        if self.is_test_driver() {
            "test"
        } else {
            self.virt_type.as_str()
        }
    }

    /// Runs `f` on the blocking pool with the connection, opening it first if needed. A
    /// broken connection is dropped (the next call reopens it) and reported as unavailable.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let uri = self.uri.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                // libvirt prints every error to stderr by default; vmm reports them itself.
                static QUIET: std::sync::Once = std::sync::Once::new();
                QUIET.call_once(virt::error::clear_error_callback);
                *guard = Some(Connect::open(Some(&uri)).map_err(LibvirtError::Virt)?);
            }
            let c = guard.as_ref().expect("opened above");
            let result = f(c);
            if let Err(LibvirtError::Virt(e)) = &result {
                if is_connection_error(e) && !c.is_alive().unwrap_or(false) {
                    tracing::warn!(uri = %uri, error = %e, "libvirt connection lost; reopening on the next call");
                    *guard = None;
                }
            }
            result
        })
        .await
        .map_err(LibvirtError::Join)
        .and_then(|r| r);
        outcome.map_err(|e| self.to_error(e))
    }

    fn to_error(&self, e: LibvirtError) -> Error {
        match e {
            LibvirtError::Virt(v) if is_connection_error(&v) => {
                Error::Unavailable { backend: self.uri.clone(), reason: v.message().to_owned() }
            }
            LibvirtError::Virt(v)
                if code_is(&v, &[ErrorNumber::NoSupport, ErrorNumber::OperationUnsupported]) =>
            {
                Error::unsupported(self.uri.clone(), v.message().to_owned())
            }
            LibvirtError::Virt(v) if code_is(&v, &[ErrorNumber::OperationInvalid]) => {
                Error::conflict(v.message().to_owned())
            }
            other => Error::backend(self.uri.clone(), other),
        }
    }

    /// Runs `f` on the VM's domain; a missing domain is [`Error::VmNotFound`].
    async fn on_domain<T, F>(&self, vm: VmId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Domain) -> Result<T, virt::error::Error> + Send + 'static,
    {
        self.call(move |c| match lookup_domain(c, vm)? {
            Some(d) => Ok(Some(f(&d)?)),
            None => Ok(None),
        })
        .await?
        .ok_or(Error::VmNotFound { id: vm })
    }

    /// Runs `f` on the VM's volume; a missing volume is [`Error::VmNotFound`].
    async fn on_volume<T, F>(&self, vm: VmId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&StorageVol) -> Result<T, virt::error::Error> + Send + 'static,
    {
        let pool = self.config.storage_pool.clone();
        self.call(move |c| match lookup_volume(c, &pool, vm)? {
            Some(v) => Ok(Some(f(&v)?)),
            None => Ok(None),
        })
        .await?
        .ok_or(Error::VmNotFound { id: vm })
    }

    /// The path of the VM's volume on the node, if it exists.
    pub async fn volume_path(&self, vm: VmId) -> Result<Option<String>> {
        match self.on_volume(vm, |v| v.path()).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::VmNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn power_state(&self, vm: VmId) -> Result<PowerState> {
        self.on_domain(vm, |d| d.info().map(|i| power_state(i.state.unwrap_or(DomainState::NoState)))).await
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
        &self.uri
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
        let pool = self.config.storage_pool.clone();
        self.call(move |c| {
            let info = c.node_info()?;
            let storage = c.lookup_storage_pool_by_name(&pool)?.info()?;
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
        self.call(|c| {
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
        self.call(move |c| lookup_domain(c, vm)?.map(|d| domain_info(&d)).transpose()).await
    }

    async fn define_domain(&self, spec: &DomainSpec) -> Result<()> {
        let at =
            Placement { storage_pool: &self.config.storage_pool, network: self.config.network.as_deref() };
        let xml = domain_xml(spec, self.domain_type(), &at).map_err(|e| self.to_error(e.into()))?;
        self.call(move |c| c.define_domain_xml(&xml).map(drop).map_err(Into::into)).await?;
        // The persistent definition is what counts; a running guest also gets the new size
        // now where libvirt allows it (memory up to its maximum, vCPUs up to theirs).
        let (vm, vcpus, memory_kib) = (spec.vm_id, spec.vcpus, spec.memory_mib * 1024);
        let live = self
            .call(move |c| {
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
            .on_domain(vm, |d| if d.is_active()? { Ok(false) } else { d.undefine().map(|()| true) })
            .await?;
        if undefined {
            Ok(())
        } else {
            Err(Error::conflict(format!("domain {} is running", vm.domain_name())))
        }
    }

    async fn start(&self, vm: VmId) -> Result<()> {
        self.on_domain(vm, |d| d.create().map(drop)).await
    }

    async fn stop(&self, vm: VmId) -> Result<()> {
        self.on_domain(vm, |d| d.destroy()).await
    }

    async fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()> {
        self.on_domain(vm, |d| d.shutdown().map(drop)).await?;
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
        self.on_domain(vm, |d| d.reboot(0)).await
    }

    async fn suspend(&self, vm: VmId) -> Result<()> {
        self.on_domain(vm, |d| d.suspend().map(drop)).await
    }

    async fn resume(&self, vm: VmId) -> Result<()> {
        self.on_domain(vm, |d| d.resume().map(drop)).await
    }

    async fn create_volume(&self, vm: VmId, size_gib: u64) -> Result<VolumeInfo> {
        let (name, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let xml = volume_xml(vm, size_gib).map_err(|e| self.to_error(e.into()))?;
        let exists = self
            .call(move |c| {
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
        match self.on_volume(vm, |v| v.info()).await {
            Ok(info) => {
                Ok(Some(VolumeInfo { name: vm.volume_name(), capacity_gib: info.capacity.div_ceil(GIB) }))
            }
            Err(Error::VmNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn resize_volume(&self, vm: VmId, size_gib: u64) -> Result<()> {
        if !self.capabilities().resize_volume {
            return Err(Error::unsupported(self.uri.clone(), "growing volumes"));
        }
        self.on_volume(vm, move |v| v.resize(size_gib * GIB, 0)).await
    }

    async fn delete_volume(&self, vm: VmId) -> Result<()> {
        self.on_volume(vm, |v| v.delete(0)).await
    }
}

/// Opens nodes by URI: libvirt URIs (`test:///default`, `qemu:///system`, `qemu+ssh://…`,
/// `qemu+tcp://…`) through [`LibvirtHypervisor`], `memory://` through the in-memory fake.
/// One hypervisor per URI is kept, so that every caller shares its connection.
#[derive(Debug, Default)]
pub struct LibvirtConnector {
    config: LibvirtConfig,
    memory: MemoryConnector,
    open: tokio::sync::Mutex<HashMap<String, Arc<LibvirtHypervisor>>>,
}

impl LibvirtConnector {
    /// A connector whose nodes use `config`.
    pub fn new(config: LibvirtConfig) -> Self {
        Self { config, ..Self::default() }
    }

    /// The in-memory connector serving `memory://` URIs.
    pub fn memory(&self) -> &MemoryConnector {
        &self.memory
    }
}

#[async_trait]
impl Connector for LibvirtConnector {
    async fn connect(&self, uri: &str, virt_type: VirtType) -> Result<Arc<dyn Hypervisor>> {
        if uri.starts_with("memory://") {
            return self.memory.connect(uri, virt_type).await;
        }
        if !crate::is_libvirt_uri(uri) {
            return Err(Error::invalid(
                "uri",
                format!(
                    "{uri:?} is not a libvirt URI (qemu:///system, qemu+ssh://host/system, test:///default)"
                ),
            ));
        }
        let mut open = self.open.lock().await;
        if let Some(hv) = open.get(uri) {
            return Ok(hv.clone());
        }
        let hv = Arc::new(LibvirtHypervisor::connect(uri, virt_type, self.config.clone()).await?);
        open.insert(uri.to_owned(), hv.clone());
        Ok(hv)
    }
}
