//! vmm-benches: benchmarks of vmm beside naive baselines measured in the same run.
//! The benchmarks are in `benches/`; the baselines are here so that they are tested too.

use std::collections::HashSet;
use std::net::IpAddr;

use vmm_core::placement::{check, Demand};
use vmm_core::{IpPool, Node, NodeId};

/// Baseline: the first free address found by walking the pool from its start and asking a
/// set of leased addresses about each one, as a check-then-insert IPAM would.
pub fn naive_next_free(pool: &IpPool, leased: &HashSet<IpAddr>) -> Option<IpAddr> {
    pool.usable_intervals().into_iter().find_map(|(start, end)| {
        (start..=end).map(|n| to_addr(n, pool.is_v6())).find(|a| !leased.contains(a))
    })
}

fn to_addr(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(n.into())
    } else {
        IpAddr::V4((n as u32).into())
    }
}

/// Baseline: placement that scores every fitting node into a vector, sorts it, and formats
/// a reason string for every rejected node.
pub fn naive_place(demand: &Demand, nodes: &[Node]) -> Option<(NodeId, Vec<String>)> {
    let mut fitting = Vec::new();
    let mut reasons = Vec::new();
    for n in nodes {
        match check(n, demand).first() {
            Some(r) => reasons.push(format!("{}: {r}", n.name)),
            None => {
                let free = n.free_memory_mib() as f64 / n.memory_limit_mib().max(1) as f64
                    + n.free_vcpus() as f64 / n.vcpu_limit().max(1) as f64;
                fitting.push((free, n.id));
            }
        }
    }
    fitting.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    fitting.first().map(|&(_, id)| (id, reasons))
}

/// A new, empty PostgreSQL database on `VMM_TEST_POSTGRES_URL` (the server on
/// 127.0.0.1:5432 by default) and its URL; `None` when no server answers.
pub async fn fresh_postgres_db() -> Option<String> {
    use sqlx::Connection;
    let base = std::env::var("VMM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin = sqlx::PgConnection::connect(&base).await.ok()?;
    // A name of hex digits only: nothing from outside reaches the statement.
    let name = format!("vmm_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.ok()?;
    let (prefix, _) = base.rsplit_once('/')?;
    Some(format!("{prefix}/{name}"))
}

/// Drops a database [`fresh_postgres_db`] made, closing what is still connected to it.
pub async fn drop_postgres_db(url: &str) {
    use sqlx::Connection;
    let base = std::env::var("VMM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let Some((_, name)) = url.rsplit_once('/') else { return };
    // Only a name `fresh_postgres_db` made reaches the statement.
    let ours = name.strip_prefix("vmm_bench_").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if let (true, Ok(mut admin)) = (ours, sqlx::PgConnection::connect(&base).await) {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(e) = sqlx::query(&drop).execute(&mut admin).await {
            eprintln!("could not drop the bench database {name}: {e}");
        }
    }
}

/// The storage pool the benchmarks on the local libvirt use.
pub const BENCH_POOL: &str = "vmm-bench";
/// Its directory.
pub const BENCH_POOL_DIR: &str = "/var/lib/vmm/bench-images";

/// A `Vmm` of a benchmark's own on the local libvirt (`qemu:///system`, TCG): its SQLite
/// database and image library in `data`, its workers running on `rt`, `node` registered.
#[derive(Debug)]
pub struct LocalVmm {
    /// The runtime its workers run on.
    pub rt: tokio::runtime::Runtime,
    /// The service.
    pub vmm: vmm_core::Vmm,
    /// The local node.
    pub node: NodeId,
    /// Its data, for the benchmark to remove at the end.
    pub data: std::path::PathBuf,
}

/// [`LocalVmm`] for benchmark `name`; `None` (said on stderr) when libvirtd does not answer.
pub fn local_vmm(name: &str) -> Option<LocalVmm> {
    use vmm_backends::libvirt::{LibvirtConfig, LibvirtHypervisor};
    use vmm_backends::{OpenConfig, StoreConfig};
    use vmm_core::{NodeSpec, VirtType};
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let libvirt = LibvirtConfig {
        storage_pool: BENCH_POOL.into(),
        storage_path: BENCH_POOL_DIR.into(),
        ..LibvirtConfig::default()
    };
    // Connecting makes sure the storage pool exists.
    if let Err(e) = rt.block_on(LibvirtHypervisor::connect("qemu:///system", VirtType::Qemu, libvirt.clone()))
    {
        eprintln!("skipping {name}: {e}");
        return None;
    }
    let data = std::env::temp_dir().join(format!("vmm-bench-{name}-{}", uuid::Uuid::new_v4().simple()));
    let config = OpenConfig {
        store: StoreConfig::parse(&format!("sqlite://{}/vmm.db", data.display())).expect("a store URL"),
        libvirt,
        image_dir: Some(data.join("images")),
        ..OpenConfig::new("sqlite::memory:").expect("a store URL")
    };
    let vmm = rt.block_on(vmm_backends::open(&config)).expect("vmm opens");
    rt.spawn({
        let vmm = vmm.clone();
        async move { vmm.run_workers(std::future::pending()).await }
    });
    let node = rt
        .block_on(vmm.create_node(NodeSpec::new("bench", "qemu:///system").with_virt_type(VirtType::Qemu)))
        .expect("the local node")
        .id;
    Some(LocalVmm { rt, vmm, node, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_core::{IpAllocator, IpPoolSpec};

    #[test]
    fn baselines_agree_with_the_real_thing() {
        let pool = IpPool::from_spec(&IpPoolSpec::new("p", "198.18.0.0/24"), chrono::Utc::now()).unwrap();
        let mut alloc = IpAllocator::new(&pool);
        let mut leased = HashSet::new();
        for _ in 0..100 {
            let expected = naive_next_free(&pool, &leased);
            let got = alloc.allocate_next();
            assert_eq!(got, expected);
            leased.insert(got.unwrap());
        }
    }
}
