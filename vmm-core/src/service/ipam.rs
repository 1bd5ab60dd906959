//! IP management: pools and leases held by hand.

use std::net::IpAddr;

use super::Vmm;
use crate::error::Result;
use crate::id::PoolId;
use crate::ipam::{IpLease, IpPool, IpPoolSpec};
use crate::page::{Page, PageRequest};

impl Vmm {
    /// Creates a pool.
    pub async fn create_ip_pool(&self, spec: IpPoolSpec) -> Result<IpPool> {
        let pool = IpPool::from_spec(&spec, self.now())?;
        self.inner.store.create_pool(&pool).await?;
        Ok(pool)
    }

    /// One pool.
    pub async fn get_ip_pool(&self, id: PoolId) -> Result<IpPool> {
        self.inner.store.get_pool(id).await
    }

    /// Pools, newest first.
    pub async fn list_ip_pools(&self, page: &PageRequest) -> Result<Page<IpPool>> {
        self.inner.store.list_pools(page).await
    }

    /// Deletes a pool with no leases.
    pub async fn delete_ip_pool(&self, id: PoolId) -> Result<()> {
        self.inner.store.delete_pool(id).await
    }

    /// Leases `address`, or the lowest free address, to nobody (held by hand).
    pub async fn create_lease(&self, pool: PoolId, address: Option<IpAddr>) -> Result<IpLease> {
        self.inner.store.allocate_lease(pool, address, None, self.now()).await
    }

    /// Ends a lease held by hand.
    pub async fn delete_lease(&self, pool: PoolId, address: IpAddr) -> Result<()> {
        self.inner.store.release_lease(pool, address).await
    }

    /// A pool's leases.
    pub async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>> {
        self.inner.store.list_leases(pool, page).await
    }
}
