//! A Prometheus scrape of `vmmd` (`GET /metrics` over loopback HTTP, the bulk statistics
//! read afresh each time: no cache) with 1,000 running VMs on `test:///default`, beside the
//! upstream exporter's approach to the same question: one `virsh domstats` call over 1,000
//! running domains (a test-driver node file with as many). The target: under 100 ms.
//!
//! The test driver's node is too small for 1,000 VMs (100 GiB of storage), so the VMs are
//! written straight into the store (SQLite) and their domains defined and started on
//! `test:///default` directly, as vmm would have defined them; the scrape itself goes the
//! whole way. `cargo bench -p vmm-benches --bench metrics_scrape`; `VMM_BENCH_SCRAPE_VMS`
//! sets the count.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sqlx::Connection;
use virt::connect::Connect;
use vmm_backends::libvirt::{domain_xml, LibvirtConfig, LibvirtConnector, Placement};
use vmm_backends::SqlStore;
use vmm_core::conformance::hypervisor::spec;
use vmm_core::{NodeSpec, NodeUriPolicy, VirtType, VmId, Vmm, VmmConfig};
use vmm_server::{app, AdminToken, AppState};

const TOKEN: &str = "bench-token-0123456789abcdef";

fn count() -> usize {
    std::env::var("VMM_BENCH_SCRAPE_VMS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

/// A test-driver node file with `n` running domains named as vmm names them.
fn node_file(n: usize) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("vmm-bench-domstats-{n}.xml"));
    let mut xml = String::from("<node>\n");
    for _ in 0..n {
        let id = uuid::Uuid::new_v4();
        xml.push_str(&format!(
            "<domain type='test'><name>vmm-{id}</name><uuid>{id}</uuid><memory>65536</memory>\
             <vcpu>1</vcpu><os><type>hvm</type></os></domain>\n"
        ));
    }
    xml.push_str("</node>\n");
    std::fs::write(&path, xml).expect("the node file");
    path
}

fn bench(c: &mut Criterion) {
    let n = count();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = LibvirtConfig {
        storage_pool: "vmm-bench".into(),
        storage_path: "/tmp/vmm-bench-pool".into(),
        ..LibvirtConfig::default()
    };
    let config = VmmConfig {
        node_uris: NodeUriPolicy::for_tests(),
        stats_cache: Duration::ZERO,
        concurrency: 32,
        ..VmmConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("vmm-bench-scrape-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("vmm.db").display());
    let started = Instant::now();
    let (vmm, base) = rt.block_on(async {
        let store = Arc::new(SqlStore::connect(&url).await.unwrap());
        let vmm = Vmm::builder()
            .with_store(store)
            .with_connector(Arc::new(LibvirtConnector::new(cfg.clone())))
            .with_config(config)
            .build();
        let node = vmm.create_node(NodeSpec::new("bench", "test:///default")).await.unwrap();
        // The domains, on the same process-wide test driver vmm's node is.
        let conn = Connect::open(Some("test:///default")).unwrap();
        let at = Placement { storage_pool: &cfg.storage_pool, network: None, console_log_dir: None, vnc_password: None };
        let ids: Vec<VmId> = (0..n).map(|_| VmId::new()).collect();
        for (i, id) in ids.iter().enumerate() {
            let xml = domain_xml(&spec(*id, &format!("vm-{i}"), VirtType::Qemu), "test", &at).unwrap();
            conn.define_domain_xml(&xml).unwrap().create().unwrap();
        }
        // The VMs, as vmm's schema has them.
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for chunk in ids.chunks(500) {
            let rows: Vec<String> = chunk
                .iter()
                .map(|id| {
                    format!(
                        "('{id}', 'vm-{id}', 1, 64, 1, '{}', NULL, 'running', '[]', '2026-01-01T00:00:00.000000Z')",
                        node.id
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at) VALUES {}",
                rows.join(", ")
            );
            sqlx::query(&sql).execute(&mut db).await.unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(vmm.clone(), AdminToken::new(TOKEN).unwrap());
        tokio::spawn(vmm_server::serve(listener, app(state), Default::default(), std::future::pending()));
        (vmm, format!("http://{addr}"))
    });
    eprintln!("{n} running VMs on test:///default in {:.1?}", started.elapsed());
    let scrape = || {
        ureq::get(&format!("{base}/metrics"))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .expect("a scrape")
            .into_string()
            .expect("text")
    };
    let text = scrape();
    let series = text.lines().filter(|l| l.starts_with("libvirt_domain_info_virtual_cpus{")).count();
    assert_eq!(series, n, "one series per running VM");

    let file = node_file(n);
    let uri = format!("test://{}", file.display());
    let domstats = || {
        let out = Command::new("virsh")
            .args(["-c", &uri, "domstats"])
            .stderr(Stdio::inherit())
            .output()
            .expect("virsh runs");
        assert!(out.status.success());
        out.stdout.len()
    };
    let records =
        String::from_utf8(Command::new("virsh").args(["-c", &uri, "domstats"]).output().unwrap().stdout)
            .unwrap()
            .matches("Domain: ")
            .count();
    assert_eq!(records, n);

    let mut group = c.benchmark_group(format!("metrics_scrape/{n}_vms"));
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.bench_function("vmm GET /metrics", |b| b.iter(scrape));
    group.bench_function("peer: virsh domstats", |b| b.iter(domstats));
    group.finish();
    drop(vmm);
    std::fs::remove_file(file).ok();
    std::fs::remove_dir_all(dir).ok();
}

criterion_group!(benches, bench);
criterion_main!(benches);
