//! The fake's counters and consoles. Each bulk read advances every running domain's
//! counters as if a minute had passed at the CPU load set for it (none unless set), with a
//! mebibyte read and written and a kilobyte sent and received; its consoles echo what they
//! are sent, after a banner.

use std::collections::HashMap;

use futures::channel::mpsc;

use super::InMemoryHypervisor;
use crate::console::{ConsoleKind, ConsoleStream};
use crate::error::{Error, Result};
use crate::hypervisor::PowerState;
use crate::id::VmId;
use crate::usage::{BlockStats, DomainStats, NetStats, NodeStats};

/// What a bulk read pretends passed since the last one.
const READ_EVERY_SECS: u64 = 60;

#[derive(Debug, Default)]
pub(super) struct Counters {
    domains: HashMap<VmId, DomainStats>,
    loads: HashMap<VmId, f64>,
    node: NodeStats,
}

impl InMemoryHypervisor {
    /// Makes the VM's domain use `load` (0 to 1) of its vCPUs from now on.
    pub fn set_cpu_load(&self, vm: VmId, load: f64) {
        self.state().counters.loads.insert(vm, load.clamp(0.0, 1.0));
    }

    pub(super) fn next_stats(&self) -> Vec<DomainStats> {
        let mut s = self.state();
        let running: Vec<_> = s
            .domains
            .iter()
            .filter(|(_, (_, state))| *state == PowerState::Running)
            .map(|(id, (spec, _))| (*id, spec.vcpus, spec.memory_mib))
            .collect();
        let c = &mut s.counters;
        c.domains.retain(|id, _| running.iter().any(|(r, _, _)| r == id));
        let mut out = Vec::with_capacity(running.len());
        let mut busy = 0;
        for (id, vcpus, memory_mib) in running {
            let load = c.loads.get(&id).copied().unwrap_or(0.0);
            let d = c.domains.entry(id).or_insert_with(|| DomainStats {
                vm_id: id,
                state: PowerState::Running,
                cpu_time_ns: 0,
                vcpus,
                memory_max_kib: memory_mib * 1024,
                memory_current_kib: memory_mib * 1024,
                memory_used_kib: Some(memory_mib * 512),
                block: vec![BlockStats { device: "vda".into(), ..BlockStats::default() }],
                net: vec![NetStats { device: "vnet0".into(), ..NetStats::default() }],
            });
            let used = (load * f64::from(vcpus) * READ_EVERY_SECS as f64 * 1e9) as u64;
            d.cpu_time_ns += used;
            busy += used;
            for b in &mut d.block {
                b.read_bytes += 1 << 20;
                b.write_bytes += 1 << 20;
                b.read_requests += 1;
                b.write_requests += 1;
            }
            for n in &mut d.net {
                n.rx_bytes += 1024;
                n.tx_bytes += 1024;
                n.rx_packets += 1;
                n.tx_packets += 1;
            }
            out.push(d.clone());
        }
        let all = u64::from(self.capacity.cpus) * READ_EVERY_SECS * 1_000_000_000;
        c.node.cpu_busy_ns += busy.min(all);
        c.node.cpu_idle_ns += all - busy.min(all);
        out
    }

    pub(super) fn next_node_stats(&self) -> NodeStats {
        let s = self.state();
        let used: u64 =
            s.domains.values().filter(|(_, st)| *st == PowerState::Running).map(|(d, _)| d.memory_mib).sum();
        let total = self.capacity.memory_mib * 1024;
        NodeStats {
            memory_total_kib: total,
            memory_free_kib: total.saturating_sub(used * 1024),
            ..s.counters.node
        }
    }

    pub(super) fn echo_console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleStream> {
        match self.state().domains.get(&vm) {
            None => return Err(Error::VmNotFound { id: vm }),
            Some((_, PowerState::Running)) => {}
            Some(_) => return Err(Error::conflict(format!("domain {} is not running", vm.domain_name()))),
        }
        let (mut to_guest, from_guest) = mpsc::channel(64);
        let banner = match kind {
            ConsoleKind::Vnc => b"RFB 003.008\n".to_vec(),
            ConsoleKind::Serial => format!("memory console of {}\r\n", vm.domain_name()).into_bytes(),
        };
        to_guest.try_send(banner).map_err(|e| Error::backend(self.uri.clone(), e))?;
        Ok(ConsoleStream { to_guest, from_guest })
    }
}
