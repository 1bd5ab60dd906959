//! Usage: what a node's domains consume, read in bulk from the node ([`DomainStats`],
//! [`NodeStats`]), turned into rates between two readings ([`UsagePoint`]) and kept at
//! three resolutions ([`UsageRetention`]): raw points for a day, 5-minute averages for a
//! month, hourly averages for a year, so that storage stays bounded however long a VM lives.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hypervisor::PowerState;
use crate::id::{NodeId, VmId};

/// One disk's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// The guest's device name (`vda`).
    pub device: String,
    /// Bytes read.
    pub read_bytes: u64,
    /// Read requests.
    pub read_requests: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Write requests.
    pub write_requests: u64,
}

/// One NIC's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStats {
    /// The host-side device (`vnet3`).
    pub device: String,
    /// Bytes received by the guest.
    pub rx_bytes: u64,
    /// Packets received by the guest.
    pub rx_packets: u64,
    /// Bytes sent by the guest.
    pub tx_bytes: u64,
    /// Packets sent by the guest.
    pub tx_packets: u64,
}

/// One domain's counters, from a node's bulk statistics (one call per node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainStats {
    /// The VM.
    pub vm_id: VmId,
    /// Its power state.
    pub state: PowerState,
    /// CPU time used by the domain since it started, in nanoseconds.
    pub cpu_time_ns: u64,
    /// vCPUs it runs with (0 where the driver does not say).
    pub vcpus: u32,
    /// The most memory it may have, in KiB (0 where the driver does not say).
    pub memory_max_kib: u64,
    /// Memory it has now (the balloon's size), in KiB.
    pub memory_current_kib: u64,
    /// Memory in use: what the guest reports as used where it reports it, otherwise the
    /// process's resident size; `None` when neither is known.
    pub memory_used_kib: Option<u64>,
    /// Its disks.
    pub block: Vec<BlockStats>,
    /// Its NICs.
    pub net: Vec<NetStats>,
}

/// A node's own counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// CPU time spent busy (user and kernel), all CPUs, in nanoseconds.
    pub cpu_busy_ns: u64,
    /// CPU time spent idle (iowait included), all CPUs, in nanoseconds.
    pub cpu_idle_ns: u64,
    /// Memory in all, in KiB.
    pub memory_total_kib: u64,
    /// Memory free for use (free, buffers and page cache), in KiB.
    pub memory_free_kib: u64,
}

/// What a usage series is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageSubject {
    /// A VM.
    Vm(VmId),
    /// A node.
    Node(NodeId),
}

impl UsageSubject {
    /// The key the store files the series under (`vm:<id>`, `node:<id>`).
    pub fn key(&self) -> String {
        match self {
            Self::Vm(id) => format!("vm:{id}"),
            Self::Node(id) => format!("node:{id}"),
        }
    }
}

/// Usage over one interval, as rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsagePoint {
    /// The end of the interval (for an average, the start of its bucket).
    pub t: DateTime<Utc>,
    /// CPU use: of the VM's vCPUs, or of the node's CPUs, in percent.
    pub cpu_percent: f64,
    /// Memory in use, in MiB.
    pub memory_used_mib: f64,
    /// Disk reads, bytes per second.
    pub disk_read_bps: f64,
    /// Disk writes, bytes per second.
    pub disk_write_bps: f64,
    /// Network bytes received per second.
    pub net_rx_bps: f64,
    /// Network bytes sent per second.
    pub net_tx_bps: f64,
}

impl UsagePoint {
    /// The average of `points`, stamped `t`; `None` for none.
    pub fn average(t: DateTime<Utc>, points: &[UsagePoint]) -> Option<UsagePoint> {
        if points.is_empty() {
            return None;
        }
        let n = points.len() as f64;
        let avg = |f: fn(&UsagePoint) -> f64| points.iter().map(f).sum::<f64>() / n;
        Some(UsagePoint {
            t,
            cpu_percent: avg(|p| p.cpu_percent),
            memory_used_mib: avg(|p| p.memory_used_mib),
            disk_read_bps: avg(|p| p.disk_read_bps),
            disk_write_bps: avg(|p| p.disk_write_bps),
            net_rx_bps: avg(|p| p.net_rx_bps),
            net_tx_bps: avg(|p| p.net_tx_bps),
        })
    }
}

