//! `migrate_vm`: moves a VM to the node placement chose when the task was queued (whose
//! capacity has been held for it since), in four phases. Each is recorded once done, so a
//! run resumed after a crash (even `kill -9` of vmmd) carries on from the last recorded
//! one, and looks at both nodes to learn how far an interrupted phase got:
//!
//! 1. **prepare**: the VM's networks on the target; without shared storage also its
//!    cloud-init seed and, for a live move, an empty disk of the same size for libvirt to
//!    copy into.
//! 2. **transfer**: live, libvirt migrates the running domain (and its disk, unless storage
//!    is shared); it then runs and is defined on the target only. Offline, the disk is
//!    streamed from node to node and the domain is defined on the target.
//! 3. **switch over**: the VM points at the target and the source's capacity is given
//!    back, in one store transaction.
//! 4. **clean up**: what is left of the VM on the source (definition, disk, seed, console
//!    log).
//!
//! Until the switch-over a cancel, a failure or a timeout rolls back: the target's copy is
//! removed and its capacity given back; the VM stays on the source as it was. If the
//! domain turns out to run on the target only (a live transfer finished as vmmd died), the
//! rollback rolls forward instead: there is one running copy, and the database follows it.

use std::sync::Arc;

use futures::StreamExt;

use super::{remove_volume_files, vm_of, Outcome, Run, StreamReader, Vmm};
use crate::crash;
use crate::error::{Error, Result};
use crate::hypervisor::{Hypervisor, PowerState};
use crate::image::ImageFormat;
use crate::node::Node;
use crate::task::TaskParams;
use crate::vm::Vm;

/// Checkpoint: the target is prepared.
const PREPARED: &str = "prepared";
/// Checkpoint: the target was seen without the VM's disk (storage not shared).
const SEPARATE: &str = "separate_storage";
/// Checkpoint: the domain is on the target (running, for a live move; defined, offline).
const TRANSFERRED: &str = "transferred";

/// One migration as a run sees it.
struct Move {
    vm: Vm,
    from: Node,
    to: Node,
    src: Arc<dyn Hypervisor>,
    dst: Arc<dyn Hypervisor>,
    live: bool,
    /// Both nodes see the same disk (`storage_shared` when the task was queued): no disk
    /// moves, and none is removed from either side.
    shared: bool,
    /// Without shared storage: the target was seen not to have the VM's disk before
    /// anything was made there, so whatever the target holds of the VM is this task's.
    separate: bool,
}

impl Move {
    async fn open(vmm: &Vmm, run: &Run) -> Result<Self> {
        let TaskParams::Migrate { from, to, live, shared } = run.task.params else {
            return Err(Error::invalid("task", "a migration without its nodes"));
        };
        let vm = vmm.inner.store.get_vm(vm_of(run)?).await?;
        let from = vmm.inner.store.get_node(from).await?;
        let to = vmm.inner.store.get_node(to).await?;
        let src = vmm.hypervisor(&from).await?;
        let dst = vmm.hypervisor(&to).await?;
        Ok(Self { vm, from, to, src, dst, live, shared, separate: run.task.reached(SEPARATE) })
    }

    /// Whether the switch-over is done: the database points at the target.
    fn switched(&self) -> bool {
        self.vm.node_id == self.to.id
    }
}

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let m = Move::open(vmm, run).await?;
    if !m.switched() {
        if !run.task.reached(PREPARED) {
            if vmm.cancel_requested(run).await? {
                return cancelled(vmm, run).await;
            }
            vmm.step(run, 5, format!("preparing {} for the VM", m.to.name)).await?;
            prepare(vmm, run, &m).await?;
            crash::point("migrate_vm.prepare");
            vmm.checkpoint(run, PREPARED).await?;
        }
        if !run.task.reached(TRANSFERRED) {
            if vmm.cancel_requested(run).await? {
                return cancelled(vmm, run).await;
            }
            let how = match (m.live, m.shared) {
                (true, true) => "migrating live",
                (true, false) => "migrating live with its disk",
                (false, true) => "moving the definition",
                (false, false) => "copying the disk and moving the definition",
            };
            vmm.step(run, 20, format!("{how} from {} to {}", m.from.name, m.to.name)).await?;
            transfer(vmm, &m).await?;
            crash::point("migrate_vm.transfer");
            vmm.checkpoint(run, TRANSFERRED).await?;
        }
        // No cancel from here on: the VM is whole on the target.
        vmm.step(run, 80, format!("switching over to {}", m.to.name)).await?;
        vmm.inner.store.switch_migration(m.vm.id, m.to.id).await?;
        crash::point("migrate_vm.switch_over");
    }
    vmm.step(run, 90, format!("cleaning up on {}", m.from.name)).await?;
    clean_up(&m).await?;
    crash::point("migrate_vm.clean_up");
    Ok(Outcome::Done)
}

