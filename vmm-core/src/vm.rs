//! Virtual machines: what a user asks for ([`VmSpec`]), what vmm keeps ([`Vm`]), and the
//! state machine that says which action is legal in which state ([`VmState::apply`]).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::guest::GuestRequest;
use crate::hypervisor::PowerState;
use crate::id::{ImageId, NetworkId, NodeId, PlacementGroupId, PoolId, RecipeId, SshKeyId, UserId, VmId};
use crate::placement::Demand;
use crate::secret::Secret;

/// Longest VM name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Most vCPUs one VM may have.
pub const MAX_VCPUS: u32 = 512;
/// Most memory one VM may have, in MiB (16 TiB).
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;
/// Largest disk one VM may have, in GiB (64 TiB).
pub const MAX_DISK_GIB: u64 = 64 * 1024;

/// What a user asks for when creating a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Display name; free text, kept out of libvirt names.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub name: String,
    /// Virtual CPUs.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 512))]
    pub vcpus: u32,
    /// Memory in MiB.
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 16777216))]
    pub memory_mib: u64,
    /// Disk size in GiB.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65536))]
    pub disk_gib: u64,
    /// Put the VM on this node; placement picks one when absent.
    #[serde(default)]
    pub node_id: Option<NodeId>,
    /// Lease an address from this pool.
    #[serde(default)]
    pub ip_pool_id: Option<PoolId>,
    /// Start the VM once it is defined (default true).
    #[serde(default = "default_true")]
    pub start: bool,
    /// Install the VM from this image; the guest is then set up by cloud-init.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<ImageId>,
    /// More pools, after `ip_pool_id`: one NIC and one address per pool, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 16))]
    pub ip_pool_ids: Vec<PoolId>,
    /// The guest's hostname (an RFC 1123 label; default from the name). Needs an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The guest's root password, 12 characters or more; kept only hashed. Needs an image.
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// OpenSSH public keys for root. Needs an image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// Keys from the SSH key library, by id, for root besides `ssh_keys`. Needs an image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_key_ids: Vec<SshKeyId>,
    /// The user's own user-data (`#cloud-config` or a `#!` script, at most 64 KiB). Needs
    /// an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 65536))]
    pub user_data: Option<String>,
    /// Recipes to run at first boot, for the image's OS family. Needs an image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 32))]
    pub recipe_ids: Vec<RecipeId>,
    /// Whose VM it is: admins and operators may name any user; a user's VMs are theirs
    /// (by default, the caller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
    /// A placement group to join: placement keeps the group's VMs apart or together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_id: Option<PlacementGroupId>,
    /// Restart it on another node when its node dies (needs shared storage).
    #[serde(default)]
    pub ha: bool,
}

/// Most recipes one install may run.
pub const MAX_RECIPES: usize = 32;

/// Most NICs (address pools) one VM may have.
pub const MAX_NICS: usize = 16;

/// What a reinstall is asked for. Fields left out keep what the VM had (hostname, password,
/// keys); recipes and user-data are only those given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReinstallSpec {
    /// The image to install (the same or another).
    pub image_id: ImageId,
    /// A new hostname.
    #[serde(default)]
    pub hostname: Option<String>,
    /// A new root password.
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// New SSH keys (replacing the old ones when given).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// New SSH keys from the key library, by id (with `ssh_keys`, replacing the old ones).
    #[serde(default)]
    pub ssh_key_ids: Vec<SshKeyId>,
    /// The user's own user-data.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Recipes to run.
    #[serde(default)]
    pub recipe_ids: Vec<RecipeId>,
}

/// What a clone is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CloneSpec {
    /// The new VM's display name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub name: String,
    /// Start it once made (default true).
    #[serde(default = "default_true")]
    pub start: bool,
}

/// An address to add to a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddressSpec {
    /// The pool to lease from; the VM gets a NIC on its network.
    pub ip_pool_id: PoolId,
    /// This address; the lowest free one when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub address: Option<IpAddr>,
}

fn default_true() -> bool {
    true
}

impl VmSpec {
    /// A spec with the given name and size, no pinned node, no pool, started on create.
    pub fn new(name: impl Into<String>, vcpus: u32, memory_mib: u64, disk_gib: u64) -> Self {
        Self {
            name: name.into(),
            vcpus,
            memory_mib,
            disk_gib,
            node_id: None,
            ip_pool_id: None,
            start: true,
            image_id: None,
            ip_pool_ids: Vec::new(),
            hostname: None,
            password: None,
            ssh_keys: Vec::new(),
            ssh_key_ids: Vec::new(),
            user_data: None,
            recipe_ids: Vec::new(),
            owner_id: None,
            placement_group_id: None,
            ha: false,
        }
    }

