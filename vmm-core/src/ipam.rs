//! IP address management: pools of IPv4 or IPv6 addresses, leases, and the allocator.
//!
//! [`IpAllocator`] keeps the *free* addresses of a pool as a map of disjoint intervals, so
//! the next free address is the start of the first interval: O(log n) in the number of
//! leases, whatever the size of the pool (a /8 or an IPv6 /64 cost the same). Allocating a
//! given address splits one interval; releasing merges with the neighbours.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{NetworkId, PoolId, VmId};

/// Most ranges or reserved addresses one pool may list.
pub const MAX_POOL_ENTRIES: usize = 4096;

/// An inclusive range of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IpRange {
    /// First address.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "192.0.2.10"))]
    pub start: IpAddr,
    /// Last address.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "192.0.2.200"))]
    pub end: IpAddr,
}

/// What a user gives to create a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IpPoolSpec {
    /// Unique display name.
    pub name: String,
    /// The network, such as `192.0.2.0/24` or `2001:db8::/64`.
    pub cidr: String,
    /// The gateway; never leased.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "192.0.2.1"))]
    pub gateway: Option<IpAddr>,
    /// Lease only from these ranges (default: the whole network).
    #[serde(default)]
    pub ranges: Vec<IpRange>,
    /// Addresses never leased.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub reserved: Vec<IpAddr>,
    /// The network its addresses live on: a VM drawing from the pool gets a NIC there.
    /// Without one, the pool is bookkeeping only and the VM's NIC is user-mode.
    #[serde(default)]
    pub network_id: Option<NetworkId>,
    /// DNS servers the guest is told to use.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub dns: Vec<IpAddr>,
}

impl IpPoolSpec {
    /// A spec for the whole of `cidr`.
    pub fn new(name: impl Into<String>, cidr: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cidr: cidr.into(),
            gateway: None,
            ranges: Vec::new(),
            reserved: Vec::new(),
            network_id: None,
            dns: Vec::new(),
        }
    }

    /// The same spec on `network`.
    pub fn on_network(mut self, network: NetworkId) -> Self {
        self.network_id = Some(network);
        self
    }

    /// The same spec with a gateway.
    pub fn with_gateway(mut self, gateway: IpAddr) -> Self {
        self.gateway = Some(gateway);
        self
    }
}

/// A pool of addresses that VMs lease from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IpPool {
    /// The id.
    pub id: PoolId,
    /// Unique display name.
    pub name: String,
    /// The network.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "192.0.2.0/24"))]
    pub cidr: IpNet,
    /// The gateway.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "192.0.2.1"))]
    pub gateway: Option<IpAddr>,
    /// Ranges leased from; empty means the whole network.
    pub ranges: Vec<IpRange>,
    /// Addresses never leased.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub reserved: Vec<IpAddr>,
    /// The network its addresses live on.
    #[serde(default)]
    pub network_id: Option<NetworkId>,
    /// DNS servers the guest is told to use.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub dns: Vec<IpAddr>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An address leased from a pool, to a VM or held by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IpLease {
    /// The pool.
    pub pool_id: PoolId,
    /// The address.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "192.0.2.10"))]
    pub address: IpAddr,
    /// The VM holding it, if any.
    pub vm_id: Option<VmId>,
    /// When it was leased.
    pub created_at: DateTime<Utc>,
}