async fn cancelled(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    vmm.step(run, run.task.progress, "cancelled; rolling back").await?;
    // Opened again: this run may have recorded phases since it opened its own.
    undo(vmm, run).await?;
    Ok(Outcome::Cancelled)
}

/// The target gets what the domain needs there before it arrives.
async fn prepare(vmm: &Vmm, run: &mut Run, m: &Move) -> Result<()> {
    let vm = &m.vm;
    if !m.shared && !run.task.reached(SEPARATE) {
        // Told the storage is not shared, vmm removes what the target has of the VM: a
        // target that sees the VM's disk already would lose the VM's only disk then.
        if m.dst.stored_volume(vm.id).await?.is_some() {
            return Err(Error::conflict(format!(
                "node {} already has a disk of VM {}: if the nodes share storage, set storage_shared",
                m.to.name, vm.id
            )));
        }
        vmm.checkpoint(run, SEPARATE).await?;
    }
    vmm.ensure_networks(m.dst.as_ref(), vm).await?;
    if m.shared {
        if m.dst.stored_volume(vm.id).await?.is_none() {
            return Err(Error::conflict(format!(
                "storage is configured as shared, but node {} does not see the disk of VM {}",
                m.to.name, vm.id
            )));
        }
        return Ok(());
    }
    vmm.write_current_seed(m.dst.as_ref(), vm).await?;
    if m.live {
        if m.dst.domain(vm.id).await?.is_some() {
            return Err(Error::conflict(format!("node {} has a domain of VM {} already", m.to.name, vm.id)));
        }
        // Storage is not shared, so a disk on the target is a leftover of an earlier try.
        if m.dst.volume(vm.id).await?.is_some() {
            m.dst.delete_volume(vm.id).await?;
        }
        let size = m.src.volume(vm.id).await?.ok_or(Error::VmNotFound { id: vm.id })?.capacity_gib;
        m.dst.create_volume(vm.id, size).await?;
    }
    Ok(())
}

/// Puts the domain on the target: live, by libvirt; offline, by copying the disk and
/// defining it there.
async fn transfer(vmm: &Vmm, m: &Move) -> Result<()> {
    let id = m.vm.id;
    let on_src = m.src.domain(id).await?;
    let on_dst = m.dst.domain(id).await?;
    if !m.live {
        if on_src.as_ref().is_some_and(|d| d.state != PowerState::Shutoff) {
            return Err(Error::conflict(format!("VM {id} was started during its offline migration")));
        }
        if !m.shared {
            copy_disk(m).await?;
        }
        let spec = vmm.domain_spec(&m.vm, &m.to, m.vm.image_id.is_some()).await?;
        return m.dst.define_domain(&spec).await;
    }
    if moved_already(m, on_src.as_ref(), on_dst.as_ref()).await? {
        return Ok(());
    }
    match (&on_src, &on_dst) {
        (None, _) => return Err(Error::VmNotFound { id }),
        // A copy on the target while the source still has the domain is what a broken
        // transfer left (libvirt undefines the source only once the target runs).
        (Some(_), Some(_)) => remove_domain(m.dst.as_ref(), id).await?,
        (Some(_), None) => {}
    }
    if on_src.is_some_and(|d| d.state == PowerState::Paused) {
        // Paused by a transfer that broke off; it was running.
        m.src.resume(id).await?;
    }
    crash::point_soon("migrate_vm.transferring", std::time::Duration::from_millis(400));
    m.src.migrate(id, m.dst.as_ref(), !m.shared).await
}

/// Whether a live transfer had in fact finished: the guest runs on the target and the
/// source has no domain, or only a paused one (the target resumed the guest before the
/// source heard the migration was done: the target's copy is the newer). The source's
/// paused copy goes then, so that the target's is the one copy.
async fn moved_already(
    m: &Move,
    on_src: Option<&crate::hypervisor::DomainInfo>,
    on_dst: Option<&crate::hypervisor::DomainInfo>,
) -> Result<bool> {
    if !m.live || on_dst.is_none_or(|d| d.state != PowerState::Running) {
        return Ok(false);
    }
    match on_src {
        None => Ok(true),
        Some(d) if d.state == PowerState::Paused => {
            tracing::warn!(vm = %m.vm.id, node = %m.from.name, "the guest runs on the target; removing its paused source");
            remove_domain(m.src.as_ref(), m.vm.id).await?;
            Ok(true)
        }
        Some(_) => Ok(false),
    }
}

