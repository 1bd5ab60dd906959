//! Networks on a node: vmm's networks defined and started there, and NICs' XML.

use virt::connect::Connect;
use virt::error::ErrorNumber;
use vmm_core::{Network, NicSpec, Result};

use super::call::{code_is, LibvirtError};
use super::xml::{interface_xml, network_xml, Placement};
use super::LibvirtHypervisor;

pub(super) fn ensure_network(c: &Connect, network: &Network) -> Result<(), LibvirtError> {
    let name = network.libvirt_name();
    let net = match c.lookup_network_by_name(&name) {
        Ok(n) => n,
        Err(e) if code_is(&e, &[ErrorNumber::NoNetwork]) => {
            match c.define_network_xml(&network_xml(network)?) {
                Ok(n) => {
                    n.set_autostart(true)?;
                    n
                }
                // Defined by a concurrent caller in between.
                Err(_) => c.lookup_network_by_name(&name)?,
            }
        }
        Err(e) => return Err(e.into()),
    };
    if !net.is_active()? {
        if let Err(e) = net.create() {
            if !net.is_active()? {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

impl LibvirtHypervisor {
    pub(super) fn nic_xml(&self, nic: &NicSpec) -> Result<String> {
        let at = Placement {
            storage_pool: &self.config.storage_pool,
            network: self.config.network.as_deref(),
            console_log_dir: None,
            vnc_password: None,
        };
        interface_xml(nic, &at).map_err(|e| self.to_error("plug in a NIC", e.into()))
    }
}
