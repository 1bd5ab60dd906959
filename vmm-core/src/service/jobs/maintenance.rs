//! `maintain_node` and `end_maintenance`: the node's state changed when the task was
//! queued; the task moves VMs, one migration task after another, waiting for each.
//! Entering, every VM on the node goes where placement chooses (live when it runs);
//! ending, the VMs the last evacuation moved go back. What happened to each VM is the
//! task's result, saved after each one, so a run resumed after a crash skips the VMs
//! already dealt with and waits for a migration an earlier run queued.
//!
//! The migrations are tasks of their own, run by other worker slots: a vmmd needs a
//! concurrency of at least two (its default is eight).

use std::time::Duration;

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::id::{NodeId, TaskId};
use crate::migration::{MigrateSpec, MovedVm, MovesReport, UnmovedVm};
use crate::page::PageRequest;
use crate::task::{Task, TaskFilter, TaskKind, TaskParams, TaskState};
use crate::vm::{Vm, VmState};

/// How long one wait for a migration lasts before the task looks at its own cancel and
/// deadline.
const WAIT_SLICE: Duration = Duration::from_secs(5);

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let TaskParams::Maintenance { node_id, move_vms, stop_unmovable } = run.task.params else {
        return Err(Error::invalid("task", "a maintenance task without its node"));
    };
    let node = vmm.inner.store.get_node(node_id).await?;
    let entering = run.task.kind == TaskKind::MaintainNode;
    if !move_vms {
        let now = if entering { "in maintenance" } else { "out of maintenance" };
        vmm.step(run, 100, format!("node {} is {now}", node.name)).await?;
        return Ok(Outcome::Done);
    }
    let mut report: MovesReport = match &run.task.result {
        Some(value) => serde_json::from_value(value.clone()).unwrap_or_default(),
        None => MovesReport::default(),
    };
    let todo: Vec<(Vm, Option<NodeId>)> = if entering {
        vmm.inner.store.vms_on_node(node_id).await?.into_iter().map(|vm| (vm, None)).collect()
    } else {
        evacuated_from(vmm, node_id).await?.into_iter().map(|vm| (vm, Some(node_id))).collect()
    };
    let total = todo.len();
    for (i, (vm, pin)) in todo.into_iter().enumerate() {
        if report.has(vm.id) {
            continue;
        }
        if vmm.cancel_requested(run).await? {
            vmm.step(run, run.task.progress, "cancelled; the VMs moved so far stay where they are").await?;
            return Ok(Outcome::Cancelled);
        }
        let progress = u8::try_from(5 + 90 * i / total.max(1)).unwrap_or(95);
        let whither = if entering { "away from" } else { "back to" };
        vmm.step(
            run,
            progress,
            format!("moving VM {} {whither} {} ({} of {total})", vm.name, node.name, i + 1),
        )
        .await?;
        let outcome = match move_one(vmm, run, &vm, pin).await? {
            Ok((task_id, to)) => {
                report.moved.push(MovedVm { vm_id: vm.id, vm_name: vm.name.clone(), node_id: to, task_id });
                format!("VM {} moved (task {task_id})", vm.name)
            }
            Err(reason) => {
                let stopped = stop_unmovable && stop(vmm, run, &vm).await?;
                let said = format!(
                    "VM {} did not move: {reason}{}",
                    vm.name,
                    if stopped { "; stopped" } else { "" }
                );
                report.unmoved.push(UnmovedVm { vm_id: vm.id, vm_name: vm.name.clone(), reason, stopped });
                said
            }
        };
        run.task.result = Some(serde_json::to_value(&report).map_err(|e| Error::backend("json", e))?);
        vmm.step(run, progress, outcome).await?;
    }
    let stuck: Vec<String> = report
        .unmoved
        .iter()
        .filter(|u| !u.stopped)
        .map(|u| format!("{} ({})", u.vm_name, u.reason))
        .collect();
    if !stuck.is_empty() {
        return Err(Error::conflict(format!(
            "{} of the VMs could not move: {}",
            stuck.len(),
            stuck.join(", ")
        )));
    }
    Ok(Outcome::Done)
}

