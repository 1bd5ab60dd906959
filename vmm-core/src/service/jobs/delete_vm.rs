//! `delete_vm`: the domain, its disk, then the VM record with its leases and capacity.
//! Cancel is honoured until the VM is marked `deleting`; a delete that fails later leaves
//! the VM `error` (or `deleting`), from which it may be deleted again.

use super::{remove_from_hypervisor, Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::vm::VmState;

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let (mut vm, _node, hv) = match vmm.vm_and_hypervisor(run).await {
        // Already gone: an earlier run finished the job.
        Err(Error::VmNotFound { .. }) => return Ok(Outcome::Done),
        other => other?,
    };
    if vmm.cancel_requested(run).await? {
        return Ok(Outcome::Cancelled);
    }
    vm.state = VmState::Deleting;
    vmm.inner.store.update_vm(&vm).await?;
    vmm.step(run, 20, "removing the domain and its disk").await?;
    if let Err(e) = remove_from_hypervisor(hv.as_ref(), vm.id).await {
        vm.state = VmState::Error;
        vmm.inner.store.update_vm(&vm).await?;
        return Err(e);
    }
    vmm.step(run, 80, "releasing addresses and capacity").await?;
    match vmm.inner.store.delete_vm(vm.id).await {
        Ok(()) | Err(Error::VmNotFound { .. }) => Ok(Outcome::Done),
        Err(e) => Err(e),
    }
}
