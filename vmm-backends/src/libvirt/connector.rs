//! Opening nodes by URI.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use vmm_core::memory::InMemoryConnector;
use vmm_core::{Connector, Hypervisor, NodeUriPolicy, Result, VirtType};

use super::{LibvirtConfig, LibvirtHypervisor};

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