/// Moves the VM (to `pin`, or where placement chooses) with a migration task and waits
/// for it: `Ok` with the task and the node it went to, or `Err` with why it did not move.
/// A migration an earlier run queued (the VM's active task) is waited for first.
async fn move_one(
    vmm: &Vmm,
    run: &mut Run,
    vm: &Vm,
    pin: Option<NodeId>,
) -> Result<std::result::Result<(TaskId, NodeId), String>> {
    let from = vm.node_id;
    for _ in 0..3 {
        let spec = MigrateSpec { node_id: pin, live: None };
        let task = match vmm.migrate_vm(vm.id, spec).await {
            Ok(task) => task,
            Err(Error::ActiveTask { task, .. }) => {
                let ended = wait(vmm, run, task).await?;
                let now = vmm.inner.store.get_vm(vm.id).await?;
                if ended.kind == TaskKind::MigrateVm
                    && ended.state == TaskState::Succeeded
                    && now.node_id != from
                {
                    return Ok(Ok((ended.id, now.node_id)));
                }
                continue;
            }
            Err(Error::VmNotFound { .. }) => return Ok(Err("deleted meanwhile".into())),
            Err(e) => return Ok(Err(e.public_message())),
        };
        let ended = wait(vmm, run, task.id).await?;
        return Ok(match ended.state {
            TaskState::Succeeded => Ok((ended.id, vmm.inner.store.get_vm(vm.id).await?.node_id)),
            TaskState::Cancelled => Err(format!("its migration (task {}) was cancelled", ended.id)),
            _ => Err(ended.error.unwrap_or_else(|| format!("its migration (task {}) failed", ended.id))),
        });
    }
    Ok(Err("other tasks kept it busy".into()))
}

/// Waits for task `id` to end, looking at this task's own cancel and deadline between
/// slices; a cancel of this task cancels the one waited for.
async fn wait(vmm: &Vmm, run: &mut Run, id: TaskId) -> Result<Task> {
    loop {
        let task = vmm.wait_task(id, WAIT_SLICE).await?;
        if !task.state.is_active() {
            return Ok(task);
        }
        if vmm.cancel_requested(run).await? {
            // The migration rolls back if it can; either way this task waits for its end.
            let _ = vmm.inner.store.cancel_task(id, vmm.now()).await;
        }
    }
}

/// Stops a VM that could not move, if it runs; whether it is now stopped.
async fn stop(vmm: &Vmm, run: &mut Run, vm: &Vm) -> Result<bool> {
    let current = vmm.inner.store.get_vm(vm.id).await?;
    if matches!(current.state, VmState::Stopped) {
        return Ok(true);
    }
    let task = match vmm.stop_vm(vm.id).await {
        Ok(task) => task,
        Err(e) => {
            tracing::warn!(vm = %vm.id, error = %crate::error_chain(&e), "cannot stop a VM that did not move");
            return Ok(false);
        }
    };
    Ok(wait(vmm, run, task.id).await?.state == TaskState::Succeeded)
}

/// The VMs the last evacuation of `node` moved away, still where it put them.
async fn evacuated_from(vmm: &Vmm, node: NodeId) -> Result<Vec<Vm>> {
    let filter = TaskFilter { kind: Some(TaskKind::MaintainNode), ..TaskFilter::default() };
    let mut page = PageRequest::first(100);
    loop {
        let tasks = vmm.inner.store.list_tasks(&filter, &page).await?;
        // The node's last maintenance: one that evacuated nothing returns nothing.
        let last = tasks.items.iter().find(|t| super::super::maintenance::maintained_node(t) == Some(node));
        if let Some(last) = last {
            if !matches!(last.params, TaskParams::Maintenance { move_vms: true, .. }) {
                return Ok(Vec::new());
            }
            let report: MovesReport =
                last.result.clone().and_then(|r| serde_json::from_value(r).ok()).unwrap_or_default();
            let mut vms = Vec::new();
            for moved in report.moved {
                match vmm.inner.store.get_vm(moved.vm_id).await {
                    Ok(vm) if vm.node_id == moved.node_id => vms.push(vm),
                    Ok(_) | Err(Error::VmNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(vms);
        }
        match tasks.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => return Ok(Vec::new()),
        }
    }
}

/// What a maintenance task needs no undo for: the VMs it moved stay moved.
pub(super) fn undo() -> Result<()> {
    Ok(())
}
