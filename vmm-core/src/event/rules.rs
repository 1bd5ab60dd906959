//! The events of things that changed: a lease, a VM's drift or owner, a node, a user, a
//! token, and every event of a task (queued, started, progressed, ended, and what its
//! success means for its VM).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Event, EventType};
use crate::id::{NodeId, PoolId, UserId, VmId};
use crate::node::{Node, NodeState};
use crate::reconcile::ObservedState;
use crate::task::{Task, TaskKind, TaskParams, TaskState};
use crate::users::{ApiToken, TokenKind, User, UserPatch};
use crate::vm::Vm;

/// The event of an address leased or released: `vm` holds (held) it, `owner` owns the VM.
pub fn lease_event(
    kind: EventType,
    pool: PoolId,
    address: IpAddr,
    vm: Option<VmId>,
    owner: Option<UserId>,
    at: DateTime<Utc>,
) -> Event {
    Event::new(kind, at).vm(vm).owner(owner).with("pool_id", pool).with("address", address)
}

/// The events of `vm`'s `addresses` leased or released (each from the pool of the NIC that
/// holds it).
pub fn vm_lease_events(kind: EventType, vm: &Vm, addresses: &[IpAddr], at: DateTime<Utc>) -> Vec<Event> {
    addresses
        .iter()
        .filter_map(|address| {
            let pool = vm.nics.iter().find(|n| n.addresses.contains(address)).and_then(|n| n.pool_id)?;
            Some(lease_event(kind, pool, *address, Some(vm.id), vm.owner_id, at))
        })
        .collect()
}

/// The event of `ticket`'s console session on `vm` opening (`VmConsoleOpened`) or closing.
pub fn console_event(
    kind: EventType,
    vm: &Vm,
    ticket: &crate::console::ConsoleTicket,
    at: DateTime<Utc>,
) -> Event {
    Event::new(kind, at)
        .vm(Some(vm.id))
        .owner(vm.owner_id)
        .actor(Some(ticket.user_id))
        .node(Some(vm.node_id))
        .with("vm_name", &vm.name)
        .with("kind", ticket.kind)
}

/// The event of a VM deleted, with its name and node.
pub fn vm_deleted_event(vm: &Vm, at: DateTime<Utc>) -> Event {
    Event::new(EventType::VmDeleted, at)
        .vm(Some(vm.id))
        .owner(vm.owner_id)
        .node(Some(vm.node_id))
        .with("vm_name", &vm.name)
}

/// The event of a VM seen `observed` on its node while it should be in its state, if that
/// is drift.
pub fn vm_drift_event(vm: &Vm, observed: ObservedState, at: DateTime<Utc>) -> Option<Event> {
    let reason = observed.reason(vm.state)?;
    Some(
        Event::new(EventType::VmDrifted, at)
            .vm(Some(vm.id))
            .owner(vm.owner_id)
            .node(Some(vm.node_id))
            .with("vm_name", &vm.name)
            .with("state", vm.state)
            .with("observed_state", observed)
            .with("reason", reason),
    )
}

/// The event of a VM given by `previous` to its owner now.
pub fn vm_owner_event(vm: &Vm, previous: Option<UserId>, at: DateTime<Utc>) -> Event {
    Event::new(EventType::VmOwnerChanged, at)
        .vm(Some(vm.id))
        .owner(vm.owner_id)
        .with("vm_name", &vm.name)
        .with("previous_owner_id", previous)
}

/// The event of `vm`'s move from node `from` to the node it is on now.
pub fn vm_migrated_event(vm: &Vm, from: NodeId, at: DateTime<Utc>) -> Event {
    Event::new(EventType::VmMigrated, at)
        .vm(Some(vm.id))
        .owner(vm.owner_id)
        .node(Some(vm.node_id))
        .with("vm_name", &vm.name)
        .with("from_node_id", from)
}

/// The events of a node's change from `before` (none: it is new) to `after` (none: it is
/// gone): created, deleted, a new state, or new settings.
pub fn node_events(before: Option<&Node>, after: Option<&Node>, at: DateTime<Utc>) -> Vec<Event> {
    let event = |kind, node: &Node| Event::new(kind, at).node(Some(node.id)).with("name", &node.name);
    match (before, after) {
        (None, Some(n)) => vec![event(EventType::NodeCreated, n)],
        (Some(n), None) => vec![event(EventType::NodeDeleted, n)],
        (Some(b), Some(a)) if b.state != a.state => {
            let kind = match a.state {
                NodeState::Online => EventType::NodeOnline,
                NodeState::Offline => EventType::NodeOffline,
                NodeState::Maintenance => EventType::NodeMaintenance,
            };
            vec![event(kind, a).with("was", b.state)]
        }
        (Some(b), Some(a))
            if b.name != a.name
                || b.cpu_overcommit != a.cpu_overcommit
                || b.memory_overcommit != a.memory_overcommit =>
        {
            vec![event(EventType::NodeUpdated, a)]
        }
        _ => Vec::new(),
    }
}