/// An address as a number (IPv4 in the low 32 bits), so that address order is number order.
pub fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of number `n`: IPv6 when `v6`, else IPv4 from the low 32 bits.
pub fn from_u128(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

/// The free intervals left when `n` is taken out of the free interval `start..=end` that
/// holds it: the part below `n` and the part above it, each if not empty.
///
/// ```
/// use vmm_core::ipam::split_free;
/// assert_eq!(split_free(1, 9, 1), [None, Some((2, 9))]);
/// assert_eq!(split_free(1, 9, 5), [Some((1, 4)), Some((6, 9))]);
/// assert_eq!(split_free(7, 7, 7), [None, None]);
/// ```
pub fn split_free(start: u128, end: u128, n: u128) -> [Option<(u128, u128)>; 2] {
    debug_assert!(start <= n && n <= end);
    [(start < n).then(|| (start, n - 1)), (n < end).then(|| (n + 1, end))]
}

/// The free interval made when `n` is given back, merged with its free neighbours: the
/// start of the interval that ends just below `n` and the end of the one that starts just
/// above it, if there are such intervals.
///
/// ```
/// use vmm_core::ipam::merge_free;
/// assert_eq!(merge_free(5, Some(1), Some(9)), (1, 9));
/// assert_eq!(merge_free(5, None, None), (5, 5));
/// ```
pub fn merge_free(n: u128, below_start: Option<u128>, above_end: Option<u128>) -> (u128, u128) {
    (below_start.unwrap_or(n), above_end.unwrap_or(n))
}

impl IpPool {
    /// Checks a spec and makes the pool.
    ///
    /// ```
    /// use vmm_core::{IpPool, IpPoolSpec};
    /// let spec = IpPoolSpec::new("public", "192.0.2.0/24").with_gateway("192.0.2.1".parse().unwrap());
    /// let pool = IpPool::from_spec(&spec, chrono::Utc::now()).unwrap();
    /// assert_eq!(pool.usable_count(), 253); // not .0, .255 nor the gateway
    /// assert!(IpPool::from_spec(&IpPoolSpec::new("x", "192.0.2.7/24"), chrono::Utc::now()).is_err());
    /// ```
    pub fn from_spec(spec: &IpPoolSpec, now: DateTime<Utc>) -> Result<Self> {
        let name = spec.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(Error::invalid("name", "must be 1 to 64 characters, no control characters"));
        }
        let cidr: IpNet =
            spec.cidr.trim().parse().map_err(|_| {
                Error::invalid("cidr", format!("{:?} is not a network in CIDR form", spec.cidr))
            })?;
        if cidr.network() != cidr.addr() {
            return Err(Error::invalid(
                "cidr",
                format!("{} has host bits set; the network is {}", spec.cidr, cidr.trunc()),
            ));
        }
        if spec.ranges.len() > MAX_POOL_ENTRIES || spec.reserved.len() > MAX_POOL_ENTRIES {
            return Err(Error::invalid("ranges", format!("at most {MAX_POOL_ENTRIES} entries")));
        }
        let pool = Self {
            id: PoolId::new(),
            name: name.to_owned(),
            cidr,
            gateway: spec.gateway,
            ranges: spec.ranges.clone(),
            reserved: spec.reserved.clone(),
            network_id: spec.network_id,
            dns: spec.dns.clone(),
            created_at: now,
        };
        if pool.dns.len() > 8 {
            return Err(Error::invalid("dns", "at most 8 servers"));
        }
        if let Some(gw) = pool.gateway {
            if !cidr.contains(&gw) {
                return Err(Error::invalid("gateway", format!("{gw} is outside {cidr}")));
            }
            if pool.is_network_or_broadcast(gw) {
                return Err(Error::invalid("gateway", format!("{gw} is not a host address of {cidr}")));
            }
        }
        for r in &pool.ranges {
            if !cidr.contains(&r.start) || !cidr.contains(&r.end) {
                return Err(Error::invalid("ranges", format!("{}-{} is outside {cidr}", r.start, r.end)));
            }
            if to_u128(r.start) > to_u128(r.end) {
                return Err(Error::invalid("ranges", format!("{} is after {}", r.start, r.end)));
            }
        }
        if let Some(r) = pool.reserved.iter().find(|r| !cidr.contains(*r)) {
            return Err(Error::invalid("reserved", format!("{r} is outside {cidr}")));
        }
        if pool.usable_count() == 0 {
            return Err(Error::invalid("ranges", "the pool has no usable address"));
        }
        Ok(pool)
    }

    /// Whether this is an IPv6 pool.
    pub fn is_v6(&self) -> bool {
        matches!(self.cidr, IpNet::V6(_))
    }

    /// The network address, and for IPv4 networks larger than a /31 the broadcast address:
    /// never leased. In IPv6 the network address is the subnet-router anycast address.
    fn is_network_or_broadcast(&self, addr: IpAddr) -> bool {
        let small = match self.cidr {
            IpNet::V4(n) => n.prefix_len() >= 31,
            IpNet::V6(n) => n.prefix_len() >= 127,
        };
        if small {
            return false;
        }
        addr == self.cidr.network() || (!self.is_v6() && addr == self.cidr.broadcast())
    }

    /// The addresses that may be leased, as sorted disjoint inclusive intervals: the ranges
    /// (or the network less its network and broadcast addresses) less the gateway and the
    /// reserved addresses.
    pub fn usable_intervals(&self) -> Vec<(u128, u128)> {
        let (net, last) = (to_u128(self.cidr.network()), to_u128(self.cidr.broadcast()));
        let mut spans: Vec<(u128, u128)> = if self.ranges.is_empty() {
            vec![(net, last)]
        } else {
            self.ranges.iter().map(|r| (to_u128(r.start), to_u128(r.end))).collect()
        };
        spans.sort_unstable();
        // Merge overlapping or touching ranges.
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some((_, le)) if s <= le.saturating_add(1) => *le = (*le).max(e),
                _ => merged.push((s, e)),
            }
        }
        let mut holes: Vec<u128> = self.reserved.iter().copied().map(to_u128).collect();
        holes.extend(self.gateway.map(to_u128));
        if self.is_network_or_broadcast(self.cidr.network()) {
            holes.push(net);
            if !self.is_v6() {
                holes.push(last);
            }
        }
        holes.sort_unstable();
        holes.dedup();
        let mut out = Vec::with_capacity(merged.len() + holes.len());
        let mut holes = holes.into_iter().peekable();
        for (s, e) in merged {
            // `next` is the first address of the span not yet emitted; None once past `e`.
            let mut next = Some(s);
            while let Some(h) = holes.next_if(|&h| h <= e) {
                match next {
                    Some(n) if h >= n => {
                        if h > n {
                            out.push((n, h - 1));
                        }
                        next = h.checked_add(1).filter(|&n| n <= e);
                    }
                    _ => {}
                }
            }
            out.extend(next.map(|n| (n, e)));
        }
        out
    }

    /// The prefix length of the pool's network.
    pub fn prefix_len(&self) -> u8 {
        self.cidr.prefix_len()
    }

    /// How many addresses may be leased.
    pub fn usable_count(&self) -> u128 {
        self.usable_intervals().iter().map(|&(s, e)| e - s + 1).fold(0u128, u128::saturating_add)
    }

    /// Checks that `addr` may be leased from this pool (ignoring current leases).
    pub fn check_usable(&self, addr: IpAddr) -> Result<()> {
        if !self.cidr.contains(&addr) {
            return Err(Error::invalid("address", format!("{addr} is outside {}", self.cidr)));
        }
        if self.gateway == Some(addr) {
            return Err(Error::invalid("address", format!("{addr} is the gateway")));
        }
        if self.reserved.contains(&addr) {
            return Err(Error::invalid("address", format!("{addr} is reserved")));
        }
        if self.is_network_or_broadcast(addr) {
            return Err(Error::invalid("address", format!("{addr} is not a host address")));
        }
        let n = to_u128(addr);
        if !self.ranges.is_empty()
            && !self.ranges.iter().any(|r| (to_u128(r.start)..=to_u128(r.end)).contains(&n))
        {
            return Err(Error::invalid("address", format!("{addr} is outside the pool's ranges")));
        }
        Ok(())
    }
}

