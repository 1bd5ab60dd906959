//! The event log: what happened, in order. Every state change appends an [`Event`] in the
//! same store transaction as the change, so an event is never lost nor made up: tasks as
//! they are queued, start, progress and end; VMs as their tasks succeed (created, started,
//! stopped, deleted…); nodes, addresses, users and tokens as they change.
//!
//! Events carry a monotonic id: once a reader has seen id N it will never be shown an event
//! with a smaller id later, so `after=N` resumes a reader with no gap and no duplicate
//! (SQL stores number events as they become visible, never as they are written).
//!
//! Who may read an event follows the area it belongs to ([`EventType::area`]): those who see
//! every object of the area see it, others only the events of their own objects.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::id::{NodeId, TaskId, UserId, VmId};
use crate::users::{decide, sees_all, Access, Actor, Area, Decision, Role, Target};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::EnumIter)]
pub enum EventType {
    /// A VM was made (its create or clone task succeeded).
    #[serde(rename = "vm.created")]
    #[strum(serialize = "vm.created")]
    VmCreated,
    /// A VM was started.
    #[serde(rename = "vm.started")]
    #[strum(serialize = "vm.started")]
    VmStarted,
    /// A VM was stopped (powered off or shut down).
    #[serde(rename = "vm.stopped")]
    #[strum(serialize = "vm.stopped")]
    VmStopped,
    /// A VM was rebooted.
    #[serde(rename = "vm.rebooted")]
    #[strum(serialize = "vm.rebooted")]
    VmRebooted,
    /// A VM was suspended.
    #[serde(rename = "vm.suspended")]
    #[strum(serialize = "vm.suspended")]
    VmSuspended,
    /// A VM was resumed.
    #[serde(rename = "vm.resumed")]
    #[strum(serialize = "vm.resumed")]
    VmResumed,
    /// A VM was renamed or resized.
    #[serde(rename = "vm.updated")]
    #[strum(serialize = "vm.updated")]
    VmUpdated,
    /// A VM was reinstalled from an image.
    #[serde(rename = "vm.reinstalled")]
    #[strum(serialize = "vm.reinstalled")]
    VmReinstalled,
    /// A VM was put back as it was: its disk from a backup, or to a snapshot.
    #[serde(rename = "vm.restored")]
    #[strum(serialize = "vm.restored")]
    VmRestored,
    /// A VM was given to another user.
    #[serde(rename = "vm.owner_changed")]
    #[strum(serialize = "vm.owner_changed")]
    VmOwnerChanged,
    /// A VM got another address, with its NIC.
    #[serde(rename = "vm.address_added")]
    #[strum(serialize = "vm.address_added")]
    VmAddressAdded,
    /// A VM lost an address, with its NIC.
    #[serde(rename = "vm.address_removed")]
    #[strum(serialize = "vm.address_removed")]
    VmAddressRemoved,
    /// A VM's domain was seen doing other than the VM's state says (stopped or started
    /// behind vmm's back, gone from its node).
    #[serde(rename = "vm.drifted")]
    #[strum(serialize = "vm.drifted")]
    VmDrifted,
    /// A VM moved to another node (its migration switched over).
    #[serde(rename = "vm.migrated")]
    #[strum(serialize = "vm.migrated")]
    VmMigrated,
    /// A VM of a dead node was started on another (its `recover_vm` task succeeded).
    #[serde(rename = "vm.recovered")]
    #[strum(serialize = "vm.recovered")]
    VmRecovered,
    /// A VM was deleted with its disk and addresses.
    #[serde(rename = "vm.deleted")]
    #[strum(serialize = "vm.deleted")]
    VmDeleted,
    /// Someone opened a VM's console.
    #[serde(rename = "vm.console_opened")]
    #[strum(serialize = "vm.console_opened")]
    VmConsoleOpened,
    /// A VM's console session ended.
    #[serde(rename = "vm.console_closed")]
    #[strum(serialize = "vm.console_closed")]
    VmConsoleClosed,
    /// A task was queued.
    #[serde(rename = "task.queued")]
    #[strum(serialize = "task.queued")]
    TaskQueued,
    /// A worker took a task (again, after a crash, with a higher attempt).
    #[serde(rename = "task.started")]
    #[strum(serialize = "task.started")]
    TaskStarted,
    /// A running task made progress.
    #[serde(rename = "task.progress")]
    #[strum(serialize = "task.progress")]
    TaskProgress,
    /// A task succeeded.
    #[serde(rename = "task.succeeded")]
    #[strum(serialize = "task.succeeded")]
    TaskSucceeded,
    /// A task failed; what it had done was undone.
    #[serde(rename = "task.failed")]
    #[strum(serialize = "task.failed")]
    TaskFailed,
    /// A task was cancelled; what it had done was undone.
    #[serde(rename = "task.cancelled")]
    #[strum(serialize = "task.cancelled")]
    TaskCancelled,
    /// A node was added.
    #[serde(rename = "node.created")]
    #[strum(serialize = "node.created")]
    NodeCreated,
    /// A node's settings changed.
    #[serde(rename = "node.updated")]
    #[strum(serialize = "node.updated")]
    NodeUpdated,
    /// A node came online.
    #[serde(rename = "node.online")]
    #[strum(serialize = "node.online")]
    NodeOnline,
    /// A node went offline.
    #[serde(rename = "node.offline")]
    #[strum(serialize = "node.offline")]
    NodeOffline,
    /// A node went into maintenance.
    #[serde(rename = "node.maintenance")]
    #[strum(serialize = "node.maintenance")]
    NodeMaintenance,
    /// A node holding HA VMs stopped answering past its lease: it will be fenced.
    #[serde(rename = "node.lease_expired")]
    #[strum(serialize = "node.lease_expired")]
    NodeLeaseExpired,
    /// A dead node has no fence agent: an operator must confirm it is off (`POST /nodes/{id}/fence`).
    #[serde(rename = "node.fence_required")]
    #[strum(serialize = "node.fence_required")]
    NodeFenceRequired,
    /// A dead node's fence agent is running.
    #[serde(rename = "node.fencing")]
    #[strum(serialize = "node.fencing")]
    NodeFencing,
    /// A dead node's fence agent failed; it is tried again after a pause.
    #[serde(rename = "node.fence_failed")]
    #[strum(serialize = "node.fence_failed")]
    NodeFenceFailed,
    /// A dead node was fenced (by its agent or an operator): its HA VMs may run elsewhere.
    #[serde(rename = "node.fenced")]
    #[strum(serialize = "node.fenced")]
    NodeFenced,
    /// A node HA had given up on answers again.
    #[serde(rename = "node.revived")]
    #[strum(serialize = "node.revived")]
    NodeRevived,
    /// A node was removed.
    #[serde(rename = "node.deleted")]
    #[strum(serialize = "node.deleted")]
    NodeDeleted,
    /// An address was leased from a pool.
    #[serde(rename = "lease.taken")]
    #[strum(serialize = "lease.taken")]
    LeaseTaken,
    /// An address went back to its pool.
    #[serde(rename = "lease.released")]
    #[strum(serialize = "lease.released")]
    LeaseReleased,
    /// A user was made.
    #[serde(rename = "user.created")]
    #[strum(serialize = "user.created")]
    UserCreated,
    /// A user's role, state or quota changed.
    #[serde(rename = "user.updated")]
    #[strum(serialize = "user.updated")]
    UserUpdated,
    /// A user was deleted.
    #[serde(rename = "user.deleted")]
    #[strum(serialize = "user.deleted")]
    UserDeleted,
    /// An API token was made.
    #[serde(rename = "token.created")]
    #[strum(serialize = "token.created")]
    TokenCreated,
    /// An API token was revoked.
    #[serde(rename = "token.deleted")]
    #[strum(serialize = "token.deleted")]
    TokenDeleted,
    /// A webhook was disabled after a run of failed deliveries.
    #[serde(rename = "webhook.disabled")]
    #[strum(serialize = "webhook.disabled")]
    WebhookDisabled,
    /// A backup became restorable.
    #[serde(rename = "backup.completed")]
    #[strum(serialize = "backup.completed")]
    BackupCompleted,
    /// A backup was checked against its manifest (`ok` says how it went).
    #[serde(rename = "backup.verified")]
    #[strum(serialize = "backup.verified")]
    BackupVerified,
    /// A backup was removed from its target.
    #[serde(rename = "backup.deleted")]
    #[strum(serialize = "backup.deleted")]
    BackupDeleted,
}

