//! What a VM's guest is told and how it is plugged in: its NICs on their networks, its
//! domain definition, and its cloud-init seed, rebuilt from what the store keeps.

use super::Vmm;
use crate::error::Result;
use crate::guest::{seed_files, seed_image, GuestRequest, GuestSettings, NicSetup};
use crate::hypervisor::{DomainSpec, Hypervisor, NicNetwork, NicSpec};
use crate::id::VmId;
use crate::image::Image;
use crate::network::NetworkKind;
use crate::node::Node;
use crate::recipe::Recipe;
use crate::vm::{Vm, VmNic};

impl Vmm {
    /// Checks what a request says of the guest against `image` (recipes must be for its OS
    /// family) and makes the settings to keep.
    pub(super) async fn guest_settings(
        &self,
        request: &GuestRequest,
        name: &str,
        id: VmId,
        image: &Image,
    ) -> Result<GuestSettings> {
        let mut recipes: Vec<Recipe> = Vec::new();
        for rid in &request.recipe_ids {
            if recipes.iter().any(|r| r.id == *rid) {
                continue;
            }
            let recipe = self.inner.store.get_recipe(*rid).await?;
            recipe.check_image(image)?;
            recipes.push(recipe);
        }
        request.settings(name, id, &recipes)
    }

    /// How a NIC plugs in: user-mode without a network, else its network's bridge.
    pub(super) async fn nic_spec(&self, nic: &VmNic) -> Result<NicSpec> {
        let network = match nic.network_id {
            None => NicNetwork::User,
            Some(id) => {
                let net = self.inner.store.get_network(id).await?;
                match net.kind {
                    NetworkKind::Managed => NicNetwork::Network(net.libvirt_name()),
                    NetworkKind::Bridge => NicNetwork::Bridge { bridge: net.bridge, vlan: net.vlan },
                }
            }
        };
        Ok(NicSpec { mac: nic.mac.clone(), network })
    }

    /// The domain a VM is defined as on `node`; `seed` attaches its seed volume.
    pub(super) async fn domain_spec(&self, vm: &Vm, node: &Node, seed: bool) -> Result<DomainSpec> {
        let mut nics = Vec::with_capacity(vm.nics.len());
        for nic in &vm.nics {
            nics.push(self.nic_spec(nic).await?);
        }
        Ok(DomainSpec {
            vm_id: vm.id,
            title: vm.name.clone(),
            vcpus: vm.vcpus,
            memory_mib: vm.memory_mib,
            virt_type: node.virt_type,
            nics,
            addresses: vm.addresses.clone(),
            seed,
        })
    }

    /// Makes sure the managed networks the VM's NICs plug into exist on its node.
    pub(super) async fn ensure_networks(&self, hv: &dyn Hypervisor, vm: &Vm) -> Result<()> {
        let mut done = Vec::new();
        for id in vm.nics.iter().filter_map(|n| n.network_id) {
            if done.contains(&id) {
                continue;
            }
            let network = self.inner.store.get_network(id).await?;
            if network.kind == NetworkKind::Managed {
                hv.ensure_network(&network).await?;
            }
            done.push(id);
        }
        Ok(())
    }

    /// What the guest configures on each NIC: its addresses with the pool's prefix,
    /// gateway and DNS servers.
    async fn nic_setups(&self, vm: &Vm) -> Result<Vec<NicSetup>> {
        let mut setups = Vec::new();
        for nic in &vm.nics {
            let Some(pool_id) = nic.pool_id else { continue };
            let pool = self.inner.store.get_pool(pool_id).await?;
            setups.push(NicSetup {
                mac: nic.mac.clone(),
                addresses: nic.addresses.iter().map(|a| (*a, pool.prefix_len())).collect(),
                gateway: pool.gateway,
                dns: pool.dns.clone(),
            });
        }
        Ok(setups)
    }

    /// Writes the VM's seed on `hv` from its current guest settings, if it was installed
    /// from an image (on shared storage, the same file again).
    pub(super) async fn write_current_seed(&self, hv: &dyn Hypervisor, vm: &Vm) -> Result<()> {
        if vm.image_id.is_none() {
            return Ok(());
        }
        let guest = self.inner.store.vm_guest(vm.id).await?.current.unwrap_or_default();
        self.write_seed(hv, vm, &guest).await
    }

    /// Writes the VM's seed volume from `settings` and its NICs as they are now.
    pub(super) async fn write_seed(
        &self,
        hv: &dyn Hypervisor,
        vm: &Vm,
        settings: &GuestSettings,
    ) -> Result<()> {
        let files = seed_files(vm.id, settings, &self.nic_setups(vm).await?);
        hv.write_seed(vm.id, seed_image(&files)?).await
    }
}