/// The free addresses of one pool, as disjoint intervals.
///
/// ```
/// use vmm_core::{IpAllocator, IpPool, IpPoolSpec};
/// let spec = IpPoolSpec::new("p", "198.51.100.0/30");
/// let pool = IpPool::from_spec(&spec, chrono::Utc::now()).unwrap();
/// let mut alloc = IpAllocator::new(&pool);
/// let a = alloc.allocate_next().unwrap();
/// assert_eq!(a.to_string(), "198.51.100.1");
/// assert_eq!(alloc.allocate_next().unwrap().to_string(), "198.51.100.2");
/// assert_eq!(alloc.allocate_next(), None); // .0 and .3 are network and broadcast
/// alloc.release(a);
/// assert_eq!(alloc.allocate_next(), Some(a));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllocator {
    v6: bool,
    /// start → end (inclusive) of each free interval.
    free: BTreeMap<u128, u128>,
    /// The usable intervals, to refuse releasing what was never leasable.
    usable: Vec<(u128, u128)>,
}

impl IpAllocator {
    /// An allocator with every usable address of `pool` free.
    pub fn new(pool: &IpPool) -> Self {
        let usable = pool.usable_intervals();
        Self { v6: pool.is_v6(), free: usable.iter().copied().collect(), usable }
    }

    /// An allocator for `pool` with `leased` taken (addresses outside the pool are ignored).
    pub fn with_leases(pool: &IpPool, leased: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut alloc = Self::new(pool);
        for addr in leased {
            alloc.allocate(addr);
        }
        alloc
    }

    fn is_usable(&self, n: u128) -> bool {
        let i = self.usable.partition_point(|&(s, _)| s <= n);
        i > 0 && n <= self.usable[i - 1].1
    }

    fn same_family(&self, addr: IpAddr) -> bool {
        addr.is_ipv6() == self.v6
    }

