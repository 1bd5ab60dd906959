//! VMs: create, read, change, power and delete. Each change is queued as a task; its
//! saga is in `jobs/`.

use super::Vmm;
use crate::error::{Error, Result};
use crate::id::{NodeId, VmId};
use crate::page::{Page, PageRequest};
use crate::placement;
use crate::store::PlacementRequest;
use crate::task::{Task, TaskKind, TaskParams};
use crate::vm::{PowerAction, Vm, VmAction, VmPatch, VmSpec, VmState};

impl Vmm {
    /// Places the VM, leases its address and queues its create task, all in one
    /// transaction; the task then makes the disk, defines and (if asked) starts it.
    pub async fn create_vm(&self, spec: VmSpec) -> Result<(Vm, Task)> {
        spec.validate()?;
        let now = self.now();
        let vm = Vm {
            id: VmId::new(),
            name: spec.name,
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            disk_gib: spec.disk_gib,
            node_id: NodeId::from_uuid(uuid::Uuid::nil()),
            ip_pool_id: spec.ip_pool_id,
            state: VmState::Creating,
            addresses: Vec::new(),
            created_at: now,
        };
        let task = Task::new(TaskKind::CreateVm, Some(vm.id), TaskParams::Create { start: spec.start }, now);
        let placement = PlacementRequest { pinned: spec.node_id, strategy: self.inner.config.strategy };
        let vm = self.inner.store.create_vm(&vm, &task, placement).await?;
        self.notify();
        Ok((vm, task))
    }

    /// One VM.
    pub async fn get_vm(&self, id: VmId) -> Result<Vm> {
        self.inner.store.get_vm(id).await
    }

    /// VMs, newest first.
    pub async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>> {
        self.inner.store.list_vms(page).await
    }

    /// Queues a rename and/or resize. Disks only grow; the node must have room.
    pub async fn update_vm(&self, id: VmId, patch: VmPatch) -> Result<Task> {
        let vm = self.inner.store.get_vm(id).await?;
        patch.validate(&vm)?;
        let action = if patch.resizes(&vm) {
            VmAction::Resize
        } else if patch.renames(&vm) {
            VmAction::Rename
        } else {
            return Err(Error::invalid("patch", "changes nothing"));
        };
        if action == VmAction::Resize {
            // An early answer; the task checks again in one transaction.
            vm.state.apply(id, action)?;
            let node = self.inner.store.get_node(vm.node_id).await?;
            placement::check_resize(&node, &vm.demand(), &patch.applied_to(&vm).demand())?;
        }
        let params = TaskParams::Update { patch, before: Some(vm.demand()) };
        self.enqueue(id, action, TaskKind::UpdateVm, params).await
    }

    /// Queues the VM's deletion with its disk and leases. A VM left `deleting` by a
    /// failed delete may be deleted again.
    pub async fn delete_vm(&self, id: VmId) -> Result<Task> {
        self.enqueue(id, VmAction::Delete, TaskKind::DeleteVm, TaskParams::None).await
    }

    /// Queues a power action.
    pub async fn power_vm(&self, id: VmId, action: PowerAction) -> Result<Task> {
        self.enqueue(id, action.into(), TaskKind::for_power(action), TaskParams::None).await
    }

    /// Queues a start.
    pub async fn start_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Start).await
    }

    /// Queues a forced power-off.
    pub async fn stop_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Stop).await
    }

    /// Queues a graceful shutdown (forced after the configured timeout).
    pub async fn shutdown_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Shutdown).await
    }

    /// Queues a reboot.
    pub async fn reboot_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Reboot).await
    }

    /// Queues a suspend.
    pub async fn suspend_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Suspend).await
    }

    /// Queues a resume.
    pub async fn resume_vm(&self, id: VmId) -> Result<Task> {
        self.power_vm(id, PowerAction::Resume).await
    }

    async fn enqueue(&self, id: VmId, action: VmAction, kind: TaskKind, params: TaskParams) -> Result<Task> {
        let task = Task::new(kind, Some(id), params, self.now());
        self.inner.store.enqueue_task(&task, Some(action)).await?;
        self.notify();
        Ok(task)
    }
}
