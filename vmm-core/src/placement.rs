//! Placement: which node takes a VM. A pure function in two passes, as schedulers do it:
//! filter out the nodes that cannot take the VM (saying why for each), then weigh the rest.
//! It never places a VM where the node's overcommit ratios would be exceeded.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{NodeId, PlacementGroupId, PoolId};
use crate::node::{Node, NodeState};
use crate::placement_group::{GroupPolicy, GroupRule};

/// What a VM needs from a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Demand {
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disk in GiB.
    pub disk_gib: u64,
}

/// How to choose among the nodes that can take a VM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The node with the most free capacity left (spreads load).
    #[default]
    Spread,
    /// The node with the least free capacity left that still fits (packs nodes full).
    Pack,
}

/// A question for placement: which node would take a VM of this size, and why? Nothing
/// is reserved by asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WhatIf {
    /// vCPUs.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 512))]
    pub vcpus: u32,
    /// Memory in MiB.
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 16777216))]
    pub memory_mib: u64,
    /// Disk in GiB.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65536))]
    pub disk_gib: u64,
    /// Only this node, as a create pinned to it.
    #[serde(default)]
    pub node_id: Option<NodeId>,
    /// The pools the VM would draw its addresses from: nodes without their networks are
    /// rejected.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 16))]
    pub ip_pool_ids: Vec<PoolId>,
    /// The placement group the VM would join.
    #[serde(default)]
    pub placement_group_id: Option<PlacementGroupId>,
}

impl WhatIf {
    /// A question about a VM of this size, on any node.
    pub fn new(vcpus: u32, memory_mib: u64, disk_gib: u64) -> Self {
        Self { vcpus, memory_mib, disk_gib, node_id: None, ip_pool_ids: Vec::new(), placement_group_id: None }
    }

    /// Checks the sizes and pools as a create would.
    pub fn validate(&self) -> Result<()> {
        crate::vm::validate_size(self.vcpus, self.memory_mib, self.disk_gib)?;
        crate::vm::validate_pools(&self.ip_pool_ids)
    }

    /// What the VM would need.
    pub fn demand(&self) -> Demand {
        Demand { vcpus: self.vcpus, memory_mib: self.memory_mib, disk_gib: self.disk_gib }
    }
}

/// Why a node was not chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    /// The node is offline.
    Offline,
    /// The node is in maintenance.
    Maintenance,
    /// Not enough vCPUs under the CPU overcommit ratio.
    Cpu {
        /// vCPUs asked for.
        requested: u64,
        /// vCPUs free.
        free: u64,
    },
    /// Not enough memory under the memory overcommit ratio.
    Memory {
        /// MiB asked for.
        requested: u64,
        /// MiB free.
        free: u64,
    },
    /// Not enough storage.
    Storage {
        /// GiB asked for.
        requested: u64,
        /// GiB free.
        free: u64,
    },
    /// The node does not have a network the VM needs.
    Network,
    /// The node holds a VM of the anti-affinity group the VM joins.
    AntiAffinity {
        /// The group's name.
        group: String,
    },
    /// The VMs of the affinity group the VM joins are on another node.
    Affinity {
        /// The group's name.
        group: String,
    },
    /// The VM being moved is on this node already.
    Source,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Offline => f.write_str("node is offline"),
            Self::Maintenance => f.write_str("node is in maintenance"),
            Self::Cpu { requested, free } => write!(f, "needs {requested} vCPUs, {free} free"),
            Self::Memory { requested, free } => write!(f, "needs {requested} MiB, {free} MiB free"),
            Self::Storage { requested, free } => {
                write!(f, "needs {requested} GiB disk, {free} GiB free")
            }
            Self::Network => f.write_str("node lacks a network the VM needs"),
            Self::AntiAffinity { group } => {
                write!(f, "node holds a VM of anti-affinity group {group:?}")
            }
            Self::Affinity { group } => write!(f, "affinity group {group:?} is on another node"),
            Self::Source => f.write_str("the VM is on this node"),
        }
    }
}

/// A node that was not chosen, and every reason why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    /// The node.
    pub node_id: NodeId,
    /// Its name.
    pub node_name: String,
    /// Why, most basic first (offline or maintenance, then CPU, memory, storage).
    pub reasons: Vec<RejectReason>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.node_name)?;
        for (i, reason) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

/// A node that can take the VM, and its score under the strategy (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    /// The node.
    pub node_id: NodeId,
    /// Its name.
    pub node_name: String,
    /// Under `spread`, the shares of vCPUs and memory left free once the VM is placed (0 to
    /// 2); under `pack`, the same negated.
    pub score: f64,
}

