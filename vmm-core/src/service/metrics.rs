//! The scrape: vmm's own metrics and, per node, one bulk read of its domains (cached for
//! [`VmmConfig::stats_cache`](super::VmmConfig::stats_cache)), named as the
//! prometheus-libvirt-exporter names them, labelled with the VM's id and name and its node.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::Vmm;
use crate::error::Result;

type Labels = Vec<(&'static str, String)>;

/// The per-domain families of one scrape.
#[derive(Default)]
struct Domains {
    cpu_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    vcpus: Family<Labels, Gauge>,
    memory_max: Family<Labels, Gauge>,
    memory_current: Family<Labels, Gauge>,
    memory_used: Family<Labels, Gauge>,
    read_bytes: Family<Labels, Counter>,
    read_requests: Family<Labels, Counter>,
    write_bytes: Family<Labels, Counter>,
    write_requests: Family<Labels, Counter>,
    rx_bytes: Family<Labels, Counter>,
    rx_packets: Family<Labels, Counter>,
    tx_bytes: Family<Labels, Counter>,
    tx_packets: Family<Labels, Counter>,
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Vmm {
    /// Registers every metric of a scrape into `registry`: the engine's families, the
    /// tasks queued and running (`vmm_tasks`), whether each node answered (`vmm_node_up`),
    /// and its running VMs' counters.
    pub async fn scrape(&self, registry: &mut Registry) -> Result<()> {
        self.inner.metrics.register(registry);
        let tasks: Family<Labels, Gauge> = Family::default();
        for (state, n) in self.inner.store.count_active_tasks().await? {
            tasks.get_or_create(&vec![("state", state.to_string())]).set(gauge(n));
        }
        registry.register("vmm_tasks", "Tasks queued and running, in the whole cluster", tasks);
        let up: Family<Labels, Gauge> = Family::default();
        let d = Domains::default();
        for node in self.node_domains().await? {
            let node_labels = vec![("node", node.node.id.to_string()), ("node_name", node.node.name.clone())];
            up.get_or_create(&node_labels).set(i64::from(node.domains.is_ok()));
            let Ok(domains) = node.domains else { continue };
            for (s, name) in domains.iter() {
                let vm = vec![
                    ("vm_id", s.vm_id.to_string()),
                    ("vm_name", name.clone()),
                    ("node", node.node.id.to_string()),
                ];
                d.cpu_seconds.get_or_create(&vm).inc_by(s.cpu_time_ns as f64 / 1e9);
                d.vcpus.get_or_create(&vm).set(i64::from(s.vcpus));
                d.memory_max.get_or_create(&vm).set(gauge(s.memory_max_kib * 1024));
                d.memory_current.get_or_create(&vm).set(gauge(s.memory_current_kib * 1024));
                if let Some(used) = s.memory_used_kib {
                    d.memory_used.get_or_create(&vm).set(gauge(used * 1024));
                }
                for b in &s.block {
                    let mut l = vm.clone();
                    l.push(("device", b.device.clone()));
                    d.read_bytes.get_or_create(&l).inc_by(b.read_bytes);
                    d.read_requests.get_or_create(&l).inc_by(b.read_requests);
                    d.write_bytes.get_or_create(&l).inc_by(b.write_bytes);
                    d.write_requests.get_or_create(&l).inc_by(b.write_requests);
                }
                for n in &s.net {
                    let mut l = vm.clone();
                    l.push(("device", n.device.clone()));
                    d.rx_bytes.get_or_create(&l).inc_by(n.rx_bytes);
                    d.rx_packets.get_or_create(&l).inc_by(n.rx_packets);
                    d.tx_bytes.get_or_create(&l).inc_by(n.tx_bytes);
                    d.tx_packets.get_or_create(&l).inc_by(n.tx_packets);
                }
            }
        }
        registry.register("vmm_node_up", "Whether the node answered this scrape's bulk read", up);
        let r = registry;
        r.register("libvirt_domain_info_cpu_time_seconds", "CPU time the domain used", d.cpu_seconds);
        r.register("libvirt_domain_info_virtual_cpus", "vCPUs of the domain", d.vcpus);
        r.register("libvirt_domain_info_maximum_memory_bytes", "The most memory of the domain", d.memory_max);
        r.register(
            "libvirt_domain_info_memory_current_bytes",
            "Memory the domain has (balloon)",
            d.memory_current,
        );
        r.register("libvirt_domain_info_memory_usage_bytes", "Memory the domain uses", d.memory_used);
        r.register("libvirt_domain_block_stats_read_bytes", "Bytes read from the disk", d.read_bytes);
        r.register("libvirt_domain_block_stats_read_requests", "Read requests to the disk", d.read_requests);
        r.register("libvirt_domain_block_stats_write_bytes", "Bytes written to the disk", d.write_bytes);
        r.register(
            "libvirt_domain_block_stats_write_requests",
            "Write requests to the disk",
            d.write_requests,
        );
        r.register("libvirt_domain_interface_stats_receive_bytes", "Bytes the NIC received", d.rx_bytes);
        r.register(
            "libvirt_domain_interface_stats_receive_packets",
            "Packets the NIC received",
            d.rx_packets,
        );
        r.register("libvirt_domain_interface_stats_transmit_bytes", "Bytes the NIC sent", d.tx_bytes);
        r.register("libvirt_domain_interface_stats_transmit_packets", "Packets the NIC sent", d.tx_packets);
        Ok(())
    }
}
