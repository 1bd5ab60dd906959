//! Moving VMs between nodes: what a migration is asked for. The saga that performs one is
//! `service::jobs::migrate_vm`; the store keeps the target's capacity held while it runs
//! ([`MigrationStore`](crate::store::MigrationStore)).

use serde::{Deserialize, Serialize};

use crate::id::{NodeId, TaskId, VmId};

/// What a migration is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrateSpec {
    /// The node to move to; placement chooses among the others when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeId>,
    /// Live (the VM keeps running; it must run) or offline (it must be stopped). Absent:
    /// live when the VM runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
}

/// What putting a node in maintenance is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSpec {
    /// Move every VM away, each to the node placement chooses (live when it runs).
    #[serde(default)]
    pub evacuate: bool,
    /// Stop the VMs that cannot move (they stay on the node) instead of failing the task.
    #[serde(default)]
    pub stop_unmovable: bool,
}

/// What ending a node's maintenance is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct EndMaintenanceSpec {
    /// Move back the VMs the last evacuation of the node moved away (those still on the
    /// node they were moved to).
    #[serde(default)]
    pub return_vms: bool,
}

/// One VM an evacuation (or a return) moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MovedVm {
    /// The VM.
    pub vm_id: VmId,
    /// Its name.
    pub vm_name: String,
    /// Where it went.
    pub node_id: NodeId,
    /// The migration task that moved it.
    pub task_id: TaskId,
}

/// One VM an evacuation (or a return) could not move, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnmovedVm {
    /// The VM.
    pub vm_id: VmId,
    /// Its name.
    pub vm_name: String,
    /// Why it did not move.
    pub reason: String,
    /// It was stopped instead (`stop_unmovable`).
    #[serde(default)]
    pub stopped: bool,
}

/// What a maintenance task did, VM by VM (its `result`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MovesReport {
    /// The VMs moved, in order.
    pub moved: Vec<MovedVm>,
    /// The VMs that could not move.
    pub unmoved: Vec<UnmovedVm>,
}

impl MovesReport {
    /// Whether `vm` has been dealt with (moved or not).
    pub fn has(&self, vm: VmId) -> bool {
        self.moved.iter().any(|m| m.vm_id == vm) || self.unmoved.iter().any(|u| u.vm_id == vm)
    }
}