    /// Every pool the VM draws an address from, in NIC order.
    pub fn pools(&self) -> Vec<PoolId> {
        self.ip_pool_id.iter().chain(&self.ip_pool_ids).copied().collect()
    }

    /// What the spec says about the guest.
    pub fn guest(&self) -> GuestRequest {
        GuestRequest {
            hostname: self.hostname.clone(),
            password: self.password.clone(),
            ssh_keys: self.ssh_keys.clone(),
            user_data: self.user_data.clone(),
            recipe_ids: self.recipe_ids.clone(),
        }
    }

    /// Whether the spec asks anything of the guest.
    pub fn sets_up_guest(&self) -> bool {
        self.hostname.is_some()
            || self.password.is_some()
            || !self.ssh_keys.is_empty()
            || !self.ssh_key_ids.is_empty()
            || self.user_data.is_some()
            || !self.recipe_ids.is_empty()
    }

    /// Checks every field; the first bad one is reported.
    ///
    /// ```
    /// use vmm_core::VmSpec;
    /// assert!(VmSpec::new("web-1", 2, 2048, 20).validate().is_ok());
    /// assert!(VmSpec::new("", 2, 2048, 20).validate().is_err());
    /// assert!(VmSpec::new("web-1", 0, 2048, 20).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        validate_size(self.vcpus, self.memory_mib, self.disk_gib)?;
        validate_pools(&self.pools())?;
        if self.image_id.is_none() && self.sets_up_guest() {
            return Err(Error::invalid("image_id", "setting up the guest needs an image"));
        }
        if self.recipe_ids.len() > MAX_RECIPES {
            return Err(Error::invalid("recipe_ids", format!("at most {MAX_RECIPES} recipes")));
        }
        Ok(())
    }
}

