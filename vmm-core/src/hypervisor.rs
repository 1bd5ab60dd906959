//! The [`Hypervisor`] trait: one node, as vmm needs it. Implementations: the in-memory
//! [`InMemoryHypervisor`](crate::memory::InMemoryHypervisor) here, libvirt in `vmm-backends`.
//! A [`Connector`] opens a hypervisor by URI.

use std::fmt::Debug;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::console::{ConsoleKind, ConsoleStream};
use crate::error::{Error, Result};
use crate::id::{ImageId, VmId};
use crate::image::ImageFormat;
use crate::network::Network;
use crate::node::{Capacity, VirtType};
use crate::snapshot::SnapshotInfo;
use crate::usage::{DomainStats, NodeStats};

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

/// Where a NIC plugs in on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NicNetwork {
    /// QEMU's user-mode networking (no network of vmm's).
    User,
    /// A libvirt network of the node (a managed network).
    Network(String),
    /// A host bridge, with an optional VLAN tag.
    Bridge {
        /// The bridge.
        bridge: String,
        /// The 802.1Q tag.
        vlan: Option<u16>,
    },
}

/// One NIC of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// Its MAC address.
    pub mac: String,
    /// Where it plugs in.
    pub network: NicNetwork,
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
    /// Its NICs, in order.
    pub nics: Vec<NicSpec>,
    /// Addresses leased to the VM (kept in the domain's metadata).
    pub addresses: Vec<IpAddr>,
    /// Attach the VM's cloud-init seed volume as a CD-ROM.
    pub seed: bool,
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
    /// Images, seeds and disks made from images.
    pub images: bool,
    /// Plugging NICs into a running domain.
    pub hotplug: bool,
    /// Reading the serial console's log.
    pub console_log: bool,
}

/// What [`Hypervisor::read_volume`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeRead {
    /// The format of the bytes.
    pub format: ImageFormat,
    /// How many bytes were sent.
    pub bytes: u64,
    /// How consistent they are.
    pub consistency: crate::backup::Consistency,
}

/// Where [`Hypervisor::read_volume`] sends a disk's bytes: a bounded channel, so a slow
/// reader slows the read down.
pub type DataSink = futures::channel::mpsc::Sender<Vec<u8>>;

/// What a hypervisor calls when a domain of vmm's on its node changes: started, stopped,
/// crashed, defined or undefined, by vmm or by anyone else. It must return quickly (it
/// runs on the hypervisor's event thread).
pub type LifecycleCallback = std::sync::Arc<dyn Fn() + Send + Sync>;

/// A subscription to a node's lifecycle events ([`Hypervisor::watch_lifecycle`]); dropping
/// it ends the subscription.
pub trait LifecycleWatch: Send + Debug {
    /// Whether events can still arrive: false once the connection behind it is lost, and a
    /// new watch is needed.
    fn is_alive(&self) -> bool;
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

    /// Uploads an image's data as the node's copy of it (replacing a partial one).
    async fn upload_image(
        &self,
        image: ImageId,
        format: ImageFormat,
        data: Box<dyn Read + Send>,
        size: u64,
    ) -> Result<()> {
        let _ = (image, format, data, size);
        Err(Error::unsupported(self.uri(), "images"))
    }

    /// Whether the node holds a copy of the image.
    async fn has_image(&self, image: ImageId, format: ImageFormat) -> Result<bool> {
        let _ = (image, format);
        Err(Error::unsupported(self.uri(), "images"))
    }

    /// Deletes the node's copy of the image (nothing happens if there is none).
    async fn delete_image(&self, image: ImageId, format: ImageFormat) -> Result<()> {
        let _ = (image, format);
        Err(Error::unsupported(self.uri(), "images"))
    }

    /// Makes the VM's disk volume a copy of the image, grown to `size_gib` (qcow2).
    async fn create_volume_from_image(
        &self,
        vm: VmId,
        image: ImageId,
        format: ImageFormat,
        size_gib: u64,
    ) -> Result<VolumeInfo> {
        let _ = (vm, image, format, size_gib);
        Err(Error::unsupported(self.uri(), "images"))
    }

