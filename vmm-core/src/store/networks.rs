//! The networks area of the [`Store`](super::Store).

use async_trait::async_trait;

use crate::error::Result;
use crate::id::NetworkId;
use crate::network::Network;
use crate::page::{Page, PageRequest};

/// Networks.
#[async_trait]
pub trait NetworkStore: Send + Sync {
    /// Adds a network. A duplicate name or bridge is a conflict.
    async fn create_network(&self, network: &Network) -> Result<()>;
    /// One network.
    async fn get_network(&self, id: NetworkId) -> Result<Network>;
    /// Networks, newest first.
    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>>;
    /// Removes a network; a conflict while a pool is on it.
    async fn delete_network(&self, id: NetworkId) -> Result<()>;
}
