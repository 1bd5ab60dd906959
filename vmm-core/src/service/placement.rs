//! Placement questions: which node would take a VM, and why.

use super::Vmm;
use crate::error::Result;
use crate::placement::{self, Explanation, WhatIf};

impl Vmm {
    /// Which node a create of this size would be placed on, every node that could take it
    /// with its score, and every node that could not with all its reasons (as the create's
    /// task would record them). Nothing is reserved: a create made next may find the nodes
    /// changed. An unknown pinned node or pool is not found.
    pub async fn what_if(&self, question: &WhatIf) -> Result<Explanation> {
        question.validate()?;
        let only = self.nodes_for_pools(&question.ip_pool_ids, question.node_id).await?;
        let nodes = self.all_nodes().await?;
        placement::explain(
            &question.demand(),
            &nodes,
            self.inner.config.strategy,
            question.node_id,
            only.as_deref(),
        )
    }
}