    /// Makes `to`'s disk volume a copy of `from`'s.
    async fn copy_volume(&self, from: VmId, to: VmId) -> Result<VolumeInfo> {
        let _ = (from, to);
        Err(Error::unsupported(self.uri(), "copying disks"))
    }

    /// Streams the VM's disk volume, as stored on the node (the bytes of its file, in its
    /// format), into `sink` in pieces. A shut-off domain's disk is read as it is; a running
    /// one's as it was at one instant (its filesystems frozen by the guest agent when there
    /// is one, otherwise crash-consistent). A `sink` closed by its reader ends the read with
    /// an error.
    async fn read_volume(&self, vm: VmId, sink: DataSink) -> Result<VolumeRead> {
        let _ = (vm, sink);
        Err(Error::unsupported(self.uri(), "reading disks"))
    }

    /// Makes the VM's disk volume (it must not exist) from `size` bytes of `data` in
    /// `format`, as [`read_volume`](Self::read_volume) gave them. A failure leaves no
    /// volume.
    async fn write_volume(
        &self,
        vm: VmId,
        format: ImageFormat,
        data: Box<dyn Read + Send>,
        size: u64,
    ) -> Result<VolumeInfo> {
        let _ = (vm, format, data, size);
        Err(Error::unsupported(self.uri(), "writing disks"))
    }

    /// The size in bytes of the VM's disk file as the node stores it now (what
    /// [`read_volume`](Self::read_volume) sends of a shut-off domain), `None` when there is
    /// none. The node's storage is looked at afresh, so a file another node wrote is seen.
    async fn stored_volume(&self, vm: VmId) -> Result<Option<u64>> {
        let _ = vm;
        Err(Error::unsupported(self.uri(), "reading disks"))
    }

    /// Moves the VM's running domain to `target` while it runs: afterwards it is defined
    /// and running there and gone from this node (its disk file stays here for the caller
    /// to remove). With `copy_storage` its disk is copied too (the nodes do not share
    /// storage; `target` holds an empty volume of the same size and the seed, if any);
    /// without, both nodes see the same disk. On failure the domain still runs here.
    /// `target` must be of the same backend.
    async fn migrate(&self, vm: VmId, target: &dyn Hypervisor, copy_storage: bool) -> Result<()> {
        let _ = (vm, target, copy_storage);
        Err(Error::unsupported(self.uri(), "live migration"))
    }

    /// Aborts a migration of the VM's domain away from this node that is under way (one a
    /// dropped or timed-out [`migrate`](Self::migrate) call left running), and returns once
    /// none is. Nothing to do is success.
    async fn abort_migration(&self, vm: VmId) -> Result<()> {
        let _ = vm;
        Ok(())
    }

    /// This hypervisor as [`Any`](std::any::Any), so that a backend can reach the other
    /// node of a migration as its own type.
    fn as_any(&self) -> &dyn std::any::Any;

    /// Takes a snapshot of the domain named `name`: its disk, and its memory when it runs.
    async fn create_snapshot(&self, vm: VmId, name: &str, description: Option<&str>) -> Result<SnapshotInfo> {
        let _ = (vm, name, description);
        Err(Error::unsupported(self.uri(), "snapshots"))
    }

    /// The domain's snapshots.
    async fn list_snapshots(&self, vm: VmId) -> Result<Vec<SnapshotInfo>> {
        let _ = vm;
        Err(Error::unsupported(self.uri(), "snapshots"))
    }