/// Why placement chose what it chose: every node considered, either a candidate with its
/// score or rejected with all its reasons. `POST /placement/what-if` answers with it, and
/// every create task records it as its first step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explanation {
    /// The node that would be chosen: the best candidate; `null` when no node can take it.
    pub chosen: Option<NodeId>,
    /// The nodes that can take the VM, best first (ties: smaller id first).
    pub candidates: Vec<Candidate>,
    /// The nodes that cannot, each with every reason.
    pub rejected: Vec<Rejection>,
}

/// How many candidates and rejected nodes [`Explanation`]'s text names before it counts
/// the rest (a task step stays readable with hundreds of nodes).
const NAMED: usize = 8;

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.candidates.first() {
            Some(best) => write!(f, "placed on {} (score {:.3})", best.node_name, best.score)?,
            None => f.write_str("no node can take it")?,
        }
        if self.candidates.len() > 1 {
            f.write_str("; also fit:")?;
            for c in self.candidates.iter().skip(1).take(NAMED) {
                write!(f, " {} ({:.3})", c.node_name, c.score)?;
            }
            if self.candidates.len() > NAMED + 1 {
                write!(f, " and {} more", self.candidates.len() - NAMED - 1)?;
            }
        }
        if !self.rejected.is_empty() {
            f.write_str("; rejected: ")?;
            for (i, r) in self.rejected.iter().take(NAMED).enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{r}")?;
            }
            if self.rejected.len() > NAMED {
                write!(f, " and {} more", self.rejected.len() - NAMED)?;
            }
        }
        Ok(())
    }
}

/// The outcome of placement: the chosen node and how it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The chosen node.
    pub node_id: NodeId,
    /// Every node, scored or rejected.
    pub explanation: Explanation,
}

/// Every reason why `node` cannot take `demand`; empty if it can.
///
/// ```
/// use chrono::Utc;
/// use vmm_core::{placement::{check, Demand, RejectReason}, Capacity, Node, NodeSpec};
/// let cap = Capacity { cpus: 2, memory_mib: 4096, storage_gib: 100 };
/// let node = Node::from_spec(&NodeSpec::new("n1", "memory://n1"), cap, Utc::now());
/// assert!(check(&node, &Demand { vcpus: 4, memory_mib: 1024, disk_gib: 10 }).is_empty());
/// assert_eq!(
///     check(&node, &Demand { vcpus: 1, memory_mib: 8192, disk_gib: 500 }),
///     [RejectReason::Memory { requested: 8192, free: 4096 }, RejectReason::Storage { requested: 500, free: 100 }]
/// );
/// ```
pub fn check(node: &Node, demand: &Demand) -> Vec<RejectReason> {
    let mut reasons = Vec::new();
    match node.state {
        NodeState::Offline => reasons.push(RejectReason::Offline),
        NodeState::Maintenance => reasons.push(RejectReason::Maintenance),
        NodeState::Online => {}
    }
    let (vcpus, free_vcpus) = (u64::from(demand.vcpus), node.free_vcpus());
    if vcpus > free_vcpus {
        reasons.push(RejectReason::Cpu { requested: vcpus, free: free_vcpus });
    }
    if demand.memory_mib > node.free_memory_mib() {
        reasons.push(RejectReason::Memory { requested: demand.memory_mib, free: node.free_memory_mib() });
    }
    if demand.disk_gib > node.free_storage_gib() {
        reasons.push(RejectReason::Storage { requested: demand.disk_gib, free: node.free_storage_gib() });
    }
    reasons
}

/// Checks that a VM on `node` that now takes `current` may take `target` instead: its own
/// share counts as free, and a node in maintenance still lets its VMs resize. The one rule
/// for resizing, used by the service's early answer and by every store's transaction.
///
/// ```
/// use chrono::Utc;
/// use vmm_core::{placement::{check_resize, Demand}, Capacity, Node, NodeSpec, Usage};
/// let cap = Capacity { cpus: 2, memory_mib: 4096, storage_gib: 100 };
/// let mut node = Node::from_spec(&NodeSpec::new("n1", "memory://n1"), cap, Utc::now());
/// let current = Demand { vcpus: 1, memory_mib: 3072, disk_gib: 10 };
/// node.allocated = Usage { vms: 1, vcpus: 1, memory_mib: 3072, storage_gib: 10 };
/// assert!(check_resize(&node, &current, &Demand { memory_mib: 4096, ..current }).is_ok());
/// assert!(check_resize(&node, &current, &Demand { memory_mib: 4097, ..current }).is_err());
/// ```
pub fn check_resize(node: &Node, current: &Demand, target: &Demand) -> Result<()> {
    let mut rest = node.clone();
    rest.allocated = node.allocated.without(current);
    rest.state = NodeState::Online;
    let reasons = check(&rest, target);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Error::NoCapacity {
            rejections: vec![Rejection { node_id: node.id, node_name: node.name.clone(), reasons }],
        })
    }
}

