//! Nodes: register, read, change and remove hypervisor nodes.

use super::Vmm;
use crate::error::Result;
use crate::id::NodeId;
use crate::node::{Node, NodePatch, NodeSpec};
use crate::page::{Page, PageRequest};

impl Vmm {
    /// Checks the URI against the node URI policy, connects to the node, reads its
    /// capacity, and registers it. A name or URI already registered is a conflict.
    pub async fn create_node(&self, spec: NodeSpec) -> Result<Node> {
        spec.validate()?;
        self.check_fence(&spec.fence)?;
        let uri = spec.uri.trim();
        self.inner.config.node_uris.check(uri)?;
        let hv = self.inner.connector.connect(uri, spec.virt_type).await?;
        let info = hv.node_info().await?;
        let node = Node::from_spec(&spec, info.capacity, self.now());
        self.inner.store.create_node(&node).await?;
        self.cache().insert(node.id, hv);
        Ok(node)
    }

    /// Every node, each with whether it answered a cheap call (its capacity) within
    /// `timeout`; an error when the store does not answer.
    pub async fn probe_all_nodes(&self, timeout: std::time::Duration) -> Result<Vec<(Node, bool)>> {
        let nodes = self.all_nodes().await?;
        let probes = nodes.iter().map(|node| async move {
            let probe = async {
                match self.hypervisor(node).await {
                    Ok(hv) => hv.node_info().await.is_ok(),
                    Err(_) => false,
                }
            };
            let limit = futures_timer::Delay::new(timeout);
            match futures::future::select(std::pin::pin!(probe), limit).await {
                futures::future::Either::Left((answered, _)) => answered,
                futures::future::Either::Right(_) => false,
            }
        });
        let answers = futures::future::join_all(probes).await;
        Ok(nodes.into_iter().zip(answers).collect())
    }

    /// One node.
    pub async fn get_node(&self, id: NodeId) -> Result<Node> {
        self.inner.store.get_node(id).await
    }

    /// Nodes, newest first.
    pub async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>> {
        self.inner.store.list_nodes(page).await
    }

    /// Renames a node, changes its ratios, or puts it in or out of maintenance.
    pub async fn update_node(&self, id: NodeId, patch: NodePatch) -> Result<Node> {
        patch.validate()?;
        if let Some(fence) = &patch.fence {
            self.check_fence(fence)?;
        }
        let node = self.inner.store.get_node(id).await?;
        self.inner.store.update_node(&patch.applied_to(&node)).await?;
        self.inner.store.get_node(id).await
    }

    /// A fence agent must be one vmmd's configuration names.
    fn check_fence(&self, fence: &crate::ha::Fence) -> Result<()> {
        match fence {
            crate::ha::Fence::Agent { agent } if !self.inner.config.fence_agents.0.contains_key(agent) => {
                Err(crate::error::Error::invalid(
                    "fence",
                    format!("no fence agent named {agent:?} is configured"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Unregisters a node that has no VMs.
    pub async fn delete_node(&self, id: NodeId) -> Result<()> {
        self.inner.store.delete_node(id).await?;
        self.cache().remove(&id);
        Ok(())
    }
}
