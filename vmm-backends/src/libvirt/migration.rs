//! Live migration between two libvirt nodes, managed by vmmd: it holds a connection to
//! each, and the QEMUs stream to each other directly (the target's libvirtd tells the
//! source where, from its `migration_address`/`migration_host`). Should vmmd die in the
//! middle, the source libvirtd aborts the migration when its client goes away and the
//! domain keeps running on the source; unless the target had already resumed the guest,
//! in which case the source is left paused and the target runs the newer copy (the saga
//! keeps that one).

use virt::domain::MigrateParameters;
use vmm_core::{Error, Hypervisor, Result, VmId};

use super::domains::lookup_domain;
use super::storage::{lookup_volume, refresh_pool};
use super::{LibvirtError, LibvirtHypervisor};

const MIB: u64 = 1024 * 1024;

impl LibvirtHypervisor {
    /// [`Hypervisor::migrate`]: the running domain moves to `target`, persistent there and
    /// undefined here; its disk is copied over NBD with `copy_storage`.
    pub(super) async fn migrate_to(
        &self,
        vm: VmId,
        target: &dyn Hypervisor,
        copy_storage: bool,
    ) -> Result<()> {
        let Some(target) = target.as_any().downcast_ref::<LibvirtHypervisor>() else {
            return Err(Error::invalid("target", "a libvirt node migrates only to another libvirt node"));
        };
        let domain = self.domain(vm).await?.ok_or(Error::VmNotFound { id: vm })?;
        let disk = match copy_storage {
            true => self.volume(vm).await?.map_or(0, |v| v.capacity_gib * 1024 * MIB),
            false => 0,
        };
        let dconn = target.link.connection().await?;
        let mut flags = virt::sys::VIR_MIGRATE_LIVE
            | virt::sys::VIR_MIGRATE_PERSIST_DEST
            | virt::sys::VIR_MIGRATE_UNDEFINE_SOURCE;
        flags |= if copy_storage {
            virt::sys::VIR_MIGRATE_NON_SHARED_DISK
        } else {
            // libvirt cannot tell a shared directory from a local one; vmm was told.
            virt::sys::VIR_MIGRATE_UNSAFE
        };
        // The deadline grows with what moves: the guest's memory and the disk.
        self.call_moving("migrate a domain", domain.memory_mib * MIB + disk, move |c| {
            let d = lookup_domain(c, vm)?.ok_or(LibvirtError::Parse(format!("domain of {vm} is gone")))?;
            d.migrate3(&dconn, MigrateParameters::default(), flags)?;
            Ok(())
        })
        .await
    }

    /// [`Hypervisor::abort_migration`]: aborts the domain's job, then waits (up to a
    /// minute) until it has none.
    pub(super) async fn abort_migrating(&self, vm: VmId) -> Result<()> {
        self.call("abort a migration", move |c| {
            let Some(d) = lookup_domain(c, vm)? else { return Ok(()) };
            let idle = |d: &virt::domain::Domain| {
                d.job_info().map(|j| j.r#type == virt::sys::VIR_DOMAIN_JOB_NONE as i32).unwrap_or(true)
            };
            if idle(&d) {
                return Ok(());
            }
            // It may end by itself meanwhile: the abort's own error says nothing then.
            let _ = super::ffi::abort_job(&d);
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !idle(&d) {
                if std::time::Instant::now() > give_up {
                    return Err(LibvirtError::Parse(format!("the migration job of {vm} does not end")));
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Ok(())
        })
        .await
    }

    /// [`Hypervisor::stored_volume`]: the pool is refreshed first, so a disk another node
    /// wrote into a shared directory is seen.
    pub(super) async fn stored_size(&self, vm: VmId) -> Result<Option<u64>> {
        let (pool, patience) = (self.config.storage_pool.clone(), self.pool_patience());
        self.call("read a volume", move |c| {
            refresh_pool(&c.lookup_storage_pool_by_name(&pool)?, patience)?;
            match lookup_volume(c, &pool, vm)? {
                Some(v) => Ok(Some(v.info_flags(virt::sys::VIR_STORAGE_VOL_GET_PHYSICAL)?.allocation)),
                None => Ok(None),
            }
        })
        .await
    }
}
