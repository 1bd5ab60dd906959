//! IP allocation: the interval allocator of vmm-core against a linear scan, in an IPv4 /16
//! with 60,000 leases and an IPv6 /64 with 60,000 leases.

use std::collections::HashSet;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use vmm_benches::naive_next_free;
use vmm_core::{IpAllocator, IpPool, IpPoolSpec};

const LEASES: usize = 60_000;

fn setup(cidr: &str) -> (IpPool, IpAllocator, HashSet<IpAddr>) {
    let pool = IpPool::from_spec(&IpPoolSpec::new("bench", cidr), chrono::Utc::now()).unwrap();
    let mut alloc = IpAllocator::new(&pool);
    let leased: HashSet<IpAddr> = (0..LEASES).map(|_| alloc.allocate_next().unwrap()).collect();
    (pool, alloc, leased)
}

fn bench_pool(c: &mut Criterion, label: &str, cidr: &str) {
    let (pool, mut alloc, leased) = setup(cidr);
    let mut group = c.benchmark_group(format!("ipam/{label}_60000_leases"));
    group.bench_function("vmm_next_free", |b| {
        b.iter(|| {
            let a = alloc.allocate_next().unwrap();
            alloc.release(black_box(a));
        })
    });
    // A lease in the middle goes and comes back: split and merge of intervals.
    let middle = *leased.iter().nth(LEASES / 2).unwrap();
    group.bench_function("vmm_release_and_take", |b| {
        b.iter(|| {
            alloc.release(black_box(middle));
            alloc.allocate(black_box(middle));
        })
    });
    group.bench_function("naive_linear_scan", |b| {
        b.iter(|| naive_next_free(black_box(&pool), black_box(&leased)).unwrap())
    });
    group.finish();
}

fn ipam(c: &mut Criterion) {
    bench_pool(c, "v4_slash16", "198.18.0.0/16");
    bench_pool(c, "v6_slash64", "2001:db8::/64");
}

criterion_group!(benches, ipam);
criterion_main!(benches);
