//! The [`Hypervisor`] trait: one node, as vmm needs it. Implementations: the in-memory
//! [`MemoryHypervisor`](crate::memory::MemoryHypervisor) here, libvirt in `vmm-backends`.
//! A [`Connector`] opens a hypervisor by URI.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::VmId;
use crate::node::{Capacity, VirtType};

/// The observed power state of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Shut off.
    Shutoff,
    /// Crashed.
    Crashed,
    /// Anything else (blocked, in shutdown, suspended to disk…).
    Other,
}

/// What vmm asks a hypervisor to define. Every field is data; backends serialize it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// The VM; the domain's UUID, and its name is `vmm-<id>`.
    pub vm_id: VmId,
    /// The user's name for the VM (goes only into the domain's title).
    pub title: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Domain type.
    pub virt_type: VirtType,
    /// MAC address of the network interface.
    pub mac: String,
    /// Addresses leased to the VM (kept in the domain's metadata).
    pub addresses: Vec<IpAddr>,
}

/// A domain as observed on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// The VM.
    pub vm_id: VmId,
    /// The domain's title.
    pub title: String,
    /// Its power state.
    pub state: PowerState,
    /// vCPUs in its persistent config.
    pub vcpus: u32,
    /// Memory in its persistent config, in MiB.
    pub memory_mib: u64,
}

/// A VM's disk volume as observed on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The volume's name (`vmm-<id>.qcow2`).
    pub name: String,
    /// Its size in GiB.
    pub capacity_gib: u64,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its capacity.
    pub capacity: Capacity,
    /// Its host name.
    pub hostname: String,
}

/// Which optional operations a hypervisor implements. Unimplemented ones return
/// [`Error::Unsupported`](crate::Error::Unsupported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HypervisorCapabilities {
    /// Graceful shutdown through the guest.
    pub shutdown: bool,
    /// Reboot.
    pub reboot: bool,
    /// Suspend and resume.
    pub suspend: bool,
    /// Growing a disk volume.
    pub resize_volume: bool,
}

/// One hypervisor node. Every call targets the VM's domain (`vmm-<id>`) or volume
/// (`vmm-<id>.qcow2`); no name or path ever comes from user input.
#[async_trait]
pub trait Hypervisor: Send + Sync + Debug {
    /// The URI this hypervisor was opened with.
    fn uri(&self) -> &str;

    /// What the hypervisor can do.
    fn capabilities(&self) -> HypervisorCapabilities;

    /// The node's capacity and name.
    async fn node_info(&self) -> Result<NodeInfo>;

    /// Every domain vmm created on this node.
    async fn list_domains(&self) -> Result<Vec<DomainInfo>>;

    /// One domain, or `None` when it is not defined.
    async fn domain(&self, vm: VmId) -> Result<Option<DomainInfo>>;

    /// Defines the domain, or replaces its persistent definition.
    async fn define_domain(&self, spec: &DomainSpec) -> Result<()>;

    /// Removes the domain's definition (it must be shut off).
    async fn undefine_domain(&self, vm: VmId) -> Result<()>;

    /// Powers the domain on.
    async fn start(&self, vm: VmId) -> Result<()>;

    /// Powers the domain off at once.
    async fn stop(&self, vm: VmId) -> Result<()>;

    /// Asks the guest to shut down; forces it off once `timeout` has passed.
    async fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()>;

    /// Reboots the guest.
    async fn reboot(&self, vm: VmId) -> Result<()>;

    /// Pauses the domain.
    async fn suspend(&self, vm: VmId) -> Result<()>;

    /// Continues a paused domain.
    async fn resume(&self, vm: VmId) -> Result<()>;

    /// Creates the VM's disk volume of `size_gib`.
    async fn create_volume(&self, vm: VmId, size_gib: u64) -> Result<VolumeInfo>;

    /// The VM's disk volume, or `None`.
    async fn volume(&self, vm: VmId) -> Result<Option<VolumeInfo>>;

    /// Grows the VM's disk volume to `size_gib`.
    async fn resize_volume(&self, vm: VmId, size_gib: u64) -> Result<()>;

    /// Deletes the VM's disk volume.
    async fn delete_volume(&self, vm: VmId) -> Result<()>;
}

/// Opens hypervisors by URI.
#[async_trait]
pub trait Connector: Send + Sync + Debug {
    /// Opens the hypervisor at `uri`; [`Error::Invalid`](crate::Error::Invalid) for a URI
    /// this connector does not serve, [`Error::Unavailable`](crate::Error::Unavailable) when
    /// it does not answer.
    async fn connect(&self, uri: &str, virt_type: VirtType) -> Result<Arc<dyn Hypervisor>>;
}