    /// Takes the lowest free address. O(log n).
    pub fn allocate_next(&mut self) -> Option<IpAddr> {
        let (&start, _) = self.free.iter().next()?;
        self.take(start);
        Some(from_u128(start, self.v6))
    }

    /// Takes free `n` out of the interval holding it.
    fn take(&mut self, n: u128) {
        let (&start, &end) = self.free.range(..=n).next_back().expect("n is free");
        self.free.remove(&start);
        self.free.extend(split_free(start, end, n).into_iter().flatten());
    }

    /// Whether `addr` is free (usable and not leased). O(log n).
    pub fn is_free(&self, addr: IpAddr) -> bool {
        let n = to_u128(addr);
        self.same_family(addr) && self.free.range(..=n).next_back().is_some_and(|(_, &end)| n <= end)
    }

    /// Takes `addr`; false if it was not free. O(log n).
    pub fn allocate(&mut self, addr: IpAddr) -> bool {
        if !self.is_free(addr) {
            return false;
        }
        self.take(to_u128(addr));
        true
    }

    /// Gives `addr` back; false if it was already free or is not usable. O(log n).
    pub fn release(&mut self, addr: IpAddr) -> bool {
        let n = to_u128(addr);
        if !self.same_family(addr) || !self.is_usable(n) || self.is_free(addr) {
            return false;
        }
        let below = match self.free.range(..n).next_back() {
            Some((&ps, &pe)) if pe.checked_add(1) == Some(n) => self.free.remove(&ps).map(|_| ps),
            _ => None,
        };
        let above = n.checked_add(1).and_then(|next| self.free.remove(&next));
        let (start, end) = merge_free(n, below, above);
        self.free.insert(start, end);
        true
    }

