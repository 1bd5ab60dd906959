//! Node maintenance: the node leaves placement at once, and a task moves its VMs away (or,
//! when maintenance ends, back). The task's saga is `jobs::maintenance`.

use super::Vmm;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::migration::{EndMaintenanceSpec, MaintenanceSpec};
use crate::node::{NodePatch, NodeState};
use crate::page::PageRequest;
use crate::task::{Task, TaskFilter, TaskKind, TaskParams};

impl Vmm {
    /// Puts the node in maintenance now (placement no longer chooses it) and queues the
    /// task that, with `evacuate`, moves each of its VMs to the node placement chooses,
    /// one after another, live when it runs. The VMs that cannot move are listed with the
    /// reason in the task's result, and the task fails naming them, unless it was asked to
    /// stop them.
    pub async fn start_maintenance(&self, node: NodeId, spec: MaintenanceSpec) -> Result<Task> {
        let current = self.inner.store.get_node(node).await?;
        self.refuse_second_maintenance(node).await?;
        if current.state != NodeState::Maintenance {
            self.update_node(node, NodePatch { state: Some(NodeState::Maintenance), ..NodePatch::default() })
                .await?;
        }
        let params = TaskParams::Maintenance {
            node_id: node,
            move_vms: spec.evacuate,
            stop_unmovable: spec.stop_unmovable,
        };
        self.queue_node_task(TaskKind::MaintainNode, params).await
    }

    /// Ends the node's maintenance now (placement may choose it again) and queues the task
    /// that, with `return_vms`, moves back the VMs its last evacuation moved away (those
    /// still where the evacuation put them).
    pub async fn end_maintenance(&self, node: NodeId, spec: EndMaintenanceSpec) -> Result<Task> {
        let current = self.inner.store.get_node(node).await?;
        if current.state != NodeState::Maintenance {
            return Err(Error::conflict(format!(
                "node {} is {}, not in maintenance",
                current.name, current.state
            )));
        }
        self.refuse_second_maintenance(node).await?;
        self.update_node(node, NodePatch { state: Some(NodeState::Online), ..NodePatch::default() }).await?;
        let params =
            TaskParams::Maintenance { node_id: node, move_vms: spec.return_vms, stop_unmovable: false };
        self.queue_node_task(TaskKind::EndMaintenance, params).await
    }

    async fn queue_node_task(&self, kind: TaskKind, params: TaskParams) -> Result<Task> {
        let task = self.new_task(kind, None, params, self.now());
        self.inner.store.enqueue_task(&task, None).await?;
        self.notify();
        Ok(task)
    }

    /// One maintenance task per node at a time.
    async fn refuse_second_maintenance(&self, node: NodeId) -> Result<()> {
        for kind in [TaskKind::MaintainNode, TaskKind::EndMaintenance] {
            for state in [crate::task::TaskState::Queued, crate::task::TaskState::Running] {
                let filter = TaskFilter { kind: Some(kind), state: Some(state), ..TaskFilter::default() };
                let page = self.inner.store.list_tasks(&filter, &PageRequest::first(1000)).await?;
                if let Some(busy) = page.items.iter().find(|t| maintained_node(t) == Some(node)) {
                    return Err(Error::conflict(format!(
                        "task {} is moving the VMs of node {node}",
                        busy.id
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The node a maintenance task is about.
pub(super) fn maintained_node(task: &Task) -> Option<NodeId> {
    match task.params {
        TaskParams::Maintenance { node_id, .. } => Some(node_id),
        _ => None,
    }
}