    /// Puts the domain back as it was at snapshot `name` (running again if it held memory).
    async fn revert_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        let _ = (vm, name);
        Err(Error::unsupported(self.uri(), "snapshots"))
    }

    /// Deletes snapshot `name` (nothing happens if there is none).
    async fn delete_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        let _ = (vm, name);
        Err(Error::unsupported(self.uri(), "snapshots"))
    }

    /// Keeps a copy of the VM's disk aside (before a reinstall), replacing an older one.
    async fn save_previous_volume(&self, vm: VmId) -> Result<()> {
        let _ = vm;
        Err(Error::unsupported(self.uri(), "copying disks"))
    }

    /// Puts the copy kept aside back as the VM's disk (replacing the disk).
    async fn restore_previous_volume(&self, vm: VmId) -> Result<()> {
        let _ = vm;
        Err(Error::unsupported(self.uri(), "copying disks"))
    }

    /// Deletes the copy kept aside (nothing happens if there is none).
    async fn delete_previous_volume(&self, vm: VmId) -> Result<()> {
        let _ = vm;
        Ok(())
    }

    /// Writes the VM's cloud-init seed volume (replacing an older one).
    async fn write_seed(&self, vm: VmId, data: Vec<u8>) -> Result<()> {
        let _ = (vm, data);
        Err(Error::unsupported(self.uri(), "images"))
    }

    /// Deletes the VM's seed volume (nothing happens if there is none).
    async fn delete_seed(&self, vm: VmId) -> Result<()> {
        let _ = vm;
        Ok(())
    }

    /// The last `tail_bytes` of what the VM's serial console printed.
    async fn console_log(&self, vm: VmId, tail_bytes: u64) -> Result<Vec<u8>> {
        let _ = (vm, tail_bytes);
        Err(Error::unsupported(self.uri(), "console logs"))
    }

    /// Deletes the VM's console log (nothing happens if there is none).
    async fn delete_console_log(&self, vm: VmId) -> Result<()> {
        let _ = vm;
        Ok(())
    }

    /// Calls `wake` whenever a domain of vmm's on this node changes, for as long as the
    /// returned watch lives, so the reconciler looks at once instead of at its next
    /// interval. `None`: this connection cannot report such events; polling alone then
    /// notices changes.
    async fn watch_lifecycle(&self, wake: LifecycleCallback) -> Result<Option<Box<dyn LifecycleWatch>>> {
        let _ = wake;
        Ok(None)
    }

    /// The names of the volumes in vmm's storage pool: VMs' disks, seeds, console logs
    /// and cached images (for finding orphans).
    async fn list_volumes(&self) -> Result<Vec<String>> {
        Err(Error::unsupported(self.uri(), "listing volumes"))
    }

    /// Makes sure a managed network exists and is active on the node (nothing to do for a
    /// bridge network).
    async fn ensure_network(&self, network: &Network) -> Result<()> {
        let _ = network;
        Err(Error::unsupported(self.uri(), "networks"))
    }

    /// Removes a managed network from the node (nothing happens if it has none).
    async fn remove_network(&self, network: &Network) -> Result<()> {
        let _ = network;
        Ok(())
    }

    /// Plugs a NIC into the running domain (its persistent definition is separate).
    /// Idempotent: a NIC with the same MAC already plugged in is left as it is.
    async fn attach_nic(&self, vm: VmId, nic: &NicSpec) -> Result<()> {
        let _ = (vm, nic);
        Err(Error::unsupported(self.uri(), "hot-plugging NICs"))
    }

    /// Unplugs a NIC from the running domain. Idempotent: a NIC already gone is fine.
    async fn detach_nic(&self, vm: VmId, nic: &NicSpec) -> Result<()> {
        let _ = (vm, nic);
        Err(Error::unsupported(self.uri(), "hot-plugging NICs"))
    }

    /// The counters of every running domain on the node whose name is vmm's (`vmm-<id>`),
    /// in one bulk read; the caller keeps those of its own VMs.
    async fn domain_stats(&self) -> Result<Vec<DomainStats>> {
        Err(Error::unsupported(self.uri(), "domain statistics"))
    }

    /// The node's own CPU and memory counters.
    async fn node_stats(&self) -> Result<NodeStats> {
        Err(Error::unsupported(self.uri(), "node statistics"))
    }

    /// Opens the running domain's console of `kind`: its screen as RFB bytes (already past
    /// VNC authentication), or its first serial port.
    async fn open_console(&self, vm: VmId, kind: ConsoleKind) -> Result<ConsoleStream> {
        let _ = (vm, kind);
        Err(Error::unsupported(self.uri(), "consoles"))
    }
}

/// Opens hypervisors by URI.
#[async_trait]
pub trait Connector: Send + Sync + Debug {
    /// Opens the hypervisor at `uri`; [`Error::Invalid`](crate::Error::Invalid) for a URI
    /// this connector does not serve, [`Error::Unavailable`](crate::Error::Unavailable) when
    /// it does not answer.
    async fn connect(&self, uri: &str, virt_type: VirtType) -> Result<Arc<dyn Hypervisor>>;
}