impl EventType {
    /// The type as the API spells it (`vm.started`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The area whose objects it is about: it decides who sees the event.
    pub fn area(self) -> Area {
        match self.as_str().split('.').next() {
            Some("vm") => Area::Vms,
            Some("task") => Area::Tasks,
            Some("node") => Area::Nodes,
            Some("lease") => Area::IpPools,
            Some("user") => Area::Users,
            Some("webhook") => Area::Webhooks,
            _ => Area::Tokens,
        }
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Monotonic: later events have larger ids. 0 until the store numbers it.
    pub id: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When.
    pub at: DateTime<Utc>,
    /// Who asked for the change, when a user did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<UserId>,
    /// Whose object it is about (the VM's or task's owner, the user concerned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
    /// The VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<VmId>,
    /// The task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// The node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeId>,
    /// A small object with the details (a task's kind and error, a VM's name, an address).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Value,
}

impl Event {
    /// An event of `kind` at `at`, about nothing yet, with empty data.
    pub fn new(kind: EventType, at: DateTime<Utc>) -> Self {
        Self {
            id: 0,
            kind,
            at,
            actor_id: None,
            owner_id: None,
            vm_id: None,
            task_id: None,
            node_id: None,
            data: json!({}),
        }
    }

    /// About the VM `id`.
    pub fn vm(mut self, id: Option<VmId>) -> Self {
        self.vm_id = id;
        self
    }

