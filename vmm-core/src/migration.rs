//! Moving VMs between nodes: what a migration is asked for. The saga that performs one is
//! `service::jobs::migrate_vm`; the store keeps the target's capacity held while it runs
//! ([`MigrationStore`](crate::store::MigrationStore)).

use serde::{Deserialize, Serialize};

use crate::id::NodeId;

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
