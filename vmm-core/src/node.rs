//! Hypervisor nodes: where they are (a libvirt URI), what they have ([`Capacity`]), how far
//! they may be overcommitted, and what the VMs on them have taken ([`Usage`]).

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
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
        self.into()
    }
}

/// Whether a node takes new VMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
        self.into()
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

impl Usage {
    /// The usage once a VM taking `demand` is added.
    pub fn with(self, demand: &crate::placement::Demand) -> Self {
        Self {
            vms: self.vms + 1,
            vcpus: self.vcpus + u64::from(demand.vcpus),
            memory_mib: self.memory_mib + demand.memory_mib,
            storage_gib: self.storage_gib + demand.disk_gib,
        }
    }

    /// The usage once a VM taking `demand` is gone.
    pub fn without(self, demand: &crate::placement::Demand) -> Self {
        Self {
            vms: self.vms.saturating_sub(1),
            vcpus: self.vcpus.saturating_sub(u64::from(demand.vcpus)),
            memory_mib: self.memory_mib.saturating_sub(demand.memory_mib),
            storage_gib: self.storage_gib.saturating_sub(demand.disk_gib),
        }
    }
}

/// What a user gives to add a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique display name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$"))]
    pub name: String,
    /// libvirt URI (`qemu:///system`, `qemu+ssh://host/system`, `test:///default`, `memory://name`).
    pub uri: String,
    /// How guests run; default `kvm`.
    #[serde(default)]
    pub virt_type: VirtType,
    /// vCPUs per physical CPU; default [`DEFAULT_CPU_OVERCOMMIT`].
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 64))]
    pub cpu_overcommit: Option<f64>,
    /// Memory overcommit ratio; default [`DEFAULT_MEMORY_OVERCOMMIT`].
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 64))]
    pub memory_overcommit: Option<f64>,
    /// How HA fences the node once it is declared dead (default: an operator confirms).
    #[serde(default)]
    pub fence: crate::ha::Fence,
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
            fence: crate::ha::Fence::Manual,
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
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$"))]
    pub name: Option<String>,
    /// New CPU overcommit ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 64))]
    pub cpu_overcommit: Option<f64>,
    /// New memory overcommit ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 64))]
    pub memory_overcommit: Option<f64>,
    /// New state: `maintenance` to drain placement, `online` to take VMs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeState>,
    /// How HA fences it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<crate::ha::Fence>,
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
        if let Some(fence) = &self.fence {
            out.fence = fence.clone();
        }
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
    /// How HA fences it once it is declared dead.
    #[serde(default)]
    pub fence: crate::ha::Fence,
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
            fence: spec.fence.clone(),
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

/// libvirt URI query parameters that an operator may allow on node URIs. They tune how
/// libvirt authenticates; the operator's config names them, users never add others.
pub const OPERATOR_QUERY_PARAMS: &[&str] = &[
    "keyfile",
    "known_hosts",
    "known_hosts_verify",
    "sshauth",
    "no_verify",
    "no_tty",
    "pkipath",
    "tls_priority",
    "mode",
];

/// Longest node URI accepted.
pub const MAX_URI_CHARS: usize = 512;

/// Which node URIs vmm accepts: libvirt's `qemu` driver at `/system`, locally or over ssh,
/// tcp or tls, with only the query parameters the operator allows. Everything else that a
/// libvirt URI can do (run a program with `command=`, `netcat=` or `proxy=`, open a local
/// socket, run an embedded driver, parse a host file with `test:///PATH`) is refused.
/// `test:///default` and `memory://` nodes exist only when the operator enables test nodes.
///
/// ```
/// use vmm_core::NodeUriPolicy;
/// let policy = NodeUriPolicy::default();
/// assert!(policy.check("qemu:///system").is_ok());
/// assert!(policy.check("qemu+ssh://root@hv1.example/system").is_ok());
/// assert!(policy.check("qemu+ssh://u@example.invalid/system?command=/tmp/p.sh").is_err());
/// assert!(policy.check("test:///default").is_err());
/// assert!(NodeUriPolicy::for_tests().check("test:///default").is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUriPolicy {
    /// Accept `test:///default` and `memory://NAME` nodes (tests and demos only).
    #[serde(default)]
    pub test_nodes: bool,
    /// Query parameters allowed on node URIs, from [`OPERATOR_QUERY_PARAMS`].
    #[serde(default)]
    pub query_params: std::collections::BTreeSet<String>,
}

impl NodeUriPolicy {
    /// A policy that also accepts test nodes.
    pub fn for_tests() -> Self {
        Self { test_nodes: true, ..Self::default() }
    }

    /// The same policy with query parameter `name` allowed; refused unless it is one of
    /// [`OPERATOR_QUERY_PARAMS`].
    pub fn allow_query_param(mut self, name: &str) -> Result<Self> {
        if !OPERATOR_QUERY_PARAMS.contains(&name) {
            return Err(Error::invalid(
                "node_uri_params",
                format!("{name:?} cannot be allowed; allowable are {}", OPERATOR_QUERY_PARAMS.join(", ")),
            ));
        }
        self.query_params.insert(name.to_owned());
        Ok(self)
    }

