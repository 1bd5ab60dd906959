//! The migrations area of the [`Store`](super::Store): a VM's move from node to node, in
//! three transactions. Queueing holds the target node's capacity for the VM (it counts on
//! both nodes while it moves); the switch-over points the VM at the target and gives the
//! source its capacity back; a rollback gives the target's back. Each is idempotent, so a
//! migration resumed after a crash may call it again.

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::{NodeId, VmId};
use crate::store::PlacementRequest;
use crate::task::Task;
use crate::vm::{Vm, VmState};

/// What a migration asks of placement and of the VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationRequest {
    /// Where the VM may go: `pinned` is the node asked for, `only` the nodes that have the
    /// VM's networks, `group` the VM's own placement group. The node it is on is never
    /// chosen.
    pub placement: PlacementRequest,
    /// Live (the VM must run) or offline (it must be stopped); `None`: live if it runs.
    pub live: Option<bool>,
    /// A recovery by HA: the VM's node is dead and fenced, and the VM, running or
    /// stopped, is started or defined on the target from its disk on shared storage.
    pub recover: bool,
    /// The nodes share storage (recorded in the task's parameters).
    pub shared: bool,
}

impl MigrationRequest {
    /// Whether the migration of `vm` is live: as asked, or as the VM is (running: live).
    /// A live move needs a running VM, an offline one a stopped VM.
    pub fn live_for(&self, vm: &Vm) -> Result<bool> {
        if self.recover {
            return Ok(false);
        }
        let running = vm.state == VmState::Running;
        match self.live {
            None => Ok(running),
            Some(true) if !running => {
                Err(Error::conflict(format!("VM {} is {}; only a running VM migrates live", vm.id, vm.state)))
            }
            Some(false) if running => Err(Error::conflict(format!(
                "VM {} is running; stop it for an offline migration, or migrate it live",
                vm.id
            ))),
            Some(live) => Ok(live),
        }
    }
}

/// VM migrations.
#[async_trait]
pub trait MigrationStore: Send + Sync {
    /// Queues `task`, the VM's migration, in one transaction: the VM must allow it in its
    /// state and have no active task; placement chooses the target among the other nodes
    /// (the group's policy read without this VM); the target's capacity is held for the VM
    /// (`migrating_to`); the task is stored with its parameters (`from`, `to`, `live`, `shared`)
    /// and placement's explanation as its first step. Returns the task as stored.
    async fn queue_migration(&self, vm: VmId, task: &Task, request: &MigrationRequest) -> Result<Task>;
    /// Points the VM at `to` and gives its old node's capacity back, with its
    /// `vm.migrated` event, in one transaction. Done already (the VM is on `to`): returns
    /// it unchanged. A [`Conflict`](crate::Error::Conflict) unless the VM is migrating to `to`.
    async fn switch_migration(&self, vm: VmId, to: NodeId) -> Result<Vm>;
    /// Gives back the capacity held on `to` for a migration that will not switch over;
    /// nothing when none is held for it there.
    async fn end_migration(&self, vm: VmId, to: NodeId) -> Result<()>;
}
