//! Usage: the collector that samples every running VM and every node each interval (one
//! bulk read per node), stores rates and keeps the rollups and their bounds; the queries
//! that answer a range at a step; and the cached bulk reads that scrapes share.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::future::{join_all, select, Either};
use futures_timer::Delay;

use super::{chrono_duration, lock, Vmm};
use crate::error::{Error, Result};
use crate::id::{NodeId, VmId};
use crate::node::Node;
use crate::usage::{DomainStats, NodeStats, Reading, UsagePoint, UsageSubject, RAW, ROLLUPS};
use crate::users::{Access, Actor, Area};

/// The name of the collector's singleton lease.
const COLLECTOR: &str = "usage-collector";

/// Most points one query may answer with.
pub const MAX_POINTS: u64 = 10_000;

/// What the collector remembers between rounds: each subject's last reading, and when it
/// last rolled up.
#[derive(Debug, Default)]
pub struct UsageCollector {
    readings: HashMap<UsageSubject, Reading>,
    nodes: HashMap<NodeId, (DateTime<Utc>, NodeStats)>,
    rolled: Option<DateTime<Utc>>,
}

/// A node's running VMs' counters, each with the VM's name, from one bulk read.
pub type Domains = Arc<Vec<(DomainStats, String)>>;

/// A node's domains as one bulk read saw them, with their VMs' names.
#[derive(Debug)]
pub struct NodeDomains {
    /// The node.
    pub node: Node,
    /// Its VMs' counters and names, or why they could not be read.
    pub domains: Result<Domains>,
}