/// Streams the shut-off VM's disk from the source into a new volume on the target.
async fn copy_disk(m: &Move) -> Result<()> {
    let id = m.vm.id;
    // Storage is not shared, so a disk on the target is a partial copy of an earlier try.
    if m.dst.volume(id).await?.is_some() {
        m.dst.delete_volume(id).await?;
    }
    let size = m.src.stored_volume(id).await?.ok_or(Error::VmNotFound { id })?;
    let (tx, rx) = futures::channel::mpsc::channel(4);
    let reader = Box::new(StreamReader::new(rx.map(Ok)));
    let (read, written) =
        futures::join!(m.src.read_volume(id, tx), m.dst.write_volume(id, ImageFormat::Qcow2, reader, size));
    let checked = read.and_then(|r| {
        if r.bytes == size && r.format == ImageFormat::Qcow2 {
            Ok(())
        } else {
            Err(Error::conflict(format!("the disk of VM {id} changed while it was copied")))
        }
    });
    match (checked, written) {
        (Ok(()), Ok(_)) => Ok(()),
        (Err(e), _) | (Ok(()), Err(e)) => {
            // No partial disk stays on the target (the rollback would remove it too).
            if m.dst.volume(id).await.ok().flatten().is_some() {
                m.dst.delete_volume(id).await.ok();
            }
            Err(e)
        }
    }
}

/// Removes what is left of the VM on the source once the database points at the target.
async fn clean_up(m: &Move) -> Result<()> {
    let id = m.vm.id;
    if let Some(d) = m.src.domain(id).await? {
        if d.state != PowerState::Shutoff {
            return Err(Error::conflict(format!(
                "VM {id} runs on {} although it was moved to {}; left for an operator",
                m.from.name, m.to.name
            )));
        }
        m.src.undefine_domain(id).await?;
    }
    if !m.shared {
        remove_volume_files(m.src.as_ref(), id).await?;
    }
    Ok(())
}

/// Undoes a migration that did not switch over; finishes one that did (or whose live
/// transfer had in fact finished).
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let m = match Move::open(vmm, run).await {
        Err(Error::VmNotFound { .. }) => return Ok(()),
        other => other?,
    };
    if m.switched() {
        return clean_up(&m).await;
    }
    roll_back(vmm, &m).await
}

/// Leaves the VM where it was: the target's copy removed, its capacity given back. A live
/// domain found running on the target only is followed there instead.
async fn roll_back(vmm: &Vmm, m: &Move) -> Result<()> {
    let id = m.vm.id;
    if m.live {
        // A transfer cut short by a timeout or a cancel may still be running in libvirt:
        // it ends (finished or aborted) before anything is judged.
        m.src.abort_migration(id).await?;
    }
    let on_src = m.src.domain(id).await?;
    let on_dst = m.dst.domain(id).await?;
    if moved_already(m, on_src.as_ref(), on_dst.as_ref()).await? {
        tracing::info!(vm = %id, node = %m.to.name, "the live transfer had finished; switching over");
        vmm.inner.store.switch_migration(id, m.to.id).await?;
        return clean_up(m).await;
    }
    let Some(on_src) = on_src else {
        return Err(Error::conflict(format!(
            "the domain of VM {id} is on neither {} nor {} (running); nothing removed",
            m.from.name, m.to.name
        )));
    };
    if on_dst.is_some() {
        remove_domain(m.dst.as_ref(), id).await?;
    }
    if !m.shared && m.separate {
        remove_volume_files(m.dst.as_ref(), id).await?;
    }
    if on_src.state == PowerState::Paused && m.vm.state == crate::vm::VmState::Running {
        m.src.resume(id).await?;
    }
    vmm.inner.store.end_migration(id, m.to.id).await
}

/// Forces the domain off and undefines it, leaving its disk.
async fn remove_domain(hv: &dyn Hypervisor, id: crate::id::VmId) -> Result<()> {
    if hv.domain(id).await?.is_some_and(|d| !matches!(d.state, PowerState::Shutoff | PowerState::Crashed)) {
        hv.stop(id).await?;
    }
    hv.undefine_domain(id).await
}
