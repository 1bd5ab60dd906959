//! [`NodeStore`] in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::event::node_events;
use crate::id::NodeId;
use crate::node::{Node, Usage};
use crate::page::{Page, PageRequest};
use crate::store::NodeStore;

#[async_trait]
impl NodeStore for InMemoryStore {
    async fn create_node(&self, node: &Node) -> Result<()> {
        let mut s = self.state();
        if s.nodes.contains_key(&node.id) || s.nodes.values().any(|n| n.name == node.name) {
            return Err(Error::conflict(format!("a node named {:?} exists", node.name)));
        }
        if let Some(other) = s.nodes.values().find(|n| n.uri == node.uri) {
            return Err(Error::conflict(format!("node {:?} already has this URI", other.name)));
        }
        s.nodes.insert(node.id, Node { allocated: Usage::default(), ..node.clone() });
        for e in node_events(None, Some(node), self.clock.now()) {
            s.emit(e);
        }
        Ok(())
    }

    async fn get_node(&self, id: NodeId) -> Result<Node> {
        self.state().nodes.get(&id).cloned().ok_or(Error::NodeNotFound { id })
    }

    async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>> {
        let limit = page.limit()?;
        let before: Option<NodeId> = page.cursor()?;
        let s = self.state();
        let nodes = match before {
            Some(b) => s.nodes.range(..b),
            None => s.nodes.range(..),
        };
        let items = nodes.rev().take(limit + 1).map(|(_, n)| n.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |n: &Node| n.id.to_string()))
    }

    async fn update_node(&self, node: &Node) -> Result<()> {
        let mut s = self.state();
        if !s.nodes.contains_key(&node.id) {
            return Err(Error::NodeNotFound { id: node.id });
        }
        if s.nodes.values().any(|n| n.name == node.name && n.id != node.id) {
            return Err(Error::conflict(format!("a node named {:?} exists", node.name)));
        }
        let stored = s.nodes.get_mut(&node.id).expect("checked above");
        let before = stored.clone();
        stored.name.clone_from(&node.name);
        stored.cpu_overcommit = node.cpu_overcommit;
        stored.memory_overcommit = node.memory_overcommit;
        stored.state = node.state;
        stored.capacity = node.capacity;
        stored.fence = node.fence.clone();
        let after = stored.clone();
        for e in node_events(Some(&before), Some(&after), self.clock.now()) {
            s.emit(e);
        }
        Ok(())
    }

    async fn delete_node(&self, id: NodeId) -> Result<()> {
        let mut s = self.state();
        let node = s.nodes.get(&id).ok_or(Error::NodeNotFound { id })?;
        if node.allocated.vms > 0 {
            return Err(Error::conflict(format!("node {id} still has {} VMs", node.allocated.vms)));
        }
        if let Some(node) = s.nodes.remove(&id) {
            for e in node_events(Some(&node), None, self.clock.now()) {
                s.emit(e);
            }
        }
        s.node_images.retain(|(node, _), _| *node != id);
        s.node_leases.remove(&id);
        Ok(())
    }
}