/// The event of a user made or deleted.
pub fn user_event(kind: EventType, user: &User, at: DateTime<Utc>) -> Event {
    Event::new(kind, at).owner(Some(user.id)).with("user_id", user.id).with("role", user.role)
}

/// The event of a user changed by `patch`, if it changes what others see (role, state,
/// quota; a new password hash is no event).
pub fn user_update_event(user: &User, patch: &UserPatch, at: DateTime<Utc>) -> Option<Event> {
    let changed: Vec<&str> = [
        ("role", patch.role.is_some()),
        ("state", patch.state.is_some()),
        ("quota", patch.quota.is_some()),
        ("password", patch.password.is_some()),
    ]
    .into_iter()
    .filter_map(|(what, set)| set.then_some(what))
    .collect();
    (!changed.is_empty()).then(|| {
        user_event(EventType::UserUpdated, user, at).with("changed", changed).with("state", user.state)
    })
}

/// The event of an API token made or revoked (sign-in sessions come and go unrecorded
/// here: the audit log has them).
pub fn token_event(kind: EventType, token: &ApiToken, at: DateTime<Utc>) -> Option<Event> {
    (token.kind == TokenKind::Api).then(|| {
        Event::new(kind, at).owner(Some(token.user_id)).with("token_id", token.id).with("name", &token.name)
    })
}

/// The VM event a task's success means, if any.
fn vm_event_of(task: &Task) -> Option<EventType> {
    Some(match task.kind {
        TaskKind::RestoreBackup if matches!(task.params, TaskParams::Restore { in_place: true, .. }) => {
            EventType::VmRestored
        }
        TaskKind::RevertSnapshot => EventType::VmRestored,
        TaskKind::CreateVm | TaskKind::CloneVm | TaskKind::RestoreBackup => EventType::VmCreated,
        TaskKind::StartVm => EventType::VmStarted,
        TaskKind::StopVm | TaskKind::ShutdownVm => EventType::VmStopped,
        TaskKind::RebootVm => EventType::VmRebooted,
        TaskKind::SuspendVm => EventType::VmSuspended,
        TaskKind::ResumeVm => EventType::VmResumed,
        TaskKind::UpdateVm => EventType::VmUpdated,
        TaskKind::ReinstallVm => EventType::VmReinstalled,
        TaskKind::RecoverVm => EventType::VmRecovered,
        TaskKind::AddAddress => EventType::VmAddressAdded,
        TaskKind::RemoveAddress => EventType::VmAddressRemoved,
        // The VM is gone by then: the store records `vm.deleted` as it removes the row.
        // Backups have events of their own, recorded with the backup's record.
        // The store records `vm.migrated` as the migration switches over.
        TaskKind::DeleteVm
        | TaskKind::MigrateVm
        | TaskKind::MaintainNode
        | TaskKind::EndMaintenance
        | TaskKind::ImportImage
        | TaskKind::Reconcile
        | TaskKind::BackupVm
        | TaskKind::VerifyBackup
        | TaskKind::DeleteBackup
        | TaskKind::SnapshotVm
        | TaskKind::DeleteSnapshot => return None,
    })
}

/// The events a task's change from `before` (none: it is new) to `after` means, at `at`;
/// `vm_name` is its VM's name, where the VM is still there. The one rule of task events,
/// shared by every store.
pub fn task_events(
    before: Option<&Task>,
    after: &Task,
    vm_name: Option<&str>,
    at: DateTime<Utc>,
) -> Vec<Event> {
    let base = |kind| {
        let e = Event::new(kind, at)
            .task(after.id)
            .vm(after.vm_id)
            .owner(after.owner_id)
            .actor(after.actor_id)
            .with("kind", after.kind);
        match vm_name {
            Some(name) => e.with("vm_name", name),
            None => e,
        }
    };
    let mut events = Vec::new();
    let Some(before) = before else {
        events.push(base(EventType::TaskQueued));
        return events;
    };
    let claimed = after.state == TaskState::Running && after.attempts > before.attempts;
    if claimed {
        events.push(base(EventType::TaskStarted).with("attempt", after.attempts));
    } else if after.state == TaskState::Running && after.progress != before.progress {
        events.push(base(EventType::TaskProgress).with("progress", after.progress));
    }
    if before.state.is_active() && !after.state.is_active() {
        let ended = match after.state {
            TaskState::Succeeded => base(EventType::TaskSucceeded),
            TaskState::Failed => {
                base(EventType::TaskFailed).with("error", &after.error).with("error_code", &after.error_code)
            }
            _ => base(EventType::TaskCancelled),
        };
        events.push(ended);
        if after.state == TaskState::Succeeded {
            if let Some(kind) = vm_event_of(after) {
                let mut e = base(kind);
                match &after.params {
                    TaskParams::AddAddress { address } | TaskParams::RemoveAddress { address } => {
                        e = e.with("address", address);
                    }
                    TaskParams::Clone { source, .. } => e = e.with("source_vm_id", source),
                    TaskParams::Reinstall { image_id } => e = e.with("image_id", image_id),
                    _ => {}
                }
                if let Value::Object(map) = &mut e.data {
                    map.remove("kind");
                }
                events.push(e);
            }
        }
    }
    events
}
