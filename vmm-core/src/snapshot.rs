//! Snapshots of a VM: named by the user, kept by libvirt on the node (internal qcow2
//! snapshots: the disk, and the memory of a running VM), mirrored in the database with
//! their parent. Taking, reverting to and deleting one are tasks on the VM.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::VmId;

/// Longest snapshot name.
pub const MAX_SNAPSHOT_NAME: usize = 64;

/// What a snapshot request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SnapshotSpec {
    /// Its name: 1 to 64 of `A-Z a-z 0-9 . _ -`, unique per VM.
    pub name: String,
    /// A note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Keep the running VM's memory too, so that a revert resumes it where it was. A
    /// running VM's snapshot always has it (libvirt takes no disk-only internal snapshot of
    /// a running domain); a stopped VM's never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<bool>,
}

impl SnapshotSpec {
    /// Checks the name and the description.
    pub fn validate(&self) -> Result<()> {
        check_snapshot_name(&self.name)?;
        if let Some(d) = &self.description {
            if d.chars().count() > 1024 || d.chars().any(|c| c.is_control() && c != '\n') {
                return Err(Error::invalid("description", "at most 1024 characters, no control characters"));
            }
        }
        Ok(())
    }
}

/// Checks a snapshot name: 1 to [`MAX_SNAPSHOT_NAME`] of `A-Z a-z 0-9 . _ -`, not starting
/// with a dot.
pub fn check_snapshot_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SNAPSHOT_NAME
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("name", format!("1 to {MAX_SNAPSHOT_NAME} of A-Z a-z 0-9 . _ -")))
    }
}

/// A snapshot as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its name.
    pub name: String,
    /// The snapshot it was taken on top of.
    pub parent: Option<String>,
    /// Whether it holds the VM's memory.
    pub memory: bool,
}

/// A snapshot of a VM, as vmm keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Snapshot {
    /// The VM.
    pub vm_id: VmId,
    /// Its name.
    pub name: String,
    /// The note given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether it holds the VM's memory (a revert resumes the VM running).
    pub memory: bool,
    /// The snapshot it was taken on top of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        for good in ["before-upgrade", "v1.2_3", &"a".repeat(MAX_SNAPSHOT_NAME)] {
            assert!(check_snapshot_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a b", "a/b", "<x>", "ü", &"a".repeat(MAX_SNAPSHOT_NAME + 1)] {
            assert!(check_snapshot_name(bad).is_err(), "{bad}");
        }
    }
}
