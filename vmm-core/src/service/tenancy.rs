//! Tenancy: VMs and their tasks as an [`Actor`] sees them. Another user's VM or task is not
//! found (the same answer as for one that does not exist); a VM the actor sees but may not
//! change is forbidden; lists show only what the actor may see, a page at a time.

use super::Vmm;
use crate::error::{Error, Result};
use crate::id::{TaskId, UserId, VmId};
use crate::page::{Page, PageRequest};
use crate::store::VmFilter;
use crate::task::{Task, TaskFilter};
use crate::users::{sees_all, Access, Actor, Area, Target};
use crate::vm::{CloneSpec, ReinstallSpec, Vm, VmSpec};

/// Whose an object of `owner` is, from `actor`'s side: a VM of no one (made before VMs had
/// owners) is nobody's own.
fn target(actor: &Actor, owner: Option<UserId>) -> Target {
    owner.map_or(Target::Other, |o| actor.target(o))
}

impl Vmm {
    /// The VM, if `actor` may have `access` to it.
    pub async fn vm_for(&self, actor: &Actor, id: VmId, access: Access) -> Result<Vm> {
        let vm = self.inner.store.get_vm(id).await?;
        actor.check(Area::Vms, access, target(actor, vm.owner_id), || Error::VmNotFound { id })?;
        Ok(vm)
    }

    /// The VMs `actor` may see that `filter` passes, newest first.
    pub async fn list_vms_for(
        &self,
        actor: &Actor,
        filter: &VmFilter,
        page: &PageRequest,
    ) -> Result<Page<Vm>> {
        actor.may(Area::Vms, Access::Read)?;
        let mut filter = filter.clone();
        if !sees_all(actor.role, Area::Vms) {
            filter.owner_id = Some(actor.user_id);
        }
        self.inner.store.list_vms(&filter, page).await
    }

    /// Creates a VM as `actor`: theirs unless an admin or operator names another owner.
    pub async fn create_vm_for(&self, actor: &Actor, mut spec: VmSpec) -> Result<(Vm, Task)> {
        actor.may(Area::Vms, Access::Write)?;
        match spec.owner_id {
            Some(owner) if owner != actor.user_id => {
                if !sees_all(actor.role, Area::Vms) {
                    return Err(Error::Forbidden {
                        reason: format!("a {} creates VMs for themselves", actor.role),
                    });
                }
                match self.inner.store.get_user(owner).await {
                    Ok(_) => {}
                    Err(Error::UserNotFound { .. }) => {
                        return Err(Error::invalid("owner_id", format!("no user {owner}")));
                    }
                    Err(e) => return Err(e),
                }
            }
            Some(_) => {}
            None => spec.owner_id = Some(actor.user_id),
        }
        self.acting_for(actor).create_vm_as(Some(actor), spec).await
    }

    /// Reinstalls a VM `actor` may change, with library keys they may see.
    pub async fn reinstall_vm_for(&self, actor: &Actor, id: VmId, spec: ReinstallSpec) -> Result<Task> {
        self.vm_for(actor, id, Access::Write).await?;
        self.acting_for(actor).reinstall_vm_as(Some(actor), id, spec).await
    }

    /// Gives a VM to another user (admins: it is a matter between users), its usage moving
    /// from one quota to the other in one transaction.
    pub async fn change_vm_owner(&self, actor: &Actor, id: VmId, owner: Option<UserId>) -> Result<Vm> {
        self.vm_for(actor, id, Access::Write).await?;
        actor.may(Area::Users, Access::Write)?;
        if let Some(owner) = owner {
            match self.inner.store.get_user(owner).await {
                Ok(_) => {}
                Err(Error::UserNotFound { .. }) => {
                    return Err(Error::invalid("owner_id", format!("no user {owner}")))
                }
                Err(e) => return Err(e),
            }
        }
        self.inner.store.set_vm_owner(id, owner).await
    }

    /// Clones a VM `actor` may change; the clone has the source's owner.
    pub async fn clone_vm_for(&self, actor: &Actor, source: VmId, spec: CloneSpec) -> Result<(Vm, Task)> {
        self.vm_for(actor, source, Access::Write).await?;
        self.acting_for(actor).clone_vm(source, spec).await
    }

    /// The task, if `actor` may have `access` to it: a task is its VM's owner's.
    pub async fn task_for(&self, actor: &Actor, id: TaskId, access: Access) -> Result<Task> {
        let task = self.inner.store.get_task(id).await?;
        let whose =
            if sees_all(actor.role, Area::Tasks) { Target::Any } else { target(actor, task.owner_id) };
        actor.check(Area::Tasks, access, whose, || Error::TaskNotFound { id })?;
        Ok(task)
    }

    /// The tasks `actor` may see that pass `filter`, newest first.
    pub async fn list_tasks_for(
        &self,
        actor: &Actor,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<Task>> {
        actor.may(Area::Tasks, Access::Read)?;
        let mut filter = *filter;
        if !sees_all(actor.role, Area::Tasks) {
            filter.owner_id = Some(actor.user_id);
        }
        self.inner.store.list_tasks(&filter, page).await
    }
}