    /// About the task `id`.
    pub fn task(mut self, id: TaskId) -> Self {
        self.task_id = Some(id);
        self
    }

    /// About the node `id`.
    pub fn node(mut self, id: Option<NodeId>) -> Self {
        self.node_id = id;
        self
    }

    /// About an object of `owner`'s.
    pub fn owner(mut self, owner: Option<UserId>) -> Self {
        self.owner_id = owner;
        self
    }

    /// Asked for by `actor`.
    pub fn actor(mut self, actor: Option<UserId>) -> Self {
        self.actor_id = actor;
        self
    }

    /// With `key` set to `value` in its data.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        if let Value::Object(map) = &mut self.data {
            map.insert(key.to_owned(), serde_json::to_value(value).unwrap_or(Value::Null));
        }
        self
    }

    /// Whether `actor` may read it: those who see every object of its area, or the owner
    /// of the object it is about.
    pub fn is_visible_to(&self, actor: &Actor) -> bool {
        reads_all(actor.role, self.kind.area()) || self.owner_id == Some(actor.user_id)
    }
}

/// Whether `role` reads the events of every object of `area`: of an owned area if it sees
/// everyone's objects, of the platform's (nodes, pools) if it may read them at all.
pub fn reads_all(role: Role, area: Area) -> bool {
    sees_all(role, area)
        || (!area.is_owned() && decide(role, area, Access::Read, Target::Any) == Decision::Allow)
}

/// Event types by pattern: `*` (all), a type (`task.failed`) or a prefix (`vm.*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct EventPattern(String);

impl EventPattern {
    /// A pattern, checked: `*`, a known type, or the prefix of known types then `.*`.
    pub fn parse(text: &str) -> Result<Self> {
        use strum::IntoEnumIterator;
        let known = |t: &str| EventType::iter().any(|k| k.as_str() == t);
        let prefix = |p: &str| EventType::iter().any(|k| k.as_str().split('.').next() == Some(p));
        let ok = text == "*"
            || known(text)
            || text.strip_suffix(".*").is_some_and(|p| !p.contains('.') && prefix(p));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::invalid(
                "types",
                format!("{text:?} is not an event type, a prefix such as vm.*, or *"),
            ))
        }
    }

    /// Whether `kind` matches.
    pub fn matches(&self, kind: EventType) -> bool {
        let t = kind.as_str();
        match self.0.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => t.starts_with(prefix),
            None => self.0 == t,
        }
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Patterns from a comma-separated list (`vm.*,task.failed`); empty means all.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Self::parse).collect()
    }
}

impl TryFrom<String> for EventPattern {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<EventPattern> for String {
    fn from(p: EventPattern) -> String {
        p.0
    }
}

/// Which events to read: those after an id, of some types, that a reader may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events with a larger id.
    pub after: u64,
    /// Only these types (none: all).
    pub types: Vec<EventPattern>,
    /// Who reads: `None` reads every event; otherwise events of these areas, and those of
    /// this user's own objects.
    pub reader: Option<(Vec<Area>, UserId)>,
}

impl EventFilter {
    /// The filter for `actor` reading after `after`.
    pub fn for_actor(actor: &Actor, after: u64, types: Vec<EventPattern>) -> Self {
        use strum::IntoEnumIterator;
        let areas: Vec<Area> = Area::iter().filter(|a| reads_all(actor.role, *a)).collect();
        let all = areas.len() == Area::iter().count();
        Self { after, types, reader: if all { None } else { Some((areas, actor.user_id)) } }
    }

    /// Whether `event` passes (the stores' oracle; SQL stores say the same in SQL).
    pub fn matches(&self, event: &Event) -> bool {
        event.id > self.after
            && (self.types.is_empty() || self.types.iter().any(|p| p.matches(event.kind)))
            && self.reader.as_ref().is_none_or(|(areas, user)| {
                areas.contains(&event.kind.area()) || event.owner_id == Some(*user)
            })
    }
}