/// Checks a VM name: 1 to [`MAX_NAME_CHARS`] characters, no control characters, no
/// leading or trailing white space, nothing XML cannot carry. Any other text is fine: names
/// reach libvirt only through the XML serializer.
pub fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if name.trim() != name {
        return Err(Error::invalid("name", "must not start or end with white space"));
    }
    // XML 1.0 has no way to carry these two, escaped or not.
    if name.contains(['\u{fffe}', '\u{ffff}']) {
        return Err(Error::invalid("name", "must not contain U+FFFE or U+FFFF"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid("name", format!("must be at most {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "must not contain control characters"));
    }
    Ok(())
}

/// Checks the pools a VM draws addresses from: at most [`MAX_NICS`], none twice.
pub(crate) fn validate_pools(pools: &[PoolId]) -> Result<()> {
    if pools.len() > MAX_NICS {
        return Err(Error::invalid("ip_pool_ids", format!("at most {MAX_NICS} pools")));
    }
    if (1..pools.len()).any(|i| pools[..i].contains(&pools[i])) {
        return Err(Error::invalid("ip_pool_ids", "a pool is named twice"));
    }
    Ok(())
}

/// Checks a VM's size: vCPUs, memory and disk within their ranges.
pub(crate) fn validate_size(vcpus: u32, memory_mib: u64, disk_gib: u64) -> Result<()> {
    if !(1..=MAX_VCPUS).contains(&vcpus) {
        return Err(Error::invalid("vcpus", format!("must be between 1 and {MAX_VCPUS}")));
    }
    if !(64..=MAX_MEMORY_MIB).contains(&memory_mib) {
        return Err(Error::invalid("memory_mib", format!("must be between 64 and {MAX_MEMORY_MIB}")));
    }
    if !(1..=MAX_DISK_GIB).contains(&disk_gib) {
        return Err(Error::invalid("disk_gib", format!("must be between 1 and {MAX_DISK_GIB}")));
    }
    Ok(())
}

/// A change to a VM: rename and/or resize. Absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VmPatch {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub name: Option<String>,
    /// New vCPU count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 512))]
    pub vcpus: Option<u32>,
    /// New memory size in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 16777216))]
    pub memory_mib: Option<u64>,
    /// New disk size in GiB; disks only grow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65536))]
    pub disk_gib: Option<u64>,
    /// A new owner (admins only, alone in its patch): done at once, the VM's usage moving
    /// to the new owner's quota; answered 200 with the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
}

impl VmPatch {
    /// Whether the patch changes the VM's size (and so is a resize, not only a rename).
    pub fn resizes(&self, vm: &Vm) -> bool {
        self.vcpus.is_some_and(|v| v != vm.vcpus)
            || self.memory_mib.is_some_and(|m| m != vm.memory_mib)
            || self.disk_gib.is_some_and(|d| d != vm.disk_gib)
    }

    /// Whether the patch changes the name.
    pub fn renames(&self, vm: &Vm) -> bool {
        self.name.as_ref().is_some_and(|n| *n != vm.name)
    }

    /// Checks the patch against the VM it applies to.
    pub fn validate(&self, vm: &Vm) -> Result<()> {
        if self.owner_id.is_some() {
            return Err(Error::invalid("owner_id", "a new owner is changed alone, in a patch of its own"));
        }
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        validate_size(
            self.vcpus.unwrap_or(vm.vcpus),
            self.memory_mib.unwrap_or(vm.memory_mib),
            self.disk_gib.unwrap_or(vm.disk_gib),
        )?;
        if self.disk_gib.is_some_and(|d| d < vm.disk_gib) {
            return Err(Error::invalid("disk_gib", format!("disks only grow (now {} GiB)", vm.disk_gib)));
        }
        Ok(())
    }

    /// The VM as it is once the patch is applied.
    pub fn applied_to(&self, vm: &Vm) -> Vm {
        let mut out = vm.clone();
        if let Some(name) = &self.name {
            out.name.clone_from(name);
        }
        out.vcpus = self.vcpus.unwrap_or(vm.vcpus);
        out.memory_mib = self.memory_mib.unwrap_or(vm.memory_mib);
        out.disk_gib = self.disk_gib.unwrap_or(vm.disk_gib);
        out
    }
}

/// A virtual machine as vmm records it (the desired state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Vm {
    /// The id; also the libvirt domain UUID.
    pub id: VmId,
    /// Display name.
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disk size in GiB.
    pub disk_gib: u64,
    /// The node it lives on.
    pub node_id: NodeId,
    /// The pool its addresses come from, if any.
    pub ip_pool_id: Option<PoolId>,
    /// Its lifecycle state.
    pub state: VmState,
    /// Leased addresses.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, example = json!(["192.0.2.10"])))]
    pub addresses: Vec<IpAddr>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The image it was installed from.
    #[serde(default)]
    pub image_id: Option<ImageId>,
    /// Its guest's hostname, when vmm sets the guest up.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Its NICs: one per pool it draws from, in order.
    #[serde(default)]
    pub nics: Vec<VmNic>,
    /// The user it belongs to (none for a VM made before VMs had owners: only those who
    /// see every VM reach it).
    #[serde(default)]
    pub owner_id: Option<UserId>,
    /// What its domain was last seen doing on its node (by the reconciler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_state: Option<crate::reconcile::ObservedState>,
    /// Why the observed state differs from `state`, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The placement group it joined when it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group_id: Option<PlacementGroupId>,
    /// The node a migration is moving it to: that node's capacity is held for it until
    /// the migration switches over (then `node_id` becomes this) or rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrating_to: Option<NodeId>,
    /// HA restarts it on another node when its node dies.
    #[serde(default)]
    pub ha: bool,
}

/// One NIC of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VmNic {
    /// Its number, 0 to 15; its MAC comes from the VM id and this.
    pub index: u8,
    /// Its MAC address.
    pub mac: String,
    /// The pool its addresses come from.
    pub pool_id: Option<PoolId>,
    /// The network it plugs into; user-mode networking when absent.
    pub network_id: Option<NetworkId>,
    /// Its addresses.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub addresses: Vec<IpAddr>,
}

impl VmNic {
    /// A NIC of `vm` at `index` on `pool` (its network and addresses filled in later).
    pub fn new(vm: VmId, index: u8, pool_id: Option<PoolId>) -> Self {
        Self { index, mac: vm.nic_mac(index), pool_id, network_id: None, addresses: Vec::new() }
    }
}

/// The smallest NIC number `vm` does not use; refused when it has [`MAX_NICS`].
pub fn free_nic_index(vm: &Vm) -> Result<u8> {
    (0..MAX_NICS as u8)
        .find(|i| vm.nics.iter().all(|n| n.index != *i))
        .ok_or_else(|| Error::invalid("ip_pool_id", format!("a VM has at most {MAX_NICS} NICs")))
}