    /// How many addresses are free.
    pub fn free_count(&self) -> u128 {
        self.free.iter().map(|(&s, &e)| e - s + 1).fold(0u128, u128::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn pool(spec: IpPoolSpec) -> IpPool {
        IpPool::from_spec(&spec, Utc::now()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn never_hands_out_network_broadcast_gateway_or_reserved() {
        let spec = IpPoolSpec {
            reserved: vec![ip("192.0.2.2"), ip("192.0.2.5")],
            ..IpPoolSpec::new("p", "192.0.2.0/29").with_gateway(ip("192.0.2.1"))
        };
        let mut a = IpAllocator::new(&pool(spec));
        let got: Vec<_> = std::iter::from_fn(|| a.allocate_next()).map(|a| a.to_string()).collect();
        assert_eq!(got, ["192.0.2.3", "192.0.2.4", "192.0.2.6"]);
    }

    #[test]
    fn ranges_limit_allocation() {
        let spec = IpPoolSpec {
            ranges: vec![
                IpRange { start: ip("192.0.2.250"), end: ip("192.0.2.255") },
                IpRange { start: ip("192.0.2.10"), end: ip("192.0.2.11") },
            ],
            ..IpPoolSpec::new("p", "192.0.2.0/24")
        };
        let p = pool(spec);
        let mut a = IpAllocator::new(&p);
        let got: Vec<_> = std::iter::from_fn(|| a.allocate_next()).map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            [
                "192.0.2.10",
                "192.0.2.11",
                "192.0.2.250",
                "192.0.2.251",
                "192.0.2.252",
                "192.0.2.253",
                "192.0.2.254"
            ]
        );
        assert!(p.check_usable(ip("192.0.2.12")).is_err());
        assert!(p.check_usable(ip("192.0.2.255")).is_err());
    }

    #[test]
    fn point_to_point_networks_use_both_addresses() {
        let mut a = IpAllocator::new(&pool(IpPoolSpec::new("p", "192.0.2.0/31")));
        assert_eq!(a.free_count(), 2);
        let mut a1 = IpAllocator::new(&pool(IpPoolSpec::new("p", "192.0.2.9/32")));
        assert_eq!(a1.allocate_next(), Some(ip("192.0.2.9")));
        assert!(a.allocate(ip("192.0.2.1")));
    }

    #[test]
    fn ipv6_skips_the_subnet_router_address_and_handles_huge_pools() {
        let p = pool(IpPoolSpec::new("v6", "2001:db8::/64").with_gateway(ip("2001:db8::1")));
        assert_eq!(p.usable_count(), (1u128 << 64) - 2);
        let mut a = IpAllocator::new(&p);
        assert_eq!(a.allocate_next(), Some(ip("2001:db8::2")));
        assert!(a.allocate(ip("2001:db8::ffff:ffff:ffff:ffff")));
        assert!(!a.allocate(ip("2001:db8::ffff:ffff:ffff:ffff")));
        let whole = pool(IpPoolSpec::new("all", "::/0"));
        let mut b = IpAllocator::new(&whole);
        assert!(b.allocate(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(b.release(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert_eq!(b.free_count(), u128::MAX);
    }

    #[test]
    fn bad_specs_are_refused_with_the_field() {
        let field = |spec: IpPoolSpec| match IpPool::from_spec(&spec, Utc::now()) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(IpPoolSpec::new("", "192.0.2.0/24")), "name");
        assert_eq!(field(IpPoolSpec::new("p", "192.0.2.0/33")), "cidr");
        assert_eq!(field(IpPoolSpec::new("p", "banana")), "cidr");
        assert_eq!(field(IpPoolSpec::new("p", "192.0.2.0/24").with_gateway(ip("198.51.100.1"))), "gateway");
        assert_eq!(field(IpPoolSpec::new("p", "192.0.2.0/24").with_gateway(ip("192.0.2.255"))), "gateway");
        let spec = IpPoolSpec {
            ranges: vec![IpRange { start: ip("192.0.2.9"), end: ip("192.0.2.3") }],
            ..IpPoolSpec::new("p", "192.0.2.0/24")
        };
        assert_eq!(field(spec), "ranges");
        let spec = IpPoolSpec { reserved: vec![ip("10.0.0.1")], ..IpPoolSpec::new("p", "192.0.2.0/24") };
        assert_eq!(field(spec), "reserved");
        let spec = IpPoolSpec {
            reserved: vec![ip("192.0.2.1"), ip("192.0.2.2")],
            ..IpPoolSpec::new("p", "192.0.2.0/30")
        };
        assert_eq!(field(spec), "ranges");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Next,
        Take(u8),
        Release(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Next),
            1 => any::<u8>().prop_map(Op::Take),
            2 => any::<u8>().prop_map(Op::Release),
        ]
    }

    proptest! {
        /// The allocator against a model: a BTreeSet of the usable addresses that are free.
        /// Next gives the smallest free one; take and release agree; released ones come back.
        #[test]
        fn allocator_matches_a_btreeset_model(
            v6: bool,
            prefix_host_bits in 2u32..8,
            gw in proptest::option::of(any::<u8>()),
            reserved in proptest::collection::vec(any::<u8>(), 0..6),
            range in proptest::option::of((any::<u8>(), any::<u8>())),
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let size = 1u32 << prefix_host_bits;
            let (base, cidr) = if v6 {
                (to_u128(ip("2001:db8::")), format!("2001:db8::/{}", 128 - prefix_host_bits))
            } else {
                (to_u128(ip("192.0.2.0")), format!("192.0.2.0/{}", 32 - prefix_host_bits))
            };
            let at = |k: u8| from_u128(base + u128::from(u32::from(k) % size), v6);
            let mut spec = IpPoolSpec::new("p", cidr);
            spec.gateway = gw.map(at).filter(|g| *g != at(0) && (v6 || *g != at((size - 1) as u8)));
            spec.reserved = reserved.into_iter().map(at).collect();
            if let Some((a, b)) = range {
                let (a, b) = (u32::from(a) % size, u32::from(b) % size);
                spec.ranges = vec![IpRange { start: at(a.min(b) as u8), end: at(a.max(b) as u8) }];
            }
            let Ok(p) = IpPool::from_spec(&spec, Utc::now()) else { return Ok(()) };
            let usable: BTreeSet<IpAddr> =
                (0..size).map(|k| at(k as u8)).filter(|a| p.check_usable(*a).is_ok()).collect();
            prop_assert_eq!(p.usable_count(), usable.len() as u128);
            let mut model = usable.clone();
            let mut alloc = IpAllocator::new(&p);
            for op in ops {
                match op {
                    Op::Next => {
                        let expected = model.pop_first();
                        prop_assert_eq!(alloc.allocate_next(), expected);
                    }
                    Op::Take(k) => {
                        let a = at(k);
                        prop_assert_eq!(alloc.allocate(a), model.remove(&a));
                    }
                    Op::Release(k) => {
                        let a = at(k);
                        let expected = usable.contains(&a) && model.insert(a);
                        prop_assert_eq!(alloc.release(a), expected);
                    }
                }
                prop_assert_eq!(alloc.free_count(), model.len() as u128);
            }
        }
    }
}
