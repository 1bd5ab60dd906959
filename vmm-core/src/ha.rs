//! High availability: VMs marked `ha` are restarted on another node when theirs is
//! declared dead, and never before it has been fenced (a VM running twice on one disk is
//! worse than downtime).
//!
//! A node is alive while its lease, renewed by the node watcher each time the node
//! answers, has not expired. Once it has, and the node holds HA VMs, it is fenced: by the
//! fence agent the node names (a command from vmmd's configuration, such as an IPMI or
//! Redfish power-off), or by an operator who confirms the node is off. Only then are its HA
//! VMs recovered elsewhere, each by a `recover_vm` task. Every step is an event. The rules
//! are the pure function [`next_step`]; `Vmm::ha_tick` carries them out.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::Node;

/// How a node is fenced once it is declared dead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fence {
    /// An operator confirms that the node is off (`POST /nodes/{id}/fence`).
    #[default]
    Manual,
    /// vmmd runs the fence agent of this name from its configuration (`fence_agents`).
    Agent {
        /// The agent's name.
        agent: String,
    },
}

/// Where a node is in HA's eyes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum NodeHealth {
    /// Its lease holds (or it has expired and the node holds no HA VM).
    #[default]
    Alive,
    /// Its lease expired while it held HA VMs: it must be fenced.
    Expired,
    /// Fenced: its HA VMs may run elsewhere.
    Fenced,
}

/// A node's lease and HA state, as the store keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeLease {
    /// The node.
    pub node_id: NodeId,
    /// Until when the node counts as alive unless it answers again.
    pub expires_at: DateTime<Utc>,
    /// HA's state of the node.
    pub health: NodeHealth,
    /// When it was fenced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_at: Option<DateTime<Utc>>,
    /// Failed fence attempts since it expired.
    #[serde(default)]
    pub fence_failures: u32,
    /// When the agent may be tried again after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// An operator was asked to confirm the node is off (a `node.fence_required` event).
    #[serde(default)]
    pub operator_asked: bool,
}

impl NodeLease {
    /// A node that answered at `now`, alive for `lease`.
    pub fn renewed(node_id: NodeId, now: DateTime<Utc>, lease: std::time::Duration) -> Self {
        Self {
            node_id,
            expires_at: now + Duration::from_std(lease).unwrap_or(Duration::MAX),
            health: NodeHealth::Alive,
            fenced_at: None,
            fence_failures: 0,
            retry_at: None,
            operator_asked: false,
        }
    }

    /// Whether the lease has run out at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}

/// What HA does next about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing.
    Nothing,
    /// Declare its lease expired (it holds HA VMs).
    Expire,
    /// Run its fence agent.
    RunAgent(String),
    /// Wait for an operator to confirm it is off.
    AwaitOperator,
    /// Recover its HA VMs elsewhere.
    Recover,
    /// It answers again: it is alive (after a fence, its stale domains go first).
    Revive,
}

/// The HA rules: what to do about a node with `lease` at `now`, holding `ha_vms` HA VMs,
/// fenced by `fence`. A node is never recovered from before it is fenced; an expired node
/// without HA VMs is left alone (nothing to protect); an agent that failed is tried again
/// once its back-off has passed.
pub fn next_step(lease: &NodeLease, now: DateTime<Utc>, ha_vms: usize, fence: &Fence) -> Step {
    let alive = !lease.expired(now);
    match lease.health {
        NodeHealth::Alive if alive || ha_vms == 0 => Step::Nothing,
        NodeHealth::Alive => Step::Expire,
        NodeHealth::Expired if alive => Step::Revive,
        NodeHealth::Expired => match fence {
            Fence::Manual if lease.operator_asked => Step::Nothing,
            Fence::Manual => Step::AwaitOperator,
            Fence::Agent { .. } if lease.retry_at.is_some_and(|at| at > now) => Step::Nothing,
            Fence::Agent { agent } => Step::RunAgent(agent.clone()),
        },
        // Renewed after the fence: the node was powered on again.
        NodeHealth::Fenced
            if alive && lease.fenced_at.is_some_and(|f| lease.expires_at > f) && ha_vms == 0 =>
        {
            Step::Revive
        }
        NodeHealth::Fenced if ha_vms > 0 => Step::Recover,
        NodeHealth::Fenced => Step::Nothing,
    }
}

/// How long to wait before trying a failed fence agent again: 5 s doubling to 5 min.
pub fn fence_backoff(failures: u32) -> std::time::Duration {
    std::time::Duration::from_secs(5u64.saturating_mul(1 << failures.min(6)).min(300))
}

/// Fence agents by name, each a command and its arguments (which may hold a BMC's
/// password: `Debug` shows the names only).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FenceAgents(pub std::collections::BTreeMap<String, Vec<String>>);

impl Debug for FenceAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Runs fence agents: powers a node off so that it runs nothing, and says so only once it
/// is sure.
#[async_trait]
pub trait Fencer: Send + Sync + Debug {
    /// Fences `node` with the agent named `agent`; `Ok` only once the node is off.
    async fn fence(&self, agent: &str, node: &Node) -> Result<()>;
}

/// The fencer of a vmm without fence agents: every agent is unknown.
#[derive(Debug, Default)]
pub struct NoFencer;

#[async_trait]
impl Fencer for NoFencer {
    async fn fence(&self, agent: &str, _node: &Node) -> Result<()> {
        Err(Error::invalid("fence", format!("no fence agent named {agent:?} is configured")))
    }
}