impl Vm {
    /// What the VM takes from its node.
    pub fn demand(&self) -> Demand {
        Demand { vcpus: self.vcpus, memory_mib: self.memory_mib, disk_gib: self.disk_gib }
    }

    /// Sets `addresses` and `ip_pool_id` from the NICs (the flat view the first API had).
    pub fn refresh_addresses(&mut self) {
        self.addresses = self.nics.iter().flat_map(|n| n.addresses.iter().copied()).collect();
        self.ip_pool_id = self.nics.iter().find_map(|n| n.pool_id);
    }
}

/// The lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum VmState {
    /// The create task has not finished.
    Creating,
    /// Defined and shut off.
    Stopped,
    /// Running.
    Running,
    /// Suspended in memory.
    Paused,
    /// A task failed and left the VM in an unknown state; it may be stopped or deleted.
    Error,
    /// The delete task is running.
    Deleting,
}

impl VmState {
    /// Every state.
    pub const ALL: [VmState; 6] =
        [Self::Creating, Self::Stopped, Self::Running, Self::Paused, Self::Error, Self::Deleting];

    /// The state's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The state a VM reaches once `action` succeeds, or [`Error::InvalidState`] when the
    /// action is not allowed now.
    ///
    /// ```
    /// use vmm_core::{VmAction, VmState, VmId};
    /// let id = VmId::new();
    /// assert_eq!(VmState::Stopped.apply(id, VmAction::Start).unwrap(), VmState::Running);
    /// assert!(VmState::Stopped.apply(id, VmAction::Suspend).is_err());
    /// ```
    pub fn apply(self, id: VmId, action: VmAction) -> Result<VmState> {
        use VmAction as A;
        use VmState as S;
        let next = match (self, action) {
            (S::Stopped, A::Start) => S::Running,
            (S::Running | S::Paused | S::Error, A::Stop) => S::Stopped,
            (S::Running, A::Shutdown) => S::Stopped,
            (S::Running, A::Reboot) => S::Running,
            (S::Running, A::Suspend) => S::Paused,
            (S::Paused, A::Resume) => S::Running,
            (same @ (S::Stopped | S::Running), A::Resize) => same,
            (same @ (S::Stopped | S::Running | S::Paused | S::Error), A::Rename) => same,
            // A reinstall starts the VM again; it may mend a VM in error.
            (S::Stopped | S::Running | S::Error, A::Reinstall) => S::Running,
            (same @ (S::Stopped | S::Running), A::ChangeAddresses) => same,
            (S::Stopped, A::Clone) => S::Stopped,
            (same @ (S::Stopped | S::Running), A::Migrate) => same,
            // Creating: only reachable when the create task is gone (one active task per VM),
            // so that a VM stranded by a crash can still be removed.
            // Deleting: a delete whose task failed half-way may be tried again.
            (S::Creating | S::Stopped | S::Running | S::Paused | S::Error | S::Deleting, A::Delete) => {
                S::Deleting
            }
            (state, action) => return Err(Error::InvalidState { id, state, action }),
        };
        Ok(next)
    }
}

/// Something a user can do to an existing VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum VmAction {
    /// Power on.
    Start,
    /// Power off at once (pull the plug).
    Stop,
    /// Ask the guest to shut down; forced off after a timeout.
    Shutdown,
    /// Restart the guest.
    Reboot,
    /// Pause in memory.
    Suspend,
    /// Continue after a suspend.
    Resume,
    /// Change vCPUs, memory or disk size.
    Resize,
    /// Change the display name.
    Rename,
    /// Remove the VM, its disk and its leases.
    Delete,
    /// Rewrite the disk from an image.
    Reinstall,
    /// Add or remove an address (and its NIC).
    ChangeAddresses,
    /// Copy the VM into a new one.
    Clone,
    /// Move the VM to another node.
    Migrate,
}

impl VmAction {
    /// Every action.
    pub const ALL: [VmAction; 13] = [
        Self::Start,
        Self::Stop,
        Self::Shutdown,
        Self::Reboot,
        Self::Suspend,
        Self::Resume,
        Self::Resize,
        Self::Rename,
        Self::Delete,
        Self::Reinstall,
        Self::ChangeAddresses,
        Self::Clone,
        Self::Migrate,
    ];

    /// The action's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl From<PowerAction> for VmAction {
    fn from(action: PowerAction) -> Self {
        match action {
            PowerAction::Start => Self::Start,
            PowerAction::Stop => Self::Stop,
            PowerAction::Shutdown => Self::Shutdown,
            PowerAction::Reboot => Self::Reboot,
            PowerAction::Suspend => Self::Suspend,
            PowerAction::Resume => Self::Resume,
        }
    }
}