/// The weight of a node that fits `demand`: the share of vCPUs and of memory left free once
/// the VM is placed (0 to 2), negated for [`Strategy::Pack`].
fn weight(node: &Node, demand: &Demand, strategy: Strategy) -> f64 {
    let share = |free: u64, used: u64, limit: u64| {
        if limit == 0 {
            0.0
        } else {
            free.saturating_sub(used) as f64 / limit as f64
        }
    };
    let left = share(node.free_vcpus(), u64::from(demand.vcpus), node.vcpu_limit())
        + share(node.free_memory_mib(), demand.memory_mib, node.memory_limit_mib());
    match strategy {
        Strategy::Spread => left,
        Strategy::Pack => -left,
    }
}

/// Scores or rejects every node for `demand`. With `pinned`, only that node is considered;
/// with `only`, nodes outside it are rejected (they lack a network the VM needs); with
/// `group`, nodes its policy refuses are rejected.
/// Candidates come best first, ties broken by the smaller id, so the answer is
/// deterministic.
///
/// Fails only with [`Error::NodeNotFound`] when the pinned node is not among `nodes`; when
/// no node fits, `chosen` is `None`.
pub fn explain(
    demand: &Demand,
    nodes: &[Node],
    strategy: Strategy,
    pinned: Option<NodeId>,
    only: Option<&[NodeId]>,
    group: Option<&GroupRule>,
) -> Result<Explanation> {
    let mut candidates = Vec::new();
    let mut rejected = Vec::new();
    let mut considered = 0usize;
    for node in nodes.iter().filter(|n| pinned.is_none_or(|id| n.id == id)) {
        considered += 1;
        let mut reasons = check(node, demand);
        if only.is_some_and(|allowed| !allowed.contains(&node.id)) {
            reasons.insert(0, RejectReason::Network);
        }
        if let Some(rule) = group.filter(|rule| !rule.admits(node.id)) {
            reasons.push(match rule.policy {
                GroupPolicy::AntiAffinity => RejectReason::AntiAffinity { group: rule.name.clone() },
                GroupPolicy::Affinity => RejectReason::Affinity { group: rule.name.clone() },
            });
        }
        if reasons.is_empty() {
            let score = weight(node, demand, strategy);
            candidates.push(Candidate { node_id: node.id, node_name: node.name.clone(), score });
        } else {
            rejected.push(Rejection { node_id: node.id, node_name: node.name.clone(), reasons });
        }
    }
    if let Some(id) = pinned.filter(|_| considered == 0) {
        return Err(Error::NodeNotFound { id });
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.node_id.cmp(&b.node_id)));
    Ok(Explanation { chosen: candidates.first().map(|c| c.node_id), candidates, rejected })
}

