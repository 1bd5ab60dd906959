//! The fake's live migration (the running domain moves to another fake, with its disk's
//! content when storage is not shared), and what HA's tests do to a node: power loss, a
//! network split, shared storage.

use super::{HypervisorCall, InMemoryHypervisor};
use crate::error::{Error, Result};
use crate::hypervisor::{Hypervisor, PowerState};
use crate::id::VmId;

impl InMemoryHypervisor {
    /// [`Hypervisor::migrate`]: the target must be another fake holding the VM's volume
    /// (empty when `copy_storage`, the same disk otherwise); the domain must run here.
    pub(super) async fn migrate_to(
        &self,
        vm: VmId,
        target: &dyn Hypervisor,
        copy_storage: bool,
    ) -> Result<()> {
        let gate = self.gate(HypervisorCall::Migrate).await?;
        let result = self.hand_over(vm, target, copy_storage);
        gate.pass().await;
        result
    }

    fn hand_over(&self, vm: VmId, target: &dyn Hypervisor, copy_storage: bool) -> Result<()> {
        let Some(target) = target.as_any().downcast_ref::<InMemoryHypervisor>() else {
            return Err(Error::invalid("target", "an in-memory node migrates only to another"));
        };
        if std::ptr::eq(self, target) {
            return Err(Error::invalid("target", "a domain cannot migrate to its own node"));
        }
        let (spec, content) = {
            let s = self.state();
            match s.domains.get(&vm) {
                Some((spec, PowerState::Running)) => {
                    (spec.clone(), s.volumes.get(&vm).map(|v| v.content.clone()))
                }
                Some(_) => return Err(Error::conflict(format!("domain of {vm} is not running"))),
                None => return Err(Error::VmNotFound { id: vm }),
            }
        };
        {
            let mut t = target.state();
            if t.domains.contains_key(&vm) {
                return Err(Error::conflict(format!("{} has a domain of {vm} already", target.uri)));
            }
            let Some(volume) = t.volumes.get_mut(&vm) else {
                return Err(Error::invalid("disk", format!("{} has no volume for {vm}", target.uri)));
            };
            if copy_storage {
                volume.content = content.unwrap_or_default();
            }
            t.domains.insert(vm, (spec, PowerState::Running));
        }
        {
            let mut s = self.state();
            s.domains.remove(&vm);
            s.live_nics.remove(&vm);
        }
        self.watchers.wake_all();
        target.watchers.wake_all();
        Ok(())
    }
}

impl InMemoryHypervisor {
    /// Power loss: every domain stops (definitions stay) and the node answers nothing.
    pub fn power_off(&self) {
        let mut s = self.state();
        for (_, state) in s.domains.values_mut() {
            *state = PowerState::Shutoff;
        }
        s.live_nics.clear();
        s.unreachable = true;
    }

    /// A network split: the node answers nothing, its domains run on.
    pub fn cut(&self) {
        self.state().unreachable = true;
    }

    /// Powered on again, or the split mended: the node answers.
    pub fn reconnect(&self) {
        self.state().unreachable = false;
    }

    /// Whether the node holds a running domain of `vm`.
    pub fn runs(&self, vm: VmId) -> bool {
        self.state().domains.get(&vm).is_some_and(|(_, st)| *st == PowerState::Running)
    }

    /// Shared storage, as a test stands it in: `other` gets a copy of the VM's volume.
    pub fn share_volume_with(&self, other: &InMemoryHypervisor, vm: VmId) -> bool {
        let Some(volume) = self.state().volumes.get(&vm).cloned() else { return false };
        other.state().volumes.insert(vm, volume);
        true
    }
}