/// The actions that change a VM's power state, each run as its own task kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PowerAction {
    /// Power on.
    Start,
    /// Power off at once.
    Stop,
    /// Ask the guest to shut down (forced after a timeout).
    Shutdown,
    /// Reboot.
    Reboot,
    /// Pause.
    Suspend,
    /// Continue after a pause.
    Resume,
}

impl PowerAction {
    /// The power state a domain shows once the action has taken effect; `None` for a
    /// reboot, which ends where it started.
    pub fn leaves_domain(self) -> Option<PowerState> {
        match self {
            Self::Start | Self::Resume => Some(PowerState::Running),
            Self::Stop | Self::Shutdown => Some(PowerState::Shutoff),
            Self::Suspend => Some(PowerState::Paused),
            Self::Reboot => None,
        }
    }
}

impl TryFrom<VmAction> for PowerAction {
    type Error = Error;

    fn try_from(action: VmAction) -> Result<Self> {
        match action {
            VmAction::Start => Ok(Self::Start),
            VmAction::Stop => Ok(Self::Stop),
            VmAction::Shutdown => Ok(Self::Shutdown),
            VmAction::Reboot => Ok(Self::Reboot),
            VmAction::Suspend => Ok(Self::Suspend),
            VmAction::Resume => Ok(Self::Resume),
            other => Err(Error::invalid("action", format!("{other} is not a power action"))),
        }
    }
}

