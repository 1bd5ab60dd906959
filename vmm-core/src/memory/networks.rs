//! [`NetworkStore`] in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::id::NetworkId;
use crate::network::Network;
use crate::page::{Page, PageRequest};
use crate::store::NetworkStore;

#[async_trait]
impl NetworkStore for InMemoryStore {
    async fn create_network(&self, network: &Network) -> Result<()> {
        let mut s = self.state();
        let same_wire = |n: &Network| n.bridge == network.bridge && n.vlan == network.vlan;
        if let Some(other) = s.networks.values().find(|n| n.name == network.name || same_wire(n)) {
            return Err(Error::conflict(format!(
                "network {:?} has this name or bridge and VLAN",
                other.name
            )));
        }
        s.networks.insert(network.id, network.clone());
        Ok(())
    }

    async fn get_network(&self, id: NetworkId) -> Result<Network> {
        self.state().networks.get(&id).cloned().ok_or(Error::NetworkNotFound { id })
    }

    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        let limit = page.limit()?;
        let before: Option<NetworkId> = page.cursor()?;
        let s = self.state();
        let items = match before {
            Some(b) => s.networks.range(..b),
            None => s.networks.range(..),
        };
        let items = items.rev().take(limit + 1).map(|(_, n)| n.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |n: &Network| n.id.to_string()))
    }

    async fn delete_network(&self, id: NetworkId) -> Result<()> {
        let mut s = self.state();
        if !s.networks.contains_key(&id) {
            return Err(Error::NetworkNotFound { id });
        }
        if let Some(pool) = s.pools.values().find(|p| p.pool.network_id == Some(id)) {
            return Err(Error::conflict(format!("pool {} is on network {id}", pool.pool.name)));
        }
        s.networks.remove(&id);
        Ok(())
    }
}
