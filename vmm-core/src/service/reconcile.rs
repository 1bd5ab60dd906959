//! The reconciler: node probes (a node that stops answering goes `offline`, and `online`
//! again when it answers), each VM's observed state with `vm.drifted` when it strays, and
//! orphans (see [`crate::reconcile`]). One supervised loop per cluster runs it every
//! interval; `POST /reconcile` runs it as a task, which may also remove the orphans.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{select, Either};
use futures_timer::Delay;

use super::Vmm;
use crate::error::{Error, Result};
use crate::hypervisor::{LifecycleCallback, LifecycleWatch};
use crate::id::{NodeId, VmId};
use crate::node::{Node, NodeState};
use crate::page::PageRequest;
use crate::reconcile::{observes, volume_owner, Drift, NodeReport, ObservedState, ReconcileReport};
use crate::task::{Task, TaskKind, TaskParams};
use crate::users::{Access, Actor, Area};

/// The name of the reconciler's singleton lease.
const RECONCILER: &str = "reconciler";

/// How long the reconciler waits after a lifecycle event before it looks, so that a burst
/// of events (a stop is several) brings one pass.
const EVENT_PAUSE: Duration = Duration::from_secs(1);

/// Failed probes in a row that take a node offline.
pub const OFFLINE_AFTER: u32 = 3;

impl Vmm {
    /// Queues a reconcile of every node as `actor` (admins and operators): its task's result
    /// is the report; without `dry_run` it also removes the orphans found.
    pub async fn reconcile_for(&self, actor: &Actor, dry_run: bool) -> Result<Task> {
        actor.may(Area::Nodes, Access::Write)?;
        let task = self.acting_for(actor).new_task(
            TaskKind::Reconcile,
            None,
            TaskParams::Reconcile { dry_run },
            self.now(),
        );
        self.inner.store.enqueue_task(&task, None).await?;
        self.notify();
        Ok(task)
    }

    /// Every node, once: each VM's observed state recorded, and the orphans found (and
    /// removed, unless `dry_run`).
    pub async fn reconcile(&self, dry_run: bool) -> Result<ReconcileReport> {
        let mut report = ReconcileReport { dry_run, nodes: Vec::new() };
        for node in self.all_nodes().await? {
            report.nodes.push(self.reconcile_node(&node, dry_run).await?);
        }
        Ok(report)
    }

