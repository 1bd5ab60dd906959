//! The nodes area of the [`Store`](super::Store).

use async_trait::async_trait;

use crate::error::Result;
use crate::id::NodeId;
use crate::node::Node;
use crate::page::{Page, PageRequest};

/// Hypervisor nodes, with what their VMs have taken kept beside them.
#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Adds a node. A duplicate name or URI is a [`Conflict`](crate::Error::Conflict).
    async fn create_node(&self, node: &Node) -> Result<()>;
    /// One node, with `allocated`.
    async fn get_node(&self, id: NodeId) -> Result<Node>;
    /// Nodes, newest first, with `allocated`.
    async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>>;
    /// Replaces a node's name, ratios, capacity, state and fence. A duplicate name is a conflict.
    async fn update_node(&self, node: &Node) -> Result<()>;
    /// Removes a node; a conflict while VMs live on it.
    async fn delete_node(&self, id: NodeId) -> Result<()>;
}
