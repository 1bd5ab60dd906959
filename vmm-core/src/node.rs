//! Hypervisor nodes: where they are (a libvirt URI), what they have ([`Capacity`]), how far
//! they may be overcommitted, and what the VMs on them have taken ([`Usage`]).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::NodeId;

/// Default CPU overcommit ratio: four vCPUs per physical CPU.
pub const DEFAULT_CPU_OVERCOMMIT: f64 = 4.0;
/// Default memory overcommit ratio: none.
pub const DEFAULT_MEMORY_OVERCOMMIT: f64 = 1.0;
/// Largest overcommit ratio accepted.
pub const MAX_OVERCOMMIT: f64 = 64.0;

/// How guests are run on a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VirtType {
    /// Hardware virtualisation (libvirt domain type `kvm`).
    #[default]
    Kvm,
    /// Software emulation (TCG, libvirt domain type `qemu`).
    Qemu,
}

impl VirtType {
    /// The libvirt domain type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Qemu => "qemu",
        }
    }
}

impl fmt::Display for VirtType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a node takes new VMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Reachable and taking VMs.
    #[default]
    Online,
    /// Not reachable.
    Offline,
    /// Reachable, but placement skips it.
    Maintenance,
}

impl NodeState {
    /// The state's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node has, as its hypervisor reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capacity {
    /// Physical CPUs (threads).
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Storage for VM disks in GiB.
    pub storage_gib: u64,
}

/// What the VMs on a node have taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// VMs on the node.
    pub vms: u64,
    /// vCPUs they have.
    pub vcpus: u64,
    /// Memory they have, in MiB.
    pub memory_mib: u64,
    /// Disk they have, in GiB.
    pub storage_gib: u64,
}

/// What a user gives to add a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique display name.
    pub name: String,
    /// libvirt URI (`qemu:///system`, `qemu+ssh://host/system`, `test:///default`, `memory://name`).
    pub uri: String,
    /// How guests run; default `kvm`.
    #[serde(default)]
    pub virt_type: VirtType,
    /// vCPUs per physical CPU; default [`DEFAULT_CPU_OVERCOMMIT`].
    #[serde(default)]
    pub cpu_overcommit: Option<f64>,
    /// Memory overcommit ratio; default [`DEFAULT_MEMORY_OVERCOMMIT`].
    #[serde(default)]
    pub memory_overcommit: Option<f64>,
}

impl NodeSpec {
    /// A spec with default virt type and ratios.
    pub fn new(name: impl Into<String>, uri: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            uri: uri.into(),
            virt_type: VirtType::Kvm,
            cpu_overcommit: None,
            memory_overcommit: None,
        }
    }

    /// The same spec with `virt_type`.
    pub fn with_virt_type(mut self, virt_type: VirtType) -> Self {
        self.virt_type = virt_type;
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        validate_node_name(&self.name)?;
        let uri = self.uri.trim();
        if uri.is_empty() || !uri.contains(':') || uri.chars().any(char::is_control) {
            return Err(Error::invalid("uri", "must be a libvirt URI such as qemu:///system"));
        }
        validate_ratio("cpu_overcommit", self.cpu_overcommit)?;
        validate_ratio("memory_overcommit", self.memory_overcommit)
    }
}

fn validate_node_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 {
        return Err(Error::invalid("name", "must be 1 to 64 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(Error::invalid("name", "may hold only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

fn validate_ratio(field: &str, ratio: Option<f64>) -> Result<()> {
    match ratio {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= MAX_OVERCOMMIT) => {
            Err(Error::invalid(field, format!("must be above 0 and at most {MAX_OVERCOMMIT}")))
        }
        _ => Ok(()),
    }
}

/// A change to a node. Absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodePatch {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New CPU overcommit ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_overcommit: Option<f64>,
    /// New memory overcommit ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overcommit: Option<f64>,
    /// New state: `maintenance` to drain placement, `online` to take VMs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeState>,
}

impl NodePatch {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.name {
            validate_node_name(name)?;
        }
        validate_ratio("cpu_overcommit", self.cpu_overcommit)?;
        validate_ratio("memory_overcommit", self.memory_overcommit)
    }

    /// The node once the patch is applied.
    pub fn applied_to(&self, node: &Node) -> Node {
        let mut out = node.clone();
        if let Some(name) = &self.name {
            out.name.clone_from(name);
        }
        out.cpu_overcommit = self.cpu_overcommit.unwrap_or(node.cpu_overcommit);
        out.memory_overcommit = self.memory_overcommit.unwrap_or(node.memory_overcommit);
        out.state = self.state.unwrap_or(node.state);
        out
    }
}

