//! Typed identifiers. Every id is a UUID made by vmm (version 7, so ids sort by creation
//! time), wrapped in a newtype so that a `VmId` can never be passed where a `NodeId` is meant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id, time-ordered (UUID v7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| crate::Error::invalid("id", format!("{s:?} is not a UUID")))
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

id_type!(
    /// Identifies a virtual machine. Its libvirt domain has this UUID.
    VmId
);
id_type!(
    /// Identifies a hypervisor node.
    NodeId
);
id_type!(
    /// Identifies an IP pool.
    PoolId
);
id_type!(
    /// Identifies a task.
    TaskId
);
id_type!(
    /// Identifies a backup.
    BackupId
);
id_type!(
    /// Identifies a backup schedule.
    ScheduleId
);
id_type!(
    /// Identifies a backup target (a directory or an S3 bucket backups are kept in).
    BackupTargetId
);
id_type!(
    /// Identifies an OS image.
    ImageId
);
id_type!(
    /// Identifies a recipe.
    RecipeId
);
id_type!(
    /// Identifies a placement group.
    PlacementGroupId
);
id_type!(
    /// Identifies a network.
    NetworkId
);
id_type!(
    /// Identifies a user.
    UserId
);
id_type!(
    /// Identifies an API or session token.
    TokenId
);
id_type!(
    /// Identifies an SSH key of a user's key library.
    SshKeyId
);
id_type!(
    /// Identifies an entry of the audit log.
    AuditId
);
id_type!(
    /// Identifies a webhook subscription.
    WebhookId
);
id_type!(
    /// Identifies one attempt to deliver an event to a webhook.
    DeliveryId
);

impl VmId {
    /// The libvirt domain name of this VM: `vmm-<id>`. The user's name never goes here.
    pub fn domain_name(&self) -> String {
        format!("vmm-{}", self.0)
    }

    /// The name of this VM's disk volume: `vmm-<id>.qcow2`. Never derived from user input.
    pub fn volume_name(&self) -> String {
        format!("vmm-{}.qcow2", self.0)
    }

    /// The MAC address of the only NIC of a VM made before VMs had NICs of their own (it
    /// keeps it): QEMU's 52:54:00 prefix and 24 bits of the id. New NICs use
    /// [`Self::nic_mac`], which takes more of the id.
    pub fn mac_address(&self) -> String {
        let b = self.0.as_bytes();
        format!("52:54:00:{:02x}:{:02x}:{:02x}", b[13], b[14], b[15])
    }

    /// The stable, locally administered unicast MAC address of the VM's NIC number `index`
    /// (0 to 15): `52`, the index, then 36 random bits of the id, so that two VMs on one
    /// bridge share a MAC only once in tens of billions of pairs.
    pub fn nic_mac(&self, index: u8) -> String {
        let b = self.0.as_bytes();
        format!(
            "52:{:x}{:x}:{:02x}:{:02x}:{:02x}:{:02x}",
            index & 0x0f,
            b[11] & 0x0f,
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }

    /// The name of this VM's cloud-init seed volume.
    pub fn seed_volume_name(&self) -> String {
        format!("vmm-{}-seed.img", self.0)
    }

    /// The name of the file this VM's serial console is logged to, in the storage pool.
    pub fn console_log_name(&self) -> String {
        format!("vmm-{}.console.log", self.0)
    }

    /// The name of the copy of this VM's disk kept while it is reinstalled.
    pub fn previous_volume_name(&self) -> String {
        format!("vmm-{}.prev.qcow2", self.0)
    }
}

impl ImageId {
    /// The name of this image's volume on a node: `vmm-image-<id>` and its format.
    pub fn volume_name(&self, format: crate::image::ImageFormat) -> String {
        format!("vmm-image-{}.{}", self.0, format.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = VmId::new();
        assert_eq!(id.to_string().parse::<VmId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<VmId>(&json).unwrap(), id);
        assert!("not-a-uuid".parse::<VmId>().is_err());
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert!(a < b);
    }

    #[test]
    fn names_derive_from_the_id_only() {
        let id: VmId = "0190a5b2-0000-7000-8000-00000000abcd".parse().unwrap();
        assert_eq!(id.domain_name(), "vmm-0190a5b2-0000-7000-8000-00000000abcd");
        assert_eq!(id.volume_name(), "vmm-0190a5b2-0000-7000-8000-00000000abcd.qcow2");
        assert_eq!(id.mac_address(), "52:54:00:00:ab:cd");
        let id: VmId = "0190a5b2-0000-7000-8000-0000f712abcd".parse().unwrap();
        assert_eq!(id.nic_mac(0), "52:00:f7:12:ab:cd");
        assert_eq!(id.nic_mac(3), "52:30:f7:12:ab:cd");
        let macs: std::collections::HashSet<String> = (0..16).map(|i| id.nic_mac(i)).collect();
        assert_eq!(macs.len(), 16, "each NIC its own");
        for mac in macs {
            let first = u8::from_str_radix(&mac[..2], 16).unwrap();
            assert_eq!(first & 0b11, 0b10, "{mac}: locally administered, unicast");
        }
    }
}
