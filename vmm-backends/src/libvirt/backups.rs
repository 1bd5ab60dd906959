//! Reading a running domain's disk for a backup: libvirt's backup API in push mode copies
//! the disk as it was at one instant (QEMU's backup job: blocks the guest writes afterwards
//! are copied out first) to a scratch volume beside it on the node; the scratch volume is
//! then streamed like a stopped VM's disk and removed. The guest's filesystems are frozen
//! through its agent for that instant when it has one; otherwise the copy is
//! crash-consistent, and the backup says so.

use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;
use vmm_core::backup::Consistency;
use vmm_core::hypervisor::{DataSink, VolumeRead};
use vmm_core::{Error, Hypervisor, ImageFormat, Result, VmId};

use super::domains::lookup_domain;
use super::storage::{ensure_pool, lookup_named, refresh_pool, stream_out};
use super::{ffi, LibvirtError, LibvirtHypervisor, GIB};

/// libvirt's job types, as `virDomainGetJobStats` reports them.
const JOB_NONE: i32 = virt_sys::VIR_DOMAIN_JOB_NONE as i32;
const JOB_COMPLETED: i32 = virt_sys::VIR_DOMAIN_JOB_COMPLETED as i32;

/// The name of the scratch volume a running VM's backup is copied to.
fn scratch_name(vm: VmId) -> String {
    format!("vmm-{vm}-backup.qcow2")
}

/// The push-mode backup of the VM's disk (`vda`) to `file`. Disks not listed (the seed
/// CD-ROM, when there is one) are left out.
fn backup_xml(file: &str) -> Result<String, LibvirtError> {
    use serde::Serialize;
    #[derive(Serialize)]
    #[serde(rename = "domainbackup")]
    struct DomainBackup {
        #[serde(rename = "@mode")]
        mode: &'static str,
        disks: Disks,
    }
    #[derive(Serialize)]
    struct Disks {
        disk: Vec<Disk>,
    }
    #[derive(Serialize)]
    struct Disk {
        #[serde(rename = "@name")]
        name: &'static str,
        #[serde(rename = "@backup")]
        backup: &'static str,
        #[serde(rename = "@type")]
        kind: &'static str,
        target: Target,
        driver: Driver,
    }
    #[derive(Serialize)]
    struct Target {
        #[serde(rename = "@file")]
        file: String,
    }
    #[derive(Serialize)]
    struct Driver {
        #[serde(rename = "@type")]
        kind: &'static str,
    }
    let doc = DomainBackup {
        mode: "push",
        disks: Disks {
            disk: vec![Disk {
                name: "vda",
                backup: "yes",
                kind: "file",
                target: Target { file: file.to_owned() },
                driver: Driver { kind: "qcow2" },
            }],
        },
    };
    Ok(quick_xml::se::to_string(&doc)?)
}

/// Freezes the guest's filesystems through its agent; whether it did.
fn freeze(d: &Domain) -> bool {
    match ffi::fs_freeze(d) {
        Ok(n) => n > 0,
        Err(e) => {
            tracing::info!(error = %e, "no filesystem freeze (no guest agent?): the backup is crash-consistent");
            false
        }
    }
}

/// Waits for the domain's backup job to end; an error unless it completed.
fn wait_job(d: &Domain, patience: Duration) -> Result<(), LibvirtError> {
    let give_up = Instant::now() + patience;
    loop {
        let info = d.job_info()?;
        if info.r#type == JOB_NONE {
            break;
        }
        if Instant::now() > give_up {
            ffi::abort_job(d).ok();
            return Err(LibvirtError::Parse("the backup job ran past its deadline".into()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = d.job_stats(virt_sys::VIR_DOMAIN_JOB_STATS_COMPLETED)?;
    if done.r#type == JOB_COMPLETED {
        Ok(())
    } else {
        Err(LibvirtError::Parse(format!("the backup job ended as type {}", done.r#type)))
    }
}

impl LibvirtHypervisor {
    /// Copies the running VM's disk at one instant to a scratch volume on the node, streams
    /// that into `sink`, and removes it (however the read ends).
    pub(super) async fn read_running_volume(&self, vm: VmId, sink: DataSink) -> Result<VolumeRead> {
        let capacity = self.volume(vm).await?.ok_or(Error::VmNotFound { id: vm })?.capacity_gib * GIB;
        let dir = self.pool_dir().await?;
        let (pool, path) = (self.config.storage_pool.clone(), self.config.storage_path.clone());
        let scratch = scratch_name(vm);
        let local = self.is_local();
        let file = format!("{}/{scratch}", dir.trim_end_matches('/'));
        let patience = self.link.call_deadline() + Duration::from_secs(capacity / (4 << 20));
        let read = self
            .call_moving("back up a running disk", capacity * 2, move |c| {
                let result = copy_and_stream(c, vm, &pool, &path, &scratch, &file, sink, patience, local);
                // The scratch volume goes whatever happened.
                if let Ok(p) = ensure_pool(c, &pool, &path) {
                    refresh_pool(&p, Duration::from_secs(30)).ok();
                    if let Ok(Some(v)) = lookup_named(&p, &scratch) {
                        v.delete(0).ok();
                    }
                }
                if local {
                    std::fs::remove_file(&file).ok();
                }
                result
            })
            .await?;
        Ok(read)
    }
}

#[allow(clippy::too_many_arguments)]
fn copy_and_stream(
    c: &Connect,
    vm: VmId,
    pool: &str,
    path: &str,
    scratch: &str,
    file: &str,
    sink: DataSink,
    patience: Duration,
    local: bool,
) -> Result<VolumeRead, LibvirtError> {
    let d = lookup_domain(c, vm)?.ok_or_else(|| LibvirtError::Parse(format!("domain of {vm} is gone")))?;
    let p = ensure_pool(c, pool, path)?;
    // A backup job left by a vmmd that died mid-backup is ended before its file goes.
    if d.job_info()?.r#type != JOB_NONE {
        ffi::abort_job(&d).ok();
        wait_job(&d, Duration::from_secs(60)).ok();
    }
    if let Some(stale) = lookup_named(&p, scratch)? {
        stale.delete(0)?;
    }
    if local {
        std::fs::remove_file(file).ok();
    }
    let xml = backup_xml(file)?;
    let frozen = freeze(&d);
    let begun = ffi::backup_begin(&d, &xml);
    if frozen {
        // The copy's instant is the job's start: the guest goes on at once.
        if let Err(e) = ffi::fs_thaw(&d) {
            tracing::warn!(vm = %vm, error = %e, "thawing the guest's filesystems failed");
        }
    }
    begun?;
    wait_job(&d, patience)?;
    refresh_pool(&p, Duration::from_secs(30))?;
    let vol = lookup_named(&p, scratch)?
        .ok_or_else(|| LibvirtError::Parse("the backup's scratch volume did not appear".into()))?;
    let bytes = stream_out(c, &vol, sink, local)?;
    let consistency = if frozen { Consistency::FsFrozen } else { Consistency::CrashConsistent };
    Ok(VolumeRead { format: ImageFormat::Qcow2, bytes, consistency })
}
