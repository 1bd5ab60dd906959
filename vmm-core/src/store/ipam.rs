//! The IP management area of the [`Store`](super::Store).

use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::id::{PoolId, VmId};
use crate::ipam::{IpLease, IpPool};
use crate::page::{Page, PageRequest};

/// IP pools and their leases. An address is unique in its pool by a constraint of the
/// store, not by check-then-insert.
#[async_trait]
pub trait IpamStore: Send + Sync {
    /// Adds a pool. A duplicate name is a conflict.
    async fn create_pool(&self, pool: &IpPool) -> Result<()>;
    /// One pool.
    async fn get_pool(&self, id: PoolId) -> Result<IpPool>;
    /// Pools, newest first.
    async fn list_pools(&self, page: &PageRequest) -> Result<Page<IpPool>>;
    /// Removes a pool; a conflict while it has leases.
    async fn delete_pool(&self, id: PoolId) -> Result<()>;
    /// Leases `address`, or the lowest free address when `None`, to `vm` (or to nobody).
    /// [`PoolExhausted`](crate::Error::PoolExhausted) when none is free,
    /// [`AddressInUse`](crate::Error::AddressInUse) when `address` is taken,
    /// [`Invalid`](crate::Error::Invalid) when it is not leasable from the pool.
    async fn allocate_lease(
        &self,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease>;
    /// Ends a lease held by nobody; a conflict when a VM holds it.
    async fn release_lease(&self, pool: PoolId, address: IpAddr) -> Result<()>;
    /// A pool's leases in address order (the cursor is the last address).
    async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>>;
}