mod rules;
pub use rules::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Task, TaskKind, TaskParams, TaskState};
    use strum::IntoEnumIterator;

    #[test]
    fn types_round_trip_through_text_and_json() {
        for kind in EventType::iter() {
            assert_eq!(kind.as_str().parse::<EventType>().unwrap(), kind);
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, json!(kind.as_str()));
            assert!(kind.as_str().contains('.'));
        }
    }

    #[test]
    fn patterns_match_types_prefixes_and_all() {
        let p = |s| EventPattern::parse(s).unwrap();
        assert!(p("*").matches(EventType::NodeOffline));
        assert!(p("vm.*").matches(EventType::VmStarted));
        assert!(!p("vm.*").matches(EventType::TaskFailed));
        assert!(p("task.failed").matches(EventType::TaskFailed));
        assert!(!p("task.failed").matches(EventType::TaskSucceeded));
        for bad in ["vm", "vm.", "vms.*", "task.fail", "task.*.x", "", "*.*", "v*"] {
            assert!(EventPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(EventPattern::parse_list("vm.*, task.failed").unwrap().len(), 2);
        assert!(EventPattern::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn a_task_life_makes_queued_started_progress_and_its_end_with_the_vm_event() {
        let now = Utc::now();
        let vm = VmId::new();
        let mut t = Task::new(TaskKind::StartVm, Some(vm), TaskParams::None, now);
        let kinds = |es: Vec<Event>| es.into_iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(kinds(task_events(None, &t, None, now)), [EventType::TaskQueued]);
        let queued = t.clone();
        t.claim("w", now, now + chrono::Duration::seconds(30));
        assert_eq!(kinds(task_events(Some(&queued), &t, None, now)), [EventType::TaskStarted]);
        let running = t.clone();
        t.progress = 50;
        assert_eq!(kinds(task_events(Some(&running), &t, None, now)), [EventType::TaskProgress]);
        let half = t.clone();
        t.state = TaskState::Succeeded;
        let ended = task_events(Some(&half), &t, Some("web"), now);
        assert_eq!(kinds(ended.clone()), [EventType::TaskSucceeded, EventType::VmStarted]);
        assert_eq!(ended[1].vm_id, Some(vm));
        assert_eq!(ended[1].data["vm_name"], "web");
        // Saving an ended task again says nothing new.
        assert!(task_events(Some(&t), &t, None, now).is_empty());
        // A recovered run starts again, with its attempt.
        let mut again = half.clone();
        again.claim("w2", now, now + chrono::Duration::seconds(30));
        let started = task_events(Some(&half), &again, None, now);
        assert_eq!(started[0].kind, EventType::TaskStarted);
        assert_eq!(started[0].data["attempt"], 2);
    }

    #[test]
    fn failures_carry_their_code_and_make_no_vm_event() {
        let now = Utc::now();
        let mut t = Task::new(TaskKind::StopVm, Some(VmId::new()), TaskParams::None, now);
        t.claim("w", now, now + chrono::Duration::seconds(30));
        let running = t.clone();
        t.state = TaskState::Failed;
        t.error = Some("the node does not answer".into());
        t.error_code = Some("unavailable".into());
        let events = task_events(Some(&running), &t, None, now);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventType::TaskFailed);
        assert_eq!(events[0].data["error_code"], "unavailable");
    }

    #[test]
    fn readers_see_their_areas_and_their_own_objects() {
        let user = UserId::new();
        let other = UserId::new();
        let actor = |role| Actor { user_id: user, role, token_id: None };
        let mine = Event::new(EventType::VmStarted, Utc::now()).owner(Some(user));
        let theirs = Event::new(EventType::VmStarted, Utc::now()).owner(Some(other));
        let node = Event::new(EventType::NodeOffline, Utc::now());
        let someone = Event::new(EventType::UserCreated, Utc::now()).owner(Some(other));
        for (role, sees) in [
            (Role::Admin, [true, true, true, true]),
            (Role::Readonly, [true, true, true, true]),
            (Role::Operator, [true, true, true, false]),
            (Role::User, [true, false, false, false]),
        ] {
            let a = actor(role);
            let filter = EventFilter::for_actor(&a, 0, Vec::new());
            for (event, want) in [&mine, &theirs, &node, &someone].into_iter().zip(sees) {
                let mut e = event.clone();
                e.id = 1;
                assert_eq!(e.is_visible_to(&a), want, "{role} {:?}", e.kind);
                assert_eq!(filter.matches(&e), want, "{role} filter {:?}", e.kind);
            }
        }
    }
}
