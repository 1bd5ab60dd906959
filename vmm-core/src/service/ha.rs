//! HA in motion: each pass probes every node at once (renewing the lease of those that
//! answer), then applies [`ha::next_step`](crate::ha::next_step) to each: declare it
//! expired, fence it (its agent, or an operator), recover its HA VMs elsewhere, or revive
//! it. One process of the cluster runs the passes (a singleton lease).

use std::collections::HashMap;
use std::time::Duration;

use futures::future::{select, Either};
use futures_timer::Delay;

use super::Vmm;
use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::ha::{fence_backoff, next_step, NodeHealth, NodeLease, Step};
use crate::hypervisor::PowerState;
use crate::id::NodeId;
use crate::node::Node;
use crate::store::{MigrationRequest, PlacementRequest};
use crate::task::{Task, TaskKind, TaskParams};
use crate::vm::{Vm, VmState};

/// The name of HA's singleton lease.
const HA: &str = "ha";

impl Vmm {
    /// One HA pass over every node. HA acts only while some node answers: when none does,
    /// vmmd itself is the likelier one cut off, and it fences nothing.
    pub async fn ha_tick(&self) -> Result<()> {
        // Each node's lease runs from the moment it answered, so that a slow node does not
        // shorten the others'.
        let lease = self.inner.config.node_lease;
        let probe = (lease / 3).max(Duration::from_millis(100));
        let nodes = self.all_nodes().await?;
        let renewals = nodes.iter().map(|node| async move {
            let asked = async {
                let hv = self.hypervisor(node).await?;
                hv.node_info().await?;
                let now = self.now();
                let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
                self.inner.store.renew_node_lease(node.id, now, until).await
            };
            let limit = Delay::new(probe);
            matches!(select(std::pin::pin!(asked), limit).await, Either::Left((Ok(_), _)))
        });
        let anyone = futures::future::join_all(renewals).await.into_iter().any(|answered| answered);
        if !anyone {
            tracing::warn!("no node answers: HA waits (vmmd may be the one cut off)");
            return Ok(());
        }
        let leases: HashMap<NodeId, NodeLease> =
            self.inner.store.node_leases().await?.into_iter().map(|l| (l.node_id, l)).collect();
        for node in self.all_nodes().await? {
            let Some(lease) = leases.get(&node.id) else { continue };
            let ha_vms: Vec<Vm> = self
                .inner
                .store
                .vms_on_node(node.id)
                .await?
                .into_iter()
                .filter(|vm| vm.ha && matches!(vm.state, VmState::Running | VmState::Stopped))
                .collect();
            match self.ha_node(&node, lease, &ha_vms).await {
                // A fence took its time: the other leases are judged after a fresh probe.
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %crate::error_chain(&e), "HA could not act on a node")
                }
            }
        }
        Ok(())
    }

    /// Applies the rules to one node; whether it ran a fence agent.
    async fn ha_node(&self, node: &Node, lease: &NodeLease, ha_vms: &[Vm]) -> Result<bool> {
        let now = self.now();
        // Stamped when it happens (a fence agent takes its time).
        let event = |kind| Event::new(kind, self.now()).node(Some(node.id)).with("name", &node.name);
        match next_step(lease, now, ha_vms.len(), &node.fence) {
            Step::Nothing => {}
            Step::Expire => {
                let names: Vec<&str> = ha_vms.iter().map(|vm| vm.name.as_str()).collect();
                let next = NodeLease { health: NodeHealth::Expired, ..lease.clone() };
                let e = event(EventType::NodeLeaseExpired).with("ha_vms", names);
                self.inner.store.set_node_health(lease, &next, Some(e)).await?;
                tracing::warn!(node = %node.name, "node lease expired; it holds HA VMs and will be fenced");
            }
            Step::AwaitOperator => {
                let next = NodeLease { operator_asked: true, ..lease.clone() };
                self.inner
                    .store
                    .set_node_health(lease, &next, Some(event(EventType::NodeFenceRequired)))
                    .await?;
            }
            Step::RunAgent(agent) => {
                let fencing = event(EventType::NodeFencing).with("agent", &agent);
                if !self.inner.store.set_node_health(lease, lease, Some(fencing)).await? {
                    return Ok(false); // it answered meanwhile
                }
                let ran = self.inner.fencer.fence(&agent, node).await;
                let now = self.now();
                let (next, e) = match ran {
                    Ok(()) => (
                        NodeLease { health: NodeHealth::Fenced, fenced_at: Some(now), ..lease.clone() },
                        event(EventType::NodeFenced).with("by", &agent),
                    ),
                    Err(err) => {
                        let failures = lease.fence_failures + 1;
                        let retry_at =
                            now + chrono::Duration::from_std(fence_backoff(failures)).unwrap_or_default();
                        tracing::warn!(node = %node.name, error = %crate::error_chain(&err), "fence agent failed");
                        let next =
                            NodeLease { fence_failures: failures, retry_at: Some(retry_at), ..lease.clone() };
                        (
                            next,
                            event(EventType::NodeFenceFailed)
                                .with("agent", &agent)
                                .with("error", err.public_message()),
                        )
                    }
                };
                self.inner.store.set_node_health(lease, &next, Some(e)).await?;
                return Ok(true);
            }
            Step::Recover => {
                for vm in ha_vms {
                    if let Some(to) = vm.migrating_to {
                        // A migration that did not end cleanly: the VM may run there.
                        tracing::warn!(vm = %vm.id, to = %to, "an HA VM of a fenced node has an unfinished migration; left for an operator");
                        continue;
                    }
                    match self.recover_vm(vm).await {
                        Ok(_) | Err(Error::ActiveTask { .. }) => {}
                        Err(e) => {
                            tracing::warn!(vm = %vm.id, error = %crate::error_chain(&e), "cannot recover an HA VM yet");
                        }
                    }
                }
            }
            Step::Revive => {
                if lease.health == NodeHealth::Fenced {
                    self.remove_stale_domains(node).await?;
                }
                let next = NodeLease::renewed(node.id, now, Duration::ZERO);
                self.inner.store.set_node_health(lease, &next, Some(event(EventType::NodeRevived))).await?;
            }
        }
        Ok(false)
    }

    /// Queues the recovery of `vm` from its fenced node onto the node placement chooses.
    async fn recover_vm(&self, vm: &Vm) -> Result<Task> {
        let group = match vm.placement_group_id {
            Some(group) => Some(self.inner.store.get_placement_group(group).await?),
            None => None,
        };
        let only = self.nodes_with_networks_of(vm).await?;
        let placement = PlacementRequest { pinned: None, strategy: self.inner.config.strategy, only, group };
        let params = TaskParams::Migrate { from: vm.node_id, to: vm.node_id, live: false, shared: true };
        let task = self.new_task(TaskKind::RecoverVm, Some(vm.id), params, self.now());
        let request = MigrationRequest {
            placement,
            live: None,
            recover: true,
            shared: self.inner.config.shared_storage,
        };
        let task = self.inner.store.queue_migration(vm.id, &task, &request).await?;
        self.notify();
        Ok(task)
    }

    /// On a fenced node that answers again: undefines the shut-off domains of VMs that now
    /// live elsewhere (their disks are on shared storage, in use there).
    async fn remove_stale_domains(&self, node: &Node) -> Result<()> {
        let hv = self.hypervisor(node).await?;
        for domain in hv.list_domains().await? {
            let elsewhere = match self.inner.store.get_vm(domain.vm_id).await {
                Ok(vm) => vm.node_id != node.id,
                Err(Error::VmNotFound { .. }) => false,
                Err(e) => return Err(e),
            };
            if elsewhere {
                if !matches!(domain.state, PowerState::Shutoff | PowerState::Crashed) {
                    // Fenced by an operator who cut it off rather than powered it down.
                    tracing::warn!(node = %node.name, vm = %domain.vm_id, "a recovered VM still ran on its old node; stopping it");
                    hv.stop(domain.vm_id).await?;
                }
                hv.undefine_domain(domain.vm_id).await?;
                tracing::info!(node = %node.name, vm = %domain.vm_id, "removed the stale definition of a recovered VM");
            }
        }
        Ok(())
    }

    /// An operator confirms that the dead node is off: its HA VMs may be recovered. Refused
    /// while the node's lease holds.
    pub async fn confirm_fenced(&self, node_id: NodeId) -> Result<NodeLease> {
        let node = self.inner.store.get_node(node_id).await?;
        let lease = self.inner.store.node_leases().await?.into_iter().find(|l| l.node_id == node_id);
        let now = self.now();
        let Some(lease) = lease.filter(|l| l.expired(now)) else {
            return Err(Error::conflict(format!(
                "node {} answers: it is not fenced while its lease holds",
                node.name
            )));
        };
        if lease.health == NodeHealth::Fenced {
            return Ok(lease);
        }
        let next = NodeLease { health: NodeHealth::Fenced, fenced_at: Some(now), ..lease.clone() };
        let e = Event::new(EventType::NodeFenced, now)
            .node(Some(node.id))
            .with("name", &node.name)
            .with("by", "operator");
        if !self.inner.store.set_node_health(&lease, &next, Some(e)).await? {
            return Err(Error::conflict(format!("node {} answered meanwhile", node.name)));
        }
        self.notify();
        Ok(next)
    }

    /// The node's lease and HA state, if it ever answered.
    pub async fn node_lease(&self, node_id: NodeId) -> Result<Option<NodeLease>> {
        self.inner.store.get_node(node_id).await?;
        Ok(self.inner.store.node_leases().await?.into_iter().find(|l| l.node_id == node_id))
    }

    /// Runs HA passes every `interval` until `stopped`, in one process of the cluster at a
    /// time.
    pub async fn run_ha(&self, interval: Duration, stopped: impl std::future::Future<Output = ()>) {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            let holder = self.inner.config.worker_id.clone();
            // Held across a pass that may wait for a fence agent.
            let hold = (interval * 3).max(self.inner.config.fence_timeout + interval * 2);
            match self.inner.store.acquire_singleton(HA, &holder, hold).await {
                Ok(true) => {
                    if let Err(e) = self.ha_tick().await {
                        tracing::warn!(error = %crate::error_chain(&e), "HA pass failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %crate::error_chain(&e), "HA's lease could not be taken"),
            }
            if let Either::Left(_) = select(stopped.as_mut(), Delay::new(interval)).await {
                return;
            }
        }
    }
}

/// Whether a VM's recovery may start: its node must be fenced.
pub(super) async fn node_is_fenced(vmm: &Vmm, node: NodeId) -> Result<bool> {
    let lease = vmm.inner.store.node_leases().await?.into_iter().find(|l| l.node_id == node);
    Ok(lease.is_some_and(|l| l.health == NodeHealth::Fenced))
}