/// A domain's counters at one moment, kept until the next reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// CPU time in nanoseconds.
    pub cpu_ns: u64,
    /// The CPUs that time is shared by (the VM's vCPUs).
    pub cpus: u32,
    /// Memory in use, in KiB.
    pub memory_used_kib: u64,
    /// Each device's byte counters: a disk's `[read, written, 0, 0]`, a NIC's
    /// `[0, 0, received, sent]`, by `block:NAME` or `net:NAME`.
    pub devices: std::collections::BTreeMap<String, [u64; 4]>,
}

impl Reading {
    /// A domain's reading at `at`.
    pub fn of_domain(s: &DomainStats, at: DateTime<Utc>) -> Self {
        let disks =
            s.block.iter().map(|b| (format!("block:{}", b.device), [b.read_bytes, b.write_bytes, 0, 0]));
        let nics = s.net.iter().map(|n| (format!("net:{}", n.device), [0, 0, n.rx_bytes, n.tx_bytes]));
        Reading {
            at,
            cpu_ns: s.cpu_time_ns,
            cpus: s.vcpus.max(1),
            memory_used_kib: s.memory_used_kib.unwrap_or(s.memory_current_kib),
            devices: disks.chain(nics).collect(),
        }
    }

    /// The rates from `before` to this reading; `None` when no time passed or the CPU
    /// counter went back (the domain restarted), so the pair says nothing. Devices count
    /// when both readings have them and their counters did not go back (a disk or NIC
    /// plugged in or out between the two changes nothing else).
    pub fn rates_since(&self, before: &Reading) -> Option<UsagePoint> {
        let secs = (self.at - before.at).num_milliseconds() as f64 / 1000.0;
        if secs <= 0.0 {
            return None;
        }
        let cpu = self.cpu_ns.checked_sub(before.cpu_ns)? as f64;
        let mut moved = [0f64; 4];
        for (device, now) in &self.devices {
            let Some(then) = before.devices.get(device) else { continue };
            let deltas: Option<Vec<u64>> = now.iter().zip(then).map(|(n, t)| n.checked_sub(*t)).collect();
            for (sum, d) in moved.iter_mut().zip(deltas.into_iter().flatten()) {
                *sum += d as f64;
            }
        }
        Some(UsagePoint {
            t: self.at,
            cpu_percent: (cpu / (secs * 1e9 * f64::from(self.cpus)) * 100.0).clamp(0.0, 100.0),
            memory_used_mib: self.memory_used_kib as f64 / 1024.0,
            disk_read_bps: moved[0] / secs,
            disk_write_bps: moved[1] / secs,
            net_rx_bps: moved[2] / secs,
            net_tx_bps: moved[3] / secs,
        })
    }
}

/// How often usage is sampled and how long each resolution is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRetention {
    /// Between two samples (default 60 s).
    pub interval: Duration,
    /// Raw samples are kept this long (default a day).
    pub raw: Duration,
    /// 5-minute averages are kept this long (default 30 days).
    pub five_minutes: Duration,
    /// Hourly averages are kept this long (default 365 days).
    pub hourly: Duration,
}

impl Default for UsageRetention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        UsageRetention {
            interval: Duration::from_secs(60),
            raw: Duration::from_secs(DAY),
            five_minutes: Duration::from_secs(30 * DAY),
            hourly: Duration::from_secs(365 * DAY),
        }
    }
}

/// Raw points (as sampled).
pub const RAW: u32 = 0;
/// The rollups: bucket length in seconds.
pub const ROLLUPS: [u32; 2] = [300, 3600];