impl Vmm {
    /// Samples usage every `interval` of [`VmmConfig::usage`](super::VmmConfig::usage) until
    /// `stopped`, in one process of the cluster at a time (a singleton lease, taken over
    /// within three intervals of its holder's death).
    pub async fn run_usage_collector(&self, stopped: impl std::future::Future<Output = ()>) {
        let mut stopped = std::pin::pin!(stopped);
        let interval = self.inner.config.usage.interval;
        let mut collector = UsageCollector::default();
        loop {
            let holder = self.inner.config.worker_id.clone();
            match self.inner.store.acquire_singleton(COLLECTOR, &holder, interval * 3).await {
                Ok(true) => {
                    if let Err(e) = self.collect_usage(&mut collector).await {
                        tracing::warn!(error = %crate::error_chain(&e), "collecting usage failed");
                    }
                }
                // Another process collects; what this one read before is stale by now.
                Ok(false) => collector = UsageCollector::default(),
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "the collector's lease could not be taken")
                }
            }
            if let Either::Left(_) = select(stopped.as_mut(), Delay::new(interval)).await {
                return;
            }
        }
    }

    /// One round of the collector: reads every node, stores the rates since the last round
    /// (a subject seen for the first time only primes), rolls up and prunes. Returns how
    /// many points it stored.
    pub async fn collect_usage(&self, collector: &mut UsageCollector) -> Result<usize> {
        let now = DateTime::from_timestamp(self.now().timestamp(), 0).unwrap_or_default();
        let mut points = Vec::new();
        let nodes = self.all_nodes().await?;
        let reads = join_all(nodes.iter().map(|node| async move {
            let hv = self.hypervisor(node).await?;
            let domains = hv.domain_stats().await?;
            let own = self.inner.store.vms_on_node(node.id).await?;
            let node_stats = hv.node_stats().await.ok();
            Ok::<_, Error>((domains, own, node_stats))
        }))
        .await;
        let (mut seen, mut seen_nodes) = (HashSet::new(), HashSet::new());
        for (node, read) in nodes.iter().zip(reads) {
            let (domains, own, node_stats) = match read {
                Ok(read) => read,
                Err(e) => {
                    tracing::info!(node = %node.name, error = %e, "no usage from this node this round");
                    continue;
                }
            };
            let mut node_point = UsagePoint { t: now, ..UsagePoint::default() };
            let own: HashSet<VmId> = own.iter().map(|vm| vm.id).collect();
            for d in domains.iter().filter(|d| own.contains(&d.vm_id)) {
                let subject = UsageSubject::Vm(d.vm_id);
                seen.insert(subject);
                if let Some(p) = self.rate(collector, subject, Reading::of_domain(d, now)) {
                    node_point.disk_read_bps += p.disk_read_bps;
                    node_point.disk_write_bps += p.disk_write_bps;
                    node_point.net_rx_bps += p.net_rx_bps;
                    node_point.net_tx_bps += p.net_tx_bps;
                    points.push((subject, p));
                }
            }
            if let Some(n) = node_stats {
                seen_nodes.insert(node.id);
                if let Some((at, before)) = collector.nodes.insert(node.id, (now, n)) {
                    let busy = n.cpu_busy_ns.saturating_sub(before.cpu_busy_ns) as f64;
                    let idle = n.cpu_idle_ns.saturating_sub(before.cpu_idle_ns) as f64;
                    if now > at && busy + idle > 0.0 {
                        node_point.cpu_percent = busy / (busy + idle) * 100.0;
                        let used = n.memory_total_kib.saturating_sub(n.memory_free_kib);
                        node_point.memory_used_mib = used as f64 / 1024.0;
                        points.push((UsageSubject::Node(node.id), node_point));
                    }
                }
            }
        }
        collector.nodes.retain(|id, _| seen_nodes.contains(id));
        collector.readings.retain(|s, _| seen.contains(s));
        self.inner.store.add_usage(&points).await?;
        self.roll_up(collector, now).await?;
        Ok(points.len())
    }

    /// The rate of `subject` since its last reading, which `reading` replaces.
    fn rate(
        &self,
        collector: &mut UsageCollector,
        subject: UsageSubject,
        reading: Reading,
    ) -> Option<UsagePoint> {
        let before = collector.readings.insert(subject, reading.clone())?;
        reading.rates_since(&before)
    }

    /// Averages the raw points since the last rollup into the rollups' buckets (the bucket
    /// being filled included, so it shows at once) and prunes each resolution past its
    /// retention.
    async fn roll_up(&self, collector: &mut UsageCollector, now: DateTime<Utc>) -> Result<()> {
        let retention = self.inner.config.usage;
        let store = &self.inner.store;
        for r in ROLLUPS {
            let step = i64::from(r);
            let since = collector.rolled.unwrap_or(now);
            let from =
                DateTime::from_timestamp(since.timestamp().div_euclid(step) * step, 0).unwrap_or_default();
            store.roll_up_usage(r, from, now + chrono::Duration::seconds(1)).await?;
        }
        for r in [RAW, ROLLUPS[0], ROLLUPS[1]] {
            store.prune_usage(r, now - chrono_duration(retention.keep(r))).await?;
        }
        collector.rolled = Some(now);
        Ok(())
    }

    /// The VM's usage from `from` to `to` at `step` seconds, for `actor`.
    pub async fn vm_usage(
        &self,
        actor: &Actor,
        id: VmId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        step: Option<u64>,
    ) -> Result<Vec<UsagePoint>> {
        self.vm_for(actor, id, Access::Read).await?;
        self.usage_of(UsageSubject::Vm(id), from, to, step).await
    }

    /// The node's usage from `from` to `to` at `step` seconds, for `actor`.
    pub async fn node_usage(
        &self,
        actor: &Actor,
        id: NodeId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        step: Option<u64>,
    ) -> Result<Vec<UsagePoint>> {
        actor.may(Area::Nodes, Access::Read)?;
        self.inner.store.get_node(id).await?;
        self.usage_of(UsageSubject::Node(id), from, to, step).await
    }

    /// A series from `from` to `to` (the last hour) at `step` seconds (60): each point the
    /// average of the stored points in its step, from the resolution that suits.
    async fn usage_of(
        &self,
        subject: UsageSubject,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        step: Option<u64>,
    ) -> Result<Vec<UsagePoint>> {
        let now = self.now();
        let step = step.unwrap_or(60);
        if step == 0 {
            return Err(Error::invalid("step", "at least 1 second"));
        }
        // By default the last hour, the point sampled this second included, in steps
        // aligned to the step.
        let to = to.unwrap_or(now + chrono::Duration::seconds(1));
        let from = match from {
            Some(from) => from,
            None => {
                let start = to
                    .checked_sub_signed(chrono::Duration::hours(1))
                    .ok_or_else(|| Error::invalid("to", "out of range"))?
                    .timestamp();
                let step = i64::try_from(step).unwrap_or(i64::MAX);
                DateTime::from_timestamp(start.div_euclid(step) * step, 0).unwrap_or_default()
            }
        };
        if from >= to {
            return Err(Error::invalid("from", "must be before `to`"));
        }
        let span = u64::try_from((to - from).num_seconds()).unwrap_or(u64::MAX);
        if span / step > MAX_POINTS {
            return Err(Error::invalid(
                "step",
                format!("the range at this step is more than {MAX_POINTS} points"),
            ));
        }
        let resolution = self.inner.config.usage.resolution_for(from, now, step);
        // A rollup's point is stamped with its bucket's start: the bucket `from` falls in
        // counts too.
        let start = match i64::from(resolution) {
            0 => from,
            r => DateTime::from_timestamp(from.timestamp().div_euclid(r) * r, 0).unwrap_or(from),
        };
        let stored = self.inner.store.usage(subject, resolution, start, to).await?;
        let stored: Vec<UsagePoint> =
            stored.into_iter().map(|p| UsagePoint { t: p.t.max(from), ..p }).collect();
        Ok(buckets(&stored, from, step))
    }

    /// Each node's domains from one bulk read, with their VMs' names; a read younger than
    /// [`VmmConfig::stats_cache`](super::VmmConfig::stats_cache) is reused.
    pub async fn node_domains(&self) -> Result<Vec<NodeDomains>> {
        let nodes = self.all_nodes().await?;
        Ok(join_all(nodes.into_iter().map(|node| async move {
            let domains = self.cached_domains(&node).await;
            NodeDomains { node, domains }
        }))
        .await)
    }

    async fn cached_domains(&self, node: &Node) -> Result<Domains> {
        let max_age = self.inner.config.stats_cache;
        if let Some((at, d)) = lock(&self.inner.scraped).get(&node.id) {
            if at.elapsed() < max_age {
                return Ok(d.clone());
            }
        }
        let hv = self.hypervisor(node).await?;
        let (stats, vms) = futures::try_join!(hv.domain_stats(), self.inner.store.vms_on_node(node.id))?;
        let vms: HashMap<VmId, crate::vm::Vm> = vms.into_iter().map(|vm| (vm.id, vm)).collect();
        // Where the driver did not say (the test driver counts little), the VM's own size.
        let joined: Vec<_> = stats
            .into_iter()
            .filter_map(|mut d| {
                let vm = vms.get(&d.vm_id)?;
                if d.vcpus == 0 {
                    d.vcpus = vm.vcpus;
                }
                if d.memory_max_kib == 0 {
                    d.memory_max_kib = vm.memory_mib * 1024;
                }
                Some((d, vm.name.clone()))
            })
            .collect();
        let joined = Arc::new(joined);
        lock(&self.inner.scraped).insert(node.id, (Instant::now(), joined.clone()));
        Ok(joined)
    }
}

/// `points` averaged into steps of `step` seconds from `from`; a step with no point is left
/// out.
fn buckets(points: &[UsagePoint], from: DateTime<Utc>, step: u64) -> Vec<UsagePoint> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let mut out: Vec<(i64, Vec<UsagePoint>)> = Vec::new();
    for p in points {
        let i = (p.t - from).num_seconds().div_euclid(step);
        match out.last_mut() {
            Some((j, v)) if *j == i => v.push(*p),
            _ => out.push((i, vec![*p])),
        }
    }
    out.into_iter()
        .filter_map(|(i, v)| UsagePoint::average(from + chrono::Duration::seconds(i * step), &v))
        .collect()
}
