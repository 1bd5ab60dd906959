//! Domains on a node: finding a VM's domain, reading its facts and power state.

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::ErrorNumber;
use vmm_core::{DomainInfo, Error, PowerState, Result, VmId};

use super::call::{code_is, LibvirtError};
use super::xml::{domain_facts, interface_macs, DomainFacts};
use super::LibvirtHypervisor;

impl LibvirtHypervisor {
    /// Runs `f` on the VM's domain; a missing domain is [`Error::VmNotFound`].
    pub(super) async fn on_domain<T, F>(&self, op: &'static str, vm: VmId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Domain) -> Result<T, virt::error::Error> + Send + 'static,
    {
        self.call(op, move |c| match lookup_domain(c, vm)? {
            Some(d) => Ok(Some(f(&d)?)),
            None => Ok(None),
        })
        .await?
        .ok_or(Error::VmNotFound { id: vm })
    }

    /// The power state of the VM's domain.
    pub(super) async fn power_state(&self, vm: VmId) -> Result<PowerState> {
        self.on_domain("read a domain", vm, |d| {
            d.info().map(|i| power_state(i.state.unwrap_or(DomainState::NoState)))
        })
        .await
    }

    /// The MACs of the running domain's NICs.
    pub(super) async fn live_macs(&self, vm: VmId) -> Result<Vec<String>> {
        let xml = self.on_domain("read a domain", vm, |d| d.xml_desc(0)).await?;
        interface_macs(&xml).map_err(|e| self.to_error("read a domain", LibvirtError::Parse(e)))
    }
}

/// A libvirt domain state in vmm's terms.
pub(super) fn power_state(s: DomainState) -> PowerState {
    match s {
        DomainState::Running | DomainState::Blocked => PowerState::Running,
        DomainState::Paused => PowerState::Paused,
        DomainState::Shutoff => PowerState::Shutoff,
        DomainState::Crashed => PowerState::Crashed,
        _ => PowerState::Other,
    }
}

/// The VM's domain, if the node has it.
pub(super) fn lookup_domain(c: &Connect, vm: VmId) -> Result<Option<Domain>, LibvirtError> {
    match c.lookup_domain_by_uuid_string(&vm.to_string()) {
        Ok(d) => Ok(Some(d)),
        Err(e) if code_is(&e, &[ErrorNumber::NoDomain]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What vmm reads from a domain's persistent definition.
pub(super) fn facts(d: &Domain) -> Result<DomainFacts, LibvirtError> {
    domain_facts(&d.xml_desc(sys_inactive())?).map_err(LibvirtError::Parse)
}

/// Read the persistent (inactive) definition: what the next boot will use.
pub(super) fn sys_inactive() -> u32 {
    virt::sys::VIR_DOMAIN_XML_INACTIVE
}

/// A domain as vmm lists it.
pub(super) fn domain_info(d: &Domain) -> Result<DomainInfo, LibvirtError> {
    let f = facts(d)?;
    let state = power_state(d.info()?.state.unwrap_or(DomainState::NoState));
    Ok(DomainInfo { vm_id: f.vm_id, title: f.title, state, vcpus: f.vcpus, memory_mib: f.memory_mib })
}
