//! The placement groups area of the [`Store`](super::Store).

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{NodeId, PlacementGroupId};
use crate::page::{Page, PageRequest};
use crate::placement_group::PlacementGroup;

/// Placement groups. Which VMs a group has is the VMs' `placement_group_id`; a create
/// reads where they are in its own transaction ([`VmStore::create_vm`](super::VmStore::create_vm)).
#[async_trait]
pub trait PlacementGroupStore: Send + Sync {
    /// Adds a group. A duplicate name is a conflict.
    async fn create_placement_group(&self, group: &PlacementGroup) -> Result<()>;
    /// One group.
    async fn get_placement_group(&self, id: PlacementGroupId) -> Result<PlacementGroup>;
    /// Groups, newest first.
    async fn list_placement_groups(&self, page: &PageRequest) -> Result<Page<PlacementGroup>>;
    /// The nodes the group's VMs are on, each once, in id order.
    async fn placement_group_nodes(&self, id: PlacementGroupId) -> Result<Vec<NodeId>>;
    /// Removes a group; one that still has VMs is a conflict.
    async fn delete_placement_group(&self, id: PlacementGroupId) -> Result<()>;
}