    pub(super) async fn all_nodes(&self) -> Result<Vec<Node>> {
        let mut nodes = Vec::new();
        let mut page = PageRequest::first(1000);
        loop {
            let got = self.inner.store.list_nodes(&page).await?;
            nodes.extend(got.items);
            match got.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return Ok(nodes),
            }
        }
    }

    /// One node. A node that does not answer is reported unreachable, and nothing of its
    /// VMs is concluded.
    async fn reconcile_node(&self, node: &Node, dry_run: bool) -> Result<NodeReport> {
        let mut report =
            NodeReport { node_id: Some(node.id), node_name: node.name.clone(), ..NodeReport::default() };
        let hv = match self.hypervisor(node).await {
            Ok(hv) => hv,
            Err(e) if e.is_retryable() => return Ok(report),
            Err(e) => return Err(e),
        };
        let domains = match hv.list_domains().await {
            Ok(domains) => domains,
            Err(e) if e.is_retryable() => return Ok(report),
            Err(e) => return Err(e),
        };
        report.reachable = true;
        let vms = self.inner.store.vms_on_node(node.id).await?;
        let on_node: HashMap<VmId, _> = domains.iter().map(|d| (d.vm_id, d.state)).collect();
        let now = self.now();
        for vm in vms.iter().filter(|v| observes(v.state)) {
            let mut observed = on_node.get(&vm.id).map_or(ObservedState::Missing, |p| ObservedState::of(*p));
            if !observed.agrees_with(vm.state) {
                // A task may have changed the domain since the list was read: look again, so
                // that only drift that holds now is recorded.
                observed = match hv.domain(vm.id).await {
                    Ok(Some(d)) => ObservedState::of(d.state),
                    Ok(None) => ObservedState::Missing,
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => return Err(e),
                };
            }
            let recorded = self.inner.store.observe_vm(vm.id, observed, now).await?;
            let busy =
                !recorded && vm.observed_state != Some(observed) && self.has_active_task(vm.id).await?;
            if busy {
                report.busy.push(vm.id);
            } else if !observed.agrees_with(vm.state) {
                report.drift.push(Drift { vm_id: vm.id, state: vm.state, observed_state: observed });
            }
        }
        // Orphans: vmm's marks, no VM anywhere (a VM of this id on another node is no orphan).
        let known: HashSet<VmId> = vms.iter().map(|v| v.id).collect();
        for domain in &domains {
            if !known.contains(&domain.vm_id) && self.is_gone(domain.vm_id).await? {
                report.orphan_domains.push(domain.vm_id);
            }
        }
        let volumes = match hv.list_volumes().await {
            Ok(v) => v,
            Err(Error::Unsupported { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        for name in volumes {
            if let Some(owner) = volume_owner(&name) {
                if !known.contains(&owner) && self.is_gone(owner).await? {
                    report.orphan_volumes.push(name);
                }
            }
        }
        if !dry_run {
            let owners: HashSet<VmId> = report
                .orphan_domains
                .iter()
                .copied()
                .chain(report.orphan_volumes.iter().filter_map(|n| volume_owner(n)))
                .collect();
            for vm in owners {
                super::jobs::remove_from_hypervisor(hv.as_ref(), vm).await?;
                tracing::info!(node = %node.id, vm = %vm, "removed an orphan of vmm's");
                report.removed.push(vm.to_string());
            }
        }
        Ok(report)
    }

    async fn is_gone(&self, vm: VmId) -> Result<bool> {
        match self.inner.store.get_vm(vm).await {
            Ok(_) => Ok(false),
            Err(Error::VmNotFound { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    async fn has_active_task(&self, vm: VmId) -> Result<bool> {
        let filter = crate::task::TaskFilter { vm_id: Some(vm), ..Default::default() };
        let tasks = self.inner.store.list_tasks(&filter, &PageRequest::first(5)).await?;
        Ok(tasks.items.iter().any(|t| t.state.is_active()))
    }

    /// Asks each node what it is; `failures` counts each node's failed probes in a row.
    /// After [`OFFLINE_AFTER`] a node that was online goes offline; one answer brings an
    /// offline node back online. A node in maintenance stays there.
    pub async fn probe_nodes(&self, failures: &mut HashMap<NodeId, u32>) -> Result<()> {
        for node in self.all_nodes().await? {
            let answered = match self.hypervisor(&node).await {
                Ok(hv) => hv.node_info().await.is_ok(),
                Err(_) => false,
            };
            let count = failures.entry(node.id).or_default();
            *count = if answered { 0 } else { *count + 1 };
            let next = match (node.state, answered) {
                (NodeState::Offline, true) => Some(NodeState::Online),
                (NodeState::Online, false) if *count >= OFFLINE_AFTER => Some(NodeState::Offline),
                _ => None,
            };
            if let Some(state) = next {
                tracing::info!(node = %node.id, name = %node.name, %state, "node state follows its probes");
                self.inner.store.update_node(&Node { state, ..node }).await?;
            }
        }
        Ok(())
    }

    /// Probes the nodes and reconciles them (a dry run: orphans are reported in the log,
    /// never removed) every `interval` until `stopped`, in one process of the cluster at a
    /// time (a singleton lease; another process takes over within three intervals of its
    /// holder's death). While it holds the lease it also watches each node's lifecycle
    /// events where the connection reports them, and looks again at once (after a short
    /// pause that gathers a burst) when a domain changes.
    pub async fn run_reconciler(&self, interval: Duration, stopped: impl std::future::Future<Output = ()>) {
        let mut stopped = std::pin::pin!(stopped);
        let mut failures = HashMap::new();
        let changed = Arc::new(event_listener::Event::new());
        let mut watches: HashMap<NodeId, Box<dyn LifecycleWatch>> = HashMap::new();
        // Probes count in intervals, not passes: a pass brought by events does not probe.
        let mut interval_pass = true;
        loop {
            // Listening before the pass: a change during it brings another pass.
            let woken = changed.listen();
            let holder = self.inner.config.worker_id.clone();
            match self.inner.store.acquire_singleton(RECONCILER, &holder, interval * 3).await {
                Ok(true) => {
                    if interval_pass {
                        if let Err(e) = self.probe_nodes(&mut failures).await {
                            tracing::warn!(error = %crate::error_chain(&e), "probing nodes failed");
                        }
                        if let Err(e) = self.watch_nodes(&mut watches, &changed).await {
                            tracing::warn!(error = %crate::error_chain(&e), "watching nodes failed");
                        }
                    }
                    match self.reconcile(true).await {
                        Ok(report) => {
                            for n in report
                                .nodes
                                .iter()
                                .filter(|n| !n.orphan_domains.is_empty() || !n.orphan_volumes.is_empty())
                            {
                                tracing::warn!(node = %n.node_name, domains = ?n.orphan_domains, volumes = ?n.orphan_volumes, "orphans of vmm's found; POST /reconcile {{\"dry_run\": false}} removes them");
                            }
                        }
                        Err(e) => tracing::warn!(error = %crate::error_chain(&e), "reconciling failed"),
                    }
                }
                Ok(false) => {
                    failures.clear();
                    watches.clear();
                }
                Err(e) => {
                    watches.clear();
                    tracing::warn!(error = %crate::error_chain(&e), "the reconciler's lease could not be taken")
                }
            }
            let next = select(Delay::new(interval), woken);
            match select(stopped.as_mut(), next).await {
                Either::Left(_) => return,
                Either::Right((Either::Left(_), _)) => interval_pass = true,
                Either::Right((Either::Right(_), _)) => {
                    interval_pass = false;
                    if let Either::Left(_) = select(stopped.as_mut(), Delay::new(EVENT_PAUSE)).await {
                        return;
                    }
                }
            }
        }
    }

    /// Keeps a live lifecycle watch on every node that answers and whose connection offers
    /// one; each wakes `changed`. Watches of nodes that are gone or offline are dropped.
    /// The nodes are asked at once, each under its hypervisor's own short deadline.
    async fn watch_nodes(
        &self,
        watches: &mut HashMap<NodeId, Box<dyn LifecycleWatch>>,
        changed: &Arc<event_listener::Event>,
    ) -> Result<()> {
        let nodes: Vec<Node> =
            self.all_nodes().await?.into_iter().filter(|n| n.state != NodeState::Offline).collect();
        watches.retain(|id, watch| watch.is_alive() && nodes.iter().any(|n| n.id == *id));
        let unwatched = nodes.iter().filter(|n| !watches.contains_key(&n.id));
        let asked = futures::future::join_all(unwatched.map(|node| async move {
            let hv = self.hypervisor(node).await?;
            let changed = changed.clone();
            let wake: LifecycleCallback = Arc::new(move || {
                changed.notify(usize::MAX);
            });
            Ok::<_, Error>((node.id, hv.watch_lifecycle(wake).await?))
        }))
        .await;
        for answer in asked {
            match answer {
                Ok((node, Some(watch))) => {
                    tracing::debug!(%node, "watching the node's lifecycle events");
                    watches.insert(node, watch);
                }
                Ok((_, None)) => {}
                Err(e) => {
                    tracing::debug!(error = %crate::error_chain(&e), "cannot watch a node's lifecycle events; polling it")
                }
            }
        }
        Ok(())
    }
}