impl UsageRetention {
    /// How long points of `resolution` are kept.
    pub fn keep(&self, resolution: u32) -> Duration {
        match resolution {
            RAW => self.raw,
            300 => self.five_minutes,
            _ => self.hourly,
        }
    }

    /// The most points one subject can have stored: what each resolution keeps, plus the
    /// bucket being filled.
    pub fn bound_per_subject(&self) -> u64 {
        let raw = self.raw.as_secs() / self.interval.as_secs().max(1) + 1;
        raw + ROLLUPS.iter().map(|&r| self.keep(r).as_secs() / u64::from(r) + 2).sum::<u64>()
    }

    /// The stored resolution to answer a query from `from` at `step` seconds with: the
    /// coarsest one no coarser than the step that still holds `from`, else the finest that
    /// holds it, else the hourly one.
    pub fn resolution_for(&self, from: DateTime<Utc>, now: DateTime<Utc>, step: u64) -> u32 {
        let covers = |r: &u32| {
            now.checked_sub_signed(crate::service::chrono_duration(self.keep(*r)))
                .is_none_or(|oldest| from >= oldest)
        };
        let all = [RAW, ROLLUPS[0], ROLLUPS[1]];
        all.iter()
            .rev()
            .find(|&&r| u64::from(r) <= step && covers(&r))
            .or_else(|| all.iter().find(|r| covers(r)))
            .copied()
            .unwrap_or(ROLLUPS[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(secs: i64, cpu_ns: u64, read: u64) -> Reading {
        Reading {
            at: DateTime::from_timestamp(secs, 0).unwrap(),
            cpu_ns,
            cpus: 2,
            memory_used_kib: 2048,
            devices: [("block:vda".to_owned(), [read, 0, 0, 0])].into_iter().collect(),
        }
    }

    #[test]
    fn rates_are_per_second_and_cpu_is_of_all_vcpus() {
        let p = reading(70, 60_000_000_000, 6000).rates_since(&reading(10, 0, 0)).unwrap();
        // 60 s of CPU over 60 s on 2 vCPUs: half of them.
        assert_eq!(p.cpu_percent, 50.0);
        assert_eq!(p.disk_read_bps, 100.0);
        assert_eq!(p.memory_used_mib, 2.0);
    }

    #[test]
    fn a_cpu_counter_that_went_back_or_no_time_gives_no_point() {
        assert!(reading(70, 1, 0).rates_since(&reading(10, 5, 0)).is_none());
        assert!(reading(10, 5, 0).rates_since(&reading(10, 1, 0)).is_none());
    }

    #[test]
    fn a_device_plugged_in_or_out_counts_only_where_both_readings_have_it() {
        let before = reading(10, 0, 6000);
        let mut now = reading(70, 0, 12_000);
        now.devices.insert("block:vdb".into(), [1 << 30, 0, 0, 0]);
        now.devices.insert("net:vnet0".into(), [0, 0, 600, 60]);
        let p = now.rates_since(&before).unwrap();
        assert_eq!((p.disk_read_bps, p.net_rx_bps), (100.0, 0.0));
        // vda gone (and vdb's counter is new): no disk traffic, the point stands.
        let mut later = reading(130, 0, 0);
        later.devices = [("block:vdb".to_owned(), [(1 << 30) + 60, 0, 0, 0])].into_iter().collect();
        assert_eq!(later.rates_since(&now).unwrap().disk_read_bps, 1.0);
    }

    #[test]
    fn queries_use_the_finest_resolution_that_holds_them() {
        let r = UsageRetention::default();
        let now = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        let ago = |h: i64| now - chrono::Duration::hours(h);
        assert_eq!(r.resolution_for(ago(1), now, 60), RAW);
        assert_eq!(r.resolution_for(ago(1), now, 300), 300);
        assert_eq!(r.resolution_for(ago(48), now, 60), 300);
        assert_eq!(r.resolution_for(ago(24 * 60), now, 60), 3600);
        assert_eq!(r.resolution_for(ago(1), now, 7200), 3600);
    }
}
