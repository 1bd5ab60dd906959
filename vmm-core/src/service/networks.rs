//! Networks: where VMs' NICs plug in.

use super::Vmm;
use crate::error::{error_chain, Result};
use crate::id::NetworkId;
use crate::network::{Network, NetworkKind, NetworkSpec};
use crate::page::{Page, PageRequest};

impl Vmm {
    /// Adds a network. A managed network is defined on a node when a VM there first needs it.
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<Network> {
        let network = Network::from_spec(&spec, self.now())?;
        if network.node_ids.len() > 1024 {
            return Err(crate::error::Error::invalid("node_ids", "at most 1024 nodes"));
        }
        for node in &network.node_ids {
            self.inner.store.get_node(*node).await?;
        }
        self.inner.store.create_network(&network).await?;
        Ok(network)
    }

    /// One network.
    pub async fn get_network(&self, id: NetworkId) -> Result<Network> {
        self.inner.store.get_network(id).await
    }

    /// Networks, newest first.
    pub async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        self.inner.store.list_networks(page).await
    }

    /// Removes a network no pool is on, and a managed one from the nodes that have it. A
    /// node that cannot be reached keeps its copy (logged; nothing plugs into it any more).
    pub async fn delete_network(&self, id: NetworkId) -> Result<()> {
        let network = self.inner.store.get_network(id).await?;
        self.inner.store.delete_network(id).await?;
        if network.kind != NetworkKind::Managed {
            return Ok(());
        }
        let mut page = PageRequest::first(200);
        loop {
            let nodes = self.inner.store.list_nodes(&page).await?;
            for node in nodes.items.iter().filter(|n| network.reaches(n.id)) {
                let removed = async { self.hypervisor(node).await?.remove_network(&network).await };
                if let Err(e) = removed.await {
                    tracing::warn!(network = %id, node = %node.id, error = %error_chain(&e), "a node keeps a deleted network");
                }
            }
            match nodes.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(()),
            }
        }
    }
}