/// The VM state that matches what a node shows of its domain.
pub fn state_of_domain(state: PowerState) -> VmState {
    match state {
        PowerState::Running => VmState::Running,
        PowerState::Paused => VmState::Paused,
        PowerState::Shutoff => VmState::Stopped,
        PowerState::Crashed | PowerState::Other => VmState::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference state machine, written as a table: (from, action, to).
    const TABLE: &[(VmState, VmAction, VmState)] = {
        use VmAction as A;
        use VmState as S;
        &[
            (S::Stopped, A::Start, S::Running),
            (S::Running, A::Stop, S::Stopped),
            (S::Paused, A::Stop, S::Stopped),
            (S::Error, A::Stop, S::Stopped),
            (S::Running, A::Shutdown, S::Stopped),
            (S::Running, A::Reboot, S::Running),
            (S::Running, A::Suspend, S::Paused),
            (S::Paused, A::Resume, S::Running),
            (S::Stopped, A::Resize, S::Stopped),
            (S::Running, A::Resize, S::Running),
            (S::Stopped, A::Rename, S::Stopped),
            (S::Running, A::Rename, S::Running),
            (S::Paused, A::Rename, S::Paused),
            (S::Error, A::Rename, S::Error),
            (S::Creating, A::Delete, S::Deleting),
            (S::Stopped, A::Delete, S::Deleting),
            (S::Running, A::Delete, S::Deleting),
            (S::Paused, A::Delete, S::Deleting),
            (S::Error, A::Delete, S::Deleting),
            (S::Deleting, A::Delete, S::Deleting),
            (S::Stopped, A::Reinstall, S::Running),
            (S::Running, A::Reinstall, S::Running),
            (S::Error, A::Reinstall, S::Running),
            (S::Stopped, A::ChangeAddresses, S::Stopped),
            (S::Running, A::ChangeAddresses, S::Running),
            (S::Stopped, A::Clone, S::Stopped),
            (S::Stopped, A::Migrate, S::Stopped),
            (S::Running, A::Migrate, S::Running),
        ]
    };

    fn reference(state: VmState, action: VmAction) -> Option<VmState> {
        TABLE.iter().find(|(s, a, _)| *s == state && *a == action).map(|(_, _, to)| *to)
    }

    fn state() -> impl Strategy<Value = VmState> {
        proptest::sample::select(VmState::ALL.to_vec())
    }

    fn action() -> impl Strategy<Value = VmAction> {
        proptest::sample::select(VmAction::ALL.to_vec())
    }

    proptest! {
        /// Any sequence of actions gives the same states and the same refusals as the table.
        #[test]
        fn transitions_match_the_reference(start in state(), actions in proptest::collection::vec(action(), 0..40)) {
            let id = VmId::new();
            let mut now = start;
            for action in actions {
                match (now.apply(id, action), reference(now, action)) {
                    (Ok(next), Some(expected)) => { prop_assert_eq!(next, expected); now = next; }
                    (Err(Error::InvalidState { id: e_id, state, action: a }), None) => {
                        prop_assert_eq!(e_id, id);
                        prop_assert_eq!(state, now);
                        prop_assert_eq!(a, action);
                    }
                    (got, expected) => prop_assert!(false, "{now} {action}: got {got:?}, expected {expected:?}"),
                }
            }
        }

        /// Specs survive a JSON round trip.
        #[test]
        fn spec_round_trips_through_json(name in ".{1,40}", vcpus in 1u32..64, mem in 64u64..65536, disk in 1u64..2048, start: bool) {
            let spec = VmSpec { start, ..VmSpec::new(name, vcpus, mem, disk) };
            let json = serde_json::to_string(&spec).unwrap();
            prop_assert_eq!(serde_json::from_str::<VmSpec>(&json).unwrap(), spec);
        }
    }

    #[test]
    fn transitional_states_allow_only_delete() {
        for action in VmAction::ALL {
            assert_eq!(VmState::Creating.apply(VmId::new(), action).is_ok(), action == VmAction::Delete);
            assert_eq!(VmState::Deleting.apply(VmId::new(), action).is_ok(), action == VmAction::Delete);
        }
    }

    #[test]
    fn names_round_trip_through_strum_and_serde() {
        for state in VmState::ALL {
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, state.as_str());
            assert_eq!(state.as_str().parse::<VmState>().unwrap(), state);
        }
        for action in VmAction::ALL {
            assert_eq!(serde_json::to_value(action).unwrap(), action.to_string());
            assert_eq!(action.as_str().parse::<VmAction>().unwrap(), action);
        }
        use strum::IntoEnumIterator;
        for power in PowerAction::iter() {
            let action = VmAction::from(power);
            assert_eq!(PowerAction::try_from(action).unwrap(), power);
            assert_eq!(action.as_str(), <&str>::from(power));
        }
        assert!(PowerAction::try_from(VmAction::Delete).is_err());
    }

    #[test]
    fn spec_validation_names_the_field() {
        let field = |spec: VmSpec| match spec.validate() {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field(VmSpec::new("   ", 1, 512, 1)), "name");
        assert_eq!(field(VmSpec::new("a\u{0}b", 1, 512, 1)), "name");
        assert_eq!(field(VmSpec::new(" padded", 1, 512, 1)), "name");
        assert_eq!(field(VmSpec::new("a\u{ffff}", 1, 512, 1)), "name");
        assert_eq!(field(VmSpec::new("x".repeat(129), 1, 512, 1)), "name");
        assert_eq!(field(VmSpec::new("ok", 0, 512, 1)), "vcpus");
        assert_eq!(field(VmSpec::new("ok", 1, 1, 1)), "memory_mib");
        assert_eq!(field(VmSpec::new("ok", 1, 512, 0)), "disk_gib");
        // Markup characters are fine: names never reach XML except through the serializer.
        assert!(VmSpec::new("<b>&'\"]]>", 1, 512, 1).validate().is_ok());
    }

    #[test]
    fn spec_json_refuses_unknown_fields_and_defaults_start() {
        let spec: VmSpec =
            serde_json::from_str(r#"{"name":"a","vcpus":1,"memory_mib":512,"disk_gib":1}"#).unwrap();
        assert!(spec.start);
        assert!(serde_json::from_str::<VmSpec>(
            r#"{"name":"a","vcpus":1,"memory_mib":512,"disk_gib":1,"cpus":2}"#
        )
        .is_err());
    }

    #[test]
    fn disks_only_grow() {
        let vm = Vm {
            id: VmId::new(),
            name: "a".into(),
            vcpus: 1,
            memory_mib: 512,
            disk_gib: 10,
            node_id: NodeId::new(),
            ip_pool_id: None,
            state: VmState::Stopped,
            addresses: vec![],
            created_at: Utc::now(),
            image_id: None,
            hostname: None,
            nics: vec![],
            owner_id: None,
            observed_state: None,
            state_reason: None,
            placement_group_id: None,
            migrating_to: None,
            ha: false,
        };
        let shrink = VmPatch { disk_gib: Some(5), ..Default::default() };
        assert!(shrink.validate(&vm).is_err());
        let grow = VmPatch { disk_gib: Some(20), vcpus: Some(2), ..Default::default() };
        assert!(grow.validate(&vm).is_ok());
        assert!(grow.resizes(&vm));
        assert_eq!(grow.applied_to(&vm).disk_gib, 20);
    }
}
