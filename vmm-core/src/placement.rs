//! Placement: which node takes a VM. A pure function in two passes, as schedulers do it:
//! filter out the nodes that cannot take the VM (saying why for each), then weigh the rest.
//! It never places a VM where the node's overcommit ratios would be exceeded.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::node::{Node, NodeState};

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

/// The outcome of placement: the chosen node and every node that was filtered out.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The chosen node.
    pub node_id: NodeId,
    /// Its weight under the strategy (higher is better).
    pub weight: f64,
    /// The nodes that could not take the VM.
    pub rejections: Vec<Rejection>,
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

/// Chooses a node for `demand` among `nodes`. With `pinned`, only that node is considered;
/// with `only`, nodes outside it are rejected (they lack a network the VM needs). Ties go
/// to the node with the smaller id, so the result is deterministic.
///
/// Fails with [`Error::NoCapacity`] listing every node's reason when none fits, and with
/// [`Error::NodeNotFound`] when the pinned node is not among `nodes`.
pub fn place(
    demand: &Demand,
    nodes: &[Node],
    strategy: Strategy,
    pinned: Option<NodeId>,
    only: Option<&[NodeId]>,
) -> Result<Placement> {
    let mut best: Option<(&Node, f64)> = None;
    let mut rejections = Vec::new();
    let mut considered = 0usize;
    for node in nodes.iter().filter(|n| pinned.is_none_or(|id| n.id == id)) {
        considered += 1;
        let mut reasons = check(node, demand);
        if only.is_some_and(|allowed| !allowed.contains(&node.id)) {
            reasons.insert(0, RejectReason::Network);
        }
        if !reasons.is_empty() {
            rejections.push(Rejection { node_id: node.id, node_name: node.name.clone(), reasons });
            continue;
        }
        let w = weight(node, demand, strategy);
        let better = match best {
            None => true,
            Some((b, bw)) => w > bw || (w == bw && node.id < b.id),
        };
        if better {
            best = Some((node, w));
        }
    }
    match (best, pinned) {
        (Some((node, weight)), _) => Ok(Placement { node_id: node.id, weight, rejections }),
        (None, Some(id)) if considered == 0 => Err(Error::NodeNotFound { id }),
        (None, _) => Err(Error::NoCapacity { rejections }),
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
        assert_eq!(place(&SMALL, &nodes, Strategy::Spread, None, None).unwrap().node_id, b.id);
        assert_eq!(place(&SMALL, &nodes, Strategy::Pack, None, None).unwrap().node_id, a.id);
    }

    #[test]
    fn every_rejected_node_says_why() {
        let mut off = node("off", 8, 8192, 100);
        off.state = NodeState::Offline;
        let mut maint = node("maint", 8, 8192, 100);
        maint.state = NodeState::Maintenance;
        let tiny = node("tiny", 8, 256, 100);
        let err = place(&SMALL, &[off, maint, tiny], Strategy::Spread, None, None).unwrap_err();
        let Error::NoCapacity { rejections } = err else { panic!("{err:?}") };
        let reasons: Vec<_> = rejections.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            reasons,
            ["off: node is offline", "maint: node is in maintenance", "tiny: needs 512 MiB, 256 MiB free"]
        );
        let mut full = node("full", 1, 256, 5);
        full.state = NodeState::Maintenance;
        let Err(Error::NoCapacity { rejections }) = place(&SMALL, &[full], Strategy::Spread, None, None)
        else {
            panic!()
        };
        assert_eq!(rejections[0].reasons.len(), 3, "every reason is given: {}", rejections[0]);
    }

    #[test]
    fn nodes_without_the_network_are_rejected() {
        let a = node("a", 4, 8192, 100);
        let b = node("b", 64, 65536, 1000);
        let nodes = [a.clone(), b.clone()];
        let p = place(&SMALL, &nodes, Strategy::Spread, None, Some(&[a.id])).unwrap();
        assert_eq!((p.node_id, p.rejections[0].node_id), (a.id, b.id));
        assert_eq!(p.rejections[0].reasons, [RejectReason::Network]);
    }

    #[test]
    fn pinning_considers_only_that_node() {
        let a = node("a", 4, 8192, 100);
        let b = node("b", 64, 65536, 1000);
        let nodes = [a.clone(), b];
        let p = place(&SMALL, &nodes, Strategy::Spread, Some(a.id), None).unwrap();
        assert_eq!(p.node_id, a.id);
        let missing = NodeId::new();
        assert!(matches!(
            place(&SMALL, &nodes, Strategy::Spread, Some(missing), None),
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
                match place(&demand, &nodes, strategy, None, None) {
                    Ok(p) => {
                        let unfit = nodes.iter().filter(|n| !check(n, &demand).is_empty()).count();
                        prop_assert_eq!(p.rejections.len(), unfit);
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