/// A hypervisor node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    /// The id.
    pub id: NodeId,
    /// Unique display name.
    pub name: String,
    /// libvirt URI.
    pub uri: String,
    /// How guests run.
    pub virt_type: VirtType,
    /// What the node has.
    pub capacity: Capacity,
    /// vCPUs per physical CPU.
    pub cpu_overcommit: f64,
    /// Memory overcommit ratio.
    pub memory_overcommit: f64,
    /// Whether it takes VMs.
    pub state: NodeState,
    /// What its VMs have taken (computed by the store from the VMs).
    #[serde(default)]
    pub allocated: Usage,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl Node {
    /// A node from a spec and the capacity its hypervisor reported.
    pub fn from_spec(spec: &NodeSpec, capacity: Capacity, now: DateTime<Utc>) -> Self {
        Self {
            id: NodeId::new(),
            name: spec.name.clone(),
            uri: spec.uri.trim().to_owned(),
            virt_type: spec.virt_type,
            capacity,
            cpu_overcommit: spec.cpu_overcommit.unwrap_or(DEFAULT_CPU_OVERCOMMIT),
            memory_overcommit: spec.memory_overcommit.unwrap_or(DEFAULT_MEMORY_OVERCOMMIT),
            state: NodeState::Online,
            allocated: Usage::default(),
            created_at: now,
        }
    }

    /// Most vCPUs the node may give out under its overcommit ratio.
    pub fn vcpu_limit(&self) -> u64 {
        (f64::from(self.capacity.cpus) * self.cpu_overcommit).floor() as u64
    }

    /// Most memory the node may give out under its overcommit ratio, in MiB.
    pub fn memory_limit_mib(&self) -> u64 {
        (self.capacity.memory_mib as f64 * self.memory_overcommit).floor() as u64
    }

    /// vCPUs still free under the ratio.
    pub fn free_vcpus(&self) -> u64 {
        self.vcpu_limit().saturating_sub(self.allocated.vcpus)
    }

    /// Memory still free under the ratio, in MiB.
    pub fn free_memory_mib(&self) -> u64 {
        self.memory_limit_mib().saturating_sub(self.allocated.memory_mib)
    }

    /// Storage still free, in GiB (storage is never overcommitted).
    pub fn free_storage_gib(&self) -> u64 {
        self.capacity.storage_gib.saturating_sub(self.allocated.storage_gib)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_ratios() {
        let spec = NodeSpec {
            cpu_overcommit: Some(2.5),
            memory_overcommit: Some(1.5),
            ..NodeSpec::new("n1", "memory://n1")
        };
        let cap = Capacity { cpus: 4, memory_mib: 1000, storage_gib: 100 };
        let mut node = Node::from_spec(&spec, cap, Utc::now());
        assert_eq!(node.vcpu_limit(), 10);
        assert_eq!(node.memory_limit_mib(), 1500);
        node.allocated = Usage { vms: 2, vcpus: 12, memory_mib: 500, storage_gib: 30 };
        assert_eq!(node.free_vcpus(), 0);
        assert_eq!(node.free_memory_mib(), 1000);
        assert_eq!(node.free_storage_gib(), 70);
    }

    #[test]
    fn specs_are_checked() {
        assert!(NodeSpec::new("local", "qemu:///system").validate().is_ok());
        assert!(NodeSpec::new("bad name", "qemu:///system").validate().is_err());
        assert!(NodeSpec::new("n", "nonsense").validate().is_err());
        let spec = NodeSpec { cpu_overcommit: Some(f64::NAN), ..NodeSpec::new("n", "test:///default") };
        assert!(spec.validate().is_err());
        let spec = NodeSpec { memory_overcommit: Some(0.0), ..NodeSpec::new("n", "test:///default") };
        assert!(spec.validate().is_err());
    }
}