    /// Checks a node URI; the error names the part refused.
    pub fn check(&self, uri: &str) -> Result<()> {
        let bad = |why: String| Error::invalid("uri", why);
        if uri.is_empty() || uri.chars().count() > MAX_URI_CHARS {
            return Err(bad(format!("must be 1 to {MAX_URI_CHARS} characters")));
        }
        if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("must not contain white space or control characters".into()));
        }
        let Some((scheme, _)) = uri.split_once("://") else {
            return Err(bad("must be a libvirt URI such as qemu:///system".into()));
        };
        let test_only = |what: &str| {
            if self.test_nodes {
                Ok(())
            } else {
                Err(bad(format!("{what} nodes are for tests; this server does not enable test nodes")))
            }
        };
        match scheme {
            "memory" => return test_only("memory://"),
            "test" => {
                test_only("test:///default")?;
                return if uri == "test:///default" {
                    Ok(())
                } else {
                    Err(bad("the test driver is served only as test:///default".into()))
                };
            }
            "qemu" | "qemu+ssh" | "qemu+tcp" | "qemu+tls" => {}
            other => {
                return Err(bad(format!(
                    "scheme {other:?} is not served: use qemu, qemu+ssh, qemu+tcp or qemu+tls"
                )))
            }
        }
        let parsed = url::Url::parse(uri).map_err(|e| bad(format!("is not a URI ({e})")))?;
        if parsed.path() != "/system" {
            return Err(bad(format!("path {:?} is not served: only /system", parsed.path())));
        }
        if parsed.fragment().is_some() {
            return Err(bad("must not have a fragment".into()));
        }
        if parsed.password().is_some() {
            return Err(bad("must not carry a password (use ssh keys or TLS certificates)".into()));
        }
        let host = parsed.host_str().unwrap_or_default();
        match scheme {
            "qemu" => {
                if !host.is_empty() || !parsed.username().is_empty() || parsed.port().is_some() {
                    return Err(bad(
                        "qemu:///system names no host; use qemu+ssh, qemu+tcp or qemu+tls".into()
                    ));
                }
            }
            _ => {
                let ip_literal = host.starts_with('[') && host.ends_with(']');
                let host_name = !host.is_empty()
                    && !host.starts_with(['-', '.'])
                    && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
                if !(ip_literal || host_name) {
                    return Err(bad(format!("host {host:?} is not a host name or address")));
                }
                let user = parsed.username();
                if scheme != "qemu+ssh" && !user.is_empty() {
                    return Err(bad("a user name goes only with qemu+ssh".into()));
                }
                let user_ok = user.is_empty()
                    || (!user.starts_with('-')
                        && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
                if !user_ok {
                    return Err(bad(format!("user {user:?} is not a user name")));
                }
            }
        }
        for (key, _) in parsed.query_pairs() {
            if !self.query_params.contains(key.as_ref()) {
                let why = match key.as_ref() {
                    "command" | "netcat" | "proxy" => "would run a program",
                    "socket" => "would open a local socket",
                    "name" => "would choose another driver on the node",
                    _ => "is not allowed by this server",
                };
                return Err(bad(format!("query parameter {key:?} {why}")));
            }
        }
        Ok(())
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
    fn hostile_uris_are_refused_naming_the_part() {
        let strict = NodeUriPolicy::default();
        let reason = |policy: &NodeUriPolicy, uri: &str| match policy.check(uri) {
            Err(Error::Invalid { field, reason }) => {
                assert_eq!(field, "uri");
                reason
            }
            other => panic!("{uri}: {other:?}"),
        };
        assert!(
            reason(&strict, "qemu+ssh://u@example.invalid/system?command=/tmp/p.sh").contains("\"command\"")
        );
        assert!(reason(&strict, "qemu:///embed?root=/tmp/x").contains("/embed"));
        assert!(reason(&strict, "qemu:///system?socket=/any/path").contains("\"socket\""));
        assert!(reason(&strict, "qemu+ssh://h/system?netcat=/bin/nc").contains("run a program"));
        assert!(reason(&strict, "qemu+tcp://h/system?proxy=x").contains("run a program"));
        assert!(reason(&strict, "qemu+tcp://h/system?name=test:///default").contains("\"name\""));
        assert!(reason(&strict, "test:///etc/passwd").contains("test nodes"));
        assert!(reason(&NodeUriPolicy::for_tests(), "test:///etc/passwd").contains("test:///default"));
        assert!(reason(&strict, "memory://n1").contains("test nodes"));
        assert!(reason(&strict, "qemu+ssh://-oProxyCommand=x/system").contains("host"));
        assert!(reason(&strict, "qemu+ssh://-l@h/system").contains("user"));
        assert!(reason(&strict, "qemu+tcp://h:16509/system#frag").contains("fragment"));
        assert!(reason(&strict, "qemu+ssh://u:pw@h/system").contains("password"));
        assert!(reason(&strict, "qemu://h/system").contains("names no host"));
        assert!(reason(&strict, "xen:///system").contains("xen"));
        assert!(reason(&strict, "qemu+unix:///system?socket=/x").contains("qemu+unix"));
        assert!(reason(&strict, "qemu+ssh://h/system?keyfile=/k").contains("keyfile"));
        let operator = NodeUriPolicy::default().allow_query_param("keyfile").unwrap();
        assert!(operator.check("qemu+ssh://root@hv1.example:2222/system?keyfile=/etc/vmm/id").is_ok());
        assert!(NodeUriPolicy::default().allow_query_param("command").is_err());
        for ok in ["qemu:///system", "qemu+tcp://192.0.2.7/system", "qemu+tls://[2001:db8::7]:16514/system"] {
            assert!(strict.check(ok).is_ok(), "{ok}");
        }
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
