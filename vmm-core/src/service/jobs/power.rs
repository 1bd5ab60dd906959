//! Power tasks: start, stop, shutdown, reboot, suspend, resume. Each first looks at what
//! the node shows, so that a task resumed after a crash finds its work done and does not
//! do it again; a reboot records that it was sent before it is sent, so it happens at most
//! once.

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::vm::{state_of_domain, PowerAction};

/// The checkpoint saved just before a reboot is sent.
const REBOOT_SENT: &str = "reboot_sent";

pub(super) async fn run(vmm: &Vmm, run: &mut Run, action: PowerAction) -> Result<Outcome> {
    let (mut vm, _node, hv) = vmm.vm_and_hypervisor(run).await?;
    if vmm.cancel_requested(run).await? {
        return Ok(Outcome::Cancelled);
    }
    let observed = hv.domain(vm.id).await?.ok_or(Error::VmNotFound { id: vm.id })?.state;
    let done_already = match action.leaves_domain() {
        Some(end) => observed == end,
        None => run.task.reached(REBOOT_SENT),
    };
    if done_already {
        vmm.step(run, 90, format!("{action} had already taken effect")).await?;
        if let Some(end) = action.leaves_domain() {
            vm.state = state_of_domain(end);
        }
        vmm.inner.store.update_vm(&vm).await?;
        return Ok(Outcome::Done);
    }
    let next = vm.state.apply(vm.id, action.into())?;
    vmm.step(run, 30, format!("{action} requested")).await?;
    let result = match action {
        PowerAction::Start => hv.start(vm.id).await,
        PowerAction::Stop => hv.stop(vm.id).await,
        PowerAction::Shutdown => hv.shutdown(vm.id, vmm.inner.config.shutdown_timeout).await,
        PowerAction::Reboot => match vmm.checkpoint(run, REBOOT_SENT).await {
            Ok(()) => hv.reboot(vm.id).await,
            Err(e) => Err(e),
        },
        PowerAction::Suspend => hv.suspend(vm.id).await,
        PowerAction::Resume => hv.resume(vm.id).await,
    };
    result?;
    vm.state = next;
    vmm.inner.store.update_vm(&vm).await?;
    Ok(Outcome::Done)
}

/// A failed power task records what the node shows now, or `error` when it cannot tell.
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let (mut vm, _node, hv) = match vmm.vm_and_hypervisor(run).await {
        Err(Error::VmNotFound { .. }) => return Ok(()),
        other => other?,
    };
    vm.state = match hv.domain(vm.id).await {
        Ok(Some(d)) => state_of_domain(d.state),
        _ => crate::vm::VmState::Error,
    };
    vmm.inner.store.update_vm(&vm).await
}
