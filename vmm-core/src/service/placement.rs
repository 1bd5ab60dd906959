//! Placement: which node would take a VM, and why; the groups that keep VMs apart or
//! together.

use super::Vmm;
use crate::error::Result;
use crate::id::PlacementGroupId;
use crate::page::{Page, PageRequest};
use crate::placement::{self, Explanation, WhatIf};
use crate::placement_group::{PlacementGroup, PlacementGroupSpec};

impl Vmm {
    /// Which node a create of this size would be placed on, every node that could take it
    /// with its score, and every node that could not with all its reasons (as the create's
    /// task would record them). Nothing is reserved: a create made next may find the nodes
    /// changed. An unknown pinned node, pool or group is not found.
    pub async fn what_if(&self, question: &WhatIf) -> Result<Explanation> {
        question.validate()?;
        let only = self.nodes_for_pools(&question.ip_pool_ids, question.node_id).await?;
        let rule = match question.placement_group_id {
            Some(id) => {
                let group = self.inner.store.get_placement_group(id).await?;
                Some(group.rule(self.inner.store.placement_group_nodes(id).await?))
            }
            None => None,
        };
        let nodes = self.all_nodes().await?;
        placement::explain(
            &question.demand(),
            &nodes,
            self.inner.config.strategy,
            question.node_id,
            only.as_deref(),
            rule.as_ref(),
        )
    }
}

impl Vmm {
    /// Makes a placement group. A duplicate name is a conflict.
    pub async fn create_placement_group(&self, spec: &PlacementGroupSpec) -> Result<PlacementGroup> {
        let group = PlacementGroup::from_spec(spec, self.now())?;
        self.inner.store.create_placement_group(&group).await?;
        Ok(group)
    }

    /// One placement group.
    pub async fn get_placement_group(&self, id: PlacementGroupId) -> Result<PlacementGroup> {
        self.inner.store.get_placement_group(id).await
    }

    /// Placement groups, newest first.
    pub async fn list_placement_groups(&self, page: &PageRequest) -> Result<Page<PlacementGroup>> {
        self.inner.store.list_placement_groups(page).await
    }

    /// Removes a placement group that has no VMs.
    pub async fn delete_placement_group(&self, id: PlacementGroupId) -> Result<()> {
        self.inner.store.delete_placement_group(id).await
    }
}
