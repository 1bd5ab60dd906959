//! Arbitrary pool specs and allocation sequences: the allocator never hands out an address
//! the pool does not allow, never the same one twice, and never panics.
#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vmm_core::{IpAllocator, IpPool, IpPoolSpec};

#[derive(Debug, Arbitrary)]
enum Op {
    Next,
    Take(u16),
    Release(u16),
}

#[derive(Debug, Arbitrary)]
struct Input {
    spec_json: String,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let Ok(spec) = serde_json::from_str::<IpPoolSpec>(&input.spec_json) else { return };
    let Ok(pool) = IpPool::from_spec(&spec, chrono::Utc::now()) else { return };
    let mut alloc = IpAllocator::new(&pool);
    let mut held = HashSet::new();
    let base = pool.cidr.network();
    let nth = |k: u16| match base {
        std::net::IpAddr::V4(a) => std::net::IpAddr::V4((u32::from(a).wrapping_add(u32::from(k))).into()),
        std::net::IpAddr::V6(a) => std::net::IpAddr::V6((u128::from(a).wrapping_add(u128::from(k))).into()),
    };
    for op in input.ops {
        match op {
            Op::Next => {
                if let Some(a) = alloc.allocate_next() {
                    assert!(pool.check_usable(a).is_ok(), "{a} is not usable");
                    assert!(held.insert(a), "{a} handed out twice");
                }
            }
            Op::Take(k) => {
                let a = nth(k);
                if alloc.allocate(a) {
                    assert!(pool.check_usable(a).is_ok());
                    assert!(held.insert(a));
                }
            }
            Op::Release(k) => {
                let a = nth(k);
                assert_eq!(alloc.release(a), held.remove(&a));
            }
        }
    }
});
