//! Creating a VM through `Vmm` on the SQL store (SQLite file, and PostgreSQL when it
//! answers on 127.0.0.1:5432) with 10 VMs in the database and with 100,000: the create
//! places the VM among 4 nodes, leases an address and queues its task in one transaction.
//! The two figures should be close: placement reads one usage row per node, never the VMs.
//!
//! The 100,000 VMs are written straight into the tables in one statement (as vmm's schema
//! has them, with each node's usage counters), which takes seconds instead of minutes.
//! `cargo bench -p vmm-benches --bench create_at_scale`; `VMM_BENCH_VMS` sets the large count.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sqlx::Connection;
use vmm_backends::SqlStore;
use vmm_core::memory::InMemoryConnector;
use vmm_core::{IpPoolSpec, NodeSpec, NodeUriPolicy, PageRequest, VmSpec, Vmm, VmmConfig};

const NODES: usize = 4;

/// A fresh database: a SQLite file, or a PostgreSQL database of its own.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Db {
    fn url(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => url.clone(),
        }
    }

    /// Writes `n` running VMs on `node` and counts them in its usage, in one statement each;
    /// `tag` (below 1000, one per node) tells the nodes' VM ids apart.
    async fn bulk_vms(&self, node: &str, tag: i64, n: u64) {
        let (insert, usage) = (
            "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at) \
             SELECT {id}, {name}, 1, 64, 1, $1, NULL, 'running', '[]', '2026-01-01T00:00:00.000000Z' FROM {seq}",
            "UPDATE nodes SET used_vms = used_vms + $2, used_vcpus = used_vcpus + $2, \
             used_memory_mib = used_memory_mib + 64 * $2, used_storage_gib = used_storage_gib + $2 WHERE id = $1",
        );
        let n = i64::try_from(n).expect("a count");
        match self {
            Self::Sqlite(_) => {
                let mut c = sqlx::SqliteConnection::connect(&self.url()).await.expect("sqlite");
                let sql = insert
                    .replace("{id}", "printf('00000000-0000-7000-8%03d-%012d', $3, n)")
                    .replace("{name}", "'bulk-' || n")
                    .replace("{seq}", "(WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < $2) SELECT n FROM seq)");
                sqlx::query(&sql).bind(node).bind(n).bind(tag).execute(&mut c).await.expect("bulk VMs");
                sqlx::query(usage).bind(node).bind(n).execute(&mut c).await.expect("usage");
            }
            Self::Postgres(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
                let sql = insert
                    .replace(
                        "{id}",
                        "'00000000-0000-7000-8' || lpad($3::text, 3, '0') || '-' || lpad(n::text, 12, '0')",
                    )
                    .replace("{name}", "'bulk-' || n")
                    .replace("{seq}", "generate_series(1, $2) AS n");
                sqlx::query(&sql).bind(node).bind(n).bind(tag).execute(&mut c).await.expect("bulk VMs");
                sqlx::query(usage).bind(node).bind(n).execute(&mut c).await.expect("usage");
            }
        }
    }
}

fn sqlite() -> Db {
    let dir = std::env::temp_dir().join(format!("vmm-bench-scale-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a directory");
    Db::Sqlite(dir.join("vmm.db"))
}

async fn postgres() -> Option<Db> {
    vmm_benches::fresh_postgres_db().await.map(Db::Postgres)
}

/// A service on `db` with 4 roomy nodes, `existing` VMs spread over them, and a pool.
async fn service(db: &Db, existing: u64) -> (Vmm, vmm_core::PoolId) {
    let store = Arc::new(SqlStore::connect(&db.url()).await.expect("the store"));
    let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    let vmm = Vmm::builder()
        .with_store(store)
        .with_connector(Arc::new(InMemoryConnector::new()))
        .with_config(config)
        .build();
    for i in 0..NODES {
        let uri = format!("memory://scale-{i}?cpus=1000000&memory_mib=100000000000&storage_gib=100000000");
        vmm.create_node(NodeSpec::new(format!("scale-{i}"), uri)).await.expect("a node");
    }
    let nodes = vmm.list_nodes(&PageRequest::default()).await.expect("nodes").items;
    for (tag, node) in (0..).zip(&nodes) {
        db.bulk_vms(&node.id.to_string(), tag, existing / NODES as u64).await;
    }
    let pool = vmm.create_ip_pool(IpPoolSpec::new("scale", "198.18.0.0/15")).await.expect("a pool");
    let total: u64 = {
        let mut sum = 0;
        for n in &nodes {
            sum += vmm.get_node(n.id).await.expect("a node").allocated.vms;
        }
        sum
    };
    assert_eq!(total, existing / NODES as u64 * NODES as u64, "the bulk VMs are counted");
    (vmm, pool.id)
}

fn large_count() -> u64 {
    std::env::var("VMM_BENCH_VMS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn bench_db(c: &mut Criterion, label: &str, make: &dyn Fn(&tokio::runtime::Runtime) -> Option<Db>) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let mut group = c.benchmark_group(format!("create_vm/{label}"));
    group.sample_size(50).measurement_time(Duration::from_secs(10));
    for existing in [10, large_count()] {
        let Some(db) = make(&rt) else {
            eprintln!("skipping {label}: the database does not answer");
            return;
        };
        let (vmm, pool) = rt.block_on(service(&db, existing));
        group.bench_function(BenchmarkId::new("existing_vms", existing), |b| {
            b.iter(|| {
                let spec = VmSpec { ip_pool_id: Some(pool), start: false, ..VmSpec::new("bench", 1, 64, 1) };
                black_box(rt.block_on(vmm.create_vm(spec)).expect("create"))
            })
        });
        drop(vmm);
        match &db {
            Db::Sqlite(path) => drop(std::fs::remove_dir_all(path.parent().expect("its directory"))),
            Db::Postgres(url) => rt.block_on(vmm_benches::drop_postgres_db(url)),
        }
    }
    group.finish();
}

fn create_at_scale(c: &mut Criterion) {
    bench_db(c, "sqlite", &|_| Some(sqlite()));
    bench_db(c, "postgres", &|rt| rt.block_on(postgres()));
}

criterion_group!(benches, create_at_scale);
criterion_main!(benches);
