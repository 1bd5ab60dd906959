//! Snapshots on a node: libvirt's internal qcow2 snapshots, of the disk of a shut-off
//! domain, or of the disk and memory of a running one (libvirt's defaults for each). The
//! snapshot's XML is made by a serializer; its name has passed vmm's check.

use virt::domain::Domain;
use virt::domain_snapshot::DomainSnapshot;
use virt::error::ErrorNumber;
use vmm_core::snapshot::SnapshotInfo;
use vmm_core::{Error, Result, VmId};

use super::domains::lookup_domain;
use super::{code_is, LibvirtError, LibvirtHypervisor};

/// The snapshot named `name`, or `None`.
fn lookup(d: &Domain, name: &str) -> Result<Option<DomainSnapshot>, LibvirtError> {
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
fn info(s: &DomainSnapshot) -> Result<SnapshotInfo, LibvirtError> {
    let parent = match s.parent(0) {
        Ok(p) => Some(p.name()?),
        Err(e) if code_is(&e, &[ErrorNumber::NoDomainSnapshot]) => None,
        Err(e) => return Err(e.into()),
    };
    let xml = s.xml_desc(0)?;
    Ok(SnapshotInfo { name: s.name()?, parent, memory: xml.contains("<state>running</state>") })
}

/// Every snapshot of `d`.
fn list(d: &Domain) -> Result<Vec<SnapshotInfo>, LibvirtError> {
    d.list_all_snapshots(0)?.iter().map(info).collect()
}

impl LibvirtHypervisor {
    pub(super) async fn take_snapshot(
        &self,
        vm: VmId,
        name: &str,
        description: Option<&str>,
    ) -> Result<SnapshotInfo> {
        self.images_supported()?;
        let (name, description) = (name.to_owned(), description.map(str::to_owned));
        let made = self
            .call("take a snapshot", move |c| {
                let d =
                    lookup_domain(c, vm)?.ok_or(LibvirtError::Parse(format!("domain of {vm} is gone")))?;
                create(&d, &name, description.as_deref())
            })
            .await?;
        Ok(made)
    }

    pub(super) async fn snapshots_of(&self, vm: VmId) -> Result<Vec<SnapshotInfo>> {
        self.images_supported()?;
        self.call("list snapshots", move |c| match lookup_domain(c, vm)? {
            Some(d) => list(&d),
            None => Ok(Vec::new()),
        })
        .await
    }

    pub(super) async fn revert_to(&self, vm: VmId, name: &str) -> Result<()> {
        self.images_supported()?;
        let name = name.to_owned();
        let reverted = self
            .call("revert to a snapshot", move |c| {
                let d =
                    lookup_domain(c, vm)?.ok_or(LibvirtError::Parse(format!("domain of {vm} is gone")))?;
                match lookup(&d, &name)? {
                    Some(s) => s.revert(0).map(|()| true).map_err(Into::into),
                    None => Ok(false),
                }
            })
            .await?;
        if reverted {
            Ok(())
        } else {
            Err(Error::conflict(format!("VM {vm} has no snapshot of that name on its node")))
        }
    }

    pub(super) async fn remove_snapshot(&self, vm: VmId, name: &str) -> Result<()> {
        self.images_supported()?;
        let name = name.to_owned();
        self.call("delete a snapshot", move |c| {
            if let Some(d) = lookup_domain(c, vm)? {
                if let Some(s) = lookup(&d, &name)? {
                    s.delete(0)?;
                }
            }
            Ok(())
        })
        .await
    }
}