/// Chooses a node for `demand` among `nodes`: the best candidate of [`explain`].
///
/// Fails with [`Error::NoCapacity`] listing every node's reason when none fits, and with
/// [`Error::NodeNotFound`] when the pinned node is not among `nodes`.
pub fn place(
    demand: &Demand,
    nodes: &[Node],
    strategy: Strategy,
    pinned: Option<NodeId>,
    only: Option<&[NodeId]>,
    group: Option<&GroupRule>,
) -> Result<Placement> {
    let explanation = explain(demand, nodes, strategy, pinned, only, group)?;
    match explanation.chosen {
        Some(node_id) => Ok(Placement { node_id, explanation }),
        None => Err(Error::NoCapacity { rejections: explanation.rejected }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Capacity, NodeSpec, Usage};
    use chrono::Utc;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};
    use proptest::strategy::Strategy as PropStrategy;

    fn node(name: &str, cpus: u32, mem: u64, disk: u64) -> Node {
        let cap = Capacity { cpus, memory_mib: mem, storage_gib: disk };
        Node::from_spec(&NodeSpec::new(name, format!("memory://{name}")), cap, Utc::now())
    }

    const SMALL: Demand = Demand { vcpus: 1, memory_mib: 512, disk_gib: 10 };

    #[test]
    fn spread_picks_the_emptiest_and_pack_the_fullest() {
        let mut a = node("a", 4, 8192, 100);
        let b = node("b", 4, 8192, 100);
        a.allocated = Usage { vms: 1, vcpus: 8, memory_mib: 4096, storage_gib: 20 };
        let nodes = [a.clone(), b.clone()];
        assert_eq!(place(&SMALL, &nodes, Strategy::Spread, None, None, None).unwrap().node_id, b.id);
        assert_eq!(place(&SMALL, &nodes, Strategy::Pack, None, None, None).unwrap().node_id, a.id);
    }

    #[test]
    fn every_rejected_node_says_why() {
        let mut off = node("off", 8, 8192, 100);
        off.state = NodeState::Offline;
        let mut maint = node("maint", 8, 8192, 100);
        maint.state = NodeState::Maintenance;
        let tiny = node("tiny", 8, 256, 100);
        let err = place(&SMALL, &[off, maint, tiny], Strategy::Spread, None, None, None).unwrap_err();
        let Error::NoCapacity { rejections } = err else { panic!("{err:?}") };
        let reasons: Vec<_> = rejections.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            reasons,
            ["off: node is offline", "maint: node is in maintenance", "tiny: needs 512 MiB, 256 MiB free"]
        );
        let mut full = node("full", 1, 256, 5);
        full.state = NodeState::Maintenance;
        let Err(Error::NoCapacity { rejections }) =
            place(&SMALL, &[full], Strategy::Spread, None, None, None)
        else {
            panic!()
        };
        assert_eq!(rejections[0].reasons.len(), 3, "every reason is given: {}", rejections[0]);
    }

    #[test]
    fn the_explanation_scores_every_fit_and_gives_every_reason() {
        let mut a = node("a", 4, 8192, 100);
        a.allocated = Usage { vms: 1, vcpus: 2, memory_mib: 4096, storage_gib: 20 };
        let b = node("b", 4, 8192, 100);
        let mut off = node("off", 4, 8192, 100);
        off.state = NodeState::Offline;
        let tiny = node("tiny", 4, 256, 5);
        let e =
            explain(&SMALL, &[a.clone(), off, b.clone(), tiny], Strategy::Spread, None, None, None).unwrap();
        assert_eq!(e.chosen, Some(b.id));
        let order: Vec<_> = e.candidates.iter().map(|c| c.node_name.as_str()).collect();
        assert_eq!(order, ["b", "a"]);
        assert!(e.candidates[0].score > e.candidates[1].score);
        assert_eq!(
            e.to_string(),
            "placed on b (score 1.875); also fit: a (1.250); rejected: off: node is offline, \
             tiny: needs 512 MiB, 256 MiB free; needs 10 GiB disk, 5 GiB free"
        );
        let packed = explain(&SMALL, &[a.clone(), b], Strategy::Pack, None, None, None).unwrap();
        assert_eq!(packed.chosen, Some(a.id), "pack prefers the fuller node");
        let none = explain(&Demand { vcpus: 64, ..SMALL }, &[a], Strategy::Spread, None, None, None).unwrap();
        assert_eq!((none.chosen, none.candidates.len(), none.rejected.len()), (None, 0, 1));
        assert!(none.to_string().starts_with("no node can take it; rejected: a: needs 64 vCPUs"), "{none}");
    }

    #[test]
    fn nodes_without_the_network_are_rejected() {
        let a = node("a", 4, 8192, 100);
        let b = node("b", 64, 65536, 1000);
        let nodes = [a.clone(), b.clone()];
        let p = place(&SMALL, &nodes, Strategy::Spread, None, Some(&[a.id]), None).unwrap();
        assert_eq!((p.node_id, p.explanation.rejected[0].node_id), (a.id, b.id));
        assert_eq!(p.explanation.rejected[0].reasons, [RejectReason::Network]);
    }

    #[test]
    fn groups_keep_their_vms_apart_or_together() {
        use crate::placement_group::GroupPolicy::{Affinity, AntiAffinity};
        let (a, b, c) = (node("a", 4, 8192, 100), node("b", 4, 8192, 100), node("c", 4, 8192, 100));
        let nodes = [a.clone(), b.clone(), c.clone()];
        let rule = |policy, members: &[NodeId]| GroupRule {
            name: "g".into(),
            policy,
            member_nodes: members.to_vec(),
        };
        let chosen = |r: &GroupRule| explain(&SMALL, &nodes, Strategy::Spread, None, None, Some(r)).unwrap();

        let apart = chosen(&rule(AntiAffinity, &[a.id, c.id]));
        assert_eq!(apart.chosen, Some(b.id));
        let refused: Vec<_> = apart.rejected.iter().map(ToString::to_string).collect();
        assert_eq!(
            refused,
            [
                r#"a: node holds a VM of anti-affinity group "g""#,
                r#"c: node holds a VM of anti-affinity group "g""#
            ]
        );
        let full = chosen(&rule(AntiAffinity, &[a.id, b.id, c.id]));
        assert_eq!((full.chosen, full.rejected.len()), (None, 3), "one more member than nodes fits nowhere");

        let together = chosen(&rule(Affinity, &[c.id]));
        assert_eq!((together.chosen, together.candidates.len()), (Some(c.id), 1));
        assert_eq!(together.rejected[0].reasons, [RejectReason::Affinity { group: "g".into() }]);
        let first = chosen(&rule(Affinity, &[]));
        assert_eq!(first.candidates.len(), 3, "the first member goes anywhere");
        // A full node of an affinity group is refused for both reasons.
        let mut small = node("small", 1, 256, 100);
        small.allocated.memory_mib = 256;
        let e = explain(
            &SMALL,
            &[small.clone()],
            Strategy::Spread,
            None,
            None,
            Some(&rule(AntiAffinity, &[small.id])),
        )
        .unwrap();
        assert_eq!(e.rejected[0].reasons.len(), 2, "{}", e.rejected[0]);
    }

    #[test]
    fn pinning_considers_only_that_node() {
        let a = node("a", 4, 8192, 100);
        let b = node("b", 64, 65536, 1000);
        let nodes = [a.clone(), b];
        let p = place(&SMALL, &nodes, Strategy::Spread, Some(a.id), None, None).unwrap();
        assert_eq!(p.node_id, a.id);
        let missing = NodeId::new();
        assert!(matches!(
            place(&SMALL, &nodes, Strategy::Spread, Some(missing), None, None),
            Err(Error::NodeNotFound { id }) if id == missing
        ));
    }

    fn arb_node() -> impl PropStrategy<Value = Node> {
        (
            1u32..16,
            256u64..32768,
            10u64..500,
            0.5f64..8.0,
            0.5f64..2.0,
            0u64..64,
            0u64..40000,
            0u64..600,
            0u8..6,
        )
            .prop_map(|(cpus, mem, disk, cr, mr, uv, um, ud, st)| {
                let mut n = node("n", cpus, mem, disk);
                n.cpu_overcommit = cr;
                n.memory_overcommit = mr;
                n.allocated = Usage { vms: 1, vcpus: uv, memory_mib: um, storage_gib: ud };
                n.state = match st {
                    0 => NodeState::Offline,
                    1 => NodeState::Maintenance,
                    _ => NodeState::Online,
                };
                n
            })
    }

    proptest! {
        /// Placing VMs one after another never takes a node past its ratios, every node is
        /// either chosen or rejected with a reason, and a refusal means no node had room.
        #[test]
        fn placement_never_overcommits(
            mut nodes in proptest::collection::vec(arb_node(), 1..12),
            demands in proptest::collection::vec((1u32..8, 64u64..4096, 1u64..50), 1..30),
            pack: bool,
        ) {
            let strategy = if pack { Strategy::Pack } else { Strategy::Spread };
            for (vcpus, memory_mib, disk_gib) in demands {
                let demand = Demand { vcpus, memory_mib, disk_gib };
                match place(&demand, &nodes, strategy, None, None, None) {
                    Ok(p) => {
                        let unfit = nodes.iter().filter(|n| !check(n, &demand).is_empty()).count();
                        prop_assert_eq!(p.explanation.rejected.len(), unfit);
                        prop_assert_eq!(p.explanation.candidates.len() + unfit, nodes.len());
                        prop_assert_eq!(p.explanation.candidates[0].node_id, p.node_id);
                        let n = nodes.iter_mut().find(|n| n.id == p.node_id).unwrap();
                        prop_assert_eq!(n.state, NodeState::Online);
                        n.allocated.vcpus += u64::from(vcpus);
                        n.allocated.memory_mib += memory_mib;
                        n.allocated.storage_gib += disk_gib;
                        prop_assert!(n.allocated.vcpus <= n.vcpu_limit());
                        prop_assert!(n.allocated.memory_mib <= n.memory_limit_mib());
                        prop_assert!(n.allocated.storage_gib <= n.capacity.storage_gib);
                    }
                    Err(Error::NoCapacity { rejections }) => {
                        prop_assert_eq!(rejections.len(), nodes.len());
                        for n in &nodes {
                            prop_assert!(!check(n, &demand).is_empty());
                        }
                    }
                    Err(e) => prop_assert!(false, "unexpected error {e:?}"),
                }
            }
        }
    }
}
