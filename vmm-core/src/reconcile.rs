//! Reconciling the database with the nodes. The node is the truth for what a VM is doing
//! (its *observed* state); the database for what it should be doing (its state). A pass
//! over a node records each VM's observed state and why it differs (`vm.drifted`), marks a
//! VM whose domain is gone as `missing` (never deletes it), and reports domains and volumes
//! that carry vmm's marks but belong to no VM (orphans), which only an explicit
//! reconcile without `dry_run` removes. Foreign domains are never looked at, and a VM a
//! task holds is left to its task.

use serde::{Deserialize, Serialize};

use crate::hypervisor::PowerState;
use crate::id::{NodeId, VmId};
use crate::vm::VmState;

/// What a VM's domain is doing on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ObservedState {
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Shut off.
    Stopped,
    /// Crashed.
    Crashed,
    /// Something else (in shutdown, blocked…).
    Other,
    /// The node has no domain for it.
    Missing,
}

impl ObservedState {
    /// What a domain in `power` is doing.
    pub fn of(power: PowerState) -> Self {
        match power {
            PowerState::Running => Self::Running,
            PowerState::Paused => Self::Paused,
            PowerState::Shutoff => Self::Stopped,
            PowerState::Crashed => Self::Crashed,
            PowerState::Other => Self::Other,
        }
    }

    /// Whether a VM that should be `desired` is where it should be.
    pub fn agrees_with(self, desired: VmState) -> bool {
        matches!(
            (desired, self),
            (VmState::Running, Self::Running)
                | (VmState::Paused, Self::Paused)
                | (VmState::Stopped, Self::Stopped)
        )
    }

    /// Why a VM that should be `desired` is not, in a few words; `None` when it agrees.
    pub fn reason(self, desired: VmState) -> Option<String> {
        if self.agrees_with(desired) {
            return None;
        }
        Some(match self {
            Self::Missing => "the node has no domain for this VM".to_owned(),
            observed => format!("the VM should be {desired} but its domain is {observed} on the node"),
        })
    }
}

/// Whether a reconcile pass looks at a VM in `state`: not while it is made or removed.
pub fn observes(state: VmState) -> bool {
    !matches!(state, VmState::Creating | VmState::Deleting)
}

/// The VM a volume of vmm's belongs to, from its name (`vmm-<id>.qcow2`,
/// `vmm-<id>-seed.img`, `vmm-<id>.console.log`, `vmm-<id>.prev.qcow2`); `None` for
/// volumes that are not VMs' (cached images) or not vmm's.
pub fn volume_owner(name: &str) -> Option<VmId> {
    let rest = name.strip_prefix("vmm-")?;
    let id = rest.get(..36)?;
    let suffix = &rest[36..];
    if !matches!(suffix, ".qcow2" | "-seed.img" | ".console.log" | ".prev.qcow2") {
        return None;
    }
    id.parse::<uuid::Uuid>().ok().map(VmId::from_uuid)
}

/// A VM whose observed state disagrees with its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Drift {
    /// The VM.
    pub vm_id: VmId,
    /// What it should be doing.
    pub state: VmState,
    /// What it is doing.
    pub observed_state: ObservedState,
}

/// One node's part of a reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeReport {
    /// The node.
    pub node_id: Option<NodeId>,
    /// Its name.
    pub node_name: String,
    /// Whether it answered (nothing else is known of one that did not).
    pub reachable: bool,
    /// VMs not where they should be (missing ones included).
    pub drift: Vec<Drift>,
    /// Domains with vmm's metadata and no VM.
    pub orphan_domains: Vec<VmId>,
    /// Volumes with vmm's names and no VM.
    pub orphan_volumes: Vec<String>,
    /// What was removed (domains by VM id, volumes by name); empty in a dry run.
    pub removed: Vec<String>,
    /// VMs left alone because a task holds them.
    pub busy: Vec<VmId>,
}

/// A reconcile over every node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReconcileReport {
    /// Orphans were reported, not removed.
    pub dry_run: bool,
    /// Each node's part.
    pub nodes: Vec<NodeReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_states_agree_only_with_their_own_state() {
        assert!(ObservedState::Running.agrees_with(VmState::Running));
        assert!(ObservedState::Stopped.agrees_with(VmState::Stopped));
        assert!(!ObservedState::Stopped.agrees_with(VmState::Running));
        assert!(!ObservedState::Missing.agrees_with(VmState::Stopped));
        assert_eq!(ObservedState::Running.reason(VmState::Running), None);
        assert!(ObservedState::Stopped.reason(VmState::Running).unwrap().contains("should be running"));
        assert!(!observes(VmState::Creating) && !observes(VmState::Deleting) && observes(VmState::Error));
    }

    #[test]
    fn volumes_are_a_vms_by_name_only() {
        let vm = VmId::new();
        for name in
            [vm.volume_name(), vm.seed_volume_name(), vm.console_log_name(), vm.previous_volume_name()]
        {
            assert_eq!(volume_owner(&name), Some(vm), "{name}");
        }
        for name in ["image-x.qcow2", "vmm-nope.qcow2", &format!("vmm-{vm}.qcow2.bak"), "other.img", "vmm-"] {
            assert_eq!(volume_owner(name), None, "{name}");
        }
    }
}
