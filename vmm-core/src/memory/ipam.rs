//! [`IpamStore`] in memory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Bound;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{InMemoryStore, PoolState, StoreState};
use crate::error::{Error, Result};
use crate::event::{lease_event, vm_lease_events, EventType};
use crate::id::{PoolId, VmId};
use crate::ipam::{IpAllocator, IpLease, IpPool};
use crate::page::{Page, PageRequest};
use crate::store::IpamStore;

impl StoreState {
    fn pool_mut(&mut self, id: PoolId) -> Result<&mut PoolState> {
        self.pools.get_mut(&id).ok_or(Error::PoolNotFound { id })
    }

    /// Leases `address` (or the lowest free one) from `pool` to `vm`.
    pub(super) fn lease(
        &mut self,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease> {
        let ps = self.pool_mut(pool)?;
        let address = match address {
            Some(a) => {
                ps.pool.check_usable(a)?;
                if !ps.alloc.allocate(a) {
                    return Err(Error::AddressInUse { pool, address: a });
                }
                a
            }
            None => ps.alloc.allocate_next().ok_or(Error::PoolExhausted { pool })?,
        };
        let lease = IpLease { pool_id: pool, address, vm_id: vm, created_at: now };
        ps.leases.insert(address, lease.clone());
        if let Some(vm) = vm {
            self.vm_leases.entry(vm).or_default().push((pool, address));
        }
        Ok(lease)
    }

    /// Leases one address for each NIC of `vm` that has a pool (and sets its network from
    /// the pool); on a failure, gives back what it took.
    pub(super) fn lease_nics(&mut self, vm: &mut crate::vm::Vm) -> Result<()> {
        let mut taken = Vec::new();
        for i in 0..vm.nics.len() {
            let Some(pool) = vm.nics[i].pool_id else { continue };
            let network = match self.pools.get(&pool) {
                Some(ps) => ps.pool.network_id,
                None => {
                    self.give_back(vm.id, &taken);
                    return Err(Error::PoolNotFound { id: pool });
                }
            };
            match self.lease(pool, None, Some(vm.id), vm.created_at) {
                Ok(lease) => {
                    taken.push((pool, lease.address));
                    vm.nics[i].network_id = network;
                    vm.nics[i].addresses = vec![lease.address];
                }
                Err(e) => {
                    self.give_back(vm.id, &taken);
                    return Err(e);
                }
            }
        }
        vm.refresh_addresses();
        Ok(())
    }

    fn give_back(&mut self, vm: VmId, taken: &[(PoolId, IpAddr)]) {
        for (pool, address) in taken {
            if let Some(ps) = self.pools.get_mut(pool) {
                ps.leases.remove(address);
                ps.alloc.release(*address);
            }
        }
        if let Some(held) = self.vm_leases.get_mut(&vm) {
            held.retain(|l| !taken.contains(l));
        }
    }

    /// Records `addresses` of `vm` leased.
    pub(super) fn leases_taken(&mut self, vm: &crate::vm::Vm, addresses: &[IpAddr], at: DateTime<Utc>) {
        self.lease_events(EventType::LeaseTaken, vm, addresses, at);
    }

    /// Records `addresses` of `vm` released.
    pub(super) fn leases_released(&mut self, vm: &crate::vm::Vm, addresses: &[IpAddr], at: DateTime<Utc>) {
        self.lease_events(EventType::LeaseReleased, vm, addresses, at);
    }

    fn lease_events(&mut self, kind: EventType, vm: &crate::vm::Vm, addresses: &[IpAddr], at: DateTime<Utc>) {
        for e in vm_lease_events(kind, vm, addresses, at) {
            self.emit(e);
        }
    }

    /// Ends every lease `vm` holds.
    pub(super) fn release_vm_leases(&mut self, vm: VmId) {
        for (pool, address) in self.vm_leases.remove(&vm).unwrap_or_default() {
            if let Some(ps) = self.pools.get_mut(&pool) {
                ps.leases.remove(&address);
                ps.alloc.release(address);
            }
        }
    }
}

#[async_trait]
impl IpamStore for InMemoryStore {
    async fn create_pool(&self, pool: &IpPool) -> Result<()> {
        let mut s = self.state();
        if s.pools.contains_key(&pool.id) || s.pools.values().any(|p| p.pool.name == pool.name) {
            return Err(Error::conflict(format!("a pool named {:?} exists", pool.name)));
        }
        if let Some(id) = pool.network_id.filter(|n| !s.networks.contains_key(n)) {
            return Err(Error::NetworkNotFound { id });
        }
        let state = PoolState { pool: pool.clone(), alloc: IpAllocator::new(pool), leases: BTreeMap::new() };
        s.pools.insert(pool.id, state);
        Ok(())
    }

    async fn get_pool(&self, id: PoolId) -> Result<IpPool> {
        self.state().pools.get(&id).map(|p| p.pool.clone()).ok_or(Error::PoolNotFound { id })
    }

    async fn list_pools(&self, page: &PageRequest) -> Result<Page<IpPool>> {
        let limit = page.limit()?;
        let before: Option<PoolId> = page.cursor()?;
        let s = self.state();
        let pools = match before {
            Some(b) => s.pools.range(..b),
            None => s.pools.range(..),
        };
        let items = pools.rev().take(limit + 1).map(|(_, p)| p.pool.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |p: &IpPool| p.id.to_string()))
    }

    async fn delete_pool(&self, id: PoolId) -> Result<()> {
        let mut s = self.state();
        let ps = s.pool_mut(id)?;
        if !ps.leases.is_empty() {
            return Err(Error::conflict(format!("pool {id} still has {} leases", ps.leases.len())));
        }
        s.pools.remove(&id);
        Ok(())
    }

    async fn allocate_lease(
        &self,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease> {
        let mut s = self.state();
        let lease = s.lease(pool, address, vm, now)?;
        s.emit(lease_event(EventType::LeaseTaken, pool, lease.address, vm, None, now));
        Ok(lease)
    }

    async fn release_lease(&self, pool: PoolId, address: IpAddr) -> Result<()> {
        let mut s = self.state();
        let ps = s.pool_mut(pool)?;
        match ps.leases.get(&address) {
            None => Err(Error::LeaseNotFound { pool, address }),
            Some(IpLease { vm_id: Some(vm), .. }) => {
                Err(Error::conflict(format!("{address} is held by VM {vm}")))
            }
            Some(_) => {
                ps.leases.remove(&address);
                ps.alloc.release(address);
                let at = self.clock.now();
                s.emit(lease_event(EventType::LeaseReleased, pool, address, None, None, at));
                Ok(())
            }
        }
    }

    async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>> {
        let limit = page.limit()?;
        let after: Option<IpAddr> = page.cursor()?;
        let s = self.state();
        let ps = s.pools.get(&pool).ok_or(Error::PoolNotFound { id: pool })?;
        let range = match after {
            Some(a) => ps.leases.range((Bound::Excluded(a), Bound::Unbounded)),
            None => ps.leases.range(..),
        };
        let items = range.take(limit + 1).map(|(_, l)| l.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |l| l.address.to_string()))
    }
}
