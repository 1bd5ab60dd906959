//! One VM's create + start + stop + delete, through `Vmm` (tasks, saga, store) and with the
//! same libvirt calls made directly through `virt`, on `test:///default` and on
//! `qemu:///system` (real QEMU under TCG; skipped when libvirtd does not answer).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use virt::connect::Connect;
use vmm_backends::libvirt::{domain_xml, pool_xml, volume_xml, LibvirtConfig, LibvirtConnector, Placement};
use vmm_core::conformance::hypervisor::spec;
use vmm_core::{NodeSpec, NodeUriPolicy, TaskState, VirtType, VmId, VmSpec, Vmm, VmmConfig};

fn config(uri: &str) -> LibvirtConfig {
    let dir = if uri.starts_with("test:") { "/tmp/vmm-bench-pool" } else { "/var/lib/vmm/bench-images" };
    LibvirtConfig { storage_pool: "vmm-bench".into(), storage_path: dir.into(), ..LibvirtConfig::default() }
}

/// The cycle through the service: each step a task run to its end.
async fn through_vmm(vmm: &Vmm, node: vmm_core::NodeId) {
    let spec = VmSpec { node_id: Some(node), ..VmSpec::new("bench", 1, 128, 1) };
    let (vm, _) = vmm.create_vm(spec).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    let stop = vmm.stop_vm(vm.id).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    let delete = vmm.delete_vm(vm.id).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    for t in [stop.id, delete.id] {
        assert_eq!(vmm.get_task(t).await.unwrap().state, TaskState::Succeeded);
    }
}

/// The same libvirt calls, made directly; on a real node the serial console is logged
/// to the pool's directory as vmm does, and the log removed.
fn direct(conn: &Connect, pool_name: &str, domain_type: &str, log_dir: Option<&str>) {
    let vm = VmId::new();
    let pool = conn.lookup_storage_pool_by_name(pool_name).unwrap();
    let vol = virt::storage_vol::StorageVol::create_xml(&pool, &volume_xml(vm, 1).unwrap(), 0).unwrap();
    let at =
        Placement { storage_pool: pool_name, network: None, console_log_dir: log_dir, vnc_password: None };
    let dom = conn
        .define_domain_xml(&domain_xml(&spec(vm, "bench", VirtType::Qemu), domain_type, &at).unwrap())
        .unwrap();
    dom.create().unwrap();
    dom.destroy().unwrap();
    dom.undefine().unwrap();
    vol.delete(0).unwrap();
    if let Some(dir) = log_dir {
        std::fs::remove_file(format!("{dir}/{}", vm.console_log_name())).ok();
    }
}

fn bench_node(c: &mut Criterion, label: &str, uri: &str, domain_type: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = config(uri);
    let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    let vmm = Vmm::builder()
        .with_connector(Arc::new(LibvirtConnector::new(cfg.clone())))
        .with_config(config)
        .build();
    let node = match rt.block_on(vmm.create_node(NodeSpec::new("bench", uri).with_virt_type(VirtType::Qemu)))
    {
        Ok(node) => node,
        Err(e) => {
            eprintln!("skipping {label}: {e}");
            return;
        }
    };
    let conn = Connect::open(Some(uri)).unwrap();
    if conn.lookup_storage_pool_by_name(&cfg.storage_pool).is_err() {
        let pool = conn
            .define_storage_pool_xml(&pool_xml(&cfg.storage_pool, &cfg.storage_path).unwrap(), 0)
            .unwrap();
        pool.build(0).unwrap();
        pool.create(0).unwrap();
    }
    let mut group = c.benchmark_group(format!("lifecycle/{label}"));
    if uri.starts_with("qemu") {
        group.sample_size(10).measurement_time(Duration::from_secs(20));
    }
    group.bench_function("vmm_create_start_stop_delete", |b| {
        b.iter(|| rt.block_on(through_vmm(black_box(&vmm), node.id)))
    });
    group.bench_function("direct_virt_calls", |b| {
        let log_dir = uri.starts_with("qemu").then_some(cfg.storage_path.as_str());
        b.iter(|| direct(black_box(&conn), &cfg.storage_pool, domain_type, log_dir))
    });
    group.finish();
}

fn lifecycle(c: &mut Criterion) {
    // test:///default is shared per process: the Vmm and the direct connection see one state.
    bench_node(c, "test_default", "test:///default", "test");
    bench_node(c, "qemu_system_tcg", "qemu:///system", "qemu");
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
