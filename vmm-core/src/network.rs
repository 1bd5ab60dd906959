//! Networks: where a VM's NICs plug in. A `bridge` network is an existing host bridge
//! (such as `br0`) on every node, the production case; a `managed` network is a libvirt
//! network vmm defines on each node that needs it: a bridge with no DHCP, no address for
//! the host and no forwarding to the host's uplink. IP pools belong to a network; a VM gets
//! one NIC per pool it draws addresses from.

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{NetworkId, NodeId};

/// How a network reaches the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum NetworkKind {
    /// An existing host bridge on each node.
    Bridge,
    /// A libvirt network vmm defines on each node that needs it (isolated).
    Managed,
}

/// What a user gives to add a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Unique display name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$"))]
    pub name: String,
    /// `bridge` or `managed`.
    pub kind: NetworkKind,
    /// For `bridge`: the host bridge's name.
    #[serde(default)]
    pub bridge: Option<String>,
    /// The network's addresses, for information (pools say which addresses are leased).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "198.51.100.0/24"))]
    pub cidr: Option<IpNet>,
    /// An 802.1Q VLAN tag for the NICs (`bridge` networks on VLAN-aware bridges).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4094))]
    pub vlan: Option<u16>,
    /// The nodes that have this network (a bridge network's host bridge); every node when
    /// empty. VMs with a NIC on it are placed only there.
    #[serde(default)]
    pub node_ids: Vec<NodeId>,
}

/// A network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Network {
    /// The id.
    pub id: NetworkId,
    /// Unique display name.
    pub name: String,
    /// `bridge` or `managed`.
    pub kind: NetworkKind,
    /// The host bridge NICs plug into: given for `bridge`, made by vmm for `managed`.
    pub bridge: String,
    /// The network's addresses.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub cidr: Option<IpNet>,
    /// The VLAN tag.
    pub vlan: Option<u16>,
    /// The nodes that have it; every node when empty.
    #[serde(default)]
    pub node_ids: Vec<NodeId>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Checks a Linux interface name: 1 to 15 characters, letters, digits, `-`, `_`, `.`.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['-', '.'])
}

impl Network {
    /// Checks a spec and makes the network.
    ///
    /// ```
    /// use vmm_core::network::{Network, NetworkKind, NetworkSpec};
    /// let spec = NetworkSpec {
    ///     name: "lab".into(), kind: NetworkKind::Managed, bridge: None, cidr: None, vlan: None, node_ids: vec![],
    /// };
    /// let net = Network::from_spec(&spec, chrono::Utc::now()).unwrap();
    /// assert!(net.bridge.starts_with("vmmbr") && net.bridge.len() <= 15);
    /// ```
    pub fn from_spec(spec: &NetworkSpec, now: DateTime<Utc>) -> Result<Self> {
        let name = spec.name.trim();
        if name.is_empty() || name != spec.name || name.len() > 64 {
            return Err(Error::invalid("name", "must be 1 to 64 characters, no edge spaces"));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(Error::invalid("name", "may hold only letters, digits, '-', '_' and '.'"));
        }
        if spec.vlan.is_some_and(|v| !(1..=4094).contains(&v)) {
            return Err(Error::invalid("vlan", "must be between 1 and 4094"));
        }
        let id = NetworkId::new();
        let bridge = match (spec.kind, &spec.bridge) {
            (NetworkKind::Bridge, Some(b)) if valid_ifname(b) => b.clone(),
            (NetworkKind::Bridge, _) => {
                return Err(Error::invalid(
                    "bridge",
                    "a bridge network names its host bridge (1 to 15 characters)",
                ))
            }
            (NetworkKind::Managed, None) => managed_bridge(id),
            (NetworkKind::Managed, Some(_)) => {
                return Err(Error::invalid("bridge", "vmm names the bridge of a managed network"))
            }
        };
        if let Some(cidr) = spec.cidr {
            if cidr.network() != cidr.addr() {
                return Err(Error::invalid("cidr", format!("{cidr} has host bits set")));
            }
        }
        Ok(Self {
            id,
            name: name.to_owned(),
            kind: spec.kind,
            bridge,
            cidr: spec.cidr,
            vlan: spec.vlan,
            node_ids: spec.node_ids.clone(),
            created_at: now,
        })
    }

    /// Whether `node` has this network.
    pub fn reaches(&self, node: NodeId) -> bool {
        self.node_ids.is_empty() || self.node_ids.contains(&node)
    }

    /// The name of the libvirt network vmm defines for a managed network.
    pub fn libvirt_name(&self) -> String {
        format!("vmm-{}", self.id)
    }
}

/// The bridge of a managed network: `vmmbr` and 10 hex digits of the id's random part.
fn managed_bridge(id: NetworkId) -> String {
    let hex = id.as_uuid().simple().to_string();
    format!("vmmbr{}", &hex[hex.len() - 10..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked() {
        let spec = |kind, bridge: Option<&str>| NetworkSpec {
            name: "n".into(),
            kind,
            bridge: bridge.map(str::to_owned),
            cidr: None,
            vlan: None,
            node_ids: vec![],
        };
        assert_eq!(
            Network::from_spec(&spec(NetworkKind::Bridge, Some("br0")), Utc::now()).unwrap().bridge,
            "br0"
        );
        for bad in [None, Some(""), Some("br0; rm -rf /"), Some("a-very-long-bridge-name"), Some("-x")] {
            assert!(Network::from_spec(&spec(NetworkKind::Bridge, bad), Utc::now()).is_err(), "{bad:?}");
        }
        assert!(Network::from_spec(&spec(NetworkKind::Managed, Some("br0")), Utc::now()).is_err());
        let a = Network::from_spec(&spec(NetworkKind::Managed, None), Utc::now()).unwrap();
        let b = Network::from_spec(&spec(NetworkKind::Managed, None), Utc::now()).unwrap();
        assert_ne!(a.bridge, b.bridge, "each managed network has a bridge of its own");
        assert!(valid_ifname(&a.bridge));
        let vlan = NetworkSpec { vlan: Some(5000), ..spec(NetworkKind::Bridge, Some("br0")) };
        assert!(Network::from_spec(&vlan, Utc::now()).is_err());
    }
}
