//! [`InMemoryConnector`]: opens `memory://NAME` URIs, one fake per URI.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{InMemoryHypervisor, DEFAULT_MEMORY_CAPACITY};
use crate::error::{Error, Result};
use crate::hypervisor::{Connector, Hypervisor};
use crate::memory::lock;
use crate::node::{Capacity, VirtType};

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
