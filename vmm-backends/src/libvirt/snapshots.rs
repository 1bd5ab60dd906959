//! Snapshots on a node: libvirt's internal qcow2 snapshots, of the disk of a shut-off
//! domain, or of the disk and memory of a running one (libvirt's defaults for each). The
//! snapshot's XML is made by a serializer; its name has passed vmm's check.

use virt::domain::Domain;
use virt::domain_snapshot::DomainSnapshot;
use virt::error::ErrorNumber;
use vmm_core::snapshot::SnapshotInfo;

use super::{code_is, LibvirtError};

/// The snapshot named `name`, or `None`.
pub(super) fn lookup(d: &Domain, name: &str) -> Result<Option<DomainSnapshot>, LibvirtError> {
    match Domain::lookup_snapshot_by_name(d, name, 0) {
        Ok(s) => Ok(Some(s)),
        Err(e) if code_is(&e, &[ErrorNumber::NoDomainSnapshot]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Takes snapshot `name` of `d`.
pub(super) fn create(
    d: &Domain,
    name: &str,
    description: Option<&str>,
) -> Result<SnapshotInfo, LibvirtError> {
    #[derive(serde::Serialize)]
    #[serde(rename = "domainsnapshot")]
    struct Doc<'a> {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
    }
    let xml = quick_xml::se::to_string(&Doc { name, description })?;
    let snapshot = d.create_snapshot_xml(&xml, 0)?;
    info(&snapshot)
}

/// What a snapshot is: its name, parent, and whether it holds memory (taken running).
pub(super) fn info(s: &DomainSnapshot) -> Result<SnapshotInfo, LibvirtError> {
    let parent = match s.parent(0) {
        Ok(p) => Some(p.name()?),
        Err(e) if code_is(&e, &[ErrorNumber::NoDomainSnapshot]) => None,
        Err(e) => return Err(e.into()),
    };
    let xml = s.xml_desc(0)?;
    Ok(SnapshotInfo { name: s.name()?, parent, memory: xml.contains("<state>running</state>") })
}

/// Every snapshot of `d`.
pub(super) fn list(d: &Domain) -> Result<Vec<SnapshotInfo>, LibvirtError> {
    d.list_all_snapshots(0)?.iter().map(info).collect()
}
