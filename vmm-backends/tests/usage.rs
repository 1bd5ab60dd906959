//! The usage collector over SQL at scale: 2,000 running VMs sampled every minute for 45
//! minutes keep the stats table within its rollup bound, with every subject's recent points
//! and rollups present.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::sync::Arc;
use std::time::Duration;

use vmm_backends::SqlStore;
use vmm_core::memory::InMemoryConnector;
use vmm_core::usage::{UsageRetention, UsageSubject, RAW};
use vmm_core::{ManualClock, NodeSpec, NodeUriPolicy, UsageCollector, UsageStore, VmSpec, Vmm, VmmConfig};

const VMS: usize = 2000;

async fn bounded_at_scale(url: &str) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let store = Arc::new(SqlStore::connect(url).await.unwrap());
    let connector = Arc::new(InMemoryConnector::new());
    let retention = UsageRetention {
        interval: Duration::from_secs(60),
        raw: Duration::from_secs(600),
        five_minutes: Duration::from_secs(1800),
        hourly: Duration::from_secs(3600),
    };
    let config = VmmConfig {
        node_uris: NodeUriPolicy::for_tests(),
        usage: retention,
        concurrency: 64,
        ..VmmConfig::default()
    };
    let vmm = Vmm::builder()
        .with_store(store.clone())
        .with_connector(connector.clone())
        .with_clock(clock.clone())
        .with_config(config)
        .build();
    let uri = "memory://big?cpus=4000&memory_mib=4096000&storage_gib=100000";
    vmm.create_node(NodeSpec::new("big", uri)).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..VMS {
        ids.push(vmm.create_vm(VmSpec::new(format!("vm-{i}"), 1, 512, 1)).await.unwrap().0.id);
    }
    vmm.run_until_idle().await.unwrap();
    let hv = connector.get(uri).unwrap();
    assert_eq!(hv.domain_count(), VMS);
    for id in ids.iter().step_by(2) {
        hv.set_cpu_load(*id, 0.25);
    }

    let mut collector = UsageCollector::default();
    for _ in 0..45 {
        clock.advance(chrono::Duration::seconds(60));
        vmm.collect_usage(&mut collector).await.unwrap();
    }
    let subjects = VMS as u64 + 1;
    let stored = store.count_usage().await.unwrap();
    let bound = subjects * retention.bound_per_subject();
    assert!(stored <= bound, "{stored} points stored, bound {bound}");
    // The last ten minutes of raw points of each VM, and its rollups, are all there.
    let now = vmm_core::Clock::now(clock.as_ref());
    let last = store
        .usage(
            UsageSubject::Vm(ids[0]),
            RAW,
            now - chrono::Duration::minutes(10),
            now + chrono::Duration::seconds(1),
        )
        .await
        .unwrap();
    // Ten minutes ago to now, both ends in: eleven points a minute apart.
    assert_eq!(last.len(), 11, "{last:?}");
    assert!(last.iter().all(|p| (p.cpu_percent - 25.0).abs() < 0.01));
    assert!(stored >= VMS as u64 * (10 + 6), "{stored} points stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_stats_stay_within_their_rollup_bound_with_2000_vms() {
    let dir = std::env::temp_dir().join(format!("vmm-usage-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    bounded_at_scale(&format!("sqlite://{}", dir.join("vmm.db").display())).await;
    let _ = std::fs::remove_dir_all(dir);
}
