//! [`PlacementGroupStore`] in memory.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::{InMemoryStore, StoreState};
use crate::error::{Error, Result};
use crate::id::{NodeId, PlacementGroupId, VmId};
use crate::page::{Page, PageRequest};
use crate::placement_group::PlacementGroup;
use crate::store::PlacementGroupStore;

impl StoreState {
    /// The nodes the group's VMs are on, each once, in id order.
    pub(super) fn group_nodes(&self, id: PlacementGroupId) -> Vec<NodeId> {
        self.group_nodes_except(id, None)
    }

    /// The nodes of the group's VMs but `except`.
    pub(super) fn group_nodes_except(&self, id: PlacementGroupId, except: Option<VmId>) -> Vec<NodeId> {
        let nodes: BTreeSet<NodeId> = self
            .vms
            .values()
            .filter(|vm| vm.placement_group_id == Some(id) && Some(vm.id) != except)
            .map(|vm| vm.node_id)
            .collect();
        nodes.into_iter().collect()
    }
}

#[async_trait]
impl PlacementGroupStore for InMemoryStore {
    async fn create_placement_group(&self, group: &PlacementGroup) -> Result<()> {
        let mut s = self.state();
        if s.placement_groups.contains_key(&group.id)
            || s.placement_groups.values().any(|g| g.name == group.name)
        {
            return Err(Error::conflict(format!("a placement group named {:?} exists", group.name)));
        }
        s.placement_groups.insert(group.id, group.clone());
        Ok(())
    }

    async fn get_placement_group(&self, id: PlacementGroupId) -> Result<PlacementGroup> {
        self.state().placement_groups.get(&id).cloned().ok_or(Error::PlacementGroupNotFound { id })
    }

    async fn list_placement_groups(&self, page: &PageRequest) -> Result<Page<PlacementGroup>> {
        super::page_of(&self.state().placement_groups, page, |_| true)
    }

    async fn placement_group_nodes(&self, id: PlacementGroupId) -> Result<Vec<NodeId>> {
        let s = self.state();
        if !s.placement_groups.contains_key(&id) {
            return Err(Error::PlacementGroupNotFound { id });
        }
        Ok(s.group_nodes(id))
    }

    async fn delete_placement_group(&self, id: PlacementGroupId) -> Result<()> {
        let mut s = self.state();
        if !s.placement_groups.contains_key(&id) {
            return Err(Error::PlacementGroupNotFound { id });
        }
        let members = s.vms.values().filter(|vm| vm.placement_group_id == Some(id)).count();
        if members > 0 {
            return Err(Error::conflict(format!(
                "the placement group still has {members} VM{}",
                if members == 1 { "" } else { "s" }
            )));
        }
        s.placement_groups.remove(&id);
        Ok(())
    }
}
