//! Placement over 10,000 nodes: vmm-core's single-pass filter-and-weigh against a naive
//! score-everything-and-sort baseline.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use vmm_benches::naive_place;
use vmm_core::placement::{place, Demand, Strategy};
use vmm_core::{Capacity, Node, NodeSpec, NodeState, Usage};

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let cap = Capacity { cpus: 32, memory_mib: 256 * 1024, storage_gib: 4000 };
            let mut node = Node::from_spec(
                &NodeSpec::new(format!("n{i}"), format!("memory://n{i}")),
                cap,
                chrono::Utc::now(),
            );
            // A mix: some full, some in maintenance, the rest partly used.
            let used = (i * 7919 % 100) as u64;
            node.allocated =
                Usage { vms: used, vcpus: used * 2, memory_mib: used * 2600, storage_gib: used * 40 };
            if i % 17 == 0 {
                node.state = NodeState::Maintenance;
            }
            node
        })
        .collect()
}

fn placement(c: &mut Criterion) {
    let nodes = nodes(10_000);
    let demand = Demand { vcpus: 4, memory_mib: 8192, disk_gib: 80 };
    let mut group = c.benchmark_group("placement/10000_nodes");
    group.bench_function("vmm_spread", |b| {
        b.iter(|| place(black_box(&demand), black_box(&nodes), Strategy::Spread, None, None, None).unwrap())
    });
    group.bench_function("vmm_pack", |b| {
        b.iter(|| place(black_box(&demand), black_box(&nodes), Strategy::Pack, None, None, None).unwrap())
    });
    group.bench_function("naive_score_and_sort", |b| {
        b.iter(|| naive_place(black_box(&demand), black_box(&nodes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);
